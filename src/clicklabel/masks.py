"""Mask helpers shared by every module: tight boxes, RLE (through pycocotools), IoU."""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils


def tight_bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight XYWH box (COCO convention, integer pixels) of a boolean mask, or None if the mask is empty."""
    m = np.asarray(mask, dtype=bool)
    rows = np.flatnonzero(m.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(m.any(axis=0))
    y0, y1 = int(rows[0]), int(rows[-1])
    x0, x1 = int(cols[0]), int(cols[-1])
    return (x0, y0, x1 - x0 + 1, y1 - y0 + 1)


def encode_rle(mask: np.ndarray) -> dict:
    """COCO compressed RLE of a boolean mask, with ``counts`` as a str (JSON-ready)."""
    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"]}


def decode_rle(rle: dict) -> np.ndarray:
    """Boolean HxW mask from a COCO RLE (compressed str/bytes counts, or uncompressed list counts)."""
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, list):
        rle = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    elif isinstance(counts, str):
        rle = {"size": [h, w], "counts": counts.encode("ascii")}
    return mask_utils.decode(rle).astype(bool)


def rle_area(rle: dict) -> int:
    """Pixel count of an RLE mask without decoding it."""
    r = dict(rle)
    if isinstance(r["counts"], str):
        r["counts"] = r["counts"].encode("ascii")
    return int(mask_utils.area(r))


def rle_bbox(rle: dict) -> tuple[int, int, int, int] | None:
    """Tight XYWH box of an RLE mask without decoding it (None if empty)."""
    r = dict(rle)
    if isinstance(r["counts"], str):
        r["counts"] = r["counts"].encode("ascii")
    if int(mask_utils.area(r)) == 0:
        return None
    x, y, w, h = (int(round(v)) for v in mask_utils.toBbox(r))
    return (x, y, w, h)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two boolean masks (1.0 when both are empty)."""
    a = np.asarray(a, dtype=bool)
    b = np.asarray(b, dtype=bool)
    union = np.logical_or(a, b).sum()
    if union == 0:
        return 1.0
    return float(np.logical_and(a, b).sum() / union)


def box_iou(a, b) -> float:
    """IoU of two XYWH boxes."""
    ax0, ay0, aw, ah = a
    bx0, by0, bw, bh = b
    ix = max(0.0, min(ax0 + aw, bx0 + bw) - max(ax0, bx0))
    iy = max(0.0, min(ay0 + ah, by0 + bh) - max(ay0, by0))
    inter = ix * iy
    union = aw * ah + bw * bh - inter
    return float(inter / union) if union > 0 else 0.0
