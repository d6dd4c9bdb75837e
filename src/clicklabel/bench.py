"""Benchmarks that compare our paths with stock segment-anything in the same run and print a table."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .embeddings import EmbeddingCache
from .images import load_image
from .masks import mask_iou

SAMPLES = Path(__file__).parent / "data" / "samples"


def sample_image(size: tuple[int, int] = (640, 480)) -> np.ndarray:
    """The bundled coffee photo resized to ``size`` (W, H): the default benchmark image."""
    from PIL import Image

    return np.array(Image.fromarray(load_image(SAMPLES / "coffee.jpg")).resize(size, Image.BILINEAR))


def percentile_ms(times: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(times) * 1000.0, q))


def print_table(rows: list[list], header: list[str], out=None) -> None:
    """Plain aligned text table (also valid Markdown)."""
    out = out or sys.stdout
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for n, r in enumerate(cells):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |", file=out)
        if n == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|", file=out)


def device_name(device: str) -> str:
    """The GPU's name, or the CPU and its thread count."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu x{torch.get_num_threads()}"


def synchronize(device: str) -> None:
    """Wait for the device's queued work (timings on a GPU are otherwise launch times)."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def checkpoint_for(model: str, checkpoint: str | None, random_weights: bool, workdir: Path) -> tuple[str, bool]:
    """The checkpoint path to benchmark, writing a random one if asked."""
    from .weights import resolve_checkpoint, save_random_checkpoint

    if random_weights:
        return str(save_random_checkpoint(workdir / f"{model}_random.pth", model)), True
    return str(resolve_checkpoint(model, checkpoint)), False


def _cached_load_ms(model: str, checkpoint: str, cache_dir: str, device: str, image_path: str) -> float:
    """Time ``set_image`` of an already-cached image in a fresh Python process (model loading excluded)."""
    code = (
        "import sys, time, numpy as np\n"
        "from clicklabel.segment.sam import SamEngine\n"
        "from clicklabel.embeddings import EmbeddingCache\n"
        f"img = np.load({image_path!r})\n"
        f"eng = SamEngine({model!r}, {checkpoint!r}, device={device!r}, cache=EmbeddingCache({cache_dir!r}))\n"
        "t = time.perf_counter(); eng.set_image(img); dt = time.perf_counter() - t\n"
        "assert eng.last_from_cache, 'cache miss in the second process'\n"
        "print(dt * 1000)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(res.stdout.strip().splitlines()[-1])


def bench_latency(
    model: str = "vit_b",
    checkpoint: str | None = None,
    random_weights: bool = False,
    device: str = "cpu",
    repeats: int = 20,
    image: np.ndarray | None = None,
    out=None,
) -> dict:
    """Encoder and decoder latency, stock ``SamPredictor`` vs our engine, same weights, same image, same run."""
    out = out or sys.stdout
    from segment_anything import SamPredictor

    from .segment.base import Prompt
    from .segment.fast_encoder import stock_attention
    from .segment.sam import SamEngine

    img = sample_image() if image is None else image
    h, w = img.shape[:2]
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        ck, is_random = checkpoint_for(model, checkpoint, random_weights, tmpdir)
        cache_dir = str(tmpdir / "cache")
        eng = SamEngine(model, ck, device=device, cache=EmbeddingCache(cache_dir))
        stock = SamPredictor(eng.sam)

        if eng.device.startswith("cuda"):  # warm-up: CUDA context, cuBLAS handles, kernels
            with stock_attention(eng.sam):
                stock.set_image(img)
            eng.encode(img)
        t = time.perf_counter()
        with stock_attention(eng.sam):
            stock.set_image(img)
        synchronize(eng.device)
        stock_enc = time.perf_counter() - t
        t = time.perf_counter()
        eng.set_image(img)
        synchronize(eng.device)
        our_enc = time.perf_counter() - t
        np.save(tmpdir / "img.npy", img)
        cached_ms = _cached_load_ms(model, ck, cache_dir, device, str(tmpdir / "img.npy"))

        pt = np.array([[w // 2, h // 2]])
        prompt = Prompt.make(pt.tolist())
        st, ours_best, ours_all, ious = [], [], [], []
        for _ in range(2):  # warm-up
            stock.predict(pt, np.array([1]), multimask_output=True)
            eng.predict(prompt, multimask=True)
        for _ in range(repeats):
            t = time.perf_counter()
            m, s, _ = stock.predict(pt, np.array([1]), multimask_output=True)
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
    rows = [
        ["encoder, one image", f"{stock_enc * 1000:.0f}", f"{our_enc * 1000:.0f}", f"{stock_enc / our_enc:.2f}x"],
        ["embedding from our cache, new process", "-", f"{cached_ms:.1f}", f"{enc_ratio:.0f}x vs encoding"],
        ["decoder, 1 point, p50 (best mask at image size)", f"{s50:.1f}", f"{b50:.1f}", f"{s50 / b50:.2f}x"],
        ["decoder, 1 point, p90", f"{percentile_ms(st, 90):.1f}", f"{percentile_ms(ours_best, 90):.1f}", ""],
        ["decoder, 1 point, p50 (all 3 masks at image size)", f"{s50:.1f}", f"{a50:.1f}", f"{s50 / a50:.2f}x"],
    ]
    dev_name = device_name(eng.device)
    print(
        f"clicklabel bench latency: model {model}, device {eng.device} ({dev_name}), image {w}x{h}, "
        f"{repeats} repeats" + (" - RANDOM WEIGHTS: timings only, masks mean nothing" if is_random else ""),
        file=out,
    )
    print_table(rows, ["step", "stock SamPredictor ms", "clicklabel ms", "ratio"], out=out)
    print(f"mask agreement with stock (best mask, IoU): min {min(ious):.5f}", file=out)
    return {
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

    from .segment.propose import ProposeSettings, propose, stock_with_embedding
    from .segment.sam import SamEngine

    img = sample_image() if image is None else image
    # Random weights predict low IoU for everything; with SAM's thresholds both sides would skip all masks.
    # Filters off makes both do the whole job, so the comparison stays fair.
    pit = pred_iou_thresh if pred_iou_thresh is not None else (0.0 if random_weights else 0.88)
    stt = stability_thresh if stability_thresh is not None else (0.0 if random_weights else 0.95)
    settings = ProposeSettings(grid=grid, pred_iou_thresh=pit, stability_thresh=stt)
    with tempfile.TemporaryDirectory() as tmp:
        ck, is_random = checkpoint_for(model, checkpoint, random_weights, Path(tmp))
        eng = SamEngine(model, ck, device=device, cache=EmbeddingCache(Path(tmp) / "cache"))
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
          + (" - RANDOM WEIGHTS: timings only" if is_random else ""), file=out)
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
