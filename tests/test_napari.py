"""GUI tests: the real widget in a real napari viewer (run under xvfb-run), random-weights SAM, loopback LMM.
The review mode, keys, clicks and layout are in test_napari_review.py."""

import numpy as np
import pytest

pytest.importorskip("napari")
import clicklabel_napari  # noqa: E402,F401  (keeps Triton out before any OpenGL context exists)
from clicklabel.label import LabelCache, Labeler, LabelerConfig  # noqa: E402
from clicklabel.project import Store  # noqa: E402
from clicklabel_napari._widget import ClickLabelWidget  # noqa: E402

from conftest import SAMPLES, wait_ready  # noqa: E402
from lmm_server import FakeLMM  # noqa: E402

pytestmark = pytest.mark.gui


@pytest.fixture
def lmm():
    with FakeLMM(latency=0.05, answer=lambda body, img: {"label": "coffee cup", "category": "cup",
                                                         "confidence": 0.8}) as server:
        yield server



def _widget(viewer, engine, lmm, tmp_path):
    factory = lambda: Labeler(LabelerConfig(base_url=lmm.url, api_key="sk-test", concurrency=8),  # noqa: E731
                              LabelCache(tmp_path / "labels.sqlite"))
    w = ClickLabelWidget(viewer, engine=engine, labeler=factory)
    viewer.window.add_dock_widget(w, area="right")
    return w


LAYER_KEYS = ("image", "objects", "proposals", "preview", "boxes", "manual", "box", "prompts")


def test_click_accept_label_undo_redo_relabel_switch(make_napari_viewer, qtbot, tiny_engine, lmm, folder, tmp_path):
    viewer = make_napari_viewer()
    w = _widget(viewer, tiny_engine, lmm, tmp_path)
    w.open_folder(str(folder))
    wait_ready(qtbot, w)
    store: Store = w.session.store
    assert [im.path for im in store.images()] == ["coffee.jpg", "rocket.jpg"]
    h, w_ = w.session.image.shape[:2]

    # a positive and a negative point through the points layer (answered in a worker)
    pts = w.layers.prompts
    pts.data = np.array([[h / 2, w_ / 2], [10, 10]])
    pts.features = {"positive": np.array([True, False])}
    qtbot.waitUntil(lambda: w.session.state.prompt.labels == (1, 0) and not w.prompter.answering, timeout=20_000)
    preview = w.layers.preview.data.astype(bool)
    assert (preview == w.session.state.preview.mask).all()

    oid = w.prompter.accept()
    assert oid is not None and len(pts.data) == 0 and not w.layers.preview.data.any()
    ob = store.object(oid)
    assert ob.provenance == "click" and ob.clicks == 2 and ob.seconds is not None
    assert (w.layers.objects.data == oid).sum() == ob.area
    assert len(w.layers.boxes.data) == 1
    qtbot.waitUntil(lambda: store.object(oid).label_status == "done", timeout=20_000)
    qtbot.waitUntil(lambda: not w.labels.running, timeout=20_000)
    assert store.object(oid).label == "coffee cup"
    assert "coffee cup 0.80" in w.layers.boxes.features["text"][0]
    assert w.annotate.table.item(0, 1).text() == "coffee cup"
    assert "label" not in w.status.text().lower()  # labelling reports in the bar, the status stays current

    # a box through the box layer
    w.layers.box.data = [np.array([[40, 60], [40, 300], [250, 300], [250, 60]])]
    wait_ready(qtbot, w)
    box_id = w.prompter.accept()
    assert store.object(box_id).provenance == "box"

    # undo / redo through the store
    w.annotate.undo()
    assert [o.id for o in store.objects()] == [oid]
    assert not (w.layers.objects.data == box_id).any()
    w.annotate.redo()
    assert [o.id for o in store.objects()] == [oid, box_id]

    # relabel from the table
    w.annotate.table.item(0, 1).setText("espresso cup")
    assert store.object(oid).label == "espresso cup" and store.object(oid).label_status == "edited"

    # manual box drawn by hand
    w.layers.manual.add_rectangles(np.array([[5, 5], [5, 40], [30, 40], [30, 5]]))
    man = w.prompter.accept_manual()
    assert store.object(man).provenance == "manual" and store.object(man).bbox == (5, 5, 36, 26)

    # next image: the same layer objects, new data
    before = {k: getattr(w.layers, k) for k in LAYER_KEYS}
    w.nav.go(+1)
    assert w.counter.text().startswith("Image 2 of 2")  # current from the moment N is pressed
    qtbot.waitUntil(lambda: w.session.index == 1 and w.nav.loading is None, timeout=180_000)
    assert all(getattr(w.layers, k) is before[k] for k in LAYER_KEYS)
    assert w.session.current.path == "rocket.jpg" and w.layers.image.name == "rocket"
    assert w.layers.image.data.shape[:2] == w.layers.objects.data.shape == w.session.image.shape[:2]
    assert w.layers.objects.data.max() == 0 and len(w.layers.boxes.data) == 0
    w.prompter.add_point(200, 150, True)
    wait_ready(qtbot, w)
    assert w.session.state.preview is not None
    w.prompter.clear()
    assert w.layers.preview.data.max() == 0 and "Cleared" in w.status.text()
    w.nav.go(-1)  # back: the objects of the first image are drawn again
    qtbot.waitUntil(lambda: w.session.index == 0 and w.nav.loading is None, timeout=60_000)
    assert all(getattr(w.layers, k) is before[k] for k in LAYER_KEYS)
    expected = np.zeros_like(w.layers.objects.data)
    for o in store.objects(w.session.current.id):  # later objects over earlier ones
        expected[o.mask] = o.id
    assert np.array_equal(w.layers.objects.data, expected) and len(w.layers.boxes.data) == 3
    kinds = [e["kind"] for e in store.events()]
    for k in ("prompt", "accept", "undo", "redo", "relabel", "label"):
        assert k in kinds


def test_ui_never_blocked_by_embedding_or_labelling(make_napari_viewer, qtbot, tiny_checkpoint, folder, tmp_path,
                                                     vit_b_checkpoint):
    """The embedding (a real, uncached vit_b encode) and a batch of label requests run in workers while the UI
    thread goes on turning its event loop. Asserted as events, not gaps: the work runs outside the main thread; a
    UI timer ticks while the encode runs; and each label answer is held by the server until the UI thread has
    ticked while a request was in flight (a UI thread waiting on the request itself could never tick: the answer
    would run out)."""
    import threading

    from qtpy.QtCore import QTimer

    from clicklabel.embeddings import EmbeddingCache
    from clicklabel.segment.sam import SamEngine

    main = threading.main_thread()
    engine = SamEngine("vit_b", vit_b_checkpoint, device="cpu", cache=EmbeddingCache(tmp_path / "fresh"))
    embedding, encoding, labelling = threading.Event(), threading.Event(), threading.Event()
    ticked_while_embedding, ticked_while_labelling = threading.Event(), threading.Event()
    seen = {"encode ticks": 0, "embed threads": [], "label threads": [], "embed held": [], "label held": []}

    def tick() -> None:  # the UI thread's timer
        assert threading.current_thread() is main
        if embedding.is_set():
            ticked_while_embedding.set()
        if encoding.is_set():
            seen["encode ticks"] += 1
        if labelling.is_set():
            ticked_while_labelling.set()

    set_image = engine.set_image

    def noted_set_image(image):
        seen["embed threads"].append(threading.current_thread())
        embedding.set()
        try:
            seen["embed held"].append(ticked_while_embedding.wait(30))
            encoding.set()
            return set_image(image)  # the real encode
        finally:
            encoding.clear()
            embedding.clear()

    engine.set_image = noted_set_image

    def answer(body, img):  # a server thread: answers once the UI has ticked during a request
        labelling.set()
        seen["label held"].append(ticked_while_labelling.wait(20))
        return {"label": "coffee cup", "category": "cup", "confidence": 0.8}

    class NotedLabeler(Labeler):
        async def label(self, crop, examples=()):
            seen["label threads"].append(threading.current_thread())
            return await super().label(crop, examples)

    with FakeLMM(answer=answer) as lmm:
        factory = lambda: NotedLabeler(LabelerConfig(base_url=lmm.url, api_key="sk-test", concurrency=8),  # noqa: E731
                                       LabelCache(tmp_path / "labels.sqlite"))
        viewer = make_napari_viewer()
        w = ClickLabelWidget(viewer, engine=engine, labeler=factory)
        viewer.window.add_dock_widget(w, area="right")
        store = Store(folder / "project.clicklabel", root=folder)
        store.add_image_file(folder / "coffee.jpg")  # one image: no next one to compute ahead after the test
        iid = store.images()[0].id
        ids = []
        for i in range(40):  # a batch of objects to label while the embedding runs
            m = np.zeros((341, 512), bool)
            m[i * 8 : i * 8 + 6, 10:200] = True
            ids.append(store.accept(iid, m))
        timer = QTimer()
        timer.timeout.connect(tick)
        w.open_project(str(folder / "project.clicklabel"))  # starts the (uncached, vit_b) embedding
        w.labels.queue_labels(ids)
        timer.start(10)
        wait_ready(qtbot, w, timeout=240_000)
        qtbot.waitUntil(lambda: not w.labels.running, timeout=120_000)
        timer.stop()
    assert seen["embed threads"] and all(t is not main for t in seen["embed threads"])
    assert seen["label threads"] and all(t is not main for t in seen["label threads"])
    assert seen["embed held"] == [True] and seen["encode ticks"] > 0, seen  # the UI ticked during the encode
    assert len(seen["label held"]) == 40 and all(seen["label held"]), seen
    assert len(store.objects(label_status=["done"])) == 40


def _load_engine(qtbot, w) -> None:
    """Press Load engine and wait for the worker to build it."""
    chooser = w.project.engine
    chooser.load_btn.native.click()
    assert chooser.loading and not chooser.load_btn.enabled  # built in a worker: the UI goes on
    qtbot.waitUntil(lambda: not chooser.loading, timeout=60_000)


def test_missing_weights_say_what_to_do(make_napari_viewer, qtbot, monkeypatch, tmp_path, tiny_checkpoint):
    monkeypatch.setenv("CLICKLABEL_WEIGHTS", str(tmp_path / "none"))
    viewer = make_napari_viewer()
    w = ClickLabelWidget(viewer)
    chooser = w.project.engine
    _load_engine(qtbot, w)
    assert w.engine is None and "weights are not on this computer" in w.status.text()
    assert "GrabCut" in w.status.text() and "Project tab" in w.status.text()
    text = chooser.help.text()
    assert "Download weights" in text and "sam_vit_b_01ec64.pth" in text and "checkpoint" in text
    assert str(tmp_path / "none") in text and "--checkpoint" not in text
    assert not chooser.download_btn.native.isHidden()
    chooser.engine_box.value = "grabcut"
    _load_engine(qtbot, w)
    assert w.engine.name == "grabcut"
    chooser.engine_box.value, chooser.encoder_box.value, chooser.device_box.value = "vit_b", "fast", "cpu"
    chooser.checkpoint.value = str(tiny_checkpoint)
    _load_engine(qtbot, w)
    assert w.engine.fast and w.engine.encoder.sdpa and w.engine.precision == "fp32"


def test_offline_first_run_shows_the_first_sample_with_grabcut(make_napari_viewer, qtbot, monkeypatch, tmp_path,
                                                              tiny_checkpoint):
    """`clicklabel gui` with no weights and no network: the first bundled sample at once, GrabCut in use, the
    widget saying how to get SAM; a real click on the canvas makes a mask; following the words on screen (a
    checkpoint file, then Load engine: nothing else) switches to SAM in the same session."""
    from gui_input import click

    from clicklabel_napari.launch import build

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))  # where the samples are copied
    viewer, w = build([], viewer=make_napari_viewer())
    wait_ready(qtbot, w, timeout=30_000)
    first = sorted(SAMPLES.glob("*.jpg"))[0]
    chooser = w.project.engine
    assert w.engine.name == "grabcut" and chooser.engine_box.value != "grabcut"  # the box keeps the SAM wanted
    assert w.session.current.path == first.name and w.layers.image.name == first.stem
    text = w.status.text()
    assert "GrabCut" in text and "Project tab" in text and "--" not in text
    help_text = chooser.help.text()
    assert "checkpoint" in help_text and "Load engine" in help_text and "Download weights" in help_text
    assert not chooser.download_btn.native.isHidden()
    viewer.window._qt_window.resize(1280, 800)
    viewer.reset_view()
    qtbot.wait(100)
    h, w_ = w.session.image.shape[:2]
    click(viewer, w_ / 2, h / 2)
    qtbot.waitUntil(lambda: w.session.state.preview is not None and not w.prompter.answering, timeout=30_000)
    assert w.session.state.prompt.points == ((pytest.approx(w_ / 2, abs=2), pytest.approx(h / 2, abs=2)),)
    assert w.layers.preview.data.any() and "Enter accepts" in w.status.text()
    assert w.prompter.accept() is not None and w.session.objects()[0].engine == "grabcut"
    session, image_layer = w.session, w.layers.image
    chooser.checkpoint.value = str(tiny_checkpoint)  # what the help says: a checkpoint file ...
    _load_engine(qtbot, w)  # ... and Load engine
    wait_ready(qtbot, w, timeout=60_000)
    assert w.session is session and w.engine.name == "sam" and w.layers.image is image_layer
    assert "GrabCut" not in w.status.text() and w.session.current.path == first.name
    assert chooser.download_btn.native.isHidden() and "Engine in use: sam" in chooser.help.text()
    click(viewer, w_ / 2, h / 2)
    wait_ready(qtbot, w)
    assert len(w.session.state.candidates) == 3  # SAM's three masks for one click


def test_cpu_default_is_the_fastest_model_whose_weights_are_here(make_napari_viewer, monkeypatch, tmp_path):
    import torch

    from clicklabel import weights

    if torch.cuda.is_available():
        pytest.skip("the CPU default applies without a GPU")
    monkeypatch.setenv("CLICKLABEL_WEIGHTS", str(tmp_path))
    for name in ("vit_b", "hq_vit_tiny"):
        with open(weights.checkpoint_path(name), "wb") as f:
            f.truncate(weights.REGISTRY[name].size)  # sparse files of the right size
    w = ClickLabelWidget(make_napari_viewer())
    assert set(weights.REGISTRY) | {"grabcut"} == set(w.project.engine.engine_box.choices)
    chooser = w.project.engine
    assert chooser.engine_box.value == "hq_vit_tiny" and "no GPU: hq_vit_tiny is the fastest" in w.status.text()


def test_reader_writer_and_samples(tmp_path):
    from clicklabel_napari._io import get_coco_reader, sample_images, write_coco

    labels = np.zeros((40, 50), np.int32)
    labels[5:15, 5:20] = 3
    labels[20:30, 25:45] = 7
    out = tmp_path / "x.json"
    write_coco(str(out), labels, {"name": "x"})
    reader = get_coco_reader(str(out))
    layers = reader(str(out))
    kinds = [k for _, _, k in layers]
    assert kinds == ["labels", "shapes"]
    back = layers[0][0]
    assert ((back > 0) == (labels > 0)).all() and len(np.unique(back)) == 3
    assert get_coco_reader(str(tmp_path / "nope.txt")) is None
    assert len(sample_images()) == 4


def test_napari_writer_on_the_objects_layer_exports_the_project(folder, tmp_path):
    """File > Save of clicklabel's objects layer writes the project's COCO: the file `clicklabel export` writes."""
    import json

    from clicklabel.cli import main
    from clicklabel_napari._io import PROJECT_KEY, write_coco

    store = Store(folder / "project.clicklabel", root=folder)
    for p in sorted(folder.glob("*.jpg")):
        store.add_image_file(p)
    m = np.zeros((341, 512), bool)
    m[10:50, 20:90] = True
    store.relabel(store.accept(store.images()[1].id, m), "rocket")
    write_coco(str(tmp_path / "napari.json"), np.zeros((5, 5), np.int32),
               {"name": "clicklabel objects", "metadata": {PROJECT_KEY: str(store.path)}})
    assert main(["export", str(store.path), "--out", str(tmp_path / "cli.json")]) == 0
    a, b = (json.loads((tmp_path / n).read_text()) for n in ("napari.json", "cli.json"))
    assert a == b and [im["file_name"] for im in a["images"]] == ["coffee.jpg", "rocket.jpg"]
    assert a["categories"][0]["name"] == "rocket"


def _cup(body, img) -> dict:
    return {"label": "cup", "category": "cup", "confidence": 0.9}


def _docked_with_labeller(viewer, engine, url: str, tmp_path, concurrency: int):
    """The widget docked in ``viewer``, labelling through the loopback server at ``url``."""
    factory = lambda: Labeler(LabelerConfig(base_url=url, api_key="sk-test", concurrency=concurrency),  # noqa: E731
                              LabelCache(tmp_path / "labels.sqlite"))
    w = ClickLabelWidget(viewer, engine=engine, labeler=factory)
    viewer.window.add_dock_widget(w, area="right")
    return w


def test_labelling_progress_bar_and_stop(make_napari_viewer, qtbot, tiny_engine, folder, tmp_path):
    viewer = make_napari_viewer()
    with FakeLMM(latency=0.3, answer=_cup) as slow:
        w = _docked_with_labeller(viewer, tiny_engine, slow.url, tmp_path, concurrency=2)
        w.open_folder(str(folder))
        wait_ready(qtbot, w)
        assert w.progress.isHidden()  # the embedding's busy bar is gone once the image is ready
        iid = w.session.current.id
        ids = []
        for i in range(30):
            m = np.zeros((341, 512), bool)
            m[i * 10 : i * 10 + 8, 20:100] = True
            ids.append(w.session.store.accept(iid, m))
        w.labels.queue_labels(ids)
        assert not w.progress.isHidden() and not w.stop_btn.native.isHidden() and w.progress.maximum() == 30
        qtbot.waitUntil(lambda: w.progress.value() >= 2, timeout=20_000)  # progress arrives from the worker
        w.stop_btn.native.click()
        qtbot.waitUntil(lambda: not w.labels.running, timeout=20_000)
        done = len(w.session.store.objects(label_status=["done"]))
        pending = len(w.session.store.objects(label_status=["pending"]))
        assert 2 <= done < 30 and done + pending == 30, (done, pending)
        assert "Labelling stopped" in w.status.text()
        assert w.progress.isHidden() and w.stop_btn.native.isHidden()
        assert len(slow.requests) < 30


def test_the_bar_counts_seconds_and_repaints_with_the_next_frame(make_napari_viewer, qtbot, tiny_engine, folder,
                                                                  tmp_path, monkeypatch):
    """A slow image load shows the seconds, not Qt's animated busy bar (60 repaints a second, each composing
    napari's whole window: on software OpenGL that took a core from the embedding it waited for); a new value
    (a label arrived) repaints the bar with the next frame instead of at once. The load is held by an event and
    the bar's clock is driven by hand (its timer's handler, a clock the test sets): nothing here waits for a
    second to pass."""
    import threading
    import types

    from qtpy.QtCore import QEvent, QObject

    from clicklabel_napari import _workbench

    viewer = make_napari_viewer(show=True)
    set_image, release, answer = tiny_engine.set_image, threading.Event(), threading.Event()
    monkeypatch.setattr(tiny_engine, "set_image", lambda image: release.wait(120) and set_image(image))
    now = [1000.0]
    monkeypatch.setattr(_workbench, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    with FakeLMM(answer=lambda body, img: answer.wait(60) and _cup(body, img)) as slow:  # answers when told
        w = _docked_with_labeller(viewer, tiny_engine, slow.url, tmp_path, concurrency=1)
        try:
            w.open_folder(str(folder))
            qtbot.waitUntil(lambda: not w.progress.isHidden(), timeout=60_000)
            clock = w.bench.tasks.clock
            assert w.progress.maximum() == 1 and w.progress.format() == "computing the image's embedding: 0 s"
            assert clock.isActive() and clock.interval() == 1000  # a tick a second, not 60 frames of animation
            now[0] += 1.2
            w.bench.tasks.clock.timeout.emit()  # the clock's tick
            assert w.progress.format() == "computing the image's embedding: 1 s"
            now[0] += 1.0
            w.bench.tasks.clock.timeout.emit()
            assert w.progress.format() == "computing the image's embedding: 2 s" and w.progress.maximum() == 1
        finally:
            release.set()
        wait_ready(qtbot, w)
        assert w.progress.isHidden() and not w.bench.tasks.clock.isActive()

        class Paints(QObject):
            count = 0

            def eventFilter(self, obj, event):
                if event.type() == QEvent.Type.Paint:
                    Paints.count += 1
                return False

        paints = Paints()
        w.progress.installEventFilter(paints)
        iid = w.session.current.id
        ids = [w.session.store.accept(iid, np.pad(np.ones((8, 8), bool), ((10 * i, 323 - 10 * i), (20, 484))))
               for i in range(3)]
        w.labels.queue_labels(ids)
        qtbot.waitUntil(lambda: Paints.count > 0, timeout=20_000)  # the bar, shown for the labelling, was painted
        assert w.progress.format() == "labelling %v/%m"
        before = Paints.count
        w.bench.tasks.update("labelling", 1, 3)  # what the labelling worker's signal calls
        assert Paints.count == before and w.progress.value() == 1
        qtbot.waitUntil(lambda: Paints.count > before, timeout=20_000)
        w.labels.stop()
        answer.set()
        qtbot.waitUntil(lambda: not w.labels.running, timeout=20_000)


def test_l_says_when_its_labels_arrived(make_napari_viewer, qtbot, tiny_engine, lmm, folder, tmp_path):
    viewer = make_napari_viewer()
    w = _widget(viewer, tiny_engine, lmm, tmp_path)
    w.open_folder(str(folder))
    wait_ready(qtbot, w)
    m = np.zeros((341, 512), bool)
    m[10:60, 20:100] = True
    w.session.store.accept(w.session.current.id, m)
    w.session.store.accept(w.session.current.id, np.roll(m, 100, axis=0))
    w.labels.label_pending()
    assert w.status.text().startswith("Labelling 2 object(s)")
    qtbot.waitUntil(lambda: not w.labels.running, timeout=60_000)
    assert w.status.text() == "Labelled 2 object(s)."  # not the stale "Labelling 2 object(s) ..."
    assert [o.label for o in w.session.objects()] == ["coffee cup", "coffee cup"]


def test_accepted_object_shows_the_neighbours_guess_before_the_model(make_napari_viewer, qtbot, tiny_engine, folder,
                                                                    tmp_path):
    """A person typed a label once: the next object accepted in the same place shows it at once, as a guess with
    its vote, on the canvas and in the table, while the model has not answered (here: no labelling at all)."""
    viewer = make_napari_viewer()
    w = ClickLabelWidget(viewer, engine=tiny_engine, auto_label=False)
    w.open_folder(str(folder))
    wait_ready(qtbot, w)
    w.layers.box.data = [np.array([[40, 60], [40, 300], [250, 300], [250, 60]])]
    wait_ready(qtbot, w)
    first = w.prompter.accept()
    w.annotate.table.item(0, 1).setText("espresso cup")  # the person types the label in the table
    assert w.session.object(first).label_status == "edited"
    w.layers.box.data = [np.array([[40, 60], [40, 300], [250, 300], [250, 60]])]
    wait_ready(qtbot, w)
    second = w.prompter.accept()
    texts = list(w.layers.boxes.features["text"])
    assert texts[1] == f"#{second} espresso cup? 1/1"
    assert w.annotate.table.item(1, 2).text() == "pending: espresso cup 1/1?"
    assert "1 pending" in w.counter.text()
    w.labels.few_shot.value = 4
    assert w.labels.settings_from_fields().few_shot == 4 and w.session.label_settings.few_shot == 4


def test_next_by_value_goes_to_the_most_doubtful_label(make_napari_viewer, qtbot, folder):
    from clicklabel.segment import make_engine

    viewer = make_napari_viewer()
    w = ClickLabelWidget(viewer, engine=make_engine("grabcut"), auto_label=False)
    w.open_folder(str(folder))
    wait_ready(qtbot, w)
    store = w.session.store
    made = []
    for im, label, conf in zip(store.images(), ("cup", "rocket"), (0.9, 0.3)):
        m = np.zeros((im.height, im.width), bool)
        m[20:80, 30:120] = True
        oid = store.accept(im.id, m)
        store.set_label(oid, label, "thing", conf, "gpt-4o-mini")
        made.append(oid)
    w.annotate.refresh()
    w.labels.next_by_value()  # the doubtful one is on the other image
    qtbot.waitUntil(lambda: w.session.index == 1 and w.nav.loading is None
                    and w.annotate.table.selected_ids() == [made[1]], timeout=60_000)
    assert "model confidence 0.30" in w.status.text() and "rare class" in w.status.text()
    w.labels.next_by_value()
    qtbot.waitUntil(lambda: w.session.index == 0 and w.nav.loading is None
                    and w.annotate.table.selected_ids() == [made[0]], timeout=60_000)
    assert "model confidence 0.90" in w.status.text()
