"""``clicklabel bench track``: propagation through a clip, ours (``track.propagate``: frames streamed, bounded
memory) against SAM 2's own ``SAM2VideoPredictor`` on the same weights, interleaved (ABAB) in one run; the masks'
agreement (IoU per frame); and the peak RSS of ours on a long clip (default 300 frames at 1280x720), measured in
a child process of its own so nothing else in this process counts.

Both sides do the same work per run: read the clip's JPEG frames from disk, encode every frame, one click on the
first frame, propagate to the last. Hole filling is off on both sides (SAM 2's needs its CUDA extension).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from .harness import synchronize

CHILD = """
import json, resource, sys
from clicklabel.bench.track import run_ours
args = json.loads(sys.argv[1])
masks, secs = run_ours(**args)
print(json.dumps({"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "seconds": secs,
                  "frames": len(masks)}))
"""


def write_clip(folder: Path, frames: int, width: int, height: int) -> tuple[float, float]:
    """A synthetic clip as JPEG frames 00000.jpg ... (SAM 2's frame-folder layout), one frame in memory at a time:
    a bright ellipse crossing a textured background. Returns the click (x, y) on the object in frame 0."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    bg = (rng.random((height, width, 3)) * 60 + 40).astype(np.uint8)
    yy, xx = np.mgrid[0:height, 0:width]
    ry, rx = height / 6, width / 10
    for i in range(frames):
        cx = width * (0.2 + 0.6 * i / max(frames - 1, 1))
        cy = height * 0.5
        a = bg.copy()
        a[((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1] = (230, 200, 60)
        Image.fromarray(a).save(folder / f"{i:05d}.jpg", quality=95)
    return width * 0.2, height * 0.5


def _module(model: str, checkpoint, random_weights: bool):
    from ..segment.models import load_model, random_model

    loaded = random_model(model) if random_weights else load_model(model, checkpoint, family="sam2.1")
    return loaded


def run_ours(model: str, checkpoint, random_weights: bool, device: str, folder: str, click) -> tuple[list, float]:
    """Propagate through the JPEG folder with ``track.propagate``: (masks, seconds)."""
    from ..embeddings import EmbeddingCache
    from ..track.propagate import VideoModel

    loaded = _module(model, checkpoint, random_weights)
    loaded.module.binarize_mask_from_pts_for_mem_enc = True
    files = sorted(Path(folder).glob("*.jpg"))
    vm = VideoModel(loaded.module, loaded.name, device, EmbeddingCache(disk=False, memory_items=1), fill_hole_area=0)
    return _time_ours(vm, files, click)


def _time_ours(vm, files, click) -> tuple[list, float]:
    from ..images import file_hash, load_image
    from ..track.propagate import FrameSource, Tracker

    synchronize(vm.device)
    t0 = time.perf_counter()
    tracker = Tracker(vm, FrameSource(lambda i: load_image(files[i]), len(files), lambda i: file_hash(files[i])))
    try:
        tracker.prompt(0, points=[click], labels=[1])
        masks = [r.mask for r in tracker.propagate(0, min_score=-1e9)]
        synchronize(vm.device)
        return masks, time.perf_counter() - t0
    finally:
        tracker.close()


def _time_stock(pred, folder: Path, click) -> tuple[list, float]:
    import torch

    synchronize(str(pred.device))
    t0 = time.perf_counter()
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        state = pred.init_state(str(folder))
        pred.add_new_points_or_box(state, 0, 1, points=[click], labels=[1])
        masks = [(m[0, 0] > 0).cpu().numpy() for _, _, m in pred.propagate_in_video(state)]
    synchronize(str(pred.device))
    return masks, time.perf_counter() - t0


def _stock(loaded, device: str):
    from sam2.build_sam import build_sam2_video_predictor

    from ..segment.sam2 import CONFIGS

    size = loaded.name.removeprefix("sam2.1_hiera_")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pred = build_sam2_video_predictor(CONFIGS[size], None, device=device)
    pred.load_state_dict(loaded.module.state_dict(), strict=True)
    pred.fill_hole_area = 0
    return pred.eval()


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def bench_track(model: str, checkpoint, random_weights: bool, device: str, frames: int = 8,
                size: tuple[int, int] = (1280, 720), repeats: int = 2, rss_frames: int = 300) -> dict:
    """Print the table; returns the figures."""
    from ..errors import ClickLabelError
    from ..segment.models import family_of, require
    from ..track.propagate import VideoModel

    if model == "auto" or family_of(model) != "sam2.1":
        raise ClickLabelError(f"bench track measures SAM 2.1 models (e.g. --model sam2.1_hiera_tiny), not {model}")
    require("sam2.1")
    from ..embeddings import EmbeddingCache

    w, h = size
    result: dict = {"model": model, "device": device, "random_weights": random_weights, "frames": frames,
                    "size": f"{w}x{h}"}
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(tmp) / "clip"
        click = write_clip(clip, frames, w, h)
        files = sorted(clip.glob("*.jpg"))
        loaded = _module(model, checkpoint, random_weights)
        loaded.module.binarize_mask_from_pts_for_mem_enc = True
        stock = _stock(loaded, device)
        ours_s, stock_s = [], []
        for _ in range(repeats):  # ABAB, a fresh feature cache each time: every run encodes every frame
            vm = VideoModel(loaded.module, loaded.name, device, EmbeddingCache(disk=False, memory_items=1),
                            fill_hole_area=0)
            ours, s = _time_ours(vm, files, click)
            ours_s.append(s)
            ref, s = _time_stock(stock, clip, click)
            stock_s.append(s)
        ious = [_iou(a, b) for a, b in zip(ours, ref)]
        result.update(ours_fps=frames / min(ours_s), stock_fps=frames / min(stock_s),
                      min_iou=min(ious), mean_iou=float(np.mean(ious)))
        del stock
        if rss_frames:
            long = Path(tmp) / "long"
            click = write_clip(long, rss_frames, w, h)
            args = {"model": model, "checkpoint": str(checkpoint) if checkpoint else None,
                    "random_weights": random_weights, "device": device, "folder": str(long), "click": list(click)}
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
            proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(args)], capture_output=True, text=True,
                                  env=env)
            if proc.returncode != 0:
                raise ClickLabelError(f"the long-clip run failed: {proc.stderr.strip().splitlines()[-1:]}")
            child = json.loads(proc.stdout.strip().splitlines()[-1])
            result.update(rss_frames=rss_frames, rss_mb=child["rss_mb"], long_fps=rss_frames / child["seconds"])
    _print(result, ours_s, stock_s)
    return result


def _print(r: dict, ours_s: list, stock_s: list) -> None:
    note = " - RANDOM WEIGHTS: timings only, masks mean nothing" if r["random_weights"] else ""
    print(f"bench track: {r['model']} on {r['device']}, {r['frames']} frames at {r['size']}, one click on frame "
          f"0, propagated to the last{note}")
    print(f"machine load (1, 5, 15 min): {' '.join(f'{v:.2f}' for v in os.getloadavg())}, {os.cpu_count()} CPUs")
    print(f"{'':28}{'frames/s':>10}{'runs (s)':>24}")
    print(f"{'SAM2VideoPredictor (stock)':28}{r['stock_fps']:>10.2f}{' '.join(f'{s:.1f}' for s in stock_s):>24}")
    print(f"{'clicklabel (streamed)':28}{r['ours_fps']:>10.2f}{' '.join(f'{s:.1f}' for s in ours_s):>24}")
    print(f"ratio ours / stock: {r['ours_fps'] / r['stock_fps']:.2f}x; masks: IoU min {r['min_iou']:.4f}, "
          f"mean {r['mean_iou']:.4f}")
    if "rss_mb" in r:
        print(f"long clip: {r['rss_frames']} frames at {r['size']}, ours: peak RSS {r['rss_mb'] / 1024:.2f} GB, "
              f"{r['long_fps']:.2f} frames/s (the stock predictor holds every frame at its input size in float32 "
              f"first: {r['rss_frames'] * 3 * 1024 * 1024 * 4 / 2**30:.1f} GB for the frames alone)")
