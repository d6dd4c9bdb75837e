"""The napari layers the widget owns, and how the session's state is drawn on them.

The layers are made once and then updated in place: a new image replaces their data, never the layers (removing
and re-adding layers made napari's vispy clean-up freeze the window for seconds per image); only the image layer is
made anew when an image's kind changes, small to large or back (napari cannot make a layer multiscale in place). A
large image's overlays (objects, preview, proposals) hold the visible region only (``_viewport``). A mask is drawn
at the cost of its box: only the region it touches is written into a layer and sent to the screen (napari's own
partial update of a Labels layer, the one its brush uses), never the whole image. Decoding masks (RLE) is done once per
object, by ``crop_of``, which any thread may call.
"""

from __future__ import annotations

import numpy as np

from ._boxes import object_text, outline, text_features
from ._lean import fixed_extent, quiet_layer_list, steady_label_colours, steady_mesh_colours, still_thumbnail
from ._paint import crop_of, paint, record_crop  # noqa: F401  (crop_of: imported from here by the panels)
from ._proposal_layer import PROPOSAL_COLOURS, ProposalPainter
from ._viewport import BOX_PX, POINT_PX, Frame, Viewport, place

IMAGE = "image"  # the key of the image layer (its name is the image's)
PROMPTS = "clicklabel prompts"
BOX = "clicklabel box prompt"
PREVIEW = "clicklabel preview"
OBJECTS = "clicklabel objects"
PROPOSALS = "clicklabel proposals"
BOXES = "clicklabel boxes"
MANUAL = "clicklabel manual"

_CLEAR = (0.0, 0.0, 0.0, 0.0)
PREVIEW_COLOURS = {None: _CLEAR, 0: _CLEAR, 1: (1.0, 1.0, 0.0, 1.0)}
STATUS_COLOURS = {"pending": "orange", "failed": "red", "done": "lime", "edited": "cyan"}


def point_size(h: int, w: int) -> int:
    """The prompt points' size for an image of this size."""
    return max(6, min(h, w) // 60)


# Layers whose thumbnails stay as first drawn, and layers whose data never changes the viewer's ranges (_lean.py)
STILL_THUMBNAILS = (BOXES, MANUAL, BOX, PREVIEW, PROMPTS)
FIXED_EXTENT = (BOXES, BOX, PROMPTS)


def _show(layer, visible: bool) -> None:
    if layer.visible != visible:  # napari redraws on every set, even to the same value
        layer.visible = visible


def _union(a, b):
    """The smallest (r0, c0, r1, c1) box holding boxes ``a`` and ``b`` (either may be None)."""
    if a is None or b is None:
        return a or b
    return min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3])


class LayerSet:
    """The widget's layers, made on the first image and kept: later images update them in place."""

    def __init__(self, viewer):
        self.viewer = viewer
        self._layers: dict = {}
        self._crops: dict[int, tuple] = {}  # object id -> (RLE counts, crop_of(mask)): each mask decoded once
        self._painted: list[int] | None = []  # ids on the objects layer, in the order drawn (later ones on top)
        self._drawn: list[tuple] = []  # (object id, box) of the outlines on the boxes layer, in order
        self._colours: list[str] = []  # their edge colours and texts as set on the layer (each a whole-layer update)
        self._texts: list[str] = []
        self._preview_box = None  # (r0, c0, r1, c1) of the preview on screen
        self.painter = ProposalPainter()
        self._placeholder = False  # the layers hold prepare()'s 1x1 placeholder, no image yet
        # a large image's overlays hold the visible region (``_viewport``): what they are painted from, at full size
        self.frame: Frame | None = None  # where the overlays' pixels lie; None: the whole image, as it is
        self.viewport = Viewport(viewer, self.reframe)
        self._objects: list = []  # the objects last shown
        self._preview_crop = None
        self._waiting: tuple[dict, dict | None] = ({}, None)  # the proposals shown: crops, classes
        self._highlighted: int | None = None
        quiet_layer_list(viewer, self.ours)

    def _layer(self, key: str):
        layer = self._layers.get(key)
        return layer if layer is not None and layer in self.viewer.layers else None

    image = property(lambda self: self._layer(IMAGE))
    prompts = property(lambda self: self._layer(PROMPTS))
    box = property(lambda self: self._layer(BOX))
    preview = property(lambda self: self._layer(PREVIEW))
    objects = property(lambda self: self._layer(OBJECTS))
    proposals = property(lambda self: self._layer(PROPOSALS))
    boxes = property(lambda self: self._layer(BOXES))
    manual = property(lambda self: self._layer(MANUAL))

    def ours(self, layer) -> bool:
        return any(layer is mine for mine in self._layers.values())

    # -- a new image --------------------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Make the layers now, holding a 1x1 placeholder: napari's first making of them (Qt controls, visuals,
        shaders, and pint's unit registry for the first layer's units: 1-2 s alone) froze the UI thread for
        1.5-2.4 s when the first image was shown; it is paid here instead, when the widget is made (before the
        window shows), and the first image is shown as any next one is."""
        if self.image is None:
            self._make(np.zeros((1, 1, 3), np.uint8), "clicklabel", np.zeros((1, 1), np.int32))
            self._placeholder = True

    def show_image(self, image: np.ndarray, name: str, labels, ids: list[int], levels=None) -> None:
        """Show ``image`` with its objects ``ids`` already drawn in ``labels`` (value = id): the layers are
        made once (again only if the user removed one) and then get new data; prompts, preview and proposals are
        emptied. A large image comes as its pyramid ``levels`` (a multiscale layer) with ``labels`` None: its
        overlays are painted for the visible region (``_viewport``), its objects by the next ``show_objects``."""
        h, w = image.shape[:2]
        first = self.image is None or self._placeholder
        if self.image is not None and self.image.multiscale != (levels is not None):
            self.viewer.layers.remove(self.image)  # napari cannot make a layer multiscale in place
            del self._layers[IMAGE]
        self.frame = None if levels is None else self.viewport.start((h, w), reset=True)
        if self.frame is not None:
            labels = np.zeros(self.frame.shape, np.int32)
        else:
            self.viewport.stop()
        made = self.image is None
        self._make(image, name, labels, levels)
        self._placeholder = False
        if made and self.viewer.layers.index(self.image) != 0:
            self.viewer.layers.move(self.viewer.layers.index(self.image), 0)  # drawn first, under the overlays
        if not made:
            img = self.image
            img.data = image if levels is None else levels
            if img.name != name:
                img.name = name
        if self.objects.data is not labels:
            self.objects.data = labels
        self._painted = list(ids) if self.frame is None else None  # None: the next show_objects paints all
        self._objects, self._preview_crop, self._waiting, self._highlighted = [], None, ({}, None), None
        shape = (h, w) if self.frame is None else self.frame.shape
        self._drawn, self._colours, self._texts = [], [], []
        self._crops.clear()
        self._preview_box = None
        self.painter.reset(shape)
        for key, dtype in ((PREVIEW, np.uint8), (PROPOSALS, np.uint8)):
            layer = self._layers[key]
            if layer.data.shape != shape:
                layer.data = np.zeros(shape, dtype)
            elif layer.data.any():
                layer.data[:] = 0
                layer.refresh()
        _show(self.proposals, False)
        for key in (BOXES, MANUAL, BOX):
            if len(self._layers[key].data):
                self._layers[key].data = []
        self.clear_points()
        self._sizes(point_size(h, w) if self.frame is None else POINT_PX * self.frame.step,
                    2.0 if self.frame is None else BOX_PX * self.frame.step)
        for key in (OBJECTS, PREVIEW, PROPOSALS):
            place(self._layers[key], self.frame)
        if first or made:
            self.viewer.layers.selection.active = self.image
        self.viewer.reset_view()
        if self.frame is not None:
            self.viewport.follow()  # the view napari settled on, if its fit differs from the one foreseen

    def _make(self, image: np.ndarray, name: str, labels: np.ndarray, levels=None) -> None:
        """Add the layers that are missing (all of them the first time), in drawing order."""
        h, w = image.shape[:2]
        v = self.viewer
        makers = {
            IMAGE: lambda: v.add_image(image if levels is None else levels, name=name, rgb=image.ndim == 3,
                                       multiscale=levels is not None),
            OBJECTS: lambda: v.add_labels(labels, name=OBJECTS, opacity=0.45),
            PROPOSALS: lambda: v.add_labels(np.zeros(labels.shape, np.uint8), name=PROPOSALS, opacity=0.65,
                                            colormap=PROPOSAL_COLOURS, visible=False),
            PREVIEW: lambda: v.add_labels(np.zeros(labels.shape, np.uint8), name=PREVIEW, opacity=0.55,
                                          colormap=PREVIEW_COLOURS),
            BOXES: lambda: v.add_shapes(name=BOXES, edge_color="lime", face_color="transparent", edge_width=2,
                                        features=text_features([]),
                                        text={"string": "{text}", "anchor": "upper_left", "color": "white",
                                              "size": 10}),
            MANUAL: lambda: v.add_shapes(name=MANUAL, edge_color="magenta", face_color="transparent", edge_width=2),
            BOX: lambda: v.add_shapes(name=BOX, edge_color="yellow", face_color="transparent", edge_width=2),
            PROMPTS: lambda: self._make_points(point_size(h, w)),
        }
        for key, make in makers.items():
            if self._layer(key) is None:
                self._layers[key] = layer = make()
                if key in STILL_THUMBNAILS:
                    still_thumbnail(layer)
                if key in FIXED_EXTENT:
                    fixed_extent(self.viewer, layer)
                if key in (BOXES, MANUAL, BOX):
                    steady_mesh_colours(self.viewer, layer)
                elif key in (OBJECTS, PROPOSALS, PREVIEW):
                    steady_label_colours(self.viewer, layer)

    def _make_points(self, size: int):
        pts = self.viewer.add_points(np.zeros((0, 2)), name=PROMPTS, size=size,
                                     features={"positive": np.array([], dtype=bool)}, face_color="positive",
                                     face_color_cycle=["red", "lime"], border_color="white")
        pts.feature_defaults["positive"] = True
        return pts

    # -- prompts and the preview ---------------------------------------------------------------------------------
    def set_points(self, points_rc: np.ndarray, positive: np.ndarray) -> None:
        pts = self.prompts
        n = len(pts.data)
        if len(points_rc) == n + 1 and np.array_equal(points_rc[:n], pts.data):  # one more point: one update
            pts.feature_defaults["positive"] = bool(positive[-1])
            pts.data = points_rc
            return
        pts.data = points_rc
        pts.features = {"positive": positive}

    def show_box_prompt(self, start_rc, end_rc, width: float) -> None:
        """The box being dragged (its first corner and the mouse, row and column each), ``width`` pixels of the
        image wide: the first move adds it, the others move its corners (one shape updated, no new mesh)."""
        (y0, x0), (y1, x1) = start_rc, end_rc
        r = np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]], dtype=float)
        box = self.box
        if len(box.data) == 1 and box.edge_width[0] == width:
            box.data = [r]
            return
        if len(box.data):
            box.data = []
        box.add_rectangles(r, edge_width=width, edge_color="yellow")

    def clear_points(self) -> None:
        if len(self.prompts.data):
            self.set_points(np.zeros((0, 2)), np.zeros(0, bool))

    def show_preview(self, crop) -> None:
        """Draw a preview mask given as ``crop_of(mask)`` (None: no preview); only the old and new boxes are
        repainted."""
        layer = self.preview
        if layer is None:
            return
        self._preview_crop = crop
        crop = self._fit(crop)
        new = None if crop is None else (*crop[0], crop[0][0] + crop[1].shape[0], crop[0][1] + crop[1].shape[1])
        region = _union(self._preview_box, new)
        self._preview_box = new
        if region is None:
            return
        r0, c0, r1, c1 = region
        block = np.zeros((r1 - r0, c1 - c0), np.uint8)
        if crop is not None:
            (r, c), m = crop
            block[r - r0 : r - r0 + m.shape[0], c - c0 : c - c0 + m.shape[1]] = m
        paint(layer, r0, c0, block)  # (hiding the layer while empty cost more: showing it redraws it all)

    # -- objects -------------------------------------------------------------------------------------------------
    def crop(self, ob):
        """crop_of(the object's mask), decoded once per object and mask."""
        counts = ob.rle["counts"]
        hit = self._crops.get(ob.id)
        if hit is None or hit[0] != counts:
            hit = (counts, record_crop(ob))
            self._crops[ob.id] = hit
        return hit[1]

    def remember(self, object_id: int, counts: str, crop) -> None:
        """A crop decoded elsewhere (a worker thread) for the object with these RLE counts."""
        self._crops[object_id] = (counts, crop)

    def show_objects(self, objects, shape, votes=None) -> None:
        """Draw the accepted objects: masks (label value = object id), tight boxes and label texts. Only what
        changed is redrawn: objects added since the last call are painted in their boxes, and boxes already
        drawn stay (napari rebuilds a rectangle's meshes when it is added); anything else redraws all."""
        ids = [ob.id for ob in objects]
        layer = self.objects
        self._objects = list(objects)
        shape = tuple(shape) if self.frame is None else self.frame.shape
        if self._painted is not None and set(self._painted) <= set(ids) and layer.data.shape == shape \
                and not self._reshaped(objects):
            painted = set(self._painted)
            for ob in objects:
                if ob.id not in painted:
                    self._paint_object(layer, ob)
                    self._painted.append(ob.id)
        else:
            labels = np.zeros(shape, np.int32)
            for ob in objects:
                crop = self._fit(self.crop(ob))
                if crop is not None:
                    (r, c), m = crop
                    labels[r : r + m.shape[0], c : c + m.shape[1]][m] = ob.id
            layer.data = labels
            self._painted = ids
        self._show_boxes(objects, votes or {})

    def _reshaped(self, objects) -> bool:
        """Whether an object already drawn has another mask now (refined, replaced, undone)."""
        painted = set(self._painted)
        return any(ob.id in painted and ob.id in self._crops and self._crops[ob.id][0] != ob.rle["counts"]
                   for ob in objects)

    def add_object(self, ob) -> None:
        """Paint one newly accepted object at once (its box and text follow with the next ``show_objects``)."""
        if self._painted is not None and ob.id not in self._painted and self.objects is not None:
            self._paint_object(self.objects, ob)
            self._painted.append(ob.id)

    def _paint_object(self, layer, ob) -> None:
        crop = self._fit(self.crop(ob))
        if crop is not None:
            (r, c), m = crop
            block = layer.data[r : r + m.shape[0], c : c + m.shape[1]].copy()
            block[m] = ob.id
            paint(layer, r, c, block)

    def _show_boxes(self, objects, votes) -> None:
        drawn = [(ob.id, tuple(ob.bbox)) for ob in objects]
        texts = [object_text(ob, votes.get(ob.id)) for ob in objects]
        colours = [STATUS_COLOURS.get(ob.label_status, "white") for ob in objects]
        boxes = self.boxes
        if drawn[: len(self._drawn)] != self._drawn or len(boxes.data) != len(self._drawn) or not drawn:
            if len(boxes.data):
                boxes.data = []
            self._drawn, self._colours, self._texts = [], [], []
        new = drawn[len(self._drawn) :]
        if new:
            boxes.add_paths([outline(*b) for _, b in new], edge_color=colours[len(self._drawn) :])
            self._colours = self._colours + colours[len(self._drawn) :]
        self._drawn = drawn
        # only what changed: each setter rebuilds the whole layer's mesh or texts (an accepted object changes
        # neither for the boxes already drawn; a label changes one colour and one text)
        if colours != self._colours:
            boxes.edge_color = colours
        if texts != self._texts:
            boxes.features = text_features(texts)
            boxes.text.refresh(boxes.features)
        self._colours, self._texts = colours, texts

    # -- proposals (drawn by ``_proposal_layer.ProposalPainter``) ----------------------------------------------
    def show_proposals(self, crops: dict[int, tuple], classes: dict[int, str] | None = None, drawn=None) -> None:
        self._waiting, self._highlighted = (dict(crops), classes), None
        if self.frame is not None:
            crops = {pid: fit for pid, crop in crops.items() if (fit := self.frame.fit(crop)) is not None}
            drawn = None
        self.painter.show(self.proposals, crops, classes, drawn)
        _show(self.proposals, bool(self._waiting[0]))

    def highlight(self, proposal_id: int | None) -> None:
        self._highlighted = proposal_id
        self.painter.highlight(self.proposals, proposal_id)

    def drop_proposal(self, proposal_id: int) -> None:
        self._waiting[0].pop(proposal_id, None)
        self.painter.drop(self.proposals, proposal_id)
        if not self._waiting[0]:
            _show(self.proposals, False)

    # -- a large image's overlays, painted for the visible region (``_viewport``) ------------------------------------
    def _sizes(self, point: float, width: float) -> None:
        """The prompt points' size and the boxes' edge width, in image pixels (a large image's follow the zoom)."""
        pts = self.prompts
        if pts is not None and pts.current_size != point:
            pts.current_size = point
            if len(pts.data):
                pts.size = point
        for layer in (self.boxes, self.manual):
            if layer is not None and layer.current_edge_width != width:
                layer.current_edge_width = width
                if layer.nshapes:
                    layer.edge_width = width

    def _fit(self, crop):
        return crop if self.frame is None else self.frame.fit(crop)

    def reframe(self, frame: Frame) -> None:
        """Paint the overlays of a large image for ``frame`` (the camera moved): objects, preview and proposals."""
        self.frame = frame
        for key, dtype in ((OBJECTS, np.int32), (PREVIEW, np.uint8), (PROPOSALS, np.uint8)):
            layer = self._layer(key)
            if layer is not None:
                layer.data = np.zeros(frame.shape, dtype)
                place(layer, frame)
        self._painted, self._preview_box = None, None
        self._sizes(POINT_PX * frame.step, BOX_PX * frame.step)
        if self.objects is not None:
            self.show_objects(self._objects, frame.image_shape)
        self.show_preview(self._preview_crop)
        (crops, classes), highlighted = self._waiting, self._highlighted
        if crops and self.proposals is not None:
            self.painter.reset(frame.shape)
            self.show_proposals(crops, classes)
            self.highlight(highlighted)
