"""Part of the widget: opening projects and moving between images.

Everything a new image needs (reading it, its embedding, its objects drawn into a label image, its waiting
proposals) is prepared in a worker; the UI thread only hands the data to the layers, which are updated in place.
The next image's embedding is computed ahead while the annotator works."""

from __future__ import annotations

import functools
import gc
import threading
from pathlib import Path

import numpy as np
from qtpy.QtCore import QTimer

from clicklabel.annotate import AnnotationSession
from clicklabel.errors import ClickLabelError

from ._io import PROJECT_KEY
from ._layers import crop_of
from ._workers import quiet_worker

_threads = {"busy": 0, "full": None}
_threads_lock = threading.Lock()


def _leaving_a_core(fn, *args):
    """Run ``fn`` with PyTorch on all cores but one: the next image's embedding, computed ahead while the annotator
    clicks, leaves the decoder and the viewer a core."""
    import torch

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


def _load(session: AnnotationSession, index: int):
    """Worker thread: everything a new image needs before it is shown (pixels, embedding, its objects drawn into
    a label image, its waiting proposals), so that showing it is only handing data to the layers."""
    image = session.load(index)
    # on all cores: the annotator waits for this image. On 2 cores a vit_b embedding took 36 s leaving one core and
    # 17 s on both, with the viewer's longest pause 34 ms and 72 ms (test_ui_never_blocked_by_embedding_or_labelling)
    session.embed(image)
    objects = session.objects(index)
    labels = np.zeros(image.shape[:2], np.int32)
    crops = {}
    for ob in objects:
        crop = crop_of(ob.mask)
        crops[ob.id] = (ob.rle["counts"], crop)
        if crop is not None:
            (r, c), m = crop
            labels[r : r + m.shape[0], c : c + m.shape[1]][m] = ob.id
    waiting = session.proposals(index)
    proposal_crops = {ob.id: (ob.rle["counts"], crop_of(ob.mask)) for ob in waiting}
    return index, image, objects, labels, crops, waiting, proposal_crops


class ImagesMixin:
    """Uses the widget's session, layers, engine, ``say`` and the other parts' redraws."""

    # -- projects and images -------------------------------------------------------------------------------------
    def open_folder(self, folder: str) -> None:
        """A folder becomes a project (``project.clicklabel`` inside it) holding its images."""
        self.open_project(folder)

    def open_project(self, target, project: str | None = None) -> None:
        """Open a project, a folder (made a project), or image files (``target`` a list) into a new session."""
        items = list(target) if isinstance(target, (list, tuple)) else [target]
        self._waiting = items
        if self._engine is None and not self.load_engine(fallback=True):
            return  # the status line says why
        try:
            session = AnnotationSession.open(items, self._engine, project)
        except ClickLabelError as exc:
            self.say(str(exc))
            return
        self._waiting = None
        self.session = session
        self._load_settings()
        if not session.images:
            self.say("The project has no images: open a folder of images in the Project tab.")
            return
        self.show_image(0)

    def go(self, step: int) -> None:
        """N / B: the next / previous image (its embedding was computed ahead while you worked)."""
        if self.session is None:
            self.say("Open a folder of images first (Project tab).")
            return
        if self._propose_worker is not None:
            self.say("SAM is proposing objects for this image: wait, or press Stop, before changing images.")
            return
        base = self._wanted if self._wanted is not None else (self._loading if self._loading is not None
                                                               else self.session.index)
        i = base + step
        if not 0 <= i < len(self.session.images):
            self.say("This is the last image." if step > 0 else "This is the first image.")
            return
        self.show_image(i)

    def show_image(self, index: int) -> None:
        """Show image ``index``: read and embed it in a worker (the bar shows if that takes a while), then hand
        the data to the layers; the next image's embedding is then computed ahead."""
        s = self.session
        if self.refining:  # the engine is on this image until refine ends
            self.say("Refine is running on this image: wait for it, or press Stop.")
            return
        if self._loading is not None:
            self._wanted = index
            self._say_counter(index)
            return
        self._loading, self._slow_load = index, False
        if self.layers.image is not None:
            self._clear_prompt_layers()
        self._say_counter(index)
        self.say(f"Opening {s.images[index].path} ...")
        QTimer.singleShot(150, lambda: self._loading_is_slow(index))
        worker = quiet_worker(_load, s, index)
        worker.returned.connect(self._loaded)
        worker.errored.connect(self._load_failed)
        worker.start()

    def _loading_is_slow(self, index: int) -> None:
        if self._loading == index:
            self._slow_load = True
            self._update_progress()
            self.say(f"Opening {self.session.images[index].path}: a new image's embedding takes a while on a CPU "
                     "(once per image; the next one is computed ahead) ...")

    def _loaded(self, result) -> None:
        index, image, objects, labels, crops, waiting, proposal_crops = result
        self._loading, self._slow_load = None, False
        wanted, self._wanted = self._wanted, None
        if wanted is not None and wanted != index:
            self.show_image(wanted)  # N pressed again meanwhile: go on to that one
            return
        s = self.session
        s.show(index, image)
        self.layers.show_image(image, Path(s.images[index].path).stem, labels, [ob.id for ob in objects])
        self.layers.objects.metadata[PROJECT_KEY] = str(s.store.path)  # napari's File > Save exports the project
        for oid, (counts, crop) in crops.items():
            self.layers.remember(oid, counts, crop)
        votes = s.suggestions()
        self.layers.show_objects(objects, image.shape[:2], votes)
        self._keep_keys()
        self._update_progress()
        self.show_waiting(waiting, proposal_crops)
        self._fill_table(objects, votes)
        self._say_counter()
        more = f" {len(waiting)} proposal(s) wait here: P reviews them." if waiting else ""
        self.say(f"{s.images[index].path}: click an object, or drag a box around it.{more}{self.engine_note}")
        self.audit_image_shown()  # an object stepped to (review, value): selected, and the status says why
        _freeze_startup_objects()
        if index + 1 < len(s.images):
            pre = quiet_worker(_leaving_a_core, s.prefetch, index + 1)
            pre.errored.connect(lambda exc: None)  # the next image says so itself when opened
            pre.start()

    def _load_failed(self, exc) -> None:
        index, self._loading, self._wanted = self._loading, None, None
        self._update_progress()
        name = self.session.images[index].path if index is not None else "the image"
        self.say(f"Cannot show {name}: {exc}")

    def _keep_keys(self) -> None:
        """Our layers (made on the first image, or again if the user removed one) carry our keys and report
        prompt edits made with napari's own tools."""
        for key in ("prompts", "box", "preview", "objects", "proposals", "boxes", "manual", "image"):
            layer = getattr(self.layers, key)
            if layer is not None and not any(layer is k for k in self._keyed):
                self._bind_keys(layer)
                self._keyed.append(layer)
                if key in ("prompts", "box"):
                    layer.events.data.connect(self._layer_prompt_changed)
                if key == "prompts":
                    layer.events.features.connect(self._layer_prompt_changed)

    def image_done(self) -> None:
        if not self._ready():
            self.say("No image is shown.")
            return
        self.session.mark_done()
        self._say_counter()
        self.say(f"{self.session.current.path} marked done: N for the next image.")

