"""``clicklabel add | propose | export | import | report``: the commands that work on a project. Each is a few
lines around the core's project workflows (``clicklabel.project``), which the widget calls too."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..errors import ClickLabelError
from .common import add_engine_args, add_ray_args, count, engine_from_args, engine_spec, finite_float, positive_int
from .concepts import add_concept_args


def cmd_add(args) -> int:
    from ..project import add_images, expand_images, is_project, open_project
    from .track import add_sequence_items, split_sequences

    sequences, images = split_sequences(args.images, args.sequence)
    files = expand_images(images, recursive=not args.flat)
    if not files and not sequences:
        raise ClickLabelError(f"no images in {' '.join(args.images)}")
    existing = is_project(args.project)
    first = Path(args.images[0]).expanduser()  # a folder is the root: its sub-folders' names are kept (cats/a.jpg)
    if not files:  # only videos, stacks or frame folders: the project's root is the first one's folder
        first = first.parent
    store = open_project(args.project, create=True,
                         root=args.root or (first.resolve() if first.is_dir() else files[0].resolve().parent))
    if existing and args.root:
        store.set_root(args.root)
    add_sequence_items(store, sequences, args)
    if not files:
        return 0
    rep = add_images(store, files)
    for line in rep.skipped:
        print(f"skipped: {line}")
    print(f"{store.path}: {rep.added} images added, {len(store.images())} in the project (root {store.root})")
    return 1 if rep.skipped else 0


def cmd_propose(args) -> int:
    from tqdm import tqdm

    from .concepts import cmd_concepts, wants_concepts

    if wants_concepts(args):  # --concepts / --exemplar / --grounding: every instance of named classes
        return cmd_concepts(args)
    if args.random_weights or args.check or args.dry_run:
        raise ClickLabelError("--random-weights, --check and --dry-run go with --concepts")
    from ..images import load_image
    from ..project import is_project, open_project, propose_project
    from ..segment.propose import ProposeSettings

    settings = ProposeSettings(grid=args.grid, min_area=args.min_area, max_proposals=args.max,
                               pred_iou_thresh=args.pred_iou_thresh, stability_thresh=args.stability_thresh)
    target = Path(args.target)
    if not is_project(target):
        from ..coco import write_proposals

        if target.suffix == ".clicklabel" or target.is_dir():
            open_project(target)  # raises the one-line "no project" error
        image = load_image(target)  # fail on a bad image before loading the model
        engine = engine_from_args(args)
        engine.set_image(image)
        props = engine.propose(settings)
        out = Path(args.out or "proposals.json")
        write_proposals(props, target, image.shape, out)
        print(f"{len(props)} proposals written to {out}")
        return 0
    store = open_project(target)
    if args.ray:
        from ..cluster import ray_session
        from ..cluster.workers import make_workers, ray_propose
        from ..files import cache_root

        with ray_session(args.ray) as ray:
            workers = make_workers(ray, engine_spec(args), str(cache_root()), max_workers=args.ray_workers,
                                   say=lambda line: print(f"clicklabel: {line}", file=sys.stderr))
            bar = tqdm(total=len(store.images()), unit="image", desc=f"proposing on Ray ({len(workers)} workers)",
                       disable=None)
            rep = ray_propose(ray, workers, store, settings, accept_above=args.accept_above, progress=bar.update)
    else:
        engine = engine_from_args(args)
        bar = tqdm(total=len(store.images()), unit="image", desc="proposing", disable=None)
        rep = propose_project(store, engine, settings, accept_above=args.accept_above,
                              progress=lambda done, total: bar.update(done - bar.n))
    bar.close()
    for line in rep.errors:
        print(f"skipped: {line}")
    print(f"{len(rep.proposed)} proposals written to {store.path}; {len(rep.accepted)} accepted "
          f"(score >= {args.accept_above})")
    if args.label and rep.accepted:
        from ..label import LabelCache, Labeler, label_objects
        from ..project import load_label_settings

        config = load_label_settings(store).updated(lmm=args.lmm).labeler_config()
        summary = label_objects(store, rep.accepted, Labeler(config, LabelCache()))
        print(f"labelled {summary.labelled}, failed {summary.failed}, ${summary.cost:.4f}")
    return 0


def cmd_export(args) -> int:
    from tqdm import tqdm

    from ..coco import export_coco
    from ..project import open_project

    if args.format == "ytvis":
        from .track import export_ytvis_args

        return export_ytvis_args(args)
    store = open_project(args.project)
    bar = tqdm(total=len(store.images()), unit="image", desc="copying images", disable=None)
    progress = lambda done, total: bar.update(done - bar.n)  # noqa: E731
    if args.format == "yolo":
        from ..coco.yolo import export_yolo

        if args.polygons or args.images_root:
            raise ClickLabelError("--polygons and --images-root are for --format coco")
        rep = export_yolo(store, args.out, auto_orient=args.auto_orient is not None, progress=progress)
        bar.close()
        print(f"wrote {Path(args.out) / 'data.yaml'}: {rep.images} images, {rep.instances} instances, {rep.classes} "
              "classes")
        if rep.turned:
            print(f"{rep.turned} images written upright (their EXIF rotation applied)")
        for n, text in ((rep.joined, "multi-part objects have their parts joined into one outline"),
                        (rep.filled, "objects have holes, which a YOLO outline cannot hold: filled"),
                        (rep.boxes, "objects are box-only (no mask yet): written as their box")):
            if n:
                print(f"{n} {text}")
        return 0
    names = None
    if args.auto_orient is not None:
        from ..coco.copies import copy_images

        if args.images_root:
            raise ClickLabelError("--auto-orient writes the copies' names; leave out --images-root")
        folder = Path(args.auto_orient or Path(args.out).parent / "images_upright")
        copied, turned = copy_images(store, folder, upright=True, progress=progress)
        names = {iid: Path(os.path.relpath(folder / n, Path(args.out).parent)).as_posix() for iid, n in copied.items()}
        print(f"copied {len(copied)} images to {folder} ({turned} turned upright: readers that ignore EXIF see them "
              "as displayed)")
    bar.close()
    rep = export_coco(store, args.out, polygons=args.polygons or False, images_root=args.images_root,
                      file_names=names)
    print(f"wrote {args.out}: {rep.images} images, {rep.annotations} annotations")
    if rep.boxes:
        print(f"{rep.boxes} objects are box-only (no mask yet), written with an empty segmentation; "
              "`clicklabel refine` gives them masks")
    if rep.unlabelled:
        print(f"{rep.unlabelled} objects have no label yet (category 'unlabelled'); run `clicklabel label`")
    if rep.rle_fallbacks:
        ids = ", ".join(map(str, rep.rle_fallbacks[:20])) + (" ..." if len(rep.rle_fallbacks) > 20 else "")
        print(f"{len(rep.rle_fallbacks)} masks have holes or touching parts that COCO polygons cannot hold; "
              f"written as RLE instead: objects {ids}")
    return 0


def cmd_import(args) -> int:
    from ..coco import import_coco, read_coco_file
    from ..project import open_project
    from ..project.open import project_file, remove_new_project

    if not Path(args.images).is_dir():
        raise ClickLabelError(f"--images {args.images} is not a folder")
    read_coco_file(args.coco_json)  # a file that is not COCO at all creates no project
    existed = project_file(args.project).exists()
    store = open_project(args.project, create=True, root=args.images)
    mode = "merge" if args.merge else "replace" if args.replace else "skip"
    try:
        rep = import_coco(args.coco_json, args.images, store, strict=args.strict, mode=mode,
                          renumber=args.renumber_images)
    except BaseException:
        if not existed:  # a failed import leaves no empty project behind
            remove_new_project(store)
        raise
    if not existed and not rep.images:
        remove_new_project(store)
        for p in rep.problems:
            print(f"skipped: {p}")
        raise ClickLabelError(f"nothing to import: none of the file's images could be used; no project was made "
                              f"at {args.project}")
    print(f"imported {rep.annotations} annotations on {rep.images} images into {store.path}")
    if rep.boxes:
        print(f"{rep.boxes} of them are box-only (no mask yet): `clicklabel refine {args.project}` gives them masks")
    if rep.skipped:
        print(f"{rep.skipped} annotations were already in the project (imported before) and were skipped; "
              "--merge adds them again, --replace replaces them")
    if rep.replaced:
        print(f"{rep.replaced} objects of an earlier import were replaced (undoable)")
    for note in rep.notes:
        print(f"note: {note}")
    for p in rep.problems:
        print(f"skipped: {p}")
    return 1 if rep.problems else 0


def cmd_report(args) -> int:
    from ..evaluate.report import write_report
    from ..project import open_project

    nums = write_report(open_project(args.project), args.out)
    print(f"wrote {Path(args.out) / 'index.html'} ({sum(r['objects'] for r in nums['by_provenance'].values())} "
          f"objects, {len(nums['pairs'])} manual/SAM pairs, {len(nums['flagged'])} flagged for review, "
          f"{len(nums['disagreements'])} disagreements with the model waiting for a decision)")
    return 0


def add_project_parsers(sub) -> None:
    p = sub.add_parser("add", help="add images (files or folders) to a project, creating it if needed")
    p.add_argument("project")
    p.add_argument("images", nargs="+")
    p.add_argument("--root", help="project root (image paths are stored relative to it)")
    p.add_argument("--flat", action="store_true", help="a folder's own images only, not its sub-folders'")
    p.add_argument("--sequence", action="store_true", help="a folder is one sequence of frames (in name order), "
                                                           "not separate images; videos and TIFF stacks always are")
    p.add_argument("--step", type=positive_int, default=1, help="sequences: every N-th frame")
    p.add_argument("--name", help="sequences: the sequence's name (default: the file or folder name)")
    p.add_argument("--frame-format", default="jpg", choices=["jpg", "png"],
                   help="videos: how decoded frames are stored beside the project (jpg: quality 95; png: lossless)")
    p.set_defaults(func=cmd_add)

    p = sub.add_parser("propose", help="SAM proposes every object (or, with --concepts, every instance of "
                                       "named classes): into a project for review, or a COCO file")
    p.add_argument("target", help="a project (.clicklabel or folder) or one image")
    p.add_argument("--grid", type=positive_int, default=32, help="points per side")
    p.add_argument("--min-area", type=count, default=0)
    p.add_argument("--max", type=positive_int, help="at most this many proposals per image (best first)")
    p.add_argument("--pred-iou-thresh", type=finite_float, default=0.88)
    p.add_argument("--stability-thresh", type=finite_float, default=0.95)
    p.add_argument("--accept-above", type=finite_float, help="accept proposals with at least this predicted IoU")
    p.add_argument("--label", action="store_true", help="label the accepted proposals in the same run")
    p.add_argument("--lmm", "--lmm-model", dest="lmm", help="the multimodal model for --label (default: the "
                                                            "project's labelling settings)")
    p.add_argument("--out", help="with an image: the COCO file to write (default proposals.json)")
    add_engine_args(p, engine=False, remote=True)
    add_ray_args(p)
    add_concept_args(p)
    p.set_defaults(func=cmd_propose)

    p = sub.add_parser("export", help="write a project as COCO instance annotations (or a YOLO segmentation set)")
    p.add_argument("project")
    p.add_argument("--out", required=True, help="the COCO .json file; with --format yolo, the data set's folder")
    p.add_argument("--format", choices=["coco", "yolo", "ytvis"], default="coco",
                   help="yolo: images/, labels/ and data.yaml, as ultralytics trains on; ytvis: YouTube-VIS (the "
                        "sequences as videos, one instance per track with a mask per frame); coco has one image per "
                        "frame and track_id on each tracked annotation")
    p.add_argument("--auto-orient", nargs="?", const="", metavar="DIR",
                   help="copy the images upright (EXIF rotation applied) for readers that ignore EXIF (torchvision, "
                        "datumaro): coco: into DIR (default images_upright/ beside --out), file names pointing there")
    p.add_argument("--polygons", nargs="?", const="pycocotools", choices=["pycocotools", "rounding"], metavar="READER",
                   help="exact polygons instead of RLE (RLE kept for holes) for the readers of READER: pycocotools "
                        "(the default; also ultralytics and supervision < 0.30.4, which truncate coordinates) or "
                        "rounding (supervision >= 0.30.4, which rounds them; ultralytics too)")
    p.add_argument("--images-root", help="write file_name relative to this folder")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("import", help="read a COCO file into a project")
    p.add_argument("coco_json")
    p.add_argument("--images", required=True, help="the folder the file_name entries are relative to")
    p.add_argument("--project", required=True, help="project file (created if missing)")
    p.add_argument("--strict", action="store_true", help="import nothing if any annotation is bad")
    p.add_argument("--renumber-images", action="store_true", help="give the images new ids (default: the file's "
                                                                   "ids, where the project has them free)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--merge", action="store_true", help="add annotations imported before again, as new objects")
    g.add_argument("--replace", action="store_true", help="replace the objects an earlier import of these "
                                                          "annotations made (default: skip them)")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("report", help="HTML comparison of manual and SAM selection in a project, with the objects "
                                      "flagged for review and the class audit's disagreements")
    p.add_argument("project")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=cmd_report)
