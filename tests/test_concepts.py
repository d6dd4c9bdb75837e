"""Concept proposals: SAM 3 (tiny random weights) and the multimodal model's grounding (loopback server), into COCO
files and projects, duplicates across concepts, the class check and the review order."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from clicklabel.cli import main

from lmm_server import FakeLMM


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture()
def image_file(tmp_path):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, (80, 120, 3), dtype=np.uint8)
    img[10:50, 20:70] = (220, 30, 30)
    path = tmp_path / "img.png"
    Image.fromarray(img).save(path)
    return path


def categories(path):
    doc = json.loads(path.read_text())
    return [c["name"] for c in doc["categories"]], doc["annotations"]


def test_propose_concepts_to_coco(capsys, tmp_path, image_file, sam3_checkpoint):
    out = tmp_path / "f.json"
    code, stdout, err = run(capsys, "propose", image_file, "--concepts", "cat, dog,cat", "--model", "sam3",
                            "--checkpoint", sam3_checkpoint, "--device", "cpu", "--threshold", "0.01", "--out", out)
    assert code == 0, err
    names, anns = categories(out)
    assert names == ["cat", "dog"]
    assert all(a["category_id"] in (1, 2) and a["area"] > 0 for a in anns)
    assert "written to" in stdout


def test_exemplar_and_bad_inputs_are_one_line(capsys, tmp_path, image_file, sam3_checkpoint, tiny_checkpoint):
    out = tmp_path / "e.json"
    code, _, err = run(capsys, "propose", image_file, "--concepts", "mug", "--exemplar", "20,10,70,50", "--model",
                       "sam3", "--checkpoint", sam3_checkpoint, "--device", "cpu", "--threshold", "0.01", "--out", out)
    assert code == 0, err
    assert categories(out)[0] == ["mug"]
    for argv, message in (
        (["--concepts", "mug", "--exemplar", "1,2,3"], "four numbers"),
        (["--concepts", "mug", "--exemplar", "0,0,500,50"], "outside"),
        (["--exemplar", "20,10,70,50"], "name the class"),
        (["--concepts", " , "], "no concepts"),
    ):
        code, stdout, err = run(capsys, "propose", image_file, *argv, "--model", "sam3", "--checkpoint",
                                sam3_checkpoint, "--device", "cpu", "--out", tmp_path / "x.json")
        assert code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    code, _, err = run(capsys, "propose", image_file, "--concepts", "cat", "--model", "auto", "--checkpoint",
                       tiny_checkpoint, "--device", "cpu", "--out", tmp_path / "x.json")
    assert code == 2 and "--grounding lmm" in err
    assert not (tmp_path / "x.json").exists()


def _grounding_answer(body, image):
    h, w = image.shape[:2]
    return {"objects": [
        {"concept": "cat", "box": [0.15 * w, 0.1 * h, 0.6 * w, 0.6 * h], "confidence": 0.9},
        {"concept": "dog", "box": [0.65 * w, 0.55 * h, 0.95 * w, 0.95 * h], "confidence": 0.8},
        {"concept": "dog", "box": [math.nan, 1, 5, 5], "confidence": 0.5},
        {"concept": "cat", "box": [-50, 0, w + 80, h], "confidence": 0.5},
        {"concept": "cat", "bbox": [1, 2, 3, 4]},
        {"concept": "cat", "box": [1, 2, "3", 4], "confidence": 0.5},
        {"concept": "horse", "box": [1, 2, 30, 40], "confidence": 0.5},
        "not an object",
    ]}


def test_grounding_lmm_one_mask_per_box_and_refusals(capsys, tmp_path, image_file, tiny_checkpoint, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    out = tmp_path / "g.json"
    with FakeLMM(answer=_grounding_answer) as lmm:
        monkeypatch.setenv("OPENAI_BASE_URL", lmm.url)
        code, stdout, err = run(capsys, "propose", image_file, "--concepts", "cat,dog", "--grounding", "lmm",
                                "--lmm", "qwen2.5-vl", "--model", "auto", "--checkpoint", tiny_checkpoint,
                                "--device", "cpu", "--out", out)
        assert code == 0, err
        assert len(lmm.requests) == 1
        schema = lmm.requests[0]["response_format"]["json_schema"]["schema"]
        assert schema["properties"]["objects"]["items"]["properties"]["concept"]["enum"] == ["cat", "dog"]
    names, anns = categories(out)
    assert names == ["cat", "dog"]
    assert sorted(a["category_id"] for a in anns) == [1, 2]  # one mask per valid box
    refused = [line for line in stdout.splitlines() if line.startswith("refused:")]
    assert len(refused) == 6 and "Traceback" not in err
    text = "\n".join(refused)
    for reason in ("not finite", "outside the", "\"concept\" and \"box\"", "not four numbers", "not asked for"):
        assert reason in text


def test_grounding_answers_that_are_not_json(capsys, tmp_path, image_file, tiny_checkpoint, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    with FakeLMM(answer=lambda body, image: "no boxes today") as lmm:
        monkeypatch.setenv("OPENAI_BASE_URL", lmm.url)
        code, stdout, err = run(capsys, "propose", image_file, "--concepts", "cat", "--grounding", "lmm", "--model",
                                "auto", "--checkpoint", tiny_checkpoint, "--device", "cpu",
                                "--out", tmp_path / "n.json")
    assert code == 0 and "refused: the answer is not" in stdout and "0 instances" in stdout
    code, stdout, err = run(capsys, "propose", image_file, "--concepts", "cat,dog", "--grounding", "lmm", "--lmm",
                            "gpt-4o-mini", "--dry-run", "--model", "auto", "--checkpoint", tiny_checkpoint)
    assert code == 0 and "1 requests to gpt-4o-mini" in stdout and "$" in stdout


def test_duplicates_across_concepts_keep_both_names():
    from clicklabel.segment.concepts import ConceptInstance, resolve_duplicates

    a = np.zeros((20, 20), bool)
    a[2:10, 2:10] = True
    b = np.zeros((20, 20), bool)
    b[12:18, 12:18] = True
    kept = resolve_duplicates([ConceptInstance("cat", 0.6, a), ConceptInstance("kitten", 0.9, a.copy()),
                               ConceptInstance("cat", 0.5, b), ConceptInstance("cat", 0.4, b.copy())],
                              existing=[])
    assert [(k.label, k.score) for k in kept] == [("kitten", 0.9), ("cat", 0.5)]
    assert kept[0].also == [("cat", 0.6)] and "also found as cat" in kept[0].review and kept[1].also == []
    assert resolve_duplicates([ConceptInstance("cat", 0.6, a)], existing=[a]) == []


def test_session_finds_concepts_reviews_and_exports(tmp_path, image_file, sam3_checkpoint, monkeypatch):
    """What the GUI's Find box calls: proposals per concept as they arrive, stored with their class; the check and
    the neighbours' vote beside each; disagreements first; an accepted one exported with its class."""
    import threading

    from clicklabel.annotate import AnnotationSession
    from clicklabel.embeddings import EmbeddingCache
    from clicklabel.segment import make_engine

    engine = make_engine("sam3", checkpoint=sam3_checkpoint, device="cpu", cache=EmbeddingCache(disk=False))
    session = AnnotationSession.open([image_file], engine, project=tmp_path / "p.clicklabel")
    image = session.load(0)
    session.embed(image)  # the widget's order: embed in a worker, then show
    session.show(0, image)
    seen = []
    rep = session.propose_concepts("cat, dog", exemplars=["20,10,70,50"], threshold=0.01,
                                   on_concept=lambda name, found: seen.append(name))
    assert seen == ["cat", "dog"] and rep.proposed
    obs = session.proposals()
    assert {o.provenance for o in obs} == {"concept"} and {o.label for o in obs} <= {"cat", "dog"}
    assert all(o.label_status == "done" for o in obs)
    stopped = threading.Event()
    stopped.set()
    assert session.propose_concepts("cat", stop=stopped).cancelled
    # the model says "dog" for every crop: the cat proposals disagree and come first
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    answer = {"label": "dog", "supercategory": None, "confidence": 0.9}
    with FakeLMM(answer=lambda body, image: answer) as lmm:
        monkeypatch.setenv("OPENAI_BASE_URL", lmm.url)
        summary = session.check_concepts([o.id for o in obs], ["cat", "dog"], lmm="gpt-4o-mini")
    assert summary.labelled == len(obs)
    order = session.concept_review_order()
    opinions = session.concept_opinions()
    flags = [opinions[o.id].disagrees for o in order]
    assert flags == sorted(flags, reverse=True)
    assert all(opinions[o.id].verdict == ("agree" if o.label == "dog" else "disagree") for o in order)
    first = order[0]
    session.decide(first.id, True)
    coco = tmp_path / "out.json"
    session.export(coco)
    doc = json.loads(coco.read_text())
    (ann,) = doc["annotations"]
    assert {c["id"]: c["name"] for c in doc["categories"]}[ann["category_id"]] == first.label


def test_bench_concepts_counts_requests(capsys, tmp_path, sam3_checkpoint, monkeypatch):
    from clicklabel.masks import encode_rle

    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    rng = np.random.default_rng(2)
    images, anns = [], []
    for i in range(2):
        img = rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)
        Image.fromarray(img).save(data / "images" / f"im{i}.png")
        images.append({"id": i + 1, "file_name": f"im{i}.png", "height": 64, "width": 96})
        m = np.zeros((64, 96), bool)
        m[10:40, 10:50] = True
        rle = encode_rle(m)
        anns.append({"id": i + 1, "image_id": i + 1, "category_id": 1 + i % 2, "segmentation": rle, "area": 1200,
                     "bbox": [10, 10, 40, 30], "iscrowd": 0})
    (data / "gt.json").write_text(json.dumps({"images": images, "annotations": anns, "categories": [
        {"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]}))
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    answer = {"label": "cat", "supercategory": None, "confidence": 0.9}
    with FakeLMM(answer=lambda body, image: answer) as lmm:
        monkeypatch.setenv("OPENAI_BASE_URL", lmm.url)
        code, stdout, err = run(capsys, "bench", "concepts", "--data", data, "--model", "sam3", "--checkpoint",
                                sam3_checkpoint, "--accept", "all", "--check", "--grid", "4", "--no-cache")
        sent = len(lmm.requests)
    assert code == 0, err
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in stdout.splitlines() if line.startswith("| c")}
    blind, concept = rows["class-blind propose + label"], rows["concept proposals (SAM 3) + check"]
    assert int(blind[0]) == int(blind[1]) == int(blind[2]) > 0  # every accepted object cost one request
    assert int(concept[2]) == int(concept[0])  # the check: one request per concept proposal
    assert sent == int(blind[2]) + int(concept[2])
    assert "saved per accepted object" in stdout


def test_propose_concepts_into_a_project(capsys, tmp_path, image_file, sam3_checkpoint):
    from clicklabel.project import open_project

    project = tmp_path / "p.clicklabel"
    assert run(capsys, "add", project, image_file)[0] == 0
    code, _, err = run(capsys, "propose", project, "--concepts", "vocab", "--model", "sam3", "--checkpoint",
                       sam3_checkpoint, "--device", "cpu")
    assert code == 2 and "no vocabulary" in err
    code, stdout, err = run(capsys, "propose", project, "--concepts", "cat,dog", "--threshold", "0.01", "--model",
                            "sam3", "--checkpoint", sam3_checkpoint, "--device", "cpu")
    assert code == 0, err
    obs = open_project(project).objects(states=("proposed",))
    assert obs and {o.provenance for o in obs} == {"concept"} and {o.label for o in obs} <= {"cat", "dog"}
    assert f"{len(obs)} concept proposals" in stdout
    code, stdout, _ = run(capsys, "propose", project, "--concepts", "cat,dog", "--threshold", "0.01", "--model",
                          "sam3", "--checkpoint", sam3_checkpoint, "--device", "cpu")
    assert code == 0 and "0 concept proposals" in stdout  # what is already proposed is not offered again


def test_propose_concepts_check_from_the_command_line(capsys, tmp_path, image_file, sam3_checkpoint, monkeypatch):
    from clicklabel.project import open_project

    project = tmp_path / "c.clicklabel"
    assert run(capsys, "add", project, image_file)[0] == 0
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    answer = {"label": "other", "supercategory": None, "confidence": 0.8}  # a lone concept can be contradicted
    with FakeLMM(answer=lambda body, image: answer) as lmm:
        monkeypatch.setenv("OPENAI_BASE_URL", lmm.url)
        code, stdout, err = run(capsys, "propose", project, "--concepts", "cat", "--threshold", "0.01", "--check",
                                "--lmm", "gpt-4o-mini", "--model", "sam3", "--checkpoint", sam3_checkpoint,
                                "--device", "cpu")
        asked = len(lmm.requests)
    assert code == 0, err
    n = len(open_project(project).objects(states=("proposed",)))
    assert n and asked == n and f"checked {n}: 0 agree, {n} disagree" in stdout
    schema = lmm.requests[0]["response_format"]["json_schema"]["schema"]
    assert "other" in json.dumps(schema) and "cat" in json.dumps(schema)
