"""GUI tests of what the workbench tells the annotator and what it keeps (under xvfb-run): propose's words and
thresholds, a progress bar that shows no stale count, a failed label's reason, the counter under a filter, the
audit buttons' words, the review counter after undo, S at the last proposal, napari's brush on the objects layer
stored in the project, no pycocotools deprecation pop-up, and `clicklabel gui` leaving no window behind when it is
killed. Real Qt clicks and keys where a person would use them; the small random SAM (random weights: nothing passes
SAM's default thresholds), the loopback LMM.

The widget's controls are reached through the helpers below only, so that a change of the widget's layout (panels
owning their controls) is followed in one place."""

import os
import signal
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("napari")
from gui_input import key  # noqa: E402
from qtpy.QtCore import Qt  # noqa: E402
from qtpy.QtTest import QTest  # noqa: E402

import clicklabel_napari  # noqa: E402,F401  (keeps Triton out before any OpenGL context exists)
from clicklabel.label import LabelCache, Labeler, LabelerConfig  # noqa: E402
from clicklabel.segment.propose import ProposeSettings  # noqa: E402
from clicklabel_napari._widget import ClickLabelWidget  # noqa: E402

from conftest import box_scene, wait_ready  # noqa: E402

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
    return w.review_info.text()


def bar(w):
    """The progress bar (a QProgressBar)."""
    return w.progress


def table(w):
    """The objects table (a QTableWidget)."""
    return w.table


def button(w, name: str):
    """A button's Qt widget: 'propose', 'fine' (Fine as it is), 'next_review' (Next in filter >), ..."""
    return getattr(w, f"{name}_btn").native


def press(w, name: str) -> None:
    """A real mouse click on a button."""
    b = button(w, name)
    QTest.mouseClick(b, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, b.rect().center())


def field(w, name: str):
    """A settings field (magicgui value widget) by the name of what it sets: 'grid', 'min_area', 'max_props', and
    propose's thresholds under ProposeSettings' names, 'pred_iou_thresh' and 'stability_thresh'; None if absent."""
    return getattr(w, name, None)


def set_table_filter(w, choice: str) -> None:
    """The Audit panel's 'table shows' choice: 'all objects', 'flagged for review', ..."""
    w.table_filter.value = choice


def show_tab(w, title: str) -> None:
    """Bring the widget's tab ``title`` to the front, as a click on it does."""
    tabs = w.tabs
    titles = [tabs.tabText(i) for i in range(tabs.count())]
    tabs.setCurrentIndex(titles.index(title))


def use_proposals(w, settings: ProposeSettings) -> None:
    """Propose with these settings (beyond the fields), as the tests and benchmarks do."""
    w.propose_settings = settings


def _idle(w) -> bool:
    return (w.session is not None and w.session.image is not None and w._loading is None and not w.answering
            and w._propose_worker is None)


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
    return w.accept()


# -- 7: warnings, the process ---------------------------------------------------------------------------------------
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
