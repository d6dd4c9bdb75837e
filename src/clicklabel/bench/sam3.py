"""``clicklabel bench latency --model sam3``: SAM 3's steps, ``transformers``' own pipeline (``Sam3Processor`` ->
``Sam3Model`` -> ``post_process_instance_segmentation``; ``Sam3TrackerModel`` for clicks) against our engine, same
weights, same image, same run, interleaved (stock, ours, stock, ours), with the masks compared.

The stock pipeline is given its best documented use: the vision features computed once per image
(``get_vision_features``) and passed as ``vision_embeds``; each concept's text is encoded again on each call, as
the processor gives ``input_ids``. Ours keeps both: the vision features in the embedding cache (memory and disk),
the text features per phrase.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

from ..masks import mask_iou
from .harness import device_name, percentile_ms, print_table, sample_image, synchronize

CONCEPTS = ("cat", "striped mug")


def _engine(checkpoint, random_weights: bool, device: str, cache):
    from ..errors import ClickLabelError
    from ..segment import make_engine
    from ..segment.models import random_model
    from ..segment.sam3 import Sam3Engine

    if random_weights:
        return Sam3Engine(loaded=random_model("sam3"), device=device, cache=cache, fast=False)
    eng = make_engine("sam3", checkpoint=checkpoint, device=device, cache=cache, encoder="stock")
    if eng.name != "sam3":
        raise ClickLabelError(f"{checkpoint} holds a {eng.model} model, not SAM 3")
    return eng


def _timed(fn, device):
    t = time.perf_counter()
    out = fn()
    synchronize(device)
    return time.perf_counter() - t, out


def bench_sam3_latency(checkpoint=None, random_weights: bool = False, device: str = "cpu", repeats: int = 3,
                       image: np.ndarray | None = None, concepts=CONCEPTS, out=None) -> dict:
    import torch

    from ..embeddings import EmbeddingCache
    from ..segment.base import Prompt

    out = out or sys.stdout
    img = sample_image() if image is None else image
    h, w = img.shape[:2]
    load0 = os.getloadavg()[0]
    eng = _engine(checkpoint, random_weights, device, EmbeddingCache(disk=False))
    pair, proc, dev = eng.pair, eng.pair.processor, eng.device
    times: dict[str, list[float]] = {}
    ious: list[float] = []

    def add(key, dt):
        times.setdefault(key, []).append(dt)

    def stock_find(vision, concept):
        inputs = proc(text=concept, return_tensors="pt").to(dev)
        res = pair.detector(vision_embeds=vision, **inputs)
        return proc.post_process_instance_segmentation(res, threshold=0.5, mask_threshold=0.5,
                                                       target_sizes=[(h, w)])[0]

    s = pair.image_size
    labels = torch.ones(1, 1, 1, dtype=torch.int, device=dev)

    def stock_click(trk_emb, pts):
        res = pair.tracker(image_embeddings=trk_emb, input_points=pts, input_labels=labels, multimask_output=True)
        return res, proc.image_processor.post_process_masks(res.pred_masks.cpu(), [(h, w)])[0]

    with torch.inference_mode():
        pixels = proc(images=img, return_tensors="pt")["pixel_values"].to(dev)
        for r in range(repeats):
            dt, vision = _timed(lambda: pair.detector.get_vision_features(pixel_values=pixels), dev)
            add("vision", dt)
            eng.cache.clear_memory()
            eng.clear_text_cache()
            dt, _ = _timed(lambda: (eng.set_image(img), eng.detector_features()), dev)  # both necks, as stock's
            add("vision ours", dt)
            for c in concepts:
                ids = proc(text=c, return_tensors="pt").to(dev)
                dt, _ = _timed(lambda: pair.detector.get_text_features(**ids), dev)  # noqa: B023
                add("text", dt)
                dt, _ = _timed(lambda: eng.text_features(c), dev)  # noqa: B023 - the first time: encoded
                add("text ours", dt)
                dt, _ = _timed(lambda: eng.text_features(c), dev)  # noqa: B023 - then: from the text cache
                add("text ours cached", dt)
                dt, theirs = _timed(lambda: stock_find(vision, c), dev)  # noqa: B023
                add("detector", dt)
                dt, ours = _timed(lambda: eng.find(c, threshold=0.5), dev)  # noqa: B023
                add("detector ours", dt)
                ours_masks = [m for _, m in ours]
                order = torch.argsort(-theirs["scores"]).tolist()
                stock_masks = [theirs["masks"][i].bool().cpu().numpy() for i in order]
                if len(ours_masks) != len(stock_masks):
                    ious.append(0.0)
                ious.extend(mask_iou(a, b) for a, b in zip(ours_masks, stock_masks))
            # one click through the tracker: Sam3TrackerModel.forward on its own image embeddings, vs ours
            if r == 0:  # the stock tracker's own pass of the (shared) backbone; ours made it in set_image
                dt, trk_emb = _timed(lambda: pair.tracker.get_image_embeddings(pixels), dev)
                add("tracker vision", dt)
            pts = torch.tensor([[[[w / 2 * s / w, h / 2 * s / h]]]], device=dev)
            dt, (res, masks) = _timed(lambda: stock_click(trk_emb, pts), dev)  # noqa: B023
            add("click", dt)
            dt, mine = _timed(lambda: eng.predict(Prompt.make([(w / 2, h / 2)]), multimask=True), dev)
            add("click ours", dt)
            best = int(torch.argmax(res.iou_scores[0, 0]))
            ious.append(mask_iou(masks[0, best].numpy(), mine[0].mask))
    load1 = os.getloadavg()[0]
    k = len(concepts)
    p50 = {key: percentile_ms(v, 50) for key, v in times.items()}
    stock_total = p50["vision"] + k * (p50["text"] + p50["detector"])
    ours_total = p50["vision ours"] + k * (p50["text ours cached"] + p50["detector ours"])
    rows = [
        ["vision encoder + necks, one image", f"{p50['vision']:.0f}", f"{p50['vision ours']:.0f}",
         f"{p50['vision'] / p50['vision ours']:.2f}x"],
        ["text encoder, per concept (first time)", f"{p50['text']:.1f}", f"{p50['text ours']:.1f}",
         f"{p50['text'] / p50['text ours']:.2f}x"],
        ["text encoder, per concept (seen before)", f"{p50['text']:.1f}", f"{p50['text ours cached']:.3f}",
         f"{p50['text'] / max(p50['text ours cached'], 1e-6):.0f}x"],
        ["detector + masks, per concept (stock: text again)", f"{p50['detector']:.1f}", f"{p50['detector ours']:.1f}",
         f"{p50['detector'] / p50['detector ours']:.2f}x"],
        ["tracker image embeddings (ours: the same backbone pass)", f"{p50['tracker vision']:.0f}", "0", ""],
        ["tracker decoder, one click (3 masks)", f"{p50['click']:.1f}", f"{p50['click ours']:.1f}",
         f"{p50['click'] / p50['click ours']:.2f}x"],
        [f"{k} known concepts on a new image", f"{stock_total:.0f}", f"{ours_total:.0f}",
         f"{stock_total / ours_total:.2f}x"],
    ]
    note = " - RANDOM WEIGHTS: timings only, masks mean nothing" if random_weights else ""
    print(f"clicklabel bench latency: model sam3 (SAM 3, transformers), device {dev} ({device_name(dev)}), image "
          f"{w}x{h}, {repeats} repeats interleaved (stock, ours), concepts {', '.join(concepts)}; load average "
          f"{load0:.1f} -> {load1:.1f}{note}", file=out)
    print_table(rows, ["step", "stock transformers ms", "clicklabel ms", "ratio"], out=out)
    print(f"mask agreement with stock (IoU, every instance and click): min {min(ious):.5f}", file=out)
    return {"p50_ms": p50, "min_iou": min(ious), "random_weights": random_weights, "device": dev}
