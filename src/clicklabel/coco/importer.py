"""Importing a COCO file into a project. Every category, image and annotation is checked first (``validate``:
types, finite coordinates, sizes against the image files themselves, RLE counts), each bad one refused with a
reason, and only then is the rest written, in one transaction. An annotation with a box and no mask becomes a
box-only object (``clicklabel refine`` gives it SAM's mask); polygons, RLE and boxes mix in one file. Duplicate
annotation ids are renumbered (and said so), an image id used by two images places none of its annotations,
categories match the project's by name, and importing a file again skips what is already there unless asked to
merge or replace. Nothing the file says is lost: every category and image id is kept (``carry`` keeps the keys
clicklabel has no column for, and reads back clicklabel's own block)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CocoError, ImageError
from ..images import image_size
from ..masks import rle_area, rle_bbox
from ..project import Store
from . import carry, validate
from .read import find_image, read_coco_file, safe_image_path

MODES = ("skip", "merge", "replace")  # what to do with annotations the project already holds from an import


@dataclass
class ImportReport:
    images: int = 0
    annotations: int = 0
    boxes: int = 0  # of the annotations, those without a mask (box-only: `clicklabel refine` gives them masks)
    skipped: int = 0  # already in the project (mode 'skip')
    replaced: int = 0  # objects of an earlier import that the file's annotations replaced (mode 'replace')
    notes: list[str] = field(default_factory=list)  # changes the user should know of: renumbered ids, ...
    problems: list[str] = field(default_factory=list)  # items refused, with the reason


@dataclass
class _Image:
    path: Path
    height: int
    width: int
    source_id: int | None = None  # the file's id for it, kept in the project when free
    extra: dict | None = None  # its other keys (and the file's own file_name if it was found under another)


@dataclass
class _Annotation:
    source_id: int | None
    image: _Image
    category: object  # the file's category id
    shape: validate.Shape
    bbox: tuple | None
    iscrowd: int
    extra: dict | None = None  # the annotation's other keys (CVAT's attributes, ...)
    ours: dict = field(default_factory=dict)  # our block, read back (``carry.read_ours``)
    given_bbox: tuple | None = None  # the file's box where it disagreed with the mask (the mask's is used)
    review: str | None = None  # why a person should look at it


def _which(entry, n: int) -> str:
    """How a problem names an entry: its id if it has a usable one, else its place in the list."""
    v = entry.get("id") if isinstance(entry, dict) else None
    return str(v) if isinstance(v, (int, str)) and not isinstance(v, bool) and len(str(v)) <= 40 else f"#{n}"


def _id_hint(v, known) -> str:
    """Why an id is not found when the same id is there as a number or as text (``"1"`` is not ``1``)."""
    other = str(v) if isinstance(v, int) else int(v) if isinstance(v, str) and v.strip().isdigit() else None
    if other is None or other not in known:
        return ""
    kind = "text" if isinstance(v, str) else "a number"
    return f" (it is {kind}; the file has {other!r}, the same id as {'a number' if isinstance(v, str) else 'text'})"


def _entry(entry) -> dict:
    if not isinstance(entry, dict):
        raise CocoError(f"is a {type(entry).__name__}, not an object")
    return entry


def _categories(doc: dict, rep: ImportReport) -> dict:
    """The file's category id -> (name, supercategory, other keys), or None for an id that names two categories."""
    cats: dict = {}
    for n, c in enumerate(doc["categories"], 1):
        try:
            cid = validate.as_id(_entry(c).get("id"), "id")
            name = validate.as_name(c.get("name"), "name")
            sup = c.get("supercategory")
            sup = validate.as_name(sup, "supercategory") if sup not in (None, "") else None
        except CocoError as exc:
            rep.problems.append(f"category {_which(c, n)}: {exc}")
            continue
        if cid in cats and (cats[cid] is None or cats[cid][0] != name):
            if cats[cid] is not None:
                rep.problems.append(f"category id {cid} names both {cats[cid][0]!r} and {name!r}; its annotations "
                                    "are refused")
            cats[cid] = None
            continue
        more = carry.extra(c, carry.CATEGORY_KEYS) or {}
        if c.get("supercategory") == "":  # datumaro and CVAT write an empty one: written back as it was
            more["supercategory"] = ""
        cats.setdefault(cid, (name, sup, more or None))
    return cats


def _check_file(path: Path, h: int, w: int) -> None:
    try:
        fh, fw = image_size(path)
    except ImageError as exc:
        raise CocoError(str(exc)) from None
    if (fh, fw) == (h, w):
        return
    if (fh, fw) == (w, h):
        raise CocoError(f"declared {w}x{h} is its size before EXIF rotation; clicklabel uses images as displayed, "
                        f"{fw}x{fh}: correct width and height")
    raise CocoError(f"declared {w}x{h}, but the file is {fw}x{fh} (as displayed)")


def _locate(images_dir: Path, name: str) -> Path:
    """The file ``name`` names inside ``images_dir``. An absolute name (Label Studio's converter writes them) is
    looked for by its trailing parts inside the folder (``/data/upload/1/cats/a.jpg``: ``data/upload/1/cats/a.jpg``,
    ..., ``cats/a.jpg``, ``a.jpg``); nothing outside the folder is ever read."""
    parts = [q for q in re.split(r"[\\/]+", name) if q and q not in (".",)]
    absolute = os.path.isabs(name) or name.startswith(("/", "\\")) or ":" in name[:3]
    if not absolute:
        posix = name.replace("\\", "/")  # a relative Windows path (cats\\a.jpg); its own name is written back
        if safe_image_path(images_dir, posix) is None:
            raise CocoError(f"file_name {name!r} points outside {images_dir}; refused")
        path = find_image([images_dir], posix)
    else:
        if parts and ":" in parts[0]:
            parts = parts[1:]  # a drive letter
        path = None
        for k in range(len(parts)):
            path = find_image([images_dir], "/".join(parts[k:])) if ".." not in parts[k:] else None
            if path is not None:
                break
    if path is None:
        raise CocoError(f"file {name!r} not found in {images_dir}")
    return path.resolve()


def _images(doc: dict, images_dir: Path, rep: ImportReport) -> tuple[dict, list[_Image]]:
    """(the file's image id -> _Image, or None for an id that names two images; every image to add)."""
    by_id: dict = {}
    files: dict[Path, _Image] = {}
    for n, im in enumerate(doc["images"], 1):
        try:
            missing = [k for k in ("id", "file_name", "width", "height") if k not in _entry(im)]
            if missing:
                raise CocoError(f"missing key {missing[0]!r}")
            iid = validate.as_id(im["id"], "id")
            name = im["file_name"]
            if not isinstance(name, str) or not name:
                raise CocoError(f"file_name {name!r} is not a file name")
            h, w = validate.image_size(im)
            path = _locate(images_dir, name)
            _check_file(path, h, w)
        except CocoError as exc:
            rep.problems.append(f"image {_which(im, n)}: {exc}")
            continue
        keep = carry.extra(im, carry.IMAGE_KEYS) or {}
        if path.relative_to(images_dir.resolve()).as_posix() != name:  # found by another name: write its own back
            keep["file_name"] = name
        entry = files.setdefault(path, _Image(path, h, w, iid if isinstance(iid, int) else None, keep or None))
        if iid not in by_id:
            by_id[iid] = entry
        elif by_id[iid] is not None and by_id[iid].path != path:
            rep.problems.append(f"image id {iid} names two images ({by_id[iid].path.name}, {path.name}); both are "
                                "added, but its annotations cannot be placed and are refused")
            by_id[iid] = None
    return by_id, list(files.values())


def _annotations(doc: dict, images: dict, cats: dict, rep: ImportReport) -> list[_Annotation]:
    ids = [a.get("id") for a in doc["annotations"] if isinstance(a, dict)]
    next_id = max([i for i in ids if isinstance(i, int) and not isinstance(i, bool)], default=0) + 1
    seen: set = set()
    out = []
    count = dict.fromkeys(_COUNTED, 0)
    for n, ann in enumerate(doc["annotations"], 1):
        try:
            missing = [k for k in ("id", "image_id", "category_id") if k not in _entry(ann)]
            if missing or ("segmentation" not in ann and "bbox" not in ann):
                raise CocoError(f"missing key {(missing or ['segmentation'])[0]!r}")
            aid = validate.as_id(ann["id"], "id")
            iid = validate.as_id(ann["image_id"], "image_id")
            cid = validate.as_id(ann["category_id"], "category_id")
            if cid not in cats:
                raise CocoError(f"unknown category id {cid!r}{_id_hint(cid, cats)}")
            if cats[cid] is None:
                raise CocoError(f"its category id {cid} names two categories")
            if images.get(iid, False) is None:
                raise CocoError(f"its image id {iid} names two images; cannot tell which")
            img = images.get(iid)
            if img is None:
                raise CocoError(f"its image {iid!r} is missing or was refused{_id_hint(iid, images)}")
            shape = validate.shape(ann.get("segmentation"), img.height, img.width)
            a = _Annotation(None, img, cid, shape, None, validate.iscrowd(ann.get("iscrowd")),
                            carry.extra(ann, carry.ANNOTATION_KEYS))
            _box(a, ann.get("bbox"), count)
        except CocoError as exc:
            rep.problems.append(f"annotation {_which(ann, n)}: {exc}")
            continue
        a.ours, bad = carry.read_ours(ann.get(carry.EXTRA_KEY))
        count["unreadable"] += bad
        rotation = ((a.extra or {}).get("attributes") or {}).get("rotation") if isinstance(
            (a.extra or {}).get("attributes"), dict) else None
        count["rotated"] += isinstance(rotation, (int, float)) and not isinstance(rotation, bool) and rotation != 0
        source = aid if isinstance(aid, int) else None
        if source is None and not any(n.startswith("annotation ids that are text") for n in rep.notes):
            rep.notes.append("annotation ids that are text (not integers) are not kept: importing this file again "
                             "cannot tell its annotations from new ones")
        if aid in seen:
            rep.notes.append(f"annotation {aid}: duplicate id; imported as annotation {next_id}")
            source, next_id = next_id, next_id + 1
        seen.add(aid)
        a.source_id = source
        out.append(a)
    for key, text in _COUNTED.items():
        if count[key]:
            rep.notes.append(f"{count[key]} {text}")
    return out


_COUNTED = {
    "clipped": "box-only annotation(s) reached past their image's edge; kept clipped to it",
    "disagree": "annotation(s) have a bbox that disagrees with their mask (by more than 2 px on an edge): the "
                "mask's own box is used, and the file's is kept as the box they came with (clicklabel.given_bbox)",
    "empty": "annotation(s) have a segmentation that covers no pixel (a zero-area polygon): each is kept as its "
             "box, without a mask, and flagged for review (`clicklabel refine` gives it a mask)",
    "rotated": "annotation(s) are rotated boxes (attributes.rotation): clicklabel keeps the axis-aligned bbox the "
               "file gives and the rotation in its attributes, written back on export; the mask does not turn",
    "unreadable": "annotation(s) have clicklabel fields that could not be read; those fields were left out",
}
EDGE_TOLERANCE = 2.0  # pixels a file's bbox may differ from its mask's box on each edge (rasterising, rounding)


def _agrees(given, mask_box) -> bool:
    gx, gy, gw, gh = given
    mx, my, mw, mh = mask_box
    return max(abs(gx - mx), abs(gy - my), abs(gx + gw - mx - mw), abs(gy + gh - my - mh)) <= EDGE_TOLERANCE


def _box(a: _Annotation, raw, count: dict) -> None:
    """The annotation's box: a box-only one's checked and clipped; a mask's from the file where it agrees with
    the mask, else the mask's own (the file's kept as ``given_bbox``); a mask with no pixel becomes its box."""
    img = a.image
    if a.shape.rle is None:  # box-only
        if raw is None:
            raise CocoError("has neither a segmentation nor a bbox")
        a.bbox, clipped = validate.box_only(raw, img.height, img.width)
        count["clipped"] += clipped
        return
    given = validate.box_numbers(raw) if raw is not None else None
    if rle_area(a.shape.rle) == 0:
        if given is None or not (given[2] > 0 and given[3] > 0):
            raise CocoError("its segmentation covers no pixel (area 0) and it has no bbox with an area; refused")
        a.bbox, clipped = validate.box_only(raw, img.height, img.width)
        a.shape = validate.Shape(None)
        a.review = "its segmentation covered no pixel (a zero-area polygon): kept as its box"
        count["empty"] += 1
        return
    mask_box = rle_bbox(a.shape.rle)
    if given is None or _agrees(given, mask_box):
        a.bbox = given
        return
    a.bbox, a.given_bbox = tuple(float(v) for v in mask_box), given
    count["disagree"] += 1


def import_coco(coco_json: str | Path, images_dir: str | Path, store: Store, strict: bool = False,
                mode: str = "skip", renumber: bool = False) -> ImportReport:
    """Import a COCO instances file into ``store``. Bad items are reported with the reason and skipped; with
    ``strict``, any problem raises CocoError and nothing is imported. Annotations the project already holds
    from an earlier import (same image, same annotation id): ``mode`` 'skip' (counted), 'merge' (added again)
    or 'replace' (the earlier objects are deleted, undoably, and the file's written). Every category is kept
    (with its id where the project has it free), so are the images' ids unless ``renumber``, every key clicklabel
    has no column for (written back on export), and clicklabel's own block."""
    if mode not in MODES:
        raise CocoError(f"unknown import mode {mode!r}; use {', '.join(MODES)}")
    doc = read_coco_file(coco_json)
    if not isinstance(doc.get("categories"), list):
        raise CocoError(f"{coco_json}: missing or malformed top-level key 'categories'")
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise CocoError(f"the images folder {images_dir} is not a folder")
    rep = ImportReport()
    cats = _categories(doc, rep)
    by_id, files = _images(doc, images_dir, rep)
    anns = _annotations(doc, by_id, cats, rep)
    if strict and rep.problems:
        first = "; ".join(rep.problems[:5])
        raise CocoError(f"{len(rep.problems)} problem(s), nothing imported (--strict): {first}")
    with store.transaction():
        carry.set_document_extra(store, doc)
        _write(store, files, anns, cats, mode, rep, renumber)
    return rep


def _unlabelled(a: _Annotation, cats: dict) -> bool:
    """Whether ``a`` is an object clicklabel exported without a label (under its 'unlabelled' category)."""
    return cats[a.category][0] == carry.UNLABELLED and a.ours.get("labelled") is False


def _add_images(store: Store, files: list[_Image], renumber: bool, rep: ImportReport) -> dict:
    sid = {}
    moved = 0
    for img in files:
        want = None if renumber else img.source_id
        sid[img.path] = store.add_image(img.path, img.width, img.height, image_id=want)
        carry.set_extra(store, "images", sid[img.path], img.extra)
        moved += want is not None and sid[img.path] != want
    if moved:
        rep.notes.append(f"{moved} image(s) have another id in the project than in the file (they were in the "
                         "project already, or another image has their id); an export writes the project's ids")
    rep.images = len(files)
    return sid


def _add_categories(store: Store, anns: list[_Annotation], cats: dict, rep: ImportReport) -> dict:
    """Every category of the file (those without annotations too), with its id where the project has it free;
    clicklabel's own 'unlabelled' only where an annotation really is in it."""
    named = {a.category for a in anns if not _unlabelled(a, cats)}
    mapped = {}
    for cid, entry in cats.items():
        if entry is None or (entry[0] == carry.UNLABELLED and cid not in named):
            continue
        name, sup, more = entry
        mapped[cid] = store._category_id(name, sup, cid if isinstance(cid, int) else None)
        carry.set_extra(store, "categories", mapped[cid], more)
        if mapped[cid] != cid:
            rep.notes.append(f"category {name!r} (id {cid} in the file) is category {mapped[cid]} in the project")
    return mapped


def _write(store: Store, files: list[_Image], anns: list[_Annotation], cats: dict, mode: str,
           rep: ImportReport, renumber: bool) -> None:
    sid = _add_images(store, files, renumber, rep)
    _add_categories(store, anns, cats, rep)
    earlier: dict = {}
    if mode != "merge" and sid:
        marks = ",".join("?" * len(sid))
        for oid, iid, src in store.conn.execute(
            f"SELECT id, image_id, source_id FROM objects WHERE state != 'deleted' "
            f"AND source_id IS NOT NULL AND image_id IN ({marks})", list(sid.values())):
            earlier.setdefault((iid, src), []).append(oid)
    for a in anns:
        image_id = sid[a.image.path]
        before = earlier.get((image_id, a.source_id)) if a.source_id is not None else None
        if before and mode == "skip":
            rep.skipped += 1
            continue
        for oid in before or ():
            store.delete(oid)
            rep.replaced += 1
        name, sup, _ = cats[a.category]
        ours = a.ours
        label = None if _unlabelled(a, cats) else name
        sup = (ours.get("supercategory") if ours else sup) if label else None  # an object's own, from our block
        oid = store.accept(image_id, rle=a.shape.rle, provenance=ours.get("provenance", "imported"), label=label,
                           supercategory=sup, iscrowd=a.iscrowd,
                           bbox=a.bbox, source_id=a.source_id, event="import",
                           mask_state="mask" if a.shape.rle is not None else "box", clicks=ours.get("clicks"),
                           seconds=ours.get("seconds"), score=ours.get("score"), engine=ours.get("engine"),
                           model=ours.get("model"), object_id=ours.get("object_id"))
        fields = dict(ours)
        if a.given_bbox is not None and "given_bbox" not in fields:
            fields["given_bbox"] = a.given_bbox
        if a.review is not None and "review" not in fields:
            fields["review"] = a.review
        carry.restore(store, oid, fields, a.extra)
        rep.annotations += 1
        rep.boxes += a.shape.rle is None
