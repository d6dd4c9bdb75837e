"""Converting an encoder for OpenVINO in a process of its own, from the checkpoint file.

A conversion holds the PyTorch model, its export and OpenVINO's graph at once (vit_b: about 1 GB more, for 13 s; SAM
2.1's traced backbone several GB), and ``torch.export`` holds Python's GIL most of that time. In a child process the
annotator's process keeps neither the memory (a large image's tiles are already in it) nor the pause in its UI
thread, and needs none of PyTorch's encoder weights itself. ``python -m clicklabel.segment.openvino_convert
CHECKPOINT PART SIZE XML LAYOUT`` is the child; ``convert_file`` starts it and waits.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ..errors import ClickLabelError

PARTS = ("image_encoder", "backbone")  # SAM and HQ-SAM's image encoder; SAM 2.1's forward_image


def convert_file(checkpoint: Path, part: str, size: int, xml: Path, layout: Path) -> None:
    """Convert ``part`` of the model in ``checkpoint`` into ``xml`` (+ .bin) and ``layout`` in a child process."""
    cmd = [sys.executable, "-m", __name__, str(checkpoint), part, str(size), str(xml), str(layout)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ))
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        raise ClickLabelError("converting the image encoder for OpenVINO failed: " + (lines[-1] if lines else
                                                                                      f"exit {done.returncode}"))


def part_module(module, part: str):
    """The module to convert: SAM/HQ-SAM's image encoder with the fused attention, or SAM 2.1's backbone."""
    if part == "backbone":
        from .sam2 import backbone_module

        return backbone_module(module)
    if hasattr(module.image_encoder, "blocks"):
        from . import fast_encoder

        fast_encoder.enable(module)
    return module.image_encoder


def main(argv=None) -> int:
    from .models import load_model
    from .openvino_encoder import convert

    checkpoint, part, size, xml, layout = argv if argv is not None else sys.argv[1:]
    if part not in PARTS:
        raise SystemExit(f"unknown part {part!r}; use {' or '.join(PARTS)}")
    loaded = load_model("auto", checkpoint, download=False)
    convert(part_module(loaded.module, part), int(size), Path(xml), Path(layout), export=part != "backbone")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
