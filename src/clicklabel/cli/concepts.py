"""``clicklabel propose TARGET --concepts "cat,dog"``: every instance of each named class, with its class, into a
project for review or (one image) as a COCO file. SAM 3 finds them (``--model sam3``), or with ``--grounding lmm``
the multimodal model finds the boxes and the loaded SAM model the masks; ``--check`` asks the multimodal model
whether each proposal is its class (the class audit of ``label --check``)."""

from __future__ import annotations

import sys
from pathlib import Path

from ..errors import ClickLabelError
from .common import share


def add_concept_args(p) -> None:
    p.add_argument("--concepts", help="classes to find, comma separated (\"cat,dog,striped mug\"), or vocab: the "
                                      "project's vocabulary; needs --model sam3, or --grounding lmm")
    p.add_argument("--exemplar", action="append", default=[], metavar="X0,Y0,X1,Y1",
                   help="a box around one instance (repeatable): SAM 3 finds the others like it")
    p.add_argument("--threshold", type=share, default=0.5, help="--concepts: the least score kept (default 0.5)")
    p.add_argument("--grounding", choices=["lmm"], help="lmm: the multimodal model (--lmm) returns the boxes, the "
                                                        "loaded SAM model makes the masks (no SAM 3 needed)")
    p.add_argument("--dry-run", action="store_true", help="--grounding lmm: estimate requests and cost; send nothing")
    p.add_argument("--check", action="store_true", help="--concepts: ask the multimodal model whether each proposal "
                                                        "is its class (disagreements are reviewed first)")
    p.add_argument("--random-weights", action="store_true", help="random weights of --model (timing only)")


def wants_concepts(args) -> bool:
    return bool(args.concepts or args.exemplar or args.grounding)


def _engine(args):
    """The engine of the arguments; with --random-weights, the same engine on weights made in memory."""
    if not args.random_weights:
        from .common import engine_from_args

        return engine_from_args(args)
    if not args.model or args.model == "auto":
        raise ClickLabelError("--random-weights needs a model name (e.g. --model sam3)")
    if getattr(args, "engine", "sam") == "remote":
        raise ClickLabelError("--random-weights builds the model here: leave out --engine remote")
    from ..segment.cached import resolve_device
    from ..segment.models import engine_class, family_of, random_model, require

    require(family_of(args.model))
    device = resolve_device(args.device)
    print(f"clicklabel: {args.model} with random weights: its masks and classes mean nothing", file=sys.stderr)
    return engine_class(family_of(args.model))(loaded=random_model(args.model), device=device)


def _grounding(args, store=None):
    from ..label.grounding import Grounding
    from ..project import load_label_settings

    lmm = args.lmm
    if lmm is None and store is not None:
        lmm = load_label_settings(store).lmm
    return Grounding(lmm or "gpt-4o-mini")


def cmd_concepts(args) -> int:
    from ..images import load_image
    from ..project import is_project, open_project
    from ..segment.concepts import parse_box, parse_concepts

    if args.dry_run and not args.grounding:
        raise ClickLabelError("--dry-run estimates the cost of --grounding lmm; SAM 3 alone costs nothing")
    if args.exemplar and args.grounding:
        raise ClickLabelError("--exemplar goes to SAM 3; with --grounding lmm the model finds the boxes")
    exemplars = [parse_box(b) for b in args.exemplar]
    target = Path(args.target)
    project = is_project(target)
    if not project and (target.suffix == ".clicklabel" or target.is_dir()):
        open_project(target)  # raises the one-line "no project" error
    store = open_project(target) if project else None
    vocabulary = []
    if store is not None:
        from ..project import load_label_settings

        vocabulary = load_label_settings(store).vocabulary or store.labels_in_use()
    if not args.concepts and exemplars:
        raise ClickLabelError("name the class of the exemplar boxes: --concepts NAME")
    concepts = parse_concepts(args.concepts or "", vocabulary)
    grounding = _grounding(args, store) if args.grounding else None
    if args.dry_run:
        sizes = [(im.height, im.width) for im in store.images()] if store else [load_image(target).shape[:2]]
        est = grounding.estimate(sizes, concepts)
        note = "" if est["priced"] else f" (no price known for {grounding.model}: cost shown as 0)"
        print(f"{est['requests']} requests to {grounding.model} (one per image, {len(concepts)} concepts), about "
              f"{est['prompt_tokens']:,} prompt + {est['completion_tokens']:,} completion tokens, estimated "
              f"${est['cost']:.4f}{note}")
        return 0
    if store is None:
        return _concepts_to_coco(args, target, load_image(target), concepts, exemplars, grounding)
    return _concepts_to_project(args, store, concepts, exemplars, grounding)


def _concepts_to_coco(args, target: Path, image, concepts, exemplars, grounding) -> int:
    from tqdm import tqdm

    from ..coco.concepts import write_concepts
    from ..segment.concepts import find_concepts

    engine = _engine(args)
    engine.set_image(image)
    bar = tqdm(total=len(concepts) if grounding is None else 1, unit="concept", desc="finding", disable=None)
    progress = lambda done, total: bar.update(done - bar.n)  # noqa: E731
    if grounding is None:
        rep = find_concepts(engine, concepts, exemplars, args.threshold, progress=progress)
    else:
        rep = grounding.find(engine, image, concepts, progress=progress)
    bar.close()
    for line in rep.refused:
        print(f"refused: {line}")
    out = Path(args.out or "proposals.json")
    write_concepts(rep.instances, concepts, target, image.shape, out)
    counts = ", ".join(f"{c} {sum(1 for i in rep.instances if i.label == c)}" for c in concepts)
    print(f"{len(rep.instances)} instances ({counts}) written to {out}")
    return 0


def _concepts_to_project(args, store, concepts, exemplars, grounding) -> int:
    from tqdm import tqdm

    from ..label.learn import describe_object
    from ..project.concepts import propose_concepts_project

    engine = _engine(args)
    bar = tqdm(total=len(store.images()), unit="image", desc="finding concepts", disable=None)
    rep = propose_concepts_project(store, engine, concepts, exemplars, args.threshold, args.accept_above, grounding,
                                   progress=lambda done, total: bar.update(done - bar.n),
                                   on_stored=lambda oid, mask: describe_object(store, engine, oid, mask))
    bar.close()
    for line in rep.errors:
        print(f"skipped: {line}")
    for line in rep.refused:
        print(f"refused: {line}")
    counts = ", ".join(f"{c} {rep.found.get(c, 0)}" for c in concepts)
    cost = f"; {rep.requests} grounding requests, ${rep.cost:.4f}" if grounding is not None else ""
    print(f"{len(rep.proposed)} concept proposals ({counts}) written to {store.path}{cost}")
    if args.check and rep.proposed:
        from ..label.concept_review import check_concepts

        summary = check_concepts(store, rep.proposed, args.lmm, concepts)
        print(f"checked {summary.labelled}: {summary.agreed} agree, {summary.labelled - summary.agreed} disagree "
              f"(reviewed first), failed {summary.failed}, ${summary.cost:.4f}")
    return 0
