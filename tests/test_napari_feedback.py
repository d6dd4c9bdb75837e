"""GUI tests of what the workbench tells the annotator and what it keeps (under xvfb-run): propose's words and
thresholds, a progress bar that shows no stale count, a failed label's reason, the counter under a filter, the
audit buttons' words, the review counter after undo, S at the last proposal, napari's brush on the objects layer
stored in the project, no pycocotools deprecation pop-up, and `clicklabel gui` leaving no window behind when it is
killed. Real Qt clicks and keys where a person would use them; the small random SAM (random weights: nothing passes
SAM's default thresholds), the loopback LMM.

The widget's controls are reached through the helpers below only, so that a change of the widget's layout (panels
owning their controls) is followed in one place."""

import os
import re
import signal
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("napari")
from gui_input import canvas_point, canvas_widget, key  # noqa: E402
from qtpy.QtCore import Qt  # noqa: E402
from qtpy.QtTest import QTest  # noqa: E402

import clicklabel_napari  # noqa: E402,F401  (keeps Triton out before any OpenGL context exists)
from clicklabel.label import LabelCache, Labeler, LabelerConfig  # noqa: E402
from clicklabel.segment.propose import ProposeSettings  # noqa: E402
from clicklabel_napari._widget import ClickLabelWidget  # noqa: E402

from conftest import box_scene, wait_ready  # noqa: E402
from lmm_server import FakeLMM  # noqa: E402

pytestmark = pytest.mark.gui

# Random weights: SAM's filters off, NMS off, a few proposals (every point gives nearly the same mask).
OPEN = ProposeSettings(grid=6, pred_iou_thresh=0.0, stability_thresh=0.0, nms_thresh=1.0, max_proposals=10)


# -- the widget's controls, in one place ---------------------------------------------------------------------------
def status(w) -> str:
    """The status line."""
    return w.status.text()


def counter(w) -> str:
    """The image counter line ("Image 1 of 2 ...; objects here: N ...")."""
    return w.counter.text()


def review_info(w) -> str:
    """The review panel's line about the waiting proposals."""
    return w.review.info.text()


def bar(w):
    """The progress bar (a QProgressBar)."""
    return w.progress


def table(w):
    """The Annotate panel's objects table (a QTableWidget)."""
    return w.annotate.table


def audit_table(w):
    """The Audit panel's table (the objects under its filter)."""
    return w.audit.table


BUTTONS = {"propose": ("review", "propose_btn"), "fine": ("audit", "fine_btn"), "next_review": ("audit", "next_btn")}


def button(w, name: str):
    """A button's Qt widget: 'propose', 'fine' (Fine as it is), 'next_review' (Next in list >), ..."""
    panel, attr = BUTTONS[name]
    return getattr(getattr(w, panel), attr).native


def press(w, name: str) -> None:
    """A real mouse click on a button."""
    b = button(w, name)
    QTest.mouseClick(b, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, b.rect().center())


def field(w, name: str):
    """A settings field (magicgui value widget) by the name of what it sets: 'grid', 'min_area', 'max_props', and
    propose's thresholds under ProposeSettings' names, 'pred_iou_thresh' and 'stability_thresh'; None if absent."""
    names = {"pred_iou_thresh": "min_score", "stability_thresh": "stability"}
    return getattr(w.review, names.get(name, name), None)


def set_table_filter(w, choice: str) -> None:
    """The Audit panel's list: 'all objects', 'flagged for review', ..."""
    w.audit.filter.value = choice


def show_tab(w, title: str) -> None:
    """Bring the widget's tab ``title`` to the front, as a click on it does."""
    tabs = w.tabs
    titles = [tabs.tabText(i) for i in range(tabs.count())]
    tabs.setCurrentIndex(titles.index(title))


def use_proposals(w, settings: ProposeSettings) -> None:
    """Propose with these settings (beyond the fields), as the tests and benchmarks do."""
    w.review.settings = settings


def _idle(w) -> bool:
    return (w.session is not None and w.session.image is not None and w.nav.loading is None
            and not w.prompter.answering and not w.review.proposing)


def _eventually(qtbot, condition, timeout=10_000) -> bool:
    """Whether ``condition`` holds now or comes true while Qt's events are processed (up to ``timeout`` ms)."""
    from pytestqt.exceptions import TimeoutError as QtTimeout

    try:
        qtbot.waitUntil(condition, timeout=timeout)
    except QtTimeout:
        return False
    return True


def _labeller(lmm, tmp_path):
    return lambda: Labeler(LabelerConfig(base_url=lmm.url, api_key="sk-test"),  # noqa: E731
                           LabelCache(tmp_path / "labels.sqlite"))


def _open(make_napari_viewer, qtbot, engine, target, labeler=None, show=True):
    viewer = make_napari_viewer(show=show)
    viewer.window._qt_window.resize(1280, 800)
    w = ClickLabelWidget(viewer, engine=engine, labeler=labeler, auto_label=labeler is not None)
    viewer.window.add_dock_widget(w, name="clicklabel", area="right")
    w.open_project(str(target))
    qtbot.waitUntil(lambda: _idle(w), timeout=120_000)
    return viewer, w


def _propose(qtbot, viewer, w, settings=None) -> None:
    """P on the canvas, then wait until proposing has ended."""
    if settings is not None:
        use_proposals(w, settings)
    key(viewer, "p")
    qtbot.waitUntil(lambda: _idle(w), timeout=120_000)


def _flagged_project(tmp_path):
    """A project of one picture whose one box-only object (a box over nothing) GrabCut's refine flagged."""
    from clicklabel.project import RefineSettings, Store, refine_project
    from clicklabel.segment import make_engine

    box_scene(tmp_path / "scene.png")
    store = Store(tmp_path / "p.clicklabel", root=tmp_path)
    iid = store.add_image_file(tmp_path / "scene.png")
    lone = store.accept(iid, provenance="imported", mask_state="box", bbox=(2, 2, 20, 15), label="blob")
    refine_project(store, make_engine("grabcut"), RefineSettings(only_boxes=True), image_ids=[iid])
    assert store.object(lone).review
    store.close()
    return tmp_path / "p.clicklabel", lone


def _accept_box(qtbot, w, corners=((40, 60), (250, 300))) -> int:
    """Accept the mask of a box prompt (image rows/columns of two corners) through the widget."""
    (y0, x0), (y1, x1) = corners
    w.layers.box.data = [np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]])]
    wait_ready(qtbot, w)
    return w.prompter.accept()


# -- 6: feedback that is wrong or missing --------------------------------------------------------------------------
def test_propose_finding_nothing_does_not_blame_accepted_objects(make_napari_viewer, qtbot, tiny_engine, folder):
    """No object is accepted on this image: "objects already accepted are not proposed again" cannot be why
    nothing came (here SAM's thresholds kept nothing: random weights)."""
    viewer, w = _open(make_napari_viewer, qtbot, tiny_engine, folder)
    assert w.session.objects() == []
    field(w, "grid").value = 4
    _propose(qtbot, viewer, w)
    assert w.review.proposed == [] and "is proposing" not in status(w)  # the outcome is said
    assert "already accepted" not in status(w), status(w)


def test_the_propose_thresholds_of_the_cli_are_fields_that_reach_the_settings(make_napari_viewer, qtbot, tiny_engine,
                                                                              folder, monkeypatch):
    """`clicklabel propose` has --pred-iou-thresh and --stability-thresh; the widget offers both, with the CLI's
    defaults, and what is typed there is what SAM is asked with."""
    viewer, w = _open(make_napari_viewer, qtbot, tiny_engine, folder)
    defaults = ProposeSettings()
    iou, stability = field(w, "pred_iou_thresh"), field(w, "stability_thresh")
    assert iou is not None and stability is not None, "the widget has no propose threshold fields"
    assert (iou.value, stability.value) == pytest.approx((defaults.pred_iou_thresh, defaults.stability_thresh))
    asked = []
    propose = w.session.propose
    monkeypatch.setattr(w.session, "propose", lambda settings, **kw: asked.append(settings) or propose(settings, **kw))
    field(w, "grid").value = 4
    iou.value, stability.value = 0.0, 0.0
    _propose(qtbot, viewer, w)
    assert len(asked) == 1 and (asked[0].pred_iou_thresh, asked[0].stability_thresh) == (0.0, 0.0)
    assert w.review.proposed  # with the filters open, random weights give proposals


def _pixels(pixmap) -> np.ndarray:
    from qtpy.QtGui import QImage

    img = pixmap.toImage().convertToFormat(QImage.Format.Format_RGB32)
    bits = img.constBits()
    if hasattr(bits, "setsize"):  # PyQt: a sip.voidptr
        bits.setsize(img.sizeInBytes())
    rows = np.frombuffer(bits, np.uint8).reshape(img.height(), img.bytesPerLine())
    return rows[:, : 4 * img.width()].reshape(img.height(), img.width(), 4)[..., :3].astype(int)


def _bar_gone_from_screen(qtbot, w) -> None:
    """The bar is hidden, and what the screen shows where it was is what the widget draws there now (a fresh
    rendering of the widget): not the bar's old count, left on the screen."""
    from qtpy.QtCore import QRect
    from qtpy.QtWidgets import QApplication

    qtbot.waitUntil(lambda: bar(w).isHidden(), timeout=60_000)
    for _ in range(5):  # pending paints reach the screen
        QApplication.processEvents()
    b = bar(w)
    top_left = b.mapTo(w, b.rect().topLeft())
    drawn = _pixels(w.grab(QRect(top_left, b.size())))
    corner = b.mapToGlobal(b.rect().topLeft())
    shown = _pixels(QApplication.primaryScreen().grabWindow(0, corner.x(), corner.y(), b.width(), b.height()))
    assert drawn.shape == shown.shape
    stale = float(np.mean(np.abs(drawn - shown).max(axis=2) > 40))
    assert stale < 0.02, f"the hidden bar's old text ({b.format()!r}) is still on the screen ({stale:.0%} of its area)"


def test_the_bar_shows_no_stale_count_once_proposing_and_labelling_end(make_napari_viewer, qtbot, tiny_engine,
                                                                       folder, tmp_path):
    """Once proposing ends the bar goes, and "proposing 16/16" must not stay on the screen where it was; the same
    for "labelling 1/1" once an accepted proposal's label arrived."""
    with FakeLMM(answer=lambda body, img: {"label": "cup", "category": "cup", "confidence": 0.9}) as lmm:
        viewer, w = _open(make_napari_viewer, qtbot, tiny_engine, folder, _labeller(lmm, tmp_path))
        _propose(qtbot, viewer, w, ProposeSettings(grid=4, pred_iou_thresh=0.0, stability_thresh=0.0,
                                                   nms_thresh=1.0, max_proposals=3))
        assert w.review.reviewing and bar(w).format().startswith("proposing")
        _bar_gone_from_screen(qtbot, w)
        key(viewer, "a")  # accepted: labelled in the background
        qtbot.waitUntil(lambda: w.labels.running or w.session.objects()[0].label_status == "done",
                        timeout=30_000)
        qtbot.waitUntil(lambda: not w.labels.running and w.session.objects()[0].label_status == "done",
                        timeout=60_000)
        assert bar(w).format().startswith("labelling")
        _bar_gone_from_screen(qtbot, w)


def test_a_failed_label_shows_its_reason_not_the_neighbours_vote(make_napari_viewer, qtbot, tiny_engine, folder):
    """A label that failed says why (the reason the labeller stored), where the annotator reads the object's
    label state: not the neighbours' guess ("failed: espresso cup 1/1?"), which hid the reason."""
    viewer, w = _open(make_napari_viewer, qtbot, tiny_engine, folder)
    first = _accept_box(qtbot, w)
    table(w).item(0, 1).setText("espresso cup")  # a person types a label: a neighbour's vote for the next one
    second = _accept_box(qtbot, w)
    reason = "server error 500 after retries: internal error"
    w.session.store.set_label_failed(second, reason)  # as the labeller stores a failure
    w.annotate.refresh()
    row = [r for r in range(table(w).rowCount()) if table(w).item(r, 0).text() == str(second)][0]
    cell = table(w).item(row, 2)
    assert cell.text().startswith("failed") and first != second
    assert reason in cell.text() or reason in (cell.toolTip() or ""), (cell.text(), cell.toolTip())
    assert "espresso cup 1/1" not in cell.text(), cell.text()


def test_the_counter_counts_the_objects_that_the_filter_hides(make_napari_viewer, qtbot, tiny_engine, folder):
    """The Audit panel's filter hides rows of the table, not objects: "objects here" stays the image's count."""
    viewer, w = _open(make_napari_viewer, qtbot, tiny_engine, folder)
    _accept_box(qtbot, w)
    assert "objects here: 1" in counter(w)
    set_table_filter(w, "flagged for review")  # nothing is flagged: the table is empty
    assert audit_table(w).rowCount() == 0 and (w.layers.objects.data > 0).any()
    assert "objects here: 1" in counter(w), counter(w)


def test_fine_as_it_is_says_what_it_did(make_napari_viewer, qtbot, tmp_path):
    """The flagged object is kept as it is, and the status line says so (it said nothing: the annotator could not
    tell whether the click did anything)."""
    from clicklabel.segment import make_engine

    path, lone = _flagged_project(tmp_path)
    viewer, w = _open(make_napari_viewer, qtbot, make_engine("grabcut"), path)
    show_tab(w, "Audit")
    press(w, "next_review")
    qtbot.waitUntil(lambda: audit_table(w).selected_ids() == [lone], timeout=30_000)
    before = status(w)
    press(w, "fine")
    assert w.session.object(lone).review is None  # kept as it is
    assert status(w) != before and str(lone) in status(w), (before, status(w))


def test_a_button_that_needs_a_selection_says_where_to_select(make_napari_viewer, qtbot, tmp_path):
    """On the Audit tab, "select ... in the table" sends the annotator looking for a table that is not there: the
    selection can be made where the button is, or the words say where the table is."""
    from clicklabel.segment import make_engine

    path, lone = _flagged_project(tmp_path)
    viewer, w = _open(make_napari_viewer, qtbot, make_engine("grabcut"), path)
    show_tab(w, "Audit")
    audit_table(w).clearSelection()
    press(w, "fine")
    assert w.session.object(lone).review  # nothing selected: nothing done
    assert audit_table(w).isVisible() or "Annotate" in status(w), status(w)


def test_the_review_counter_is_right_after_reject_and_undo(make_napari_viewer, qtbot, tiny_engine, folder):
    """X rejects the highlighted proposal, Ctrl+Z brings it back: every line that counts the waiting proposals
    says so again."""
    viewer, w = _open(make_napari_viewer, qtbot, tiny_engine, folder)
    _propose(qtbot, viewer, w, OPEN)
    n = len(w.review.proposed)
    assert n >= 2 and w.review.reviewing
    first = w.review.highlighted.id
    key(viewer, "x")
    assert w.session.object(first).state == "rejected" and len(w.review.proposed) == n - 1
    assert _eventually(qtbot, lambda: f"{n - 1} proposal(s) waiting" in counter(w)), counter(w)
    key(viewer, "z", Qt.KeyboardModifier.ControlModifier)
    assert len(w.review.proposed) == n and w.session.object(first).state == "proposed"
    assert f"{n} proposal(s) wait" in review_info(w), review_info(w)
    assert _eventually(qtbot, lambda: f"{n} proposal(s) waiting" in counter(w)), counter(w)
    assert w.review.reviewing and w.review.highlighted is not None


def test_s_on_the_last_proposal_says_it_goes_back_to_the_first(make_napari_viewer, qtbot, tiny_engine, folder):
    """S on the last waiting proposal highlights the first again, and says so (it showed "Proposal 1 of 3" as if
    nothing had happened)."""
    viewer, w = _open(make_napari_viewer, qtbot, tiny_engine, folder)
    _propose(qtbot, viewer, w, ProposeSettings(grid=6, pred_iou_thresh=0.0, stability_thresh=0.0, nms_thresh=1.0,
                                               max_proposals=3))
    assert len(w.review.proposed) == 3 and "Proposal 1 of 3" in status(w)
    key(viewer, "s")
    key(viewer, "s")
    assert "Proposal 3 of 3" in status(w)
    key(viewer, "s")
    assert w.review.highlighted.id == w.review.proposed[0].id
    assert re.search(r"wrap|first|again|last", status(w), re.I), status(w)


# -- 7: the objects layer, warnings, the process ---------------------------------------------------------------------
def test_painting_on_the_objects_layer_is_stored_and_undone(make_napari_viewer, qtbot, tiny_engine, folder):
    """napari's brush on "clicklabel objects" paints an object's label: an annotation tool stores that stroke as
    the object's mask (the table and the export see it), and Ctrl+Z undoes it."""
    viewer, w = _open(make_napari_viewer, qtbot, tiny_engine, folder)
    before = np.zeros(w.session.image.shape[:2], bool)
    before[40:100, 60:160] = True
    oid = w.session.store.accept(w.session.current.id, before)
    w.annotate.refresh()
    y, x = 200, 300  # outside the object
    layer = w.layers.objects
    assert layer.data[y, x] == 0 and (layer.data == oid).sum() == before.sum()
    viewer.layers.selection.active = layer
    layer.mode = "paint"
    layer.brush_size = 9
    layer.selected_label = oid
    widget, pos = canvas_widget(viewer), canvas_point(viewer, x, y, layer)
    QTest.mousePress(widget, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pos)
    QTest.mouseRelease(widget, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pos)
    qtbot.waitUntil(lambda: layer.data[y, x] == oid, timeout=10_000)  # napari painted the stroke
    assert _eventually(qtbot, lambda: w.session.object(oid).mask[y, x]), "the stroke napari painted is not stored"
    after = w.session.object(oid).mask
    assert after.sum() > before.sum() and (after | before).sum() == after.sum()  # the stroke added, nothing lost
    layer.mode = "pan_zoom"
    w.annotate.undo()
    assert np.array_equal(w.session.object(oid).mask, before) and layer.data[y, x] == 0


def test_decoding_masks_in_the_widget_pops_up_no_warning(make_napari_viewer, qtbot, tiny_engine, folder,
                                                         monkeypatch):
    """numpy 2 warns (DeprecationWarning) about pycocotools' decoder; napari's workers catch every warning in their
    thread ("always") and emit it (their ``warned`` signal), which napari turns into a pop-up. Opening an image whose
    objects are decoded in the loading worker emits none."""
    from superqt.utils._qthreading import WorkerBase

    from clicklabel.project import Store

    popped = []
    init = WorkerBase.__init__

    def noting_init(self, *args, **kwargs):
        init(self, *args, **kwargs)
        self.warned.connect(lambda shown: popped.append(str(shown[0])))

    monkeypatch.setattr(WorkerBase, "__init__", noting_init)
    store = Store(folder / "project.clicklabel", root=folder)
    for p in sorted(folder.glob("*.jpg")):
        store.add_image_file(p)
    m = np.zeros((341, 512), bool)
    m[20:80, 30:120] = True
    store.accept(store.images()[0].id, m)
    store.close()
    viewer, w = _open(make_napari_viewer, qtbot, tiny_engine, folder / "project.clicklabel")
    assert (w.layers.objects.data > 0).sum() == m.sum()  # the object was decoded (in the worker) and drawn
    assert not [t for t in popped if "copy keyword" in t or "pycocotools" in t], popped


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killing_clicklabel_gui_leaves_no_window_running(tmp_path, sig):
    """`clicklabel gui` killed (SIGTERM, SIGKILL) leaves no `clicklabel-gui` process behind: the window goes with
    it (it ran the program as a child, which outlived it)."""
    psutil = pytest.importorskip("psutil")
    import shutil
    import time

    from conftest import SAMPLES

    if os.name != "posix":
        pytest.skip("POSIX signals")
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(SAMPLES / "coffee.jpg", images / "coffee.jpg")
    project, err = tmp_path / "p.clicklabel", tmp_path / "stderr.txt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(err, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "clicklabel.cli", "gui", str(images), "--project",
                                 str(project), "--engine", "grabcut"], env=env, stdout=subprocess.DEVNULL, stderr=log)
    family = []
    try:
        deadline = time.monotonic() + 240  # an upper bound for the window to come up, not a measurement
        while not project.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)  # polling for the project the window writes
        assert proc.poll() is None and project.exists(), err.read_text()[-2000:]
        family = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
        assert any("clicklabel-gui" in " ".join(p.cmdline()) for p in family)  # the window's program runs
        os.kill(proc.pid, sig)
        proc.wait(timeout=60)
        gone, alive = psutil.wait_procs(family, timeout=30)
        assert not alive, f"still running after {sig.name}: {[(p.pid, ' '.join(p.cmdline())) for p in alive]}"
    finally:
        for p in family:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        if proc.poll() is None:
            proc.kill()
        proc.wait()
