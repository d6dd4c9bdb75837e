"""SAM 2.1 (hiera tiny) and HQ-SAM (vit_tiny) behind the one Engine interface, on their real architectures with
random weights built by their own packages: our decoder path against each family's stock predictor, the cache
(a cached image decodes without the encoder), boxes, refinement, propose, precompute, loading and detection."""

import json

import numpy as np
import pytest

from clicklabel.bench.latency import StockPredictor
from clicklabel.cli import main
from clicklabel.embeddings import EmbeddingCache
from clicklabel.errors import ClickLabelError, WeightsError
from clicklabel.masks import mask_iou
from clicklabel.segment import Prompt, make_engine
from clicklabel.segment.models import detect_model, load_model

from conftest import SAMPLES, TINY_ARCH, sample

PROMPTS = {
    "point": dict(points=[(200, 150)]),
    "box": dict(box=(120, 60, 330, 250)),
    "points+box": dict(points=[(200, 150), (100, 50)], labels=[1, 0], box=(120, 60, 330, 250)),
}


@pytest.fixture(scope="module", params=["sam2.1", "hq"])
def family(request, sam2_checkpoint, hq_checkpoint, tmp_path_factory):
    """(engine, stock predictor, image, checkpoint) of each family, the image encoded once by each side."""
    ck = sam2_checkpoint if request.param == "sam2.1" else hq_checkpoint
    cache = tmp_path_factory.mktemp(f"cache_{request.param}")
    eng = make_engine("sam", "auto", ck, device="cpu", cache=EmbeddingCache(cache))
    assert eng.name == request.param
    img = sample("chelsea")
    eng.set_image(img)
    stock = StockPredictor(eng)
    stock.set_image(img)
    return eng, stock, img, ck


def _stock(stock, kind, multimask, mask_input=None):
    p = PROMPTS[kind]
    kw = dict(multimask_output=multimask, mask_input=mask_input)
    if "points" in p:
        kw.update(point_coords=np.array(p["points"], dtype=float), point_labels=np.array(p.get("labels", [1])))
    if "box" in p:
        kw["box"] = np.array(p["box"], dtype=float)
    return stock.predictor.predict(**kw)


@pytest.mark.parametrize("kind", list(PROMPTS))
@pytest.mark.parametrize("multimask", [False, True])
def test_decoder_agrees_with_stock_predictor(family, kind, multimask):
    eng, stock, img, _ = family
    ours = eng.predict(Prompt.make(**PROMPTS[kind]), multimask=multimask)
    masks, scores, _ = _stock(stock, kind, multimask)
    assert len(ours) == (3 if multimask else 1)
    assert [o.score for o in ours] == sorted((o.score for o in ours), reverse=True)
    order = np.argsort(-scores, kind="stable")  # HQ-SAM's stock multimask gives the best candidate only
    for o, i in zip(ours, order):
        assert o.mask.shape == img.shape[:2]
        assert mask_iou(o.mask, masks[i]) >= 0.99
        assert o.score == pytest.approx(float(scores[i]), abs=1e-4)


def test_refinement_from_previous_mask_agrees(family):
    eng, stock, _, _ = family
    first = eng.predict(Prompt.make(**PROMPTS["point"]), multimask=True)[0]
    refined = eng.predict(Prompt.make(**PROMPTS["points+box"]), previous=first)[0]
    masks, _, _ = _stock(stock, "points+box", False, mask_input=first.logits[None])
    assert mask_iou(refined.mask, masks[0]) >= 0.99
    assert refined.logits.shape == (256, 256)


def test_boxes_in_one_batch_equal_one_at_a_time(family):
    eng, _, _, _ = family
    boxes = [(10, 10, 200, 200), (100, 80, 400, 290)]
    batch = eng.predict_boxes(boxes)
    for b, r in zip(boxes, batch):
        assert mask_iou(r.mask, eng.predict(Prompt.make(box=b))[0].mask) >= 0.999


def test_cached_image_decodes_without_the_encoder(family, monkeypatch):
    """A new engine on the same cache folder (as in a new process) decodes from the disk entry alone: the family's
    extra arrays (SAM 2.1's high-resolution features, HQ-SAM's HQ features) are in it."""
    eng, stock, img, ck = family
    again = make_engine("sam", "auto", ck, device="cpu", cache=EmbeddingCache(eng.cache.folder))
    again.set_image(img)
    assert again.encoder_builds == 0  # no image encoder was made for the cached image
    assert again.last_from_cache and again.model_id == eng.model_id
    assert set(again.embedding.extra) == set(eng.required_extras)
    masks, _, _ = _stock(stock, "point", False)
    assert mask_iou(again.predict(Prompt.make(**PROMPTS["point"]))[0].mask, masks[0]) >= 0.99


def test_propose_on_the_cached_embedding(family):
    from clicklabel.segment.propose import ProposeSettings

    eng, _, img, _ = family
    seen = []
    props = eng.propose(ProposeSettings(grid=3, pred_iou_thresh=0.0, stability_thresh=0.0, nms_thresh=1.0),
                        progress=lambda done, total: seen.append((done, total)))
    assert len(props) > 3 and seen[-1] == (1, 1)
    assert all(p.mask.shape == img.shape[:2] for p in props)
    assert [p.score for p in props] == sorted((p.score for p in props), reverse=True)
    logits, scores, rows = eng.predict_points_batch(np.array([[200.0, 150.0], [20.0, 20.0]]))
    assert scores.shape == (2, 3) and logits.shape[1:] == (3, 256, 256) and list(rows) == [0, 1]


def test_precompute_fills_the_family_arrays(family, tmp_path):
    from clicklabel.segment.precompute import precompute

    eng, _, img, ck = family
    (tmp_path / "imgs").mkdir()
    for name in ("a", "b"):  # the same pixels twice: encoded once
        (tmp_path / "imgs" / f"{name}.jpg").write_bytes((SAMPLES / "chelsea.jpg").read_bytes())
    fresh = make_engine("sam", "auto", ck, device="cpu", cache=EmbeddingCache(tmp_path / "cache"))
    stats = precompute(fresh, sorted((tmp_path / "imgs").iterdir()), batch=1, workers=1)
    assert (stats["encoded"], stats["cached"], stats["failed"]) == (1, 1, 0)
    got = EmbeddingCache(tmp_path / "cache").get(fresh.embedding_key(img))
    assert set(got.extra) == set(eng.required_extras)
    for k, v in {"features": eng.embedding.features, **eng.embedding.extra}.items():  # the set_image encoding
        np.testing.assert_allclose(got.features if k == "features" else got.extra[k], v, atol=2e-2, rtol=2e-2)


def test_detect_model_reads_family_and_size(sam2_checkpoint, hq_checkpoint, vit_b_checkpoint, tiny_checkpoint):
    import torch
    from segment_anything_hq import sam_model_registry as hq_registry

    from clicklabel.segment.sam2 import Sam2Engine
    from clicklabel.weights import read_state_dict

    assert detect_model(read_state_dict(sam2_checkpoint)) == ("sam2.1", "sam2.1_hiera_tiny")
    assert detect_model(read_state_dict(hq_checkpoint)) == ("hq", "hq_vit_tiny")
    assert detect_model(read_state_dict(vit_b_checkpoint)) == ("sam", "vit_b")
    assert detect_model(read_state_dict(tiny_checkpoint)) == ("sam", "vit_custom_d64x2h2")
    assert TINY_ARCH[0] == 64
    with torch.device("meta"):  # the other ViT sizes without memory
        for size in ("vit_b", "vit_l", "vit_h"):
            assert detect_model(hq_registry[size]().state_dict()) == ("hq", f"hq_{size}")
    assert detect_model(Sam2Engine.build_model("sam2.1_hiera_small").state_dict()) == ("sam2.1", "sam2.1_hiera_small")
    sd = read_state_dict(sam2_checkpoint)
    with pytest.raises(WeightsError, match="SAM 2.0"):
        detect_model({k: v for k, v in sd.items() if k != "no_obj_embed_spatial"})
    hq = read_state_dict(hq_checkpoint)
    with pytest.raises(WeightsError, match="MobileSAM"):
        detect_model({k: v for k, v in hq.items() if not k.startswith("mask_decoder.hf_")})


def test_wrong_model_or_family_is_one_clear_error(sam2_checkpoint, hq_checkpoint):
    from clicklabel.segment.hq import HqEngine

    with pytest.raises(WeightsError, match="holds a sam2.1_hiera_tiny model, not hq_vit_tiny"):
        load_model("hq_vit_tiny", sam2_checkpoint)
    with pytest.raises(WeightsError, match="holds a SAM 2.1 model"):
        HqEngine("auto", sam2_checkpoint, device="cpu")
    with pytest.raises(ClickLabelError, match="HQ-SAM model"):
        HqEngine("vit_b", device="cpu", download=False)


def test_missing_extra_is_named(monkeypatch, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "sam2", None)
    monkeypatch.setitem(sys.modules, "segment_anything_hq", None)
    with pytest.raises(ClickLabelError, match=r"pip install 'clicklabel\[sam2\]'"):
        make_engine("sam2.1_hiera_tiny", download=False)
    assert main(["segment", str(SAMPLES / "chelsea.jpg"), "--point", "5,5", "--model", "hq_vit_tiny"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "HQ-SAM models need the hq extra" in err[0] and "clicklabel[hq]" in err[0]
    assert main(["weights", "list"]) == 0
    assert "needs [hq]" in capsys.readouterr().out


@pytest.mark.parametrize("which", ["sam2.1", "hq"])
def test_cli_segment_auto_recognises_the_model_and_reuses_the_cache(which, sam2_checkpoint, hq_checkpoint,
                                                                    monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("CLICKLABEL_CACHE", str(tmp_path / "cache"))
    ck, name = (sam2_checkpoint, "sam2.1_hiera_tiny") if which == "sam2.1" else (hq_checkpoint, "hq_vit_tiny")
    args = ["segment", str(SAMPLES / "chelsea.jpg"), "--point", "200,150", "--model", "auto", "--checkpoint",
            str(ck), "--out", str(tmp_path / "m.png")]
    runs = []
    for _ in range(2):
        assert main(args) == 0
        out, err = capsys.readouterr()
        assert f"recognised {name}" in err
        runs.append(json.loads(out))
    assert [r["model"] for r in runs] == [name, name] and runs[0]["engine"] == which
    assert [r["embedding_cached"] for r in runs] == [False, True]
    assert runs[1]["area"] == runs[0]["area"] or abs(runs[1]["area"] - runs[0]["area"]) < 0.01 * runs[0]["area"]


def test_bench_latency_prints_stock_and_ours(hq_checkpoint, capsys, monkeypatch):
    """The bench's figures checked independently: its encoder ran exactly warm-up + pairs times (a spy), and the
    agreement it reports equals the IoU this test computes itself from stock's and our engine's masks."""
    from clicklabel.bench.agreement import fixed_prompts
    from clicklabel.bench.harness import sample_image
    from clicklabel.bench.latency import bench_latency
    from clicklabel.segment.encoder import ImageEncoder

    calls = []
    real = ImageEncoder.encode
    monkeypatch.setattr(ImageEncoder, "encode", lambda self, images: calls.append(len(images)) or real(self, images))
    res = bench_latency("hq_vit_tiny", str(hq_checkpoint), device="cpu", repeats=2, pairs=2)
    text = capsys.readouterr().out
    assert calls == [1, 1, 1]  # one warm-up and two timed pairs: our side of the interleaved encoder rows
    assert "stock HQ-SAM SamPredictor ms" in text and "pairs" in text and "load average" in text
    rows = {r.split("|")[1].strip(): r for r in text.splitlines() if r.startswith("| ")}
    assert {"embedding from our cache, new process (first image)",
            "embedding from our cache, disk -> device (next images)"} <= set(rows)
    assert res["cached_warm_ms"] > 0 and res["cached_load_ms"] > 0
    assert len(res["encoder_pair_ratios"]) == 2 and res["encoder_ratio"] > 0
    # the agreement recomputed here: stock's own predictor and a fresh engine on the same weights and image
    img = sample_image()
    eng = make_engine("sam", "hq_vit_tiny", hq_checkpoint, device="cpu", cache=EmbeddingCache(disk=False))
    eng.set_image(img)
    stock = StockPredictor(eng)
    stock.set_image(img)
    mine = [mask_iou(stock.mask(p), eng.predict(p)[0].mask) for p in fixed_prompts(*img.shape[:2])]
    assert res["ious_vs_stock"] == pytest.approx(mine, abs=1e-6)
    assert f"min {min(mine):.5f}" in text and min(mine) >= 0.99  # fp32 (the suite's precision): stock's arithmetic


def test_other_benchmarks_name_the_family_they_measure(capsys):
    pytest.importorskip("sam2")
    assert main(["bench", "encoder", "--model", "sam2.1_hiera_tiny", "--random-weights"]) == 2
    assert "measures SAM models" in capsys.readouterr().err


def test_cpu_default_is_the_fastest_model_whose_weights_are_here(monkeypatch, tmp_path):
    from clicklabel import weights
    from clicklabel.segment.models import suggest_model

    monkeypatch.setenv("CLICKLABEL_WEIGHTS", str(tmp_path))
    assert suggest_model("cpu") is None  # nothing here: the caller keeps its default
    for name in ("vit_b", "sam2.1_hiera_tiny", "hq_vit_tiny"):
        with open(weights.checkpoint_path(name), "wb") as f:
            f.truncate(weights.REGISTRY[name].size)  # sparse: the right size, no disk used
    s = suggest_model("cpu")
    fastest = min(("vit_b", "sam2.1_hiera_tiny", "hq_vit_tiny"), key=lambda n: weights.REGISTRY[n].cpu_s)
    assert s.model == fastest and "no GPU" in s.reason and fastest in s.reason and "vit_b" in s.reason
    weights.checkpoint_path(fastest).unlink()
    assert suggest_model("cpu").model != fastest


def test_sam2_builds_inside_a_host_with_its_own_hydra(tmp_path):
    """A host program that set up Hydra itself keeps it: the model is built from the packaged config without
    Hydra's global state (sam2's own build_sam2 cannot find its configs then)."""
    pytest.importorskip("sam2")
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from clicklabel.segment.sam2 import Sam2Engine

    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(tmp_path), version_base="1.2"):
            model = Sam2Engine.build_model("sam2.1_hiera_tiny")
            assert str(tmp_path) in [src.path for src in GlobalHydra.instance().config_loader().get_sources()]
        assert model.sam_mask_decoder.dynamic_multimask_via_stability  # build_sam2's post-processing overrides
    finally:
        from hydra import initialize_config_module

        GlobalHydra.instance().clear()
        initialize_config_module("sam2", version_base="1.2")  # as importing sam2 left it
