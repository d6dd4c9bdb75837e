"""The encoder's fast path: PyTorch's fused ``scaled_dot_product_attention`` in every attention block (SAM's
decomposed relative-position bias becomes an additive mask). The other switches (bf16, torch.compile,
batches) are in ``encoder.py``.

Numerically the same arithmetic as stock in fp32 (tested on CPU). Selected by default on every device
(``SamEngine(fast=None)``: 1.42x the stock encoder on a 2-core AVX2 CPU, docs/benchmarks.md); ``fast=False``
(``--encoder stock``) and ``disable`` restore stock.
"""

from __future__ import annotations

import contextlib
import types

import torch
import torch.nn.functional as F


def _sdpa_forward(self, x: torch.Tensor) -> torch.Tensor:
    """segment_anything's ``Attention.forward`` with one fused SDPA call. Tensors stay 4-D (batch, heads,
    tokens, channels): with 3-D inputs PyTorch only has its unfused 'math' kernel, on CUDA as well."""
    from segment_anything.modeling.image_encoder import get_rel_pos

    b, h, w, _ = x.shape
    heads = self.num_heads
    q, k, v = self.qkv(x).reshape(b, h * w, 3, heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
    mask = None
    if self.use_rel_pos:
        rh = get_rel_pos(h, h, self.rel_pos_h)
        rw = get_rel_pos(w, w, self.rel_pos_w)
        r_q = q.reshape(b * heads, h, w, -1)
        rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, rh)
        rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, rw)
        mask = (rel_h[:, :, :, :, None] + rel_w[:, :, :, None, :]).reshape(b, heads, h * w, h * w)
        mask = mask.to(q.dtype)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale)
    out = out.permute(0, 2, 1, 3).reshape(b, h, w, -1)
    return self.proj(out)


def enable(sam) -> None:
    """Swap every encoder attention block's forward for the SDPA one."""
    for blk in sam.image_encoder.blocks:
        blk.attn.forward = types.MethodType(_sdpa_forward, blk.attn)


def disable(sam) -> None:
    """Back to segment_anything's own attention."""
    for blk in sam.image_encoder.blocks:
        blk.attn.__dict__.pop("forward", None)


def is_enabled(sam) -> bool:
    return "forward" in sam.image_encoder.blocks[0].attn.__dict__


@contextlib.contextmanager
def stock_attention(sam):
    """segment_anything's own attention inside the block (stock baselines), the model's state restored after."""
    was = is_enabled(sam)
    disable(sam)
    try:
        yield
    finally:
        if was:
            enable(sam)
