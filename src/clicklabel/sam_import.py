"""Segment Anything's model classes without the cost of its package's ``__init__``.

``import segment_anything`` runs the package's ``__init__``, which imports its predictor and mask generator, and
with them torchvision (whose ops import ``torch._dynamo``): about 2 s of a 4 s ``clicklabel segment`` on a cached
image, where only the prompt encoder and the mask decoder run. ``sam_part`` imports a submodule (``build_sam``,
``modeling``) with the package standing as an empty shell; the shell completes itself (runs ``__init__``) the first
time a name it lacks is asked for (``from segment_anything import SamPredictor``), so every other use of the package
is unchanged.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading

PACKAGE = "segment_anything"
_lock = threading.Lock()


def _shell():
    """The package module, not run yet: running its ``__init__`` is left to the first name it lacks."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None:
        raise ImportError(f"No module named {PACKAGE!r}", name=PACKAGE)
    shell = importlib.util.module_from_spec(spec)
    done = threading.Event()

    def complete(name: str):
        with _lock:
            if not done.is_set():
                done.set()
                del shell.__getattr__  # the package's own names from here on
                spec.loader.exec_module(shell)
        if name in shell.__dict__:
            return shell.__dict__[name]
        raise AttributeError(f"module {PACKAGE!r} has no attribute {name!r}")

    shell.__getattr__ = complete  # PEP 562: called only for names the module lacks
    return shell


def sam_part(submodule: str):
    """``segment_anything.<submodule>``, importing no more of the package than it needs."""
    with _lock:
        if PACKAGE not in sys.modules:
            sys.modules[PACKAGE] = _shell()
    return importlib.import_module(f"{PACKAGE}.{submodule}")
