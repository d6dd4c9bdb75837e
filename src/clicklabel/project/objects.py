"""The project's objects: accepting masks (and proposals), reading them back, and every change to them (delete,
proposal decisions, labels from the model or a person). Mixed into ``Store``; each change is one transaction with
its event, so undo (``history.py``) and the comparison report can replay it."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass

import numpy as np

from ..errors import StoreError
from ..masks import decode_rle, empty_rle, encode_rle, rle_area, rle_bbox, tight_bbox
from .schema import MASK_STATES, MAX_LABEL_CHARS, PROVENANCES

_OBJECT_FIELDS = (
    "id, image_id, rle, bbox, area, iscrowd, state, category_id, label, supercategory, label_status, "
    "label_confidence, label_error, provenance, clicks, seconds, score, engine, model, lmm_model, prompt_tokens, "
    "completion_tokens, cost, source_id, created, updated, mask_state, given_bbox, refined_by, review"
)


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
    supercategory: str | None
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
    mask_state: str = "mask"  # 'box': a box without a mask yet (its mask is empty, ``bbox`` is the box)
    given_bbox: tuple[float, float, float, float] | None = None  # the box it came with, kept after refine
    refined_by: str | None = None  # the engine (model_id) that refine last ran on it
    review: str | None = None  # why a person should look at it (refine's doubt), None when nothing is wrong

    @property
    def has_mask(self) -> bool:
        return self.mask_state == "mask"

    @property
    def mask(self) -> np.ndarray:
        """The mask at the image's size (empty for a box-only object: check ``has_mask``)."""
        return decode_rle(self.rle)


class ObjectsMixin:
    """Part of ``Store``: uses its ``conn``, ``transaction()``, ``_event`` and ``_category_id``."""

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
        supercategory: str | None = None,
        state: str = "accepted",
        iscrowd: int = 0,
        bbox: tuple | None = None,
        source_id: int | None = None,
        event: str | None = "accept",
        mask_state: str = "mask",
        object_id: int | None = None,
    ) -> int:
        """Write one object (mask or RLE) in one transaction; returns its id. ``state='proposed'`` for proposals.
        ``mask_state='box'``: an object with a box (``bbox``, its size > 0) and no mask yet; its area is the box's.
        ``object_id``: the id to give it if free (an import of clicklabel's own export keeps its ids)."""
        if provenance not in PROVENANCES:
            raise StoreError(f"unknown provenance {provenance!r}; one of {', '.join(PROVENANCES)}")
        if mask_state not in MASK_STATES:
            raise StoreError(f"unknown mask state {mask_state!r}; one of {', '.join(MASK_STATES)}")
        if mask_state == "box":
            if bbox is None or len(bbox) != 4 or not all(math.isfinite(float(v)) for v in bbox) \
                    or not (float(bbox[2]) > 0 and float(bbox[3]) > 0):
                raise StoreError(f"a box-only object needs a box x, y, w, h with w, h > 0, not {bbox}")
            size = self.conn.execute("SELECT height, width FROM images WHERE id=?", (image_id,)).fetchone()
            if size is None:
                raise StoreError(f"no image with id {image_id}")
            rle, mask = empty_rle(*size), None
        if rle is None:
            if mask is None:
                raise StoreError("accept needs a mask or an RLE")
            rle = encode_rle(mask)
            box = tight_bbox(mask)
            area = int(np.count_nonzero(mask))
        else:
            if not isinstance(rle["counts"], str):  # keep one form in the store: compressed counts as text
                rle = encode_rle(decode_rle(rle))
            box, area = rle_bbox(rle), rle_area(rle)
        if bbox is None:
            bbox = box or (0, 0, 0, 0)
        bbox = tuple(float(v) for v in bbox)
        if mask_state == "box":
            area = bbox[2] * bbox[3]  # COCO's area of a box-only annotation
        if len(bbox) != 4 or not all(math.isfinite(v) for v in bbox) or bbox[2] < 0 or bbox[3] < 0:
            raise StoreError(f"bbox {list(bbox)} is not four finite numbers x, y, w, h with w, h >= 0")
        now = time.time()
        status = "done" if label and provenance == "imported" else "pending"
        with self.transaction():
            cid = self._category_id(label, supercategory) if label else None
            if object_id is not None and self.conn.execute("SELECT 1 FROM objects WHERE id=?",
                                                           (object_id,)).fetchone():
                object_id = None
            cur = self.conn.execute(
                "INSERT INTO objects(id, image_id, rle, bbox, area, iscrowd, state, category_id, label, supercategory, "
                "label_status, provenance, clicks, seconds, score, engine, model, source_id, created, updated, "
                "mask_state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    object_id, image_id, rle["counts"],
                    json.dumps(list(bbox)), area, iscrowd, state, cid, label, supercategory, status,
                    provenance, clicks, seconds, score, engine, model, source_id, now, now, mask_state,
                ),
            )
            oid = int(cur.lastrowid)
            if label:
                self._history(oid, label, supercategory, None, status, provenance)
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
        self, image_id: int | None = None, states=("accepted",), label_status=None, mask_state=None,
        flagged: bool = False,
    ) -> list[ObjectRecord]:
        """Objects (by image, state, label status, mask state; ``flagged``: only those marked for review), in id
        order."""
        sql = f"SELECT {_OBJECT_FIELDS} FROM objects WHERE state IN ({','.join('?' * len(states))})"
        params: list = list(states)
        if mask_state is not None:
            sql += " AND mask_state=?"
            params.append(mask_state)
        if flagged:
            sql += " AND review IS NOT NULL"
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
            given = tuple(json.loads(r[27])) if r[27] else None
            out.append(ObjectRecord(r[0], r[1], rle, tuple(json.loads(r[3])), *r[4:27], given, *r[28:]))
        return out

    def delete(self, object_id: int) -> None:
        """Delete (soft) an object; undoable."""
        with self.transaction():
            prev = self._state(object_id)
            self.conn.execute("UPDATE objects SET state='deleted', updated=? WHERE id=?", (time.time(), object_id))
            self._holds(object_id, None)  # a labelling run in flight must not write to it
            self._event("delete", self._image_of(object_id), object_id, {"before": prev})

    def decide_proposal(self, object_id: int, accept: bool, mask: np.ndarray | None = None,
                        clicks: int | None = None, seconds: float | None = None) -> None:
        """Accept or reject a proposed object; undoable, and logged for the comparison report. Accepting with a
        ``mask`` (the proposal corrected by ``clicks`` prompts) stores that mask instead; undo brings the
        proposal's own mask back."""
        with self.transaction():
            prev = self._state(object_id)
            if prev != "proposed":
                raise StoreError(f"object {object_id} is {prev}, not a proposal")
            new = "accepted" if accept else "rejected"
            data: dict = {"before": prev}
            if accept and mask is not None:
                if not mask.any():
                    raise StoreError("the corrected mask is empty")
                row = self.conn.execute("SELECT rle, bbox, area, clicks, seconds FROM objects WHERE id=?",
                                        (object_id,)).fetchone()
                after = encode_rle(mask)["counts"], json.dumps([float(v) for v in tight_bbox(mask)]), \
                    int(np.count_nonzero(mask)), clicks, seconds
                data["corrected"] = {"before": list(row), "after": list(after)}
                self._set_shape(object_id, after)
            self.conn.execute("UPDATE objects SET state=?, updated=? WHERE id=?", (new, time.time(), object_id))
            kind = "accept_proposal" if accept else "reject_proposal"
            self._event(kind, self._image_of(object_id), object_id, data)

    def _set_shape(self, object_id: int, shape) -> None:
        """(rle counts, bbox JSON, area, clicks, seconds) of an object: a corrected proposal, its undo and redo."""
        self.conn.execute("UPDATE objects SET rle=?, bbox=?, area=?, clicks=?, seconds=? WHERE id=?",
                          (*shape, object_id))

    def relabel(self, object_id: int, label: str, supercategory: str | None = None, source: str = "human") -> None:
        """A person sets the label (status 'edited'); the old label stays in the history; undoable."""
        if not label or len(label) > MAX_LABEL_CHARS:
            raise StoreError(f"a label has 1 to {MAX_LABEL_CHARS} characters, not {len(label)}")
        with self.transaction():
            before = self._label_fields(object_id)
            self._holds(object_id, None)  # the person's label wins over a model answer in flight
            cid = self._category_id(label, supercategory)
            self.conn.execute(
                "UPDATE objects SET label=?, supercategory=COALESCE(?, supercategory), category_id=?, "
                "label_status='edited', updated=? WHERE id=?",
                (label, supercategory, cid, time.time(), object_id),
            )
            self._history(object_id, label, supercategory, None, "edited", source)
            self._event("relabel", self._image_of(object_id), object_id, {"before": before, "label": label})

    def set_label(
        self,
        object_id: int,
        label: str,
        supercategory: str | None,
        confidence: float | None,
        lmm_model: str,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        cost: float = 0.0,
        lease: str | None = None,
    ) -> bool:
        """Store the model's label (status 'done') and add its token use and cost to the object's totals. With
        ``lease`` (a labelling run's owner id), only if that run still holds the object; returns whether stored."""
        with self.transaction():
            if not self._holds(object_id, lease):
                return False
            cid = self._category_id(label, supercategory)
            self.conn.execute(
                "UPDATE objects SET label=?, supercategory=?, category_id=?, label_status='done', label_confidence=?, "
                "label_error=NULL, lmm_model=?, prompt_tokens=prompt_tokens+?, "
                "completion_tokens=completion_tokens+?, cost=cost+?, updated=? WHERE id=?",
                (label, supercategory, cid, confidence, lmm_model, prompt_tokens, completion_tokens, cost, time.time(),
                 object_id),
            )
            self._history(object_id, label, supercategory, confidence, "done", lmm_model)
            self._event("label", self._image_of(object_id), object_id, {"label": label, "model": lmm_model})
        return True

    def set_label_failed(
        self, object_id: int, reason: str, lmm_model: str | None = None, prompt_tokens: int = 0,
        completion_tokens: int = 0, cost: float = 0.0, lease: str | None = None,
    ) -> bool:
        """Mark the object's label as failed with a reason (the object itself is kept); tokens still count. With
        ``lease``, only if that run still holds the object; returns whether stored."""
        with self.transaction():
            if not self._holds(object_id, lease):
                return False
            self.conn.execute(
                "UPDATE objects SET label_status='failed', label_error=?, lmm_model=COALESCE(?, lmm_model), "
                "prompt_tokens=prompt_tokens+?, completion_tokens=completion_tokens+?, cost=cost+?, updated=? "
                "WHERE id=?",
                (reason[:500], lmm_model, prompt_tokens, completion_tokens, cost, time.time(), object_id),
            )
            self._event("label_failed", self._image_of(object_id), object_id, {"reason": reason[:500]})
        return True

    def mark_pending(self, object_ids) -> None:
        """Queue objects for (re)labelling."""
        with self.transaction():
            self.conn.executemany(
                "UPDATE objects SET label_status='pending', label_error=NULL WHERE id=?", [(i,) for i in object_ids]
            )

    def label_history(self, object_id: int) -> list[tuple]:
        q = ("SELECT label, supercategory, confidence, status, source, t FROM label_history WHERE object_id=? "
             "ORDER BY id")
        return [tuple(r) for r in self.conn.execute(q, (object_id,))]

    def usage(self) -> dict:
        """Token and money totals over the project."""
        r = self.conn.execute(
            "SELECT COALESCE(SUM(prompt_tokens),0), COALESCE(SUM(completion_tokens),0), COALESCE(SUM(cost),0) "
            "FROM objects"
        ).fetchone()
        return {"prompt_tokens": int(r[0]), "completion_tokens": int(r[1]), "cost": float(r[2])}

    def _history(self, object_id, label, supercategory, confidence, status, source) -> None:
        self.conn.execute(
            "INSERT INTO label_history(object_id, label, supercategory, confidence, status, source, t) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (object_id, label, supercategory, confidence, status, source, time.time()),
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
            "SELECT label, supercategory, category_id, label_status, label_confidence FROM objects WHERE id=?",
            (object_id,),
        ).fetchone()
        if r is None:
            raise StoreError(f"no object with id {object_id}")
        return dict(zip(("label", "supercategory", "category_id", "label_status", "label_confidence"), r))

