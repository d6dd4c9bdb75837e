"""The ``clicklabel`` command: a root parser and one module per command group. Each subcommand parses its
arguments and calls the core; errors the user can act on print one line and exit with status 2."""

from __future__ import annotations

import argparse
import errno
import sys

from ..errors import ClickLabelError, ResourceError
from .bench import add_bench_parser
from .common import EXIT_USER_ERROR, Parser
from .gui import add_gui_parser, cmd_gui
from .label import add_label_parser
from .project import add_project_parsers
from .refine import add_refine_parser
from .review import add_review_parser
from .segment import add_segment_parsers
from .serve import add_serve_parser
from .track import add_track_parser
from .weights import add_weights_parser


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="clicklabel", description=__doc__.split(".")[0] + ".")
    sub = parser.add_subparsers(dest="command", required=True)
    add_segment_parsers(sub)
    add_weights_parser(sub)
    add_gui_parser(sub)
    add_project_parsers(sub)
    add_label_parser(sub)
    add_refine_parser(sub)
    add_review_parser(sub)
    add_bench_parser(sub)
    add_serve_parser(sub)
    add_track_parser(sub)
    return parser


COORDINATE_OPTIONS = ("--point", "--box")  # options whose value may start with a minus sign: -5,10


def glue_coordinates(argv: list[str]) -> list[str]:
    """``--point -5,10`` as ``--point=-5,10``: argparse takes a value starting with '-' that is not a plain number
    for an option, so a point left of the image failed with "expected one argument" instead of being checked."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        nxt = argv[i + 1] if i + 1 < len(argv) else ""
        if a in COORDINATE_OPTIONS and nxt[:1] == "-" and (nxt[1:2].isdigit() or nxt[1:2] == "."):
            out.append(f"{a}={nxt}")
            i += 2
            continue
        out.append(a)
        i += 1
    return out


EXIT_FAILED = 1  # the input was fine, the work could not be done (the disk, the database, the memory)


def main(argv: list[str] | None = None) -> int:
    import sqlite3
    import warnings

    from PIL import Image

    from ..files import describe_os_error

    # An image above clicklabel's pixel limit is refused in one line; Pillow's warning would add two more.
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    if argv[:1] == ["gui"]:  # everything after `gui` belongs to the annotator's own parser (--help included)
        args = argparse.Namespace(func=cmd_gui, gui_args=argv[1:])
    else:
        args = parser.parse_args(glue_coordinates(argv))
    try:
        return int(args.func(args) or 0)
    except ResourceError as exc:
        return _fail(str(exc), EXIT_FAILED)
    except ClickLabelError as exc:
        return _fail(str(exc), EXIT_USER_ERROR)
    except KeyboardInterrupt:
        print("clicklabel: interrupted; work already saved is kept", file=sys.stderr)
        return 130
    except OSError as exc:  # a disk, a folder or a file that failed under us (the input itself was checked)
        name = exc.filename or "a file"
        full = exc.errno in (errno.ENOSPC, errno.EROFS, errno.EDQUOT)
        return _fail(describe_os_error(exc, name) if full else f"{name}: {exc.strerror or exc}", EXIT_FAILED)
    except sqlite3.Error as exc:
        return _fail(f"the database failed: {exc}", EXIT_FAILED)
    except MemoryError:
        return _fail("not enough memory for this; try a smaller batch or image", EXIT_FAILED)


def _fail(message: str, code: int) -> int:
    print(f"clicklabel: error: {' '.join(message.split())}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
