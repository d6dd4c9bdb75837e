"""The widget's background labelling: a queue of object ids, one worker at a time, progress and stop."""

from __future__ import annotations

import os
import threading

from napari.qt.threading import create_worker
from napari.utils.notifications import show_info, show_warning


class LabellingMixin:
    """Part of ``ClickLabelWidget``: uses its session, status line, progress bar, stop button, LMM settings and
    its ``label_progress`` signal. The settings are the project's (``clicklabel label`` uses the same ones)."""

    def _load_settings(self) -> None:
        """Show the project's labelling settings in the fields."""
        st = self.session.label_settings
        self.lmm_model.value = st.lmm
        self.vocab.value = ", ".join(st.vocabulary)
        self.template.value = st.template or ""
        self.concurrency.value = st.concurrency

    def _settings_from_fields(self):
        """The fields as the project's settings (saved, so the CLI and the next session see them)."""
        vocab = [v.strip() for v in self.vocab.value.split(",") if v.strip()]
        st = self.session.label_settings.updated(lmm=self.lmm_model.value.strip() or None, vocabulary=vocab,
                                                 concurrency=int(self.concurrency.value))
        st.template = self.template.value or None
        self.session.save_label_settings(st)
        return st

    def _labeler(self):
        from clicklabel.label import LabelCache, Labeler

        settings = self._settings_from_fields()
        if self.labeler_factory is not None:
            return self.labeler_factory()
        return Labeler(settings.labeler_config(), LabelCache())

    def queue_labels(self, ids) -> None:
        """Label objects in the background; the boxes show 'labelling...' until each answer arrives."""
        self._label_queue.extend(ids)
        self._start_labelling()

    def label_pending(self) -> None:
        if self.session is not None:
            self.queue_labels([i for i in self.session.to_label() if i not in self._label_queue])

    def retry_failed(self) -> None:
        if self.session is not None:
            self.queue_labels(self.session.to_label(failed_only=True))

    def _start_labelling(self) -> None:
        if self._label_worker is not None or not self._label_queue:
            return
        if self.labeler_factory is None and not os.environ.get("OPENAI_API_KEY"):
            self.say("labels stay pending: set OPENAI_API_KEY (and OPENAI_BASE_URL for a local server), then press L")
            self._label_queue.clear()
            return
        ids, self._label_queue = list(dict.fromkeys(self._label_queue)), []
        labeler = self._labeler()
        labeler.client  # noqa: B018 - the HTTP client (and its TLS context) is made here, in the main thread
        self.say(f"labelling {len(ids)} object(s) with {labeler.config.lmm} ...")
        self._label_stop = threading.Event()
        self.stop_btn.visible = True
        self._label_counts = (0, len(ids))
        worker = create_worker(self.session.label, ids, labeler, progress=self.label_progress.emit,
                               stop=self._label_stop)
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
            self.say("stopping: waiting for the requests already sent ...")

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
        stopped = self._label_stop is not None and self._label_stop.is_set()
        self._label_finished()
        self.refresh()
        if stopped:
            self.say(f"labelling stopped: {summary.labelled} labelled, the rest stay pending (L sends them)")
            return
        if summary.failed:
            show_warning(f"{summary.failed} label(s) failed; 'Retry failed' sends them again")
        else:
            busy = f"; {summary.skipped} left to another labelling run" if summary.skipped else ""
            show_info(f"{summary.labelled} object(s) labelled (${summary.cost:.4f}){busy}")
        self._start_labelling()

    def _label_error(self, exc) -> None:
        self._label_finished()
        self.say(f"labelling stopped: {exc}")
        self.refresh()

