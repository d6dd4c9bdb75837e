"""Refine: box-only objects get the engine's masks from their boxes, batched per image; the given box is kept,
doubtful results are flagged, the run is resumable, cancellable and idempotent, and every change undoable."""

import json
import re
import sqlite3
import threading

import numpy as np
import pytest

from clicklabel.cli import main
from clicklabel.coco import import_coco
from clicklabel.masks import decode_rle, tight_bbox
from clicklabel.project import MaskUpdate, RefineSettings, Store, refine_project, refine_targets
from clicklabel.project.refine import review_reason
from clicklabel.segment import make_engine

from conftest import box_only_file, box_scene

GIVEN = {1: (28, 18, 64, 44), 2: (95, 65, 55, 50), 3: (2, 2, 20, 15), 4: (140.5, 100.25, 19.5, 19.75)}


def _imported(tmp_path) -> Store:
    path, _ = box_only_file(tmp_path)
    s = Store(tmp_path / "p.clicklabel", root=tmp_path)
    import_coco(path, tmp_path, s)
    return s


def _snapshot(path):
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT * FROM objects ORDER BY id").fetchall(), \
            conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    finally:
        conn.close()


def test_refine_cli_random_sam_every_box_gets_its_mask_and_a_second_run_changes_nothing(tmp_path, tiny_checkpoint,
                                                                                         capsys):
    """The plumbing, with the small random SAM (its masks mean nothing; this checkpoint makes none empty here)."""
    path, doc = box_only_file(tmp_path)
    project = str(tmp_path / "p.clicklabel")
    assert main(["import", str(path), "--images", str(tmp_path), "--project", project]) == 0
    capsys.readouterr()
    args = ["refine", project, "--model", "auto", "--checkpoint", str(tiny_checkpoint), "--device", "cpu",
            "--batch", "3", "--only-boxes"]
    assert main(args) == 0
    out = capsys.readouterr().out
    s = Store(project)
    flagged = len(s.objects(flagged=True))
    assert "refined 4 objects on 1 images" in out and f"flagged {flagged} for review" in out, out
    assert main(["export", project, "--out", str(tmp_path / "out.json")]) == 0
    anns = {a["id"]: a for a in json.loads((tmp_path / "out.json").read_text())["annotations"]}
    for k, given in GIVEN.items():
        ob = next(o for o in s.objects() if o.source_id == k)
        assert ob.has_mask and ob.mask.any() and ob.given_bbox == given and ob.refined_by and ob.engine == "sam"
        seg = anns[k]["segmentation"]
        mask = decode_rle(seg)
        assert mask.any() and list(tight_bbox(mask)) == anns[k]["bbox"] == list(ob.bbox)  # tight box exported
        assert anns[k]["area"] == int(mask.sum()) and anns[k]["clicklabel"]["given_bbox"] == list(given)
        assert anns[k]["clicklabel"].get("review") == ob.review
    before = _snapshot(project)
    assert main(args) == 0
    assert "nothing to refine" in capsys.readouterr().out
    assert _snapshot(project) == before  # a second refine changes nothing, not even the event log
    # without --only-boxes, the imported RLE that is just a rectangle (a box written as a mask) is refined too
    assert main(args[:-1]) == 0
    assert "refined 1 objects" in capsys.readouterr().out
    rect = next(o for o in s.objects() if o.source_id == 6)
    assert rect.given_bbox == (10, 70, 30, 30) and rect.refined_by
    before = _snapshot(project)
    assert main(args[:-1]) == 0 and "nothing to refine" in capsys.readouterr().out
    assert _snapshot(project) == before
    s.close()


def test_refine_grabcut_fits_the_boxes_and_flags_what_disagrees(tmp_path):
    s = _imported(tmp_path)
    engine = make_engine("grabcut")
    seen = []
    rep = refine_project(s, engine, RefineSettings(only_boxes=True), progress=lambda d, t: seen.append((d, t)))
    assert seen == [(1, 1)] and rep.images == 1 and not rep.errors
    by = {o.source_id: o for o in s.objects()}
    # 1: a tight box around the bright block: its mask fills it, nothing to review
    assert by[1].has_mask and by[1].bbox == (30, 20, 60, 40) and by[1].review is None
    assert by[1].given_bbox == GIVEN[1] and by[1].mask[20:60, 30:90].all() and by[1].area == 2400
    # 2: a loose box around the small ellipse: the mask's box is much smaller, flagged
    assert by[2].has_mask and "IoU" in by[2].review and by[2].given_bbox == GIVEN[2]
    # 3, 4: boxes over plain background: empty masks, so they stay box-only, flagged
    for k in (3, 4):
        assert not by[k].has_mask and by[k].bbox == GIVEN[k] and "empty mask" in by[k].review
        assert by[k].given_bbox is None and by[k].refined_by == "grabcut"
    assert sorted(rep.flagged) == sorted(o.id for o in s.objects(flagged=True)) == [by[k].id for k in (2, 3, 4)]
    assert rep.refined == [by[1].id, by[2].id] and rep.empty == [by[3].id, by[4].id]
    # the same engine does not try again; the review count holds
    assert refine_targets(s, engine, only_boxes=True) == {}
    assert s.count_mask_states() == {"mask": 4, "box": 2, "review": 3}


def test_refine_undo_redo_and_review(tmp_path):
    s = _imported(tmp_path)
    refine_project(s, make_engine("grabcut"), RefineSettings(only_boxes=True))
    ob = next(o for o in s.objects() if o.source_id == 2)
    assert s.undo() is not None  # the last refine: object 4
    ev = [e for e in s.events(["refine"]) if e["object_id"] == ob.id][0]
    assert ev["data"]["before"]["mask_state"] == "box" and ev["data"]["after"]["given_bbox"] == json.dumps(
        list(map(float, GIVEN[2])))
    while s.undo() is not None:
        pass
    back = s.object(ob.id)
    assert back.mask_state == "box" and back.bbox == GIVEN[2] and back.given_bbox is None and back.review is None
    assert back.state == "accepted"  # the import itself is not an undoable step
    while s.redo() is not None:
        pass
    again = s.object(ob.id)
    assert again.has_mask and again.given_bbox == GIVEN[2] and "IoU" in again.review
    s.resolve_review(ob.id)
    assert s.object(ob.id).review is None
    assert s.undo()["kind"] == "review" and "IoU" in s.object(ob.id).review


def test_refine_stops_between_batches_resumes_and_a_person_wins(tmp_path):
    s = _imported(tmp_path)
    engine = make_engine("grabcut")
    stop = threading.Event()
    from clicklabel.project import refine_current

    engine.set_image(s.load_image(1))
    rep = refine_current(s, engine, 1, RefineSettings(batch=2, only_boxes=True), stop=stop,
                        on_batch=lambda done, total: stop.set())
    assert rep.cancelled and len(rep.refined) + len(rep.empty) == 2
    assert len(refine_targets(s, engine, only_boxes=True)[1]) == 2  # the rest waits for the next run
    # a person deletes one of the rest while it runs: the change wins
    todo = refine_targets(s, engine, only_boxes=True)[1]
    s.delete(todo[0].id)
    stale = MaskUpdate(todo[0].id, todo[0].updated, np.ones((120, 160), bool), None, "x")
    assert s.set_masks([stale]) == []
    rep2 = refine_project(s, engine, RefineSettings(only_boxes=True))
    assert len(rep2.refined) + len(rep2.empty) == 1 and not rep2.cancelled
    assert refine_targets(s, engine, only_boxes=True) == {}
    assert len(s.events(["refine"])) == 3  # one event per object, never twice


def test_rectangle_masks_are_refined_unless_only_boxes(tmp_path):
    s = Store(tmp_path / "p.clicklabel", root=tmp_path)
    box_scene(tmp_path / "scene.png")
    iid = s.add_image_file(tmp_path / "scene.png")
    rect = np.zeros((120, 160), bool)
    rect[18:62, 28:92] = True
    imported = s.accept(iid, rect, provenance="imported", label="block")
    drawn = s.accept(iid, rect, provenance="manual")  # a person drew a box on purpose: never touched
    engine = make_engine("grabcut")
    assert refine_targets(s, engine, only_boxes=True) == {}
    assert [o.id for o in refine_targets(s, engine)[iid]] == [imported]
    refine_project(s, engine)
    ob = s.object(imported)
    assert ob.bbox == (30, 20, 60, 40) and ob.given_bbox == (28, 18, 64, 44) and ob.review is None
    assert s.object(drawn).bbox == (28, 18, 64, 44) and s.object(drawn).given_bbox is None
    assert refine_targets(s, engine) == {}


def test_review_reason_thresholds():
    m = np.zeros((100, 100), bool)
    m[10:50, 10:50] = True
    st = RefineSettings()
    assert review_reason((10, 10, 40, 40), m, st) is None
    assert review_reason((9.5, 9.5, 41, 41), m, st) is None  # sub-pixel differences are no doubt
    assert "IoU 0.4" in review_reason((10, 10, 40, 100), m, st)
    leak = m.copy()
    leak[30, 50:58] = True  # a thin strand 8 px (20% of the box) past its right edge: the IoU alone is 0.83
    assert "past its edge" in review_reason((10, 10, 40, 40), leak, st)
    assert review_reason((10, 10, 40, 40), leak, RefineSettings(max_leak=0.25)) is None
    assert "empty mask" in review_reason((10, 10, 40, 40), np.zeros((100, 100), bool), st)
    with pytest.raises(Exception, match="out of range"):
        RefineSettings(min_iou=1.5)


def test_bench_refine_prints_both_rates_from_one_run(tiny_checkpoint, capsys):
    args = ["bench", "refine", "--model", "auto", "--checkpoint", str(tiny_checkpoint), "--device", "cpu",
            "--boxes", "5", "--repeats", "1"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "image 1024x768, 5 boxes" in text
    rows = [[c.strip() for c in r.split("|")[1:-1]] for r in text.splitlines()
            if r.startswith("| ") and "boxes/s" not in r]
    assert [r[0] for r in rows] == ["stock SamPredictor.predict(box=), one box at a time",
                                    "clicklabel predict_boxes, batched"]
    (_, s_sec, s_rate, s_ratio), (_, o_sec, o_rate, o_ratio) = rows
    assert float(s_rate) == pytest.approx(5 / float(s_sec), rel=0.002) and s_ratio == "1.00x"
    assert float(o_rate) == pytest.approx(5 / float(o_sec), rel=0.002)
    assert float(o_ratio[:-1]) == pytest.approx(float(s_sec) / float(o_sec), rel=0.01)
    m = re.search(r"mask agreement with stock \(IoU\): min ([\d.]+)", text)
    assert m and float(m.group(1)) >= 0.999  # the same masks as stock's, box by box
