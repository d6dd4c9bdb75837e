"""napari plugin for clicklabel: a thin UI over the core library (``clicklabel``)."""

import os
import sys

if "triton" not in sys.modules and not os.environ.get("CLICKLABEL_ALLOW_TRITON"):
    # Triton (shipped with CUDA builds of PyTorch, imported by torchvision through torch._dynamo) bundles LLVM.
    # Loaded after an OpenGL driver that links LLVM too (Mesa: llvmpipe, radeonsi) has started, it crashes
    # the process. The annotator never needs torch.compile, so in a viewer Triton stays unloaded.
    sys.modules["triton"] = None  # type: ignore[assignment]

__all__ = ["ClickLabelWidget"]


def __getattr__(name):
    if name == "ClickLabelWidget":
        from ._widget import ClickLabelWidget

        return ClickLabelWidget
    raise AttributeError(name)
