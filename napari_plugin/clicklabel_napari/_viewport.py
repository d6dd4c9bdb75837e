"""The overlay layers of a large image, painted for the visible region only.

An image longer than ``large_images.PYRAMID_ABOVE`` is shown as a pyramid; its preview, objects and proposals
layers do not hold the whole image (a 20000 x 20000 image's objects would be 1.6 GB of int32): each holds the
visible region plus a margin, every ``step``-th pixel (about the screen's resolution), placed on the image by the
layer's scale and translate. When the camera has moved past the margin or zoomed by a power of two, the region is
painted again (``REPAINT_MS`` after the camera rests). A small image's layers are the image's size (``Frame.whole``):
its masks are painted as they are, at no extra cost."""

from __future__ import annotations

import numpy as np

from clicklabel.large_images import view_box

REPAINT_MS = 100  # the camera rests this long before the region is painted again
MARGIN = 0.25  # the region painted around the visible one, in parts of its size on each side
POINT_PX, BOX_PX = 12.0, 2.0  # a large image's prompt points and box edges on the screen (their sizes follow the step)


def _span(start: int, length: int, origin: int, count: int, step: int) -> tuple[int, int, int]:
    """Samples k (origin + k * step) of ``count`` that fall in [start, start + length): (first k, last k + 1, the
    first sample's offset from ``start``)."""
    k0 = max(0, -(-(start - origin) // step))
    k1 = min(count, -(-(start + length - origin) // step))
    return k0, k1, origin + k0 * step - start


class Frame:
    """Where an overlay layer's pixels lie on the image: the region (x0, y0, x1, y1), every ``step``-th pixel."""

    def __init__(self, image_shape, box=None, step: int = 1):
        h, w = int(image_shape[0]), int(image_shape[1])
        self.image_shape = (h, w)
        self.box = (0, 0, w, h) if box is None else tuple(int(v) for v in box)
        self.step = int(step)
        x0, y0, x1, y1 = self.box
        self.shape = (-(-(y1 - y0) // self.step), -(-(x1 - x0) // self.step))
        self.whole = self.box == (0, 0, w, h) and self.step == 1

    @property
    def scale(self) -> tuple[float, float]:
        return float(self.step), float(self.step)

    @property
    def translate(self) -> tuple[float, float]:
        """A layer pixel stands for ``step`` image pixels from its sample on: centred on them."""
        x0, y0 = self.box[:2]
        half = (self.step - 1) / 2
        return y0 + half, x0 + half

    def holds(self, box, step: int) -> bool:
        """Whether the visible region ``box`` at ``step`` is painted in this frame."""
        x0, y0, x1, y1 = self.box
        return step == self.step and box[0] >= x0 and box[1] >= y0 and box[2] <= x1 and box[3] <= y1

    def fit(self, crop):
        """A mask crop ((row, col), mask) of the image in this frame's pixels (None: outside it)."""
        if crop is None or self.whole:
            return crop
        (r, c), m = crop
        x0, y0 = self.box[:2]
        k0, k1, dr = _span(r, m.shape[0], y0, self.shape[0], self.step)
        j0, j1, dc = _span(c, m.shape[1], x0, self.shape[1], self.step)
        if k1 <= k0 or j1 <= j0:
            return None
        st = self.step
        part = m[dr : dr + (k1 - k0 - 1) * st + 1 : st, dc : dc + (j1 - j0 - 1) * st + 1 : st]
        return (k0, j0), np.ascontiguousarray(part)


def camera(viewer):
    """The viewer's camera (``viewer.scene.camera`` since napari 0.9, where ``viewer.camera`` is deprecated)."""
    scene = getattr(viewer, "scene", None)
    return scene.camera if scene is not None and hasattr(scene, "camera") else viewer.camera


def place(layer, frame: Frame | None) -> None:
    """Put an overlay layer's pixels where ``frame`` says (None: one layer pixel per image pixel)."""
    scale, translate = ((1.0, 1.0), (0.0, 0.0)) if frame is None else (frame.scale, frame.translate)
    if tuple(layer.scale) != scale:
        layer.scale = scale
    if tuple(layer.translate) != translate:
        layer.translate = translate


def _step(zoom: float) -> int:
    """The power of two nearest the image pixels per screen pixel (at least 1): a layer pixel is 0.7-1.4 screen
    pixels, so a layer holds about 1.5 x 1.5 screens' pixels with its margin, whatever the zoom."""
    return 1 << max(0, int(np.round(np.log2(1 / zoom)))) if zoom < 1 else 1


def wanted_frame(viewer, image_shape) -> tuple[Frame, tuple[int, int, int, int]]:
    """The frame for the camera's view now, and the visible region: that region with ``MARGIN`` around it, every
    ``_step(zoom)``-th pixel."""
    cam = camera(viewer)
    zoom = max(float(cam.zoom), 1e-9)
    cy, cx = np.asarray(cam.center, dtype=float)[-2:]
    ch, cw = (float(v) for v in viewer.canvas.size)
    half_h, half_w = ch / zoom / 2, cw / zoom / 2
    step = _step(zoom)
    seen = view_box(((cy - half_h, cx - half_w), (cy + half_h, cx + half_w)), image_shape)
    mh, mw = (seen[3] - seen[1]) * MARGIN, (seen[2] - seen[0]) * MARGIN
    painted = view_box(((seen[1] - mh, seen[0] - mw), (seen[3] + mh, seen[2] + mw)), image_shape)
    return Frame(image_shape, painted, step), seen


class Viewport:
    """Keeps a large image's overlay layers painted where the camera looks: ``layers.reframe(frame)`` after the
    camera rests outside the painted region (or at another step). Inactive for small images."""

    def __init__(self, viewer, reframe):
        from qtpy.QtCore import QTimer

        self.viewer = viewer
        self._reframe = reframe
        self.image_shape: tuple[int, int] | None = None  # the large image's, while one is shown
        self.frame: Frame | None = None
        self.repaints = 0  # regions painted (tests and the status look at it)
        self._timer = QTimer()
        self._timer.setSingleShot(True)
        self._timer.setInterval(REPAINT_MS)
        self._timer.timeout.connect(self.follow)
        camera(viewer).events.center.connect(self._moved)
        camera(viewer).events.zoom.connect(self._moved)
        viewer.canvas.events.size.connect(self._moved)

    @property
    def active(self) -> bool:
        return self.image_shape is not None

    def start(self, image_shape, reset: bool = False) -> Frame:
        """A large image is shown: the frame for the view now, or (``reset``) for the whole image as napari's
        ``reset_view`` will show it (``follow`` afterwards paints again if its fit differs)."""
        h, w = self.image_shape = (int(image_shape[0]), int(image_shape[1]))
        if reset:
            ch, cw = (float(v) for v in self.viewer.canvas.size)
            self.frame = Frame(self.image_shape, None, _step(0.95 * min(ch / h, cw / w)))
        else:
            self.frame, _ = wanted_frame(self.viewer, self.image_shape)
        return self.frame

    def stop(self) -> None:
        """A small image is shown: its layers are the image's size."""
        self.image_shape, self.frame = None, None
        self._timer.stop()

    def _moved(self, event=None) -> None:
        if self.active:
            self._timer.start()  # (again: the timer runs from the camera's last move)

    def follow(self, force: bool = False) -> bool:
        """Paint the region the camera shows now, unless it is painted already; whether it painted."""
        if not self.active:
            return False
        frame, seen = wanted_frame(self.viewer, self.image_shape)
        if not force and self.frame is not None and self.frame.holds(seen, frame.step):
            return False
        self.frame = frame
        self.repaints += 1
        self._reframe(frame)
        return True
