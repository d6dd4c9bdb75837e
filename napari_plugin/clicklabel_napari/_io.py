"""Reader, writer and sample data contributions; the COCO work itself is in ``clicklabel.coco``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from clicklabel.coco import labels_to_coco
from clicklabel.images import list_images, load_image

from ._boxes import rect


def _samples_dir() -> Path:
    import clicklabel

    return Path(clicklabel.__file__).parent / "data" / "samples"


def get_coco_reader(path):
    """napari reader for COCO instance files (a .json with images, annotations and categories)."""
    if isinstance(path, list) or not str(path).endswith(".json"):
        return None
    import json

    try:
        with open(path) as f:
            head = f.read(4096)
    except OSError:
        return None
    if '"annotations"' not in head and '"images"' not in head:
        try:
            doc = json.loads(Path(path).read_text())
        except ValueError:
            return None
        if not isinstance(doc, dict) or "annotations" not in doc:
            return None
    return read_coco


def read_coco(path):
    """Layers of the first image in a COCO file: the image (if found), its instances, their boxes and names."""
    from clicklabel.coco import image_instances

    image_path, (h, w), instances = image_instances(path)
    stem = Path(path).stem
    labels = np.zeros((h, w), np.int32)
    for n, inst in enumerate(instances):
        labels[inst.mask] = n + 1
    layers = []
    if image_path is not None:
        layers.append((load_image(image_path), {"name": image_path.stem}, "image"))
    layers.append((labels, {"name": f"{stem} instances"}, "labels"))
    if instances:
        rects = [rect(*inst.bbox) for inst in instances]
        layers.append((rects, {"name": f"{stem} boxes", "shape_type": "rectangle", "edge_color": "yellow",
                               "face_color": "transparent", "features": {"label": [i.category for i in instances]},
                               "text": {"string": "{label}", "anchor": "upper_left", "color": "yellow"}}, "shapes"))
    return layers


PROJECT_KEY = "clicklabel_project"  # in the objects layer's metadata: the project file it shows


def write_coco(path: str, data: np.ndarray, meta: dict) -> list[str]:
    """napari's File > Save for a Labels layer. clicklabel's objects layer (it names its project in its metadata):
    the whole project as COCO, the same file as ``clicklabel export`` (every image, the labels). Any other Labels
    layer: that one label image as COCO instances (one image, category 'object', named after the layer)."""
    project = (meta.get("metadata") or {}).get(PROJECT_KEY)
    if project:
        from clicklabel.coco import export_coco
        from clicklabel.project import open_project

        store = open_project(project)
        try:
            export_coco(store, path)
        finally:
            store.close()
        return [path]
    labels_to_coco(np.asarray(data), path, file_name=meta.get("name", "image") + ".png")
    return [path]


def sample_images():
    """The bundled photos (public domain / CC0)."""
    return [(load_image(p), {"name": p.stem}, "image") for p in list_images(_samples_dir())]
