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


def canvas_point(viewer, x: float, y: float, layer=None) -> QPoint:
    """Canvas pixel of data point (x, y) of ``layer`` (default: the first layer), through vispy's own transform
    from the layer's visual to the canvas (the one napari inverts for mouse events)."""
    canvas = viewer.window._qt_viewer.canvas
    node = canvas.layer_to_visual[layer if layer is not None else viewer.layers[0]].node
    px, py = node.get_transform(map_from="visual", map_to="canvas").map([x, y])[:2]
    return QPoint(round(px), round(py))


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


def _mouse_event(kind, pos: QPoint, button, buttons):
    from qtpy.QtCore import QPointF
    from qtpy.QtGui import QMouseEvent

    local = QPointF(pos)
    return QMouseEvent(kind, local, local, local, button, buttons, Qt.KeyboardModifier.NoModifier)


def press(viewer, x: float, y: float):
    """Press the left button at image pixel (x, y) and keep it down."""
    from qtpy.QtCore import QEvent

    widget = canvas_widget(viewer)
    left = Qt.MouseButton.LeftButton
    QApplication.sendEvent(widget, _mouse_event(QEvent.Type.MouseButtonPress, canvas_point(viewer, x, y), left, left))


def move(viewer, x: float, y: float, held: bool = True):
    """Move the mouse to image pixel (x, y), the left button held (a drag) or not."""
    from qtpy.QtCore import QEvent

    widget = canvas_widget(viewer)
    buttons = Qt.MouseButton.LeftButton if held else Qt.MouseButton.NoButton
    QApplication.sendEvent(widget, _mouse_event(QEvent.Type.MouseMove, canvas_point(viewer, x, y),
                                                Qt.MouseButton.NoButton, buttons))


def release(viewer, x: float, y: float):
    """Release the left button at image pixel (x, y)."""
    from qtpy.QtCore import QEvent

    widget = canvas_widget(viewer)
    QApplication.sendEvent(widget, _mouse_event(QEvent.Type.MouseButtonRelease, canvas_point(viewer, x, y),
                                                Qt.MouseButton.LeftButton, Qt.MouseButton.NoButton))
