"""The ``clicklabel`` command: a root parser and one module per command group. Each subcommand parses its
arguments and calls the core; errors the user can act on print one line and exit with status 2."""

from __future__ import annotations

import argparse
import sys

from ..errors import ClickLabelError
from .bench import add_bench_parser
from .common import EXIT_USER_ERROR
from .gui import add_gui_parser, cmd_gui
from .label import add_label_parser
from .project import add_project_parsers
from .segment import add_segment_parsers
from .weights import add_weights_parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clicklabel", description=__doc__.split(".")[0] + ".")
    sub = parser.add_subparsers(dest="command", required=True)
    add_segment_parsers(sub)
    add_weights_parser(sub)
    add_gui_parser(sub)
    add_project_parsers(sub)
    add_label_parser(sub)
    add_bench_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    if argv[:1] == ["gui"]:  # everything after `gui` belongs to the annotator's own parser (--help included)
        args = argparse.Namespace(func=cmd_gui, gui_args=argv[1:])
    else:
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
