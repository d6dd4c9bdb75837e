"""``clicklabel bench latency``: encoder, cached-embedding and decoder latency of any registered model, its family's
stock predictor (``SamPredictor``, ``SAM2ImagePredictor``, HQ-SAM's ``SamPredictor``) vs our engine, same weights,
same image, same run: the encoders timed in interleaved pairs (``agreement.interleaved``), the masks of our encoder
compared with stock's on fixed prompts, and the masks of the cached (stored) embedding compared with the fresh one."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import warnings

import numpy as np

from ..masks import mask_iou
from .harness import bench_engine, device_name, percentile_ms, print_table, sample_image, synchronize


def _cached_load_ms(model: str, checkpoint: str, cache_dir: str, device: str, image_path: str) -> tuple[float, float]:
    """``set_image`` of an already-cached image in a fresh Python process (model loading excluded): the first one
    (what a new process pays, device start-up included) and again with the memory caches emptied (disk -> device,
    what each further cached image costs). Milliseconds."""
    code = (
        "import sys, time, numpy as np\n"
        "from clicklabel.segment import make_engine\n"
        "from clicklabel.embeddings import EmbeddingCache\n"
        "from clicklabel.bench.harness import synchronize\n"
        f"img = np.load({image_path!r})\n"
        f"eng = make_engine('sam', {model!r}, {checkpoint!r}, device={device!r}, cache=EmbeddingCache({cache_dir!r}))\n"
        "t = time.perf_counter(); eng.set_image(img); synchronize(eng.device); first = time.perf_counter() - t\n"
        "assert eng.last_from_cache and eng.encoder_builds == 0, 'the second process encoded'\n"
        "eng.forget_kept(); eng.cache.clear_memory()\n"
        "t = time.perf_counter(); eng.set_image(img); synchronize(eng.device); warm = time.perf_counter() - t\n"
        "print(first * 1000, warm * 1000)\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    first, warm = res.stdout.strip().splitlines()[-1].split()
    return float(first), float(warm)


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

    def mask(self, prompt) -> np.ndarray:
        """Stock's single mask (``multimask_output=False``) for a ``Prompt`` on the current image."""
        kw = {"multimask_output": False}
        if prompt.points:
            kw.update(point_coords=np.asarray(prompt.points, dtype=float), point_labels=np.asarray(prompt.labels))
        if prompt.box is not None:
            kw["box"] = np.asarray(prompt.box, dtype=float)
        return self.predictor.predict(**kw)[0][0]


def bench_latency(
    model: str = "vit_b",
    checkpoint: str | None = None,
    random_weights: bool = False,
    device: str = "cpu",
    repeats: int = 20,
    image: np.ndarray | None = None,
    out=None,
    pairs: int | None = None,
    precision: str | None = None,
) -> dict:
    """Encoder and decoder latency, the family's stock predictor vs our engine, same weights, same image, same run;
    ``pairs`` interleaved encoder pairs (default 3 on a CPU, 10 on a GPU), ``repeats`` decoder pairs."""
    out = out or sys.stdout
    from ..embeddings import read_embedding
    from ..segment.base import Prompt
    from .agreement import engine_masks, fixed_prompts, interleaved, ious, load_average, ratio_text

    img = sample_image() if image is None else image
    h, w = img.shape[:2]
    load0 = load_average()
    with bench_engine(model, checkpoint, random_weights, device, precision=precision) as setup:
        eng, tmpdir, is_random = setup.engine, setup.workdir, setup.random_weights
        stock = StockPredictor(eng)
        sync = lambda: synchronize(eng.device)  # noqa: E731
        npairs = pairs or (10 if eng.device.startswith("cuda") else 3)
        fresh = {}

        def ours() -> None:
            fresh["emb"] = eng.encode(img)

        enc = interleaved(lambda: stock.set_image(img), ours, npairs, warmup=1, sync=sync)
        say = f"measured: encoder stock {np.median(enc.a) * 1000:.0f} ms, ours {np.median(enc.b) * 1000:.0f} ms"
        print(say + f", ratio {enc.spread()}, {enc.load_text()}", file=out, flush=True)

        # masks: stock's (its own fp32 encoding of the image) vs ours (our encoder's embedding), fixed prompts
        prompts = fixed_prompts(h, w)
        stock_masks = [stock.mask(p) for p in prompts]
        ours_masks = engine_masks(eng, fresh["emb"], prompts)
        vs_stock = ious(stock_masks, ours_masks)
        # the same embedding after a trip through the disk cache (its stored precision), in the same engine
        key = eng.embedding_key(img)
        eng.cache.put(key, fresh["emb"])
        stored = read_embedding(eng.cache.path(key))
        vs_fresh = ious(ours_masks, engine_masks(eng, stored, prompts))
        np.save(tmpdir / "img.npy", img)
        cached_ms, warm_ms = _cached_load_ms(eng.model, setup.checkpoint, str(setup.cache_dir), device,
                                             str(tmpdir / "img.npy"))

        eng.set_embedding(fresh["emb"])
        pt = np.array([[w // 2, h // 2]])
        prompt = Prompt.make(pt.tolist())
        last = {}

        def stock_decode() -> None:
            last["stock"] = stock.predict(pt, np.array([1]))

        def ours_decode() -> None:
            last["ours"] = eng.predict(prompt, multimask=True)

        def ours_all() -> None:
            [r.mask for r in eng.predict(prompt, multimask=True)]

        dec = interleaved(stock_decode, ours_decode, repeats, warmup=2, sync=sync)
        dec_all = interleaved(stock_decode, ours_all, repeats, warmup=1, sync=sync)
        m, s = last["stock"]
        decoder_iou = mask_iou(m[int(np.argmax(s))], last["ours"][0].mask)

    stock_enc, our_enc = float(np.median(enc.a)), float(np.median(enc.b))
    s50, b50, a50 = (percentile_ms(x, 50) for x in (dec.a, dec.b, dec_all.b))
    stock_masks_kind = "1 mask: best + HQ" if eng.name == "hq" else "3 masks"
    rows = [
        ["encoder, one image (median of pairs)", f"{stock_enc * 1000:.0f}", f"{our_enc * 1000:.0f}", enc.spread()],
        ["embedding from our cache, new process (first image)", "-", f"{cached_ms:.1f}",
         f"{ratio_text(stock_enc * 1000 / cached_ms)} vs encoding"],
        ["embedding from our cache, disk -> device (next images)", "-", f"{warm_ms:.1f}",
         f"{ratio_text(stock_enc * 1000 / warm_ms)} vs encoding"],
        ["decoder, 1 point, p50 (best mask at image size)", f"{s50:.1f}", f"{b50:.1f}", dec.spread()],
        ["decoder, 1 point, p90", f"{percentile_ms(dec.a, 90):.1f}", f"{percentile_ms(dec.b, 90):.1f}", ""],
        ["decoder, 1 point, p50 (all 3 masks at image size)", f"{percentile_ms(dec_all.a, 50):.1f}", f"{a50:.1f}",
         dec_all.spread()],
    ]
    dev_name = device_name(eng.device)
    print(
        f"clicklabel bench latency: model {eng.model} ({eng.name}), device {eng.device} ({dev_name}), image {w}x{h}, "
        f"encoder ours: {eng.encoder.describe()} ({eng.precision_choice.reason}); {npairs} interleaved encoder "
        f"pairs, {repeats} decoder pairs; stock multimask returns {stock_masks_kind}; load average {load0:.1f} -> "
        f"{load_average():.1f}" + setup.note(),
        file=out,
    )
    print_table(rows, ["step", f"stock {stock.name} ms", "clicklabel ms", "stock / ours"], out=out)
    print(f"mask agreement with stock fp32 ({len(prompts)} fixed prompts, IoU): min {min(vs_stock):.5f}, "
          f"mean {np.mean(vs_stock):.5f}; decoder alone (same image, best mask): {decoder_iou:.5f}", file=out)
    print(f"cached vs fresh embedding ({eng.cache.precision} on disk, same prompts, IoU): min {min(vs_fresh):.5f}",
          file=out)
    return {
        "model": eng.model,
        "family": eng.name,
        "precision": eng.precision,
        "stock_encoder_ms": stock_enc * 1000,
        "our_encoder_ms": our_enc * 1000,
        "encoder_ratio": enc.ratio,
        "encoder_pair_ratios": enc.ratios,
        "cached_load_ms": cached_ms,
        "cached_warm_ms": warm_ms,
        "stock_decoder_p50_ms": s50,
        "our_decoder_p50_ms": b50,
        "our_decoder_all_masks_p50_ms": a50,
        "min_iou": min(vs_stock),
        "ious_vs_stock": vs_stock,
        "decoder_iou": decoder_iou,
        "cached_vs_fresh_min_iou": min(vs_fresh),
        "random_weights": is_random,
        "device": eng.device,
    }
