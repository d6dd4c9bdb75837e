"""Object and image descriptors in the store (schema 5): the segmentation model's features pooled under each
object's mask, and over each image, as L2-normalised float32 vectors tagged with the model they come from.

The "confirmed" objects, the ones whose neighbours vote and serve as few-shot examples, are the accepted objects
whose label a person gave or confirmed: typed in (``edited``), imported with the data set (and not relabelled by
the model since), or decided on in the class audit. Their labels are read from ``objects`` on every query, so a
relabel, a delete and their undo change the neighbours at once, with no index of our own to keep in step."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CONFIRMED_SQL = (
    "o.state = 'accepted' AND o.label IS NOT NULL AND (o.label_status = 'edited' OR (o.provenance = 'imported' AND "
    "o.label_status = 'done' AND o.lmm_model IS NULL) OR o.id IN (SELECT object_id FROM label_checks WHERE "
    "decision IS NOT NULL))"
)


@dataclass
class Confirmed:
    """The confirmed objects that have a descriptor of one model: ids, labels, whether a person typed the label
    (the strongest examples), and the vectors (one row each)."""

    ids: list[int]
    labels: list[str]
    typed: np.ndarray  # bool per row
    vectors: np.ndarray  # (n, d) float32, rows L2-normalised


def to_blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype=np.float32).tobytes()


def from_blob(blob: bytes) -> np.ndarray:
    return np.frombuffer(blob, dtype=np.float32)


class DescriptorsMixin:
    """Part of ``Store``: uses its ``conn`` and ``transaction()``."""

    def set_descriptor(self, object_id: int, model_id: str, vector: np.ndarray) -> None:
        with self.transaction():
            self.conn.execute("INSERT OR REPLACE INTO descriptors(object_id, model_id, vector) VALUES (?, ?, ?)",
                              (object_id, model_id, to_blob(vector)))

    def set_image_descriptor(self, image_id: int, model_id: str, vector: np.ndarray) -> None:
        with self.transaction():
            self.conn.execute("INSERT OR REPLACE INTO image_descriptors(image_id, model_id, vector) VALUES (?, ?, ?)",
                              (image_id, model_id, to_blob(vector)))

    def descriptor(self, object_id: int) -> tuple[str, np.ndarray] | None:
        """(model id, vector) of an object, or None when it has none."""
        row = self.conn.execute("SELECT model_id, vector FROM descriptors WHERE object_id=?", (object_id,)).fetchone()
        return (row[0], from_blob(row[1])) if row else None

    def confirmed(self, model_id: str) -> Confirmed:
        """The confirmed objects with a descriptor from ``model_id`` (see the module's docstring)."""
        rows = self.conn.execute(
            f"SELECT o.id, o.label, o.label_status = 'edited', d.vector FROM objects o JOIN descriptors d "
            f"ON d.object_id = o.id WHERE d.model_id = ? AND {CONFIRMED_SQL} ORDER BY o.id", (model_id,)).fetchall()
        if not rows:
            return Confirmed([], [], np.zeros(0, bool), np.zeros((0, 0), np.float32))
        return Confirmed([r[0] for r in rows], [r[1] for r in rows], np.array([bool(r[2]) for r in rows]),
                         np.stack([from_blob(r[3]) for r in rows]))

    def typed_labels(self) -> list[str]:
        """The labels people typed, most used first (added to the vocabulary offered to the model)."""
        rows = self.conn.execute("SELECT label, COUNT(*) FROM objects WHERE state='accepted' AND "
                                 "label_status='edited' AND label IS NOT NULL GROUP BY label ORDER BY 2 DESC, 1")
        return [r[0] for r in rows]

    def has_image_descriptor(self, image_id: int, model_id: str) -> bool:
        return self.conn.execute("SELECT 1 FROM image_descriptors WHERE image_id=? AND model_id=?",
                                 (image_id, model_id)).fetchone() is not None

    def image_descriptors(self, model_id: str) -> dict[int, np.ndarray]:
        rows = self.conn.execute("SELECT image_id, vector FROM image_descriptors WHERE model_id=?", (model_id,))
        return {iid: from_blob(blob) for iid, blob in rows}

    def descriptor_models(self) -> list[str]:
        """The models the project's descriptors come from, the most used first."""
        rows = self.conn.execute("SELECT model_id FROM descriptors GROUP BY model_id ORDER BY COUNT(*) DESC")
        return [r[0] for r in rows]
