"""SAM checkpoints: the registry of official weights, a cache folder, verified downloads, and a safe loader.

Downloads go through pooch: the file is written to a temporary name and only moved into place after its
xxh128 hash matches, so a broken download never leaves a file that looks complete. Loading uses
``torch.load(weights_only=True)`` and reads the architecture from the state dict itself, so a checkpoint of
another model type, or a truncated file, gives one clear error instead of a traceback from inside torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .errors import WeightsError
from .files import atomic_write


@dataclass(frozen=True)
class Checkpoint:
    """One official SAM checkpoint."""

    name: str
    url: str
    xxh128: str
    size: int

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]


_BASE = "https://dl.fbaipublicfiles.com/segment_anything/"
# URLs from the segment-anything README; hashes are xxh128 of the published files.
REGISTRY: dict[str, Checkpoint] = {
    "vit_h": Checkpoint("vit_h", _BASE + "sam_vit_h_4b8939.pth", "97698fac30bd929c2e6d8d8cc15933c2", 2564550879),
    "vit_l": Checkpoint("vit_l", _BASE + "sam_vit_l_0b3195.pth", "a82beb3c660661e3dd38d999cc860e9a", 1249524607),
    "vit_b": Checkpoint("vit_b", _BASE + "sam_vit_b_01ec64.pth", "6923c33df3637b6a922d7682bfc9a86b", 375042383),
}

# Encoder architectures of the official models: (embed_dim, depth, num_heads, global_attn_indexes).
ARCHITECTURES: dict[str, tuple[int, int, int, tuple[int, ...]]] = {
    "vit_b": (768, 12, 12, (2, 5, 8, 11)),
    "vit_l": (1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": (1280, 32, 16, (7, 15, 23, 31)),
}


def weights_dir() -> Path:
    """Where checkpoints live: $CLICKLABEL_WEIGHTS, else ``weights/`` of a source checkout, else the user cache."""
    env = os.environ.get("CLICKLABEL_WEIGHTS")
    if env:
        return Path(env).expanduser()
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "pyproject.toml").is_file() and (checkout / "weights").is_dir():
        return checkout / "weights"
    import platformdirs

    return Path(platformdirs.user_cache_dir("clicklabel")) / "weights"


def get_checkpoint(name: str) -> Checkpoint:
    """Registry entry for ``name``; WeightsError listing the known names otherwise."""
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(REGISTRY)
        raise WeightsError(f"unknown model {name!r}; known models: {known}") from None


def checkpoint_path(name: str) -> Path:
    """The path where the official checkpoint ``name`` is (or will be) stored."""
    return weights_dir() / get_checkpoint(name).filename


def file_xxh128(path: str | Path) -> str:
    """xxh128 hex digest of a file."""
    import xxhash

    h = xxhash.xxh128()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(name: str) -> tuple[bool, str]:
    """Check the stored checkpoint ``name``: (ok, one-line status)."""
    ck = get_checkpoint(name)
    path = checkpoint_path(name)
    if not path.exists():
        return False, f"{name}: missing ({path})"
    size = path.stat().st_size
    if size != ck.size:
        return False, f"{name}: wrong size {size:,} bytes, expected {ck.size:,} ({path}); delete it and download again"
    digest = file_xxh128(path)
    if digest != ck.xxh128:
        return False, f"{name}: hash mismatch ({digest}); delete {path} and download again"
    return True, f"{name}: ok ({path})"


def download(name: str, progressbar: bool = True, retries: int = 3) -> Path:
    """Download (or find) the official checkpoint ``name``, verified by hash; returns its path.

    An existing file with the right hash is returned at once. Offline, the error names the URL and the path
    to put the file by hand.
    """
    import pooch

    ck = get_checkpoint(name)
    folder = weights_dir()
    folder.mkdir(parents=True, exist_ok=True)
    fetcher = pooch.create(
        path=folder,
        base_url=ck.url.rsplit("/", 1)[0] + "/",
        registry={ck.filename: f"xxh128:{ck.xxh128}"},
        retry_if_failed=retries,
    )
    try:
        return Path(fetcher.fetch(ck.filename, downloader=pooch.HTTPDownloader(progressbar=progressbar)))
    except ValueError as exc:  # pooch raises ValueError on a hash mismatch
        raise WeightsError(f"download of {name} did not verify ({exc}); nothing was kept at {folder}") from None
    except Exception as exc:  # network errors come from requests, OS errors from the file system
        raise WeightsError(
            f"cannot download {name} ({type(exc).__name__}). Download {ck.url} by hand and put it at "
            f"{folder / ck.filename}, or pass --checkpoint PATH"
        ) from None


def resolve_checkpoint(model: str, checkpoint: str | Path | None, download_missing: bool = True) -> Path:
    """The checkpoint file to load: the user's own path, else the official one (downloaded if missing)."""
    if checkpoint is not None:
        p = Path(checkpoint).expanduser()
        if not p.is_file():
            raise WeightsError(f"checkpoint not found: {p}")
        return p
    ck = get_checkpoint(model)
    path = checkpoint_path(model)
    if path.is_file() and path.stat().st_size == ck.size:
        return path
    if not download_missing:
        raise WeightsError(
            f"no {model} weights at {path}. Run `clicklabel weights download {model}`, or download "
            f"{ck.url} and put it there, or pass --checkpoint PATH"
        )
    return download(model)


def read_state_dict(path: str | Path) -> dict:
    """Load a checkpoint's state dict safely (``weights_only=True``), with a clear error for bad files."""
    import torch

    p = Path(path)
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        text = str(exc).strip()
        reason = text.splitlines()[0].split(". ")[0][:160] if text else type(exc).__name__
        raise WeightsError(
            f"checkpoint {p} is truncated, corrupt or not a PyTorch checkpoint ({reason}); "
            "delete it and download it again"
        ) from None
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]  # training checkpoints wrap the weights
    if not isinstance(obj, dict) or "image_encoder.patch_embed.proj.weight" not in obj:
        raise WeightsError(f"checkpoint {p} is not a Segment Anything checkpoint (no image encoder weights)")
    return obj


def infer_architecture(state_dict: dict) -> tuple[int, int, int, tuple[int, ...]]:
    """Read (embed_dim, depth, num_heads, global_attn_indexes) of the image encoder from its weights."""
    embed_dim = int(state_dict["image_encoder.patch_embed.proj.weight"].shape[0])
    depth = 0
    while f"image_encoder.blocks.{depth}.attn.qkv.weight" in state_dict:
        depth += 1
    rel = [state_dict.get(f"image_encoder.blocks.{i}.attn.rel_pos_h") for i in range(depth)]
    if depth == 0 or any(r is None for r in rel):
        raise WeightsError("checkpoint's image encoder has no blocks with relative positions; not a SAM ViT")
    head_dim = int(rel[0].shape[1])
    window_len = min(int(r.shape[0]) for r in rel)
    global_idx = tuple(i for i, r in enumerate(rel) if int(r.shape[0]) != window_len)
    return embed_dim, depth, embed_dim // head_dim, global_idx


def architecture_name(arch: tuple) -> str:
    """'vit_b' / 'vit_l' / 'vit_h' for the official shapes, else a descriptive custom name."""
    for name, known in ARCHITECTURES.items():
        if tuple(arch) == known:
            return name
    dim, depth, heads, glob = arch
    return f"vit_custom_d{dim}x{depth}h{heads}"


def build_sam(arch: tuple):
    """An untrained SAM model with the given encoder architecture, built by segment_anything's own builder."""
    from segment_anything.build_sam import _build_sam

    dim, depth, heads, glob = arch
    return _build_sam(
        encoder_embed_dim=dim,
        encoder_depth=depth,
        encoder_num_heads=heads,
        encoder_global_attn_indexes=list(glob),
        checkpoint=None,
    )


def load_sam(model: str = "vit_b", checkpoint: str | Path | None = None, download_missing: bool = True):
    """Load a SAM model on the CPU; returns (sam, model_name, checkpoint_path).

    ``model`` is the expected type ('vit_b', 'vit_l', 'vit_h', or 'auto' to accept whatever the checkpoint is).
    """
    if model != "auto" and model not in REGISTRY:
        get_checkpoint(model)  # raises the unknown-model error
    if model == "auto" and checkpoint is None:
        raise WeightsError("model 'auto' needs --checkpoint PATH")
    path = resolve_checkpoint(model, checkpoint, download_missing)
    sd = read_state_dict(path)
    arch = infer_architecture(sd)
    found = architecture_name(arch)
    if model != "auto" and found != model:
        raise WeightsError(f"checkpoint {path} holds a {found} model, not {model}; pass --model {found}")
    sam = build_sam(arch)
    try:
        sam.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0][:200]
        raise WeightsError(f"checkpoint {path} does not fit the {found} architecture: {first}") from None
    sam.eval()
    return sam, found, path


def save_random_checkpoint(path: str | Path, arch: str | tuple = "vit_b", seed: int = 0) -> Path:
    """Write a randomly initialised SAM checkpoint (tests and timing only; its masks mean nothing)."""
    import torch

    arch_t = ARCHITECTURES[arch] if isinstance(arch, str) else tuple(arch)
    torch.manual_seed(seed)
    sam = build_sam(arch_t)
    p = Path(path)
    with atomic_write(p) as f:
        torch.save(sam.state_dict(), f)
    return p
