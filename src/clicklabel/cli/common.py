"""What the command groups share: prompt parsing, the engine arguments (defined once), and deprecation notes."""

from __future__ import annotations

import argparse
import math
import sys

from ..errors import ClickLabelError, PromptError
from ..segment import ENCODER_CHOICES, ENCODER_HELP

EXIT_USER_ERROR = 2
ENGINE_HELP = ("sam, grabcut, remote (encoder on a `clicklabel serve` server, decoder here), or a model name "
               "(shorthand for --engine sam --model NAME)")
MODEL_HELP = ("vit_b (default), vit_l, vit_h, sam2.1_hiera_tiny|small|base_plus|large, hq_vit_tiny|b|l|h "
              "(`clicklabel weights list`), or auto: the family and size read from --checkpoint")
DEFAULT_MODEL = "vit_b"


class Parser(argparse.ArgumentParser):
    """argparse with its errors on one line (the usage is one ``--help`` away), exit status 2."""

    def error(self, message: str):
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _number(kind, text: str, low: float | None, what: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if not math.isfinite(value) or (low is not None and value < low):
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}")
    return value


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    return _number(int, text, 1, "a whole number >= 1")


def count(text: str) -> int:
    """argparse type: a whole number >= 0."""
    return _number(int, text, 0, "a whole number >= 0")


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = _number(float, text, 0, "a finite number > 0")
    if value == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number > 0")
    return value


def share(text: str) -> float:
    """argparse type: a share above 0 and at most 1."""
    value = positive_float(text)
    if value > 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a share (above 0, at most 1)")
    return value


def finite_float(text: str) -> float:
    """argparse type: a finite number."""
    return _number(float, text, None, "a finite number")


def parse_point(text: str) -> tuple[float, float, int]:
    """'X,Y' or 'X,Y:1' (positive) / 'X,Y:0' (negative)."""
    body, _, lab = text.partition(":")
    try:
        x, y = (float(v) for v in body.split(","))
        label = int(lab) if lab else 1
    except ValueError:
        raise PromptError(f"point {text!r} must look like X,Y or X,Y:1 or X,Y:0") from None
    if label not in (0, 1):
        raise PromptError(f"point {text!r}: the label after ':' must be 1 or 0")
    return x, y, label


def parse_box(text: str) -> tuple[float, float, float, float]:
    """'X0,Y0,X1,Y1'."""
    try:
        vals = tuple(float(v) for v in text.split(","))
    except ValueError:
        vals = ()
    if len(vals) != 4:
        raise PromptError(f"box {text!r} must look like X0,Y0,X1,Y1")
    return vals  # type: ignore[return-value]


def add_engine_args(p: argparse.ArgumentParser, engine: bool = True, remote: bool = False) -> None:
    """--engine (if the command can use GrabCut; with ``remote`` alone: sam or remote), --model, --checkpoint,
    --device, --encoder. ``--model`` stays None when not given (``model_from_args`` gives the default), so a
    program can tell the user's choice apart."""
    if remote and not engine:
        p.add_argument("--engine", default="sam", choices=["sam", "remote"],
                       help="remote: the encoder on a `clicklabel serve` server (--server), the decoder here")
    if engine:
        p.add_argument("--engine", default="sam", help=ENGINE_HELP)
    if engine or remote:
        p.add_argument("--server", help="--engine remote: the `clicklabel serve` address (http://HOST:PORT); the "
                                        "local --model/--checkpoint must be the server's weights")
        p.add_argument("--token-file", help="--engine remote: the server's token (default $CLICKLABEL_SERVE_TOKEN)")
    p.add_argument("--model", default=None, help=MODEL_HELP)
    p.add_argument("--checkpoint", help="your own checkpoint file (no hash check)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--encoder", default="auto", choices=ENCODER_CHOICES, help=ENCODER_HELP)
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "openvino"],
                   help="the image encoder's arithmetic; auto = bf16 where the hardware computes it (a CPU with "
                        "avx512_bf16/AMX, a recent GPU); on other CPUs OpenVINO in fp32 for SAM and HQ-SAM where "
                        "it is installed (clicklabel[openvino]), else fp32; the reason is printed")
    p.add_argument("--cache-precision", default="float16", choices=["float16", "float32"],
                   help="embeddings stored in the cache: float16 (half the disk; masks of an fp32 encoding agree with "
                        "the fresh ones at IoU ~0.9999) or float32 (the same masks as fresh)")
    p.add_argument("--tiles", default="auto", type=tiles_choice, metavar="auto|off|SIZE", help=TILES_HELP)


def precision_from_args(args) -> str | None:
    """--precision as ``make_engine`` takes it (None: chosen for the hardware)."""
    value = getattr(args, "precision", "auto")
    return None if value in (None, "auto") else value


def say_precision(engine) -> None:
    """One line on stderr: the encoder's precision and why (engines that have an image encoder)."""
    choice = getattr(engine, "precision_choice", None)
    if choice is not None:
        print(f"clicklabel: {choice.line()}", file=sys.stderr)


TILES_HELP = ("large images in tiles at full resolution: auto (default: tiles of the model's input size for images "
              "longer than twice it), off, or a tile size in pixels")


def tiles_choice(text: str):
    """argparse type: ``--tiles``."""
    from ..segment.tiles import parse_tiles

    try:
        return parse_tiles(text)
    except ClickLabelError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def model_from_args(args) -> str:
    """--model, or the default."""
    return args.model or DEFAULT_MODEL


def engine_from_args(args, **options):
    """The engine the arguments ask for (``options``: cache, download, precision, compile). With ``--model auto``
    the model recognised in the checkpoint is named on stderr."""
    from ..segment import make_engine

    name = getattr(args, "engine", "sam")
    if name == "remote":
        from ..segment.remote import read_token

        options.update(server=args.server, token=read_token(args.token_file),
                       notify=lambda message: print(f"clicklabel: {message}", file=sys.stderr, flush=True))
    elif getattr(args, "server", None):
        raise PromptError("--server goes with --engine remote")
    if name not in ("grabcut", "remote"):
        options.setdefault("tiles", getattr(args, "tiles", "off"))
    options.setdefault("precision", precision_from_args(args))
    cache_precision = getattr(args, "cache_precision", "float16")
    if options.get("cache") is not None:
        options["cache"].precision = cache_precision
    elif cache_precision != "float16":
        from ..embeddings import EmbeddingCache

        options["cache"] = EmbeddingCache(precision=cache_precision)
    engine = make_engine(name, model_from_args(args), args.checkpoint, args.device, encoder=args.encoder, **options)
    if args.model == "auto":
        say_recognised(engine, args.checkpoint)
    if name != "remote":
        say_precision(engine)
    return engine


def engine_spec(args, **options) -> dict:
    """``make_engine`` keywords for the engine the arguments ask for, to build it elsewhere (a Ray worker)."""
    if getattr(args, "engine", "sam") == "remote":
        raise PromptError("--ray runs the encoder on the cluster's workers: leave out --engine remote")
    return {"engine": getattr(args, "engine", "sam"), "model": model_from_args(args),
            "checkpoint": str(args.checkpoint) if args.checkpoint else None, "device": args.device,
            "encoder": args.encoder, "precision": precision_from_args(args),
            **({} if getattr(args, "engine", "sam") == "grabcut" else {"tiles": getattr(args, "tiles", "off")}),
            **options}


def add_ray_args(p: argparse.ArgumentParser) -> None:
    """--ray [ADDRESS] and --ray-workers (the optional clicklabel[ray] extra)."""
    p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="run on Ray: a private local cluster, or join ADDRESS (needs pip install 'clicklabel[ray]')")
    p.add_argument("--ray-workers", type=positive_int, help="--ray: at most this many model workers")


def say_recognised(engine, checkpoint) -> None:
    """One line on stderr: the model ``--model auto`` found in the checkpoint."""
    from ..segment.models import FAMILIES

    family = FAMILIES[engine.name].label if engine.name in FAMILIES else engine.name
    print(f"clicklabel: recognised {engine.model} ({family}) in {checkpoint}", file=sys.stderr)


def deprecated(old: str, new: str) -> None:
    """One line on stderr: ``old`` still works for this release."""
    print(f"clicklabel: warning: {old} is deprecated and will be removed in the next release; use {new}",
          file=sys.stderr)
