"""The napari layers the widget owns, and how the core's state is drawn on them."""

from __future__ import annotations

import numpy as np

from clicklabel.masks import tight_bbox

PROMPTS = "clicklabel prompts"
BOX = "clicklabel box prompt"
PREVIEW = "clicklabel preview"
OBJECTS = "clicklabel objects"
BOXES = "clicklabel boxes"
MANUAL = "clicklabel manual"

STATUS_COLOURS = {"pending": "orange", "failed": "red", "done": "lime", "edited": "cyan"}


def rect(x: float, y: float, w: float, h: float) -> np.ndarray:
    """A napari rectangle (row, col corners) from an XYWH box."""
    return np.array([[y, x], [y, x + w], [y + h, x + w], [y + h, x]], dtype=float)


def object_text(ob) -> str:
    """What a box says: the label and its confidence, or the label's state; a box-only object (no mask yet) and
    one that refine flagged say so."""
    marks = ("" if getattr(ob, "has_mask", True) else " [box only]") + (" [review]" if getattr(ob, "review", None)
                                                                        else "")
    if ob.label_status == "pending":
        return f"#{ob.id} labelling...{marks}"
    if ob.label_status == "failed":
        return f"#{ob.id} label failed{marks}"
    conf = f" {ob.label_confidence:.2f}" if ob.label_confidence is not None and ob.label_status == "done" else ""
    return f"#{ob.id} {ob.label}{conf}{marks}"


class _Layer:
    """``layer_set.<name>``: the viewer's layer of that name, or None once the user removed it."""

    def __init__(self, name: str):
        self.name = name

    def __get__(self, owner, cls=None):
        if owner is None:
            return self
        layers = owner.viewer.layers
        return layers[self.name] if self.name in layers else None


class LayerSet:
    """Creates the widget's layers on first use and keeps them in the viewer."""

    def __init__(self, viewer):
        self.viewer = viewer
        self.image = None
        # object id -> (its RLE counts, (row, col) of its box, the mask inside its box): a mask is decoded once,
        # not at every redraw (a redraw follows each accept, label and undo).
        self._crops: dict[int, tuple] = {}
        self._drawn: list[tuple] = []  # (object id, box) of the rectangles on the boxes layer, in order

    def setup(self, image: np.ndarray, name: str) -> None:
        """Show a new image and (re)create empty prompt, preview and object layers of its size."""
        h, w = image.shape[:2]
        self._crops.clear()
        self._drawn = []
        for n in (PROMPTS, BOX, PREVIEW, OBJECTS, BOXES, MANUAL):
            if n in self.viewer.layers:
                self.viewer.layers.remove(n)
        if self.image is not None and self.image in self.viewer.layers:
            self.viewer.layers.remove(self.image)
        self.image = self.viewer.add_image(image, name=name, rgb=image.ndim == 3)
        self.viewer.add_labels(np.zeros((h, w), np.int32), name=OBJECTS, opacity=0.45)
        self.viewer.add_labels(np.zeros((h, w), np.uint8), name=PREVIEW, opacity=0.55)
        self.viewer.add_shapes(name=BOXES, edge_color="lime", face_color="transparent", edge_width=2,
                               features={"text": np.array([], dtype=object)},
                               text={"string": "{text}", "anchor": "upper_left", "color": "white", "size": 10})
        self.viewer.add_shapes(name=MANUAL, edge_color="magenta", face_color="transparent", edge_width=2)
        self.viewer.add_shapes(name=BOX, edge_color="yellow", face_color="transparent", edge_width=2)
        pts = self.viewer.add_points(np.zeros((0, 2)), name=PROMPTS, size=max(6, min(h, w) // 60),
                                     features={"positive": np.array([], dtype=bool)},
                                     face_color="positive", face_color_cycle=["red", "lime"],
                                     border_color="white")
        pts.feature_defaults["positive"] = True
        self.viewer.layers.selection.active = self.image
        self.viewer.reset_view()

    prompts = _Layer(PROMPTS)
    box = _Layer(BOX)
    preview = _Layer(PREVIEW)
    objects = _Layer(OBJECTS)
    boxes = _Layer(BOXES)
    manual = _Layer(MANUAL)

    def show_preview(self, result) -> None:
        layer = self.preview
        if layer is None:
            return
        layer.data = (result.mask.astype(np.uint8) if result is not None else np.zeros_like(layer.data))

    def show_objects(self, objects, shape) -> None:
        """Draw every accepted object: its mask (label value = object id), its tight box and its label text.
        Only what changed is rebuilt: masks are decoded once, and boxes already drawn stay (napari rebuilds a
        rectangle's meshes when it is added, the slow part with hundreds of objects)."""
        labels = np.zeros(shape, np.int32)
        drawn, texts, colours = [], [], []
        for ob in objects:
            crop = self._crop(ob)
            if crop is not None:
                (r, c), m = crop
                labels[r : r + m.shape[0], c : c + m.shape[1]][m] = ob.id
            drawn.append((ob.id, tuple(ob.bbox)))
            texts.append(object_text(ob))
            colours.append(STATUS_COLOURS.get(ob.label_status, "white"))
        self.objects.data = labels
        boxes = self.boxes
        if drawn[: len(self._drawn)] != self._drawn or len(boxes.data) != len(self._drawn) or not drawn:
            boxes.data = []
            self._drawn = []
        new = drawn[len(self._drawn) :]
        if new:
            boxes.add_rectangles([rect(*b) for _, b in new], edge_color=colours[len(self._drawn) :])
        self._drawn = drawn
        if drawn:
            boxes.edge_color = colours
            boxes.features = {"text": np.array(texts, dtype=object)}
            boxes.text.refresh(boxes.features)

    def _crop(self, ob):
        """((row, col), mask inside the object's tight box), decoded once per object and mask."""
        counts = ob.rle["counts"]
        hit = self._crops.get(ob.id)
        if hit is None or hit[0] != counts:
            mask = ob.mask
            box = tight_bbox(mask)  # the mask's own box (an imported object's stored box may be looser)
            if box is None:
                hit = (counts, None)
            else:
                x, y, w, h = box
                hit = (counts, ((y, x), mask[y : y + h, x : x + w].copy()))
            self._crops[ob.id] = hit
        return hit[1]
