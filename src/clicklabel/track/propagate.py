"""SAM 2.1 propagation of one object through a sequence whose frames are read one at a time.

``VideoModel`` holds a SAM 2.1 model (``SAM2Base``: the weights every SAM 2.1 checkpoint holds) and the frames'
image features: each frame is transformed as ``SAM2VideoPredictor`` loads frames (resized to the model's square
input with Pillow, scaled to [0, 1], normalised), encoded once, and kept in the embedding cache under a key of its
own, so a second propagation over the same frames (a correction, another object, the next run) encodes nothing.
``Tracker`` follows one object: it runs the model's own ``track_step`` with the bookkeeping of
``SAM2VideoPredictor`` (``add_new_points_or_box`` / ``add_new_mask``, ``propagate_in_video``) for one object, so the
masks agree with the stock predictor's; the differences are what a long clip needs: frames are read when they are
needed and never all held (the stock predictor loads every frame at 1024x1024 in float32 first), the per-frame
outputs live in a bounded ``TrackMemory``, every frame a person prompted is a conditioning frame (the stock
``add_all_frames_to_correct_as_cond=True``: a correction stays fixed and guides the frames around it), and
propagation stops once the object's score stays below a threshold (the object left the view).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from ..embeddings import Embedding, EmbeddingCache
from ..errors import ClickLabelError, PromptError
from .memory import TrackMemory

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
NO_OBJECT = -1024.0  # SAM 2's score for "no object here"


class FrameSource:
    """Frames by index: ``len``, ``image(i)`` (HxWx3 uint8) and ``key(i)``, a content key for the feature cache
    (the frame file's hash in a project: a cached frame is not even decoded)."""

    def __init__(self, images: Callable[[int], np.ndarray], count: int, keys: Callable[[int], str] | None = None,
                 size: tuple[int, int] | None = None):
        self._images, self._count, self._keys, self.size = images, count, keys, size

    def __len__(self) -> int:
        return self._count

    def image(self, i: int) -> np.ndarray:
        return self._images(i)

    def key(self, i: int) -> str | None:
        return self._keys(i) if self._keys is not None else None


@dataclass
class FrameResult:
    frame: int
    mask: np.ndarray  # (H, W) bool, empty where the object is absent
    score: float  # SAM 2's object score logit (> 0: the object is on the frame)
    fixed: bool  # a frame a person prompted (kept as it is)


class VideoModel:
    """A SAM 2.1 model for propagation, with the frames' features cached (``encoded`` counts encoder runs)."""

    def __init__(self, module, model_id: str, device: str = "cpu", cache: EmbeddingCache | None = None,
                 fill_hole_area: int = 8, memory_items: int = 4):
        self.net = module.to(device).eval()
        self.model_id = f"{model_id}-video"
        self.device = device
        self.cache = cache
        self.fill_hole_area = fill_hole_area
        self.size = int(module.image_size)
        self.encoded = 0
        self._recent: OrderedDict[str, tuple] = OrderedDict()
        self._memory_items = memory_items
        self._pos: dict[tuple, object] = {}
        self._mem_pos = None
        self._lock = threading.Lock()

    def prepare(self, image: np.ndarray):
        """``SAM2VideoPredictor``'s frame transform: (1, 3, S, S) float32."""
        import torch
        from PIL import Image

        img = np.array(Image.fromarray(image).convert("RGB").resize((self.size, self.size))) / 255.0
        x = torch.from_numpy(img).permute(2, 0, 1).float()
        mean = torch.tensor(MEAN, dtype=torch.float32)[:, None, None]
        std = torch.tensor(STD, dtype=torch.float32)[:, None, None]
        return ((x - mean) / std)[None].to(self.device)

    def features(self, frames: FrameSource, i: int):
        """(vision feats, vision pos embeds, feat sizes) of frame ``i`` as ``_prepare_backbone_features`` gives them."""
        import torch

        key = frames.key(i)
        ck = EmbeddingCache.key(key, self.model_id) if key else None
        with self._lock:
            fpn = self._recent.get(ck) if ck else None
        if fpn is None and ck and self.cache is not None:
            emb = self.cache.get(ck)
            if emb is not None and all(k in emb.extra for k in ("fpn0", "fpn1")):
                fpn = [torch.as_tensor(a, dtype=torch.float32, device=self.device)
                       for a in (emb.extra["fpn0"], emb.extra["fpn1"], emb.features)]
        if fpn is None:
            image = frames.image(i)
            with torch.inference_mode():
                out = self.net.forward_image(self.prepare(image))
            self.encoded += 1
            fpn = [f.detach() for f in out["backbone_fpn"]]
            for f, p in zip(fpn, out["vision_pos_enc"]):
                self._pos[tuple(f.shape)] = p
            if ck and self.cache is not None:
                self.cache.put(ck, Embedding(fpn[2].cpu().numpy(), tuple(image.shape[:2]), (self.size, self.size),
                                             {"fpn0": fpn[0].cpu().numpy(), "fpn1": fpn[1].cpu().numpy()}))
        if ck:
            with self._lock:
                self._recent[ck] = fpn
                self._recent.move_to_end(ck)
                while len(self._recent) > self._memory_items:
                    self._recent.popitem(last=False)
        backbone = {"backbone_fpn": list(fpn), "vision_pos_enc": [self._pos_enc(f) for f in fpn]}
        _, feats, pos, sizes = self.net._prepare_backbone_features(backbone)
        return feats, pos, sizes

    def _pos_enc(self, f):
        shape = tuple(f.shape)
        if shape not in self._pos:
            import torch

            with torch.inference_mode():
                self._pos[shape] = self.net.image_encoder.neck.position_encoding(f).to(f.dtype)
        return self._pos[shape]

    def memory_pos_enc(self):
        """The memory's positional encoding (the same for every frame)."""
        if self._mem_pos is None:
            import torch

            s = self.size // 16
            with torch.inference_mode():
                x = torch.zeros(1, self.net.mem_dim, s, s, device=self.device)
                self._mem_pos = [self.net.memory_encoder.position_encoding(x).to(x.dtype)]
        return self._mem_pos


class Tracker:
    """One object through ``frames`` (see the module docstring). Prompts are in frame pixels."""

    def __init__(self, model: VideoModel, frames: FrameSource, memory: TrackMemory | None = None):
        if len(frames) < 1:
            raise ClickLabelError("the sequence has no frames")
        self.model, self.frames = model, frames
        self.memory = memory if memory is not None else TrackMemory()
        self.memory.pos_enc = model.memory_pos_enc()
        self.memory.load_cond()
        self._hw = frames.size

    # -- prompts --------------------------------------------------------------------------------------------
    def prompt(self, t: int, points=None, labels=None, box=None, mask: np.ndarray | None = None,
               clear: bool = False) -> FrameResult:
        """Clicks (``points`` (N, 2), ``labels`` 1/0), a ``box`` (x0, y0, x1, y1) or a ``mask`` on frame ``t``: the
        object's mask there, which becomes a fixed (conditioning) frame. Clicks add to the frame's earlier clicks
        unless ``clear``; a box or a mask replaces them."""
        import torch

        self._check_frame(t)
        h, w = self._size(t)
        mem, net = self.memory, self.model.net
        is_init = t not in mem.tracked
        reverse = False if is_init else mem.tracked[t]
        out_dict = mem.output_dict()
        feats, pos, sizes = self.model.features(self.frames, t)
        with torch.inference_mode():
            if mask is not None:
                m = torch.as_tensor(np.asarray(mask, dtype=bool))[None, None].float().to(self.model.device)
                if m.shape[-2:] != (net.image_size, net.image_size):
                    m = torch.nn.functional.interpolate(m, size=(net.image_size, net.image_size), mode="bilinear",
                                                        align_corners=False, antialias=True)
                    m = (m >= 0.5).float()
                mem.points.pop(t, None)
                point_inputs, mask_inputs, prev = None, m, None
            else:
                new = self._scaled_points(points, labels, box, h, w)
                if box is not None or clear:
                    mem.points.pop(t, None)
                mem.points[t] = mem.points.get(t, []) + new
                pts = torch.tensor([[p[:2] for p in mem.points[t]]], dtype=torch.float32, device=self.model.device)
                lab = torch.tensor([[p[2] for p in mem.points[t]]], dtype=torch.int32, device=self.model.device)
                point_inputs, mask_inputs = {"point_coords": pts, "point_labels": lab}, None
                prev_out = mem.output(t)
                prev = None if prev_out is None else torch.clamp(prev_out["pred_masks"].to(self.model.device),
                                                                 -32.0, 32.0)
            out = net.track_step(frame_idx=t, is_init_cond_frame=is_init, current_vision_feats=feats,
                                 current_vision_pos_embeds=pos, feat_sizes=sizes, point_inputs=point_inputs,
                                 mask_inputs=mask_inputs, output_dict=out_dict, num_frames=len(self.frames),
                                 track_in_reverse=reverse, run_mem_encoder=False, prev_sam_mask_logits=prev)
            low = self._fill_holes(out["pred_masks"])
            high = torch.nn.functional.interpolate(low.to(self.model.device), size=(net.image_size,) * 2,
                                                   mode="bilinear", align_corners=False)
            maskmem, _ = net._encode_new_memory(current_vision_feats=feats, feat_sizes=sizes,
                                                pred_masks_high_res=high,
                                                object_score_logits=out["object_score_logits"], is_mask_from_pts=True)
        compact = self._compact(out, low, maskmem)
        mem.non_cond.pop(t)
        mem.set_cond(t, compact)
        mem.save_index()
        return FrameResult(t, self._video_mask(low, h, w), float(compact["object_score_logits"]), True)

    def _scaled_points(self, points, labels, box, h, w) -> list:
        pts: list = []
        if box is not None:
            x0, y0, x1, y1 = (float(v) for v in box)
            pts += [[x0, y0, 2], [x1, y1, 3]]
        if points is not None:
            points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
            labels = np.ones(len(points), int) if labels is None else np.asarray(labels).reshape(-1)
            if len(labels) != len(points):
                raise PromptError("give one label per point")
            pts += [[float(x), float(y), int(v)] for (x, y), v in zip(points, labels)]
        if not pts:
            raise PromptError("a prompt needs a point, a box or a mask")
        s = self.model.size
        return [[x / w * s, y / h * s, lab] for x, y, lab in pts]

    # -- propagation ----------------------------------------------------------------------------------------
    def propagate(self, start: int, reverse: bool = False, end: int | None = None, min_score: float = 0.0,
                  patience: int = 1, stop: threading.Event | None = None) -> Iterator[FrameResult]:
        """Yield each frame's result from ``start`` (a prompted frame is yielded as it is) towards the end (or
        the start with ``reverse``), to ``end`` at most. Stops after ``patience`` frames in a row whose object
        score is below ``min_score`` (the object left; those frames are yielded, with empty masks) or when
        ``stop`` is set."""
        import torch

        if not self.memory.cond:
            raise PromptError("the object has no prompted frame yet: prompt it on a frame first")
        self._check_frame(start)
        n = len(self.frames)
        last = (0 if end is None else max(end, 0)) if reverse else (n - 1 if end is None else min(end, n - 1))
        order = range(start, last - 1, -1) if reverse else range(start, last + 1)
        mem, net = self.memory, self.model.net
        missing = 0
        for t in order:
            if stop is not None and stop.is_set():
                return
            h, w = self._size(t)
            if t in mem.cond:
                out, fixed = mem.cond[t], True
                low = out["pred_masks"]
            else:
                feats, pos, sizes = self.model.features(self.frames, t)
                with torch.inference_mode():
                    raw = net.track_step(frame_idx=t, is_init_cond_frame=False, current_vision_feats=feats,
                                         current_vision_pos_embeds=pos, feat_sizes=sizes, point_inputs=None,
                                         mask_inputs=None, output_dict=mem.output_dict(), num_frames=n,
                                         track_in_reverse=reverse, run_mem_encoder=True)
                low = self._fill_holes(raw["pred_masks"])
                out, fixed = self._compact(raw, low, raw["maskmem_features"]), False
                mem.non_cond[t] = out
            mem.tracked[t] = reverse
            score = float(out["object_score_logits"])
            yield FrameResult(t, self._video_mask(low, h, w), score, fixed)
            missing = missing + 1 if score < min_score and not fixed else 0
            if missing >= patience:
                break
        mem.save_index()

    # -- helpers --------------------------------------------------------------------------------------------
    def _compact(self, out: dict, low, maskmem) -> dict:
        import torch

        return {"maskmem_features": maskmem.to(torch.bfloat16).cpu(), "maskmem_pos_enc": self.memory.pos_enc,
                "pred_masks": low.float().cpu(), "obj_ptr": out["obj_ptr"].cpu(),
                "object_score_logits": out["object_score_logits"].cpu()}

    def _fill_holes(self, low):
        """``fill_holes_in_mask_scores``: background regions of at most ``fill_hole_area`` low-res pixels become
        foreground (0.1), with OpenCV's connected components (8-connected) instead of SAM 2's CUDA kernel."""
        area = self.model.fill_hole_area
        if area <= 0:
            return low
        import cv2
        import torch

        bg = (low[0, 0] <= 0).cpu().numpy().astype(np.uint8)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(bg, connectivity=8)
        small = np.flatnonzero(stats[:, cv2.CC_STAT_AREA] <= area)
        small = small[small > 0]
        if small.size == 0:
            return low
        hole = torch.from_numpy(np.isin(labels, small) & (bg > 0)).to(low.device)
        return torch.where(hole[None, None], torch.tensor(0.1, device=low.device), low)

    def _video_mask(self, low, h: int, w: int) -> np.ndarray:
        import torch

        with torch.inference_mode():
            up = torch.nn.functional.interpolate(low.float(), size=(h, w), mode="bilinear", align_corners=False)
        return (up[0, 0] > 0).cpu().numpy()

    def _size(self, t: int) -> tuple[int, int]:
        if self._hw is None:
            self._hw = tuple(self.frames.image(t).shape[:2])
        return self._hw

    def _check_frame(self, t: int) -> None:
        if not 0 <= t < len(self.frames):
            raise PromptError(f"frame {t} is not in the sequence (frames 0 to {len(self.frames) - 1})")

    def close(self) -> None:
        self.memory.close()
