"""Tracking in a project: prompt an object on a frame of a sequence (clicks, a box, or an object already there),
propagate it through the sequence with SAM 2.1, and write one object per frame with one track id.

A correction is a prompt on a frame of an existing track (``track_id``, or ``object_id`` of one of its objects):
the frame becomes a person's frame ('annotated', kept fixed and used as a conditioning frame) and propagation runs
again from it (forward by default: frames before it stay as they are). The track's propagation state (memory
features per frame) and the frames' image features are caches under the cache root, so a correction in a later
run encodes no frame again. Progress and cancelling go through ``progress(done, total)`` and a ``stop`` event; a
cancelled run keeps every frame already written.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ClickLabelError, PromptError
from ..files import cache_path
from .memory import TrackMemory
from .propagate import FrameSource, Tracker, VideoModel

DIRECTIONS = ("both", "forward", "backward")


@dataclass
class TrackReport:
    track_id: int
    sequence_id: int
    prompted: int  # the frame prompted
    written: list[int] = field(default_factory=list)  # frames whose object was written (prompted one included)
    removed: list[int] = field(default_factory=list)  # frames whose propagated object was removed (object absent)
    left: list[tuple[int, str]] = field(default_factory=list)  # (first frame without the object, direction)
    encoded: int = 0  # frames the image encoder ran on (0 when every frame's features were cached)
    cancelled: bool = False
    corrected: bool = False  # an existing track was corrected (else a new one was made)
    direction: str = "both"

    def lines(self) -> list[str]:
        out = [f"track {self.track_id}: {len(self.written)} frames with the object (from frame {self.prompted}), "
               f"{self.encoded} frames encoded"]
        for frame, direction in self.left:
            out.append(f"track {self.track_id}: the object left the view at frame {frame} ({direction}); "
                       "propagation stopped there")
        if self.removed:
            out.append(f"track {self.track_id}: propagated objects removed on {len(self.removed)} frames where the "
                       "object is no longer found")
        if self.cancelled:
            out.append("stopped: the frames done so far are saved")
        return out


def sequence_frames(store, sequence) -> tuple[object, list[int], FrameSource]:
    """(sequence record, image ids in frame order, FrameSource reading the frames from the project)."""
    seq = store.sequence(sequence)
    ids = store.frame_ids(seq.id)
    if not ids:
        raise ClickLabelError(f"sequence {seq.name!r} has no frames")
    first = store.image(ids[0])

    def key(i: int) -> str:
        rec = store.image(ids[i])
        return f"file-{rec.hash}" if rec.hash else None

    return seq, ids, FrameSource(lambda i: store.load_image(ids[i]), len(ids), key, (first.height, first.width))


def state_folder(store, track_id: int, model_id: str, root: Path | None = None) -> Path:
    """Where a track's propagation state is cached: ``tracks/`` under the cache root, per project and model."""
    uid = store.get_meta("uid")
    if uid is None:
        uid = uuid.uuid4().hex
        store.set_meta("uid", uid)
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model_id)
    return (root if root is not None else cache_path("tracks")) / f"{uid}-{track_id}-{safe}"


def track_object(store, model: VideoModel, sequence, frame: int | None = None, *, points=None, labels=None,
                 box=None, object_id: int | None = None, track_id: int | None = None,
                 direction: str | None = None, min_score: float = 0.0, patience: int = 3,
                 progress: Callable[[int, int], None] | None = None, stop: threading.Event | None = None,
                 state_root: Path | None = None, model_name: str | None = None,
                 on_frame: Callable[[int, int | None], None] | None = None, new: bool = False) -> TrackReport:
    """Prompt an object on ``frame`` of ``sequence`` (id or name) and propagate it; see the module docstring.
    ``direction``: both, forward or backward (default: both for a new track, forward for a correction).
    ``on_frame(frame index, object id or None)`` after each frame is written (a viewer fills frames in).
    Clicks or a box whose first point lies on a track's mask on that frame correct that track, unless ``new``."""
    seq, ids, frames = sequence_frames(store, sequence)
    mask = None
    if object_id is not None:
        if points is not None or box is not None:
            raise PromptError("give --from-object or clicks / a box, not both")
        rec = store.object(object_id)
        where = store.frame_of(rec.image_id)
        if where is None or where[0] != seq.id:
            raise PromptError(f"object {object_id} is not on a frame of sequence {seq.name!r}")
        if frame is not None and frame != where[1]:
            raise PromptError(f"object {object_id} is on frame {where[1]}, not frame {frame}")
        if not rec.has_mask:
            raise PromptError(f"object {object_id} has no mask yet (a box only): refine it first")
        frame, mask = where[1], rec.mask
        track_id = store.track_of(object_id) if track_id is None else track_id
    elif points is None and box is None:
        raise PromptError("give a click (--point), a box (--box) or an object (--from-object)")
    if frame is None or not 0 <= frame < len(ids):
        raise PromptError(f"frame {frame} is not in sequence {seq.name!r} (frames 0 to {len(ids) - 1})")
    if track_id is None and object_id is None and not new:
        track_id = _track_under(store, seq.id, ids[frame], points, box)
    correction = track_id is not None
    if correction and store.track_sequence(track_id) != seq.id:
        raise PromptError(f"track {track_id} belongs to another sequence")
    direction = direction or ("forward" if correction else "both")
    if direction not in DIRECTIONS:
        raise PromptError(f"direction {direction!r}: one of {', '.join(DIRECTIONS)}")
    if track_id is None:
        track_id = store.new_track(seq.id)
    if object_id is not None:
        store.join_track(object_id, track_id, "annotated")
    name = model_name or model.model_id
    memory = TrackMemory(state_folder(store, track_id, model.model_id, state_root))
    tracker = Tracker(model, frames, memory)
    encoded0 = model.encoded
    rep = TrackReport(track_id, seq.id, frame, corrected=correction, direction=direction)
    try:
        _sync_annotated(store, tracker, track_id, skip=frame)
        res = tracker.prompt(frame, points=points, labels=labels, box=box, mask=mask)
        provenance = "manual" if mask is not None else "box" if box is not None else "click"
        clicks = None if mask is not None else len(tracker.memory.points.get(frame, []))
        oid = object_id
        if object_id is None:
            oid = store.write_track_frame(track_id, ids[frame], res.mask, role="annotated", score=res.score,
                                          engine="sam2.1-video", model=name, provenance=provenance, clicks=clicks)
            if oid is None:
                rep.removed.append(frame)
        if on_frame:
            on_frame(frame, oid)
        rep.written.append(frame)
        passes = [(False, len(ids) - 1 - frame)] if direction in ("both", "forward") else []
        passes += [(True, frame)] if direction in ("both", "backward") else []
        total, done = sum(n for _, n in passes), 0
        for reverse, _ in passes:
            last = frame
            for r in tracker.propagate(frame, reverse=reverse, min_score=min_score, patience=patience, stop=stop):
                if r.frame == frame:
                    continue
                last = r.frame
                done += 1
                if not r.fixed:
                    present = r.score >= min_score and r.mask.any()
                    oid = store.write_track_frame(track_id, ids[r.frame], r.mask if present else None,
                                                  role="propagated", score=r.score, engine="sam2.1-video",
                                                  model=name, provenance=provenance)
                    (rep.written if oid is not None else rep.removed).append(r.frame)
                    if on_frame:
                        on_frame(r.frame, oid)
                if progress:
                    progress(done, total)
            if stop is not None and stop.is_set():
                rep.cancelled = True
                break
            end = 0 if reverse else len(ids) - 1
            if last != end:  # the object left: frames beyond hold an earlier propagation's masks, now stale
                first_gone = last - (patience - 1) * (-1 if reverse else 1)
                rep.left.append((first_gone, "backward" if reverse else "forward"))
                rep.removed += _clear_beyond(store, track_id, ids, last, reverse)
                done += abs(end - last)
                if progress:
                    progress(done, total)
    finally:
        rep.encoded = model.encoded - encoded0
        tracker.memory.save_index()
    store.log_event("track", ids[frame], None, track=track_id, direction=direction, frames=len(rep.written),
                    encoded=rep.encoded)
    return rep


def _track_under(store, sequence_id: int, image_id: int, points, box) -> int | None:
    """The track whose object on this frame holds the prompt's first point (a box: its centre), or None."""
    if points is not None and len(points):
        x, y = points[0]
    elif box is not None:
        x, y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    else:
        return None
    for track_id, _ in store.tracks(sequence_id):
        obj = next((o for o in store.track_objects(track_id).values() if o.image_id == image_id), None)
        if obj is not None:
            m = store.object(obj.object_id).mask
            if 0 <= int(y) < m.shape[0] and 0 <= int(x) < m.shape[1] and m[int(y), int(x)]:
                return track_id
    return None


def _sync_annotated(store, tracker: Tracker, track_id: int, skip: int) -> None:
    """Make the state's conditioning frames the track's annotated objects: one a person accepted or edited since
    (or whose state is missing) is prompted with its mask; one whose object was deleted stops conditioning."""
    objects = store.track_objects(track_id)
    annotated = {t for t, o in objects.items() if o.role == "annotated"}
    for t in list(tracker.memory.cond):
        if t not in annotated and t != skip:
            tracker.memory.drop_cond(t)
    for t in sorted(annotated - set(tracker.memory.cond) - {skip}):
        tracker.prompt(t, mask=store.object(objects[t].object_id).mask)


def _clear_beyond(store, track_id: int, ids: list[int], last: int, reverse: bool) -> list[int]:
    """Remove the track's propagated objects past frame ``last`` up to its next annotated frame."""
    removed = []
    objects = store.track_objects(track_id)
    order = range(last - 1, -1, -1) if reverse else range(last + 1, len(ids))
    for t in order:
        o = objects.get(t)
        if o is not None and o.role == "annotated":
            break
        if o is not None:
            store.write_track_frame(track_id, ids[t], None, role="propagated", score=None, engine=None, model=None)
            removed.append(t)
    return removed


def frame_masks(store, track_id: int) -> dict[int, np.ndarray]:
    """The track's mask on each frame it covers (for display and checks)."""
    return {t: store.object(o.object_id).mask for t, o in store.track_objects(track_id).items()}
