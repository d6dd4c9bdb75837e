"""``clicklabel bench remote``: what the Ray engine and ``clicklabel serve`` cost next to doing the same in process,
all measured in one run on one machine (a private local Ray):

- the latency of fetching a cached embedding from the server (what a laptop pays per image it opens), next to
  reading it from the local disk cache, in interleaved pairs;
- the server's encoding of one client's uploads, each in a pair with the in-process encoder on another image;
  then 4 clients uploading at once (a throughput, next to the in-process rate of the pairs);
- ``precompute --ray`` next to the local ``precompute`` of the same number of distinct JPEGs, the Ray side timed
  as the user pays it: the cluster's start, the workers' model loads and the encoding.
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..images import load_image
from .agreement import interleaved, load_average, ratio_text
from .harness import bench_engine, device_name, percentile_ms, print_table

TOKEN = "bench-remote-token-0123456789"


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def bench_remote(model: str = "vit_b", checkpoint: str | None = None, random_weights: bool = False,
                 device: str = "cpu", images: int = 4, repeats: int = 30, data: str | None = None, out=None) -> dict:
    """Print the table; return every figure."""
    from ..cluster import ray_session
    from ..cluster.serving import start_server, stop_server
    from ..cluster.workers import make_workers, ray_precompute
    from ..embeddings import EmbeddingCache
    from ..segment import make_engine
    from ..segment.precompute import precompute
    from .encoder import make_jpeg_folder, source_images

    out = out or sys.stdout
    say = lambda text: print(text, file=out, flush=True)  # noqa: E731
    load0 = load_average()
    with bench_engine(model, checkpoint, random_weights, device, encoder="auto") as setup:
        eng, work = setup.engine, setup.workdir
        paths = make_jpeg_folder(work / "jpegs", 3 * images + 1, source_images(data))
        first, one, four, pre = paths[0], paths[1:1 + images], paths[1 + images:1 + 2 * images], paths[1 + 2 * images:]
        spec = {"engine": "sam", "model": "auto", "checkpoint": setup.checkpoint, "device": device, "encoder": "auto"}

        eng.encode(load_image(first))  # warm-up (first pass allocations)
        eng.cache = EmbeddingCache(work / "local_pre" / "embeddings")
        stats = precompute(eng, pre, batch=1)
        local_pre = _rate(stats["encoded"], stats["seconds"])
        say(f"measured: local precompute {local_pre:.3g} images/s ({stats['encoded']} images)")
        key_img = load_image(pre[0])
        key = eng.embedding_key(key_img)  # in the local cache now

        def local_read() -> None:
            eng.cache.clear_memory()
            eng.cache.get(key)

        started = time.perf_counter()
        with ray_session("local") as ray:
            # what `precompute --ray` costs the user: the cluster's start, the workers' model loads, the encoding
            start_s = time.perf_counter() - started
            t = time.perf_counter()
            workers = make_workers(ray, spec, str(work / "ray_pre"), say=say)
            stats = ray_precompute(ray, workers, pre, batch=1)
            ray_seconds = time.perf_counter() - t + start_s
            ray_pre = _rate(stats["encoded"], ray_seconds)
            say(f"measured: Ray precompute {ray_pre:.3g} images/s ({len(workers)} worker(s), {stats['encoded']} "
                f"images, {ray_seconds:.1f} s with the cluster's start and the model loads)")
            for w in workers:
                ray.kill(w)
            url = start_server(spec, work / "server_cache", TOKEN, port=0, replica_cpus=os.cpu_count() or 1)
            try:
                client = make_engine("remote", "auto", setup.checkpoint, device, encoder="stock",
                                     cache=EmbeddingCache(work / "client", disk=False), server=url,
                                     token=TOKEN).encoder.client
                client.embedding(key, key_img)  # this image is on the server from now on
                fetch = interleaved(lambda: client.embedding(key), local_read, repeats, warmup=1)
                say(f"measured: cached fetch p50 {percentile_ms(fetch.a, 50):.1f} ms, {fetch.load_text()}")
                local_imgs, served_imgs = iter(load_image(p) for p in one), iter(load_image(p) for p in one)
                # each pair: our encoder on one image, the server on the same image uploaded by one client
                serve1 = interleaved(lambda: eng.encode(next(local_imgs)),
                                     lambda: (lambda img: client.embedding(eng.embedding_key(img), img))(
                                         next(served_imgs)), images, warmup=0)
                say(f"measured: serve, 1 client vs in-process: {serve1.spread()}, {serve1.load_text()}")
                t = time.perf_counter()  # each client reads its image, hashes it, asks, uploads on a miss
                with ThreadPoolExecutor(4) as pool:
                    list(pool.map(lambda img: client.embedding(eng.embedding_key(img), img),
                                  (load_image(p) for p in four)))
                serve4 = _rate(len(four), time.perf_counter() - t)
                say(f"measured: serve, 4 clients: {serve4:.3g} images/s ({len(four)} images)")
            finally:
                stop_server()

    local_enc = 1 / float(np.median(serve1.a))
    serve_1 = 1 / float(np.median(serve1.b))
    p50, p90 = percentile_ms(fetch.a, 50), percentile_ms(fetch.a, 90)
    r50 = percentile_ms(fetch.b, 50)
    rows = [
        ["cached embedding fetch p50 (ms)", f"{p50:.1f}", f"{r50:.1f} (local disk cache read)",
         f"{ratio_text(1 / fetch.ratio)} slower (pairs)"],
        ["cached embedding fetch p90 (ms)", f"{p90:.1f}", f"{percentile_ms(fetch.b, 90):.1f}", ""],
        ["serve, 1 client (images/s)", f"{serve_1:.3g}", f"{local_enc:.3g} (in-process encoder, paired)",
         f"{ratio_text(serve1.ratio)} (pairs {ratio_text(min(serve1.ratios))}-{ratio_text(max(serve1.ratios))})"],
        ["serve, 4 clients at once (images/s)", f"{serve4:.3g}", f"{local_enc:.3g} (in-process encoder, paired)",
         ratio_text(serve4 / local_enc)],
        ["precompute --ray, cluster start + model loads included (images/s)", f"{ray_pre:.3g}",
         f"{local_pre:.3g} (local precompute)", ratio_text(ray_pre / local_pre)],
    ]
    say(f"clicklabel bench remote: model {eng.model}, device {eng.device} ({device_name(eng.device)}); images: "
        f"{images} paired (1 client), {len(four)} (4 clients), {len(pre)} (each precompute); {repeats} fetch pairs; "
        f"load average {load0:.1f} -> {load_average():.1f}" + setup.note())
    print_table(rows, ["measure", "Ray / serve", "baseline (same run)", "ratio"], out=out)
    return {"fetch_p50_ms": p50, "fetch_p90_ms": p90, "local_read_p50_ms": r50, "serve": {1: serve_1, 4: serve4},
            "serve_pair_ratios": serve1.ratios, "in_process": local_enc, "ray_precompute": ray_pre,
            "ray_precompute_seconds": ray_seconds, "local_precompute": local_pre, "workers": len(workers),
            "random_weights": setup.random_weights}

