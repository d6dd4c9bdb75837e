"""SamEngine: Segment Anything (v1) through the official ``segment-anything`` package, with our embedding cache
(``cached.CachedEngine``), the encoder's fast paths (``encoder.py``) and the faster equivalent mask decoder
(``decoder.py``)."""

from __future__ import annotations

from copy import deepcopy
from pathlib import Path

import numpy as np

from ..embeddings import Embedding, EmbeddingCache
from .cached import CachedEngine, resolve_device
from .encoder import ImageEncoder
from .precision import choose_precision, encoder_traits

__all__ = ["LongestSide", "SamEngine", "resolve_device"]


class SamEngine(CachedEngine):
    """Promptable segmentation with SAM (vit_b / vit_l / vit_h or any SAM ViT checkpoint)."""

    name = "sam"

    def __init__(
        self,
        model: str = "vit_b",
        checkpoint: str | Path | None = None,
        device: str = "auto",
        cache: EmbeddingCache | None = None,
        download: bool = True,
        sam=None,
        fast: bool | None = None,
        precision: str | None = None,
        compile: bool | str = False,
        loaded=None,
    ):
        from .decoder import FastMaskDecoder
        from .models import LoadedModel

        if sam is not None:  # an in-memory model (tests, notebooks): fingerprinted by its weights
            loaded = LoadedModel(model, self.name, sam, None)
        super().__init__(model, checkpoint, device, cache, download, loaded)
        self.sam = self.module
        self.mask_threshold = float(self.sam.mask_threshold)
        self.decoder = FastMaskDecoder(self.sam)
        # The encoder's precision follows the hardware (precision.py); SDPA attention is on by default (fp32: the
        # same arithmetic summed in another order, IoU 0.99999); fast=False restores stock. torch.compile is asked
        # for (compile=True or a mode): it costs a minute or more the first time.
        self.precision_choice = choose_precision(self.device, precision, fast, **encoder_traits(self.name, self.model))
        self._sdpa = True if fast is None else fast  # fused attention: stock's arithmetic, 1.4x on an AVX2 CPU
        self._compile = compile
        self.transform = LongestSide(int(self.sam.image_encoder.img_size))  # the prompts follow the resize

    @property
    def input_side(self) -> int:
        return int(self.sam.image_encoder.img_size)  # (the encoder itself is built on its first image)

    def _needs_encoder_weights(self) -> bool:
        from .openvino_encoder import needs_weights

        return needs_weights(self)

    def _make_encoder(self) -> ImageEncoder:
        if self.precision_choice.precision == "openvino":
            from .openvino_encoder import engine_encoder

            return engine_encoder(self)
        return ImageEncoder(self.sam, self.device, sdpa=self._sdpa, precision=self.precision_choice.precision,
                            compile=self._compile)

    @property
    def fast(self) -> bool:
        return self._sdpa

    def _prepare_state(self, emb: Embedding):
        features = self._tensor(emb.features)
        return self.decoder.prepare(features, emb.input_size, emb.original_size)

    def _decode(self, points, labels, boxes, mask_input, multimask: bool):
        import torch

        size = self.embedding.original_size
        pts = None
        if points is not None:
            coords = self.transform.apply_coords(points, size)
            pts = (self._tensor(coords), self._tensor(labels, torch.int64))
        tb = self._tensor(self.transform.apply_boxes(boxes, size)) if boxes is not None else None
        sparse, _ = self.decoder.pe(points=pts, boxes=tb, masks=None)
        return self.decoder(self._state, sparse, mask_input, multimask)

    def _upscale(self, logits, state):
        return self.decoder.upscale(logits, state)

    def predict_points_batch(self, coords: np.ndarray, min_score: float = float("-inf"), chunk: int = 0):
        """``CachedEngine.predict_points_batch`` with the decoder forming masks only for the points that pass."""
        import torch

        emb = self._require_image()
        c = self.transform.apply_coords(np.asarray(coords, dtype=np.float32), emb.original_size)
        pts = self._tensor(c)[:, None, :]
        labels = torch.ones(pts.shape[:2], dtype=torch.int64, device=self.device)
        with torch.inference_mode():
            sparse, _ = self.decoder.pe(points=(pts, labels), boxes=None, masks=None)
            return self.decoder.decode_filtered(self._state, sparse, min_score)


class LongestSide:
    """Prompts in the encoder's input frame: ``segment_anything``'s ``ResizeLongestSide`` for coordinates and
    boxes (the same arithmetic), for a model whose longest input side is ``target_length``."""

    def __init__(self, target_length: int):
        self.target_length = int(target_length)

    @staticmethod
    def get_preprocess_shape(oldh: int, oldw: int, long_side_length: int) -> tuple[int, int]:
        scale = long_side_length * 1.0 / max(oldh, oldw)
        return int(oldh * scale + 0.5), int(oldw * scale + 0.5)

    def apply_coords(self, coords: np.ndarray, original_size) -> np.ndarray:
        old_h, old_w = original_size
        new_h, new_w = self.get_preprocess_shape(old_h, old_w, self.target_length)
        coords = deepcopy(coords).astype(float)
        coords[..., 0] = coords[..., 0] * (new_w / old_w)
        coords[..., 1] = coords[..., 1] * (new_h / old_h)
        return coords

    def apply_boxes(self, boxes: np.ndarray, original_size) -> np.ndarray:
        boxes = self.apply_coords(boxes.reshape(-1, 2, 2), original_size)
        return boxes.reshape(-1, 4)
