"""``clicklabel precompute`` for large images: every tile of each image the engine would tile is embedded and cached
(the same entries a prompt would make), so annotating a precomputed large image never waits for the encoder.
Images the engine uses whole go through ``precompute.precompute`` as before."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..errors import ClickLabelError
from ..images import image_size, load_image


def split_large(engine, paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """(images used whole, images in tiles) under ``engine`` (a ``TiledEngine``), from the files' headers alone; an
    unreadable file counts as whole (``precompute`` reports it)."""
    whole, large = [], []
    for p in paths:
        try:
            shape = image_size(p)
        except ClickLabelError:
            whole.append(p)
            continue
        (large if engine.plan(shape) is not None else whole).append(p)
    return whole, large


def precompute_tiles(engine, paths: list[Path], progress: Callable[[int], None] | None = None,
                     cancel: Callable[[], bool] | None = None) -> dict:
    """Embed every tile of each image of ``paths`` (a ``TiledEngine``); ``progress(1)`` per image. Counts: images,
    tiles encoded, tiles already cached, failed images with their errors, cancelled."""
    stats: dict = {"images": 0, "encoded": 0, "cached": 0, "failed": 0, "errors": [], "cancelled": False}
    for p in paths:
        if cancel is not None and cancel():
            stats["cancelled"] = True
            break
        try:
            engine.set_image(load_image(p))
        except ClickLabelError as exc:
            stats["failed"] += 1
            stats["errors"].append(f"{p}: {exc}")
        else:
            ready = sum(engine.tiles_ready())
            stats["encoded"] += engine.prefetch_tiles()
            stats["cached"] += ready
            stats["images"] += 1
        if progress is not None:
            progress(1)
    return stats
