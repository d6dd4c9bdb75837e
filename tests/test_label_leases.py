"""Labelling runs claim what they send: two runs on one project pay once per object, a person's change made while
an answer is in flight wins, a busy project is waited for and never loses an answer that arrived."""

import os
import sqlite3
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

from clicklabel.errors import ResourceError
from clicklabel.label import LabelCache, Labeler, LabelerConfig, label_objects
from clicklabel.project import Store

from conftest import ROOT
from lmm_server import FakeLMM

KEY = "sk-test-key"


def _project(tmp_path, images=4, per_image=6) -> Store:
    rng = np.random.default_rng(1)
    s = Store(tmp_path / "p.clicklabel", root=tmp_path)
    for i in range(images):
        Image.fromarray(rng.integers(0, 255, (90, 120, 3), dtype=np.uint8)).save(tmp_path / f"im{i}.png")
        iid = s.add_image_file(tmp_path / f"im{i}.png")
        for k in range(per_image):
            m = np.zeros((90, 120), bool)
            m[5 + 12 * k : 15 + 12 * k, 10 + 5 * k : 60] = True
            s.accept(iid, m)
    return s


def _labeler(server, tmp_path, **kw) -> Labeler:
    return Labeler(LabelerConfig(base_url=server.url, api_key=KEY, timeout=10, **kw),
                   LabelCache(tmp_path / "answers.sqlite"))


def test_two_label_commands_send_each_object_once(tmp_path):
    """Two `clicklabel label` processes at once on one project, against a slow server: one request per object."""
    s = _project(tmp_path)
    n = s.count_objects()
    s.close()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OPENAI_API_KEY": KEY,
           "CLICKLABEL_CACHE": str(tmp_path / "cache")}
    with FakeLMM(latency=0.4) as server:
        env["OPENAI_BASE_URL"] = server.url
        cmd = [sys.executable, "-m", "clicklabel.cli", "label", str(tmp_path / "p.clicklabel"), "--concurrency", "3"]
        procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
        outs = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0 and "Traceback" not in err, err
    assert len(server.requests) == n, f"{len(server.requests)} requests for {n} objects"
    assert sorted(server.attempts.values()) == [1] * n  # every crop sent exactly once
    labelled = [int(out.split("labelled ")[1].split(",")[0]) for out, _ in outs]
    assert sum(labelled) == n, outs
    print(f"objects labelled by each run: {labelled}; requests: {len(server.requests)} for {n} objects")
    s = Store(tmp_path / "p.clicklabel")
    assert len(s.objects(label_status=["done"])) == n
    assert s.conn.execute("SELECT COUNT(*) FROM label_leases").fetchone()[0] == 0  # every claim given back


def test_objects_another_run_holds_are_not_sent_until_its_lease_runs_out(tmp_path):
    s = _project(tmp_path, images=1, per_image=4)
    ids = [o.id for o in s.objects()]
    s.claim_for_labelling(ids[:2], "other-run", 300, since=time.time())  # live
    s.claim_for_labelling(ids[2:], "dead-run", -1, since=time.time())  # ran out: its process died
    with FakeLMM() as server:
        summary = label_objects(s, ids, _labeler(server, tmp_path))
    assert (summary.labelled, summary.skipped, len(server.requests)) == (2, 2, 2)
    assert [o.label_status for o in s.objects()] == ["pending", "pending", "done", "done"]
    assert s.leased_elsewhere(ids) == 2


def test_a_persons_change_during_the_request_wins(tmp_path):
    """The widget relabels (or deletes) an object while the model's answer is on its way: the answer is not
    written over the person's change."""
    s = _project(tmp_path, images=1, per_image=2)
    a, b = (o.id for o in s.objects())

    def answer(body, image):
        other = Store(tmp_path / "p.clicklabel")  # another connection, as the widget's process would have
        if not other.object(a).label:
            other.relabel(a, "my label")
            other.delete(b)
        other.close()
        return {"label": "model label", "supercategory": "x", "confidence": 0.9}

    with FakeLMM(answer=answer) as server:
        summary = label_objects(s, [a, b], _labeler(server, tmp_path, concurrency=1))
    assert summary.skipped == 2 and summary.labelled == 0
    assert s.object(a).label == "my label" and s.object(a).label_status == "edited"
    assert s.object(b).state == "deleted" and s.object(b).label is None


def test_busy_project_keeps_every_answer(tmp_path):
    """Another program takes the project's write lock mid-run for longer than the run waits: the run stops with
    one line, the answers that arrived are kept in the label cache, and the next run stores them unpaid."""
    s = _project(tmp_path, images=2, per_image=3)
    ids = [o.id for o in s.objects()]
    s.busy_timeout = 1.0
    s.on_busy = None
    holder = {}

    def plan(attempt, key):
        if "conn" not in holder:  # after the first request arrives, another program starts a long write
            conn = sqlite3.connect(tmp_path / "p.clicklabel", isolation_level=None, check_same_thread=False,
                                   timeout=0.05)
            try:  # the run may be writing this very moment: then the next request tries again
                conn.execute("BEGIN IMMEDIATE")
                holder["conn"] = conn
            except sqlite3.OperationalError:
                conn.close()
        return "ok"

    with FakeLMM(latency=0.2, plan=plan) as server:
        with pytest.raises(ResourceError, match="busy.*kept in the label cache"):
            label_objects(s, ids, _labeler(server, tmp_path, concurrency=2))
        sent = len(server.requests)
        holder["conn"].execute("ROLLBACK")
        stored = len(s.objects(label_status=["done"]))
        assert stored < len(ids) and sent >= 1
        s.conn.execute("DELETE FROM label_leases")  # as if the leases of the stopped run had run out
        summary = label_objects(s, ids, _labeler(server, tmp_path, concurrency=2))
        assert summary.labelled == len(ids) - stored
        assert summary.cached == sent  # every answer that arrived came from the cache: nothing paid twice
        assert len(server.requests) == len(ids)
    assert s.integrity_ok()


def test_bounded_wait_that_succeeds_is_reported(tmp_path):
    s = _project(tmp_path, images=1, per_image=1)
    reports = []
    s.on_busy = reports.append
    other = sqlite3.connect(tmp_path / "p.clicklabel", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    threading.Timer(1.5, lambda: other.execute("ROLLBACK")).start()
    with FakeLMM() as server:  # the claim waits for the lock (and says so), then the request goes
        summary = label_objects(s, [o.id for o in s.objects()], _labeler(server, tmp_path))
    assert summary.labelled == 1 and reports and "waiting for" in reports[0]


def test_the_widgets_session_labels_under_the_same_leases(tmp_path):
    """The widget labels through AnnotationSession.label: objects a `clicklabel label` run holds are not sent."""
    from clicklabel.annotate import AnnotationSession

    s = _project(tmp_path, images=1, per_image=3)
    ids = [o.id for o in s.objects()]
    s.claim_for_labelling(ids[:2], "cli-run", 300, since=time.time())
    with FakeLMM() as server:
        summary = AnnotationSession(s, engine=None).label(ids, _labeler(server, tmp_path))
    assert (summary.labelled, summary.skipped, len(server.requests)) == (1, 2, 1)
