"""The encoder's precision chosen for the hardware (precision.py), the image encoder loaded only when an image must
be encoded (lazy.py), the cache's stored precision, and the per-machine speed record the model suggestion reads."""

import json

import numpy as np
import pytest

from clicklabel.bench.agreement import engine_masks, fixed_prompts, ious
from clicklabel.cli import main
from clicklabel.embeddings import EmbeddingCache, read_embedding
from clicklabel.masks import mask_iou
from clicklabel.segment import make_engine, precision, speed
from clicklabel.segment.lazy import encoder_loaded
from clicklabel.segment.precision import choose_precision, cpu_bf16

from conftest import SAMPLES, sample

XEON_BF16 = frozenset("fpu sse2 avx2 avx512f avx512bw avx512_bf16".split())
AVX2_ONLY = frozenset("fpu sse2 avx avx2 fma".split())


@pytest.fixture
def auto_precision(monkeypatch):
    """The suite pins fp32 (conftest); these tests exercise the automatic choice."""
    monkeypatch.delenv("CLICKLABEL_PRECISION", raising=False)


def test_bf16_hardware_is_read_from_the_cpu_flags():
    assert cpu_bf16(XEON_BF16, {}) == (True, "the CPU has avx512_bf16")
    assert cpu_bf16(frozenset({"amx_bf16", "avx512_bf16"}), {})[0]
    ok, why = cpu_bf16(AVX2_ONLY, {})
    assert not ok and "no bf16 instructions" in why
    ok, why = cpu_bf16(XEON_BF16, {"ONEDNN_MAX_CPU_ISA": "AVX2"})  # oneDNN told to stay below bf16
    assert not ok and "ONEDNN_MAX_CPU_ISA=avx2" in why


def test_cpu_choice_follows_the_hardware_with_the_reason(monkeypatch, auto_precision):
    monkeypatch.setattr(precision, "cpu_flags", lambda: AVX2_ONLY)
    off = choose_precision("cpu")
    assert off.precision == "fp32" and "no bf16 instructions" in off.reason
    assert off.line().startswith("encoder precision fp32: ") and "\n" not in off.line()
    forced = choose_precision("cpu", "bf16")
    assert forced.precision == "bf16" and "emulated" in forced.reason
    monkeypatch.setattr(precision, "cpu_flags", lambda: XEON_BF16)
    on = choose_precision("cpu")
    assert on.precision == "bf16" and "avx512_bf16" in on.reason
    assert choose_precision("cpu", "fp32").precision == "fp32"
    assert choose_precision("cpu", fast=False).precision == "fp32"  # the stock encoder stays stock
    monkeypatch.setenv("CLICKLABEL_PRECISION", "fp32")
    assert choose_precision("cpu").precision == "fp32"


def test_engine_and_cli_say_the_precision(monkeypatch, auto_precision, tiny_checkpoint, tmp_path, capsys):
    from clicklabel.segment import openvino_encoder

    monkeypatch.setattr(precision, "cpu_flags", lambda: AVX2_ONLY)
    monkeypatch.setattr(openvino_encoder, "openvino_missing", lambda: "OpenVINO is not installed")
    eng = make_engine("sam", "auto", tiny_checkpoint, device="cpu", cache=EmbeddingCache(tmp_path / "c"))
    assert eng.precision == "fp32" and eng.encoder.precision == "fp32" and eng.encoder.describe() == "fp32 + SDPA"
    assert "clicklabel[openvino]" in eng.precision_choice.reason
    monkeypatch.setattr(precision, "cpu_flags", lambda: XEON_BF16)
    eng = make_engine("sam", "auto", tiny_checkpoint, device="cpu", cache=EmbeddingCache(tmp_path / "c"))
    assert eng.precision == "bf16" and eng.encoder.describe() == "bf16 + SDPA"
    monkeypatch.setenv("CLICKLABEL_CACHE", str(tmp_path / "cli"))
    assert main(["segment", str(SAMPLES / "coffee.jpg"), "--point", "50,50", "--model", "auto", "--checkpoint",
                 str(tiny_checkpoint), "--device", "cpu", "--precision", "fp32"]) == 0
    err = capsys.readouterr().err
    assert "encoder precision fp32: asked for" in err


def test_a_cached_image_in_a_new_engine_builds_no_encoder(vit_b_checkpoint, vit_b_engine, tmp_path):
    """What a second `clicklabel segment` does: the engine comes up with the image encoder's weights unloaded (meta),
    decodes the cached image, and builds the encoder only when an uncached image arrives."""
    img = sample("coffee")
    again = make_engine("sam", "vit_b", vit_b_checkpoint, device="cpu", cache=EmbeddingCache(vit_b_engine.cache.folder))
    assert not encoder_loaded(again.module) and again.encoder_builds == 0
    again.set_image(img)
    assert again.last_from_cache and again.encoder_builds == 0 and not encoder_loaded(again.module)
    mask = again.predict(fixed_prompts(*img.shape[:2])[0])[0].mask
    assert mask.shape == img.shape[:2] and again.encoder_builds == 0
    vit_b_engine.set_image(img)  # the fresh (float32) embedding; the cache holds it in float16
    assert mask_iou(mask, vit_b_engine.predict(fixed_prompts(*img.shape[:2])[0])[0].mask) >= 0.999
    # the encoder comes when asked for, with the checkpoint's weights (the same as the eager engine's)
    enc = again.ensure_encoder()
    assert again.encoder_builds == 1 and encoder_loaded(again.module) and enc is again.encoder
    for (name, a), b in zip(again.module.image_encoder.state_dict().items(),
                            vit_b_engine.sam.image_encoder.state_dict().values()):
        assert torch_equal(a, b), name


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_cli_segment_twice_second_run_builds_no_encoder(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    from clicklabel.segment.cached import CachedEngine

    built = []
    real = CachedEngine.encoder.fget
    monkeypatch.setattr(CachedEngine, "encoder", property(
        lambda self: built.append(self._encoder is None) or real(self), CachedEngine.encoder.fset))
    monkeypatch.setenv("CLICKLABEL_CACHE", str(tmp_path / "cache"))
    argv = ["segment", str(SAMPLES / "rocket.jpg"), "--point", "60,60", "--model", "auto", "--checkpoint",
            str(tiny_checkpoint), "--device", "cpu"]
    runs = []
    for _ in range(2):
        built.clear()
        assert main(argv) == 0
        runs.append((json.loads(capsys.readouterr().out.strip().splitlines()[-1]), any(built)))
    assert [r["embedding_cached"] for r, _ in runs] == [False, True]
    assert [b for _, b in runs] == [True, False]  # the second run never touched the encoder
    assert runs[0][0]["bbox"] == runs[1][0]["bbox"]


@pytest.mark.parametrize("stored", ["float16", "float32"])
def test_cached_embedding_masks_against_fresh(tiny_engine, tmp_path, stored):
    """float32 entries give exactly the fresh masks; float16 ones are measured (and agree here)."""
    img = sample("chelsea")
    fresh = tiny_engine.encode(img)
    cache = EmbeddingCache(tmp_path, precision=stored)
    cache.put("k", fresh)
    back = read_embedding(cache.path("k"))
    prompts = fixed_prompts(*img.shape[:2])
    agree = ious(engine_masks(tiny_engine, fresh, prompts), engine_masks(tiny_engine, back, prompts))
    if stored == "float32":
        assert np.array_equal(back.features, fresh.features) and agree == [1.0] * len(prompts)
    else:
        assert back.features.dtype == np.float32 and min(agree) >= 0.99


def test_unknown_cache_precision_is_one_clear_error(tmp_path):
    from clicklabel.errors import ClickLabelError

    with pytest.raises(ClickLabelError, match="cache precision"):
        EmbeddingCache(tmp_path, precision="int8")


def test_suggestion_uses_speeds_measured_here(monkeypatch, tmp_path):
    from clicklabel import weights
    from clicklabel.segment.models import auto_cpu_precision, suggest_model

    monkeypatch.setenv("CLICKLABEL_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("CLICKLABEL_CACHE", str(tmp_path / "c"))
    names = ("vit_b", "sam2.1_hiera_tiny", "hq_vit_tiny")
    for name in names:
        with open(weights.checkpoint_path(name), "wb") as f:
            f.truncate(weights.REGISTRY[name].size)
    prec = choose_precision("cpu").precision  # (the suite pins fp32: every model's choice)
    assert {auto_cpu_precision(weights.REGISTRY[n]) for n in names} == {prec}
    ref_fastest = min(names, key=lambda n: weights.REGISTRY[n].cpu_s)
    slowest = max(names, key=lambda n: weights.REGISTRY[n].cpu_s)
    assert suggest_model("cpu").model == ref_fastest and "estimated" in suggest_model("cpu").reason
    # measured here: the reference ranking's slowest model is the fastest on this machine
    for name in names:
        speed.record(name, "cpu", prec, 0.5 if name == slowest else 5.0)
    s = suggest_model("cpu")
    assert s.model == slowest and "measured here" in s.reason
    assert speed.measured("cpu", prec)[slowest] == 0.5
    speed.record_path().write_text("{broken")  # a damaged record is ignored, then rewritten
    assert speed.measured("cpu", prec) == {}
    speed.record("vit_b", "cpu", prec, 1.0)
    assert speed.measured("cpu", prec) == {"vit_b": 1.0}


def test_going_back_to_a_recent_image_reuses_its_device_state(tiny_checkpoint, tmp_path, monkeypatch):
    """The last images' decoder states stay on the device: no disk read, no copy, no preparation on the way back."""
    eng = make_engine("sam", "auto", tiny_checkpoint, device="cpu", cache=EmbeddingCache(tmp_path))
    prepared = []
    real = type(eng)._prepare_state
    monkeypatch.setattr(type(eng), "_prepare_state", lambda self, emb: prepared.append(1) or real(self, emb))
    a, b = sample("chelsea"), sample("rocket")
    eng.set_image(a)
    first = eng.predict(fixed_prompts(*a.shape[:2])[0])[0].mask
    eng.set_image(b)
    eng.cache.clear_memory()
    eng.set_image(a)
    assert len(prepared) == 2 and eng.last_from_cache
    assert np.array_equal(eng.predict(fixed_prompts(*a.shape[:2])[0])[0].mask, first)
    for name in ("coffee", "astronaut", "rocket", "chelsea", "coffee"):
        eng.set_image(sample(name))
    assert len(eng._states) == eng.STATES_KEPT


def test_bf16_encoder_runs_the_neck_in_fp32(tiny_checkpoint):
    import torch

    from clicklabel.segment.encoder import ImageEncoder

    eng = make_engine("sam", "auto", tiny_checkpoint, device="cpu", cache=EmbeddingCache(disk=False))
    eng.ensure_encoder()  # the lazily loaded model's encoder weights in place
    enc = ImageEncoder(eng.sam, "cpu", precision="bf16")
    assert "forward" in eng.sam.image_encoder.neck.__dict__
    x = torch.randn(1, 3, enc.size, enc.size)
    with torch.inference_mode():
        out = enc.forward(x)
        ref = ImageEncoder(eng.sam, "cpu", precision="fp32").forward(x)
    assert out.dtype == torch.float32  # the neck's output, computed in fp32 from the bf16 trunk
    rel = float((out - ref).norm() / ref.norm())
    assert 0 < rel < 0.05
