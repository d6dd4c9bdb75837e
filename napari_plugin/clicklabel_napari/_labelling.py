"""The widget's background labelling: a queue of object ids, one worker at a time, progress and stop."""

from __future__ import annotations

import os
import threading

from napari.utils.notifications import show_info, show_warning

from ._workers import quiet_worker


class LabellingMixin:
    """Part of ``ClickLabelWidget``: uses its session, status line, progress bar, stop button, LMM settings and
    its ``label_progress`` signal. The settings are the project's (``clicklabel label`` uses the same ones).
    Labelling reports in the progress bar (and a notification when a run ends), never in the status line, whose
    text belongs to what the annotator is doing now."""

    def _init_labelling(self) -> None:
        self._label_queue: list[int] = []
        self._label_worker = None
        self._label_stop: threading.Event | None = None
        self._label_counts = (0, 0)
        self._told_no_key = False
        self._label_cost = 0.0  # dollars spent on labels in this session
        self._label_cache = None  # opened once (SQLite, WAL): 0.18 s in the UI thread at every accept otherwise

    def _load_settings(self) -> None:
        """Show the project's labelling settings in the fields."""
        st = self.session.label_settings
        self.lmm_model.value = st.lmm
        self.vocab.value = ", ".join(st.vocabulary)
        self.template.value = st.template or ""
        self.concurrency.value = st.concurrency
        self.few_shot.value = st.few_shot

    def _settings_from_fields(self):
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

        settings = self._settings_from_fields()
        if self.labeler_factory is not None:
            return self.labeler_factory()
        if self._label_cache is None:
            self._label_cache = LabelCache()
        return Labeler(settings.labeler_config(), self._label_cache)

    def queue_labels(self, ids, now: bool = True) -> None:
        """Label objects in the background; the boxes say 'label pending' until each answer arrives. Objects just
        accepted (``now=False``) are sent once they are on screen: their crops and the request's set-up shared the
        cores with that frame (software OpenGL draws on the CPU)."""
        self._label_queue.extend(ids)
        if now:
            self._start_labelling()
        else:
            self.after_draw(self._start_labelling)

    def label_pending(self) -> None:
        """L: send every object still without a label."""
        if self.session is None:
            self.say("Open a project first.")
            return
        ids = [i for i in self.session.to_label() if i not in self._label_queue]
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

    def _start_labelling(self) -> None:
        if self._label_worker is not None or not self._label_queue:
            return
        if self.labeler_factory is None and not os.environ.get("OPENAI_API_KEY"):
            self._label_queue.clear()
            if not self._told_no_key:  # once: the objects are kept, their labels wait
                self._told_no_key = True
                show_info("Labels stay pending: set OPENAI_API_KEY (and OPENAI_BASE_URL for a local server) before "
                          "starting napari, then press L")
            return
        ids, self._label_queue = list(dict.fromkeys(self._label_queue)), []
        labeler = self._labeler()
        labeler.client  # noqa: B018 - made here, in the main thread (the SDK's lazy imports are done: warm_up)
        self._label_stop = threading.Event()
        self.stop_btn.visible = True
        self._label_counts = (0, len(ids))
        progress = self.reporter(self.label_progress, self._label_stop)
        worker = quiet_worker(self.session.label, ids, labeler, progress=progress, stop=self._label_stop)
        worker.returned.connect(self._labelled)
        worker.errored.connect(self._label_error)
        self._label_worker = worker
        self._update_progress()
        worker.start()

    def stop_labelling(self) -> None:
        """Stop sending crops; answers already received are stored, the rest stay pending (L sends them)."""
        self._label_queue.clear()
        if self._label_stop is not None:
            self._label_stop.set()
            self.say("Stopping the labelling: waiting for the requests already sent ...")

    def _on_label_progress(self, done: int, total: int) -> None:
        if self._label_worker is not None:
            self._label_counts = (done, total)
            self._update_progress()

    def _label_finished(self) -> None:
        self._label_worker = None
        self._label_stop = None
        self.stop_btn.visible = False
        self._update_progress()

    def _labelled(self, summary) -> None:
        if self.hold_for_answer(lambda: self._labelled(summary)):  # a click's mask is drawn before these labels
            return
        stopped = self._label_stop is not None and self._label_stop.is_set()
        self._label_finished()
        self.refresh()
        if stopped:
            self.say(f"Labelling stopped: {summary.labelled} labelled, the rest stay pending (L sends them).")
            return
        # Labels that arrive show on their boxes and in the counter line; only failures are worth a notification.
        self._label_cost += summary.cost
        if self.status.text().startswith("Labelling ") and not self._label_queue:  # L's own text, now answered
            self.say(f"Labelled {summary.labelled} object(s)" +
                     (f"; {summary.failed} failed ('Retry failed' sends them again)." if summary.failed else "."))
        if summary.failed:
            show_warning(f"{summary.failed} label(s) failed; 'Retry failed' (Labels tab) sends them again")
        self._start_labelling()

    def _label_error(self, exc) -> None:
        self._label_finished()
        self.say(f"Labelling stopped: {exc}")
        self.refresh()

