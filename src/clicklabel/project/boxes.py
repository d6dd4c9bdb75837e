"""Box-only objects and refine's results in the store. An object from a detection data set has a box and no mask
yet (``mask_state`` 'box'); ``set_masks`` writes the masks refine made for such objects (the box they came with
is kept as ``given_bbox``) or marks for review those it doubts, and ``resolve_review`` is a person's "this one is
fine". Each change is one undoable event (``refine``, ``review``), replayed by ``history.py``."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import numpy as np

from ..errors import StoreError
from ..masks import encode_rle, tight_bbox

# What a refine changes on an object (and its undo puts back).
REFINE_FIELDS = ("rle", "bbox", "area", "mask_state", "given_bbox", "refined_by", "review", "score", "engine", "model")


@dataclass
class MaskUpdate:
    """Refine's result for one object."""

    object_id: int
    updated: float  # the object's ``updated`` when it was read: if it changed since, the change wins
    mask: np.ndarray | None  # the new mask at the image's size; None (or empty) keeps the object as it is
    review: str | None  # why a person should look at it; None when nothing is wrong
    refined_by: str | None  # the engine's model_id
    score: float | None = None
    engine: str | None = None
    model: str | None = None
    given: bool = True  # keep the box it had as the given box (refine); False: a person's edit of the mask


class BoxesMixin:
    """Part of ``Store``: uses its ``conn``, ``transaction()`` and ``_event``."""

    def set_masks(self, updates: list[MaskUpdate]) -> list[int]:
        """Write refine's results in one transaction, one undoable ``refine`` event per object; returns the ids
        written. An object deleted or changed since it was read is left alone (a person's change wins)."""
        written = []
        cols = ", ".join(REFINE_FIELDS)
        with self.transaction():
            for u in updates:
                row = self.conn.execute(
                    f"SELECT o.state, o.updated, o.image_id, i.height, i.width, {cols} FROM objects o "
                    "JOIN images i ON i.id = o.image_id WHERE o.id=?", (u.object_id,)).fetchone()
                if row is None or row[0] == "deleted" or row[1] != u.updated:
                    continue
                before = dict(zip(REFINE_FIELDS, row[5:]))
                after = dict(before, review=u.review, refined_by=u.refined_by)
                box = tight_bbox(u.mask) if u.mask is not None else None
                if box is not None:
                    if u.mask.shape != (row[3], row[4]):
                        raise StoreError(f"object {u.object_id}: a {u.mask.shape[1]}x{u.mask.shape[0]} mask for a "
                                         f"{row[4]}x{row[3]} image")
                    given = (before["given_bbox"] or before["bbox"]) if u.given else before["given_bbox"]
                    after.update(rle=encode_rle(u.mask)["counts"], bbox=json.dumps([float(v) for v in box]),
                                 area=int(np.count_nonzero(u.mask)), mask_state="mask", given_bbox=given,
                                 score=u.score, engine=u.engine, model=u.model)
                self._set_fields(u.object_id, after)
                self._event("refine", row[2], u.object_id, {"before": before, "after": after})
                written.append(u.object_id)
        return written

    def resolve_review(self, object_id: int) -> None:
        """A person looked at an object marked for review and keeps it as it is (undoable)."""
        with self.transaction():
            row = self.conn.execute("SELECT review, image_id FROM objects WHERE id=?", (object_id,)).fetchone()
            if row is None:
                raise StoreError(f"no object with id {object_id}")
            if row[0] is None:
                return
            self._set_fields(object_id, {"review": None})
            self._event("review", row[1], object_id, {"before": row[0]})

    def count_mask_states(self) -> dict[str, int]:
        """Accepted objects by mask state ('mask', 'box'), and how many are marked for review ('review')."""
        out = dict(self.conn.execute("SELECT mask_state, COUNT(*) FROM objects WHERE state='accepted' "
                                     "GROUP BY mask_state").fetchall())
        out["review"] = self.conn.execute("SELECT COUNT(*) FROM objects WHERE state='accepted' AND review IS NOT "
                                          "NULL").fetchone()[0]
        return {"mask": out.get("mask", 0), "box": out.get("box", 0), "review": out["review"]}

    def _set_fields(self, object_id: int, values: dict) -> None:
        """Inside a transaction: set some of REFINE_FIELDS (and ``updated``)."""
        keys = [k for k in values if k in REFINE_FIELDS]
        self.conn.execute(f"UPDATE objects SET {', '.join(f'{k}=?' for k in keys)}, updated=? WHERE id=?",
                          (*(values[k] for k in keys), time.time(), object_id))
