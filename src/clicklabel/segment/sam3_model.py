"""SAM 3 weights in the Hugging Face layout (the ``[sam3]`` extra: ``transformers`` >= 5), built and loaded with
``transformers``' own classes: ``Sam3Model`` (the concept detector: text and exemplar-box prompts) and
``Sam3TrackerModel`` (points and boxes, like SAM 2), sharing one ViT backbone.

A checkpoint is a folder as ``facebook/sam3`` publishes it: ``config.json`` (``detector_config`` +
``tracker_config``), ``model.safetensors`` (``detector_model.*``, ``tracker_model.*``, ``tracker_neck.*``: the
names ``transformers`` maps when it loads ``Sam3TrackerModel`` from that repository) and the CLIP tokenizer's files.
The official ``sam3.pt`` of the ``sam3`` package is another format and is refused with a line saying so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from ..errors import WeightsError

WEIGHTS_FILE = "model.safetensors"
DET, TRK, NECK = "detector_model.", "tracker_model.", "tracker_neck."
BACKBONE = "vision_encoder.backbone."
# the tracker's video-memory weights: present in the published file, unused on single images
VIDEO_ONLY = ("memory_", "mask_downsample", "object_pointer_proj", "temporal_positional_encoding_projection_layer",
              "no_memory_positional_encoding", "no_object_pointer", "occlusion_spatial_embedding_parameter")


def tiny_config(image_size: int = 112) -> dict:
    """A few-hundred-thousand-parameter SAM 3 (tests and plumbing; its masks mean nothing)."""
    vit = {"model_type": "sam3_vit_model", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
           "num_attention_heads": 2, "image_size": image_size, "patch_size": 14, "window_size": 4,
           "global_attn_indexes": [1], "pretrain_image_size": 56}
    g = image_size // 14
    vision = {"model_type": "sam3_vision_model", "backbone_config": vit, "fpn_hidden_size": 32,
              "backbone_feature_sizes": [[4 * g, 4 * g], [2 * g, 2 * g], [g, g]]}
    small = {"hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}
    detector = {"model_type": "sam3", "vision_config": vision,
                "text_config": {"model_type": "clip_text_model", "vocab_size": 514, "hidden_size": 32,
                                "intermediate_size": 64, "projection_dim": 32, "num_hidden_layers": 1,
                                "num_attention_heads": 2, "max_position_embeddings": 32, "bos_token_id": 512,
                                "eos_token_id": 513, "pad_token_id": 513},
                "geometry_encoder_config": {**small, "num_layers": 1},
                "detr_encoder_config": {**small, "num_layers": 1},
                "detr_decoder_config": {**small, "num_layers": 1, "num_queries": 20},
                "mask_decoder_config": {"hidden_size": 32, "num_attention_heads": 2}}
    tracker = {"model_type": "sam3_tracker", "vision_config": vision,
               "prompt_encoder_config": {"hidden_size": 32, "image_size": image_size, "patch_size": 14},
               "mask_decoder_config": {"hidden_size": 32, "mlp_dim": 64, "num_attention_heads": 2,
                                       "iou_head_hidden_dim": 32}}
    return {"model_type": "sam3_video", "detector_config": detector, "tracker_config": tracker}


def full_config() -> dict:
    """The published SAM 3's architecture (848M parameters), from ``transformers``' defaults."""
    from transformers import Sam3Config, Sam3TrackerConfig

    return {"model_type": "sam3_video", "detector_config": Sam3Config().to_dict(),
            "tracker_config": Sam3TrackerConfig().to_dict()}


def byte_tokenizer():
    """A CLIP tokenizer with the 512 byte-level tokens and no merges (random weights: any text maps to valid ids of
    the published 49408-token vocabulary too)."""
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import CLIPTokenizer

    chars = sorted(ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[])


class Sam3Pair(nn.Module):
    """The detector and the tracker of one SAM 3, the tracker's backbone being the detector's (one ViT pass per
    image serves both), with the processor (image transform + tokenizer) that goes with the weights."""

    def __init__(self, config: dict, tokenizer=None):
        super().__init__()
        from transformers import (
            Sam3Config,
            Sam3ImageProcessor,
            Sam3Model,
            Sam3Processor,
            Sam3TrackerConfig,
            Sam3TrackerModel,
        )

        det_cfg = Sam3Config(**{k: v for k, v in config["detector_config"].items() if k != "model_type"})
        trk = config["tracker_config"]
        trk_cfg = Sam3TrackerConfig(**{k: trk[k] for k in ("vision_config", "prompt_encoder_config",
                                                            "mask_decoder_config") if k in trk})
        self.config_dict = {"model_type": "sam3_video", "detector_config": det_cfg.to_dict(),
                            "tracker_config": trk_cfg.to_dict()}
        self.detector = Sam3Model(det_cfg)
        self.tracker = Sam3TrackerModel(trk_cfg)
        self.tracker.vision_encoder.backbone = self.detector.vision_encoder.backbone
        size = int(det_cfg.vision_config.backbone_config.image_size)
        self.image_size = size
        self.patch_size = int(det_cfg.vision_config.backbone_config.patch_size)
        self.processor = Sam3Processor(Sam3ImageProcessor(size={"height": size, "width": size}),
                                       tokenizer if tokenizer is not None else byte_tokenizer())

    def hub_state_dict(self) -> dict:
        """The weights under the published file's names (one copy of the shared backbone)."""
        out = {DET + k: v for k, v in self.detector.state_dict().items()}
        for k, v in self.tracker.state_dict().items():
            if k.startswith("vision_encoder.neck."):
                out[NECK + k[len("vision_encoder.neck."):]] = v
            elif not k.startswith(BACKBONE):
                out[TRK + k] = v
        return out

    def load_hub_state_dict(self, sd: dict) -> None:
        """Load weights named as in the published file; WeightsError naming what is missing or does not fit."""
        det = {k[len(DET):]: v for k, v in sd.items() if k.startswith(DET)}
        trk = {k[len(TRK):]: v for k, v in sd.items() if k.startswith(TRK) and not k[len(TRK):].startswith(VIDEO_ONLY)}
        trk.update({"vision_encoder.neck." + k[len(NECK):]: v for k, v in sd.items() if k.startswith(NECK)})
        trk.update({k: v for k, v in det.items() if k.startswith(BACKBONE)})
        for name, module, part in (("detector", self.detector, det), ("tracker", self.tracker, trk)):
            try:
                module.load_state_dict(part, strict=True)
            except RuntimeError as exc:
                first = str(exc).strip().splitlines()[0][:200]
                raise WeightsError(f"the SAM 3 {name} weights do not fit its configuration: {first}") from None


@dataclass
class Sam3Files:
    folder: Path
    weights: Path


def sam3_files(path: str | Path) -> Sam3Files | None:
    """The weights file of a SAM 3 checkpoint folder (or of its ``model.safetensors`` given directly), or None
    when ``path`` is not one."""
    p = Path(path).expanduser()
    folder = p if p.is_dir() else p.parent
    cfg = folder / "config.json"
    weights = folder / WEIGHTS_FILE if p.is_dir() else p
    if not (cfg.is_file() and weights.is_file() and weights.suffix == ".safetensors"):
        return None
    try:
        kind = json.loads(cfg.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError):
        return None
    return Sam3Files(folder, weights) if kind == "sam3_video" else None


def looks_like_sam3(path: str | Path) -> bool:
    return sam3_files(path) is not None


def load_pair(path: str | Path) -> Sam3Pair:
    """A SAM 3 checkpoint folder, loaded on the CPU in eval mode."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    p = Path(path).expanduser()
    if p.suffix == ".pt" and p.is_file():
        raise WeightsError(f"{p} looks like the sam3 package's own checkpoint; clicklabel loads the Hugging Face "
                           "layout (a folder with config.json and model.safetensors, as facebook/sam3 publishes it)")
    files = sam3_files(p)
    if files is None:
        raise WeightsError(f"{p} is not a SAM 3 checkpoint folder (config.json of model_type sam3_video and "
                           f"{WEIGHTS_FILE})")
    config = json.loads((files.folder / "config.json").read_text(encoding="utf-8"))
    tokenizer = _tokenizer(files.folder)
    pair = Sam3Pair(config, tokenizer)
    try:
        sd = load_file(str(files.weights))
    except (SafetensorError, OSError) as exc:
        raise WeightsError(f"{files.weights} is truncated or not a safetensors file ({exc}); download it again") \
            from None
    pair.load_hub_state_dict(sd)
    return pair.eval()


def _tokenizer(folder: Path):
    from transformers import AutoTokenizer

    if not any((folder / n).is_file() for n in ("tokenizer.json", "vocab.json")):
        raise WeightsError(f"no tokenizer in {folder} (tokenizer.json or vocab.json + merges.txt)")
    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise WeightsError(f"cannot read the tokenizer in {folder}: {str(exc).splitlines()[0][:160]}") from None


def random_pair(size: str = "tiny", seed: int = 0) -> Sam3Pair:
    """A SAM 3 with random weights built by ``transformers``' own classes: 'tiny' (tests) or 'full' (timing)."""
    import torch

    torch.manual_seed(seed)
    return Sam3Pair(tiny_config() if size == "tiny" else full_config()).eval()


def save_pair(pair: Sam3Pair, folder: str | Path) -> Path:
    """Write ``pair`` as a checkpoint folder in the published layout (config, safetensors, tokenizer)."""
    from safetensors.torch import save_file

    from ..files import write_text

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "config.json", json.dumps(pair.config_dict, indent=1))
    pair.processor.tokenizer.save_pretrained(str(out))
    tmp = out / (WEIGHTS_FILE + ".part")
    save_file({k: v.contiguous() for k, v in pair.hub_state_dict().items()}, str(tmp))
    tmp.replace(out / WEIGHTS_FILE)
    return out


def load_sam3(checkpoint: str | Path | None, download: bool = True):
    """``models.LoadedModel`` of SAM 3: ``checkpoint`` (a folder, or its ``model.safetensors``), else the weights
    folder's ``sam3`` (fetched from the gated repository when ``download``, else one line on how to get it)."""
    from ..weights import checkpoint_path, get_checkpoint
    from ..weights import download as fetch
    from ..weights_hub import folder_complete, gating_hint
    from .models import LoadedModel

    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        if not path.exists():
            raise WeightsError(f"checkpoint not found: {path}")
    else:
        path = checkpoint_path("sam3")
        if not folder_complete(path):
            if not download:
                raise WeightsError(f"no sam3 weights at {path}. " + gating_hint(get_checkpoint("sam3")))
            path = fetch("sam3")
    pair = load_pair(path)
    return LoadedModel("sam3", "sam3", pair, sam3_files(path).weights)
