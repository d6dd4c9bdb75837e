"""``clicklabel add | label | propose | export | import | report``: the commands that work on a project."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import ClickLabelError


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


def add_project_parsers(sub) -> None:
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
