"""A clicklabel project: the SQLite store (images, objects, labels, history) and the project-level workflows
(open or create, add images, propose and decide, labelling settings) that the CLI, the widget and Python call."""

from .boxes import MaskUpdate
from .checks import CheckRecord
from .objects import ObjectRecord
from .open import AddReport, add_images, expand_images, image_files, is_project, open_images, open_project
from .proposals import ProposeReport, accept_above, decide, pending_proposals, propose_current, propose_project
from .refine import RefineReport, RefineSettings, refine_current, refine_project, refine_targets
from .settings import LabelSettings, load_label_settings, save_label_settings
from .store import PROJECT_FILE, ImageRecord, Store

__all__ = [
    "PROJECT_FILE", "AddReport", "CheckRecord", "ImageRecord", "LabelSettings", "MaskUpdate", "ObjectRecord",
    "ProposeReport", "RefineReport", "RefineSettings", "Store", "accept_above", "add_images", "decide",
    "expand_images", "image_files", "is_project", "load_label_settings", "open_images", "open_project",
    "pending_proposals", "propose_current", "propose_project", "refine_current", "refine_project", "refine_targets",
    "save_label_settings",
]
