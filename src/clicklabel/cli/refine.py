"""``clicklabel refine``: every box-only object of a project gets the engine's mask for its box (a detection data set
becomes instance segmentation); results that disagree with their box are marked for review."""

from __future__ import annotations

import sys

from .common import add_engine_args, add_ray_args, engine_from_args, engine_spec, finite_float, positive_int


def cmd_refine(args) -> int:
    from tqdm import tqdm

    from ..project import RefineSettings, open_project, refine_project, refine_targets

    store = open_project(args.project)
    settings = RefineSettings(min_iou=args.min_iou, max_leak=args.max_leak, batch=args.batch,
                              only_boxes=args.only_boxes)
    counts = store.count_mask_states()
    if counts["box"] == 0 and args.only_boxes:  # before loading any model
        print(f"nothing to refine: {store.path} has no box-only objects")
        return 0
    if args.ray:
        rep, engine = refine_on_ray(args, store, settings)
        if not rep.images and not rep.errors:
            print(f"nothing to refine: every box-only object was refined (or tried) with {engine.name} "
                  f"{engine.model}; {counts['box']} box-only, {counts['review']} flagged for review")
            return 0
    else:
        engine = engine_from_args(args)
        targets = refine_targets(store, engine, only_boxes=args.only_boxes)
        if not targets:
            print(f"nothing to refine: every box-only object was refined (or tried) with {engine.name} "
                  f"{engine.model}; {counts['box']} box-only, {counts['review']} flagged for review")
            return 0
        n = sum(len(v) for v in targets.values())
        bar = tqdm(total=len(targets), unit="image", desc=f"refining {n} boxes", disable=None)
        try:
            rep = refine_project(store, engine, settings, progress=lambda done, total: bar.update(done - bar.n))
        finally:
            bar.close()
    for line in rep.errors:
        print(f"skipped: {line}")
    counts = store.count_mask_states()
    print(f"refined {len(rep.refined)} objects on {rep.images} images with {engine.name} {engine.model}; "
          f"flagged {len(rep.flagged)} for review ({len(rep.empty)} empty masks stay box-only)")
    if rep.skipped:
        print(f"{rep.skipped} objects changed or were deleted meanwhile and were left as they are")
    print(f"project: {counts['mask']} objects with masks, {counts['box']} box-only, {counts['review']} flagged for "
          "review (step through them in `clicklabel gui`, or list them with `clicklabel report`)")
    return 1 if rep.errors else 0


def refine_on_ray(args, store, settings):
    """``refine --ray``: Ray workers decode the boxes (one model load each); this process checks and writes."""
    from tqdm import tqdm

    from ..cluster import ray_session
    from ..cluster.workers import make_workers, ray_refine
    from ..files import cache_root

    with ray_session(args.ray) as ray:
        workers = make_workers(ray, engine_spec(args), str(cache_root()), max_workers=args.ray_workers,
                                   say=lambda line: print(f"clicklabel: {line}", file=sys.stderr))
        bar = tqdm(unit="image", desc=f"refining on Ray ({len(workers)} workers)", disable=None)
        try:
            return ray_refine(ray, workers, store, settings, progress=bar.update)
        finally:
            bar.close()


def add_refine_parser(sub) -> None:
    p = sub.add_parser("refine", help="box-only objects (a detection data set) get SAM's masks from their boxes")
    p.add_argument("project")
    p.add_argument("--batch", type=positive_int, default=16, help="boxes decoded together (default 16)")
    p.add_argument("--only-boxes", action="store_true",
                   help="only objects without a mask (default: also imported masks that are just their rectangle)")
    p.add_argument("--min-iou", type=finite_float, default=0.7,
                   help="flag a mask whose box overlaps the given box less than this (default 0.7)")
    p.add_argument("--max-leak", type=finite_float, default=0.1,
                   help="flag a mask reaching past the box by more than this share of its size (default 0.1)")
    add_engine_args(p)
    add_ray_args(p)
    p.set_defaults(func=cmd_refine)
