"""The class audit: `clicklabel label --check` asks the model about objects that already have a label, records
agreement beside each (never overwriting a label), under the same leases and answer cache as labelling; the
report lists the open disagreements with crops, exactly the store's; a person's decision is one undoable action."""

import json
import re
import threading

import numpy as np
import pytest

from clicklabel.cli import main
from clicklabel.coco import import_coco
from clicklabel.errors import StoreError
from clicklabel.label import Labeler, LabelerConfig, label_objects
from clicklabel.project import Store
from clicklabel.project.checks import agrees

from conftest import box_only_file
from lmm_server import FakeLMM

KEY = "sk-test-key"


def _by_crop(body, image):
    """Box crops (box-only objects: a red box drawn) are 'block', mask crops 'blob'."""
    red = ((image[..., 0] == 255) & (image[..., 1] == 0) & (image[..., 2] == 0)).any()
    return {"label": "block" if red else "blob", "supercategory": "shape", "confidence": 0.75 if red else 0.6}


@pytest.fixture
def project(tmp_path):
    """Six labelled objects from a COCO file (four box-only: 'block', 'blob', 'blob', 'block'; two masks: 'block',
    'blob') and one object without a label."""
    path, _ = box_only_file(tmp_path)
    s = Store(tmp_path / "p.clicklabel", root=tmp_path)
    import_coco(path, tmp_path, s)
    m = np.zeros((120, 160), bool)
    m[5:15, 100:150] = True
    s.accept(1, m)  # no label: not part of the audit
    return s


def _env(monkeypatch, tmp_path, server):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", server.url)
    monkeypatch.setenv("CLICKLABEL_CACHE", str(tmp_path / "cache"))


def test_label_check_records_agreement_for_every_labelled_object_and_the_report_lists_the_store(
        project, tmp_path, monkeypatch, capsys):
    s = project
    labels_before = {o.id: (o.label, o.label_status) for o in s.objects()}
    with FakeLMM(answer=_by_crop) as server:
        _env(monkeypatch, tmp_path, server)
        assert main(["label", str(s.path), "--check"]) == 0
        out = capsys.readouterr().out
        assert "checked 6, failed 0" in out and "3 agree, 3 disagree" in out, out
        assert len(server.requests) == 6  # the unlabelled object is not asked about
        enum = server.requests[0]["response_format"]["json_schema"]["schema"]["properties"]["label"]["enum"]
        assert enum == ["blob", "block"]  # the audit answers in the project's own labels
        checks = {c.object_id: c for c in s.checks()}
        labelled = [o for o in s.objects() if o.label]
        assert sorted(checks) == sorted(o.id for o in labelled)  # agreement recorded for every labelled object
        for o in labelled:
            c = checks[o.id]
            model = "block" if o.mask_state == "box" else "blob"
            assert (c.given, c.label, c.supercategory) == (o.label, model, "shape")
            assert c.verdict == ("agree" if o.label == model else "disagree") and c.decision is None
            assert c.confidence == (0.75 if model == "block" else 0.6) and c.lmm_model == "gpt-4o-mini"
        assert {o.id: (o.label, o.label_status) for o in s.objects()} == labels_before  # nothing overwritten
        assert s.usage()["prompt_tokens"] == 600  # the audit's tokens count on the objects
        # again: nothing left to check, nothing sent; --all checks again from the answer cache, paying nothing
        assert main(["label", str(s.path), "--check"]) == 0
        assert "nothing to check" in capsys.readouterr().out and len(server.requests) == 6
        assert main(["label", str(s.path), "--check", "--all"]) == 0
        assert "(6 from the cache)" in capsys.readouterr().out and len(server.requests) == 6
    assert {o.id: o.label for o in s.objects()} == {k: v[0] for k, v in labels_before.items()}

    _report_matches_store(s, tmp_path / "r1")
    open_ids = [c.object_id for c in s.disagreements()]
    assert len(open_ids) == 3
    # a person's decisions: take the model's label (one undoable action), keep another's own
    first, second = open_ids[:2]
    old = s.object(first).label
    s.accept_check(first)
    assert s.object(first).label == checks[first].label and s.object(first).label_status == "edited"
    assert s.check_of(first).decision == "accepted" and first not in [c.object_id for c in s.disagreements()]
    assert s.label_history(first)[-1][4] == "check:gpt-4o-mini"
    assert s.undo()["kind"] == "decide_check"
    assert s.object(first).label == old and s.object(first).label_status == "done"
    assert s.check_of(first).decision is None and first in [c.object_id for c in s.disagreements()]
    assert s.redo()["kind"] == "decide_check" and s.object(first).label == checks[first].label
    s.keep_label(second)
    assert s.check_of(second).decision == "kept" and s.object(second).label == labels_before[second][0]
    with pytest.raises(StoreError, match="no open disagreement"):
        s.keep_label(second)
    with pytest.raises(StoreError, match="no open disagreement"):
        s.accept_check(next(c.object_id for c in s.checks() if c.verdict == "agree"))
    nums = _report_matches_store(s, tmp_path / "r2")
    assert nums["audit"] == {"checked": 6, "agree": 3, "disagree": 3, "failed": 0, "accepted_model_label": 1,
                             "kept_own_label": 1, "open": 1}
    # a person's own relabel closes a disagreement too (the label checked is gone)
    last = s.disagreements()[0].object_id
    s.relabel(last, "something else")
    assert s.disagreements() == [] and last in s.objects_to_check()


def _report_matches_store(s, out):
    assert main(["report", str(s.path), "--out", str(out)]) == 0
    nums = json.loads((out / "numbers.json").read_text())
    store_list = [(c.object_id, c.given, c.label, c.confidence) for c in s.disagreements()]
    assert [(d["object_id"], d["label"], d["model_label"], d["confidence"]) for d in nums["disagreements"]] \
        == store_list
    page = (out / "index.html").read_text()
    assert [int(v) for v in re.findall(r'data-disagreement="(\d+)"', page)] == [c[0] for c in store_list]
    for oid, *_ in store_list:  # each with its crop
        assert (out / "crops" / f"object_{oid}.png").is_file() and f'src="crops/object_{oid}.png"' in page
    vals = dict(re.findall(r'data-key="([^"]+)">([^<]*)<', page))
    assert int(vals["audit.open"]) == len(store_list) and int(vals["audit.checked"]) == len(s.checks())
    return nums


def test_two_check_runs_send_each_object_once(project, tmp_path):
    """Two audit runs at once, without an answer cache (only the leases keep them apart): each object is sent once
    and checked once."""
    ids = project.objects_to_check()
    with FakeLMM(latency=0.3, answer=_by_crop) as server:
        cfg = dict(base_url=server.url, api_key=KEY, vocabulary=["blob", "block"], concurrency=2)
        out = [None, None]

        def go(n):
            out[n] = label_objects(Store(project.path), ids, Labeler(LabelerConfig(**cfg)), check=True)

        threads = [threading.Thread(target=go, args=(n,)) for n in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(server.requests) == len(ids) and sorted(server.attempts.values()) == [1] * len(ids)
    assert sum(r.labelled for r in out) == len(ids) == len(project.checks())
    assert sum(r.agreed for r in out) == 3 and sum(r.disagreed for r in out) == 3


def test_a_person_relabelling_while_the_check_is_in_flight_wins(project):
    ids = project.objects_to_check()
    first = ids[0]
    other = Store(project.path)

    def answer(body, image):
        if len(server.requests) == 1:  # the first request (concurrency 1: the first object's)
            other.relabel(first, "person's label")
        return _by_crop(body, image)

    with FakeLMM(answer=answer) as server:
        cfg = LabelerConfig(base_url=server.url, api_key=KEY, vocabulary=["blob", "block"], concurrency=1)
        summary = label_objects(project, ids, Labeler(cfg), check=True)
    assert summary.skipped == 1 and summary.labelled == len(ids) - 1
    assert project.object(first).label == "person's label" and project.check_of(first) is None
    assert first in project.objects_to_check()  # the new label waits for its own check


def test_agreement_rule():
    assert agrees("Cat", "cat", None) and agrees("siamese  cat", "Siamese Cat", "cat")
    assert agrees("cat", "Siamese cat", "cat")  # the label names the answer's coarse class
    assert not agrees("dog", "Siamese cat", "cat") and not agrees("cat", "dog", None)
