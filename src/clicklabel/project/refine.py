"""Refine: a detection data set becomes instance segmentation. Every box-only object of a project gets the engine's
mask for its box: all boxes of an image decoded together (``Engine.predict_boxes``, in batches, on the image's
cached embedding), the object's box becomes the mask's tight box and the box it came with is kept
(``given_bbox``). A result that disagrees with the given box is marked for a person to review: the mask's box
overlaps it at IoU < ``min_iou``, or the mask reaches past one of its edges by more than ``max_leak`` of the box's
size. An empty mask (random weights, a box around nothing) leaves the object box-only, marked for review.

Each batch is written in one transaction, so a stopped or killed run keeps what it did and the next run goes on
with the rest; an object that the same engine (``model_id``) already tried is not tried again, so running refine
twice changes nothing. Only the ``Engine`` interface is used (``set_image``, ``predict_boxes``, ``name``,
``model``, ``model_id``): every engine family refines."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ..errors import ClickLabelError
from ..masks import box_iou, rle_area, rle_bbox, tight_bbox
from .batch import embedded_images
from .boxes import MaskUpdate
from .objects import ObjectRecord
from .store import Store


@dataclass(frozen=True)
class RefineSettings:
    min_iou: float = 0.7  # the mask's tight box vs the given box, below which a person should look
    max_leak: float = 0.1  # how far (a share of the box's width or height) the mask may reach past the box
    batch: int = 16  # boxes per predict_boxes call
    only_boxes: bool = False  # refine box-only objects only, not imported masks that are just their rectangle

    def __post_init__(self):
        if not 0 <= self.min_iou <= 1 or self.max_leak < 0 or self.batch < 1:
            raise ClickLabelError(f"refine settings out of range: min_iou {self.min_iou} (0..1), max_leak "
                                  f"{self.max_leak} (>= 0), batch {self.batch} (>= 1)")


@dataclass
class RefineReport:
    images: int = 0  # images worked on
    refined: list[int] = field(default_factory=list)  # objects that got a mask
    flagged: list[int] = field(default_factory=list)  # of all tried, those marked for review (empty ones too)
    empty: list[int] = field(default_factory=list)  # the engine gave an empty mask: still box-only
    skipped: int = 0  # deleted or changed while the run went on (the change wins)
    errors: list[str] = field(default_factory=list)  # images that could not be read, with the reason
    cancelled: bool = False

    def add(self, other: RefineReport) -> None:
        self.images += other.images
        self.refined += other.refined
        self.flagged += other.flagged
        self.empty += other.empty
        self.skipped += other.skipped
        self.errors += other.errors


def engine_id(engine) -> str:
    """What ``refined_by`` records: the engine's model and weights."""
    return str(getattr(engine, "model_id", None) or f"{engine.name}:{engine.model}")


def _is_rectangle(ob: ObjectRecord) -> bool:
    """An imported mask that is exactly a filled axis-aligned rectangle: a box written as a polygon (many
    detection exports do), never refined before."""
    if ob.provenance != "imported" or not ob.has_mask or ob.given_bbox is not None:
        return False
    box = rle_bbox(ob.rle)
    return box is not None and rle_area(ob.rle) == box[2] * box[3]


def refine_targets(store: Store, engine, image_id: int | None = None, only_boxes: bool = False
                   ) -> dict[int, list[ObjectRecord]]:
    """image id -> the objects ``refine`` would work on there: box-only ones (and, unless ``only_boxes``,
    imported masks that are just their rectangle) that this engine has not tried yet."""
    me = engine_id(engine)
    obs = store.objects(image_id, mask_state="box")
    if not only_boxes:
        obs += [o for o in store.objects(image_id, mask_state="mask") if _is_rectangle(o)]
    out: dict[int, list[ObjectRecord]] = defaultdict(list)
    for o in sorted(obs, key=lambda o: o.id):
        if o.refined_by != me:
            out[o.image_id].append(o)
    return dict(out)


def review_reason(given, mask: np.ndarray, settings: RefineSettings) -> str | None:
    """Why a person should look at ``mask`` made for the XYWH box ``given``; None when it fits the box."""
    box = tight_bbox(mask)
    if box is None:
        return "the engine gave an empty mask for this box; it stays box-only"
    iou = box_iou(given, box)
    if iou < settings.min_iou:
        return f"the mask's box overlaps the given box at IoU {iou:.2f} (< {settings.min_iou:g})"
    gx, gy, gw, gh = given
    mx, my, mw, mh = box
    # one pixel of slack: the mask's box is whole pixels, the given box any numbers
    past_x = max(gx - mx, mx + mw - gx - gw, 0.0) - 1
    past_y = max(gy - my, my + mh - gy - gh, 0.0) - 1
    leak = max(past_x / gw, past_y / gh)
    if leak > settings.max_leak:
        return f"the mask reaches {leak:.0%} of the box's size past its edge (> {settings.max_leak:.0%})"
    return None


def _prompt_box(ob: ObjectRecord, width: int, height: int) -> tuple[float, float, float, float]:
    """The object's XYWH box as an XYXY prompt inside the image."""
    x, y, w, h = ob.bbox
    x0, y0 = min(max(0.0, x), width - 1.0), min(max(0.0, y), height - 1.0)
    return x0, y0, max(min(float(width), x + w), x0 + 1.0), max(min(float(height), y + h), y0 + 1.0)


def refine_current(store: Store, engine, image_id: int, settings: RefineSettings = RefineSettings(),
                   objects: list[ObjectRecord] | None = None, stop=None,
                   on_batch: Callable[[int, int], None] | None = None) -> RefineReport:
    """Refine the objects of the engine's current image (``image_id``; default: its ``refine_targets``), one
    batch per ``predict_boxes`` call and per transaction; ``on_batch(done, total)`` after each batch; ``stop``
    (an Event) is checked between batches."""
    if objects is None:
        objects = refine_targets(store, engine, image_id, settings.only_boxes).get(image_id, [])
    im = store.image(image_id)
    rep = RefineReport(images=1)
    for start in range(0, len(objects), settings.batch):
        if stop is not None and stop.is_set():
            rep.cancelled = True
            break
        chunk = objects[start : start + settings.batch]
        results = engine.predict_boxes(prompt_boxes(chunk, im.width, im.height))
        store_refined(store, chunk, [(r.mask, r.score) for r in results], settings, engine, rep)
        if on_batch is not None:
            on_batch(min(start + settings.batch, len(objects)), len(objects))
    return rep


def prompt_boxes(objects: list[ObjectRecord], width: int, height: int) -> list[tuple[float, float, float, float]]:
    """The XYXY prompts of ``objects``' boxes on an image of this size."""
    return [_prompt_box(o, width, height) for o in objects]


def store_refined(store: Store, objects: list[ObjectRecord], results: list[tuple[np.ndarray, float]],
                  settings: RefineSettings, engine, rep: RefineReport) -> None:
    """Write one batch of results ((mask, score) per object, in order; ``engine``: anything with ``name``, ``model``
    and ``model_id``) in one transaction, counting into ``rep``; an object changed meanwhile keeps the change."""
    me = engine_id(engine)
    updates = [MaskUpdate(ob.id, ob.updated, mask if mask.any() else None, review_reason(ob.bbox, mask, settings),
                          me, score, engine.name, engine.model) for ob, (mask, score) in zip(objects, results)]
    written = set(store.set_masks(updates))
    rep.skipped += len(objects) - len(written)
    for u in updates:
        if u.object_id in written:
            (rep.refined if u.mask is not None else rep.empty).append(u.object_id)
            if u.review is not None:
                rep.flagged.append(u.object_id)


def refine_project(store: Store, engine, settings: RefineSettings = RefineSettings(), image_ids=None,
                   progress: Callable[[int, int], None] | None = None, stop=None) -> RefineReport:
    """``refine_current`` over every image with something to refine (or those of ``image_ids``), each image
    embedded once (from the embedding cache when it is there); ``progress(done, total)`` per image."""
    targets = refine_targets(store, engine, None, settings.only_boxes)
    if image_ids is not None:
        keep = set(image_ids)
        targets = {k: v for k, v in targets.items() if k in keep}
    total = RefineReport()
    for image_id in embedded_images(store, engine, sorted(targets), total.errors, progress, stop):
        total.add(refine_current(store, engine, image_id, settings, targets[image_id], stop))
    total.cancelled = stop is not None and stop.is_set()
    return total
