"""Review by value: which objects and images a person's next minutes are best spent on, each with its reasons.

Objects (labelled by the model, not yet confirmed by a person) score for a low model confidence (1 - confidence),
a failed label, a disagreement between the model and the nearest confirmed objects' vote (the vote's share), and a
rare class (fewer than ``rare`` objects carry the label). Images are ordered by greedy k-center over their
descriptors: first the image least like any image that has objects, then the one least like those and the first,
and so on, so a person sees the unfamiliar parts of the data set first."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from ..project import Store
from .learn import Neighbourhood

RARE = 3


@dataclass
class ReviewItem:
    kind: str  # 'object' or 'image'
    id: int
    image_id: int
    image: str  # the image's path in the project
    score: float
    reasons: list[str] = field(default_factory=list)


def _same(a: str | None, b: str | None) -> bool:
    return " ".join((a or "").casefold().split()) == " ".join((b or "").casefold().split())


def object_order(store: Store, k: int = 5, rare: int = RARE) -> list[ReviewItem]:
    """The model-labelled objects, most worth a person's look first (ties: by id)."""
    paths = {im.id: im.path for im in store.images()}
    obs = store.objects()
    counts = Counter(o.label for o in obs if o.label)
    near = Neighbourhood(store)
    items = []
    for ob in obs:
        if ob.label_status not in ("done", "failed") or ob.provenance == "imported":
            continue  # confirmed by a person, or not labelled yet
        score, why = 0.0, []
        if ob.label_status == "failed":
            score += 1.0
            why.append("its label failed")
        elif ob.label_confidence is not None and ob.label_confidence < 1:
            score += 1.0 - ob.label_confidence
            why.append(f"model confidence {ob.label_confidence:.2f}")
        v = near.vote(ob.id, k)
        if v is not None and ob.label and not _same(v.label, ob.label):
            score += v.agreement
            why.append(f"the model says {ob.label!r}, its {v.k} nearest confirmed objects {v.label!r} "
                       f"({v.votes}/{v.k})")
        if ob.label and counts[ob.label] < rare:
            score += 0.5 / counts[ob.label]
            why.append(f"rare class: {counts[ob.label]} object(s) labelled {ob.label!r}")
        if why:
            items.append(ReviewItem("object", ob.id, ob.image_id, paths.get(ob.image_id, "?"), round(score, 4), why))
    return sorted(items, key=lambda it: (-it.score, it.id))


def image_order(store: Store) -> tuple[list[ReviewItem], int]:
    """Images without objects by greedy k-center over their descriptors (most unlike the annotated ones first),
    and how many images have no descriptor yet (never opened with a segmentation model)."""
    models = store.descriptor_models()
    vectors = store.image_descriptors(models[0]) if models else {}
    images = store.images()
    annotated = {ob.image_id for ob in store.objects()}
    todo = [im for im in images if im.id not in annotated and im.id in vectors]
    missing = sum(1 for im in images if im.id not in annotated and im.id not in vectors)
    centres = [vectors[i] for i in annotated if i in vectors]
    if not todo:
        return [], missing
    mat = np.stack([vectors[im.id] for im in todo])
    nearest = (np.full(len(todo), 2.0) if not centres
               else 1.0 - (mat @ np.stack(centres).T).max(axis=1))  # cosine distance to the nearest centre
    out, left = [], list(range(len(todo)))
    while left:
        pick = max(left, key=lambda i: (nearest[i], -todo[i].id))
        d = float(nearest[pick])
        why = ("no image is annotated yet" if d >= 2.0 else
               f"least like any annotated or earlier image (cosine distance {d:.3f})")
        out.append(ReviewItem("image", todo[pick].id, todo[pick].id, todo[pick].path, round(min(d, 2.0), 4), [why]))
        left.remove(pick)
        nearest = np.minimum(nearest, 1.0 - mat @ mat[pick])
    return out, missing
