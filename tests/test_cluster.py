"""``--ray``: the same results as without, resumable after a worker is killed; a clear error without the extra."""

from __future__ import annotations

import os
import signal
import sys

import pytest

from clicklabel.cli import main

from conftest import SAMPLES

NAMES = ("rocket", "coffee", "astronaut")


def _folder(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(2):
        for n in NAMES:
            img = (SAMPLES / f"{n}.jpg").read_bytes()
            (folder / f"{n}{i}.jpg").write_bytes(img if i == 0 else img + bytes([i]))  # same pixels: deduped
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    return folder


def _entries(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.npz"))


def test_precompute_ray_matches_local_and_resumes(ray_cluster, tiny_checkpoint, tmp_path, capsys):
    folder = _folder(tmp_path)
    args = ["precompute", str(folder), "--model", "auto", "--checkpoint", str(tiny_checkpoint), "--device", "cpu",
            "--batch", "2"]
    assert main(args + ["--cache", str(tmp_path / "local")]) == 0
    local = capsys.readouterr().out
    assert main(args + ["--cache", str(tmp_path / "ray"), "--ray"]) == 0
    out = capsys.readouterr().out
    assert "1 unreadable" in local and "1 unreadable" in out and "broken.jpg" in out
    assert _entries(tmp_path / "ray") == _entries(tmp_path / "local") and len(_entries(tmp_path / "local")) == 3
    assert main(args + ["--cache", str(tmp_path / "ray"), "--ray"]) == 0
    assert "0 encoded, 6 already cached" in capsys.readouterr().out


def test_propose_ray_stores_the_same_proposals(ray_cluster, tiny_checkpoint, tmp_path, capsys):
    from clicklabel.project.store import Store

    common = ["--model", "auto", "--checkpoint", str(tiny_checkpoint), "--device", "cpu", "--grid", "4",
              "--pred-iou-thresh", "0", "--stability-thresh", "0", "--max", "3"]
    found = {}
    for how in ("local", "ray"):
        proj = tmp_path / f"{how}.clicklabel"
        images = [str(SAMPLES / f"{n}.jpg") for n in NAMES]
        assert main(["add", str(proj), *images]) == 0
        assert main(["propose", str(proj), *common] + (["--ray"] if how == "ray" else [])) == 0
        found[how] = sorted(((o.image_id, o.state, o.score, o.mask)
                             for o in Store(proj).objects(states=("proposed", "accepted"))), key=lambda f: f[:3])
    assert [f[:2] for f in found["ray"]] == [f[:2] for f in found["local"]]
    assert {f[0] for f in found["ray"]} == {1, 2, 3}
    # the same proposals; the second run reads the embedding from the cache the first wrote (float16), hence ~
    for (_, _, s1, m1), (_, _, s2, m2) in zip(found["ray"], found["local"]):
        assert abs(s1 - s2) < 0.02 and (m1 & m2).sum() / max(1, (m1 | m2).sum()) > 0.97
    assert main(["propose", str(tmp_path / "ray.clicklabel"), *common, "--ray"]) == 0  # rerun: nothing repeated
    assert "0 proposals written" in capsys.readouterr().out


def test_killed_worker_loses_nothing(ray_cluster, tiny_checkpoint, tmp_path):
    from clicklabel.cluster.workers import make_workers, ray_precompute

    paths = sorted(_folder(tmp_path).glob("*.jpg"))
    spec = {"engine": "sam", "model": "auto", "checkpoint": str(tiny_checkpoint), "device": "cpu"}
    workers = make_workers(ray_cluster, spec, str(tmp_path / "cache"), max_workers=1)
    pid = ray_cluster.get(workers[0].ping.remote())
    killed = []

    def progress(n):
        if not killed:
            os.kill(pid, signal.SIGKILL)
            killed.append(n)

    stats = ray_precompute(ray_cluster, workers, paths, batch=1, progress=progress)
    assert killed and stats["failed"] == 1 and stats["encoded"] + stats["cached"] == 6
    assert len(_entries(tmp_path / "cache")) == 3
    assert not list((tmp_path / "cache").rglob("*.tmp"))
    assert ray_cluster.get(workers[0].ping.remote()) != pid  # restarted
    again = ray_precompute(ray_cluster, workers, paths, batch=3)
    assert again["encoded"] == 0 and again["cached"] == 6


def test_ray_without_the_extra_names_it(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    folder = _folder(tmp_path)
    assert main(["precompute", str(folder), "--ray"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["clicklabel: error: --ray needs Ray, which is not installed: pip install 'clicklabel[ray]'"]


@pytest.fixture(autouse=True)
def _quiet_tqdm(monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")


def test_label_ray_gives_the_same_labels_and_pays_once(ray_cluster, tmp_path, monkeypatch, capsys):
    """label --ray against the loopback model server: the labels of a local run, one request per crop (a second run
    and the local run after it are answered from the driver's cache: no request is paid twice)."""
    import numpy as np
    from PIL import Image

    from clicklabel.project.store import Store

    from lmm_server import FakeLMM

    def answer(body, img):  # the label depends on the crop, so a mix-up between objects would show
        return {"label": f"thing {int(img.mean()) % 7}", "category": "thing", "confidence": 0.9}

    rng = np.random.default_rng(3)
    projects = {}
    for how in ("local", "ray"):
        s = Store(tmp_path / f"{how}.clicklabel", root=tmp_path)
        for i in range(3):
            path = tmp_path / f"im{i}.png"
            if not path.exists():
                Image.fromarray(rng.integers(0, 255, (80, 100, 3), dtype=np.uint8)).save(path)
            iid = s.add_image_file(path)
            for k in range(4):
                m = np.zeros((80, 100), bool)
                m[4 + 15 * k: 16 + 15 * k, 5 + 10 * k: 70] = True
                s.accept(iid, m)
        s.close()
        projects[how] = tmp_path / f"{how}.clicklabel"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    with FakeLMM(answer=answer) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.url)
        monkeypatch.setenv("CLICKLABEL_CACHE", str(tmp_path / "cache_ray"))
        assert main(["label", str(projects["ray"]), "--ray", "--concurrency", "4"]) == 0
        assert "labelled 12, failed 0 (0 from the cache)" in capsys.readouterr().out
        assert len(server.requests) == 12 and sorted(server.attempts.values()) == [1] * 12
        assert main(["label", str(projects["ray"]), "--ray", "--all"]) == 0
        assert "labelled 12, failed 0 (12 from the cache)" in capsys.readouterr().out
        monkeypatch.setenv("CLICKLABEL_CACHE", str(tmp_path / "cache_local"))
        assert main(["label", str(projects["local"])]) == 0
        assert len(server.requests) == 24  # the local run's own cache: each crop once more, no more
    labels = {how: [(o.image_id, o.label, o.label_status) for o in Store(p).objects()] for how, p in projects.items()}
    assert labels["ray"] == labels["local"] and len({lab for _, lab, _ in labels["ray"]}) > 1


def test_refine_ray_writes_the_masks_of_a_local_run(ray_cluster, tiny_checkpoint, tmp_path, capsys):
    from clicklabel.project.store import Store

    from conftest import box_only_file

    path, _ = box_only_file(tmp_path)
    common = ["--model", "auto", "--checkpoint", str(tiny_checkpoint), "--device", "cpu", "--batch", "3"]
    found = {}
    assert main(["precompute", str(tmp_path), *common[:6]]) == 0  # both runs decode the same cached embedding
    for how in ("local", "ray"):
        project = str(tmp_path / f"{how}.clicklabel")
        assert main(["import", str(path), "--images", str(tmp_path), "--project", project]) == 0
        assert main(["refine", project, *common] + (["--ray"] if how == "ray" else [])) == 0
        out = capsys.readouterr().out
        assert "refined 5 objects on 1 images" in out, out
        found[how] = [(o.source_id, o.rle, o.bbox, o.given_bbox, o.review, o.refined_by)
                      for o in Store(project).objects()]
    assert found["ray"] == found["local"] and all(f[5] for f in found["ray"] if f[3] is not None)
    assert main(["refine", str(tmp_path / "ray.clicklabel"), *common, "--ray"]) == 0
    assert "nothing to refine" in capsys.readouterr().out
