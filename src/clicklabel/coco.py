"""COCO instance annotations: export a project (RLE by default, exact polygons on request) and import any COCO
file into a project (RLE compressed / uncompressed, polygons, crowd regions), reporting every bad annotation."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from .errors import CocoError
from .masks import decode_rle, encode_rle, tight_bbox
from .store import Store

EXTRA_KEY = "clicklabel"  # our per-object fields, ignored by COCO readers
UNLABELLED = "unlabelled"


# -- polygons --------------------------------------------------------------------------------------------------
def _boundary_loops(mask: np.ndarray) -> list[list[tuple[int, int]]]:
    """Closed loops of pixel-corner vertices along the mask's boundary (foreground on the left).

    Polygons through pixel corners with only horizontal and vertical edges rasterise back to exactly the same
    pixels, unlike contours through pixel centres.
    """
    m = np.pad(np.asarray(mask, dtype=bool), 1)
    edges: dict[tuple[int, int], list[tuple[int, int]]] = {}

    def add(a, b):
        edges.setdefault(a, []).append(b)

    ys, xs = np.nonzero(m[1:-1, 1:-1])
    for y, x in zip(ys.tolist(), xs.tolist()):
        py, px = y + 1, x + 1
        if not m[py - 1, px]:
            add((x + 1, y), (x, y))  # top edge, right to left
        if not m[py + 1, px]:
            add((x, y + 1), (x + 1, y + 1))  # bottom edge, left to right
        if not m[py, px - 1]:
            add((x, y), (x, y + 1))  # left edge, downwards
        if not m[py, px + 1]:
            add((x + 1, y + 1), (x + 1, y))  # right edge, upwards
    loops = []
    while edges:
        start = next(iter(edges))
        loop = [start]
        cur = start
        prev_dir = None
        while True:
            outs = edges[cur]
            if len(outs) > 1 and prev_dir is not None:  # a pixel-corner touch: keep turning the same way
                outs.sort(key=lambda n: _turn(prev_dir, (n[0] - cur[0], n[1] - cur[1])))
            nxt = outs.pop(0)
            if not outs:
                del edges[cur]
            prev_dir = (nxt[0] - cur[0], nxt[1] - cur[1])
            cur = nxt
            if cur == start:
                break
            loop.append(cur)
        loops.append(_simplify(loop))
    return loops


def _turn(d_in, d_out) -> int:
    cross = d_in[0] * d_out[1] - d_in[1] * d_out[0]
    return 0 if cross < 0 else (1 if cross == 0 else 2)


def _simplify(loop: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Drop vertices in the middle of straight runs."""
    out = []
    n = len(loop)
    for i in range(n):
        a, b, c = loop[i - 1], loop[i], loop[(i + 1) % n]
        if (b[0] - a[0]) * (c[1] - b[1]) - (b[1] - a[1]) * (c[0] - b[0]) != 0:
            out.append(b)
    return out or loop


def _signed_area(loop) -> float:
    return 0.5 * sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(loop, loop[1:] + loop[:1]))


def mask_to_polygons(mask: np.ndarray) -> list[list[float]] | None:
    """COCO polygons that rasterise back to exactly ``mask``, or None if polygons cannot (holes, odd touches)."""
    loops = _boundary_loops(mask)
    outer = [lp for lp in loops if _signed_area(lp) < 0]  # image y points down: outer loops come out negative
    if len(outer) != len(loops) or not loops:
        return None  # a hole: COCO polygons are unioned by readers, so holes would be filled
    polys = [[float(v) for xy in lp for v in xy] for lp in outer]
    if any(len(p) < 6 for p in polys):
        return None
    h, w = mask.shape
    back = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polys, h, w))).astype(bool)
    return polys if np.array_equal(back, np.asarray(mask, dtype=bool)) else None


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
            "coarse": ob.coarse,
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
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.part")
    with open(tmp, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
    os.replace(tmp, out)
    return rep


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
    try:
        doc = json.loads(Path(coco_json).read_text())
    except FileNotFoundError:
        raise CocoError(f"COCO file not found: {coco_json}") from None
    except json.JSONDecodeError as exc:
        raise CocoError(f"{coco_json} is not valid JSON ({exc})") from None
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc.get(key), list):
            raise CocoError(f"{coco_json}: missing or malformed top-level key {key!r}")
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
            path = _safe_image_path(images_dir, str(im["file_name"]))
            if path is None:
                rep.problems.append(f"image {iid}: file_name {im['file_name']!r} points outside {images_dir}; refused")
                continue
            if not path.is_file():  # exports often keep a sub-folder (JPEGImages/...) that copies drop
                path = _safe_image_path(images_dir, Path(str(im["file_name"])).name)
            if path is None or not path.is_file():
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
                    sid, rle=rle, provenance="imported", label=name, coarse=sup, iscrowd=int(ann.get("iscrowd", 0)),
                    bbox=tuple(bbox), source_id=aid if isinstance(aid, int) else None, event="import",
                )
                rep.annotations += 1
            except CocoError as exc:
                rep.problems.append(str(exc))
        if strict and rep.problems:
            first = "; ".join(rep.problems[:5])
            raise CocoError(f"{len(rep.problems)} problem(s), nothing imported (--strict): {first}")
    return rep


# -- layers for viewers (the napari reader and writer call these) ------------------------------------------------
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
    out = Path(out)
    tmp = out.with_name(f".{out.name}.part")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, out)
    return len(anns)


def coco_layers(path: str | Path, image_index: int = 0) -> list[tuple[str, object, dict]]:
    """(kind, data, metadata) for a viewer: one image of a COCO file (if found beside the file or in images/),
    its instances as a label image, and its boxes as rectangles named by category."""
    from .images import load_image

    path = Path(path)
    doc = json.loads(path.read_text())
    if not doc.get("images"):
        raise CocoError(f"{path} has no images")
    im = doc["images"][image_index]
    h, w = int(im["height"]), int(im["width"])
    names = {c["id"]: c["name"] for c in doc.get("categories", [])}
    labels = np.zeros((h, w), np.int32)
    rects, texts = [], []
    anns = [a for a in doc.get("annotations", []) if a.get("image_id") == im["id"]]
    for n, a in enumerate(anns):
        try:
            rle = _segmentation_to_rle(a["segmentation"], h, w, a.get("id"))
        except (CocoError, KeyError):
            continue
        labels[decode_rle(rle)] = n + 1
        x, y, bw, bh = a.get("bbox") or tight_bbox(decode_rle(rle))
        rects.append(np.array([[y, x], [y, x + bw], [y + bh, x + bw], [y + bh, x]]))
        texts.append(names.get(a.get("category_id"), "?"))
    layers: list[tuple[str, object, dict]] = []
    for folder in (path.parent, path.parent / "images"):
        candidate = _safe_image_path(folder, str(im["file_name"]))
        if candidate is not None and not candidate.is_file():
            candidate = _safe_image_path(folder, Path(str(im["file_name"])).name)
        if candidate is not None and candidate.is_file():
            layers.append(("image", load_image(candidate), {"name": candidate.stem}))
            break
    layers.append(("labels", labels, {"name": f"{path.stem} instances"}))
    if rects:
        layers.append(("shapes", rects, {"name": f"{path.stem} boxes", "shape_type": "rectangle",
                                         "edge_color": "yellow", "face_color": "transparent",
                                         "features": {"label": texts},
                                         "text": {"string": "{label}", "anchor": "upper_left", "color": "yellow"}}))
    return layers
