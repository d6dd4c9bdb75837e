"""The promptable-segmentation interface shared by every engine (SAM, SAM 2.1, HQ-SAM, GrabCut)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from ..errors import PromptError
from ..masks import tight_bbox


@dataclass(frozen=True)
class Prompt:
    """Positive / negative points (x, y in image pixels) and at most one box (x0, y0, x1, y1)."""

    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()  # 1 = positive (object), 0 = negative (background)
    box: tuple[float, float, float, float] | None = None

    @classmethod
    def make(cls, points: Sequence = (), labels: Sequence | None = None, box: Sequence | None = None) -> Prompt:
        """Build a prompt; ``labels`` defaults to all positive."""
        pts = tuple((float(p[0]), float(p[1])) for p in points)
        labs = tuple(int(v) for v in (labels if labels is not None else [1] * len(pts)))
        bx = None if box is None else tuple(float(v) for v in box)
        return cls(pts, labs, bx)  # type: ignore[arg-type]

    def add_point(self, x: float, y: float, positive: bool = True) -> Prompt:
        """A new prompt with one more point."""
        return Prompt(self.points + ((float(x), float(y)),), self.labels + (1 if positive else 0,), self.box)

    @property
    def empty(self) -> bool:
        return not self.points and self.box is None

    def validate(self, image_shape: tuple[int, ...]) -> None:
        """Raise PromptError unless every point and the box lie inside an image of ``image_shape``."""
        h, w = int(image_shape[0]), int(image_shape[1])
        if self.empty:
            raise PromptError("empty prompt: give at least one point or a box")
        if len(self.points) != len(self.labels):
            raise PromptError(f"{len(self.points)} points but {len(self.labels)} labels")
        for (x, y), lab in zip(self.points, self.labels):
            if lab not in (0, 1):
                raise PromptError(f"point label must be 1 (positive) or 0 (negative), got {lab}")
            if not (np.isfinite(x) and np.isfinite(y)) or not (0 <= x < w and 0 <= y < h):
                raise PromptError(f"point ({x:g}, {y:g}) is outside the {w}x{h} image")
        if self.box is not None:
            if len(self.box) != 4 or not all(np.isfinite(self.box)):
                raise PromptError(f"box must be four numbers x0,y0,x1,y1, got {self.box}")
            x0, y0, x1, y1 = self.box
            if x1 <= x0 or y1 <= y0:
                raise PromptError(f"box ({x0:g},{y0:g},{x1:g},{y1:g}) needs x1 > x0 and y1 > y0")
            if x0 < 0 or y0 < 0 or x1 > w or y1 > h:
                raise PromptError(f"box ({x0:g},{y0:g},{x1:g},{y1:g}) is outside the {w}x{h} image")


class MaskResult:
    """One mask: boolean HxW, the engine's quality score, and the tight XYWH box of the mask itself.

    The full-size mask may be given, or made on first access by ``make_mask`` (SAM's second and third
    candidates are only upscaled if someone looks at them).
    """

    def __init__(
        self,
        mask: np.ndarray | None = None,
        score: float = 0.0,
        logits: np.ndarray | None = None,
        make_mask: Callable[[], np.ndarray] | None = None,
    ):
        if mask is None and make_mask is None:
            raise ValueError("MaskResult needs a mask or a way to make one")
        self._mask = None if mask is None else np.asarray(mask, dtype=bool)
        self._make_mask = make_mask
        self._bbox: tuple[int, int, int, int] | None | bool = False
        self.score = float(score)
        self.logits = logits  # low-res logits for refinement (SAM)

    @property
    def mask(self) -> np.ndarray:
        if self._mask is None:
            self._mask = np.asarray(self._make_mask(), dtype=bool)
        return self._mask

    @property
    def bbox(self) -> tuple[int, int, int, int] | None:
        """Tight XYWH box of the mask; None means the mask is empty."""
        if self._bbox is False:
            self._bbox = tight_bbox(self.mask)
        return self._bbox  # type: ignore[return-value]

    @property
    def empty(self) -> bool:
        return self.bbox is None

    @property
    def area(self) -> int:
        return int(self.mask.sum())

    def __repr__(self) -> str:
        return f"MaskResult(score={self.score:.3f}, bbox={self.bbox})"


class Engine(Protocol):
    """What every segmentation engine offers."""

    name: str  # the family: 'sam', 'sam2.1', 'hq', 'grabcut'
    model: str  # the model within the family ('vit_b', 'sam2.1_hiera_tiny', 'hq_vit_tiny', ...)
    model_id: str  # model + weights fingerprint: the embedding cache's key
    last_from_cache: bool  # whether the last ``set_image`` found its embedding cached

    def set_image(self, image: np.ndarray) -> None:
        """Make ``image`` (any kind ``images.to_rgb8`` accepts) the current image."""

    def prefetch(self, image: np.ndarray) -> None:
        """Compute and cache ``image``'s embedding without making it current (the next image, in a worker)."""

    def predict(
        self, prompt: Prompt, multimask: bool = False, previous: MaskResult | None = None
    ) -> list[MaskResult]:
        """Masks for ``prompt`` on the current image, best first (three candidates if ``multimask``)."""

    def predict_boxes(self, boxes: Sequence[Sequence[float]]) -> list[MaskResult]:
        """One mask per box, in the boxes' order."""

    def propose(self, settings, existing: list[np.ndarray] | None = None, progress=None, stop=None) -> list:
        """Every object in the current image as ``propose.Proposal``s, best first (engines that cannot propose
        raise ClickLabelError)."""
