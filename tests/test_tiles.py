"""Tiles for large images: the grid, GrabCut on a region, prompts decoded per tile (cached per tile), masks stitched
across tile edges, proposals merged across the overlaps, and the GUI's pyramid. Small images with small tiles."""

from __future__ import annotations

import numpy as np
import pytest

from clicklabel.errors import ClickLabelError
from clicklabel.masks import mask_iou, tight_bbox
from clicklabel.segment import Prompt
from clicklabel.segment.region import RegionMask, upscale_logits
from clicklabel.segment.tile_propose import collect, merge_proposals
from clicklabel.segment.tiles import TileGrid, parse_tiles, plan_tiles, tile_starts


# -- the grid -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("length,size,overlap", [(100, 100, 25), (101, 100, 25), (1000, 128, 32), (12000, 1024, 256)])
def test_tiles_cover_the_axis_with_at_least_the_overlap(length, size, overlap):
    starts = tile_starts(length, size, overlap)
    assert starts[0] == 0 and min(length, starts[-1] + size) == length
    for a, b in zip(starts, starts[1:]):
        assert a + size - b >= overlap  # neighbours overlap by at least the halo
        assert b > a


def test_cores_partition_the_image_and_lie_inside_their_tiles():
    grid = TileGrid(300, 410, 128, 32)
    owner = np.full((300, 410), -1)
    for i, t in enumerate(grid):
        x0, y0, x1, y1 = grid.core(t)
        assert t.x0 <= x0 and t.y0 <= y0 and x1 <= t.x1 and y1 <= t.y1
        assert (owner[y0:y1, x0:x1] == -1).all()
        owner[y0:y1, x0:x1] = i
        assert grid.owner(x0, y0) == t and grid.owner(x1 - 1, y1 - 1) == t
    assert (owner >= 0).all()


def test_best_tile_holds_the_box_with_the_most_context():
    grid = TileGrid(300, 410, 128, 32)
    box = (100, 100, 110, 110)
    t = grid.best_for(box)
    assert t.holds(box)
    assert all(t.margin(box) >= u.margin(box) for u in grid if u.holds(box))
    assert grid.best_for((0, 0, 200, 200)) is None  # larger than a tile


def test_tiles_choice():
    assert parse_tiles("auto") == "auto" and parse_tiles("OFF") == "off" and parse_tiles("512") == 512
    for bad in ("big", "8", "-3"):
        with pytest.raises(ClickLabelError):
            parse_tiles(bad)
    assert plan_tiles("auto", 1024, 2048, 2048) is None  # up to twice the input size: whole
    assert plan_tiles("auto", 1024, 4000, 6000).size == 1024
    assert plan_tiles("off", 1024, 20000, 20000) is None
    assert plan_tiles(128, 1024, 300, 200).shape == (3, 2)


# -- region masks ---------------------------------------------------------------------------------------------------
def test_region_mask_box_is_exact_and_full_mask_native():
    crop = np.zeros((40, 50), bool)
    crop[5:9, 7:30] = True
    r = RegionMask(crop, (100, 200), (400, 300))
    assert r.bbox == (107, 205, 23, 4)
    assert r.mask.shape == (400, 300) and tight_bbox(r.mask) == r.bbox and r.area == r.mask.sum()
    assert r.tight().crop.shape == (4, 23) and r.tight().bbox == r.bbox


def test_upscale_logits_in_strips_equals_one_resize():
    import cv2

    low = np.random.default_rng(0).normal(size=(24, 32)).astype(np.float32)
    full = cv2.resize(low, (301, 233), interpolation=cv2.INTER_LINEAR) > 0
    region = (13, 7, 290, 220)
    got = upscale_logits(low, (233, 301), region, strip=17)
    x0, y0, x1, y1 = region
    assert (got == full[y0:y1, x0:x1]).mean() > 0.999  # float rounding may flip a pixel at a zero crossing


# -- GrabCut on a region --------------------------------------------------------------------------------------------
def _disk_scene(h=600, w=900, cx=610, cy=330, r=70):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:h, :w]
    disk = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
    img = np.where(disk[..., None], [200, 40, 40], [30, 90, 160]).astype(np.float64)
    img += rng.normal(0, 10, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), disk


@pytest.mark.parametrize("prompt", [Prompt.make(box=(530, 250, 690, 410)), Prompt.make([(610, 330)])])
def test_grabcut_works_on_a_region_at_a_budget(prompt):
    from clicklabel.segment.grabcut import GrabCutEngine

    img, disk = _disk_scene()
    eng = GrabCutEngine(max_pixels=6000, first_window=60)  # tiny budget: coarse passes, a growing window
    eng.set_image(img)
    r = eng.predict(prompt)[0]
    assert r.mask.shape == disk.shape and mask_iou(r.mask, disk) > 0.9
    assert r.bbox == tight_bbox(r.mask)
    h, w = disk.shape
    for (x0, y0, x1, y1), scale in eng.last_regions:
        assert (x1 - x0) * (y1 - y0) < h * w  # never the whole image
        assert (x1 - x0) * (y1 - y0) * scale**2 <= 6000 * 1.05
    assert len(eng.last_regions) >= (1 if prompt.box else 2)  # clicks: the window grew


# -- proposals merged across the overlaps (synthetic shapes: each tile proposes what it sees of each object) -------
def _shapes(h=260, w=330):
    """An instance label image: small discs inside tiles and across seams, a bar longer than a tile."""
    import cv2

    lab = np.zeros((h, w), np.int32)
    cv2.circle(lab, (30, 30), 8, 1, -1)  # inside the first tile
    cv2.circle(lab, (110, 60), 10, 2, -1)  # across the first vertical seam (tiles 0-127 and 101-228)
    cv2.circle(lab, (120, 120), 9, 3, -1)  # across a corner of four tiles
    cv2.rectangle(lab, (10, 200), (320, 212), 4, -1)  # a bar across every column
    cv2.circle(lab, (300, 240), 12, 5, -1)  # at the image's corner
    return lab


def _ideal_tile_proposer(lab):
    """What an ideal proposer returns in a tile: every visible piece of every object, at the tile's pixels."""
    def per_tile(tile):
        crop = tile.crop(lab)
        out = []
        for v in np.unique(crop[crop > 0]):
            m = crop == v
            ys, xs = np.nonzero(m)
            out.append((m, 0.9 + 0.001 * v, 0.95, (float(xs[0]), float(ys[0]))))
        return out
    return per_tile


def test_objects_across_seams_are_proposed_exactly_once():
    lab = _shapes()
    grid = TileGrid(*lab.shape, 128, 32)
    items = collect(grid, lab.shape, _ideal_tile_proposer(lab))
    assert len(items) > 5  # seen several times: in overlaps and in pieces
    merged = merge_proposals(items)
    assert len(merged) == 5
    for v in range(1, 6):
        truth = lab == v
        hits = [p for p in merged if mask_iou(p.mask, truth) > 0.99]
        assert len(hits) == 1, v
        assert hits[0].bbox == tight_bbox(truth)


def test_nested_objects_of_one_tile_are_both_kept():
    lab = np.zeros((200, 200), np.int32)
    lab[20:60, 20:60] = 1
    grid = TileGrid(200, 200, 128, 32)
    inner = lab.copy()
    inner[30:40, 30:40] = 2

    def per_tile(tile):  # the square and a part of it, as SAM offers whole and part
        out = []
        for m in (tile.crop(lab) == 1, tile.crop(inner) == 2):
            if m.any():
                out.append((m, 0.9, 0.95, (0.0, 0.0)))
        return out

    merged = merge_proposals(collect(grid, lab.shape, per_tile))
    assert sorted(p.area for p in merged) == [100, 1600]
