"""GUI tests of the workbench for a full day (under xvfb-run): the box drawn while it is dragged, the layout that
stays put, an image shown before its embedding, the engine loaded in a worker. Real Qt mouse events on napari's
canvas; each test waits for events and states, never for a time."""

import threading

import numpy as np
import pytest

pytest.importorskip("napari")
from gui_input import click, move, press, release  # noqa: E402

import clicklabel_napari  # noqa: E402,F401  (keeps Triton out before any OpenGL context exists)
from clicklabel_napari._widget import ClickLabelWidget  # noqa: E402

from conftest import wait_ready  # noqa: E402

pytestmark = pytest.mark.gui


def _docked(make_napari_viewer, engine, show=True):
    viewer = make_napari_viewer(show=show)
    viewer.window._qt_window.resize(1280, 800)
    w = ClickLabelWidget(viewer, engine=engine, auto_label=False)
    viewer.window.add_dock_widget(w, name="clicklabel", area="right")
    return viewer, w


def test_dragging_a_box_draws_the_band_at_every_move_and_its_mask_at_the_release(make_napari_viewer, qtbot,
                                                                               tiny_engine, folder):
    viewer, w = _docked(make_napari_viewer, tiny_engine)
    w.open_folder(str(folder))
    wait_ready(qtbot, w)
    viewer.reset_view()
    scene = viewer.window._qt_viewer.canvas._scene_canvas
    draws = []
    scene.events.draw.connect(lambda e: draws.append(1), position="last")
    box = w.layers.box
    press(viewer, 60, 50)
    for n, (x, y) in enumerate([(90, 70), (150, 110), (220, 160), (300, 230)]):
        before = len(draws)
        move(viewer, x, y)
        qtbot.waitUntil(lambda before=before: len(draws) > before, timeout=10_000)  # a frame after each move
        assert len(box.data) == 1, n
        rows, cols = np.asarray(box.data[0])[:, 0], np.asarray(box.data[0])[:, 1]
        assert cols.min() == pytest.approx(60, abs=2) and cols.max() == pytest.approx(x, abs=2)
        assert rows.min() == pytest.approx(50, abs=2) and rows.max() == pytest.approx(y, abs=2)
        assert box.edge_width[0] * viewer.camera.zoom == pytest.approx(2.0)  # 2 screen pixels at any zoom
        assert w.session.state.prompt.box is None  # no mask until the release
    qtbot.waitUntil(lambda: not w.prompter.answering, timeout=10_000)
    assert not w.layers.preview.data.any()  # the press's answer (a click's mask) is not shown under the band
    release(viewer, 300, 230)
    qtbot.waitUntil(lambda: w.session.state.prompt.box is not None and not w.prompter.answering, timeout=20_000)
    x0, y0, x1, y1 = w.session.state.prompt.box
    assert (x0, y0) == (pytest.approx(60, abs=2), pytest.approx(50, abs=2))
    assert (x1, y1) == (pytest.approx(300, abs=2), pytest.approx(230, abs=2))
    assert w.session.state.preview is not None and "Enter accepts" in w.status.text()
    assert w.prompter.accept() is not None and w.session.objects()[0].provenance == "box"


def test_the_buttons_stay_put_when_the_status_changes(make_napari_viewer, qtbot):
    from qtpy.QtWidgets import QAbstractButton

    viewer, w = _docked(make_napari_viewer, None)
    qtbot.wait(100)

    def places():
        tabs = w.tabs.geometry().getRect()
        return tabs, [(b.text(), b.mapTo(w, b.rect().topLeft()).y()) for b in w.findChildren(QAbstractButton)
                      if b.isVisible() and b.text() != "Stop"]

    before = places()
    w.say("One short line.")
    qtbot.wait(50)
    assert places() == before
    w.say(" ".join(f"A long message, line {i}, about what went wrong and what to do next." for i in range(12)))
    qtbot.wait(50)
    assert places() == before
    w.counter.setText("Image 1 of 2 (in progress); images done: 0/2; objects here: 12 (labels: 3 pending, 1 "
                      "failed); 40 proposal(s) waiting; labels cost $0.0123 so far; " * 3)
    qtbot.wait(50)
    assert places() == before
    w.progress.setVisible(True)
    w.stop_btn.visible = True
    qtbot.wait(50)
    assert places() == before


def test_an_unencoded_image_shows_at_once_and_clicks_wait_for_its_embedding(make_napari_viewer, qtbot,
                                                                          tiny_engine, folder, monkeypatch):
    release_embedding = threading.Event()
    set_image = tiny_engine.set_image
    monkeypatch.setattr(tiny_engine, "set_image", lambda image: release_embedding.wait(60) and set_image(image))
    viewer, w = _docked(make_napari_viewer, tiny_engine)
    w.open_folder(str(folder))
    # the picture is shown while its embedding is still being computed
    qtbot.waitUntil(lambda: w.layers.image.name == "coffee", timeout=30_000)
    assert w.layers.image.data.shape[:2] == w.session.image.shape[:2] == (341, 512)
    assert w.nav.loading == 0 and not release_embedding.is_set()
    click(viewer, 200, 150)
    assert "still loading" in w.status.text() and w.session.state.preview is None
    qtbot.waitUntil(lambda: not w.progress.isHidden(), timeout=10_000)
    assert "embedding" in w.progress.format()
    release_embedding.set()
    wait_ready(qtbot, w)
    assert w.progress.isHidden() and "click an object" in w.status.text()
    click(viewer, 200, 150)
    qtbot.waitUntil(lambda: w.session.state.preview is not None and not w.prompter.answering, timeout=20_000)


def test_the_engine_loads_in_a_worker_and_stop_leaves_the_engine_in_use(make_napari_viewer, qtbot, tiny_engine,
                                                                      folder, tiny_checkpoint, monkeypatch):
    import clicklabel.segment

    built = threading.Event()
    go_on = threading.Event()
    make = clicklabel.segment.make_engine

    def slow_make(*args, **kwargs):  # a server that does not answer, or a large model: the build waits
        built.set()
        go_on.wait(60)
        return make(*args, **kwargs)

    monkeypatch.setattr(clicklabel.segment, "make_engine", slow_make)
    viewer, w = _docked(make_napari_viewer, tiny_engine)
    w.open_folder(str(folder))
    wait_ready(qtbot, w)
    chooser = w.project.engine
    chooser.checkpoint.value = str(tiny_checkpoint)
    chooser.load_btn.native.click()
    assert built.wait(30) and chooser.loading  # the build runs in a worker; this (UI) thread goes on
    assert not chooser.load_btn.enabled and not w.progress.isHidden() and "loading the engine" in w.progress.format()
    ticks = []
    from qtpy.QtCore import QTimer

    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    timer.start(10)
    qtbot.waitUntil(lambda: len(ticks) >= 5, timeout=10_000)  # the event loop turns while the engine is built
    timer.stop()
    click(viewer, 200, 150)
    assert "engine is loading" in w.status.text()
    w.stop_btn.native.click()  # Stop: the engine in use stays
    assert not chooser.loading and chooser.load_btn.enabled and "abandoned" in w.status.text()
    assert w.engine is tiny_engine
    go_on.set()
    qtbot.waitUntil(lambda: not chooser.loading, timeout=10_000)
    qtbot.wait(200)  # the abandoned build's result, if it arrives, is dropped
    assert w.engine is tiny_engine
    chooser.load_btn.native.click()
    qtbot.waitUntil(lambda: not chooser.loading and w.engine is not tiny_engine, timeout=60_000)
    wait_ready(qtbot, w)
    assert w.engine.name == "sam" and "Engine in use" in chooser.help.text()


def test_a_large_image_is_clicked_in_tiles_and_exported_exactly(make_napari_viewer, qtbot, tiny_engine, tmp_path):
    """A photo larger than the tiles: the status says SAM works in tiles, a real click gives a mask at the image's
    full resolution, and the exported RLE is that mask to the pixel (pycocotools)."""
    import json

    from PIL import Image
    from pycocotools import mask as rle

    from clicklabel.segment.tiled import TiledEngine

    folder = tmp_path / "big"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((500, 700, 3)) * 255).astype(np.uint8)).save(folder / "big.png")
    viewer, w = _docked(make_napari_viewer, TiledEngine(tiny_engine, 256))
    w.open_folder(str(folder))
    wait_ready(qtbot, w)
    assert "tiles at full resolution" in w.status.text()
    viewer.reset_view()
    click(viewer, 600, 420)
    qtbot.waitUntil(lambda: w.session.state.preview is not None and not w.prompter.answering, timeout=60_000)
    if w.session.state.preview.empty:
        pytest.skip("random weights gave an empty mask here")
    oid = w.prompter.accept()
    ob = w.session.object(oid)
    assert ob.mask.shape == (500, 700)
    w.export(str(tmp_path / "big.json"))
    qtbot.waitUntil(lambda: not w.bench.tasks.running("exporting"), timeout=60_000)
    doc = json.loads((tmp_path / "big.json").read_text())
    (ann,) = doc["annotations"]
    seg = ann["segmentation"]
    decoded = rle.decode(rle.frPyObjects(seg, seg["size"][0], seg["size"][1]) if isinstance(seg["counts"], list)
                         else {"size": seg["size"], "counts": seg["counts"].encode()}).astype(bool)
    assert np.array_equal(decoded, ob.mask) and ann["area"] == int(ob.mask.sum())
