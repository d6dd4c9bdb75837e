"""COCO readers: the one file reader (``read_coco_file``), the one safe image lookup (``find_image``, never a path
outside the image folders), and the instances of a file as masks for viewers and the NoC benchmark."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CocoError
from ..masks import decode_rle, tight_bbox
from . import validate


def read_coco_file(path: str | Path) -> dict:
    """A COCO file's document, with its top-level structure checked (one-line CocoError otherwise)."""
    p = Path(path)
    if p.is_dir():
        raise CocoError(f"{p} is a folder; give the COCO .json file")
    try:
        doc = json.loads(p.read_bytes().decode("utf-8-sig"))
    except FileNotFoundError:
        raise CocoError(f"COCO file not found: {p}") from None
    except OSError as exc:
        raise CocoError(f"cannot read {p}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise CocoError(f"{p} is not UTF-8 text (byte {exc.start}); a COCO file is JSON in UTF-8") from None
    except json.JSONDecodeError as exc:
        raise CocoError(f"{p} is not valid JSON ({exc})") from None
    except RecursionError:
        raise CocoError(f"{p} is nested too deeply to be a COCO file") from None
    except MemoryError:
        raise CocoError(f"{p} is too large to read into memory") from None
    if not isinstance(doc, dict):
        raise CocoError(f"{p} is not a COCO file (its top level is not an object)")
    for key in ("images", "annotations"):
        if not isinstance(doc.get(key), list):
            raise CocoError(f"{p}: missing or malformed top-level key {key!r}")
    if not isinstance(doc.get("categories", []), list):
        raise CocoError(f"{p}: malformed top-level key 'categories'")
    return doc


def safe_image_path(images_dir: Path, file_name: str) -> Path | None:
    """The image's path inside ``images_dir``, or None if ``file_name`` points outside it."""
    if not file_name or "\0" in file_name or os.path.isabs(file_name) or file_name.startswith(("/", "\\")) \
            or ":" in file_name[:3]:
        return None
    p = (images_dir / file_name).resolve()
    try:
        p.relative_to(images_dir.resolve())
    except ValueError:
        return None
    return p


def find_image(folders, file_name: str) -> Path | None:
    """The image ``file_name`` names, looked for inside each folder in turn (then by its base name alone, since
    exports often keep a sub-folder that copies drop); never a path outside the folders. None if not found."""
    for folder in map(Path, folders):
        for name in (str(file_name), Path(str(file_name)).name):
            p = safe_image_path(folder, name)
            try:
                if p is not None and p.is_file():
                    return p
            except OSError:  # a name too long for the file system
                continue
    return None


@dataclass
class Instance:
    """One annotation of a COCO file as a mask, with its box and category name."""

    annotation_id: object
    mask: np.ndarray
    bbox: tuple[float, float, float, float]
    category: str
    iscrowd: bool


def _instances(doc: dict, im: dict, h: int, w: int) -> list[Instance]:
    names = {c.get("id"): c.get("name", "?") for c in doc.get("categories", []) if isinstance(c, dict)}
    out = []
    for a in doc["annotations"]:
        if not isinstance(a, dict) or a.get("image_id") != im.get("id"):
            continue
        try:
            rle = validate.shape(a.get("segmentation"), h, w).rle
            if rle is None:  # box-only: no mask to show or to measure against
                continue
            mask = decode_rle(rle)
            bbox = validate.bbox(a["bbox"], h, w) if "bbox" in a else None
        except (CocoError, TypeError):
            continue
        box = bbox or tight_bbox(mask) or (0, 0, 0, 0)
        out.append(Instance(a.get("id"), mask, tuple(float(v) for v in box), str(names.get(a.get("category_id"), "?")),
                            bool(a.get("iscrowd"))))
    return out


def _size(path: Path, im) -> tuple[int, int]:
    if not isinstance(im, dict):
        raise CocoError(f"{path}: an image entry is a {type(im).__name__}, not an object")
    try:
        return validate.image_size(im)
    except CocoError as exc:
        raise CocoError(f"{path}: image {im.get('id')!r}: {exc}") from None


def image_instances(path: str | Path, image_index: int = 0) -> tuple[Path | None, tuple[int, int], list[Instance]]:
    """One image of a COCO file: its file (beside the COCO file or in images/, None if not found), its (H, W) and
    its readable annotations with masks (bad and box-only ones are left out)."""
    path = Path(path)
    doc = read_coco_file(path)
    if not 0 <= image_index < len(doc["images"]):
        raise CocoError(f"{path} has no image {image_index + 1}")
    im = doc["images"][image_index]
    h, w = _size(path, im)
    name = im.get("file_name")
    image = find_image([path.parent, path.parent / "images"], name) if isinstance(name, str) else None
    return image, (h, w), _instances(doc, im, h, w)


def iter_instances(path: str | Path):
    """(image file, Instance) for every readable annotation of a COCO file whose image is found beside the file
    or in images/ (the NoC benchmark's reader)."""
    path = Path(path)
    doc = read_coco_file(path)
    for im in doc["images"]:
        name = im.get("file_name") if isinstance(im, dict) else None
        image = find_image([path.parent, path.parent / "images"], name) if isinstance(name, str) else None
        if image is None:
            continue
        h, w = _size(path, im)
        for inst in _instances(doc, im, h, w):
            yield image, inst
