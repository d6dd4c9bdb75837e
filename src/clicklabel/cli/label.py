"""``clicklabel label``: name each object with a multimodal model. The settings (model, vocabulary, prompt, ...)
come from the project and are saved back, so the widget and later runs use the same ones."""

from __future__ import annotations

from pathlib import Path

from ..errors import ClickLabelError
from .common import add_ray_args, count, deprecated, positive_float, positive_int, share


def cmd_label(args) -> int:
    from ..label import LabelCache, Labeler, read_vocabulary
    from ..label.prices import load_prices
    from ..project import load_label_settings, open_project, save_label_settings

    if args.model:
        deprecated("`clicklabel label --model`", "--lmm")
    store = open_project(args.project)
    template = None
    if args.prompt_template:
        try:
            template = Path(args.prompt_template).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ClickLabelError(f"cannot read the prompt template {args.prompt_template}: {exc}") from None
    settings = load_label_settings(store).updated(
        lmm=args.lmm or args.model, vocabulary=read_vocabulary(args.vocab, args.vocab_file) or None,
        template=template, detail=args.detail, concurrency=args.concurrency, crop_mode=args.crop_mode,
        few_shot=args.few_shot)
    save_label_settings(store, settings)
    config = settings.labeler_config(timeout=args.timeout, knn_only_above=args.knn_only_above,
                                     max_retries=args.retries)
    if args.check:
        config.few_shot, config.knn_only_above = 0, None  # the audit asks the model cold
    if args.check and not (args.vocab or args.vocab_file):  # the audit answers in the project's own categories
        config.vocabulary = store.labels_in_use() or None
    if args.ray and not args.dry_run:
        return label_on_ray(args, store, config, settings)
    labeler = Labeler(config, LabelCache(), load_prices(args.prices))
    return run_label(args, store, labeler, settings)


def label_on_ray(args, store, config, settings) -> int:
    """``label --ray``: the requests go out from Ray actors; leases, the cache and the project stay here."""
    from ..cluster import ray_session
    from ..cluster.labelling import RayLabeler
    from ..label import LabelCache
    from ..label.prices import load_prices

    with ray_session(args.ray) as ray:
        labeler = RayLabeler(ray, config, LabelCache(), load_prices(args.prices), workers=args.ray_workers or 2)
        try:
            return run_label(args, store, labeler, settings)
        finally:
            labeler.shutdown()


def run_label(args, store, labeler, settings) -> int:
    """Estimate or run the labelling with ``labeler`` and print what it did."""
    from tqdm import tqdm

    from ..label import estimate, label_objects, objects_to_label
    from ..label.prices import SOURCE

    config = labeler.config
    ids = store.objects_to_check(recheck=args.all) if args.check else objects_to_label(store, relabel_all=args.all)
    est = estimate(store, ids, labeler)
    lmm = settings.lmm
    price_note = f"prices: {SOURCE}" if est["priced"] else f"no price known for {lmm}: cost shown as 0"
    if args.dry_run:
        shots = f" with {est['examples_per_request']} example image(s) each" if est["examples_per_request"] else ""
        print(f"{est['requests']} requests to {lmm}{shots}, about {est['prompt_tokens']:,} prompt + "
              f"{est['completion_tokens']:,} completion tokens, estimated ${est['cost']:.4f} "
              f"(${est['cost_per_object']:.6f} per object, detail {settings.detail}); {price_note}")
        return 0
    if not ids:
        print("nothing to check: every object with a label was checked (use --all to check again)" if args.check
              else "nothing to label: every object is labelled (use --all to relabel)")
        return 0
    busy = store.leased_elsewhere(ids)
    if busy == len(ids):
        print(f"nothing to send: another labelling run holds all {busy} objects; run again when it is done")
        return 0
    if args.all and not args.check:
        store.mark_pending(ids)
    bar = tqdm(total=len(ids), unit="obj", desc="checking" if args.check else "labelling", disable=None)
    try:
        summary = label_objects(store, ids, labeler, progress=lambda done, total: bar.update(done - bar.n),
                                check=args.check)
    finally:
        bar.close()
    n = summary.done or 1
    print(f"{'checked' if args.check else 'labelled'} {summary.labelled}, failed {summary.failed} "
          f"({summary.cached} from the cache); "
          f"{summary.prompt_tokens:,} prompt + {summary.completion_tokens:,} completion tokens, "
          f"${summary.cost:.4f} (${summary.cost / n:.6f} per object); {price_note}")
    usage = store.usage()
    print(f"project total: {usage['prompt_tokens']:,} prompt + {usage['completion_tokens']:,} completion tokens, "
          f"${usage['cost']:.4f}")
    if summary.knn:
        print(f"{summary.knn} labelled by their neighbours' vote without asking the model (about "
              f"${summary.saved:.4f} saved)")
    if config.few_shot and summary.without_examples:
        print(f"{summary.without_examples} asked without examples (no descriptor: accepted with GrabCut or "
              "imported, or nothing confirmed yet)")
    if args.check:
        vocab = f"one of {len(config.vocabulary)} labels" if config.vocabulary else "any label"
        print(f"class audit ({lmm} answering {vocab}): {summary.agreed} agree, {summary.disagreed} disagree; "
              f"{len(store.disagreements())} disagreements in the project wait for a decision (`clicklabel report` "
              "lists them with crops; the widget filters to them)")
    if summary.skipped:
        print(f"{summary.skipped} objects skipped: another labelling run has them, or they changed meanwhile")
    for oid, err in list(summary.errors.items())[:10]:
        print(f"object {oid}: {err}")
    if summary.failed:
        print(f"run `clicklabel label{' --check' if args.check else ''}` again to retry the failed ones")
    return 0 if not summary.failed else 1


def add_label_parser(sub) -> None:
    p = sub.add_parser("label", help="name each object with a multimodal model (OpenAI-compatible API)")
    p.add_argument("project")
    p.add_argument("--lmm", help="the multimodal model (default: the project's, else gpt-4o-mini)")
    p.add_argument("--model", help="deprecated: use --lmm")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--vocab", help="allowed labels, comma separated (saved in the project)")
    g.add_argument("--vocab-file", help="allowed labels, one per line (saved in the project)")
    p.add_argument("--concurrency", type=positive_int, help="requests in flight (default 8)")
    p.add_argument("--detail", choices=["low", "high", "auto"], help="image detail (default low)")
    p.add_argument("--crop-mode", choices=["mask", "box", "both"], help="what the crop shows (default mask)")
    p.add_argument("--prompt-template", help="file with the user prompt ({vocabulary} is filled in)")
    p.add_argument("--timeout", type=positive_float, default=60.0, help="seconds per request")
    p.add_argument("--retries", type=count, default=4, help="tries again after a timeout, a refused connection, a "
                                                            "429 or a 5xx, with growing waits (default 4)")
    p.add_argument("--prices", help="JSON price table to use instead of the built-in one")
    p.add_argument("--all", action="store_true", help="relabel every object (old labels stay in the history); "
                                                      "with --check, check every labelled object again")
    p.add_argument("--check", action="store_true",
                   help="class audit: objects that have a label get the model's too, and whether they agree is "
                        "recorded; no label changes (the vocabulary defaults to the project's labels)")
    p.add_argument("--few-shot", type=count, metavar="K",
                   help="send the K most similar objects whose label a person gave or confirmed, with their labels, "
                        "beside each crop (saved in the project; 0: none)")
    p.add_argument("--knn-only-above", type=share, metavar="P",
                   help="label from the 5 nearest confirmed objects alone, without the model, when at least this "
                        "share of them agree (1: unanimous)")
    p.add_argument("--dry-run", action="store_true", help="count requests and estimate the cost; send nothing")
    add_ray_args(p)
    p.set_defaults(func=cmd_label)
