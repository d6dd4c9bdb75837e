"""A small record of how fast each model's image encoder ran on this machine, so "the fastest model" is what was
measured here rather than a ranking from another computer.

The record is one JSON file under the cache root (``speed/encoders.json``): per machine (CPU model and thread count,
or the GPU's name) and encoder precision, per model, the median of the last few seconds-per-image measured by an
engine's encoder or by ``clicklabel bench models``. A damaged file is ignored and rewritten.
"""

from __future__ import annotations

import json
import platform
import statistics
import threading
from pathlib import Path

from ..files import cache_path, write_text

KEEP = 5  # measurements kept per model
_lock = threading.Lock()


def record_path() -> Path:
    return cache_path("speed") / "encoders.json"


def machine_key(device: str) -> str:
    """What the speed depends on besides the model: the processor (and its threads) or the GPU."""
    import torch

    if device.startswith("cuda"):
        return f"cuda {torch.cuda.get_device_name(torch.device(device))}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{device} {cpu} x{torch.get_num_threads()}"


def _read() -> dict:
    try:
        data = json.loads(record_path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def record(model: str, device: str, precision: str, seconds_per_image: float) -> None:
    """Add one measurement (best effort: a read-only cache folder keeps no record)."""
    if not seconds_per_image > 0:
        return
    key = f"{machine_key(device)} {precision}"
    with _lock:
        data = _read()
        runs = [float(v) for v in data.get(key, {}).get(model, []) if isinstance(v, (int, float))]
        data.setdefault(key, {})[model] = (runs + [float(seconds_per_image)])[-KEEP:]
        try:
            write_text(record_path(), json.dumps(data, indent=1, sort_keys=True))
        except OSError:
            pass


def measured(device: str, precision: str) -> dict[str, float]:
    """Model -> median seconds per image measured on this machine at ``precision``."""
    runs = _read().get(f"{machine_key(device)} {precision}", {})
    out = {}
    for model, values in runs.items() if isinstance(runs, dict) else ():
        nums = [float(v) for v in values if isinstance(v, (int, float))] if isinstance(values, list) else []
        if nums:
            out[model] = statistics.median(nums)
    return out
