"""SAM's image encoder (and HQ-SAM's, which is SAM's with extra outputs) as one object with the speed switches
of the GPU fast path.

- ``sdpa``: PyTorch's fused attention in every block (``fast_encoder``), exact in fp32.
- ``precision``: ``"fp32"`` or ``"bf16"`` (autocast; on CPU only where bf16 runs).
- ``compile``: ``torch.compile`` of the encoder (``True`` for the default mode, or a mode name such as
  ``"max-autotune"``); shapes are static, so each batch size compiles once (``pad_to`` keeps a last short
  batch on the compiled size).
- batches: ``prepare`` (resize, on any CPU thread) is split from ``run`` (normalise + encode on the device), so a
  pool of CPU workers can keep the device busy (``clicklabel precompute``).

The arithmetic of ``prepare`` + ``run`` is that of ``SamPredictor.set_image``: the same PIL resize of the uint8
image, the same normalisation in fp32, zeros in the padding. ``outputs`` turns what the model's encoder returns
into the named arrays the cache keeps (SAM: the features; HQ-SAM: the features and its HQ features).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..embeddings import Embedding
from ..errors import ClickLabelError

PRECISIONS = ("fp32", "bf16")


@dataclass
class PreparedImage:
    """An image resized for the encoder (long side = the encoder's input size), not yet padded."""

    pixels: np.ndarray  # (h, w, 3) uint8, h and w <= input size
    original_size: tuple[int, int]

    @property
    def input_size(self) -> tuple[int, int]:
        return (int(self.pixels.shape[0]), int(self.pixels.shape[1]))


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ClickLabelError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")


class ImageEncoder:
    """The encoder of one SAM model on one device, with the chosen speed switches. ``outputs(raw)`` maps the
    encoder's output to named (B, ...) tensors with at least 'features' (default: the output is the features);
    SDPA applies to ViT encoders only (HQ-SAM's TinyViT keeps its own attention)."""

    def __init__(self, sam, device: str, sdpa: bool = False, precision: str = "fp32", compile: bool | str = False,
                 outputs: Callable | None = None):
        import torch
        from segment_anything.utils.transforms import ResizeLongestSide

        check_precision(precision)
        self.sam = sam
        self.device = device
        self.size = int(sam.image_encoder.img_size)
        self.transform = ResizeLongestSide(self.size)
        self.outputs = outputs or (lambda feats: {"features": feats})
        self.sdpa = bool(sdpa) and hasattr(sam.image_encoder, "blocks")
        self.precision = precision
        self.activate()
        self.compile_mode = None if compile is False else ("default" if compile is True else str(compile))
        if self.compile_mode is not None:
            self._fn = torch.compile(sam.image_encoder, mode=self.compile_mode, dynamic=False)
        else:
            self._fn = sam.image_encoder
        self._mean = sam.pixel_mean.view(1, 3, 1, 1).to(device)
        self._std = sam.pixel_std.view(1, 3, 1, 1).to(device)

    def describe(self) -> str:
        parts = [self.precision] + (["SDPA"] if self.sdpa else []) + (
            [f"compile({self.compile_mode})"] if self.compile_mode else [])
        return " + ".join(parts)

    def activate(self) -> None:
        """Put this encoder's attention (SDPA or stock) into the model, which encoders of one model share."""
        from . import fast_encoder

        if not hasattr(self.sam.image_encoder, "blocks"):  # not a ViT: nothing to swap
            return
        if fast_encoder.is_enabled(self.sam) != self.sdpa:
            (fast_encoder.enable if self.sdpa else fast_encoder.disable)(self.sam)

    def forward(self, x):
        """The encoder on a normalised, padded (B, 3, S, S) float tensor on the device. In bf16 the input goes
        in channels-last (the patch-embedding convolution in bf16 was ~25x slower on NCHW on a CPU); fp32 keeps
        the stock layout (results equal stock's to float rounding; tested)."""
        import torch

        self.activate()
        x = x.contiguous(memory_format=torch.channels_last if self.precision == "bf16" else torch.contiguous_format)
        with self.precision_context():
            return self._fn(x)

    # -- CPU side (any thread) ----------------------------------------------------------------------------
    def prepare(self, image: np.ndarray) -> PreparedImage:
        """Resize an RGB uint8 image as ``SamPredictor`` does; thread-safe, no device work."""
        return PreparedImage(self.transform.apply_image(image), (int(image.shape[0]), int(image.shape[1])))

    # -- device side --------------------------------------------------------------------------------------
    def precision_context(self):
        """Autocast to bf16 when asked (CUDA, or CPU), else nothing."""
        import torch

        if self.precision == "bf16":
            return torch.autocast(device_type="cuda" if self.device.startswith("cuda") else "cpu",
                                  dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def to_device(self, batch: Sequence[PreparedImage], pad_to: int | None = None):
        """The batch as one (B, S, S, 3) uint8 tensor on the device (pinned, asynchronous copy on CUDA). Only
        each image's own region is written: ``run`` zeroes the rest after normalising, so no memset is needed."""
        import torch

        n = max(len(batch), pad_to or 0)
        cuda = self.device.startswith("cuda")
        host = torch.empty((n, self.size, self.size, 3), dtype=torch.uint8, pin_memory=cuda)
        for i in range(n):
            px = batch[min(i, len(batch) - 1)].pixels
            host[i, : px.shape[0], : px.shape[1]].copy_(torch.from_numpy(px))
        return host.to(self.device, non_blocking=cuda)

    def run(self, batch: Sequence[PreparedImage], pad_to: int | None = None):
        """Encode prepared images; returns the (B, C, 64, 64) features on the device (B = len(batch); a batch
        padded to ``pad_to`` with copies of its last image has the copies' rows dropped). Asynchronous on CUDA."""
        return self.run_all(batch, pad_to)["features"]

    def run_all(self, batch: Sequence[PreparedImage], pad_to: int | None = None) -> dict:
        """``run`` with every named output (``outputs``): name -> (B, ...) tensor on the device."""
        import torch

        if not batch:
            raise ClickLabelError("no images to encode")
        x = self.to_device(batch, pad_to)
        sizes = [p.input_size for p in batch] + [batch[-1].input_size] * (x.shape[0] - len(batch))
        with torch.inference_mode():
            x = x.permute(0, 3, 1, 2).float()
            x = (x - self._mean) / self._std
            rows = torch.arange(self.size, device=self.device)
            cuda = self.device.startswith("cuda")
            hw = torch.tensor(sizes, dtype=torch.int64, pin_memory=cuda).to(self.device, non_blocking=cuda)
            h, w = hw[:, 0], hw[:, 1]
            inside = (rows[None, :, None] < h[:, None, None]) & (rows[None, None, :] < w[:, None, None])
            x = torch.where(inside[:, None], x, torch.zeros((), device=self.device))
            with self.precision_context():
                out = self.outputs(self.forward(x))
        return {k: v[: len(batch)] for k, v in out.items()}

    def encode(self, images: Sequence[np.ndarray]) -> list[Embedding]:
        """Encode RGB uint8 images in one batch into float32 embeddings on the CPU."""
        prepared = [self.prepare(img) for img in images]
        return embeddings_from(self.run_all(prepared), prepared)


def embeddings_from(arrays: dict, prepared: Sequence) -> list[Embedding]:
    """One float32 CPU ``Embedding`` per image from a batch's named outputs (``features`` + the family's extras)."""
    host = {k: v.float().cpu().numpy() for k, v in arrays.items()}
    return [Embedding(host["features"][i : i + 1], p.original_size, p.input_size,
                      {k: v[i : i + 1] for k, v in host.items() if k != "features"})
            for i, p in enumerate(prepared)]
