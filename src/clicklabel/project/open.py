"""The one way into a project: open or create it from a project file, a folder, or a list of images, and add
images to it. The CLI (``add``, ``label``, ``propose``, ``precompute``, ...), the napari widget and Python users
all call these."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ClickLabelError, ImageError, StoreError
from ..images import IMAGE_SUFFIXES, list_images
from .store import PROJECT_FILE, Store


def project_file(target: str | Path) -> Path:
    """The project file meant by ``target``: a ``.clicklabel`` file, or ``PROJECT_FILE`` inside a folder."""
    t = Path(target).expanduser()
    return t / PROJECT_FILE if t.is_dir() else t


def is_project(target: str | Path) -> bool:
    """Whether ``target`` is a project (an SQLite file, as every project is), or a folder holding one."""
    p = project_file(target)
    try:
        with open(p, "rb") as f:
            return f.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


def open_project(target: str | Path, create: bool = False, root: str | Path | None = None) -> Store:
    """Open the project at ``target`` (a project file, or a folder holding ``PROJECT_FILE``).

    With ``create``, a missing project is made: in a folder its root is that folder, else ``root`` (default: the
    project file's folder); ``root`` never moves an existing project. Without ``create``, a missing project is a
    one-line StoreError."""
    path = project_file(target)
    if path.is_file():
        return Store(path)
    if not create:
        raise StoreError(f"no project at {target}; make one with `clicklabel add {target} IMAGES...`")
    if path.exists():
        raise StoreError(f"{path} exists and is not a project file")
    if root is None and Path(target).is_dir():
        root = target
    return Store(path, root=root)


def remove_new_project(store: Store) -> None:
    """Close ``store`` and delete its files (the project and SQLite's -wal and -shm beside it): a project that a
    failed import (or add) had just created is not left behind empty."""
    store.close()
    for suffix in ("", "-wal", "-shm", "-journal"):
        try:
            store.path.with_name(store.path.name + suffix).unlink(missing_ok=True)
        except OSError:
            pass


@dataclass
class AddReport:
    """What ``add_images`` did: ids of the images now in the project (in the order given), how many were new,
    and the files skipped with the reason."""

    ids: list[int] = field(default_factory=list)
    added: int = 0
    skipped: list[str] = field(default_factory=list)


def images_below(folder: Path) -> list[Path]:
    """The image files in ``folder`` and its sub-folders (hidden ones left out), sorted by path."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [Path(dirpath) / f for f in filenames if Path(f).suffix.lower() in IMAGE_SUFFIXES
                  and not f.startswith(".")]
    return sorted(found, key=lambda f: f.relative_to(folder).parts)


def expand_images(items: Iterable[str | Path], recursive: bool = False) -> list[Path]:
    """Files and folders -> image files (a folder's images sorted by name, one level deep; with ``recursive``,
    its sub-folders' too)."""
    out: list[Path] = []
    for item in items:
        p = Path(item).expanduser()
        if p.is_dir():
            out.extend(images_below(p) if recursive else list_images(p))
        elif p.exists():
            out.append(p)
        else:
            raise ImageError(f"not found: {p}")
    return out


def add_images(store: Store, items: Iterable[str | Path], recursive: bool = False) -> AddReport:
    """Add image files and folders of images (with ``recursive``, their sub-folders' too, each image stored by
    its path under the project's root: ``cats/a.jpg``) to ``store``; files that are not images are skipped and
    named."""
    rep = AddReport()
    before = len(store.images())
    for p in expand_images(items, recursive):
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            rep.skipped.append(f"{p}: not an image file name ({', '.join(sorted(IMAGE_SUFFIXES))})")
            continue
        try:
            rep.ids.append(store.add_image_file(p.resolve()))
        except ImageError as exc:
            rep.skipped.append(str(exc))
    rep.added = len(store.images()) - before
    return rep


def open_images(items: Iterable[str | Path], project: str | Path | None = None) -> Store:
    """A project holding ``items`` (files and folders): ``project`` if given (created if needed, root = the first
    image's folder), else ``PROJECT_FILE`` in the folder of the first item. New images are added; nothing is
    ever removed."""
    items = list(items)
    files = expand_images(items)
    if not files:
        raise ClickLabelError(f"no images in {', '.join(map(str, items)) or 'nothing'}")
    first_folder = files[0].resolve().parent
    target = project if project is not None else first_folder
    store = open_project(target, create=True, root=first_folder)
    add_images(store, files)
    return store


def image_files(target: str | Path) -> list[Path]:
    """The image files of a project (file or folder holding one), else of a plain folder."""
    if is_project(target):
        store = open_project(target)
        try:
            return [store.image_path(im) for im in store.images()]
        finally:
            store.close()
    t = Path(target)
    if t.is_dir():
        return list_images(t)
    raise ClickLabelError(f"not a folder of images or a project: {target}")
