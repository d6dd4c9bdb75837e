"""The SAM 2.1 model that propagation runs: loaded (or built with random weights) by the project's one loader, with
the one setting ``build_sam2_video_predictor`` adds for video (clicked masks enter the memory binarised)."""

from __future__ import annotations

from ..embeddings import EmbeddingCache
from ..errors import ClickLabelError
from .propagate import VideoModel


def video_model(model: str = "sam2.1_hiera_tiny", checkpoint=None, random_weights: bool = False,
                device: str = "auto", cache: EmbeddingCache | None = None, download: bool = True,
                fill_hole_area: int = 8) -> VideoModel:
    """A ``VideoModel`` for ``model`` (a SAM 2.1 name, or 'auto' with ``checkpoint``); ``cache``: the embedding
    cache the frames' features go to (default: the cache root's)."""
    from ..segment.cached import resolve_device
    from ..segment.fingerprint import loaded_fingerprint
    from ..segment.models import family_of, load_model, random_model, require

    if model != "auto" and family_of(model) != "sam2.1":
        raise ClickLabelError(f"tracking runs SAM 2.1's video memory: give a SAM 2.1 model (e.g. --model "
                              f"sam2.1_hiera_tiny), not {model}")
    if random_weights:
        if model == "auto":
            raise ClickLabelError("--random-weights needs a model name (e.g. --model sam2.1_hiera_tiny), not auto")
        require("sam2.1")
        loaded = random_model(model)
    else:
        loaded = load_model(model, checkpoint, download, family="sam2.1")
    module = loaded.module
    module.binarize_mask_from_pts_for_mem_enc = True
    return VideoModel(module, f"{loaded.name}-{loaded_fingerprint(loaded)}", resolve_device(device),
                      cache if cache is not None else EmbeddingCache(memory_items=4), fill_hole_area)
