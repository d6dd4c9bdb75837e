"""Segment Anything checkpoints of every family (SAM, SAM 2.1, HQ-SAM): the registry of official weights as data,
a weights folder, verified downloads, and a safe loader.

Downloads go through pooch: the file is written to a temporary name and only moved into place after its hash
matches (xxh128 for SAM v1, the published sha256 for the others), so a broken download never leaves a file that
looks complete. A registry entry without a published hash is checked by size, and the sha256 of its first
verified download is recorded beside the file (``<file>.sha256``); a later file that differs is refused.
Loading uses ``torch.load(weights_only=True)``; the family and size are read from the state dict itself
(``segment.models.detect_model``), so a checkpoint of another type, or a truncated file, gives one clear error.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import WeightsError
from .files import atomic_write, write_text


@dataclass(frozen=True)
class Checkpoint:
    """One official checkpoint: its family, where it is published, its size and (where published) its hash."""

    name: str
    family: str  # 'sam', 'sam2.1' or 'hq'
    url: str
    size: int
    sha256: str | None = None  # published sha256 (None: not published; checked by size + first download)
    xxh128: str | None = None  # SAM v1 files are verified with xxh128 (faster than sha256)
    hash_source: str = ""  # where the hash was found
    cpu_s: float | None = None  # encoder seconds per 640x480 image on dev-2c (2 vCPU), docs/benchmarks.md
    licence: str = "Apache-2.0"
    gated: bool = False  # a Hugging Face repository that needs an accepted licence and a token (``weights_hub``)

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def pinned(self) -> bool:
        """Whether a published hash verifies the file (otherwise: size + the sha256 of the first download)."""
        return bool(self.xxh128 or self.sha256)

    @property
    def known_hash(self) -> str | None:
        """pooch's ``known_hash`` for the download: 'xxh128:...' or 'sha256:...' (None when not pinned)."""
        if self.xxh128:
            return f"xxh128:{self.xxh128}"
        return f"sha256:{self.sha256}" if self.sha256 else None

    @property
    def pin(self) -> str:
        """What verifies the file, in words (``clicklabel weights list``)."""
        if self.xxh128:
            return "xxh128"
        return "sha256" if self.sha256 else "size; sha256 of first download"


_SAM = "https://dl.fbaipublicfiles.com/segment_anything/"
_SAM2 = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"
_HQ = "https://huggingface.co/lkeab/hq-sam/resolve/main/"
_V1_SRC = "xxh128 of the official file; sha256 as in the LFS pointers of Hugging Face mirrors (e.g. mashb1t/misc)"
_S2_SRC = "Hugging Face LFS pointer of facebook/sam2.1-hiera-{}"
_HQ_SRC = "Hugging Face LFS pointer of lkeab/hq-sam, commit {}"
# URLs from the READMEs of segment-anything, sam2 (checkpoints/download_ckpts.sh) and sam-hq (its HF alternative).
# Sources of every hash: docs/models.md.
REGISTRY: dict[str, Checkpoint] = {c.name: c for c in (
    Checkpoint("vit_h", "sam", _SAM + "sam_vit_h_4b8939.pth", 2564550879,
               "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
               "97698fac30bd929c2e6d8d8cc15933c2", _V1_SRC),
    Checkpoint("vit_l", "sam", _SAM + "sam_vit_l_0b3195.pth", 1249524607,
               "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
               "a82beb3c660661e3dd38d999cc860e9a", _V1_SRC),
    Checkpoint("vit_b", "sam", _SAM + "sam_vit_b_01ec64.pth", 375042383,
               "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
               "6923c33df3637b6a922d7682bfc9a86b", _V1_SRC, cpu_s=16.0),
    Checkpoint("sam2.1_hiera_tiny", "sam2.1", _SAM2 + "sam2.1_hiera_tiny.pt", 156008466,
               "7402e0d864fa82708a20fbd15bc84245c2f26dff0eb43a4b5b93452deb34be69",
               hash_source=_S2_SRC.format("tiny"), cpu_s=2.7),
    Checkpoint("sam2.1_hiera_small", "sam2.1", _SAM2 + "sam2.1_hiera_small.pt", 184416285,
               "6d1aa6f30de5c92224f8172114de081d104bbd23dd9dc5c58996f0cad5dc4d38",
               hash_source=_S2_SRC.format("small")),
    Checkpoint("sam2.1_hiera_base_plus", "sam2.1", _SAM2 + "sam2.1_hiera_base_plus.pt", 323606802,
               "a2345aede8715ab1d5d31b4a509fb160c5a4af1970f199d9054ccfb746c004c5",
               hash_source=_S2_SRC.format("base-plus") + " (as micro-sam verifies it)"),
    Checkpoint("sam2.1_hiera_large", "sam2.1", _SAM2 + "sam2.1_hiera_large.pt", 898083611,
               "2647878d5dfa5098f2f8649825738a9345572bae2d4350a2468587ece47dd318",
               hash_source=_S2_SRC.format("large") + " (as micro-sam verifies it)"),
    Checkpoint("hq_vit_h", "hq", _HQ + "sam_hq_vit_h.pth", 2570940653,
               "a7ac14a085326d9fa6199c8c698c4f0e7280afdbb974d2c4660ec60877b45e35",
               hash_source=_HQ_SRC.format("67ab824")),
    Checkpoint("hq_vit_l", "hq", _HQ + "sam_hq_vit_l.pth", 1254865805,
               "e1a6c385d62bf005ded91a54d5ec55c985cfc4103ef89c08d90f39f04934c343",
               hash_source=_HQ_SRC.format("519b37f")),
    Checkpoint("hq_vit_b", "hq", _HQ + "sam_hq_vit_b.pth", 379335069,
               "14a9d662cd6f5a9c2dba6d40ab0058d88d287e4a18fd6fdc6ad5fb1a3fdeaa57",
               hash_source=_HQ_SRC.format("8a94b5e")),
    Checkpoint("hq_vit_tiny", "hq", _HQ + "sam_hq_vit_tiny.pth", 42526881,
               "0f32c075ccdd870ae54db2f7630e7a0878ede5a2b06d05d6fe02c65a82fb7196",
               hash_source=_HQ_SRC.format("a3a77cd"), cpu_s=1.5),
    # a folder (config, safetensors, tokenizer) from a gated repository; about 848M float32 parameters
    Checkpoint("sam3", "sam3", "https://huggingface.co/facebook/sam3", 3_440_000_000, licence="SAM License",
               gated=True, hash_source="Hugging Face repository facebook/sam3 (gated)"),
)}

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


def file_digest(path: str | Path, algorithm: str = "xxh128") -> str:
    """Hex digest of a file: 'xxh128' or any hashlib algorithm ('sha256')."""
    if algorithm == "xxh128":
        import xxhash

        h = xxhash.xxh128()
    else:
        h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def file_xxh128(path: str | Path) -> str:
    """xxh128 hex digest of a file."""
    return file_digest(path, "xxh128")


def first_use_record(name: str) -> Path:
    """Where the sha256 of an unpinned checkpoint's first verified download is kept (beside the file)."""
    path = checkpoint_path(name)
    return path.with_name(path.name + ".sha256")


def check_first_use(name: str) -> str:
    """For a checkpoint without a published hash: check the stored file's size, then its sha256 against the one
    recorded at its first verified download (recording it now if this is the first). Returns the sha256;
    WeightsError if the size is wrong or the file differs from the first one."""
    ck = get_checkpoint(name)
    path, record = checkpoint_path(name), first_use_record(name)
    size = path.stat().st_size
    if size != ck.size:
        raise WeightsError(f"{name}: wrong size {size:,} bytes, expected {ck.size:,} ({path}); "
                           "delete it and download again")
    digest = file_digest(path, "sha256")
    if record.is_file():
        known = (record.read_text(encoding="utf-8").split() or [""])[0]
        if known != digest:
            raise WeightsError(f"{name}: {path} is not the file first downloaded (sha256 {digest[:16]}..., "
                               f"recorded {known[:16]}... in {record}); delete the file and download it again")
    else:
        write_text(record, f"{digest}  {ck.filename}\n")
    return digest


def verify(name: str) -> tuple[bool, str]:
    """Check the stored checkpoint ``name``: (ok, one-line status)."""
    ck = get_checkpoint(name)
    path = checkpoint_path(name)
    if ck.gated:
        from .weights_hub import verify_repo

        return verify_repo(ck, path)
    if not path.exists():
        return False, f"{name}: missing ({path})"
    size = path.stat().st_size
    if size != ck.size:
        return False, f"{name}: wrong size {size:,} bytes, expected {ck.size:,} ({path}); delete it and download again"
    if not ck.pinned:
        try:
            check_first_use(name)
        except WeightsError as exc:
            return False, str(exc)
        return True, f"{name}: ok, same file as first downloaded ({path})"
    algorithm, expected = ck.known_hash.split(":")
    digest = file_digest(path, algorithm)
    if digest != expected:
        return False, f"{name}: {algorithm} mismatch ({digest}); delete {path} and download again"
    return True, f"{name}: ok, {algorithm} verified ({path})"


def download(name: str, progressbar: bool = True, retries: int = 3) -> Path:
    """Download (or find) the official checkpoint ``name``, verified by hash (or, where none is published, by
    size and the first download's sha256); returns its path.

    An existing file with the right hash is returned at once. Offline, the error names the URL and the path
    to put the file by hand.
    """
    import pooch

    ck = get_checkpoint(name)
    if ck.gated:
        from .weights_hub import download_repo

        return download_repo(ck, weights_dir())
    folder = weights_dir()
    folder.mkdir(parents=True, exist_ok=True)
    existed = (folder / ck.filename).exists()
    fetcher = pooch.create(
        path=folder,
        base_url=ck.url.rsplit("/", 1)[0] + "/",
        registry={ck.filename: ck.known_hash},
        retry_if_failed=retries,
    )
    try:
        path = Path(fetcher.fetch(ck.filename, downloader=pooch.HTTPDownloader(progressbar=progressbar)))
    except ValueError as exc:  # pooch raises ValueError on a hash mismatch
        raise WeightsError(f"download of {name} did not verify ({exc}); nothing was kept at {folder}") from None
    except Exception as exc:  # network errors come from requests, OS errors from the file system
        raise WeightsError(
            f"cannot download {name} ({type(exc).__name__}). Download {ck.url} by hand and put it at "
            f"{folder / ck.filename}, or pass --checkpoint PATH"
        ) from None
    if not ck.pinned:
        try:
            check_first_use(name)
        except WeightsError:
            if not existed:  # what this call downloaded is not kept
                path.unlink(missing_ok=True)
            raise
    return path


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


def read_state_dict(path: str | Path, mmap: bool = False) -> dict:
    """Load a checkpoint's state dict safely (``weights_only=True``), with a clear error for bad files. ``mmap``:
    memory-map the file (tensors are read when used; files in the old non-zip format are read whole)."""
    import torch

    p = Path(path)
    try:
        try:
            obj = torch.load(p, map_location="cpu", weights_only=True, mmap=mmap)
        except RuntimeError:
            if not mmap:
                raise
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
    if not isinstance(obj, dict) or not any(isinstance(k, str) and k.startswith("image_encoder.") for k in obj):
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
    from .sam_import import sam_part

    dim, depth, heads, glob = arch
    return sam_part("build_sam")._build_sam(
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
