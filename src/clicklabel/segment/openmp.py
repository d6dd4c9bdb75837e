"""Hand back a thread's idle OpenMP worker threads, so that interactive decoding keeps its full speed.

PyTorch on a CPU runs each operation on an OpenMP team, and the OpenMP runtime keeps every team's worker threads
for the next parallel region of the thread that started it, for as long as that thread lives. GNU OpenMP (the
runtime in PyTorch's Linux wheels) counts those threads across the process: while there are more of them than
CPUs, every team's workers wait only a moment between regions before sleeping, and each region then waits for
its workers to wake. SAM's decoder is ~100 short regions, so a click decoded beside the idle teams of threads that
once embedded an image or loaded a model took 1.5x as long (measured: 36 -> 55 ms p50 on 2 cores with two idle
teams; 37 ms again once they were released). A GUI whose workers call ``release_threads`` when they finish keeps
only the teams of work in progress.

``release_threads`` is OpenMP 5's ``omp_pause_resource_all(omp_pause_soft)`` on the runtime PyTorch loaded; it does
nothing where there is none or it lacks that function (then the cost above stays, nothing else changes).
"""

from __future__ import annotations

import ctypes
import functools
import sys
from pathlib import Path

OMP_PAUSE_SOFT = 1
_NAMES = ("libgomp", "libomp", "libiomp5")


def _loaded_runtime() -> str | None:
    """The path of the OpenMP runtime mapped into this process (Linux), else the one PyTorch ships."""
    try:
        for line in Path("/proc/self/maps").read_text().splitlines():
            parts = line.split(maxsplit=5)
            if len(parts) == 6 and any(Path(parts[5]).name.startswith(n) for n in _NAMES):
                return parts[5]
    except OSError:
        pass
    lib = Path(sys.modules["torch"].__file__).parent / "lib"
    found = sorted(p for n in _NAMES for p in lib.glob(f"{n}*"))
    return str(found[0]) if found else None


@functools.cache
def _pause_all():
    """The loaded runtime's ``omp_pause_resource_all``, or None (looked up once, after torch is imported)."""
    path = _loaded_runtime()
    try:
        fn = ctypes.CDLL(path).omp_pause_resource_all if path else None
    except (OSError, AttributeError):
        return None
    if fn is not None:
        fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
    return fn


def release_threads() -> bool:
    """Release the calling thread's idle OpenMP worker threads (made again by its next parallel region). True if
    the runtime did."""
    if "torch" not in sys.modules:
        return False  # no team can exist yet
    fn = _pause_all()
    return fn is not None and fn(OMP_PAUSE_SOFT) == 0
