"""The ``clicklabel`` command. Each subcommand parses its arguments and calls the core; errors the user can act
on print one line and exit with status 2."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .cli_bench import add_bench_parser
from .cli_project import add_project_parsers
from .errors import ClickLabelError, PromptError
from .segment import ENCODER_CHOICES, ENCODER_HELP

EXIT_USER_ERROR = 2
SAMPLES = Path(__file__).parent / "data" / "samples"


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


def write_png_atomic(mask, path: Path) -> None:
    """Write a 0/255 PNG by way of a temporary file, so a failure never leaves half a file."""
    import numpy as np
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.part")
    Image.fromarray(np.asarray(mask, dtype=np.uint8) * 255).save(tmp, format="PNG")
    os.replace(tmp, path)


def add_engine_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", default="sam", choices=["sam", "grabcut"])
    p.add_argument("--model", default="vit_b", help="vit_b, vit_l, vit_h, or auto (with --checkpoint)")
    p.add_argument("--checkpoint", help="your own checkpoint file (no hash check)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--encoder", default="auto", choices=ENCODER_CHOICES, help=ENCODER_HELP)


def cmd_segment(args) -> int:
    from .images import load_image
    from .segment import Prompt, make_engine

    image = load_image(args.image)
    pts = [parse_point(p) for p in args.point or []]
    box = parse_box(args.box) if args.box else None
    prompt = Prompt.make([(x, y) for x, y, _ in pts], [lab for _, _, lab in pts], box)
    prompt.validate(image.shape)  # before loading any model: bad prompts fail fast
    engine = make_engine(args.engine, args.model, args.checkpoint, args.device, encoder=args.encoder)
    engine.set_image(image)
    result = engine.predict(prompt, multimask=False)[0]
    if args.out:
        write_png_atomic(result.mask, Path(args.out))
    print(
        json.dumps(
            {
                "bbox": list(result.bbox) if result.bbox else None,
                "area": result.area,
                "score": round(result.score, 4),
                "empty": result.empty,
                "engine": engine.name,
                "model": engine.model,
                "image_size": [int(image.shape[1]), int(image.shape[0])],
                "embedding_cached": bool(getattr(engine, "last_from_cache", False)),
                "out": args.out,
            }
        )
    )
    return 0


def cmd_demo(args) -> int:
    """Segment the main object of each bundled sample (SAM vit_b, or GrabCut offline) and save overlays."""
    import numpy as np
    from PIL import Image

    from .errors import WeightsError
    from .images import list_images, load_image
    from .segment import Prompt, make_engine

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    try:
        engine = make_engine(args.engine, args.model, args.checkpoint, args.device, encoder=args.encoder)
    except WeightsError as exc:
        print(f"clicklabel: {exc}", file=sys.stderr)
        print("clicklabel: using the GrabCut engine instead (no weights needed)", file=sys.stderr)
        engine = make_engine("grabcut")
    for path in list_images(SAMPLES):
        image = load_image(path)
        h, w = image.shape[:2]
        box = (0.2 * w, 0.15 * h, 0.8 * w, 0.95 * h)  # the bundled photos have their object in the middle
        engine.set_image(image)
        r = engine.predict(Prompt.make(box=box))[0]
        overlay = image.copy()
        overlay[r.mask] = (0.5 * overlay[r.mask] + [0, 110, 0]).astype(np.uint8)
        Image.fromarray(overlay).save(out / f"{path.stem}_mask.png")
        print(json.dumps({"image": path.name, "engine": engine.name, "bbox": r.bbox, "area": r.area,
                          "overlay": str(out / f"{path.stem}_mask.png")}))
    return 0


def cmd_weights(args) -> int:
    from . import weights

    if args.action == "list":
        for name, ck in weights.REGISTRY.items():
            path = weights.checkpoint_path(name)
            state = "present" if path.is_file() else "missing"
            print(f"{name}\t{ck.size / 1e6:,.0f} MB\t{state}\t{path}\t{ck.url}")
        return 0
    if args.action == "download":
        if not args.name:
            raise ClickLabelError("name the model to download: vit_b, vit_l or vit_h")
        print(weights.download(args.name))
        return 0
    names = [args.name] if args.name else [n for n in weights.REGISTRY if weights.checkpoint_path(n).is_file()]
    if not names:
        print(f"no checkpoints in {weights.weights_dir()}")
        return 0
    bad = 0
    for n in names:
        ok, line = weights.verify(n)
        print(line)
        bad += not ok
    return 1 if bad else 0


def cmd_gui(args) -> int:
    """Open napari with the clicklabel widget (needs the GUI extra: pip install 'clicklabel[gui]')."""
    import importlib

    try:
        launch = importlib.import_module("clicklabel_napari.launch")
    except ImportError as exc:
        missing = exc.name
        raise ClickLabelError(f"the GUI needs napari and Qt ({missing} is missing): pip install 'clicklabel[gui]'") \
            from None
    if args.cache:  # every engine the GUI makes reads its cache folder from here
        os.environ["CLICKLABEL_CACHE"] = str(Path(args.cache).resolve())
    return launch.main(args.images, args.project, args.engine_choice, args.checkpoint, args.device, args.encoder)


def cmd_precompute(args) -> int:
    from tqdm import tqdm

    from .precompute import image_paths, precompute
    from .segment.sam import SamEngine

    paths = image_paths(args.target)
    from .embeddings import EmbeddingCache

    engine = SamEngine(args.model, args.checkpoint, device=args.device,
                       cache=EmbeddingCache(args.cache) if args.cache else None,
                       fast=None if args.encoder == "auto" else args.encoder == "fast",
                       precision=None if args.precision == "auto" else args.precision,
                       compile=args.compile)
    bar = tqdm(total=len(paths), unit="image", desc=f"embedding ({engine.model}, {engine.device})",
               disable=None)
    stats = precompute(engine, paths, batch=args.batch, workers=args.workers, progress=bar.update)
    bar.close()
    rate = stats["encoded"] / stats["seconds"] if stats["seconds"] > 0 else 0.0
    print(f"{stats['encoded']} encoded, {stats['cached']} already cached, {stats['failed']} unreadable "
          f"in {stats['seconds']:.1f} s ({rate:.1f} images/s, encoder: {engine.encoder.describe()}); "
          f"cache: {engine.cache.folder}")
    for e in stats["errors"][:10]:
        print(f"skipped: {e}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clicklabel", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("segment", help="one prompt on one image -> mask PNG + JSON (bbox XYWH, area, score)")
    p.add_argument("image")
    p.add_argument("--point", action="append", help="X,Y[:1|0] (repeatable; 1 positive, 0 negative)")
    p.add_argument("--box", help="X0,Y0,X1,Y1")
    p.add_argument("--out", help="mask PNG to write")
    add_engine_args(p)
    p.set_defaults(func=cmd_segment)

    p = sub.add_parser("demo", help="segment the bundled sample images and save overlays")
    p.add_argument("--out", default="clicklabel-demo")
    add_engine_args(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("weights", help="list, download or verify SAM checkpoints")
    p.add_argument("action", choices=["list", "download", "verify"])
    p.add_argument("name", nargs="?")
    p.set_defaults(func=cmd_weights)

    p = sub.add_parser("gui", help="annotate in napari (no arguments: the bundled sample photos)")
    p.add_argument("images", nargs="*", help="a folder or image files")
    p.add_argument("--project", help="project file to open or create")
    p.add_argument("--engine", dest="engine_choice", default="vit_b", choices=["vit_b", "vit_l", "vit_h", "grabcut"])
    p.add_argument("--checkpoint")
    p.add_argument("--device", default="auto")
    p.add_argument("--encoder", default="auto", choices=ENCODER_CHOICES, help=ENCODER_HELP)
    p.add_argument("--cache", help="embedding cache folder (e.g. one filled by precompute on another machine)")
    p.set_defaults(func=cmd_gui)

    p = sub.add_parser("precompute", help="fill the embedding cache for a folder or project (resumable)")
    p.add_argument("target", help="folder of images or a project")
    p.add_argument("--model", default="vit_b")
    p.add_argument("--checkpoint")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--encoder", default="auto", choices=ENCODER_CHOICES, help=ENCODER_HELP)
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="auto = bf16 with the fast encoder on CUDA, else fp32")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the encoder (a minute or more once; pays off over hundreds of images)")
    p.add_argument("--workers", type=int, help="CPU threads reading and resizing images (default: cores, max 16)")
    p.add_argument("--cache", help="embedding cache folder (default $CLICKLABEL_CACHE or the user cache folder); "
                                   "copy it to another machine and pass it to `clicklabel gui --cache`")
    p.set_defaults(func=cmd_precompute)

    add_project_parsers(sub)
    add_bench_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ClickLabelError as exc:
        print(f"clicklabel: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("clicklabel: interrupted; work already saved is kept", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
