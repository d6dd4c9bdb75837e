"""The annotation session: the state and actions behind the napari widget (or any other client), with no Qt in it.

One object at a time: prompts (points, a box) give a preview mask from the engine; ``accept`` writes it to the
store in one transaction with its provenance, clicks and seconds from first prompt to accept. Manual boxes and
polygons are accepted the same way (provenance ``manual``). Proposals of the whole image come from the engine's
``propose`` and are decided one by one or above a score. Relabel, delete, undo and redo go through the store; the
next image's embedding is pre-computed through the engine. A client holds the session only: never the store or
the engine beside it.

Threads: ``embed``, ``prefetch``, ``propose``, ``label`` and ``export`` take seconds and are meant for a worker
thread; the rest is fast and belongs to the caller's thread. A prompt can be answered off the caller's thread too:
``plan`` (caller) -> ``PromptJob.run`` (any thread; the engine only) -> ``commit`` (caller), which drops the answer
when the session moved on meanwhile (another image, accept, clear, undo). ``set_prompt`` does the three at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .concept_actions import ConceptActions
from .errors import ClickLabelError, PromptError
from .large_images import TileActions
from .project import (
    ImageRecord,
    LabelSettings,
    ObjectRecord,
    ProposeReport,
    Store,
    load_label_settings,
    open_images,
    pending_proposals,
    propose_current,
    save_label_settings,
)
from .project import accept_above as _accept_above
from .review import ReviewActions
from .segment.base import MaskResult, Prompt
from .sequence_actions import SequenceActions

if TYPE_CHECKING:
    from .label.neighbours import Vote


@dataclass
class PromptState:
    """The object being prompted: its prompt, SAM's candidates, which one is shown, and when it started."""

    prompt: Prompt = field(default_factory=Prompt)
    candidates: list[MaskResult] = field(default_factory=list)
    shown: int = 0
    started: float | None = None
    proposal: ObjectRecord | None = None  # the proposal being corrected by clicks (``correct``)

    @property
    def preview(self) -> MaskResult | None:
        return self.candidates[self.shown] if self.candidates else None


@dataclass
class PromptJob:
    """One prediction, planned by ``AnnotationSession.plan``; ``run`` touches the engine only, so it may run in any
    thread; ``AnnotationSession.commit`` applies it unless the session moved on since it was planned."""

    prompt: Prompt  # the annotator's prompt
    engine_prompt: Prompt  # what the engine is asked (a corrected proposal's box added)
    multimask: bool
    previous: MaskResult | None
    engine: object
    generation: int
    candidates: list[MaskResult] | None = None

    def run(self) -> PromptJob:
        candidates = self.engine.predict(self.engine_prompt, multimask=self.multimask, previous=self.previous)
        candidates[0].bbox  # noqa: B018 - the shown mask's box is computed here too, off the caller's thread
        self.candidates = candidates
        return self


class AnnotationSession(ReviewActions, ConceptActions, SequenceActions, TileActions):
    """A project, an engine, and the image being annotated."""

    def __init__(self, store: Store, engine):
        self.store = store
        self.engine = engine
        self.images: list[ImageRecord] = store.images()
        self.index = -1
        self.image: np.ndarray | None = None
        self.state = PromptState()
        self._generation = 0  # bumped whenever the prompt state is replaced: answers planned before are dropped

    @classmethod
    def open(cls, items, engine, project=None) -> AnnotationSession:
        """A session on a project holding ``items`` (a folder, image files, or a project): see
        ``project.open_images`` (an existing project is opened as it is when ``items`` is just that project)."""
        from .project import is_project, open_project

        items = [items] if isinstance(items, (str, bytes)) or not hasattr(items, "__iter__") else list(items)
        if project is None and len(items) == 1 and is_project(items[0]):
            return cls(open_project(items[0]), engine)
        return cls(open_images(items, project), engine)

    def set_engine(self, engine) -> None:
        """Use another engine from now on (the prompt in progress is dropped; call ``embed`` again)."""
        self.engine = engine
        self._reset()

    def _reset(self, state: PromptState | None = None) -> None:
        self.state = state or PromptState()
        self._generation += 1

    # -- images ---------------------------------------------------------------------------------------------
    @property
    def current(self) -> ImageRecord | None:
        return self.images[self.index] if 0 <= self.index < len(self.images) else None

    def load(self, index: int) -> np.ndarray:
        """Read image ``index`` from disk (fast; no model work)."""
        if not 0 <= index < len(self.images):
            raise ClickLabelError(f"no image {index + 1} (the project has {len(self.images)})")
        return self.store.load_image(self.images[index])

    def embed(self, image: np.ndarray) -> None:
        """Compute or fetch the image's embedding (seconds on a CPU the first time): run it off the UI thread."""
        self.engine.set_image(image)

    def prefetch(self, index: int) -> None:
        """Compute and cache the embedding of image ``index`` ahead of time (a worker thread; no state changes)."""
        if 0 <= index < len(self.images):
            self.engine.prefetch(self.load(index))

    def show(self, index: int, image: np.ndarray, describe: bool = True) -> None:
        """Make image ``index`` current (after ``embed``; or before it with ``describe=False``, for a client that
        shows the picture at once, embeds it in a worker and then calls ``describe``)."""
        self.index = index
        self.image = image
        self._reset()
        if describe:
            self.describe()
        if self.images[index].status == "todo":
            self.store.set_image_status(self.images[index].id, "in progress")
            self.images = self.store.images()

    def describe(self) -> None:
        """Store the current image's descriptor from its embedding (once per image and model; after ``embed``)."""
        from .label.learn import describe_image

        if self.current is not None:
            describe_image(self.store, self.engine, self.current.id)

    def progress(self) -> tuple[int, int]:
        """(images done, images in all)."""
        return sum(1 for im in self.images if im.status == "done"), len(self.images)

    def mark_done(self) -> None:
        if self.current is not None:
            self.store.set_image_status(self.current.id, "done")
            self.images = self.store.images()

    # -- prompting ------------------------------------------------------------------------------------------
    def plan(self, prompt: Prompt) -> PromptJob:
        """The prediction for ``prompt`` (run it with ``PromptJob.run``, anywhere; then ``commit``). When the prompt
        adds to the previous one, SAM refines the previous mask (its low-res logits go back in); a single click
        offers SAM's three candidates; while a proposal is corrected, the engine gets its box too."""
        if self.image is None:
            raise PromptError("open an image first")
        prompt.validate(self.image.shape[:2])
        st = self.state
        if st.started is None:
            st.started = time.monotonic()
        single_click = len(prompt.points) == 1 and prompt.box is None and st.proposal is None
        n = len(st.prompt.points)
        extends = prompt.points[:n] == st.prompt.points and prompt.labels[:n] == st.prompt.labels
        previous = st.preview if st.candidates and extends and not single_click else None
        engine_prompt = prompt if st.proposal is None else self._within(st.proposal, prompt)
        return PromptJob(prompt, engine_prompt, single_click, previous, self.engine, self._generation)

    def commit(self, job: PromptJob) -> MaskResult | None:
        """Apply a job's answer as the preview; None (and nothing changed) when the session moved on since."""
        if job.generation != self._generation or job.candidates is None or job.engine is not self.engine:
            return None
        st = self.state
        st.candidates, st.shown, st.prompt = job.candidates, 0, job.prompt
        self.store.log_event("prompt", self.current.id, None, points=len(job.prompt.points),
                             box=job.prompt.box is not None)
        return st.candidates[0]

    def set_prompt(self, prompt: Prompt) -> MaskResult:
        """Predict the preview for ``prompt`` now, in the caller's thread (``plan``, ``run``, ``commit``)."""
        return self.commit(self.plan(prompt).run())  # type: ignore[return-value]

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
        """Drop the prompt and the preview (Escape); a proposal being corrected stays waiting, as it was."""
        if self.state.candidates:
            self.store.log_event("clear", self.current.id if self.current else None)
        self._reset()

    # -- accepting ------------------------------------------------------------------------------------------
    def accept(self) -> int:
        """Write the preview as an object; returns its id. While a proposal is corrected: accept the proposal, with
        the corrected mask if there is one."""
        st = self.state
        pv = st.preview
        if st.proposal is not None and (pv is None or not pv.empty):
            oid = st.proposal.id
            clicks = len(st.prompt.points) + (1 if st.prompt.box is not None else 0)
            self.store.decide_proposal(oid, True, mask=None if pv is None else pv.mask, clicks=clicks,
                                       seconds=time.monotonic() - st.started if st.started else None)
            self._reset()
            self._learn([oid])
            return oid
        if pv is None or pv.empty:
            raise PromptError("nothing to accept: click the object first")
        provenance = "box" if st.prompt.box is not None else "click"
        clicks = len(st.prompt.points) + (1 if st.prompt.box is not None else 0)  # a box drag counts as one
        oid = self.store.accept(
            self.current.id, pv.mask, provenance=provenance, clicks=clicks, score=pv.score,
            seconds=time.monotonic() - st.started if st.started else None,
            engine=self.engine.name, model=self.engine.model,
        )
        self._reset()
        self._learn([oid], pv.mask)
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
        self._reset()
        self._learn([oid], mask)
        return oid

    # -- proposals ------------------------------------------------------------------------------------------
    def propose(self, settings=None, accept_above: float | None = None, progress=None, stop=None) -> ProposeReport:
        """SAM proposes every object of the current image on its cached embedding (a worker thread); proposals
        are stored for review (objects already accepted or proposed are not offered again)."""
        if self.current is None or self.image is None:
            raise PromptError("open an image first")
        return propose_current(self.store, self.engine, self.current.id, settings, accept_above, progress, stop)

    def proposals(self, index: int | None = None) -> list[ObjectRecord]:
        """The proposals waiting for a decision on image ``index`` (default: the current one), largest first."""
        image = self.current if index is None else self.images[index]
        return pending_proposals(self.store, image.id) if image else []

    def decide(self, object_id: int, accept: bool) -> None:
        """Accept or reject one proposal as it is (undoable; rejections are kept for the comparison report)."""
        self.store.decide_proposal(object_id, accept)
        if self.state.proposal is not None and self.state.proposal.id == object_id:
            self._reset()
        if accept:
            self._learn([object_id])

    def correct(self, object_id: int) -> None:
        """Correct proposal ``object_id`` with clicks before deciding: prompts are answered inside its box (widened
        to take in positive points outside it), and ``accept`` accepts the proposal with the corrected mask
        (provenance stays ``proposed``; the clicks and seconds are recorded; undo restores its own mask)."""
        ob = self.store.object(object_id)
        if ob.state != "proposed" or self.current is None or ob.image_id != self.current.id:
            raise PromptError(f"object {object_id} is not a proposal waiting on this image")
        self._reset(PromptState(proposal=ob))

    def _within(self, proposal: ObjectRecord, prompt: Prompt) -> Prompt:
        """``prompt`` with the proposal's box (the annotator's own box, if drawn, wins)."""
        if prompt.box is not None:
            return prompt
        x, y, w, h = proposal.bbox
        x0, y0, x1, y1 = x, y, x + w, y + h
        for (px, py), positive in zip(prompt.points, prompt.labels):
            if positive:
                x0, y0, x1, y1 = min(x0, px), min(y0, py), max(x1, px + 1), max(y1, py + 1)
        height, width = self.image.shape[:2]
        return Prompt(prompt.points, prompt.labels, (max(0, x0), max(0, y0), min(width, x1), min(height, y1)))

    def accept_above(self, score: float) -> list[int]:
        """Accept every waiting proposal of the current image scoring at least ``score``; returns their ids."""
        ids = _accept_above(self.store, self.current.id, score) if self.current else []
        self._learn(ids)
        return ids

    # -- labels that learn -------------------------------------------------------------------------------------
    def _learn(self, object_ids, mask: np.ndarray | None = None) -> None:
        """Descriptors of objects just accepted on the current image, from its embedding (a few ms each)."""
        from .label.learn import describe_object

        for oid in object_ids:
            describe_object(self.store, self.engine, oid, mask if mask is not None else self.store.object(oid).mask)

    def suggestions(self, index: int | None = None) -> dict[int, Vote]:
        """Provisional labels of the image's objects still waiting for the model (pending or failed): what their
        nearest confirmed objects vote for ("cat 4/5"), before the model answers."""
        from .label.learn import suggestions

        return suggestions(self.store, self.objects(index))

    # -- objects --------------------------------------------------------------------------------------------
    def objects(self, index: int | None = None) -> list[ObjectRecord]:
        """The accepted objects of image ``index`` (default: the current one), in id order."""
        image = self.current if index is None else self.images[index]
        return self.store.objects(image.id) if image else []

    def object(self, object_id: int) -> ObjectRecord:
        return self.store.object(object_id)

    def relabel(self, object_id: int, label: str) -> None:
        """A person's label (undoable; the model's stays in the history)."""
        label = label.strip()
        if not label:
            raise ClickLabelError("a label cannot be empty")
        self.store.relabel(object_id, label)

    def delete(self, object_id: int) -> None:
        self.store.delete(object_id)

    def undo(self):
        self._reset()
        return self.store.undo()

    def redo(self):
        self._reset()
        return self.store.redo()

    def export(self, out, polygons: bool = False):
        """Write the whole project as COCO instances, the same file as ``clicklabel export PROJECT --out OUT``; it
        reads through a connection of its own, so it can run in a worker thread while annotating goes on."""
        from .coco import export_coco
        from .project import open_project

        snapshot = open_project(self.store.path)
        try:
            return export_coco(snapshot, out, polygons=polygons)
        finally:
            snapshot.close()

    # -- labels ---------------------------------------------------------------------------------------------
    @property
    def label_settings(self) -> LabelSettings:
        """The project's labelling settings (model, vocabulary, prompt, ...), shared with ``clicklabel label``."""
        return load_label_settings(self.store)

    def save_label_settings(self, settings: LabelSettings) -> None:
        save_label_settings(self.store, settings)

    def to_label(self, failed_only: bool = False) -> list[int]:
        """Objects waiting for a label (pending or failed; only failed ones with ``failed_only``)."""
        from .label import objects_to_label

        if failed_only:
            return [o.id for o in self.store.objects(label_status=["failed"])]
        return objects_to_label(self.store)

    def label(self, object_ids, labeler, progress=None, stop=None, check: bool = False):
        """Label objects with ``labeler`` (a worker thread); each answer is stored as it arrives. With ``check``
        (the class audit), objects that have a label get the model's beside it, and no label changes."""
        from .label import label_objects

        return label_objects(self.store, list(object_ids), labeler, progress=progress, stop=stop, check=check)


def polygon_mask(vertices_xy: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Rasterise a polygon given as (x, y) vertices into a boolean mask of ``shape``."""
    import cv2

    m = np.zeros(shape, np.uint8)
    cv2.fillPoly(m, [np.round(np.asarray(vertices_xy)).astype(np.int32)], 1)
    return m.astype(bool)
