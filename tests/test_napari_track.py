"""GUI test of the Track panel (under xvfb-run): a real clip added as a sequence, a real click on a frame accepted,
T propagates it with SAM 2.1's video memory (a small random model), and the frame slider shows each frame with its
mask; the panel lists the track."""

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("sam2")
pytest.importorskip("av")
from gui_input import click, key  # noqa: E402
from test_track import N, clip_frames, write_mp4  # noqa: E402

import clicklabel_napari  # noqa: E402,F401  (keeps Triton out before any OpenGL context exists)
from clicklabel_napari._widget import ClickLabelWidget  # noqa: E402

from conftest import wait_ready  # noqa: E402

pytestmark = pytest.mark.gui


def test_t_propagates_and_the_slider_shows_every_frame(make_napari_viewer, qtbot, tmp_path, tiny_engine,
                                                       small_predictor, monkeypatch):
    from clicklabel.embeddings import EmbeddingCache
    from clicklabel.project import open_project
    from clicklabel.track import session as track_session
    from clicklabel.track.propagate import VideoModel
    from clicklabel.track.sources import add_sequence

    clip = tmp_path / "clip.mp4"
    write_mp4(clip, clip_frames())
    store = open_project(tmp_path / "proj", create=True)
    add_sequence(store, clip)
    path = store.path
    store.close()
    # the clicks come from the small SAM; SAM 2.1's video memory is a small random model (128-pixel input)
    model = VideoModel(small_predictor, "tiny-random-128", cache=EmbeddingCache(disk=False, memory_items=2 * N),
                       fill_hole_area=0)
    monkeypatch.setattr(track_session, "video_model_for", lambda engine, cache=None: model)
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1280, 800)
    w = ClickLabelWidget(viewer, engine=tiny_engine, auto_label=False)
    viewer.window.add_dock_widget(w, name="clicklabel", area="right")
    w.open_project(str(path))
    wait_ready(qtbot, w)
    panel = w.track
    assert panel.slider.isEnabled() and panel.slider.maximum() == N - 1 and panel.slider.value() == 0
    panel.go_to_frame(2)
    qtbot.waitUntil(lambda: w.session.index == 2 and w.nav.loading is None, timeout=60_000)
    assert panel.slider.value() == 2 and "Frame 3 of 6" in panel.info.text()
    viewer.reset_view()
    click(viewer, 30, 35)  # the bright square on frame 3
    wait_ready(qtbot, w)
    key(viewer, "Return")
    first = w.session.objects()[0].id
    panel.min_score.value = -1000.0  # random weights: never "left the view"
    filled = []
    panel.frame_done.connect(lambda t, oid: filled.append(t))
    key(viewer, "t")
    assert panel.propagating and "Propagating" in w.status.text()
    qtbot.waitUntil(lambda: not panel.propagating, timeout=300_000)
    assert sorted(filled) == list(range(N)), filled  # frames filled in as they came
    assert "frames with the object" in w.status.text()
    track = w.session.store.track_of(first)
    assert track is not None and panel.tracks.rowCount() == 1 and panel.tracks.item(0, 0).text() == str(track)
    for t in (0, 5):  # the slider shows each frame with its propagated mask
        panel.slider.setValue(t)
        qtbot.waitUntil(lambda t=t: w.session.index == t and w.nav.loading is None, timeout=60_000)
        obs = w.session.objects()
        assert len(obs) == 1 and w.session.store.track_of(obs[0].id) == track
        assert (np.asarray(w.layers.objects.data) == obs[0].id).sum() == obs[0].area > 0
