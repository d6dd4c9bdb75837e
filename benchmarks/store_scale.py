"""Project store at scale: write N objects (640x480 masks) one transaction each, then export COCO.

Prints a table: seconds to write, accept latency (p50/p99) with N objects already stored, export seconds and
the peak memory of the export process, against the goals of the store issue (ratio = goal / measured).
Usage: python benchmarks/store_scale.py [--objects 100000] [--images 1000] [--dir DIR]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from clicklabel.bench.harness import print_table
from clicklabel.project import Store


def random_masks(rng, k, h=480, w=640):
    """k blob-like masks (ellipses of random size and place)."""
    yy, xx = np.mgrid[:h, :w]
    out = []
    for _ in range(k):
        cy, cx = rng.integers(0, h), rng.integers(0, w)
        ry, rx = rng.integers(5, 120), rng.integers(5, 160)
        out.append(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--objects", type=int, default=100_000)
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--dir")
    args = ap.parse_args()
    work = Path(args.dir or tempfile.mkdtemp(prefix="clicklabel_scale_"))
    store = Store(work / "scale.clicklabel", root=work)
    rng = np.random.default_rng(0)
    masks = random_masks(rng, 64)
    image_ids = [store.add_image(f"img_{i:05d}.jpg", 640, 480) for i in range(args.images)]
    t0 = time.perf_counter()
    lat = []
    for i in range(args.objects):
        t = time.perf_counter()
        store.accept(image_ids[i % len(image_ids)], masks[i % len(masks)], provenance="click", clicks=1, seconds=2.0)
        lat.append(time.perf_counter() - t)
    write_s = time.perf_counter() - t0
    last = np.array(lat[-1000:]) * 1000
    store.close()
    code = (
        "import resource, sys, time\n"
        "from clicklabel.project import Store\nfrom clicklabel.coco import export_coco\n"
        "t = time.perf_counter()\n"
        f"rep = export_coco(Store({str(work / 'scale.clicklabel')!r}), {str(work / 'scale.json')!r})\n"
        "dt = time.perf_counter() - t\n"
        "print(dt, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, rep.annotations)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    export_s, peak_mb, n = float(out[0]), float(out[1]), int(out[2])
    assert n == args.objects
    rows = [
        [f"write {args.objects:,} objects (one transaction each)", f"{write_s:.1f} s", "-", "-"],
        [f"accept one object with {args.objects:,} stored, p50", f"{np.median(last):.2f} ms", "10 ms",
         f"{10 / np.median(last):.1f}x"],
        ["accept, p99 of the last 1000", f"{np.percentile(last, 99):.2f} ms", "10 ms",
         f"{10 / np.percentile(last, 99):.1f}x"],
        [f"export {n:,} annotations to COCO (RLE)", f"{export_s:.1f} s", "60 s", f"{60 / export_s:.1f}x"],
        ["export peak memory (whole process)", f"{peak_mb:.0f} MB", "2048 MB", f"{2048 / peak_mb:.1f}x"],
    ]
    print(f"store_scale: {args.objects:,} objects of 640x480 on {args.images} images, project in {work}")
    print_table(rows, ["step", "measured", "goal", "goal / measured"])
    print(f"project file {((work / 'scale.clicklabel').stat().st_size) / 1e6:.0f} MB, "
          f"COCO file {(work / 'scale.json').stat().st_size / 1e6:.0f} MB; "
          f"benchmark process peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
