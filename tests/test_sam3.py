"""SAM 3 (tiny random configs, built by transformers' own classes): our cached path against Sam3Model + Sam3Processor,
the tracker against Sam3TrackerModel.forward, the caches, and the weights handling."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("transformers.models.sam3")


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


@pytest.fixture(scope="session")
def sam3_folder(sam3_checkpoint):
    return sam3_checkpoint


@pytest.fixture(scope="session")
def sam3_engine(sam3_folder):
    from clicklabel.embeddings import EmbeddingCache
    from clicklabel.segment import make_engine

    return make_engine("sam", "auto", checkpoint=sam3_folder, device="cpu", cache=EmbeddingCache(disk=False))


@pytest.fixture(scope="session")
def image():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (90, 130, 3), dtype=np.uint8)
    img[20:60, 30:80] = (230, 40, 40)
    return img


def stock(pair, image, text=None, boxes=None, threshold=0.0):
    """transformers' own pipeline: Sam3Processor -> Sam3Model -> post_process_instance_segmentation."""
    import torch

    kwargs = {"input_boxes": [boxes], "input_boxes_labels": [[1] * len(boxes)]} if boxes else {}
    inputs = pair.processor(images=image, text=text, return_tensors="pt", **kwargs)
    with torch.inference_mode():
        out = pair.detector(**inputs)
    res = pair.processor.post_process_instance_segmentation(out, threshold=threshold, mask_threshold=0.5,
                                                            target_sizes=[image.shape[:2]])[0]
    order = np.argsort(-res["scores"].numpy(), kind="stable")
    return [(float(res["scores"][i]), res["masks"][i].bool().numpy()) for i in order]


def test_auto_recognises_sam3_and_registry(sam3_engine):
    from clicklabel.weights import REGISTRY

    assert sam3_engine.name == "sam3" and sam3_engine.model == "sam3"
    assert sam3_engine.model_id.startswith("sam3-")
    ck = REGISTRY["sam3"]
    assert ck.gated and ck.licence == "SAM License"


@pytest.mark.parametrize("prompt", ["text", "exemplar", "both"])
def test_concepts_agree_with_stock(sam3_engine, image, prompt):
    text = None if prompt == "exemplar" else "red square"
    boxes = None if prompt == "text" else [[30.0, 20.0, 80.0, 60.0]]
    sam3_engine.set_image(image)
    ours = sam3_engine.find(text, exemplars=boxes or (), threshold=0.0)
    theirs = stock(sam3_engine.pair, image, text, boxes)
    assert len(ours) == len(theirs) > 0
    for (s1, m1), (s2, m2) in zip(ours, theirs):
        assert abs(s1 - s2) < 1e-4
        assert iou(m1, m2) >= 0.99


def test_cached_features_give_the_same_masks(sam3_folder, image, tmp_path):
    from clicklabel.embeddings import EmbeddingCache
    from clicklabel.segment import make_engine
    from clicklabel.segment.base import Prompt

    cache = EmbeddingCache(tmp_path / "emb")
    fresh = make_engine("sam", "auto", checkpoint=sam3_folder, device="cpu", cache=cache)
    fresh.set_image(image)
    assert not fresh.last_from_cache
    a = fresh.find("cat", threshold=0.0)
    pa = fresh.predict(Prompt.make([(50, 40)]))[0].mask
    assert fresh.text_encodings == 1
    fresh.find("cat", threshold=0.0)
    assert fresh.text_encodings == 1  # the phrase came from the text cache
    again = make_engine("sam", "auto", checkpoint=sam3_folder, device="cpu", cache=EmbeddingCache(tmp_path / "emb"))
    again.set_image(image)
    assert again.last_from_cache  # from disk (float16)
    b = again.find("cat", threshold=0.0)
    assert len(a) == len(b)
    for (_, m1), (_, m2) in zip(a, b):
        assert iou(m1, m2) >= 0.99
    assert iou(pa, again.predict(Prompt.make([(50, 40)]))[0].mask) >= 0.99


def test_tracker_agrees_with_stock_forward(sam3_engine, image):
    import torch
    import torch.nn.functional as F

    from clicklabel.segment.base import Prompt

    trk = sam3_engine.pair.tracker
    sam3_engine.set_image(image)
    h, w = image.shape[:2]
    s = sam3_engine.pair.image_size
    px = sam3_engine.pair.processor.image_processor(images=image, return_tensors="pt")["pixel_values"]
    for prompt in (Prompt.make([(50, 40), (100, 70)], [1, 0]), Prompt.make(box=(30, 20, 80, 60))):
        ours = sam3_engine.predict(prompt, multimask=False)[0]
        kw = {}
        if prompt.points:
            kw["input_points"] = torch.tensor([[[[x * s / w, y * s / h] for x, y in prompt.points]]])
            kw["input_labels"] = torch.tensor([[list(prompt.labels)]])
        if prompt.box:
            x0, y0, x1, y1 = prompt.box
            kw["input_boxes"] = torch.tensor([[[x0 * s / w, y0 * s / h, x1 * s / w, y1 * s / h]]])
        with torch.inference_mode():
            out = trk(pixel_values=px, multimask_output=False, **kw)
        mask = F.interpolate(out.pred_masks[0], (h, w), mode="bilinear", align_corners=False)[0, 0] > 0
        assert iou(ours.mask, mask.numpy()) >= 0.99
        assert abs(ours.score - float(out.iou_scores[0, 0, 0])) < 1e-4
        refined = sam3_engine.predict(prompt.add_point(60, 30), previous=ours)
        assert refined[0].mask.shape == (h, w)


def test_candidates_and_boxes(sam3_engine, image):
    from clicklabel.segment.base import Prompt

    sam3_engine.set_image(image)
    three = sam3_engine.predict(Prompt.make([(50, 40)]), multimask=True)
    assert len(three) == 3 and three[0].score >= three[-1].score
    masks = sam3_engine.predict_boxes([(30, 20, 80, 60), (0, 0, 40, 40)])
    assert len(masks) == 2 and masks[0].mask.shape == image.shape[:2]


def test_bad_checkpoints_say_so_in_one_line(tmp_path, sam3_folder):
    from clicklabel.errors import WeightsError
    from clicklabel.segment.models import load_model

    pt = tmp_path / "sam3.pt"
    pt.write_bytes(b"not really")
    with pytest.raises(WeightsError, match="Hugging Face layout"):
        load_model("sam3", pt)
    with pytest.raises(WeightsError, match="gated"):
        load_model("sam3", None, download=False)
    broken = tmp_path / "broken"
    broken.mkdir()
    for f in sam3_folder.iterdir():
        (broken / f.name).write_bytes(f.read_bytes()[:200] if f.name == "model.safetensors" else f.read_bytes())
    with pytest.raises(WeightsError, match="truncated"):
        load_model("auto", broken)


def test_download_without_access_is_one_line(monkeypatch):
    from huggingface_hub.errors import GatedRepoError

    import clicklabel.weights_hub as hub
    from clicklabel import weights
    from clicklabel.errors import WeightsError

    def refuse(*a, **k):
        from types import SimpleNamespace

        raise GatedRepoError("401 gated", response=SimpleNamespace(
            headers={}, status_code=401, request=SimpleNamespace(url="https://huggingface.co/facebook/sam3")))

    monkeypatch.setattr("huggingface_hub.snapshot_download", refuse)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(WeightsError) as exc:
        weights.download("sam3")
    assert "request access" in str(exc.value) and "HF_TOKEN" in str(exc.value)
    assert hub.verify_repo(weights.REGISTRY["sam3"], weights.checkpoint_path("sam3"))[0] is False


def test_bench_latency_prints_stock_and_ours(capsys, sam3_folder):
    from clicklabel.cli import main

    assert main(["bench", "latency", "--model", "sam3", "--checkpoint", str(sam3_folder), "--device", "cpu",
                 "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert "stock transformers ms" in out and "clicklabel ms" in out
    for row in ("vision encoder", "text encoder, per concept", "detector + masks", "tracker decoder, one click"):
        assert row in out
    assert "min 1.00000" in out or "min 0.99" in out


def test_concepts_through_the_server_half(sam3_folder, image, tmp_path):
    """``serve``'s concept route (``remote_concepts.answer``) and the client's ``remote_find``, through JSON: the
    same instances as the local engine; a bad body is one line."""
    import json as json_module
    from types import SimpleNamespace

    from clicklabel.embeddings import EmbeddingCache
    from clicklabel.errors import ClickLabelError
    from clicklabel.segment import make_engine
    from clicklabel.segment.remote_concepts import answer, remote_find

    server = make_engine("sam3", checkpoint=sam3_folder, device="cpu", cache=EmbeddingCache(tmp_path / "srv"))
    server.set_image(image)  # the upload: the server's cache has the image's features

    class Loop:
        url = "loopback"
        sent = []

        def request(self, method, path, json=None):
            key = path.rsplit("/", 1)[-1]
            self.sent.append(json_module.dumps(json))
            body = answer(server, server.cache.get(key), json_module.loads(json_module.dumps(json)))
            return SimpleNamespace(status_code=200, json=lambda: json_module.loads(json_module.dumps(body)))

    local = make_engine("sam3", checkpoint=sam3_folder, device="cpu", cache=EmbeddingCache(disk=False))
    local.set_image(image)
    want = local.find("cat", [(30, 20, 80, 60)], threshold=0.0)
    local.find = remote_find(local, Loop())
    got = local.find("cat", [(30, 20, 80, 60)], threshold=0.0)
    assert len(got) == len(want) > 0
    assert all(abs(a[0] - b[0]) < 1e-4 and iou(a[1], b[1]) >= 0.99 for a, b in zip(got, want))
    assert "cat" in Loop.sent[0] and len(Loop.sent[0]) < 500  # the concept goes as text, not pixels
    for bad in ({"concept": 3}, {"concept": "cat", "threshold": 2}, {"concept": "cat", "exemplars": [[1, 2]]},
                ["cat"]):
        with pytest.raises(ClickLabelError):
            answer(server, server.cache.get(server.current_key), bad)


def test_downloaded_folder_is_found_and_listed(monkeypatch, tmp_path, sam3_folder, capsys):
    """`weights download sam3` (huggingface_hub, stubbed to copy a local folder) puts the repository in the weights
    folder; `--model sam3` then loads it without --checkpoint, and `weights list` / `verify` see it."""
    import shutil

    from clicklabel import weights
    from clicklabel.cli import main
    from clicklabel.segment.models import load_model

    monkeypatch.setenv("CLICKLABEL_WEIGHTS", str(tmp_path / "w"))
    calls = []

    def fake_snapshot(repo_id, local_dir, allow_patterns, token):
        calls.append((repo_id, token))
        shutil.copytree(sam3_folder, local_dir, dirs_exist_ok=True)

    monkeypatch.setattr("huggingface_hub.snapshot_download", fake_snapshot)
    monkeypatch.setenv("HF_TOKEN", "hf_test")
    assert main(["weights", "download", "sam3"]) == 0
    assert calls == [("facebook/sam3", "hf_test")]
    assert load_model("sam3", None, download=False).path == weights.checkpoint_path("sam3") / "model.safetensors"
    assert main(["weights", "verify"]) == 0 and "sam3: ok" in capsys.readouterr().out
    main(["weights", "list"])
    assert any(line.startswith("| sam3 ") and "present" in line for line in capsys.readouterr().out.splitlines())
