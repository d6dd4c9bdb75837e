"""Copies of a project's images beside an export: as they are, or upright (``auto_orient``) for readers that ignore
the EXIF orientation (torchvision's ``CocoDetection``, datumaro): clicklabel's masks and sizes are always of the
image as displayed, so a reader that shows the stored pixels would see them turned."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ..errors import ImageError
from ..files import atomic_write
from ..images import exif_orientation

UPRIGHT_QUALITY = 95  # JPEG quality of a re-encoded upright copy (a file already upright is copied byte for byte)


def copy_name(store, image) -> str:
    """The image's name inside an export folder: its path in the project (a path that leaves the project's root
    becomes ``<id>_<file name>``)."""
    rel = Path(image.path)
    if rel.is_absolute() or ".." in rel.parts:
        return f"{image.id}_{rel.name}"
    return rel.as_posix()


def copy_image(src: Path, dst: Path, upright: bool = False) -> bool:
    """Copy ``src`` to ``dst`` atomically; with ``upright``, an image with an EXIF rotation is written turned as
    displayed, without the tag. Returns whether it was turned."""
    from PIL import Image, ImageOps

    if upright:
        try:
            with Image.open(src) as im:
                if exif_orientation(im) != 1:
                    fmt = im.format or "PNG"
                    turned = ImageOps.exif_transpose(im)
                    with atomic_write(dst) as f:
                        kw = {"quality": UPRIGHT_QUALITY} if fmt == "JPEG" else {}
                        turned.save(f, format=fmt, **kw)
                    return True
        except OSError as exc:
            raise ImageError(f"cannot read image {src}: {exc}") from None
    if dst.exists() and os.path.samefile(src, dst):
        return False
    with open(src, "rb") as fin, atomic_write(dst) as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)
    return False


def copy_images(store, folder: str | Path, upright: bool = False, progress=None) -> tuple[dict[int, str], int]:
    """Every image of ``store`` copied into ``folder`` (sub-folders kept): (image id -> its name there, how many
    were turned upright). ``progress(done, total)`` after each."""
    folder = Path(folder)
    names = {}
    turned = 0
    images = store.images()
    for n, im in enumerate(images, 1):
        name = copy_name(store, im)
        try:
            turned += copy_image(store.image_path(im), folder / name, upright)
        except FileNotFoundError:
            raise ImageError(f"image {store.image_path(im)} is missing; put it back or remove it from the "
                             "project") from None
        names[im.id] = name
        if progress is not None:
            progress(n, len(images))
    return names, turned
