"""The tiled engine on small images with small tiles: per-tile cache (the second click runs no encoder), masks at
native size stitched across tile edges (checked with an ideal engine on synthetic shapes, since random weights give
no honest masks), proposals over tiles, precompute, the CLI, and what the GUI calls (no Qt)."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from PIL import Image

from clicklabel.embeddings import Embedding, EmbeddingCache
from clicklabel.masks import mask_iou, tight_bbox
from clicklabel.segment import Prompt
from clicklabel.segment.base import MaskResult
from clicklabel.segment.tiled import TiledEngine

from conftest import sample

TILE = 128  # on a 200 x 300 image: 2 x 3 tiles, each encoded once for the whole module (a shared cache)


def picture(variant: int = 0) -> np.ndarray:
    """The 200 x 300 test picture; variants 1 and 2 (mirrored, upside down) are images no other test encodes."""
    img = sample("chelsea")[:200, :300]
    return np.ascontiguousarray([img, img[:, ::-1], img[::-1]][variant])


@pytest.fixture(scope="module")
def inner(tiny_checkpoint, tmp_path_factory):
    from clicklabel.segment.sam import SamEngine

    return SamEngine("auto", tiny_checkpoint, device="cpu", cache=EmbeddingCache(tmp_path_factory.mktemp("emb")))


@pytest.fixture
def tiled(inner):
    eng = TiledEngine(inner, TILE)
    eng.set_image(picture())
    return eng


def count_encodes(engine) -> list[int]:
    """A spy on the inner engine's encoder: the list's one number counts its runs."""
    calls = [0]
    real = engine._encode

    def spy(pixels):
        calls[0] += 1
        return real(pixels)

    engine._encode = spy
    return calls


def test_second_click_in_a_region_uses_the_cached_tile(inner, tiny_checkpoint):
    from clicklabel.segment.sam import SamEngine

    tiled = TiledEngine(inner, TILE)
    tiled.set_image(picture(1))  # an image no other test encodes
    calls = count_encodes(tiled)
    assert tiled.tiled and calls[0] == 0  # opening a large image encodes nothing
    h, w = tiled.image.shape[:2]
    r = tiled.predict(Prompt.make([(200, 150)]))[0]
    first = calls[0]
    assert first >= 1 and not tiled.last_from_cache
    assert r.mask.shape == (h, w) and r.bbox == tight_bbox(r.mask)
    home = tiled.grid.best_for((200, 150, 201, 151))
    around = [t for t in tiled.grid if abs(t.row - home.row) <= 1 and abs(t.col - home.col) <= 1]
    x, y, bw, bh = r.bbox
    assert min(t.x0 for t in around) <= x and x + bw <= max(t.x1 for t in around)
    assert min(t.y0 for t in around) <= y and y + bh <= max(t.y1 for t in around)
    again = tiled.predict(Prompt.make([(203, 151)]))[0]
    assert calls[0] == first and tiled.last_from_cache  # no encoder run
    assert again.mask.shape == (h, w)
    assert sum(tiled.tiles_ready()) == first
    fresh = TiledEngine(SamEngine("auto", tiny_checkpoint, device="cpu", cache=EmbeddingCache(inner.cache.folder)),
                        TILE)
    fresh.set_image(picture(1))
    calls2 = count_encodes(fresh)
    fresh.predict(Prompt.make([(200, 150)]))
    assert calls2[0] == 0 and fresh.last_from_cache  # from the disk cache, keyed by image, model and tile


def test_boxes_decoded_together_equal_one_by_one(tiled):
    boxes = [(10, 10, 60, 50), (200, 100, 260, 180), (20, 20, 290, 190)]  # the last is larger than a tile
    together = tiled.predict_boxes(boxes)
    for b, r in zip(boxes, together):
        one = tiled.predict(Prompt.make(box=b))[0]
        assert r.mask.shape == tiled.image.shape[:2] and r.bbox == tight_bbox(r.mask)
        assert mask_iou(r.mask, one.mask) > 0.99


def test_small_images_go_to_the_inner_engine_unchanged(tiny_engine):
    eng = TiledEngine(tiny_engine, "auto")
    img = sample("coffee")
    eng.set_image(img)
    assert not eng.tiled and eng.tiles_ready() == []
    assert eng.embedding is tiny_engine.embedding
    a = eng.predict(Prompt.make([(100, 100)]))[0]
    b = tiny_engine.predict(Prompt.make([(100, 100)]))[0]
    assert (a.mask == b.mask).all()


def test_propose_over_tiles_and_precompute(tiled, tmp_path):
    from clicklabel.segment.propose import ProposeSettings
    from clicklabel.segment.tile_precompute import precompute_tiles, split_large

    settings = ProposeSettings(grid=4, pred_iou_thresh=0.0, stability_thresh=0.0, max_proposals=5)
    done = []
    props = tiled.propose(settings, progress=lambda d, t: done.append((d, t)))
    assert done[-1] == (len(tiled.grid), len(tiled.grid)) and all(tiled.tiles_ready())
    assert 0 < len(props) <= 5
    for p in props:
        assert p.mask.shape == tiled.image.shape[:2] and p.bbox == tight_bbox(p.mask) and p.area == p.mask.sum()
    again = tiled.propose(settings, existing=[props[0].mask])
    assert all(mask_iou(p.mask, props[0].mask) < settings.dedupe_iou for p in again)
    Image.fromarray(picture()).save(tmp_path / "big.png")
    Image.fromarray(picture()[:100, :100]).save(tmp_path / "small.png")
    whole, large = split_large(tiled, [tmp_path / "big.png", tmp_path / "small.png"])
    assert [p.name for p in whole] == ["small.png"] and [p.name for p in large] == ["big.png"]
    stats = precompute_tiles(tiled, large)
    assert stats["images"] == 1 and stats["encoded"] == 0 and stats["cached"] == len(tiled.grid)


# -- an ideal engine on synthetic shapes: stitching checked against the truth ----------------------------------------
class IdealEngine:
    """The inner engine's interface, answering each point with the exact object under it (the object id is the red
    channel / 20): what SAM would give if it were perfect, so stitching can be checked pixel for pixel."""

    mask_threshold = 0.0
    model_id = "ideal"

    def __init__(self, cache):
        self.cache = cache
        self.encoder = type("E", (), {"size": TILE})()
        self._inflight, self._inflight_guard = {}, threading.Lock()
        self.embedding = None
        self.encodes = 0

    def _cached(self, key, pixels):
        return self.cache.get(key)

    def encode(self, pixels):
        self.encodes += 1
        lab = (pixels[..., 0] // 20).astype(np.float32)
        return Embedding(lab[None, None], pixels.shape[:2], pixels.shape[:2])

    def set_embedding(self, emb):
        self.embedding = emb

    def predict(self, prompt, multimask=False, previous=None):
        lab = self.embedding.features[0, 0]
        x, y = (int(v) for v in prompt.points[0]) if prompt.points else \
            (int((prompt.box[0] + prompt.box[2]) / 2), int((prompt.box[1] + prompt.box[3]) / 2))
        m = (lab == lab[y, x]) & (lab > 0)
        return [MaskResult(m, 1.0, logits=None)] * (3 if multimask else 1)

    def predict_boxes(self, boxes, batch=64):
        return [self.predict(Prompt.make(box=b))[0] for b in boxes]


def _scene():
    import cv2

    img = np.zeros((300, 420, 3), np.uint8)
    cv2.rectangle(img, (20, 140), (400, 160), (20, 0, 0), -1)  # 1: a bar across every column of tiles
    cv2.circle(img, (110, 100), 30, (40, 0, 0), -1)  # 2: a disk across the seam of four tiles
    cv2.circle(img, (300, 250), 8, (60, 0, 0), -1)  # 3: a small disk inside one tile
    return img


@pytest.mark.parametrize("point,value", [((300, 150), 1), ((110, 100), 2), ((300, 250), 3)])
def test_masks_across_tile_edges_are_stitched_exactly(point, value, tmp_path):
    img = _scene()
    eng = TiledEngine(IdealEngine(EmbeddingCache(tmp_path, disk=False, memory_items=64)), TILE, stitch_rings=5)
    eng.set_image(img)
    assert eng.tiled and len(eng.grid) > 4
    r = eng.predict(Prompt.make([point]))[0]
    truth = img[..., 0] == 20 * value
    assert r.mask.shape == truth.shape and (r.mask == truth).all()
    assert r.bbox == tight_bbox(truth)


def test_session_tile_status_pyramid_and_visible_part(inner):
    from clicklabel.large_images import TileActions, needs_pyramid, pyramid, view_box, visible_part

    tiled = TiledEngine(inner, TILE)
    tiled.set_image(picture(2))

    class Session(TileActions):
        engine = tiled

    s = Session()
    ready, total = s.tile_status()
    assert total == len(tiled.grid) and ready == 0
    assert s.prefetch_tiles(200, 150, rings=0) == 1 and s.tile_status() == (1, total)
    assert sum(ok for _, ok in s.tile_boxes()) == 1
    levels = pyramid(np.zeros((5000, 3000, 3), np.uint8), smallest=1000)
    assert [lv.shape[:2] for lv in levels] == [(5000, 3000), (2500, 1500), (1250, 750), (625, 375)]
    assert needs_pyramid((5000, 3000)) and not needs_pyramid((4000, 3000))
    assert view_box([[-10.5, 20.2], [350.0, 900.0]], tiled.image.shape) == (20, 0, 300, 200)
    r = tiled.predict(Prompt.make([(200, 150)]))[0]
    part, (x0, y0) = visible_part(r, (150, 100, 260, 190))
    assert part.shape == (90, 110) and (part == r.mask[100:190, 150:260]).all() and (x0, y0) == (150, 100)


def test_cli_segment_in_tiles_then_from_the_cache(capsys, tmp_path, tiny_checkpoint):
    from clicklabel.cli import main

    Image.fromarray(picture()).save(tmp_path / "big.png")
    outs = []
    for _ in range(2):
        assert main(["segment", str(tmp_path / "big.png"), "--point", "200,150", "--checkpoint", str(tiny_checkpoint),
                     "--model", "auto", "--device", "cpu", "--tiles", str(TILE), "--out",
                     str(tmp_path / "m.png")]) == 0
        outs.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    assert outs[0]["tiles"] > 1 and not outs[0]["embedding_cached"] and outs[1]["embedding_cached"]
    mask = np.asarray(Image.open(tmp_path / "m.png")) > 0
    assert mask.shape == (200, 300) and list(tight_bbox(mask)) == outs[1]["bbox"]
    with pytest.raises(SystemExit) as bad:  # one line from argparse, exit status 2
        main(["segment", str(tmp_path / "big.png"), "--point", "1,1", "--tiles", "huge"])
    assert bad.value.code == 2
