"""Every COCO read and write: export a project (RLE by default, exact polygons on request), the proposals of one
image, a label image; import any COCO file into a project (RLE compressed / uncompressed, polygons, crowd regions),
reporting every bad annotation; and the readers that viewers and the NoC benchmark use. One reader
(``read_coco_file``) and one safe image lookup (``find_image``) serve them all; every file is written atomically."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from .errors import CocoError
from .files import atomic_write
from .masks import decode_rle, encode_rle, mask_to_polygons, tight_bbox
from .project import Store

EXTRA_KEY = "clicklabel"  # our per-object fields, ignored by COCO readers
UNLABELLED = "unlabelled"


# -- export ---------------------------------------------------------------------------------------------------
@dataclass
class ExportReport:
    images: int = 0
    annotations: int = 0
    rle_fallbacks: list[int] = field(default_factory=list)
    unlabelled: int = 0


def export_coco(
    store: Store, out: str | Path, polygons: bool = False, images_root: str | Path | None = None
) -> ExportReport:
    """Write the project's accepted objects as a COCO instances file (atomically); returns what was written."""
    rep = ExportReport()
    root = Path(images_root).resolve() if images_root else None
    images = []
    for im in store.images():
        name = im.path
        if root is not None:
            name = Path(os.path.relpath(store.root / im.path, root)).as_posix()
        images.append({"id": im.id, "file_name": name, "width": im.width, "height": im.height})
    rep.images = len(images)
    cats = [{"id": cid, "name": name, "supercategory": sup or name} for cid, name, sup in store.categories()]
    unl_id = None
    anns = []
    objects = store.objects(states=("accepted",))
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
        if polygons and not ob.iscrowd:
            poly = mask_to_polygons(ob.mask)
            if poly is None:
                rep.rle_fallbacks.append(ob.id)
            else:
                seg = poly
        extra = {
            "object_id": ob.id,
            "label": ob.label,
            "supercategory": ob.supercategory,
            "label_status": ob.label_status,
            "label_confidence": ob.label_confidence,
            "provenance": ob.provenance,
            "clicks": ob.clicks,
            "seconds": ob.seconds,
            "score": ob.score,
            "engine": ob.engine,
            "model": ob.model,
            "lmm_model": ob.lmm_model,
            "tokens": ob.prompt_tokens + ob.completion_tokens,
            "cost": ob.cost,
        }
        anns.append(
            {
                "id": ann_id,
                "image_id": ob.image_id,
                "category_id": cid,
                "segmentation": seg,
                "area": ob.area,
                "bbox": [float(v) for v in ob.bbox],
                "iscrowd": int(ob.iscrowd),
                EXTRA_KEY: {k: v for k, v in extra.items() if v is not None},
            }
        )
    rep.annotations = len(anns)
    doc = {
        "info": {"description": "exported by clicklabel", "version": "1.0"},
        "licenses": [],
        "images": images,
        "annotations": anns,
        "categories": cats,
    }
    write_json(out, doc)
    return rep


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


# -- import ---------------------------------------------------------------------------------------------------
@dataclass
class ImportReport:
    images: int = 0
    annotations: int = 0
    problems: list[str] = field(default_factory=list)


def _safe_image_path(images_dir: Path, file_name: str) -> Path | None:
    """The image's path inside ``images_dir``, or None if ``file_name`` points outside it."""
    if not file_name or os.path.isabs(file_name) or file_name.startswith(("/", "\\")) or ":" in file_name[:3]:
        return None
    p = (images_dir / file_name).resolve()
    try:
        p.relative_to(images_dir.resolve())
    except ValueError:
        return None
    return p


def find_image(folders, file_name: str) -> Path | None:
    """The image ``file_name`` names, looked for inside each folder in turn (then by its base name alone, since
    exports often keep a sub-folder that copies drop); never a path outside the folders. None if not found."""
    for folder in map(Path, folders):
        for name in (str(file_name), Path(str(file_name)).name):
            p = _safe_image_path(folder, name)
            if p is not None and p.is_file():
                return p
    return None


def read_coco_file(path: str | Path) -> dict:
    """A COCO file's document, with its top-level structure checked (one-line CocoError otherwise)."""
    try:
        doc = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise CocoError(f"COCO file not found: {path}") from None
    except json.JSONDecodeError as exc:
        raise CocoError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise CocoError(f"{path} is not a COCO file (its top level is not an object)")
    for key in ("images", "annotations"):
        if not isinstance(doc.get(key), list):
            raise CocoError(f"{path}: missing or malformed top-level key {key!r}")
    if not isinstance(doc.get("categories", []), list):
        raise CocoError(f"{path}: malformed top-level key 'categories'")
    return doc


def _segmentation_to_rle(seg, h: int, w: int, ann_id) -> dict:
    if isinstance(seg, list):
        if not seg:
            raise CocoError(f"annotation {ann_id}: empty polygon list")
        for poly in seg:
            if not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2:
                n = len(poly) // 2 if isinstance(poly, list) else 0
                raise CocoError(f"annotation {ann_id}: polygon with {n} points; a polygon needs at least 3")
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
        return encode_rle(mask_utils.decode(rle).astype(bool))
    if isinstance(seg, dict) and "counts" in seg and "size" in seg:
        sh, sw = (int(v) for v in seg["size"])
        if (sh, sw) != (h, w):
            raise CocoError(f"annotation {ann_id}: RLE size {sh}x{sw} disagrees with its image, {h}x{w}")
        if isinstance(seg["counts"], list):
            if sum(seg["counts"]) != h * w:
                raise CocoError(f"annotation {ann_id}: RLE counts cover {sum(seg['counts'])} pixels, not {h * w}")
            return encode_rle(decode_rle(seg))
        counts = seg["counts"]
        try:
            m = decode_rle({"size": [h, w], "counts": counts})
        except Exception:
            raise CocoError(f"annotation {ann_id}: RLE counts cannot be decoded") from None
        return {"size": [h, w], "counts": counts if isinstance(counts, str) else counts.decode("ascii")} \
            if m.shape == (h, w) else encode_rle(m)
    raise CocoError(f"annotation {ann_id}: segmentation is neither polygons nor RLE")


def import_coco(
    coco_json: str | Path, images_dir: str | Path, store: Store, strict: bool = False
) -> ImportReport:
    """Import a COCO instances file into ``store``. Bad annotations are reported by id and skipped; with
    ``strict``, any problem raises CocoError and nothing is imported."""
    doc = read_coco_file(coco_json)
    if not isinstance(doc.get("categories"), list):
        raise CocoError(f"{coco_json}: missing or malformed top-level key 'categories'")
    images_dir = Path(images_dir)
    rep = ImportReport()
    with store.transaction():
        cats = {}
        for c in doc["categories"]:
            if "id" not in c or "name" not in c:
                rep.problems.append(f"category {c.get('id')}: missing id or name")
                continue
            cats[c["id"]] = (c["name"], c.get("supercategory"))
        image_ids: dict = {}
        for im in doc["images"]:
            iid = im.get("id")
            missing = [k for k in ("id", "file_name", "width", "height") if k not in im]
            if missing:
                rep.problems.append(f"image {iid}: missing key {missing[0]!r}")
                continue
            if _safe_image_path(images_dir, str(im["file_name"])) is None:
                rep.problems.append(f"image {iid}: file_name {im['file_name']!r} points outside {images_dir}; refused")
                continue
            path = find_image([images_dir], im["file_name"])
            if path is None:
                rep.problems.append(f"image {iid}: file {im['file_name']!r} not found in {images_dir}")
                continue
            image_ids[iid] = (store.add_image(path, im["width"], im["height"]), int(im["height"]), int(im["width"]))
            rep.images += 1
        seen = set()
        for ann in doc["annotations"]:
            aid = ann.get("id")
            try:
                for k in ("id", "image_id", "category_id", "segmentation"):
                    if k not in ann:
                        raise CocoError(f"annotation {aid}: missing key {k!r}")
                if aid in seen:
                    raise CocoError(f"annotation {aid}: duplicate id")
                seen.add(aid)
                if ann["category_id"] not in cats:
                    raise CocoError(f"annotation {aid}: unknown category id {ann['category_id']}")
                if ann["image_id"] not in image_ids:
                    raise CocoError(f"annotation {aid}: its image {ann['image_id']} is missing or was refused")
                sid, h, w = image_ids[ann["image_id"]]
                rle = _segmentation_to_rle(ann["segmentation"], h, w, aid)
                name, sup = cats[ann["category_id"]]
                store._category_id(name, sup, ann["category_id"])
                bbox = ann.get("bbox")
                if not (isinstance(bbox, list) and len(bbox) == 4):
                    bbox = tight_bbox(decode_rle(rle)) or (0, 0, 0, 0)
                store.accept(
                    sid, rle=rle, provenance="imported", label=name, supercategory=sup,
                    iscrowd=int(ann.get("iscrowd", 0)), bbox=tuple(bbox),
                    source_id=aid if isinstance(aid, int) else None, event="import",
                )
                rep.annotations += 1
            except CocoError as exc:
                rep.problems.append(str(exc))
        if strict and rep.problems:
            first = "; ".join(rep.problems[:5])
            raise CocoError(f"{len(rep.problems)} problem(s), nothing imported (--strict): {first}")
    return rep


# -- readers and writers for viewers and benchmarks --------------------------------------------------------------
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


@dataclass
class Instance:
    """One annotation of a COCO file as a mask, with its box and category name."""

    annotation_id: object
    mask: np.ndarray
    bbox: tuple[float, float, float, float]
    category: str
    iscrowd: bool


def _instances(doc: dict, im: dict, h: int, w: int) -> list[Instance]:
    names = {c.get("id"): c.get("name", "?") for c in doc.get("categories", []) if isinstance(c, dict)}
    out = []
    for a in doc["annotations"]:
        if not isinstance(a, dict) or a.get("image_id") != im.get("id"):
            continue
        try:
            mask = decode_rle(_segmentation_to_rle(a["segmentation"], h, w, a.get("id")))
        except (CocoError, KeyError, TypeError, ValueError):
            continue
        box = tight_bbox(mask)
        bbox = a.get("bbox") if isinstance(a.get("bbox"), list) and len(a["bbox"]) == 4 else box or (0, 0, 0, 0)
        out.append(Instance(a.get("id"), mask, tuple(float(v) for v in bbox), names.get(a.get("category_id"), "?"),
                            bool(a.get("iscrowd"))))
    return out


def _size(path: Path, im) -> tuple[int, int]:
    try:
        return int(im["height"]), int(im["width"])
    except (KeyError, TypeError, ValueError):
        raise CocoError(f"{path}: image {im.get('id') if isinstance(im, dict) else im!r} has no usable size") from None


def image_instances(path: str | Path, image_index: int = 0) -> tuple[Path | None, tuple[int, int], list[Instance]]:
    """One image of a COCO file: its file (beside the COCO file or in images/, None if not found), its (H, W) and
    its readable annotations (bad ones are left out)."""
    path = Path(path)
    doc = read_coco_file(path)
    if not 0 <= image_index < len(doc["images"]):
        raise CocoError(f"{path} has no image {image_index + 1}")
    im = doc["images"][image_index]
    h, w = _size(path, im)
    return find_image([path.parent, path.parent / "images"], im.get("file_name", "")), (h, w), _instances(doc, im, h, w)


def iter_instances(path: str | Path):
    """(image file, Instance) for every readable annotation of a COCO file whose image is found beside the file
    or in images/ (the NoC benchmark's reader)."""
    path = Path(path)
    doc = read_coco_file(path)
    for im in doc["images"]:
        image = find_image([path.parent, path.parent / "images"], im.get("file_name", "")) \
            if isinstance(im, dict) else None
        if image is None:
            continue
        h, w = _size(path, im)
        for inst in _instances(doc, im, h, w):
            yield image, inst
