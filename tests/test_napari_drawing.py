"""GUI tests of what drawing and clicking cost (under xvfb-run): each mask decoded once, no picking render or napari
bookkeeping per click, one decoder thread, shader programs kept, the status bar and the texts' glyphs out of the
way, no full garbage collection in the UI thread. Each guards a measured cost (docs/benchmarks.md, GUI latency)."""

import numpy as np
import pytest

pytest.importorskip("napari")
import clicklabel_napari  # noqa: E402,F401  (keeps Triton out before any OpenGL context exists)
from clicklabel_napari._widget import ClickLabelWidget  # noqa: E402

from conftest import wait_ready  # noqa: E402

pytestmark = pytest.mark.gui


def test_objects_layer_decodes_each_mask_once(make_napari_viewer):
    from clicklabel.masks import encode_rle, tight_bbox
    from clicklabel_napari._layers import LayerSet

    class Ob:  # the fields show_objects reads, with a count of mask decodes
        decodes = 0

        def __init__(self, oid, mask):
            self.id, self.rle, self.bbox = oid, encode_rle(mask), tight_bbox(mask)
            self.label, self.label_status, self.label_confidence = "x", "done", 0.9
            self._m = mask

        @property
        def mask(self):
            Ob.decodes += 1
            return self._m

    rng = np.random.default_rng(0)
    obs = []
    for i in range(1, 61):
        m = np.zeros((300, 400), bool)
        r, c = rng.integers(0, 250), rng.integers(0, 350)
        m[r : r + rng.integers(3, 50), c : c + rng.integers(3, 50)] = True
        m[r, c + 2 :] = False
        obs.append(Ob(i, m))
    layers = LayerSet(make_napari_viewer())
    layers.show_image(np.zeros((300, 400, 3), np.uint8), "blank", np.zeros((300, 400), np.int32), [])
    layers.show_objects(obs, (300, 400))
    expected = np.zeros((300, 400), np.int32)
    for ob in obs:
        expected[ob._m] = ob.id
    assert np.array_equal(layers.objects.data, expected)
    assert Ob.decodes == 60
    layers.show_objects(obs[:-1], (300, 400))  # the next redraw (one object deleted) decodes nothing
    assert Ob.decodes == 60
    expected[obs[-1]._m] = 0
    for ob in obs[:-1]:  # later objects are drawn over earlier ones, as before
        expected[ob._m] = ob.id
    assert np.array_equal(layers.objects.data, expected)
    # boxes: one per object, in order, with each object's text and status colour, also after a label change
    obs[3].label_status, obs[3].label = "failed", None
    layers.show_objects(obs[:-1], (300, 400))
    boxes = layers.boxes
    assert len(boxes.data) == 59
    assert np.allclose(boxes.data[5][0], [obs[5].bbox[1], obs[5].bbox[0]])  # (row, col) of the top-left corner
    x, y, bw, bh = obs[5].bbox
    assert np.allclose(boxes.data[5][[0, 2]], [[y, x], [y + bh, x + bw]]) and np.allclose(boxes.data[5][4], [y, x])
    # outlines without a face: a transparent face is still rasterised, over each box's area at every frame
    assert set(boxes.shape_type) == {"path"} and not any(s.face_triangles_count for s in boxes._data_view.shapes)
    assert list(boxes.features["text"])[3] == "#4 label failed"
    assert np.allclose(boxes.edge_color[3], [1, 0, 0, 1]) and np.allclose(boxes.edge_color[4], [0, 1, 0, 1])
    layers.show_objects(obs, (300, 400))  # one object back: added, the others kept
    assert len(boxes.data) == 60 and list(boxes.features["text"])[59] == "#60 x 0.90"
    # each colour or text setter rebuilds the whole layer: only what changed is set
    events = []
    boxes.events.edge_color.connect(lambda e: events.append("colours"))
    boxes.events.features.connect(lambda e: events.append("texts"))
    layers.show_objects(obs, (300, 400))  # nothing changed
    assert events == []
    obs[3].label_status, obs[3].label = "done", "y"
    layers.show_objects(obs, (300, 400))
    assert set(events) == {"colours", "texts"} and list(boxes.features["text"])[3] == "#4 y 0.90"
    assert np.allclose(boxes.edge_color[3], [0, 1, 0, 1])
    events.clear()
    layers.show_objects(obs[:-1], (300, 400))  # redrawn from scratch: the new outlines come with their colours
    layers.show_objects(obs, (300, 400))  # one added: its colour comes with it, the others' stay
    assert "colours" not in events and np.allclose(boxes.edge_color[3], [0, 1, 0, 1])
    assert list(boxes.features["text"])[59] == "#60 x 0.90"


def test_a_press_on_the_canvas_needs_no_picking_render(make_napari_viewer, monkeypatch):
    """vispy rendered the scene a second time at every mouse press to find the view under the mouse; the widget
    answers that itself, and lets vispy pick again where the scene has other interactive visuals (grid mode)."""
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((50, 60)))
    ClickLabelWidget(viewer)
    qc = viewer.window._qt_viewer.canvas
    scene = qc._scene_canvas
    rendered = []
    monkeypatch.setattr(scene, "_render_picking", lambda *a, **k: rendered.append(1) or np.zeros((1, 1), np.uint32))
    assert scene.visual_at((10, 10)) is qc.view and not rendered
    viewer.grid.enabled = True  # the grid is the interactive node now: vispy picks as before
    scene.visual_at((10, 10))
    assert rendered


def test_clicks_cost_no_napari_bookkeeping_and_share_one_decoder_thread(make_napari_viewer, qtbot, tiny_engine,
                                                                        folder, monkeypatch):
    """Setting the prompt point made napari recompute the viewer's dimension ranges (twice per set) and repaint the
    layer list's row; the widget's prompt and box layers skip both. Every click is decoded in the same long-lived
    thread (its OpenMP team stays warm), not the UI thread."""
    import threading

    from napari._qt.containers.qt_layer_model import QtLayerListModel
    from napari.components.layerlist import LayerList

    counts = {"ranges": 0, "rows": 0}
    ranges, rows = LayerList._ranges, QtLayerListModel._process_event
    monkeypatch.setattr(LayerList, "_ranges", property(
        lambda self: counts.__setitem__("ranges", counts["ranges"] + 1) or ranges.fget(self)))
    monkeypatch.setattr(QtLayerListModel, "_process_event",  # the layer list's row updates, as the widget finds them
                        lambda self, event: counts.__setitem__("rows", counts["rows"] + 1) or rows(self, event))
    viewer = make_napari_viewer()
    w = ClickLabelWidget(viewer, engine=tiny_engine, auto_label=False)
    viewer.window.add_dock_widget(w, area="right")
    w.open_folder(str(folder))
    wait_ready(qtbot, w)
    qtbot.wait(300)
    threads = []
    predict = tiny_engine.predict
    monkeypatch.setattr(tiny_engine, "predict", lambda *a, **k: threads.append(threading.current_thread()) or
                        predict(*a, **k))
    counts.update(ranges=0, rows=0)
    for x, y in ((100, 80), (150, 120), (60, 40)):
        w.prompter.add_point(x, y, True)
        wait_ready(qtbot, w)
        qtbot.wait(100)
        assert len(w.layers.prompts.data) > 0 and w.session.state.preview is not None
        w.prompter.clear()
        qtbot.wait(100)
    assert counts == {"ranges": 0, "rows": 0}
    assert len(threads) == 3 and len(set(threads)) == 1 and threads[0] is not threading.main_thread()
    assert threads[0].name.startswith("clicklabel-decode") and threads[0].is_alive()
    other = viewer.add_points(np.array([[5.0, 5.0]]))  # any other layer still updates the viewer and its row
    qtbot.wait(100)
    counts.update(ranges=0, rows=0)
    other.data = np.array([[5.0, 5.0], [9.0, 9.0]])
    qtbot.wait(100)
    assert counts["ranges"] > 0 and counts["rows"] > 0


def test_new_boxes_reuse_their_shader_program(make_napari_viewer, qtbot, tiny_engine, folder, monkeypatch):
    """vispy's Mesh made a new colour function at every data update, so every accepted object (new box) and every
    label (new box colour) compiled and linked the shapes' shaders again (30-50 ms of software OpenGL). The
    widget's boxes keep their program; a plain napari Shapes layer beside them still rebuilds its own."""
    import vispy.gloo.program as gloo_program

    viewer = make_napari_viewer()
    w = ClickLabelWidget(viewer, engine=tiny_engine, auto_label=False)
    w.open_folder(str(folder))
    wait_ready(qtbot, w)
    scene = viewer.window._qt_viewer.canvas._scene_canvas
    builds = []
    set_shaders = gloo_program.Program.set_shaders
    monkeypatch.setattr(gloo_program.Program, "set_shaders",
                        lambda self, *a, **k: builds.append(self) or set_shaders(self, *a, **k))
    for n, (x, y) in enumerate(((100, 80), (150, 120), (60, 40))):
        w.prompter.add_point(x, y, True)
        wait_ready(qtbot, w)
        assert w.prompter.accept() is not None
        scene.render()  # draws every visual (the window may be hidden here)
        if n == 0:  # the first box: its program is made once
            builds.clear()
    assert len(w.layers.boxes.data) == 3 and builds == []
    other = viewer.add_shapes([[[5, 5], [5, 20], [20, 20], [20, 5]]], edge_color="red")
    scene.render()
    builds.clear()
    other.add_rectangles([[[30, 30], [40, 40]]])
    scene.render()
    assert builds  # vispy's own behaviour, for a layer that is not the widget's


def test_switching_images_keeps_the_shader_programs(make_napari_viewer, qtbot, tiny_engine, folder, monkeypatch):
    """Replacing a Labels layer's data made vispy build its colour function anew, so every image switch compiled
    and linked the objects' and preview's shaders again (30-50 ms each, software OpenGL); the widget's labels keep
    their programs, and the objects are still drawn in their colours."""
    import vispy.gloo.program as gloo_program
    from gui_input import canvas_point

    viewer = make_napari_viewer()
    w = ClickLabelWidget(viewer, engine=tiny_engine, auto_label=False)
    w.open_folder(str(folder))
    wait_ready(qtbot, w)
    w.prompter.add_point(100, 80, True)
    wait_ready(qtbot, w)
    oid = w.prompter.accept()
    scene = viewer.window._qt_viewer.canvas._scene_canvas
    for step in (+1, -1):  # both images drawn once: every program exists
        w.nav.go(step)
        wait_ready(qtbot, w)
        scene.render()
    builds = []
    set_shaders = gloo_program.Program.set_shaders
    monkeypatch.setattr(gloo_program.Program, "set_shaders",
                        lambda self, *a, **k: builds.append(self) or set_shaders(self, *a, **k))
    for step in (+1, -1):
        w.nav.go(step)
        wait_ready(qtbot, w)
        frame = scene.render()
    assert builds == []
    ys, xs = np.nonzero(w.session.store.object(oid).mask)
    p = canvas_point(viewer, float(np.median(xs)), float(np.median(ys)), w.layers.image)
    ratio = frame.shape[0] / scene.size[1]  # physical pixels per logical one
    w.layers.objects.visible = False
    bare = scene.render()
    w.layers.objects.visible = True
    y, x = round(p.y() * ratio), round(p.x() * ratio)
    assert np.abs(frame[y, x, :3].astype(int) - bare[y, x, :3]).max() > 10  # the object is drawn in its colour


def test_the_status_bar_is_repainted_with_the_mask(make_napari_viewer, qtbot, tiny_engine, folder, monkeypatch):
    """A press changes the cursor position in napari's status bar, and repainting it makes Qt compose the whole
    window (both cores on software OpenGL) while the decoder works: it is held until the answer is applied, or
    for at most ``POINT_DELAY_MS``. The decoder is held by an event, so which of the two released the bar is
    known, not raced."""
    import threading

    from gui_input import click

    from clicklabel_napari._prompting import POINT_DELAY_MS

    viewer = make_napari_viewer()
    w = ClickLabelWidget(viewer, engine=tiny_engine, auto_label=False)
    viewer.window.add_dock_widget(w, area="right")
    w.open_folder(str(folder))
    wait_ready(qtbot, w)
    bar = viewer.window._qt_window.statusBar()
    predict, go = tiny_engine.predict, threading.Event()
    monkeypatch.setattr(tiny_engine, "predict", lambda *a, **k: go.wait(60) and predict(*a, **k))
    limit = w.prompter._status_hold._timer
    assert limit.isSingleShot() and limit.interval() == POINT_DELAY_MS
    # the answer comes first: it releases the bar (the limit pushed out of reach to tell the two apart)
    limit.setInterval(600_000)
    click(viewer, 100, 80)
    assert w.prompter.answering and not bar.updatesEnabled()
    go.set()
    wait_ready(qtbot, w)
    assert bar.updatesEnabled() and w.session.state.preview is not None and not limit.isActive()
    w.prompter.clear()
    # the answer does not come: the bar is released by the limit alone, the answer still awaited
    limit.setInterval(POINT_DELAY_MS)
    go.clear()
    click(viewer, 60, 40)
    assert not bar.updatesEnabled() and limit.isActive()
    qtbot.waitUntil(bar.updatesEnabled, timeout=30_000)
    assert w.prompter.answering
    go.set()
    wait_ready(qtbot, w)
    assert bar.updatesEnabled()


def test_the_characters_of_box_texts_are_rendered_ahead(make_napari_viewer, qtbot):
    """napari renders a character the first time a text shows it (80-170 ms for the first label texts); the widget
    renders them ahead, a character per timer tick, and stops its timer when all are there."""
    from clicklabel_napari._lean import GLYPHS

    viewer = make_napari_viewer()
    w = ClickLabelWidget(viewer)
    info = viewer.window._qt_viewer.canvas._font_info
    font = info.font_manager.get_font(info.face)
    assert w._glyphs is not None and w._glyphs.isActive()
    qtbot.waitUntil(lambda: all(c in font._glyphs for c in GLYPHS), timeout=30_000)
    qtbot.waitUntil(lambda: not w._glyphs.isActive(), timeout=5_000)


def test_the_first_image_freezes_the_start_up_objects_without_a_full_collection(monkeypatch):
    """A full collection at the first image walked every object napari, Qt and torch had made (0.35 s in the UI
    thread); only the young generations are collected before they are frozen."""
    import gc

    from clicklabel_napari import _images

    calls = []
    collect = gc.collect
    monkeypatch.setattr(gc, "collect", lambda *a: calls.append(a) or collect(*a))
    _images._freeze_startup_objects.cache_clear()
    _images._freeze_startup_objects()
    _images._freeze_startup_objects()  # once only
    assert calls == [(1,)] and gc.get_freeze_count() > 0
