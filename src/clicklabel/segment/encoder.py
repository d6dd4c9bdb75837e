"""SAM's image encoder (and HQ-SAM's, which is SAM's with extra outputs) as one object with the speed switches
of the GPU fast path.

- ``sdpa``: PyTorch's fused attention in every block (``fast_encoder``), exact in fp32.
- ``precision``: ``"fp32"`` or ``"bf16"`` (autocast; on CPU only where bf16 runs).
- ``compile``: ``torch.compile`` of the encoder (``True`` for the default mode, or a mode name such as
  ``"max-autotune"``); shapes are static, so each batch size compiles once (``pad_to`` keeps a last short
  batch on the compiled size).
- batches: ``prepare`` (resize, on any CPU thread) is split from ``run`` (normalise + encode on the device), so a
  pool of CPU workers can keep the device busy (``clicklabel precompute``).
- ``device_resize`` (default: on for bf16 on CUDA): ``prepare`` only computes the resized size and ``run`` resizes
  the original pixels on the device (bilinear with antialiasing, rounded to uint8 like PIL's). PIL's resize held
  Python's GIL for ~2.5 ms an image (its ``tobytes``), which capped ``precompute`` on a 16-core GPU machine at a
  quarter of the encoder's rate. The result equals PIL's on most pixels and is within 1 grey level elsewhere
  (tested), so it is kept off the exact fp32 path.

The arithmetic of ``prepare`` + ``run`` without ``device_resize`` is that of ``SamPredictor.set_image``: the same
PIL resize of the uint8 image, the same normalisation in fp32, zeros in the padding. ``outputs`` turns what the
model's encoder returns into the named arrays the cache keeps (SAM: the features; HQ-SAM: the features and its HQ
features).
"""

from __future__ import annotations

import contextlib
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..embeddings import Embedding
from ..errors import ClickLabelError
from .precision import PRECISIONS, check_precision

__all__ = ["PRECISIONS", "ImageEncoder", "PreparedImage", "check_precision", "embeddings_from"]


# Larger images are resized by PIL on the CPU even with ``device_resize``: their float copy on the device would
# take gigabytes (a 400 Mpx image: 4.8 GB), and they are rare enough that the CPU's time does not matter.
DEVICE_RESIZE_MAX_PIXELS = 40_000_000


@dataclass
class PreparedImage:
    """An image ready for the encoder, not yet padded: ``pixels`` resized to ``input_size`` (long side = the
    encoder's input size), or the original pixels, which ``run`` resizes on the device to ``input_size``."""

    pixels: np.ndarray  # (h, w, 3) uint8: resized (h, w <= input size), or the original image
    original_size: tuple[int, int]  # (H, W) of the image
    input_size: tuple[int, int]  # (h, w) of the image as the encoder sees it (before padding)

    @property
    def resized(self) -> bool:
        return tuple(self.pixels.shape[:2]) == tuple(self.input_size)


class ImageEncoder:
    """The encoder of one SAM model on one device, with the chosen speed switches. ``outputs(raw)`` maps the
    encoder's output to named (B, ...) tensors with at least 'features' (default: the output is the features);
    SDPA applies to ViT encoders only (HQ-SAM's TinyViT keeps its own attention)."""

    def __init__(self, sam, device: str, sdpa: bool = False, precision: str = "fp32", compile: bool | str = False,
                 outputs: Callable | None = None, device_resize: bool | None = None):
        import torch
        from segment_anything.utils.transforms import ResizeLongestSide

        check_precision(precision)
        if precision == "openvino":  # (OpenVinoEncoder builds this part in fp32)
            raise ClickLabelError("precision openvino is the OpenVINO encoder's (clicklabel bench latency "
                                  "--precision openvino measures it); PyTorch's encoder runs fp32 or bf16")
        self.sam = sam
        self.device = device
        self.size = int(sam.image_encoder.img_size)
        self.transform = ResizeLongestSide(self.size)
        self.outputs = outputs or (lambda feats: {"features": feats})
        self.sdpa = bool(sdpa) and hasattr(sam.image_encoder, "blocks")
        self.precision = precision
        self.device_resize = (device.startswith("cuda") and precision == "bf16") if device_resize is None \
            else bool(device_resize)
        self.activate()
        fp32_neck(sam.image_encoder)
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
        """Resize an RGB uint8 image as ``SamPredictor`` does (with ``device_resize``: only its size; ``run``
        resizes); thread-safe, no device work."""
        h, w = int(image.shape[0]), int(image.shape[1])
        size = self.transform.get_preprocess_shape(h, w, self.size)
        if self.device_resize and h * w <= DEVICE_RESIZE_MAX_PIXELS:
            return PreparedImage(image, (h, w), size)
        return PreparedImage(self.transform.apply_image(image), (h, w), size)

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
        each image's own region is written: ``run`` zeroes the rest after normalising, so no memset is needed.
        Images not resized yet go up as they are (one pinned buffer) and are resized there."""
        import torch

        n = max(len(batch), pad_to or 0)
        cuda = self.device.startswith("cuda")
        host = torch.empty((n, self.size, self.size, 3), dtype=torch.uint8, pin_memory=cuda)
        todo = [i for i, p in enumerate(batch) if not p.resized]
        for i in range(n):
            p = batch[min(i, len(batch) - 1)]
            if p.resized:
                host[i, : p.pixels.shape[0], : p.pixels.shape[1]].copy_(torch.from_numpy(p.pixels))
        x = host.to(self.device, non_blocking=cuda)
        for i, small in zip(todo, self._resize_on_device([batch[i] for i in todo]) if todo else []):
            x[i, : small.shape[0], : small.shape[1]] = small
        if not batch[-1].resized:  # a short batch's padding copies of its last image
            x[len(batch):] = x[len(batch) - 1]
        return x

    def _resize_on_device(self, batch: Sequence[PreparedImage]) -> list:
        """The original pixels of ``batch`` uploaded in one pinned buffer and resized on the device as PIL's
        bilinear resize does (antialiased, rounded to uint8): (h, w, 3) uint8 tensors of each ``input_size``."""
        import torch
        import torch.nn.functional as F

        cuda = self.device.startswith("cuda")
        sizes = [p.pixels.size for p in batch]
        host = torch.empty(sum(sizes), dtype=torch.uint8, pin_memory=cuda)
        offsets = np.cumsum([0] + sizes)
        flat = host.numpy()
        for p, start, end in zip(batch, offsets[:-1], offsets[1:]):
            flat[start:end] = p.pixels.reshape(-1)
        flat = host.to(self.device, non_blocking=cuda)
        out = []
        for p, start, end in zip(batch, offsets[:-1], offsets[1:]):
            img = flat[start:end].view(p.pixels.shape).permute(2, 0, 1)[None].float()
            (h, w), oh = p.input_size, p.pixels.shape[0]
            # PIL's order: the width, rounded to uint8 values, then the height (round half up, as PIL)
            for size in ((oh, w), (h, w)):
                img = F.interpolate(img, size=size, mode="bilinear", antialias=True, align_corners=False)
                img = img.add_(0.5).floor_().clamp_(0, 255)
            out.append(img[0].to(torch.uint8).permute(1, 2, 0))
        return out

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


def fp32_neck(image_encoder) -> None:
    """Run a ViT encoder's neck (two convolutions and LayerNorms, ~1% of the encoder's work) with autocast off: in
    bf16 it added a third of the features' error (relative L2 0.0081 -> 0.0057 on vit_b, random weights; the masks'
    IoU with stock fp32 0.9897 -> 0.9940 on the fixed prompts). A no-op in fp32; set once per model."""
    import torch

    neck = getattr(image_encoder, "neck", None)
    if neck is None or not hasattr(image_encoder, "blocks") or "forward" in neck.__dict__:
        return
    stock = type(neck).forward

    def forward(self, x):
        with torch.autocast(x.device.type, enabled=False):
            return stock(self, x.float())

    neck.forward = types.MethodType(forward, neck)


def embeddings_from(arrays: dict, prepared: Sequence) -> list[Embedding]:
    """One float32 CPU ``Embedding`` per image from a batch's named outputs (``features`` + the family's extras)."""
    host = {k: v.float().cpu().numpy() for k, v in arrays.items()}
    return [Embedding(host["features"][i : i + 1], p.original_size, p.input_size,
                      {k: v[i : i + 1] for k, v in host.items() if k != "features"})
            for i, p in enumerate(prepared)]
