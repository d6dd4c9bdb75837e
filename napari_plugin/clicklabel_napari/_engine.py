"""The engine part of the Project panel: choosing, loading (in a worker: a model takes seconds to build and a
server's handshake may hang) and downloading the segmentation engine, and saying in the widget's terms how to get
SAM's weights when they are missing.

The first run offline works at once with GrabCut, while the engine box stays on the SAM model wanted and the help
says how to get it: pick a checkpoint file (or download), press Load engine, and SAM is used in the same session.
A checkpoint file always means SAM (its family and size are read from the file)."""

from __future__ import annotations

import os

from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, LineEdit, PushButton
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QLabel

from clicklabel.errors import ClickLabelError, WeightsError
from clicklabel.segment import ENCODER_CHOICES, ENCODER_HELP
from clicklabel.segment.openmp import release_threads
from clicklabel.weights import REGISTRY

from ._controls import buttons, row
from ._workers import quiet_worker

JOB = "loading the engine"


def engine_choices() -> list[str]:
    """What the engine box offers: every registered model, then the engines without weights."""
    return [*REGISTRY, "grabcut"]


def sam_help(model: str) -> str:
    """How to get a model's weights, in the widget's terms (the checkpoint field, the button, the URL, the path)."""
    from clicklabel.weights import checkpoint_path

    ck = REGISTRY.get(model)
    if ck is None:
        return "To use SAM: pick a checkpoint file (.pth, .pt) in the <b>checkpoint</b> field, then press <b>Load " \
               "engine</b>."
    return (f"To use SAM ({model}): pick any SAM, SAM 2.1 or HQ-SAM checkpoint file (.pth, .pt) in the "
            "<b>checkpoint</b> field and press <b>Load engine</b>; or press <b>Download weights</b> "
            f"({ck.size / 1e6:.0f} MB), or download <a href='{ck.url}'>{ck.url}</a> yourself and put it at "
            f"<tt>{checkpoint_path(model)}</tt>, then press <b>Load engine</b>.")


def _checkpoint(field) -> str | None:
    value = str(field.value)
    return None if value in ("", ".") else value


def _build(spec: dict):
    """Worker thread: the engine for ``spec`` (raises WeightsError / ClickLabelError)."""
    from clicklabel.segment import make_engine

    if spec["name"] == "grabcut" and spec["checkpoint"] is None:
        return make_engine("grabcut")
    remote = {}
    if spec["server"] is not None:
        from clicklabel.segment.remote import read_token

        remote = dict(server=spec["server"], token=read_token(spec["token_file"]), notify=spec["notify"])
    model = "auto" if spec["checkpoint"] else spec["name"]
    tiles = {} if remote else {"tiles": "auto"}  # a large photo in tiles at full resolution (segment.tiled)
    engine = make_engine("remote" if remote else "sam", model=model, checkpoint=spec["checkpoint"],
                         device=spec["device"], download=False, encoder=spec["encoder"], **remote, **tiles)
    release_threads()
    return engine


class EngineChooser:
    """Owns the engine controls and the loading worker; ``use(engine)`` (the widget's) puts an engine to work."""

    def __init__(self, bench, use):
        self.bench, self.use = bench, use
        self._loading = None  # (worker, then) while an engine is built
        choices = engine_choices()
        self.engine_box = ComboBox(label="engine", choices=choices, value="vit_b" if "vit_b" in choices else choices[0])
        self.device_box = ComboBox(label="device", choices=["auto", "cpu", "cuda", "mps"], value="auto")
        self.encoder_box = ComboBox(label="encoder", choices=list(ENCODER_CHOICES), value="auto", tooltip=ENCODER_HELP)
        self.checkpoint = FileEdit(label="checkpoint", mode="r", filter="*.pt *.pth", value="")
        self.remote_box = CheckBox(text="encode on a server (clicklabel serve)", value=False,
                                   tooltip="the image encoder runs on the server's GPU, the clicks are answered here; "
                                           "the engine box must name the server's model")
        self.server = LineEdit(label="server", value=os.environ.get("CLICKLABEL_SERVER", ""),
                               tooltip="http://HOST:PORT, as `clicklabel serve` printed it")
        self.token_file = FileEdit(label="token file", mode="r", value="",
                                   tooltip="the server's token (empty: $CLICKLABEL_SERVE_TOKEN)")
        self.load_btn = PushButton(text="Load engine")
        self.download_btn = PushButton(text="Download weights", visible=False)
        self.help = QLabel("")
        self.help.setWordWrap(True)
        self.help.setOpenExternalLinks(True)
        self.help.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        self.parts = [Container(widgets=[self.engine_box, self.device_box, self.encoder_box, self.checkpoint]),
                      self.remote_box, Container(widgets=[self.server, self.token_file]),
                      row(self.load_btn, self.download_btn), self.help]
        buttons(bench, [(self.load_btn, self.load), (self.download_btn, self.download)])

    def say(self, text: str) -> None:
        self.bench.say(text)

    @property
    def loading(self) -> bool:
        return self._loading is not None

    def suggest(self) -> None:
        """No GPU and no choice made yet: start on the fastest model whose weights are here, saying why."""
        from clicklabel.segment.models import suggest_model

        suggestion = suggest_model(self.device_box.value)
        if suggestion is not None:
            self.engine_box.value = suggestion.model
            self.help.setText(suggestion.reason)
            self.say(suggestion.reason)

    def _spec(self) -> dict:
        server = self.server.value.strip() if self.remote_box.value else None
        return {"name": self.engine_box.value, "checkpoint": _checkpoint(self.checkpoint),
                "device": self.device_box.value, "encoder": self.encoder_box.value, "server": server,
                "token_file": _checkpoint(self.token_file), "notify": self.bench.notice.emit}

    # -- loading ---------------------------------------------------------------------------------------------------
    def load(self, fallback: bool = False, then=None) -> None:
        """Build the engine from the settings in a worker and use it (in the open session too, without reopening),
        then ``then()``. Missing weights show how to get them; with ``fallback``, GrabCut (no weights) is used
        meanwhile."""
        if self._loading is not None:
            self.say("An engine is loading already (see the bar).")
            return
        spec = self._spec()
        what = "GrabCut" if spec["name"] == "grabcut" and not spec["checkpoint"] else \
            f"SAM from {spec['checkpoint']}" if spec["checkpoint"] else f"SAM {spec['name']}"
        worker = quiet_worker(_build, spec)
        self._loading = (worker, then)
        worker.returned.connect(self.bench.guard(lambda engine: self._built(worker, spec, engine, fallback)))
        worker.errored.connect(self.bench.guard(lambda exc: self._failed(worker, spec, exc, fallback)))
        self.load_btn.enabled = False
        self.bench.lock(JOB, "Wait a moment: the engine is loading (see the bar).")
        self.bench.tasks.start(JOB, JOB, stop=lambda: self._abandon(worker))
        self.say(f"Loading {what}{' through ' + spec['server'] if spec['server'] else ''} ...")
        worker.start()

    def _end(self, worker):
        """The load of ``worker`` ended (None when it was abandoned meanwhile): its ``then``."""
        if self._loading is None or self._loading[0] is not worker:
            return None
        then = self._loading[1]
        self._loading = None
        self.load_btn.enabled = True
        self.bench.unlock(JOB)
        self.bench.tasks.finish(JOB)
        return then or (lambda: None)

    def _abandon(self, worker) -> None:
        if self._end(worker) is not None:
            self.say("Engine loading abandoned: the engine in use stays.")

    def _built(self, worker, spec, engine, fallback: bool) -> None:
        then = self._end(worker)
        if then is None:
            return
        self.download_btn.visible = False
        self.bench.engine_note = ""
        where = f", {engine.encoder.describe()}" if spec["server"] and engine.name != "grabcut" else ""
        self.help.setText(f"Engine in use: {engine.name} {engine.model}{where}.")
        self.use(engine)
        self.say(f"Engine: {engine.name} {engine.model}{where}.")
        then()

    def _failed(self, worker, spec, exc, fallback: bool) -> None:
        then = self._end(worker)
        if then is None:
            return
        name = spec["name"]
        if not isinstance(exc, WeightsError):
            self.say(str(exc) if isinstance(exc, ClickLabelError) else f"Cannot load the engine: {exc}")
            if fallback:
                self._fall_back(name, then)
            return
        self.download_btn.visible = name in REGISTRY
        self.help.setText(sam_help(name))
        if fallback:
            self._fall_back(name, then)
            return
        why = str(exc) if spec["checkpoint"] else f"SAM {name}'s weights are not on this computer."
        self.say(f"{why} See the Project tab for how to get them, or choose the GrabCut engine (no weights).")

    def _fall_back(self, name: str, then) -> None:
        """GrabCut meanwhile; the engine box stays on ``name`` and the help says how to get it."""
        from clicklabel.segment import make_engine

        self.bench.engine_note = (f" GrabCut (no weights) is in use: SAM {name}'s weights are not on this computer; "
                                  "the Project tab says how to get them.")
        self.use(make_engine("grabcut"))
        self.say(self.bench.engine_note.strip())
        then()

    # -- downloading -------------------------------------------------------------------------------------------------
    def download(self) -> None:
        from clicklabel.weights import download

        def fetch(name):
            try:
                return download(name, progressbar=False), None
            except WeightsError as exc:  # a message for the status line, not a traceback in the console
                return None, str(exc)

        name = self.engine_box.value
        if name not in REGISTRY:
            self.say("GrabCut needs no weights: choose a SAM model in the engine box (Project tab) first.")
            return
        worker = quiet_worker(fetch, name)
        worker.returned.connect(self.bench.guard(self._downloaded))
        worker.errored.connect(self.bench.guard(lambda exc: self._downloaded((None, str(exc)))))
        self.bench.tasks.start("downloading", f"downloading {name}")
        self.say(f"Downloading SAM {name}'s weights ...")
        worker.start()

    def _downloaded(self, result) -> None:
        _, error = result
        self.bench.tasks.finish("downloading")
        if error:
            self.say("The download failed (offline?): pick a checkpoint file in the Project tab instead, or put the "
                     "file where the Project tab says.")
            return
        self.checkpoint.value = ""
        self.load()
