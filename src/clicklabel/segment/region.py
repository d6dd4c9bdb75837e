"""Masks that live in one region of a large image: kept as the region's pixels and an offset, and made full size
only when someone asks for ``mask`` (an export, the store). A 20000 x 20000 image's full mask is 400 MB, its
tight box is known from the region alone, and a viewer paints the region only (``RegionMask.region``)."""

from __future__ import annotations

import numpy as np

from ..masks import tight_bbox
from .base import MaskResult


class RegionMask(MaskResult):
    """A ``MaskResult`` held as ``crop`` (boolean) at ``offset`` (x0, y0) in an image of ``shape`` (H, W)."""

    def __init__(self, crop: np.ndarray, offset: tuple[int, int], shape: tuple[int, int], score: float = 0.0,
                 logits: np.ndarray | None = None):
        self.crop = np.asarray(crop, dtype=bool)
        self.offset = (int(offset[0]), int(offset[1]))
        self.shape = (int(shape[0]), int(shape[1]))
        super().__init__(score=score, logits=logits, make_mask=self._full)
        self.tile = None  # the tile the prompt was decoded in (tiled engines), for refinement

    @property
    def region(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of ``crop`` in the image."""
        x0, y0 = self.offset
        return x0, y0, x0 + self.crop.shape[1], y0 + self.crop.shape[0]

    def mask_full(self) -> np.ndarray:
        """The full-size mask, made anew (not kept: a proposal's masks are made one at a time, when stored)."""
        return self._full() if self._mask is None else self._mask

    def _full(self) -> np.ndarray:
        out = np.zeros(self.shape, dtype=bool)
        x0, y0, x1, y1 = self.region
        out[y0:y1, x0:x1] = self.crop
        return out

    @property
    def bbox(self) -> tuple[int, int, int, int] | None:
        if self._bbox is False:
            b = tight_bbox(self.crop)
            self._bbox = None if b is None else (b[0] + self.offset[0], b[1] + self.offset[1], b[2], b[3])
        return self._bbox  # type: ignore[return-value]

    @property
    def area(self) -> int:
        return int(self.crop.sum())

    def tight(self) -> RegionMask:
        """The same mask with ``crop`` cut to its tight box (less to keep and to compare)."""
        b = self.bbox
        if b is None or (b[2], b[3]) == self.crop.shape[::-1]:
            return self
        x, y, w, h = b
        ox, oy = self.offset
        out = RegionMask(self.crop[y - oy : y - oy + h, x - ox : x - ox + w], (x, y), self.shape, self.score,
                         self.logits)
        out.tile = self.tile
        return out


def window(m: RegionMask, box) -> np.ndarray:
    """``m`` over the pixels of ``box`` (x0, y0, x1, y1): a boolean array of the box's size."""
    x0, y0, x1, y1 = (int(v) for v in box)
    out = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    ox, oy = m.offset
    ix0, iy0 = max(x0, ox), max(y0, oy)
    ix1, iy1 = min(x1, ox + m.crop.shape[1]), min(y1, oy + m.crop.shape[0])
    if ix1 > ix0 and iy1 > iy0:
        out[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = m.crop[iy0 - oy : iy1 - oy, ix0 - ox : ix1 - ox]
    return out


def iou_within(a: RegionMask, b: RegionMask, box) -> float:
    """IoU of two region masks over the pixels of ``box`` only (0.0 when both are empty there)."""
    wa, wb = window(a, box), window(b, box)
    union = np.logical_or(wa, wb).sum()
    return float(np.logical_and(wa, wb).sum() / union) if union else 0.0


def upscale_logits(low: np.ndarray, shape: tuple[int, int], region: tuple[int, int, int, int],
                   threshold: float = 0.0, strip: int = 512) -> np.ndarray:
    """Logits ``low`` (h, w) that cover a whole image of ``shape`` (H, W), bilinearly resized to the image (pixel
    centres aligned, as ``cv2.resize``) and cut at ``threshold``, for ``region`` (x0, y0, x1, y1) only: a boolean
    crop. Computed in strips of rows, so no float array of the whole image is ever made."""
    import cv2

    low = np.asarray(low, dtype=np.float32)
    h, w = low.shape
    big_h, big_w = shape
    x0, y0, x1, y1 = region
    out = np.zeros((y1 - y0, x1 - x0), dtype=bool)
    for r0 in range(y0, y1, strip):
        r1 = min(y1, r0 + strip)
        sy = (np.arange(r0, r1, dtype=np.float64) + 0.5) * (h / big_h) - 0.5
        sy = np.clip(sy, 0, h - 1)
        lo = np.floor(sy).astype(int)
        hi = np.minimum(lo + 1, h - 1)
        fy = (sy - lo).astype(np.float32)[:, None]
        rows = low[lo] * (1 - fy) + low[hi] * fy  # (strip, w): the vertical half of the bilinear resize
        full = cv2.resize(rows, (big_w, r1 - r0), interpolation=cv2.INTER_LINEAR)  # horizontal only
        out[r0 - y0 : r1 - y0] = full[:, x0:x1] > threshold
    return out
