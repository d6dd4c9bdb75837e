"""What the Segment Anything engines (SAM, SAM 2.1, HQ-SAM) share, so each family only supplies its own arithmetic.

``CachedEngine`` holds the weights' identity (``model_id``: model name + weights fingerprint, the cache's key), the
embedding cache (memory + disk; one encoding per image even when two threads ask for it), the current image, the
prompt plumbing (validation, batches of boxes, batches of grid points for auto-propose) and the results, best first,
with the second and third candidates upscaled only when someone looks at them.

A family supplies ``encoder`` (``prepare`` / ``run_all`` / ``encode``: see ``encoder.ImageEncoder``) and:
- ``_prepare_state(emb)``: the prompt-independent tensors of an image, from its cached ``Embedding`` only (so a
  cached image decodes without the encoder);
- ``_decode(points, labels, boxes, mask_input, multimask)``: low-res logits (B, n, h, w) and scores (B, n) for a
  batch of prompts in image pixels;
- ``_upscale(logits, state)``: low-res logits -> logits at the image's size;
- optionally ``_stored_logits`` (what a result keeps for refinement) and ``required_extras`` (the ``Embedding.extra``
  arrays the family needs; a cache entry without them is recomputed).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..embeddings import Embedding, EmbeddingCache
from ..errors import ClickLabelError, PromptError
from ..images import image_hash, to_rgb8
from .base import MaskResult, Prompt
from .fingerprint import loaded_fingerprint

PINNED_MIN_BYTES = 1 << 20  # arrays from this size go to a GPU through pinned memory


def resolve_device(device: str = "auto") -> str:
    """'auto' -> cuda if present, else mps, else cpu; an explicit device that is not there is an error."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ClickLabelError("device 'cuda' asked for, but PyTorch sees no CUDA GPU; use --device cpu")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ClickLabelError("device 'mps' asked for, but it is not available; use --device cpu")
    if device not in ("cpu", "mps") and not device.startswith("cuda"):
        raise ClickLabelError(f"unknown device {device!r}; use auto, cpu, cuda or mps")
    return device


def default_precision(device: str, precision: str | None, fast: bool | None = None) -> str:
    """The encoder's precision: as asked, else what the hardware computes fastest (``precision.choose_precision``)."""
    from .precision import choose_precision

    return choose_precision(device, precision, fast).precision


class CachedEngine(ABC):
    """The shared half of the SAM-family engines (module docstring)."""

    name = "?"
    mask_threshold = 0.0
    STATES_KEPT = 4  # decoder states of the last images kept on the device (vit_b: ~10 MB each)
    required_extras: tuple[str, ...] = ()

    def __init__(self, model: str, checkpoint: str | Path | None, device: str, cache: EmbeddingCache | None,
                 download: bool, loaded=None):
        """Resolve the device (first: a missing GPU is named before any loading), then load ``model`` from
        ``checkpoint`` (``models.load_model``) unless ``loaded`` (a ``models.LoadedModel``) is given; the module
        goes to the device as ``self.module``."""
        from .lazy import to_device
        from .models import load_model

        self.device = resolve_device(device)
        loaded = loaded or load_model(model, checkpoint, download, family=self.name)
        self.model = loaded.name
        self.model_id = f"{loaded.name}-{loaded_fingerprint(loaded)}"
        self._lazy = loaded.lazy  # the image encoder's weights, until the first image is encoded
        self.checkpoint_file = loaded.path  # None: weights built in memory
        self.module = to_device(loaded.module, self.device).eval()
        self._encoder = None
        self._encoder_guard = threading.Lock()
        self.encoder_builds = 0  # how many times an image encoder was built (0 while only cached images were seen)
        self._states: OrderedDict[str, tuple] = OrderedDict()  # key -> (embedding, decoder state on the device)
        self.cache = cache if cache is not None else EmbeddingCache()
        self.embedding: Embedding | None = None
        self._state = None
        self.last_from_cache = False
        self.cache_error: str | None = None  # why the last embedding could not be written to disk, if it was not
        self._inflight: dict[str, threading.Lock] = {}
        self._inflight_guard = threading.Lock()

    @property
    def precision(self) -> str:
        return self.encoder.precision if self._encoder is not None else self.precision_choice.precision

    @property
    def encoder(self):
        """The image encoder, built (and its weights loaded, for a lazily loaded model) on first use."""
        if self._encoder is None:
            with self._encoder_guard:
                if self._encoder is None:
                    if self._needs_encoder_weights():
                        self.load_encoder_weights()
                    self._encoder = self._make_encoder()
                    self.encoder_builds += 1
        return self._encoder

    @encoder.setter
    def encoder(self, value) -> None:
        self._encoder = value

    def load_encoder_weights(self) -> None:
        """Put the image encoder's weights in the model, if it was loaded without them (``lazy.py``); once."""
        if self._lazy is not None:
            self._lazy.complete(self.module, self.device)

    def _needs_encoder_weights(self) -> bool:
        """Whether building this engine's encoder needs the PyTorch image encoder's weights (an encoder converted
        for OpenVINO and kept on disk does not)."""
        return True

    @property
    def input_side(self) -> int:
        """The encoder's input size (the long side it sees), known without building the encoder."""
        return int(self.encoder.size)

    def ensure_encoder(self):
        """Build the image encoder now (benchmarks, warm-ups); returns it."""
        return self.encoder

    def local_encoder(self):
        """A new image encoder of this engine's own (what ``encoder`` builds), whatever ``encoder`` was replaced by."""
        with self._encoder_guard:
            self.load_encoder_weights()
            self.encoder_builds += 1
            return self._make_encoder()

    @abstractmethod
    def _make_encoder(self):
        """The family's image encoder on ``self.device`` with ``self.precision_choice`` (called once, lazily)."""

    # -- images -------------------------------------------------------------------------------------------
    def embedding_key(self, image: np.ndarray) -> str:
        """Cache key of an image (already RGB uint8) under this engine's weights."""
        return self.cache.key(image_hash(image), self.model_id)

    def encode(self, image: np.ndarray) -> Embedding:
        """Run the image encoder on one RGB uint8 image (the slow step: seconds on a CPU)."""
        return self.encode_batch([image])[0]

    def encode_batch(self, images: Sequence[np.ndarray]) -> list[Embedding]:
        """Encode several RGB uint8 images in one batch, exactly as the family's stock predictor prepares them (the
        time per image goes to this machine's speed record, ``speed.py``, which the model suggestion reads)."""
        import time

        from . import speed

        started = time.perf_counter()
        out = self.encoder.encode(images)
        if getattr(self.encoder, "client", None) is None and images:  # encoded here, not on a server
            speed.record(self.model, self.device, self.precision, (time.perf_counter() - started) / len(images))
        return out

    def _cached(self, key: str, img: np.ndarray) -> Embedding | None:
        """The cache entry for ``img``, if it is one for this image and model: its sizes and feature shape must
        be what encoding ``img`` gives (an entry that claims another size is dropped, never trusted), and it
        must hold this family's arrays (else it is recomputed)."""
        emb = self.cache.get(key)
        if emb is None:
            return None
        if not all(k in emb.extra for k in self.required_extras):
            return None
        if self._fits(emb, *img.shape[:2]):
            return emb
        self.cache.discard(key)
        return None

    def _fits(self, emb: Embedding, h: int, w: int) -> bool:
        if tuple(emb.original_size) != (h, w):
            return False
        t = getattr(self, "transform", None)
        if hasattr(t, "get_preprocess_shape") and \
                tuple(emb.input_size) != tuple(t.get_preprocess_shape(h, w, t.target_length)):
            return False
        pe = getattr(self.module, "prompt_encoder", None) or getattr(self.module, "sam_prompt_encoder", None)
        if pe is None:
            return True
        return tuple(emb.features.shape) == (1, int(pe.embed_dim), *(int(v) for v in pe.image_embedding_size))

    def get_embedding(self, image: np.ndarray, key: str | None = None) -> Embedding:
        """The embedding of ``image`` from the cache, computing and caching it on a miss. Thread-safe: a second
        caller asking for an image that another thread is encoding (pre-computing the next image) waits for
        that result instead of encoding it again. ``key``: the image's cache key, when the caller has it."""
        img = to_rgb8(image)
        key = key or self.embedding_key(img)
        emb = self._cached(key, img)
        if emb is not None:
            self.last_from_cache = True
            return emb
        with self._inflight_guard:
            lock = self._inflight.setdefault(key, threading.Lock())
        with lock:
            emb = self._cached(key, img)
            self.last_from_cache = emb is not None
            if emb is None:
                emb = self.encode(img)
                try:
                    self.cache.put(key, emb)
                except ClickLabelError as exc:  # a full or read-only cache disk: the embedding is in memory
                    self.cache_error = str(exc)
        with self._inflight_guard:
            self._inflight.pop(key, None)
        return emb

    def set_image(self, image: np.ndarray) -> None:
        """Make ``image`` current: the decoder state of one of the last ``STATES_KEPT`` images, kept on the device
        (going back to an image costs no disk read, no copy to the GPU and no decoder preparation), else from the
        cached embedding, else encoded now."""
        img = to_rgb8(image)
        key = self.embedding_key(img)
        with self._inflight_guard:
            kept = self._states.get(key)
            if kept is not None:
                self._states.move_to_end(key)
        if kept is not None:
            self.embedding, self._state = kept
            self.last_from_cache = True
            return
        self.set_embedding(self.get_embedding(img, key))
        with self._inflight_guard:
            self._states[key] = (self.embedding, self._state)
            while len(self._states) > self.STATES_KEPT:
                self._states.popitem(last=False)

    def forget_kept(self) -> None:
        """Drop the decoder states kept on the device (the next ``set_image`` reads the cache again)."""
        with self._inflight_guard:
            self._states.clear()

    def prefetch(self, image: np.ndarray) -> None:
        """Compute and cache ``image``'s embedding (the current image stays current)."""
        self.get_embedding(image)

    def set_embedding(self, emb: Embedding) -> None:
        """Make a precomputed embedding current."""
        import torch

        with torch.inference_mode():
            state = self._prepare_state(emb)
        self.embedding, self._state = emb, state

    def propose(self, settings, existing=None, progress=None, stop=None) -> list:
        """Every object of the current image, on its cached embedding (``propose.propose``)."""
        from .propose import propose

        return propose(self, settings, existing=existing, progress=progress, stop=stop)

    def _require_image(self) -> Embedding:
        if self.embedding is None:
            raise PromptError("no image set: call set_image first")
        return self.embedding

    def _tensor(self, array, dtype=None):
        """``array`` on the device; large arrays go to a GPU through pinned memory, copied without blocking (the
        copy overlaps the host work that follows; the next kernel on the stream waits for it)."""
        import torch

        arr = np.asarray(array)
        dtype = dtype or torch.float32
        if self.device.startswith("cuda") and arr.nbytes >= PINNED_MIN_BYTES:
            host = torch.from_numpy(np.ascontiguousarray(arr)).to(dtype).pin_memory()
            return host.to(self.device, non_blocking=True)
        return torch.as_tensor(arr, dtype=dtype, device=self.device)

    # -- prompts ------------------------------------------------------------------------------------------
    def predict(self, prompt: Prompt, multimask: bool = False, previous: MaskResult | None = None) -> list[MaskResult]:
        """Masks for one prompt, best first; ``previous`` feeds its low-res logits back for refinement."""
        import torch

        emb = self._require_image()
        prompt.validate(emb.original_size)
        points = np.asarray(prompt.points, dtype=np.float32)[None] if prompt.points else None
        labels = np.asarray(prompt.labels, dtype=np.int64)[None] if prompt.points else None
        box = np.asarray(prompt.box, dtype=np.float32)[None] if prompt.box is not None else None
        mask_input = None
        if previous is not None and previous.logits is not None:
            mask_input = self._tensor(previous.logits)[None, None]
        with torch.inference_mode():
            logits, scores = self._decode(points, labels, box, mask_input, multimask)
        return self._results(logits[0], scores[0], sort=True)

    def predict_boxes(self, boxes: Sequence[Sequence[float]], batch: int = 64) -> list[MaskResult]:
        """One mask per box (x0, y0, x1, y1), decoded in batches in one call each."""
        import torch

        emb = self._require_image()
        boxes = [tuple(float(v) for v in b) for b in boxes]
        for b in boxes:
            Prompt(box=b).validate(emb.original_size)  # type: ignore[arg-type]
        results: list[MaskResult] = []
        for start in range(0, len(boxes), batch):
            chunk = np.asarray(boxes[start : start + batch], dtype=np.float32)
            with torch.inference_mode():
                logits, scores = self._decode(None, None, chunk, None, False)
            for i in range(logits.shape[0]):
                results.extend(self._results(logits[i], scores[i], sort=False))
        return results

    def predict_points_batch(self, coords: np.ndarray, min_score: float = float("-inf"), chunk: int = 16):
        """Decode many single positive points at once (auto-propose), 3 candidates each: low-res logits of the
        points with a candidate scoring above ``min_score``, all scores (B, 3), and those points' indices."""
        import torch

        self._require_image()
        coords = np.asarray(coords, dtype=np.float32)
        parts, all_scores = [], []
        with torch.inference_mode():
            for i in range(0, len(coords), chunk):
                pts = coords[i : i + chunk, None, :]
                logits, scores = self._decode(pts, np.ones(pts.shape[:2], dtype=np.int64), None, None, True)
                keep = (scores > min_score).any(dim=1)
                parts.append(logits[keep])
                all_scores.append(scores)
            scores = torch.cat(all_scores)
            rows = torch.nonzero((scores > min_score).any(dim=1)).flatten()
            return torch.cat(parts), scores, rows

    def upscale(self, logits):
        """Low-res logits (B, n, h, w) of the current image -> logits at the image's size (B, n, H, W)."""
        import torch

        with torch.inference_mode():
            return self._upscale(logits, self._state)

    def _stored_logits(self, logits):
        """The low-res logits a result keeps for refinement (the stock predictor's ``low_res_masks``)."""
        return logits

    def _results(self, logits, scores, sort: bool) -> list[MaskResult]:
        """MaskResults best first (if ``sort``); only the first one is upscaled now, the others on demand."""
        sc = scores.float().cpu().numpy()
        low = self._stored_logits(logits).float().cpu().numpy()
        order = np.argsort(-sc, kind="stable") if sort else np.arange(len(sc))
        state = self._state
        out = [
            MaskResult(score=float(sc[i]), logits=low[i], make_mask=self._mask_maker(logits[i], state)) for i in order
        ]
        out[0].mask  # noqa: B018 - the mask shown at once is made now, in the caller's thread
        return out

    def _mask_maker(self, logit, state):
        def make() -> np.ndarray:
            import torch

            with torch.inference_mode():
                full = self._upscale(logit[None, None], state)[0, 0]
                return (full > self.mask_threshold).cpu().numpy()

        return make

    # -- what a family supplies -------------------------------------------------------------------------------
    @abstractmethod
    def _prepare_state(self, emb: Embedding):
        """The per-image decoder state built from a (cached) embedding, on the engine's device."""

    @abstractmethod
    def _decode(self, points, labels, boxes, mask_input, multimask: bool):
        """(low-res logits, scores) for prompts in image coordinates, on the current state."""

    @abstractmethod
    def _upscale(self, logits, state):
        """Low-res logits to the image's size, as the family's stock predictor does."""
