"""The clicklabel dock widget: the lines at the top (status, progress with Stop, counter) and one panel per tab,
each owning its state and talking to the session and the layers through the hub (``_workbench.Workbench``):

- Annotate (``_annotate``; its canvas part ``_prompting``): clicks and boxes, accept, the image's objects
- Review (``_review``): SAM's proposals, accepted or rejected one by one
- Audit (``_audit``): box-only objects refined, flagged objects and the class audit's disagreements decided
- Track (``_track``): a sequence's frames, SAM 2.1 following an object through them, its tracks
- Labels (``_labelling``): the labelling model's settings and background labelling
- Project (``_project``, ``_engine``): the folder, the export, the engine
- Keys: what every key does

Which image is shown belongs to the navigator (``_images``). Nothing that can take more than a few tens of
milliseconds runs in the UI thread: reading and embedding images, loading the engine, answering prompts,
proposing, labelling and exporting run in workers, and the layers are updated in place."""

from __future__ import annotations

import anyio._backends._asyncio  # noqa: F401  (httpx's first request, in the labelling thread)
import cv2  # noqa: F401  (the labeller's crops)
import scipy.ndimage  # noqa: F401  (napari imports it on a Labels layer's first thumbnail: 0.3 s, so at load time)
import torch  # noqa: F401  (the engine is built in a worker: its libraries load here, not racing the viewer there)
from PIL import Image
from qtpy.QtWidgets import QLabel, QTabWidget, QVBoxLayout, QWidget

# Everything the workers use is imported here, in the main thread: imports running in several threads at once
# can deadlock (module import locks against torch's and the GIL), and an import in a worker holds the GIL long
# enough to freeze the viewer (0.3-0.9 s measured for the OpenAI SDK, OpenCV and anyio).
from clicklabel import coco as _coco  # noqa: F401
from clicklabel import label as _label  # noqa: F401
from clicklabel.label import client as _label_client
from clicklabel.label import run as _label_run  # noqa: F401
from clicklabel.segment import propose as _propose  # noqa: F401
from clicklabel.segment import sam as _sam  # noqa: F401
from clicklabel.segment.openmp import release_threads

from ._annotate import AnnotatePanel
from ._audit import AuditPanel
from ._controls import page, run
from ._images import Navigator
from ._labelling import LabelsPanel
from ._lean import quick_gil, warm_glyphs
from ._project import ProjectPanel
from ._review import ReviewPanel
from ._track import TrackPanel
from ._workbench import TaskBar, Workbench, build_header

Image.init()  # PIL's image plugins (the labeller encodes crops), loaded here rather than in a worker
_label_client.warm_up()  # the OpenAI SDK's lazily imported modules and the TLS settings, made once, here

KEYS_HELP = """<b>Click mode</b><br>
click: positive point &nbsp; right-click or Shift+click: negative point &nbsp; drag: box<br>
Enter: accept &nbsp; Esc: clear &nbsp; M: next of SAM's masks<br>
G: accept the box or polygon drawn on 'clicklabel manual'<br>
Brush, eraser or fill on 'clicklabel objects': changes that object's mask (Ctrl+Z undoes)<br>
<b>Review mode</b> (P proposes)<br>
A or Enter: accept &nbsp; X: reject &nbsp; S: skip &nbsp; click: correct the highlighted proposal<br>
Esc: leave the correction, then the review (P comes back to it)<br>
<b>Sequences</b> (Track tab)<br>
T: propagate the selected (or last accepted) object through the frames &nbsp; the slider: any frame<br>
<b>Everywhere</b><br>
N / B: next / previous image &nbsp; D: image done &nbsp; L: label pending objects<br>
Ctrl+Z / Ctrl+Shift+Z: undo / redo<br>
Keys reach clicklabel while the canvas has the focus and one of its layers (or the image) is selected."""


class ClickLabelWidget(QWidget):
    """Click or box an object, see its mask at once, accept, get the label, move on; or review SAM's proposals."""

    def __init__(self, napari_viewer, project: str | None = None, engine=None, labeler=None, auto_label: bool = True):
        super().__init__()
        self.setMinimumWidth(340)
        self.setMaximumWidth(520)
        self.viewer = napari_viewer
        self.status, self.progress, self.stop_btn, self.counter, busy = build_header(self)
        tasks = TaskBar(self.progress, self.stop_btn, self)
        self.bench = bench = Workbench(napari_viewer, self.status, tasks, self.counter, parent=self)
        bench.layers.prepare()  # napari's first layers (and pint's unit registry) now, not at the first image
        bench.engine = engine
        release_threads()  # an engine made by the caller in this (UI) thread left it an idle OpenMP team
        quick_gil()
        self.destroyed.connect(lambda *_: bench.shutdown())
        self.nav = Navigator(bench, self)
        self.annotate = AnnotatePanel(bench, self.nav)
        self.prompter = self.annotate.prompter
        self.review = ReviewPanel(bench, self.prompter)
        self.prompter.review = self.review
        self.audit = AuditPanel(bench, self.nav, self.prompter)
        self.labels = LabelsPanel(bench, self.prompter, self.annotate.go_to_object, labeler, auto_label)
        self.project = ProjectPanel(bench, self.nav, self.labels.load_settings)
        self.track = TrackPanel(bench, self.nav, self.annotate.table.selected_ids, self)
        self.nav.opened.connect(self._opened)
        self.stop_btn.changed.connect(lambda *_: run(bench, self.stop))
        self._glyphs = warm_glyphs(napari_viewer, self, lambda: self.prompter.answering)

        keys = QLabel(KEYS_HELP)
        keys.setWordWrap(True)
        self.tabs = QTabWidget()
        for title, part in (("Annotate", self.annotate), ("Review", self.review), ("Audit", self.audit),
                            ("Track", self.track), ("Labels", self.labels), ("Project", self.project)):
            self.tabs.addTab(part.page, title)
        self.tabs.addTab(page(keys), "Keys")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        for part in (self.status, busy, self.counter, self.tabs):
            layout.addWidget(part)
        layout.setStretch(3, 1)

        self._keyed: list = []  # layers whose own keymap carries clicklabel's keys
        self._bind_keys(napari_viewer)
        self._keep_keys()
        napari_viewer.mouse_drag_callbacks.append(self.prompter.on_mouse)
        if engine is None:
            self.project.engine.suggest()
        if project:
            self.open_project(project)

    # -- keys ----------------------------------------------------------------------------------------------------
    def key_actions(self) -> dict:
        """Each key's action, by the panel that owns it."""
        p, nav, review, annotate = self.prompter, self.nav, self.review, self.annotate
        return {"Enter": p.accept, "Escape": p.clear, "m": p.cycle, "g": p.accept_manual,
                "n": lambda: nav.go(+1), "b": lambda: nav.go(-1), "d": nav.image_done,
                "l": self.labels.label_pending, "p": review.propose, "a": lambda: review.decide(True),
                "x": lambda: review.decide(False), "s": review.skip, "t": self.track.propagate,
                "Control-z": annotate.undo,
                "Control-Shift-z": annotate.redo}

    def _bind_keys(self, target) -> None:
        """clicklabel's keys on the viewer, and on each of our layers (a layer's own keys come first in napari)."""
        for key, fn in self.key_actions().items():
            target.bind_key(key, lambda *_, fn=fn: run(self.bench, fn), overwrite=True)

    def _keep_keys(self) -> None:
        """Our layers (made with the widget, or again if the user removed one) carry our keys, report prompt edits
        made with napari's own tools, and (the objects layer) brush strokes."""
        layers = self.bench.layers
        for key in ("prompts", "box", "preview", "objects", "proposals", "boxes", "manual", "image"):
            layer = getattr(layers, key)
            if layer is not None and not any(layer is k for k in self._keyed):
                self._bind_keys(layer)
                self._keyed.append(layer)
                if key in ("prompts", "box"):
                    layer.events.data.connect(self.prompter.layer_prompt_changed)
                if key == "prompts":
                    layer.events.features.connect(self.prompter.layer_prompt_changed)
                if key == "objects":
                    self.annotate.watch_paint(layer)

    def _opened(self, op) -> None:
        self._keep_keys()
        self.review.show_waiting(op.waiting, op.proposal_crops, op.proposal_planes)

    def stop(self) -> None:
        """The bar's Stop: ends the newest job that can be stopped (proposing keeps what was found, refining and
        labelling what is done)."""
        if self.bench.tasks.stop() is None:
            self.say("Nothing is running.")

    # -- what other code calls -------------------------------------------------------------------------------------
    @property
    def session(self):
        return self.bench.session

    @property
    def layers(self):
        return self.bench.layers

    @property
    def engine(self):
        """The engine in use: the session's, or the one loaded for the next session."""
        return self.bench.current_engine

    @property
    def busy(self) -> bool:
        """Something is on its way: an image loading, an answer, proposing, refining, an engine loading, a redraw."""
        return (self.nav.loading is not None or self.prompter.answering or self.review.proposing
                or self.audit.refining or self.project.engine.loading or self.track.propagating
                or self.bench.drawing_pending)

    def say(self, text: str) -> None:
        self.bench.say(text)

    def open_project(self, target, project: str | None = None) -> None:
        """Open a project, a folder (made a project), or image files (``target`` a list)."""
        self.project.open(target, project)

    def open_folder(self, folder: str) -> None:
        """A folder becomes a project (``project.clicklabel`` inside it) holding its images."""
        self.project.open(folder)

    def export(self, path: str):
        return self.project.export(path)
