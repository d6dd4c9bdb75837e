"""The image encoder in OpenVINO (fp32), the fast path of CPUs without bf16: chosen there with its reason, the same
features and masks as PyTorch's fp32 encoder, converted once per model and reused by later engines."""

import numpy as np
import pytest

from clicklabel.bench.agreement import engine_masks, fixed_prompts, ious
from clicklabel.cli import main
from clicklabel.embeddings import EmbeddingCache
from clicklabel.errors import ClickLabelError
from clicklabel.segment import make_engine, precision
from clicklabel.segment.lazy import encoder_loaded
from clicklabel.segment.precision import choose_precision

from conftest import SAMPLES, sample

pytest.importorskip("openvino", reason="the OpenVINO path needs its extra: pip install 'clicklabel[openvino]'")

AVX2_ONLY = frozenset("fpu sse2 avx avx2 fma".split())


def rel_l2(a, b) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def test_chosen_where_bf16_does_not_pay(monkeypatch):
    monkeypatch.delenv("CLICKLABEL_PRECISION", raising=False)
    monkeypatch.setattr(precision, "cpu_flags", lambda: AVX2_ONLY)
    sam = choose_precision("cpu", openvino=True)
    assert sam.precision == "openvino" and "no bf16 instructions" in sam.reason and "OpenVINO" in sam.reason
    assert choose_precision("cpu", openvino=False).precision == "fp32"  # SAM 3: not an OpenVINO encoder
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    assert choose_precision("cpu", openvino=True).precision == "bf16"  # the ViTs: bf16 autocast
    tiny = choose_precision("cpu", cpu_gain=False, openvino=True)  # TinyViT, Hiera: bf16 does not pay, OpenVINO does
    assert tiny.precision == "openvino" and "does not speed up" in tiny.reason
    assert choose_precision("cpu", fast=False, openvino=True).precision == "fp32"  # the stock encoder stays stock
    assert choose_precision("cpu", "openvino", openvino=True).reason == "asked for"
    with pytest.raises(ClickLabelError, match="on the CPU"):
        choose_precision("cuda", "openvino", openvino=True)
    with pytest.raises(ClickLabelError, match="SAM, HQ-SAM and SAM 2.1"):
        choose_precision("cpu", "openvino", openvino=False)


def test_same_features_and_masks_as_pytorch_and_converted_once(tiny_checkpoint, tiny_engine, tmp_path):
    img = sample("chelsea")
    eng = make_engine("sam", "auto", tiny_checkpoint, device="cpu", precision="openvino",
                      cache=EmbeddingCache(tmp_path / "embeddings"))
    enc = eng.ensure_encoder()
    assert enc.describe() == "OpenVINO fp32" and eng.precision == "openvino" and enc.converted_s is not None
    assert not encoder_loaded(eng.module)  # converted from the checkpoint file in a child process
    ours, fresh = eng.encode(img), tiny_engine.encode(img)
    assert ours.features.shape == fresh.features.shape and ours.input_size == fresh.input_size
    assert rel_l2(ours.features, fresh.features) < 1e-4
    prompts = fixed_prompts(*img.shape[:2])
    assert min(ious(engine_masks(tiny_engine, fresh, prompts), engine_masks(tiny_engine, ours, prompts))) >= 0.99
    assert list((tmp_path / "encoders").glob("*.xml"))  # kept beside the embeddings
    # a later engine (a new process, a new session) compiles the kept model: no conversion, the same numbers
    again = make_engine("sam", "auto", tiny_checkpoint, device="cpu", precision="openvino",
                        cache=EmbeddingCache(tmp_path / "embeddings"))
    assert again.ensure_encoder().converted_s is None
    assert not encoder_loaded(again.module)  # the kept model needs none of PyTorch's encoder weights
    same = again.encode(img).features
    assert rel_l2(same, ours.features) < 1e-5  # (the saved model compiles to the same graph up to float rounding)
    two = again.encoder.encode([img, sample("coffee")])  # a batch goes through one image at a time
    assert np.array_equal(two[0].features, same) and two[1].original_size == sample("coffee").shape[:2]


def test_weights_in_memory_are_converted_in_this_process(tiny_engine, tmp_path):
    from clicklabel.segment.sam import SamEngine

    eng = SamEngine("auto", sam=tiny_engine.sam, device="cpu", precision="openvino",
                    cache=EmbeddingCache(tmp_path / "embeddings"))
    assert eng.checkpoint_file is None and eng.ensure_encoder().converted_s is not None
    img = sample("chelsea")
    assert rel_l2(eng.encode(img).features, tiny_engine.encode(img).features) < 1e-4


def test_a_failed_conversion_is_one_clear_line(tmp_path):
    from clicklabel.segment.openvino_convert import convert_file

    bad = tmp_path / "not_a_checkpoint.pth"
    bad.write_bytes(b"nothing here")
    with pytest.raises(ClickLabelError, match="converting the image encoder for OpenVINO failed: "):
        convert_file(bad, "image_encoder", 1024, tmp_path / "m.xml", tmp_path / "m.json")
    assert not list(tmp_path.glob("*.xml"))


@pytest.mark.parametrize("model, fixture", [("hq_vit_tiny", "hq_checkpoint"), ("sam2.1_hiera_tiny", "sam2_checkpoint")])
def test_other_families_keep_their_extra_outputs_and_masks(model, fixture, request, tmp_path):
    """HQ-SAM's encoder (features + intermediate embeddings) and SAM 2.1's backbone (a dict of maps) converted."""
    img, checkpoint = sample("coffee"), request.getfixturevalue(fixture)
    ref = make_engine("sam", model, checkpoint, device="cpu", precision="fp32",
                      cache=EmbeddingCache(tmp_path / "a", disk=False))
    ov = make_engine("sam", model, checkpoint, device="cpu", precision="openvino", cache=EmbeddingCache(tmp_path / "b"))
    a, b = ref.encode(img), ov.encode(img)
    assert ov.encoder.describe() == "OpenVINO fp32" and set(a.extra) == set(b.extra) and a.extra
    assert rel_l2(b.features, a.features) < 1e-4
    assert all(rel_l2(b.extra[k], a.extra[k]) < 1e-4 for k in a.extra)
    prompts = fixed_prompts(*img.shape[:2])
    assert min(ious(engine_masks(ref, a, prompts), engine_masks(ref, b, prompts))) >= 0.99


def test_cli_says_it_and_refuses_it_where_it_does_not_run(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CLICKLABEL_CACHE", str(tmp_path / "cache"))
    argv = ["segment", str(SAMPLES / "rocket.jpg"), "--point", "60,60", "--device", "cpu", "--precision", "openvino"]
    assert main(argv + ["--model", "auto", "--checkpoint", str(tiny_checkpoint)]) == 0
    assert "encoder precision openvino: asked for" in capsys.readouterr().err
    assert main(["bench", "encoder", "--random-weights", "--device", "cpu", "--precision", "openvino"]) == 2
    err = capsys.readouterr().err
    assert "bench latency --precision openvino" in err and "Traceback" not in err


def test_pytorchs_encoder_refuses_the_openvino_name(tiny_engine):
    from clicklabel.segment.encoder import ImageEncoder

    with pytest.raises(ClickLabelError, match="OpenVINO encoder's"):
        ImageEncoder(tiny_engine.sam, "cpu", precision="openvino")
