"""Redo docs/screenshot.png: napari with the clicklabel widget docked, one object accepted and labelled.

Runs offline: GrabCut engine (no weights) and the loopback chat-completions server from the tests, whose
answer is fixed ("tabby cat"): the picture shows the UI, not a model's quality.
Usage: xvfb-run -a python scripts/screenshot.py [OUT.png]
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
from clicklabel.segment import make_engine  # noqa: E402
from clicklabel_napari._widget import ClickLabelWidget  # noqa: E402

from lmm_server import FakeLMM  # noqa: E402


def wait(cond, seconds=60):
    app = QApplication.instance()
    end = time.time() + seconds
    while not cond() and time.time() < end:
        app.processEvents()
        time.sleep(0.02)


def main(out: Path) -> None:
    tmp = Path(tempfile.mkdtemp())
    for name in ("chelsea", "coffee"):
        shutil.copy(ROOT / "src/clicklabel/data/samples" / f"{name}.jpg", tmp / f"{name}.jpg")
    answer = {"label": "tabby cat", "category": "cat", "confidence": 0.93}
    with FakeLMM(latency=0.3, answer=lambda body, image: answer) as server:
        viewer = napari.Viewer(title="clicklabel")
        viewer.window.resize(1500, 950)
        labeler = lambda: Labeler(LabelerConfig(base_url=server.url, api_key="local"),  # noqa: E731
                                  LabelCache(tmp / "labels.sqlite"))
        widget = ClickLabelWidget(viewer, engine=make_engine("grabcut"), labeler=labeler)
        widget.engine_box.value = "grabcut"
        viewer.window.add_dock_widget(widget, name="clicklabel", area="right")
        widget.open_folder(str(tmp))
        wait(lambda: widget.session is not None and widget.session.image is not None and widget._busy is None)
        widget.layers.box.data = [np.array([[5, 60], [5, 420], [298, 420], [298, 60]])]
        widget.accept()
        wait(lambda: widget._label_worker is None and widget.session.store.objects()[0].label_status == "done")
        widget.add_point(400, 250, True)  # a second object in progress: its preview and the prompt point
        wait(lambda: False, 1.0)
        viewer.reset_view()  # fit the image to the canvas as it is once the dock widget took its width
        wait(lambda: False, 0.3)
        viewer.screenshot(str(out), canvas_only=False)
        print(f"wrote {out}: {widget.object_texts()}")
        viewer.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "screenshot.png")
