"""``clicklabel bench latency``: encoder, cached-embedding and decoder latency of any registered model, its family's
stock predictor (``SamPredictor``, ``SAM2ImagePredictor``, HQ-SAM's ``SamPredictor``) vs our engine, same weights,
same image, same run."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import warnings

import numpy as np

from ..masks import mask_iou
from .harness import bench_engine, device_name, percentile_ms, print_table, sample_image, synchronize


def _cached_load_ms(model: str, checkpoint: str, cache_dir: str, device: str, image_path: str) -> float:
    """Time ``set_image`` of an already-cached image in a fresh Python process (model loading excluded)."""
    code = (
        "import sys, time, numpy as np\n"
        "from clicklabel.segment import make_engine\n"
        "from clicklabel.embeddings import EmbeddingCache\n"
        f"img = np.load({image_path!r})\n"
        f"eng = make_engine('sam', {model!r}, {checkpoint!r}, device={device!r}, cache=EmbeddingCache({cache_dir!r}))\n"
        "t = time.perf_counter(); eng.set_image(img); dt = time.perf_counter() - t\n"
        "assert eng.last_from_cache, 'cache miss in the second process'\n"
        "print(dt * 1000)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(res.stdout.strip().splitlines()[-1])


class StockPredictor:
    """The family's own predictor on the engine's model: ``set_image(img)``, ``predict(points, labels)`` -> (masks,
    scores) with ``multimask_output=True`` (HQ-SAM's returns one mask, the best SAM candidate plus its HQ mask)."""

    def __init__(self, eng):
        from ..segment.fast_encoder import stock_attention

        self.attention = contextlib.nullcontext
        if eng.name == "sam2.1":
            with warnings.catch_warnings():  # SAM2Transforms' torch.jit.script
                warnings.simplefilter("ignore", FutureWarning)
                from sam2.sam2_image_predictor import SAM2ImagePredictor

                self.name, self.predictor = "SAM2ImagePredictor", SAM2ImagePredictor(eng.net)
            return
        if eng.name == "hq":
            from segment_anything_hq import SamPredictor

            self.name = "HQ-SAM SamPredictor"
        else:
            from segment_anything import SamPredictor

            self.name = "SamPredictor"
        self.predictor = SamPredictor(eng.sam)
        if hasattr(eng.sam.image_encoder, "blocks"):  # a ViT: stock attention, whatever our engine switched on
            self.attention = lambda: stock_attention(eng.sam)

    def set_image(self, img: np.ndarray) -> None:
        with self.attention():
            self.predictor.set_image(img)

    def predict(self, points: np.ndarray, labels: np.ndarray):
        masks, scores, _ = self.predictor.predict(point_coords=points, point_labels=labels, multimask_output=True)
        return masks, scores


def bench_latency(
    model: str = "vit_b",
    checkpoint: str | None = None,
    random_weights: bool = False,
    device: str = "cpu",
    repeats: int = 20,
    image: np.ndarray | None = None,
    out=None,
) -> dict:
    """Encoder and decoder latency, the family's stock predictor vs our engine, same weights, same image, same run."""
    out = out or sys.stdout
    from ..segment.base import Prompt

    img = sample_image() if image is None else image
    h, w = img.shape[:2]
    with bench_engine(model, checkpoint, random_weights, device) as setup:
        eng, tmpdir, is_random = setup.engine, setup.workdir, setup.random_weights
        stock = StockPredictor(eng)
        if eng.device.startswith("cuda"):  # warm-up of the stock path too
            stock.set_image(img)
        t = time.perf_counter()
        stock.set_image(img)
        synchronize(eng.device)
        stock_enc = time.perf_counter() - t
        t = time.perf_counter()
        eng.set_image(img)
        synchronize(eng.device)
        our_enc = time.perf_counter() - t
        np.save(tmpdir / "img.npy", img)
        cached_ms = _cached_load_ms(eng.model, setup.checkpoint, str(setup.cache_dir), device, str(tmpdir / "img.npy"))

        pt = np.array([[w // 2, h // 2]])
        prompt = Prompt.make(pt.tolist())
        st, ours_best, ours_all, ious = [], [], [], []
        for _ in range(2):  # warm-up
            stock.predict(pt, np.array([1]))
            eng.predict(prompt, multimask=True)
        for _ in range(repeats):
            t = time.perf_counter()
            m, s = stock.predict(pt, np.array([1]))
            synchronize(eng.device)
            st.append(time.perf_counter() - t)
            t = time.perf_counter()
            res = eng.predict(prompt, multimask=True)
            synchronize(eng.device)
            ours_best.append(time.perf_counter() - t)
            t = time.perf_counter()
            res = eng.predict(prompt, multimask=True)
            [r.mask for r in res]
            synchronize(eng.device)
            ours_all.append(time.perf_counter() - t)
            ious.append(mask_iou(m[int(np.argmax(s))], res[0].mask))

    enc_ratio = stock_enc * 1000 / cached_ms
    s50, b50, a50 = (percentile_ms(x, 50) for x in (st, ours_best, ours_all))
    stock_masks = "1 mask: best + HQ" if eng.name == "hq" else "3 masks"
    rows = [
        ["encoder, one image", f"{stock_enc * 1000:.0f}", f"{our_enc * 1000:.0f}", f"{stock_enc / our_enc:.2f}x"],
        ["embedding from our cache, new process", "-", f"{cached_ms:.1f}", f"{enc_ratio:.0f}x vs encoding"],
        ["decoder, 1 point, p50 (best mask at image size)", f"{s50:.1f}", f"{b50:.1f}", f"{s50 / b50:.2f}x"],
        ["decoder, 1 point, p90", f"{percentile_ms(st, 90):.1f}", f"{percentile_ms(ours_best, 90):.1f}", ""],
        ["decoder, 1 point, p50 (all 3 masks at image size)", f"{s50:.1f}", f"{a50:.1f}", f"{s50 / a50:.2f}x"],
    ]
    dev_name = device_name(eng.device)
    print(
        f"clicklabel bench latency: model {eng.model} ({eng.name}), device {eng.device} ({dev_name}), image {w}x{h}, "
        f"{repeats} repeats; stock multimask returns {stock_masks}" + setup.note(),
        file=out,
    )
    print_table(rows, ["step", f"stock {stock.name} ms", "clicklabel ms", "ratio"], out=out)
    print(f"mask agreement with stock (best mask, IoU): min {min(ious):.5f}", file=out)
    return {
        "model": eng.model,
        "family": eng.name,
        "stock_encoder_ms": stock_enc * 1000,
        "our_encoder_ms": our_enc * 1000,
        "cached_load_ms": cached_ms,
        "stock_decoder_p50_ms": s50,
        "our_decoder_p50_ms": b50,
        "our_decoder_all_masks_p50_ms": a50,
        "min_iou": min(ious),
        "random_weights": is_random,
        "device": eng.device,
    }
