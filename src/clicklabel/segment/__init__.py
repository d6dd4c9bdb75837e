"""Promptable segmentation engines behind one small interface (see ``base.Engine``): SAM, SAM 2.1 and HQ-SAM
(``models.FAMILIES``), and GrabCut."""

from __future__ import annotations

from pathlib import Path

from ..embeddings import EmbeddingCache
from ..errors import ClickLabelError
from .base import Engine, MaskResult, Prompt
from .tiles import parse_tiles

__all__ = ["ENCODER_CHOICES", "Engine", "MaskResult", "Prompt", "make_engine"]

ENCODER_CHOICES = ("auto", "fast", "stock")
ENCODER_HELP = ("fast = PyTorch's fused attention, same results in fp32 (+ bf16 where the hardware has it, see "
                "--precision); stock = the stock encoder, fp32; auto = fast")


def make_engine(
    engine: str = "sam",
    model: str = "vit_b",
    checkpoint: str | Path | None = None,
    device: str = "auto",
    cache: EmbeddingCache | None = None,
    download: bool = True,
    encoder: str = "auto",
    tiles: str | int = "off",
    **options,
) -> Engine:
    """Build an engine by name: 'sam' (any Segment Anything model: ``model`` vit_b, sam2.1_hiera_tiny,
    hq_vit_tiny, ... or 'auto' to take the family and size from ``checkpoint``), 'grabcut', a model name alone, or
    'remote' (``server=URL``, ``token=``: the encoder on a ``clicklabel serve`` server, the decoder here).
    ``encoder``: 'fast' (SDPA attention; + bf16 where the hardware has it), 'stock' (fp32), or 'auto' (fast).
    ``tiles``: 'auto', a tile size, or 'off' (default): large images in tiles (``tiled.TiledEngine``; GrabCut works
    on regions anyway).
    ``options`` (precision, compile) go to the engine's encoder."""
    if encoder not in ENCODER_CHOICES:
        raise ClickLabelError(f"unknown encoder {encoder!r}; use {', '.join(ENCODER_CHOICES)}")
    from ..weights import REGISTRY

    if engine == "grabcut":
        from .grabcut import GrabCutEngine

        return GrabCutEngine()
    if engine in REGISTRY:  # a model name alone: its family's engine
        engine, model = "sam", engine
    if engine == "remote":  # the encoder on a `clicklabel serve` server, the decoder here (segment.remote)
        from .remote import attach_remote

        remote = {k: options.pop(k) for k in ("server", "token", "notify") if k in options}
        if not remote.get("server"):
            raise ClickLabelError("--engine remote needs --server URL (a `clicklabel serve` address)")
        local = make_engine("sam", model, checkpoint, device, cache, download, "stock", **options)
        return attach_remote(local, remote["server"], remote.get("token"), remote.get("notify"))
    if engine != "sam":
        raise ClickLabelError(f"unknown engine {engine!r}; use sam, grabcut, remote or a model name "
                              f"({', '.join(REGISTRY)})")
    from .cached import resolve_device
    from .models import engine_class, load_model

    device = resolve_device(device)  # before loading: a missing GPU is named at once
    loaded = load_model(model or "vit_b", checkpoint, download, lazy=True)  # the encoder on its first image
    engine = engine_class(loaded.family)(loaded=loaded, device=device, cache=cache,
                                         fast=None if encoder == "auto" else encoder == "fast", **options)
    if parse_tiles(tiles) == "off":
        return engine
    from .tiled import TiledEngine

    return TiledEngine(engine, tiles)
