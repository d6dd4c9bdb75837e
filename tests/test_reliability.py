"""The unsafe writes and unclear messages of the hand-over issue: each case a user met, as it must behave now (one
line, the right exit status, nothing replaced that is not a regular file, no foreign database touched)."""

import json
import os
import socket
import sqlite3
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from clicklabel.cli import main
from clicklabel.errors import ClickLabelError, ResourceError, StoreError
from clicklabel.files import write_text
from clicklabel.project import Store

from lmm_server import FakeLMM

KEY = "sk-test-key"


def _image(path, size=(40, 30)):
    Image.fromarray(np.full((size[1], size[0], 3), 120, np.uint8)).save(path)
    return path


def _project(tmp_path, objects=3):
    img = _image(tmp_path / "img.png")
    s = Store(tmp_path / "p.clicklabel", root=tmp_path)
    iid = s.add_image(img, 40, 30)
    for i in range(objects):
        m = np.zeros((30, 40), bool)
        m[2 + i * 8 : 8 + i * 8, 3:30] = True
        s.accept(iid, m)
    return s


# -- writes go only to regular files ---------------------------------------------------------------------------
def test_a_fifo_is_never_replaced(tmp_path, capsys):
    s = _project(tmp_path)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert main(["export", str(s.path), "--out", str(fifo)]) == 2
    err = capsys.readouterr().err
    assert "FIFO" in err and "leaves it" in err and len(err.strip().splitlines()) == 1
    assert fifo.is_fifo()
    with pytest.raises(ClickLabelError, match="FIFO"):
        write_text(fifo, "x")
    assert fifo.is_fifo() and {p.name for p in tmp_path.iterdir()} <= {"img.png", "p.clicklabel", "pipe",
                                                                        "p.clicklabel-shm", "p.clicklabel-wal"}


def test_a_symlink_stays_a_link_and_its_file_is_written(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    write_text(link, "new")
    assert link.is_symlink() and real.read_text() == "new"
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "to_pipe").symlink_to(tmp_path / "pipe")
    with pytest.raises(ClickLabelError, match="FIFO"):
        write_text(tmp_path / "to_pipe", "x")
    assert (tmp_path / "pipe").is_fifo() and (tmp_path / "to_pipe").is_symlink()


def test_segment_out_to_a_device_is_refused_before_the_model(tmp_path, capsys):
    """A character device (here /dev/null, through a link so nothing in /dev is at risk) is refused at once."""
    _image(tmp_path / "a.png")
    (tmp_path / "null").symlink_to("/dev/null")
    code = main(["segment", str(tmp_path / "a.png"), "--point", "5,5", "--engine", "grabcut",
                 "--out", str(tmp_path / "null")])
    assert code == 2 and "character device" in capsys.readouterr().err
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")


# -- foreign SQLite files and schema versions ----------------------------------------------------------------
def _foreign(path):
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE songs (id INTEGER PRIMARY KEY, title TEXT)")
    conn.execute("INSERT INTO songs(title) VALUES ('x')")
    conn.commit()
    conn.close()
    return path.read_bytes()


def test_another_programs_database_is_refused_untouched(tmp_path, capsys):
    db = tmp_path / "other.db"
    before = _foreign(db)
    _image(tmp_path / "img.png")
    assert main(["add", str(db), str(tmp_path / "img.png")]) == 2
    err = capsys.readouterr().err
    assert "another program" in err and "songs" in err and len(err.strip().splitlines()) == 1
    assert db.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["img.png", "other.db"]
    with pytest.raises(StoreError, match="another program"):
        Store(db)


@pytest.mark.parametrize("version, says", [("abc", "'abc' is not a version"), ("0", "'0' is not a version"),
                                           (None, "another program")])
def test_unreadable_schema_versions_are_one_line(tmp_path, capsys, version, says):
    s = _project(tmp_path)
    path = s.path
    if version is None:
        s.conn.execute("DELETE FROM meta WHERE key='schema_version'")
    else:
        s.conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (version,))
    s.close()
    assert main(["export", str(path), "--out", str(tmp_path / "o.json")]) == 2
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err and "already exists" not in err
    assert not (tmp_path / "o.json").exists()


# -- a killed labelling run ----------------------------------------------------------------------------------
def test_a_dead_runs_leases_on_this_host_are_freed_at_once(tmp_path):
    s = _project(tmp_path)
    ids = [o.id for o in s.objects()]
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    gone = f"{socket.gethostname()}:{dead.pid}:abc"
    elsewhere = f"another-host.example:{dead.pid}:abc"  # a run on another machine: its lease is trusted
    assert s.claim_for_labelling(ids[:2], gone, 3600, since=1e12) == ids[:2]
    assert s.claim_for_labelling(ids[2:], elsewhere, 3600, since=1e12) == ids[2:]
    assert s.leased_elsewhere(ids, "me") == 1
    assert s.claim_for_labelling(ids, "me", 60, since=1e12) == ids[:2]
    with FakeLMM() as server:
        from clicklabel.label import LabelCache, Labeler, LabelerConfig, label_objects

        lab = Labeler(LabelerConfig(base_url=server.url, api_key=KEY), LabelCache(tmp_path / "c.sqlite"))
        s.release_leases("me")
        s.claim_for_labelling(ids[:2], gone, 3600, since=1e12)
        summary = label_objects(s, ids, lab)
    assert summary.labelled == 2 and summary.skipped == 1  # the dead run's two at once; the other host's waits


# -- the model server --------------------------------------------------------------------------------------------
def test_a_server_down_for_everyone_stops_the_run_early(tmp_path):
    from clicklabel.label import LabelCache, Labeler, LabelerConfig, label_objects

    s = _project(tmp_path, objects=3)
    for i in range(37):  # 40 objects
        m = np.zeros((30, 40), bool)
        m[i % 28, : 1 + i] = True
        s.accept(1, m)
    with socket.socket() as sock:  # a port where nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    lab = Labeler(LabelerConfig(base_url=url, api_key=KEY, concurrency=2, max_retries=1, timeout=5),
                  LabelCache(tmp_path / "c.sqlite"))
    with pytest.raises(ResourceError, match="answered none of the first") as err:
        label_objects(s, [o.id for o in s.objects()], lab)
    assert url in str(err.value) and "cannot connect" in str(err.value)
    failed, pending = s.objects(label_status=["failed"]), s.objects(label_status=["pending"])
    assert 3 <= len(failed) <= 4 and len(failed) + len(pending) == 40
    assert url in failed[0].label_error and "refused" in failed[0].label_error.lower()
    assert s.conn.execute("SELECT COUNT(*) FROM label_leases").fetchone()[0] == 0


def test_a_web_page_instead_of_an_api_is_named(tmp_path):
    from clicklabel.label import LabelCache, Labeler, LabelerConfig, label_objects

    s = _project(tmp_path, objects=1)
    with FakeLMM(plan=lambda attempt, key: "html") as server:
        lab = Labeler(LabelerConfig(base_url=server.url, api_key=KEY), LabelCache(tmp_path / "c.sqlite"))
        label_objects(s, [1], lab)
    err = s.object(1).label_error
    assert "web page (HTML)" in err and server.url in err and "OPENAI_BASE_URL" in err


def test_a_full_disk_under_the_label_cache_is_named(tmp_path, monkeypatch):
    import shutil

    from clicklabel.label import LabelCache

    def no_space(*a, **k):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(sqlite3, "connect", no_space)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(100, 100, 0))
    with pytest.raises(ResourceError, match="label cache .* is full"):
        LabelCache(tmp_path / "labels" / "answers.sqlite")


# -- serve ------------------------------------------------------------------------------------------------------
def test_bearer_is_case_insensitive():
    from clicklabel.cluster.serve_app import bearer_token

    assert bearer_token("Bearer abc") == bearer_token("bearer abc") == bearer_token("BEARER  abc ") == "abc"
    assert bearer_token("Basic abc") is None and bearer_token("Bearer") is None and bearer_token("") is None


def test_ray_that_fails_to_start_is_one_line(monkeypatch, capsys, tmp_path):
    ray = pytest.importorskip("ray")
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    shut = []
    monkeypatch.setattr(ray, "shutdown", lambda: shut.append(1))

    def fail(*a, **k):
        raise TimeoutError("Traceback (most recent call last):\n  File x\nTimeoutError: GCS did not start in 30 s")

    monkeypatch.setattr(ray, "init", fail)
    (tmp_path / "token").write_text("secret-token-0123456789")
    code = main(["serve", "--token-file", str(tmp_path / "token"), "--port", "0"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "GCS did not start" in err and shut == [1]


# -- messages ---------------------------------------------------------------------------------------------------
def test_text_ids_are_shown_as_text(tmp_path, capsys):
    _image(tmp_path / "a.png")
    doc = {"images": [{"id": 1, "file_name": "a.png", "width": 40, "height": 30}],
           "categories": [{"id": 1, "name": "cat"}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": "1", "bbox": [1, 1, 5, 5]}]}
    (tmp_path / "c.json").write_text(json.dumps(doc))
    main(["import", str(tmp_path / "c.json"), "--images", str(tmp_path), "--project", str(tmp_path / "p.clicklabel")])
    out = capsys.readouterr().out
    assert "unknown category id '1' (it is text; the file has 1" in out


def test_a_point_left_of_the_image_is_checked_not_misparsed(tmp_path, capsys):
    _image(tmp_path / "a.png")
    assert main(["segment", str(tmp_path / "a.png"), "--point", "-5,10", "--engine", "grabcut"]) == 2
    err = capsys.readouterr().err
    assert "expected one argument" not in err and "-5" in err and "outside" in err


def test_a_permission_error_exits_1(tmp_path, capsys):
    s = _project(tmp_path)
    ro = tmp_path / "ro"
    ro.mkdir()
    from clicklabel.files import atomic_write

    def denied(*a, **k):
        raise PermissionError(13, "Permission denied")

    import builtins

    real_open = builtins.open
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(builtins, "open", lambda f, *a, **k: denied() if str(f).startswith(str(ro)) else
                   real_open(f, *a, **k))
        with pytest.raises(ResourceError, match="no permission"):
            with atomic_write(ro / "x.json", "w") as f:
                f.write("x")
        assert main(["export", str(s.path), "--out", str(ro / "o.json")]) == 1
    assert "no permission to write" in capsys.readouterr().err


def test_a_failed_import_leaves_no_project(tmp_path, capsys):
    _image(tmp_path / "a.png")
    doc = {"images": [{"id": 1, "file_name": "missing.png", "width": 40, "height": 30}], "categories": [],
           "annotations": []}
    (tmp_path / "c.json").write_text(json.dumps(doc))
    target = tmp_path / "new.clicklabel"
    assert main(["import", str(tmp_path / "c.json"), "--images", str(tmp_path), "--project", str(target)]) == 2
    assert "no project was made" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "c.json"]
    doc["images"][0]["file_name"] = "a.png"
    doc["annotations"] = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}]
    (tmp_path / "c.json").write_text(json.dumps(doc))
    assert main(["import", str(tmp_path / "c.json"), "--images", str(tmp_path), "--project", str(target),
                 "--strict"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "c.json"]


def test_propose_keeps_no_repeats(tiny_engine):
    from clicklabel.segment.propose import ProposeSettings, propose

    tiny_engine.set_image(np.full((1, 1, 3), 200, np.uint8))
    props = propose(tiny_engine, ProposeSettings(grid=6, pred_iou_thresh=0.0, stability_thresh=0.0))
    assert len(props) <= 1
    rng = np.random.default_rng(3)
    tiny_engine.set_image(rng.integers(0, 255, (24, 3, 3), dtype=np.uint8))
    props = propose(tiny_engine, ProposeSettings(grid=4, pred_iou_thresh=0.0, stability_thresh=0.0))
    keys = [np.packbits(p.mask).tobytes() for p in props]
    assert len(keys) == len(set(keys))


def test_label_against_a_closed_port_is_one_line_exit_1(tmp_path, monkeypatch, capsys):
    s = _project(tmp_path, objects=3)
    for i in range(9):
        m = np.zeros((30, 40), bool)
        m[i, 1 : 2 + i] = True
        s.accept(1, m)
    s.close()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{port}/v1")
    monkeypatch.setenv("CLICKLABEL_CACHE", str(tmp_path / "cache"))
    assert main(["label", str(tmp_path / "p.clicklabel"), "--concurrency", "3", "--retries", "0"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and f"127.0.0.1:{port}/v1" in err and "Connection refused" in err
    assert len(Store(tmp_path / "p.clicklabel").objects(label_status=["pending"])) >= 6  # not sent at all


def test_ray_agents_go_with_a_killed_program():
    """Ray's agents outlive a killed raylet (and ignore SIGTERM): the watcher started with a private cluster kills
    what is titled ray:: in the program's process group once the program is gone, and nothing else."""
    import time

    from clicklabel.cluster.reaper import _alive

    code = ("import subprocess, time\n"
            "from clicklabel.cluster.reaper import start_reaper\n"
            "r = start_reaper()\n"
            "agent = subprocess.Popen(['bash', '-c', 'exec -a ray::FakeAgent sleep 120'])\n"
            "other = subprocess.Popen(['sleep', '120'])\n"
            "print(agent.pid, other.pid, r.pid, flush=True)\n"
            "time.sleep(120)\n")
    driver = subprocess.Popen([sys.executable, "-c", code], start_new_session=True, stdout=subprocess.PIPE, text=True)
    agent, other, watcher = (int(v) for v in driver.stdout.readline().split())
    try:
        for _ in range(100):  # until bash has become the agent
            with open(f"/proc/{agent}/cmdline", "rb") as f:
                if f.read().startswith(b"ray::"):
                    break
            time.sleep(0.05)
        assert _alive(agent) and _alive(other) and _alive(watcher)
        driver.kill()
        driver.wait()
        for _ in range(100):
            if not _alive(agent):
                break
            time.sleep(0.1)
        assert not _alive(agent) and _alive(other)
    finally:
        for pid in (agent, other, watcher):
            try:
                os.kill(pid, 9)
            except OSError:
                pass
