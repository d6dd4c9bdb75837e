"""Sam3Engine: SAM 3 (``transformers``' ``Sam3Model`` + ``Sam3TrackerModel``, the ``[sam3]`` extra) behind the one
``Engine`` interface, plus concept prompts.

- One ViT pass per image (``Sam3Processor``'s own transform: 1008x1008, no aspect kept) is what the embedding cache
  keeps: the backbone's last hidden state, (1, 1024, 72, 72). Both necks run on it: the tracker's (points, boxes,
  refinement, class-blind candidates: the SAM 2 style decoder, driven as ``Sam3TrackerModel.forward`` drives it) and
  the detector's (concepts), each once per image, when first needed.
- Concepts: the text features of each noun phrase (``get_text_features``) are kept per weights and phrase, so a
  phrase is encoded once; ``Sam3Model.forward`` then runs on the cached vision and text features, with exemplar
  boxes as its geometry prompt. Scores and masks are ``post_process_instance_segmentation``'s.
"""

from __future__ import annotations

import contextlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..embeddings import Embedding, EmbeddingCache
from ..errors import ClickLabelError, PromptError
from ..images import to_rgb8
from .base import Prompt
from .cached import CachedEngine, default_precision
from .decoder import resize_matrix
from .encoder import check_precision, embeddings_from

VISUAL = "visual"  # the text Sam3Processor puts beside exemplar boxes given without a phrase
TEXT_LENGTH = 32  # Sam3Processor pads every phrase to 32 tokens


@dataclass
class Sam3Prepared:
    pixels: object  # (3, S, S) normalised
    original_size: tuple[int, int]
    input_size: tuple[int, int]


class Sam3Encoder:
    """SAM 3's ViT backbone with ``encoder.ImageEncoder``'s interface (``prepare`` on any thread, ``run_all`` on the
    device; fp32 or bf16 autocast)."""

    sdpa = False
    compile_mode = None

    def __init__(self, pair, device: str, precision: str = "fp32"):
        check_precision(precision)
        self.pair = pair
        self.device = device
        self.precision = precision
        self.size = pair.image_size

    def describe(self) -> str:
        return self.precision

    def prepare(self, image: np.ndarray) -> Sam3Prepared:
        px = self.pair.processor.image_processor(images=image, return_tensors="pt")["pixel_values"][0]
        return Sam3Prepared(px, (int(image.shape[0]), int(image.shape[1])), (self.size, self.size))

    def autocast(self):
        import torch

        if self.precision != "bf16":
            return contextlib.nullcontext()
        return torch.autocast("cuda" if self.device.startswith("cuda") else "cpu", dtype=torch.bfloat16)

    def run_all(self, batch: Sequence[Sam3Prepared], pad_to: int | None = None) -> dict:
        import torch

        if not batch:
            raise ClickLabelError("no images to encode")
        x = torch.stack([p.pixels for p in batch]).to(self.device)
        g = self.size // self.pair.patch_size
        with torch.inference_mode(), self.autocast():
            hidden = self.pair.detector.vision_encoder.backbone(x).last_hidden_state
        return {"features": hidden.float().view(len(batch), g, g, -1).permute(0, 3, 1, 2)}

    def encode(self, images: Sequence[np.ndarray]) -> list[Embedding]:
        prepared = [self.prepare(img) for img in images]
        return embeddings_from(self.run_all(prepared), prepared)


@dataclass
class Sam3State:
    backbone: object  # (1, C, g, g) on the device
    tracker_maps: list  # [s0 (1,c,4g,4g), s1 (1,c,2g,2g), last (1,c,g,g) + no-memory embedding]
    image_pe: object
    resize_rows: object
    resize_cols: object
    original_size: tuple[int, int]
    detector: object = None  # Sam3VisionEncoderOutput, made on the first concept


class Sam3Engine(CachedEngine):
    """Promptable segmentation and concept prompts with SAM 3."""

    name = "sam3"

    def __init__(self, model: str = "sam3", checkpoint: str | Path | None = None, device: str = "auto",
                 cache: EmbeddingCache | None = None, download: bool = True, fast: bool | None = None,
                 precision: str | None = None, compile: bool | str = False, loaded=None, text_items: int = 256):
        if compile:
            raise ClickLabelError("--compile is wired for SAM and HQ-SAM encoders, not SAM 3")
        super().__init__(model, checkpoint, device, cache, download, loaded)
        self.pair = self.module
        fast = self.device.startswith("cuda") if fast is None else fast
        self._precision = default_precision(self.device, precision, fast)
        self.encoder = self._make_encoder()  # the vision encoder shares the model with the detector: built now
        self._text: OrderedDict[str, tuple] = OrderedDict()
        self._text_items = text_items
        self._text_lock = threading.Lock()
        self.text_encodings = 0  # phrases encoded so far (the rest came from the text cache)
        self.current_key: str | None = None

    def _make_encoder(self) -> Sam3Encoder:
        return Sam3Encoder(self.pair, self.device, self._precision)

    def set_image(self, image: np.ndarray) -> None:
        """Make ``image`` current; its cache key is kept (``current_key``: what a remote server knows it by)."""
        img = to_rgb8(image)
        self.current_key = self.embedding_key(img)
        super().set_image(img)

    @staticmethod
    def build_model(name: str = "sam3"):
        from .sam3_model import random_pair

        return random_pair("full")

    def _fits(self, emb: Embedding, h: int, w: int) -> bool:
        g = self.pair.image_size // self.pair.patch_size
        hidden = int(self.pair.detector.config.vision_config.backbone_config.hidden_size)
        return tuple(emb.original_size) == (h, w) and tuple(emb.features.shape) == (1, hidden, g, g)

    # -- per-image state ----------------------------------------------------------------------------------
    def _prepare_state(self, emb: Embedding) -> Sam3State:
        trk = self.pair.tracker
        x = self._tensor(emb.features)
        with self.encoder.autocast():
            maps, _ = trk.vision_encoder.neck(x)
            maps = list(maps[:3])
            maps[0] = trk.mask_decoder.conv_s0(maps[0])
            maps[1] = trk.mask_decoder.conv_s1(maps[1])
        maps = [m.float() for m in maps]
        maps[2] = maps[2] + trk.no_memory_embedding.reshape(1, -1, 1, 1)
        h, w = emb.original_size
        low = 4 * x.shape[-1]
        return Sam3State(x, maps, trk.get_image_wide_positional_embeddings(), resize_matrix(low, h, h, h, self.device),
                         resize_matrix(low, w, w, w, self.device), emb.original_size)

    def detector_features(self):
        """The detector's neck on the current image (``Sam3Model.get_vision_features``' output), made once."""
        import torch
        from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput

        self._require_image()
        st = self._state
        if st.detector is None:
            with torch.inference_mode(), self.encoder.autocast():
                fpn, pos = self.pair.detector.vision_encoder.neck(st.backbone)
            b, c, g, _ = st.backbone.shape
            st.detector = Sam3VisionEncoderOutput(
                last_hidden_state=st.backbone.permute(0, 2, 3, 1).reshape(b, g * g, c),
                fpn_hidden_states=tuple(f.float() for f in fpn), fpn_position_encoding=tuple(p.float() for p in pos))
        return st.detector

    # -- points and boxes (the tracker) -----------------------------------------------------------------------
    def _scaled(self, xy: np.ndarray):
        h, w = self._state.original_size
        t = self._tensor(xy).clone()
        t[..., 0] = t[..., 0] * (self.pair.image_size / w)
        t[..., 1] = t[..., 1] * (self.pair.image_size / h)
        return t

    def _decode(self, points, labels, boxes, mask_input, multimask: bool):
        import torch

        st, trk = self._state, self.pair.tracker
        pts = lab = bxs = None
        if points is not None:
            pts, lab = self._scaled(points)[None], self._tensor(labels, torch.int32)[None]
        if boxes is not None:
            bxs = self._scaled(np.asarray(boxes, dtype=np.float32).reshape(-1, 2, 2)).reshape(1, -1, 4)
        sparse, dense = trk.prompt_encoder(input_points=pts, input_labels=lab, input_boxes=bxs,
                                           input_masks=mask_input)
        low, iou, _, _ = trk.mask_decoder(
            image_embeddings=st.tracker_maps[2], image_positional_embeddings=st.image_pe,
            sparse_prompt_embeddings=sparse, dense_prompt_embeddings=dense, multimask_output=multimask,
            high_resolution_features=st.tracker_maps[:2])
        return low[0], iou[0]

    def _upscale(self, logits, state: Sam3State):
        return state.resize_rows @ logits @ state.resize_cols.T

    # -- concepts (the detector) ------------------------------------------------------------------------------
    def text_features(self, phrase: str):
        """(features (1, 32, C), attention mask (1, 32)) of a noun phrase, encoded once per weights and phrase."""
        import torch

        key = f"{self.model_id}\x00{phrase}"
        with self._text_lock:
            hit = self._text.get(key)
            if hit is not None:
                self._text.move_to_end(key)
                return hit
        tok = self.pair.processor.tokenizer([phrase], padding="max_length", max_length=TEXT_LENGTH,
                                            truncation=True, return_tensors="pt")
        ids, mask = tok["input_ids"].to(self.device), tok["attention_mask"].to(self.device)
        with torch.inference_mode():
            feats = self.pair.detector.get_text_features(input_ids=ids, attention_mask=mask).pooler_output
        value = (feats, mask)
        with self._text_lock:
            self.text_encodings += 1
            self._text[key] = value
            while len(self._text) > self._text_items:
                self._text.popitem(last=False)
        return value

    def clear_text_cache(self) -> None:
        with self._text_lock:
            self._text.clear()

    def concept_outputs(self, phrase: str | None, exemplars: Sequence[Sequence[float]] = (),
                        negative: Sequence[Sequence[float]] = ()):
        """``Sam3Model``'s raw output for one concept on the current image: a phrase, exemplar boxes (x0, y0, x1,
        y1 in image pixels; ``negative``: boxes of what it is not), or both."""
        import torch
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        emb = self._require_image()
        boxes = [tuple(float(v) for v in b) for b in exemplars] + [tuple(float(v) for v in b) for b in negative]
        for b in boxes:
            Prompt(box=b).validate(emb.original_size)  # type: ignore[arg-type]
        if not phrase and not boxes:
            raise PromptError("a concept needs a phrase or at least one exemplar box")
        feats, mask = self.text_features(phrase or VISUAL)
        kwargs = {}
        if boxes:
            h, w = emb.original_size
            xyxy = torch.tensor(boxes, dtype=torch.float32) / torch.tensor([w, h, w, h], dtype=torch.float32)
            cxcywh = torch.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2,
                                  xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]], dim=1)
            labels = [1] * len(exemplars) + [0] * len(negative)
            kwargs = {"input_boxes": cxcywh[None].to(self.device),
                      "input_boxes_labels": torch.tensor([labels], dtype=torch.long, device=self.device)}
        vision = self.detector_features()
        with torch.inference_mode(), self.encoder.autocast():
            return self.pair.detector(vision_embeds=vision, text_embeds=BaseModelOutputWithPooling(pooler_output=feats),
                                      attention_mask=mask, **kwargs)

    def find(self, phrase: str | None, exemplars: Sequence[Sequence[float]] = (), threshold: float = 0.5,
             mask_threshold: float = 0.5, negative: Sequence[Sequence[float]] = ()) -> list[tuple[float, np.ndarray]]:
        """Every instance of one concept on the current image: (score, boolean HxW mask), best first."""
        import torch

        out = self.concept_outputs(phrase, exemplars, negative)
        for k in ("pred_logits", "pred_boxes", "pred_masks", "presence_logits"):
            v = getattr(out, k)
            if v is not None:
                setattr(out, k, v.float())
        with torch.inference_mode():
            res = self.pair.processor.post_process_instance_segmentation(
                out, threshold=threshold, mask_threshold=mask_threshold, target_sizes=[self._state.original_size])[0]
        scores = res["scores"].cpu().numpy()
        masks = res["masks"].bool().cpu().numpy()
        order = np.argsort(-scores, kind="stable")
        return [(float(scores[i]), masks[i]) for i in order]
