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

Every function leaves napari as it was when it does not look as expected (another napari version).
"""

from __future__ import annotations

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

    model._clicklabel_process_event = filtered  # the emitter holds a weak reference to bound methods only
    root.events.connect(filtered)
