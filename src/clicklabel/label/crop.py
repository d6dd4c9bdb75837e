"""Masked crops for the labelling model: the object's tight box plus a margin of context, the background dimmed
or greyed, resized to the model's cheapest detail level, encoded as a data URL."""

from __future__ import annotations

import base64
import hashlib
import io
from dataclasses import dataclass

import numpy as np

from ..errors import LabelError
from ..images import to_rgb8
from ..masks import tight_bbox

MODES = ("mask", "box", "both")


@dataclass(frozen=True)
class CropSettings:
    """How crops are made: ``mode`` mask = dim outside the mask, box = draw the box only, both = dim and draw."""

    mode: str = "mask"
    margin: float = 0.15  # context around the tight box, as a share of the box's size
    min_margin_px: int = 8
    max_side: int = 512  # the long side fits one 512 px tile: 'detail: low' costs the least
    dim: float = 0.35  # brightness kept outside the mask
    grey: bool = True  # also drop colour outside the mask
    fmt: str = "png"  # png or jpeg

    def __post_init__(self):
        if self.mode not in MODES:
            raise LabelError(f"crop mode {self.mode!r}; use one of {', '.join(MODES)}")
        if self.fmt not in ("png", "jpeg"):
            raise LabelError(f"crop format {self.fmt!r}; use png or jpeg")


def crop_box(bbox, shape, settings: CropSettings) -> tuple[int, int, int, int]:
    """The crop window (x0, y0, x1, y1) around an XYWH box, clipped to the image."""
    x, y, w, h = bbox
    mx = max(settings.min_margin_px, int(round(settings.margin * w)))
    my = max(settings.min_margin_px, int(round(settings.margin * h)))
    H, W = shape[:2]
    return max(0, x - mx), max(0, y - my), min(W, x + w + mx), min(H, y + h + my)


def pixel_box(box, shape) -> tuple[int, int, int, int] | None:
    """An XYWH box of any numbers as whole pixels inside an image of ``shape`` (the pixels it touches), or None
    if it covers none."""
    x, y, w, h = (float(v) for v in box)
    x0, y0 = max(0, int(np.floor(x))), max(0, int(np.floor(y)))
    x1, y1 = min(shape[1], int(np.ceil(x + w))), min(shape[0], int(np.ceil(y + h)))
    return (x0, y0, x1 - x0, y1 - y0) if x1 > x0 and y1 > y0 else None


def object_crop(image: np.ndarray, ob, settings: CropSettings = CropSettings()) -> np.ndarray:
    """The crop of a stored object: its mask's, or for a box-only object (no mask yet) its box's."""
    if ob.has_mask:
        return render_crop(image, ob.mask, settings)
    return render_crop(image, None, settings, box=ob.bbox)


def render_crop(image: np.ndarray, mask: np.ndarray | None, settings: CropSettings = CropSettings(),
                box=None) -> np.ndarray:
    """The crop as HxWx3 uint8 (works on grayscale, RGBA and 16-bit images through ``to_rgb8``). Without a
    ``mask``, the crop of the XYWH ``box`` with the box drawn (mode 'box', whatever ``settings`` says)."""
    import cv2

    img = to_rgb8(image)
    if mask is None:
        bbox = pixel_box(box, img.shape) if box is not None else None
        if bbox is None:
            raise LabelError("the box is empty or outside the image: nothing to label")
        m = None
        mode = "box"
    else:
        m = np.asarray(mask, dtype=bool)
        if m.shape != img.shape[:2]:
            raise LabelError(f"mask {m.shape} does not match image {img.shape[:2]}")
        bbox = tight_bbox(m)
        if bbox is None:
            raise LabelError("the mask is empty: nothing to label")
        mode = settings.mode
    x0, y0, x1, y1 = crop_box(bbox, img.shape, settings)
    crop = img[y0:y1, x0:x1].astype(np.float32)
    if mode in ("mask", "both"):
        cm = m[y0:y1, x0:x1]
        bg = crop.mean(axis=2, keepdims=True).repeat(3, axis=2) if settings.grey else crop
        crop = np.where(cm[..., None], crop, bg * settings.dim)
    out = np.clip(crop, 0, 255).astype(np.uint8)
    if mode in ("box", "both"):
        bx, by, bw, bh = bbox
        t = max(1, round(max(out.shape[:2]) / 200))
        cv2.rectangle(out, (bx - x0, by - y0), (bx - x0 + bw - 1, by - y0 + bh - 1), (255, 0, 0), t)
    long_side = max(out.shape[:2])
    if long_side > settings.max_side:
        s = settings.max_side / long_side
        size = (max(1, round(out.shape[1] * s)), max(1, round(out.shape[0] * s)))
        out = cv2.resize(out, size, interpolation=cv2.INTER_AREA)
    return out


def encode_image(crop: np.ndarray, fmt: str = "png") -> bytes:
    """PNG or JPEG bytes of an RGB crop."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(crop).save(buf, format="PNG" if fmt == "png" else "JPEG", quality=90)
    return buf.getvalue()


def data_url(data: bytes, fmt: str = "png") -> str:
    return f"data:image/{fmt};base64," + base64.b64encode(data).decode("ascii")


def crop_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
