"""Large images in the widget: a pyramid image layer, overlay layers painted for the visible region only (bounded
memory), objects stored at native resolution and drawn where they are, and back to a small image's full-size
layers. Real Qt mouse events on napari's canvas (under xvfb-run); each test waits for events and states."""

from types import SimpleNamespace

import numpy as np
import pytest

from clicklabel.large_images import rle_crop
from clicklabel.masks import encode_rle, tight_bbox

pytest.importorskip("napari")
from qtpy.QtCore import Qt  # noqa: E402
from qtpy.QtTest import QTest  # noqa: E402

import clicklabel_napari  # noqa: E402,F401  (keeps Triton out before any OpenGL context exists)
from clicklabel_napari._viewport import Frame, camera  # noqa: E402

from conftest import sample_folder, wait_ready  # noqa: E402

H, W = 3000, 5200  # long side above large_images.PYRAMID_ABOVE
DISK = (4000, 2000, 120)  # x, y, radius of the dark disk to click


def test_rle_crop_is_the_mask_in_its_tight_box():
    rng = np.random.default_rng(0)
    for i in range(60):
        h, w = (int(v) for v in rng.integers(1, 50, 2))
        m = rng.random((h, w)) < 0.3 * (i % 3)
        box = tight_bbox(m)
        crop = rle_crop(encode_rle(m))
        if box is None:
            assert crop is None
            continue
        x, y, bw, bh = box
        assert crop[0] == (y, x) and np.array_equal(crop[1], m[y : y + bh, x : x + bw])


def test_a_frame_samples_masks_where_its_pixels_lie():
    rng = np.random.default_rng(1)
    full = rng.random((97, 131)) < 0.4
    for box, step in [((10, 5, 120, 90), 4), ((0, 0, 131, 97), 1), ((33, 21, 34, 22), 2), ((64, 40, 131, 97), 8)]:
        frame = Frame(full.shape, box, step)
        x0, y0, x1, y1 = box
        want = full[y0:y1:step, x0:x1:step]
        assert frame.shape == want.shape
        for r, c, h, w in [(0, 0, 97, 131), (7, 9, 30, 40), (50, 60, 3, 3), (90, 120, 7, 11)]:
            got = np.zeros(frame.shape, bool)
            fit = frame.fit(((r, c), full[r : r + h, c : c + w]))
            if fit is not None:
                (k, j), part = fit
                got[k : k + part.shape[0], j : j + part.shape[1]] = part
            sub = np.zeros_like(full)
            sub[r : r + h, c : c + w] = full[r : r + h, c : c + w]
            assert np.array_equal(got, sub[y0:y1:step, x0:x1:step]), (box, step, r, c)
    assert Frame((10, 10)).fit("as it is") == "as it is"  # a small image's layers: the crop unchanged


def _big_folder(tmp_path):
    import cv2

    folder = sample_folder(tmp_path / "images", names=("coffee",))
    img = np.full((H, W, 3), 200, np.uint8)
    img[::40] = 185  # faint lines: something for the pyramid to average
    x, y, r = DISK
    cv2.circle(img, (x, y), r, (30, 40, 50), -1)
    cv2.imwrite(str(folder / "a_big.png"), img)
    return folder


def _window_value(layer, x: float, y: float) -> int:
    """The overlay layer's value at image pixel (x, y), through its scale and translate."""
    (sy, sx), (ty, tx) = layer.scale, layer.translate
    r, c = int(round((y - ty) / sy)), int(round((x - tx) / sx))
    if not (0 <= r < layer.data.shape[0] and 0 <= c < layer.data.shape[1]):
        return -1
    return int(layer.data[r, c])


def _click(viewer, layer, x: float, y: float) -> None:
    """A real press and release at image pixel (x, y), mapped through ``layer``'s visual (scale and translate)."""
    from gui_input import canvas_point, canvas_widget

    (sy, sx), (ty, tx) = layer.scale, layer.translate
    pos = canvas_point(viewer, (x - tx) / sx, (y - ty) / sy, layer=layer)
    widget = canvas_widget(viewer)
    QTest.mousePress(widget, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pos)
    QTest.mouseRelease(widget, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pos)


def _drawn_in_place(viewer, qtbot, layer, x: float, y: float, size: float, path) -> None:
    """What ``layer`` adds to the picture on the screen (a screenshot with it, one without) is a blob ``size``
    screen pixels wide centred on image pixel (x, y)."""
    from gui_input import canvas_point

    qtbot.wait(100)
    shot = viewer.screenshot(str(path), canvas_only=True, flash=False)
    layer.visible = False
    qtbot.wait(100)
    bare = viewer.screenshot(canvas_only=True, flash=False)
    layer.visible = True
    rows, cols = np.nonzero(np.abs(shot[..., :3].astype(int) - bare[..., :3].astype(int)).sum(-1) > 20)
    (sy, sx), (ty, tx) = layer.scale, layer.translate
    centre = canvas_point(viewer, (x - tx) / sx, (y - ty) / sy, layer=layer)
    ratio = shot.shape[1] / viewer.window._qt_viewer.canvas.native.width()  # the screen's pixel ratio
    assert len(rows) and abs(cols.mean() / ratio - centre.x()) <= 2 and abs(rows.mean() / ratio - centre.y()) <= 2
    assert abs((cols.max() - cols.min()) / ratio - size) <= 3 and abs((rows.max() - rows.min()) / ratio - size) <= 3


def _stroke_kept_beyond_the_window(viewer, qtbot, w, oid: int, x: int, y: int) -> None:
    """Zoomed in on (x, y), the object's right edge, so that the painted region holds part of the object only: a
    brush stroke there is stored, and the object's pixels outside the region stay."""
    from gui_input import canvas_point, canvas_widget

    layers, cam = w.layers, camera(viewer)
    cam.center, cam.zoom = (y, x), 4.0
    layers.viewport.follow(force=True)  # (zooming in stays inside the region painted at zoom 1: painted anew here)
    assert layers.frame.box[0] > x - 2 * DISK[2] and layers.frame.step == 1
    before = w.session.object(oid).mask
    layer = layers.objects
    viewer.layers.selection.active = layer
    layer.mode, layer.brush_size, layer.selected_label = "paint", 5, oid
    (ty, tx) = layer.translate
    sx, sy = x + 8, y  # just outside the disk
    widget, pos = canvas_widget(viewer), canvas_point(viewer, sx - tx, sy - ty, layer)
    QTest.mousePress(widget, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pos)
    QTest.mouseRelease(widget, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pos)
    qtbot.waitUntil(lambda: w.session.object(oid).mask[sy, sx], timeout=10_000)
    after = w.session.object(oid).mask
    assert (after & before).sum() == before.sum() and after.sum() > before.sum()  # the stroke added, nothing lost
    assert f"#{oid} repainted" in w.status.text()
    layer.mode = "pan_zoom"
    viewer.layers.selection.active = layers.image
    cam.center, cam.zoom = (y, x - DISK[2]), 1.0  # back to the disk's centre
    layers.viewport.follow(force=True)


@pytest.mark.gui
def test_a_large_image_is_a_pyramid_with_overlays_painted_where_the_camera_looks(make_napari_viewer, qtbot,
                                                                                 tmp_path):
    from clicklabel.segment.grabcut import GrabCutEngine
    from clicklabel_napari._widget import ClickLabelWidget

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1280, 800)
    w = ClickLabelWidget(viewer, engine=GrabCutEngine(), auto_label=False)
    viewer.window.add_dock_widget(w, name="clicklabel", area="right")
    w.open_folder(str(_big_folder(tmp_path)))
    wait_ready(qtbot, w)
    layers = w.layers
    assert w.session.image.shape[:2] == (H, W) and layers.image.name == "a_big"
    assert layers.image.multiscale and len(layers.image.data) > 1
    assert layers.image.data[0].shape[:2] == (H, W) and viewer.layers.index(layers.image) == 0  # drawn first
    for layer in (layers.objects, layers.preview, layers.proposals):  # bounded: about the screen's pixels
        assert layer.data.size * 8 < H * W and layer.scale[0] > 1

    x, y, r = DISK
    camera(viewer).center = (y, x)
    camera(viewer).zoom = 1.0
    qtbot.waitUntil(lambda: layers.frame.step == 1, timeout=10_000)  # painted again once the camera rested
    assert layers.objects.data.size * 8 < H * W
    _click(viewer, layers.preview, x, y)
    qtbot.waitUntil(lambda: w.session.state.preview is not None and not w.prompter.answering, timeout=60_000)
    assert _window_value(layers.preview, x, y) == 1 and _window_value(layers.preview, x + 2 * r, y) == 0
    oid = w.prompter.accept()
    assert oid is not None
    ob = w.session.object(oid)
    assert ob.rle["size"] == [H, W]  # stored at native resolution
    bx, by, bw, bh = ob.bbox
    assert abs(bx - (x - r)) <= 3 and abs(by - (y - r)) <= 3
    assert abs(bw - (2 * r + 1)) <= 6 and abs(bh - (2 * r + 1)) <= 6
    assert _window_value(layers.objects, x, y) == oid and _window_value(layers.objects, x + 2 * r, y) == 0
    assert _window_value(layers.objects, x + r - 4, y) == oid and _window_value(layers.objects, x + r + 4, y) == 0
    _drawn_in_place(viewer, qtbot, layers.objects, x, y, 2 * r, tmp_path / "native.png")
    _stroke_kept_beyond_the_window(viewer, qtbot, w, oid, x + r, y)

    # a waiting proposal: drawn, highlighted, kept through a repaint, dropped
    from clicklabel_napari._proposal_layer import HIGHLIGHTED, WAITING

    px, py = x + 300, y - 10
    layers.show_proposals({-1: ((py, px), np.ones((20, 30), bool))})
    assert layers.proposals.visible and _window_value(layers.proposals, px + 5, py + 5) == WAITING
    layers.highlight(-1)
    assert _window_value(layers.proposals, px + 5, py + 5) == HIGHLIGHTED
    assert layers.viewport.follow(force=True)  # painted again: the highlight stays
    assert _window_value(layers.proposals, px + 5, py + 5) == HIGHLIGHTED
    assert _window_value(layers.objects, x, y) == oid
    layers.drop_proposal(-1)
    assert not layers.proposals.visible and _window_value(layers.proposals, px + 5, py + 5) == 0

    # panning away paints the region the camera shows now; coming back paints the object again, in its place
    repaints = layers.viewport.repaints
    camera(viewer).center = (500, 600)
    qtbot.waitUntil(lambda: layers.viewport.repaints > repaints, timeout=10_000)
    assert _window_value(layers.objects, x, y) == -1 and _window_value(layers.objects, 600, 500) == 0
    camera(viewer).center = (y, x + r)
    camera(viewer).zoom = 0.45  # zoomed out: every 2nd pixel
    qtbot.waitUntil(lambda: layers.frame.step == 2, timeout=10_000)
    assert _window_value(layers.objects, x, y) == oid and _window_value(layers.objects, x + 2 * r, y) == 0
    assert layers.objects.data.size * 8 < H * W
    assert list(layers.boxes.edge_width) == [4.0] and layers.prompts.current_size == 24  # 2 and 12 screen pixels
    w.annotate._on_paint(SimpleNamespace(value=[]))  # a stroke now would paint a sample of the image: refused
    assert "brush strokes work at full resolution" in w.status.text()
    _drawn_in_place(viewer, qtbot, layers.objects, x, y, 2 * r * camera(viewer).zoom, tmp_path / "large.png")

    # a small image: one level, full-size overlays, drawn one image pixel per layer pixel
    w.nav.go(+1)
    qtbot.waitUntil(lambda: w.session.index == 1, timeout=30_000)
    wait_ready(qtbot, w)
    small = w.session.image.shape[:2]
    assert not layers.image.multiscale and layers.image.data.shape[:2] == small
    assert viewer.layers.index(layers.image) == 0 and layers.frame is None
    for layer in (layers.objects, layers.preview, layers.proposals):
        assert layer.data.shape == small and tuple(layer.scale) == (1, 1) and tuple(layer.translate) == (0, 0)
    assert layers.boxes.current_edge_width == 2 and layers.prompts.current_size == max(6, min(small) // 60)
    w.nav.go(-1)  # and large again: its object painted in the visible region
    qtbot.waitUntil(lambda: w.session.index == 0, timeout=30_000)
    wait_ready(qtbot, w)
    assert layers.image.multiscale and layers.frame is not None
    qtbot.waitUntil(lambda: _window_value(layers.objects, x, y) == oid, timeout=10_000)


@pytest.mark.gui
def test_the_counter_says_which_tiles_are_ready_and_the_tiles_around_a_click_are_encoded_ahead(
        make_napari_viewer, qtbot, tmp_path, tiny_checkpoint):
    from clicklabel.embeddings import EmbeddingCache
    from clicklabel.segment.sam import SamEngine
    from clicklabel.segment.tiled import TiledEngine
    from clicklabel_napari._tiles import JOB
    from clicklabel_napari._widget import ClickLabelWidget

    engine = TiledEngine(SamEngine("auto", tiny_checkpoint, device="cpu", cache=EmbeddingCache(tmp_path / "emb")),
                         512)
    viewer = make_napari_viewer(show=True)
    w = ClickLabelWidget(viewer, engine=engine, auto_label=False)
    viewer.window.add_dock_widget(w, name="clicklabel", area="right")
    w.open_folder(str(_big_folder(tmp_path)))
    wait_ready(qtbot, w)
    ready, total = w.session.tile_status()
    assert total > 9 and f"tiles {ready}/{total} ready" in w.counter.text()
    assert "tiles at full resolution" in w.status.text()
    x, y, _ = DISK
    camera(viewer).center, camera(viewer).zoom = (y, x), 1.0
    qtbot.waitUntil(lambda: w.layers.frame.step == 1, timeout=10_000)
    w.prompter.tiles.rings = 2  # (a random model's mask reaches the 3 x 3 tiles around the click: the click
    _click(viewer, w.layers.preview, x, y)  # encodes those itself; two rings leave some to encode ahead)
    qtbot.waitUntil(lambda: w.session.state.preview is not None and not w.prompter.answering, timeout=60_000)
    qtbot.waitUntil(lambda: not w.bench.tasks.running(JOB), timeout=120_000)  # the neighbours, in a worker
    now = w.session.tile_status()[0]
    assert w.prompter.tiles.encoded > 0 and now >= ready + w.prompter.tiles.encoded
    centre = engine.grid.owner(x, y)
    around = [ok for t, ok in zip(engine.grid, engine.tiles_ready())
              if abs(t.row - centre.row) <= 2 and abs(t.col - centre.col) <= 2]
    assert len(around) > 9 and all(around)
    assert f"tiles {now}/{total} ready" in w.counter.text() and w.progress.isHidden()
    assert w.prompter.accept() is not None and w.session.objects()[0].rle["size"] == [H, W]
