"""``clicklabel bench labels --few-shot 0,4,16 [--knn]``: does learning from the annotator pay? One run, one data
set, one split: half of the ground truth (fixed seed) plays the labels people confirmed, the other half is
labelled and scored: by the model with 0 / K nearest examples, and by the neighbours' vote alone (no model).
Accuracy, tokens, cost and seconds per scored object, one row per setting.

Descriptors come from the segmentation model given (``--model``/``--checkpoint``, ``--random-weights`` for
plumbing: random features make the neighbours meaningless, so only the real weights' rows say anything)."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..bench.harness import bench_engine, print_table
from ..coco import import_coco
from ..errors import ClickLabelError
from ..label import Labeler, label_objects
from ..label.learn import Neighbourhood, describe_object
from ..project import Store
from .labels import breed_matches, species_of


@dataclass
class Row:
    setting: str
    n: int
    species: float
    breed: float
    tokens: float  # per object
    cost: float  # per object
    seconds: float  # per object
    requests: int


def _truth(data: Path, store: Store) -> dict[int, dict]:
    doc = json.loads(sorted(data.glob("*.json"))[0].read_text())
    by_name = {im["file_name"].rsplit("/", 1)[-1]: im for im in doc["images"]}
    return {ob.id: by_name[store.image(ob.image_id).path.rsplit("/", 1)[-1]] for ob in store.objects()}


def _score(setting, answers: dict[int, tuple[str | None, str | None]], truth, tokens, cost, seconds, requests) -> Row:
    n = len(answers) or 1
    sp = sum(species_of(lab, sup) == truth[oid]["species"] for oid, (lab, sup) in answers.items())
    br = sum(breed_matches(truth[oid]["breed"], lab) for oid, (lab, _) in answers.items() if lab)
    return Row(setting, len(answers), sp / n, br / n, tokens / n, cost / n, seconds / n, requests)


def bench_label_learning(data: str | Path, labeler: Labeler, shots: list[int], knn: bool, model: str,
                         checkpoint: str | None, random_weights: bool, device: str, limit: int | None = None,
                         seed: int = 0, k: int = 5, out=None) -> list[Row]:
    out = out or sys.stdout
    data = Path(data)
    if not sorted(data.glob("*.json")) or not (data / "images").is_dir():
        raise ClickLabelError(f"{data} needs a COCO .json file with species and breed per image and an images/ folder")
    work = Path(tempfile.mkdtemp(prefix="clicklabel_bench_learning_"))
    store = Store(work / "bench.clicklabel", root=data / "images")
    import_coco(sorted(data.glob("*.json"))[0], data / "images", store)
    truth = _truth(data, store)
    obs = store.objects()
    order = np.random.default_rng(seed).permutation(len(obs))
    obs = [obs[i] for i in order[: limit or len(obs)]]
    confirmed, scored = obs[: len(obs) // 2], obs[len(obs) // 2 :]
    t = time.perf_counter()
    with bench_engine(model, checkpoint, random_weights, device) as setup:
        eng = setup.engine
        by_image: dict[int, list] = {}
        for ob in obs:
            by_image.setdefault(ob.image_id, []).append(ob)
        for image_id, group in by_image.items():
            eng.set_image(store.load_image(image_id))
            for ob in group:
                describe_object(store, eng, ob.id, ob.mask)
        engine_name = f"{eng.name} {eng.model}"
    describe_s = time.perf_counter() - t
    for ob in confirmed:  # the half that plays "confirmed by a person": the true breed, species as coarse class
        gt = truth[ob.id]
        store.relabel(ob.id, gt["breed"], gt["species"])
    scored_ids = [ob.id for ob in scored]
    rows = []
    if knn:
        near = Neighbourhood(store)
        species_of_breed = {truth[ob.id]["breed"]: truth[ob.id]["species"] for ob in confirmed}
        t = time.perf_counter()
        answers = {}
        for oid in scored_ids:
            v = near.vote(oid, k)
            answers[oid] = (v.label, species_of_breed.get(v.label)) if v else (None, None)
        rows.append(_score(f"kNN vote (k={k}), no model", answers, truth, 0, 0.0, time.perf_counter() - t, 0))
    for shot in shots:
        store.mark_pending(scored_ids)
        run = Labeler(replace(labeler.config, few_shot=shot), labeler.cache, labeler.prices)
        t = time.perf_counter()
        summary = label_objects(store, scored_ids, run)
        seconds = time.perf_counter() - t
        answers = {ob.id: (ob.label, ob.supercategory) if ob.label_status == "done" else (None, None)
                   for ob in store.objects_by_id(scored_ids)}
        requests = summary.labelled + summary.failed - summary.cached
        rows.append(_score(f"{run.config.lmm}, {shot} example(s)", answers, truth,
                           summary.prompt_tokens + summary.completion_tokens, summary.cost, seconds, requests))
    weights = ("RANDOM WEIGHTS: the neighbours mean nothing, plumbing only" if setup.random_weights
               else f"weights {Path(setup.checkpoint).name}")
    print(f"clicklabel bench labels (learning): {len(confirmed)} objects confirmed, {len(scored)} scored (seed "
          f"{seed}); descriptors from {engine_name} ({weights}) in {describe_s:.1f} s; detail {labeler.config.detail}",
          file=out)
    print_table([[r.setting, r.n, f"{100 * r.species:.1f}%", f"{100 * r.breed:.1f}%", f"{r.tokens:.0f}",
                  f"${r.cost:.6f}", f"{r.seconds:.3f}", r.requests] for r in rows],
                ["setting", "objects", "species accuracy", "breed accuracy", "tokens / object", "cost / object",
                 "s / object", "requests"], out=out)
    return rows
