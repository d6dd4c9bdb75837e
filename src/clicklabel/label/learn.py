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
    """Store the image's descriptor from the engine's current embedding, once per image and model."""
    emb = current_embedding(engine)
    if emb is None or store.has_image_descriptor(image_id, engine.model_id):
        return False
    store.set_image_descriptor(image_id, engine.model_id, image_descriptor(emb))
    return True


class Neighbourhood:
    """The project's confirmed objects, read once per model for as long as this lives (a refresh, a run, a
    ranking), and each object's nearest ones among them."""

    def __init__(self, store: Store):
        self.store = store
        self._pools: dict[str, object] = {}

    def pool(self, model_id: str):
        if model_id not in self._pools:
            self._pools[model_id] = self.store.confirmed(model_id)
        return self._pools[model_id]

    def nearest(self, object_id: int, k: int) -> list[int]:
        """Ids of the object's ``k`` nearest confirmed objects (never itself), most similar first."""
        got = self.store.descriptor(object_id)
        if got is None:
            return []
        pool = self.pool(got[0])
        return [pool.ids[r] for r in nearest(pool, got[1], k, exclude={object_id})]

    def vote(self, object_id: int, k: int = DEFAULT_K) -> Vote | None:
        """The vote of the object's ``k`` nearest confirmed objects (same model's descriptors), or None."""
        got = self.store.descriptor(object_id)
        return None if got is None else vote(self.pool(got[0]), got[1], k, exclude={object_id})


def suggestions(store: Store, objects, k: int = DEFAULT_K) -> dict[int, Vote]:
    """Votes for those of ``objects`` that wait for the model (pending or failed), by object id."""
    near = Neighbourhood(store)
    votes = {ob.id: near.vote(ob.id, k) for ob in objects if ob.label_status in ("pending", "failed")}
    return {oid: v for oid, v in votes.items() if v is not None}

class Examples:
    """Few-shot examples for a labelling run: for each object, the ``k`` nearest confirmed objects (never itself)
    as (encoded crop, label, supercategory) triples; crops rendered once per run. Objects without a descriptor get
    none."""

    def __init__(self, store: Store, k: int, crop_settings):
        self.store, self.k, self.crop = store, k, crop_settings
        self.near = Neighbourhood(store)
        self._crops: dict[int, bytes] = {}
        self.without = 0  # objects asked without examples (no descriptor, or nothing confirmed yet)

    def for_object(self, object_id: int) -> tuple[tuple[bytes, str, str | None], ...]:
        ids = self.near.nearest(object_id, self.k)
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
