"""How benchmarks compare two ways of doing the same thing fairly: interleaved timing (ABAB, alternating which
side goes first, the same warm-up for both, the median of the pairs' ratios with their spread), the machine's load,
and mask agreement on fixed prompts (IoU of the masks each side gives)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..masks import mask_iou


def load_average() -> float:
    """The 1-minute load average (0 where the system has none)."""
    try:
        return float(os.getloadavg()[0])
    except (OSError, AttributeError):
        return 0.0


def ratio_text(value: float) -> str:
    """A ratio as a number people can read: 3 significant digits, never rounded to '0x'."""
    if not np.isfinite(value):
        return "n/a"
    return f"{value:.3g}x"


@dataclass
class Paired:
    """Timings of A and B taken in pairs, each pair back to back."""

    a: list[float]
    b: list[float]
    loads: list[float]

    @property
    def ratios(self) -> list[float]:
        """A's time over B's, per pair (above 1: B is faster)."""
        return [x / y for x, y in zip(self.a, self.b)]

    @property
    def ratio(self) -> float:
        return float(np.median(self.ratios))

    def spread(self) -> str:
        r = self.ratios
        return f"{ratio_text(self.ratio)} (pairs {ratio_text(min(r))}-{ratio_text(max(r))}, n={len(r)})"

    def load_text(self) -> str:
        return f"load average {min(self.loads):.1f}-{max(self.loads):.1f}"


def interleaved(run_a: Callable[[], object], run_b: Callable[[], object], pairs: int, warmup: int = 1,
                sync: Callable[[], None] = lambda: None) -> Paired:
    """Time ``run_a`` and ``run_b`` in ``pairs`` back-to-back pairs after ``warmup`` untimed runs of each; the side
    that goes first alternates (AB, BA, AB, ...) so neither always meets a cold or a warm machine."""
    for _ in range(warmup):
        run_a()
        run_b()
    sync()
    a, b, loads = [], [], []

    def timed(fn) -> float:
        t = time.perf_counter()
        fn()
        sync()
        return time.perf_counter() - t

    for i in range(pairs):
        loads.append(load_average())
        if i % 2 == 0:
            a.append(timed(run_a))
            b.append(timed(run_b))
        else:
            b.append(timed(run_b))
            a.append(timed(run_a))
    loads.append(load_average())
    return Paired(a, b, loads)


def fixed_prompts(h: int, w: int):
    """The prompts every agreement check uses on an h x w image: five points (centre, four quarters), two boxes and a
    point with a box."""
    from ..segment.base import Prompt

    cx, cy = w / 2, h / 2
    points = [(cx, cy), (w / 4, h / 4), (3 * w / 4, h / 4), (w / 4, 3 * h / 4), (3 * w / 4, 3 * h / 4)]
    boxes = [(w * 0.2, h * 0.2, w * 0.8, h * 0.8), (w * 0.05, h * 0.4, w * 0.5, h * 0.95)]
    return ([Prompt.make([p]) for p in points] + [Prompt.make(box=b) for b in boxes]
            + [Prompt.make([(cx, cy)], box=boxes[0])])


def engine_masks(engine, embedding, prompts: Sequence) -> list[np.ndarray]:
    """The engine's single mask for each prompt on ``embedding`` (the engine's current image becomes it)."""
    engine.set_embedding(embedding)
    return [engine.predict(p, multimask=False)[0].mask for p in prompts]


def ious(masks_a: Sequence[np.ndarray], masks_b: Sequence[np.ndarray]) -> list[float]:
    return [mask_iou(x, y) for x, y in zip(masks_a, masks_b)]
