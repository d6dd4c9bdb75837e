"""The proposals layer: the waiting proposals, each in its class's colour (a found class) or cyan (SAM's
class-blind proposals), the highlighted one in magenta. Kept as a coverage count (how many proposals cover each
pixel) and a tint (the class colour last drawn there), so removing a decided proposal and moving the highlight
repaint only those proposals' boxes."""

from __future__ import annotations

import zlib

import numpy as np

from clicklabel.large_images import needs_pyramid

from ._paint import paint, record_crop

WAITING, HIGHLIGHTED = 1, 2  # values on the proposals layer; a class's colour is CLASS_BASE + its index
CLASS_BASE = 3
_CLEAR = (0.0, 0.0, 0.0, 0.0)
CLASS_COLOURS = [(1.0, 0.6, 0.0, 0.55), (0.3, 0.9, 0.2, 0.55), (0.3, 0.5, 1.0, 0.55), (1.0, 0.95, 0.2, 0.55),
                 (0.9, 0.3, 0.3, 0.55), (0.6, 0.4, 1.0, 0.55), (0.2, 0.9, 0.8, 0.55), (1.0, 0.5, 0.8, 0.55)]
PROPOSAL_COLOURS = {None: _CLEAR, 0: _CLEAR, WAITING: (0.0, 0.85, 1.0, 0.5), HIGHLIGHTED: (1.0, 0.1, 0.9, 1.0),
                    **{CLASS_BASE + i: c for i, c in enumerate(CLASS_COLOURS)}}


def class_value(label: str | None) -> int:
    """The layer value of a class: the same colour for the same name in every image and session."""
    if not label:
        return WAITING
    return CLASS_BASE + zlib.crc32(label.strip().lower().encode()) % len(CLASS_COLOURS)


def planes(shape, crops: dict[int, tuple], classes: dict[int, str] | None = None):
    """(coverage count, tint) of the proposals ``crops`` (id -> crop_of(mask)) on an image of ``shape``: what the
    layer is drawn from; any thread (a worker computes them, so that showing many proposals is one data hand-over)."""
    cover = np.zeros(shape, np.uint16)
    tint = np.full(shape, WAITING, np.uint8)
    for pid, ((r, c), m) in crops.items():
        cover[r : r + m.shape[0], c : c + m.shape[1]] += m
        if classes and pid in classes:  # (a class-blind one keeps the default: no masked write per proposal)
            tint[r : r + m.shape[0], c : c + m.shape[1]][m] = class_value(classes[pid])
    return cover, tint


class ProposalPainter:
    """What the proposals layer shows, and how to change it at the cost of a proposal's box."""

    def __init__(self):
        self._cover: np.ndarray | None = None
        self._tint: np.ndarray | None = None
        self._proposals: dict[int, tuple] = {}  # waiting proposal id -> crop_of(its mask)
        self._highlighted: int | None = None

    def reset(self, shape) -> None:
        self._cover = np.zeros(shape, np.uint16)
        self._tint = np.zeros(shape, np.uint8)
        self._proposals, self._highlighted = {}, None

    def show(self, layer, crops: dict[int, tuple], classes: dict[int, str] | None = None, drawn=None) -> None:
        """The waiting proposals (id -> crop_of(mask); ``classes``: id -> class name), all drawn at once;
        ``drawn``: their ``planes``, when a worker made them already."""
        cover, tint = drawn if drawn is not None else planes(layer.data.shape, crops, classes)
        self._cover, self._tint, self._proposals, self._highlighted = cover, tint, dict(crops), None
        if crops or layer.data.any():
            layer.data = np.where(cover > 0, tint, 0).astype(np.uint8)

    def highlight(self, layer, proposal_id: int | None) -> None:
        """Highlight one waiting proposal (None: none); only the old and the new one's boxes are repainted."""
        old, self._highlighted = self._highlighted, proposal_id
        for pid in (old, proposal_id):
            if pid is not None and pid in self._proposals:
                self._repaint(layer, pid)

    def drop(self, layer, proposal_id: int) -> int:
        """A decided proposal leaves the layer; how many still wait."""
        crop = self._proposals.get(proposal_id)
        if self._highlighted == proposal_id:  # (before the repaint: a dropped highlight stayed magenta)
            self._highlighted = None
        if crop is not None:
            (r, c), m = crop
            self._cover[r : r + m.shape[0], c : c + m.shape[1]] -= m
            self._repaint(layer, proposal_id)
            del self._proposals[proposal_id]
        return len(self._proposals)

    def _repaint(self, layer, proposal_id: int) -> None:
        (r0, c0), m = self._proposals[proposal_id]
        r1, c1 = r0 + m.shape[0], c0 + m.shape[1]
        block = np.where(self._cover[r0:r1, c0:c1] > 0, self._tint[r0:r1, c0:c1], 0).astype(np.uint8)
        hi = self._proposals.get(self._highlighted) if self._highlighted is not None else None
        if hi is not None:
            (hr, hc), hm = hi
            top, left = max(r0, hr), max(c0, hc)
            bottom, right = min(r1, hr + hm.shape[0]), min(c1, hc + hm.shape[1])
            if top < bottom and left < right:
                part = hm[top - hr : bottom - hr, left - hc : right - hc]
                block[top - r0 : bottom - r0, left - c0 : right - c0][part] = HIGHLIGHTED
        paint(layer, r0, c0, block)


def waiting_view(proposals, shape) -> tuple[dict, tuple | None]:
    """Any thread: each proposal's crop (its mask decoded once; id -> (RLE counts, crop)), and the planes the layer
    is drawn from (a found class in its colour); no planes for a large image (its layer shows the visible region,
    ``_viewport``)."""
    crops = {ob.id: (ob.rle["counts"], record_crop(ob)) for ob in proposals}
    if needs_pyramid(shape):
        return crops, None
    shown = {oid: crop for oid, (_, crop) in crops.items() if crop is not None}
    return crops, planes(shape, shown, {ob.id: ob.label for ob in proposals if ob.provenance == "concept"})
