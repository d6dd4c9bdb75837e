"""``clicklabel gui`` (the ``clicklabel-gui`` program): napari with the clicklabel widget docked on a folder, some
images, a project, or the bundled samples."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from clicklabel.cli.common import EXIT_USER_ERROR, add_engine_args
from clicklabel.errors import ClickLabelError


def sample_folder() -> Path:
    """A writable copy of the bundled sample photos (the project file goes next to them)."""
    import platformdirs

    import clicklabel

    src = Path(clicklabel.__file__).parent / "data" / "samples"
    dst = Path(platformdirs.user_data_dir("clicklabel")) / "samples"
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.glob("*.jpg"):
        if not (dst / f.name).exists():
            shutil.copy(f, dst / f.name)
    return dst


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="clicklabel gui", description="Annotate in napari: click, accept, label.")
    p.add_argument("images", nargs="*", help="a folder, image files or a project (none: the bundled samples)")
    p.add_argument("--project", help="project file to open or create for the images")
    add_engine_args(p)
    p.add_argument("--cache", help="cache folder (e.g. one filled by `clicklabel precompute --cache` elsewhere)")
    return p


def engine_choice(engine: str, model: str | None) -> str | None:
    """The widget's engine setting for --engine/--model: a model name, grabcut, or None when neither was given
    (the widget's own default stands: on a CPU, the fastest model whose weights are here)."""
    if engine == "grabcut":
        return "grabcut"
    return model if engine in ("sam", "remote") else engine


def build(argv: list[str] | None = None, viewer=None):
    """The viewer and the docked widget for ``clicklabel gui`` arguments, the first image opening (no event loop
    run): with SAM's weights missing, GrabCut is used at once and the widget says how to get SAM."""
    args = build_parser().parse_args(argv)
    import napari

    if args.cache:  # every engine the GUI makes reads its cache folder from here
        os.environ["CLICKLABEL_CACHE"] = str(Path(args.cache).resolve())

    import clicklabel_napari  # noqa: F401  (before any OpenGL context: see its __init__)

    from ._engine import engine_choices
    from ._widget import ClickLabelWidget

    choice = engine_choice(args.engine, args.model)
    if choice is not None and choice not in engine_choices():
        raise ClickLabelError(f"unknown engine {choice!r}; use one of {', '.join(engine_choices())}")
    items = args.images or ([] if args.project else [str(sample_folder())])
    viewer = viewer or napari.Viewer(title="clicklabel")
    if (args.engine == "remote" or args.server) and not args.server:
        raise ClickLabelError("--engine remote needs --server URL (a `clicklabel serve` address)")
    widget = ClickLabelWidget(viewer)
    engine = widget.project.engine
    if choice is not None:
        engine.engine_box.value = choice
    engine.device_box.value = args.device
    engine.encoder_box.value = args.encoder
    if args.checkpoint:
        engine.checkpoint.value = args.checkpoint
    if args.server:
        engine.remote_box.value, engine.server.value = True, args.server
        if args.token_file:
            engine.token_file.value = args.token_file
    viewer.window.add_dock_widget(widget, name="clicklabel", area="right")
    widget.open_project(items or [args.project], project=args.project if items else None)
    return viewer, widget


def main(argv: list[str] | None = None) -> int:
    try:
        import napari
    except ImportError as exc:
        print(f"clicklabel: error: the GUI needs napari and Qt ({exc.name} is missing): "
              "pip install 'clicklabel[gui]'", file=sys.stderr)
        return EXIT_USER_ERROR
    try:
        build(argv)
    except ClickLabelError as exc:
        print(f"clicklabel: error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    napari.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
