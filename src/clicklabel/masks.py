"""Mask helpers shared by every module: tight boxes, RLE (through pycocotools), IoU, exact polygons."""

from __future__ import annotations

import re
import warnings

import numpy as np
from pycocotools import mask as mask_utils

# pycocotools' decoder hands numpy an object whose ``__array__`` takes no ``copy`` argument, and numpy 2 warns
# (DeprecationWarning) at every decode. napari's workers show every warning ("always", put first in the filters for
# the worker's run) as a pop-up, and this one tells an annotator nothing: it is ignored, for that message from
# pycocotools only. The filter is put first before each decode, in whatever filter list is in force (a worker's
# own included), without ``catch_warnings``: that swaps the process-wide filters and ``showwarning`` on exit, which
# is not safe while other threads (napari's workers) do the same.
_COPY_MESSAGE = r"__array__ implementation doesn't accept a copy keyword"
_COPY_FILTER = ("ignore", re.compile(_COPY_MESSAGE, re.I), DeprecationWarning, re.compile(r"pycocotools\b"), 0)


def _decode(rle):
    """``pycocotools.mask.decode`` without numpy 2's deprecation warning about pycocotools' own code."""
    filters = warnings.filters
    if not filters or filters[0] != _COPY_FILTER:
        warnings.filterwarnings("ignore", _COPY_MESSAGE, DeprecationWarning, r"pycocotools\b")
    return mask_utils.decode(rle)


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


def empty_rle(height: int, width: int) -> dict:
    """The compressed RLE of an empty ``height`` x ``width`` mask, made without allocating the mask."""
    rle = mask_utils.frPyObjects({"size": [height, width], "counts": [height * width]}, height, width)
    return {"size": [height, width], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: dict) -> np.ndarray:
    """Boolean HxW mask from a COCO RLE (compressed str/bytes counts, or uncompressed list counts)."""
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, list):
        rle = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    elif isinstance(counts, str):
        rle = {"size": [h, w], "counts": counts.encode("ascii")}
    return _decode(rle).astype(bool)


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


# -- polygons (COCO) --------------------------------------------------------------------------------------------------
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


# Vertices sit this far inside the pixel edges: pycocotools fills a pixel whose centre is inside the polygon, and
# the cv2.fillPoly-based readers that truncate coordinates to integers (ultralytics; supervision before 0.30.4) fill
# pixels on the outline too; with corners a quarter pixel in, both give back exactly the mask's pixels.
POLYGON_INSET = 0.25
# Readers that round coordinates to the nearest integer before cv2.fillPoly (supervision >= 0.30.4) need the right
# and bottom edges half a pixel further in than pycocotools does: no one polygon is exact in both (pycocotools wants
# a right edge in (last + 0.5, last + 1.5), rounding readers in [last - 0.5, last + 0.5)), so the export asks which.
RASTERISERS = {
    "pycocotools": "pycocotools, and cv2.fillPoly readers that truncate coordinates (ultralytics, supervision "
                   "before 0.30.4)",
    "rounding": "cv2.fillPoly readers that round coordinates (supervision 0.30.4 and later), and those that "
                "truncate (ultralytics); not pycocotools",
}


def _inset(loop: list[tuple[int, int]], far: float = POLYGON_INSET) -> list[float]:
    """A pixel-edge loop (foreground on the left) moved inward, as a flat x, y list: POLYGON_INSET from left and
    top edges, ``far`` from right and bottom ones."""
    out = []
    n = len(loop)
    for i in range(n):
        (ax, ay), (bx, by), (cx, cy) = loop[i - 1], loop[i], loop[(i + 1) % n]
        d1 = (np.sign(bx - ax), np.sign(by - ay))
        d2 = (np.sign(cx - bx), np.sign(cy - by))
        # the inward normal of a direction (dx, dy) is (dy, -dx); consecutive edges are perpendicular
        nx, ny = d1[1] + d2[1], -(d1[0] + d2[0])
        out += [float(bx + (POLYGON_INSET if nx > 0 else far) * nx),
                float(by + (POLYGON_INSET if ny > 0 else far) * ny)]
    return out


def fill_polygons(polygons, shape: tuple[int, int], rounding: bool = False) -> np.ndarray:
    """COCO polygons rasterised as cv2.fillPoly-based readers do it (coordinates truncated to int32, or rounded
    with ``rounding``; outline pixels included), each polygon filled on its own and the parts joined."""
    import cv2

    out = np.zeros(shape, np.uint8)
    for poly in polygons:
        xy = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
        cv2.fillPoly(out, [(np.round(xy) if rounding else xy).astype(np.int32)], 1)
    return out.astype(bool)


def mask_to_polygons(mask: np.ndarray, rasteriser: str = "pycocotools") -> list[list[float]] | None:
    """COCO polygons that rasterise back to exactly ``mask`` in the readers of ``rasteriser`` (``RASTERISERS``), or
    None if polygons cannot (holes, odd touches)."""
    if rasteriser not in RASTERISERS:
        raise ValueError(f"unknown rasteriser {rasteriser!r}; one of {', '.join(RASTERISERS)}")
    mask = np.asarray(mask, dtype=bool)
    loops = _boundary_loops(mask)
    outer = [lp for lp in loops if _signed_area(lp) < 0]  # image y points down: outer loops come out negative
    if len(outer) != len(loops) or not loops:
        return None  # a hole: COCO polygons are unioned by readers, so holes would be filled
    if any(len(lp) < 3 for lp in outer):
        return None
    h, w = mask.shape
    if rasteriser == "rounding":
        polys = [_inset(lp, 1 - POLYGON_INSET) for lp in outer]
        exact = np.array_equal(fill_polygons(polys, (h, w), rounding=True), mask) and \
            np.array_equal(fill_polygons(polys, (h, w)), mask)
        return polys if exact else None
    polys = [_inset(lp) for lp in outer]
    back = _decode(mask_utils.merge(mask_utils.frPyObjects(polys, h, w))).astype(bool)
    if not np.array_equal(back, mask) or not np.array_equal(fill_polygons(polys, (h, w)), mask):
        return None
    return polys
