"""What napari does at every change of a layer that the widget's own layers do not need, turned off for them.

Each was found by profiling the UI thread between a click and its mask on screen (docs/benchmarks.md, GUI latency):

- ``skip_picking``: vispy renders the whole scene a second time at every mouse press to find what is under it.
- ``still_thumbnail``: napari recomputes a layer's thumbnail at every change; for a Shapes layer that rasterises
  every shape (200 ms for one image's boxes).
- ``fixed_extent``: napari recomputes the viewer's dimension ranges (pydantic-validated) at every data event of
  any layer, two events per ``data`` set: ~6 ms at every click for the prompt point alone. The widget's prompt and
  box layers only hold points and rectangles inside the image, so they never change those ranges.
- ``quiet_layer_list``: the layer list repaints a layer's row (its icon redrawn from SVG, its thumbnail) at every
  event of that layer, although the row shows only the name, visibility, lock, loading state and thumbnail; for
  the widget's layers it repaints when one of those changes.
- ``quick_gil``: Python hands the GIL to a waiting thread every 5 ms by default. The decoder thread needs it
  between its ~100 operations and the UI thread for every event, while labelling, napari's status checker and the
  benchmark's own timers run Python too: with 0.5 ms, clicks went from 109 to 98 ms p50 and the longest UI gap
  from 148 to 127 ms (one A/B pair, dev-2c). The interval is only ever lowered, process-wide.
- ``steady_mesh_colours``: vispy's Mesh makes a new colour function at every data update (vispy issue 2568), so
  the shapes' shader program is compiled and linked again at every change of the boxes: on software OpenGL
  30-50 ms inside the next frame, at every accepted object and every label that arrives. ``steady_label_colours``:
  the same for a Labels layer's colour function, made anew whenever its data is replaced (at every image).
- ``PaintHold``: a press changes the cursor position shown in napari's status bar, and any repaint outside the
  canvas makes Qt compose the whole window anew (the canvas is an OpenGL widget inside it): on software OpenGL
  that took both cores for 10-20 ms in the middle of the decoder's work (the decoder in the GUI took 1.18x its
  time alone, 0.9-1.0x with the bar held). The status bar is repainted with the mask's frame instead.
- ``warm_glyphs``: napari renders each character of a text the first time it is drawn (a distance field from a
  256-point glyph, on the CPU): the first label texts on the boxes took 80-170 ms to draw. The characters of the
  widget's texts are rendered ahead, one per timer tick while the annotator is not waiting for an answer.

Every function leaves napari as it was when it does not look as expected (another napari version). Tested with
napari 0.9.2 (vispy 0.17); each patch has a GUI test in tests/test_napari_drawing.py that fails when napari changes
under it.
"""

from __future__ import annotations

import string
import sys

ROW_EVENTS = frozenset({"thumbnail", "visible", "name", "loaded", "locked"})  # what a layer list row shows


def skip_picking(qt_canvas) -> None:
    """At every mouse press vispy renders the whole scene a second time (a picking pass, read back from the GPU) to
    find the interactive visual under the mouse. In napari's canvas that is the view itself, its only interactive
    visual outside grid mode (the cameras are not drawn): answer that directly, and let vispy pick only when the
    scene holds other interactive visuals. A click then costs one render, not two (18 ms of the UI thread and both
    cores' software rendering here)."""
    scene = getattr(qt_canvas, "_scene_canvas", None)
    view, grid = getattr(qt_canvas, "view", None), getattr(qt_canvas, "grid", None)
    if scene is None or view is None or grid is None or not hasattr(scene, "visual_at"):
        return  # another napari: vispy picks as always
    original = scene.visual_at

    def interactive_visuals(node):
        if getattr(node, "interactive", False) and hasattr(node, "draw"):
            yield node
        for child in getattr(node, "children", ()):
            yield from interactive_visuals(child)

    def visual_at(pos):
        if view.interactive and not grid.interactive and list(interactive_visuals(scene.scene)) == [view] \
                and view.rect.contains(*pos[:2]):
            return view
        return original(pos)

    scene.visual_at = visual_at


GIL_SWITCH_S = 0.0005


def quick_gil() -> None:
    """Let threads waiting for the GIL get it within ``GIL_SWITCH_S`` (never raises the interval)."""
    if sys.getswitchinterval() > GIL_SWITCH_S:
        sys.setswitchinterval(GIL_SWITCH_S)


def steady_mesh_colours(viewer, layer) -> None:
    """Keep one colour function per mesh of ``layer``'s visual while its colours are plain RGBA (napari's Shapes),
    so that new data is uploaded without a new shader program."""
    try:
        from vispy.visuals.mesh import MeshVisual

        node = viewer.window._qt_viewer.canvas.layer_to_visual[layer].node
    except (AttributeError, ImportError, KeyError, TypeError):
        return
    for mesh in getattr(node, "_subvisuals", [node]):
        build = getattr(mesh, "_build_color_transform", None)
        if not isinstance(mesh, MeshVisual) or build is None:
            continue
        kept = []

        def steady(colors, build=build, kept=kept):
            if colors.ndim == 2 and colors.shape[1] == 1:  # values through a colormap: vispy's own way
                return build(colors)
            if not kept:
                kept.append(build(colors))
            return kept[0]

        mesh._build_color_transform = steady


def steady_label_colours(viewer, layer) -> None:
    """Keep the colour function of a Labels layer's visual while its colormap's code is the same (it has no other
    parts), so that new data is uploaded without a new shader program."""
    try:
        node = viewer.window._qt_viewer.canvas.layer_to_visual[layer].node
    except (AttributeError, KeyError, TypeError):
        return
    if type(node).__name__ != "LabelNode":  # napari's label visual: red_to_luminance, then the colormap
        return
    build = node._build_color_transform
    kept: dict = {}

    def steady():
        code = node.cmap.glsl_map
        if kept.get("code") != code:
            kept.update(code=code, function=build())
        return kept["function"]

    node._build_color_transform = steady


class PaintHold:
    """Holds the repaints of a widget while the UI waits for an answer, for at most ``limit_ms``; what changed
    meanwhile is painted once it is released (with the frame that shows the answer)."""

    def __init__(self, widget, limit_ms: int):
        from qtpy.QtCore import QTimer

        self._widget = widget
        self._held = False
        self._timer = QTimer(widget) if widget is not None else None
        if self._timer is not None:
            self._timer.setSingleShot(True)
            self._timer.setInterval(limit_ms)
            self._timer.timeout.connect(self.release)

    @classmethod
    def status_bar(cls, viewer, limit_ms: int) -> PaintHold:
        """For napari's status bar (holds nothing where the window has none)."""
        try:
            bar = viewer.window._qt_window.statusBar()
        except (AttributeError, RuntimeError):
            bar = None
        return cls(bar, limit_ms)

    def hold(self) -> None:
        if self._widget is None or self._held:
            return
        self._held = True
        self._widget.setUpdatesEnabled(False)
        self._timer.start()

    def release(self) -> None:
        if not self._held:
            return
        self._held = False
        self._timer.stop()
        try:
            self._widget.setUpdatesEnabled(True)  # and repaints it
        except RuntimeError:  # the window is gone
            pass


def _no_thumbnail(*args, **kwargs) -> None:
    return None


def still_thumbnail(layer) -> None:
    """Keep the layer's thumbnail as first drawn (its name says what it is)."""
    layer._update_thumbnail = _no_thumbnail


def fixed_extent(viewer, layer) -> None:
    """Stop the viewer from recomputing its dimension ranges when this layer's data changes."""
    try:
        layer.events.data.disconnect(viewer._on_layers_change)
    except (AttributeError, TypeError, ValueError, RuntimeError):
        pass


def quiet_layer_list(viewer, is_ours) -> None:
    """The layer list repaints rows of layers for which ``is_ours(layer)`` only when what the row shows changed."""
    try:
        model = viewer.window._qt_viewer.layers.model()
        if hasattr(model, "sourceModel"):  # the view shows the list reversed, through a proxy
            model = model.sourceModel()
        root = model._root
        process = model._process_event
        root.events.disconnect(process)
    except (AttributeError, TypeError, ValueError, RuntimeError):
        return

    def filtered(event) -> None:
        if event.type not in ROW_EVENTS and any(is_ours(s) for s in getattr(event, "sources", ())):
            return
        process(event)

    root.events.connect(filtered)


GLYPHS = string.digits + string.ascii_lowercase + " #.?/[]-_:'()" + string.ascii_uppercase  # likeliest first


def warm_glyphs(viewer, parent, busy, chars: str = GLYPHS, every_ms: int = 40):
    """Render ``chars`` into the canvas' text font, one per ``every_ms`` tick, skipping ticks while ``busy()``.
    Returns the timer (None where napari's canvas has no such font)."""
    from qtpy.QtCore import QTimer

    try:
        info = viewer.window._qt_viewer.canvas._font_info
        font = info.font_manager.get_font(info.face)
        loaded = font._glyphs
    except AttributeError:
        return None
    todo = [c for c in chars if c not in loaded]
    timer = QTimer(parent)

    def tick() -> None:
        if busy():
            return
        while todo and todo[0] in loaded:
            todo.pop(0)
        if not todo:
            timer.stop()
            return
        try:
            font[todo.pop(0)]
        except (RuntimeError, TypeError, ValueError):  # the atlas is full, or another napari's font: stop
            timer.stop()

    timer.timeout.connect(tick)
    timer.start(every_ms)
    return timer
