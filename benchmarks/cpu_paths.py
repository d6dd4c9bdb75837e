"""Every CPU path tried for SAM's image encoder, each timed in interleaved pairs against the stock fp32 encoder in
the same run, with the masks compared on fixed prompts (random weights: the IoU is agreement, not quality).

    python benchmarks/cpu_paths.py --model vit_b --pairs 2            # this CPU as it is
    python benchmarks/cpu_paths.py --model vit_b --isa avx2           # as an AVX2-only CPU: oneDNN, MKL and ATen
                                                                      # kept to AVX2 (set before torch loads)

Paths: fp32 channels-last, fp32 SDPA attention, dynamic int8 (``torch.ao`` quantize_dynamic of the Linear layers),
ONNX Runtime fp32 (``onnx`` + ``onnxruntime``), OpenVINO fp32 (``openvino``), bf16 autocast (+ SDPA). A path
whose package is missing is listed as not measured. Prints one table (Markdown) and the load.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="vit_b", help="a SAM (v1) model: vit_b, vit_l, vit_h")
    p.add_argument("--pairs", type=int, default=1, help="interleaved pairs per path")
    p.add_argument("--isa", choices=["native", "avx2"], default="native")
    p.add_argument("--paths", default="channels_last,sdpa,int8,onnxruntime,openvino,bf16",
                   help="comma separated subset")
    p.add_argument("--size", type=int, default=None, help="encoder input size (default: the model's, 1024); a "
                                                         "smaller one makes a quick smoke run")
    return p.parse_args(argv)


def limit_isa(isa: str) -> None:
    """Keep every CPU library below AVX-512 (must run before torch is imported)."""
    if isa == "avx2":
        os.environ.update(ONEDNN_MAX_CPU_ISA="AVX2", MKL_ENABLE_INSTRUCTIONS="AVX2", ATEN_CPU_CAPABILITY="avx2")


def make_paths(sam, names: list[str], workdir: str, size: int):
    """name -> an ImageEncoder-like object with ``encode(images)``, or a reason it could not be made."""
    import copy

    import torch

    from clicklabel.segment.encoder import ImageEncoder

    class Forward(ImageEncoder):
        """An ImageEncoder whose encoder call is ``fn(x)`` (x: the normalised, padded batch)."""

        def __init__(self, fn, **kw):
            super().__init__(sam, "cpu", **kw)
            self._call = fn

        def forward(self, x):
            self.activate()
            return self._call(x)

    out = {}
    x0 = torch.zeros((1, 3, size, size))
    for name in names:
        try:
            if name == "channels_last":
                enc = copy.deepcopy(sam.image_encoder).to(memory_format=torch.channels_last)
                out["fp32 channels-last"] = Forward(lambda x, e=enc: e(x.contiguous(memory_format=torch.channels_last)))
            elif name == "sdpa":
                out["fp32 SDPA"] = ImageEncoder(sam, "cpu", sdpa=True)
            elif name == "int8":
                q = torch.ao.quantization.quantize_dynamic(copy.deepcopy(sam.image_encoder), {torch.nn.Linear},
                                                           dtype=torch.qint8)
                out["dynamic int8 (Linear)"] = Forward(lambda x, q=q: q(x))
            elif name == "onnxruntime":
                import onnxruntime as ort

                path = os.path.join(workdir, "encoder.onnx")
                torch.onnx.export(sam.image_encoder, (x0,), path, input_names=["x"], output_names=["y"],
                                  opset_version=17, dynamo=False)
                opts = ort.SessionOptions()
                opts.intra_op_num_threads = torch.get_num_threads()
                sess = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
                out["ONNX Runtime fp32"] = Forward(lambda x, s=sess: torch.from_numpy(
                    s.run(None, {"x": x.float().numpy()})[0]))
            elif name == "openvino":
                import openvino as ov

                model = ov.convert_model(sam.image_encoder, example_input=x0)
                compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
                out["OpenVINO fp32"] = Forward(lambda x, c=compiled: torch.from_numpy(
                    c(x.float().numpy())[0].copy()))
            elif name == "bf16":
                out["bf16 autocast"] = ImageEncoder(sam, "cpu", precision="bf16")
                out["bf16 autocast + SDPA"] = ImageEncoder(sam, "cpu", sdpa=True, precision="bf16")
        except Exception as exc:  # noqa: BLE001 - a path that cannot be built is reported, the others still run
            out[name] = f"not measured: {type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''}"
    return out


def main(argv=None) -> int:
    args = parse(argv)
    limit_isa(args.isa)
    import numpy as np
    import torch

    from clicklabel.bench.agreement import engine_masks, fixed_prompts, interleaved, ious, load_average
    from clicklabel.bench.harness import device_name, print_table, sample_image
    from clicklabel.embeddings import EmbeddingCache
    from clicklabel.segment.encoder import ImageEncoder
    from clicklabel.segment.models import random_model
    from clicklabel.segment.precision import cpu_bf16
    from clicklabel.segment.sam import SamEngine

    loaded = random_model(args.model)
    if args.size:  # a smaller input: quick smoke runs (positional embeddings cut to the grid)
        enc = loaded.module.image_encoder
        grid = args.size // enc.patch_embed.proj.kernel_size[0]
        enc.img_size = args.size
        enc.pos_embed = torch.nn.Parameter(enc.pos_embed[:, :grid, :grid].clone())
    eng = SamEngine(loaded=loaded, device="cpu", cache=EmbeddingCache(disk=False), precision="fp32", fast=False)
    sam = eng.sam
    stock = ImageEncoder(sam, "cpu", precision="fp32")
    img = sample_image()
    h, w = img.shape[:2]
    prompts = fixed_prompts(h, w)
    load0 = load_average()
    ref = stock.encode([img])[0]  # also the stock side's warm-up
    ref_masks = engine_masks(eng, ref, prompts) if not args.size else None
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_paths(sam, [p.strip() for p in args.paths.split(",") if p.strip()], tmp, stock.size)
        for name, enc in paths.items():
            if isinstance(enc, str):
                rows.append([name, "-", "-", enc, "-", "-"])
                print(f"{name}: {enc}", flush=True)
                continue
            got = {}
            pairs = interleaved(lambda: stock.encode([img]), lambda e=enc, g=got: g.update(emb=e.encode([img])[0]),
                                args.pairs, warmup=0)
            agree = min(ious(ref_masks, engine_masks(eng, got["emb"], prompts))) if ref_masks else float("nan")
            rel = float(np.linalg.norm(got["emb"].features - ref.features) / np.linalg.norm(ref.features))
            rows.append([name, f"{np.median(pairs.a):.2f}", f"{np.median(pairs.b):.2f}", pairs.spread(),
                         f"{agree:.4f}", f"{rel:.4f}"])
            print(f"measured: {name}: {pairs.spread()}, mask IoU min {agree:.4f}, {pairs.load_text()}", flush=True)
    bf16, why = cpu_bf16()
    print(f"\ncpu_paths: model {args.model}, {device_name('cpu')}, ISA {args.isa} (bf16 hardware seen: {bf16}, {why}), "
          f"{args.pairs} interleaved pair(s) per path, random weights (IoU = agreement with stock fp32, not "
          f"quality); load average {load0:.1f} -> {load_average():.1f}")
    print_table(rows, ["path", "stock fp32 s", "path s", "stock / path", "mask IoU min", "features rel. L2"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
