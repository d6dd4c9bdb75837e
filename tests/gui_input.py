"""Real Qt input on napari's canvas, for the GUI tests and benchmarks/gui_latency.py: mouse clicks at image
coordinates (mapped through the camera to canvas pixels) and key presses, sent as Qt events to the vispy canvas
widget, so that they travel the same way as a person's."""

from __future__ import annotations

import time

from qtpy.QtCore import QPoint, Qt
from qtpy.QtTest import QTest
from qtpy.QtWidgets import QApplication


def canvas_widget(viewer):
    """The Qt widget of napari's vispy canvas."""
    return viewer.window._qt_viewer.canvas.native


def canvas_point(viewer, x: float, y: float) -> QPoint:
    """Canvas pixel of image pixel (x, y) (world = data coordinates for an untransformed image layer)."""
    widget = canvas_widget(viewer)
    cy, cx = viewer.camera.center[-2:]
    zoom = viewer.camera.zoom
    return QPoint(round((x - cx) * zoom + widget.width() / 2), round((y - cy) * zoom + widget.height() / 2))


def click(viewer, x: float, y: float, button=Qt.MouseButton.LeftButton, modifier=Qt.KeyboardModifier.NoModifier):
    """Press and release a mouse button at image pixel (x, y)."""
    widget = canvas_widget(viewer)
    pos = canvas_point(viewer, x, y)
    QTest.mousePress(widget, button, modifier, pos)
    QTest.mouseRelease(widget, button, modifier, pos)


def key(viewer, name: str, modifier=Qt.KeyboardModifier.NoModifier):
    """Press and release a key on the canvas (``name``: a letter, 'Return' or 'Escape')."""
    widget = canvas_widget(viewer)
    widget.setFocus()
    code = getattr(Qt.Key, f"Key_{name if len(name) > 1 else name.upper()}")
    QTest.keyClick(widget, code, modifier)


def pump(seconds: float = 0.0) -> None:
    """Process Qt events for ``seconds`` (at least once)."""
    app = QApplication.instance()
    end = time.perf_counter() + seconds
    while True:
        app.processEvents()
        if time.perf_counter() >= end:
            return
        time.sleep(0.002)
