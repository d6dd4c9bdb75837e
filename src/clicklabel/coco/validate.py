"""Every value of a COCO file checked before it reaches pycocotools or the store: types, finite coordinates in a
sane range of their image, sizes, RLE counts (decoded and summed here: pycocotools' C code trusts them, and a
NaN coordinate or a bad count makes it allocate gigabytes or write past its buffer). Each check raises a
one-line CocoError that names the value; the importer prefixes the item.

Segmentations come in kinds (``segmentation_kind``), each with its own reader in ``SHAPES``; a new kind is one
more entry there."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from pycocotools import mask as mask_utils

from ..errors import CocoError
from ..images import MAX_PIXELS
from ..project.schema import MAX_LABEL_CHARS

MARGIN = 0.1  # coordinates may lie this share of the image's size outside it (rasterising clips them)
MAX_OUTLINE = 4_000_000  # pixels of polygon outline per annotation: pycocotools needs ~80 bytes per pixel of it
MAX_VERTICES = 1_000_000  # per annotation
MAX_RLE_DIGITS = 6  # 5-bit groups per number in compressed counts (pycocotools writes at most 6 below 2^30)


@dataclass
class Shape:
    """What an annotation's segmentation gives: a compressed RLE at its image's size (text counts), or None for
    an annotation without a mask (a box-only annotation: its box is checked by ``box_only``)."""

    rle: dict | None


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _show(v) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def as_id(v, what: str):
    """An id: an integer (or, as some tools write, a non-empty string)."""
    if (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, str) and v and len(v) <= 200):
        return v
    raise CocoError(f"{what} {_show(v)} is a {type(v).__name__}, not an integer id")


def as_size(v, what: str) -> int:
    """A whole, positive number of pixels (``640`` or ``640.0``)."""
    if _number(v) and math.isfinite(v) and float(v).is_integer() and v >= 1:
        return int(v)
    raise CocoError(f"{what} {_show(v)} is not a whole number of pixels >= 1")


def image_size(im: dict) -> tuple[int, int]:
    """(height, width) of an image entry, within MAX_PIXELS."""
    h, w = as_size(im.get("height"), "height"), as_size(im.get("width"), "width")
    if h * w > MAX_PIXELS:
        raise CocoError(f"declared size {w}x{h} is larger than {MAX_PIXELS:,} pixels")
    return h, w


def as_name(v, what: str) -> str:
    """A category or supercategory name: non-empty text of at most MAX_LABEL_CHARS characters."""
    if not isinstance(v, str) or not v.strip():
        raise CocoError(f"{what} {_show(v)} is not a non-empty text")
    if len(v.strip()) > MAX_LABEL_CHARS:
        raise CocoError(f"{what} has {len(v.strip()):,} characters; at most {MAX_LABEL_CHARS}")
    return v.strip()


def box_numbers(v) -> tuple[float, float, float, float]:
    """An XYWH box of four finite numbers, w and h >= 0 (wherever it lies)."""
    if not isinstance(v, list) or len(v) != 4 or not all(_number(x) for x in v):
        raise CocoError(f"bbox {_show(v)} is not a list of four numbers x, y, width, height")
    x, y, bw, bh = (float(t) for t in v)
    if not all(math.isfinite(t) for t in (x, y, bw, bh)):
        raise CocoError(f"bbox {_show(v)} holds a number that is not finite")
    if bw < 0 or bh < 0:
        raise CocoError(f"bbox {_show(v)} has a negative width or height")
    return x, y, bw, bh


def bbox(v, h: int, w: int) -> tuple[float, float, float, float]:
    """An XYWH box of four finite numbers, w and h >= 0, inside the image (give or take MARGIN)."""
    x, y, bw, bh = box_numbers(v)
    if x < -MARGIN * w or y < -MARGIN * h or x + bw > (1 + MARGIN) * w or y + bh > (1 + MARGIN) * h:
        raise CocoError(f"bbox {_show(v)} lies outside its image ({w}x{h})")
    return x, y, bw, bh


def box_only(v, h: int, w: int) -> tuple[tuple[float, float, float, float], bool]:
    """The box of an annotation without a mask, and whether it was clipped. Checked like ``bbox`` (finite, at most
    MARGIN outside the image), its width and height must be > 0, and it is clipped to the image: a box reaching
    past an edge (float rounding, a box drawn over the border) keeps its part inside, and one with nothing
    inside is refused."""
    x, y, bw, bh = bbox(v, h, w)
    if not (bw > 0 and bh > 0):
        raise CocoError(f"bbox {_show(v)} of a box-only annotation has no area (width and height must be > 0)")
    x0, y0, x1, y1 = max(0.0, x), max(0.0, y), min(float(w), x + bw), min(float(h), y + bh)
    if not (x1 > x0 and y1 > y0):
        raise CocoError(f"bbox {_show(v)} lies outside its image ({w}x{h})")
    clipped = (x0, y0, x1, y1) != (x, y, x + bw, y + bh)
    return ((x0, y0, x1 - x0, y1 - y0) if clipped else (x, y, bw, bh)), clipped


# -- segmentations --------------------------------------------------------------------------------------------
def segmentation_kind(seg) -> str:
    """'polygons', 'rle' (compressed counts), 'counts' (uncompressed counts) or 'box' (no mask: box only; tools
    write it as a missing, null, empty or ``[[]]`` segmentation)."""
    if seg is None or seg == [] or seg == {} or (isinstance(seg, list) and all(p == [] for p in seg)):
        return "box"
    if isinstance(seg, list):
        return "polygons"
    if isinstance(seg, dict) and "counts" in seg and "size" in seg:
        return "counts" if isinstance(seg["counts"], list) else "rle"
    raise CocoError(f"segmentation {_show(seg)} is neither polygons nor RLE")


def _box_only(seg, h: int, w: int) -> Shape:
    return Shape(None)


def _polygons(seg: list, h: int, w: int) -> Shape:
    polys, outline, vertices = [], 0.0, 0
    for i, poly in enumerate(seg, 1):
        if not isinstance(poly, list):
            raise CocoError(f"polygon {i} is a {type(poly).__name__}, not a list of coordinates")
        if len(poly) < 6 or len(poly) % 2:
            raise CocoError(f"polygon with {len(poly) // 2} points; a polygon needs at least 3")
        bad = next((k for k, v in enumerate(poly) if not _number(v)), None)
        if bad is not None:
            v = poly[bad]
            raise CocoError(f"polygon {i}: coordinate {bad + 1} is a {type(v).__name__}, not a number: {_show(v)}")
        vertices += len(poly) // 2
        if vertices > MAX_VERTICES:
            raise CocoError(f"more than {MAX_VERTICES:,} polygon points")
        xy = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
        finite = np.isfinite(xy)
        if not finite.all():
            k = int(np.flatnonzero(~finite.ravel())[0])
            raise CocoError(f"polygon {i}: coordinate {k + 1} is {poly[k]} (not a finite number)")
        lo, hi = xy.min(axis=0), xy.max(axis=0)
        if lo[0] < -MARGIN * w or lo[1] < -MARGIN * h or hi[0] > (1 + MARGIN) * w or hi[1] > (1 + MARGIN) * h:
            raise CocoError(f"polygon {i} reaches ({hi[0]:.6g}, {hi[1]:.6g}) or ({lo[0]:.6g}, {lo[1]:.6g}), outside "
                            f"its image ({w}x{h})")
        steps = np.abs(np.diff(np.vstack([xy, xy[:1]]), axis=0)).max(axis=1)
        outline += float(steps.sum())
        if outline > MAX_OUTLINE:
            raise CocoError(f"the polygons' outline is longer than {MAX_OUTLINE:,} pixels")
        polys.append([float(v) for v in poly])
    rle = mask_utils.merge(mask_utils.frPyObjects(polys, h, w))
    return Shape({"size": [h, w], "counts": rle["counts"].decode("ascii")})


def _check_size(seg: dict, h: int, w: int) -> None:
    size = seg["size"]
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and not isinstance(v, bool)
                                                              for v in size)):
        raise CocoError(f"RLE size {_show(size)} is not [height, width]")
    if (size[0], size[1]) != (h, w):
        raise CocoError(f"RLE size {size[0]}x{size[1]} disagrees with its image, {h}x{w}")


def _from_counts(counts: np.ndarray, h: int, w: int) -> Shape:
    """Checked run lengths -> compressed RLE (pycocotools encodes them; nothing is decoded to pixels)."""
    if counts.size and counts.min() < 0:
        raise CocoError("RLE counts hold a negative run length")
    total = int(counts.sum()) if counts.size else 0
    if total != h * w:
        raise CocoError(f"RLE counts cover {total} pixels, not {h * w}")
    rle = mask_utils.frPyObjects({"size": [h, w], "counts": counts.astype(np.uint32).tolist()}, h, w)
    return Shape({"size": [h, w], "counts": rle["counts"].decode("ascii")})


def _uncompressed(seg: dict, h: int, w: int) -> Shape:
    _check_size(seg, h, w)
    counts = seg["counts"]
    bad = next((k for k, v in enumerate(counts) if not isinstance(v, int) or isinstance(v, bool)), None)
    if bad is not None:
        raise CocoError(f"RLE counts hold a {type(counts[bad]).__name__}: {_show(counts[bad])}")
    if len(counts) > h * w + 1 or any(v >= 2**32 for v in counts):
        raise CocoError("RLE counts are longer or larger than the image")
    return _from_counts(np.asarray(counts, dtype=np.int64), h, w)


def decode_counts(text: str) -> np.ndarray:
    """The run lengths of COCO's compressed RLE text (LEB128-like 5-bit groups from '0', delta-coded from the
    fourth run on), decoded in numpy with every malformation refused."""
    try:
        raw = np.frombuffer(text.encode("ascii"), dtype=np.uint8).astype(np.int64) - 48
    except UnicodeEncodeError:
        raise CocoError("RLE counts are not ASCII text") from None
    if raw.size == 0:
        return raw
    if raw.min() < 0 or raw.max() > 63:
        raise CocoError("RLE counts hold characters outside '0'..'o'")
    more = (raw & 0x20) != 0
    if more[-1]:
        raise CocoError("RLE counts end in the middle of a number")
    ends = np.flatnonzero(~more)
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths = ends - starts + 1
    if lengths.max() > MAX_RLE_DIGITS:
        raise CocoError("RLE counts hold a number too large for any image")
    shift = 5 * (np.arange(raw.size) - np.repeat(starts, lengths))
    vals = np.add.reduceat((raw & 0x1F) << shift, starts)
    vals = np.where((raw[ends] & 0x10) != 0, vals - (1 << (5 * lengths)), vals)  # sign bit of the last group
    counts = vals.copy()
    counts[3::2] = vals[1] + np.cumsum(vals[3::2]) if vals.size > 3 else counts[3::2]
    counts[4::2] = vals[2] + np.cumsum(vals[4::2]) if vals.size > 4 else counts[4::2]
    return counts


def _compressed(seg: dict, h: int, w: int) -> Shape:
    _check_size(seg, h, w)
    counts = seg["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii", "replace")
    if not isinstance(counts, str):
        raise CocoError(f"RLE counts are a {type(counts).__name__}, neither text nor a list of numbers")
    return _from_counts(decode_counts(counts), h, w)


SHAPES: dict[str, Callable[..., Shape]] = {
    "polygons": _polygons, "rle": _compressed, "counts": _uncompressed, "box": _box_only,
}


def shape(seg, h: int, w: int) -> Shape:
    """The segmentation ``seg`` of an annotation on an HxW image, checked and read by its kind's reader."""
    return SHAPES[segmentation_kind(seg)](seg, h, w)


def iscrowd(v) -> int:
    if v is None or (isinstance(v, int) and v in (0, 1)):
        return int(v or 0)
    raise CocoError(f"iscrowd {_show(v)} is neither 0 nor 1")
