"""Opening projects and moving between images: the navigator, which owns which image is shown and which is loading.

A new image is shown in two steps, each prepared in a worker: first its pixels, its objects drawn into a label
image and its waiting proposals (the picture is on screen within a second, even when its embedding will take
minutes on a CPU), then its embedding; prompts wait for the second step (the status line says so). The UI thread
only hands data to the layers, which are updated in place. The next image's embedding is computed ahead while the
annotator works."""

from __future__ import annotations

import functools
import gc
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from qtpy.QtCore import QObject, QTimer, Signal

from clicklabel.annotate import AnnotationSession
from clicklabel.errors import ClickLabelError
from clicklabel.large_images import needs_pyramid, pyramid

from ._io import PROJECT_KEY
from ._paint import record_crop
from ._proposal_layer import waiting_view
from ._workers import quiet_worker

_threads = {"busy": 0, "full": None}
_threads_lock = threading.Lock()
SLOW_MS = 150  # a load longer than this shows the bar
LOADING = "Wait a moment: the image is still loading (its embedding may be computing, see the bar)."


def _leaving_a_core(fn, *args):
    """Run ``fn`` with PyTorch on all cores but one: the next image's embedding, computed ahead while the annotator
    clicks, leaves the decoder and the viewer a core (PyTorch is not imported here for an engine without it)."""
    torch = sys.modules.get("torch")
    if torch is None:
        return fn(*args)

    with _threads_lock:
        if _threads["busy"] == 0:
            _threads["full"] = torch.get_num_threads()
            torch.set_num_threads(max(1, _threads["full"] - 1))
        _threads["busy"] += 1
    try:
        return fn(*args)
    finally:
        with _threads_lock:
            _threads["busy"] -= 1
            if _threads["busy"] == 0:
                torch.set_num_threads(_threads["full"])


@functools.cache
def _freeze_startup_objects() -> None:
    """Once, when the first image is shown: move every object made so far (napari, Qt, torch, the model) out of
    the garbage collector's reach. A full collection walked them all in the UI thread and froze the viewer for
    0.6 s at a random click; afterwards it walks only what was made since (``gc.freeze``). Only the young
    generations are collected first (1 ms): a full collection here froze the viewer for 0.35 s as the first image
    appeared, to free about 100 kB of start-up cycles, which now stay."""
    gc.collect(1)
    gc.freeze()


@dataclass
class Opened:
    """An image read in a worker, ready to hand to the layers and the panels."""

    index: int
    image: np.ndarray
    objects: list
    labels: np.ndarray | None  # the objects drawn (value = id); None for a large image (``_viewport`` paints them)
    crops: dict  # object id -> (RLE counts, crop_of(mask))
    waiting: list = field(default_factory=list)  # proposals waiting for a decision
    proposal_crops: dict = field(default_factory=dict)
    proposal_planes: tuple | None = None  # what the proposals layer is drawn from (``_review.waiting_view``)
    levels: list | None = None  # a large image's pyramid (``large_images.pyramid``), largest first


def _read(session: AnnotationSession, index: int) -> Opened:
    """Worker thread: everything the picture of image ``index`` needs (pixels, its objects drawn into a label image,
    its waiting proposals), so that showing it is only handing data to the layers. A large image comes with its
    pyramid and no label image (its objects are painted where the camera looks)."""
    image = session.load(index)
    big = needs_pyramid(image.shape)
    objects = session.objects(index)
    labels = None if big else np.zeros(image.shape[:2], np.int32)
    crops = {}
    for ob in objects:
        crop = record_crop(ob)
        crops[ob.id] = (ob.rle["counts"], crop)
        if crop is not None and labels is not None:
            (r, c), m = crop
            labels[r : r + m.shape[0], c : c + m.shape[1]][m] = ob.id
    waiting = session.proposals(index)
    proposal_crops, drawn = waiting_view(waiting, image.shape[:2])
    return Opened(index, image, objects, labels, crops, waiting, proposal_crops, drawn, pyramid(image) if big else None)


def _embed(session: AnnotationSession, image: np.ndarray) -> None:
    """Worker thread, on all cores (the annotator waits for this image: on 2 cores a vit_b embedding took 36 s
    leaving one core and 17 s on both, with the viewer's longest pause 34 ms and 72 ms), then the image's
    descriptor from it."""
    session.embed(image)
    session.describe()


class Navigator(QObject):
    """Which image is shown: opening projects, N / B, D; emits ``opened`` with the picture's data (the panels draw
    their part) and the hub's ``shown`` once the image can be prompted."""

    opened = Signal(object)  # an Opened: the new image is on the layers, its embedding on its way

    def __init__(self, bench, parent=None):
        super().__init__(parent)
        self.bench = bench
        self.loading: int | None = None  # the image being read or embedded
        self._wanted: int | None = None  # N / B pressed again while loading: the image to show next

    @property
    def session(self) -> AnnotationSession | None:
        return self.bench.session

    def say(self, text: str) -> None:
        self.bench.say(text)

    # -- projects ----------------------------------------------------------------------------------------------
    def open(self, target, project: str | None = None) -> bool:
        """Open a project, a folder (made a project), or image files (``target`` a list) into a new session with
        the engine loaded (the caller makes sure there is one)."""
        items = list(target) if isinstance(target, (list, tuple)) else [target]
        if self.loading is not None:
            self.say("Wait a moment: an image is still loading; open the project once it is shown.")
            return False
        try:
            session = AnnotationSession.open(items, self.bench.engine, project)
        except ClickLabelError as exc:
            self.say(str(exc))
            return False
        self.bench.session = session
        if not session.images:
            self.say("The project has no images: open a folder of images in the Project tab.")
            return True
        self.show_image(0)
        return True

    # -- moving between images -------------------------------------------------------------------------------------
    def go(self, step: int) -> None:
        """N / B: the next / previous image (its embedding was computed ahead while you worked)."""
        s = self.session
        if s is None:
            self.say("Open a folder of images first (Project tab).")
            return
        why = self.bench.locked()
        if why and self.loading is None:
            self.say(why)
            return
        base = self._wanted if self._wanted is not None else (self.loading if self.loading is not None else s.index)
        i = base + step
        if not 0 <= i < len(s.images):
            self.say("This is the last image." if step > 0 else "This is the first image.")
            return
        self.show_image(i)

    def show_image(self, index: int) -> None:
        """Show image ``index``: read it in a worker and show it, then embed it in another (the bar shows if that
        takes a while); the next image's embedding is then computed ahead."""
        s = self.session
        if self.loading is not None:
            self._wanted = index
            self._say_counter(index)
            return
        why = self.bench.locked()
        if why:
            self.say(why)
            return
        self.loading = index
        self.bench.lock("loading", LOADING)
        self._say_counter(index)
        self.say(f"Opening {s.images[index].path} ...")
        self._start(_read, (s, index), self._read_done)

    def _start(self, fn, args, done) -> None:
        worker = quiet_worker(fn, *args)
        worker.returned.connect(self.bench.guard(done))
        worker.errored.connect(self.bench.guard(self._failed))
        worker.start()

    def _say_counter(self, index: int) -> None:
        done, total = self.session.progress()
        self.bench.count("image", f"Image {index + 1} of {total} (opening); images done: {done}/{total}")

    def _read_done(self, op: Opened) -> None:
        wanted, self._wanted = self._wanted, None
        if wanted is not None and wanted != op.index:  # N pressed again meanwhile: go on to that one
            self._end_loading()
            self.show_image(wanted)
            return
        s = self.session
        s.show(op.index, op.image, describe=False)  # the picture now; prompts wait for the embedding
        self.bench.layers.show_image(op.image, Path(s.images[op.index].path).stem, op.labels,
                                     [ob.id for ob in op.objects], op.levels)
        self.bench.layers.objects.metadata[PROJECT_KEY] = str(s.store.path)  # napari's File > Save exports it
        for oid, (counts, crop) in op.crops.items():
            self.bench.layers.remember(oid, counts, crop)
        self.opened.emit(op)
        QTimer.singleShot(SLOW_MS, lambda i=op.index: self._slow(i))
        self._start(_embed, (s, op.image), lambda _=None, i=op.index: self._embedded(i))

    def _slow(self, index: int) -> None:
        if self.loading == index:
            self.bench.tasks.start("loading", "computing the image's embedding")
            self.say(f"{self.session.images[index].path}: its embedding takes a while on a CPU (once per image; the "
                     "next one is computed ahead); you can look at it meanwhile, clicks work once it is done ...")

    def _embedded(self, index: int) -> None:
        self._end_loading()
        wanted, self._wanted = self._wanted, None
        if wanted is not None and wanted != index:
            self.show_image(wanted)
            return
        s = self.session
        done, total = s.progress()
        self.bench.count("image", f"Image {index + 1} of {total} ({s.current.status}); images done: {done}/{total}")
        self.bench.shown.emit()
        _freeze_startup_objects()
        if index + 1 < len(s.images):
            pre = quiet_worker(_leaving_a_core, s.prefetch, index + 1)
            pre.errored.connect(lambda exc: None)  # the next image says so itself when opened
            pre.start()

    def _end_loading(self) -> None:
        self.loading = None
        self.bench.unlock("loading")
        self.bench.tasks.finish("loading")

    def _failed(self, exc) -> None:
        index, self._wanted = self.loading, None
        self._end_loading()
        name = self.session.images[index].path if index is not None else "the image"
        self.say(f"Cannot show {name}: {exc}")

    def image_done(self) -> None:
        if not self.bench.ready():
            self.say("No image is shown.")
            return
        self.session.mark_done()
        done, total = self.session.progress()
        s = self.session
        self.bench.count("image", f"Image {s.index + 1} of {total} ({s.current.status}); images done: {done}/{total}")
        self.say(f"{s.current.path} marked done: N for the next image.")
