"""The model families behind the one registry (``weights.REGISTRY``): SAM (``segment-anything``), SAM 2.1 (``sam2``,
the ``[sam2]`` extra) and HQ-SAM (``segment-anything-hq``, the ``[hq]`` extra).

- ``detect_model``: the family and model of a state dict, from its key names and shapes only;
- ``load_model``: any family's checkpoint, loaded strictly on the CPU (``torch.load(weights_only=True)``), the
  family's package asked for by name when it is missing (``require``);
- ``engine_class``: the engine of a family, all behind ``base.Engine``;
- ``save_random_checkpoint``: a random checkpoint built by the family's own builder (tests, timing);
- ``suggest_model``: the CPU default, the fastest model whose weights are here.
"""

from __future__ import annotations

import importlib
import importlib.util
import warnings
from dataclasses import dataclass
from pathlib import Path

from ..errors import ClickLabelError, WeightsError
from ..sam_import import PACKAGE as SAM_PACKAGE
from ..sam_import import sam_part
from ..weights import (
    ARCHITECTURES,
    REGISTRY,
    architecture_name,
    build_sam,
    checkpoint_path,
    get_checkpoint,
    infer_architecture,
    read_state_dict,
    resolve_checkpoint,
)


@dataclass(frozen=True)
class Family:
    name: str  # the engine's ``name``: 'sam', 'sam2.1', 'hq'
    label: str  # in messages: 'SAM', 'SAM 2.1', 'HQ-SAM'
    package: str  # the import that must work
    extra: str | None  # the pip extra that installs it (None: a core dependency)
    engine: str  # 'module:Class' under clicklabel.segment


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("sam", "SAM", "segment_anything", None, "sam:SamEngine"),
    Family("sam2.1", "SAM 2.1", "sam2", "sam2", "sam2:Sam2Engine"),
    Family("hq", "HQ-SAM", "segment_anything_hq", "hq", "hq:HqEngine"),
    Family("sam3", "SAM 3", "transformers.models.sam3", "sam3", "sam3:Sam3Engine"),
)}
# SAM 2.1 image encoders: (patch embedding width, number of Hiera blocks) -> size
SAM2_SIZES = {(96, 12): "tiny", (96, 16): "small", (112, 24): "base_plus", (144, 48): "large"}
INSTALL_HINT = {"sam2": " (SAM2_BUILD_CUDA=0 and --no-build-isolation skip a 3 GB build download; docs/models.md)"}


@dataclass
class LoadedModel:
    name: str  # 'vit_b', 'sam2.1_hiera_tiny', 'hq_vit_tiny', 'vit_custom_...'
    family: str
    module: object  # the torch module, on the CPU, in eval mode
    path: Path | None  # None: built in memory (``random_model``)
    lazy: object = None  # ``lazy.LazyEncoderWeights`` when the image encoder is not loaded yet


def _sam3_wanted(model: str, checkpoint) -> bool:
    if model == "sam3":
        return True
    if model != "auto" or checkpoint is None:
        return False
    from .sam3_model import looks_like_sam3

    return looks_like_sam3(checkpoint)


def installed(family: str) -> bool:
    """Whether the family's package can be imported (without importing it)."""
    try:
        return importlib.util.find_spec(FAMILIES[family].package) is not None
    except (ImportError, ValueError):  # ValueError: blocked in sys.modules
        return False


def require(family: str) -> None:
    """Import the family's package, or one line naming the extra to install."""
    fam = FAMILIES[family]
    try:
        with warnings.catch_warnings():  # timm (under HQ-SAM) warns about its own deprecated imports and names
            warnings.simplefilter("ignore", FutureWarning)
            warnings.filterwarnings("ignore", "Overwriting .* in registry", UserWarning)
            if fam.package == SAM_PACKAGE:
                sam_part("modeling")  # not the package's __init__ (its predictor imports torchvision: seconds)
            else:
                importlib.import_module(fam.package)
    except ImportError as exc:
        raise ClickLabelError(
            f"{fam.label} models need the {fam.extra} extra ({exc.name or fam.package} is not installed): "
            f"pip install 'clicklabel[{fam.extra}]'" + INSTALL_HINT.get(fam.extra or "", "")
        ) from None


def family_of(model: str) -> str:
    """The family of a registered model name."""
    return get_checkpoint(model).family


def engine_class(family: str):
    module, cls = FAMILIES[family].engine.split(":")
    return getattr(importlib.import_module(f"{__package__}.{module}"), cls)


def _count(sd: dict, prefix: str) -> int:
    return len({k[len(prefix):].split(".", 1)[0] for k in sd if k.startswith(prefix)})


def detect_model(sd: dict) -> tuple[str, str]:
    """(family, model name) of a state dict: SAM 2.1 by its Hiera trunk (width and depth), HQ-SAM by its HQ token
    (ViT size from the encoder, or TinyViT = vit_tiny), else SAM v1 (any ViT, official sizes by name)."""
    if "image_encoder.trunk.patch_embed.proj.weight" in sd:
        if "no_obj_embed_spatial" not in sd or "obj_ptr_tpos_proj.weight" not in sd:
            raise WeightsError("this is a SAM 2.0 checkpoint; clicklabel runs SAM 2.1 (e.g. sam2.1_hiera_tiny)")
        dim = int(sd["image_encoder.trunk.patch_embed.proj.weight"].shape[0])
        blocks = _count(sd, "image_encoder.trunk.blocks.")
        size = SAM2_SIZES.get((dim, blocks))
        if size is None:
            raise WeightsError(f"unknown SAM 2.1 image encoder (width {dim}, {blocks} blocks)")
        return "sam2.1", f"sam2.1_hiera_{size}"
    hq = "mask_decoder.hf_token.weight" in sd
    if any(k.startswith("image_encoder.layers.") for k in sd):  # TinyViT
        if not hq:
            raise WeightsError("this is a MobileSAM (TinyViT) checkpoint, which clicklabel does not run; "
                               "its light HQ-SAM counterpart is hq_vit_tiny")
        return "hq", "hq_vit_tiny"
    if "image_encoder.patch_embed.proj.weight" not in sd:
        raise WeightsError("not a Segment Anything checkpoint of a known family (SAM, SAM 2.1, HQ-SAM)")
    name = architecture_name(infer_architecture(sd))
    if hq:
        if name not in ARCHITECTURES:
            raise WeightsError(f"HQ-SAM checkpoint with an unknown image encoder ({name})")
        return "hq", f"hq_{name}"
    return "sam", name


def build(family: str, name: str, state_dict: dict | None = None):
    """An untrained model of the family, built by its package's own builder (SAM: the architecture read from
    ``state_dict`` when given, so custom ViTs load too)."""
    if family == "sam":
        return build_sam(infer_architecture(state_dict) if state_dict is not None else ARCHITECTURES[name])
    require(family)
    return engine_class(family).build_model(name)


def load_model(model: str, checkpoint: str | Path | None = None, download: bool = True,
               family: str | None = None, lazy: bool = False) -> LoadedModel:
    """Load a checkpoint of any family on the CPU. ``model``: a registered name, or 'auto' (needs ``checkpoint``)
    to take whatever the weights are; ``family``: the engine's family, when it can only run that one; ``lazy``: leave
    the image encoder unloaded where the family allows it (``lazy.py``)."""
    if _sam3_wanted(model, checkpoint):  # a folder in the Hugging Face layout (segment.sam3_model)
        from .sam3_model import load_sam3

        if family not in (None, "sam3"):
            raise WeightsError(f"the checkpoint holds a SAM 3 model, not a {FAMILIES[family].label} model; "
                               "pass --model sam3")
        require("sam3")
        return load_sam3(checkpoint, download)
    if model == "auto":
        if checkpoint is None:
            raise WeightsError("model 'auto' needs --checkpoint PATH")
    else:
        want = family_of(model)  # unknown names: the error lists the known ones
        if family is not None and want != family:
            raise ClickLabelError(f"{model} is a {FAMILIES[want].label} model, not a {FAMILIES[family].label} model; "
                                  f"make_engine('{model}') builds its engine")
        require(want)  # before any download
    path = resolve_checkpoint(model, checkpoint, download)
    sd = read_state_dict(path, mmap=lazy)
    try:
        fam, found = detect_model(sd)
    except WeightsError as exc:
        raise WeightsError(f"checkpoint {path}: {exc}") from None
    if model != "auto" and found != model:
        raise WeightsError(f"checkpoint {path} holds a {found} model, not {model}; pass --model {found}")
    if family is not None and fam != family:
        raise WeightsError(f"checkpoint {path} holds a {FAMILIES[fam].label} model ({found}), not a "
                           f"{FAMILIES[family].label} model; pass --model {found}")
    from .lazy import LazyEncoderWeights, build_without_encoder

    try:
        module = build_without_encoder(fam, found, sd) if lazy else None
        if module is not None:
            return LoadedModel(found, fam, module, path, LazyEncoderWeights(fam, found, sd))
        module = build(fam, found, sd)
        module.load_state_dict(sd, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0][:200]
        raise WeightsError(f"checkpoint {path} does not fit the {found} architecture: {first}") from None
    return LoadedModel(found, fam, module.eval(), path)


def random_model(model: str, seed: int = 0) -> LoadedModel:
    """A registered model with random weights, built in memory by its family's builder (timing only)."""
    import torch

    family = family_of(model)
    torch.manual_seed(seed)
    return LoadedModel(model, family, build(family, model).eval(), None)


def save_random_checkpoint(path: str | Path, model: str = "vit_b", seed: int = 0) -> Path:
    """Write a randomly initialised checkpoint of a registered model in its family's official file layout (SAM 2.1:
    ``{"model": state_dict}``), built by the family's own builder (tests and timing only; its masks mean nothing)."""
    import torch

    from ..files import atomic_write
    from ..weights import save_random_checkpoint as save_sam

    if family_of(model) == "sam":
        return save_sam(path, model, seed)
    if family_of(model) == "sam3":  # a checkpoint folder in the published layout
        from .sam3_model import save_pair

        return save_pair(random_model(model, seed).module, path)
    loaded = random_model(model, seed)
    sd = loaded.module.state_dict()
    family = loaded.family
    with atomic_write(Path(path)) as f:
        torch.save({"model": sd} if family == "sam2.1" else sd, f)
    return Path(path)


def weights_present(model: str) -> bool:
    """Whether the official checkpoint of ``model`` is in the weights folder (right size)."""
    path = checkpoint_path(model)
    return path.is_file() and path.stat().st_size == REGISTRY[model].size


@dataclass(frozen=True)
class Suggestion:
    model: str
    reason: str  # one line for the status bar


def suggest_model(device: str = "auto") -> Suggestion | None:
    """The CPU default: when ``device`` resolves to the CPU, the registered model that encodes fastest here among
    those whose weights are here and whose family is installed, with the reason in words; None on a GPU or when no
    weights are here (the caller keeps its own default). Speeds measured on this machine (``speed.py``) come first;
    a model not measured here yet is ranked by the reference CPU's time (the registry's ``cpu_s``), scaled by how
    this machine compared on the models it has measured."""
    import statistics

    from . import speed
    from .cached import resolve_device

    if resolve_device(device) != "cpu":
        return None
    here = [ck for ck in REGISTRY.values()
            if ck.cpu_s is not None and weights_present(ck.name) and installed(ck.family)]
    if not here:
        return None
    seen = {ck.name: secs for ck in here
            if (secs := speed.measured("cpu", auto_cpu_precision(ck)).get(ck.name)) is not None}
    scale = statistics.median([seen[ck.name] / ck.cpu_s for ck in here if ck.name in seen] or [1.0])
    secs = {ck.name: seen.get(ck.name, ck.cpu_s * scale) for ck in here}
    best = min(here, key=lambda ck: secs[ck.name])
    slow = max(here, key=lambda ck: secs[ck.name])
    where = lambda n: "measured here" if n in seen else "estimated"  # noqa: E731
    others = f"; {slow.name}, also here, takes about {secs[slow.name]:.1f} s ({where(slow.name)})" \
        if slow is not best else ""
    return Suggestion(best.name, f"no GPU: {best.name} is the fastest model whose weights are here (about "
                                 f"{secs[best.name]:.1f} s per image to encode, {where(best.name)}{others}; "
                                 "clicklabel bench models measures them all)")


def auto_cpu_precision(ck) -> str:
    """The precision an engine of registered model ``ck`` chooses on this CPU (the speed records are per precision)."""
    from .precision import choose_precision, encoder_traits

    return choose_precision("cpu", **encoder_traits(ck.family, ck.name)).precision
