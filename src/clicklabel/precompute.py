"""``clicklabel precompute``: embed every image of a folder or project into the embedding cache, in batches, with
images decoded and resized by CPU threads ahead of the encoder; resumable (cached images are skipped)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from .errors import ClickLabelError
from .images import image_hash, list_images, load_image


def image_paths(target: str | Path) -> list[Path]:
    """The images of a folder, or of a project (``.clicklabel`` file or a folder holding one)."""
    t = Path(target)
    proj = t if t.suffix == ".clicklabel" else t / "project.clicklabel"
    if proj.is_file():
        from .store import Store

        s = Store(proj)
        return [s.image_path(im) for im in s.images()]
    if t.is_dir():
        return list_images(t)
    raise ClickLabelError(f"not a folder or project: {target}")


def precompute(engine, paths: list[Path], batch: int = 8, workers: int = 4, progress=None) -> dict:
    """Embed ``paths`` not yet cached; returns counts. ``progress(n)`` is called with images done per step."""
    def prepare(p: Path):
        try:
            img = load_image(p)
        except ClickLabelError as exc:
            return p, None, str(exc)
        return p, img, None

    stats = {"encoded": 0, "cached": 0, "failed": 0, "errors": []}
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: list[tuple[str, np.ndarray]] = []
        for p, img, err in pool.map(prepare, paths):
            if img is None:
                stats["failed"] += 1
                stats["errors"].append(f"{p}: {err}")
                if progress:
                    progress(1)
                continue
            key = engine.cache.key(image_hash(img), engine.model_id)
            if engine.cache.contains(key):
                stats["cached"] += 1
                if progress:
                    progress(1)
                continue
            pending.append((key, img))
            if len(pending) >= batch:
                _flush(engine, pending, stats, progress)
        _flush(engine, pending, stats, progress)
    return stats


def _flush(engine, pending, stats, progress) -> None:
    if not pending:
        return
    embs = engine.encode_batch([img for _, img in pending])
    for (key, _), emb in zip(pending, embs):
        engine.cache.put(key, emb)
    stats["encoded"] += len(pending)
    if progress:
        progress(len(pending))
    pending.clear()
