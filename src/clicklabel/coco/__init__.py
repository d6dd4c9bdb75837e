"""Every COCO read and write: export a project (RLE by default, exact polygons on request), the proposals of one
image, a label image (``write``); import any COCO file into a project (RLE compressed / uncompressed, polygons,
crowd regions), every value checked first and every bad item reported (``importer``, ``validate``); and the
readers that viewers and the NoC benchmark use (``read``). One reader (``read_coco_file``) and one safe image
lookup (``find_image``) serve them all; every file is written atomically."""

from ..masks import mask_to_polygons
from .importer import MODES, ImportReport, import_coco
from .read import Instance, find_image, image_instances, iter_instances, read_coco_file
from .write import EXTRA_KEY, UNLABELLED, ExportReport, export_coco, labels_to_coco, write_json, write_proposals

__all__ = [
    "EXTRA_KEY", "MODES", "UNLABELLED", "ExportReport", "ImportReport", "Instance", "export_coco", "find_image",
    "image_instances", "import_coco", "iter_instances", "labels_to_coco", "mask_to_polygons", "read_coco_file",
    "write_json", "write_proposals",
]
