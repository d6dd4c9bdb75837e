"""The Project panel: the folder or project to open, the COCO export, and the engine (``_engine.EngineChooser``)."""

from __future__ import annotations

from magicgui.widgets import CheckBox, Container, FileEdit, PushButton

from ._controls import buttons, page, row
from ._engine import EngineChooser
from ._workers import quiet_worker


class ProjectPanel:
    """Owns the folder field, the export and the engine controls; ``opened_project()`` (the widget's) runs once a
    project is open."""

    def __init__(self, bench, navigator, opened_project):
        self.bench, self.nav, self.opened_project = bench, navigator, opened_project
        self.folder = FileEdit(label="images", mode="d", value="")
        self.open_btn = PushButton(text="Open folder")
        self.polygons = CheckBox(text="polygons (else RLE)", value=False)
        self.export_btn = PushButton(text="Export COCO...")
        self.engine = EngineChooser(bench, self.use_engine)
        self.page = page(Container(widgets=[self.folder]), row(self.open_btn), row(self.polygons, self.export_btn),
                         *self.engine.parts)
        buttons(bench, [(self.open_btn, lambda: self.open(str(self.folder.value))),
                        (self.export_btn, self.export_dialog)])

    def say(self, text: str) -> None:
        self.bench.say(text)

    def open(self, target, project: str | None = None) -> None:
        """Open a project, a folder (made a project), or image files (``target`` a list); without an engine yet,
        the engine is loaded first (GrabCut meanwhile when SAM's weights are missing)."""
        def go():
            if self.nav.open(target, project):
                self.opened_project()

        if self.bench.engine is None and self.bench.session is None:
            self.engine.load(fallback=True, then=go)
        else:
            go()

    def use_engine(self, engine) -> None:
        """Use ``engine`` from now on: in the open session too (its image is embedded again), without reopening."""
        self.bench.engine = engine
        s = self.bench.session
        if s is not None:
            s.set_engine(engine)
            if s.index >= 0:
                self.nav.show_image(s.index)

    # -- export ----------------------------------------------------------------------------------------------------
    def export_dialog(self) -> None:
        from qtpy.QtWidgets import QFileDialog

        if self.bench.session is None:
            self.say("Open a project first: the export writes the whole project.")
            return
        start = str(self.bench.session.store.path.with_suffix(".coco.json"))
        path, _ = QFileDialog.getSaveFileName(None, "Export COCO instances", start, "COCO JSON (*.json)")
        if path:
            self.export(path)

    def export(self, path: str):
        """Write the whole project as COCO (the same file as ``clicklabel export``) in a worker; returns it."""
        s = self.bench.session
        if s is None:
            self.say("Open a project first: the export writes the whole project.")
            return None
        worker = quiet_worker(s.export, path, bool(self.polygons.value))
        worker.returned.connect(self.bench.guard(lambda rep: self._exported(rep, path)))
        worker.errored.connect(self.bench.guard(lambda exc: self._export_failed(exc)))
        self.bench.tasks.start("exporting", "exporting")
        self.say(f"Exporting to {path} ...")
        worker.start()
        return worker

    def _exported(self, rep, path: str) -> None:
        self.bench.tasks.finish("exporting")
        self.say(f"Exported {rep.annotations} object(s) of {rep.images} image(s) to {path}" +
                 (f" ({rep.unlabelled} without a label yet)" if rep.unlabelled else "") + ".")

    def _export_failed(self, exc) -> None:
        self.bench.tasks.finish("exporting")
        self.say(f"Export failed: {exc}")
