"""The image-embedding cache: computed once per (image content, model), kept in memory and on disk.

Disk entries are ``.npz`` files (the image features and any further named arrays a model family needs, such as
SAM 2.1's high-resolution features or HQ-SAM's HQ features, plus the original and resized image sizes), in float16
by default or float32 (``precision``): an fp32 encoding rounded to float16 gives masks at IoU ~0.9999 of the fresh
ones, a bf16 encoding is kept exactly (``clicklabel bench latency`` measures it). Entries are written to a temporary
name and renamed into place, so a killed process never leaves a half file under a real key. zipfile checks each
member's CRC on read, and the loader checks shapes and finiteness: a corrupt entry is deleted and recomputed, never
trusted. Entries hold no paths or machine details, so a cache folder filled on a GPU machine works on a laptop.

File format versions (the ``format`` member): 1 = features and sizes only (no ``format`` member; SAM v1 entries
written before 0.2 still read), 2 = plus ``extra_<name>`` arrays. An entry of a newer format is a miss.
"""

from __future__ import annotations

import threading
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .files import atomic_write, cache_path

CACHE_PRECISIONS = ("float16", "float32")
KEY_VERSION = 1  # part of every key: changing it makes every existing entry a miss
FORMAT_VERSION = 2  # the newest file format this module writes and reads


@dataclass
class Embedding:
    """Image features plus the sizes needed to map prompts and masks back to the image, and any further
    prompt-independent arrays of the model family (``extra``: name -> (1, ...) array)."""

    features: np.ndarray  # (1, C, 64, 64) float32
    original_size: tuple[int, int]  # (H, W) of the image
    input_size: tuple[int, int]  # (H, W) of the image as the encoder saw it (before padding)
    extra: dict[str, np.ndarray] = field(default_factory=dict)


def cache_dir() -> Path:
    """The embedding cache: ``embeddings/`` under the cache root (``files.cache_root``)."""
    return cache_path("embeddings")


class EmbeddingCache:
    """Memory LRU in front of a folder of ``.npz`` files; thread-safe."""

    def __init__(self, folder: str | Path | None = None, memory_items: int = 8, disk: bool = True,
                 precision: str = "float16"):
        if precision not in CACHE_PRECISIONS:
            from .errors import ClickLabelError

            raise ClickLabelError(f"unknown cache precision {precision!r}; use {' or '.join(CACHE_PRECISIONS)}")
        self.folder = Path(folder) if folder is not None else cache_dir()
        self.memory_items = memory_items
        self.disk = disk
        self.precision = precision  # of the arrays written to disk
        self._mem: OrderedDict[str, Embedding] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def at_root(cls, root: str | Path, **options) -> EmbeddingCache:
        """The embedding cache of the cache root ``root`` (its ``embeddings/`` folder)."""
        return cls(Path(root) / "embeddings", **options)

    @staticmethod
    def key(image_key: str, model_id: str) -> str:
        """Cache key of an image (content hash) under a model (architecture + weights fingerprint)."""
        return f"{model_id}-{image_key}-v{KEY_VERSION}"

    def path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.npz"

    def get(self, key: str) -> Embedding | None:
        """The cached embedding, or None (a corrupt disk entry is removed and reported as a miss)."""
        with self._lock:
            emb = self._mem.get(key)
            if emb is not None:
                self._mem.move_to_end(key)
                return emb
        if not self.disk:
            return None
        p = self.path(key)
        if not p.is_file():
            return None
        emb = self._read(p)
        if emb is None:
            p.unlink(missing_ok=True)
            return None
        self._remember(key, emb)
        return emb

    def contains(self, key: str) -> bool:
        """Whether ``key`` is in memory or on disk (without reading it)."""
        with self._lock:
            if key in self._mem:
                return True
        return self.disk and self.path(key).is_file()

    def put(self, key: str, emb: Embedding, memory: bool = True) -> None:
        """Remember ``emb`` in memory (unless ``memory`` is False: bulk pre-computing) and write it to disk
        atomically, without an fsync: an entry torn by a power loss fails its CRC or shape check on read and is
        recomputed."""
        if memory:
            self._remember(key, emb)
        if not self.disk:
            return
        with atomic_write(self.path(key), durable=False) as f:
            write_embedding(f, emb, self.precision)

    def discard(self, key: str) -> None:
        """Forget an entry (memory and disk): its owner found it does not belong to the image it is keyed by."""
        with self._lock:
            self._mem.pop(key, None)
        if self.disk:
            try:
                self.path(key).unlink(missing_ok=True)
            except OSError:  # read-only cache: the entry is simply not used
                pass

    def _remember(self, key: str, emb: Embedding) -> None:
        with self._lock:
            self._mem[key] = emb
            self._mem.move_to_end(key)
            while len(self._mem) > self.memory_items:
                self._mem.popitem(last=False)

    def clear_memory(self) -> None:
        with self._lock:
            self._mem.clear()

    @staticmethod
    def _read(p: Path) -> Embedding | None:
        return read_embedding(p)


def write_embedding(f, emb: Embedding, precision: str = "float16") -> None:
    """``emb`` as a cache entry (``precision`` arrays, ``.npz``) into the open binary file ``f``."""
    dtype = np.dtype(precision)
    np.savez(
        f,
        features=emb.features.astype(dtype),
        original_size=np.asarray(emb.original_size, dtype=np.int64),
        input_size=np.asarray(emb.input_size, dtype=np.int64),
        **{f"extra_{k}": np.asarray(v).astype(dtype) for k, v in emb.extra.items()},
        format=np.asarray(FORMAT_VERSION, dtype=np.int64),
    )


def read_embedding(source) -> Embedding | None:
    """An embedding from a cache entry (a path, or a file-like object holding one: what ``clicklabel serve``
    sends), or None when it is not a sound entry of a format this version reads."""
    try:
        with np.load(source, allow_pickle=False) as z:
            version = int(z["format"]) if "format" in z.files else 1
            if version > FORMAT_VERSION:  # written by a newer clicklabel: recompute rather than guess
                return None
            feats = z["features"]
            osize = tuple(int(v) for v in z["original_size"])
            isize = tuple(int(v) for v in z["input_size"])
            extra = {k[len("extra_"):]: z[k] for k in z.files if k.startswith("extra_")}
    except (OSError, ValueError, KeyError, EOFError, TypeError, zipfile.BadZipFile):
        return None
    if feats.ndim != 4 or feats.shape[0] != 1 or len(osize) != 2 or len(isize) != 2:
        return None
    if any(v.ndim < 2 or v.shape[0] != 1 for v in extra.values()):
        return None
    arrays = {k: v.astype(np.float32) for k, v in {"features": feats, **extra}.items()}
    if not all(np.isfinite(v).all() for v in arrays.values()):
        return None
    feats = arrays.pop("features")
    return Embedding(feats, osize, isize, arrays)
