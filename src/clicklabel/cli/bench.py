"""``clicklabel bench ...``: every benchmark measures its baseline in the same run and prints a table."""

from __future__ import annotations

from pathlib import Path

from ..errors import ClickLabelError
from .common import MODEL_HELP, count, deprecated, finite_float, positive_int, say_recognised


def cmd_bench(args) -> int:
    if args.what == "labels" and args.model and not args.lmm and args.few_shot is None and not args.knn:
        deprecated("`bench labels --model`", "--lmm")
        args.lmm, args.model = args.model, None
    args.model = args.model or "vit_b"
    if args.what == "latency" and args.model == "sam3":  # SAM 3: the concept steps too (bench.sam3)
        from ..bench.sam3 import bench_sam3_latency

        bench_sam3_latency(args.checkpoint, args.random_weights, _bench_device(args.device), args.repeats or 3)
        return 0
    if args.what == "latency":
        from ..bench.latency import bench_latency

        bench_latency(args.model, args.checkpoint, args.random_weights, _bench_device(args.device),
                      args.repeats or 20, pairs=args.pairs,
                      precision=None if args.precision == "auto" else args.precision)
        return 0
    if args.what == "models":
        from ..bench.models import bench_models

        bench_models(args.models.split(",") if args.models else None, _bench_device(args.device), args.repeats or 3,
                     precision=None if args.precision == "auto" else args.precision)
        return 0
    if args.what == "encoder":
        from ..bench.encoder import bench_encoder

        bench_encoder(args.model, args.checkpoint, args.random_weights, _bench_device(args.device),
                      _int_list(args.batch), args.repeats or 10, not args.no_compile, args.precompute_images,
                      args.data, None if args.precision == "auto" else args.precision)
        return 0
    if args.what == "propose":
        from ..bench.propose import bench_propose

        bench_propose(args.model, args.checkpoint, args.random_weights, _bench_device(args.device),
                            args.grid, args.pred_iou_thresh, args.stability_thresh, repeats=args.repeats or 1)
        return 0
    if args.what == "refine":
        from ..bench.refine import bench_refine
        from ..segment.models import family_of

        if args.model in _registered() and family_of(args.model) != "sam":
            raise ClickLabelError(f"bench refine compares against SAM's SamPredictor: give a SAM v1 model "
                                  f"(vit_b, vit_l, vit_h), not {args.model}")

        bench_refine(args.model, args.checkpoint, args.random_weights, _bench_device(args.device), boxes=args.boxes,
                     repeats=args.repeats or 3)
        return 0
    if args.what == "remote":
        from ..bench.remote import bench_remote

        bench_remote(args.model, args.checkpoint, args.random_weights, _bench_device(args.device),
                     images=args.precompute_images or 4, repeats=args.repeats or 30, data=args.data)
        return 0
    if args.what == "track":
        from ..bench.track import bench_track

        w, _, h = (args.size or "1280x720").partition("x")
        if not (w.isdigit() and h.isdigit() and int(w) > 0 and int(h) > 0):
            raise ClickLabelError(f"--size {args.size!r} must look like 1280x720")
        bench_track(args.model if args.model != "vit_b" else "sam2.1_hiera_tiny", args.checkpoint,
                    args.random_weights, _bench_device(args.device), frames=args.frames, size=(int(w), int(h)),
                    repeats=args.repeats or 2, rss_frames=args.rss_frames)
        return 0
    if args.what in ("noc", "box-jitter"):
        return bench_interactive(args)
    if args.what == "concepts":
        return bench_concepts_cli(args)
    if args.what == "labels":
        from ..evaluate.labels import bench_labels
        from ..label import CropSettings, LabelCache, Labeler, LabelerConfig, read_vocabulary

        if not args.data:
            raise ClickLabelError("bench labels needs --data DIR (e.g. ../shared/data/pets)")
        cfg = LabelerConfig(lmm=args.lmm or "gpt-4o-mini", vocabulary=read_vocabulary(args.vocab, None) or None,
                            detail=args.detail, concurrency=args.concurrency, crop=CropSettings(mode=args.crop_mode))
        labeler = Labeler(cfg, None if args.no_cache else LabelCache())
        if args.few_shot is not None or args.knn:
            from ..evaluate.label_learning import bench_label_learning

            bench_label_learning(args.data, labeler, args.few_shot or [], args.knn, args.model, args.checkpoint,
                                 args.random_weights, _bench_device(args.device), args.limit)
            return 0
        bench_labels(args.data, labeler, args.limit)
        return 0
    raise ClickLabelError(f"unknown benchmark {args.what!r}")


def bench_concepts_cli(args) -> int:
    """``bench concepts``: LMM requests per accepted object, concept proposals vs class-blind propose + label."""
    from ..evaluate.concepts import bench_concepts
    from ..label import CropSettings, LabelCache, Labeler, LabelerConfig, read_vocabulary
    from ..segment.propose import ProposeSettings
    from .concepts import _engine

    if not args.data:
        raise ClickLabelError("bench concepts needs --data DIR (a COCO file and its images, e.g. ../shared/data/pets)")
    args.engine = "sam"
    concepts = read_vocabulary(args.vocab, None) or None
    cfg = LabelerConfig(lmm=args.lmm or "gpt-4o-mini", vocabulary=concepts, detail=args.detail,
                        concurrency=args.concurrency, crop=CropSettings(mode=args.crop_mode))
    labeler = Labeler(cfg, None if args.no_cache else LabelCache())
    loose = args.random_weights or args.accept == "all"  # random weights: any candidate is a proposal
    settings = ProposeSettings(grid=args.grid, pred_iou_thresh=0.0 if loose else 0.88,
                               stability_thresh=0.0 if loose else 0.95)
    args.server = args.token_file = None
    args.encoder = getattr(args, "encoder", "auto")
    bench_concepts(args.data, _engine(args), labeler, concepts, args.limit, args.accept, args.check, settings,
                   threshold=0.01 if loose else 0.5)
    return 0


def bench_interactive(args) -> int:
    """``bench noc`` and ``bench box-jitter``: the simulated annotator on a data set."""
    from tqdm import tqdm

    from ..bench.harness import print_table
    from ..evaluate.noc import read_dataset, run_box_jitter, run_noc, write_jitter_outputs, write_noc_outputs
    from ..segment import make_engine

    if not args.data:
        raise ClickLabelError(f"bench {args.what} needs --data DIR (e.g. ../shared/data/grabcut)")
    items = list(read_dataset(args.data, args.limit))
    engine = make_engine(args.engine, args.model, args.checkpoint, _bench_device(args.device))
    if args.model == "auto":
        say_recognised(engine, args.checkpoint)
    name = f"{engine.name} {engine.model}" if engine.model != engine.name else engine.name
    out = Path(args.out or f"bench_out/{args.what}_{engine.name}_{Path(args.data).name}")
    bar = tqdm(total=len(items), unit="image", desc=args.what, disable=None)
    if args.what == "noc":
        res = run_noc(engine, items, args.max_clicks, box_first=args.box, progress=lambda _: bar.update())
        bar.close()
        summ = write_noc_outputs(res, out, f"{name} on {Path(args.data).name}")
        print(f"{'box + clicks' if args.box else 'clicks'}, {name}, {summ['items']} objects, max {args.max_clicks}")
        print_table([[f"{summ['NoC@85']:.2f}", f"{summ['NoC@90']:.2f}", f"{summ['mIoU@1']:.4f}",
                      f"{summ['mIoU@3']:.4f}", f"{summ['mIoU@5']:.4f}", f"{100 * summ['fail@90']:.1f}%"]],
                    ["NoC@85", "NoC@90", "mIoU@1", "mIoU@3", "mIoU@5", ">20 clicks for 90%"])
    else:
        res = run_box_jitter(engine, items)
        bar.close()
        print_table(write_jitter_outputs(res, out, f"{name} on {Path(args.data).name}"),
                    ["jitter (share of box size)", "boxes", "mean IoU", "median IoU"])
    print(f"outputs in {out}")
    return 0


def _int_list(text: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ClickLabelError(f"expected numbers separated by commas, got {text!r}") from None
    if not vals or min(vals) < 1:
        raise ClickLabelError(f"expected positive numbers separated by commas, got {text!r}")
    return vals


def _count_list(text: str) -> list[int]:
    """argparse type: whole numbers >= 0, comma separated."""
    import argparse

    try:
        vals = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        vals = []
    if not vals or min(vals) < 0 or max(vals) > 64:
        raise argparse.ArgumentTypeError(f"{text!r}: numbers of examples from 0 to 64, comma separated (e.g. 0,4)")
    return vals


def _registered() -> set[str]:
    from ..weights import REGISTRY

    return set(REGISTRY)


def _bench_device(device: str) -> str:
    from ..segment.sam import resolve_device

    return resolve_device(device)


def add_bench_parser(sub) -> None:
    p = sub.add_parser("bench", help="benchmarks against the stock baseline, measured in the same run")
    p.add_argument("what", choices=["latency", "models", "encoder", "propose", "refine", "labels", "noc",
                                    "box-jitter", "remote", "concepts", "track"])
    p.add_argument("--models", help="models: which ones, comma separated (default: every registered model)")
    p.add_argument("--engine", default="sam", help="noc, box-jitter: sam, grabcut or a model name")
    p.add_argument("--max-clicks", type=positive_int, default=20, help="noc")
    p.add_argument("--box", action="store_true", help="noc: the GT box first, then corrective clicks")
    p.add_argument("--out", help="noc, box-jitter: output folder (CSV, PNG, JSON)")
    p.add_argument("--grid", type=positive_int, default=16, help="propose: points per side")
    p.add_argument("--pred-iou-thresh", type=finite_float, help="propose: default 0.88 (0 with random weights)")
    p.add_argument("--stability-thresh", type=finite_float, help="propose: default 0.95 (0 with random weights)")
    p.add_argument("--model", default=None, help=MODEL_HELP + " (default vit_b)")
    p.add_argument("--lmm", help="labels: the multimodal model (default gpt-4o-mini)")
    p.add_argument("--data", help="labels, noc: data set folder; encoder: source images for --precompute-images")
    p.add_argument("--limit", type=positive_int, help="labels: at most this many objects")
    p.add_argument("--vocab", help="labels: allowed labels, comma separated")
    p.add_argument("--detail", default="low", choices=["low", "high", "auto"])
    p.add_argument("--crop-mode", default="mask", choices=["mask", "box", "both"])
    p.add_argument("--concurrency", type=positive_int, default=8)
    p.add_argument("--no-cache", action="store_true", help="labels: ask the model even for crops seen before")
    p.add_argument("--few-shot", type=_count_list, metavar="K,K",
                   help="labels: half the ground truth as confirmed labels, the other half labelled with each number "
                        "of nearest examples (e.g. 0,4,16), descriptors from --model")
    p.add_argument("--knn", action="store_true", help="labels: add the neighbours' vote alone (no model) as a row")
    p.add_argument("--accept", default="truth", choices=["truth", "all"],
                   help="concepts: the simulated annotator accepts proposals matching the ground truth, or all")
    p.add_argument("--check", action="store_true", help="concepts: add the class audit of each concept proposal")
    p.add_argument("--checkpoint")
    p.add_argument("--random-weights", action="store_true", help="random weights (timing only)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=positive_int, default=None,
                   help="latency: 20, encoder: 10, propose: 1, refine: 3, models: 3, remote: 30 fetches")
    p.add_argument("--boxes", type=positive_int, default=20, help="refine: boxes on the 1024x768 image")
    p.add_argument("--batch", default="1,8", help="encoder: batch sizes, comma separated")
    p.add_argument("--no-compile", action="store_true", help="encoder: leave out the torch.compile rows")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "openvino"],
                   help="latency, models: our encoder's (auto: bf16 where the hardware computes it); encoder: the "
                        "reduced precision to try (auto: bf16 on CUDA, fp32 on a CPU)")
    p.add_argument("--pairs", type=positive_int, help="latency: interleaved encoder pairs (default 3 on a CPU, 10 on "
                                                      "a GPU)")
    p.add_argument("--precompute-images", type=count, default=0,
                   help="encoder: also time precompute of this many distinct JPEGs made from --data's images; "
                        "remote: distinct images per throughput row (default 4)")
    p.add_argument("--frames", type=positive_int, default=8, help="track: frames of the timed clip")
    p.add_argument("--size", help="track: the clip's WIDTHxHEIGHT (default 1280x720)")
    p.add_argument("--rss-frames", type=count, default=300,
                   help="track: frames of the long clip whose peak RSS is measured (0: skip)")
    p.set_defaults(func=cmd_bench)
