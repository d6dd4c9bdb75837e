"""The Audit panel: refine the current image's box-only objects (in a worker, with progress and stop), list the
objects refine flagged and the class audit's disagreements in the panel's own table, step through them across the
project, and decide (keep the object as it is, put the preview's mask in, take the model's label, keep one's
own). Every decision goes through the session and is undoable with Ctrl+Z."""

from __future__ import annotations

import threading

from magicgui.widgets import ComboBox, Container, PushButton
from qtpy.QtWidgets import QLabel

from clicklabel.errors import ClickLabelError

from ._controls import buttons, page, row
from ._table import ObjectsTable

FILTERS = {"flagged for review": "flagged", "disagreements with the model": "disagreements", "all objects": None}
JOB = "refining"


def mask_cell(ob) -> str:
    """The table's mask column: the object's mask state, and whether refine wants a look."""
    text = "mask" if ob.has_mask else "box only"
    return f"{text}, review: {ob.review}" if ob.review else text


def check_cell(check) -> str:
    """The table's 'model says' column: the class audit's answer, if the object was checked."""
    if check is None:
        return ""
    if check.verdict == "failed":
        return "check failed"
    conf = f" {check.confidence:.2f}" if check.confidence is not None else ""
    sign = "=" if check.verdict == "agree" else "≠"
    done = f" ({check.decision})" if check.decision else ""
    return f"{sign} {check.label}{conf}{done}"


class AuditPanel:
    """Owns its table and filter, the refine worker, and the object to select once its image is shown."""

    def __init__(self, bench, navigator, prompter):
        self.bench, self.nav, self.prompter = bench, navigator, prompter
        self._worker = None
        self._stop: threading.Event | None = None
        self._focus: tuple[int, str | None] | None = None
        self.refine_btn = PushButton(text="Refine boxes here")
        self.filter = ComboBox(label="list", choices=list(FILTERS), value="flagged for review")
        self.next_btn = PushButton(text="Next in list >")
        self.fine_btn = PushButton(text="Fine as it is")
        self.use_preview_btn = PushButton(text="Use preview's mask")
        self.take_label_btn = PushButton(text="Take model's label")
        self.keep_label_btn = PushButton(text="Keep label")
        self.table = ObjectsTable(["id", "label", "mask", "model says"])
        self.table.relabelled.connect(lambda oid, text: self._decide_one(
            lambda i: self.session.relabel(i, text), oid, f"#{oid} is now '{text.strip()}'."))
        self.info = QLabel("Box-only objects (imported from a detection data set) get SAM's masks here; the ones "
                           "whose mask disagrees with their box, and the class audit's disagreements "
                           "(clicklabel label --check), are listed below, stepped through and decided. Ctrl+Z undoes.")
        self.info.setWordWrap(True)
        self.page = page(row(self.refine_btn), Container(widgets=[self.filter]), row(self.next_btn), self.table,
                         row(self.fine_btn, self.use_preview_btn), row(self.take_label_btn, self.keep_label_btn),
                         self.info)
        buttons(bench, [(self.refine_btn, self.refine_here), (self.next_btn, self.next_in_filter),
                        (self.fine_btn, self.fine_as_it_is), (self.use_preview_btn, self.use_preview_mask),
                        (self.take_label_btn, self.take_model_label), (self.keep_label_btn, self.keep_own_label)])
        self.filter.changed.connect(lambda *_: self.refresh())
        bench.changed.connect(self.refresh)
        navigator.opened.connect(lambda op: self.refresh())
        bench.shown.connect(self._shown)

    @property
    def session(self):
        return self.bench.session

    @property
    def refining(self) -> bool:
        return self._worker is not None

    def say(self, text: str) -> None:
        self.bench.say(text)

    # -- the table --------------------------------------------------------------------------------------------
    def refresh(self) -> None:
        """The current image's objects under the filter, with their review cells."""
        s = self.session
        if s is None or s.current is None:
            return
        kind = FILTERS.get(self.filter.value)
        obs = s.objects()
        checks = {c.object_id: c for c in s.checks()}
        if kind == "flagged":
            obs = [o for o in obs if o.review]
        elif kind == "disagreements":
            open_ids = {c.object_id for c in s.disagreements()}
            obs = [o for o in obs if o.id in open_ids]
        self.table.fill([(o, [mask_cell(o), check_cell(checks.get(o.id))]) for o in obs])

    # -- refine -----------------------------------------------------------------------------------------------
    def refine_here(self) -> None:
        """The engine's masks for the current image's box-only objects, in a worker (the UI stays free)."""
        if not self.bench.ready():
            self.say(self.bench.locked(prompts=True) or "Open an image first: refine works on the image shown.")
            return
        why = self.bench.locked()
        if why:
            self.say(why)
            return
        todo = len(self.session.to_refine())
        if not todo:
            self.say("Nothing to refine here: every box-only object was refined (or tried) with this engine.")
            return
        self._stop = stop = threading.Event()
        engine = self.session.engine
        self.say(f"Refining {todo} box(es) with {engine.name} {engine.model} ...")
        self._worker = self.bench.start_job(
            JOB, "refining boxes", self.session.refine, progress=self.bench.reporter(JOB, stop), stop=stop,
            done=self._refined, failed=self._failed, total=todo, cancel=stop.set,
            lock="Refine is running on this image: wait for it, or press Stop.")

    def _finished(self) -> None:
        self._worker = self._stop = None
        self.bench.end_job(JOB)
        self.bench.changed.emit()

    def _refined(self, rep) -> None:
        self._finished()
        stopped = " (stopped: refine again for the rest)" if rep.cancelled else ""
        self.say(f"Refined {len(rep.refined)}, flagged {len(rep.flagged)} for review ({len(rep.empty)} empty masks "
                 f"stay box-only){stopped}; 'Next in list' steps through the flagged.")
        if rep.flagged:
            self.filter.value = "flagged for review"

    def _failed(self, exc) -> None:
        self._finished()
        self.say(f"Refine stopped: {exc}")

    # -- stepping -----------------------------------------------------------------------------------------------
    def next_in_filter(self) -> None:
        """Go to the next flagged object (or disagreement, with that filter) in the project, opening its image."""
        if self.session is None:
            self.say("Open a project first.")
            return
        after = (self.table.selected_ids() or [None])[0]
        if FILTERS.get(self.filter.value) is None:
            self.filter.value = "flagged for review"
        kind = FILTERS.get(self.filter.value)
        s = self.session
        nxt = s.next_disagreement(after) if kind == "disagreements" else s.next_flagged(after)
        if nxt is None:
            self.say("Nothing flagged for review in the project." if kind != "disagreements" else
                     "No disagreements wait for a decision.")
            return
        index, oid = nxt
        if index != s.index or self.nav.loading is not None:
            self._focus = (oid, None)
            self.nav.show_image(index)
        else:
            self.focus(oid)

    def _shown(self) -> None:
        if self._focus is not None:
            (oid, note), self._focus = self._focus, None
            self.focus(oid, note)

    def focus(self, oid: int, note: str | None = None) -> None:
        """Select the object's row and bring it into view."""
        if not self.table.select(oid):
            return
        x, y, w, h = self.session.object(oid).bbox
        self.bench.viewer.camera.center = (y + h / 2, x + w / 2)
        ob = self.session.object(oid)
        self.say(f"object {oid} ({ob.label or 'no label'}): {note or ob.review or mask_cell(ob)}")

    # -- deciding -----------------------------------------------------------------------------------------------
    def _decide(self, action, what: str, done: str) -> None:
        ids = self.table.selected_ids()
        if not ids:
            self.say(f"Select the object(s) to {what} in the list above (Next in list selects the next one).")
            return
        for oid in ids:
            if not self._decide_one(action, oid, done.format(oid=oid)):
                break

    def _decide_one(self, action, oid: int, done: str) -> bool:
        try:
            action(oid)
        except ClickLabelError as exc:
            self.say(str(exc))
            self.bench.changed.emit()
            return False
        self.bench.changed.emit()
        self.say(done)
        return True

    def fine_as_it_is(self) -> None:
        self._decide(self.session.resolve_review, "keep as they are",
                     "#{oid} kept as it is: no longer flagged (Ctrl+Z undoes).")

    def use_preview_mask(self) -> None:
        """The selected object gets the mask of the prompt on screen (its old box is kept as the given box)."""
        self._decide(self.session.replace_mask, "give the preview's mask",
                     "#{oid} has the preview's mask now; its old box is kept as the given box (Ctrl+Z undoes).")
        self.prompter.clear_prompt()

    def take_model_label(self) -> None:
        self._decide(self.session.accept_model_label, "relabel with the model's label",
                     "#{oid} takes the model's label (Ctrl+Z undoes).")

    def keep_own_label(self) -> None:
        self._decide(self.session.keep_label, "keep the label of",
                     "#{oid} keeps its label; the model's is set aside (Ctrl+Z undoes).")
