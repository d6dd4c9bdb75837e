"""The project store: one SQLite file (WAL) per project, one transaction per user action.

Tables: images, categories, objects (RLE mask, tight box, label and its status, provenance, timings, model and
token use; or a box without a mask yet), label_history, label_checks (the class audit), and an append-only event
log that the comparison report reads. Undo / redo of accept, delete, relabel, proposal decisions, refine, review
and audit decisions works from the event log, not from widget state.
A killed process loses at most the action in flight (WAL, ``synchronous=NORMAL``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import ImageError, ResourceError, StoreError
from ..files import MACHINE_ERRNOS, describe_os_error
from ..images import file_hash, image_size, load_image
from .boxes import BoxesMixin
from .checks import ChecksMixin
from .database import Transaction, begin, busy_timeout, connect, report_wait, rollback, sqlite_error
from .descriptors import DescriptorsMixin
from .history import History
from .leases import LeasesMixin
from .objects import ObjectsMixin
from .schema import CHECK_SIZES_KEY, MIGRATIONS, SCHEMA_VERSION, UNDOABLE
from .sequences import SequencesMixin

PROJECT_FILE = "project.clicklabel"  # the project inside a folder; any other name ending .clicklabel works too


@dataclass
class ImageRecord:
    id: int
    path: str
    width: int
    height: int
    hash: str | None
    status: str


class Store(ObjectsMixin, BoxesMixin, ChecksMixin, LeasesMixin, DescriptorsMixin, SequencesMixin, History):
    """A project: ``Store(path)`` creates or opens it; image paths are stored relative to ``root``."""

    def __init__(self, path: str | Path, root: str | Path | None = None):
        self.path = Path(path)
        if self.path.is_dir():
            self.path = self.path / PROJECT_FILE
        self._lock = threading.RLock()
        self.busy_timeout = busy_timeout()  # seconds a write waits for another program's write lock
        self.on_busy: Callable[[str], None] | None = report_wait  # told while waiting (None: say nothing)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            kind = ResourceError if exc.errno in MACHINE_ERRNOS else StoreError
            raise kind(describe_os_error(exc, self.path.parent)) from None
        try:
            self.conn = connect(self.path)
            self._migrate()
        except sqlite3.Error as exc:
            raise sqlite_error(exc, self.path) from None
        if root is not None:
            self.set_root(root)
        elif self.get_meta("root") is None:
            self.set_meta("root", ".")
        self.root = (self.path.parent / self.get_meta("root")).resolve()
        if self.get_meta(CHECK_SIZES_KEY):
            self.check_image_sizes()

    def set_root(self, root: str | Path) -> None:
        """The folder that image paths are relative to (stored relative to the project file)."""
        self.set_meta("root", os.path.relpath(Path(root).resolve(), self.path.parent.resolve()))
        self.root = Path(root).resolve()

    # -- plumbing -------------------------------------------------------------------------------------------
    def _migrate(self) -> None:
        with self._lock:
            has_meta = self.conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'"
            ).fetchone()
            version = int(self.get_meta("schema_version") or 0) if has_meta else 0
            if version > SCHEMA_VERSION:
                raise StoreError(f"{self.path} was written by a newer clicklabel (schema {version}); please upgrade")
            for v in range(version + 1, SCHEMA_VERSION + 1):
                begin(self.conn, self.path, self.busy_timeout, self.on_busy)
                try:
                    for stmt in MIGRATIONS[v].split(";"):
                        if stmt.strip():
                            self.conn.execute(stmt)
                    self.conn.execute(
                        "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)", (str(v),)
                    )
                    self.conn.execute("COMMIT")
                except BaseException:
                    rollback(self.conn)
                    raise

    def transaction(self):
        """Context manager: one atomic action (BEGIN IMMEDIATE ... COMMIT, ROLLBACK on error), waiting at most
        ``busy_timeout`` seconds for another program's write lock."""
        return Transaction(self)

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def get_meta(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction():
            self.conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def _event(self, kind: str, image_id=None, object_id=None, data=None) -> int:
        if kind in UNDOABLE:  # a new action ends the redo chain
            self.conn.execute("UPDATE events SET undone=2 WHERE undone=1")
        cur = self.conn.execute(
            "INSERT INTO events(t, kind, image_id, object_id, data) VALUES (?, ?, ?, ?, ?)",
            (time.time(), kind, image_id, object_id, json.dumps(data) if data is not None else None),
        )
        return int(cur.lastrowid)

    def log_event(self, kind: str, image_id: int | None = None, object_id: int | None = None, **data) -> int:
        """Record a non-undoable event (prompt, reject of a preview, ...) for the comparison report."""
        with self.transaction():
            return self._event(kind, image_id, object_id, data or None)

    # -- images ---------------------------------------------------------------------------------------------
    def relative(self, path: str | Path) -> str:
        """``path`` relative to the project root (as stored), with forward slashes."""
        p = Path(path)
        if p.is_absolute():
            try:
                p = p.resolve().relative_to(self.root)
            except ValueError:
                p = Path(os.path.relpath(p.resolve(), self.root))
        return p.as_posix()

    def add_image(self, path: str | Path, width: int, height: int, hash: str | None = None,
                  image_id: int | None = None) -> int:
        """The image's id, adding it if new (with ``image_id`` if that id is free: an imported file's own id)."""
        rel = self.relative(path)
        with self.transaction():
            row = self.conn.execute("SELECT id FROM images WHERE path=?", (rel,)).fetchone()
            if row:
                return int(row[0])
            if image_id is not None and self.conn.execute("SELECT 1 FROM images WHERE id=?", (image_id,)).fetchone():
                image_id = None
            cur = self.conn.execute(
                "INSERT INTO images(id, path, width, height, hash, created) VALUES (?, ?, ?, ?, ?, ?)",
                (image_id, rel, int(width), int(height), hash, time.time()),
            )
            return int(cur.lastrowid)

    def add_image_file(self, path: str | Path) -> int:
        """Add an image file by path (its size as displayed, EXIF orientation applied, read from its header;
        content hashed); returns its id."""
        p = Path(path)
        if not p.is_absolute():
            p = Path.cwd() / p
        h, w = image_size(p)
        try:
            digest = file_hash(p)
        except OSError as exc:
            raise ImageError(f"cannot read image {p}: {exc.strerror or exc}") from None
        return self.add_image(p, w, h, digest)

    def image(self, image_id: int) -> ImageRecord:
        row = self.conn.execute("SELECT id, path, width, height, hash, status FROM images WHERE id=?", (image_id,))
        r = row.fetchone()
        if r is None:
            raise StoreError(f"no image with id {image_id}")
        return ImageRecord(*r)

    def images(self) -> list[ImageRecord]:
        rows = self.conn.execute("SELECT id, path, width, height, hash, status FROM images ORDER BY id")
        return [ImageRecord(*r) for r in rows]

    def image_path(self, image: ImageRecord | int) -> Path:
        rec = self.image(image) if isinstance(image, int) else image
        return self.root / rec.path

    def load_image(self, image: ImageRecord | int) -> np.ndarray:
        """The image's pixels as displayed (EXIF orientation applied), checked against the project's size for it."""
        rec = self.image(image) if isinstance(image, int) else image
        pixels = load_image(self.image_path(rec))
        self._check_size(rec, *pixels.shape[:2])
        return pixels

    def check_image_sizes(self) -> list[str]:
        """Compare each image's stored size with its file's header (files that cannot be read are left alone):
        an image stored with its size before EXIF rotation (clicklabel 0.1 did) is repaired; returns the images
        whose size disagrees otherwise."""
        problems = []
        for rec in self.images():
            try:
                self._check_size(rec, *image_size(self.image_path(rec)))
            except ImageError as exc:
                if self.image_path(rec).is_file():
                    problems.append(str(exc))
        with self.transaction():
            self.conn.execute("DELETE FROM meta WHERE key=?", (CHECK_SIZES_KEY,))
        return problems

    def _check_size(self, rec: ImageRecord, height: int, width: int) -> None:
        if (rec.height, rec.width) == (height, width):
            return
        imported = self.conn.execute("SELECT 1 FROM objects WHERE image_id=? AND provenance='imported' LIMIT 1",
                                     (rec.id,)).fetchone()
        if (rec.height, rec.width) == (width, height) and not imported:
            # Stored before its EXIF rotation; every mask on it was made on the image as displayed, so the
            # displayed size makes them whole again.
            with self.transaction():
                self.conn.execute("UPDATE images SET width=?, height=? WHERE id=?", (width, height, rec.id))
                self._event("repair_size", rec.id, None, {"before": [rec.width, rec.height],
                                                          "after": [width, height]})
            rec.width, rec.height = width, height
            return
        if (rec.height, rec.width) == (width, height):
            raise ImageError(f"{self.image_path(rec)} is {width}x{height} as displayed, but the project has it at its "
                             f"size before EXIF rotation, {rec.width}x{rec.height}, and objects were imported at that "
                             "size: delete them and import them again with the displayed size")
        raise ImageError(f"{self.image_path(rec)} is {width}x{height} as displayed, but the project has it as "
                         f"{rec.width}x{rec.height}: the file was replaced or edited; put the original back")

    def set_image_status(self, image_id: int, status: str) -> None:
        with self.transaction():
            self.conn.execute("UPDATE images SET status=? WHERE id=?", (status, image_id))

    # -- categories -----------------------------------------------------------------------------------------
    def category_id(self, name: str, supercategory: str | None = None, cid: int | None = None) -> int:
        """Id of category ``name`` (created if new; ``cid`` keeps an imported id)."""
        with self.transaction():
            return self._category_id(name, supercategory, cid)

    def _category_id(self, name: str, supercategory: str | None, cid: int | None = None) -> int:
        row = self.conn.execute("SELECT id, supercategory FROM categories WHERE name=?", (name,)).fetchone()
        if row:
            if supercategory and not row[1]:
                self.conn.execute("UPDATE categories SET supercategory=? WHERE id=?", (supercategory, row[0]))
            return int(row[0])
        if cid is not None and self.conn.execute("SELECT 1 FROM categories WHERE id=?", (cid,)).fetchone():
            cid = None  # the id names another category here: categories match by name, this one gets a new id
        cur = self.conn.execute(
            "INSERT INTO categories(id, name, supercategory) VALUES (?, ?, ?)", (cid, name, supercategory)
        )
        return int(cur.lastrowid)

    def categories(self) -> list[tuple[int, str, str | None]]:
        return [tuple(r) for r in self.conn.execute("SELECT id, name, supercategory FROM categories ORDER BY id")]

    def events(self, kinds=None) -> list[dict]:
        """The event log (for reports), oldest first."""
        sql = "SELECT id, t, kind, image_id, object_id, data, undone FROM events"
        params: tuple = ()
        if kinds:
            sql += f" WHERE kind IN ({','.join('?' * len(kinds))})"
            params = tuple(kinds)
        keys = ("id", "t", "kind", "image_id", "object_id", "data", "undone")
        out = []
        for r in self.conn.execute(sql + " ORDER BY id", params):
            d = dict(zip(keys, r))
            d["data"] = json.loads(d["data"]) if d["data"] else {}
            out.append(d)
        return out

    def integrity_ok(self) -> bool:
        return self.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
