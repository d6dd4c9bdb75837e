"""Promptable segmentation engines behind one small interface (see ``base.Engine``)."""

from __future__ import annotations

from pathlib import Path

from ..embeddings import EmbeddingCache
from ..errors import ClickLabelError
from .base import Engine, MaskResult, Prompt

__all__ = ["Engine", "MaskResult", "Prompt", "make_engine"]


def make_engine(
    engine: str = "sam",
    model: str = "vit_b",
    checkpoint: str | Path | None = None,
    device: str = "auto",
    cache: EmbeddingCache | None = None,
    download: bool = True,
) -> Engine:
    """Build an engine by name: 'sam' (model vit_b / vit_l / vit_h / auto) or 'grabcut'."""
    if engine == "sam":
        from .sam import SamEngine

        return SamEngine(model=model, checkpoint=checkpoint, device=device, cache=cache, download=download)
    if engine == "grabcut":
        from .grabcut import GrabCutEngine

        return GrabCutEngine()
    raise ClickLabelError(f"unknown engine {engine!r}; use sam or grabcut")
