"""``clicklabel bench remote``: what the Ray engine and ``clicklabel serve`` cost next to doing the same in process,
all measured in one run on one machine (a private local Ray):

- the latency of fetching a cached embedding from the server (what a laptop pays per image it opens), next to
  reading it from the local disk cache;
- the server's encoding throughput with 1 and 4 clients uploading at once, next to the in-process encoder;
- ``precompute --ray`` next to the local ``precompute`` of the same distinct JPEGs (the engine's overhead).
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from ..images import load_image
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
    with bench_engine(model, checkpoint, random_weights, device, encoder="auto") as setup:
        eng, work = setup.engine, setup.workdir
        paths = make_jpeg_folder(work / "jpegs", 2 * images + 1, source_images(data))
        first, one, four = paths[0], paths[1:1 + images], paths[1 + images:]  # the fetch's image; 2 distinct sets
        pixels = [load_image(p) for p in one]
        spec = {"engine": "sam", "model": "auto", "checkpoint": setup.checkpoint, "device": device, "encoder": "auto"}

        # in process: the encoder alone, then local precompute
        eng.encode(load_image(first))  # warm-up (first pass allocations)
        t = time.perf_counter()
        for img in pixels:
            eng.encode(img)
        local_enc = _rate(images, time.perf_counter() - t)
        say(f"measured: in-process encoder {local_enc:.3g} images/s")
        eng.cache = EmbeddingCache(work / "local_pre" / "embeddings")
        stats = precompute(eng, one, batch=1)
        local_pre = _rate(stats["encoded"], stats["seconds"])
        say(f"measured: local precompute {local_pre:.3g} images/s ({stats['encoded']} images)")
        # the local disk cache read of one entry, the fetch's baseline
        key = eng.embedding_key(pixels[0])  # one[0]: in the local cache now
        reads = []
        for _ in range(repeats):
            eng.cache.clear_memory()
            t = time.perf_counter()
            eng.cache.get(key)
            reads.append(time.perf_counter() - t)

        with ray_session("local") as ray:
            workers = make_workers(ray, spec, str(work / "ray_pre"))
            stats = ray_precompute(ray, workers, one, batch=1)
            ray_pre = _rate(stats["encoded"], stats["seconds"])
            say(f"measured: Ray precompute {ray_pre:.3g} images/s ({len(workers)} worker(s), "
                f"{stats['encoded']} images)")
            for w in workers:
                ray.kill(w)
            url = start_server(spec, work / "server_cache", TOKEN, port=0, replica_cpus=os.cpu_count() or 1)
            try:
                client = make_engine("remote", "auto", setup.checkpoint, device, encoder="stock",
                                     cache=EmbeddingCache(work / "client", disk=False), server=url,
                                     token=TOKEN).encoder.client
                client.embedding(key, pixels[0])  # this image is on the server from now on
                fetches = []
                for _ in range(repeats):
                    t = time.perf_counter()
                    client.embedding(key)
                    fetches.append(time.perf_counter() - t)
                say(f"measured: cached fetch p50 {percentile_ms(fetches, 50):.1f} ms")
                serve_rates = {}
                for clients, todo in ((1, one[1:]), (4, four)):
                    t = time.perf_counter()  # each client reads its image, hashes it, asks, uploads on a miss
                    with ThreadPoolExecutor(clients) as pool:
                        list(pool.map(lambda img: client.embedding(eng.embedding_key(img), img),
                                      (load_image(p) for p in todo)))
                    serve_rates[clients] = _rate(len(todo), time.perf_counter() - t)
                    say(f"measured: serve, {clients} client(s): {serve_rates[clients]:.3g} images/s ({len(todo)})")
            finally:
                stop_server()

    p50, p90 = percentile_ms(fetches, 50), percentile_ms(fetches, 90)
    r50 = percentile_ms(reads, 50)
    rows = [
        ["cached embedding fetch p50 (ms)", f"{p50:.1f}", f"{r50:.1f} (local disk cache read)", f"{p50 / r50:.1f}x"],
        ["cached embedding fetch p90 (ms)", f"{p90:.1f}", f"{percentile_ms(reads, 90):.1f}", ""],
        ["serve, 1 client (images/s)", f"{serve_rates[1]:.3g}", f"{local_enc:.3g} (in-process encoder)",
         f"{serve_rates[1] / local_enc:.2f}x"],
        ["serve, 4 clients (images/s)", f"{serve_rates[4]:.3g}", f"{local_enc:.3g} (in-process encoder)",
         f"{serve_rates[4] / local_enc:.2f}x"],
        ["precompute --ray (images/s)", f"{ray_pre:.3g}", f"{local_pre:.3g} (local precompute)",
         f"{100 * ray_pre / local_pre:.0f}%"],
    ]
    say(f"clicklabel bench remote: model {eng.model}, device {eng.device} ({device_name(eng.device)}), "
        f"{images} distinct images per throughput row, {repeats} fetches" + setup.note())
    print_table(rows, ["measure", "Ray / serve", "baseline (same run)", "ratio"], out=out)
    return {"fetch_p50_ms": p50, "fetch_p90_ms": p90, "local_read_p50_ms": r50, "serve": serve_rates,
            "in_process": local_enc, "ray_precompute": ray_pre, "local_precompute": local_pre,
            "random_weights": setup.random_weights}
