"""Small pieces every panel builds its tab from: a row of controls, a scrolling page, buttons that leave the keys
with the canvas."""

from __future__ import annotations

from magicgui.widgets import Container
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QScrollArea, QVBoxLayout, QWidget


def row(*widgets) -> Container:
    return Container(widgets=list(widgets), layout="horizontal", labels=False)


def page(*parts) -> QScrollArea:
    """A tab's page: ``parts`` (magicgui or Qt widgets) top to bottom, scrolling when the window is small."""
    inner = QWidget()
    lay = QVBoxLayout(inner)
    lay.setContentsMargins(4, 4, 4, 4)
    for part in parts:
        lay.addWidget(getattr(part, "native", part))
    lay.addStretch(1)
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setWidget(inner)
    return scroll


def buttons(bench, pairs) -> None:
    """Connect each (button, action): the action runs, then the keys go back to the canvas."""
    for button, action in pairs:
        button.native.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # the keys stay with the canvas
        button.changed.connect(lambda *_, action=action: run(bench, action))


def run(bench, action) -> None:
    """A button or key: do it, then give the keys back to the canvas."""
    action()
    bench.focus_canvas()
