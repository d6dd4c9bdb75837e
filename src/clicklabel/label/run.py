"""Labelling a project: crops rendered per image in a worker thread, sent at bounded concurrency, each answer
written to the store as it arrives (so an interrupted run keeps everything already labelled)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ClickLabelError
from ..project import Store
from ..project.leases import lease_owner
from .client import Labeler, LabelResult
from .crop import encode_image, object_crop
from .learn import Examples
from .prices import cost, image_tokens, price_for
from .prompt import SYSTEM_PROMPT, user_text

FORMAT_META = "lmm_response_format:{model}@{base}"
TYPICAL_COMPLETION_TOKENS = 30


LEASE_MARGIN = 120.0  # seconds a claim outlives one request with all its retries


@dataclass
class RunSummary:
    labelled: int = 0
    failed: int = 0
    cached: int = 0
    skipped: int = 0  # another run holds them, or they changed (relabelled, deleted, labelled) meanwhile
    unstored: int = 0  # answers that arrived but could not be written (the project stayed busy): in the cache
    knn: int = 0  # of the labelled, those the neighbours' vote labelled without asking the model
    saved: float = 0.0  # what those would have cost (the estimate's price per object)
    without_examples: int = 0  # few-shot: objects asked without examples (no descriptor, nothing confirmed yet)
    agreed: int = 0  # a check (the class audit): of the labelled, those whose answer agrees with the object's label
    disagreed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    errors: dict[int, str] = field(default_factory=dict)

    @property
    def done(self) -> int:
        return self.labelled + self.failed + self.skipped + self.unstored


def objects_to_label(store: Store, relabel_all: bool = False) -> list[int]:
    """Ids of the accepted objects to send: pending or failed ones, or every one with ``relabel_all``; a track is
    sent once, from its best frame (``label_objects`` gives the label to the whole track)."""
    statuses = None if relabel_all else ("pending", "failed")
    return store.one_per_track([o.id for o in store.objects(label_status=statuses)])


def lease_seconds(labeler: Labeler) -> float:
    """How long a run's claim on an object lasts: one request with every retry, plus a margin."""
    c = labeler.config
    return c.timeout * (c.max_retries + 1) + LEASE_MARGIN


def iter_crops(store: Store, object_ids, labeler: Labeler, stop: threading.Event | None = None, claim=None):
    """(object id, encoded crop) per object, loading each image once; images that cannot be read yield errors.
    ``claim(ids) -> ids`` (a labelling run's lease) is asked for each image's objects before its crops are made:
    objects it does not return are left out."""
    by_image = defaultdict(list)
    for ob in store.objects_by_id(object_ids):
        by_image[ob.image_id].append(ob)
    for image_id, obs in by_image.items():
        if stop is not None and stop.is_set():
            return
        if claim is not None:
            mine = set(claim([ob.id for ob in obs]))
            obs = [ob for ob in obs if ob.id in mine]
            if not obs:
                continue
        try:
            image = store.load_image(image_id)
        except ClickLabelError as exc:
            for ob in obs:
                yield ob.id, exc
            continue
        for ob in obs:
            try:
                yield ob.id, encode_image(object_crop(image, ob, labeler.config.crop), labeler.config.crop.fmt)
            except ClickLabelError as exc:
                yield ob.id, exc


def label_objects(store: Store, object_ids, labeler: Labeler, progress=None, stop: threading.Event | None = None,
                  check: bool = False) -> RunSummary:
    """Label ``object_ids`` and store each result as it arrives. ``progress(done, total)`` is called after each;
    setting ``stop`` ends the run early (what is done stays done). With ``check`` (the class audit), the objects
    already have labels: the model's answer is recorded beside each, with whether it agrees, and no label changes.

    The run claims each image's objects in the store (a lease) before rendering them and renews the claim right
    before each request, so a second run on the project (the CLI or the widget) sends none of them again."""
    summary = RunSummary()
    total = len(object_ids)
    base = labeler.config.base_url or "default"
    meta_key = FORMAT_META.format(model=labeler.config.lmm, base=base)
    remembered = store.get_meta(meta_key)
    if remembered:
        labeler.format = remembered
    owner = lease_owner(uuid.uuid4().hex[:12])
    cfg = labeler.config
    learn = None if check or not (cfg.few_shot or cfg.knn_only_above) else Examples(store, cfg.few_shot, cfg.crop)
    if learn is not None and cfg.few_shot and cfg.vocabulary:  # labels people typed are offered too
        cfg.vocabulary = list(dict.fromkeys([*cfg.vocabulary, *store.typed_labels()]))
    seconds = lease_seconds(labeler)
    since = time.time()
    halt = threading.Event()  # the caller's stop, or a store that cannot be written
    failure: list[ClickLabelError] = []

    def stopped() -> bool:
        if stop is not None and stop.is_set():
            halt.set()
        return halt.is_set()

    def tell() -> None:
        if progress is not None:
            progress(summary.done, total)

    def claim(ids: list[int]) -> list[int]:
        got = store.claim_for_labelling(ids, owner, seconds, since, check=check)
        if len(got) < len(ids):
            summary.skipped += len(ids) - len(got)
            tell()
        return got

    def before_send(oid: int) -> bool:
        if stopped():
            return False
        try:
            if store.renew_lease(oid, owner, seconds):
                return True
        except ClickLabelError as exc:  # the lease cannot be written (busy): send nothing more, keep what arrives
            failure.append(exc)
            halt.set()
            return False
        summary.skipped += 1
        tell()
        return False

    def on_result(oid: int, res: LabelResult) -> None:
        if not failure:
            try:
                record(store, oid, res, labeler.config.lmm, summary, lease=owner, check=check)
            except ClickLabelError as exc:  # the project cannot be written (busy, full disk): stop sending
                failure.append(exc)
                halt.set()
        if failure:
            summary.unstored += 1
        tell()

    async def crops():
        it = iter_crops(store, object_ids, labeler, halt, claim)
        while True:
            try:
                item = await asyncio.to_thread(next, it, None)
            except ClickLabelError as exc:  # the claim could not be written: send nothing more
                failure.append(exc)
                halt.set()
                return
            if item is None or stopped():
                return
            oid, crop = item
            if isinstance(crop, Exception):
                on_result(oid, LabelResult(None, str(crop)))
                continue
            if learn is None:
                yield oid, crop
                continue
            if cfg.knn_only_above is not None and by_vote(oid):
                continue
            yield oid, crop, learn.for_object(oid) if cfg.few_shot else ()

    def by_vote(oid: int) -> bool:
        """Label from the neighbours alone when enough of them agree (counted as saved cost); False: ask."""
        v = learn.near.vote(oid, cfg.knn_k)
        if v is None or v.k < cfg.knn_k or v.agreement < cfg.knn_only_above or failure:
            return False
        try:
            stored = store.set_label(oid, v.label, None, v.agreement, "knn", 0, 0, 0.0, lease=owner)
        except ClickLabelError as exc:
            failure.append(exc)
            halt.set()
            return True
        if stored:
            summary.labelled += 1
            summary.knn += 1
            summary.saved += estimate(store, [oid], labeler, examples=cfg.few_shot)["cost"]
        else:
            summary.skipped += 1
        tell()
        return True

    async def main():
        try:
            await labeler.label_many(crops(), on_result, before_send)
        finally:
            await labeler.aclose()

    try:
        asyncio.run(main())
    finally:
        try:
            store.release_leases(owner)
        except ClickLabelError:
            pass  # they run out by themselves
    if failure and not summary.unstored:
        raise failure[0]
    if failure:
        kept = "are kept in the label cache: run the labelling again when the project is free (they are not paid " \
            "for twice)" if labeler.cache is not None else "were lost (no label cache)"
        raise type(failure[0])(f"{failure[0]}; the {summary.unstored} answer(s) that arrived but were not written "
                               f"{kept}")
    if labeler.format != remembered:
        store.set_meta(meta_key, labeler.format)
    if learn is not None:
        summary.without_examples = learn.without
    if not check:
        store.spread_track_labels(object_ids)  # a tracked object's label goes to every frame of its track
    return summary


def record(store: Store, oid: int, res: LabelResult, model: str, summary: RunSummary, lease: str | None = None,
           check: bool = False) -> None:
    """Write one result to the store and the run's totals (with ``lease``, only while the run holds the object;
    with ``check``, as the class audit's answer beside the object's own label)."""
    summary.prompt_tokens += res.prompt_tokens
    summary.completion_tokens += res.completion_tokens
    summary.cost += res.cost
    if check:
        tokens = (res.prompt_tokens, res.completion_tokens, res.cost)
        if res.ok:
            a = res.answer
            verdict = store.set_check(oid, a.label, a.supercategory, a.confidence, model, *tokens, lease=lease)
        else:
            verdict = store.set_check_failed(oid, res.error or "unknown error", model, *tokens, lease=lease)
        if verdict is None:
            summary.skipped += 1
        elif verdict == "failed":
            summary.failed += 1
            summary.errors[oid] = res.error or ""
        else:
            summary.labelled += 1
            summary.cached += res.cached
            summary.agreed += verdict == "agree"
            summary.disagreed += verdict == "disagree"
        return
    if res.ok:
        a = res.answer
        if not store.set_label(oid, a.label, a.supercategory, a.confidence, model, res.prompt_tokens,
                               res.completion_tokens, res.cost, lease=lease):
            summary.skipped += 1
            return
        summary.labelled += 1
        summary.cached += res.cached
    else:
        if not store.set_label_failed(oid, res.error or "unknown error", model, res.prompt_tokens,
                                      res.completion_tokens, res.cost, lease=lease):
            summary.skipped += 1
            return
        summary.failed += 1
        summary.errors[oid] = res.error or ""


def estimate(store: Store, object_ids, labeler: Labeler, examples: int | None = None) -> dict:
    """Requests, tokens and money a run would cost, without sending anything. With few-shot, each request also
    carries ``examples`` example crops at low detail with their question and answer (default: the few-shot K, or
    fewer when the project has fewer confirmed objects with a descriptor)."""
    c = labeler.config
    question = len(user_text(c.template, c.vocabulary)) // 4 + 12
    text_tokens = len(SYSTEM_PROMPT) // 4 + question
    if labeler.format == "json_schema":
        text_tokens += len(json.dumps(c.vocabulary or [])) // 4 + 60
    if examples is None:
        models = store.descriptor_models() if c.few_shot else []
        examples = min(c.few_shot, len(store.confirmed(models[0]).ids)) if models else 0
    if examples:
        per_example = image_tokens(c.lmm, c.crop.max_side, c.crop.max_side, "low", labeler.prices) + question + 25
        text_tokens += examples * per_example
    per_image = {}
    prompt_tokens = 0
    for ob in store.objects_by_id(object_ids):
        x, y, w, h = ob.bbox
        long_side = max(w, h) * (1 + 2 * c.crop.margin)
        s = min(1.0, c.crop.max_side / max(long_side, 1))
        key = (round(w * s), round(h * s))
        if key not in per_image:
            per_image[key] = image_tokens(c.lmm, max(1, key[0]), max(1, key[1]), c.detail, labeler.prices)
        prompt_tokens += text_tokens + per_image[key]
    n = len(object_ids)
    completion = n * TYPICAL_COMPLETION_TOKENS
    money = cost(c.lmm, prompt_tokens, completion, labeler.prices)
    return {
        "requests": n,
        "examples_per_request": examples,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "cost": money,
        "cost_per_object": money / n if n else 0.0,
        "priced": price_for(c.lmm, labeler.prices) is not None,
    }


def read_vocabulary(vocab: str | None, vocab_file: str | None) -> list[str]:
    """Labels from --vocab a,b,c or a file (one per line or comma separated)."""
    text = vocab or ""
    if vocab_file:
        try:
            text = Path(vocab_file).read_text()
        except OSError as exc:
            raise ClickLabelError(f"cannot read vocabulary file {vocab_file}: {exc.strerror}") from None
    items = [v.strip() for line in text.splitlines() for v in line.split(",")]
    return list(dict.fromkeys(v for v in items if v))
