"""What the boxes layer draws: an object's tight box as an outline, and the text beside it (its label, or why it
has none yet)."""

from __future__ import annotations

import numpy as np


def rect(x: float, y: float, w: float, h: float) -> np.ndarray:
    """A napari rectangle (row, col corners) from an XYWH box."""
    return np.array([[y, x], [y, x + w], [y + h, x + w], [y + h, x]], dtype=float)


def outline(x: float, y: float, w: float, h: float) -> np.ndarray:
    """An XYWH box as a napari path: its corners, closed, with the first side drawn again so that the first corner
    is joined like the others. A path has no face to fill: napari fills a rectangle's face even when it is
    transparent, and with software OpenGL that was a pass over every box's area at every frame."""
    r = rect(x, y, w, h)
    return np.vstack([r, r[:2]])


def object_text(ob, vote=None) -> str:
    """What a box says: the label and its confidence, or the label's state (with the neighbours' provisional
    label while the model has not answered: "#3 tabby cat? 4/5"); a box-only object (no mask yet) and one that
    refine flagged say so."""
    marks = ("" if getattr(ob, "has_mask", True) else " [box only]") + (" [review]" if getattr(ob, "review", None)
                                                                        else "")
    guess = f" {vote.label}? {vote.votes}/{vote.k}" if vote is not None else ""
    if ob.label_status == "pending":
        return f"#{ob.id}{guess or ' label pending'}{marks}"
    if ob.label_status == "failed":
        return f"#{ob.id} label failed{guess}{marks}"
    conf = f" {ob.label_confidence:.2f}" if ob.label_confidence is not None and ob.label_status == "done" else ""
    return f"#{ob.id} {ob.label}{conf}{marks}"


def text_features(texts: list[str]):
    """The boxes' label texts as napari features, kept as Python strings: from a dict, pandas 3 would store them as
    Arrow strings, and its first Arrow string array cost 0.4 s in the UI thread (at the first box drawn)."""
    import pandas as pd

    return pd.DataFrame({"text": pd.Series(texts, dtype=object)})
