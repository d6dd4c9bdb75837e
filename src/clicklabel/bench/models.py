"""``clicklabel bench models``: seconds per image of each registered model's image encoder on this machine (our
engine's encoder, the family's own arithmetic; random weights built by each family's builder, since the speed does
not depend on the weights), with vit_b measured in the same run as the baseline: first and last, so a machine
that got busier in between shows as two different vit_b times."""

from __future__ import annotations

import gc
import os
import sys
import time

import numpy as np

from .harness import device_name, print_table, sample_image, synchronize


def encoder_seconds(model: str, device: str, image: np.ndarray, repeats: int) -> tuple[list[float], float]:
    """Timed encodings of ``image`` (after one warm-up) and the model's parameter count in millions."""
    from ..embeddings import EmbeddingCache
    from ..segment.models import engine_class, random_model

    loaded = random_model(model)
    params = sum(p.numel() for p in loaded.module.parameters()) / 1e6
    eng = engine_class(loaded.family)(loaded=loaded, device=device, cache=EmbeddingCache(disk=False))
    eng.encode(image)
    times = []
    for _ in range(repeats):
        synchronize(eng.device)
        t = time.perf_counter()
        eng.encode(image)
        synchronize(eng.device)
        times.append(time.perf_counter() - t)
    del eng, loaded
    gc.collect()
    return times, params


def bench_models(models: list[str] | None = None, device: str = "cpu", repeats: int = 3,
                 image: np.ndarray | None = None, out=None) -> dict:
    """Encoder seconds per image of ``models`` (default: every registered model whose family is installed)."""
    from ..errors import ClickLabelError
    from ..segment.models import FAMILIES, family_of, installed
    from ..weights import REGISTRY

    out = out or sys.stdout
    names = list(models or REGISTRY)
    for n in names:
        family_of(n)  # unknown names: one line listing the known ones
    missing = [n for n in names if not installed(family_of(n))]
    names = [n for n in names if n not in missing and n != "vit_b"]
    if not names:
        raise ClickLabelError("no model to measure (their families' extras are not installed)")
    img = sample_image() if image is None else image
    load0 = os.getloadavg()[0]
    first, _ = encoder_seconds("vit_b", device, img, repeats)
    measured = {n: encoder_seconds(n, device, img, repeats) for n in names}
    last, params_b = encoder_seconds("vit_b", device, img, repeats)
    base = float(np.median(first + last))
    rows, result = [], {}
    for n, (times, params) in [("vit_b", (first + last, params_b)), *measured.items()]:
        sec = float(np.median(times))
        result[n] = {"seconds": sec, "params_m": params, "speedup_vs_vit_b": base / sec}
        rows.append([n, FAMILIES[family_of(n)].label, f"{params:.1f}", f"{sec:.2f}", f"{base / sec:.2f}x"])
    h, w = img.shape[:2]
    print(f"clicklabel bench models: encoder seconds per {w}x{h} image, device {device} ({device_name(device)}), "
          f"median of {repeats} after a warm-up, random weights (speed only); vit_b first and last: "
          f"{np.median(first):.2f} s and {np.median(last):.2f} s; load average {load0:.1f} -> "
          f"{os.getloadavg()[0]:.1f}", file=out)
    print_table(rows, ["model", "family", "params (M)", "encoder s/image", "faster than vit_b"], out=out)
    if missing:
        print(f"not measured (extra not installed): {', '.join(missing)}", file=out)
    return {"device": device, "vit_b_first_s": float(np.median(first)), "vit_b_last_s": float(np.median(last)),
            "models": result}
