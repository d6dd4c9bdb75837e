"""``clicklabel bench models``: seconds per image of each registered model's image encoder on this machine (our
engine's encoder with the precision chosen for this hardware; random weights built by each family's builder, since
the speed does not depend on the weights). Each model is timed in interleaved pairs with vit_b, the baseline, kept
loaded for the whole run, so every ratio compares two encoders measured side by side under the same load. The
times go to this machine's speed record (``segment.speed``), which the CPU model suggestion reads."""

from __future__ import annotations

import gc
import sys

import numpy as np

from .agreement import interleaved, load_average, ratio_text
from .harness import device_name, print_table, sample_image, synchronize


def make_timed_engine(model: str, device: str, precision: str | None = None):
    """(engine, parameters in millions) of ``model`` with random weights, its encoder built and warmed up once."""
    from ..embeddings import EmbeddingCache
    from ..segment.models import engine_class, random_model

    loaded = random_model(model)
    params = sum(p.numel() for p in loaded.module.parameters()) / 1e6
    eng = engine_class(loaded.family)(loaded=loaded, device=device, cache=EmbeddingCache(disk=False),
                                      precision=precision)
    return eng, params


def bench_models(models: list[str] | None = None, device: str = "cpu", repeats: int = 3,
                 image: np.ndarray | None = None, out=None, precision: str | None = None) -> dict:
    """Encoder seconds per image of ``models`` (default: every registered model whose family is installed), each in
    ``repeats`` interleaved pairs with vit_b."""
    from ..errors import ClickLabelError
    from ..segment import speed
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
    load0 = load_average()
    base, params_b = make_timed_engine("vit_b", device, precision)
    sync = lambda: synchronize(base.device)  # noqa: E731
    base_times, result, rows = [], {}, []
    for n in names:
        eng, params = make_timed_engine(n, device, precision)
        pairs = interleaved(lambda: base.encode(img), lambda e=eng: e.encode(img), repeats, warmup=1, sync=sync)
        base_times += pairs.a
        sec = float(np.median(pairs.b))
        result[n] = {"seconds": sec, "params_m": params, "speedup_vs_vit_b": pairs.ratio,
                     "pair_ratios": pairs.ratios, "precision": eng.precision}
        speed.record(n, base.device, eng.precision, sec)
        rows.append([n, FAMILIES[family_of(n)].label, f"{params:.1f}", eng.precision, f"{sec:.2f}",
                     pairs.spread(), pairs.load_text()])
        print(f"measured: {n} {sec:.2f} s/image, vit_b in the same pairs {np.median(pairs.a):.2f} s", file=out,
              flush=True)
        del eng
        gc.collect()
    vit_b = float(np.median(base_times))
    speed.record("vit_b", base.device, base.precision, vit_b)
    rows.insert(0, ["vit_b", "SAM", f"{params_b:.1f}", base.precision, f"{vit_b:.2f}", "1 (baseline)",
                    f"{len(base_times)} runs"])
    result["vit_b"] = {"seconds": vit_b, "params_m": params_b, "speedup_vs_vit_b": 1.0, "precision": base.precision}
    h, w = img.shape[:2]
    print(f"clicklabel bench models: encoder seconds per {w}x{h} image, device {base.device} "
          f"({device_name(base.device)}), each model in {repeats} interleaved pairs with vit_b after one warm-up each, "
          f"random weights (speed only); load average {load0:.1f} -> {load_average():.1f}; vit_b over all pairs "
          f"{min(base_times):.2f}-{max(base_times):.2f} s", file=out)
    print_table(rows, ["model", "family", "params (M)", "precision", "encoder s/image", "faster than vit_b (pairs)",
                       "load"], out=out)
    if missing:
        print(f"not measured (extra not installed): {', '.join(missing)}", file=out)
    print(f"recorded in {speed.record_path()} (the CPU model suggestion reads it); ratios: "
          + ", ".join(f"{n} {ratio_text(r['speedup_vs_vit_b'])}" for n, r in result.items() if n != "vit_b"),
          file=out)
    return {"device": base.device, "vit_b_s": vit_b, "vit_b_range_s": (min(base_times), max(base_times)),
            "models": result}
