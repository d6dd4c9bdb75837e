"""Concept proposals: every instance of each named class in an image, with its class attached.

``find_concepts`` asks an engine that takes concept prompts (SAM 3: ``Sam3Engine.find``; the vision features are
the image's cached embedding, each phrase's text features are encoded once) for each concept in turn, optionally
with exemplar boxes; ``resolve_duplicates`` then keeps one instance per object: the best-scoring one, with the
other concepts that found it kept beside it (``also``) for a person to decide. Instances that cover an object
already in the project are not offered again. The grounding path (``label.grounding``) gives the same instances
from the multimodal model's boxes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import ClickLabelError
from ..masks import tight_bbox

DUPLICATE_IOU = 0.7  # two instances overlapping this much are one object
MAX_CONCEPT_CHARS = 100


@dataclass
class ConceptInstance:
    label: str
    score: float
    mask: np.ndarray
    also: list[tuple[str, float]] = field(default_factory=list)  # other concepts that found this object, and score

    @property
    def bbox(self):
        return tight_bbox(self.mask)

    @property
    def review(self) -> str | None:
        """Why a person should look at it: another concept found it too."""
        if not self.also:
            return None
        return "also found as " + ", ".join(f"{name} ({score:.2f})" for name, score in self.also)


@dataclass
class ConceptReport:
    instances: list[ConceptInstance] = field(default_factory=list)  # after duplicates and existing objects
    found: dict[str, int] = field(default_factory=dict)  # concept -> instances the model returned
    refused: list[str] = field(default_factory=list)  # grounding: boxes refused, each with its reason
    cancelled: bool = False
    requests: int = 0  # multimodal-model requests (grounding)
    cost: float = 0.0


def parse_concepts(text: str | Sequence[str], vocabulary: Sequence[str] = ()) -> list[str]:
    """Concepts from "cat, dog" (or a list); 'vocab' stands for ``vocabulary``. Duplicates are dropped, order
    kept; ClickLabelError for none, or one too long."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[str] = []
    for raw in items:
        name = " ".join(str(raw).split())
        if name.lower() == "vocab":
            if not vocabulary:
                raise ClickLabelError("--concepts vocab: the project has no vocabulary yet (set one, or name the "
                                      "classes: --concepts \"cat,dog\")")
            out.extend(v for v in vocabulary if v not in out)
        elif name:
            if len(name) > MAX_CONCEPT_CHARS:
                raise ClickLabelError(f"a concept has at most {MAX_CONCEPT_CHARS} characters: {name[:40]}...")
            if name not in out:
                out.append(name)
    if not out:
        raise ClickLabelError("no concepts: name the classes, comma separated (e.g. --concepts \"cat,dog\")")
    return out


def parse_box(text: str) -> tuple[float, float, float, float]:
    """'X0,Y0,X1,Y1' -> four floats (checked against the image later); ClickLabelError otherwise."""
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        vals = []
    if len(vals) != 4 or not all(np.isfinite(vals)):
        raise ClickLabelError(f"an exemplar box is four numbers X0,Y0,X1,Y1 in image pixels, not {text!r}")
    return tuple(vals)  # type: ignore[return-value]


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    ba, bb = tight_bbox(a), tight_bbox(b)
    if ba is None or bb is None:
        return 0.0
    if ba[0] > bb[0] + bb[2] or bb[0] > ba[0] + ba[2] or ba[1] > bb[1] + bb[3] or bb[1] > ba[1] + ba[3]:
        return 0.0
    inter = np.count_nonzero(a & b)
    return inter / max(1, np.count_nonzero(a | b))


def resolve_duplicates(instances: Sequence[ConceptInstance], existing: Sequence[np.ndarray] = (),
                       iou: float = DUPLICATE_IOU) -> list[ConceptInstance]:
    """One instance per object, best score first: an instance overlapping a better one by ``iou`` is merged into
    it (its concept kept in ``also`` when it differs); empty ones and those covering an ``existing`` mask are
    dropped."""
    kept: list[ConceptInstance] = []
    for inst in sorted(instances, key=lambda i: -i.score):
        if not inst.mask.any() or any(mask_iou(inst.mask, m) >= iou for m in existing):
            continue
        twin = next((k for k in kept if mask_iou(inst.mask, k.mask) >= iou), None)
        if twin is None:
            kept.append(inst)
        elif inst.label != twin.label and inst.label not in {n for n, _ in twin.also}:
            twin.also.append((inst.label, inst.score))
    return kept


def find_concepts(engine, concepts: Sequence[str], exemplars: Sequence[Sequence[float]] = (),
                  threshold: float = 0.5, existing: Sequence[np.ndarray] = (),
                  progress: Callable[[int, int], None] | None = None, stop=None,
                  on_concept: Callable[[str, list[ConceptInstance]], None] | None = None) -> ConceptReport:
    """Every instance of each concept on the engine's current image (``engine.find``: SAM 3). ``exemplars``:
    boxes of one instance each, given with every concept. ``on_concept(name, instances)`` as each concept is done
    (the GUI shows them as they arrive); ``progress(done, total)``; a set ``stop`` ends before the next concept."""
    if not hasattr(engine, "find"):
        raise ClickLabelError(f"the {engine.name} engine takes no concept prompts: use --model sam3, or "
                              "--grounding lmm (the multimodal model finds the boxes, this engine the masks)")
    rep = ConceptReport()
    found: list[ConceptInstance] = []
    for n, concept in enumerate(concepts):
        if stop is not None and stop.is_set():
            rep.cancelled = True
            break
        hits = [ConceptInstance(concept, s, m) for s, m in engine.find(concept, exemplars, threshold=threshold)]
        rep.found[concept] = len(hits)
        found.extend(hits)
        if on_concept is not None:
            on_concept(concept, hits)
        if progress is not None:
            progress(n + 1, len(concepts))
    rep.instances = resolve_duplicates(found, existing)
    return rep
