"""Background workers whose errors the widget reports itself (in the status line), and which hand back their
thread's OpenMP workers when done.

napari's ``create_worker`` re-raises a worker's exception in the Qt event loop (a traceback in the console and an
error pop-up) unless ``_ignore_errors`` is set, even when an ``errored`` handler is connected afterwards; every
widget worker connects one, so none of them should also raise.

Workers run on Qt's thread pool, whose threads outlive their jobs; a thread that ran PyTorch keeps an idle OpenMP
team, and those idle teams slowed every click's decoding by half (``clicklabel.segment.openmp``)."""

from __future__ import annotations

import functools
import time
import weakref
from concurrent.futures import ThreadPoolExecutor

from napari.qt.threading import create_worker
from qtpy.QtCore import QObject, Signal

from clicklabel.segment.openmp import release_threads


def _releasing(fn):
    @functools.wraps(fn)
    def run(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        finally:
            release_threads()

    return run


def quiet_worker(fn, *args, **kwargs):
    """``create_worker`` for a function (not a generator) whose ``errored`` signal the caller connects (not started
    yet); its thread's idle OpenMP workers are released when it ends."""
    return create_worker(_releasing(fn), *args, _ignore_errors=True, **kwargs)


class DecodeThread(QObject):
    """One long-lived thread for the interactive decoder: its OpenMP team is made once and stays warm (a new
    thread per click paid 6-13 ms to make its team again). Results come back to the UI thread through a signal."""

    _done = Signal(object, object)  # (callback, its argument), queued to the UI thread

    def __init__(self, parent=None):
        super().__init__(parent)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="clicklabel-decode")
        self._busy = 0
        self._done.connect(self._deliver)
        _DECODERS.add(self)

    def submit(self, fn, arg, returned, errored) -> None:
        """Run ``fn(arg)`` in the decoder thread; then ``returned(result)`` or ``errored(exception)`` in the UI
        thread."""
        self._busy += 1

        def run():
            try:
                out = (returned, fn(arg))
            except Exception as exc:  # noqa: BLE001 - reported in the status line by ``errored``
                out = (errored, exc)
            try:
                self._done.emit(*out)
            except RuntimeError:  # the widget is gone
                self._busy -= 1

        self._pool.submit(run)

    def _deliver(self, callback, value) -> None:
        self._busy -= 1
        callback(value)

    @property
    def busy(self) -> bool:
        return self._busy > 0


_DECODERS: weakref.WeakSet = weakref.WeakSet()


def await_decoders(seconds: float) -> None:
    """Wait until no decoder thread has an answer on its way (tests: before the viewer closes)."""
    from qtpy.QtWidgets import QApplication

    end = time.monotonic() + seconds
    while any(d.busy for d in list(_DECODERS)) and time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.005)
