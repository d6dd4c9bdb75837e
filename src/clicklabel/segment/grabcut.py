"""GrabCutEngine: OpenCV's GrabCut behind the engine interface. No weights: the classical baseline and the
offline fallback. A box initialises the model; points are hard foreground / background seeds."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import ClickLabelError, PromptError
from ..images import image_hash, to_rgb8
from .base import MaskResult, Prompt


class GrabCutEngine:
    """Interactive segmentation with cv2.grabCut."""

    name = "grabcut"
    model = "grabcut"
    model_id = "grabcut"

    def __init__(self, iterations: int = 5, seed_radius: int = 5, margin: float = 0.15):
        self.iterations = iterations
        self.seed_radius = seed_radius
        self.margin = margin  # with points only, the working box is the points' extent plus this share
        self.image: np.ndarray | None = None
        self.last_from_cache = False

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
        import cv2

        if self.image is None:
            raise PromptError("no image set: call set_image first")
        h, w = self.image.shape[:2]
        prompt.validate((h, w))
        x0, y0, x1, y1 = self._work_box(prompt, w, h)
        if prompt.box is not None:  # outside a box is sure background
            mask = np.full((h, w), cv2.GC_BGD, dtype=np.uint8)
        else:  # points only: the object may reach past the working box; only the image border is sure background
            mask = np.full((h, w), cv2.GC_PR_BGD, dtype=np.uint8)
            b = max(1, min(h, w) // 50)
            mask[:b], mask[-b:], mask[:, :b], mask[:, -b:] = (cv2.GC_BGD,) * 4
        mask[y0:y1, x0:x1] = cv2.GC_PR_FGD
        if previous is not None and not previous.empty and previous.mask.shape == (h, w):
            inside = mask == cv2.GC_PR_FGD
            mask[inside & ~previous.mask] = cv2.GC_PR_BGD
        r = self.seed_radius
        for (x, y), lab in zip(prompt.points, prompt.labels):
            cv2.circle(mask, (int(x), int(y)), r, int(cv2.GC_FGD if lab == 1 else cv2.GC_BGD), -1)
        bgd = np.zeros((1, 65), np.float64)
        fgd = np.zeros((1, 65), np.float64)
        bgr = np.ascontiguousarray(self.image[:, :, ::-1])
        has_bg = (mask == cv2.GC_BGD).any() or (mask == cv2.GC_PR_BGD).any()
        has_fg = (mask == cv2.GC_FGD).any() or (mask == cv2.GC_PR_FGD).any()
        if has_bg and has_fg:
            cv2.grabCut(bgr, mask, None, bgd, fgd, self.iterations, cv2.GC_INIT_WITH_MASK)
        out = (mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)
        return [MaskResult(out, 1.0)]

    def _work_box(self, prompt: Prompt, w: int, h: int) -> tuple[int, int, int, int]:
        if prompt.box is not None:
            x0, y0, x1, y1 = prompt.box
        else:
            pos = [p for p, lab in zip(prompt.points, prompt.labels) if lab == 1] or list(prompt.points)
            xs = [p[0] for p in pos]
            ys = [p[1] for p in pos]
            span = max(max(xs) - min(xs), max(ys) - min(ys), 0.4 * min(w, h))
            pad = span * (0.5 + self.margin)
            cx, cy = (max(xs) + min(xs)) / 2, (max(ys) + min(ys)) / 2
            x0, x1, y0, y1 = cx - pad, cx + pad, cy - pad, cy + pad
        x0, y0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
        x1, y1 = min(w, int(np.ceil(x1))), min(h, int(np.ceil(y1)))
        return x0, y0, max(x1, x0 + 1), max(y1, y0 + 1)

    def predict_boxes(self, boxes: Sequence[Sequence[float]]) -> list[MaskResult]:
        return [self.predict(Prompt.make(box=b))[0] for b in boxes]
