"""Redo docs/screenshot.png (click mode) and docs/screenshot-propose.png (review mode): napari at 1280x800 with the
clicklabel widget docked.

Runs offline: the GrabCut engine (no weights) and the loopback chat-completions server from the tests, whose
answers are fixed: the pictures show the UI, not a model's quality. GrabCut cannot propose, so for the review
picture four proposals are made by GrabCut from four boxes and stored as SAM's would be (state 'proposed').
Usage: xvfb-run -a python scripts/screenshot.py [DOCS_FOLDER]
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

import napari  # noqa: E402
import numpy as np  # noqa: E402
from qtpy.QtWidgets import QApplication  # noqa: E402

import clicklabel_napari  # noqa: E402,F401  (before OpenGL starts)
from clicklabel.label import LabelCache, Labeler, LabelerConfig  # noqa: E402
from clicklabel.project import Store  # noqa: E402
from clicklabel.segment import Prompt, make_engine  # noqa: E402
from clicklabel_napari._widget import ClickLabelWidget  # noqa: E402

from lmm_server import FakeLMM  # noqa: E402

SAMPLES = ROOT / "src/clicklabel/data/samples"
# (box x0, y0, x1, y1, score) of the coffee photo's saucer, cup, spoon and coffee
PROPOSALS = [((62, 52, 412, 334), 0.97), ((143, 12, 352, 268), 0.95), ((268, 52, 366, 282), 0.91),
             ((172, 78, 318, 165), 0.88)]


def wait(cond, seconds=60):
    app = QApplication.instance()
    end = time.time() + seconds
    while not cond() and time.time() < end:
        app.processEvents()
        time.sleep(0.02)


def viewer_with_widget(labeler, folder: Path):
    viewer = napari.Viewer(title="clicklabel")
    viewer.window._qt_window.resize(1280, 800)
    widget = ClickLabelWidget(viewer, engine=make_engine("grabcut"), labeler=labeler)
    widget.project.engine.engine_box.value = "grabcut"
    viewer.window.add_dock_widget(widget, name="clicklabel", area="right")
    widget.open_folder(str(folder))
    wait(lambda: widget.session is not None and widget.session.image is not None and widget.nav.loading is None)
    return viewer, widget


def shoot(viewer, out: Path) -> None:
    wait(lambda: False, 0.5)
    viewer.reset_view()  # fit the image to the canvas as it is once the dock widget took its width
    wait(lambda: False, 0.5)
    viewer.screenshot(str(out), canvas_only=False)


def click_mode(out: Path, tmp: Path) -> None:
    folder = tmp / "click"
    folder.mkdir()
    for name in ("chelsea", "coffee"):
        shutil.copy(SAMPLES / f"{name}.jpg", folder / f"{name}.jpg")
    answer = {"label": "tabby cat", "category": "cat", "confidence": 0.93}
    with FakeLMM(latency=0.3, answer=lambda body, image: answer) as server:
        labeler = lambda: Labeler(LabelerConfig(base_url=server.url, api_key="local"),  # noqa: E731
                                  LabelCache(tmp / "labels.sqlite"))
        viewer, widget = viewer_with_widget(labeler, folder)
        widget.layers.box.data = [np.array([[5, 60], [5, 420], [298, 420], [298, 60]])]
        wait(lambda: widget.session.state.preview is not None and not widget.prompter.answering)
        widget.prompter.accept()
        wait(lambda: not widget.labels.running and widget.session.store.objects()[0].label_status == "done")
        widget.prompter.add_point(400, 250, True)  # a second object in progress: its preview and the prompt point
        wait(lambda: widget.session.state.preview is not None and not widget.prompter.answering)
        shoot(viewer, out)
        print(f"wrote {out}: {widget.annotate.object_texts()}")
        viewer.close()


def review_mode(out: Path, tmp: Path) -> None:
    folder = tmp / "review"
    folder.mkdir()
    shutil.copy(SAMPLES / "coffee.jpg", folder / "coffee.jpg")
    store = Store(folder / "project.clicklabel", root=folder)
    image_id = store.add_image_file(folder / "coffee.jpg")
    engine = make_engine("grabcut")
    engine.set_image(store.load_image(image_id))
    for box, score in PROPOSALS:
        mask = engine.predict(Prompt.make(box=box))[0].mask
        store.accept(image_id, mask, provenance="proposed", state="proposed", score=score, engine="grabcut",
                     model="grabcut", clicks=0)
    store.close()
    answer = {"label": "saucer", "category": "tableware", "confidence": 0.88}
    with FakeLMM(latency=0.3, answer=lambda body, image: answer) as server:
        labeler = lambda: Labeler(LabelerConfig(base_url=server.url, api_key="local"),  # noqa: E731
                                  LabelCache(tmp / "labels.sqlite"))
        viewer, widget = viewer_with_widget(labeler, folder)
        widget.tabs.setCurrentIndex(1)  # the Review tab
        widget.review.propose()  # proposals wait already: review them
        widget.review.decide(True)  # the saucer, accepted and labelled
        wait(lambda: not widget.labels.running and widget.session.objects()[0].label_status == "done")
        wait(lambda: not widget.bench.drawing_pending)
        shoot(viewer, out)
        print(f"wrote {out}: {widget.annotate.object_texts()}; {widget.status.text()}")
        viewer.close()


def main(docs: Path) -> None:
    tmp = Path(tempfile.mkdtemp())
    click_mode(docs / "screenshot.png", tmp)
    review_mode(docs / "screenshot-propose.png", tmp)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs")
