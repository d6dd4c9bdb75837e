"""``clicklabel bench refine``: boxes per second turned into full-size masks, stock ``SamPredictor.predict(box=)``
one box at a time vs our engine's ``predict_boxes`` (every box of the image decoded together), on the same cached
embedding (the encoder is excluded for both), same weights, same run; and how far their masks agree."""

from __future__ import annotations

import sys
import time

import numpy as np

from ..masks import mask_iou
from .harness import bench_engine, device_name, print_table, sample_image, synchronize


def bench_boxes(width: int, height: int, n: int, seed: int = 0) -> np.ndarray:
    """``n`` XYXY boxes of 5-40% of the image's sides, spread over a ``width`` x ``height`` image."""
    rng = np.random.default_rng(seed)
    bw = rng.uniform(0.05, 0.4, n) * width
    bh = rng.uniform(0.05, 0.4, n) * height
    x0 = rng.uniform(0, 1, n) * (width - bw)
    y0 = rng.uniform(0, 1, n) * (height - bh)
    return np.round(np.stack([x0, y0, x0 + bw, y0 + bh], axis=1), 1)


def stock_predictor(sam, embedding):
    """A stock ``SamPredictor`` holding ``embedding`` (identical to what its own ``set_image`` computes: tested
    in tests/test_segment_sam.py), so the comparison times the box decoding only."""
    import torch
    from segment_anything import SamPredictor

    pred = SamPredictor(sam)
    pred.reset_image()
    pred.features = torch.as_tensor(embedding.features, device=sam.device, dtype=torch.float32)
    pred.original_size = tuple(embedding.original_size)
    pred.input_size = tuple(embedding.input_size)
    pred.is_image_set = True
    return pred


def bench_refine(
    model: str = "vit_b",
    checkpoint: str | None = None,
    random_weights: bool = False,
    device: str = "cpu",
    boxes: int = 20,
    size: tuple[int, int] = (1024, 768),
    batch: int = 64,
    repeats: int = 3,
    out=None,
) -> dict:
    """Boxes per second, stock one box at a time vs ours batched, both producing each box's full-size mask."""
    out = out or sys.stdout
    img = sample_image(size)
    h, w = img.shape[:2]
    xyxy = bench_boxes(w, h, boxes)
    with bench_engine(model, checkpoint, random_weights, device) as setup:
        eng = setup.engine
        eng.set_image(img)
        stock = stock_predictor(eng.sam, eng.embedding)

        def run_stock():
            return [stock.predict(box=b, multimask_output=False)[0][0] for b in xyxy]

        def run_ours():
            res = eng.predict_boxes(xyxy.tolist(), batch=batch)
            return [r.mask for r in res]

        run_stock(), run_ours()  # warm-up: allocator, kernels (and CUDA's lazy start)
        st, ours = [], []
        for _ in range(repeats):
            t = time.perf_counter()
            ref = run_stock()
            synchronize(eng.device)
            st.append(time.perf_counter() - t)
            t = time.perf_counter()
            got = run_ours()
            synchronize(eng.device)
            ours.append(time.perf_counter() - t)
    ious = [mask_iou(a, b) for a, b in zip(ref, got)]
    s_med, o_med = float(np.median(st)), float(np.median(ours))
    s_rate, o_rate = boxes / s_med, boxes / o_med
    print(f"clicklabel bench refine: model {model}, device {eng.device} ({device_name(eng.device)}), image {w}x{h}, "
          f"{boxes} boxes, batch {batch}, median of {repeats} passes, encoder excluded" + setup.note(), file=out)
    print_table(
        [["stock SamPredictor.predict(box=), one box at a time", f"{s_med:.4g}", f"{s_rate:.4g}", "1.00x"],
         ["clicklabel predict_boxes, batched", f"{o_med:.4g}", f"{o_rate:.4g}", f"{o_rate / s_rate:.2f}x"]],
        ["", "seconds per pass", "boxes/s", "ratio"], out=out)
    print(f"mask agreement with stock (IoU): min {min(ious):.5f}, mean {float(np.mean(ious)):.5f}", file=out)
    return {"stock_boxes_per_s": s_rate, "ours_boxes_per_s": o_rate, "ratio": o_rate / s_rate,
            "min_iou": min(ious), "device": eng.device, "random_weights": setup.random_weights}
