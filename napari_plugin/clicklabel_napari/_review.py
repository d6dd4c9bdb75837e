"""The Review panel: the auto-propose review mode.

P runs ``session.propose`` in a worker on the cached embedding (progress in the bar; Stop cancels and keeps what
was found), with the grid, area, count and score thresholds of the panel (the CLI's ``propose`` options). The
proposals of the image are shown on their own layer; one is highlighted at a time, largest first; A / X / S
accept, reject or skip it and move on; a click corrects the highlighted one (the session's ``correct``, asked by
the prompter through ``correction_target``) before Enter or A accepts it; "Accept all >= score" takes every
waiting proposal above the score. Accepted proposals become objects (provenance ``proposed``) and go to the
labeller; decisions are logged by the core for the comparison report."""

from __future__ import annotations

import threading

from magicgui.widgets import Container, FloatSpinBox, PushButton, SpinBox
from qtpy.QtWidgets import QLabel

from clicklabel.errors import ClickLabelError
from clicklabel.segment.propose import ProposeSettings

from ._controls import buttons, page, row
from ._find import FindPart
from ._proposal_layer import waiting_view

JOB = "proposing"


class ReviewPanel:
    """Owns the image's waiting proposals, which one is highlighted, and the proposing worker."""

    def __init__(self, bench, prompter):
        self.bench, self.prompter = bench, prompter
        self.proposed: list = []  # the image's waiting proposals, largest first
        self._at = 0  # index of the highlighted one in ``proposed``
        self.reviewing = False  # keys and clicks act on the highlighted proposal
        self._worker = None
        self._stop: threading.Event | None = None
        self.settings: ProposeSettings | None = None  # tests and benchmarks: settings beyond the fields
        d = ProposeSettings()
        self.grid = SpinBox(label="grid", value=d.grid, min=4, max=128,
                            tooltip="points per side of the grid SAM is asked at")
        self.min_area = SpinBox(label="min area", value=0, min=0, max=10_000_000, tooltip="smallest proposal, pixels")
        self.max_props = SpinBox(label="at most", value=200, min=0, max=100_000, tooltip="0: no limit; best first")
        self.min_score = FloatSpinBox(label="min score", value=d.pred_iou_thresh, min=0.0, max=1.0, step=0.01,
                                      tooltip="SAM's predicted IoU a proposal needs (0: keep all; "
                                              "clicklabel propose --pred-iou-thresh)")
        self.stability = FloatSpinBox(label="min stability", value=d.stability_thresh, min=0.0, max=1.0, step=0.01,
                                      tooltip="how stable the mask is under a change of threshold (0: keep all; "
                                              "clicklabel propose --stability-thresh)")
        self.propose_btn = PushButton(text="Propose (P)")
        self.accept_btn, self.reject_btn, self.skip_btn = PushButton(text="Accept (A)"), \
            PushButton(text="Reject (X)"), PushButton(text="Skip (S)")
        self.threshold = FloatSpinBox(label="score", value=0.90, min=0.0, max=1.0, step=0.01)
        self.above_btn = PushButton(text="Accept all >= score")
        self.info = QLabel("No proposals yet: Propose asks SAM for every object of this image.")
        self.info.setWordWrap(True)
        self.finder = FindPart(bench, self)
        fields = Container(widgets=[self.grid, self.min_area, self.max_props, self.min_score, self.stability])
        self.page = page(*self.finder.parts, fields, self.propose_btn,
                         row(self.accept_btn, self.reject_btn, self.skip_btn), row(self.threshold, self.above_btn),
                         self.info)
        buttons(bench, [(self.propose_btn, self.propose), (self.accept_btn, lambda: self.decide(True)),
                        (self.reject_btn, lambda: self.decide(False)), (self.skip_btn, self.skip),
                        (self.above_btn, self.accept_all_above)])
        self.threshold.changed.connect(lambda *_: self.show_info())
        bench.changed.connect(self.reload)

    def say(self, text: str) -> None:
        self.bench.say(text)

    @property
    def session(self):
        return self.bench.session

    @property
    def highlighted(self):
        return self.proposed[self._at] if self.reviewing and self.proposed else None

    @property
    def proposing(self) -> bool:
        return self._worker is not None

    def correction_target(self):
        """The proposal a click now corrects (the highlighted one), or None."""
        return self.highlighted

    def propose_settings(self) -> ProposeSettings:
        """The fields as settings (or the ones a test or benchmark set)."""
        return self.settings or ProposeSettings(
            grid=int(self.grid.value), min_area=int(self.min_area.value),
            max_proposals=int(self.max_props.value) or None, pred_iou_thresh=float(self.min_score.value),
            stability_thresh=float(self.stability.value))

    # -- proposing -----------------------------------------------------------------------------------------------
    def propose(self) -> None:
        """P: propose every object of this image in the background (or go back to the waiting proposals)."""
        if not self.bench.ready():
            self.say("Open an image first: proposals are made for the image shown.")
            return
        if self._worker is not None or self.finder.finding:
            self.say("Proposing already: see the bar (Stop ends it and keeps what was found).")
            return
        if self.proposed and not self.reviewing:
            self._review_from(0)
            return
        settings = self.propose_settings()
        self._stop = stop = threading.Event()
        report = self.bench.reporter(JOB, stop)
        self.say(f"SAM is proposing objects on a {settings.grid}x{settings.grid} grid (Stop ends it) ...")
        self._worker = self.bench.start_job(
            JOB, JOB, self._propose_in_worker, settings, report, stop, done=self._proposed, failed=self._failed,
            total=1, cancel=lambda: self._stopping(stop), prompts=False,
            lock="SAM is proposing objects for this image: wait, or press Stop, before changing images.")

    def _stopping(self, stop: threading.Event) -> None:
        stop.set()
        self.say("Stopping the proposals: those found so far are kept ...")

    def _propose_in_worker(self, settings, progress, stop):
        report = self.session.propose(settings, progress=progress, stop=stop)
        waiting = self.session.proposals()
        return report, waiting, waiting_view(waiting, self.session.image.shape[:2]), settings

    def _done(self) -> None:
        self._worker = self._stop = None
        self.bench.end_job(JOB)

    def _failed(self, exc) -> None:
        self._done()
        self.say(str(exc) if isinstance(exc, ClickLabelError) else f"proposing failed: {exc}")

    def _proposed(self, result) -> None:
        report, waiting, (crops, drawn), settings = result
        self._done()
        if self.session is None or (waiting and waiting[0].image_id != self.session.current.id):
            return  # another image is shown by now; its own proposals show when it is opened again
        self.show_waiting(waiting, crops, drawn)
        stopped = " (stopped early)" if report.cancelled else ""
        if not waiting:
            self.say(f"SAM proposed nothing here{stopped}: {self._why_none(settings)}")
            return
        self._review_from(0, f"{len(report.proposed)} new proposal(s){stopped}. ")

    def _why_none(self, settings: ProposeSettings) -> str:
        """Why no proposal came, in the panel's terms."""
        if self.session.objects():
            return ("objects already accepted are not proposed again, and the rest did not pass the thresholds "
                    "(lower min score / min stability / min area in this tab, or click the objects).")
        return (f"no mask passed the thresholds (min score {settings.pred_iou_thresh:.2f}, min stability "
                f"{settings.stability_thresh:.2f}, min area {settings.min_area}): lower them in this tab, or click "
                "the objects.")

    def show_waiting(self, waiting, crops, drawn=None) -> None:
        """The image's waiting proposals on their layer (review paused until P); ``drawn``: the layer's planes,
        when a worker made them (``waiting_view``)."""
        for oid, (counts, crop) in crops.items():
            self.bench.layers.remember(oid, counts, crop)
        self.proposed = list(waiting)
        self.bench.layers.show_proposals({oid: crop for oid, (_, crop) in crops.items() if crop is not None},
                                         {ob.id: ob.label for ob in waiting if ob.provenance == "concept"}, drawn)
        self.reviewing = False
        self._at = 0
        self.show_info()

    # -- reviewing -----------------------------------------------------------------------------------------------
    def review_from(self, at: int, prefix: str = "") -> None:
        """Highlight waiting proposal ``at`` and review from there; ``prefix`` goes before what the status says."""
        self._review_from(at, prefix)

    def _review_from(self, at: int, prefix: str = "") -> None:
        self.reviewing = bool(self.proposed)
        if not self.reviewing:
            self.bench.layers.highlight(None)
            self.say(prefix + "No proposals wait here: click objects, or P to propose.")
            self.show_info()
            return
        self._at = at % len(self.proposed)
        ob = self.proposed[self._at]
        self.bench.layers.highlight(ob.id)
        score = f"score {ob.score:.3f}, " if ob.score is not None else ""
        self.say(f"{prefix}Proposal {self._at + 1} of {len(self.proposed)} (#{ob.id}: {score}area {ob.area}): "
                 "A accepts, X rejects, S skips, a click corrects it.")
        self.show_info()

    def decide(self, accept: bool) -> int | None:
        """A / X: accept or reject the highlighted proposal (a corrected one is accepted with its new mask)."""
        if not self.reviewing or not self.proposed:
            self.say("No proposal is highlighted: P proposes objects (or comes back to the waiting ones).")
            return None
        if accept and self.session.state.proposal is not None:
            return self.prompter.accept()  # the proposal as corrected by clicks
        ob = self.proposed[self._at]
        try:
            self.session.decide(ob.id, accept)
        except ClickLabelError as exc:
            self.say(str(exc))
            return None
        if self.session.state.preview is None:
            self.prompter.clear_prompt()
        self.after_decision(ob.id, accepted=accept)
        if accept:
            self.bench.accepted.emit([ob.id], False)
        return ob.id

    def after_decision(self, object_id: int, accepted: bool) -> None:
        """Draw a decision at the cost of the proposal's box, highlight the next one; the table and boxes follow
        once the canvas shows it."""
        at = next((i for i, ob in enumerate(self.proposed) if ob.id == object_id), self._at)
        self.proposed = [ob for ob in self.proposed if ob.id != object_id]
        self.bench.layers.drop_proposal(object_id)
        if accepted:
            self.bench.layers.add_object(self.session.object(object_id))
        verb = "accepted" if accepted else "rejected"
        self._review_from(at, f"#{object_id} {verb}. ")
        self.bench.after_draw(self.bench.changed.emit)

    def skip(self) -> None:
        """S: highlight the next proposal (the skipped one stays waiting); after the last, the first again."""
        if not self.proposed:
            self.say("Nothing to skip: P proposes objects.")
            return
        if self.session.state.proposal is not None:
            self.session.clear()
            self.prompter.clear_prompt()
        if not self.reviewing:
            self._review_from(self._at)
            return
        last = self._at + 1 >= len(self.proposed)
        self._review_from(self._at + 1, "That was the last proposal: back to the first. " if last and
                          len(self.proposed) > 1 else "Only this proposal waits. " if last else "")

    def accept_all_above(self) -> list[int]:
        """Accept every waiting proposal of this image scoring at least the score field."""
        if not self.proposed:
            self.say("No proposals wait here: P proposes objects.")
            return []
        score = float(self.threshold.value)
        ids = self.session.accept_above(score)
        if self.session.state.proposal is not None and self.session.state.proposal.id in ids:
            self.session.clear()
            self.prompter.clear_prompt()
        for oid in ids:
            self.bench.layers.drop_proposal(oid)
        self.proposed = [ob for ob in self.proposed if ob.id not in set(ids)]
        self._review_from(0 if self.reviewing else self._at, f"{len(ids)} proposal(s) with score >= {score:.2f} "
                          "accepted. ")
        if not self.reviewing:
            self.bench.layers.highlight(None)
        self.bench.changed.emit()
        if ids:
            self.bench.accepted.emit(ids, False)
        return ids

    def leave_step(self) -> bool:
        """Esc in review mode: drop the correction in progress, else pause the review; False when not reviewing."""
        if not self.reviewing:
            return False
        if self.session.state.proposal is not None or not self.prompter.current_prompt().empty:
            self.session.clear()
            self.prompter.clear_prompt()
            self._review_from(self._at, "Correction dropped. ")
            return True
        self.reviewing = False
        self.bench.layers.highlight(None)
        self.say(f"Review paused: {len(self.proposed)} proposal(s) still wait (P comes back to them); clicks make "
                 "new objects.")
        self.show_info()
        return True

    def reload(self, force: bool = False) -> None:
        """The store changed (undo, redo, a decision elsewhere): the waiting proposals again from the session
        (crops kept from before); ``force``: redraw them even when they are the same."""
        s = self.session
        if s is None or s.image is None:
            return
        waiting = s.proposals()
        if not force and {ob.id for ob in waiting} == {ob.id for ob in self.proposed}:
            return  # the same ones (in the order they are reviewed: the found classes' differs)
        crops = {ob.id: (ob.rle["counts"], self.bench.layers.crop(ob)) for ob in waiting}
        was, at = self.reviewing, self._at
        self.show_waiting(waiting, crops)
        if was and waiting:
            self._review_from(min(at, len(waiting) - 1))

    def show_info(self) -> None:
        n = len(self.proposed)
        self.bench.count("proposals", f"{n} proposal(s) waiting" if n else "")
        if not n:
            self.info.setText("No proposals wait on this image: Propose asks SAM for every object.")
            return
        score = float(self.threshold.value)
        above = sum(1 for ob in self.proposed if ob.score is not None and ob.score >= score)
        state = f"reviewing {self._at + 1} of {n}" if self.reviewing else "paused (P resumes)"
        self.info.setText(f"{n} proposal(s) wait, {state}; {above} score >= {score:.2f}.")
