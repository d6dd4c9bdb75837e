"""The YOLO segmentation export (the format ultralytics trains on): a folder with ``images/`` (copies of the
project's images), ``labels/`` (one text file per image, one line per object: the class index and the outline's
points, normalised to 0..1) and ``data.yaml`` (the folder and the class names).

Class indices are the project's categories in id order, every category included (so indices do not shift when a
category has no objects yet); unlabelled objects get a last class 'unlabelled'. Outlines are clicklabel's exact
polygons (the corners a quarter pixel inside the mask, which readers that truncate coordinates, as ultralytics
does, fill back to the same pixels); the parts of a multi-part object are joined into one outline by zero-width
bridges, as ultralytics' own COCO converter does, so each object stays one instance; a hole cannot be held by
one outline and is filled. A box-only object is written as its box's outline."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..files import atomic_write, ensure_folder, write_text
from ..masks import _boundary_loops, _inset, _signed_area, mask_to_polygons
from .carry import UNLABELLED
from .copies import copy_images

DECIMALS = 6


@dataclass
class YoloReport:
    images: int = 0
    instances: int = 0
    classes: int = 0
    joined: int = 0  # multi-part objects whose parts were bridged into one outline
    filled: int = 0  # objects with a hole that one outline cannot hold
    boxes: int = 0  # box-only objects, written as their box
    turned: int = 0  # images written upright (auto_orient)


def outline(ob) -> tuple[np.ndarray, bool, bool]:
    """One object's outline as (N, 2) pixel coordinates, and whether parts were joined / a hole filled."""
    if not ob.has_mask:
        x, y, w, h = ob.bbox
        return np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], float), False, False
    polys = mask_to_polygons(ob.mask)
    filled = polys is None
    if polys is None:  # holes: the outer outlines alone
        polys = [_inset(lp) for lp in _boundary_loops(ob.mask) if _signed_area(lp) < 0]
    parts = [np.asarray(p, float).reshape(-1, 2) for p in polys]
    parts.sort(key=lambda p: (p[:, 1].min(), p[:, 0].min()))
    out = parts[0]
    for part in parts[1:]:
        d = ((out[:, None, :] - part[None, :, :]) ** 2).sum(-1)
        i, j = np.unravel_index(int(d.argmin()), d.shape)
        turn = np.roll(part, -j, axis=0)
        out = np.concatenate([out[: i + 1], turn, turn[:1], out[i:]])
    return out, len(parts) > 1, filled


def _yaml_text(folder: Path, names: list[str]) -> str:
    """data.yaml: JSON strings are YAML scalars, so any class name is written safely."""
    lines = [f"path: {json.dumps(str(folder.resolve()))}", "train: images", "val: images", f"nc: {len(names)}",
             "names:"]
    lines += [f"  {i}: {json.dumps(n)}" for i, n in enumerate(names)]
    return "\n".join(lines) + "\n"


def export_yolo(store, folder: str | Path, auto_orient: bool = False, progress=None) -> YoloReport:
    """Write the project's accepted objects as a YOLO segmentation data set in ``folder`` (created);
    ``progress(done, total)`` per image."""
    folder = ensure_folder(folder)
    rep = YoloReport()
    cats = store.categories()
    index = {cid: i for i, (cid, _, _) in enumerate(cats)}
    names = [name for _, name, _ in cats]
    objects = store.objects(states=("accepted",))
    if any(ob.category_id is None for ob in objects):
        names.append(UNLABELLED)
    by_image: dict[int, list] = {}
    for ob in objects:
        by_image.setdefault(ob.image_id, []).append(ob)
    copied, rep.turned = copy_images(store, folder / "images", upright=auto_orient, progress=progress)
    for im in store.images():
        lines = []
        for ob in by_image.get(im.id, []):
            xy, joined, filled = outline(ob)
            rep.joined += joined
            rep.filled += filled
            rep.boxes += not ob.has_mask
            xy = np.clip(xy / (im.width, im.height), 0.0, 1.0)
            cls = index[ob.category_id] if ob.category_id is not None else len(names) - 1
            lines.append(" ".join([str(cls), *(f"{v:.{DECIMALS}f}" for v in xy.ravel())]))
        label = (folder / "labels" / copied[im.id]).with_suffix(".txt")
        with atomic_write(label, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + ("\n" if lines else ""))
        rep.instances += len(lines)
    rep.images = len(copied)
    rep.classes = len(names)
    write_text(folder / "data.yaml", _yaml_text(folder, names))
    return rep

