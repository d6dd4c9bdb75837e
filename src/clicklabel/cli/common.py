"""What the command groups share: prompt parsing, the engine arguments (defined once), and deprecation notes."""

from __future__ import annotations

import argparse
import math
import sys

from ..errors import PromptError
from ..segment import ENCODER_CHOICES, ENCODER_HELP

EXIT_USER_ERROR = 2
ENGINE_HELP = "sam or grabcut, or a model name (shorthand for --engine sam --model NAME)"
MODEL_HELP = "SAM model: vit_b, vit_l, vit_h, or auto (read from --checkpoint)"


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


def add_engine_args(p: argparse.ArgumentParser, engine: bool = True, model: str = "vit_b") -> None:
    """--engine (if the command can use GrabCut), --model, --checkpoint, --device, --encoder."""
    if engine:
        p.add_argument("--engine", default="sam", help=ENGINE_HELP)
    p.add_argument("--model", default=model, help=MODEL_HELP)
    p.add_argument("--checkpoint", help="your own checkpoint file (no hash check)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--encoder", default="auto", choices=ENCODER_CHOICES, help=ENCODER_HELP)


def engine_from_args(args, **options):
    """The engine the arguments ask for (``options``: cache, download)."""
    from ..segment import make_engine

    return make_engine(getattr(args, "engine", "sam"), args.model, args.checkpoint, args.device,
                       encoder=args.encoder, **options)


def deprecated(old: str, new: str) -> None:
    """One line on stderr: ``old`` still works for this release."""
    print(f"clicklabel: warning: {old} is deprecated and will be removed in the next release; use {new}",
          file=sys.stderr)
