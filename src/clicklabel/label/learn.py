"""The project side of labels that learn: descriptors written as objects are accepted and images shown, the
provisional label the neighbours vote for, and the few-shot examples of a labelling run (the nearest confirmed
objects' crops and labels). The maths is in ``neighbours.py``; the vectors live in the store."""

from __future__ import annotations

import numpy as np

from ..errors import ClickLabelError
from ..project import Store
from .crop import encode_image, object_crop
from .neighbours import DEFAULT_K, Vote, image_descriptor, nearest, object_descriptor, vote


def current_embedding(engine):
    """The engine's embedding of its current image, or None (GrabCut and other engines without one)."""
    return getattr(engine, "embedding", None)


def describe_object(store: Store, engine, object_id: int, mask: np.ndarray) -> bool:
    """Store the descriptor of a just-accepted object from the engine's current embedding; False when the engine
    has none (GrabCut) or the mask is empty."""
    emb = current_embedding(engine)
    if emb is None or tuple(np.asarray(mask).shape) != tuple(emb.original_size):
        return False
    vec = object_descriptor(emb, mask)
    if vec is None:
        return False
    store.set_descriptor(object_id, engine.model_id, vec)
    return True


def describe_image(store: Store, engine, image_id: int) -> bool:
    emb = current_embedding(engine)
    if emb is None:
        return False
    store.set_image_descriptor(image_id, engine.model_id, image_descriptor(emb))
    return True


def suggestion(store: Store, object_id: int, k: int = DEFAULT_K) -> Vote | None:
    """The vote of the object's nearest confirmed objects (same model's descriptors), or None."""
    got = store.descriptor(object_id)
    if got is None:
        return None
    model_id, vec = got
    return vote(store.confirmed(model_id), vec, k, exclude={object_id})


def suggestions(store: Store, objects, k: int = DEFAULT_K) -> dict[int, Vote]:
    """Votes for those of ``objects`` that wait for the model (pending or failed), by object id (one read of the
    confirmed objects per model)."""
    waiting = [ob.id for ob in objects if ob.label_status in ("pending", "failed")]
    pools: dict[str, object] = {}
    out = {}
    for oid, (model_id, vec) in store.descriptors_of(waiting).items():
        if model_id not in pools:
            pools[model_id] = store.confirmed(model_id)
        v = vote(pools[model_id], vec, k, exclude={oid})
        if v is not None:
            out[oid] = v
    return out


class Examples:
    """Few-shot examples for a labelling run: for each object, the ``k`` nearest confirmed objects (never itself)
    as (encoded crop, label, supercategory) triples; crops rendered once per run. Objects without a descriptor get
    none."""

    def __init__(self, store: Store, k: int, crop_settings):
        self.store, self.k, self.crop = store, k, crop_settings
        self._confirmed: dict[str, object] = {}
        self._crops: dict[int, bytes] = {}
        self.without = 0  # objects asked without examples (no descriptor, or nothing confirmed yet)

    def _pool(self, model_id: str):
        if model_id not in self._confirmed:
            self._confirmed[model_id] = self.store.confirmed(model_id)
        return self._confirmed[model_id]

    def neighbours(self, object_id: int) -> list[int]:
        """Ids of the object's nearest confirmed objects, most similar first."""
        got = self.store.descriptor(object_id)
        if got is None:
            return []
        pool = self._pool(got[0])
        return [pool.ids[r] for r in nearest(pool, got[1], self.k, exclude={object_id})]

    def vote(self, object_id: int, k: int) -> Vote | None:
        got = self.store.descriptor(object_id)
        return None if got is None else vote(self._pool(got[0]), got[1], k, exclude={object_id})

    def for_object(self, object_id: int) -> tuple[tuple[bytes, str, str | None], ...]:
        ids = self.neighbours(object_id)
        if not ids:
            self.without += 1
            return ()
        out = []
        for ob in self.store.objects_by_id(ids):
            if ob.id not in self._crops:
                try:
                    image = self.store.load_image(ob.image_id)
                    self._crops[ob.id] = encode_image(object_crop(image, ob, self.crop), self.crop.fmt)
                except ClickLabelError:
                    continue  # an example whose image is gone: the others still help
            out.append((ob.id, self._crops[ob.id], ob.label, ob.supercategory))
        order = {oid: n for n, oid in enumerate(ids)}
        return tuple(t[1:] for t in sorted(out, key=lambda t: order[t[0]]))
