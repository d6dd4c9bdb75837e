"""The widget's background labelling: a queue of object ids, one worker at a time, progress and stop."""

from __future__ import annotations

import os
import threading

from napari.qt.threading import create_worker
from napari.utils.notifications import show_info, show_warning


class LabellingMixin:
    """Part of ``ClickLabelWidget``: uses its store, status line, progress bar, stop button, LMM settings and
    its ``label_progress`` signal."""

    def _labeler(self):
        from clicklabel.label import CropSettings, LabelCache, Labeler, LabelerConfig

        if self.labeler_factory is not None:
            return self.labeler_factory()
        vocab = [v.strip() for v in self.vocab.value.split(",") if v.strip()] or None
        cfg = LabelerConfig(model=self.lmm_model.value, vocabulary=vocab, template=self.template.value or None,
                            concurrency=int(self.concurrency.value), crop=CropSettings())
        return Labeler(cfg, LabelCache())

    def queue_labels(self, ids) -> None:
        """Label objects in the background; the boxes show 'labelling...' until each answer arrives."""
        self._label_queue.extend(ids)
        self._start_labelling()

    def label_pending(self) -> None:
        if self.store is not None:
            from clicklabel.label import objects_to_label

            self.queue_labels([i for i in objects_to_label(self.store) if i not in self._label_queue])

    def retry_failed(self) -> None:
        if self.store is not None:
            self.queue_labels([o.id for o in self.store.objects(label_status=["failed"])])

    def _start_labelling(self) -> None:
        from clicklabel.label import label_objects

        if self._label_worker is not None or not self._label_queue:
            return
        if self.labeler_factory is None and not os.environ.get("OPENAI_API_KEY"):
            self.say("labels stay pending: set OPENAI_API_KEY (and OPENAI_BASE_URL for a local server), then press L")
            self._label_queue.clear()
            return
        ids, self._label_queue = list(dict.fromkeys(self._label_queue)), []
        labeler = self._labeler()
        labeler.client  # noqa: B018 - the HTTP client (and its TLS context) is made here, in the main thread
        self.say(f"labelling {len(ids)} object(s) with {labeler.config.model} ...")
        self._label_stop = threading.Event()
        self.stop_btn.visible = True
        self._label_counts = (0, len(ids))
        worker = create_worker(label_objects, self.store, ids, labeler, progress=self.label_progress.emit,
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
            show_info(f"{summary.labelled} object(s) labelled (${summary.cost:.4f})")
        self._start_labelling()

    def _label_error(self, exc) -> None:
        self._label_finished()
        self.say(f"labelling stopped: {exc}")
        self.refresh()

