"""A track's per-frame state for SAM 2.1 propagation: what ``SAM2VideoPredictor`` keeps in its ``output_dict`` for
one object (memory features, object pointer, low-resolution mask logits, object score), kept bounded.

Conditioning frames (the frames a person prompted or corrected) stay in memory; the other frames' outputs sit in
a small LRU window (propagation reads the last 15 frames' pointers and the last 6 frames' memories) in front of a
folder of ``.npz`` files, so a long clip never holds more than the window, and a later correction (in this
process or the next) continues from the outputs the first propagation left, without encoding anything again.
Memory features are stored as bfloat16 bits, as the stock predictor keeps them, so a reloaded state is exact.
"""

from __future__ import annotations

import json
import tempfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

from ..files import atomic_write

INDEX = "index.json"
_FIELDS = ("maskmem_features", "pred_masks", "obj_ptr", "object_score_logits")


class _Outputs:
    """The non-conditioning outputs: ``get`` / ``__setitem__`` / ``pop`` like the dict ``track_step`` expects."""

    def __init__(self, memory: TrackMemory, window: int):
        self._memory = memory
        self._lru: OrderedDict[int, dict] = OrderedDict()
        self._window = window

    def get(self, t: int, default=None):
        out = self._lru.get(t)
        if out is not None:
            self._lru.move_to_end(t)
            return out
        if t not in self._memory.stored or t in self._memory.cond:  # a conditioning frame is not one of these
            return default
        out = self._memory.read(t)
        self._remember(t, out)
        return out

    def __contains__(self, t: int) -> bool:
        return t not in self._memory.cond and (t in self._lru or t in self._memory.stored)

    def __setitem__(self, t: int, out: dict) -> None:
        self._memory.write(t, out, cond=False)
        self._remember(t, out)

    def pop(self, t: int, default=None):
        out = self.get(t, default)
        self._lru.pop(t, None)
        self._memory.forget(t)
        return out

    def _remember(self, t: int, out: dict) -> None:
        self._lru[t] = out
        self._lru.move_to_end(t)
        while len(self._lru) > self._window:
            self._lru.popitem(last=False)

    def __len__(self) -> int:
        return len(self._memory.stored - set(self._memory.cond))

    def items(self):
        for t in sorted(self._memory.stored - set(self._memory.cond)):
            yield t, self.get(t)


class TrackMemory:
    """One track's propagation state. ``folder`` None: a private temporary folder, removed with the object."""

    def __init__(self, folder: str | Path | None = None, window: int = 32, pos_enc=None):
        self._tmp = None
        if folder is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="clicklabel-track-")
            folder = self._tmp.name
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.pos_enc = pos_enc  # the memory's positional encoding, one for every frame (set by the tracker)
        self.cond: dict[int, dict] = {}  # frame -> output of the frames a person prompted
        self.tracked: dict[int, bool] = {}  # frame -> propagated in reverse (SAM 2's frames_tracked)
        self.points: dict[int, list] = {}  # frame -> [[x, y, label], ...] in the model's input coordinates
        self.stored: set[int] = set()  # frames with an output file
        self.non_cond = _Outputs(self, window)
        self._read_index()

    def output_dict(self) -> dict:
        return {"cond_frame_outputs": self.cond, "non_cond_frame_outputs": self.non_cond}

    def output(self, t: int) -> dict | None:
        return self.cond.get(t) or self.non_cond.get(t)

    def set_cond(self, t: int, out: dict) -> None:
        self.cond[t] = out
        self.write(t, out, cond=True)
        self.non_cond._lru.pop(t, None)

    def drop_cond(self, t: int) -> None:
        """Frame ``t`` is no longer a person's frame (its object was deleted)."""
        self.cond.pop(t, None)
        self.points.pop(t, None)
        self.tracked.pop(t, None)
        self.forget(t)

    # -- files ----------------------------------------------------------------------------------------------
    def _path(self, t: int) -> Path:
        return self.folder / f"{t:06d}.npz"

    def write(self, t: int, out: dict, cond: bool) -> None:
        import torch

        arrays = {"cond": np.array(cond)}
        for k in _FIELDS:
            v = out[k].detach().cpu()
            arrays[k] = v.view(torch.int16).numpy() if v.dtype == torch.bfloat16 else v.float().numpy()
        with atomic_write(self._path(t), durable=False) as f:
            np.savez(f, **arrays)
        self.stored.add(t)
        self.save_index()

    def read(self, t: int) -> dict:
        import torch

        with np.load(self._path(t)) as z:
            out = {k: torch.from_numpy(z[k].copy()) for k in _FIELDS}
        out["maskmem_features"] = out["maskmem_features"].view(torch.bfloat16)
        out["maskmem_pos_enc"] = self.pos_enc
        return out

    def forget(self, t: int) -> None:
        self.stored.discard(t)
        self._path(t).unlink(missing_ok=True)
        self.save_index()

    def save_index(self) -> None:
        data = {"cond": sorted(self.cond), "tracked": {str(t): r for t, r in self.tracked.items()},
                "points": {str(t): p for t, p in self.points.items()}, "stored": sorted(self.stored)}
        with atomic_write(self.folder / INDEX, "w", durable=False) as f:
            json.dump(data, f)

    def _read_index(self) -> None:
        p = self.folder / INDEX
        if not p.is_file():
            return
        try:
            data = json.loads(p.read_text())
            self.stored = {int(t) for t in data["stored"] if self._path(int(t)).is_file()}
            self.tracked = {int(t): bool(r) for t, r in data["tracked"].items()}
            self.points = {int(t): p for t, p in data["points"].items()}
            self._cond_frames = [int(t) for t in data["cond"] if int(t) in self.stored]
        except (OSError, ValueError, KeyError, TypeError):  # a damaged state is a state to rebuild, not an error
            self.stored, self.tracked, self.points, self._cond_frames = set(), {}, {}, []

    def load_cond(self) -> None:
        """Read the conditioning frames a folder holds (once the tracker has set ``pos_enc``)."""
        for t in getattr(self, "_cond_frames", []):
            self.cond[t] = self.read(t)
        self._cond_frames = []

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
