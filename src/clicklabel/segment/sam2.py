"""Sam2Engine: SAM 2.1 (``sam2``, the ``[sam2]`` extra) on single images: a Hiera image encoder with
multi-level features, and SAM's prompt encoder and mask decoder with two high-resolution skip connections.

- The model is built from the config shipped inside the ``sam2`` package with OmegaConf and
  ``hydra.utils.instantiate``, plus the three overrides ``build_sam2`` adds (single-mask output falls back to the
  best of three when unstable), without Hydra's global state: a host program with its own Hydra setup keeps it.
- Encoding is ``SAM2ImagePredictor.set_image``'s (the package's own transforms: the image is resized to 1024x1024
  without keeping the aspect ratio, and the prompts' coordinates are scaled the same way). The cache keeps the
  image embedding and both high-resolution feature maps ((1, 32, 256, 256) and (1, 64, 128, 128)), so a cached
  image decodes without the encoder.
- Decoding calls the model's prompt encoder and mask decoder exactly as the stock predictor does (a box is two
  points labelled 2 and 3 in front of the clicks), then resizes with one exact separable linear map per axis.
  Refinement feeds back the low-res logits clamped to [-32, 32], as stock returns them.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..embeddings import Embedding, EmbeddingCache
from ..errors import ClickLabelError
from .cached import CachedEngine
from .decoder import resize_matrix
from .encoder import check_precision, embeddings_from
from .precision import choose_precision, encoder_traits

CONFIGS = {
    "tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "small": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "base_plus": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "large": "configs/sam2.1/sam2.1_hiera_l.yaml",
}
# what build_sam2(apply_postprocessing=True) adds to every config
POSTPROCESSING = {"dynamic_multimask_via_stability": True, "dynamic_multimask_stability_delta": 0.05,
                  "dynamic_multimask_stability_thresh": 0.98}
HIGH_RES = ("high_res_0", "high_res_1")


@dataclass
class Sam2Prepared:
    """An image transformed for the encoder: normalised (3, S, S) float tensor."""

    pixels: object
    original_size: tuple[int, int]
    input_size: tuple[int, int]


class Sam2Encoder:
    """SAM 2.1's image encoder with ``encoder.ImageEncoder``'s interface (``prepare`` on any CPU thread, ``run_all``
    on the device; ``precision`` fp32 or bf16 autocast)."""

    sdpa = False  # Hiera already uses PyTorch's fused attention
    compile_mode = None

    def __init__(self, model, device: str, precision: str = "fp32", compiled=None):
        """``compiled``: the backbone (``model.forward_image``) compiled by OpenVINO (precision 'openvino')."""
        check_precision(precision)
        with warnings.catch_warnings():  # SAM2Transforms wraps its resize in torch.jit.script, which warns
            warnings.simplefilter("ignore", FutureWarning)
            from sam2.utils.transforms import SAM2Transforms

            self._transforms = SAM2Transforms(resolution=model.image_size, mask_threshold=0.0)
        self.model = model
        self.device = device
        self.precision = precision
        self.size = int(model.image_size)
        self._backbone = compiled or model.forward_image

    def describe(self) -> str:
        return "OpenVINO fp32" if self.precision == "openvino" else self.precision

    def prepare(self, image: np.ndarray) -> Sam2Prepared:
        """The stock predictor's transform of an RGB uint8 image (thread-safe, no device work)."""
        return Sam2Prepared(self._transforms(image), (int(image.shape[0]), int(image.shape[1])),
                            (self.size, self.size))

    def run_all(self, batch: Sequence[Sam2Prepared], pad_to: int | None = None) -> dict:
        """Encode prepared images: name -> (B, ...) tensors on the device, as ``set_image`` leaves them."""
        import torch

        if not batch:
            raise ClickLabelError("no images to encode")
        m, b, s = self.model, len(batch), self.size
        x = torch.stack([p.pixels for p in batch]).to(self.device)
        autocast = torch.autocast("cuda" if self.device.startswith("cuda") else "cpu", dtype=torch.bfloat16)
        with torch.inference_mode(), autocast if self.precision == "bf16" else contextlib.nullcontext():
            _, feats, _, _ = m._prepare_backbone_features(self._backbone(x))
            if m.directly_add_no_mem_embed:
                feats[-1] = feats[-1] + m.no_mem_embed
        maps = [f.permute(1, 2, 0).reshape(b, -1, s // k, s // k) for f, k in zip(feats, (4, 8, 16))]
        return {"features": maps[2], HIGH_RES[0]: maps[0], HIGH_RES[1]: maps[1]}

    def encode(self, images: Sequence[np.ndarray]):
        prepared = [self.prepare(img) for img in images]
        return embeddings_from(self.run_all(prepared), prepared)


def backbone_module(net):
    """SAM 2.1's ``forward_image`` as a module (what OpenVINO converts)."""
    import torch

    class ForwardImage(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net.forward_image(x)

    return ForwardImage().eval()


@dataclass
class Sam2State:
    features: object  # (1, 256, 64, 64), no_mem_embed added
    high_res: list  # [(1, 32, 256, 256), (1, 64, 128, 128)]
    dense_pe: object
    resize_rows: object  # (H, 256)
    resize_cols: object  # (W, 256)
    original_size: tuple[int, int]


class Sam2Engine(CachedEngine):
    """Promptable segmentation with SAM 2.1 (sam2.1_hiera_tiny / small / base_plus / large)."""

    name = "sam2.1"
    required_extras = HIGH_RES

    def __init__(
        self,
        model: str = "sam2.1_hiera_tiny",
        checkpoint: str | Path | None = None,
        device: str = "auto",
        cache: EmbeddingCache | None = None,
        download: bool = True,
        fast: bool | None = None,
        precision: str | None = None,
        compile: bool | str = False,
        loaded=None,
    ):
        if compile:
            raise ClickLabelError("--compile is wired for SAM and HQ-SAM encoders, not SAM 2.1")
        super().__init__(model, checkpoint, device, cache, download, loaded)
        self.net = self.module
        self.precision_choice = choose_precision(self.device, precision, fast, **encoder_traits(self.name, self.model))

    @property
    def input_side(self) -> int:
        return int(self.net.image_size)  # (the encoder itself is built on its first image)

    def _needs_encoder_weights(self) -> bool:
        from .openvino_encoder import needs_weights

        return needs_weights(self)

    def _make_encoder(self) -> Sam2Encoder:
        compiled = None
        if self.precision_choice.precision == "openvino":
            from .openvino_encoder import Compiled, encoders_folder

            def backbone():
                self.load_encoder_weights()  # (already there unless the kept model went missing meanwhile)
                return backbone_module(self.net)

            compiled = Compiled(backbone, int(self.net.image_size), encoders_folder(self), self.model_id,
                                export=False, source=(self.checkpoint_file, "backbone"))  # (export: see there)
        return Sam2Encoder(self.net, self.device, self.precision_choice.precision, compiled)

    @staticmethod
    def build_model(name: str):
        """A random SAM 2.1 model ('sam2.1_hiera_tiny', ...) from the package's config, without global Hydra."""
        from importlib.resources import files

        from hydra.utils import instantiate
        from omegaconf import OmegaConf

        cfg = OmegaConf.load(str(files("sam2") / CONFIGS[name.removeprefix("sam2.1_hiera_")]))
        cfg = OmegaConf.merge(cfg, {"model": {"sam_mask_decoder_extra_args": POSTPROCESSING}})
        OmegaConf.resolve(cfg)
        return instantiate(cfg.model, _recursive_=True).eval()

    def _prepare_state(self, emb: Embedding) -> Sam2State:
        h, w = emb.original_size
        low = 4 * emb.features.shape[-1]
        return Sam2State(self._tensor(emb.features), [self._tensor(emb.extra[k]) for k in HIGH_RES],
                         self.net.sam_prompt_encoder.get_dense_pe(), resize_matrix(low, h, h, h, self.device),
                         resize_matrix(low, w, w, w, self.device), emb.original_size)

    def _scaled(self, xy: np.ndarray):
        """Image pixels -> the encoder's square input, as ``SAM2Transforms.transform_coords`` computes it."""
        h, w = self._state.original_size
        t = self._tensor(xy).clone()
        t[..., 0] = t[..., 0] / w
        t[..., 1] = t[..., 1] / h
        return t * self.net.image_size

    def _decode(self, points, labels, boxes, mask_input, multimask: bool):
        import torch

        st = self._state
        coords = lab = None
        if points is not None:
            coords, lab = self._scaled(points), self._tensor(labels, torch.int32)
        if boxes is not None:  # a box is two corner points labelled 2 and 3, in front of any clicks
            bc = self._scaled(np.asarray(boxes, dtype=np.float32).reshape(-1, 2, 2))
            bl = torch.tensor([[2, 3]], dtype=torch.int32, device=self.device).repeat(bc.shape[0], 1)
            coords = bc if coords is None else torch.cat([bc, coords], dim=1)
            lab = bl if lab is None else torch.cat([bl, lab], dim=1)
        sparse, dense = self.net.sam_prompt_encoder(points=(coords, lab), boxes=None, masks=mask_input)
        low, iou, _, _ = self.net.sam_mask_decoder(
            image_embeddings=st.features, image_pe=st.dense_pe, sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense, multimask_output=multimask, repeat_image=coords.shape[0] > 1,
            high_res_features=st.high_res)
        return low, iou

    def _stored_logits(self, logits):
        import torch

        return torch.clamp(logits, -32.0, 32.0)

    def _upscale(self, logits, state: Sam2State):
        return state.resize_rows @ logits @ state.resize_cols.T
