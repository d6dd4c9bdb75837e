"""``clicklabel weights list | download | verify``: the official checkpoints on this machine."""

from __future__ import annotations

from ..errors import ClickLabelError


def cmd_weights(args) -> int:
    from .. import weights

    if args.action == "list":
        for name, ck in weights.REGISTRY.items():
            path = weights.checkpoint_path(name)
            size = path.stat().st_size if path.is_file() else None
            state = "missing" if size is None else "present" if size == ck.size else \
                f"incomplete ({size:,} of {ck.size:,} bytes: download again)"
            print(f"{name}\t{ck.size / 1e6:,.0f} MB\t{state}\t{path}\t{ck.url}")
        return 0
    if args.action == "download":
        if not args.name:
            raise ClickLabelError(f"name the model to download: {', '.join(weights.REGISTRY)}")
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


def add_weights_parser(sub) -> None:
    p = sub.add_parser("weights", help="list, download or verify SAM checkpoints")
    p.add_argument("action", choices=["list", "download", "verify"])
    p.add_argument("name", nargs="?")
    p.set_defaults(func=cmd_weights)
