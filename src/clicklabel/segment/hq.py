"""HqEngine: HQ-SAM (``segment-anything-hq``, the ``[hq]`` extra): SAM's architecture with a high-quality output
token whose mask also sees early encoder features. vit_b / vit_l / vit_h, and vit_tiny (Light HQ-SAM, a TinyViT
encoder: the fastest model on a CPU).

- Encoding is SAM's (same resize, normalisation, padding; ``encoder.ImageEncoder``, SDPA for the ViTs). The cache
  keeps the image features and the prompt-independent HQ features (``embedding_encoder(features) +
  compress_vit_feat(first global block's output)``, (1, 32, 256, 256)), so a cached image decodes without the
  encoder and each click skips that step.
- Decoding calls the package's ``MaskDecoderHQ.predict_masks``, which gives the single mask, SAM's three candidates
  and the HQ mask; like the stock ``SamPredictor`` (``hq_token_only=False``) each mask shown is a SAM mask plus the
  HQ mask. Stock multimask returns only the best of the three; we keep all three, best first (the first equals
  stock's), so 'next mask' works as with SAM.
- Loading goes through ``models.load_model`` (CPU, ``weights_only``, strict): the package's own loader fails on
  CPU-only machines for the official files (saved on CUDA) and accepts a wrong file silently.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from ..embeddings import Embedding, EmbeddingCache
from .cached import CachedEngine
from .decoder import resize_matrix
from .encoder import ImageEncoder
from .precision import choose_precision, encoder_traits
from .sam import LongestSide


@dataclass
class HqState:
    features: object  # (1, 256, 64, 64)
    hq_features: object  # (1, 32, 256, 256)
    dense_pe: object  # (1, 256, 64, 64)
    resize_rows: object
    resize_cols: object
    original_size: tuple[int, int]


class HqEngine(CachedEngine):
    """Promptable segmentation with HQ-SAM (hq_vit_tiny / hq_vit_b / hq_vit_l / hq_vit_h)."""

    name = "hq"
    required_extras = ("hq_features",)

    def __init__(
        self,
        model: str = "hq_vit_tiny",
        checkpoint: str | Path | None = None,
        device: str = "auto",
        cache: EmbeddingCache | None = None,
        download: bool = True,
        fast: bool | None = None,
        precision: str | None = None,
        compile: bool | str = False,
        loaded=None,
    ):
        super().__init__(model, checkpoint, device, cache, download, loaded)
        self.sam = self.module
        self.mask_threshold = float(self.sam.mask_threshold)
        self.precision_choice = choose_precision(self.device, precision, fast, **encoder_traits(self.name, self.model))
        self._sdpa = True if fast is None else fast  # fused attention: stock's arithmetic, 1.4x on an AVX2 CPU
        self._compile = compile
        self.transform = LongestSide(int(self.sam.image_encoder.img_size))  # (no torchvision on a cached image)

    @property
    def input_side(self) -> int:
        return int(self.sam.image_encoder.img_size)  # (the encoder itself is built on its first image)

    def _needs_encoder_weights(self) -> bool:
        from .openvino_encoder import needs_weights

        return needs_weights(self)

    def _make_encoder(self) -> ImageEncoder:
        if self.precision_choice.precision == "openvino":
            from .openvino_encoder import engine_encoder

            return engine_encoder(self, self._outputs)
        return ImageEncoder(self.sam, self.device, sdpa=self._sdpa, precision=self.precision_choice.precision,
                            compile=self._compile, outputs=self._outputs)

    @staticmethod
    def build_model(name: str):
        """A random HQ-SAM model built by ``segment_anything_hq``'s own builder ('hq_vit_tiny' -> 'vit_tiny')."""
        with warnings.catch_warnings():  # timm's deprecated import paths, used by the package's TinyViT
            warnings.simplefilter("ignore", FutureWarning)
            from segment_anything_hq import sam_model_registry

        return sam_model_registry[name.removeprefix("hq_")](checkpoint=None)

    def _outputs(self, raw) -> dict:
        """The encoder's (features, intermediate embeddings) -> the arrays the cache keeps."""
        feats, interm = raw
        dec = self.sam.mask_decoder
        hq = dec.embedding_encoder(feats) + dec.compress_vit_feat(interm[0].permute(0, 3, 1, 2))
        return {"features": feats, "hq_features": hq}

    def _prepare_state(self, emb: Embedding) -> HqState:
        features = self._tensor(emb.features)
        pad = self.sam.image_encoder.img_size
        low = 4 * features.shape[-1]
        (ih, iw), (oh, ow) = emb.input_size, emb.original_size
        return HqState(features, self._tensor(emb.extra["hq_features"]), self.sam.prompt_encoder.get_dense_pe(),
                       resize_matrix(low, pad, ih, oh, self.device), resize_matrix(low, pad, iw, ow, self.device),
                       emb.original_size)

    def _decode(self, points, labels, boxes, mask_input, multimask: bool):
        import torch

        st = self._state
        pts = None
        if points is not None:
            pts = (self._tensor(self.transform.apply_coords(points, st.original_size)),
                   self._tensor(labels, torch.int64))
        tb = self._tensor(self.transform.apply_boxes(boxes, st.original_size)) if boxes is not None else None
        sparse, dense = self.sam.prompt_encoder(points=pts, boxes=tb, masks=mask_input)
        masks, iou = self.sam.mask_decoder.predict_masks(st.features, st.dense_pe, sparse, dense, st.hq_features)
        sel = slice(1, 4) if multimask else slice(0, 1)  # [single, 3 candidates, HQ]
        return masks[:, sel] + masks[:, 4:5], iou[:, sel]

    def _upscale(self, logits, state: HqState):
        return state.resize_rows @ logits @ state.resize_cols.T
