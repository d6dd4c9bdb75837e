"""SamEngine: Segment Anything through the official ``segment-anything`` package, with our embedding cache
and the faster equivalent mask decoder (``decoder.py``)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..embeddings import Embedding, EmbeddingCache
from ..errors import ClickLabelError, PromptError
from ..images import image_hash, to_rgb8
from ..weights import REGISTRY, file_xxh128, load_sam
from .base import MaskResult, Prompt
from .encoder import ImageEncoder


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


def _weights_fingerprint(model: str, path: Path) -> str:
    """Identity of the weights for cache keys: the official hash, or the hash of a user's own file."""
    ck = REGISTRY.get(model)
    if ck is not None and path.name == ck.filename and path.stat().st_size == ck.size:
        return ck.xxh128[:16]
    return file_xxh128(path)[:16]


class SamEngine:
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
    ):
        from .decoder import FastMaskDecoder

        self.device = resolve_device(device)
        if sam is None:
            sam, model, path = load_sam(model, checkpoint, download)
            fingerprint = _weights_fingerprint(model, path)
        else:  # an in-memory model (tests, notebooks): fingerprint its weights
            fingerprint = _module_fingerprint(sam)
        self.model = model
        self.model_id = f"{model}-{fingerprint}"
        self.sam = sam.to(self.device).eval()
        self.cache = cache if cache is not None else EmbeddingCache()
        self.decoder = FastMaskDecoder(self.sam)
        # The encoder fast path (SDPA, bf16) is on by default on CUDA only; fast=False restores stock.
        # torch.compile is asked for (compile=True or a mode): it costs a minute or more the first time.
        sdpa = self.device.startswith("cuda") if fast is None else fast
        precision = precision or ("bf16" if self.device.startswith("cuda") and sdpa else "fp32")
        self.encoder = ImageEncoder(self.sam, self.device, sdpa=sdpa, precision=precision, compile=compile)
        self.transform = self.encoder.transform  # the prompts' coordinates follow the encoder's resize
        self.embedding: Embedding | None = None
        self._features = None
        self._state = None
        self.last_from_cache = False
        self.cache_error: str | None = None  # why the last embedding could not be written to disk, if it was not
        self._inflight: dict[str, threading.Lock] = {}
        self._inflight_guard = threading.Lock()

    @property
    def fast(self) -> bool:
        return self.encoder.sdpa

    @property
    def precision(self) -> str:
        return self.encoder.precision

    # -- images -------------------------------------------------------------------------------------------
    def embedding_key(self, image: np.ndarray) -> str:
        """Cache key of an image (already RGB uint8) under this engine's weights."""
        return self.cache.key(image_hash(image), self.model_id)

    def encode(self, image: np.ndarray) -> Embedding:
        """Run the image encoder on one RGB uint8 image (the slow step: seconds on a CPU)."""
        return self.encode_batch([image])[0]

    def encode_batch(self, images: Sequence[np.ndarray]) -> list[Embedding]:
        """Encode several RGB uint8 images in one batch, exactly as ``SamPredictor.set_image`` prepares them."""
        return self.encoder.encode(images)

    def get_embedding(self, image: np.ndarray) -> Embedding:
        """The embedding of ``image`` from the cache, computing and caching it on a miss. Thread-safe: a second
        caller asking for an image that another thread is encoding (pre-computing the next image) waits for
        that result instead of encoding it again."""
        img = to_rgb8(image)
        key = self.embedding_key(img)
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

    def _cached(self, key: str, img: np.ndarray) -> Embedding | None:
        """The cache entry for ``img``, if it is one for this image and model: its sizes and feature shape must
        be what encoding ``img`` gives (an entry that claims another size is dropped, never trusted)."""
        emb = self.cache.get(key)
        if emb is None:
            return None
        h, w = img.shape[:2]
        pe = self.sam.prompt_encoder
        expected = (1, int(pe.embed_dim), *(int(v) for v in pe.image_embedding_size))
        if (tuple(emb.original_size) == (h, w)
                and tuple(emb.input_size) == self.transform.get_preprocess_shape(h, w, self.transform.target_length)
                and tuple(emb.features.shape) == expected):
            return emb
        self.cache.discard(key)
        return None

    def set_image(self, image: np.ndarray) -> None:
        """Make ``image`` current (cached embedding, or encode now)."""
        self.set_embedding(self.get_embedding(image))

    def prefetch(self, image: np.ndarray) -> None:
        """Compute and cache ``image``'s embedding (the current image stays current)."""
        self.get_embedding(image)

    def propose(self, settings, existing=None, progress=None, stop=None) -> list:
        """SAM's proposals for the current image on its cached embedding (``propose.propose``)."""
        from .propose import propose

        return propose(self, settings, existing=existing, progress=progress, stop=stop)

    def set_embedding(self, emb: Embedding) -> None:
        """Make a precomputed embedding current."""
        import torch

        self.embedding = emb
        self._features = torch.as_tensor(emb.features, device=self.device, dtype=torch.float32)
        self._state = self.decoder.prepare(self._features, emb.input_size, emb.original_size)

    # -- prompts ------------------------------------------------------------------------------------------
    def _require_image(self) -> Embedding:
        if self.embedding is None:
            raise PromptError("no image set: call set_image first")
        return self.embedding

    def predict(self, prompt: Prompt, multimask: bool = False, previous: MaskResult | None = None) -> list[MaskResult]:
        """Masks for one prompt, best first; ``previous`` feeds its low-res logits back for refinement."""
        import torch

        emb = self._require_image()
        prompt.validate(emb.original_size)
        points = None
        if prompt.points:
            coords = self.transform.apply_coords(np.asarray(prompt.points, dtype=np.float32), emb.original_size)
            points = (
                torch.as_tensor(coords, dtype=torch.float32, device=self.device)[None],
                torch.as_tensor(prompt.labels, dtype=torch.int64, device=self.device)[None],
            )
        boxes = None
        if prompt.box is not None:
            b = self.transform.apply_boxes(np.asarray(prompt.box, dtype=np.float32)[None], emb.original_size)
            boxes = torch.as_tensor(b, dtype=torch.float32, device=self.device)
        mask_input = None
        if previous is not None and previous.logits is not None:
            mask_input = torch.as_tensor(previous.logits, dtype=torch.float32, device=self.device)[None, None]
        with torch.inference_mode():
            sparse, _ = self.decoder.pe(points=points, boxes=boxes, masks=None)
            logits, scores = self.decoder(self._state, sparse, mask_input, multimask, self._features)
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
            tb = torch.as_tensor(self.transform.apply_boxes(chunk, emb.original_size), device=self.device)
            with torch.inference_mode():
                sparse, _ = self.decoder.pe(points=None, boxes=tb, masks=None)
                logits, scores = self.decoder(self._state, sparse, None, False)
            for i in range(logits.shape[0]):
                results.extend(self._results(logits[i], scores[i], sort=False))
        return results

    def predict_points_batch(self, coords: np.ndarray, min_score: float = float("-inf")):
        """Decode many single positive points at once (auto-propose), 3 candidates each: low-res logits of the
        points with a candidate scoring above ``min_score``, all scores (B, 3), and those points' indices."""
        import torch

        emb = self._require_image()
        c = self.transform.apply_coords(np.asarray(coords, dtype=np.float32), emb.original_size)
        pts = torch.as_tensor(c, dtype=torch.float32, device=self.device)[:, None, :]
        labels = torch.ones(pts.shape[:2], dtype=torch.int64, device=self.device)
        with torch.inference_mode():
            sparse, _ = self.decoder.pe(points=(pts, labels), boxes=None, masks=None)
            return self.decoder.decode_filtered(self._state, sparse, min_score)

    def _results(self, logits, scores, sort: bool) -> list[MaskResult]:
        """MaskResults best first (if ``sort``); only the first one is upscaled now, the others on demand."""
        sc = scores.float().cpu().numpy()
        low = logits.float().cpu().numpy()
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
                full = self.decoder.upscale(logit[None, None], state)[0, 0]
                return (full > self.sam.mask_threshold).cpu().numpy()

        return make


def _module_fingerprint(module) -> str:
    import hashlib

    h = hashlib.blake2b(digest_size=8)
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().float().cpu().numpy().tobytes()[:4096])
        h.update(str(tuple(t.shape)).encode())
    return h.hexdigest()
