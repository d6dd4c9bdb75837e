"""Auto-propose into a project, and the annotator's decisions on the proposals.

Proposals are stored as objects in state ``proposed`` (provenance ``proposed``, SAM's predicted IoU as score), so a
killed process keeps them and the review can go on later; accepting or rejecting one is an undoable event that the
comparison report counts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .batch import embedded_images
from .objects import ObjectRecord
from .store import Store


@dataclass
class ProposeReport:
    proposed: list[int] = field(default_factory=list)  # ids of the proposals stored (accepted ones included)
    accepted: list[int] = field(default_factory=list)  # accepted at once (score >= accept_above)
    images: int = 0
    cancelled: bool = False
    errors: list[str] = field(default_factory=list)  # images that could not be read, with the reason


def propose_current(store: Store, engine, image_id: int, settings=None, accept_above: float | None = None,
                    progress: Callable[[int, int], None] | None = None, stop=None) -> ProposeReport:
    """Proposals for the engine's current image (``image_id`` in ``store``), stored for review. Objects already
    there (accepted or proposed) are not proposed again."""
    from ..segment.propose import ProposeSettings

    settings = settings or ProposeSettings()
    existing = [o.mask for o in store.objects(image_id, states=("accepted", "proposed"))]
    props = engine.propose(settings, existing=existing, progress=progress, stop=stop)
    rep = ProposeReport(images=1, cancelled=bool(stop is not None and stop.is_set()))
    # a generator: a large image's proposals are made full size one at a time, as they are stored
    store_proposals(store, image_id, ((p.mask, p.predicted_iou) for p in props), engine.name, engine.model,
                    accept_above, rep)
    return rep


def store_proposals(store: Store, image_id: int, proposals, engine: str, model: str, accept_above: float | None,
                    rep: ProposeReport) -> None:
    """Write one image's proposals ((mask, score) pairs) in one transaction, accepting at once those scoring at
    least ``accept_above``; their ids go to ``rep``. The local run and the Ray driver both write through here."""
    with store.transaction():
        for mask, score in proposals:
            auto = accept_above is not None and score >= accept_above
            oid = store.accept(image_id, mask, provenance="proposed", score=score, engine=engine, model=model,
                               clicks=0, state="accepted" if auto else "proposed")
            rep.proposed.append(oid)
            if auto:
                rep.accepted.append(oid)


def propose_project(store: Store, engine, settings=None, accept_above: float | None = None, image_ids=None,
                    progress: Callable[[int, int], None] | None = None, stop=None) -> ProposeReport:
    """``propose_current`` over the project's images (or ``image_ids``); ``progress(done, total)`` per image."""
    images = [im.id for im in store.images() if image_ids is None or im.id in set(image_ids)]
    total = ProposeReport()
    for image_id in embedded_images(store, engine, images, total.errors, progress, stop):
        rep = propose_current(store, engine, image_id, settings, accept_above, stop=stop)
        total.proposed += rep.proposed
        total.accepted += rep.accepted
        total.images += 1
    total.cancelled = stop is not None and stop.is_set()
    return total


def pending_proposals(store: Store, image_id: int) -> list[ObjectRecord]:
    """The image's proposals waiting for a decision, largest first (the review order)."""
    return sorted(store.objects(image_id, states=("proposed",)), key=lambda o: (-o.area, o.id))


def decide(store: Store, object_id: int, accept: bool) -> None:
    """Accept (the proposal becomes an object) or reject (kept as rejected, for the report) one proposal."""
    store.decide_proposal(object_id, accept)


def accept_above(store: Store, image_id: int, score: float) -> list[int]:
    """Accept every waiting proposal of the image whose score is at least ``score``; returns their ids."""
    ids = [o.id for o in pending_proposals(store, image_id) if o.score is not None and o.score >= score]
    for oid in ids:
        store.decide_proposal(oid, True)
    return ids
