"""Background workers whose errors the widget reports itself (in the status line).

napari's ``create_worker`` re-raises a worker's exception in the Qt event loop (a traceback in the console and an
error pop-up) unless ``_ignore_errors`` is set, even when an ``errored`` handler is connected afterwards; every
widget worker connects one, so none of them should also raise."""

from __future__ import annotations

from napari.qt.threading import create_worker


def quiet_worker(fn, *args, **kwargs):
    """``create_worker`` for a worker whose ``errored`` signal the caller connects (not started yet)."""
    return create_worker(fn, *args, _ignore_errors=True, **kwargs)
