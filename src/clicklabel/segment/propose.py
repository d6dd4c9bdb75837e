"""Auto-propose: SAM (any family: SAM, SAM 2.1, HQ-SAM) offers every object in the image for the annotator to
accept or reject.

The algorithm is ``SamAutomaticMaskGenerator``'s (one crop layer): a point grid, three masks per point, filter by
predicted IoU and stability, boxes from masks, NMS. Differences that make it fast without changing the result:
it uses the engine's cached embedding (never encodes twice), decodes through the engine's batched point decoding
(``predict_points_batch``; SAM v1's faster equivalent decoder forms masks only for points that pass), filters by
predicted IoU *before* any mask is upscaled (the score needs no mask), and upscales the survivors with the
engine's exact separable resize (``upscale``). Extras for annotators: a minimum area, a cap on the count (best
first), and the removal of proposals that repeat an object already accepted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..errors import ClickLabelError
from ..masks import mask_iou, tight_bbox


@dataclass
class ProposeSettings:
    grid: int = 32  # points per side
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_thresh: float = 0.95
    stability_offset: float = 1.0
    nms_thresh: float = 0.7
    min_area: int = 0
    max_proposals: int | None = None
    dedupe_iou: float = 0.8  # drop a proposal this close to an existing object

    def __post_init__(self):
        if not isinstance(self.grid, int) or not 1 <= self.grid <= 256:
            raise ClickLabelError(f"grid {self.grid!r}: give 1 to 256 points per side")
        if not isinstance(self.points_per_batch, int) or self.points_per_batch < 1:
            raise ClickLabelError(f"points_per_batch {self.points_per_batch!r} must be at least 1")
        for name in ("pred_iou_thresh", "stability_thresh", "stability_offset", "nms_thresh", "dedupe_iou"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ClickLabelError(f"{name.replace('_', '-')} {v!r} is not a finite number")
        if self.min_area < 0 or (self.max_proposals is not None and self.max_proposals < 1):
            raise ClickLabelError("min-area must be >= 0 and max >= 1")


@dataclass
class Proposal:
    mask: np.ndarray
    predicted_iou: float
    stability: float
    point: tuple[float, float]
    bbox: tuple[int, int, int, int] = field(init=False)

    def __post_init__(self):
        self.bbox = tight_bbox(self.mask)  # type: ignore[assignment]

    @property
    def area(self) -> int:
        return int(self.mask.sum())

    @property
    def score(self) -> float:
        return self.predicted_iou


def grid_points(grid: int, width: int, height: int) -> np.ndarray:
    """The generator's point grid (cell centres) in image pixels, (grid*grid, 2) as x, y."""
    from segment_anything.utils.amg import build_point_grid

    return build_point_grid(grid) * np.array([[width, height]])


def propose(engine, settings: ProposeSettings = ProposeSettings(), existing: list[np.ndarray] | None = None,
            progress=None, stop=None) -> list[Proposal]:
    """Proposals for the engine's current image (call ``engine.set_image`` first), best first.

    ``existing`` masks (objects already accepted) remove proposals that overlap one at IoU >= ``dedupe_iou``.
    ``progress(done, total)`` is called per batch; a set ``stop`` event ends early with what was found so far.
    """
    import torch
    from segment_anything.utils.amg import batched_mask_to_box, calculate_stability_score
    from torchvision.ops.boxes import batched_nms

    emb = engine._require_image()
    h, w = emb.original_size
    pts = grid_points(settings.grid, w, h)
    thr = engine.mask_threshold
    kept_masks, kept_iou, kept_stab, kept_pts = [], [], [], []
    n_batches = (len(pts) + settings.points_per_batch - 1) // settings.points_per_batch
    for b in range(n_batches):
        if stop is not None and stop.is_set():
            break
        chunk = pts[b * settings.points_per_batch : (b + 1) * settings.points_per_batch]
        min_score = settings.pred_iou_thresh if settings.pred_iou_thresh > 0.0 else float("-inf")
        logits, iou, rows = engine.predict_points_batch(chunk, min_score)
        iou = iou[rows.to(iou.device)]
        logits, iou = logits.flatten(0, 1), iou.flatten(0, 1)
        point_idx = rows.cpu().repeat_interleave(3)
        if settings.pred_iou_thresh > 0.0:
            keep = iou > settings.pred_iou_thresh
            logits, iou, point_idx = logits[keep], iou[keep], point_idx[keep.cpu()]
        if len(iou):
            with torch.inference_mode():
                full = torch.cat([engine.upscale(logits[i : i + 16][None])[0] for i in range(0, len(logits), 16)])
            stab = calculate_stability_score(full, thr, settings.stability_offset)
            if settings.stability_thresh > 0.0:
                keep = stab >= settings.stability_thresh
                full, iou, stab, point_idx = full[keep], iou[keep], stab[keep], point_idx[keep.cpu()]
            kept_masks.append(full > thr)
            kept_iou.append(iou)
            kept_stab.append(stab)
            kept_pts.append(torch.as_tensor(chunk)[point_idx])
        if progress is not None:
            progress(b + 1, n_batches)
    if not kept_masks:
        return []
    masks = torch.cat(kept_masks)
    iou, stab, points = torch.cat(kept_iou), torch.cat(kept_stab), torch.cat(kept_pts)
    if not len(masks):
        return []
    boxes = batched_mask_to_box(masks)
    keep = batched_nms(boxes.float(), iou.float(), torch.zeros_like(boxes[:, 0]), iou_threshold=settings.nms_thresh)
    masks_np = masks[keep].cpu().numpy()
    out = [
        Proposal(masks_np[i], float(iou[k]), float(stab[k]), tuple(float(v) for v in points[k].tolist()))
        for i, k in enumerate(keep.tolist())
    ]
    out = distinct([p for p in out if p.bbox is not None and p.area >= max(1, settings.min_area)],
                   settings.nms_thresh)
    if existing:
        out = [p for p in out if all(mask_iou(p.mask, m) < settings.dedupe_iou for m in existing)]
    out.sort(key=lambda p: -p.predicted_iou)
    if settings.max_proposals is not None:
        out = out[: settings.max_proposals]
    return out


def distinct(props: list[Proposal], nms_thresh: float) -> list[Proposal]:
    """``props`` (best first) without repeats: a mask equal to one already kept, or, for masks one pixel thin
    (their box has no area, so box NMS cannot compare them: 157 copies of one pixel on a 1x1 image), one that
    overlaps a kept thin mask at mask IoU >= ``nms_thresh``."""
    seen: set[bytes] = set()
    thin: list[np.ndarray] = []
    out = []
    for p in props:
        key = np.packbits(p.mask).tobytes()
        if key in seen:
            continue
        if p.bbox[2] <= 1 or p.bbox[3] <= 1:
            if any(mask_iou(p.mask, m) >= nms_thresh for m in thin):
                continue
            thin.append(p.mask)
        seen.add(key)
        out.append(p)
    return out


def stock_generator(sam, settings: ProposeSettings):
    """``SamAutomaticMaskGenerator`` with the same settings (the reference and the benchmark's baseline)."""
    from segment_anything import SamAutomaticMaskGenerator

    return SamAutomaticMaskGenerator(
        sam, points_per_side=settings.grid, points_per_batch=settings.points_per_batch,
        pred_iou_thresh=settings.pred_iou_thresh, stability_score_thresh=settings.stability_thresh,
        stability_score_offset=settings.stability_offset, box_nms_thresh=settings.nms_thresh,
    )


def stock_with_embedding(sam, settings: ProposeSettings, emb):
    """The stock generator fed a precomputed embedding, so that timing and comparison exclude the encoder."""
    import torch

    gen = stock_generator(sam, settings)
    pred = gen.predictor

    def set_image(image, image_format="RGB"):
        pred.reset_image()
        pred.features = torch.as_tensor(emb.features, device=pred.device)
        pred.original_size, pred.input_size, pred.is_image_set = tuple(emb.original_size), tuple(emb.input_size), True

    pred.set_image = set_image
    return gen
