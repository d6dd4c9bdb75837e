"""GUI tests of the review mode, the keys, clicks with other layers selected, and the layout (under xvfb-run):
real Qt key presses and mouse clicks on napari's canvas, the small random SAM, the loopback LMM."""

import json

import numpy as np
import pytest

pytest.importorskip("napari")
from gui_input import click, key  # noqa: E402
from qtpy.QtCore import Qt  # noqa: E402

import clicklabel_napari  # noqa: E402,F401  (keeps Triton out before any OpenGL context exists)
from clicklabel.label import LabelCache, Labeler, LabelerConfig  # noqa: E402
from clicklabel.segment.propose import ProposeSettings  # noqa: E402
from clicklabel_napari._widget import ClickLabelWidget  # noqa: E402

from lmm_server import FakeLMM  # noqa: E402

pytestmark = pytest.mark.gui

# Random weights: nothing passes SAM's thresholds and every point gives nearly the same mask (NMS would keep one),
# so the filters are off and the count capped.
OPEN = ProposeSettings(grid=6, pred_iou_thresh=0.0, stability_thresh=0.0, nms_thresh=1.0, max_proposals=10)


def _open(make_napari_viewer, qtbot, engine, folder, labeler=None):
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1280, 800)
    w = ClickLabelWidget(viewer, engine=engine, labeler=labeler, auto_label=labeler is not None)
    viewer.window.add_dock_widget(w, name="clicklabel", area="right")
    w.open_folder(str(folder))
    _idle(qtbot, w)
    return viewer, w


def _idle(qtbot, w, timeout=60_000):
    qtbot.waitUntil(lambda: w.session is not None and w.session.image is not None and w.nav.loading is None
                    and not w.prompter.answering and not w.review.proposing, timeout=timeout)


def test_propose_review_accept_reject_above_then_export(make_napari_viewer, qtbot, tiny_engine, folder, tmp_path):
    with FakeLMM(latency=0.02, answer=lambda body, img: {"label": "espresso", "category": "drink",
                                                         "confidence": 0.7}) as lmm:
        labeler = lambda: Labeler(LabelerConfig(base_url=lmm.url, api_key="sk-test"),  # noqa: E731
                                  LabelCache(tmp_path / "labels.sqlite"))
        viewer, w = _open(make_napari_viewer, qtbot, tiny_engine, folder, labeler)
        s = w.session
        w.review.settings = OPEN
        key(viewer, "p")
        qtbot.waitUntil(lambda: w.review.reviewing, timeout=60_000)
        waiting = s.proposals()
        assert [o.id for o in w.review.proposed] == [o.id for o in waiting] and len(waiting) == 10
        assert [o.area for o in waiting] == sorted((o.area for o in waiting), reverse=True)  # largest first
        first, second, third = waiting[:3]
        assert w.review.highlighted.id == first.id and w.layers.proposals.visible
        assert np.array_equal(w.layers.proposals.data == 2, first.mask)  # the highlighted one, on top
        assert "Proposal 1 of 10" in w.status.text()

        key(viewer, "a")
        assert s.object(first.id).state == "accepted" and w.review.highlighted.id == second.id
        assert "accepted" in w.status.text() and "Proposal 1 of 9" in w.status.text()
        key(viewer, "a")
        key(viewer, "x")
        assert s.object(second.id).state == "accepted" and s.object(third.id).state == "rejected"
        assert np.array_equal(w.layers.proposals.data == 2, w.review.highlighted.mask)
        assert not (w.layers.proposals.data[first.mask & ~np.logical_or.reduce(
            [o.mask for o in w.review.proposed])]).any()  # a decided proposal left the layer
        drawn = w.layers.objects.data
        assert set(np.unique(drawn)) - {0} == {first.id, second.id}

        rest = s.proposals()
        w.review.threshold.value = sorted(o.score for o in rest)[len(rest) // 2]
        threshold = w.review.threshold.value  # the field keeps two decimals
        above = {o.id for o in rest if o.score >= threshold}
        assert 0 < len(above) < len(rest)
        assert f"{len(above)} score >= {threshold:.2f}" in w.review.info.text()
        w.review.above_btn.native.click()
        assert {o.id for o in s.objects()} == {first.id, second.id} | above
        assert {o.id for o in w.review.proposed} == {o.id for o in rest} - above
        events = [e["kind"] for e in s.store.events(["accept_proposal", "reject_proposal"])]
        assert events.count("accept_proposal") == 2 + len(above) and events.count("reject_proposal") == 1

        accepted = {o.id for o in s.objects()}
        qtbot.waitUntil(lambda: all(o.label_status == "done" for o in s.objects()) and not w.labels.running,
                        timeout=30_000)
        qtbot.waitUntil(lambda: w.annotate.table.rowCount() == len(accepted), timeout=5_000)
        out = tmp_path / "export.json"
        w.export(str(out))
        qtbot.waitUntil(lambda: "Exported" in w.status.text(), timeout=30_000)
    doc = json.loads(out.read_text())
    anns = doc["annotations"]
    assert {a["clicklabel"]["object_id"] for a in anns} == accepted
    assert {a["clicklabel"]["provenance"] for a in anns} == {"proposed"}
    names = {c["id"]: c["name"] for c in doc["categories"]}
    assert {names[a["category_id"]] for a in anns} == {"espresso"}


def test_a_click_corrects_the_highlighted_proposal(make_napari_viewer, qtbot, tiny_engine, folder):
    viewer, w = _open(make_napari_viewer, qtbot, tiny_engine, folder)
    w.review.settings = OPEN
    w.review.propose()
    qtbot.waitUntil(lambda: w.review.reviewing, timeout=60_000)
    ob = w.review.highlighted
    x, y, bw, bh = ob.bbox
    click(viewer, x + bw / 2, y + bh / 2)
    _idle(qtbot, w)
    assert w.session.state.proposal.id == ob.id and "corrected" in w.status.text()
    corrected = w.session.state.preview.mask.copy()
    key(viewer, "Escape")  # drops the correction, the proposal stays highlighted
    assert w.session.state.proposal is None and w.review.highlighted.id == ob.id and not w.layers.preview.data.any()
    click(viewer, x + bw / 2, y + bh / 2)
    _idle(qtbot, w)
    if w.session.state.preview.empty:
        pytest.skip("random weights gave an empty corrected mask")
    key(viewer, "Return")
    got = w.session.object(ob.id)
    assert got.state == "accepted" and np.array_equal(got.mask, corrected) and got.clicks == 1
    assert (w.layers.objects.data == ob.id).sum() == got.area and w.review.highlighted.id != ob.id
    key(viewer, "Escape")  # pauses the review: clicks make new objects again
    assert not w.review.reviewing and "Review paused" in w.status.text()
    click(viewer, 20, 20)
    _idle(qtbot, w)
    assert w.session.state.proposal is None and w.session.state.preview is not None


def test_every_key_gives_feedback(make_napari_viewer, qtbot, tiny_engine, folder):
    viewer, w = _open(make_napari_viewer, qtbot, tiny_engine, folder)
    for name, mod in [("Return", None), ("Escape", None), ("m", None), ("g", None), ("a", None), ("x", None),
                      ("s", None), ("l", None), ("d", None), ("b", None), ("z", Qt.KeyboardModifier.ControlModifier),
                      ("z", Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)]:
        w.say("")
        key(viewer, name, mod or Qt.KeyboardModifier.NoModifier)
        assert w.status.text(), f"no feedback for {name}"
    w.layers.box.data = [np.array([[40, 60], [40, 300], [250, 300], [250, 60]])]  # a box prompt: one mask
    _idle(qtbot, w)
    key(viewer, "m")
    assert "Only one mask" in w.status.text()
    key(viewer, "Escape")
    assert "Cleared" in w.status.text() and "Enter accepts" not in w.status.text()
    key(viewer, "n")
    assert w.counter.text().startswith("Image 2 of 2")  # at once, not once the image is ready
    _idle(qtbot, w)
    key(viewer, "n")
    assert "last image" in w.status.text()


def test_clicks_reach_the_annotator_whichever_layer_is_selected(make_napari_viewer, qtbot, tiny_engine, folder):
    viewer, w = _open(make_napari_viewer, qtbot, tiny_engine, folder)
    for layer in (w.layers.objects, w.layers.boxes, w.layers.prompts):
        viewer.layers.selection.active = layer
        w.prompter.clear()
        click(viewer, 200, 150)
        _idle(qtbot, w)
        assert w.session.state.preview is not None, layer.name
    w.prompter.clear()
    viewer.layers.selection.active = w.layers.manual
    w.layers.manual.mode = "add_rectangle"
    click(viewer, 200, 150)
    assert w.session.state.preview is None and "drawing on 'clicklabel manual'" in w.status.text()
    viewer.layers.selection.active = w.layers.objects
    w.layers.objects.mode = "paint"  # a brush stroke on the objects layer is stored: a new object here
    before = {o.id for o in w.session.objects()}
    click(viewer, 200, 150)
    new = [o for o in w.session.objects() if o.id not in before]
    assert len(new) == 1 and new[0].provenance == "manual" and new[0].mask[150, 200]
    assert f"#{new[0].id} painted as a new object" in w.status.text()
    w.layers.image.mode = "pan_zoom"
    viewer.layers.selection.active = w.layers.image
    w.layers.objects.mode = "pan_zoom"


@pytest.mark.parametrize("size", [(1280, 800), None])  # None: napari's default window size
def test_readable_at_1280x800_and_the_default_size(make_napari_viewer, qtbot, size):
    from qtpy.QtWidgets import QAbstractButton

    viewer = make_napari_viewer(show=True)
    if size:
        viewer.window._qt_window.resize(*size)
    w = ClickLabelWidget(viewer)
    viewer.window.add_dock_widget(w, name="clicklabel", area="right")
    qtbot.wait(200)
    assert w.status.isVisible() and w.counter.isVisible() and w.tabs.isVisible()
    for i in range(w.tabs.count()):
        w.tabs.setCurrentIndex(i)
        qtbot.wait(50)
        page = w.tabs.widget(i)
        for button in page.findChildren(QAbstractButton):
            if not button.isVisible():
                continue
            text = button.text().replace("&", "")
            need = button.fontMetrics().horizontalAdvance(text)
            assert button.width() >= need and button.height() >= button.fontMetrics().height(), \
                (w.tabs.tabText(i), text, button.width(), need, button.height())
