"""Sequences and tracks in the project store (mixed into ``Store``).

A sequence is ordered images of the project (video frames, a folder of frames, the pages of a TIFF stack): each
frame is an ordinary image row with its ``sequence_id`` and ``frame_index``, so reading pixels, the embedding cache,
labelling and COCO export treat frames like any other image. A track groups one object's per-frame objects; each of
them is an ordinary object with its ``track_id`` and ``track_role`` ('annotated': a person made it, propagation keeps
it; 'propagated': propagation made it and may replace it).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np

from ..errors import StoreError
from ..masks import encode_rle, tight_bbox
from .schema import TRACK_ROLES

SEQUENCE_KINDS = ("video", "folder", "tiff")


@dataclass
class SequenceRecord:
    id: int
    name: str
    kind: str  # 'video', 'folder' or 'tiff'
    source: str | None  # the video or TIFF file, or the folder, as given
    fps: float | None  # frames per second of the source video (before --step)
    step: int  # every step-th source frame was taken
    frames: int  # how many frames the project holds


@dataclass
class TrackObject:
    object_id: int
    image_id: int
    frame_index: int
    role: str  # 'annotated' or 'propagated'
    score: float | None


class SequencesMixin:
    """Part of ``Store``: uses its ``conn``, ``transaction()``, ``_event`` and ``add_image``."""

    def add_sequence(self, name: str, kind: str, source: str | None = None, fps: float | None = None,
                     step: int = 1) -> int:
        """A new sequence's id (names are unique in a project)."""
        if kind not in SEQUENCE_KINDS:
            raise StoreError(f"unknown sequence kind {kind!r}; one of {', '.join(SEQUENCE_KINDS)}")
        with self.transaction():
            if self.conn.execute("SELECT 1 FROM sequences WHERE name=?", (name,)).fetchone():
                raise StoreError(f"the project already has a sequence named {name!r}")
            cur = self.conn.execute("INSERT INTO sequences(name, kind, source, fps, step, created) "
                                    "VALUES (?, ?, ?, ?, ?, ?)", (name, kind, source, fps, int(step), time.time()))
            return int(cur.lastrowid)

    def add_frame(self, sequence_id: int, frame_index: int, path, width: int, height: int,
                  hash: str | None = None) -> int:
        """Add an image as frame ``frame_index`` of a sequence (an image already in the project joins it)."""
        image_id = self.add_image(path, width, height, hash)
        with self.transaction():
            row = self.conn.execute("SELECT sequence_id, frame_index FROM images WHERE id=?", (image_id,)).fetchone()
            if row[0] is not None and (row[0], row[1]) != (sequence_id, frame_index):
                raise StoreError(f"{path} is already frame {row[1]} of sequence {row[0]}")
            self.conn.execute("UPDATE images SET sequence_id=?, frame_index=? WHERE id=?",
                              (sequence_id, int(frame_index), image_id))
        return image_id

    def sequences(self) -> list[SequenceRecord]:
        rows = self.conn.execute(
            "SELECT s.id, s.name, s.kind, s.source, s.fps, s.step, COUNT(i.id) FROM sequences s "
            "LEFT JOIN images i ON i.sequence_id = s.id GROUP BY s.id ORDER BY s.id").fetchall()
        return [SequenceRecord(*r) for r in rows]

    def sequence(self, key: int | str) -> SequenceRecord:
        """A sequence by id, or by name (a name made of digits is tried as an id first)."""
        for s in self.sequences():
            if s.id == key or s.name == key or (isinstance(key, str) and key.isdigit() and s.id == int(key)):
                return s
        names = ", ".join(f"{s.id} ({s.name})" for s in self.sequences()) or "none yet: `clicklabel add` one"
        raise StoreError(f"no sequence {key!r} in the project; sequences: {names}")

    def frame_ids(self, sequence_id: int) -> list[int]:
        """The image ids of a sequence's frames, in frame order (position n holds frame n)."""
        rows = self.conn.execute("SELECT id FROM images WHERE sequence_id=? ORDER BY frame_index",
                                 (sequence_id,)).fetchall()
        return [int(r[0]) for r in rows]

    def frame_of(self, image_id: int) -> tuple[int, int] | None:
        """(sequence id, frame index) of an image, or None for an image outside any sequence."""
        row = self.conn.execute("SELECT sequence_id, frame_index FROM images WHERE id=?", (image_id,)).fetchone()
        if row is None:
            raise StoreError(f"no image with id {image_id}")
        return None if row[0] is None else (int(row[0]), int(row[1]))

    def frame_table(self) -> dict[int, tuple[int, int]]:
        """image id -> (sequence id, frame index) for every frame of every sequence (one query, for export)."""
        rows = self.conn.execute("SELECT id, sequence_id, frame_index FROM images WHERE sequence_id IS NOT NULL")
        return {int(i): (int(s), int(f)) for i, s, f in rows}

    def object_tracks(self) -> dict[int, int]:
        """object id -> track id for every accepted object of a track (one query, for export)."""
        rows = self.conn.execute("SELECT id, track_id FROM objects WHERE track_id IS NOT NULL AND state='accepted'")
        return {int(o): int(t) for o, t in rows}

    # -- tracks ---------------------------------------------------------------------------------------------
    def new_track(self, sequence_id: int) -> int:
        with self.transaction():
            cur = self.conn.execute("INSERT INTO tracks(sequence_id, created) VALUES (?, ?)",
                                    (sequence_id, time.time()))
            return int(cur.lastrowid)

    def tracks(self, sequence_id: int | None = None) -> list[tuple[int, int]]:
        """(track id, sequence id) of every track, or of one sequence's."""
        sql, params = "SELECT id, sequence_id FROM tracks", ()
        if sequence_id is not None:
            sql, params = sql + " WHERE sequence_id=?", (sequence_id,)
        return [(int(a), int(b)) for a, b in self.conn.execute(sql + " ORDER BY id", params)]

    def track_sequence(self, track_id: int) -> int:
        row = self.conn.execute("SELECT sequence_id FROM tracks WHERE id=?", (track_id,)).fetchone()
        if row is None:
            raise StoreError(f"no track with id {track_id}")
        return int(row[0])

    def track_of(self, object_id: int) -> int | None:
        row = self.conn.execute("SELECT track_id FROM objects WHERE id=?", (object_id,)).fetchone()
        if row is None:
            raise StoreError(f"no object with id {object_id}")
        return None if row[0] is None else int(row[0])

    def track_objects(self, track_id: int) -> dict[int, TrackObject]:
        """The track's accepted objects by frame index."""
        rows = self.conn.execute(
            "SELECT o.id, o.image_id, i.frame_index, o.track_role, o.score FROM objects o JOIN images i "
            "ON i.id = o.image_id WHERE o.track_id=? AND o.state='accepted' ORDER BY i.frame_index", (track_id,))
        return {int(r[2]): TrackObject(int(r[0]), int(r[1]), int(r[2]), r[3], r[4]) for r in rows}

    def join_track(self, object_id: int, track_id: int, role: str = "annotated") -> None:
        """Make an existing object (a mask a person accepted) part of a track."""
        if role not in TRACK_ROLES:
            raise StoreError(f"unknown track role {role!r}")
        with self.transaction():
            self.conn.execute("UPDATE objects SET track_id=?, track_role=? WHERE id=?", (track_id, role, object_id))

    def write_track_frame(self, track_id: int, image_id: int, mask: np.ndarray | None, *, role: str,
                          score: float | None, engine: str | None, model: str | None,
                          provenance: str = "click", clicks: int | None = None) -> int | None:
        """Set the track's object on one frame: update its mask (object ids stay, labels with them), add it, or,
        when ``mask`` is None or empty (the object is not on this frame), delete the propagated one. An
        'annotated' object is never replaced by a 'propagated' mask. Returns the object id, or None."""
        if role not in TRACK_ROLES:
            raise StoreError(f"unknown track role {role!r}")
        now = time.time()
        with self.transaction():
            row = self.conn.execute("SELECT id, track_role FROM objects WHERE track_id=? AND image_id=? AND "
                                    "state='accepted'", (track_id, image_id)).fetchone()
            if row is not None and row[1] == "annotated" and role == "propagated":
                return int(row[0])
            if mask is None or not mask.any():
                if row is not None:
                    self.conn.execute("UPDATE objects SET state='deleted', updated=? WHERE id=?", (now, row[0]))
                return None
            rle, box, area = encode_rle(mask), tight_bbox(mask), int(np.count_nonzero(mask))
            if row is not None:
                self.conn.execute("UPDATE objects SET rle=?, bbox=?, area=?, score=?, track_role=?, engine=?, "
                                  "model=?, updated=? WHERE id=?",
                                  (rle["counts"], json.dumps([float(v) for v in box]), area, score, role, engine,
                                   model, now, row[0]))
                return int(row[0])
            label = self.conn.execute(
                "SELECT category_id, label, supercategory, label_status, label_confidence FROM objects WHERE "
                "track_id=? AND state='accepted' AND label IS NOT NULL ORDER BY id LIMIT 1", (track_id,)).fetchone()
            label = label or (None, None, None, "pending", None)
            cur = self.conn.execute(
                "INSERT INTO objects(image_id, rle, bbox, area, state, category_id, label, supercategory, "
                "label_status, label_confidence, provenance, clicks, score, engine, model, created, updated, "
                "track_id, track_role) VALUES (?, ?, ?, ?, 'accepted', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (image_id, rle["counts"], json.dumps([float(v) for v in box]), area, *label, provenance, clicks,
                 score, engine, model, now, now, track_id, role))
            return int(cur.lastrowid)

    def set_track_label(self, track_id: int, label: str, supercategory: str | None = None,
                        confidence: float | None = None, status: str = "done") -> int:
        """Give every object of a track one label (the model labels a track once, from its best frame); returns
        how many objects changed."""
        with self.transaction():
            cid = self._category_id(label, supercategory)
            cur = self.conn.execute(
                "UPDATE objects SET category_id=?, label=?, supercategory=?, label_status=?, label_confidence=?, "
                "updated=? WHERE track_id=? AND state='accepted'",
                (cid, label, supercategory, status, confidence, time.time(), track_id))
            self._event("track_label", None, None, {"track": track_id, "label": label})
            return cur.rowcount

    def one_per_track(self, object_ids: list[int]) -> list[int]:
        """``object_ids`` with each track's objects replaced by its best one (labelling asks once per track)."""
        tracks = self.object_tracks()
        if not tracks:
            return list(object_ids)
        out, seen = [], set()
        for oid in object_ids:
            track = tracks.get(oid)
            if track is None:
                out.append(oid)
            elif track not in seen:
                seen.add(track)
                out.append(self.best_track_object(track))
        return out

    def spread_track_labels(self, object_ids) -> None:
        """Give each labelled object's label to the rest of its track."""
        tracks = self.object_tracks()
        for oid in object_ids:
            if oid in tracks:
                ob = self.object(oid)
                if ob.label and ob.label_status in ("done", "edited"):
                    self.set_track_label(tracks[oid], ob.label, ob.supercategory, ob.label_confidence,
                                         ob.label_status)

    def best_track_object(self, track_id: int) -> int | None:
        """The track's object to show the model: an annotated one first, then the highest score, then the
        largest."""
        row = self.conn.execute(
            "SELECT id FROM objects WHERE track_id=? AND state='accepted' ORDER BY track_role='annotated' DESC, "
            "COALESCE(score, 0) DESC, area DESC LIMIT 1", (track_id,)).fetchone()
        return None if row is None else int(row[0])
