"""The Review panel's Find box: type the classes ("cat, dog"; empty: the project's vocabulary) and every instance of
each is proposed with its class already given (SAM 3's concept prompts; with another engine the multimodal model
finds the boxes and the engine makes the masks). With "the box drawn is an example", the box dragged on the canvas
is an exemplar: SAM 3 finds the others like it. The instances show on the proposals layer as each class is done;
then they are reviewed with A / X / S like any proposal, the model's disagreements first."""

from __future__ import annotations

import os
import threading

from magicgui.widgets import CheckBox, Container, FloatSpinBox, LineEdit, PushButton
from qtpy.QtCore import QObject, Signal

from clicklabel.errors import ClickLabelError

from ._controls import buttons, row
from ._paint import result_crop
from ._proposal_layer import waiting_view

JOB = "finding"


def _find(session, concepts, **kwargs):
    """Worker thread: the classes found and stored, then what the review shows (in its order, drawn)."""
    rep = session.propose_concepts(concepts, **kwargs)
    waiting = session.concept_review_order()
    return rep, waiting, waiting_view(waiting, session.image.shape[:2])


class FindPart(QObject):
    """Owns the Find controls and the finding worker; ``review`` (the Review panel) shows and reviews the result."""

    arrived = Signal(str, object)  # (class, its instances' crops) from the worker, as each class is done

    def __init__(self, bench, review, parent=None):
        super().__init__(parent)
        self.bench, self.review = bench, review
        self.grounding = None  # tests: a label.grounding.Grounding for engines without concept prompts
        self._worker = None
        self._shown: dict[int, tuple] = {}  # instances shown while finding (negative ids): id -> (class, crop)
        self.text = LineEdit(label="find", value="", tooltip="the classes to find, comma separated (empty: the "
                                                              "project's vocabulary)")
        self.exemplar = CheckBox(text="the box drawn is an example", value=False,
                                 tooltip="drag a box around one instance first: SAM 3 finds the others like it")
        self.threshold = FloatSpinBox(label="find score", value=0.5, min=0.0, max=1.0, step=0.05,
                                      tooltip="SAM 3's score an instance needs (clicklabel propose --threshold)")
        self.button = PushButton(text="Find")
        self.parts = [Container(widgets=[self.text, self.threshold]), row(self.exemplar, self.button)]
        buttons(bench, [(self.button, self.find)])
        self.arrived.connect(self._arrived)

    @property
    def finding(self) -> bool:
        return self._worker is not None

    def say(self, text: str) -> None:
        self.bench.say(text)

    def show_vocabulary(self) -> None:
        """A new project: the field shows its vocabulary (what an empty field finds)."""
        s = self.bench.session
        if s is not None and not self.text.value.strip():
            self.text.tooltip = "the classes to find, comma separated (empty: " + (
                ", ".join(s.concept_vocabulary()) or "the project has no vocabulary yet") + ")"

    def find(self) -> None:
        """Find every instance of the classes typed (or the vocabulary) on the image shown, in a worker."""
        s = self.bench.session
        if not self.bench.ready():
            self.say(self.bench.locked(prompts=True) or "Open an image first: Find works on the image shown.")
            return
        if self._worker is not None or self.review.proposing:
            self.say("Finding already: see the bar (Stop ends it after the class in progress).")
            return
        text = self.text.value.strip() or ", ".join(s.concept_vocabulary())
        if not text:
            self.say("Type the classes to find, comma separated (cat, dog), or set the project's vocabulary in the "
                     "Labels tab.")
            return
        exemplars = []
        if self.exemplar.value:
            box = self.review.prompter.current_prompt().box
            if box is None:
                self.say("Drag a box around one instance first: it is the example SAM 3 finds the others by.")
                return
            exemplars = [box]
        grounding = None
        if not hasattr(s.engine, "find"):
            grounding = self.grounding or self._grounding()
            if grounding is None:
                return
            if exemplars:
                self.say(f"The {s.engine.name} engine takes no examples: uncheck 'the box drawn is an example', or "
                         "load SAM 3 (Project tab).")
                return
        self.review.prompter.clear_prompt()
        s.clear()
        stop = threading.Event()
        how = "SAM 3" if grounding is None else f"{grounding.model} (boxes) and {s.engine.name} (masks)"
        self._shown = {}
        self.say(f"Finding {text} with {how} ...")
        self._worker = self.bench.start_job(
            JOB, JOB, _find, s, text, exemplars=exemplars, grounding=grounding, threshold=float(self.threshold.value),
            progress=self.bench.reporter(JOB, stop), stop=stop,
            on_concept=lambda name, found: self.arrived.emit(name, [result_crop(i) for i in found]),
            done=self._found, failed=self._failed, cancel=stop.set,
            total=1 if grounding is not None else len(text.split(",")),
            lock="Finding objects on this image: wait, or press Stop, before changing images.", prompts=False)

    def _grounding(self):
        """The multimodal model that finds the boxes for an engine without concept prompts (None: said why)."""
        from clicklabel.label.grounding import Grounding

        if not os.environ.get("OPENAI_API_KEY"):
            self.say(f"The {self.bench.session.engine.name} engine takes no class names: load SAM 3 (Project tab), "
                     "or start napari with OPENAI_API_KEY set so the multimodal model finds the boxes.")
            return None
        return Grounding(self.bench.session.label_settings.lmm)

    def _arrived(self, name: str, crops) -> None:
        """One class is done: its instances on the proposals layer at once (stored and reviewable at the end)."""
        for crop in crops:
            if crop is not None:
                self._shown[-1 - len(self._shown)] = (name, crop)
        self.bench.layers.show_proposals({i: crop for i, (_, crop) in self._shown.items()},
                                         {i: label for i, (label, _) in self._shown.items()})
        self.say(f"{name}: {len(crops)} found ...")

    def _done(self) -> None:
        self._worker = None
        self.bench.end_job(JOB)

    def _failed(self, exc) -> None:
        self._done()
        self.review.reload(force=True)
        self.say(str(exc) if isinstance(exc, ClickLabelError) else f"Finding failed: {exc}")

    def _found(self, result) -> None:
        rep, waiting, (crops, drawn) = result
        self._done()
        s = self.bench.session
        if s is None or s.image is None or (waiting and waiting[0].image_id != s.current.id):
            return
        self.review.show_waiting(waiting, crops, drawn)
        found = ", ".join(f"{k} {v}" for k, v in rep.found.items()) or "nothing"
        refused = f"; {len(rep.refused)} box(es) refused: {rep.refused[0]}" if rep.refused else ""
        stopped = " (stopped early)" if rep.cancelled else ""
        if not rep.proposed:
            self.review.reload(force=True)
            self.say(f"Found nothing new{stopped} ({found}){refused}.")
            return
        self.review.review_from(0, f"Found {found}{stopped}{refused}: {len(rep.proposed)} proposal(s), labelled. ")
