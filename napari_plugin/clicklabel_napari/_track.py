"""The Track panel: the frames of a sequence (a video, a folder of frames, a TIFF stack) and SAM 2.1 following an
object through them. The frame slider shows any frame (each frame is an image of the project: its objects, the
table and the keys work as on any image); T propagates the object selected in the Annotate table (or the last one
accepted on this frame) forward and backward, in a worker, with progress and Stop; the frame shown is redrawn as
its mask arrives. The panel lists the sequence's tracks: frames covered, the frames a person made, the label."""

from __future__ import annotations

import threading

from magicgui.widgets import ComboBox, FloatSpinBox, PushButton
from qtpy.QtCore import QObject, Qt, Signal
from qtpy.QtWidgets import QLabel, QSlider, QTableWidget, QTableWidgetItem

from clicklabel.errors import ClickLabelError

from ._controls import buttons, page, row

JOB = "propagating"


class TrackPanel(QObject):
    """Owns the frame slider, the tracks list and the propagation worker; ``selected()`` (the Annotate panel's)
    names the object chosen in its table."""

    frame_done = Signal(int, object)  # (frame index, object id or None) from the worker, as each frame is written

    def __init__(self, bench, navigator, selected, parent=None):
        super().__init__(parent)
        self.bench, self.nav, self.selected = bench, navigator, selected
        self._worker = None
        self._frames: list[int] = []  # the image index of each frame of the sequence shown
        self._sequence = None
        self.info = QLabel("This image is not a frame of a sequence: add a video, a folder of frames or a TIFF stack "
                           "(clicklabel add PROJECT clip.mp4).")
        self.info.setWordWrap(True)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setEnabled(False)
        self.slider.setTracking(False)  # a frame is opened where the slider is let go
        self.direction = ComboBox(label="direction", choices=["both", "forward", "backward"], value="both")
        self.min_score = FloatSpinBox(label="stops below", value=0.0, min=-1000.0, max=1000.0, step=0.5,
                                      tooltip="SAM 2.1's object score under which the object has left the view "
                                              "(clicklabel track --min-score)")
        self.propagate_btn = PushButton(text="Propagate (T)")
        self.tracks = QTableWidget(0, 4)
        self.tracks.setHorizontalHeaderLabels(["track", "frames", "by a person", "label"])
        self.tracks.verticalHeader().setVisible(False)
        self.page = page(self.info, self.slider, row(self.direction, self.min_score), self.propagate_btn,
                         self.tracks)
        buttons(bench, [(self.propagate_btn, self.propagate)])
        self.slider.valueChanged.connect(self._slid)
        self.frame_done.connect(self._frame_done)
        navigator.opened.connect(lambda op: self.show_frame())
        bench.changed.connect(self._list_tracks)

    @property
    def propagating(self) -> bool:
        return self._worker is not None

    def say(self, text: str) -> None:
        self.bench.say(text)

    # -- the frames ------------------------------------------------------------------------------------------------
    def show_frame(self) -> None:
        """The image shown: where it is in its sequence (the slider), or that it is no frame."""
        s = self.bench.session
        where = s.store.frame_of(s.current.id) if s is not None and s.current is not None else None
        if where is None:
            self._sequence, self._frames = None, []
            self.slider.setEnabled(False)
            self.info.setText("This image is not a frame of a sequence.")
            self._list_tracks()
            return
        seq_id, t = where
        if seq_id != self._sequence:
            index = {im.id: n for n, im in enumerate(s.images)}
            self._sequence = seq_id
            self._frames = [index[i] for i in s.store.frame_ids(seq_id) if i in index]
            self.slider.blockSignals(True)
            self.slider.setRange(0, max(0, len(self._frames) - 1))
            self.slider.blockSignals(False)
        self.slider.setEnabled(True)
        self.slider.blockSignals(True)
        self.slider.setValue(t)
        self.slider.blockSignals(False)
        seq = s.store.sequence(seq_id)
        self.info.setText(f"Frame {t + 1} of {len(self._frames)} of '{seq.name}': click an object and accept it, then "
                          "T propagates it through the sequence.")
        self._list_tracks()

    def go_to_frame(self, t: int) -> None:
        """Show frame ``t`` of the sequence shown."""
        if 0 <= t < len(self._frames):
            self.nav.show_image(self._frames[t])

    def _slid(self, t: int) -> None:
        self.go_to_frame(t)

    def _list_tracks(self) -> None:
        from clicklabel.track.session import sequence_tracks

        s = self.bench.session
        rows = sequence_tracks(s.store, self._sequence) if self._sequence is not None else []
        self.tracks.setRowCount(len(rows))
        for r, tr in enumerate(rows):
            span = f"{tr.frames[0] + 1}-{tr.frames[-1] + 1} ({len(tr.frames)})" if tr.frames else "0"
            for c, v in enumerate([str(tr.track_id), span, ", ".join(str(f + 1) for f in tr.annotated),
                                   tr.label or ""]):
                self.tracks.setItem(r, c, QTableWidgetItem(v))

    # -- propagating -----------------------------------------------------------------------------------------------
    def propagate(self) -> None:
        """T: follow the chosen object through its sequence, in a worker."""
        s = self.bench.session
        if not self.bench.ready():
            self.say(self.bench.locked(prompts=True) or "Open a frame of a sequence first.")
            return
        if self._worker is not None:
            self.say("Propagating already: see the bar (Stop ends it; the frames done stay).")
            return
        if self._sequence is None:
            self.say("This image is not a frame of a sequence: nothing to propagate through.")
            return
        ids = self.selected() or [o.id for o in s.objects()][-1:]
        if not ids:
            self.say("Click the object on this frame and accept it (Enter) first; T then follows it through the "
                     "sequence.")
            return
        stop = threading.Event()
        self.say(f"Propagating #{ids[0]} through {len(self._frames)} frames ({self.direction.value}) ...")
        self._worker = self.bench.start_job(
            JOB, JOB, s.track, ids[0], self.direction.value, progress=self.bench.reporter(JOB, stop), stop=stop,
            on_frame=lambda t, oid: self.frame_done.emit(t, oid), min_score=float(self.min_score.value),
            done=self._tracked, failed=self._failed, total=len(self._frames), cancel=stop.set,
            lock="SAM 2.1 is propagating through this sequence: wait, or press Stop, before changing frames.")

    def _frame_done(self, t: int, object_id) -> None:
        """A frame's mask was written: the frame on screen is redrawn when it is that one."""
        if self._frames and self.slider.value() == t:
            self.bench.changed.emit()

    def _done(self) -> None:
        self._worker = None
        self.bench.end_job(JOB)
        self.bench.changed.emit()

    def _failed(self, exc) -> None:
        self._done()
        self.say(str(exc) if isinstance(exc, ClickLabelError) else f"Propagating failed: {exc}")

    def _tracked(self, rep) -> None:
        self._done()
        stopped = " (stopped: T again goes on)" if rep.cancelled else ""
        self.say("; ".join(rep.lines()) + stopped + ". Move the frame slider to look; a click corrects a frame.")
