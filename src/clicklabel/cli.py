"""The ``clicklabel`` command. Each subcommand parses its arguments and calls the core; errors the user can act
on print one line and exit with status 2."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .errors import ClickLabelError, PromptError

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


def cmd_segment(args) -> int:
    from .images import load_image
    from .segment import Prompt, make_engine

    image = load_image(args.image)
    pts = [parse_point(p) for p in args.point or []]
    box = parse_box(args.box) if args.box else None
    prompt = Prompt.make([(x, y) for x, y, _ in pts], [lab for _, _, lab in pts], box)
    prompt.validate(image.shape)  # before loading any model: bad prompts fail fast
    engine = make_engine(args.engine, args.model, args.checkpoint, args.device)
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
        engine = make_engine(args.engine, args.model, args.checkpoint, args.device)
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


def cmd_export(args) -> int:
    from .coco import export_coco
    from .store import Store

    store = open_project(args.project)
    rep = export_coco(store, args.out, polygons=args.polygons, images_root=args.images_root)
    print(f"wrote {args.out}: {rep.images} images, {rep.annotations} annotations")
    if rep.unlabelled:
        print(f"{rep.unlabelled} objects have no label yet (category 'unlabelled'); run `clicklabel label`")
    if rep.rle_fallbacks:
        ids = ", ".join(map(str, rep.rle_fallbacks[:20])) + (" ..." if len(rep.rle_fallbacks) > 20 else "")
        print(f"{len(rep.rle_fallbacks)} masks have holes or touching parts that COCO polygons cannot hold; "
              f"written as RLE instead: objects {ids}")
    return 0


def cmd_import(args) -> int:
    from .coco import import_coco
    from .store import Store

    store = Store(args.project, root=args.images if not Path(args.project).exists() else None)
    rep = import_coco(args.coco_json, args.images, store, strict=args.strict)
    print(f"imported {rep.annotations} annotations on {rep.images} images into {store.path}")
    for p in rep.problems:
        print(f"skipped: {p}")
    return 1 if rep.problems else 0


def open_project(path: str):
    """Open an existing project (a clear error if there is none)."""
    from .errors import StoreError
    from .store import Store

    p = Path(path)
    if p.is_dir():
        p = p / "project.clicklabel"
    if not p.is_file():
        raise StoreError(f"no project at {path}")
    return Store(p)


def cmd_bench(args) -> int:
    from . import bench

    if args.what == "latency":
        bench.bench_latency(args.model, args.checkpoint, args.random_weights, _bench_device(args.device), args.repeats)
        return 0
    raise ClickLabelError(f"unknown benchmark {args.what!r}")


def _bench_device(device: str) -> str:
    from .segment.sam import resolve_device

    return resolve_device(device)


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

    p = sub.add_parser("export", help="write a project as COCO instance annotations")
    p.add_argument("project")
    p.add_argument("--out", required=True)
    p.add_argument("--polygons", action="store_true", help="polygons instead of RLE (RLE kept where they cannot)")
    p.add_argument("--images-root", help="write file_name relative to this folder")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import", help="read a COCO file into a project")
    p.add_argument("coco_json")
    p.add_argument("--images", required=True, help="the folder the file_name entries are relative to")
    p.add_argument("--project", required=True, help="project file (created if missing)")
    p.add_argument("--strict", action="store_true", help="import nothing if any annotation is bad")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("bench", help="benchmarks against the stock baseline, measured in the same run")
    p.add_argument("what", choices=["latency"])
    p.add_argument("--model", default="vit_b")
    p.add_argument("--checkpoint")
    p.add_argument("--random-weights", action="store_true", help="random weights (timing only)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=20)
    p.set_defaults(func=cmd_bench)
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
