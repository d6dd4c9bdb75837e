"""One cache root and one atomic write (``clicklabel.files``)."""

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from clicklabel.errors import ClickLabelError
from clicklabel.files import atomic_write, cache_root, ensure_folder, write_text

from conftest import ROOT, SAMPLES
from lmm_server import FakeLMM


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    target = tmp_path / "sub" / "a.json"
    write_text(target, "first")
    with pytest.raises(RuntimeError):
        with atomic_write(target, "w") as f:
            f.write("half of the second")
            raise RuntimeError("killed midway")
    assert target.read_text() == "first"
    assert sorted(p.name for p in target.parent.iterdir()) == ["a.json"]  # no .part left behind


def test_only_durable_writes_fsync_and_the_folder_is_made_when_missing(tmp_path, monkeypatch):
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    with atomic_write(tmp_path / "new" / "deeper" / "a.bin") as f:  # folders made as needed
        f.write(b"kept")
    assert len(synced) == 1
    with atomic_write(tmp_path / "new" / "deeper" / "b.bin", durable=False) as f:  # a cache entry
        f.write(b"cache")
    assert len(synced) == 1
    assert (tmp_path / "new" / "deeper" / "b.bin").read_bytes() == b"cache"
    assert sorted(p.name for p in (tmp_path / "new" / "deeper").iterdir()) == ["a.bin", "b.bin"]


def test_atomic_write_errors_are_one_line(tmp_path):
    (tmp_path / "folder").mkdir()
    with pytest.raises(ClickLabelError, match="is a folder"):
        write_text(tmp_path / "folder", "x")
    (tmp_path / "file").write_text("")
    with pytest.raises(ClickLabelError, match="cannot write|not a directory|Not a directory"):
        write_text(tmp_path / "file" / "inside.json", "x")
    with pytest.raises(ClickLabelError, match="is a file"):
        ensure_folder(tmp_path / "file")


def test_no_permission_is_one_line(open_folder):
    """A folder one may enter but not write in, and one that may not even be looked into: one-line errors (the
    second was a PermissionError traceback). Run as root, the writes are made as 'nobody'."""
    ro, locked = open_folder / "ro", open_folder / "locked"
    ro.mkdir(mode=0o555)
    locked.mkdir(mode=0o000)
    for target in (ro / "x.json", locked / "x.json"):
        with _unprivileged(), pytest.raises(ClickLabelError, match="no permission to write"):
            write_text(target, "x")
    with _unprivileged(), pytest.raises(ClickLabelError, match="no permission to write"):
        ensure_folder(locked / "out")
    assert list(ro.iterdir()) == [] and list(locked.iterdir()) == []


@pytest.fixture
def open_folder():
    """A folder every user may enter (pytest's tmp_path is private to its owner: 'nobody' could not enter it)."""
    d = Path(tempfile.mkdtemp(prefix="clicklabel-test-"))
    d.chmod(0o755)
    yield d
    for p in d.iterdir():
        p.chmod(0o755)
    shutil.rmtree(d)


@contextlib.contextmanager
def _unprivileged():
    """Root writes anywhere: as root, act as 'nobody' for the block (the effective uid only, given back after)."""
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)


def test_cache_root_is_the_environment_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("CLICKLABEL_CACHE", str(tmp_path / "c"))
    from clicklabel.embeddings import cache_dir

    assert cache_root() == tmp_path / "c" and cache_dir() == tmp_path / "c" / "embeddings"


def _files(folder):
    return {p for p in folder.rglob("*") if p.is_file()}


def test_segment_and_label_write_only_under_the_cache_root(tmp_path, tiny_checkpoint):
    """Run as a user would (new processes, an empty home): besides the outputs asked for and the project itself,
    every file written is under $CLICKLABEL_CACHE."""
    home, cache, work = tmp_path / "home", tmp_path / "D", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    (work / "cat.jpg").write_bytes((SAMPLES / "chelsea.jpg").read_bytes())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "CLICKLABEL_", "MPL", "TORCH"))}
    env.update(HOME=str(home), CLICKLABEL_CACHE=str(cache), CLICKLABEL_WEIGHTS=str(tmp_path / "weights"),
               OPENAI_API_KEY="sk-local", PYTHONPATH=str(ROOT / "src"), TMPDIR=str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    cli = [sys.executable, "-m", "clicklabel.cli"]

    def run(*args):
        res = subprocess.run([*cli, *map(str, args)], cwd=work, env=env, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-2000:]
        return res.stdout

    before = _files(tmp_path)
    run("segment", "cat.jpg", "--box", "100,50,350,280", "--model", "auto", "--checkpoint", tiny_checkpoint,
        "--device", "cpu", "--out", "mask.png")
    run("add", "project.clicklabel", "cat.jpg")
    with FakeLMM() as server:
        env["OPENAI_BASE_URL"] = server.url
        from clicklabel.project import open_project

        store = open_project(work / "project.clicklabel")
        run("segment", "cat.jpg", "--box", "100,50,350,280", "--model", "auto", "--checkpoint", tiny_checkpoint,
            "--device", "cpu")  # cached now
        im = store.images()[0]
        import numpy as np

        m = np.zeros((im.height, im.width), bool)
        m[50:200, 100:300] = True
        store.accept(im.id, m)
        store.close()
        assert "labelled 1" in run("label", "project.clicklabel")
    new = _files(tmp_path) - before
    outside = [p for p in new if cache not in p.parents and p.parent != work]
    assert outside == [], outside
    assert {p.name for p in new if p.parent == work} <= {"mask.png", "project.clicklabel", "project.clicklabel-wal",
                                                         "project.clicklabel-shm"}
    assert list((cache / "embeddings").rglob("*.npz")) and (cache / "labels" / "answers.sqlite").is_file()
    assert not any(cache.parent.glob("labels*"))  # nothing beside the root
