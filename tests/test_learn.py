"""Labels that learn: descriptors, the neighbours' vote, few-shot requests, kNN-only labels."""
import shutil

import numpy as np
from PIL import Image

from clicklabel.annotate import AnnotationSession
from clicklabel.label import LabelCache, Labeler, LabelerConfig, estimate, label_objects
from clicklabel.label.neighbours import object_descriptor, vote
from clicklabel.project import Store
from clicklabel.segment import Prompt

from conftest import SAMPLES
from lmm_server import FakeLMM

KEY = "sk-test"


def _unit(angle_deg: float, d: int = 8) -> np.ndarray:
    v = np.zeros(d, np.float32)
    v[0], v[1] = np.cos(np.radians(angle_deg)), np.sin(np.radians(angle_deg))
    return v


def _project(tmp_path, n: int) -> tuple[Store, list[int]]:
    rng = np.random.default_rng(3)
    s = Store(tmp_path / "p.clicklabel", root=tmp_path)
    Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(tmp_path / "im.png")
    iid = s.add_image_file(tmp_path / "im.png")
    ids = []
    for k in range(n):
        m = np.zeros((120, 160), bool)
        m[5 + 10 * (k % 10) : 14 + 10 * (k % 10), 5 + 15 * (k // 10) : 18 + 15 * (k // 10)] = True
        ids.append(s.accept(iid, m))
    return s, ids


def _labeler(server, tmp_path, **kw) -> Labeler:
    return Labeler(LabelerConfig(base_url=server.url, api_key=KEY, timeout=10, **kw),
                   LabelCache(tmp_path / "answers.sqlite"))


def _examples_sent(body) -> tuple[int, list[str]]:
    """(image parts in the whole request, the example labels in the assistant turns, in order)."""
    import json

    images = sum(1 for m in body["messages"] if isinstance(m["content"], list)
                 for p in m["content"] if p.get("type") == "image_url")
    labels = [json.loads(m["content"])["label"] for m in body["messages"] if m["role"] == "assistant"]
    return images, labels


def test_few_shot_sends_the_k_nearest_confirmed_crops(tmp_path):
    s, ids = _project(tmp_path, 8)
    *confirmed, target, unconfirmed = ids
    angles = [0, 10, 20, 30, 90, 120]  # the target sits at 14 degrees: nearest 10, 20, 0, 30
    for oid, a, name in zip(confirmed, angles, "abcdef"):
        s.relabel(oid, f"label {name}")  # a person's label: confirmed
        s.set_descriptor(oid, "m", _unit(a))
    s.set_descriptor(target, "m", _unit(14))
    s.set_descriptor(unconfirmed, "m", _unit(15))  # no person's label: never an example
    with FakeLMM() as server:
        summary = label_objects(s, [target], _labeler(server, tmp_path, few_shot=4))
        assert summary.labelled == 1 and len(server.requests) == 1
        assert _examples_sent(server.requests[0]) == (5, ["label b", "label c", "label a", "label d"])
        # other examples (a nearer confirmed object appears): the cached answer is not reused
        s.set_descriptor(confirmed[5], "m", _unit(13))
        s.mark_pending([target])
        label_objects(s, [target], _labeler(server, tmp_path, few_shot=4))
        assert len(server.requests) == 2 and _examples_sent(server.requests[1])[1][0] == "label f"
        s.mark_pending([target])  # the same examples again: the cache answers
        again = label_objects(s, [target], _labeler(server, tmp_path, few_shot=4))
        assert again.cached == 1 and len(server.requests) == 2
        # zero-shot: one image
        s.mark_pending([target])
        label_objects(s, [target], _labeler(server, tmp_path))
        assert _examples_sent(server.requests[2]) == (1, [])
    cheap = estimate(s, [target], Labeler(LabelerConfig()))
    dear = estimate(s, [target], Labeler(LabelerConfig(few_shot=4)))
    assert dear["examples_per_request"] == 4 and dear["prompt_tokens"] > cheap["prompt_tokens"] + 4 * 80
    assert dear["cost"] > cheap["cost"]


def test_typed_labels_join_the_vocabulary_and_no_descriptor_means_no_examples(tmp_path):
    s, ids = _project(tmp_path, 3)
    s.relabel(ids[0], "okapi")
    s.set_descriptor(ids[0], "m", _unit(0))
    with FakeLMM(answer=lambda body, image: {"label": "okapi", "supercategory": "animal", "confidence": 0.8}) as srv:
        lab = _labeler(srv, tmp_path, few_shot=2, vocabulary=["cat", "dog"])
        summary = label_objects(s, ids[1:], lab)
    assert lab.config.vocabulary == ["cat", "dog", "okapi"] and summary.labelled == 2
    assert summary.without_examples == 2 and all(_examples_sent(b)[0] == 1 for b in srv.requests)


def test_knn_only_above_skips_the_model_when_the_neighbours_agree(tmp_path):
    s, ids = _project(tmp_path, 7)
    for oid, a in zip(ids[:5], (0, 2, 4, 6, 8)):
        s.relabel(oid, "cat")
        s.set_descriptor(oid, "m", _unit(a))
    s.set_descriptor(ids[5], "m", _unit(3))  # among the cats
    s.set_descriptor(ids[6], "m", _unit(170))  # far from all: its 5 nearest are still these five
    s.relabel(ids[0], "dog")  # now 4 of 5 say cat
    with FakeLMM() as server:
        lab = _labeler(server, tmp_path, knn_only_above=0.8, knn_k=5)
        summary = label_objects(s, ids[5:], lab)
        assert summary.knn == 2 and summary.labelled == 2 and len(server.requests) == 0 and summary.saved > 0
        s.mark_pending(ids[5:])
        strict = label_objects(s, ids[5:], _labeler(server, tmp_path, knn_only_above=1.0, knn_k=5))
        assert strict.knn == 0 and len(server.requests) == 2
    ob = s.object(ids[5])
    assert ob.label == "Siamese cat" and ob.lmm_model == "gpt-4o-mini"


def test_vote_weighs_typed_labels_twice():
    from clicklabel.project.descriptors import Confirmed

    pool = Confirmed([1, 2, 3], ["cat", "cat", "dog"], np.array([False, False, True]),
                     np.stack([_unit(0), _unit(1), _unit(2)]))
    v = vote(pool, _unit(1), k=3)
    assert (v.label, v.votes, v.k) == ("cat", 2, 3)  # 2 x 1 vs 1 x 2: a tie goes to the count
    pool.typed[:] = [False, False, True]
    pool.labels[2] = "dog"
    v = vote(pool, _unit(2), k=2)
    assert v.label == "dog" and str(v) == "dog 1/2"  # the typed neighbour outweighs a model-given one


def test_descriptor_pools_the_features_under_the_mask():
    from clicklabel.embeddings import Embedding

    feats = np.zeros((1, 4, 64, 64), np.float32)
    feats[0, 0, :32] = 1.0  # channel 0: the top half of the padded square
    feats[0, 1, 32:] = 1.0
    emb = Embedding(features=feats, input_size=(1024, 768), original_size=(200, 150))
    top = np.zeros((200, 150), bool)
    top[10:60, 20:100] = True
    bottom = np.zeros((200, 150), bool)
    bottom[150:190, 20:100] = True
    assert np.argmax(object_descriptor(emb, top)) == 0 and np.argmax(object_descriptor(emb, bottom)) == 1
    assert object_descriptor(emb, np.zeros((200, 150), bool)) is None
    one = np.zeros((200, 150), bool)
    one[199, 0] = True  # a single pixel: the cell under it
    assert np.isclose(np.linalg.norm(object_descriptor(emb, one)), 1.0)


def test_session_suggestion_follows_relabel_and_undo(tmp_path, tiny_engine):
    d = tmp_path / "images"
    d.mkdir()
    shutil.copy(SAMPLES / "chelsea.jpg", d / "chelsea.jpg")
    s = AnnotationSession.open(d, tiny_engine)
    image = s.load(0)
    s.embed(image)
    s.show(0, image)
    assert s.store.image_descriptors(tiny_engine.model_id)  # the image's descriptor, for review-order

    def accept_region() -> int:
        s.set_prompt(Prompt.make(box=(60, 30, 380, 290)))
        return s.accept()

    first = accept_region()
    assert s.store.descriptor(first)[0] == tiny_engine.model_id
    assert s.suggestions() == {}  # nothing confirmed yet
    s.relabel(first, "tabby cat")
    second = accept_region()
    v = s.suggestions()[second]
    assert (v.label, v.votes, v.k) == ("tabby cat", 1, 1) and v.neighbours[0][0] == first
    assert v.neighbours[0][2] > 0.999  # the same region: the same descriptor
    s.relabel(first, "lynx")
    assert s.suggestions()[second].label == "lynx"
    s.undo()  # the relabel to lynx
    assert s.suggestions()[second].label == "tabby cat"
    s.delete(first)
    assert second not in s.suggestions()
    s.undo()
    assert s.suggestions()[second].label == "tabby cat"


def _cli(capsys, *argv):
    from clicklabel.cli import main

    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse refusing a value
        code = exc.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_few_shot_dry_run_review_order_and_bad_values(tmp_path, capsys, monkeypatch):
    s, ids = _project(tmp_path, 6)
    for oid, a, lab in zip(ids[:3], (0, 5, 10), ("cat", "cat", "dog")):
        s.relabel(oid, lab)
        s.set_descriptor(oid, "m", _unit(a))
    for oid, a in zip(ids[3:], (2, 60, 120)):
        s.set_descriptor(oid, "m", _unit(a))
    s.set_label(ids[3], "dog", "animal", 0.55, "gpt-4o-mini")  # its neighbours say cat: worth a look
    s.set_label(ids[4], "cat", "animal", 0.97, "gpt-4o-mini")
    s.close()
    p = tmp_path / "p.clicklabel"
    code, zero, _ = _cli(capsys, "label", p, "--dry-run")
    code2, shots, _ = _cli(capsys, "label", p, "--dry-run", "--few-shot", "2")
    assert code == code2 == 0 and "with 2 example image(s) each" in shots
    cost = [float(t.split("$")[1].split()[0]) for t in (zero, shots)]
    assert cost[1] > cost[0]
    code, out, _ = _cli(capsys, "review-order", p)
    assert code == 0
    first = next(line for line in out.splitlines() if line.startswith("| ") and not line.startswith("| object "))
    assert first.split("|")[1].strip() == str(ids[3]) and "nearest confirmed objects 'cat'" in first
    assert "model confidence 0.55" in first
    for bad in (["--few-shot", "-1"], ["--few-shot", "many"], ["--knn-only-above", "1.5"],
                ["--knn-only-above", "0"], ["--few-shot", "65"]):
        code, _, err = _cli(capsys, "label", p, "--dry-run", *bad)
        assert code == 2 and "Traceback" not in err and err.count("\n") <= 3, (bad, err)


def test_bench_labels_few_shot_and_knn_on_pets(tmp_path, capsys, monkeypatch, tiny_checkpoint):
    from conftest import needs_shared

    pets = needs_shared("pets")
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with FakeLMM(answer=lambda body, image: {"label": "Bengal", "supercategory": "cat", "confidence": 0.9}) as srv:
        monkeypatch.setenv("OPENAI_BASE_URL", srv.url)
        code, out, err = _cli(capsys, "bench", "labels", "--data", pets, "--few-shot", "0,2", "--knn", "--limit", "12",
                              "--model", "auto", "--checkpoint", tiny_checkpoint, "--no-cache")
        assert code == 0, err
        counts = [_examples_sent(b)[0] for b in srv.requests]
    rows = [line for line in out.splitlines() if line.startswith("| ") and "setting" not in line]
    assert len(rows) == 3 and "kNN vote" in rows[0] and "0 example(s)" in rows[1] and "2 example(s)" in rows[2]
    assert counts == [1] * 6 + [3] * 6  # 6 scored objects, asked cold, then with 2 examples each
    assert "6 objects confirmed, 6 scored" in out


def test_session_next_by_value_wraps_in_value_order(tmp_path):
    from clicklabel.segment import make_engine

    d = tmp_path / "images"
    d.mkdir()
    for name in ("chelsea", "coffee"):
        shutil.copy(SAMPLES / f"{name}.jpg", d / f"{name}.jpg")
    s = AnnotationSession.open(d, make_engine("grabcut"))
    made = []
    for im, conf in zip(s.images, (0.95, 0.4)):
        m = np.zeros((im.height, im.width), bool)
        m[10:50, 10:60] = True
        oid = s.store.accept(im.id, m)
        s.store.set_label(oid, "thing", None, conf, "gpt-4o-mini")
        made.append(oid)
    first = s.next_by_value()
    assert first[:2] == (1, made[1]) and "model confidence 0.40" in first[2][0]
    assert s.next_by_value(made[1])[:2] == (0, made[0]) and s.next_by_value(made[0])[:2] == (1, made[1])
    s.relabel(made[1], "cat")  # a person's label: nothing left to review there
    assert s.next_by_value()[1] == made[0]
