"""Promptable segmentation engines behind one small interface (see ``base.Engine``)."""

from __future__ import annotations

from pathlib import Path

from ..embeddings import EmbeddingCache
from ..errors import ClickLabelError
from .base import Engine, MaskResult, Prompt

__all__ = ["ENCODER_CHOICES", "Engine", "MaskResult", "Prompt", "make_engine"]

ENCODER_CHOICES = ("auto", "fast", "stock")
ENCODER_HELP = "fast = PyTorch's fused attention, same results (+ bf16 on CUDA); auto = fast on CUDA only"


def make_engine(
    engine: str = "sam",
    model: str = "vit_b",
    checkpoint: str | Path | None = None,
    device: str = "auto",
    cache: EmbeddingCache | None = None,
    download: bool = True,
    encoder: str = "auto",
) -> Engine:
    """Build an engine by name: 'sam' (model vit_b / vit_l / vit_h / auto), 'grabcut', or a model name alone.
    ``encoder``: 'fast' (SDPA attention; + bf16 on CUDA), 'stock', or 'auto' (fast on CUDA only)."""
    if encoder not in ENCODER_CHOICES:
        raise ClickLabelError(f"unknown encoder {encoder!r}; use {', '.join(ENCODER_CHOICES)}")
    from ..weights import REGISTRY

    if engine in REGISTRY:  # a model name alone: its family's engine
        engine, model = "sam", engine
    if engine == "sam":
        from .sam import SamEngine

        return SamEngine(model=model, checkpoint=checkpoint, device=device, cache=cache, download=download,
                         fast=None if encoder == "auto" else encoder == "fast")
    if engine == "grabcut":
        from .grabcut import GrabCutEngine

        return GrabCutEngine()
    raise ClickLabelError(f"unknown engine {engine!r}; use sam, grabcut or a model name ({', '.join(REGISTRY)})")
