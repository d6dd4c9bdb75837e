"""What a viewer needs for large images, with no Qt in it: a pyramid for a multiscale image layer, the part of a
mask inside the visible region (so a 20000 x 20000 preview is never painted whole), and the tiles' readiness and
look-ahead for the annotation session (``TileActions``, mixed into ``annotate.AnnotationSession``)."""

from __future__ import annotations

import numpy as np

from .segment.base import MaskResult
from .segment.region import RegionMask, window

PYRAMID_ABOVE = 4096  # images longer than this are shown as a pyramid (GPU textures and panning stay small)


def needs_pyramid(shape) -> bool:
    """Whether an image of ``shape`` (H, W, ...) should be shown as a multiscale layer."""
    return max(int(shape[0]), int(shape[1])) > PYRAMID_ABOVE


def pyramid(image: np.ndarray, smallest: int = 1024) -> list[np.ndarray]:
    """The image and its halvings (area averaging, uint8) down to a long side of at most ``smallest``: the levels
    of a napari multiscale layer, largest first. The first level is ``image`` itself (no copy); the rest add a
    third of its memory."""
    import cv2

    levels = [image]
    while max(levels[-1].shape[:2]) > smallest:
        h, w = levels[-1].shape[:2]
        levels.append(cv2.resize(levels[-1], (max(1, w // 2), max(1, h // 2)), interpolation=cv2.INTER_AREA))
    return levels


def view_box(corners, shape) -> tuple[int, int, int, int]:
    """The visible region (x0, y0, x1, y1) in image pixels from a viewer's corner pixels ((y0, x0), (y1, x1)),
    clipped to an image of ``shape``; at least one pixel."""
    (y0, x0), (y1, x1) = np.asarray(corners, dtype=float)[:, -2:]
    h, w = int(shape[0]), int(shape[1])
    x0, y0 = int(np.clip(np.floor(x0), 0, w - 1)), int(np.clip(np.floor(y0), 0, h - 1))
    x1, y1 = int(np.clip(np.ceil(x1), x0 + 1, w)), int(np.clip(np.ceil(y1), y0 + 1, h))
    return x0, y0, x1, y1


def visible_part(result: MaskResult, box, step: int = 1) -> tuple[np.ndarray, tuple[int, int]]:
    """The part of ``result``'s mask inside ``box`` (x0, y0, x1, y1), every ``step``-th pixel (a zoomed-out view):
    (boolean array, (x0, y0) where it goes). A region mask is read from its region, never made full size."""
    x0, y0, x1, y1 = (int(v) for v in box)
    part = window(result, box) if isinstance(result, RegionMask) else np.asarray(result.mask)[y0:y1, x0:x1]
    return part[::step, ::step], (x0, y0)


def _rle_counts(counts: str) -> np.ndarray:
    """The run lengths of COCO's compressed RLE string (pycocotools' ``rleFrString``, read in Python)."""
    runs: list[int] = []
    p, n = 0, len(counts)
    while p < n:
        x, k, more = 0, 0, True
        while more:
            c = ord(counts[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        runs.append(x)
    return np.asarray(runs, dtype=np.int64)


def rle_crop(rle: dict, bbox=None):
    """((row, col), the mask inside its tight box) of a compressed COCO RLE, decoded over its box's columns only
    (a 20000 x 20000 image's full mask is 400 MB); None when empty. ``bbox``: the tight XYWH box when known."""
    from .masks import rle_bbox

    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if not isinstance(counts, str):
        counts = counts.decode("ascii") if isinstance(counts, bytes) else None
    box = rle_bbox(rle) if bbox is None else tuple(int(round(v)) for v in bbox)
    if box is None or box[2] <= 0 or box[3] <= 0:
        return None
    x, y, bw, bh = box
    if counts is None:  # uncompressed counts (a list): pycocotools, whole
        from .masks import decode_rle

        return (y, x), np.ascontiguousarray(decode_rle(rle)[y : y + bh, x : x + bw])
    runs = _rle_counts(counts)
    ends = np.cumsum(runs)[1::2]  # the runs of ones (COCO's counts start with a run of zeros)
    starts = ends - runs[1::2]
    out = np.zeros((bh, bw), dtype=bool)
    chunk = max(1, (1 << 22) // h)  # columns decoded at a time: a few MB, whatever the image's height
    for c0 in range(x, x + bw, chunk):
        c1 = min(x + bw, c0 + chunk)
        lo, hi = c0 * h, c1 * h  # these columns, column-major as COCO counts them
        s, e = np.clip(starts, lo, hi) - lo, np.clip(ends, lo, hi) - lo
        keep = e > s
        edges = np.zeros(hi - lo + 1, np.int32)
        np.add.at(edges, s[keep], 1)
        np.add.at(edges, e[keep], -1)
        cols = (np.cumsum(edges[:-1]) > 0).reshape(c1 - c0, h)
        out[:, c0 - x : c1 - x] = cols[:, y : y + bh].T
    return (y, x), out


class TileActions:
    """The session's side of tiles (needs ``self.engine``): which are ready, and encoding ahead of the clicks."""

    engine: object

    def tile_status(self) -> tuple[int, int] | None:
        """(tiles ready, tiles in all) of the current image when the engine works on it in tiles (the status line:
        "tiles 12/96 ready"); None when the image is used whole."""
        ready = getattr(self.engine, "tiles_ready", None)
        if ready is None or getattr(self.engine, "grid", None) is None:
            return None
        flags = ready()
        return sum(flags), len(flags)

    def tile_boxes(self) -> list[tuple[tuple[int, int, int, int], bool]]:
        """Each tile's (x0, y0, x1, y1) and whether it is ready, to draw the grid; empty for a whole image."""
        grid = getattr(self.engine, "grid", None)
        if grid is None:
            return []
        return [(t.box, ok) for t, ok in zip(grid, self.engine.tiles_ready())]

    def prefetch_tiles(self, x: float, y: float, rings: int = 1, stop=None) -> int:
        """Encode the tiles within ``rings`` grid steps of (x, y) of the current image that are not cached yet,
        nearest first (a worker thread, after a click or while the view rests there); returns how many."""
        prefetch = getattr(self.engine, "prefetch_tiles", None)
        return 0 if prefetch is None else prefetch((x, y), rings=rings, stop=stop)
