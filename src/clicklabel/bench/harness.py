"""What every benchmark shares: the sample image, the table printer, device names and synchronisation, and one
setup (checkpoint, engine, temporary cache) so each benchmark measures its baseline the same way."""

from __future__ import annotations

import contextlib
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..embeddings import EmbeddingCache
from ..images import load_image

SAMPLES = Path(__file__).parents[1] / "data" / "samples"


def sample_image(size: tuple[int, int] = (640, 480)) -> np.ndarray:
    """The bundled coffee photo resized to ``size`` (W, H): the default benchmark image."""
    from PIL import Image

    return np.array(Image.fromarray(load_image(SAMPLES / "coffee.jpg")).resize(size, Image.BILINEAR))


def percentile_ms(times: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(times) * 1000.0, q))


def print_table(rows: list[list], header: list[str], out=None) -> None:
    """Plain aligned text table (also valid Markdown)."""
    out = out or sys.stdout
    cells = [header] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for n, r in enumerate(cells):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |", file=out)
        if n == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|", file=out)


def device_name(device: str) -> str:
    """The GPU's name, or the CPU and its thread count."""
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"cpu x{torch.get_num_threads()}"


def synchronize(device: str) -> None:
    """Wait for the device's queued work (timings on a GPU are otherwise launch times)."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def checkpoint_for(model: str, checkpoint: str | None, random_weights: bool, workdir: Path) -> tuple[str, bool]:
    """The checkpoint path to benchmark, writing a random one (built by the family's own builder) if asked."""
    from ..errors import ClickLabelError
    from ..segment.models import save_random_checkpoint
    from ..weights import resolve_checkpoint

    if random_weights:
        if model == "auto":
            raise ClickLabelError("--random-weights needs a model name (e.g. --model sam2.1_hiera_tiny), not auto")
        return str(save_random_checkpoint(workdir / f"{model}_random.pth", model)), True
    return str(resolve_checkpoint(model, checkpoint)), False


@dataclass
class BenchSetup:
    engine: object  # a SamEngine, Sam2Engine or HqEngine
    checkpoint: str
    random_weights: bool
    workdir: Path

    @property
    def cache_dir(self) -> Path:
        return self.workdir / "cache"

    def note(self) -> str:
        """The header's warning for random weights."""
        return " - RANDOM WEIGHTS: timings only, masks mean nothing" if self.random_weights else ""


@contextlib.contextmanager
def bench_engine(model: str, checkpoint: str | None, random_weights: bool, device: str, encoder: str = "auto",
                 family: str | None = None, precision: str | None = None) -> Iterator[BenchSetup]:
    """The engine of ``model``'s family for a benchmark: the checkpoint (random if asked), an empty temporary
    embedding cache, and on a GPU one warm-up encoding (CUDA context, cuBLAS handles, kernels) so no row pays for
    start-up. ``family``: the one family the benchmark measures (others get one clear line); ``precision``: the
    encoder's (None: chosen for the hardware)."""
    from ..errors import ClickLabelError
    from ..segment import make_engine
    from ..segment.models import FAMILIES, family_of

    if family is not None and model != "auto" and family_of(model) != family:
        raise ClickLabelError(f"this benchmark measures {FAMILIES[family].label} models; {model} is a "
                              f"{FAMILIES[family_of(model)].label} model (bench latency and noc take every family)")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        ck, is_random = checkpoint_for(model, checkpoint, random_weights, workdir)
        eng = make_engine("sam", model, ck, device=device, cache=EmbeddingCache(workdir / "cache"), encoder=encoder,
                          precision=precision)
        if family is not None and eng.name != family:
            raise ClickLabelError(f"this benchmark measures {FAMILIES[family].label} models, not {eng.model}")
        eng.ensure_encoder()  # benchmarks reach into the whole model (stock predictors)
        if eng.device.startswith("cuda"):
            eng.encode(sample_image())
            synchronize(eng.device)
        yield BenchSetup(eng, ck, is_random, workdir)
