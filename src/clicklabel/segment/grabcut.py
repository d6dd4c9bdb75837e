"""GrabCutEngine: OpenCV's GrabCut behind the engine interface. No weights: the classical baseline and the
offline fallback. A box initialises the model; points are hard foreground / background seeds.

GrabCut never works on the whole image, only on the prompt's neighbourhood: a box plus a margin, or for clicks
alone a window around them (the points' extent, at least ``first_window`` pixels, plus a margin, and a quarter of
that around it), grown while the mask reaches the window's edge (at most twice, up to 0.4 of the image's short
side). Its cost grows with the pixels it is given (seconds a megapixel, far more on smooth or noisy backgrounds),
so a region larger than ``max_pixels`` is cut at a lower scale first (coarse pass, 3 iterations), then once more at
the finest scale the budget allows on the coarse mask's own box, deciding only a band around the coarse edge (fine
pass). The mask always comes back at the image's native size; outside the region it is empty."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import ClickLabelError, PromptError
from ..images import image_hash, to_rgb8
from .base import MaskResult, Prompt

Region = tuple[int, int, int, int]  # x0, y0, x1, y1 in image pixels (end exclusive)


class GrabCutEngine:
    """Interactive segmentation with cv2.grabCut on the prompt's neighbourhood."""

    name = "grabcut"
    model = "grabcut"
    model_id = "grabcut"

    def __init__(self, iterations: int = 5, seed_radius: int = 5, margin: float = 0.15,
                 max_pixels: int = 200_000, first_window: float | None = 400):
        self.iterations = iterations
        self.seed_radius = seed_radius
        self.margin = margin  # with points only, the working box is the points' extent plus this share
        self.max_pixels = max_pixels  # GrabCut's budget per pass: a larger region is cut at a lower scale
        # clicks alone: the first window's span in pixels; grown 2.5x while the mask reaches the window's edge (or
        # holds no more than the seeds: a window inside a uniform object gives GrabCut no background to tell apart)
        self.first_window = first_window
        self.max_growth = 2  # at most two larger windows (the last one the largest: 0.4 of the short side)
        self.image: np.ndarray | None = None
        self.last_from_cache = False
        self.last_regions: list[tuple[Region, float]] = []  # the passes of the last prompt: (region, scale)

    def set_image(self, image: np.ndarray) -> None:
        self.image = to_rgb8(image)

    def prefetch(self, image: np.ndarray) -> None:
        """Nothing to compute ahead: GrabCut works on the pixels."""

    def propose(self, settings, existing=None, progress=None, stop=None) -> list:
        raise ClickLabelError("GrabCut cannot propose objects; load a SAM model to use auto-propose")

    def embedding_key(self, image: np.ndarray) -> str:
        return image_hash(image)

    def predict(self, prompt: Prompt, multimask: bool = False, previous: MaskResult | None = None) -> list[MaskResult]:
        """One mask (GrabCut has no candidates); ``previous`` seeds the model's probable labels."""
        if self.image is None:
            raise PromptError("no image set: call set_image first")
        h, w = self.image.shape[:2]
        prompt.validate((h, w))
        prev = previous.mask if previous is not None and not previous.empty and \
            previous.mask.shape == (h, w) else None
        self.last_regions = []
        span, grown = self.first_window, 0
        while True:  # clicks alone: a window that grows while the object reaches its edge
            work = self._work_box(prompt, w, h, span)
            region = self._region(prompt, work, w, h)
            scale = self._scale(region)
            cut = self._cut(prompt, region, work, scale, prev=prev, iterations=3 if scale < 1.0 else None)
            near = int(np.ceil(3 / scale))  # the region's edge band is sure background: 'reaches' = comes this near
            seeds = 1.5 * np.pi * self.seed_radius**2 * sum(prompt.labels)  # no more than the seeds: nothing found
            if prompt.box is not None or span is None or \
                    not (_touches_inner_edge(cut, region, w, h, near) or cut.sum() <= seeds):
                break
            grown += 1
            span = None if 2.5 * span >= 0.4 * min(w, h) or grown >= self.max_growth else 2.5 * span
        if scale < 1.0 and cut.any():  # the fine pass: the coarse mask's box, at the finest scale the budget allows
            fine = _grow(_box_of(cut, region), 0.1, 16, region)
            fine_scale = self._scale(fine)
            if fine_scale >= 1.5 * scale:
                fx0, fy0, fx1, fy1 = fine
                rx0, ry0 = region[:2]
                init = cut[fy0 - ry0 : fy1 - ry0, fx0 - rx0 : fx1 - rx0]
                band = max(2, int(np.ceil(1.5 / scale)))
                cut_fine = self._cut(prompt, fine, work, fine_scale, prev=None, init=(init, band))
                cut[:] = False
                cut[fy0 - ry0 : fy1 - ry0, fx0 - rx0 : fx1 - rx0] = cut_fine
        out = np.zeros((h, w), dtype=bool)
        x0, y0, x1, y1 = region
        out[y0:y1, x0:x1] = cut
        return [MaskResult(out, 1.0)]

    def _scale(self, region: Region) -> float:
        n = (region[2] - region[0]) * (region[3] - region[1])
        return 1.0 if n <= self.max_pixels else float(np.sqrt(self.max_pixels / n))

    def _region(self, prompt: Prompt, work: Region, w: int, h: int) -> Region:
        """Where GrabCut looks: a box plus a margin (outside the box is sure background, so a little context for
        the background model is enough), or the clicks' working box plus a quarter of it on each side."""
        if prompt.box is not None:
            return _grow(work, 0.1, 16, (0, 0, w, h))
        return _grow(work, 0.25, 16, (0, 0, w, h))

    def _cut(self, prompt: Prompt, region: Region, work: Region, scale: float, prev=None, init=None,
             iterations: int | None = None) -> np.ndarray:
        """GrabCut on ``region`` at ``scale``: the region's boolean mask at native size. ``init`` = (mask, band):
        the fine pass, where only a band of ``band`` pixels around ``mask``'s edge is left to decide."""
        import cv2

        self.last_regions.append((region, scale))
        h, w = self.image.shape[:2]
        x0, y0, x1, y1 = region
        rw, rh = x1 - x0, y1 - y0
        sw, sh = max(1, round(rw * scale)), max(1, round(rh * scale))
        crop = self.image[y0:y1, x0:x1]
        if (sw, sh) != (rw, rh):
            crop = cv2.resize(crop, (sw, sh), interpolation=cv2.INTER_AREA)

        def to_small(v: float, origin: int, size: int, small: int) -> int:
            return int(np.clip(np.floor((v - origin) * small / size), 0, small))

        def small_box(b) -> tuple[int, int, int, int]:
            return (to_small(b[0], x0, rw, sw), to_small(b[1], y0, rh, sh),
                    max(to_small(b[2], x0, rw, sw), to_small(b[0], x0, rw, sw) + 1),
                    max(to_small(b[3], y0, rh, sh), to_small(b[1], y0, rh, sh) + 1))

        if init is not None:
            mask = self._band_labels(init, (sw, sh))
        elif prompt.box is not None:  # outside a box is sure background
            mask = np.full((sh, sw), cv2.GC_BGD, dtype=np.uint8)
        else:  # points only: the object may reach past the working box; the region's edge is sure background
            mask = np.full((sh, sw), cv2.GC_PR_BGD, dtype=np.uint8)
            b = max(1, min(h, w) // 50)
            edge = [max(1, round(b * scale)) if side_on_image else 2 for side_on_image in
                    (y0 == 0, y1 == h, x0 == 0, x1 == w)]
            mask[: edge[0]], mask[sh - edge[1]:] = cv2.GC_BGD, cv2.GC_BGD
            mask[:, : edge[2]], mask[:, sw - edge[3]:] = cv2.GC_BGD, cv2.GC_BGD
        if prompt.box is not None:
            bx0, by0, bx1, by1 = small_box(prompt.box)
            outside = np.ones((sh, sw), bool)
            outside[by0:by1, bx0:bx1] = False
            if init is None:
                mask[by0:by1, bx0:bx1] = cv2.GC_PR_FGD
            mask[outside] = cv2.GC_BGD
        elif init is None:
            wx0, wy0, wx1, wy1 = small_box(work)
            mask[wy0:wy1, wx0:wx1] = np.where(mask[wy0:wy1, wx0:wx1] == cv2.GC_BGD, cv2.GC_BGD, cv2.GC_PR_FGD)
        if prev is not None:
            p = prev[y0:y1, x0:x1]
            if (sw, sh) != (rw, rh):
                p = cv2.resize(p.astype(np.uint8), (sw, sh), interpolation=cv2.INTER_NEAREST).astype(bool)
            mask[(mask == cv2.GC_PR_FGD) & ~p] = cv2.GC_PR_BGD
        r = max(1, round(self.seed_radius * scale))
        for (px, py), lab in zip(prompt.points, prompt.labels):
            if x0 <= px < x1 and y0 <= py < y1:
                c = (to_small(px, x0, rw, sw), to_small(py, y0, rh, sh))
                cv2.circle(mask, c, r, int(cv2.GC_FGD if lab == 1 else cv2.GC_BGD), -1)
        has_bg = (mask == cv2.GC_BGD).any() or (mask == cv2.GC_PR_BGD).any()
        has_fg = (mask == cv2.GC_FGD).any() or (mask == cv2.GC_PR_FGD).any()
        if has_bg and has_fg:
            bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
            bgr = np.ascontiguousarray(crop[:, :, ::-1])
            cv2.grabCut(bgr, mask, None, bgd, fgd, min(self.iterations, iterations or self.iterations),
                        cv2.GC_INIT_WITH_MASK)
        out = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
        if (sw, sh) != (rw, rh):  # back to native size: the 0/255 mask resized bilinearly, cut at half
            out = cv2.resize(out.astype(np.uint8) * 255, (rw, rh), interpolation=cv2.INTER_LINEAR) >= 128
        return out

    @staticmethod
    def _band_labels(init, size) -> np.ndarray:
        """Labels of the fine pass: sure foreground deep inside the coarse mask, sure background far outside it,
        probable labels in a band of ``band`` native pixels around its edge."""
        import cv2

        coarse, band = init
        sw, sh = size
        m = coarse.astype(np.uint8)
        if (sw, sh) != (m.shape[1], m.shape[0]):
            band = max(1, round(band * sw / m.shape[1]))
            m = cv2.resize(m, (sw, sh), interpolation=cv2.INTER_NEAREST)
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
        inner = cv2.erode(m, kernel).astype(bool)
        outer = cv2.dilate(m, kernel).astype(bool)
        labels = np.full((sh, sw), cv2.GC_BGD, dtype=np.uint8)
        labels[outer] = cv2.GC_PR_BGD
        labels[m.astype(bool)] = cv2.GC_PR_FGD
        labels[inner] = cv2.GC_FGD
        return labels

    def _work_box(self, prompt: Prompt, w: int, h: int, span: float | None = None) -> Region:
        """The box, or a square around the positive clicks: their extent, at least ``span`` pixels (default 0.4 of
        the image's short side), plus the margin."""
        if prompt.box is not None:
            x0, y0, x1, y1 = prompt.box
        else:
            pos = [p for p, lab in zip(prompt.points, prompt.labels) if lab == 1] or list(prompt.points)
            xs = [p[0] for p in pos]
            ys = [p[1] for p in pos]
            least = 0.4 * min(w, h) if span is None else min(span, 0.4 * min(w, h))
            span = max(max(xs) - min(xs), max(ys) - min(ys), least)
            pad = span * (0.5 + self.margin)
            cx, cy = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2
            x0, x1, y0, y1 = cx - pad, cx + pad, cy - pad, cy + pad
        x0, y0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
        x1, y1 = min(w, int(np.ceil(x1))), min(h, int(np.ceil(y1)))
        return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)

    def predict_boxes(self, boxes: Sequence[Sequence[float]]) -> list[MaskResult]:
        return [self.predict(Prompt.make(box=b))[0] for b in boxes]


def _grow(box: Region, share: float, least: int, limit: Region) -> Region:
    """``box`` grown by ``share`` of its size (at least ``least`` pixels) on each side, clipped to ``limit``."""
    x0, y0, x1, y1 = box
    mx, my = max(least, int(share * (x1 - x0))), max(least, int(share * (y1 - y0)))
    return (max(limit[0], x0 - mx), max(limit[1], y0 - my), min(limit[2], x1 + mx), min(limit[3], y1 + my))


def _touches_inner_edge(mask: np.ndarray, region: Region, w: int, h: int, near: int) -> bool:
    """Whether ``mask`` (of ``region``) comes within ``near`` pixels of an edge of the region that is not the image's
    border."""
    x0, y0, x1, y1 = region
    return bool((y0 > 0 and mask[:near].any()) or (y1 < h and mask[-near:].any()) or
                (x0 > 0 and mask[:, :near].any()) or (x1 < w and mask[:, -near:].any()))


def _box_of(mask: np.ndarray, region: Region) -> Region:
    """The tight box (x0, y0, x1, y1, end exclusive) in image pixels of a non-empty mask of ``region``."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return (region[0] + int(cols[0]), region[1] + int(rows[0]), region[0] + int(cols[-1]) + 1,
            region[1] + int(rows[-1]) + 1)
