"""``clicklabel gui ...``: the napari annotator. It lives in the plugin, which installs the ``clicklabel-gui``
program; the core never imports the plugin, so this command runs that program with the same arguments."""

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
    try:
        return subprocess.call([exe, *args.gui_args])
    except KeyboardInterrupt:
        return 130


def add_gui_parser(sub) -> None:
    p = sub.add_parser("gui", add_help=False, help="annotate in napari (no arguments: the bundled sample photos; "
                                                   "`clicklabel gui --help` for its options)")
    p.add_argument("gui_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_gui)
