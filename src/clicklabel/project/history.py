"""Undo / redo for the project store, from its event log (not from any widget's state)."""

from __future__ import annotations

import json
import time

from .schema import UNDOABLE


class History:
    """Mixed into ``Store``: uses its ``conn``, ``transaction()``, ``_category_id``, ``_set_fields`` (boxes.py) and
    ``_take_label`` (checks.py)."""

    def undo(self) -> dict | None:
        """Undo the latest undoable action; returns {'kind', 'object_id', 'image_id'} or None if nothing to undo."""
        return self._step(undo=True)

    def redo(self) -> dict | None:
        """Redo the most recently undone action (if no new action came since)."""
        return self._step(undo=False)

    def _step(self, undo: bool) -> dict | None:
        kinds = ",".join("?" * len(UNDOABLE))
        with self.transaction():
            q = (f"SELECT id, kind, object_id, image_id, data FROM events WHERE undone=? AND kind IN ({kinds}) "
                 f"ORDER BY id {'DESC' if undo else 'ASC'} LIMIT 1")
            row = self.conn.execute(q, (0 if undo else 1, *UNDOABLE)).fetchone()
            if row is None:
                return None
            eid, kind, oid, iid, data = row
            self._apply(kind, oid, json.loads(data) if data else {}, undo=undo)
            self.conn.execute("UPDATE events SET undone=? WHERE id=?", (1 if undo else 0, eid))
            self.conn.execute("INSERT INTO events(t, kind, image_id, object_id, data) VALUES (?, ?, ?, ?, ?)",
                              (time.time(), "undo" if undo else "redo", iid, oid,
                               json.dumps({"event": eid, "kind": kind})))
            return {"kind": kind, "object_id": oid, "image_id": iid}

    def _apply(self, kind: str, oid: int, data: dict, undo: bool) -> None:
        now = time.time()
        if kind == "accept":
            self.conn.execute("UPDATE objects SET state=?, updated=? WHERE id=?",
                              ("deleted" if undo else "accepted", now, oid))
        elif kind == "delete":
            self.conn.execute("UPDATE objects SET state=?, updated=? WHERE id=?",
                              (data["before"] if undo else "deleted", now, oid))
        elif kind in ("accept_proposal", "reject_proposal"):
            after = "accepted" if kind == "accept_proposal" else "rejected"
            self.conn.execute("UPDATE objects SET state=?, updated=? WHERE id=?",
                              ("proposed" if undo else after, now, oid))
            if "corrected" in data:  # accepted with a mask corrected by clicks: the proposal's own mask on undo
                self._set_shape(oid, data["corrected"]["before" if undo else "after"])
        elif kind == "refine":
            self._set_fields(oid, data["before" if undo else "after"])
        elif kind == "review":
            self._set_fields(oid, {"review": data["before"] if undo else None})
        elif kind == "decide_check":
            if data["decision"] == "accepted":
                if undo:
                    self._restore_label(oid, data["before"], now)
                else:
                    self._take_label(oid, data["label"], data.get("supercategory"))
            self.conn.execute("UPDATE label_checks SET decision=? WHERE object_id=?",
                              (None if undo else data["decision"], oid))
        elif kind == "relabel":
            if undo:
                self._restore_label(oid, data["before"], now)
            else:
                cid = self._category_id(data["label"], None)
                self.conn.execute(
                    "UPDATE objects SET label=?, category_id=?, label_status='edited', updated=? WHERE id=?",
                    (data["label"], cid, now, oid),
                )

    def _restore_label(self, oid: int, b: dict, now: float) -> None:
        self.conn.execute(
            "UPDATE objects SET label=?, supercategory=?, category_id=?, label_status=?, label_confidence=?, "
            "updated=? WHERE id=?",
            (b["label"], b.get("supercategory", b.get("coarse")),  # "coarse": events of schema 1
             b["category_id"], b["label_status"], b["label_confidence"], now, oid),
        )
