"""Tiles: a view of one large image as overlapping squares of the model's input size, so the encoder sees every
part of the image at full resolution instead of shrunk to 1024 pixels.

A grid of tiles of ``size`` pixels, neighbours overlapping by ``overlap`` pixels (the halo), spread evenly so that
every tile lies inside the image (the last row and column are not cut short). Every pixel belongs to the *core* of
exactly one tile: the cores split each overlap at its middle, so masks stitched from several tiles take each pixel
from the tile that saw it with the most context around it. Tiles are never new images: the embedding cache keys a
tile by (image, model, tile geometry), and masks always come back at the image's native size.

``--tiles auto`` (the default) tiles images whose long side exceeds twice the model's input size, with tiles of
the input size and a quarter of it as overlap; ``--tiles SIZE`` tiles every image longer than SIZE with tiles of
SIZE pixels; ``--tiles off`` never tiles (every image is shrunk to the input size, as before)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import ClickLabelError

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 in image pixels, end exclusive


@dataclass(frozen=True)
class Tile:
    """One tile: its place in the grid (row, col) and its pixels (x0, y0, x1, y1, end exclusive)."""

    row: int
    col: int
    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def box(self) -> Box:
        return (self.x0, self.y0, self.x1, self.y1)

    @property
    def geometry(self) -> str:
        """The tile's part of its cache key: where it is and how large."""
        return f"tile{self.x0}_{self.y0}_{self.x1 - self.x0}x{self.y1 - self.y0}"

    def crop(self, image: np.ndarray) -> np.ndarray:
        """The tile's pixels of ``image`` (a view: no copy)."""
        return image[self.y0 : self.y1, self.x0 : self.x1]

    def holds(self, box) -> bool:
        """Whether the box (x0, y0, x1, y1, any numbers) lies inside the tile."""
        return self.x0 <= box[0] and self.y0 <= box[1] and box[2] <= self.x1 and box[3] <= self.y1

    def margin(self, box) -> float:
        """The context around ``box`` inside the tile: its least distance to an edge of the tile."""
        return min(box[0] - self.x0, box[1] - self.y0, self.x1 - box[2], self.y1 - box[3])


def tile_starts(length: int, size: int, overlap: int) -> list[int]:
    """Where tiles of ``size`` start along an axis of ``length`` pixels, neighbours overlapping by at least
    ``overlap``, spread evenly, the last ending at ``length``."""
    if length <= size:
        return [0]
    n = math.ceil((length - overlap) / (size - overlap))
    return [round(i * (length - size) / (n - 1)) for i in range(n)]


class TileGrid:
    """The tiles of an image of ``height`` x ``width`` (see the module docstring)."""

    def __init__(self, height: int, width: int, size: int, overlap: int):
        if size < 16 or not 0 <= overlap < size // 2 + 1:
            raise ClickLabelError(f"tiles of {size} px with {overlap} px overlap: give a size of at least 16 px "
                                  "and an overlap of at most half of it")
        self.height, self.width, self.size, self.overlap = int(height), int(width), int(size), int(overlap)
        self.ys = tile_starts(self.height, self.size, self.overlap)
        self.xs = tile_starts(self.width, self.size, self.overlap)
        self.tiles = [Tile(r, c, x, y, min(x + self.size, self.width), min(y + self.size, self.height))
                      for r, y in enumerate(self.ys) for c, x in enumerate(self.xs)]
        self._x_cuts = _cuts(self.xs, self.size, self.width)
        self._y_cuts = _cuts(self.ys, self.size, self.height)

    def __len__(self) -> int:
        return len(self.tiles)

    def __iter__(self):
        return iter(self.tiles)

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns) of tiles."""
        return len(self.ys), len(self.xs)

    def at(self, row: int, col: int) -> Tile | None:
        if 0 <= row < len(self.ys) and 0 <= col < len(self.xs):
            return self.tiles[row * len(self.xs) + col]
        return None

    def core(self, tile: Tile) -> Box:
        """The pixels ``tile`` owns: each overlap split at its middle (the cores partition the image)."""
        return (self._x_cuts[tile.col], self._y_cuts[tile.row], self._x_cuts[tile.col + 1],
                self._y_cuts[tile.row + 1])

    def owner(self, x: float, y: float) -> Tile:
        """The tile whose core holds the pixel (x, y)."""
        col = int(np.searchsorted(self._x_cuts, x, side="right")) - 1
        row = int(np.searchsorted(self._y_cuts, y, side="right")) - 1
        return self.at(min(max(row, 0), len(self.ys) - 1), min(max(col, 0), len(self.xs) - 1))

    def best_for(self, box) -> Tile | None:
        """The tile holding ``box`` (x0, y0, x1, y1) with the most context around it, or None when no tile holds
        it whole (a box larger than a tile, or clicks spread wider than one)."""
        holding = [t for t in self.tiles if t.holds(box)]
        return max(holding, key=lambda t: (t.margin(box), -t.row, -t.col)) if holding else None

    def overlapping(self, box) -> list[Tile]:
        """The tiles sharing pixels with ``box`` (x0, y0, x1, y1)."""
        return [t for t in self.tiles if t.x0 < box[2] and box[0] < t.x1 and t.y0 < box[3] and box[1] < t.y1]

    def neighbours(self, tile: Tile) -> list[Tile]:
        """The up to eight tiles around ``tile`` in the grid."""
        out = []
        for dr in (-1, 0, 1):
            for dc in (-1, 0, 1):
                t = self.at(tile.row + dr, tile.col + dc)
                if (dr or dc) and t is not None:
                    out.append(t)
        return out

    def inner_edges(self, tile: Tile) -> tuple[bool, bool, bool, bool]:
        """Which of the tile's edges (left, top, right, bottom) lie inside the image (not on its border)."""
        return tile.x0 > 0, tile.y0 > 0, tile.x1 < self.width, tile.y1 < self.height


def _cuts(starts: list[int], size: int, length: int) -> list[int]:
    """The core boundaries along one axis: 0, the middle of each overlap, ``length``."""
    mids = [(starts[i] + size + starts[i + 1]) // 2 for i in range(len(starts) - 1)]
    return [0, *mids, length]


def parse_tiles(text: str | int | None) -> str | int:
    """``--tiles``: 'auto', 'off' or a tile size in pixels (at least 16)."""
    if text is None:
        return "auto"
    if isinstance(text, int):
        value = text
    else:
        t = str(text).strip().lower()
        if t in ("auto", "off"):
            return t
        try:
            value = int(t)
        except ValueError:
            raise ClickLabelError(f"--tiles {text!r}: give auto, off or a tile size in pixels") from None
    if value < 16:
        raise ClickLabelError(f"--tiles {value}: a tile needs at least 16 pixels on a side")
    return value


def plan_tiles(tiles: str | int, input_size: int, height: int, width: int) -> TileGrid | None:
    """The grid for an image of ``height`` x ``width`` under the ``--tiles`` choice and the model's input size, or
    None when the image is used whole."""
    tiles = parse_tiles(tiles)
    if tiles == "off":
        return None
    size, threshold = (input_size, 2 * input_size) if tiles == "auto" else (int(tiles), int(tiles))
    if max(height, width) <= threshold:
        return None
    return TileGrid(height, width, size, size // 4)


def edge_touches(crop_box: Box, tile: Tile, grid: TileGrid) -> bool:
    """Whether a mask whose tight box is ``crop_box`` (x0, y0, x1, y1) reaches an edge of ``tile`` that lies inside
    the image: the tile saw it cut off there."""
    left, top, right, bottom = grid.inner_edges(tile)
    x0, y0, x1, y1 = crop_box
    return (left and x0 <= tile.x0) or (top and y0 <= tile.y0) or (right and x1 >= tile.x1) or \
        (bottom and y1 >= tile.y1)
