"""``clicklabel gui ...``: the napari annotator. It lives in the plugin, which installs the ``clicklabel-gui``
program; the core never imports the plugin, so this command becomes that program, with the same arguments.

On POSIX the command replaces itself with the program (``exec``): one process, so a signal sent to
``clicklabel gui`` (SIGTERM, SIGKILL, a closed terminal) reaches the window itself instead of leaving it running
without its parent. Where exec is impossible (Windows, or exec refused), the program runs as a child process that
the command waits for."""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

from ..errors import ClickLabelError

GUI_PROGRAM = "clicklabel-gui"


def gui_program() -> str | None:
    """The ``clicklabel-gui`` program beside this Python (a virtual environment's bin/), else on PATH."""
    here = str(Path(sys.executable).parent)
    return shutil.which(GUI_PROGRAM, path=os.pathsep.join([here, os.environ.get("PATH", "")]))


def cmd_gui(args) -> int:
    exe = gui_program()
    if exe is None:
        raise ClickLabelError(f"the annotator is not installed ({GUI_PROGRAM} not found): "
                              "pip install 'clicklabel[gui]'")
    return become([exe, *args.gui_args])


def become(argv: list[str]) -> int:
    """Replace this process with ``argv`` (POSIX); else, or if exec is refused, run it as a child and return its
    exit status."""
    if os.name == "posix":
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            os.execv(argv[0], argv)  # returns only by raising
        except OSError:
            pass  # e.g. a program exec refuses: run it as a child (its own error, if any, is then reported)
    try:
        return subprocess.call(argv)
    except KeyboardInterrupt:
        return 130


def add_gui_parser(sub) -> None:
    p = sub.add_parser("gui", add_help=False, help="annotate in napari (no arguments: the bundled sample photos; "
                                                   "`clicklabel gui --help` for its options)")
    p.add_argument("gui_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_gui)
