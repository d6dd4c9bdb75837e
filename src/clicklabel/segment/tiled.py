"""TiledEngine: a SAM-family engine (``cached.CachedEngine``) that works on large images tile by tile.

An image whose long side exceeds the threshold (``tiles.plan_tiles``) is never encoded whole: ``set_image`` only
hashes it and lays out the grid; each tile is encoded when a prompt needs it (or ``prefetch_tiles`` /
``precompute`` ask for it) and cached like an image under the key (image, model, tile geometry). A prompt is
decoded in the tile that holds it with the most context (``TileGrid.best_for``); a mask that reaches an edge of its
tile inside the image is followed into the neighbouring tile (a positive point where the mask crosses the overlap;
of SAM's three candidates the one agreeing best with the first tile's mask there) and stitched, each pixel taken
from the tile whose core holds it. A prompt no tile holds (a box larger than a tile) is decoded on the embedding of
the whole image shrunk to the input size (the *overview*), its logits resized to native size in strips, then
refined in each tile its edge crosses (up to ``max_refine_tiles``). Masks come back as ``region.RegionMask``: at
native resolution, their tight box exact, made full size only when asked for.

Images at or under the threshold go to the wrapped engine unchanged."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from ..embeddings import Embedding
from ..errors import PromptError
from ..images import image_hash, to_rgb8
from ..masks import mask_iou
from .base import MaskResult, Prompt
from .region import RegionMask, upscale_logits, window
from .tiles import Tile, TileGrid, parse_tiles, plan_tiles

OVERVIEW = "overview"


class TiledEngine:
    """Tiles for large images around any ``CachedEngine`` (module docstring); everything else is the inner
    engine's."""

    def __init__(self, inner, tiles: str | int = "auto", stitch_rings: int = 1, max_refine_tiles: int = 8):
        self.inner = inner
        self.tiles = parse_tiles(tiles)
        self.stitch_rings = stitch_rings  # how far (grid steps) a mask is followed from its first tile
        self.max_refine_tiles = max_refine_tiles
        self.grid: TileGrid | None = None
        self.image: np.ndarray | None = None
        self.image_key: str | None = None
        self.encoded = 0  # tiles (and overviews) this engine has run the encoder on
        self.last_from_cache = False
        self._lock = threading.RLock()  # one decode at a time: the inner engine has one current embedding
        self._current: str | None = None  # the key of the inner engine's current embedding
        self._tile_encoder = None

    @property
    def side(self) -> int:
        """The inner encoder's input size, read without building the encoder where the engine can tell it."""
        side = getattr(self.inner, "input_side", None)
        return int(side) if side is not None else int(self.inner.encoder.size)

    def __getattr__(self, name):  # name, model, model_id, device, cache, encoder, ...: the inner engine's
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    @property
    def tiled(self) -> bool:
        """Whether the current image is worked on in tiles."""
        return self.grid is not None

    @property
    def embedding(self) -> Embedding | None:
        """The inner engine's embedding for a whole image; None for a tiled one (no whole-image embedding)."""
        return None if self.tiled else self.inner.embedding

    # -- images ---------------------------------------------------------------------------------------------
    def plan(self, shape) -> TileGrid | None:
        return plan_tiles(self.tiles, self.side, int(shape[0]), int(shape[1]))

    def set_image(self, image: np.ndarray) -> None:
        """Make ``image`` current: a small one as the inner engine does (encoded now), a large one only hashed
        (tiles are encoded when prompts need them)."""
        img = to_rgb8(image)
        grid = self.plan(img.shape)
        with self._lock:
            if grid is None:
                self.grid, self.image, self.image_key, self._current = None, None, None, None
                self.inner.set_image(img)
                self.last_from_cache = self.inner.last_from_cache
                return
            self.image, self.image_key, self.grid, self._current = img, image_hash(img), grid, None
            self.last_from_cache = True

    def prefetch(self, image: np.ndarray) -> None:
        """A small image's embedding is computed ahead; a large one's tiles wait for prompts (or precompute)."""
        if self.plan(np.shape(image)) is None:
            self.inner.prefetch(image)

    def tile_key(self, tile: Tile | str) -> str:
        part = tile if isinstance(tile, str) else tile.geometry
        return self.inner.cache.key(f"{self.image_key}-{part}", self.inner.model_id)

    def tiles_ready(self) -> list[bool]:
        """For each tile of the current image (grid order), whether its embedding is cached (the status line)."""
        if self.grid is None:
            return []
        return [self.inner.cache.contains(self.tile_key(t)) for t in self.grid]

    def tile_embedding(self, tile: Tile) -> Embedding:
        """The tile's embedding, from the cache or encoded now (and cached)."""
        return self._embedding(self.tile_key(tile), tile.crop(self.image))

    def overview_image(self) -> np.ndarray:
        """The whole image shrunk to the model's input size on its long side (area averaging; uint8)."""
        import cv2

        h, w = self.image.shape[:2]
        s = self.side / max(h, w)
        return cv2.resize(self.image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)

    def _embedding(self, key: str, pixels: np.ndarray) -> Embedding:
        inner = self.inner
        emb = inner._cached(key, pixels)
        if emb is not None:
            return emb
        with inner._inflight_guard:
            lock = inner._inflight.setdefault(key, threading.Lock())
        with lock:
            emb = inner._cached(key, pixels)
            if emb is None:
                emb = self._encode(np.ascontiguousarray(pixels))
                self.encoded += 1
                try:
                    inner.cache.put(key, emb)
                except Exception as exc:  # noqa: BLE001 - a full or read-only cache disk: keep it in memory only
                    inner.cache_error = str(exc)
        with inner._inflight_guard:
            inner._inflight.pop(key, None)
        return emb

    def _encode(self, pixels: np.ndarray) -> Embedding:
        """One tile's embedding. Where the inner encoder is stock attention on a ViT (a CPU), a sibling encoder with
        PyTorch's fused attention runs instead: the same numbers in fp32 (``fast_encoder``), without stock
        attention's copies of the global layers' 4096 x 4096 attention (about 0.8 GB each for vit_b), so the peak
        memory stays bounded."""
        from .encoder import ImageEncoder

        enc = getattr(self.inner, "encoder", None)
        if self._tile_encoder is None and type(enc) is ImageEncoder and not enc.sdpa and enc.compile_mode is None \
                and hasattr(enc.sam.image_encoder, "blocks"):
            self._tile_encoder = ImageEncoder(enc.sam, enc.device, sdpa=True, precision=enc.precision,
                                              outputs=enc.outputs, device_resize=enc.device_resize)
        if self._tile_encoder is not None:
            return self._tile_encoder.encode([pixels])[0]
        return self.inner.encode(pixels)

    def prefetch_tiles(self, around: tuple[float, float] | None = None, rings: int = 1, stop=None) -> int:
        """Encode the tiles around the point ``around`` (``rings`` grid steps; all tiles when None), nearest first,
        skipping cached ones; for a worker thread. Returns how many were encoded."""
        if self.grid is None:
            return 0
        grid, image = self.grid, self.image  # this image's, even if another image becomes current meanwhile
        todo = list(grid)
        if around is not None:
            c = grid.owner(*around)
            todo = [t for t in todo if abs(t.row - c.row) <= rings and abs(t.col - c.col) <= rings]
            todo.sort(key=lambda t: max(abs(t.row - c.row), abs(t.col - c.col)))
        before = self.encoded
        for t in todo:
            if stop is not None and stop.is_set() or self.image is not image:
                break
            self._embedding(self.tile_key(t), t.crop(image))
        return self.encoded - before

    def _use(self, key: str, pixels: np.ndarray) -> None:
        """Make the embedding under ``key`` the inner engine's current one (call with the lock held)."""
        if self._current != key:
            self.inner.set_embedding(self._embedding(key, pixels))
            self._current = key

    # -- prompts --------------------------------------------------------------------------------------------
    def _require_grid(self) -> TileGrid:
        if self.image is None or self.grid is None:
            raise PromptError("no image set: call set_image first")
        return self.grid

    def predict(self, prompt: Prompt, multimask: bool = False, previous: MaskResult | None = None) -> list[MaskResult]:
        """Masks for ``prompt``, best first (module docstring); ``last_from_cache`` tells whether every embedding
        it needed was cached."""
        if self.grid is None:
            out = self.inner.predict(prompt, multimask=multimask, previous=previous)
            self.last_from_cache = self.inner.last_from_cache
            return out
        grid = self._require_grid()
        prompt.validate(self.image.shape[:2])
        before = self.encoded
        with self._lock:
            tile = grid.best_for(_extent(prompt))
            if tile is None:
                out = [self._overview(prompt)]
            else:
                prev = previous.logits if isinstance(previous, RegionMask) and previous.tile == tile else None
                out = self._in_tile(tile, prompt, multimask, prev)
                out[0] = self._stitch(out[0], prompt)
        self.last_from_cache = self.encoded == before
        return out

    def predict_boxes(self, boxes: Sequence[Sequence[float]], batch: int = 64) -> list[MaskResult]:
        """One mask per box: the boxes that one tile holds decoded together, each stitched across tile edges."""
        if self.grid is None:
            return self.inner.predict_boxes(boxes)
        grid = self._require_grid()
        boxes = [tuple(float(v) for v in b) for b in boxes]
        for b in boxes:
            Prompt(box=b).validate(self.image.shape[:2])  # type: ignore[arg-type]
        out: list[MaskResult | None] = [None] * len(boxes)
        groups: dict[Tile | None, list[int]] = {}
        for i, b in enumerate(boxes):
            groups.setdefault(grid.best_for(b), []).append(i)
        before = self.encoded
        with self._lock:
            for tile, idx in groups.items():
                if tile is None:
                    for i in idx:
                        out[i] = self._overview(Prompt(box=boxes[i]))  # type: ignore[arg-type]
                    continue
                self._use(self.tile_key(tile), tile.crop(self.image))
                local = [_shift_box(boxes[i], tile) for i in idx]
                for i, r in zip(idx, self.inner.predict_boxes(local, batch=batch)):
                    out[i] = self._stitch(self._wrap(r, tile), Prompt(box=boxes[i]))  # type: ignore[arg-type]
        self.last_from_cache = self.encoded == before
        return out  # type: ignore[return-value]

    def propose(self, settings, existing=None, progress=None, stop=None) -> list:
        """Every object of the current image: the whole image's proposals, or per tile merged across the overlaps
        (``tile_propose.propose_tiled``)."""
        if self.grid is None:
            return self.inner.propose(settings, existing=existing, progress=progress, stop=stop)
        from .tile_propose import propose_tiled

        return propose_tiled(self, settings, existing=existing, progress=progress, stop=stop)

    def _in_tile(self, tile: Tile, prompt: Prompt, multimask: bool, prev_logits=None) -> list[RegionMask]:
        """``prompt`` decoded in ``tile`` (points outside it left out): the tile's masks, best first."""
        self._use(self.tile_key(tile), tile.crop(self.image))
        keep = [(p, lab) for p, lab in zip(prompt.points, prompt.labels) if tile.holds((*p, *p))]
        box = None if prompt.box is None else _shift_box(_clip(prompt.box, tile), tile)
        local = Prompt(tuple((x - tile.x0, y - tile.y0) for (x, y), _ in keep), tuple(lab for _, lab in keep), box)
        previous = None if prev_logits is None else MaskResult(np.zeros((1, 1), bool), logits=prev_logits)
        return [self._wrap(r, tile) for r in self.inner.predict(local, multimask=multimask, previous=previous)]

    def _wrap(self, r: MaskResult, tile: Tile) -> RegionMask:
        out = RegionMask(r.mask, (tile.x0, tile.y0), self.image.shape[:2], r.score, r.logits)
        out.tile = tile
        return out

    def _stitch(self, first: RegionMask, prompt: Prompt) -> RegionMask:
        """``first`` (decoded in its tile) followed into neighbouring tiles wherever it reaches an inner edge of a
        tile, at most ``stitch_rings`` grid steps from its first tile; each pixel from the tile whose core holds it."""
        grid, home, rings = self.grid, first.tile, self.stitch_rings
        pieces: dict[Tile, np.ndarray] = {first.tile: first.crop}
        queue = [first.tile]
        while queue:
            a = queue.pop(0)
            for b in self._crossed(a, pieces[a], pieces):
                if max(abs(b.row - home.row), abs(b.col - home.col)) > rings:
                    continue
                piece = self._follow(a, pieces[a], b, prompt)
                if piece is not None:
                    pieces[b] = piece
                    queue.append(b)
        if len(pieces) == 1:
            return first.tight()
        x0 = min(t.x0 for t in pieces)
        y0 = min(t.y0 for t in pieces)
        x1 = max(t.x1 for t in pieces)
        y1 = max(t.y1 for t in pieces)
        crop = np.zeros((y1 - y0, x1 - x0), dtype=bool)
        for t, m in pieces.items():  # every piece where no other piece's core is
            crop[t.y0 - y0 : t.y1 - y0, t.x0 - x0 : t.x1 - x0] |= m
        for t, m in pieces.items():  # the core of each piece's tile from that piece alone
            cx0, cy0, cx1, cy1 = grid.core(t)
            crop[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0] = m[cy0 - t.y0 : cy1 - t.y0, cx0 - t.x0 : cx1 - t.x0]
        out = RegionMask(crop, (x0, y0), self.image.shape[:2], first.score, first.logits)
        out.tile = first.tile
        return out.tight()

    def _crossed(self, a: Tile, mask: np.ndarray, done) -> list[Tile]:
        """Neighbours of ``a`` (not yet visited) into which ``mask`` (of tile ``a``) runs across an inner edge."""
        left, top, right, bottom = self.grid.inner_edges(a)
        near = 2
        edge_rows = {"top": top and mask[:near].any(), "bottom": bottom and mask[-near:].any()}
        edge_cols = {"left": left and mask[:, :near].any(), "right": right and mask[:, -near:].any()}
        dr = [d for d, hit in ((-1, edge_rows["top"]), (1, edge_rows["bottom"])) if hit]
        dc = [d for d, hit in ((-1, edge_cols["left"]), (1, edge_cols["right"])) if hit]
        steps = [(r, 0) for r in dr] + [(0, c) for c in dc] + [(r, c) for r in dr for c in dc]
        out = []
        for r, c in steps:
            t = self.grid.at(a.row + r, a.col + c)
            if t is not None and t not in done:
                out.append(t)
        return out

    def _follow(self, a: Tile, mask_a: np.ndarray, b: Tile, prompt: Prompt) -> np.ndarray | None:
        """The object of ``mask_a`` (tile ``a``) as seen in tile ``b``: a positive point at the mask's most inner
        pixel in the tiles' overlap (plus the prompt's points inside ``b``), the candidate agreeing best with
        ``mask_a`` there; None when none agrees (IoU < 0.5 in the overlap) or the overlap holds none of it."""
        import cv2

        ox0, oy0, ox1, oy1 = max(a.x0, b.x0), max(a.y0, b.y0), min(a.x1, b.x1), min(a.y1, b.y1)
        if ox1 <= ox0 or oy1 <= oy0:
            return None
        seen = mask_a[oy0 - a.y0 : oy1 - a.y0, ox0 - a.x0 : ox1 - a.x0]
        if not seen.any():
            return None
        dist = cv2.distanceTransform(np.pad(seen, 1).astype(np.uint8), cv2.DIST_L2, 3)[1:-1, 1:-1]
        py, px = np.unravel_index(int(np.argmax(dist)), dist.shape)
        point = (ox0 + px + 0.5, oy0 + py + 0.5)
        pts = [p for p, lab in zip(prompt.points, prompt.labels) if b.holds((*p, *p))]
        labs = [lab for p, lab in zip(prompt.points, prompt.labels) if b.holds((*p, *p))]
        cands = self._in_tile(b, Prompt.make([point, *pts], [1, *labs]), multimask=True)
        best, best_iou = None, 0.5
        for c in cands:
            iou = mask_iou(c.crop[oy0 - b.y0 : oy1 - b.y0, ox0 - b.x0 : ox1 - b.x0], seen)
            if iou >= best_iou:
                best, best_iou = c.crop, iou
        return best

    def _overview(self, prompt: Prompt) -> RegionMask:
        """A prompt no tile holds: decoded on the shrunk whole image, resized to native size in strips, then
        refined in the tiles its edge crosses (at most ``max_refine_tiles`` of them, else as it is)."""
        small = self.overview_image()
        h, w = self.image.shape[:2]
        sy, sx = small.shape[0] / h, small.shape[1] / w
        self._use(self.tile_key(f"{OVERVIEW}{small.shape[1]}x{small.shape[0]}"), small)
        sbox = None if prompt.box is None else (prompt.box[0] * sx, prompt.box[1] * sy,
                                                 min(prompt.box[2] * sx, small.shape[1]),
                                                 min(prompt.box[3] * sy, small.shape[0]))
        local = Prompt(tuple((x * sx, y * sy) for x, y in prompt.points), prompt.labels, sbox)
        r = self.inner.predict(local, multimask=False)[0]
        logits = self.inner.upscale(self.inner._tensor(r.logits)[None, None])[0, 0].float().cpu().numpy()
        lo = r.bbox
        if lo is None:
            return RegionMask(np.zeros((0, 0), bool), (0, 0), (h, w), r.score)
        # the native region: the small mask's box, one small pixel wider on each side
        x0, y0 = max(0, int((lo[0] - 1) / sx)), max(0, int((lo[1] - 1) / sy))
        x1, y1 = min(w, int(np.ceil((lo[0] + lo[2] + 1) / sx))), min(h, int(np.ceil((lo[1] + lo[3] + 1) / sy)))
        crop = upscale_logits(logits, (h, w), (x0, y0, x1, y1), self.inner.mask_threshold)
        coarse = RegionMask(crop, (x0, y0), (h, w), r.score).tight()
        return self._refine(coarse)

    def _refine(self, coarse: RegionMask) -> RegionMask:
        """The coarse mask refined in each tile its edge crosses: the tile decodes the coarse box clipped to it,
        and its answer replaces the coarse mask in the tile's core where the two agree (IoU >= 0.5 in the tile)."""
        if coarse.bbox is None:
            return coarse
        x, y, bw, bh = coarse.bbox
        box = (x, y, x + bw, y + bh)
        crossing = []
        for t in self.grid.overlapping(box):
            part = window(coarse, t.box)
            if part.any() and not part.all():
                crossing.append(t)
        if not crossing or len(crossing) > self.max_refine_tiles:
            return coarse
        crop = coarse.crop.copy()
        ox, oy = coarse.offset
        for t in crossing:
            cx0, cy0, cx1, cy1 = self.grid.core(t)
            r = self._in_tile(t, Prompt(box=_clip(box, t)), multimask=False)[0]  # type: ignore[arg-type]
            if mask_iou(r.crop, window(coarse, t.box)) < 0.5:
                continue
            ix0, iy0 = max(cx0, ox), max(cy0, oy)
            ix1, iy1 = min(cx1, ox + crop.shape[1]), min(cy1, oy + crop.shape[0])
            if ix1 > ix0 and iy1 > iy0:
                got = r.crop[iy0 - t.y0 : iy1 - t.y0, ix0 - t.x0 : ix1 - t.x0]
                crop[iy0 - oy : iy1 - oy, ix0 - ox : ix1 - ox] = got
        return RegionMask(crop, coarse.offset, coarse.shape, coarse.score).tight()


def _extent(prompt: Prompt) -> tuple[float, float, float, float]:
    """What must lie inside one tile: the box and the positive points (all points when none is positive)."""
    pos = [p for p, lab in zip(prompt.points, prompt.labels) if lab == 1]
    if not pos and prompt.box is None:
        pos = list(prompt.points)
    boxes = [(x, y, x + 1, y + 1) for x, y in pos] + ([prompt.box] if prompt.box is not None else [])
    return min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)


def _clip(box, tile: Tile) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (float(v) for v in box)
    x0, y0 = min(max(x0, tile.x0), tile.x1 - 1), min(max(y0, tile.y0), tile.y1 - 1)
    return x0, y0, max(min(x1, tile.x1), x0 + 1), max(min(y1, tile.y1), y0 + 1)


def _shift_box(box, tile: Tile) -> tuple[float, float, float, float]:
    return box[0] - tile.x0, box[1] - tile.y0, box[2] - tile.x0, box[3] - tile.y0
