"""What a script that calls `clicklabel segment` once per prompt pays: the whole process, first on a new image (the
encoder runs) and then again on the same image (its embedding from the cache: no encoder is built).

Each pair is a fresh cache, the first run, then the second right after it (so both see the same load); the ratio is
the median of the pairs' second/first. Random weights are fine (timings only).

    python benchmarks/second_run.py --model vit_b --checkpoint vit_b_random.pth --pairs 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="vit_b")
    p.add_argument("--checkpoint", required=True, help="a checkpoint file (random weights are fine)")
    p.add_argument("--image", help="default: a 640x480 picture made here")
    p.add_argument("--point", default="300,200")
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--precision", default="auto")
    return p.parse_args(argv)


def run(cmd: list[str], cache: str) -> tuple[float, dict]:
    started = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "CLICKLABEL_CACHE": cache})
    wall = time.perf_counter() - started
    if out.returncode != 0:
        sys.exit(f"second_run: the command failed: {out.stderr.strip().splitlines()[-1:]}")
    return wall, json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    args = parse(argv)
    with tempfile.TemporaryDirectory(prefix="clicklabel-second-") as tmp:
        image = args.image
        if image is None:
            import numpy as np
            from PIL import Image

            image = str(Path(tmp) / "picture.png")
            yy, xx = np.mgrid[0:480, 0:640]
            rgb = np.stack([xx * 255 // 640, yy * 255 // 480, (xx + yy) % 256], -1).astype(np.uint8)
            Image.fromarray(rgb).save(image)
        cmd = [sys.executable, "-m", "clicklabel.cli", "segment", image, "--point", args.point, "--model",
               args.model, "--checkpoint", args.checkpoint, "--device", "cpu", "--precision", args.precision]
        print(f"`clicklabel segment` whole process, {args.model}, {args.pairs} pairs; CPUs {os.cpu_count()}")
        print("| pair | load before | first s | its set_image s | second s | its set_image s | second / first |")
        print("|---|---|---|---|---|---|---|")
        ratios = []
        for i in range(args.pairs):
            cache = str(Path(tmp) / f"cache{i}")
            load = os.getloadavg()[0]
            first, a = run(cmd, cache)
            second, b = run(cmd, cache)
            if a["embedding_cached"] or not b["embedding_cached"]:
                sys.exit("second_run: the first run should encode and the second read the cache")
            ratios.append(second / first)
            print(f"| {i + 1} | {load:.1f} | {first:.2f} | {a['set_image_ms'] / 1000:.2f} | {second:.2f} | "
                  f"{b['set_image_ms'] / 1000:.2f} | {second / first:.3f} |")
        print(f"second / first: median {statistics.median(ratios):.3f} (pairs {min(ratios):.3f}-{max(ratios):.3f}); "
              f"load average now {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
