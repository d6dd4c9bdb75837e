"""The project store: one SQLite file (WAL) per project, one transaction per user action.

Tables: images, categories, objects (RLE mask, tight box, label and its status, provenance, timings, model and
token use), label_history, and an append-only event log that the comparison report reads. Undo / redo of
accept, delete, relabel and proposal decisions works from the event log, not from widget state.
A killed process loses at most the action in flight (WAL, ``synchronous=NORMAL``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import StoreError
from .masks import decode_rle, encode_rle, tight_bbox
from .store_history import History
from .store_schema import MIGRATIONS, PROVENANCES, SCHEMA_VERSION, UNDOABLE

_OBJECT_FIELDS = (
    "id, image_id, rle, bbox, area, iscrowd, state, category_id, label, coarse, label_status, label_confidence, "
    "label_error, provenance, clicks, seconds, score, engine, model, lmm_model, prompt_tokens, completion_tokens, "
    "cost, source_id, created, updated"
)


@dataclass
class ImageRecord:
    id: int
    path: str
    width: int
    height: int
    hash: str | None
    status: str


@dataclass
class ObjectRecord:
    id: int
    image_id: int
    rle: dict
    bbox: tuple[float, float, float, float]
    area: int
    iscrowd: int
    state: str
    category_id: int | None
    label: str | None
    coarse: str | None
    label_status: str
    label_confidence: float | None
    label_error: str | None
    provenance: str
    clicks: int | None
    seconds: float | None
    score: float | None
    engine: str | None
    model: str | None
    lmm_model: str | None
    prompt_tokens: int
    completion_tokens: int
    cost: float
    source_id: int | None
    created: float
    updated: float

    @property
    def mask(self) -> np.ndarray:
        return decode_rle(self.rle)


class Store(History):
    """A project: ``Store(path)`` creates or opens it; image paths are stored relative to ``root``."""

    def __init__(self, path: str | Path, root: str | Path | None = None):
        self.path = Path(path)
        if self.path.is_dir():
            self.path = self.path / "project.clicklabel"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            self.conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{self.path} is not a clicklabel project ({exc})") from None
        stored_root = self.get_meta("root")
        if root is not None:
            self.set_meta("root", os.path.relpath(Path(root).resolve(), self.path.parent.resolve()))
        elif stored_root is None:
            self.set_meta("root", ".")
        self.root = (self.path.parent / self.get_meta("root")).resolve()

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
                self.conn.execute("BEGIN IMMEDIATE")
                try:
                    for stmt in MIGRATIONS[v].split(";"):
                        if stmt.strip():
                            self.conn.execute(stmt)
                    self.conn.execute(
                        "INSERT OR REPLACE INTO meta(key, value) VALUES ('schema_version', ?)", (str(v),)
                    )
                    self.conn.execute("COMMIT")
                except BaseException:
                    self.conn.execute("ROLLBACK")
                    raise

    def transaction(self):
        """Context manager: one atomic action (BEGIN IMMEDIATE ... COMMIT, ROLLBACK on error)."""
        return _Transaction(self)

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

    def add_image(self, path: str | Path, width: int, height: int, hash: str | None = None) -> int:
        """The image's id, adding it if new."""
        rel = self.relative(path)
        with self.transaction():
            row = self.conn.execute("SELECT id FROM images WHERE path=?", (rel,)).fetchone()
            if row:
                return int(row[0])
            cur = self.conn.execute(
                "INSERT INTO images(path, width, height, hash, created) VALUES (?, ?, ?, ?, ?)",
                (rel, int(width), int(height), hash, time.time()),
            )
            return int(cur.lastrowid)

    def add_image_file(self, path: str | Path) -> int:
        """Add an image file by path (size read from its header, content hashed); returns its id."""
        from PIL import Image, UnidentifiedImageError

        from .errors import ImageError
        from .images import file_hash

        p = Path(path)
        if not p.is_absolute():
            p = (Path.cwd() / p)
        try:
            with Image.open(p) as im:
                w, h = im.size
        except FileNotFoundError:
            raise ImageError(f"image not found: {p}") from None
        except (UnidentifiedImageError, OSError):
            raise ImageError(f"not an image (or a format we cannot read): {p}") from None
        return self.add_image(p, w, h, file_hash(p))

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
        cur = self.conn.execute(
            "INSERT INTO categories(id, name, supercategory) VALUES (?, ?, ?)", (cid, name, supercategory)
        )
        return int(cur.lastrowid)

    def categories(self) -> list[tuple[int, str, str | None]]:
        return [tuple(r) for r in self.conn.execute("SELECT id, name, supercategory FROM categories ORDER BY id")]

    # -- objects --------------------------------------------------------------------------------------------
    def accept(
        self,
        image_id: int,
        mask: np.ndarray | None = None,
        *,
        rle: dict | None = None,
        provenance: str = "click",
        clicks: int | None = None,
        seconds: float | None = None,
        score: float | None = None,
        engine: str | None = None,
        model: str | None = None,
        label: str | None = None,
        coarse: str | None = None,
        state: str = "accepted",
        iscrowd: int = 0,
        bbox: tuple | None = None,
        source_id: int | None = None,
        event: str | None = "accept",
    ) -> int:
        """Write one object (mask or RLE) in one transaction; returns its id. ``state='proposed'`` for proposals."""
        if provenance not in PROVENANCES:
            raise StoreError(f"unknown provenance {provenance!r}; one of {', '.join(PROVENANCES)}")
        if rle is None:
            if mask is None:
                raise StoreError("accept needs a mask or an RLE")
            rle = encode_rle(mask)
            box = tight_bbox(mask)
            area = int(np.count_nonzero(mask))
        else:
            from .masks import rle_area, rle_bbox

            if not isinstance(rle["counts"], str):  # keep one form in the store: compressed counts as text
                rle = encode_rle(decode_rle(rle))
            box, area = rle_bbox(rle), rle_area(rle)
        if bbox is None:
            bbox = box or (0, 0, 0, 0)
        now = time.time()
        status = "done" if label and provenance == "imported" else "pending"
        with self.transaction():
            cid = self._category_id(label, coarse) if label else None
            cur = self.conn.execute(
                "INSERT INTO objects(image_id, rle, bbox, area, iscrowd, state, category_id, label, coarse, "
                "label_status, provenance, clicks, seconds, score, engine, model, source_id, created, updated) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    image_id, rle["counts"],
                    json.dumps([float(v) for v in bbox]), area, iscrowd, state, cid, label, coarse, status,
                    provenance, clicks, seconds, score, engine, model, source_id, now, now,
                ),
            )
            oid = int(cur.lastrowid)
            if label:
                self._history(oid, label, coarse, None, status, provenance)
            if event:
                kind = "propose" if state == "proposed" else event
                self._event(kind, image_id, oid, {"provenance": provenance, "clicks": clicks, "seconds": seconds})
        return oid

    def object(self, object_id: int) -> ObjectRecord:
        rows = self._objects(f"SELECT {_OBJECT_FIELDS} FROM objects WHERE id=?", (object_id,))
        if not rows:
            raise StoreError(f"no object with id {object_id}")
        return rows[0]

    def objects(
        self, image_id: int | None = None, states=("accepted",), label_status=None
    ) -> list[ObjectRecord]:
        """Objects (by image, state and label status), in id order."""
        sql = f"SELECT {_OBJECT_FIELDS} FROM objects WHERE state IN ({','.join('?' * len(states))})"
        params: list = list(states)
        if image_id is not None:
            sql += " AND image_id=?"
            params.append(image_id)
        if label_status is not None:
            sql += f" AND label_status IN ({','.join('?' * len(label_status))})"
            params.extend(label_status)
        return self._objects(sql + " ORDER BY id", params)

    def objects_by_id(self, ids) -> list[ObjectRecord]:
        """Objects with these ids, in one query per 500 ids (callers that label or estimate whole runs)."""
        ids = list(ids)
        out: list[ObjectRecord] = []
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            out += self._objects(f"SELECT {_OBJECT_FIELDS} FROM objects WHERE id IN ({','.join('?' * len(chunk))})",
                                 chunk)
        order = {oid: n for n, oid in enumerate(ids)}
        return sorted(out, key=lambda o: order[o.id])

    def count_objects(self, states=("accepted",)) -> int:
        q = f"SELECT COUNT(*) FROM objects WHERE state IN ({','.join('?' * len(states))})"
        return int(self.conn.execute(q, tuple(states)).fetchone()[0])

    def _objects(self, sql, params) -> list[ObjectRecord]:
        out = []
        rows = self.conn.execute(sql, params).fetchall()
        sizes = {}
        for r in rows:
            img = r[1]
            if img not in sizes:
                sizes[img] = self.conn.execute("SELECT height, width FROM images WHERE id=?", (img,)).fetchone()
            h, w = sizes[img]
            rle = {"size": [h, w], "counts": r[2]}
            out.append(ObjectRecord(r[0], r[1], rle, tuple(json.loads(r[3])), *r[4:]))
        return out

    def delete(self, object_id: int) -> None:
        """Delete (soft) an object; undoable."""
        with self.transaction():
            prev = self._state(object_id)
            self.conn.execute("UPDATE objects SET state='deleted', updated=? WHERE id=?", (time.time(), object_id))
            self._event("delete", self._image_of(object_id), object_id, {"before": prev})

    def decide_proposal(self, object_id: int, accept: bool) -> None:
        """Accept or reject a proposed object; undoable, and logged for the comparison report."""
        with self.transaction():
            prev = self._state(object_id)
            if prev != "proposed":
                raise StoreError(f"object {object_id} is {prev}, not a proposal")
            new = "accepted" if accept else "rejected"
            self.conn.execute("UPDATE objects SET state=?, updated=? WHERE id=?", (new, time.time(), object_id))
            kind = "accept_proposal" if accept else "reject_proposal"
            self._event(kind, self._image_of(object_id), object_id, {"before": prev})

    def relabel(self, object_id: int, label: str, coarse: str | None = None, source: str = "human") -> None:
        """A person sets the label (status 'edited'); the old label stays in the history; undoable."""
        with self.transaction():
            before = self._label_fields(object_id)
            cid = self._category_id(label, coarse)
            self.conn.execute(
                "UPDATE objects SET label=?, coarse=COALESCE(?, coarse), category_id=?, label_status='edited', "
                "updated=? WHERE id=?",
                (label, coarse, cid, time.time(), object_id),
            )
            self._history(object_id, label, coarse, None, "edited", source)
            self._event("relabel", self._image_of(object_id), object_id, {"before": before, "label": label})

    def set_label(
        self,
        object_id: int,
        label: str,
        coarse: str | None,
        confidence: float | None,
        lmm_model: str,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        cost: float = 0.0,
    ) -> None:
        """Store the model's label (status 'done') and add its token use and cost to the object's totals."""
        with self.transaction():
            cid = self._category_id(label, coarse)
            self.conn.execute(
                "UPDATE objects SET label=?, coarse=?, category_id=?, label_status='done', label_confidence=?, "
                "label_error=NULL, lmm_model=?, prompt_tokens=prompt_tokens+?, "
                "completion_tokens=completion_tokens+?, cost=cost+?, updated=? WHERE id=?",
                (label, coarse, cid, confidence, lmm_model, prompt_tokens, completion_tokens, cost, time.time(),
                 object_id),
            )
            self._history(object_id, label, coarse, confidence, "done", lmm_model)
            self._event("label", self._image_of(object_id), object_id, {"label": label, "model": lmm_model})

    def set_label_failed(
        self, object_id: int, reason: str, lmm_model: str | None = None, prompt_tokens: int = 0,
        completion_tokens: int = 0, cost: float = 0.0,
    ) -> None:
        """Mark the object's label as failed with a reason (the object itself is kept); tokens still count."""
        with self.transaction():
            self.conn.execute(
                "UPDATE objects SET label_status='failed', label_error=?, lmm_model=COALESCE(?, lmm_model), "
                "prompt_tokens=prompt_tokens+?, completion_tokens=completion_tokens+?, cost=cost+?, updated=? "
                "WHERE id=?",
                (reason[:500], lmm_model, prompt_tokens, completion_tokens, cost, time.time(), object_id),
            )
            self._event("label_failed", self._image_of(object_id), object_id, {"reason": reason[:500]})

    def mark_pending(self, object_ids) -> None:
        """Queue objects for (re)labelling."""
        with self.transaction():
            self.conn.executemany(
                "UPDATE objects SET label_status='pending', label_error=NULL WHERE id=?", [(i,) for i in object_ids]
            )

    def label_history(self, object_id: int) -> list[tuple]:
        q = "SELECT label, coarse, confidence, status, source, t FROM label_history WHERE object_id=? ORDER BY id"
        return [tuple(r) for r in self.conn.execute(q, (object_id,))]

    def usage(self) -> dict:
        """Token and money totals over the project."""
        r = self.conn.execute(
            "SELECT COALESCE(SUM(prompt_tokens),0), COALESCE(SUM(completion_tokens),0), COALESCE(SUM(cost),0) "
            "FROM objects"
        ).fetchone()
        return {"prompt_tokens": int(r[0]), "completion_tokens": int(r[1]), "cost": float(r[2])}

    def _history(self, object_id, label, coarse, confidence, status, source) -> None:
        self.conn.execute(
            "INSERT INTO label_history(object_id, label, coarse, confidence, status, source, t) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (object_id, label, coarse, confidence, status, source, time.time()),
        )

    def _state(self, object_id: int) -> str:
        row = self.conn.execute("SELECT state FROM objects WHERE id=?", (object_id,)).fetchone()
        if row is None:
            raise StoreError(f"no object with id {object_id}")
        return row[0]

    def _image_of(self, object_id: int) -> int:
        return int(self.conn.execute("SELECT image_id FROM objects WHERE id=?", (object_id,)).fetchone()[0])

    def _label_fields(self, object_id: int) -> dict:
        r = self.conn.execute(
            "SELECT label, coarse, category_id, label_status, label_confidence FROM objects WHERE id=?", (object_id,)
        ).fetchone()
        if r is None:
            raise StoreError(f"no object with id {object_id}")
        return dict(zip(("label", "coarse", "category_id", "label_status", "label_confidence"), r))

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


class _Transaction:
    def __init__(self, store: Store):
        self.store = store
        self.outer = False

    def __enter__(self):
        self.store._lock.acquire()
        self.outer = not self.store.conn.in_transaction
        if self.outer:
            self.store.conn.execute("BEGIN IMMEDIATE")
        return self.store.conn

    def __exit__(self, exc_type, exc, tb):
        try:
            if self.outer:
                self.store.conn.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.store._lock.release()
        return False
