"""``clicklabel bench propose``: seconds per image of auto-propose, stock ``SamAutomaticMaskGenerator`` vs ours on
the same cached embedding (encoder excluded for both), and how far their proposals agree."""

from __future__ import annotations

import sys
import time

import numpy as np

from ..masks import mask_iou
from .harness import bench_engine, device_name, print_table, sample_image, synchronize


def bench_propose(
    model: str = "vit_b",
    checkpoint: str | None = None,
    random_weights: bool = False,
    device: str = "cpu",
    grid: int = 16,
    pred_iou_thresh: float | None = None,
    stability_thresh: float | None = None,
    image: np.ndarray | None = None,
    repeats: int = 1,
    out=None,
) -> dict:
    """Seconds per image of auto-propose, stock SamAutomaticMaskGenerator vs ours, encoder excluded for both."""
    out = out or sys.stdout
    from ..segment.propose import ProposeSettings, propose, stock_with_embedding

    img = sample_image() if image is None else image
    # Random weights predict low IoU for everything; with SAM's thresholds both sides would skip all masks.
    # Filters off makes both do the whole job, so the comparison stays fair.
    pit = pred_iou_thresh if pred_iou_thresh is not None else (0.0 if random_weights else 0.88)
    stt = stability_thresh if stability_thresh is not None else (0.0 if random_weights else 0.95)
    settings = ProposeSettings(grid=grid, pred_iou_thresh=pit, stability_thresh=stt)
    with bench_engine(model, checkpoint, random_weights, device, family="sam") as setup:
        eng, is_random = setup.engine, setup.random_weights
        eng.set_image(img)

        gen = stock_with_embedding(eng.sam, settings, eng.embedding)
        gen.generate(img) if eng.device.startswith("cuda") else None  # warm-up kernels on a GPU
        propose(eng, settings) if eng.device.startswith("cuda") else None
        st, ours = [], []
        for _ in range(repeats):
            t = time.perf_counter()
            ref = gen.generate(img)
            synchronize(eng.device)
            st.append(time.perf_counter() - t)
            t = time.perf_counter()
            props = propose(eng, settings)
            synchronize(eng.device)
            ours.append(time.perf_counter() - t)
    a, b = [p.mask for p in props], [r["segmentation"] for r in ref]
    agree = min(_share_matched(a, b), _share_matched(b, a))
    s_med, o_med = float(np.median(st)), float(np.median(ours))
    h, w = img.shape[:2]
    dev_name = device_name(eng.device)
    print(f"clicklabel bench propose: model {model}, device {eng.device} ({dev_name}), image {w}x{h}, grid {grid} "
          f"({grid * grid} points), pred_iou_thresh {pit}, stability_thresh {stt}, encoder excluded"
          + setup.note(), file=out)
    print_table(
        [["seconds per image", f"{s_med:.3f}", f"{o_med:.3f}", f"{s_med / o_med:.2f}x"],
         ["proposals", len(ref), len(props), ""]],
        ["", "stock SamAutomaticMaskGenerator", "clicklabel", "ratio"], out=out,
    )
    print(f"agreement: share of proposals matched at mask IoU >= 0.95, worse direction: {agree:.3f}", file=out)
    return {"stock_s": s_med, "ours_s": o_med, "ratio": s_med / o_med, "agreement": agree,
            "stock_n": len(ref), "ours_n": len(props), "device": eng.device, "random_weights": is_random}


def _share_matched(a, b, thr: float = 0.95) -> float:
    if not a:
        return 1.0
    return float(np.mean([max((mask_iou(x, y) for y in b), default=0.0) >= thr for x in a]))
