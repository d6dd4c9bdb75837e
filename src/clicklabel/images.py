"""Reading images of every kind users have and normalising them to the HxWx3 uint8 RGB that SAM expects.

Normalisation (documented for users):
- HxW grayscale is repeated to three channels; HxWx4 drops alpha; HxWx2 (gray + alpha) keeps gray.
- uint8 is used as is. Other integer types (uint16, int32, ...) are scaled linearly from the image's own
  min..max to 0..255, so 12-bit microscopy and 16-bit PNGs use the whole range.
- Float images in [0, 1] are multiplied by 255; other float ranges are scaled from min..max like integers.
- A constant image becomes all zeros. NaN and inf are treated as 0.
"""

from __future__ import annotations

import contextlib
import hashlib
from pathlib import Path

import numpy as np

from .errors import ImageError, ImageTooLarge

# One limit for every image clicklabel reads (add, segment, label, propose, precompute, the widget): Pillow's own
# bomb check (~179 Mpx) is raised to it, and a larger image is refused from its header, before it is decoded.
MAX_PIXELS = 400_000_000
ORIENTATION = 0x0112  # the EXIF orientation tag: 5-8 swap width and height when the image is displayed
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"}


def to_rgb8(image: np.ndarray) -> np.ndarray:
    """Return an HxWx3 uint8 RGB copy of ``image`` (see the module docstring for the normalisation)."""
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    elif arr.ndim == 3 and arr.shape[2] == 2:
        arr = np.stack([arr[:, :, 0]] * 3, axis=-1)
    elif arr.ndim == 3 and arr.shape[2] == 4:
        arr = arr[:, :, :3]
    elif not (arr.ndim == 3 and arr.shape[2] == 3):
        raise ImageError(f"image has shape {arr.shape}; expected HxW, HxWx3 or HxWx4")
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageError(f"image is empty (shape {arr.shape})")
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ImageError(f"image has unsupported pixel type {arr.dtype}")
    arr = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(arr.min()), float(arr.max())
    if np.issubdtype(np.asarray(image).dtype, np.floating) and lo >= 0.0 and hi <= 1.0:
        lo, hi = 0.0, 1.0
    if hi <= lo:
        return np.zeros(arr.shape, dtype=np.uint8)
    scaled = (arr - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def load_image(path: str | Path | bytes) -> np.ndarray:
    """Read an image file (or an image file's bytes: an upload) into HxWx3 uint8 RGB as displayed (EXIF
    orientation applied); raises ImageError with one clear line on any problem."""
    from PIL import Image

    with _opened(path) as (im, p):
        try:
            im.load()
            arr = _pil_to_array(im)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
            raise ImageError(f"cannot read image {p}: {exc}") from None
        except MemoryError:
            raise ImageError(f"not enough memory to read image {p}") from None
    return to_rgb8(arr)


def image_size(path: str | Path) -> tuple[int, int]:
    """(height, width) of an image file as displayed (EXIF orientation applied), from its header alone."""
    with _opened(path) as (im, _):
        w, h = im.size
        return (w, h) if exif_orientation(im) in (5, 6, 7, 8) else (h, w)


def exif_orientation(im) -> int:
    """The EXIF orientation of an open PIL image (1 = as stored; 1 also when the EXIF data is unreadable)."""
    try:
        value = int(im.getexif().get(ORIENTATION, 1))
    except Exception:  # noqa: BLE001 - malformed EXIF blocks raise anything; the image is then shown as stored
        return 1
    return value if 1 <= value <= 8 else 1


@contextlib.contextmanager
def _opened(path: str | Path | bytes):
    """``(PIL image, path)`` with only its header read, refused in one line if it is missing, not an image, has
    no pixels or is larger than MAX_PIXELS. Bytes are an image file's content (named "the uploaded image")."""
    import io

    from PIL import Image, UnidentifiedImageError

    if isinstance(path, (bytes, bytearray)):
        p, source = "the uploaded image", io.BytesIO(path)
    else:
        p = source = Path(path)
        if not p.exists():
            raise ImageError(f"image not found: {p}")
        if p.is_dir():
            raise ImageError(f"expected an image file, got a folder: {p}")
    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < MAX_PIXELS:
        Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # set once, never lowered: not swapped per call (threads read too)
    try:
        im = Image.open(source)
    except UnidentifiedImageError:
        raise ImageError(f"not an image (or a format we cannot read): {p}") from None
    except Image.DecompressionBombError:
        raise ImageTooLarge(f"image is larger than {MAX_PIXELS:,} pixels: {p}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"cannot read image {p}: {exc}") from None
    with im:
        w, h = im.size
        if w < 1 or h < 1:
            raise ImageError(f"image has no pixels ({w}x{h}): {p}")
        if w * h > MAX_PIXELS:
            raise ImageTooLarge(f"image is larger than {MAX_PIXELS:,} pixels ({w}x{h}): {p}")
        yield im, p


def _pil_to_array(im) -> np.ndarray:
    """Decode a PIL image without losing bit depth (16-bit PNG/TIFF stay 16-bit until ``to_rgb8``)."""
    from PIL import ImageOps

    if exif_orientation(im) != 1:  # exif_transpose copies an upright image whole, holding the GIL (precompute)
        im = ImageOps.exif_transpose(im)
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return np.array(im)
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif im.mode in ("CMYK", "YCbCr", "LAB", "HSV", "1"):
        im = im.convert("RGB")
    elif im.mode == "LA":
        im = im.convert("L")
    return np.array(im)


def image_hash(image: np.ndarray) -> str:
    """Content hash of a normalised image (shape + pixels), the key of the embedding cache."""
    arr = np.ascontiguousarray(image)
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{arr.shape}|{arr.dtype}".encode())
    h.update(memoryview(arr).cast("B"))
    return h.hexdigest()


def file_hash(path: str | Path) -> str:
    """Content hash of a file's bytes (for the project store's image table)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    p = Path(folder)
    if not p.is_dir():
        raise ImageError(f"not a folder: {p}")
    return sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
