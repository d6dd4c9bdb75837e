"""The Labels panel: the project's labelling settings, and background labelling (a queue of object ids, one worker
at a time, progress and Stop on the bar). The settings are the project's (``clicklabel label`` uses the same
ones). Labelling reports in the progress bar (and a notification when labels fail), never in the status line,
whose text belongs to what the annotator is doing now."""

from __future__ import annotations

import os
import threading

from magicgui.widgets import Container, LineEdit, PushButton, SpinBox
from napari.utils.notifications import show_info, show_warning

from ._controls import buttons, page, row

JOB = "labelling"


class LabelsPanel:
    """Owns the labelling queue, its worker and the money spent; ``goto(image index, object id, note)`` shows an
    object (the Annotate panel's)."""

    def __init__(self, bench, prompter, goto, labeler_factory=None, auto_label: bool = True):
        self.bench, self.prompter, self.goto = bench, prompter, goto
        self.labeler_factory = labeler_factory  # callable -> Labeler, for tests and custom setups
        self.auto_label = auto_label
        self._queue: list[int] = []
        self._worker = None
        self._stop: threading.Event | None = None
        self._told_no_key = False
        self._cost = 0.0  # dollars spent on labels while the widget lives
        self._last_value: int | None = None  # the object "Next by value" went to last
        self._cache = None  # opened once (SQLite, WAL): 0.18 s in the UI thread at every accept otherwise
        self.lmm_model = LineEdit(label="LMM model", value=os.environ.get("CLICKLABEL_LMM_MODEL", "gpt-4o-mini"))
        self.vocab = LineEdit(label="vocabulary", value="")
        self.template = LineEdit(label="prompt", value="")
        self.concurrency = SpinBox(label="concurrency", value=8, min=1, max=64)
        self.few_shot = SpinBox(label="examples", value=0, min=0, max=16,
                                tooltip="few-shot: the most similar objects whose label you typed or confirmed go "
                                        "with each crop, with their labels (0: none)")
        self.label_btn, self.retry_btn = PushButton(text="Label pending (L)"), PushButton(text="Retry failed")
        self.value_btn = PushButton(text="Next by value",
                                    tooltip="the model's label most worth a look: low confidence, the most similar "
                                            "objects you confirmed say otherwise, or a rare class "
                                            "(clicklabel review-order)")
        fields = Container(widgets=[self.lmm_model, self.vocab, self.template, self.concurrency, self.few_shot])
        self.page = page(fields, row(self.label_btn, self.retry_btn), self.value_btn)
        buttons(bench, [(self.label_btn, self.label_pending), (self.retry_btn, self.retry_failed),
                        (self.value_btn, self.next_by_value)])
        bench.accepted.connect(self._accepted)

    @property
    def session(self):
        return self.bench.session

    @property
    def running(self) -> bool:
        return self._worker is not None

    def say(self, text: str) -> None:
        self.bench.say(text)

    # -- settings --------------------------------------------------------------------------------------------------
    def load_settings(self) -> None:
        """Show the project's labelling settings in the fields."""
        st = self.session.label_settings
        self.lmm_model.value = st.lmm
        self.vocab.value = ", ".join(st.vocabulary)
        self.template.value = st.template or ""
        self.concurrency.value = st.concurrency
        self.few_shot.value = st.few_shot

    def settings_from_fields(self):
        """The fields as the project's settings (saved, so the CLI and the next session see them)."""
        vocab = [v.strip() for v in self.vocab.value.split(",") if v.strip()]
        st = self.session.label_settings.updated(lmm=self.lmm_model.value.strip() or None, vocabulary=vocab,
                                                 concurrency=int(self.concurrency.value),
                                                 few_shot=int(self.few_shot.value))
        st.template = self.template.value or None
        self.session.save_label_settings(st)
        return st

    def _labeler(self):
        from clicklabel.label import LabelCache, Labeler

        settings = self.settings_from_fields()
        if self.labeler_factory is not None:
            return self.labeler_factory()
        if self._cache is None:
            self._cache = LabelCache()
        return Labeler(settings.labeler_config(), self._cache)

    # -- the queue ---------------------------------------------------------------------------------------------
    def _accepted(self, ids, now: bool) -> None:
        """Objects just accepted: those still without a label are labelled (a found class came with its own)."""
        if self.auto_label and self.session is not None:
            ids = [i for i in ids if self.session.object(i).label_status in ("pending", "failed")]
            if ids:
                self.queue_labels(ids, now)

    def queue_labels(self, ids, now: bool = True) -> None:
        """Label objects in the background; the boxes say 'label pending' until each answer arrives. Objects just
        accepted (``now=False``) are sent once they are on screen: their crops and the request's set-up shared the
        cores with that frame (software OpenGL draws on the CPU)."""
        self._queue.extend(ids)
        if now:
            self._start()
        else:
            self.bench.after_draw(self._start)

    def label_pending(self) -> None:
        """L: send every object still without a label."""
        if self.session is None:
            self.say("Open a project first.")
            return
        ids = [i for i in self.session.to_label() if i not in self._queue]
        if not ids:
            self.say("Every object has a label or is being labelled.")
        elif self.labeler_factory is None and not os.environ.get("OPENAI_API_KEY"):
            self.say(f"{len(ids)} object(s) wait for a label, but no language model is set up: start napari with "
                     "OPENAI_API_KEY set (and OPENAI_BASE_URL for a local server).")
            return
        else:
            self.say(f"Labelling {len(ids)} object(s) in the background (see the bar).")
        self.queue_labels(ids)

    def retry_failed(self) -> None:
        if self.session is None:
            self.say("Open a project first.")
            return
        ids = self.session.to_label(failed_only=True)
        self.say(f"Sending {len(ids)} failed label(s) again." if ids else "No label failed.")
        self.queue_labels(ids)

    def _start(self) -> None:
        if self._worker is not None or not self._queue or self.session is None:
            return
        if self.labeler_factory is None and not os.environ.get("OPENAI_API_KEY"):
            self._queue.clear()
            if not self._told_no_key:  # once: the objects are kept, their labels wait
                self._told_no_key = True
                show_info("Labels stay pending: set OPENAI_API_KEY (and OPENAI_BASE_URL for a local server) before "
                          "starting napari, then press L")
            return
        ids, self._queue = list(dict.fromkeys(self._queue)), []
        labeler = self._labeler()
        labeler.client  # noqa: B018 - made here, in the main thread (the SDK's lazy imports are done: warm_up)
        self._stop = stop = threading.Event()
        self._worker = self.bench.start_job(JOB, JOB, self.session.label, ids, labeler,
                                            progress=self.bench.reporter(JOB, stop), stop=stop,
                                            done=self._labelled, failed=self._error, total=len(ids), cancel=self.stop)

    def stop(self) -> None:
        """Stop sending crops; answers already received are stored, the rest stay pending (L sends them)."""
        self._queue.clear()
        if self._stop is not None:
            self._stop.set()
            self.say("Stopping the labelling: waiting for the requests already sent ...")

    def _finished(self) -> None:
        self._worker = None
        self._stop = None
        self.bench.end_job(JOB)

    def _labelled(self, summary) -> None:
        if self.prompter.hold_for_answer(lambda: self._labelled(summary)):  # a click's mask is drawn first
            return
        stopped = self._stop is not None and self._stop.is_set()
        self._finished()
        self.bench.changed.emit()
        if stopped:
            self.say(f"Labelling stopped: {summary.labelled} labelled, the rest stay pending (L sends them).")
            return
        # Labels that arrive show on their boxes and in the counter line; only failures are worth a notification.
        self._cost += summary.cost
        if self._cost >= 0.00005:  # (a local server's answers cost nothing)
            self.bench.count("labels", f"labels cost ${self._cost:.4f} so far")
        if self.bench.status.text().startswith("Labelling ") and not self._queue:  # L's own text, now answered
            self.say(f"Labelled {summary.labelled} object(s)" +
                     (f"; {summary.failed} failed ('Retry failed' sends them again)." if summary.failed else "."))
        if summary.failed:
            show_warning(f"{summary.failed} label(s) failed; 'Retry failed' (Labels tab) sends them again")
        self._start()

    def _error(self, exc) -> None:
        self._finished()
        self.say(f"Labelling stopped: {exc}")
        self.bench.changed.emit()

    # -- review by value -------------------------------------------------------------------------------------------
    def next_by_value(self) -> None:
        """Go to the model-labelled object most worth a look (low confidence, the neighbours disagree, a rare
        class), the next one on each press, opening its image; the status line says why."""
        if self.session is None:
            self.say("Open a project first.")
            return
        nxt = self.session.next_by_value(self._last_value)
        if nxt is None:
            self.say("Nothing to review by value: no label from the model has a low confidence, a disagreement "
                     "with its neighbours or a rare class.")
            return
        index, oid, why = nxt
        self._last_value = oid
        self.goto(index, oid, "; ".join(why))
