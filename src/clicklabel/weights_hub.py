"""Checkpoints published as gated Hugging Face repositories (SAM 3: ``facebook/sam3``, "SAM License"): fetched with
``huggingface_hub`` into a folder of the weights folder, with the token from ``HF_TOKEN`` (or ``huggingface-cli
login``). Without access, one line says what to do: request access on the model's page, set ``HF_TOKEN``, or pass
any local checkpoint folder with ``--checkpoint``.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import WeightsError

# what clicklabel needs of the repository: the configuration, the weights, the tokenizer, the licence
PATTERNS = ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.json",
            "merges.txt", "special_tokens_map.json", "processor_config.json", "preprocessor_config.json",
            "LICENSE*", "README.md"]


def repo_id(ck) -> str:
    return ck.url.removeprefix("https://huggingface.co/")


def gating_hint(ck) -> str:
    return (f"{ck.name} weights are gated ({ck.licence}): request access at {ck.url}, then set HF_TOKEN and run "
            f"`clicklabel weights download {ck.name}`, or pass --checkpoint FOLDER (a local copy of {repo_id(ck)})")


def folder_complete(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()


def download_repo(ck, weights_folder: Path, progressbar: bool = True) -> Path:
    """Fetch the repository's needed files into ``weights_folder / ck.name`` (resumable; huggingface_hub checks
    each file against the repository's hashes). Returns the folder."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

    folder = Path(weights_folder) / ck.filename
    token = os.environ.get("HF_TOKEN") or None
    try:
        snapshot_download(repo_id(ck), local_dir=str(folder), allow_patterns=PATTERNS, token=token)
    except (GatedRepoError, RepositoryNotFoundError):
        raise WeightsError(gating_hint(ck) + ("" if token else " (HF_TOKEN is not set)")) from None
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
        raise WeightsError(f"cannot download {ck.name} from {ck.url} ({type(exc).__name__}); "
                           + gating_hint(ck)) from None
    if not folder_complete(folder):
        raise WeightsError(f"{folder} lacks config.json or model.safetensors after the download; " + gating_hint(ck))
    return folder


def verify_repo(ck, folder: Path) -> tuple[bool, str]:
    """(ok, one line) for a downloaded repository folder: complete, and its weights readable."""
    if not folder_complete(folder):
        return False, f"{ck.name}: missing ({folder}); " + gating_hint(ck)
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
            n = len(list(f.keys()))
    except (SafetensorError, OSError) as exc:
        return False, f"{ck.name}: {folder / 'model.safetensors'} is unreadable ({exc}); download it again"
    return True, f"{ck.name}: ok, {n} tensors ({folder}); huggingface_hub checked each file at download"


def state(ck, folder: Path) -> str:
    """'present' / 'missing' for ``weights list``."""
    return "present" if folder_complete(folder) else "missing"
