"""What the panels share, and nothing else: the viewer and its layers, the session, the status line, the progress
bar with its Stop button, and the counter line. Each panel owns its own state; it reaches this hub, and the other
panels, only through the named methods and signals here.

The three lines at the top of the widget have fixed heights, so that nothing below them moves when their text
changes: a long status scrolls inside its box."""

from __future__ import annotations

import threading
import time

from qtpy.QtCore import QObject, Qt, QTimer, Signal
from qtpy.QtWidgets import QFrame, QHBoxLayout, QLabel, QProgressBar, QTextBrowser, QWidget

from ._layers import LayerSet

STATUS_LINES = 3


def _fixed_lines(widget, lines: int, extra: int = 0) -> None:
    """Give ``widget`` the height of ``lines`` lines of its font, whatever its text."""
    widget.setFixedHeight(lines * widget.fontMetrics().lineSpacing() + extra)


class StatusLine(QTextBrowser):
    """The status: what the annotator's last action did and what to do next. Its height never changes (a long
    text scrolls), links open in the browser, and ``text()`` gives the plain text."""

    def __init__(self, text: str = ""):
        super().__init__()
        self.setOpenExternalLinks(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # the keys stay with the canvas
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.viewport().setAutoFillBackground(False)
        self.setStyleSheet("QTextBrowser { background: transparent; }")
        self.document().setDocumentMargin(1)
        _fixed_lines(self, STATUS_LINES, 6)
        self._said = None
        self.setText(text)

    def setText(self, text: str) -> None:  # noqa: N802 - QLabel's name, which callers know
        if text == self._said:
            return
        self._said = text
        if "<" in text:
            self.setHtml(text)
        else:
            self.setPlainText(text)

    def text(self) -> str:
        return self.toPlainText()


class TaskBar:
    """The progress bar and its Stop button. Each long job reports here under its name: counted jobs show
    "proposing 3/16", the others the seconds since they began (not Qt's animated busy bar: its 60 repaints a second
    composed napari's whole window each time, which took a core from the work it waited for). The newest running
    job is shown; Stop stops the newest one that can be stopped; when the last job ends the bar hides, so no
    finished job's count stays on it."""

    def __init__(self, bar: QProgressBar, stop_button, parent: QObject):
        self.bar, self.stop_button = bar, stop_button
        self._jobs: dict[str, dict] = {}  # name -> text, done, total, stop, since (insertion order: oldest first)
        self._clock = QTimer(parent)  # the seconds of uncounted jobs
        self._clock.setInterval(1000)
        self._clock.timeout.connect(self._show)

    def start(self, name: str, text: str, total: int = 0, stop=None) -> None:
        """A job begins: ``total`` 0 counts seconds; ``stop`` (a callable) makes it stoppable."""
        self._jobs.pop(name, None)
        self._jobs[name] = {"text": text, "done": 0, "total": total, "stop": stop, "since": time.monotonic()}
        self._show()

    def update(self, name: str, done: int, total: int) -> None:
        job = self._jobs.get(name)
        if job is not None:
            job["done"], job["total"] = done, total
            self._show()

    def finish(self, name: str) -> None:
        if self._jobs.pop(name, None) is not None:
            self._show()

    def running(self, name: str) -> bool:
        return name in self._jobs

    def stop(self) -> str | None:
        """Stop the newest stoppable job; its name, or None when nothing can be stopped."""
        for name, job in reversed(self._jobs.items()):
            if job["stop"] is not None:
                job["stop"]()
                return name
        return None

    def tick(self) -> None:
        """One second went by (the clock's own tick; tests call it instead of waiting)."""
        self._show()

    def _show(self) -> None:
        """Set the bar for the newest job, its repaints held meanwhile: a bar repaints at once when its value
        changes, and in napari's window that composes the whole window there and then, once per label."""
        bar = self.bar
        if not self._jobs:  # hidden with its repaints on: hidden while held, its last count stayed on the screen
            bar.setVisible(False)
            self._clock.stop()
            self.stop_button.visible = False
            return
        bar.setUpdatesEnabled(False)
        try:
            self._set()
        finally:
            bar.setUpdatesEnabled(True)  # one repaint, with the next frame

    def _set(self) -> None:
        bar = self.bar
        job = next(reversed(self._jobs.values()))
        stoppable = any(j["stop"] is not None for j in self._jobs.values())
        if job["total"]:
            bar.setRange(0, max(1, job["total"]))
            bar.setValue(min(job["done"], job["total"]))
            bar.setFormat(f"{job['text']} %v/%m")
            bar.setVisible(True)
        else:
            bar.setRange(0, 1)
            bar.setValue(0)
            bar.setFormat(f"{job['text']}: {time.monotonic() - job['since']:.0f} s")
            bar.setVisible(True)
        if any(not j["total"] for j in self._jobs.values()):
            if not self._clock.isActive():
                self._clock.start()
        else:
            self._clock.stop()
        self.stop_button.visible = stoppable

    @property
    def clock(self) -> QTimer:
        return self._clock


def build_header(parent: QWidget):
    """The status line, the progress bar with Stop, and the counter line: (status, bar, stop, counter, widgets)."""
    from magicgui.widgets import PushButton

    status = StatusLine("Open a folder of images (Project tab).")
    bar = QProgressBar()
    bar.setVisible(False)
    stop = PushButton(text="Stop", visible=False)
    stop.native.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    counter = QLabel("")
    counter.setWordWrap(True)
    counter.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
    _fixed_lines(counter, 2, 6)
    busy = QWidget(parent)
    row = QHBoxLayout(busy)
    row.setContentsMargins(0, 0, 0, 0)
    row.addWidget(bar, 1)
    row.addWidget(stop.native)
    for part in (bar, stop.native):  # shown and hidden at each run: no relayout each time
        policy = part.sizePolicy()
        policy.setRetainSizeWhenHidden(True)
        part.setSizePolicy(policy)
    busy.setFixedHeight(max(bar.sizeHint().height(), stop.native.sizeHint().height()))
    return status, bar, stop, counter, busy


class Workbench(QObject):
    """The hub the panels share. It owns the session slot, the layers, the lines at the top and the locks that
    keep the image in place while something works on it; signals tell the panels what happened."""

    accepted = Signal(object, bool)  # (object ids accepted, label them now) -> the labels panel
    shown = Signal()  # a new image is on the layers and ready for prompts
    changed = Signal()  # the store changed under the current image: objects, labels, decisions
    notice = Signal(str)  # a status line from any thread (the remote engine's retries)
    progress = Signal(str, int, int)  # (job, done, total) from any worker thread

    def __init__(self, viewer, status: StatusLine, tasks: TaskBar, counter: QLabel, parent=None):
        super().__init__(parent)
        self.viewer = viewer
        self.layers = LayerSet(viewer)
        self.status, self.tasks, self.counter = status, tasks, counter
        self.session = None
        self.engine = None  # the engine for the next session opened (the session holds it from then on)
        self.engine_note = ""  # said with each new image while a fallback engine is in use
        self._locks: dict[str, tuple[str, bool]] = {}  # name -> (why, blocks prompts too)
        self._counts: dict[str, str] = {}  # the counter line's parts, by the panel that says them
        self._after_draw: list = []
        self._draw_hooked = False
        self._alive = {"yes": True, "stops": []}
        self.notice.connect(self.say)
        self.progress.connect(self.guard(tasks.update))

    # -- the lines at the top --------------------------------------------------------------------------------------
    def say(self, text: str) -> None:
        self.status.setText(text)

    def count(self, part: str, text: str) -> None:
        """Set one part of the counter line ("image", "tiles", "objects", "proposals", "labels") and show it."""
        if self._counts.get(part) == text:
            return
        self._counts[part] = text
        self.counter.setText("; ".join(t for k in ("image", "tiles", "objects", "proposals", "labels")
                                       if (t := self._counts.get(k))))

    # -- what the image is held by ---------------------------------------------------------------------------------
    def lock(self, name: str, why: str, prompts: bool = True) -> None:
        """Something works on the current image: no image change (and no prompt, with ``prompts``) meanwhile."""
        self._locks[name] = (why, prompts)

    def unlock(self, name: str) -> None:
        self._locks.pop(name, None)

    def locked(self, prompts: bool = False) -> str | None:
        """Why the image cannot change now (with ``prompts``: why it cannot be prompted), or None."""
        for why, blocks_prompts in self._locks.values():
            if blocks_prompts or not prompts:
                return why
        return None

    def ready(self) -> bool:
        """An image is shown and may be prompted."""
        s = self.session
        return s is not None and s.image is not None and self.locked(prompts=True) is None

    @property
    def current_engine(self):
        """The engine in use: the session's, or the one loaded for the next session."""
        return self.session.engine if self.session is not None else self.engine

    # -- workers ---------------------------------------------------------------------------------------------------
    def reporter(self, job: str, stop: threading.Event | None = None):
        """A ``progress(done, total)`` for a worker thread, shown on the bar under ``job`` while the widget lives;
        ``stop`` is set when the widget goes."""
        alive = self._alive
        if stop is not None:
            alive["stops"].append(stop)

        def report(done: int, total: int) -> None:
            if alive["yes"]:
                self.progress.emit(job, done, total)

        return report

    def start_job(self, name: str, text: str, fn, *args, done, failed, total: int = 0, cancel=None,
                  lock: str | None = None, prompts: bool = True, **kwargs):
        """Run ``fn(*args, **kwargs)`` in a worker as the job ``name``: on the bar as ``text`` (``total`` 0 counts
        seconds; ``cancel``, a callable, lets Stop end it), the image locked with ``lock`` (the words saying why;
        ``prompts``: clicks wait too), then ``done(result)`` or ``failed(exception)`` while the widget lives.
        Returns the worker (started); ``end_job(name)`` ends what this started."""
        from ._workers import quiet_worker

        worker = quiet_worker(fn, *args, **kwargs)
        worker.returned.connect(self.guard(done))
        worker.errored.connect(self.guard(failed))
        if lock is not None:
            self.lock(name, lock, prompts)
        self.tasks.start(name, text, total=total, stop=cancel)
        worker.start()
        return worker

    def end_job(self, name: str) -> None:
        """The job ``name`` is over: its lock and its place on the bar go."""
        self.unlock(name)
        self.tasks.finish(name)

    def guard(self, fn):
        """``fn`` for a worker's result: it does nothing once the widget is gone (the panels are not Qt objects, so
        Qt does not drop their connections when the widget is deleted)."""
        alive = self._alive
        return lambda *args: fn(*args) if alive["yes"] else None

    def shutdown(self) -> None:
        """The widget is gone: workers stop reporting and are asked to stop."""
        self._alive["yes"] = False
        for stop in self._alive["stops"]:
            stop.set()

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

    @property
    def drawing_pending(self) -> bool:
        return bool(self._after_draw)

    def _drawn(self, event=None) -> None:
        todo, self._after_draw = self._after_draw, []
        for fn in todo:
            QTimer.singleShot(0, fn)

    def focus_canvas(self) -> None:
        """Give the keys back to the canvas (after a button)."""
        try:
            self.viewer.window._qt_viewer.canvas.native.setFocus()
        except AttributeError:  # another napari: the keys still work after a click on the canvas
            pass
