"""Part of the widget: the auto-propose review mode.

P runs ``session.propose`` in a worker on the cached embedding (progress in the widget's bar; Stop cancels and
keeps what was found). The proposals of the image are shown on their own layer; one is highlighted at a time,
largest first; A / X / S accept, reject or skip it and move on; a click corrects the highlighted one (the session's
``correct``) before Enter or A accepts it; "Accept all >= score" takes every waiting proposal above the score.
Accepted proposals become objects (provenance ``proposed``) and go to the labeller; decisions are logged by the
core for the comparison report."""

from __future__ import annotations

import threading

from clicklabel.errors import ClickLabelError
from clicklabel.segment.propose import ProposeSettings

from ._layers import crop_of
from ._workers import quiet_worker


def _crops(proposals) -> dict:
    """Worker thread: each proposal's crop (its mask decoded once)."""
    return {ob.id: (ob.rle["counts"], crop_of(ob.mask)) for ob in proposals}


class ReviewMixin:
    """Uses the widget's session, layers, progress bar, ``say``, ``refresh`` and ``queue_labels``."""

    def _init_review(self) -> None:
        self.proposed: list = []  # the image's waiting proposals, largest first
        self._at = 0  # index of the highlighted one in ``proposed``
        self.reviewing = False  # keys and clicks act on the highlighted proposal
        self._propose_worker = None
        self._propose_stop: threading.Event | None = None
        self.propose_settings: ProposeSettings | None = None  # tests and benchmarks: settings beyond the fields

    @property
    def highlighted(self):
        return self.proposed[self._at] if self.reviewing and self.proposed else None

    # -- proposing -----------------------------------------------------------------------------------------------
    def propose(self) -> None:
        """P: propose every object of this image in the background (or go back to the waiting proposals)."""
        if not self._ready():
            self.say("Open an image first: proposals are made for the image shown.")
            return
        if self._propose_worker is not None:
            self.say("Proposing already: see the bar (Stop ends it and keeps what was found).")
            return
        if self.proposed and not self.reviewing:
            self._review_from(0)
            return
        settings = self.propose_settings or ProposeSettings(
            grid=int(self.grid.value), min_area=int(self.min_area.value),
            max_proposals=int(self.max_props.value) or None)
        self._propose_stop = threading.Event()
        report = self.reporter(self.task_progress, self._propose_stop)
        self._propose_worker = quiet_worker(self._propose_in_worker, settings, report, self._propose_stop)
        self._propose_worker.returned.connect(self._proposed)
        self._propose_worker.errored.connect(self._propose_failed)
        self.task_progress.emit(0, 1)
        self.say(f"SAM is proposing objects on a {settings.grid}x{settings.grid} grid (Stop ends it) ...")
        self._update_progress()
        self._propose_worker.start()

    def _propose_in_worker(self, settings, progress, stop):
        report = self.session.propose(settings, progress=progress, stop=stop)
        waiting = self.session.proposals()
        return report, waiting, _crops(waiting)

    def _propose_done(self) -> None:
        self._propose_worker = None
        self._propose_stop = None
        self._update_progress()

    def _propose_failed(self, exc) -> None:
        self._propose_done()
        self.say(str(exc) if isinstance(exc, ClickLabelError) else f"proposing failed: {exc}")

    def _proposed(self, result) -> None:
        report, waiting, crops = result
        self._propose_done()
        if self.session is None or (waiting and waiting[0].image_id != self.session.current.id):
            return  # another image is shown by now; its own proposals show when it is opened again
        self.show_waiting(waiting, crops)
        stopped = " (stopped early)" if report.cancelled else ""
        if not waiting:
            self.say(f"SAM proposed nothing new here{stopped}: objects already accepted are not proposed again.")
            return
        self._review_from(0, f"{len(report.proposed)} new proposal(s){stopped}. ")

    def show_waiting(self, waiting, crops) -> None:
        """The image's waiting proposals on their layer (review paused until P)."""
        for oid, (counts, crop) in crops.items():
            self.layers.remember(oid, counts, crop)
        self.proposed = list(waiting)
        self.layers.show_proposals({oid: crop for oid, (_, crop) in crops.items() if crop is not None})
        self.reviewing = False
        self._at = 0
        self.show_review_info()

    # -- reviewing -----------------------------------------------------------------------------------------------
    def _review_from(self, at: int, prefix: str = "") -> None:
        self.reviewing = bool(self.proposed)
        if not self.reviewing:
            self.layers.highlight(None)
            self.say(prefix + "No proposals wait here: click objects, or P to propose.")
            self.show_review_info()
            return
        self._at = at % len(self.proposed)
        ob = self.proposed[self._at]
        self.layers.highlight(ob.id)
        score = f"score {ob.score:.3f}, " if ob.score is not None else ""
        self.say(f"{prefix}Proposal {self._at + 1} of {len(self.proposed)} (#{ob.id}: {score}area {ob.area}): "
                 "A accepts, X rejects, S skips, a click corrects it.")
        self.show_review_info()

    def decide(self, accept: bool) -> int | None:
        """A / X: accept or reject the highlighted proposal (a corrected one is accepted with its new mask)."""
        if not self.reviewing or not self.proposed:
            self.say("No proposal is highlighted: P proposes objects (or comes back to the waiting ones).")
            return None
        if accept and self.session.state.proposal is not None:
            return self.accept()  # the proposal as corrected by clicks
        ob = self.proposed[self._at]
        try:
            self.session.decide(ob.id, accept)
        except ClickLabelError as exc:
            self.say(str(exc))
            return None
        if self.session.state.preview is None:
            self._clear_prompt_layers()
        self.after_decision(ob.id, accepted=accept)
        if accept and self.auto_label:
            self.queue_labels([ob.id], now=False)
        return ob.id

    def after_decision(self, object_id: int, accepted: bool) -> None:
        """Draw a decision at the cost of the proposal's box, highlight the next one; the table and boxes follow
        once the canvas shows it."""
        at = next((i for i, ob in enumerate(self.proposed) if ob.id == object_id), self._at)
        self.proposed = [ob for ob in self.proposed if ob.id != object_id]
        self.layers.drop_proposal(object_id)
        if accepted:
            self.layers.add_object(self.session.object(object_id))
        verb = "accepted" if accepted else "rejected"
        self._review_from(at, f"#{object_id} {verb}. ")
        self.after_draw(self.refresh)

    def skip(self) -> None:
        """S: highlight the next proposal (the skipped one stays waiting)."""
        if not self.proposed:
            self.say("Nothing to skip: P proposes objects.")
            return
        if self.session.state.proposal is not None:
            self.session.clear()
            self._clear_prompt_layers()
        self._review_from(self._at + 1 if self.reviewing else self._at)

    def accept_all_above(self) -> list[int]:
        """Accept every waiting proposal of this image scoring at least the score field."""
        if not self.proposed:
            self.say("No proposals wait here: P proposes objects.")
            return []
        score = float(self.threshold.value)
        ids = self.session.accept_above(score)
        if self.session.state.proposal is not None and self.session.state.proposal.id in ids:
            self.session.clear()
            self._clear_prompt_layers()
        for oid in ids:
            self.layers.drop_proposal(oid)
        self.proposed = [ob for ob in self.proposed if ob.id not in set(ids)]
        self.refresh()
        self._review_from(0 if self.reviewing else self._at, f"{len(ids)} proposal(s) with score >= {score:.2f} "
                          "accepted. ")
        if not self.reviewing:
            self.layers.highlight(None)
        if ids and self.auto_label:
            self.queue_labels(ids, now=False)
        return ids

    def _correct_before_prompt(self) -> None:
        """A click in review mode corrects the highlighted proposal."""
        ob = self.highlighted
        st = self.session.state
        if ob is not None and (st.proposal is None or st.proposal.id != ob.id):
            self.session.correct(ob.id)

    def leave_review_step(self) -> bool:
        """Esc in review mode: drop the correction in progress, else pause the review; False when not reviewing."""
        if not self.reviewing:
            return False
        if self.session.state.proposal is not None or not self.current_prompt().empty:
            self.session.clear()
            self._clear_prompt_layers()
            self._review_from(self._at, "Correction dropped. ")
            return True
        self.reviewing = False
        self.layers.highlight(None)
        self.say(f"Review paused: {len(self.proposed)} proposal(s) still wait (P comes back to them); clicks make "
                 "new objects.")
        self.show_review_info()
        return True

    def reload_proposals(self) -> None:
        """After undo / redo: the waiting proposals again from the session (crops kept from before)."""
        if self.session is None or self.session.image is None:
            return
        waiting = self.session.proposals()
        if [ob.id for ob in waiting] == [ob.id for ob in self.proposed]:
            return
        crops = {ob.id: (ob.rle["counts"], self.layers.crop(ob)) for ob in waiting}
        was = self.reviewing
        self.show_waiting(waiting, crops)
        if was and waiting:
            self._review_from(0)

    def show_review_info(self) -> None:
        n = len(self.proposed)
        if not n:
            self.review_info.setText("No proposals wait on this image: Propose asks SAM for every object.")
            return
        score = float(self.threshold.value)
        above = sum(1 for ob in self.proposed if ob.score is not None and ob.score >= score)
        state = "reviewing" if self.reviewing else "paused (P resumes)"
        self.review_info.setText(f"{n} proposal(s) wait, {state}; {above} score >= {score:.2f}.")
