"""Which arithmetic the image encoder runs in, chosen for the hardware with the reason in words.

bf16 autocast halves the encoder's time where the hardware computes bf16 (measured on a 2-core Xeon with
avx512_bf16: SAM vit_b 1.8-2.3x, masks agreeing with fp32 at IoU >= 0.99; docs/benchmarks.md). Without bf16
instructions PyTorch emulates bf16 and the encoder runs several times slower, so there it stays fp32. The choice:

- ``--precision fp32|bf16`` (or ``CLICKLABEL_PRECISION``, the default of every command): as asked (bf16 without the
  hardware is said to be emulated);
- the stock encoder (``--encoder stock``): fp32, the stock predictor's arithmetic;
- CUDA: bf16 where the GPU has it (compute capability 8.0+);
- Apple MPS: bf16 where autocast on MPS takes it (PyTorch 2.x on macOS 14+);
- CPU: bf16 where the CPU reports ``avx512_bf16`` or ``amx_bf16`` (x86) or ``bf16`` (Arm) and oneDNN is not told to
  stay below them (``ONEDNN_MAX_CPU_ISA``) and the encoder gains from it (SAM's and HQ-SAM's ViTs); elsewhere
  (no bf16, or SAM 2.1's Hiera and HQ-SAM's TinyViT) OpenVINO in fp32 where it is installed
  (``openvino_encoder.py``: stock's arithmetic, 1.9-3x faster); fp32 otherwise. ``--precision openvino`` asks for it.
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass
from pathlib import Path

PRECISIONS = ("fp32", "bf16", "openvino")  # openvino: fp32 arithmetic in OpenVINO (CPU)
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")  # x86 (AMX, AVX-512 BF16), then Arm's FEAT_BF16
# ONEDNN_MAX_CPU_ISA values that leave out every bf16 instruction (oneDNN's ISA names, lower case)
_ISA_WITHOUT_BF16 = ("sse41", "avx", "avx2", "avx2_vnni", "avx2_vnni_2", "avx512_core", "avx512_core_vnni")


@dataclass(frozen=True)
class Choice:
    precision: str  # 'fp32' or 'bf16'
    reason: str  # one line: why

    def line(self) -> str:
        return f"encoder precision {self.precision}: {self.reason}"


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags (Linux ``/proc/cpuinfo``; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def cpu_bf16(flags: frozenset[str] | None = None, env: dict | None = None) -> tuple[bool, str]:
    """Whether this CPU computes bf16 in hardware, and the evidence in words."""
    flags = cpu_flags() if flags is None else flags
    env = os.environ if env is None else env
    found = [f for f in CPU_BF16_FLAGS if f in flags]
    if not found:
        if not flags:
            return False, f"no CPU feature list readable on {platform.system() or 'this system'}"
        return False, "the CPU has no bf16 instructions (avx512_bf16, amx_bf16)"
    isa = env.get("ONEDNN_MAX_CPU_ISA", "").strip().lower()
    if isa in _ISA_WITHOUT_BF16:
        return False, f"the CPU has {found[0]}, but ONEDNN_MAX_CPU_ISA={isa} keeps oneDNN below it"
    return True, f"the CPU has {found[0]}"


def mps_bf16() -> bool:
    """Whether autocast to bf16 runs on Apple's MPS device here (one tiny product)."""
    import torch

    try:
        a = torch.ones((2, 2), device="mps")
        with torch.autocast("mps", dtype=torch.bfloat16):
            return (a @ a).dtype == torch.bfloat16
    except (RuntimeError, TypeError, ValueError):
        return False


def check_precision(precision: str) -> None:
    from ..errors import ClickLabelError

    if precision not in PRECISIONS:
        raise ClickLabelError(f"unknown precision {precision!r}; use one of auto, {', '.join(PRECISIONS)}")


def encoder_traits(family: str, model: str) -> dict:
    """What the precision choice needs to know of a model's encoder on a CPU (``choose_precision``'s ``cpu_gain`` and
    ``openvino``): bf16 speeds up the ViTs of SAM, HQ-SAM and SAM 3, not TinyViT (hq_vit_tiny) nor SAM 2.1's Hiera;
    OpenVINO runs the encoders of SAM, HQ-SAM and SAM 2.1."""
    return {"cpu_gain": family in ("sam", "sam3") or (family == "hq" and model != "hq_vit_tiny"),
            "openvino": family in ("sam", "hq", "sam2.1")}


def choose_precision(device: str, asked: str | None = None, fast: bool | None = None,
                     cpu_gain: bool = True, openvino: bool = False) -> Choice:
    """The encoder's precision on ``device`` (already resolved): ``asked`` ('fp32', 'bf16', 'openvino'; None or
    'auto': choose), ``fast`` False for the stock encoder (fp32); ``cpu_gain`` False for encoders that bf16 does not
    speed up on a CPU (measured: SAM 2.1's Hiera 1.06x, HQ-SAM's TinyViT 1.24x with masks at IoU 0.98;
    docs/benchmarks.md); ``openvino`` True for encoders that run in OpenVINO (``openvino_encoder.py``).
    ``CLICKLABEL_PRECISION`` stands in for an ``asked`` of None."""
    if asked in (None, "auto"):
        asked = os.environ.get("CLICKLABEL_PRECISION", "").strip().lower() or None
    if asked == "openvino":
        return _openvino_asked(device, openvino)
    if asked not in (None, "auto"):
        check_precision(asked)
        if asked == "bf16" and device == "cpu" and not cpu_bf16()[0]:
            return Choice(asked, f"asked for; {cpu_bf16()[1]}, so bf16 is emulated (slower than fp32)")
        return Choice(asked, "asked for" + (" (CLICKLABEL_PRECISION)" if os.environ.get("CLICKLABEL_PRECISION")
                                            else ""))
    if fast is False:
        return Choice("fp32", "the stock encoder (--encoder stock) runs fp32")
    if device.startswith("cuda"):
        import torch

        if torch.cuda.is_bf16_supported():
            return Choice("bf16", "the GPU computes bf16 (autocast)")
        return Choice("fp32", "the GPU has no bf16 (compute capability below 8.0)")
    if device == "mps":
        if mps_bf16():
            return Choice("bf16", "MPS takes bf16 autocast")
        return Choice("fp32", "MPS here does not take bf16 autocast (macOS 14 and a newer PyTorch do)")
    ok, why = cpu_bf16()
    if ok and cpu_gain:
        return Choice("bf16", f"{why}: bf16 autocast (--precision fp32 for stock arithmetic)")
    if ok:
        why = f"{why}, but bf16 does not speed up this encoder on a CPU"
    else:
        why = f"{why}, so bf16 would be emulated (slower)"
    if openvino:
        from .openvino_encoder import openvino_missing

        if openvino_missing() is None:
            return Choice("openvino", f"{why}: OpenVINO in fp32, stock's arithmetic (converted once per model; "
                                      "--precision fp32 for PyTorch)")
        return Choice("fp32", f"{why}: fp32 (pip install 'clicklabel[openvino]': OpenVINO ran these encoders "
                              "1.9-3x faster in fp32)")
    return Choice("fp32", f"{why}: fp32")


def _openvino_asked(device: str, supported: bool) -> Choice:
    from ..errors import ClickLabelError
    from .openvino_encoder import openvino_missing

    if device != "cpu":
        raise ClickLabelError(f"precision openvino runs the encoder on the CPU, not on {device}; use --device cpu")
    if not supported:
        raise ClickLabelError("precision openvino is for SAM, HQ-SAM and SAM 2.1 encoders; use fp32 or bf16")
    problem = openvino_missing()
    if problem:
        raise ClickLabelError(problem)
    return Choice("openvino", "asked for" + (" (CLICKLABEL_PRECISION)" if os.environ.get("CLICKLABEL_PRECISION")
                                             else ""))
