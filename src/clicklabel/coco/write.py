"""COCO writers: a project's accepted objects (RLE by default, exact polygons on request; box-only objects as COCO's
box-only annotations, an empty segmentation), the proposals of one image, a label image. Every file is written
atomically, as strict JSON."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import CocoError
from ..files import atomic_write
from ..masks import RASTERISERS, encode_rle, mask_to_polygons, rle_bbox, tight_bbox
from ..project import Store
from . import carry
from .carry import EXTRA_KEY, UNLABELLED


@dataclass
class ExportReport:
    images: int = 0
    annotations: int = 0
    rle_fallbacks: list[int] = field(default_factory=list)
    unlabelled: int = 0
    boxes: int = 0  # box-only objects, written with an empty segmentation


def export_coco(
    store: Store, out: str | Path, polygons: bool | str = False, images_root: str | Path | None = None,
    file_names: dict[int, str] | None = None,
) -> ExportReport:
    """Write the project's accepted objects as a COCO instances file (atomically); returns what was written.
    ``polygons``: exact polygons instead of RLE, for the readers of a rasteriser (``masks.RASTERISERS``; True is
    'pycocotools'), RLE kept where polygons cannot be exact. ``file_names``: image id -> the name to write (copies
    made beside the file: ``copies.copy_images``)."""
    rasteriser = "pycocotools" if polygons is True else polygons or None
    if rasteriser is not None and rasteriser not in RASTERISERS:
        raise CocoError(f"unknown polygon rasteriser {rasteriser!r}; one of {', '.join(RASTERISERS)}")
    rep = ExportReport()
    root = Path(images_root).resolve() if images_root else None
    images = []
    frames, tracks = store.frame_table(), store.object_tracks()
    more = carry.extras(store, "images")
    for im in store.images():
        name = im.path
        if root is not None:
            name = Path(os.path.relpath(store.root / im.path, root)).as_posix()
        keep = dict(more.get(im.id, {}))
        if file_names is not None:
            name = file_names[im.id]
        if root is not None or file_names is not None:  # the file names asked for, not the ones they came with
            keep.pop("file_name", None)
        images.append({"id": im.id, "file_name": name, "width": im.width, "height": im.height, **keep})
        if im.id in frames:  # a frame of a sequence: its video and index, as COCO-video formats (TAO) have them
            images[-1].update(video_id=frames[im.id][0], frame_index=frames[im.id][1])
    rep.images = len(images)
    more = carry.extras(store, "categories")
    cats = [{"id": cid, "name": name, "supercategory": sup or name, **more.get(cid, {})}
            for cid, name, sup in store.categories()]
    unl_id = None
    anns = []
    objects = store.objects(states=("accepted",))
    more = carry.extras(store, "objects")
    # imported objects keep their annotation ids, so a round trip changes nothing; others get fresh ones
    next_id = max([o.source_id for o in objects if o.source_id is not None] + [0]) + 1
    used: set[int] = set()
    for ob in objects:
        if ob.source_id is not None and ob.source_id not in used:
            ann_id = ob.source_id
        else:
            ann_id, next_id = next_id, next_id + 1
        used.add(ann_id)
        cid = ob.category_id
        if cid is None:
            if unl_id is None:
                unl_id = max([c["id"] for c in cats], default=0) + 1
                cats.append({"id": unl_id, "name": UNLABELLED, "supercategory": UNLABELLED})
            cid = unl_id
            rep.unlabelled += 1
        seg: dict | list = {"size": ob.rle["size"], "counts": ob.rle["counts"]}
        if not ob.has_mask:  # box-only until refined: COCO's box-only form
            seg = []
            rep.boxes += 1
        elif rasteriser and not ob.iscrowd:
            poly = mask_to_polygons(ob.mask, rasteriser)
            if poly is None:
                rep.rle_fallbacks.append(ob.id)
            else:
                seg = poly
        anns.append(
            {
                "id": ann_id,
                "image_id": ob.image_id,
                "category_id": cid,
                "segmentation": seg,
                "area": ob.area,
                "bbox": _bbox(ob),
                "iscrowd": int(ob.iscrowd),
                **{k: v for k, v in more.get(ob.id, {}).items() if k not in carry.ANNOTATION_KEYS},
                EXTRA_KEY: carry.ours(ob),
            }
        )
        if ob.id in tracks:  # one object followed through a sequence: one track id on each frame's annotation
            anns[-1]["track_id"] = tracks[ob.id]
    rep.annotations = len(anns)
    kept = carry.document_extra(store)  # an imported file's info, licenses, ...
    doc = {
        "info": kept.pop("info", {"description": "exported by clicklabel", "version": "1.0"}),
        "licenses": kept.pop("licenses", []),
        "images": images,
        "annotations": anns,
        "categories": cats,
        **kept,
    }
    write_json(out, doc)
    return rep


def _bbox(ob) -> list[float]:
    """The object's box; a stored box that is not finite (projects of clicklabel 0.1 could hold one) is the
    mask's own tight box instead, so the file stays valid JSON."""
    box = [float(v) for v in ob.bbox]
    if len(box) == 4 and all(math.isfinite(v) for v in box):
        return box
    return [float(v) for v in (rle_bbox(ob.rle) or (0, 0, 0, 0))]


def write_json(path: str | Path, doc: dict) -> None:
    """A COCO document as compact JSON, atomically (strict JSON: a NaN anywhere is an error, not bare ``NaN``)."""
    try:
        text = json.dumps(doc, separators=(",", ":"), allow_nan=False)
    except ValueError:
        raise CocoError(f"not written: {path} would hold a NaN or infinite number") from None
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(text)


def write_proposals(props, image_path: Path, shape, out: str | Path) -> None:
    """Proposals of one image as a COCO file: category 'object', a score per annotation."""
    doc = {
        "images": [{"id": 1, "file_name": Path(image_path).name, "height": int(shape[0]), "width": int(shape[1])}],
        "categories": [{"id": 1, "name": "object", "supercategory": "object"}],
        "annotations": [
            {"id": i + 1, "image_id": 1, "category_id": 1, "segmentation": encode_rle(p.mask), "area": p.area,
             "bbox": list(p.bbox), "iscrowd": 0, "score": round(p.predicted_iou, 5),
             EXTRA_KEY: {"stability": round(p.stability, 5), "point": list(p.point)}}
            for i, p in enumerate(props)
        ],
    }
    write_json(out, doc)




def labels_to_coco(labels: np.ndarray, out: str | Path, file_name: str = "image.png", category: str = "object") -> int:
    """Write an instance label image (0 = background, one value per object) as a COCO file; returns the count."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise CocoError(f"expected a 2-D label image, got shape {labels.shape}")
    h, w = labels.shape
    anns = []
    for n, value in enumerate(v for v in np.unique(labels) if v != 0):
        m = labels == value
        anns.append({"id": n + 1, "image_id": 1, "category_id": 1, "segmentation": encode_rle(m),
                     "area": int(m.sum()), "bbox": [float(v) for v in tight_bbox(m)], "iscrowd": 0,
                     EXTRA_KEY: {"label_value": int(value)}})
    doc = {"images": [{"id": 1, "file_name": file_name, "width": w, "height": h}],
           "categories": [{"id": 1, "name": category, "supercategory": category}], "annotations": anns}
    write_json(out, doc)
    return len(anns)


