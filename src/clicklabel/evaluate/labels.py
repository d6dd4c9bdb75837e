"""Label accuracy of an LMM on a labelled image set (the study's experiments 1 and 3): species and breed accuracy,
per-class accuracy so rare classes show, a confusion table, tokens, cost and seconds per object.

Data layout: a COCO file with one object per image whose image entries carry ``species`` and ``breed`` (as in
``../shared/data/pets``); images under ``DATA/images``.
"""

from __future__ import annotations

import re
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from ..bench.harness import print_table
from ..coco import import_coco
from ..errors import ClickLabelError
from ..label import Labeler, label_objects
from ..project import Store


def normalise(text: str | None) -> str:
    """Lower case, words only ('Siamese cat (Cat)' -> 'siamese cat cat')."""
    return " ".join(re.findall(r"[a-z0-9]+", (text or "").lower().replace("_", " ")))


def species_of(label: str | None, supercategory: str | None, classes=("cat", "dog")) -> str:
    """The coarse class named by an answer, or 'other'."""
    words = set(normalise(f"{label} {supercategory}").split())
    found = [c for c in classes if c in words or f"{c}s" in words]
    if len(found) == 1:
        return found[0]
    if "puppy" in words:
        return "dog" if "dog" in classes else "other"
    if "kitten" in words:
        return "cat" if "cat" in classes else "other"
    return "other"


def breed_matches(breed: str, label: str | None) -> bool:
    return f" {normalise(breed)} " in f" {normalise(label)} "


@dataclass
class LabelBenchResult:
    n: int
    species_accuracy: float
    breed_accuracy: float
    per_class: dict[str, tuple[int, int]]  # breed -> (correct, total)
    confusion: dict[tuple[str, str], int]  # (true species, predicted) -> count
    prompt_tokens: int
    completion_tokens: int
    cost: float
    seconds: float
    failed: int
    skipped: list[str]


def bench_labels(data: str | Path, labeler: Labeler, limit: int | None = None, project: str | Path | None = None,
                 out=None) -> LabelBenchResult:
    """Import the data set into a project, label every object, compare with the ground truth, print tables."""
    out = out or sys.stdout
    data = Path(data)
    coco_files = sorted(data.glob("*.json"))
    if not coco_files or not (data / "images").is_dir():
        raise ClickLabelError(f"{data} needs a COCO .json file and an images/ folder")
    import json

    doc = json.loads(coco_files[0].read_text())
    truth = {im["id"]: im for im in doc["images"]}
    workdir = Path(project) if project else Path(tempfile.mkdtemp(prefix="clicklabel_bench_labels_"))
    store = Store(workdir / "bench.clicklabel" if workdir.suffix != ".clicklabel" else workdir, root=data / "images")
    if not store.count_objects():
        rep = import_coco(coco_files[0], data / "images", store)
        skipped = rep.problems
    else:
        skipped = []
    objects = store.objects()
    if limit:
        objects = objects[:limit]
    ids = [o.id for o in objects]
    store.mark_pending(ids)
    t = time.perf_counter()
    summary = label_objects(store, ids, labeler)
    seconds = time.perf_counter() - t
    by_path = {im["file_name"].rsplit("/", 1)[-1]: im for im in truth.values()}
    per_class: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    confusion: Counter = Counter()
    sp_ok = br_ok = 0
    for ob in store.objects_by_id(ids):
        gt = by_path[store.image(ob.image_id).path.rsplit("/", 1)[-1]]
        pred = species_of(ob.label, ob.supercategory) if ob.label_status == "done" else "failed"
        confusion[(gt["species"], pred)] += 1
        sp_ok += pred == gt["species"]
        hit = ob.label_status == "done" and breed_matches(gt["breed"], ob.label)
        br_ok += hit
        per_class[gt["breed"]][0] += hit
        per_class[gt["breed"]][1] += 1
    n = len(ids) or 1
    res = LabelBenchResult(
        len(ids), sp_ok / n, br_ok / n, {k: tuple(v) for k, v in per_class.items()}, dict(confusion),
        summary.prompt_tokens, summary.completion_tokens, summary.cost, seconds, summary.failed, skipped,
    )
    _print(res, labeler, out)
    return res


def _print(r: LabelBenchResult, labeler: Labeler, out) -> None:
    n = r.n or 1
    c = labeler.config
    print(f"clicklabel bench labels: model {c.lmm}, detail {c.detail}, crop {c.crop.mode}, "
          f"concurrency {c.concurrency}, {r.n} objects ({len(r.skipped)} annotations skipped)", file=out)
    print_table(
        [[r.n, f"{100 * r.species_accuracy:.2f}%", f"{100 * r.breed_accuracy:.2f}%",
          f"{(r.prompt_tokens + r.completion_tokens) / n:.0f}", f"${r.cost / n:.6f}", f"{r.seconds / n:.3f}",
          r.failed]],
        ["objects", "species accuracy", "breed accuracy", "tokens / object", "cost / object", "s / object",
         "failed"], out=out)
    print("\nper class (breed), rarest first:", file=out)
    rows = sorted(r.per_class.items(), key=lambda kv: (kv[1][1], kv[0]))
    print_table([[k, t, f"{100 * ok / t:.1f}%"] for k, (ok, t) in rows], ["breed", "objects", "accuracy"], out=out)
    print("\nconfusion (true species -> predicted):", file=out)
    preds = sorted({p for _, p in r.confusion})
    trues = sorted({t for t, _ in r.confusion})
    print_table([[t] + [r.confusion.get((t, p), 0) for p in preds] for t in trues], ["true \\ predicted"] + preds,
                out=out)
