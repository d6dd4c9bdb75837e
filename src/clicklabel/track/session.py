"""What an interactive client (the widget) calls for sequences, without Qt: a sequence as a lazy frame stack (a
frame slider reads one frame at a time), the tracks of a sequence for a list, propagation of an accepted object
from a worker thread (progress, a stop event, each frame reported as it is written), and one label per track
from its best frame.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..errors import ClickLabelError
from .workflow import TrackReport, track_object


class FrameStack:
    """A sequence's frames as a read-only (T, H, W, 3) uint8 array-like that reads a frame only when it is indexed
    (napari takes it as image data: ``shape``, ``dtype``, ``ndim``, ``__getitem__``); a few frames are kept."""

    def __init__(self, store, sequence, keep: int = 8):
        seq = store.sequence(sequence)
        self.store, self.sequence_id, self.name = store, seq.id, seq.name
        self.image_ids = store.frame_ids(seq.id)
        if not self.image_ids:
            raise ClickLabelError(f"sequence {seq.name!r} has no frames")
        first = store.image(self.image_ids[0])
        self.shape = (len(self.image_ids), first.height, first.width, 3)
        self.dtype = np.dtype(np.uint8)
        self.ndim = 4
        self._keep = keep
        self._frames: OrderedDict[int, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return self.shape[0]

    def frame(self, t: int) -> np.ndarray:
        with self._lock:
            if t in self._frames:
                self._frames.move_to_end(t)
                return self._frames[t]
        pixels = self.store.load_image(self.image_ids[t])
        with self._lock:
            self._frames[t] = pixels
            while len(self._frames) > self._keep:
                self._frames.popitem(last=False)
        return pixels

    def __getitem__(self, key):
        if not isinstance(key, tuple):
            key = (key,)
        first, rest = key[0], key[1:]
        if isinstance(first, (int, np.integer)):
            t = int(first) + (len(self) if first < 0 else 0)
            if not 0 <= t < len(self):
                raise IndexError(f"frame {first} is out of range (0 to {len(self) - 1})")
            return self.frame(t)[rest] if rest else self.frame(t)
        if not isinstance(first, slice) or any(k is Ellipsis for k in rest):  # fancy indexing: every frame
            return np.asarray(self)[key]
        frames = range(len(self))[first]
        return np.stack([self.frame(t) for t in frames])[(slice(None), *rest)]

    def __array__(self, dtype=None, copy=None):
        out = self[slice(None)]
        return out if dtype is None else out.astype(dtype)


@dataclass
class TrackSummary:
    track_id: int
    frames: list[int]  # frame indices the track covers
    annotated: list[int]  # the frames a person made (kept fixed by propagation)
    label: str | None


def sequence_tracks(store, sequence) -> list[TrackSummary]:
    """The tracks of a sequence for the Labels tab: frames covered, a person's frames, the label."""
    seq = store.sequence(sequence)
    out = []
    for track_id, _ in store.tracks(seq.id):
        objs = store.track_objects(track_id)
        if not objs:
            continue
        label = next((store.object(o.object_id).label for o in objs.values()
                      if store.object(o.object_id).label), None)
        out.append(TrackSummary(track_id, sorted(objs), sorted(t for t, o in objs.items() if o.role == "annotated"),
                                label))
    return out


def video_model_for(engine, cache=None):
    """A ``VideoModel`` sharing a SAM 2.1 engine's loaded model and embedding cache (nothing loaded twice)."""
    from .propagate import VideoModel

    if getattr(engine, "name", None) != "sam2.1":
        raise ClickLabelError("tracking runs SAM 2.1's video memory: choose a SAM 2.1 model (e.g. "
                              "sam2.1_hiera_tiny) to propagate through a sequence")
    engine.net.binarize_mask_from_pts_for_mem_enc = True
    return VideoModel(engine.net, engine.model_id, engine.device, cache if cache is not None else engine.cache)


def track_accepted(store, model, object_id: int, direction: str | None = None,
                   progress: Callable[[int, int], None] | None = None, stop: threading.Event | None = None,
                   on_frame: Callable[[int, int | None], None] | None = None, **options) -> TrackReport:
    """Propagate an accepted object (clicked and accepted on a frame; or a corrected object of a track) through
    its sequence. ``on_frame(frame index, object id or None)`` as each frame is written; see ``track_object``."""
    where = store.frame_of(store.object(object_id).image_id)
    if where is None:
        raise ClickLabelError(f"object {object_id} is not on a frame of a sequence")
    return track_object(store, model, where[0], object_id=object_id, direction=direction, progress=progress,
                        stop=stop, on_frame=on_frame, **options)


def label_track(store, track_id: int, labeler, progress=None, stop: threading.Event | None = None):
    """Ask the model for one label per track, from its best frame (an annotated one, else the highest score), and
    give it to every frame's object (``label_objects`` does, for any tracked object); returns the run's summary."""
    from ..label.run import label_objects

    best = store.best_track_object(track_id)
    if best is None:
        raise ClickLabelError(f"track {track_id} has no objects")
    return label_objects(store, [best], labeler, progress=progress, stop=stop)  # spreads the label to the track
