"""The clicklabel dock widget: turns napari events into calls of the session (``clicklabel.annotate``) and its
results into layers. The parts: ``_prompting`` (clicks, answers, accept), ``_review`` (auto-propose review),
``_labelling`` (background labels), ``_engine`` (engine choice, weights), ``_layers`` (drawing), ``_ui`` (controls).

Nothing that can take more than a few tens of milliseconds runs in the UI thread: reading and embedding images,
answering prompts, proposing, labelling and exporting run in workers, and the layers are updated in place."""

from __future__ import annotations

import threading
import time

import anyio._backends._asyncio  # noqa: F401  (httpx's first request, in the labelling thread)
import cv2  # noqa: F401  (the labeller's crops)
import scipy.ndimage  # noqa: F401  (napari imports it on a Labels layer's first thumbnail: 0.3 s, so at load time)
from PIL import Image
from qtpy.QtCore import Qt, QTimer, Signal
from qtpy.QtWidgets import QHeaderView, QTableWidgetItem, QWidget

# Everything the workers use is imported here, in the main thread: imports running in several threads at once
# can deadlock (module import locks against torch's and the GIL), and an import in a worker holds the GIL long
# enough to freeze the viewer (0.3-0.9 s measured for the OpenAI SDK, OpenCV and anyio).
from clicklabel import coco as _coco  # noqa: F401
from clicklabel import label as _label  # noqa: F401
from clicklabel.annotate import AnnotationSession
from clicklabel.errors import ClickLabelError
from clicklabel.label import client as _label_client
from clicklabel.label import run as _label_run  # noqa: F401
from clicklabel.segment import propose as _propose  # noqa: F401
from clicklabel.segment import sam as _sam  # noqa: F401
from clicklabel.segment.openmp import release_threads

from ._audit import AuditMixin, build_audit_ui
from ._engine import EngineMixin
from ._images import ImagesMixin
from ._labelling import LabellingMixin
from ._layers import LayerSet, object_text
from ._lean import quick_gil, warm_glyphs
from ._prompting import PromptingMixin
from ._review import ReviewMixin
from ._ui import build_ui
from ._workers import quiet_worker

Image.init()  # PIL's image plugins (the labeller encodes crops), loaded here rather than in a worker
_label_client.warm_up()  # the OpenAI SDK's lazily imported modules and the TLS settings, made once, here
KEYS = {"Enter": "accept", "Escape": "clear", "m": "cycle", "n": "next", "b": "previous", "d": "image_done",
        "l": "label_pending", "g": "accept_manual", "p": "propose", "a": "accept_proposal", "x": "reject",
        "s": "skip", "Control-z": "undo", "Control-Shift-z": "redo"}


def _shutdown(alive: dict) -> None:
    alive["yes"] = False
    for stop in alive["stops"]:
        stop.set()


class ClickLabelWidget(ImagesMixin, PromptingMixin, ReviewMixin, AuditMixin, LabellingMixin, EngineMixin, QWidget):
    """Click or box an object, see its mask at once, accept, get the label, move on; or review SAM's proposals."""

    label_progress = Signal(int, int)  # (done, total) from the labelling worker; Qt queues it to the main thread
    task_progress = Signal(int, int)  # (done, total) from the proposing worker
    refine_progress = Signal(int, int)  # (boxes done, boxes) from the refine worker
    notice = Signal(str)  # a line for the status from any thread (the remote engine's retries)

    def __init__(self, napari_viewer, project: str | None = None, engine=None, labeler=None, auto_label: bool = True):
        super().__init__()
        self.setMinimumWidth(340)
        self.setMaximumWidth(520)
        self.viewer = napari_viewer
        self.layers = LayerSet(napari_viewer)
        self.layers.prepare()  # napari's first layers (and pint's unit registry) now, not at the first image
        self._engine = engine  # the engine for the next session opened (the session holds it from then on)
        release_threads()  # an engine made by the caller in this (UI) thread left it an idle OpenMP team
        quick_gil()
        self.labeler_factory = labeler  # callable -> Labeler, for tests and custom setups
        self.auto_label = auto_label
        self.session: AnnotationSession | None = None
        self._loading: int | None = None  # the image index being loaded in a worker
        self._wanted: int | None = None  # N / B pressed again while loading: the image to show next
        self._slow_load = False
        self._downloading = False
        self._task = (0, 0)
        self._busy_since: tuple[str, float] | None = None  # (what, when) of a download or a slow image load
        self._busy_clock = QTimer(self)  # their bar shows the seconds (an animated bar cost a core: see below)
        self._busy_clock.setInterval(1000)
        self._busy_clock.timeout.connect(self._update_progress)
        self._waiting = None  # what to open once an engine is loaded (weights downloading)
        self._keyed: list = []  # layers whose own keymap carries clicklabel's keys
        self._after_draw: list = []
        self._draw_hooked = False
        # Workers report through Qt signals; once the widget is gone (the viewer closed) they must not, and they
        # are asked to stop (a signal emitted on a deleted widget crashes the process).
        self._alive = alive = {"yes": True, "stops": []}
        self.destroyed.connect(lambda *_: _shutdown(alive))
        self._init_prompting()
        self._glyphs = warm_glyphs(napari_viewer, self, lambda: self.answering)
        self._init_review()
        self._init_labelling()
        build_ui(self)
        build_audit_ui(self)
        if engine is None:
            self._suggest_model()
        self.label_progress.connect(self._on_label_progress)
        self.task_progress.connect(self._on_task_progress)
        self.notice.connect(self.say)
        self.refine_progress.connect(self._on_refine_progress)
        self._bind_keys(napari_viewer)
        napari_viewer.mouse_drag_callbacks.append(self._on_mouse)
        if project:
            self.open_project(project)

    # -- UI plumbing ---------------------------------------------------------------------------------------------
    def _key_actions(self) -> dict:
        return {"accept_proposal": lambda: self.decide(True), "reject": lambda: self.decide(False),
                "next": lambda: self.go(+1), "previous": lambda: self.go(-1)}

    def _bind_keys(self, target) -> None:
        """clicklabel's keys on the viewer, and on each of our layers (a layer's own keys come first in napari)."""
        extra = self._key_actions()
        for key, name in KEYS.items():
            fn = extra.get(name) or getattr(self, name)
            target.bind_key(key, lambda *_, fn=fn: self.run_action(fn), overwrite=True)

    def run_action(self, fn) -> None:
        """A button or key: do it, then give the keys back to the canvas."""
        fn()
        try:
            self.viewer.window._qt_viewer.canvas.native.setFocus()
        except AttributeError:  # another napari: the keys still work after a click on the canvas
            pass

    def reporter(self, signal, stop: threading.Event | None = None):
        """A ``progress(done, total)`` for a worker: emits ``signal`` while the widget lives; ``stop`` is set
        when the widget goes."""
        alive = self._alive
        if stop is not None:
            alive["stops"].append(stop)

        def report(done: int, total: int) -> None:
            if alive["yes"]:
                signal.emit(done, total)

        return report

    def say(self, text: str) -> None:
        self.status.setText(text)

    def after_draw(self, fn) -> None:
        """Run ``fn`` once the canvas has drawn what was just changed (bookkeeping after the picture)."""
        if fn not in self._after_draw:
            self._after_draw.append(fn)
        if not self._draw_hooked:
            self._draw_hooked = True
            try:
                self.viewer.window._qt_viewer.canvas._scene_canvas.events.draw.connect(self._drawn, position="last")
            except AttributeError:  # another napari: a short timer instead
                self._draw_hooked = False
        QTimer.singleShot(250 if self._draw_hooked else 60, self._drawn)  # no draw came (hidden window)

    def _drawn(self, event=None) -> None:
        todo, self._after_draw = self._after_draw, []
        for fn in todo:
            QTimer.singleShot(0, fn)

    @property
    def engine(self):
        """The engine in use: the session's, or the one loaded for the next session."""
        return self.session.engine if self.session is not None else self._engine

    # -- objects, the table, the counter -------------------------------------------------------------------------
    def refresh(self) -> None:
        """Redraw the current image's objects, the table and the counter from the store."""
        s = self.session
        if s is None or s.image is None or self._loading is not None:
            return
        obs = s.objects()
        votes = s.suggestions()
        self.layers.show_objects(obs, s.image.shape[:2], votes)
        self._fill_table(obs, votes)
        self._say_counter()

    def _fill_table(self, obs, votes=None) -> None:
        votes = votes or {}
        table, head = self.table, self.table.horizontalHeader()
        table.blockSignals(True)
        # sized once at the end: with ResizeToContents on, every item set measured its whole column again
        # (0.2 s for a few dozen objects in software rendering, at each label that arrived)
        head.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        try:
            rows = self.table_objects(obs)  # the review panel's filter and columns
            table.setRowCount(len(rows))
            for r, (ob, extra) in enumerate(rows):
                conf = f"{ob.label_confidence:.2f}" if ob.label_confidence is not None else ""
                status = ob.label_status + (f": {votes[ob.id]}?" if ob.id in votes else "")  # the neighbours' guess
                for c, v in enumerate([str(ob.id), ob.label or "", status, conf, ob.provenance, *extra]):
                    item = QTableWidgetItem(v)
                    if c != 1:
                        item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)  # read-only except the label
                    table.setItem(r, c, item)
        finally:
            head.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
            head.setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)  # the label
            table.blockSignals(False)

    def _say_counter(self, index: int | None = None) -> None:
        """The image counter, current from the moment N is pressed (``index``: the image being opened)."""
        s = self.session
        if s is None:
            return
        done, total = s.progress()
        if index is not None:
            self.counter.setText(f"Image {index + 1} of {total} (opening); images done: {done}/{total}")
            return
        waiting = f", {len(self.proposed)} proposal(s) waiting" if self.proposed else ""
        statuses = [self.table.item(r, 2).text().split(":")[0] for r in range(self.table.rowCount())]
        labels = ", ".join(f"{statuses.count(k)} {k}" for k in ("pending", "failed") if statuses.count(k))
        labels = f" (labels: {labels})" if labels else ""
        cost = f"; labels cost ${self._label_cost:.4f} so far" if self._label_cost else ""
        self.counter.setText(f"Image {s.index + 1} of {total} ({s.current.status}); images done: {done}/{total}; "
                             f"objects here: {len(statuses)}{labels}{waiting}{cost}")

    def _table_edited(self, item) -> None:
        if item.column() != 1 or self.session is None:
            return
        oid = int(self.table.item(item.row(), 0).text())
        if item.text().strip():
            self.relabel(oid, item.text())

    def relabel(self, object_id: int, label: str) -> None:
        try:
            self.session.relabel(object_id, label)
            self.say(f"#{object_id} is now '{label.strip()}'.")
        except ClickLabelError as exc:
            self.say(str(exc))
        self.refresh()

    def selected_ids(self) -> list[int]:
        rows = sorted({i.row() for i in self.table.selectedItems()})
        return [int(self.table.item(r, 0).text()) for r in rows]

    def delete_selected(self) -> None:
        ids = self.selected_ids()
        for oid in ids:
            self.session.delete(oid)
        self.refresh()
        self.say(f"Deleted {', '.join(f'#{i}' for i in ids)} (Ctrl+Z undoes)." if ids else
                 "Select rows in the table first.")

    def jump_to_selected(self) -> None:
        ids = self.selected_ids()
        if not ids:
            self.say("Select a row in the table first.")
            return
        x, y, w, h = self.session.object(ids[0]).bbox
        self.viewer.camera.center = (y + h / 2, x + w / 2)
        self.viewer.camera.zoom = max(0.1, 0.5 * min(self.viewer.canvas.size) / max(w, h, 1))

    def undo(self) -> None:
        self._step(self.session.undo if self._ready() else None, "undo")

    def redo(self) -> None:
        self._step(self.session.redo if self._ready() else None, "redo")

    def _step(self, fn, word: str) -> None:
        done = fn() if fn is not None else None
        if not done:
            self.say(f"Nothing to {word}.")
            return
        self._clear_prompt_layers()
        self.refresh()
        self.reload_proposals()
        self.say(f"{word.capitalize()}: {done['kind'].replace('_', ' ')} of #{done['object_id']}.")

    def object_texts(self) -> list[str]:
        """What the boxes say now (for tests and screenshots)."""
        if self.session is None:
            return []
        votes = self.session.suggestions()
        return [object_text(o, votes.get(o.id)) for o in self.session.objects()]

    # -- export ----------------------------------------------------------------------------------------------------
    def export_dialog(self) -> None:
        from qtpy.QtWidgets import QFileDialog

        if self.session is None:
            self.say("Open a project first: the export writes the whole project.")
            return
        start = str(self.session.store.path.with_suffix(".coco.json"))
        path, _ = QFileDialog.getSaveFileName(self, "Export COCO instances", start, "COCO JSON (*.json)")
        if path:
            self.export(path)

    def export(self, path: str):
        """Write the whole project as COCO (the same file as ``clicklabel export``) in a worker; returns it."""
        if self.session is None:
            self.say("Open a project first: the export writes the whole project.")
            return None
        worker = quiet_worker(self.session.export, path, bool(self.polygons.value))
        worker.returned.connect(lambda rep: self.say(
            f"Exported {rep.annotations} object(s) of {rep.images} image(s) to {path}" +
            (f" ({rep.unlabelled} without a label yet)" if rep.unlabelled else "") + "."))
        worker.errored.connect(lambda exc: self.say(f"Export failed: {exc}"))
        self.say(f"Exporting to {path} ...")
        worker.start()
        return worker

    # -- progress --------------------------------------------------------------------------------------------------
    def _on_task_progress(self, done: int, total: int) -> None:
        self._task = (done, total)
        self._update_progress()

    def stop(self) -> None:
        """The bar's Stop: ends proposing (keeping what was found), refining or labelling (keeping what is
        done)."""
        if self.refining:
            self.stop_refining()
        elif self._propose_stop is not None:
            self._propose_stop.set()
            self.say("Stopping the proposals: those found so far are kept ...")
        elif self._label_worker is not None:
            self.stop_labelling()
        else:
            self.say("Nothing is running.")

    def _update_progress(self) -> None:
        """The widget's bar, from the state: loading an image (busy), proposing or labelling (done/total). Its
        updates are held while it is set: a bar repaints itself at once when its value changes, and in napari's
        window that composes the whole window (and draws the canvas) there and then, once per label."""
        bar = self.progress
        bar.setUpdatesEnabled(False)
        try:
            self._set_progress(bar)
        finally:
            bar.setUpdatesEnabled(True)  # one repaint, with the next frame

    def _set_progress(self, bar) -> None:
        stoppable = self._propose_worker is not None or self._label_worker is not None or self.refining
        busy = (self._loading is not None and self._slow_load) or self._downloading
        if busy:
            self._show_seconds(bar, "downloading" if self._downloading else "opening the image")
        elif self._propose_worker is not None:
            bar.setRange(0, max(1, self._task[1]))
            bar.setValue(self._task[0])
            bar.setFormat("proposing %v/%m")
        elif self.refining:
            done, total = self._refine_counts
            bar.setRange(0, max(1, total))
            bar.setValue(done)
            bar.setFormat("refining %v/%m boxes")
        elif self._label_worker is not None:
            done, total = self._label_counts
            bar.setRange(0, total)
            bar.setValue(done)
            bar.setFormat("labelling %v/%m")
        if not busy:
            self._busy_since = None
            self._busy_clock.stop()
        bar.setVisible(busy or stoppable)
        self.stop_btn.visible = stoppable

    def _show_seconds(self, bar, what: str) -> None:
        """The seconds since ``what`` began, not Qt's animated busy bar: its 60 repaints a second composed napari's
        whole window each time, which took a core from the embedding it waits for (15-17 s -> 24-26 s here)."""
        if self._busy_since is None or self._busy_since[0] != what:
            self._busy_since = (what, time.monotonic())
            self._busy_clock.start()
        bar.setRange(0, 1)
        bar.setValue(0)
        bar.setFormat(f"{what}: {time.monotonic() - self._busy_since[1]:.0f} s")
