"""Importing a COCO file into a project. Every category, image and annotation is checked first (``validate``:
types, finite coordinates, sizes against the image files themselves, RLE counts), each bad one refused with a
reason, and only then is the rest written, in one transaction. An annotation with a box and no mask becomes a
box-only object (``clicklabel refine`` gives it SAM's mask); polygons, RLE and boxes mix in one file. Duplicate
annotation ids are renumbered (and said so), an image id used by two images places none of its annotations,
categories match the project's by name, and importing a file again skips what is already there unless asked to
merge or replace."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CocoError, ImageError
from ..images import image_size
from ..project import Store
from . import validate
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


@dataclass
class _Annotation:
    source_id: int | None
    image: _Image
    category: object  # the file's category id
    shape: validate.Shape
    bbox: tuple | None
    iscrowd: int


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
    """The file's category id -> (name, supercategory), or None for an id that names two categories."""
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
        cats.setdefault(cid, (name, sup))
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
            if safe_image_path(images_dir, name) is None:
                raise CocoError(f"file_name {name!r} points outside {images_dir}; refused")
            path = find_image([images_dir], name)
            if path is None:
                raise CocoError(f"file {name!r} not found in {images_dir}")
            _check_file(path, h, w)
        except CocoError as exc:
            rep.problems.append(f"image {_which(im, n)}: {exc}")
            continue
        entry = files.setdefault(path, _Image(path, h, w))
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
    clipped = 0
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
            if shape.rle is None:  # box-only
                if ann.get("bbox") is None:
                    raise CocoError("has neither a segmentation nor a bbox")
                bbox, was_clipped = validate.box_only(ann["bbox"], img.height, img.width)
                clipped += was_clipped
            else:
                bbox = validate.bbox(ann["bbox"], img.height, img.width) if ann.get("bbox") is not None else None
            crowd = validate.iscrowd(ann.get("iscrowd"))
        except CocoError as exc:
            rep.problems.append(f"annotation {_which(ann, n)}: {exc}")
            continue
        source = aid if isinstance(aid, int) else None
        if source is None and not any(n.startswith("annotation ids that are text") for n in rep.notes):
            rep.notes.append("annotation ids that are text (not integers) are not kept: importing this file again "
                             "cannot tell its annotations from new ones")
        if aid in seen:
            rep.notes.append(f"annotation {aid}: duplicate id; imported as annotation {next_id}")
            source, next_id = next_id, next_id + 1
        seen.add(aid)
        out.append(_Annotation(source, img, cid, shape, bbox, crowd))
    if clipped:
        rep.notes.append(f"{clipped} box-only annotation(s) reached past their image's edge; kept clipped to it")
    return out


def import_coco(coco_json: str | Path, images_dir: str | Path, store: Store, strict: bool = False,
                mode: str = "skip") -> ImportReport:
    """Import a COCO instances file into ``store``. Bad items are reported with the reason and skipped; with
    ``strict``, any problem raises CocoError and nothing is imported. Annotations the project already holds
    from an earlier import (same image, same annotation id): ``mode`` 'skip' (counted), 'merge' (added again)
    or 'replace' (the earlier objects are deleted, undoably, and the file's written)."""
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
    _write(store, files, anns, cats, mode, rep)
    return rep


def _write(store: Store, files: list[_Image], anns: list[_Annotation], cats: dict, mode: str,
           rep: ImportReport) -> None:
    with store.transaction():
        sid = {}
        for img in files:
            sid[img.path] = store.add_image(img.path, img.width, img.height)
        rep.images = len(files)
        earlier: dict = {}
        if mode != "merge" and sid:
            marks = ",".join("?" * len(sid))
            for oid, iid, src in store.conn.execute(
                f"SELECT id, image_id, source_id FROM objects WHERE provenance='imported' AND state != 'deleted' "
                f"AND source_id IS NOT NULL AND image_id IN ({marks})", list(sid.values())):
                earlier.setdefault((iid, src), []).append(oid)
        mapped: dict = {}
        for a in anns:
            image_id = sid[a.image.path]
            before = earlier.get((image_id, a.source_id)) if a.source_id is not None else None
            if before and mode == "skip":
                rep.skipped += 1
                continue
            for oid in before or ():
                store.delete(oid)
                rep.replaced += 1
            name, sup = cats[a.category]
            if a.category not in mapped:
                mapped[a.category] = store._category_id(name, sup, a.category if isinstance(a.category, int)
                                                        else None)
                if mapped[a.category] != a.category:
                    rep.notes.append(f"category {name!r} (id {a.category} in the file) is category "
                                     f"{mapped[a.category]} in the project")
            store.accept(image_id, rle=a.shape.rle, provenance="imported", label=name, supercategory=sup,
                         iscrowd=a.iscrowd, bbox=a.bbox, source_id=a.source_id, event="import",
                         mask_state="mask" if a.shape.rle is not None else "box")
            rep.annotations += 1
            rep.boxes += a.shape.rle is None
