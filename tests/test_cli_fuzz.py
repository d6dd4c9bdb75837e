"""Every CLI command against a table of bad inputs: each ends in one line on stderr (or a per-item report) with
exit status 1 or 2, never a traceback, never a `.part` file, and the project's earlier objects stay whole."""

import json
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from clicklabel.cli import main
from clicklabel.project import Store

from conftest import ROOT


def _png_header(path: Path, w: int, h: int) -> None:
    """A PNG whose header claims w x h pixels (the pixel data is a few bytes: nothing should ever decode it)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


def _coco(images, annotations, categories=None) -> dict:
    return {"images": images, "annotations": annotations,
            "categories": categories if categories is not None else [{"id": 1, "name": "thing"}]}


GOOD_IMAGE = {"id": 1, "file_name": "good.png", "width": 80, "height": 60}
SQUARE = [[10, 10, 30, 10, 30, 30, 10, 30]]


def _ann(**kw) -> dict:
    return {"id": 1, "image_id": 1, "category_id": 1, "segmentation": SQUARE, **kw}


# name -> COCO document (dict) or raw bytes; all are refused in whole or in part
HOSTILE_COCO = {
    "non_dict_entries": _coco([1, "x", None], [[1, 2], "a"], ["c"]),
    "string_sizes": _coco([{**GOOD_IMAGE, "width": "80", "height": "60"}], [_ann()]),
    "list_ids": _coco([{**GOOD_IMAGE, "id": [1]}], [_ann(id=[2], image_id=[1])]),
    "text_coordinates": _coco([GOOD_IMAGE], [_ann(segmentation=[["10", "10", "30", "10", "30", "30"]])]),
    "negative_rle": _coco([GOOD_IMAGE], [_ann(segmentation={"size": [60, 80], "counts": [-5, 4805]})]),
    "nan_coordinate": _coco([GOOD_IMAGE], [_ann(segmentation=[[10, 10, float("nan"), 10, 30, 30]])]),
    "inf_coordinate": _coco([GOOD_IMAGE], [_ann(segmentation=[[10, 10, float("inf"), 10, 30, 30]])]),
    "huge_coordinate": _coco([GOOD_IMAGE], [_ann(segmentation=[[10, 10, 1e12, 10, 30, 1e12]])]),
    "absurd_size": _coco([{**GOOD_IMAGE, "width": 100000, "height": 100000}], [_ann()]),
    "size_disagrees": _coco([{**GOOD_IMAGE, "width": 81}], [_ann()]),
    "zero_size": _coco([{**GOOD_IMAGE, "width": 0, "height": 0}], [_ann()]),
    "garbage_rle": _coco([GOOD_IMAGE], [_ann(segmentation={"size": [60, 80], "counts": "\x7f\x7f]]]]]"})]),
    "rle_ends_mid_number": _coco([GOOD_IMAGE], [_ann(segmentation={"size": [60, 80], "counts": "0hh"})]),
    "rle_size_text": _coco([GOOD_IMAGE], [_ann(segmentation={"size": "60x80", "counts": "0"})]),
    "nan_bbox": _coco([GOOD_IMAGE], [_ann(bbox=[float("nan"), 1, 2, 3])]),
    "box_no_area": _coco([GOOD_IMAGE], [_ann(segmentation=[], bbox=[1, 1, 0, 5])]),
    "box_no_bbox": _coco([GOOD_IMAGE], [_ann(segmentation=[])]),
    "box_outside": _coco([GOOD_IMAGE], [_ann(segmentation=[[]], bbox=[82, 10, 5, 5])]),
    "box_nan": _coco([GOOD_IMAGE], [_ann(segmentation=None, bbox=[1, 1, float("inf"), 5])]),
    "iscrowd_two": _coco([GOOD_IMAGE], [_ann(iscrowd=2)]),
    "category_clash": _coco([GOOD_IMAGE], [_ann()], [{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]),
    "duplicate_image_ids": _coco([GOOD_IMAGE, {**GOOD_IMAGE, "file_name": "other.png"}], [_ann()]),
    "unknown_refs": _coco([GOOD_IMAGE], [_ann(image_id=9), _ann(id=2, category_id=9)]),
    "path_traversal": _coco([{**GOOD_IMAGE, "file_name": "../../etc/passwd"}], [_ann()]),
    "polygon_too_long": _coco([GOOD_IMAGE], [_ann(segmentation=[[10, 10, 70, 50] * 300_000])]),
}
# why each hostile file (or part of it) is refused, in the report of `import` and of import_coco
HOSTILE_REASONS = {
    "string_sizes": "not a whole number", "list_ids": "not an integer id", "text_coordinates": "not a number",
    "negative_rle": "negative", "nan_coordinate": "not a finite number", "inf_coordinate": "not a finite",
    "huge_coordinate": "outside its image", "absurd_size": "larger than", "size_disagrees": "but the file is",
    "zero_size": "not a whole number of pixels >= 1", "garbage_rle": "outside '0'..'o'",
    "rle_ends_mid_number": "middle of a number", "rle_size_text": "not [height, width]",
    "nan_bbox": "not finite", "box_no_area": "has no area", "box_no_bbox": "neither a segmentation nor a bbox",
    "box_outside": "lies outside its image", "box_nan": "not finite",
    "iscrowd_two": "neither 0 nor 1", "category_clash": "names both", "duplicate_image_ids": "names two images",
    "unknown_refs": "unknown category", "path_traversal": "points outside",
    "polygon_too_long": "outline is longer", "non_dict_entries": "not an object",
}
RAW_COCO = {
    "not_utf8": b'{"images": [], "annotations": [], "categories": [], "x": "\xff\xfe"}',
    "not_json": b'{"images": [',
    "top_list": b"[1, 2, 3]",
    "deep": b"[" * 100_000 + b"]" * 100_000,
    "no_categories": b'{"images": [], "annotations": []}',
    "images_not_list": b'{"images": {}, "annotations": [], "categories": []}',
}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A project with three objects, images good and bad, and hostile COCO files."""
    d = tmp_path_factory.mktemp("fuzz")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(d / "good.png")
    Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(d / "other.png")
    (d / "text.txt").write_text("hello")
    (d / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 50)
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(d / "full.jpg")
    (d / "cut.jpg").write_bytes((d / "full.jpg").read_bytes()[:200])
    _png_header(d / "huge.png", 30000, 20000)  # 600 Mpx: over clicklabel's limit
    _png_header(d / "bomb.png", 40000, 40000)  # 1.6 Gpx: over Pillow's own bomb limit too
    (d / "empty_dir").mkdir()
    (d / "a_dir").mkdir()
    (d / "junk.clicklabel").write_bytes(b"this is not sqlite" * 100)
    (d / "bad_prices.json").write_text("[1, 2]")
    for name, doc in HOSTILE_COCO.items():
        (d / f"{name}.json").write_text(json.dumps(doc))  # NaN and inf go in as JSON's NaN / Infinity
    for name, raw in RAW_COCO.items():
        (d / f"{name}.json").write_bytes(raw)
    s = Store(d / "p.clicklabel", root=d)
    iid = s.add_image_file(d / "good.png")
    for k in range(3):
        m = np.zeros((60, 80), bool)
        m[5 + 15 * k : 15 + 15 * k, 10:40] = True
        oid = s.accept(iid, m)
        if k == 0:
            s.set_label(oid, "thing", "stuff", 0.9, "m")
    s.close()
    return d


def _snapshot(path: Path) -> list:
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return conn.execute("SELECT id, image_id, rle, bbox, area, state, label, label_status FROM objects "
                            "ORDER BY id").fetchall()
    finally:
        conn.close()


P = "{d}/p.clicklabel"
CASES = [
    # segment
    (["segment", "{d}/missing.jpg", "--point", "1,1"], 2, "image not found"),
    (["segment", "{d}/a_dir", "--point", "1,1"], 2, "folder"),
    (["segment", "{d}/text.txt", "--point", "1,1"], 2, "not an image"),
    (["segment", "{d}/cut.jpg", "--point", "1,1"], 2, "cannot read image"),
    (["segment", "{d}/corrupt.png", "--point", "1,1"], 2, "image"),
    (["segment", "{d}/huge.png", "--point", "1,1"], 2, "larger than 400,000,000 pixels"),
    (["segment", "{d}/bomb.png", "--point", "1,1"], 2, "larger than 400,000,000 pixels"),
    (["segment", "{d}/good.png", "--point", "nan,nan"], 2, "outside"),
    (["segment", "{d}/good.png", "--point", "1e309,1"], 2, "outside"),
    (["segment", "{d}/good.png", "--point", "1;1"], 2, "must look like"),
    (["segment", "{d}/good.png", "--point", "1,1:7"], 2, "must be 1 or 0"),
    (["segment", "{d}/good.png", "--box", "50,50,10,10"], 2, "x1 > x0"),
    (["segment", "{d}/good.png", "--box", "nan,1,2,3"], 2, "box"),
    (["segment", "{d}/good.png"], 2, "empty prompt"),
    (["segment", "{d}/good.png", "--box", "5,5,60,50", "--engine", "grabcut", "--out", "{d}/a_dir"], 2, "folder"),
    (["segment", "{d}/good.png", "--point", "1,1", "--engine", "nope"], 2, "unknown engine"),
    (["segment", "{d}/good.png", "--point", "1,1", "--device", "tpu"], 2, "unknown device"),
    (["segment", "{d}/good.png", "--point", "1,1", "--encoder", "turbo"], 2, "invalid choice"),
    (["segment", "{d}/good.png", "--point", "1,1", "--model", "auto", "--checkpoint", "{d}/missing.pth"], 2,
     "checkpoint not found"),
    (["segment", "{d}/good.png", "--point", "1,1", "--model", "auto", "--checkpoint", "{d}/text.txt"], 2,
     "not a PyTorch checkpoint"),
    # weights
    (["weights", "download"], 2, "name the model"),
    (["weights", "download", "vit_q"], 2, "vit_q"),
    (["weights", "verify", "vit_q"], 2, "vit_q"),
    (["weights", "frobnicate"], 2, "invalid choice"),
    # add
    (["add", P, "{d}/missing.jpg"], 2, "not found"),
    (["add", P, "{d}/text.txt"], 1, "not an image file name"),
    (["add", P, "{d}/huge.png"], 1, "larger than 400,000,000 pixels"),
    (["add", P, "{d}/corrupt.png"], 1, "cannot read image"),
    (["add", P, "{d}/empty_dir"], 2, "no images"),
    (["add", "{d}/text.txt", "{d}/good.png"], 2, "not a clicklabel project"),
    (["add", "{d}/junk.clicklabel", "{d}/good.png"], 2, "not a clicklabel project"),
    # propose
    (["propose", P, "--grid", "0"], 2, "--grid"),
    (["propose", P, "--grid", "-5"], 2, "--grid"),
    (["propose", P, "--grid", "1000"], 2, "grid"),
    (["propose", P, "--pred-iou-thresh", "nan"], 2, "finite"),
    (["propose", P, "--max", "0"], 2, "--max"),
    (["propose", "{d}/missing.jpg"], 2, "image not found"),
    (["propose", "{d}/text.txt"], 2, "not an image"),
    (["propose", "{d}/missing.clicklabel"], 2, "no project"),
    # export
    (["export", "{d}/missing.clicklabel", "--out", "{d}/x.json"], 2, "no project"),
    (["export", P, "--out", "{d}/a_dir"], 2, "is a folder"),
    (["export", P, "--out", "/dev/null/x.json"], 2, "/dev/null"),
    (["export", "{d}/junk.clicklabel", "--out", "{d}/x.json"], 2, "not a clicklabel project"),
    (["export", "{d}/text.txt", "--out", "{d}/x.json"], 2, "not a clicklabel project"),
    (["export", P], 2, "--out"),
    # import: whole-file problems
    (["import", "{d}/missing.json", "--images", "{d}", "--project", "{d}/q.clicklabel"], 2, "not found"),
    (["import", "{d}/a_dir", "--images", "{d}", "--project", "{d}/q.clicklabel"], 2, "is a folder"),
    (["import", "{d}/not_utf8.json", "--images", "{d}", "--project", "{d}/q.clicklabel"], 2, "UTF-8"),
    (["import", "{d}/not_json.json", "--images", "{d}", "--project", "{d}/q.clicklabel"], 2, "not valid JSON"),
    (["import", "{d}/top_list.json", "--images", "{d}", "--project", "{d}/q.clicklabel"], 2, "top level"),
    (["import", "{d}/deep.json", "--images", "{d}", "--project", "{d}/q.clicklabel"], 2, "nested"),
    (["import", "{d}/no_categories.json", "--images", "{d}", "--project", P], 2, "categories"),
    (["import", "{d}/images_not_list.json", "--images", "{d}", "--project", P], 2, "images"),
    (["import", "{d}/nan_coordinate.json", "--images", "{d}/missing", "--project", P], 2, "not a folder"),
    (["import", "{d}/nan_coordinate.json", "--images", "{d}", "--project", "{d}/junk.clicklabel"], 2, "not a"),
    (["import", "{d}/nan_coordinate.json", "--images", "{d}", "--project", P, "--strict"], 2, "nothing imported"),
    (["import", "{d}/nan_coordinate.json", "--images", "{d}", "--project", P, "--merge", "--replace"], 2,
     "not allowed"),
] + [
    # import: item by item, into the project that holds the earlier objects
    (["import", f"{{d}}/{name}.json", "--images", "{d}", "--project", P], 1, HOSTILE_REASONS[name])
    for name in HOSTILE_COCO
] + [
    # report
    (["report", "{d}/missing.clicklabel", "--out", "{d}/r"], 2, "no project"),
    (["report", P, "--out", "{d}/text.txt"], 2, "is a file"),
    # label
    (["label", P, "--timeout", "nan"], 2, "--timeout"),
    (["label", P, "--timeout", "-1"], 2, "--timeout"),
    (["label", P, "--concurrency", "0"], 2, "--concurrency"),
    (["label", P, "--prompt-template", "{d}/missing.txt"], 2, "prompt template"),
    (["label", P, "--prompt-template", "{d}/a_dir"], 2, "prompt template"),
    (["label", P, "--vocab-file", "{d}/missing.txt"], 2, "vocabulary file"),
    (["label", P, "--prices", "{d}/bad_prices.json"], 2, "price table"),
    (["label", P, "--prices", "{d}/not_json.json"], 2, "price table"),
    (["label", P], 2, "OPENAI_API_KEY"),
    (["label", "{d}/missing.clicklabel"], 2, "no project"),
    (["label", P, "--detail", "ultra"], 2, "invalid choice"),
    (["label", P, "--check", "--vocab-file", "{d}/missing.txt"], 2, "vocabulary file"),
    (["label", P, "--check"], 2, "OPENAI_API_KEY"),
    # refine
    (["refine", "{d}/missing.clicklabel"], 2, "no project"),
    (["refine", "{d}/junk.clicklabel"], 2, "not a clicklabel project"),
    (["refine", P, "--batch", "0"], 2, "--batch"),
    (["refine", P, "--min-iou", "nan"], 2, "--min-iou"),
    (["refine", P, "--min-iou", "2"], 2, "out of range"),
    (["refine", P, "--engine", "nope"], 2, "unknown engine"),
    (["refine", P, "--device", "tpu"], 2, "unknown device"),
    # bench
    (["bench", "labels"], 2, "--data"),
    (["bench", "noc"], 2, "--data"),
    (["bench", "noc", "--data", "{d}/missing"], 2, "expected images/"),
    (["bench", "noc", "--data", "{d}/not_json.json"], 2, "not valid JSON"),
    (["bench", "latency", "--device", "tpu"], 2, "unknown device"),
    (["bench", "refine", "--device", "tpu"], 2, "unknown device"),
    (["bench", "refine", "--boxes", "0"], 2, "--boxes"),
    (["bench", "nope"], 2, "invalid choice"),
    (["bench", "noc", "--max-clicks", "0"], 2, "--max-clicks"),
    # demo, precompute, the root
    (["demo", "--out", "{d}/text.txt"], 2, "is a file"),
    (["precompute", "{d}/missing"], 2, "not a folder of images or a project"),
    (["precompute", "{d}/text.txt"], 2, "not a folder of images or a project"),
    (["precompute", "{d}", "--batch", "0"], 2, "--batch"),
    ([], 2, "required"),
    (["--nope"], 2, "required: command"),  # argparse stops at the missing command
]


def test_the_table_is_large():
    commands = {c[0][0] for c in CASES if c[0] and not c[0][0].startswith("-")}
    assert len(CASES) >= 60 and len(commands) == 12  # every command but gui (a program of the plugin's)


@pytest.mark.parametrize("argv, code, needle", CASES, ids=[" ".join(c[0][:2]) + f" #{i}" for i, c in
                                                            enumerate(CASES)])
def test_bad_input(world, capsys, monkeypatch, argv, code, needle):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("CLICKLABEL_WEIGHTS", str(world / "no_weights"))  # nothing to load, nothing downloaded
    before = _snapshot(world / "p.clicklabel")
    try:
        got = main([a.replace("{d}", str(world)) for a in argv])
    except SystemExit as exc:  # argparse
        got = exc.code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    assert got == code, (got, out, err)
    if code == 2:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert len(lines) == 1 and "error" in lines[0], err
        assert needle in lines[0], (needle, err)
    else:  # a per-item report, each item with its reason
        assert any(ln.startswith("skipped: ") and needle in ln for ln in out.splitlines()), (needle, out)
    after = _snapshot(world / "p.clicklabel")
    assert after[: len(before)] == before  # earlier objects intact (an import may add valid ones after them)
    assert not list(world.rglob("*.part")), "a .part file was left behind"


def test_each_hostile_coco_file_names_its_reason(world):
    from clicklabel.coco import import_coco

    assert set(HOSTILE_REASONS) == set(HOSTILE_COCO)
    for name, reason in HOSTILE_REASONS.items():
        s = Store(world / f"scratch_{name}.clicklabel", root=world)
        rep = import_coco(world / f"{name}.json", world, s)
        assert any(reason in p for p in rep.problems), (name, rep.problems)
        assert s.integrity_ok()
        s.close()


def _subprocess(args, env=None, **kw):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
           **(env or {})}
    return subprocess.run([sys.executable, "-m", "clicklabel.cli", *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=120, **kw)


def test_true_subprocess_runs(world, tmp_path):
    """A few bad inputs through the real program: one line on stderr, the right status, no traceback."""
    for args, code in [(["segment", world / "huge.png", "--point", "1,1"], 2),
                       (["import", world / "nan_coordinate.json", "--images", world, "--project", tmp_path / "q"], 1),
                       (["export", world / "junk.clicklabel", "--out", tmp_path / "x.json"], 2),
                       (["propose", world / "p.clicklabel", "--grid", "0"], 2)]:
        r = _subprocess(args)
        assert r.returncode == code and "Traceback" not in r.stderr + r.stdout, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) <= 1, r.stderr


def _unshare_ok() -> bool:
    if not shutil.which("unshare") or sys.platform != "linux":
        return False
    r = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True)
    return r.returncode == 0


@pytest.mark.skipif(not _unshare_ok(), reason="needs `unshare` (user + mount namespaces) to mount a small disk")
def test_full_disk_and_read_only_media_are_named(world, tmp_path):
    """A real 64 KiB tmpfs (in a private mount namespace): a full disk and read-only media, named as such."""
    disk = tmp_path / "disk"
    disk.mkdir()
    shutil.copy(world / "p.clicklabel", tmp_path / "p.clicklabel")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "CLICKLABEL_CACHE": str(tmp_path / "cache")}
    cli = f"{sys.executable} -m clicklabel.cli"
    script = f"""
set -u
mount -t tmpfs -o size=64k tmpfs {disk}
cat /dev/zero > {disk}/filler 2>/dev/null
{cli} export {tmp_path}/p.clicklabel --out {disk}/out.json --polygons; echo "rc=$?"
{cli} segment {world}/good.png --box 5,5,60,50 --engine grabcut --out {disk}/m.png; echo "rc=$?"
{cli} report {tmp_path}/p.clicklabel --out {disk}/report; echo "rc=$?"
rm {disk}/filler
cp {tmp_path}/p.clicklabel {disk}/p.clicklabel
mount -o remount,ro {disk}
{cli} add {disk}/p.clicklabel {world}/other.png; echo "rc=$?"
{cli} import {world}/nan_coordinate.json --images {world} --project {disk}/new.clicklabel; echo "rc=$?"
ls -a {disk}
"""
    r = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script], capture_output=True,
                       text=True, env=env, timeout=120)
    assert "Traceback" not in r.stdout + r.stderr, r.stderr
    assert r.stdout.count("rc=1") == 5, (r.stdout, r.stderr)
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("clicklabel: error")]
    assert len(errors) == 5, r.stderr
    assert all("disk is full" in e for e in errors[:3]), errors
    assert "read-only" in errors[3] and "read-only" in errors[4]
    assert ".part" not in r.stdout  # the listing of the disk: no temporary file left
    assert _snapshot(tmp_path / "p.clicklabel") == _snapshot(world / "p.clicklabel")
