"""Promptable segmentation engines behind one small interface (see ``base.Engine``): SAM, SAM 2.1 and HQ-SAM
(``models.FAMILIES``), and GrabCut."""

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
    **options,
) -> Engine:
    """Build an engine by name: 'sam' (any Segment Anything model: ``model`` vit_b, sam2.1_hiera_tiny,
    hq_vit_tiny, ... or 'auto' to take the family and size from ``checkpoint``), 'grabcut', or a model name alone.
    ``encoder``: 'fast' (SDPA attention; + bf16 on CUDA), 'stock', or 'auto' (fast on CUDA only). ``options``
    (precision, compile) go to the engine's encoder."""
    if encoder not in ENCODER_CHOICES:
        raise ClickLabelError(f"unknown encoder {encoder!r}; use {', '.join(ENCODER_CHOICES)}")
    from ..weights import REGISTRY

    if engine == "grabcut":
        from .grabcut import GrabCutEngine

        return GrabCutEngine()
    if engine in REGISTRY:  # a model name alone: its family's engine
        engine, model = "sam", engine
    if engine != "sam":
        raise ClickLabelError(f"unknown engine {engine!r}; use sam, grabcut or a model name ({', '.join(REGISTRY)})")
    from .cached import resolve_device
    from .models import engine_class, load_model

    device = resolve_device(device)  # before loading: a missing GPU is named at once
    loaded = load_model(model or "vit_b", checkpoint, download)
    return engine_class(loaded.family)(loaded=loaded, device=device, cache=cache,
                                       fast=None if encoder == "auto" else encoder == "fast", **options)
