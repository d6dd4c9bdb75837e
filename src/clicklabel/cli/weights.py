"""``clicklabel weights list | download | verify``: the official checkpoints of every family on this machine."""

from __future__ import annotations

from ..errors import ClickLabelError


def _state(name: str, ck) -> str:
    from .. import weights

    path = weights.checkpoint_path(name)
    if ck.gated:
        from ..weights_hub import state

        return state(ck, path)
    size = path.stat().st_size if path.is_file() else None
    if size is None:
        return "missing"
    return "present" if size == ck.size else f"incomplete ({size:,} of {ck.size:,} bytes: download again)"


def cmd_weights(args) -> int:
    from .. import weights
    from ..bench.harness import print_table
    from ..segment.models import FAMILIES, installed

    if args.action == "list":
        rows = []
        for name, ck in weights.REGISTRY.items():
            fam = FAMILIES[ck.family]
            package = "" if installed(ck.family) else f", needs [{fam.extra}]"
            size = f"{'~' if ck.gated else ''}{ck.size / 1e6:,.0f} MB"
            pin = "huggingface_hub" if ck.gated else ck.pin
            rows.append([name, fam.label + package, size, "yes" if ck.pinned else "no", pin, _state(name, ck),
                         ck.licence, "gated: HF_TOKEN" if ck.gated else "open", ck.url])
        print_table(rows, ["model", "family", "size", "hash-pinned", "verified by", "here", "licence", "access",
                           "URL"])
        print(f"weights folder: {weights.weights_dir()}")
        return 0
    if args.action == "download":
        if not args.name:
            raise ClickLabelError(f"name the model to download: {', '.join(weights.REGISTRY)}")
        print(weights.download(args.name))
        return 0
    names = [args.name] if args.name else [n for n in weights.REGISTRY if weights.checkpoint_path(n).exists()]
    if not names:
        print(f"no checkpoints in {weights.weights_dir()}")
        return 0
    bad = 0
    for n in names:
        ok, line = weights.verify(n)
        print(line)
        bad += not ok
    return 1 if bad else 0


def add_weights_parser(sub) -> None:
    p = sub.add_parser("weights", help="list, download or verify the official checkpoints (every family)")
    p.add_argument("action", choices=["list", "download", "verify"])
    p.add_argument("name", nargs="?")
    p.set_defaults(func=cmd_weights)
