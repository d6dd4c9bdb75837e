"""Identity of a model's weights, for cache keys: the official hash of an official file, else the file's own
hash, else (weights in memory) a hash of the tensors."""

from __future__ import annotations

from pathlib import Path


def weights_fingerprint(model: str, path: Path) -> str:
    """Identity of the weights for cache keys: the official hash for the official file in the weights folder
    (checked at download), else the xxh128 of the file (for SAM v1's official files the two agree)."""
    from ..weights import REGISTRY, checkpoint_path, file_xxh128

    ck = REGISTRY.get(model)
    if ck is not None and ck.pinned and path.stat().st_size == ck.size and \
            path.resolve() == checkpoint_path(model).resolve():
        return (ck.xxh128 or ck.sha256)[:16]
    return file_xxh128(path)[:16]


def loaded_fingerprint(loaded) -> str:
    """The fingerprint of a ``models.LoadedModel``: its file's, or its in-memory weights' (no file)."""
    return module_fingerprint(loaded.module) if loaded.path is None else weights_fingerprint(loaded.name, loaded.path)


def module_fingerprint(module) -> str:
    """Identity of in-memory weights (tests, notebooks)."""
    import hashlib

    h = hashlib.blake2b(digest_size=8)
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().float().cpu().numpy().tobytes()[:4096])
        h.update(str(tuple(t.shape)).encode())
    return h.hexdigest()
