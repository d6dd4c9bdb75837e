"""The napari layers the widget owns, and how the core's state is drawn on them."""

from __future__ import annotations

import numpy as np

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
    """What a box says: the label and its confidence, or the label's state."""
    if ob.label_status == "pending":
        return f"#{ob.id} labelling..."
    if ob.label_status == "failed":
        return f"#{ob.id} label failed"
    conf = f" {ob.label_confidence:.2f}" if ob.label_confidence is not None and ob.label_status == "done" else ""
    return f"#{ob.id} {ob.label}{conf}"


class LayerSet:
    """Creates the widget's layers on first use and keeps them in the viewer."""

    def __init__(self, viewer):
        self.viewer = viewer
        self.image = None

    def _get(self, name):
        return self.viewer.layers[name] if name in self.viewer.layers else None

    def setup(self, image: np.ndarray, name: str) -> None:
        """Show a new image and (re)create empty prompt, preview and object layers of its size."""
        h, w = image.shape[:2]
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

    @property
    def prompts(self):
        return self._get(PROMPTS)

    @property
    def box(self):
        return self._get(BOX)

    @property
    def preview(self):
        return self._get(PREVIEW)

    @property
    def objects(self):
        return self._get(OBJECTS)

    @property
    def boxes(self):
        return self._get(BOXES)

    @property
    def manual(self):
        return self._get(MANUAL)

    def show_preview(self, result) -> None:
        layer = self.preview
        if layer is None:
            return
        layer.data = (result.mask.astype(np.uint8) if result is not None else np.zeros_like(layer.data))

    def show_objects(self, objects, shape) -> None:
        """Draw every accepted object: its mask (label value = object id), its tight box and its label text."""
        labels = np.zeros(shape, np.int32)
        rects, texts, colours = [], [], []
        for ob in objects:
            labels[ob.mask] = ob.id
            rects.append(rect(*ob.bbox))
            texts.append(object_text(ob))
            colours.append(STATUS_COLOURS.get(ob.label_status, "white"))
        self.objects.data = labels
        boxes = self.boxes
        boxes.data = []
        if rects:
            boxes.add_rectangles(rects, edge_color=colours)
            boxes.features = {"text": np.array(texts, dtype=object)}
            boxes.text.refresh(boxes.features)
