"""``clicklabel bench encoder``: images per second of SAM's image encoder, each speed technique on its own
(like segment-anything-fast's table), against the stock ``SamPredictor`` measured in the same run; then
``precompute`` of a folder of JPEGs against the encoder-only rate of the same configuration."""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..errors import ClickLabelError
from ..images import IMAGE_SUFFIXES, load_image
from .harness import SAMPLES, bench_engine, device_name, print_table, sample_image, synchronize


def techniques(low: str = "bf16") -> list[tuple[str, dict]]:
    """(name, ImageEncoder switches) in the order of the table; each adds one technique to the one before.
    ``low`` is the reduced precision to try: bf16 on a GPU; fp32 on a CPU without bf16 units (there bf16 is
    several times slower), which leaves SDPA, compile and batching."""
    rows = [("fp32 (stock attention)", dict(sdpa=False, precision="fp32"))]
    if low != "fp32":
        rows.append((low, dict(sdpa=False, precision=low)))
    rows.append((f"{low} + SDPA", dict(sdpa=True, precision=low)))
    rows.append((f"{low} + SDPA + compile", dict(sdpa=True, precision=low, compile=True)))
    return rows


def _timed(step, device: str, batch: int, repeats: int, warmup: int) -> dict:
    """Run ``step()`` ``warmup + repeats`` times with the device synchronised around each; the median of the
    timed passes per batch, and the first pass (it holds any compilation)."""
    times = []
    for _ in range(warmup + repeats):
        synchronize(device)
        t = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - t)
    sec = float(np.median(times[warmup:]))
    return {"batch": batch, "s_per_batch": sec, "img_per_s": batch / sec, "first_s": times[0]}


def time_encoder(encoder, batch: int, repeats: int, warmup: int | None = None) -> dict:
    """The encoder alone (input already normalised on the device)."""
    import torch

    warmup = (2 if repeats >= 3 else 1) if warmup is None else warmup
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn((batch, 3, encoder.size, encoder.size), generator=gen).to(encoder.device)
    with torch.inference_mode():
        return _timed(lambda: encoder.forward(x), encoder.device, batch, repeats, warmup)


def time_stock_predictor(sam, device: str, image: np.ndarray, repeats: int, warmup: int = 1) -> dict:
    """``SamPredictor.set_image`` (fp32, segment_anything's own attention), one image at a time, resize included."""
    from segment_anything import SamPredictor

    from ..segment.fast_encoder import stock_attention

    pred = SamPredictor(sam)
    with stock_attention(sam):
        return _timed(lambda: pred.set_image(image), device, 1, repeats, warmup)


def make_jpeg_folder(folder: Path, n: int, sources: list[Path], workers: int = 8) -> list[Path]:
    """``n`` (< 65536) distinct JPEGs made from ``sources`` (cycled): each copy gets its number written into its
    top-left corner as 16 black or white 8x8 blocks (one per bit) before saving, so no two share content and the
    cache cannot skip any. (A number written as one colour did not survive JPEG coding: 153 of 1000 copies
    decoded to the same pixels as a neighbour.)"""
    from PIL import Image

    if not sources:
        raise ClickLabelError("no source images for the precompute benchmark")
    if n >= 1 << 16:
        raise ClickLabelError("--precompute-images: at most 65535")
    folder.mkdir(parents=True, exist_ok=True)
    originals = [load_image(p) for p in sources]

    def one(i: int) -> Path:
        img = originals[i % len(originals)].copy()
        for bit in range(16):
            r, c = divmod(bit, 4)
            img[8 * r: 8 * r + 8, 8 * c: 8 * c + 8] = 255 if (i >> bit) & 1 else 0
        out = folder / f"img_{i:05d}.jpg"
        Image.fromarray(img).save(out, quality=90)
        return out

    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(one, range(n)))


def source_images(data: str | None) -> list[Path]:
    """JPEG/PNG files under ``data`` (recursively), else the bundled sample photos."""
    root = Path(data) if data else SAMPLES
    if not root.exists():
        raise ClickLabelError(f"no such folder: {root}")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                   and "mask" not in p.parent.name.lower())
    if not files:
        raise ClickLabelError(f"no images under {root}")
    return files[:200]


def bench_encoder(
    model: str = "vit_b",
    checkpoint: str | None = None,
    random_weights: bool = False,
    device: str = "cpu",
    batches: tuple[int, ...] = (1, 8),
    repeats: int = 10,
    compile: bool = True,
    precompute_images: int = 0,
    data: str | None = None,
    precision: str | None = None,
    out=None,
) -> dict:
    """The technique table (and the precompute row when ``precompute_images`` > 0); returns every figure."""
    out = out or sys.stdout
    from ..segment.encoder import ImageEncoder
    from ..segment.precompute import precompute

    if precision == "openvino":
        raise ClickLabelError("bench encoder times PyTorch's techniques; OpenVINO's encoder is timed by "
                              "`clicklabel bench latency --precision openvino`")
    low = precision or ("bf16" if device.startswith("cuda") else "fp32")
    rows_to_run = [t for t in techniques(low) if compile or "compile" not in t[1]]
    big = sorted(b for b in set(batches) if b > 1)
    results: list[tuple[str, dict]] = []
    with bench_engine(model, checkpoint, random_weights, device, encoder="stock", family="sam") as setup:
        eng, tmpdir, is_random = setup.engine, setup.workdir, setup.random_weights

        def measured(name: str, r: dict) -> None:
            """Keep a row and print it at once: a run cut short (a time limit) still shows what it measured."""
            results.append((name, r))
            print(f"measured: {name}, batch {r['batch']}: {r['img_per_s']:.3g} images/s "
                  f"({r['s_per_batch'] * 1000:.1f} ms per batch, first pass {r['first_s']:.1f} s)", file=out,
                  flush=True)

        measured("stock SamPredictor.set_image (fp32)", time_stock_predictor(eng.sam, eng.device, sample_image(),
                                                                             repeats))
        stock = results[0][1]
        encoders = {}
        for name, switches in rows_to_run:
            encoders[name] = enc = ImageEncoder(eng.sam, eng.device, **switches)
            measured(name, time_encoder(enc, 1, repeats))
        for name, _ in rows_to_run[-2:]:  # batching on top of the two fastest configurations
            for b in big:
                measured(name, time_encoder(encoders[name], b, repeats))
        pre = None
        if precompute_images > 0:
            best_name = rows_to_run[-1][0]
            b = max(big or [1])
            engine_rate = next(r["img_per_s"] for n, r in results if n == best_name and r["batch"] == b)
            paths = make_jpeg_folder(tmpdir / "jpegs", precompute_images, source_images(data))
            eng.encoder = encoders[best_name]
            stats = precompute(eng, paths, batch=b)
            rate = stats["encoded"] / stats["seconds"]
            pre = {"images": len(paths), "encoded": stats["encoded"], "seconds": stats["seconds"],
                   "img_per_s": rate, "encoder_img_per_s": engine_rate, "share": rate / engine_rate,
                   "technique": best_name, "batch": b, "failed": stats["failed"]}

    base = stock["img_per_s"]
    rows = [[n, r["batch"], f"{r['s_per_batch'] * 1000:.1f}", f"{r['img_per_s']:.3g}",
             f"{r['img_per_s'] / base:.2f}x", f"{r['first_s']:.1f}"] for n, r in results]
    print(f"clicklabel bench encoder: model {model}, device {eng.device} ({device_name(eng.device)}), "
          f"{repeats} timed passes per row (median)"
          + setup.note(), file=out)
    print_table(rows, ["technique", "batch", "ms per batch", "images/s", "vs stock", "first pass s"], out=out)
    if pre is not None:
        print(f"precompute: {pre['encoded']} of {pre['images']} JPEGs encoded in {pre['seconds']:.1f} s = "
              f"{pre['img_per_s']:.3g} images/s with {pre['technique']}, batch {pre['batch']}: "
              f"{100 * pre['share']:.1f}% of that encoder's rate alone ({pre['encoder_img_per_s']:.3g} images/s)",
              file=out)
    return {"model": model, "device": eng.device, "device_name": device_name(eng.device), "random_weights": is_random,
            "rows": [{"technique": n, **r} for n, r in results], "precompute": pre}
