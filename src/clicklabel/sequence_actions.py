"""The annotation session's sequence actions (a part of ``annotate.AnnotationSession``): follow an object accepted
on a frame through its sequence with SAM 2.1's video memory (``clicklabel.track``)."""

from __future__ import annotations


class SequenceActions:
    """Uses the session's ``store`` and ``engine``."""

    _video = (None, None)  # (the engine, its video model): made once per engine

    def track(self, object_id: int, direction: str | None = None, progress=None, stop=None, on_frame=None, **options):
        """Propagate an accepted object through its sequence with this session's SAM 2.1 model (``track.session``:
        also the frame stack, the tracks list and one label per track); returns a ``TrackReport``. Meant for a
        worker thread: ``on_frame(frame index, object id or None)`` as each frame is written."""
        from .track.session import track_accepted, video_model_for

        if self._video[0] is not self.engine:
            self._video = (self.engine, video_model_for(self.engine))
        return track_accepted(self.store, self._video[1], object_id, direction, progress, stop, on_frame, **options)
