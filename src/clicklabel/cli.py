"""The ``clicklabel`` command. Each subcommand parses its arguments and calls the core; errors the user can act
on print one line and exit with status 2."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .cli_bench import add_bench_parser
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


def cmd_report(args) -> int:
    from .evaluate.report import write_report

    nums = write_report(open_project(args.project), args.out)
    print(f"wrote {Path(args.out) / 'index.html'} ({sum(r['objects'] for r in nums['by_provenance'].values())} "
          f"objects, {len(nums['pairs'])} manual/SAM pairs)")
    return 0


def cmd_export(args) -> int:
    from .coco import export_coco

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


def cmd_label(args) -> int:
    from tqdm import tqdm

    from .label import CropSettings, Labeler, LabelerConfig, estimate, label_objects, objects_to_label
    from .label.client import LabelCache
    from .label.prices import SOURCE, load_prices

    store = open_project(args.project)
    from .label import read_vocabulary

    vocab = read_vocabulary(args.vocab, args.vocab_file)
    if vocab:
        store.set_meta("vocabulary", json.dumps(vocab))
    elif store.get_meta("vocabulary"):
        vocab = json.loads(store.get_meta("vocabulary"))
    template = Path(args.prompt_template).read_text() if args.prompt_template else None
    config = LabelerConfig(model=args.model, vocabulary=vocab or None, template=template, detail=args.detail,
                           concurrency=args.concurrency, timeout=args.timeout,
                           crop=CropSettings(mode=args.crop_mode))
    labeler = Labeler(config, LabelCache(), load_prices(args.prices))
    ids = objects_to_label(store, relabel_all=args.all)
    est = estimate(store, ids, labeler)
    price_note = f"prices: {SOURCE}" if est["priced"] else f"no price known for {args.model}: cost shown as 0"
    if args.dry_run:
        print(f"{est['requests']} requests to {args.model}, about {est['prompt_tokens']:,} prompt + "
              f"{est['completion_tokens']:,} completion tokens, estimated ${est['cost']:.4f} "
              f"(${est['cost_per_object']:.6f} per object, detail {args.detail}); {price_note}")
        return 0
    if not ids:
        print("nothing to label: every object is labelled (use --all to relabel)")
        return 0
    if args.all:
        store.mark_pending(ids)
    bar = tqdm(total=len(ids), unit="obj", desc="labelling", disable=None)
    try:
        summary = label_objects(store, ids, labeler, progress=lambda done, total: bar.update(done - bar.n))
    finally:
        bar.close()
    n = summary.done or 1
    print(f"labelled {summary.labelled}, failed {summary.failed} ({summary.cached} from the cache); "
          f"{summary.prompt_tokens:,} prompt + {summary.completion_tokens:,} completion tokens, "
          f"${summary.cost:.4f} (${summary.cost / n:.6f} per object); {price_note}")
    usage = store.usage()
    print(f"project total: {usage['prompt_tokens']:,} prompt + {usage['completion_tokens']:,} completion tokens, "
          f"${usage['cost']:.4f}")
    for oid, err in list(summary.errors.items())[:10]:
        print(f"object {oid}: {err}")
    if summary.failed:
        print("run `clicklabel label` again to retry the failed ones")
    return 0 if not summary.failed else 1


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


def cmd_add(args) -> int:
    from .images import IMAGE_SUFFIXES, list_images
    from .store import Store

    paths: list[Path] = []
    for item in args.images:
        p = Path(item)
        paths.extend(list_images(p) if p.is_dir() else [p])
    if not paths:
        raise ClickLabelError("no images found")
    first = paths[0].parent if paths else Path.cwd()
    project = Path(args.project)
    root = args.root or (first if not project.exists() else None)
    store = Store(project, root=root)
    added = 0
    for p in paths:
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            print(f"skipped (not an image name): {p}")
            continue
        store.add_image_file(p)
        added += 1
    print(f"{store.path}: {added} images added, {len(store.images())} in the project (root {store.root})")
    return 0


def cmd_propose(args) -> int:
    from tqdm import tqdm

    from .images import load_image
    from .segment.propose import ProposeSettings, propose
    from .segment.sam import SamEngine

    settings = ProposeSettings(grid=args.grid, min_area=args.min_area, max_proposals=args.max,
                               pred_iou_thresh=args.pred_iou_thresh, stability_thresh=args.stability_thresh)
    target = Path(args.target)
    is_project = target.suffix == ".clicklabel" or target.is_dir()
    if not is_project:
        image = load_image(target)  # fail on a bad image before loading the model
    engine = SamEngine(args.model, args.checkpoint, device=args.device)
    if not is_project:
        engine.set_image(image)
        props = propose(engine, settings)
        out = Path(args.out or "proposals.json")
        write_proposals_coco(props, target, image.shape, out)
        print(f"{len(props)} proposals written to {out}")
        return 0
    store = open_project(args.target)
    accepted_ids = []
    n_props = 0
    for im in tqdm(store.images(), unit="image", desc="proposing", disable=None):
        engine.set_image(load_image(store.image_path(im)))
        existing = [o.mask for o in store.objects(im.id, states=("accepted", "proposed"))]
        for p in propose(engine, settings, existing=existing):
            auto = args.accept_above is not None and p.predicted_iou >= args.accept_above
            oid = store.accept(im.id, p.mask, provenance="proposed", score=p.predicted_iou, engine="sam",
                               model=engine.model, clicks=0, state="accepted" if auto else "proposed")
            n_props += 1
            if auto:
                accepted_ids.append(oid)
    print(f"{n_props} proposals written to {store.path}; {len(accepted_ids)} accepted (score >= {args.accept_above})")
    if args.label and accepted_ids:
        from .label import LabelCache, Labeler, LabelerConfig, label_objects

        summary = label_objects(store, accepted_ids, Labeler(LabelerConfig(model=args.lmm_model), LabelCache()))
        print(f"labelled {summary.labelled}, failed {summary.failed}, ${summary.cost:.4f}")
    return 0


def write_proposals_coco(props, image_path: Path, shape, out: Path) -> None:
    """Proposals of one image as a COCO file: category 'object', a score per annotation."""
    from .masks import encode_rle

    doc = {
        "images": [{"id": 1, "file_name": image_path.name, "height": int(shape[0]), "width": int(shape[1])}],
        "categories": [{"id": 1, "name": "object", "supercategory": "object"}],
        "annotations": [
            {"id": i + 1, "image_id": 1, "category_id": 1, "segmentation": encode_rle(p.mask), "area": p.area,
             "bbox": list(p.bbox), "iscrowd": 0, "score": round(p.predicted_iou, 5),
             "clicklabel": {"stability": round(p.stability, 5), "point": list(p.point)}}
            for i, p in enumerate(props)
        ],
    }
    tmp = out.with_name(f".{out.name}.part")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, out)


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

    p = sub.add_parser("report", help="HTML comparison of manual and SAM selection in a project")
    p.add_argument("project")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=cmd_report)

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

    p = sub.add_parser("label", help="name each object with a multimodal model (OpenAI-compatible API)")
    p.add_argument("project")
    p.add_argument("--model", default="gpt-4o-mini")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--vocab", help="allowed labels, comma separated")
    g.add_argument("--vocab-file", help="allowed labels, one per line")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--detail", default="low", choices=["low", "high", "auto"])
    p.add_argument("--crop-mode", default="mask", choices=["mask", "box", "both"])
    p.add_argument("--prompt-template", help="file with the user prompt ({vocabulary} is filled in)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    p.add_argument("--prices", help="JSON price table to use instead of the built-in one")
    p.add_argument("--all", action="store_true", help="relabel every object (old labels stay in the history)")
    p.add_argument("--dry-run", action="store_true", help="count requests and estimate the cost; send nothing")
    p.set_defaults(func=cmd_label)

    p = sub.add_parser("add", help="add images (files or folders) to a project, creating it if needed")
    p.add_argument("project")
    p.add_argument("images", nargs="+")
    p.add_argument("--root", help="project root (image paths are stored relative to it)")
    p.set_defaults(func=cmd_add)

    p = sub.add_parser("propose", help="SAM proposes every object: into a project for review, or a COCO file")
    p.add_argument("target", help="a project (.clicklabel or folder) or one image")
    p.add_argument("--grid", type=int, default=32, help="points per side")
    p.add_argument("--min-area", type=int, default=0)
    p.add_argument("--max", type=int, help="at most this many proposals per image (best first)")
    p.add_argument("--pred-iou-thresh", type=float, default=0.88)
    p.add_argument("--stability-thresh", type=float, default=0.95)
    p.add_argument("--accept-above", type=float, help="accept proposals with at least this predicted IoU")
    p.add_argument("--label", action="store_true", help="label the accepted proposals in the same run")
    p.add_argument("--lmm-model", default="gpt-4o-mini")
    p.add_argument("--out", help="with an image: the COCO file to write (default proposals.json)")
    p.add_argument("--model", default="vit_b")
    p.add_argument("--checkpoint")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_propose)

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
