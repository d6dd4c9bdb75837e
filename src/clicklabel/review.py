"""The annotation session's review actions (a part of ``annotate.AnnotationSession``): refine the current
image's box-only objects from their boxes, step through the objects refine flagged and the class audit's open
disagreements across the project, and decide on each (every decision undoable through the store)."""

from __future__ import annotations

from .errors import PromptError
from .project import CheckRecord, MaskUpdate, ObjectRecord, RefineReport, RefineSettings, refine_current, refine_targets


class ReviewActions:
    """Uses the session's ``store``, ``engine``, ``images``, ``current``, ``image`` and prompt ``state``."""

    # -- box-only objects: refine and review ------------------------------------------------------------------
    def to_refine(self, settings: RefineSettings | None = None) -> list[ObjectRecord]:
        """The current image's objects that ``refine`` would give a mask (box-only ones this engine has not tried)."""
        if self.current is None:
            return []
        only = (settings or RefineSettings()).only_boxes
        return refine_targets(self.store, self.engine, self.current.id, only).get(self.current.id, [])

    def refine(self, settings: RefineSettings | None = None, progress=None, stop=None) -> RefineReport:
        """The engine's masks for the current image's box-only objects, from their boxes, on its cached embedding
        (a worker thread); ``progress(done, total)`` per batch. Doubtful results are marked for review."""
        if self.current is None or self.image is None:
            raise PromptError("open an image first")
        return refine_current(self.store, self.engine, self.current.id, settings or RefineSettings(), stop=stop,
                              on_batch=progress)

    def flagged(self, everywhere: bool = False) -> list[ObjectRecord]:
        """Objects marked for review: the current image's (or the project's, in image order)."""
        if everywhere:
            order = {im.id: n for n, im in enumerate(self.images)}
            return sorted(self.store.objects(flagged=True), key=lambda o: (order.get(o.image_id, -1), o.id))
        return self.store.objects(self.current.id, flagged=True) if self.current else []

    def next_flagged(self, after: int | None = None) -> tuple[int, int] | None:
        """(image index, object id) of the flagged object after object ``after`` in the project, wrapping around;
        None when nothing is flagged."""
        return self._next([(o.image_id, o.id) for o in self.store.objects(flagged=True)], after)

    def _next(self, items: list[tuple[int, int]], after: int | None) -> tuple[int, int] | None:
        """The (image index, object id) after object ``after`` among ``items`` ((image id, object id)), in image
        then object order, wrapping around; None when there are none."""
        index = {im.id: n for n, im in enumerate(self.images)}
        todo = sorted((index[iid], oid) for iid, oid in items if iid in index)
        if not todo:
            return None
        ids = [oid for _, oid in todo]
        return todo[(ids.index(after) + 1) % len(todo)] if after in ids else todo[0]

    def resolve_review(self, object_id: int) -> None:
        """The flagged object is fine as it is (undoable)."""
        self.store.resolve_review(object_id)

    def replace_mask(self, object_id: int) -> None:
        """Give an object (a flagged one, say) the preview's mask instead of its own; its box so far is kept as the
        given box and its review mark cleared (undoable)."""
        pv = self.state.preview
        if pv is None or pv.empty:
            raise PromptError("nothing to put in: prompt the object first")
        ob = self.store.object(object_id)
        if ob.image_id != (self.current.id if self.current else None):
            raise PromptError(f"object {object_id} is not on this image")
        self.store.set_masks([MaskUpdate(object_id, ob.updated, pv.mask, None, ob.refined_by, pv.score,
                                         self.engine.name, self.engine.model)])
        self._reset()

    def paint_mask(self, object_id: int, mask) -> bool:
        """A person painted over an object of the current image: its mask becomes ``mask`` (its box follows; no
        given box is made up), or the object is deleted when nothing is left of it; undoable. False when the object
        changed meanwhile or is not on this image."""
        ob = self.store.object(object_id)
        if self.current is None or ob.image_id != self.current.id or ob.state != "accepted":
            return False
        if not mask.any():
            self.store.delete(object_id)
            return True
        return bool(self.store.set_masks([MaskUpdate(object_id, ob.updated, mask, ob.review, ob.refined_by, None,
                                                     "paint", None, given=False)]))

    # -- class audit ------------------------------------------------------------------------------------------
    def disagreements(self, everywhere: bool = False) -> list[CheckRecord]:
        """Objects whose label the model disagreed with and no one has decided on (the current image's, or all)."""
        if everywhere:
            return self.store.disagreements()
        return self.store.disagreements(self.current.id) if self.current else []

    def next_disagreement(self, after: int | None = None) -> tuple[int, int] | None:
        """(image index, object id) of the open disagreement after object ``after``, wrapping around."""
        return self._next([(c.image_id, c.object_id) for c in self.store.disagreements()], after)

    def checks(self) -> list[CheckRecord]:
        """The class audit's records of the current image's objects."""
        return self.store.checks(self.current.id) if self.current else []

    def accept_model_label(self, object_id: int) -> None:
        """Take the model's label for an object it disagreed on: one undoable action."""
        self.store.accept_check(object_id)

    def keep_label(self, object_id: int) -> None:
        """Keep the object's own label over the model's (undoable)."""
        self.store.keep_label(object_id)

    # -- review by value ----------------------------------------------------------------------------------------
    def next_by_value(self, after: int | None = None) -> tuple[int, int, list[str]] | None:
        """(image index, object id, reasons) of the model-labelled object most worth a person's look after object
        ``after`` in value order (``label.value.object_order``), wrapping around; None when nothing has a reason."""
        from .label.value import object_order

        index = {im.id: n for n, im in enumerate(self.images)}
        items = [it for it in object_order(self.store) if it.image_id in index]
        if not items:
            return None
        ids = [it.id for it in items]
        it = items[(ids.index(after) + 1) % len(items)] if after in ids else items[0]
        return index[it.image_id], it.id, it.reasons
