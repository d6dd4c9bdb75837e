"""Concept proposals into a project: each instance stored as a proposal (state ``proposed``, provenance ``concept``)
with its class as its label and the finder's score, for review with the other proposals. An instance that another
concept found too is marked for review with both names (``review``: "also found as dog (0.61)")."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .batch import embedded_images
from .store import Store


@dataclass
class ConceptProposeReport:
    proposed: list[int] = field(default_factory=list)
    accepted: list[int] = field(default_factory=list)
    found: dict[str, int] = field(default_factory=dict)  # concept -> instances stored
    refused: list[str] = field(default_factory=list)  # grounding: boxes refused, with the reason
    errors: list[str] = field(default_factory=list)
    images: int = 0
    requests: int = 0
    cost: float = 0.0
    cancelled: bool = False


def _finder(engine, concepts, exemplars, threshold, grounding):
    """The function that finds the concepts on the engine's current image: SAM 3's own, or the LMM's boxes."""
    from ..segment.concepts import find_concepts

    if grounding is None:
        return lambda image, existing, progress, stop, on_concept: find_concepts(
            engine, concepts, exemplars, threshold, existing, progress, stop, on_concept)
    return lambda image, existing, progress, stop, on_concept: grounding.find(
        engine, image, concepts, existing, progress, stop, on_concept)


def store_concepts(store: Store, image_id: int, instances, engine, accept_above: float | None,
                   rep: ConceptProposeReport, source: str, on_stored=None) -> None:
    """Write one image's concept instances in one transaction (labelled, as proposals; those scoring at least
    ``accept_above`` accepted at once); ``on_stored(object_id, mask)`` after (descriptors for the neighbours'
    vote)."""
    stored = []
    with store.transaction():
        for inst in instances:
            auto = accept_above is not None and inst.score >= accept_above
            oid = store.accept(image_id, inst.mask, provenance="concept", score=inst.score, engine=engine.name,
                               model=engine.model, clicks=0,
                               state="accepted" if auto else "proposed")
            store.set_label(oid, inst.label, None, inst.score, source)
            if inst.review:
                store._set_fields(oid, {"review": inst.review})
            rep.proposed.append(oid)
            stored.append((oid, inst.mask))
            rep.found[inst.label] = rep.found.get(inst.label, 0) + 1
            if auto:
                rep.accepted.append(oid)
    for oid, mask in stored if on_stored is not None else ():
        on_stored(oid, mask)


def propose_concepts_current(store: Store, engine, image_id: int, image, concepts: Sequence[str],
                             exemplars: Sequence[Sequence[float]] = (), threshold: float = 0.5,
                             accept_above: float | None = None, grounding=None,
                             progress: Callable[[int, int], None] | None = None, stop=None,
                             on_concept=None, on_stored=None) -> ConceptProposeReport:
    """Concept proposals for the engine's current image (``image_id``); objects already accepted or proposed are
    not offered again. ``grounding``: a ``label.grounding.Grounding`` (the LMM finds the boxes) instead of SAM 3."""
    existing = [o.mask for o in store.objects(image_id, states=("accepted", "proposed"))]
    found = _finder(engine, concepts, exemplars, threshold, grounding)(image, existing, progress, stop, on_concept)
    rep = ConceptProposeReport(images=1, cancelled=found.cancelled, refused=list(found.refused),
                               requests=found.requests, cost=found.cost)
    source = f"{engine.model} concept" if grounding is None else f"{grounding.model} grounding"
    store_concepts(store, image_id, found.instances, engine, accept_above, rep, source, on_stored)
    return rep


def propose_concepts_project(store: Store, engine, concepts: Sequence[str], exemplars=(), threshold: float = 0.5,
                             accept_above: float | None = None, grounding=None, image_ids=None,
                             progress: Callable[[int, int], None] | None = None, stop=None,
                             on_stored=None) -> ConceptProposeReport:
    """``propose_concepts_current`` over the project's images (the vision features once per image, each concept's
    text features once in all)."""
    images = [im.id for im in store.images() if image_ids is None or im.id in set(image_ids)]
    total = ConceptProposeReport()
    for image_id in embedded_images(store, engine, images, total.errors, progress, stop):
        image = store.load_image(image_id) if grounding is not None else None
        rep = propose_concepts_current(store, engine, image_id, image, concepts, exemplars, threshold, accept_above,
                                       grounding, stop=stop, on_stored=on_stored)
        total.proposed += rep.proposed
        total.accepted += rep.accepted
        total.refused += [f"image {image_id}: {r}" for r in rep.refused]
        for k, v in rep.found.items():
            total.found[k] = total.found.get(k, 0) + v
        total.requests += rep.requests
        total.cost += rep.cost
        total.images += 1
    total.cancelled = stop is not None and stop.is_set()
    return total
