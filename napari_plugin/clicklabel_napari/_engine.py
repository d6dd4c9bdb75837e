"""Part of the widget: choosing, loading and downloading the segmentation engine, and saying in GUI terms how to
get SAM's weights when they are missing (the first run offline works at once with GrabCut)."""

from __future__ import annotations

from napari.qt.threading import create_worker

from clicklabel.errors import ClickLabelError, WeightsError
from clicklabel.segment.openmp import release_threads


def sam_help(model: str) -> str:
    """How to get a model's weights, in the widget's terms (the checkpoint field, the button, the URL, the path)."""
    from clicklabel.weights import REGISTRY, checkpoint_path

    ck = REGISTRY.get(model)
    if ck is None:
        return "Pick a checkpoint file in the Project tab, then press Load engine."
    return (f"To use {model}: press <b>Download weights</b> (Project tab, {ck.size / 1e6:.0f} MB), or download "
            f"<a href='{ck.url}'>{ck.url}</a> yourself and put it at <tt>{checkpoint_path(model)}</tt>, or pick any "
            "SAM, SAM 2.1 or HQ-SAM checkpoint (.pth, .pt) in the <b>checkpoint</b> field; then press "
            "<b>Load engine</b>.")


class EngineMixin:
    """Uses the widget's engine controls, ``say`` and session."""

    engine_note = ""  # said with each new image while a fallback engine is in use

    def _suggest_model(self) -> None:
        """No GPU and no choice made yet: start on the fastest model whose weights are here, saying why."""
        from clicklabel.segment.models import suggest_model

        suggestion = suggest_model(self.device_box.value)
        if suggestion is not None:
            self.engine_box.value = suggestion.model
            self.engine_help.setText(suggestion.reason)
            self.say(suggestion.reason)

    def _build_engine(self, name: str):
        """The engine for the controls' settings (raises WeightsError / ClickLabelError)."""
        from clicklabel.segment import make_engine

        ck = str(self.checkpoint.value) if str(self.checkpoint.value) not in ("", ".") else None
        if name == "grabcut":
            return make_engine("grabcut")
        remote = {}
        if self.remote_box.value:
            from clicklabel.segment.remote import read_token

            tf = str(self.token_file.value)
            remote = dict(server=self.server.value.strip(), token=read_token(tf if tf not in ("", ".") else None),
                          notify=self.notice.emit)  # called in the embedding worker: Qt queues it to the UI
        engine = make_engine("remote" if remote else "sam", model="auto" if ck else name, checkpoint=ck,
                             device=self.device_box.value, download=False, encoder=self.encoder_box.value, **remote)
        release_threads()  # loading the model left this (UI) thread an idle OpenMP team: see _workers.py
        return engine

    def load_engine(self, fallback: bool = False) -> bool:
        """Build the engine from the settings and use it (in the open session too, without reopening). Missing
        weights show how to get them; with ``fallback``, GrabCut (no weights) is used meanwhile."""
        name = self.engine_box.value
        try:
            engine = self._build_engine(name)
        except WeightsError as exc:
            self.download_btn.visible = True
            self.engine_help.setText(sam_help(name))
            if fallback:
                self.engine_box.value = "grabcut"
                self.engine_note = (f" GrabCut (no weights) is in use: SAM {name}'s weights are not on this "
                                    "computer. " + sam_help(name))
                self._use_engine(self._build_engine("grabcut"))
                self.say(self.engine_note.strip())
                return True
            ck = str(self.checkpoint.value) not in ("", ".")
            why = str(exc) if ck else f"SAM {name}'s weights are not on this computer."  # the core's names CLI flags
            self.say(f"{why}<br>" + sam_help(name) + " Or choose the GrabCut engine (no weights).")
            return False
        except ClickLabelError as exc:
            self.say(str(exc))
            return False
        self.download_btn.visible = False
        self.engine_note = ""
        where = f", {engine.encoder.describe()}" if self.remote_box.value and name != "grabcut" else ""
        self.engine_help.setText(f"Engine in use: {engine.name} {engine.model}{where}.")
        self._use_engine(engine)
        self.say(f"Engine: {engine.name} {engine.model}{where}.")
        return True

    def _use_engine(self, engine) -> None:
        self._engine = engine
        if self.session is not None:
            self.session.set_engine(engine)
            if self.session.index >= 0:
                self.show_image(self.session.index)

    def download_weights(self) -> None:
        from clicklabel.weights import download

        def fetch(name):
            try:
                return download(name, progressbar=False), None
            except WeightsError as exc:  # a message for the status line, not a traceback in the console
                return None, str(exc)

        name = self.engine_box.value
        if name == "grabcut":
            self.say("GrabCut needs no weights: choose a SAM model in the engine box first.")
            return
        worker = create_worker(fetch, name)
        worker.returned.connect(self._downloaded)
        self._downloading = True
        self._update_progress()
        self.say(f"Downloading SAM {name}'s weights ...")
        worker.start()

    def _downloaded(self, result) -> None:
        _, error = result
        self._downloading = False
        self._update_progress()
        if error:
            name = self.engine_box.value
            self.say(f"The download failed (offline?). {sam_help(name)}")
        elif self.load_engine() and self._waiting is not None and self.session is None:
            self.open_project(self._waiting)
