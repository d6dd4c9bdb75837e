"""The clicklabel dock widget: turns napari events into calls of the core API and its results into layers."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from napari.qt.threading import create_worker
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import QTableWidgetItem, QWidget

# Everything the workers use is imported here, in the main thread: imports running in several threads at once
# can deadlock (module import locks against torch's and the GIL).
from clicklabel import label as _label  # noqa: F401
from clicklabel.annotate import AnnotationSession, polygon_mask
from clicklabel.errors import ClickLabelError, WeightsError
from clicklabel.label import run as _label_run  # noqa: F401
from clicklabel.segment import sam as _sam  # noqa: F401
from clicklabel.segment.base import Prompt

from ._audit import AuditMixin, build_audit_ui
from ._labelling import LabellingMixin
from ._layers import LayerSet, object_text
from ._ui import build_ui

_threads = {"busy": 0, "full": None}
_threads_lock = threading.Lock()


def _leaving_a_core(fn, *args):
    """Run ``fn`` with PyTorch on all cores but one, so the viewer stays responsive while SAM encodes."""
    import torch

    with _threads_lock:
        if _threads["busy"] == 0:
            _threads["full"] = torch.get_num_threads()
            torch.set_num_threads(max(1, _threads["full"] - 1))
        _threads["busy"] += 1
    try:
        return fn(*args)
    finally:
        with _threads_lock:
            _threads["busy"] -= 1
            if _threads["busy"] == 0:
                torch.set_num_threads(_threads["full"])


class ClickLabelWidget(LabellingMixin, AuditMixin, QWidget):
    """Click or box an object, see SAM's mask at once, accept, get the label, move on."""

    # (done, total) from the labelling worker's thread; Qt queues it to the main thread.
    label_progress = Signal(int, int)
    refine_progress = Signal(int, int)  # (boxes done, boxes) from the refine worker

    def __init__(self, napari_viewer, project: str | None = None, engine=None, labeler=None, auto_label: bool = True,
                 auto_download: bool = False):
        super().__init__()
        self.setMaximumWidth(480)
        self.viewer = napari_viewer
        self.layers = LayerSet(napari_viewer)
        self._engine = engine  # the engine for the next session opened (the session holds it from then on)
        self.labeler_factory = labeler  # callable -> Labeler, for tests and custom setups
        self.auto_label = auto_label
        self.auto_download = auto_download
        self.session: AnnotationSession | None = None
        self._syncing = False
        self._busy = None
        self._label_queue: list[int] = []
        self._label_worker = None
        self._label_stop: threading.Event | None = None
        self._label_counts = (0, 0)
        self._embed_worker = None
        self._waiting = None  # what to open once an engine is loaded (weights downloading, or a choice to make)
        build_ui(self)
        build_audit_ui(self)
        if engine is None:
            self._suggest_model()
        self.label_progress.connect(self._on_label_progress)
        self.refine_progress.connect(self._on_refine_progress)
        self._bind_keys()
        napari_viewer.mouse_drag_callbacks.append(self._on_mouse)
        if project:
            self.open_project(project)

    # -- UI -------------------------------------------------------------------------------------------------
    def _bind_keys(self) -> None:
        keys = {"Enter": self.accept, "Escape": self.clear, "m": self.cycle, "n": lambda: self.go(+1),
                "b": lambda: self.go(-1), "d": self.image_done, "l": self.label_pending, "g": self.accept_manual,
                "Control-z": self.undo, "Control-Shift-z": self.redo}
        for key, fn in keys.items():
            self.viewer.bind_key(key, lambda viewer, fn=fn: fn(), overwrite=True)

    def say(self, text: str) -> None:
        self.status.setText(text)

    @property
    def engine(self):
        """The engine in use: the session's, or the one loaded for the next session."""
        return self.session.engine if self.session is not None else self._engine

    # -- engine ---------------------------------------------------------------------------------------------
    def _suggest_model(self) -> None:
        """No GPU and no choice made yet: start on the fastest model whose weights are here, saying why."""
        from clicklabel.segment.models import suggest_model

        suggestion = suggest_model(self.device_box.value)
        if suggestion is not None:
            self.engine_box.value = suggestion.model
            self.say(suggestion.reason)

    def load_engine(self) -> bool:
        """Build the engine from the settings; missing weights show what to do, not a traceback."""
        from clicklabel.segment import make_engine

        name = self.engine_box.value
        ck = str(self.checkpoint.value) if str(self.checkpoint.value) not in ("", ".") else None
        try:
            if name == "grabcut":
                engine = make_engine("grabcut")
            else:
                engine = make_engine("sam", model="auto" if ck else name, checkpoint=ck,
                                     device=self.device_box.value, download=False, encoder=self.encoder_box.value)
        except WeightsError as exc:
            self.download_btn.visible = True
            self.say(f"{exc}<br>Press <b>Download weights</b>, or choose the GrabCut engine (no weights).")
            if self.auto_download and name != "grabcut" and not ck:
                self.auto_download = False  # once: a failure leaves the message above and the choices
                self.download_weights()
            return False
        except ClickLabelError as exc:
            self.say(str(exc))
            return False
        self.download_btn.visible = False
        self._engine = engine
        if self.session is not None:
            self.session.set_engine(engine)
            self.show_image(max(0, self.session.index))
        self.say(f"engine: {engine.name} {engine.model}")
        return True

    def download_weights(self) -> None:
        from clicklabel.weights import download

        def fetch(name):
            try:
                return download(name), None
            except WeightsError as exc:  # a message for the status line, not a traceback in the console
                return None, str(exc)

        worker = create_worker(fetch, self.engine_box.value, _progress={"desc": "Downloading SAM weights"})
        worker.returned.connect(self._downloaded)
        self.say("downloading SAM weights (see the progress bar) ...")
        worker.start()

    def _downloaded(self, result) -> None:
        _, error = result
        if error:
            self.say(f"{error}<br>Or choose the GrabCut engine (no weights) and press <b>Load engine</b>.")
        else:
            self._engine_ready_after_download()

    def _engine_ready_after_download(self) -> None:
        if self.load_engine() and self._waiting is not None and self.session is None:
            self.open_project(self._waiting)

    # -- images ---------------------------------------------------------------------------------------------
    def open_folder(self, folder: str) -> None:
        """A folder becomes a project (``project.clicklabel`` inside it) holding its images."""
        self.open_project(folder)

    def open_project(self, target, project: str | None = None) -> None:
        """Open a project, a folder (made a project), or image files (``target`` a list) into a new session."""
        items = list(target) if isinstance(target, (list, tuple)) else [target]
        self._waiting = items
        if self._engine is None and not self.load_engine():
            return  # the status line says why; the download or "Load engine" opens it afterwards
        try:
            session = AnnotationSession.open(items, self._engine, project)
        except ClickLabelError as exc:
            self.say(str(exc))
            return
        self._waiting = None
        self.session = session
        self._load_settings()
        if not session.images:
            self.say("the project has no images")
            return
        self.show_image(0)

    def go(self, step: int) -> None:
        if self.session is None:
            return
        i = self.session.index + step
        if 0 <= i < len(self.session.images):
            self.show_image(i)

    def show_image(self, index: int) -> None:
        """Load image ``index``, compute its embedding in a worker (with progress), then pre-compute the next."""
        s = self.session
        if self._busy == "refining":  # the engine is on this image until refine ends
            self.say("refine is running on this image: wait for it, or stop it")
            return
        image = s.load(index)
        self.layers.setup(image, Path(s.images[index].path).stem)
        self._busy = "embedding"
        self.say(f"computing the image embedding for {s.images[index].path} ...")
        # Progress shows in the widget's own bar: napari's activity bars, added from several workers at once,
        # deadlocked the viewer in our tests (the main thread blocked inside the indicator's QMovie.start()).
        self._update_progress()
        worker = create_worker(_leaving_a_core, s.embed, image)
        worker.returned.connect(lambda _: self._embedded(index, image))
        worker.errored.connect(lambda exc: self._embedding_failed(exc))
        self._embed_worker = worker
        worker.start()

    def _embedded(self, index: int, image: np.ndarray) -> None:
        s = self.session
        s.show(index, image)
        self._busy = None
        self._update_progress()
        layers = self.layers
        layers.prompts.events.data.connect(self._layer_prompt_changed)
        layers.prompts.events.features.connect(self._layer_prompt_changed)
        layers.box.events.data.connect(self._layer_prompt_changed)
        self.refresh()
        self.say(f"{s.images[index].path}: click an object")
        self.audit_image_shown()
        if index + 1 < len(s.images):
            pre = create_worker(_leaving_a_core, s.prefetch, index + 1)
            pre.errored.connect(lambda exc: None)  # the next image says so itself when opened
            pre.start()

    def _embedding_failed(self, exc) -> None:
        self._busy = None
        self._update_progress()
        self.say(f"embedding failed: {exc}")

    def image_done(self) -> None:
        if self.session and self.session.current:
            self.session.mark_done()
            self.refresh()

    # -- prompting ------------------------------------------------------------------------------------------
    def _ready(self) -> bool:
        return self.session is not None and self.session.image is not None and self._busy is None

    def _on_mouse(self, viewer, event):
        """Click = point (right or Shift = negative), drag = box; only on the image in pan/zoom mode."""
        layers = self.layers
        active = viewer.layers.selection.active
        if not self._ready() or active is None or active not in (layers.image, layers.prompts):
            return
        if active is layers.prompts and layers.prompts.mode != "pan_zoom":
            return
        start = np.asarray(layers.image.world_to_data(event.position))[-2:]
        layers.image.mouse_pan = False
        yield
        dragged = False
        while event.type == "mouse_move":
            cur = np.asarray(layers.image.world_to_data(event.position))[-2:]
            if np.abs(cur - start).max() > 4:
                dragged = True
                (y0, x0), (y1, x1) = start, cur
                self._syncing = True
                layers.box.data = [np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]])]
                self._syncing = False
            yield
        layers.image.mouse_pan = True
        if dragged:
            self._prompt_changed()
            return
        positive = event.button == 1 and "Shift" not in event.modifiers
        y, x = start
        h, w = self.session.image.shape[:2]
        if 0 <= x < w and 0 <= y < h:
            self.add_point(x, y, positive)

    def add_point(self, x: float, y: float, positive: bool = True) -> None:
        pts = self.layers.prompts
        feats = np.append(np.asarray(pts.features["positive"], dtype=bool), positive)
        self._syncing = True
        pts.data = np.vstack([pts.data, [[y, x]]]) if len(pts.data) else np.array([[y, x]], dtype=float)
        pts.features = {"positive": feats}
        self._syncing = False
        self._prompt_changed()

    def current_prompt(self) -> Prompt:
        """The prompt drawn on the layers (points with their sign, the last box)."""
        pts = self.layers.prompts
        data = np.asarray(pts.data)
        pos = np.asarray(pts.features["positive"], dtype=bool) if len(data) else np.zeros(0, bool)
        box = None
        if len(self.layers.box.data):
            r = np.asarray(self.layers.box.data[-1])
            box = (r[:, 1].min(), r[:, 0].min(), r[:, 1].max(), r[:, 0].max())
        return Prompt.make([(p[1], p[0]) for p in data], [int(v) for v in pos], box)

    def _layer_prompt_changed(self, event=None) -> None:
        """Points or a box edited on the layers directly (napari's own tools, scripts, tests)."""
        if getattr(event, "action", None) in ("adding", "removing", "changing"):
            return
        self._prompt_changed()

    def _prompt_changed(self, event=None) -> None:
        if self._syncing or not self._ready():
            return
        prompt = self.current_prompt()
        if prompt.empty:
            self.layers.show_preview(None)
            return
        try:
            result = self.session.set_prompt(prompt)
        except ClickLabelError as exc:
            self.say(str(exc))
            return
        self.layers.show_preview(result)
        self._say_preview()

    def _say_preview(self) -> None:
        st = self.session.state
        pv = st.preview
        if pv is None:
            return
        n = len(st.candidates)
        which = f" (mask {st.shown + 1} of {n}: M for the next)" if n > 1 else ""
        self.say(f"score {pv.score:.3f}, box {pv.bbox}{which}; Enter accepts" if not pv.empty else "empty mask")

    def cycle(self) -> None:
        if self.session and self.session.cycle() is not None:
            self.layers.show_preview(self.session.state.preview)
            self._say_preview()

    def clear(self) -> None:
        if self.session is None:
            return
        self.session.clear()
        self._clear_prompt_layers()

    def _clear_prompt_layers(self) -> None:
        self._syncing = True
        self.layers.prompts.data = np.zeros((0, 2))
        self.layers.prompts.features = {"positive": np.zeros(0, bool)}
        self.layers.box.data = []
        self._syncing = False
        self.layers.show_preview(None)

    def accept(self) -> int | None:
        if not self._ready():
            return None
        try:
            oid = self.session.accept()
        except ClickLabelError as exc:
            self.say(str(exc))
            return None
        self._clear_prompt_layers()
        self.refresh()
        self.say(f"object {oid} accepted")
        if self.auto_label:
            self.queue_labels([oid])
        return oid

    def accept_manual(self) -> int | None:
        """Accept the last box or polygon drawn by hand on the manual layer (no SAM)."""
        layer = self.layers.manual
        if not self._ready() or layer is None or not len(layer.data):
            self.say("draw a rectangle or polygon on the 'clicklabel manual' layer first")
            return None
        verts = np.asarray(layer.data[-1])
        mask = polygon_mask(verts[:, ::-1], self.session.image.shape[:2])
        try:
            oid = self.session.accept_manual(mask, vertices=len(verts))
        except ClickLabelError as exc:
            self.say(str(exc))
            return None
        layer.data = []
        self.refresh()
        if self.auto_label:
            self.queue_labels([oid])
        return oid

    def undo(self) -> None:
        if self.session and self.session.undo():
            self._clear_prompt_layers()
            self.refresh()

    def redo(self) -> None:
        if self.session and self.session.redo():
            self.refresh()

    # -- objects and labels ---------------------------------------------------------------------------------
    def refresh(self) -> None:
        """Redraw the current image's objects and the table from the store."""
        s = self.session
        if s is None or s.image is None:
            return
        obs = s.objects()
        self.layers.show_objects(obs, s.image.shape[:2])
        done, total = s.progress()
        self.counter.setText(f"image {s.index + 1} of {total} ({s.current.status}); images done: {done}/{total}; "
                             f"objects here: {len(obs)}")
        self.table.blockSignals(True)
        rows = self.table_objects(obs)  # the review panel's filter and columns
        self.table.setRowCount(len(rows))
        for r, (ob, extra) in enumerate(rows):
            conf = f"{ob.label_confidence:.2f}" if ob.label_confidence is not None else ""
            for c, v in enumerate([str(ob.id), ob.label or "", ob.label_status, conf, ob.provenance, *extra]):
                item = QTableWidgetItem(v)
                if c != 1:
                    item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)  # read-only except the label
                self.table.setItem(r, c, item)
        self.table.blockSignals(False)

    def _table_edited(self, item) -> None:
        if item.column() != 1 or self.session is None:
            return
        oid = int(self.table.item(item.row(), 0).text())
        if item.text().strip():
            self.relabel(oid, item.text())

    def relabel(self, object_id: int, label: str) -> None:
        try:
            self.session.relabel(object_id, label)
        except ClickLabelError as exc:
            self.say(str(exc))
        self.refresh()

    def selected_ids(self) -> list[int]:
        rows = sorted({i.row() for i in self.table.selectedItems()})
        return [int(self.table.item(r, 0).text()) for r in rows]

    def delete_selected(self) -> None:
        for oid in self.selected_ids():
            self.session.delete(oid)
        self.refresh()

    def jump_to_selected(self) -> None:
        ids = self.selected_ids()
        if ids:
            x, y, w, h = self.session.object(ids[0]).bbox
            self.viewer.camera.center = (y + h / 2, x + w / 2)
            self.viewer.camera.zoom = max(0.1, 0.5 * min(self.viewer.canvas.size) / max(w, h, 1))

    def _update_progress(self) -> None:
        """The widget's bar, from the state: busy while SAM encodes, done/total while labelling, else hidden."""
        bar = self.progress
        if self._busy == "embedding":
            bar.setRange(0, 0)
            bar.setFormat("embedding")
        elif self._busy == "refining":
            done, total = self._refine_counts
            bar.setRange(0, total)
            bar.setValue(done)
            bar.setFormat("refining %v/%m boxes")
        elif self._label_worker is not None:
            done, total = self._label_counts
            bar.setRange(0, total)
            bar.setValue(done)
            bar.setFormat("labelling %v/%m")
        bar.setVisible(self._busy is not None or self._label_worker is not None)

    def object_texts(self) -> list[str]:
        """What the boxes say now (for tests and screenshots)."""
        return [object_text(o) for o in self.session.objects()] if self.session else []
