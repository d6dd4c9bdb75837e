"""Large images: time to the first mask after opening, decoder time per click, peak memory, and small-object
recall of tiled vs whole-image proposing.

Usage:
  python benchmarks/large_images.py speed --size 6000x4000 [--checkpoint C --model vit_b] [--repeats 2]
  python benchmarks/large_images.py recall --size 6000x4000

``speed`` writes a synthetic photo (smooth gradients, 200 discs of radius 10-60), clicks the disc nearest the
centre, and runs each configuration in a fresh process (GrabCut; SAM in tiles; SAM on the whole image shrunk, the
baseline), interleaved A B A B, with a fresh embedding cache each time: open = read the file + set_image; first
mask = the first click (tiles encoded as needed); per click = 5 more single clicks on the same object (the cached
tile: decoder only; GrabCut: all of it); peak RSS of the process. With a random checkpoint the masks mean
nothing: timings and memory only.

``recall`` needs no model: an ideal decoder at the resolution each path sees. A grid point (32 x 32 over the whole
image, or over each tile) on an object returns that object's mask as SAM's 256 x 256 low-res logits can hold it
(the object resampled to a quarter of the encoder's input resolution and back); an object counts as found when
that mask overlaps it at IoU >= 0.5. Tiles are merged with the rule of ``clicklabel.segment.tile_propose``, and
objects found more than once are counted. A bound from geometry, not SAM's quality.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def synthetic(w: int, h: int, objects: int, rmin: int, rmax: int, seed: int = 0, labels: bool = True):
    """(RGB image, instance labels or None, the discs' (x, y, r)) with smooth gradients and ``objects`` discs."""
    import cv2

    rng = np.random.default_rng(seed)
    img = np.empty((h, w, 3), np.uint8)
    img[..., 0] = 40 + (np.arange(w) * 60 // w).astype(np.uint8)[None]
    img[..., 1] = 90
    img[..., 2] = 60 + (np.arange(h) * 60 // h).astype(np.uint8)[:, None]
    lab = np.zeros((h, w), np.int32) if labels else None
    discs = []
    for i in range(1, objects + 1):
        c, r = (int(rng.integers(0, w)), int(rng.integers(0, h))), int(rng.integers(rmin, rmax + 1))
        cv2.circle(img, c, r, tuple(int(v) for v in rng.integers(150, 255, 3)), -1)
        if lab is not None:
            cv2.circle(lab, c, r, i, -1)
        discs.append((*c, r))
    return img, lab, discs


def one(args) -> dict:
    """One configuration in this process: open, first mask, clicks; JSON on stdout."""
    from clicklabel.embeddings import EmbeddingCache
    from clicklabel.images import load_image
    from clicklabel.segment import Prompt, make_engine

    t0 = time.perf_counter()
    if args.engine == "grabcut":
        eng = make_engine("grabcut")
    else:
        eng = make_engine("sam", args.model, args.checkpoint, "cpu", cache=EmbeddingCache(args.cache),
                          tiles=args.tiles)
    t_model = time.perf_counter()
    img = load_image(args.image)
    eng.set_image(img)
    t_open = time.perf_counter()
    x, y = args.point
    first = eng.predict(Prompt.make([(x, y)]))[0]
    t_first = time.perf_counter()
    clicks = []
    for dx in range(1, 6):
        t = time.perf_counter()
        eng.predict(Prompt.make([(x + args.step * dx, y)]))  # new clicks on the same object
        clicks.append(time.perf_counter() - t)
    return {"model_s": t_model - t0, "open_s": t_open - t_model, "first_mask_s": t_first - t_open,
            "click_ms": 1000 * float(np.median(clicks)), "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            / 1024, "bbox": first.bbox, "mask": list(first.mask.shape)}


def speed(args) -> None:
    import cv2

    w, h = args.size
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.jpg"
        img, _, discs = synthetic(w, h, 200, 10, 60, labels=False)
        x, y, r = min(discs[-50:], key=lambda d: abs(d[0] - w / 2) + abs(d[1] - h / 2))  # a disc drawn last: whole
        cv2.imwrite(str(path), img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 92])
        del img
        configs = [("grabcut", "grabcut", "off")]
        if args.checkpoint:
            configs += [("sam tiles", "sam", "auto"), ("sam whole (baseline)", "sam", "off")]
        rows: dict[str, list[dict]] = {}
        for rep in range(args.repeats):
            for name, engine, tiles in configs:  # A B A B: the baseline measured beside, in the same run
                cmd = [sys.executable, __file__, "one", "--image", str(path), "--engine", engine, "--tiles", tiles,
                       "--cache", str(Path(tmp) / f"cache{rep}{tiles}"), "--point", f"{x},{y}",
                       "--step", str(max(1, r // 8))]
                if args.checkpoint:
                    cmd += ["--checkpoint", args.checkpoint, "--model", args.model]
                load = os.getloadavg()[0]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                rows.setdefault(name, []).append({**json.loads(out.strip().splitlines()[-1]), "load": load})
    print(f"{w}x{h}, {os.cpu_count()} CPUs, cpu device; medians of {args.repeats} runs (fresh process and cache each)")
    print("| engine | open s | first mask s | per click ms | peak RSS MB | load 1 min |")
    print("|---|---|---|---|---|---|")
    med = {k: {f: float(np.median([r[f] for r in v])) for f in ("open_s", "first_mask_s", "click_ms", "rss_mb", "load")}
           for k, v in rows.items()}
    for k, m in med.items():
        print(f"| {k} | {m['open_s']:.1f} | {m['first_mask_s']:.1f} | {m['click_ms']:.0f} | {m['rss_mb']:.0f} | "
              f"{m['load']:.1f} |")
    if "sam tiles" in med:
        a, b = med["sam tiles"], med["sam whole (baseline)"]
        print(f"tiles / whole: first mask {a['first_mask_s'] / b['first_mask_s']:.2f}x, per click "
              f"{a['click_ms'] / b['click_ms']:.2f}x, peak RSS {a['rss_mb'] / b['rss_mb']:.2f}x")


def ideal_found(lab: np.ndarray, points: np.ndarray, scale: float) -> dict[int, tuple[np.ndarray, tuple[int, int]]]:
    """Object id -> (mask crop, (x0, y0)): what an ideal decoder returns for an object a point lands on, resampled
    to ``scale`` of native (area) and back (bilinear, cut at half) in a window around the object."""
    import cv2

    out = {}
    h, w = lab.shape
    pad = int(np.ceil(2 / scale)) + 1
    for x, y in points.astype(int):
        v = int(lab[min(y, h - 1), min(x, w - 1)])
        if v == 0 or v in out:
            continue
        wx, wy = max(0, x - 64), max(0, y - 64)  # the discs are at most 41 px across
        ys, xs = np.nonzero(lab[wy : y + 65, wx : x + 65] == v)
        x0, y0 = max(0, wx + int(xs.min()) - pad), max(0, wy + int(ys.min()) - pad)
        x1, y1 = min(w, wx + int(xs.max()) + 1 + pad), min(h, wy + int(ys.max()) + 1 + pad)
        m = (lab[y0:y1, x0:x1] == v).astype(np.float32)
        sw, sh = max(1, round((x1 - x0) * scale)), max(1, round((y1 - y0) * scale))
        small = cv2.resize(m, (sw, sh), interpolation=cv2.INTER_AREA)
        out[v] = (cv2.resize(small, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR) >= 0.5, (x0, y0))
    return out


def crop_iou(a, b) -> float:
    """IoU of two (mask crop, (x0, y0)) pairs."""
    (ma, (ax, ay)), (mb, (bx, by)) = a, b
    x0, y0 = min(ax, bx), min(ay, by)
    x1, y1 = max(ax + ma.shape[1], bx + mb.shape[1]), max(ay + ma.shape[0], by + mb.shape[0])
    fa, fb = np.zeros((y1 - y0, x1 - x0), bool), np.zeros((y1 - y0, x1 - x0), bool)
    fa[ay - y0 : ay - y0 + ma.shape[0], ax - x0 : ax - x0 + ma.shape[1]] = ma
    fb[by - y0 : by - y0 + mb.shape[0], bx - x0 : bx - x0 + mb.shape[1]] = mb
    union = (fa | fb).sum()
    return float((fa & fb).sum() / union) if union else 0.0


def recall(args) -> None:
    from clicklabel.segment.propose import grid_points
    from clicklabel.segment.tile_propose import collect, merge_proposals
    from clicklabel.segment.tiles import plan_tiles

    w, h = args.size
    _, lab, _ = synthetic(w, h, args.objects, 4, 20, seed=1)
    truth = {}
    for v in range(1, args.objects + 1):  # each disc's crop (discs drawn later may cover earlier ones)
        ys, xs = np.nonzero(lab == v)
        if len(ys):
            x0, y0 = int(xs.min()), int(ys.min())
            truth[v] = (lab[y0 : ys.max() + 1, x0 : xs.max() + 1] == v, (x0, y0))
    low = 256 / 1024  # SAM's low-res logits: a quarter of the encoder's input
    whole = ideal_found(lab, grid_points(32, w, h), 1024 / max(w, h) * low)
    found_whole = sum(crop_iou(m, truth[v]) >= 0.5 for v, m in whole.items())
    grid = plan_tiles("auto", 1024, h, w)

    def per_tile(tile):
        crop = np.ascontiguousarray(tile.crop(lab))
        th, tw = crop.shape
        out = []
        for m, (x0, y0) in ideal_found(crop, grid_points(32, tw, th), 1024 / max(tw, th) * low).values():
            full = np.zeros((th, tw), bool)
            full[y0 : y0 + m.shape[0], x0 : x0 + m.shape[1]] = m
            out.append((full, 0.9, 0.95, (0.0, 0.0)))
        return out

    merged = merge_proposals(collect(grid, lab.shape, per_tile))
    hits = dict.fromkeys(truth, 0)
    for p in merged:
        x, y, bw, bh = p.bbox
        v = int(np.bincount(lab[y : y + bh, x : x + bw][p.region.tight().crop]).argmax())
        if v in truth and crop_iou((p.region.tight().crop, (x, y)), truth[v]) >= 0.5:
            hits[v] += 1
    print(f"{w}x{h}, {len(truth)} discs of radius 4-20 px; ideal decoder at each path's resolution")
    print("| propose | objects found (IoU >= 0.5) | recall | found twice or more | proposals |")
    print("|---|---|---|---|---|")
    print(f"| whole image (1 x 32x32 grid, 1024 px input) | {found_whole} | {found_whole / len(truth):.2f} | 0 | "
          f"{len(whole)} |")
    n = sum(c >= 1 for c in hits.values())
    print(f"| tiles ({len(grid)} x 32x32 grid, 1024 px tiles, 256 px overlap) | {n} | {n / len(truth):.2f} | "
          f"{sum(c > 1 for c in hits.values())} | {len(merged)} |")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["speed", "recall", "one"])
    p.add_argument("--size", default="6000x4000", type=lambda s: tuple(int(v) for v in s.split("x")))
    p.add_argument("--checkpoint")
    p.add_argument("--model", default="vit_b")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--objects", type=int, default=300)
    p.add_argument("--image")
    p.add_argument("--engine", default="sam")
    p.add_argument("--tiles", default="auto")
    p.add_argument("--cache")
    p.add_argument("--step", type=int, default=3)
    p.add_argument("--point", type=lambda s: tuple(int(v) for v in s.split(",")))
    args = p.parse_args()
    if args.what == "one":
        print(json.dumps(one(args)))
    else:
        (speed if args.what == "speed" else recall)(args)


if __name__ == "__main__":
    main()
