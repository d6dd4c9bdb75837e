"""The encoder fast path agrees with stock on CPU; precompute fills the cache and resumes."""

import numpy as np
import torch

from clicklabel.cli import main
from clicklabel.embeddings import EmbeddingCache
from clicklabel.masks import mask_iou
from clicklabel.segment import Prompt, fast_encoder
from clicklabel.segment.sam import SamEngine

from conftest import SAMPLES, sample


def test_sdpa_fp32_is_exact_and_bf16_close(tiny_checkpoint, tmp_path):
    img = sample("chelsea")
    stock = SamEngine("auto", tiny_checkpoint, device="cpu", cache=EmbeddingCache(tmp_path / "a", disk=False),
                      fast=False)
    fast = SamEngine("auto", tiny_checkpoint, device="cpu", cache=EmbeddingCache(tmp_path / "b", disk=False),
                     fast=True)
    e1, e2 = stock.encode(img), fast.encode(img)
    assert np.abs(e1.features - e2.features).max() < 1e-4
    bf = SamEngine("auto", tiny_checkpoint, device="cpu", cache=EmbeddingCache(tmp_path / "c", disk=False),
                   fast=True, precision="bf16")
    e3 = bf.encode(img)
    # three different computations, not one three times: the attention each model really ran with
    assert [e.encoder.describe() for e in (stock, fast, bf)] == ["fp32", "fp32 + SDPA", "bf16 + SDPA"]
    assert [fast_encoder.is_enabled(e.sam) for e in (stock, fast, bf)] == [False, True, True]
    for eng, emb in ((stock, e1), (fast, e2), (bf, e3)):
        eng.set_embedding(emb)
    p = Prompt.make([(200, 150)])
    ref = stock.predict(p)[0].mask
    assert ref.sum() > 1000  # IoU of two empty masks is 1.0
    assert mask_iou(ref, fast.predict(p)[0].mask) >= 0.999
    assert mask_iou(ref, bf.predict(p)[0].mask) >= 0.98
    assert torch.isfinite(torch.as_tensor(e3.features)).all()


def test_precompute_cli_fills_cache_and_resumes(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CLICKLABEL_CACHE", str(tmp_path / "cache"))
    folder = tmp_path / "imgs"
    folder.mkdir()
    for n in ("rocket", "coffee", "astronaut"):
        (folder / f"{n}.jpg").write_bytes((SAMPLES / f"{n}.jpg").read_bytes())
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    args = ["precompute", str(folder), "--model", "auto", "--checkpoint", str(tiny_checkpoint), "--device", "cpu",
            "--batch", "2", "--encoder", "fast"]
    assert main(args) == 0
    assert "3 encoded, 0 already cached, 1 unreadable" in capsys.readouterr().out
    assert main(args) == 0
    assert "0 encoded, 3 already cached" in capsys.readouterr().out
    eng = SamEngine("auto", tiny_checkpoint, device="cpu", cache=EmbeddingCache.at_root(tmp_path / "cache"))
    eng.set_image(sample("rocket"))
    assert eng.last_from_cache
    # --cache: a folder of the user's choice instead of $CLICKLABEL_CACHE
    assert main(args + ["--cache", str(tmp_path / "chosen")]) == 0
    assert "3 encoded" in capsys.readouterr().out
    assert len(list((tmp_path / "chosen").rglob("*.npz"))) == 3
