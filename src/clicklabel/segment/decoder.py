"""A faster, numerically equivalent SAM mask decoder for interactive use.

It runs the weights of ``segment_anything``'s ``MaskDecoder`` with the same arithmetic, reorganised so that
per-prompt work is as small as it can be:

- Per image (once, in ``prepare``): the dense positional encoding, ``image + no_mask_embed``, and the three
  projections of the first two-way block that see only image tokens (token-to-image keys and values,
  image-to-token queries). They are a fifth of the decoder's multiply-adds and do not depend on the prompt.
- The two stride-2 transposed convolutions of the upscaler are plain matrix products in channels-last
  layout, and the pixel shuffle is applied to the final one-channel masks instead of to the 32- and
  64-channel feature maps; LayerNorm2d becomes ``layer_norm`` over the last axis.
- Only the masks asked for are formed (1, or the 3 candidates), and they are resized to the image with
  one precomputed separable linear map per axis: exactly the composition of stock SAM's
  ``interpolate(1024) -> crop -> interpolate(original)``, since bilinear resizing is linear per axis.

A prompt with a mask input (refinement from earlier logits) changes the dense embedding, so that call
computes the first block's image projections afresh; everything else stays the same.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class ImageState:
    """Prompt-independent tensors of one image."""

    features: torch.Tensor  # (1, C, h, w) the image embedding
    keys: torch.Tensor  # (1, HW, C) image tokens + no_mask_embed
    key_pe: torch.Tensor  # (1, HW, C)
    k0: torch.Tensor  # first block, token->image keys
    v0: torch.Tensor  # first block, token->image values
    q0: torch.Tensor  # first block, image->token queries
    grid: tuple[int, int]  # (h, w) of the embedding
    resize_rows: torch.Tensor  # (H, 4h) low-res logits rows -> image rows
    resize_cols: torch.Tensor  # (W, 4w)


def _heads(x: torch.Tensor, n: int) -> torch.Tensor:
    b, t, c = x.shape
    return x.reshape(b, t, n, c // n).transpose(1, 2)


def _attend(attn, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """segment_anything's Attention on already-projected q, k, v (same arithmetic, then out_proj)."""
    n = attn.num_heads
    q, k, v = _heads(q, n), _heads(k, n), _heads(v, n)
    w = (q @ k.transpose(-1, -2)) / math.sqrt(q.shape[-1])
    out = torch.softmax(w, dim=-1) @ v
    b, _, t, d = out.shape
    return attn.out_proj(out.transpose(1, 2).reshape(b, t, n * d))


def _token_to_image(attn, q_in: torch.Tensor, image_pos: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Attention of few tokens over many image tokens without projecting the image tokens.

    softmax(Q (X W_k^T + b_k)^T) (X W_v^T + b_v) = softmax((Q W_k) X^T) (X) W_v^T + b_v per head: the key bias
    is constant along the softmax axis and the rows of the softmax sum to one.
    """
    n = attn.num_heads
    b, t, _ = q_in.shape
    d = attn.internal_dim // n
    q = attn.q_proj(q_in).reshape(b, t, n, d) / math.sqrt(d)
    wk = attn.k_proj.weight.reshape(n, d, -1)
    g = torch.einsum("bthd,hdc->bhtc", q, wk).reshape(b, n * t, -1)  # (B, n*T, C)
    a = torch.softmax(g @ image_pos.transpose(1, 2), dim=-1)  # (B, n*T, N)
    ax = (a @ image).reshape(b, n, t, -1)  # (B, n, T, C)
    wv = attn.v_proj.weight.reshape(n, d, -1)
    v = torch.einsum("bhtc,hdc->bthd", ax, wv).reshape(b, t, n * d) + attn.v_proj.bias
    return attn.out_proj(v)


def _image_to_token(attn, image_pos, q_image, k_in: torch.Tensor, v_in: torch.Tensor, residual) -> torch.Tensor:
    """Attention of many image tokens over few tokens without the (N, D) query and output projections.

    Scores are (X + P) (W_q^T K_h^T) + b_q K_h^T per head and the output is sum_h A_h (V_h W_o,h^T) + b_o.
    ``q_image`` (already projected image queries) replaces ``image_pos`` where it is cached. Returns
    ``residual`` plus the attention output.
    """
    n = attn.num_heads
    b, t, _ = k_in.shape
    d = attn.internal_dim // n
    k = attn.k_proj(k_in).reshape(b, t, n, d) / math.sqrt(d)
    v = attn.v_proj(v_in).reshape(b, t, n, d)
    if q_image is None:  # scores laid out (B, n*T, N) so the softmax over T runs along contiguous rows
        wq = attn.q_proj.weight.reshape(n, d, -1)
        h = torch.einsum("bthd,hdc->bhtc", k, wq).reshape(b, n * t, -1)  # (B, n*T, C)
        bias = torch.einsum("bthd,hd->bht", k, attn.q_proj.bias.reshape(n, d)).reshape(b, n * t, 1)
        s = torch.baddbmm(bias, h, image_pos.transpose(1, 2)) if image_pos.shape[0] == b else h @ image_pos.mT + bias
    else:
        qi = q_image.reshape(q_image.shape[0], -1, n, d).permute(0, 2, 3, 1)  # (1, n, d, N)
        s = (k.transpose(1, 2) @ qi).reshape(b, n * t, -1)  # (B, n*T, N)
    a = torch.softmax(s.reshape(b, n, t, -1), dim=2).reshape(b, n * t, -1)
    wo = attn.out_proj.weight.reshape(-1, n, d)  # (C, n, d)
    # each head's weights sum to one, so out_proj's bias spreads over the n heads' rows of u
    u = torch.einsum("bthd,chd->bhtc", v, wo).reshape(b, n * t, -1) + attn.out_proj.bias / n
    return torch.baddbmm(residual, a.transpose(1, 2), u) if residual.shape[0] == b else residual + a.mT @ u


@functools.lru_cache(maxsize=64)
def resize_matrix(n_low: int, n_pad: int, n_input: int, n_out: int, device, dtype=torch.float32) -> torch.Tensor:
    """(n_out, n_low) map equal to bilinear n_low -> n_pad, crop to n_input, bilinear n_input -> n_out. Kept for
    the next image of the same size (a folder's images often share one); callers never modify it."""
    eye = torch.eye(n_low, dtype=torch.float64).reshape(1, 1, n_low, n_low)
    up = F.interpolate(eye, size=(n_pad, n_low), mode="bilinear", align_corners=False)[..., :n_input, :]
    out = F.interpolate(up, size=(n_out, n_low), mode="bilinear", align_corners=False)
    return out[0, 0].to(device=device, dtype=dtype).contiguous()


class FastMaskDecoder:
    """Drives a SAM model's prompt encoder and mask decoder (see the module docstring)."""

    def __init__(self, sam):
        self.sam = sam
        self.pe = sam.prompt_encoder
        self.dec = sam.mask_decoder
        self.tf = self.dec.transformer
        up = self.dec.output_upscaling  # ConvTranspose2d, LayerNorm2d, GELU, ConvTranspose2d, GELU
        self._deconv1 = self._deconv_as_matmul(up[0])
        self._ln = up[1]
        self._deconv2 = self._deconv_as_matmul(up[3])
        self._act1, self._act2 = up[2], up[4]

    @staticmethod
    def _deconv_as_matmul(conv) -> tuple[torch.Tensor, torch.Tensor]:
        """(Cin, 4*Cout) weight ordered (di, dj, cout) and the matching bias, for a k=2, s=2 ConvTranspose2d."""
        w = conv.weight.detach()  # (Cin, Cout, 2, 2)
        assert tuple(conv.kernel_size) == (2, 2) and tuple(conv.stride) == (2, 2)
        cin, cout = w.shape[:2]
        wm = w.permute(0, 2, 3, 1).reshape(cin, 4 * cout).contiguous()
        bias = conv.bias.detach().repeat(4)
        return wm, bias

    @torch.inference_mode()
    def prepare(self, features: torch.Tensor, input_size, original_size) -> ImageState:
        """Compute the prompt-independent state of an image from its (1, C, h, w) features."""
        _, c, h, w = features.shape
        key_pe = self.pe.get_dense_pe().flatten(2).transpose(1, 2)
        keys = (features + self.pe.no_mask_embed.weight.reshape(1, -1, 1, 1)).flatten(2).transpose(1, 2)
        k0, v0, q0 = self._first_block_projections(keys, key_pe)
        pad = self.sam.image_encoder.img_size
        rows = resize_matrix(4 * h, pad, int(input_size[0]), int(original_size[0]), features.device)
        cols = resize_matrix(4 * w, pad, int(input_size[1]), int(original_size[1]), features.device)
        return ImageState(features, keys, key_pe, k0, v0, q0, (h, w), rows, cols)

    def _first_block_projections(self, keys, key_pe):
        layer = self.tf.layers[0]
        k = keys + key_pe
        return (
            layer.cross_attn_token_to_image.k_proj(k),
            layer.cross_attn_token_to_image.v_proj(keys),
            layer.cross_attn_image_to_token.q_proj(k),
        )

    @torch.inference_mode()
    def __call__(
        self,
        state: ImageState,
        sparse: torch.Tensor,
        mask_input: torch.Tensor | None,
        multimask: bool,
        features: torch.Tensor | None = None,
    ):
        """Decode a batch of prompts: (low-res logits (B, n, 4h, 4w), scores (B, n)).

        ``sparse`` is the prompt encoder's sparse output (B, T, C); ``mask_input`` optional (B, 1, 4h, 4w)
        logits from an earlier prediction (added to ``features``, by default the state's image embedding).
        """
        b = sparse.shape[0]
        out_tokens = torch.cat([self.dec.iou_token.weight, self.dec.mask_tokens.weight], dim=0)
        tokens = torch.cat([out_tokens.unsqueeze(0).expand(b, -1, -1), sparse], dim=1)
        if mask_input is None:
            keys, k0, v0, q0 = state.keys, state.k0, state.v0, state.q0
        else:
            dense = self.pe.mask_downscaling(mask_input)
            keys = ((state.features if features is None else features) + dense).flatten(2).transpose(1, 2)
            k0, v0, q0 = self._first_block_projections(keys, state.key_pe)
        hs, keys = self._transformer(tokens, keys, state.key_pe, k0, v0, q0)
        sel = slice(1, self.dec.num_mask_tokens) if multimask else slice(0, 1)
        scores = self.dec.iou_prediction_head(hs[:, 0])[:, sel]
        return self._logits(hs, keys, sel, state.grid), scores

    @torch.inference_mode()
    def decode_filtered(self, state: ImageState, sparse: torch.Tensor, min_score: float, chunk: int = 8):
        """Multimask decoding of a batch that forms masks only for prompts with a candidate scoring above
        ``min_score`` (the score needs no mask): (logits of those rows, all scores (B, 3), row indices)."""
        b = sparse.shape[0]
        out_tokens = torch.cat([self.dec.iou_token.weight, self.dec.mask_tokens.weight], dim=0)
        tokens = torch.cat([out_tokens.unsqueeze(0).expand(b, -1, -1), sparse], dim=1)
        hs, keys = self._transformer(tokens, state.keys, state.key_pe, state.k0, state.v0, state.q0)
        sel = slice(1, self.dec.num_mask_tokens)
        scores = self.dec.iou_prediction_head(hs[:, 0])[:, sel]
        rows = torch.nonzero((scores > min_score).any(dim=1)).flatten()
        parts = [self._logits(hs[rows[i : i + chunk]], keys[rows[i : i + chunk]], sel, state.grid)
                 for i in range(0, len(rows), chunk)]
        h, w = state.grid
        logits = torch.cat(parts) if parts else hs.new_zeros((0, 3, 4 * h, 4 * w))
        return logits, scores, rows

    def _logits(self, hs, keys, sel: slice, grid) -> torch.Tensor:
        """Low-res mask logits of the selected mask tokens."""
        mask_tokens = hs[:, 1 : 1 + self.dec.num_mask_tokens][:, sel]
        hyper = torch.stack(
            [self.dec.output_hypernetworks_mlps[i + sel.start](mask_tokens[:, i]) for i in range(mask_tokens.shape[1])],
            dim=1,
        )
        return self._masks(keys, hyper, grid)

    def _transformer(self, queries, keys, key_pe, k0, v0, q0):
        """TwoWayTransformer.forward, with the image-side attention products reassociated (module docstring)."""
        query_pe = queries
        for i, layer in enumerate(self.tf.layers):
            if layer.skip_first_layer_pe:
                queries = layer.self_attn(q=queries, k=queries, v=queries)
            else:
                q = queries + query_pe
                queries = queries + layer.self_attn(q=q, k=q, v=queries)
            queries = layer.norm1(queries)
            t2i, i2t = layer.cross_attn_token_to_image, layer.cross_attn_image_to_token
            q = queries + query_pe
            if i == 0:
                attn_out = _attend(t2i, t2i.q_proj(q), k0, v0)
                image_pos = None
            else:
                image_pos = keys + key_pe
                attn_out = _token_to_image(t2i, q, image_pos, keys)
            queries = layer.norm2(queries + attn_out)
            queries = layer.norm3(queries + layer.mlp(queries))
            q = queries + query_pe
            keys = layer.norm4(_image_to_token(i2t, image_pos, q0 if i == 0 else None, q, queries, keys))
        q = queries + query_pe
        attn_out = _token_to_image(self.tf.final_attn_token_to_image, q, keys + key_pe, keys)
        return self.tf.norm_final_attn(queries + attn_out), keys

    def _masks(self, keys: torch.Tensor, hyper: torch.Tensor, grid) -> torch.Tensor:
        """Upscale image tokens and form the masks; pixel shuffle on the masks only."""
        h, w = grid
        b = keys.shape[0]
        w1, b1 = self._deconv1
        x = torch.addmm(b1, keys.reshape(-1, keys.shape[-1]), w1)
        x = x.reshape(b, h * w * 4, -1)
        x = self._act1(F.layer_norm(x, (x.shape[-1],), self._ln.weight, self._ln.bias, self._ln.eps))
        w2, b2 = self._deconv2
        # pixels now ordered (i, j, di, dj, ei, ej)
        x = self._act2(torch.addmm(b2, x.reshape(-1, x.shape[-1]), w2)).reshape(b, h * w * 16, -1)
        m = hyper @ x.transpose(1, 2)  # (B, n, h*w*16)
        n = m.shape[1]
        m = m.reshape(b, n, h, w, 2, 2, 2, 2).permute(0, 1, 2, 4, 6, 3, 5, 7)
        return m.reshape(b, n, 4 * h, 4 * w)

    @staticmethod
    def upscale(logits: torch.Tensor, state: ImageState) -> torch.Tensor:
        """Low-res logits (B, n, 4h, 4w) -> logits at the image's size (B, n, H, W)."""
        return state.resize_rows @ logits @ state.resize_cols.T
