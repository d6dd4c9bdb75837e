"""LMM labelling: masked crops, the prompt and its schema, the async OpenAI-compatible client, prices."""

from .client import LabelCache, Labeler, LabelerConfig, LabelResult
from .crop import CropSettings, render_crop
from .run import estimate, label_objects, objects_to_label, read_vocabulary

__all__ = [
    "CropSettings", "LabelCache", "LabelResult", "Labeler", "LabelerConfig", "estimate", "label_objects",
    "objects_to_label", "read_vocabulary", "render_crop",
]
