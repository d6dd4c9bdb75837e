"""``clicklabel precompute``: embed every image of a folder or project into the embedding cache.

Three stages run at once so the device never waits for the CPU:
1. a pool of CPU threads reads, decodes, hashes and resizes images (PIL and hashlib release the GIL), a bounded
   window ahead of the encoder, skipping images already in the cache;
2. the calling thread sends batches to the encoder; on CUDA the next batch is queued before the previous
   batch's features are fetched, so the GPU always has work;
3. writer threads put the features (the cache's precision) into the cache, atomically (no fsync: a cache entry torn by a
   power loss is detected on read and recomputed).

With the GPU fast path (bf16 on CUDA) the encoder resizes on the device (``ImageEncoder.device_resize``): PIL's
resize held the GIL for ~2.5 ms an image, and with 16 readers + writers + the main thread sharing one GIL that,
not the GPU, set the rate.

Resumable: cached images are skipped, so an interrupted run goes on where it stopped. Cache entries hold no
paths or machine details: a cache filled on a GPU machine works on a laptop.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path

from ..embeddings import Embedding
from ..errors import ClickLabelError
from ..images import load_image


def bounded_map(pool: Executor, fn: Callable, items: Iterable, window: int) -> Iterator:
    """``pool.map`` in order, but with at most ``window`` items submitted ahead (bounded memory)."""
    it = iter(items)
    queue: deque[Future] = deque(pool.submit(fn, x) for _, x in zip(range(window), it))
    try:
        while queue:
            fut = queue.popleft()
            for x in it:
                queue.append(pool.submit(fn, x))
                break
            yield fut.result()
    finally:
        for f in queue:
            f.cancel()


def precompute(
    engine,
    paths: list[Path],
    batch: int = 8,
    workers: int | None = None,
    writers: int = 8,
    progress: Callable[[int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> dict:
    """Embed the images of ``paths`` that are not cached yet with ``engine`` (SAM, SAM 2.1 or HQ-SAM).

    ``progress(n)`` is called with the number of images finished (encoded and written, found cached, or
    unreadable); ``cancel()`` returning True stops after the batch in hand, keeping everything written.
    Returns counts: encoded, cached, failed, errors (one line per failed image), cancelled, seconds."""
    import time

    import torch

    if batch < 1:
        raise ClickLabelError("--batch must be at least 1")
    enc = engine.encoder
    cuda = enc.device.startswith("cuda")
    pad_to = batch if enc.compile_mode else None  # a compiled encoder keeps one batch shape
    workers = workers or max(1, min(16, (os.cpu_count() or 2)))
    stats: dict = {"encoded": 0, "cached": 0, "failed": 0, "errors": [], "cancelled": False}
    tick = progress or (lambda n: None)
    seen: set[str] = set()
    lock = threading.Lock()
    t0 = time.perf_counter()

    def prepare(p: Path):
        try:
            img = load_image(p)
        except ClickLabelError as exc:
            return p, None, None, str(exc)
        key = engine.embedding_key(img)
        if engine.cache.contains(key):
            return p, key, None, None
        return p, key, enc.prepare(img), None

    def count(what: str, error: str | None = None) -> None:
        with lock:
            stats[what] += 1
            if error:
                stats["errors"].append(error)
            tick(1)

    def write(p: Path, key: str, emb: Embedding) -> None:
        try:
            engine.cache.put(key, emb, memory=False)
            error = None
        except ClickLabelError as exc:
            error = f"{p}: cannot write the cache entry: {exc}"
        count("failed" if error else "encoded", error)

    def launch(entries):
        """Queue one batch on the device; returns what ``finish`` needs (asynchronous on CUDA)."""
        stored = torch.float32 if getattr(engine.cache, "precision", "float16") == "float32" else torch.float16
        arrays = {k: v.to(stored) for k, v in enc.run_all([e[2] for e in entries], pad_to).items()}
        if not cuda:
            return entries, arrays, None
        host = {k: torch.empty(v.shape, dtype=v.dtype, pin_memory=True) for k, v in arrays.items()}
        for k, v in arrays.items():
            host[k].copy_(v, non_blocking=True)
        done = torch.cuda.Event()
        done.record()
        return entries, host, done

    def finish(item, out: ThreadPoolExecutor, pending: list) -> None:
        entries, host, done = item
        if done is not None:
            done.synchronize()
        arr = {k: v.numpy() for k, v in host.items()}
        for i, (p, key, prep) in enumerate(entries):
            emb = Embedding(arr["features"][i : i + 1], prep.original_size, prep.input_size,
                            {k: v[i : i + 1] for k, v in arr.items() if k != "features"})
            pending.append(out.submit(write, p, key, emb))

    inflight = None
    written: list[Future] = []
    with ThreadPoolExecutor(workers, thread_name_prefix="clicklabel-read") as pool, \
            ThreadPoolExecutor(writers, thread_name_prefix="clicklabel-write") as out:
        entries: list = []
        for p, key, prep, err in bounded_map(pool, prepare, paths, window=max(2 * workers, 3 * batch)):
            if err is not None:
                count("failed", f"{p}: {err}")
                continue
            if prep is None or key in seen:  # cached, or the same pixels earlier in this run
                count("cached")
                continue
            seen.add(key)
            entries.append((p, key, prep))
            if len(entries) == batch:
                launched = launch(entries)
                if inflight is not None:
                    finish(inflight, out, written)
                inflight, entries = launched, []
                if cancel is not None and cancel():
                    stats["cancelled"] = True
                    break
        if entries and not stats["cancelled"]:
            launched = launch(entries)
            if inflight is not None:
                finish(inflight, out, written)
            inflight = launched
        if inflight is not None:
            finish(inflight, out, written)
        for f in written:
            f.result()
    stats["seconds"] = time.perf_counter() - t0
    return stats
