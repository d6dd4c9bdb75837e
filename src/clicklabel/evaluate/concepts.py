"""``clicklabel bench concepts``: multimodal-model requests per accepted object, concept proposals (SAM 3: the class
comes with the instance) against class-blind proposals named by the model (propose, then ``label``: one request per
object), on a COCO data set, against whatever OpenAI-compatible server ``OPENAI_BASE_URL`` names.

The annotator is simulated: with ``accept='truth'`` a proposal is accepted when it covers a ground-truth object
(mask IoU >= 0.5; a concept proposal also needs that object's class), with ``accept='all'`` every proposal is (random
weights find nothing real: the request counts still hold). ``check`` adds the class audit of each concept proposal
(one request each) to the concept path.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..bench.harness import print_table
from ..coco.read import iter_instances
from ..errors import ClickLabelError
from ..masks import mask_iou

MATCH_IOU = 0.5


@dataclass
class PathResult:
    name: str
    proposals: int = 0
    accepted: int = 0
    requests: int = 0
    cost: float = 0.0

    @property
    def per_object(self) -> float | None:
        return self.requests / self.accepted if self.accepted else None


def _truth(data: Path, limit: int | None) -> dict[Path, list]:
    files = sorted(data.glob("*.json"))
    if not files:
        raise ClickLabelError(f"{data} needs a COCO .json file (and its images beside it or in images/)")
    by_image: dict[Path, list] = {}
    for image, inst in iter_instances(files[0]):
        if image not in by_image and limit is not None and len(by_image) >= limit:
            continue
        by_image.setdefault(image, []).append(inst)
    if not by_image:
        raise ClickLabelError(f"no readable annotations with their images in {files[0]}")
    return by_image


def _accepted(ob, truth, accept: str, need_class: bool) -> bool:
    if accept == "all":
        return True
    return any(mask_iou(ob.mask, t.mask) >= MATCH_IOU and (not need_class or t.category == ob.label) for t in truth)


def bench_concepts(data: str | Path, engine, labeler, concepts=None, limit: int | None = None, accept: str = "truth",
                   check: bool = False, settings=None, threshold: float = 0.5, out=None) -> dict[str, PathResult]:
    from ..label import label_objects
    from ..label.concept_review import check_concepts
    from ..project import Store, add_images, propose_project
    from ..project.concepts import propose_concepts_project
    from ..segment.propose import ProposeSettings

    out = out or sys.stdout
    truth = _truth(Path(data), limit)
    names = list(concepts or sorted({t.category for ts in truth.values() for t in ts}))
    blind, concept = PathResult("class-blind propose + label"), PathResult("concept proposals (SAM 3)")
    with tempfile.TemporaryDirectory() as tmp:
        stores = {}
        for key in ("blind", "concept"):
            store = stores[key] = Store(Path(tmp) / f"{key}.clicklabel", root=Path(data))
            add_images(store, list(truth))
        by_path = {Path(k).resolve(): v for k, v in truth.items()}
        gt = {im.id: by_path.get((stores["blind"].root / im.path).resolve(), []) for im in stores["blind"].images()}

        rep = propose_project(stores["blind"], engine, settings or ProposeSettings())
        blind.proposals = len(rep.proposed)
        ids = [o.id for o in stores["blind"].objects(states=("proposed",))
               if _accepted(o, gt[o.image_id], accept, need_class=False)]
        for oid in ids:
            stores["blind"].decide_proposal(oid, True)
        blind.accepted = len(ids)
        summary = label_objects(stores["blind"], ids, labeler) if ids else None
        if summary is not None:
            blind.requests, blind.cost = summary.labelled + summary.failed, summary.cost

        rep = propose_concepts_project(stores["concept"], engine, names, threshold=threshold)
        concept.proposals = len(rep.proposed)
        concept.name += " + check" if check else ""
        if check and rep.proposed:
            summary = check_concepts(stores["concept"], rep.proposed, labeler.config.lmm, names)
            concept.requests, concept.cost = summary.labelled + summary.failed, summary.cost
        concept.accepted = sum(1 for o in stores["concept"].objects(states=("proposed",))
                               if _accepted(o, gt[o.image_id], accept, need_class=True))
    _print([blind, concept], names, len(truth), accept, labeler.config.lmm, engine, out)
    return {"blind": blind, "concept": concept}


def _print(rows, names, images: int, accept: str, lmm: str, engine, out) -> None:
    def per(r):
        return "-" if r.per_object is None else f"{r.per_object:.2f}"

    print(f"clicklabel bench concepts: {images} images, concepts {', '.join(names)}, model {engine.model}, LMM {lmm}, "
          f"annotator accepts {'every proposal' if accept == 'all' else 'proposals matching the ground truth'}",
          file=out)
    print_table([[r.name, r.proposals, r.accepted, r.requests, per(r), f"${r.cost:.4f}"] for r in rows],
                ["path", "proposals", "accepted", "LMM requests", "requests / accepted object", "cost"], out=out)
    a, b = rows[0].per_object, rows[1].per_object
    if a is not None and b is not None:
        print(f"LMM requests saved per accepted object: {a - b:.2f}", file=out)
    else:
        print("LMM requests saved per accepted object: - (a path accepted nothing; with real weights: clicklabel "
              "bench concepts --data ../shared/data/pets --model sam3)", file=out)
