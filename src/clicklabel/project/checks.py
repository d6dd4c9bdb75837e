"""The class audit in the store: the model's label for objects that already have one (``clicklabel label --check``),
whether it agrees with theirs, and a person's decision on a disagreement: take the model's label, or keep the
object's own. Nothing changes an object's label without that decision, and each decision is one undoable event
(``decide_check``, replayed by ``history.py``)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..errors import StoreError

_FIELDS = ("c.object_id, o.image_id, c.given, c.label, c.supercategory, c.confidence, c.verdict, c.error, "
           "c.lmm_model, c.decision, c.t, o.label")


@dataclass
class CheckRecord:
    object_id: int
    image_id: int
    given: str  # the object's label when it was checked
    label: str | None  # the model's label (None when the check failed)
    supercategory: str | None
    confidence: float | None
    verdict: str  # agree, disagree or failed
    error: str | None
    lmm_model: str | None
    decision: str | None  # 'accepted' (the model's label was taken), 'kept', or None: nobody decided yet
    t: float
    current: str | None  # the object's label now

    @property
    def open(self) -> bool:
        """A disagreement that waits for a person: undecided, and the object still has the label checked."""
        return self.verdict == "disagree" and self.decision is None and self.current == self.given


def _norm(text: str | None) -> str:
    return " ".join((text or "").casefold().split())


def agrees(given: str, label: str, supercategory: str | None) -> bool:
    """Whether the model's answer agrees with an object's label: the same name (case and spacing aside), or the
    object's label names the answer's coarse class (a 'cat' answered as 'Siamese cat', supercategory 'cat')."""
    g = _norm(given)
    return g == _norm(label) or (bool(supercategory) and g == _norm(supercategory))


class ChecksMixin:
    """Part of ``Store``: uses its ``conn``, ``transaction()``, ``_event``, ``_holds``, ``_category_id``,
    ``_history`` and ``_label_fields``."""

    def set_check(self, object_id: int, label: str, supercategory: str | None, confidence: float | None,
                  lmm_model: str, prompt_tokens: int = 0, completion_tokens: int = 0, cost: float = 0.0,
                  lease: str | None = None) -> str | None:
        """Record the model's label for an object that has one, and whether they agree; its tokens and cost count
        on the object. With ``lease``, only while that run holds the object; returns the verdict ('agree',
        'disagree'), or None when not stored."""
        return self._write_check(object_id, label, supercategory, confidence, None, lmm_model, prompt_tokens,
                                 completion_tokens, cost, lease)

    def set_check_failed(self, object_id: int, reason: str, lmm_model: str | None = None, prompt_tokens: int = 0,
                         completion_tokens: int = 0, cost: float = 0.0, lease: str | None = None) -> str | None:
        """Record that checking the object failed (the next ``label --check`` tries again); returns 'failed', or
        None when not stored."""
        return self._write_check(object_id, None, None, None, reason[:500], lmm_model, prompt_tokens,
                                 completion_tokens, cost, lease)

    def _write_check(self, oid, label, supercategory, confidence, error, lmm_model, pt, ct, cost, lease
                     ) -> str | None:
        with self.transaction():
            if not self._holds(oid, lease):
                return None
            row = self.conn.execute("SELECT label, image_id FROM objects WHERE id=?", (oid,)).fetchone()
            if row is None or row[0] is None:
                return None
            verdict = "failed" if error is not None else ("agree" if agrees(row[0], label, supercategory)
                                                          else "disagree")
            self.conn.execute(
                "INSERT OR REPLACE INTO label_checks(object_id, given, label, supercategory, confidence, verdict, "
                "error, lmm_model, decision, t) VALUES (?, ?, ?, ?, ?, ?, ?, ?, NULL, ?)",
                (oid, row[0], label, supercategory, confidence, verdict, error, lmm_model, time.time()))
            self.conn.execute(
                "UPDATE objects SET prompt_tokens=prompt_tokens+?, completion_tokens=completion_tokens+?, "
                "cost=cost+?, updated=? WHERE id=?", (pt, ct, cost, time.time(), oid))
            self._event("check", row[1], oid, {"verdict": verdict, "label": label, "model": lmm_model})
        return verdict

    def objects_to_check(self, recheck: bool = False) -> list[int]:
        """Ids of the accepted objects with a label that the audit has not checked yet (or whose check failed, or
        whose label changed since); every one with a label with ``recheck``."""
        sql = ("SELECT o.id FROM objects o LEFT JOIN label_checks c ON c.object_id = o.id "
               "WHERE o.state='accepted' AND o.label IS NOT NULL")
        if not recheck:
            sql += " AND (c.object_id IS NULL OR c.verdict='failed' OR c.given != o.label)"
        return [int(r[0]) for r in self.conn.execute(sql + " ORDER BY o.id")]

    def labels_in_use(self) -> list[str]:
        """The labels of the accepted objects, sorted: the audit's vocabulary unless one is given."""
        q = "SELECT DISTINCT label FROM objects WHERE state='accepted' AND label IS NOT NULL ORDER BY label"
        return [r[0] for r in self.conn.execute(q)]

    def checks(self, image_id: int | None = None, verdicts=None) -> list[CheckRecord]:
        """The checks of accepted objects (by image and verdict), in object order."""
        sql = f"SELECT {_FIELDS} FROM label_checks c JOIN objects o ON o.id = c.object_id WHERE o.state='accepted'"
        params: list = []
        if image_id is not None:
            sql += " AND o.image_id=?"
            params.append(image_id)
        if verdicts:
            sql += f" AND c.verdict IN ({','.join('?' * len(verdicts))})"
            params += list(verdicts)
        return [CheckRecord(*r) for r in self.conn.execute(sql + " ORDER BY c.object_id", params)]

    def disagreements(self, image_id: int | None = None) -> list[CheckRecord]:
        """The open disagreements (``CheckRecord.open``): the model named the object otherwise, and no one has
        decided yet. The report lists these, and the widget filters to them."""
        return [c for c in self.checks(image_id, ("disagree",)) if c.open]

    def accept_check(self, object_id: int) -> None:
        """Take the model's label for an object it disagreed on: one undoable action (the old label stays in
        the history)."""
        with self.transaction():
            c = self._open_check(object_id)
            before = self._label_fields(object_id)
            self._holds(object_id, None)  # a labelling run in flight must not write over the decision
            self._take_label(object_id, c.label, c.supercategory)
            self._history(object_id, c.label, c.supercategory, c.confidence, "edited", f"check:{c.lmm_model}")
            self.conn.execute("UPDATE label_checks SET decision='accepted' WHERE object_id=?", (object_id,))
            self._event("decide_check", c.image_id, object_id, {"decision": "accepted", "before": before,
                                                                "label": c.label, "supercategory": c.supercategory})

    def keep_label(self, object_id: int) -> None:
        """Keep the object's own label over the model's (undoable)."""
        with self.transaction():
            c = self._open_check(object_id)
            self.conn.execute("UPDATE label_checks SET decision='kept' WHERE object_id=?", (object_id,))
            self._event("decide_check", c.image_id, object_id, {"decision": "kept"})

    def check_of(self, object_id: int) -> CheckRecord | None:
        """The object's check, if it was checked."""
        q = f"SELECT {_FIELDS} FROM label_checks c JOIN objects o ON o.id = c.object_id WHERE c.object_id=?"
        row = self.conn.execute(q, (object_id,)).fetchone()
        return CheckRecord(*row) if row else None

    def _open_check(self, object_id: int) -> CheckRecord:
        c = self.check_of(object_id)
        if c is None or not c.open:
            raise StoreError(f"object {object_id} has no open disagreement with the model to decide")
        return c

    def _take_label(self, object_id: int, label: str, supercategory: str | None) -> None:
        """Inside a transaction: the object's label becomes ``label`` (a person's decision: status 'edited')."""
        cid = self._category_id(label, supercategory)
        self.conn.execute(
            "UPDATE objects SET label=?, supercategory=COALESCE(?, supercategory), category_id=?, "
            "label_status='edited', updated=? WHERE id=?", (label, supercategory, cid, time.time(), object_id))
