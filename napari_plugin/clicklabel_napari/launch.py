"""``clicklabel gui``: open napari with the clicklabel widget docked on a folder, some images, or the samples."""

from __future__ import annotations

import shutil
from pathlib import Path

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


def project_for(paths: list[str], project: str | None):
    """The project to open: ``project`` (created if needed) holding ``paths``; a folder alone becomes one."""
    from clicklabel.images import list_images
    from clicklabel.store import Store

    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(list_images(p))
        elif p.is_file():
            files.append(p)
        else:
            raise ClickLabelError(f"not found: {p}")
    if not files:
        raise ClickLabelError("no images to open")
    root = files[0].parent
    store = Store(Path(project) if project else root / "project.clicklabel", root=None if project else root)
    for f in files:
        store.add_image_file(f.resolve())
    return store


def main(paths: list[str], project: str | None = None, engine: str = "vit_b", checkpoint: str | None = None,
         device: str = "auto", encoder: str = "auto") -> int:
    import napari

    import clicklabel_napari  # noqa: F401  (before any OpenGL context: see its __init__)

    from ._widget import ClickLabelWidget

    if not paths and not project:
        paths = [str(sample_folder())]
    store = project_for(paths, project) if paths else None
    viewer = napari.Viewer(title="clicklabel")
    widget = ClickLabelWidget(viewer, auto_download=True)
    widget.engine_box.value = engine
    widget.device_box.value = device
    widget.encoder_box.value = encoder
    if checkpoint:
        widget.checkpoint.value = checkpoint
    viewer.window.add_dock_widget(widget, name="clicklabel", area="right")
    if store is not None:
        widget._attach(store)
    elif project:
        widget.open_project(project)
    napari.run()
    return 0
