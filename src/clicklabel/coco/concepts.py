"""Concept instances of one image as a COCO file: one category per concept asked for (in that order, whether found
or not), a score per annotation, and the other concepts that found the same object."""

from __future__ import annotations

from pathlib import Path

from ..masks import encode_rle
from .write import EXTRA_KEY, write_json


def write_concepts(instances, concepts, image_path: Path, shape, out: str | Path) -> None:
    ids = {c: n + 1 for n, c in enumerate(concepts)}
    anns = []
    for inst in instances:
        extra = {"also": [{"concept": c, "score": round(s, 5)} for c, s in inst.also]} if inst.also else {}
        anns.append({"id": len(anns) + 1, "image_id": 1, "category_id": ids[inst.label],
                     "segmentation": encode_rle(inst.mask), "area": int(inst.mask.sum()),
                     "bbox": [float(v) for v in inst.bbox], "iscrowd": 0, "score": round(inst.score, 5),
                     **({EXTRA_KEY: extra} if extra else {})})
    write_json(out, {
        "images": [{"id": 1, "file_name": Path(image_path).name, "height": int(shape[0]), "width": int(shape[1])}],
        "categories": [{"id": i, "name": c, "supercategory": c} for c, i in ids.items()],
        "annotations": anns,
    })
