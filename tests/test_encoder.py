"""The encoder's speed switches (batches, torch.compile), the precompute pipeline and the encoder benchmark."""

import re
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor

from clicklabel.cli import main
from clicklabel.embeddings import EmbeddingCache
from clicklabel.errors import ClickLabelError
from clicklabel.segment import fast_encoder
from clicklabel.segment.encoder import ImageEncoder
from clicklabel.segment.precompute import bounded_map, precompute
from clicklabel.segment.sam import SamEngine

from conftest import SAMPLES, sample


@pytest.fixture(scope="module")
def stock_engine(tiny_checkpoint, tmp_path_factory):
    return SamEngine("auto", tiny_checkpoint, device="cpu", fast=False,
                     cache=EmbeddingCache(tmp_path_factory.mktemp("enc"), disk=False))


def _stock_features(sam, img) -> np.ndarray:
    pred = SamPredictor(sam)
    pred.set_image(img)
    return pred.features.numpy()


def test_batch_of_different_sizes_equals_stock_set_image(stock_engine):
    imgs = [sample("chelsea"), sample("rocket"), sample("coffee")[:, :200]]  # landscape, portrait, narrow
    assert len({im.shape for im in imgs}) == 3
    embs = stock_engine.encoder.encode(imgs)
    for img, emb in zip(imgs, embs):
        ref = _stock_features(stock_engine.sam, img)
        np.testing.assert_allclose(emb.features, ref, atol=2e-5, rtol=0)
        assert emb.original_size == img.shape[:2]
        assert max(emb.input_size) == 1024


def test_compiled_encoder_agrees_and_pads_last_batch_without_recompiling(stock_engine):
    from torch._dynamo.utils import counters

    enc = ImageEncoder(stock_engine.sam, "cpu", sdpa=True, precision="fp32", compile=True)
    assert enc.describe() == "fp32 + SDPA + compile(default)"
    imgs = [sample("chelsea"), sample("rocket"), sample("astronaut")]
    prepared = [enc.prepare(im) for im in imgs]
    full = enc.run(prepared[:2], pad_to=2)
    compiled_frames = counters["stats"]["unique_graphs"]
    short = enc.run(prepared[2:], pad_to=2)  # one image, padded to the compiled batch of 2
    assert counters["stats"]["unique_graphs"] == compiled_frames, "a short last batch recompiled the encoder"
    assert full.shape[0] == 2 and short.shape[0] == 1
    assert fast_encoder.is_enabled(stock_engine.sam)  # the compiled encoder put SDPA into the shared model ...
    for img, feats in zip(imgs, [full[0], full[1], short[0]]):
        with fast_encoder.stock_attention(stock_engine.sam):  # ... so the reference takes it out again
            ref = _stock_features(stock_engine.sam, img)
        assert np.abs(feats.numpy() - ref[0]).max() < 1e-4
    stock_engine.encoder.activate()  # the shared model back to stock attention for the other tests


def test_unknown_precision_is_a_clear_error(stock_engine):
    with pytest.raises(ClickLabelError, match="unknown precision"):
        ImageEncoder(stock_engine.sam, "cpu", precision="fp8")


def test_bounded_map_keeps_order_and_window():
    pulled = []

    def items():
        for i in range(50):
            pulled.append(i)
            yield i

    with ThreadPoolExecutor(4) as pool:
        gen = bounded_map(pool, lambda x: x * x, items(), window=5)
        assert next(gen) == 0
        assert len(pulled) <= 6  # the window, plus the one submitted after the first result
        assert list(gen) == [i * i for i in range(1, 50)]


def _folder(tmp_path, names):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, n in enumerate(names):
        (folder / f"{i:02d}_{n}.jpg").write_bytes((SAMPLES / f"{n}.jpg").read_bytes())
    return sorted(folder.iterdir())


def test_precompute_dedupes_cancels_resumes_and_counts_progress(tiny_checkpoint, tmp_path):
    cache = EmbeddingCache(tmp_path / "cache")
    eng = SamEngine("auto", tiny_checkpoint, device="cpu", fast=False, cache=cache)
    paths = _folder(tmp_path, ["rocket", "coffee", "rocket", "astronaut", "chelsea"])  # one duplicate
    done, calls = [], []
    lock = threading.Lock()

    def progress(n):
        with lock:
            done.append(n)

    def cancel():
        calls.append(1)
        return True  # stop after the first batch

    s1 = precompute(eng, paths, batch=2, workers=2, progress=progress, cancel=cancel)
    assert s1["cancelled"] and s1["encoded"] == 2 and calls == [1]
    s2 = precompute(eng, paths, batch=2, workers=2, progress=progress)
    assert not s2["cancelled"]
    assert s2["encoded"] == 2 and s2["cached"] == 3 and s2["failed"] == 0  # 2 cached + the duplicate
    assert sum(done) == s1["encoded"] + s1["cached"] + len(paths)
    # every entry on disk is the image's embedding (float16 on disk)
    cache.clear_memory()
    for name in ("rocket", "coffee", "astronaut", "chelsea"):
        img = sample(name)
        got = cache.get(eng.embedding_key(img))
        assert got is not None, name
        np.testing.assert_allclose(got.features, eng.encode(img).features, atol=2e-2, rtol=2e-2)
        assert got.features.dtype == np.float32


def test_precompute_reports_unwritable_cache(tiny_checkpoint, tmp_path):
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache folder should be")
    eng = SamEngine("auto", tiny_checkpoint, device="cpu", fast=False, cache=EmbeddingCache(blocker))
    stats = precompute(eng, _folder(tmp_path, ["coffee"]), batch=1, workers=1)
    assert stats["encoded"] == 0 and stats["failed"] == 1
    assert "cannot write the cache entry" in stats["errors"][0]


def test_bench_encoder_table_and_precompute_row(tiny_checkpoint, capsys):
    args = ["bench", "encoder", "--model", "auto", "--checkpoint", str(tiny_checkpoint), "--device", "cpu",
            "--batch", "1,2", "--repeats", "1", "--no-compile", "--precompute-images", "4", "--precision", "bf16"]
    assert main(args) == 0
    text = capsys.readouterr().out
    rows = [r for r in text.splitlines() if r.startswith("| ") and "technique" not in r]
    names = [r.split("|")[1].strip() for r in rows]
    assert names == ["stock SamPredictor.set_image (fp32)", "fp32 (stock attention)", "bf16", "bf16 + SDPA",
                     "bf16", "bf16 + SDPA"]
    assert [r.split("|")[2].strip() for r in rows] == ["1", "1", "1", "1", "2", "2"]
    for r in rows:
        ms, per_s = float(r.split("|")[3]), float(r.split("|")[4])
        assert ms > 0 and per_s == pytest.approx(int(r.split("|")[2]) * 1000 / ms, rel=0.01)
    m = re.search(r"precompute: (\d+) of 4 JPEGs encoded .* batch 2: ([\d.]+)% of that encoder's rate", text)
    assert m and m.group(1) == "4" and float(m.group(2)) > 0


def test_bench_techniques_per_precision():
    from clicklabel.bench.encoder import techniques

    assert [n for n, _ in techniques("fp32")] == ["fp32 (stock attention)", "fp32 + SDPA", "fp32 + SDPA + compile"]
    assert [n for n, _ in techniques("bf16")][1:] == ["bf16", "bf16 + SDPA", "bf16 + SDPA + compile"]


def test_bench_batch_list_is_checked(capsys):
    assert main(["bench", "encoder", "--batch", "1,x", "--random-weights"]) == 2
    assert "expected numbers separated by commas" in capsys.readouterr().err


def test_cli_precompute_compile_flag_reaches_engine(tiny_checkpoint, tmp_path, monkeypatch):
    seen = {}
    import clicklabel.segment.precompute as pre

    def fake_precompute(engine, paths, **kw):
        seen["mode"] = engine.encoder.compile_mode
        seen["precision"] = engine.precision
        return {"encoded": 0, "cached": 0, "failed": 0, "errors": [], "cancelled": False, "seconds": 0.0}

    monkeypatch.setattr(pre, "precompute", fake_precompute)
    folder = tmp_path / "f"
    folder.mkdir()
    assert main(["precompute", str(folder), "--model", "auto", "--checkpoint", str(tiny_checkpoint),
                 "--device", "cpu", "--compile", "--precision", "bf16"]) == 0
    assert seen == {"mode": "default", "precision": "bf16"}
    assert torch.is_grad_enabled()


def test_cache_filled_by_precompute_works_after_copying_elsewhere(tiny_checkpoint, tmp_path):
    """Compute on one machine, annotate on another: the cache folder is self-contained (no paths inside)."""
    import shutil

    eng = SamEngine("auto", tiny_checkpoint, device="cpu", fast=True, cache=EmbeddingCache(tmp_path / "gpu_box"))
    paths = _folder(tmp_path, ["rocket", "coffee"])
    assert precompute(eng, paths, batch=2, workers=2)["encoded"] == 2
    shutil.copytree(tmp_path / "gpu_box", tmp_path / "laptop")
    shutil.rmtree(tmp_path / "gpu_box")
    shutil.rmtree(tmp_path / "imgs")
    laptop = SamEngine("auto", tiny_checkpoint, device="cpu", fast=False, cache=EmbeddingCache(tmp_path / "laptop"))
    laptop.set_image(sample("coffee"))
    assert laptop.last_from_cache


def test_bench_jpeg_copies_stay_distinct_after_jpeg_coding(tmp_path):
    """Every copy must decode to its own pixels, else precompute skips it as cached and the rate is wrong
    (a number written as one colour collided for 153 of 1000 copies)."""
    import xxhash

    from clicklabel.bench.encoder import make_jpeg_folder, source_images
    from clicklabel.images import load_image

    paths = make_jpeg_folder(tmp_path / "j", 300, source_images(None)[:1])
    assert len({xxhash.xxh3_128_hexdigest(load_image(p).tobytes()) for p in paths}) == 300


def _shapes():
    """Images of each kind the resize meets: upsampled (landscape, portrait, tiny), downsampled, already 1024."""
    from PIL import Image

    big = np.asarray(Image.fromarray(sample("chelsea")).resize((2250, 1500), Image.BICUBIC))
    return [sample("chelsea"), sample("rocket"), np.ascontiguousarray(sample("coffee")[:, :200]),
            np.ascontiguousarray(sample("astronaut")[:37, :51]), big,
            np.ascontiguousarray(big[:1024, :700])]


def test_device_resize_matches_pil_within_one_grey_level(stock_engine):
    enc = ImageEncoder(stock_engine.sam, "cpu", device_resize=True)
    assert ImageEncoder(stock_engine.sam, "cpu", precision="bf16").device_resize is False  # only CUDA + bf16
    for img in _shapes():
        prep = enc.prepare(img)
        assert prep.pixels is img and not prep.resized or img.shape[:2] == prep.input_size
        ref = stock_engine.encoder.prepare(img)
        assert ref.resized and ref.input_size == prep.input_size and prep.original_size == img.shape[:2]
        got = enc._resize_on_device([prep])[0].numpy()
        diff = np.abs(got.astype(int) - ref.pixels.astype(int))
        assert diff.max() <= 1, img.shape
        assert (diff > 0).mean() < 1e-3, img.shape  # PIL's two rounded passes: equal on almost every pixel


def test_device_resize_features_agree_with_stock_set_image_in_batches_of_mixed_sizes(stock_engine, monkeypatch):
    import clicklabel.segment.encoder as encoder_module

    enc = ImageEncoder(stock_engine.sam, "cpu", device_resize=True)
    imgs = _shapes()
    # one image over the limit: PIL resizes it on the CPU, in the same batch as the device-resized ones
    monkeypatch.setattr(encoder_module, "DEVICE_RESIZE_MAX_PIXELS", imgs[4].shape[0] * imgs[4].shape[1] - 1)
    prepared = [enc.prepare(im) for im in imgs]
    assert [p.resized for p in prepared] == [False, False, False, False, True, True]
    feats = enc.run(prepared[:4]).numpy()
    tail = enc.run(prepared[3:4], pad_to=3).numpy()  # a short batch padded with copies of its device-resized image
    assert tail.shape[0] == 1
    np.testing.assert_array_equal(tail[0], feats[3])
    feats = np.concatenate([feats, enc.run(prepared[4:], pad_to=3).numpy()])
    for img, f in zip(imgs, feats):
        ref = _stock_features(stock_engine.sam, img)[0]
        # measured: 0 where the pixels equal PIL's, 1e-3 of the range for the downsampled image (a few pixels one
        # grey level off); a wrong resize: 2.4e-2 without antialiasing, 4e-2..0.5 with align_corners, 0.2 shifted
        assert np.abs(f - ref).max() < 5e-3 * np.abs(ref).max(), img.shape
    embs = enc.encode(imgs[:2])
    assert [e.input_size for e in embs] == [p.input_size for p in prepared[:2]]
    assert [e.original_size for e in embs] == [im.shape[:2] for im in imgs[:2]]
