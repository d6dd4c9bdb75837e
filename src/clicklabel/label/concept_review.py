"""A second and a third opinion on concept proposals, and the order they are reviewed in.

- ``check_concepts``: the multimodal model is asked, for each proposal, which of the concepts its crop shows (the
  class audit of ``label --check``, cold: no few-shot examples); its verdict (agree / disagree) is kept beside the
  proposal's own class.
- ``concept_opinions``: per proposal, the model's verdict and the vote of the nearest objects the annotator
  accepted (their descriptors, from the same model's features), side by side.
- ``review_order``: the image's proposals with any disagreement first (the model says another class, the
  neighbours vote for another class, or another concept found the same object), then by score.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..project import Store

OTHER = "other"  # the check's answer for a crop that is none of the concepts


@dataclass
class Opinion:
    object_id: int
    label: str | None  # the proposal's class
    score: float | None
    check: str | None  # the model's answer when it disagrees or agrees ("agree", or the label it gave)
    verdict: str | None  # 'agree' / 'disagree' / 'failed' / None (not checked)
    vote: object | None  # label.neighbours.Vote of the nearest accepted objects, or None
    review: str | None  # "also found as ..." when another concept found it

    @property
    def disagrees(self) -> bool:
        return self.verdict == "disagree" or self.review is not None or \
            (self.vote is not None and self.label is not None and self.vote.label != self.label)

    def __str__(self) -> str:
        parts = [f"{self.label} {self.score:.2f}" if self.score is not None else str(self.label)]
        if self.verdict:
            parts.append(f"model: {self.check if self.verdict == 'disagree' else self.verdict}")
        if self.vote is not None:
            parts.append(f"neighbours: {self.vote}")
        if self.review:
            parts.append(self.review)
        return "; ".join(parts)


def check_concepts(store: Store, object_ids: Sequence[int], lmm: str | None, concepts: Sequence[str],
                   progress=None, stop=None):
    """Ask the multimodal model whether each proposal is its class (answers among ``concepts``, the project's labels
    and "other"); the label run's ``RunSummary``."""
    from ..project import load_label_settings
    from .client import LabelCache, Labeler
    from .run import label_objects

    config = load_label_settings(store).updated(lmm=lmm).labeler_config()
    # the answers: the concepts, the project's own labels, or "other" (so a lone concept can be contradicted)
    vocabulary = list(dict.fromkeys([*concepts, *store.labels_in_use(), OTHER]))
    config.few_shot, config.knn_only_above, config.vocabulary = 0, None, vocabulary
    return label_objects(store, list(object_ids), Labeler(config, LabelCache()), progress, stop, check=True)


def concept_opinions(store: Store, objects) -> dict[int, Opinion]:
    """Opinions on ``objects`` (ObjectRecords), by id."""
    from .learn import Neighbourhood

    ids = [o.id for o in objects]
    checks = {}
    for i in range(0, len(ids), 500):
        chunk = ids[i : i + 500]
        rows = store.conn.execute(f"SELECT object_id, verdict, label FROM label_checks WHERE object_id IN "
                                  f"({','.join('?' * len(chunk))})", chunk)
        checks.update({int(r[0]): (r[1], r[2]) for r in rows})
    near = Neighbourhood(store)
    out = {}
    for ob in objects:
        verdict, answer = checks.get(ob.id, (None, None))
        out[ob.id] = Opinion(ob.id, ob.label, ob.score, answer, verdict, near.vote(ob.id), ob.review)
    return out


def review_order(store: Store, image_id: int):
    """The image's proposals waiting for a decision, disagreements first, then best score, then largest."""
    pending = store.objects(image_id, states=("proposed",))
    ops = concept_opinions(store, pending)
    return sorted(pending, key=lambda o: (not ops[o.id].disagrees, -(o.score or 0.0), -o.area, o.id))
