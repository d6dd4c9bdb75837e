"""clicklabel: click an object, SAM makes the mask, a multimodal model names it, export COCO."""

__version__ = "0.1.0"
