"""The widget's review panel: refine the current image's box-only objects (in a worker, with progress and stop),
step through the objects refine flagged and the class audit's disagreements across the project, filter the table
to them, and decide (keep the object as it is, put the preview's mask in, take the model's label, keep one's
own). Every decision goes through the session and is undoable with Ctrl+Z."""

from __future__ import annotations

import threading

from magicgui.widgets import ComboBox, Container, PushButton
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QLabel, QTableWidgetItem, QVBoxLayout, QWidget

from clicklabel.errors import ClickLabelError

from ._workers import quiet_worker

FILTERS = {"all objects": None, "flagged for review": "flagged", "disagreements with the model": "disagreements"}
COLUMNS = ["mask", "model says"]  # the table's columns added by this panel


def build_audit_ui(w) -> None:
    """Create the panel's controls on ``w``, put them above the table, add the table's review columns."""
    w.refine_btn = PushButton(text="Refine boxes here")
    w.refine_stop_btn = PushButton(text="Stop refining", visible=False)
    w.table_filter = ComboBox(label="table shows", choices=list(FILTERS), value="all objects")
    w.next_review_btn = PushButton(text="Next in filter >")
    w.fine_btn = PushButton(text="Fine as it is")
    w.use_preview_btn = PushButton(text="Use preview's mask")
    w.take_label_btn = PushButton(text="Take model's label")
    w.keep_label_btn = PushButton(text="Keep label")
    w.audit_info = QLabel("Box-only objects (imported from a detection data set) get SAM's masks here; the ones "
                          "whose mask disagrees with their box, and the class audit's disagreements "
                          "(clicklabel label --check), are stepped through and decided. Ctrl+Z undoes.")
    w.audit_info.setWordWrap(True)
    rows = [Container(widgets=[w.refine_btn, w.refine_stop_btn], layout="horizontal", labels=False),
            Container(widgets=[w.table_filter, w.next_review_btn]),
            Container(widgets=[w.fine_btn, w.use_preview_btn], layout="horizontal", labels=False),
            Container(widgets=[w.take_label_btn, w.keep_label_btn], layout="horizontal", labels=False)]
    panel = Container(widgets=rows, labels=False)
    page = QWidget()
    lay = QVBoxLayout(page)
    lay.setContentsMargins(4, 4, 4, 4)
    lay.addWidget(panel.native)
    lay.addWidget(w.audit_info)
    lay.addStretch(1)
    w.tabs.insertTab(2, page, "Audit")  # after Annotate and Review
    base = w.table.columnCount()
    w.table.setColumnCount(base + len(COLUMNS))
    for i, name in enumerate(COLUMNS):
        w.table.setHorizontalHeaderItem(base + i, QTableWidgetItem(name))
    w._review_panel = panel
    for button, action in [(w.refine_btn, w.refine_here), (w.refine_stop_btn, w.stop_refining),
                           (w.next_review_btn, w.next_in_filter), (w.fine_btn, w.fine_as_it_is),
                           (w.use_preview_btn, w.use_preview_mask), (w.take_label_btn, w.take_model_label),
                           (w.keep_label_btn, w.keep_own_label)]:
        button.native.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # the keys stay with the canvas
        button.changed.connect(lambda *_, action=action: w.run_action(action))
    w.table_filter.changed.connect(lambda *_: w.refresh())


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


class AuditMixin:
    """Part of ``ClickLabelWidget``: uses its session, table, layers, status line, progress bar, ``refresh``,
    ``show_image`` and its ``refine_progress`` signal."""

    _refine_worker = None
    _refine_stop: threading.Event | None = None
    _refine_counts = (0, 0)
    _focus: int | None = None  # an object to select once its image is shown
    _focus_note: str | None = None  # what the status line says about it (else its review state)

    @property
    def refining(self) -> bool:
        return self._refine_worker is not None

    # -- the table --------------------------------------------------------------------------------------------
    def table_objects(self, obs):
        """The current image's objects the table lists under the filter, and each row's review cells."""
        kind = FILTERS.get(self.table_filter.value)
        checks = {c.object_id: c for c in self.session.checks()}
        if kind == "flagged":
            obs = [o for o in obs if o.review]
        elif kind == "disagreements":
            open_ids = {c.object_id for c in self.session.disagreements()}
            obs = [o for o in obs if o.id in open_ids]
        return [(o, [mask_cell(o), check_cell(checks.get(o.id))]) for o in obs]

    # -- refine -----------------------------------------------------------------------------------------------
    def refine_here(self) -> None:
        """The engine's masks for the current image's box-only objects, in a worker (the UI stays free)."""
        if not self._ready():
            return
        if self._propose_worker is not None:
            self.say("SAM is proposing objects for this image: wait, or press Stop, before refining.")
            return
        todo = len(self.session.to_refine())
        if not todo:
            self.say("nothing to refine here: every box-only object was refined (or tried) with this engine")
            return
        self._refine_counts = (0, todo)
        self._refine_stop = threading.Event()
        self.refine_stop_btn.visible = True
        self.say(f"refining {todo} box(es) with {self.session.engine.name} {self.session.engine.model} ...")
        worker = quiet_worker(self.session.refine, progress=self.reporter(self.refine_progress, self._refine_stop),
                               stop=self._refine_stop)
        worker.returned.connect(self._refined)
        worker.errored.connect(self._refine_failed)
        self._refine_worker = worker
        self._update_progress()
        worker.start()

    def stop_refining(self) -> None:
        """Stop after the batch in flight; what is refined stays (refine again for the rest)."""
        if self._refine_stop is not None:
            self._refine_stop.set()

    def _on_refine_progress(self, done: int, total: int) -> None:
        self._refine_counts = (done, total)
        self._update_progress()

    def _refine_finished(self) -> None:
        self._refine_worker = None
        self.refine_stop_btn.visible = False
        self._update_progress()
        self.refresh()

    def _refined(self, rep) -> None:
        self._refine_finished()
        stopped = " (stopped: refine again for the rest)" if rep.cancelled else ""
        self.say(f"refined {len(rep.refined)}, flagged {len(rep.flagged)} for review ({len(rep.empty)} empty masks "
                 f"stay box-only){stopped}; 'Next in filter' steps through the flagged")
        if rep.flagged:
            self.table_filter.value = "flagged for review"

    def _refine_failed(self, exc) -> None:
        self._refine_finished()
        self.say(f"refine stopped: {exc}")

    # -- stepping and deciding ----------------------------------------------------------------------------------
    def next_in_filter(self) -> None:
        """Go to the next flagged object (or disagreement, with that filter) in the project, opening its image."""
        if self.session is None:
            return
        after = (self.selected_ids() or [None])[0]
        kind = FILTERS.get(self.table_filter.value)
        nxt = self.session.next_disagreement(after) if kind == "disagreements" else self.session.next_flagged(after)
        if nxt is None:
            self.say("nothing to review" if kind != "disagreements" else "no disagreements wait for a decision")
            return
        index, oid = nxt
        if kind is None:
            self.table_filter.value = "flagged for review"
        if index != self.session.index:
            self._focus = oid
            self.show_image(index)
        else:
            self.focus_object(oid)

    def audit_image_shown(self) -> None:
        """Called once an image is shown: select the object stepped to, if any."""
        if self._focus is not None:
            oid, self._focus = self._focus, None
            self.focus_object(oid)

    def focus_object(self, oid: int) -> None:
        """Select the object's row and bring it into view."""
        for r in range(self.table.rowCount()):
            if self.table.item(r, 0).text() == str(oid):
                self.table.selectRow(r)
                self.jump_to_selected()
                ob = self.session.object(oid)
                why = self._focus_note or ob.review or mask_cell(ob)
                self._focus_note = None
                self.say(f"object {oid} ({ob.label or 'no label'}): {why}")
                return

    def next_by_value(self) -> None:
        """Go to the model-labelled object most worth a look (low confidence, the neighbours disagree, a rare
        class), the next one on each press, opening its image; the status line says why."""
        if self.session is None:
            return
        nxt = self.session.next_by_value((self.selected_ids() or [None])[0])
        if nxt is None:
            self.say("Nothing to review by value: no label from the model has a low confidence, a disagreement "
                     "with its neighbours or a rare class.")
            return
        index, oid, why = nxt
        self.table_filter.value = "all objects"
        self._focus_note = "; ".join(why)
        if index != self.session.index:
            self._focus = oid
            self.show_image(index)
        else:
            self.focus_object(oid)

    def _decide(self, action, what: str) -> None:
        ids = self.selected_ids()
        if not ids:
            self.say(f"select the object(s) to {what} in the table")
            return
        for oid in ids:
            try:
                action(oid)
            except ClickLabelError as exc:
                self.say(str(exc))
                break
        self.refresh()

    def fine_as_it_is(self) -> None:
        self._decide(self.session.resolve_review, "keep as they are")

    def use_preview_mask(self) -> None:
        """The selected object gets the mask of the prompt on screen (its old box is kept as the given box)."""
        self._decide(self.session.replace_mask, "give the preview's mask")
        self._clear_prompt_layers()

    def take_model_label(self) -> None:
        self._decide(self.session.accept_model_label, "relabel with the model's label")

    def keep_own_label(self) -> None:
        self._decide(self.session.keep_label, "keep the label of")
