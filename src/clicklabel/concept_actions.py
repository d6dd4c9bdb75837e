"""The annotation session's concept actions (a part of ``annotate.AnnotationSession``): "find" the instances of
named classes on the current image (SAM 3's concept prompts, or the multimodal model's boxes), optionally from
exemplar boxes the annotator drew, stored as labelled proposals for review with A/X/S; the opinions shown beside
each (the model's check, the neighbours' vote) and the review order that puts disagreements first."""

from __future__ import annotations

from .errors import PromptError


class ConceptActions:
    """Uses the session's ``store``, ``engine``, ``current`` and ``image``."""

    def concept_vocabulary(self) -> list[str]:
        """What the Find box offers by default: the project's vocabulary, else the labels already in use."""
        from .project import load_label_settings

        return list(load_label_settings(self.store).vocabulary) or self.store.labels_in_use()

    def propose_concepts(self, concepts, exemplars=None, progress=None, stop=None, threshold: float = 0.5,
                         grounding=None, on_concept=None, accept_above: float | None = None):
        """Every instance of each concept on the current image, stored as proposals (provenance ``concept``) with
        the concept as their label; ``concepts``: names or "cat, dog" (or "vocab"); ``exemplars``: boxes (x0, y0,
        x1, y1) of instances the annotator drew (SAM 3 finds the others); ``grounding``: a
        ``label.grounding.Grounding`` to let the multimodal model find the boxes instead. Meant for a worker
        thread: ``on_concept(name, instances)`` as each concept is done, ``progress(done, total)``, ``stop`` (an
        Event) ends before the next concept. Returns ``project.concepts.ConceptProposeReport`` (ids stored,
        instances per concept, refused grounding boxes)."""
        from .label.learn import describe_object
        from .project.concepts import propose_concepts_current
        from .segment.concepts import parse_box, parse_concepts

        if self.current is None or self.image is None:
            raise PromptError("open an image first")
        names = parse_concepts(concepts, self.concept_vocabulary() if "vocab" in str(concepts).lower() else ())
        boxes = [parse_box(b) if isinstance(b, str) else tuple(float(v) for v in b) for b in exemplars or ()]
        return propose_concepts_current(
            self.store, self.engine, self.current.id, self.image, names, boxes, threshold, accept_above, grounding,
            progress, stop, on_concept, on_stored=lambda oid, mask: describe_object(self.store, self.engine, oid, mask))

    def concept_opinions(self, index: int | None = None) -> dict:
        """Per waiting proposal of image ``index`` (default: the current one): the model's check and the
        neighbours' vote, side by side (``label.concept_review.Opinion``; ``str()`` gives one line)."""
        from .label.concept_review import concept_opinions

        image = self.current if index is None else self.images[index]
        return concept_opinions(self.store, self.store.objects(image.id, states=("proposed",))) if image else {}

    def concept_review_order(self, index: int | None = None) -> list:
        """The waiting proposals of image ``index`` (default: current), disagreements first, then by score."""
        from .label.concept_review import review_order

        image = self.current if index is None else self.images[index]
        return review_order(self.store, image.id) if image else []

    def check_concepts(self, object_ids, concepts, lmm: str | None = None, progress=None, stop=None):
        """Ask the multimodal model whether each proposal is its class (a worker thread); the run's summary."""
        from .label.concept_review import check_concepts

        return check_concepts(self.store, object_ids, lmm, concepts, progress, stop)
