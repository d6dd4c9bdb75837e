"""The Ray side of ``--ray`` batch jobs: ``SegmentWorker`` actors (one model load each) and the driver loops.

The workers write embeddings to the shared cache root (atomic files, so a killed worker leaves no half entry);
only small result dicts travel back. The driver alone writes the SQLite project.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import ClickLabelError
from . import ClusterError


class SegmentWorker:
    """Ray actor body: builds the engine once (``make_engine(**spec)`` with the cache at ``cache_root``)."""

    def __init__(self, spec: dict, cache_root: str | None):
        from ..embeddings import EmbeddingCache
        from ..segment import make_engine

        cache = EmbeddingCache.at_root(cache_root) if cache_root else EmbeddingCache()
        self.engine = make_engine(cache=cache, download=False, **spec)

    def ping(self) -> int:
        return os.getpid()

    def precompute(self, paths: list[str], batch_size: int = 8, workers: int = 2) -> list[dict]:
        from ..segment.precompute import precompute

        stats = precompute(self.engine, [Path(p) for p in paths], batch=batch_size, workers=workers)
        return [{"items": paths, **{k: stats[k] for k in ("encoded", "cached", "failed", "errors")}}]

    def propose(self, items: list[tuple], settings=None) -> list[dict]:
        """Proposals for each (image_id, path, existing masks); masks come back bit-packed (small to send)."""
        from ..images import load_image

        rows = []
        for image_id, path, existing in items:
            try:
                self.engine.set_image(load_image(path))
            except ClickLabelError as exc:
                rows.append({"items": [image_id], "failed": 1, "errors": [str(exc)]})
                continue
            props = self.engine.propose(settings, existing=[unpack(m) for m in existing])
            rows.append({"items": [image_id], "image_id": image_id, "engine": self.engine.name,
                         "model": self.engine.model, "props": [(pack(p.mask), p.predicted_iou) for p in props]})
        return rows


    def identity(self) -> dict:
        """What the driver records as the engine (``refined_by`` and the model's names)."""
        e = self.engine
        return {"name": e.name, "model": e.model, "model_id": getattr(e, "model_id", f"{e.name}:{e.model}")}

    def refine(self, items: list[tuple], boxes_per_call: int = 16) -> list[dict]:
        """The mask (bit-packed) and score for each XYXY box of each (image_id, path, boxes)."""
        from ..images import load_image

        rows = []
        for image_id, path, boxes in items:
            try:
                self.engine.set_image(load_image(path))
            except ClickLabelError as exc:
                rows.append({"items": [image_id], "failed": 1, "errors": [str(exc)]})
                continue
            results = self.engine.predict_boxes(boxes, batch=boxes_per_call)
            rows.append({"items": [image_id], "image_id": image_id,
                         "masks": [(pack(r.mask), r.score) for r in results]})
        return rows


def pack(mask):
    """A bool mask as (bit-packed bytes, shape): an eighth of the size to send between processes."""
    import numpy as np

    return np.packbits(mask), mask.shape


def unpack(packed):
    import numpy as np

    bits, shape = packed
    return np.unpackbits(bits, count=int(np.prod(shape))).reshape(shape).astype(bool)


def worker_plan(ray, max_workers: int | None = None, cpus_per_worker: int | None = None) -> tuple[int, dict, str]:
    """(number of workers, actor options, why that many in words): one actor per GPU when the cluster has GPUs; else
    one per machine with all its CPUs (``cpus_per_worker`` overrides): PyTorch spreads one encoding over the cores
    as well as separate processes would, without a copy of the model per core (vit_h is 2.5 GB) or the cores
    fighting over memory; ``max_workers`` caps it."""
    res = ray.cluster_resources()
    gpus = int(res.get("GPU", 0))
    machines = sum(1 for nd in ray.nodes() if nd.get("Alive"))
    if gpus:
        n, opts = gpus, {"num_gpus": 1, "num_cpus": 1}
        why = f"one per GPU ({gpus} GPU(s) on {machines} machine(s))"
    else:
        if cpus_per_worker is None:
            per_node = [int(nd.get("Resources", {}).get("CPU", 0)) for nd in ray.nodes() if nd.get("Alive")]
            cpus_per_worker = min([c for c in per_node if c] or [1])
        cpus = int(res.get("CPU", 1))
        n, opts = max(1, cpus // cpus_per_worker), {"num_cpus": cpus_per_worker}
        why = (f"{cpus} CPU(s) on {machines} machine(s), {cpus_per_worker} CPU(s) per worker (one worker per machine "
               "uses all its cores; more would split them and copy the model)")
    if max_workers and max_workers < n:
        n, why = max_workers, why + f"; capped by --ray-workers {max_workers}"
    elif max_workers and max_workers > n:
        why += f"; --ray-workers {max_workers} asked for more than the cluster holds"
    return n, opts, why


def make_workers(ray, spec: dict, cache_root: str | None, max_workers: int | None = None,
                 cpus_per_worker: int | None = None, ready_timeout: float = 300.0, say=None) -> list:
    """The workers of ``worker_plan``, each with one model load; waits until every actor is ready. ``say``: called
    with one line naming how many started and why."""
    n, opts, why = worker_plan(ray, max_workers, cpus_per_worker)
    # max_task_retries=0: the scheduler retries, so it can count attempts and isolate a file that kills workers
    cls = ray.remote(max_restarts=-1, max_task_retries=0, **opts)(SegmentWorker)
    workers = [cls.remote(spec, cache_root) for _ in range(n)]
    try:
        ray.get([w.ping.remote() for w in workers], timeout=ready_timeout)
    except ray.exceptions.GetTimeoutError:
        raise ClusterError(f"the Ray workers were not ready after {ready_timeout:.0f} s (too few free CPUs/GPUs "
                           "on the cluster?)") from None
    except ray.exceptions.RayActorError as exc:
        raise ClusterError(f"a Ray worker could not load the model: {exc}") from None
    if say is not None:
        say(f"started {n} Ray worker(s): {why}")
    return workers


def ray_precompute(ray, workers: list, paths: list[Path], batch: int = 8,
                   progress: Callable[[int], None] | None = None) -> dict:
    """``precompute`` over the workers; the same counts as the local one (encoded, cached, failed, errors)."""
    from .scheduler import BatchScheduler

    if batch < 1:
        raise ClusterError("--batch must be at least 1")
    stats: dict = {"encoded": 0, "cached": 0, "failed": 0, "errors": [], "cancelled": False}
    t0 = time.perf_counter()
    for row in BatchScheduler(ray, workers, "precompute").run([str(p) for p in paths], batch=batch, batch_size=batch):
        for k in ("encoded", "cached", "failed"):
            stats[k] += row.get(k, 0)
        stats["errors"] += row.get("errors", [])
        if progress:
            progress(len(row["items"]))
    stats["seconds"] = time.perf_counter() - t0
    return stats


def ray_propose(ray, workers: list, store, settings=None, accept_above: float | None = None, batch: int = 2,
                progress: Callable[[int], None] | None = None):
    """``propose_project`` over the workers: the workers propose, the driver alone writes the project (each image's
    proposals as the results arrive, so a killed run keeps what came back; a rerun skips objects already there)."""
    from ..project.proposals import ProposeReport, store_proposals
    from .scheduler import BatchScheduler

    rep = ProposeReport()
    items = [(im.id, str(store.image_path(im)),
              [pack(o.mask) for o in store.objects(im.id, states=("accepted", "proposed"))])
             for im in store.images()]
    for row in BatchScheduler(ray, workers, "propose").run(items, batch=batch, settings=settings):
        rep.errors += row.get("errors", [])
        if "image_id" in row:
            store_proposals(store, row["image_id"], [(unpack(m), score) for m, score in row["props"]],
                            row["engine"], row["model"], accept_above, rep)
            rep.images += 1
        if progress:
            progress(len(row["items"]))
    return rep


def ray_refine(ray, workers: list, store, settings, progress: Callable[[int], None] | None = None):
    """``refine_project`` over the workers: they decode the boxes, the driver checks each mask against its box and
    writes it (one transaction per batch, as the local run), so a killed run keeps what came back."""
    from types import SimpleNamespace

    from ..project.refine import RefineReport, prompt_boxes, refine_targets, store_refined
    from .scheduler import BatchScheduler

    ident = SimpleNamespace(**ray.get(workers[0].identity.remote()))
    targets = refine_targets(store, ident, None, settings.only_boxes)
    items = []
    for image_id, obs in sorted(targets.items()):
        im = store.image(image_id)
        items.append((image_id, str(store.image_path(im)), prompt_boxes(obs, im.width, im.height)))
    rep = RefineReport()
    for row in BatchScheduler(ray, workers, "refine").run(items, batch=1, boxes_per_call=settings.batch):
        rep.errors += row.get("errors", [])
        if "image_id" in row:
            obs, masks = targets[row["image_id"]], [(unpack(m), score) for m, score in row["masks"]]
            for start in range(0, len(obs), settings.batch):
                end = start + settings.batch
                store_refined(store, obs[start:end], masks[start:end], settings, ident, rep)
            rep.images += 1
        if progress:
            progress(len(row["items"]))
    return rep, ident
