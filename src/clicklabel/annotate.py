"""The annotation session: the state and actions behind the napari widget, with no Qt in it.

One object at a time: prompts (points, a box) give a preview mask from the engine; ``accept`` writes it to the
store in one transaction with its provenance, clicks and seconds from first prompt to accept. Manual boxes and
polygons are accepted the same way (provenance ``manual``). Undo / redo go through the store.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .errors import ClickLabelError, PromptError
from .images import load_image
from .segment.base import MaskResult, Prompt
from .store import ImageRecord, Store


@dataclass
class PromptState:
    """The object being prompted: its prompt, SAM's candidates, which one is shown, and when it started."""

    prompt: Prompt = field(default_factory=Prompt)
    candidates: list[MaskResult] = field(default_factory=list)
    shown: int = 0
    started: float | None = None

    @property
    def preview(self) -> MaskResult | None:
        return self.candidates[self.shown] if self.candidates else None


class AnnotationSession:
    """A project, an engine, and the image being annotated."""

    def __init__(self, store: Store, engine):
        self.store = store
        self.engine = engine
        self.images: list[ImageRecord] = store.images()
        self.index = -1
        self.image: np.ndarray | None = None
        self.state = PromptState()

    # -- images ---------------------------------------------------------------------------------------------
    @property
    def current(self) -> ImageRecord | None:
        return self.images[self.index] if 0 <= self.index < len(self.images) else None

    def load(self, index: int) -> np.ndarray:
        """Read image ``index`` from disk (fast; no model work)."""
        if not 0 <= index < len(self.images):
            raise ClickLabelError(f"no image {index + 1} (the project has {len(self.images)})")
        return load_image(self.store.image_path(self.images[index]))

    def embed(self, image: np.ndarray) -> None:
        """Compute or fetch the image's embedding (seconds on a CPU the first time): run it off the UI thread."""
        self.engine.set_image(image)

    def show(self, index: int, image: np.ndarray) -> None:
        """Make image ``index`` current (after ``embed``)."""
        self.index = index
        self.image = image
        self.state = PromptState()
        if self.images[index].status == "todo":
            self.store.set_image_status(self.images[index].id, "in progress")
            self.images = self.store.images()

    def progress(self) -> tuple[int, int]:
        """(images done, images in all)."""
        return sum(1 for im in self.images if im.status == "done"), len(self.images)

    def mark_done(self) -> None:
        if self.current is not None:
            self.store.set_image_status(self.current.id, "done")
            self.images = self.store.images()

    # -- prompting ------------------------------------------------------------------------------------------
    def set_prompt(self, prompt: Prompt) -> MaskResult:
        """Predict the preview for ``prompt``. When it adds to the previous prompt, SAM refines the previous
        mask (its low-res logits go back in); a single click offers SAM's three candidates."""
        if self.image is None:
            raise PromptError("open an image first")
        st = self.state
        if st.started is None:
            st.started = time.monotonic()
        single_click = len(prompt.points) == 1 and prompt.box is None
        n = len(st.prompt.points)
        extends = prompt.points[:n] == st.prompt.points and prompt.labels[:n] == st.prompt.labels
        previous = st.preview if st.candidates and extends and not single_click else None
        st.candidates = self.engine.predict(prompt, multimask=single_click, previous=previous)
        st.shown = 0
        st.prompt = prompt
        self.store.log_event("prompt", self.current.id, None, points=len(prompt.points), box=prompt.box is not None)
        return st.candidates[0]

    def add_point(self, x: float, y: float, positive: bool = True) -> MaskResult:
        """One more click; the preview is refined from the previous mask's logits."""
        return self.set_prompt(self.state.prompt.add_point(x, y, positive))

    def set_box(self, x0: float, y0: float, x1: float, y1: float) -> MaskResult:
        """The box prompt (replaces an earlier box, keeps the points)."""
        box = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
        p = self.state.prompt
        return self.set_prompt(Prompt(p.points, p.labels, box))

    def cycle(self) -> MaskResult | None:
        """Show SAM's next candidate (for a single click there are three)."""
        st = self.state
        if not st.candidates:
            return None
        st.shown = (st.shown + 1) % len(st.candidates)
        return st.candidates[st.shown]

    def clear(self) -> None:
        """Drop the prompt and the preview (Escape)."""
        if self.state.candidates:
            self.store.log_event("clear", self.current.id if self.current else None)
        self.state = PromptState()

    # -- accepting ------------------------------------------------------------------------------------------
    def accept(self) -> int:
        """Write the preview as an object; returns its id."""
        st = self.state
        pv = st.preview
        if pv is None or pv.empty:
            raise PromptError("nothing to accept: click the object first")
        provenance = "box" if st.prompt.box is not None else "click"
        clicks = len(st.prompt.points) + (1 if st.prompt.box is not None else 0)  # a box drag counts as one
        oid = self.store.accept(
            self.current.id, pv.mask, provenance=provenance, clicks=clicks, score=pv.score,
            seconds=time.monotonic() - st.started if st.started else None,
            engine=self.engine.name, model=self.engine.model,
        )
        self.state = PromptState()
        return oid

    def start_manual(self) -> None:
        """Start the clock for a hand-drawn object."""
        if self.state.started is None:
            self.state.started = time.monotonic()

    def accept_manual(self, mask: np.ndarray, vertices: int = 0) -> int:
        """Accept a hand-drawn box or polygon (rasterised by the caller); provenance 'manual'."""
        if self.image is None:
            raise PromptError("open an image first")
        if mask.shape != self.image.shape[:2] or not mask.any():
            raise PromptError("the drawn shape is empty or outside the image")
        started = self.state.started
        oid = self.store.accept(
            self.current.id, mask, provenance="manual", clicks=vertices,
            seconds=time.monotonic() - started if started else None, engine="manual", model=None,
        )
        self.state = PromptState()
        return oid

    def objects(self):
        return self.store.objects(self.current.id) if self.current else []

    def undo(self):
        self.state = PromptState()
        return self.store.undo()

    def redo(self):
        self.state = PromptState()
        return self.store.redo()


def polygon_mask(vertices_xy: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Rasterise a polygon given as (x, y) vertices into a boolean mask of ``shape``."""
    import cv2

    m = np.zeros(shape, np.uint8)
    cv2.fillPoly(m, [np.round(np.asarray(vertices_xy)).astype(np.int32)], 1)
    return m.astype(bool)
