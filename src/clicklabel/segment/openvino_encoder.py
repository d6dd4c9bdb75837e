"""The image encoder compiled by OpenVINO, in fp32: the fast path of CPUs where bf16 does not pay.

On a CPU without bf16 (AVX2, AVX-512 without BF16), PyTorch's fp32 encoder gains little from SDPA or channels-last,
and dynamic int8 moves the masks (IoU 0.968 on vit_b); OpenVINO's CPU runtime ran SAM vit_b's encoder 2.2-3x faster
than stock in the same fp32 arithmetic (masks IoU 0.99998; docs/benchmarks.md), HQ-SAM's TinyViT 1.9x and SAM 2.1's
Hiera backbone 1.1x, which bf16 does not speed up.

The model is converted once per checkpoint (``torch.export`` of the PyTorch encoder, with the fused attention of
``fast_encoder``, then ``ov.convert_model``; OpenVINO's own tracing where export fails) and kept as OpenVINO IR
beside the embedding cache (``encoders/``; vit_b: 360 MB of fp32 weights, stored uncompressed so the arithmetic
stays fp32), with OpenVINO's compiled-model cache next to it; later processes compile the IR from there, without
PyTorch's encoder weights. The encoder's outputs (SAM: the features; HQ-SAM: the features and the intermediate
embeddings; SAM 2.1: the backbone's maps) come back in the PyTorch module's own structure (``torch.utils._pytree``).
Everything else (resize, normalisation, padding) is the PyTorch encoder's, so embeddings are keyed and cached as any
other.
"""

from __future__ import annotations

import json
import os
import threading
import time
import warnings
from pathlib import Path

from ..errors import ClickLabelError
from .encoder import ImageEncoder

FORMAT = 1  # bump when the conversion changes: older IR files are then converted again


def openvino_missing() -> str | None:
    """None when OpenVINO can be imported, else the line that says how to install it."""
    import importlib.util

    try:
        if importlib.util.find_spec("openvino") is not None:
            return None
    except (ImportError, ValueError):
        pass
    return "OpenVINO is not installed: pip install 'clicklabel[openvino]'"


def ir_paths(folder: Path, key: str, size: int) -> tuple[Path, Path]:
    """(model .xml, output layout .json) of the converted encoder of weights ``key`` at input ``size``."""
    import openvino as ov

    stem = f"{key}-{size}-ov{ov.get_version().split('-')[0]}-f{FORMAT}"
    return folder / f"{stem}.xml", folder / f"{stem}.json"


def convert(image_encoder, size: int, xml: Path, layout: Path, export: bool = True) -> None:
    """Trace ``image_encoder`` at a (1, 3, size, size) input and save it as fp32 OpenVINO IR at ``xml`` (+ .bin),
    with the structure of its outputs in ``layout``; written under temporary names, then renamed."""
    import openvino as ov
    import torch
    from torch.utils import _pytree

    spec = []

    class Flat(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            leaves, tree = _pytree.tree_flatten(self.inner(x))
            spec[:] = [tree]
            return tuple(leaves)

    xml.parent.mkdir(parents=True, exist_ok=True)
    flat, example = Flat(image_encoder).eval(), torch.zeros((1, 3, size, size))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # the ViT's shape arithmetic, fixed at one size
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.trace's deprecation (OpenVINO's converter uses it)
        model = None
        if export:  # torch.export follows the model on fake tensors: vit_b in 13 s at 1.1 GB (tracing: 56 s, 4.0 GB)
            try:
                model = ov.convert_model(torch.export.export(flat, (example,)))
            except Exception:  # noqa: BLE001 - a model export cannot capture: OpenVINO traces it instead
                model = None
        if model is None:
            model = ov.convert_model(flat, example_input=example)
    tmp = xml.with_name(f".{xml.stem}.{os.getpid()}.xml")
    ov.save_model(model, str(tmp), compress_to_fp16=False)
    layout.write_text(json.dumps({"tree": _pytree.treespec_dumps(spec[0])}))
    os.replace(tmp.with_suffix(".bin"), xml.with_suffix(".bin"))
    os.replace(tmp, xml)


class Compiled:
    """A PyTorch module from (1, 3, S, S) images to tensors (any nesting), converted and compiled by OpenVINO (fp32):
    called on a (B, 3, S, S) batch, each image goes through OpenVINO and the outputs come back in the module's own
    structure. ``make``: a function returning the module (called only when this process converts it);
    ``folder``: where converted models are kept; ``key``: the weights' identity; ``size``: S; ``export``: False for
    modules OpenVINO must trace (``torch.export`` writes into their attributes, and OpenVINO cannot read what it
    exports of them); ``source``: (checkpoint file, part) to convert in a child process instead
    (``openvino_convert.py``), ``make`` is then not called."""

    def __init__(self, make, size: int, folder: Path, key: str, export: bool = True, source=None):
        problem = openvino_missing()
        if problem:
            raise ClickLabelError(problem)
        import openvino as ov
        import torch
        from torch.utils import _pytree

        self._lock = threading.Lock()  # one inference request: one image at a time
        self.converted_s = None  # seconds the conversion took, when this object converted the model
        folder = Path(folder)
        xml, layout = ir_paths(folder, key, size)
        if not kept(folder, key, size):
            started = time.perf_counter()
            if source is not None and source[0] is not None:
                from .openvino_convert import convert_file

                convert_file(Path(source[0]), source[1], size, xml, layout)
            else:
                convert(make(), size, xml, layout, export)
            self.converted_s = time.perf_counter() - started
        core = ov.Core()
        core.set_property({"CACHE_DIR": str(folder / "compiled")})
        self._compiled = core.compile_model(str(xml), "CPU", {
            "INFERENCE_PRECISION_HINT": "f32",  # stock's arithmetic, not the bf16 OpenVINO picks where it can
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": torch.get_num_threads(),  # what OMP_NUM_THREADS / torch were told
        })
        self._tree = _pytree.treespec_loads(json.loads(layout.read_text())["tree"])

    def __call__(self, x):
        import torch
        from torch.utils import _pytree

        rows = []
        with self._lock:
            for i in range(x.shape[0]):
                result = self._compiled(x[i : i + 1].float().contiguous().numpy())
                rows.append([torch.from_numpy(out.copy()) for out in result.to_tuple()])
        leaves = [torch.cat(parts) for parts in zip(*rows)]
        return _pytree.tree_unflatten(leaves, self._tree)


class OpenVinoEncoder(ImageEncoder):
    """``ImageEncoder`` (SAM, HQ-SAM) whose encoder runs in OpenVINO (fp32, the CPU); ``folder``: where converted
    models are kept, ``key``: the weights' identity (the engine's ``model_id``)."""

    def __init__(self, sam, folder: Path, key: str, outputs=None, checkpoint: Path | None = None):
        super().__init__(sam, "cpu", sdpa=True, precision="fp32", outputs=outputs)
        self.precision = "openvino"
        self.activate()  # the fused attention, which OpenVINO fuses too
        self.compiled = Compiled(lambda: sam.image_encoder, self.size, folder, key,
                                 source=(checkpoint, "image_encoder"))
        self.converted_s = self.compiled.converted_s

    def describe(self) -> str:
        return "OpenVINO fp32"

    def forward(self, x):
        """The encoder on a normalised, padded (B, 3, S, S) float tensor, in the PyTorch encoder's structure."""
        return self.compiled(x)


def kept(folder: Path, key: str, size: int) -> bool:
    """Whether the converted model of weights ``key`` at input ``size`` is in ``folder`` (OpenVINO installed)."""
    if openvino_missing():
        return False
    xml, layout = ir_paths(Path(folder), key, size)
    return xml.exists() and xml.with_suffix(".bin").exists() and layout.exists()


def needs_weights(engine) -> bool:
    """Whether ``engine``'s encoder needs the PyTorch encoder's weights: not when it runs a kept OpenVINO model, or
    converts one from its checkpoint file in a child process."""
    if engine.precision_choice.precision != "openvino":
        return True
    if engine.checkpoint_file is not None:  # a child process converts from the file, if it must
        return False
    return not kept(encoders_folder(engine), engine.model_id, engine.input_side)


def encoders_folder(engine) -> Path:
    """Where an engine's converted encoders are kept: beside its embedding cache."""
    return Path(engine.cache.folder).parent / "encoders"


def engine_encoder(engine, outputs=None) -> OpenVinoEncoder:
    """The OpenVINO encoder of a SAM or HQ-SAM engine (the PyTorch encoder's weights loaded first when it converts
    a model built in memory)."""
    if needs_weights(engine):
        engine.load_encoder_weights()
    return OpenVinoEncoder(engine.sam, encoders_folder(engine), engine.model_id, outputs, engine.checkpoint_file)
