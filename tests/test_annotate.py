"""AnnotationSession without Qt: everything the widget does, driven through the session alone, on the small
random SAM and on GrabCut."""

import sys

import numpy as np
import pytest

from clicklabel.annotate import AnnotationSession, polygon_mask
from clicklabel.embeddings import EmbeddingCache
from clicklabel.errors import ClickLabelError, PromptError
from clicklabel.masks import tight_bbox
from clicklabel.project import RefineSettings, open_project
from clicklabel.segment import Prompt, make_engine
from clicklabel.segment.propose import ProposeSettings
from clicklabel.segment.sam import SamEngine

from conftest import box_only_file, sample_folder

# Random weights predict low IoU everywhere (nothing passes SAM's thresholds) and near-identical masks for every
# point (NMS would keep one): filters off, at most 12.
OPEN = ProposeSettings(grid=6, pred_iou_thresh=0.0, stability_thresh=0.0, nms_thresh=1.0, max_proposals=12)


@pytest.fixture
def folder(tmp_path):
    return sample_folder(tmp_path / "images", ("chelsea", "coffee"))


def _open(folder, engine, index=0) -> AnnotationSession:
    s = AnnotationSession.open(folder, engine)
    image = s.load(index)
    s.embed(image)
    s.show(index, image)
    return s


def test_the_core_works_with_qt_and_napari_missing(folder):
    """The session, the CLI and everything they import work where Qt and napari cannot be imported at all."""
    import subprocess

    code = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "magicgui",
                                  "clicklabel_napari", "vispy", "superqt"):
            raise ImportError("blocked: " + name)
sys.meta_path.insert(0, Block())
import clicklabel.cli, clicklabel.annotate, clicklabel.coco, clicklabel.label, clicklabel.evaluate.report
from clicklabel.annotate import AnnotationSession
from clicklabel.segment import Prompt, make_engine
s = AnnotationSession.open({str(folder)!r}, make_engine("grabcut"))
img = s.load(0); s.embed(img); s.show(0, img)
s.set_box(60, 30, 380, 290); print(s.accept())
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.strip() == "1"


def test_click_refine_cycle_accept_undo_redo(folder, tiny_engine):
    s = _open(folder, tiny_engine)
    assert [im.path for im in s.images] == ["chelsea.jpg", "coffee.jpg"] and s.current.status == "in progress"
    with pytest.raises(PromptError, match="nothing to accept"):  # no click yet
        s.accept()
    first = s.add_point(200, 150)
    assert len(s.state.candidates) == 3 and s.state.preview is first  # one click: SAM's three masks
    shown = [s.cycle(), s.cycle(), s.cycle()]
    assert shown[-1] is first and shown[0] is s.state.candidates[1]
    refined = s.add_point(30, 30, positive=False)
    assert len(s.state.candidates) == 1 and s.state.prompt.labels == (1, 0)
    # the small random SAM (seed 1) gives a non-empty mask here: what is accepted is this refined click mask
    assert refined.mask.shape == (300, 451) and not refined.empty and s.state.preview is refined
    oid = s.accept()
    ob = s.object(oid)
    assert ob.provenance == "click" and ob.clicks == 2 and ob.seconds is not None
    assert np.array_equal(ob.mask, refined.mask) and ob.score == pytest.approx(refined.score)
    assert ob.engine == "sam" and ob.model == tiny_engine.model
    assert tuple(ob.bbox) == tight_bbox(ob.mask) and s.state.preview is None
    assert [o.id for o in s.objects()] == [oid]
    assert s.undo()["kind"] == "accept" and s.objects() == []
    assert s.redo()["kind"] == "accept" and [o.id for o in s.objects()] == [oid]


def test_box_manual_relabel_delete(folder, tiny_engine):
    s = _open(folder, tiny_engine)
    s.set_box(100, 50, 350, 280)
    box_id = s.accept()
    assert s.object(box_id).provenance == "box" and s.object(box_id).clicks == 1
    s.start_manual()
    verts = np.array([[10, 10], [60, 10], [60, 40], [10, 40]], float)  # (x, y)
    man_id = s.accept_manual(polygon_mask(verts, (300, 451)), vertices=4)
    man = s.object(man_id)
    assert man.provenance == "manual" and man.engine == "manual" and tuple(man.bbox) == (10, 10, 51, 31)
    with pytest.raises(PromptError, match="empty or outside"):
        s.accept_manual(np.zeros((300, 451), bool))
    s.relabel(box_id, "  tabby cat ")
    assert s.object(box_id).label == "tabby cat" and s.object(box_id).label_status == "edited"
    with pytest.raises(ClickLabelError, match="cannot be empty"):
        s.relabel(box_id, " ")
    s.delete(man_id)
    assert [o.id for o in s.objects()] == [box_id]
    assert s.undo()["kind"] == "delete" and {o.id for o in s.objects()} == {box_id, man_id}
    assert s.undo()["kind"] == "relabel" and s.object(box_id).label is None


def test_propose_accept_reject_above_undo(folder, tiny_engine):
    s = _open(folder, tiny_engine)
    s.set_box(100, 50, 350, 280)
    s.accept()
    rep = s.propose(OPEN)
    waiting = s.proposals()
    assert len(rep.proposed) == len(waiting) >= 4 and not rep.accepted
    assert [o.area for o in waiting] == sorted((o.area for o in waiting), reverse=True)  # largest first
    assert all(o.provenance == "proposed" and o.state == "proposed" for o in waiting)
    a, b = waiting[0].id, waiting[1].id
    s.decide(a, True)
    s.decide(b, False)
    assert s.object(a).state == "accepted" and s.object(b).state == "rejected"
    assert a in {o.id for o in s.objects()} and b not in {o.id for o in s.proposals()}
    with pytest.raises(ClickLabelError, match="not a proposal"):
        s.decide(b, True)
    threshold = sorted(o.score for o in s.proposals())[len(s.proposals()) // 2]
    above = s.accept_above(threshold)
    assert above and all(s.object(i).score >= threshold and s.object(i).state == "accepted" for i in above)
    assert all(o.score < threshold for o in s.proposals())
    assert s.undo()["kind"] == "accept_proposal" and s.object(above[-1]).state == "proposed"
    kinds = [e["kind"] for e in s.store.events(["accept_proposal", "reject_proposal"])]
    assert kinds.count("reject_proposal") == 1 and kinds.count("accept_proposal") == 1 + len(above)
    # proposing again offers nothing already accepted or waiting
    again = s.propose(OPEN)
    accepted = [o.mask for o in s.objects()]
    for oid in again.proposed:
        m = s.object(oid).mask
        assert all((m & x).sum() / (m | x).sum() < OPEN.dedupe_iou for x in accepted)


def test_next_image_is_prefetched_and_shown(folder, tiny_checkpoint, tmp_path):
    """An engine with a cache of its own: the shared session cache may already hold the next image."""
    engine = SamEngine("auto", tiny_checkpoint, device="cpu", cache=EmbeddingCache(tmp_path / "cache"))
    s = _open(folder, engine)
    coffee = s.load(1)
    assert not engine.cache.contains(engine.embedding_key(coffee))
    s.prefetch(1)
    assert engine.cache.contains(engine.embedding_key(coffee))
    s.embed(coffee)
    assert engine.last_from_cache
    s.show(1, coffee)
    assert s.current.path == "coffee.jpg" and s.state.preview is None
    s.mark_done()
    assert s.progress() == (1, 2)
    with pytest.raises(ClickLabelError, match="no image 3"):
        s.load(2)


def test_grabcut_session_and_engine_switch(folder, tiny_engine):
    s = _open(folder, make_engine("grabcut"))
    r = s.set_box(60, 30, 380, 290)
    assert not r.empty and len(s.state.candidates) == 1 and s.cycle() is r
    oid = s.accept()
    assert s.object(oid).engine == "grabcut"
    s.prefetch(1)  # nothing to compute ahead: must not fail
    with pytest.raises(ClickLabelError, match="GrabCut cannot propose"):
        s.propose(OPEN)
    s.set_engine(tiny_engine)  # SAM loaded later: the same session goes on
    s.embed(s.image)
    s.add_point(200, 150)
    assert s.engine is tiny_engine and len(s.state.candidates) == 3


def test_label_settings_are_the_projects(folder, tiny_engine):
    s = _open(folder, tiny_engine)
    st = s.label_settings.updated(lmm="llava", vocabulary=["cat", "dog"])
    s.save_label_settings(st)
    again = open_project(folder).get_meta("label_settings")
    assert '"lmm": "llava"' in again and AnnotationSession.open(folder, tiny_engine).label_settings.vocabulary == [
        "cat", "dog"]


def test_prompt_jobs_run_anywhere_and_stale_answers_are_dropped(folder, tiny_engine):
    import threading

    s = _open(folder, tiny_engine)
    job = s.plan(Prompt.make([(200, 150)]))
    done = threading.Thread(target=job.run)  # the engine work, in another thread
    done.start()
    done.join()
    first = s.commit(job)
    assert first is s.state.preview and len(s.state.candidates) == 3 and s.state.prompt == job.prompt
    refine = s.plan(job.prompt.add_point(30, 30, positive=False))
    assert refine.previous is first and not refine.multimask  # the second click refines the first mask
    s.clear()  # the annotator moved on before the answer came
    assert s.commit(refine.run()) is None and s.state.preview is None
    stale = s.plan(Prompt.make([(100, 100)])).run()
    s.show(1, s.load(1))
    assert s.commit(stale) is None
    with pytest.raises(PromptError, match="outside"):
        s.plan(Prompt.make([(5000, 10)]))
    kinds = [e["kind"] for e in s.store.events(["prompt"])]
    assert kinds == ["prompt"]  # only the answer that was shown counts as a prompt


def test_correct_a_proposal_with_clicks_then_undo_redo(folder, tiny_engine):
    s = _open(folder, tiny_engine)
    s.propose(OPEN)
    first, second = s.proposals()[:2]
    original = first.mask
    s.correct(first.id)
    x, y, w, h = first.bbox
    job = s.plan(Prompt.make([(x + w / 2, y + h / 2), (5, 5)], [1, 0]))
    assert job.engine_prompt.box is not None and job.engine_prompt.box[0] <= x  # answered inside its box
    assert job.engine_prompt.box[2] >= x + w and not job.multimask
    pv = s.commit(job.run())
    if pv.empty:  # random weights: make sure the correction has something to accept
        s.commit(s.plan(Prompt.make([(x + w / 2, y + h / 2)], box=(x, y, x + w, y + h))).run())
        pv = s.state.preview
    assert not pv.empty
    oid = s.accept()
    ob = s.object(oid)
    assert oid == first.id and ob.state == "accepted" and ob.provenance == "proposed"
    assert np.array_equal(ob.mask, pv.mask)
    assert ob.clicks == 2 and ob.seconds is not None and tuple(ob.bbox) == tight_bbox(pv.mask)
    events = s.store.events(["accept_proposal"])
    assert len(events) == 1
    assert s.undo()["kind"] == "accept_proposal"
    back = s.object(first.id)
    assert back.state == "proposed" and np.array_equal(back.mask, original) and back.clicks == 0
    assert s.redo()["kind"] == "accept_proposal" and np.array_equal(s.object(first.id).mask, pv.mask)
    # accepting a proposal being corrected without any click accepts it as it is
    s.correct(second.id)
    assert s.accept() == second.id and np.array_equal(s.object(second.id).mask, second.mask)
    with pytest.raises(PromptError, match="not a proposal waiting"):
        s.correct(second.id)


def test_export_is_the_cli_export(folder, tiny_engine, tmp_path):
    import json

    from clicklabel.cli import main

    s = _open(folder, tiny_engine)
    s.set_box(100, 50, 350, 280)
    oid = s.accept()
    s.relabel(oid, "tabby cat")
    rep = s.export(tmp_path / "widget.json")
    assert rep.annotations == 1 and rep.images == 2
    assert main(["export", str(s.store.path), "--out", str(tmp_path / "cli.json")]) == 0
    a, b = (json.loads((tmp_path / n).read_text()) for n in ("widget.json", "cli.json"))
    assert a == b and a["categories"][0]["name"] == "tabby cat"


def _detection_session(tmp_path, engine) -> AnnotationSession:
    """A session on a project imported from a box-only COCO file (four boxes, a polygon, an RLE)."""
    from clicklabel.coco import import_coco

    path, _ = box_only_file(tmp_path)
    store = open_project(tmp_path / "p.clicklabel", create=True, root=tmp_path)
    import_coco(path, tmp_path, store)
    s = AnnotationSession(store, engine)
    image = s.load(0)
    s.embed(image)
    s.show(0, image)
    return s


def test_session_refines_the_image_and_steps_through_the_flagged(tmp_path):
    s = _detection_session(tmp_path, make_engine("grabcut"))
    assert len(s.to_refine()) == 5 and len(s.to_refine(RefineSettings(only_boxes=True))) == 4
    assert all(not o.has_mask for o in s.objects() if o.source_id in (1, 2, 3, 4))
    seen = []
    rep = s.refine(RefineSettings(batch=2, only_boxes=True), progress=lambda d, t: seen.append((d, t)))
    assert seen == [(2, 4), (4, 4)] and len(rep.refined) == 2 and len(rep.flagged) == 3 and s.to_refine(
        RefineSettings(only_boxes=True)) == []
    flagged = [o.id for o in s.flagged()]
    assert flagged == [o.id for o in s.flagged(everywhere=True)] == sorted(rep.flagged)
    steps = [s.next_flagged()]
    for _ in range(3):
        steps.append(s.next_flagged(steps[-1][1]))
    assert steps == [(0, flagged[0]), (0, flagged[1]), (0, flagged[2]), (0, flagged[0])]  # wraps around
    # the loose box around the ellipse: a person prompts it again and puts that mask in (undoable)
    loose = next(o for o in s.objects() if o.source_id == 2)
    preview = s.set_box(25, 15, 95, 65).mask
    s.replace_mask(loose.id)
    fixed = s.object(loose.id)
    assert fixed.review is None and fixed.given_bbox == (95, 65, 55, 50) and fixed.bbox == (30, 20, 60, 40)
    assert np.array_equal(fixed.mask, preview)
    assert s.state.preview is None and loose.id not in [o.id for o in s.flagged()]
    assert s.undo()["kind"] == "refine" and s.object(loose.id).bbox == loose.bbox and s.object(loose.id).review
    # a box over plain background stays box-only; a person says it is fine as it is
    empty = next(o for o in s.objects() if o.source_id == 3)
    s.resolve_review(empty.id)
    assert not s.object(empty.id).has_mask and s.object(empty.id).review is None
    assert len(s.flagged()) == 2
    with pytest.raises(PromptError, match="prompt the object first"):
        s.replace_mask(empty.id)


def test_session_disagreements_one_undoable_decision(tmp_path):
    s = _detection_session(tmp_path, make_engine("grabcut"))
    obs = {o.source_id: o for o in s.objects()}
    st = s.store
    assert st.set_check(obs[1].id, "blob", "shape", 0.8, "m") == "disagree"
    assert st.set_check(obs[2].id, "blob", "shape", 0.9, "m") == "agree"
    assert st.set_check(obs[5].id, "blob", None, 0.4, "m") == "disagree"
    assert [c.object_id for c in s.disagreements()] == [obs[1].id, obs[5].id] == [
        c.object_id for c in s.disagreements(everywhere=True)]
    s.accept_model_label(obs[1].id)
    assert s.object(obs[1].id).label == "blob" and [c.object_id for c in s.disagreements()] == [obs[5].id]
    assert s.undo()["kind"] == "decide_check" and s.object(obs[1].id).label == "block"
    assert len(s.disagreements()) == 2
    s.keep_label(obs[5].id)
    assert s.object(obs[5].id).label == "block" and [c.object_id for c in s.disagreements()] == [obs[1].id]


def test_painted_masks_are_stored_undoably_and_an_erased_object_goes(folder):
    """What napari's brush does to an object (the widget hands the layer's mask over): its mask and tight box
    change, no given box is made up, Ctrl+Z brings the old mask back; erased entirely, it is deleted."""
    s = _open(folder, make_engine("grabcut"))
    h, w = s.image.shape[:2]
    m = np.zeros((h, w), bool)
    m[20:60, 30:90] = True
    oid = s.accept_manual(m)
    painted = m.copy()
    painted[60:80, 30:50] = True  # a stroke below it
    assert s.paint_mask(oid, painted)
    ob = s.object(oid)
    assert np.array_equal(ob.mask, painted) and ob.bbox == tight_bbox(painted) and ob.given_bbox is None
    assert ob.engine == "paint"
    s.undo()
    assert np.array_equal(s.object(oid).mask, m)
    assert s.paint_mask(oid, np.zeros((h, w), bool))  # erased entirely
    assert oid not in [o.id for o in s.objects()]
    s.undo()
    assert oid in [o.id for o in s.objects()]
    elsewhere = s.store.accept(s.images[1].id, np.ones(s.load(1).shape[:2], bool))
    assert not s.paint_mask(elsewhere, painted)  # only objects of the image shown are painted
