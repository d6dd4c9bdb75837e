"""Auto-propose on a large image: SAM's proposals per tile (``propose.propose`` on each tile's embedding, the
point grid per tile, so small objects get points and full resolution), merged across the overlaps so that one
object is offered once.

The merge rule. A proposal is *cut* when its mask reaches an edge of its tile that lies inside the image (the tile
saw only part of the object). Proposals are taken whole ones first, then by score (highest first); each is
compared with those kept so far from other tiles whose box it meets:
- a whole proposal is the same object as a kept one when their masks overlap at IoU >= ``SAME_IOU``;
- a cut proposal is the same object as a kept one when, seen through its own tile, the kept mask matches it
  (IoU >= ``SAME_IOU`` over the tile's pixels) - the kept one is the whole object it is a piece of -, or, when the
  kept one is cut too, when the two agree over the overlap of their tiles (IoU >= ``SAME_IOU`` there): two pieces
  of an object larger than the overlap, which are joined into one mask (the higher score stays).
The same object is then dropped (the kept one has the higher score, or is whole). Proposals of one tile are never
merged with each other: the per-tile non-maximum suppression already decided about them (nested objects stay).
Masks are kept as tight crops (``region.RegionMask``) and made full size one at a time, when stored."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from .region import RegionMask, iou_within, window
from .tiles import Tile, TileGrid, edge_touches

SAME_IOU = 0.5


@dataclass
class TileProposal:
    """A proposal found in one tile (or joined from pieces of several), with the attributes of
    ``propose.Proposal``; ``mask`` is made full size on each access."""

    region: RegionMask
    predicted_iou: float
    stability: float
    point: tuple[float, float]
    tiles: list[Tile] = field(default_factory=list)
    cut: bool = False

    @property
    def mask(self) -> np.ndarray:
        return self.region.mask_full()

    @property
    def bbox(self) -> tuple[int, int, int, int] | None:
        return self.region.bbox

    @property
    def box(self) -> tuple[int, int, int, int]:
        x, y, w, h = self.region.bbox
        return x, y, x + w, y + h

    @property
    def area(self) -> int:
        return self.region.area

    @property
    def score(self) -> float:
        return self.predicted_iou


def _meet(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _same(kept: TileProposal, c: TileProposal) -> bool:
    """The merge rule's test (module docstring)."""
    if not c.cut:
        x0, y0 = min(kept.box[0], c.box[0]), min(kept.box[1], c.box[1])
        x1, y1 = max(kept.box[2], c.box[2]), max(kept.box[3], c.box[3])
        return iou_within(kept.region, c.region, (x0, y0, x1, y1)) >= SAME_IOU
    tile = c.tiles[0]
    if iou_within(kept.region, c.region, tile.box) >= SAME_IOU:
        return True
    if not kept.cut:
        return False
    for t in kept.tiles:
        o = (max(t.x0, tile.x0), max(t.y0, tile.y0), min(t.x1, tile.x1), min(t.y1, tile.y1))
        if o[2] > o[0] and o[3] > o[1] and iou_within(kept.region, c.region, o) >= SAME_IOU:
            return True
    return False


def _join(kept: TileProposal, c: TileProposal) -> TileProposal:
    """Two cut pieces of one object as one proposal (the union of their masks; the higher score)."""
    x0, y0 = min(kept.box[0], c.box[0]), min(kept.box[1], c.box[1])
    x1, y1 = max(kept.box[2], c.box[2]), max(kept.box[3], c.box[3])
    crop = window(kept.region, (x0, y0, x1, y1)) | window(c.region, (x0, y0, x1, y1))
    region = RegionMask(crop, (x0, y0), kept.region.shape, max(kept.score, c.score))
    best = kept if kept.score >= c.score else c
    return replace(best, region=region, tiles=kept.tiles + c.tiles, cut=True)


def merge_proposals(items: list[TileProposal]) -> list[TileProposal]:
    """One proposal per object from the tiles' proposals (the rule in the module docstring), best first."""
    kept: list[TileProposal] = []
    for c in sorted(items, key=lambda p: (p.cut, -p.score)):
        for i, k in enumerate(kept):
            if c.tiles[0] in k.tiles or not _meet(k.box, c.box) or not _same(k, c):
                continue
            if k.cut and c.cut:
                kept[i] = _join(k, c)
            break
        else:
            kept.append(c)
    kept.sort(key=lambda p: -p.score)
    return kept


def collect(grid: TileGrid, shape, per_tile: Callable[[Tile], list], progress=None, stop=None
            ) -> list[TileProposal]:
    """Every tile's proposals as ``TileProposal``s: ``per_tile(tile)`` returns (tile-size mask, predicted IoU,
    stability, (x, y) in the tile) tuples. ``progress(done, total)`` per tile; a set ``stop`` ends early."""
    out: list[TileProposal] = []
    for n, tile in enumerate(grid):
        if stop is not None and stop.is_set():
            break
        for mask, iou, stab, (px, py) in per_tile(tile):
            region = RegionMask(mask, (tile.x0, tile.y0), shape, iou).tight()
            if region.bbox is None:
                continue
            p = TileProposal(region, float(iou), float(stab), (px + tile.x0, py + tile.y0), [tile])
            p.cut = edge_touches(p.box, tile, grid)
            out.append(p)
        if progress is not None:
            progress(n + 1, len(grid))
    return out


def propose_tiled(engine, settings, existing=None, progress=None, stop=None) -> list[TileProposal]:
    """Proposals of a ``TiledEngine``'s current large image: ``propose.propose`` in every tile (its embedding from
    the cache or encoded now), merged; ``existing`` masks remove proposals repeating them; the settings' cap and
    minimum area apply to the merged proposals."""
    from .propose import propose

    per_tile_settings = replace(settings, max_proposals=None, min_area=0)
    grid, image = engine.grid, engine.image

    def per_tile(tile: Tile) -> list:
        with engine._lock:
            engine._use(engine.tile_key(tile), tile.crop(image))
            props = propose(engine.inner, per_tile_settings, stop=stop)
        return [(p.mask, p.predicted_iou, p.stability, p.point) for p in props]

    merged = merge_proposals(collect(grid, image.shape[:2], per_tile, progress, stop))
    merged = [p for p in merged if p.area >= max(1, settings.min_area)]
    if existing:
        merged = [p for p in merged if all(_iou_full(p, m) < settings.dedupe_iou for m in existing)]
    if settings.max_proposals is not None:
        merged = merged[: settings.max_proposals]
    return merged


def _iou_full(p: TileProposal, mask: np.ndarray) -> float:
    """IoU of a proposal with a full-size mask, without making the proposal's full mask."""
    x0, y0, x1, y1 = p.box
    inter = int(np.logical_and(window(p.region, p.box), mask[y0:y1, x0:x1]).sum())
    union = p.area + int(np.count_nonzero(mask)) - inter
    return inter / union if union else 1.0
