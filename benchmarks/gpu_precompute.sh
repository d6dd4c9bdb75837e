#!/usr/bin/env bash
# Second GPU run (after gpu_fast_path.sh found vit_b's precompute CPU-bound at 28% of the encoder's rate): the
# device resize on CUDA checked against PIL's, then vit_b at batches 8 and 16 with 1,000 distinct JPEGs through
# precompute. Random weights: timings only. Device call: carry [".whl"], timeout_s 420.
source "$(dirname "$0")/gpu_setup.sh"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | tee "$OUT/machine.txt"
# 1. the device resize (bf16 path) against PIL's on the GPU: pixels and features
timeout 120 python3 - <<'PY' 2>&1 | grep -v Warning | tee "$OUT/device_resize.txt"
import tempfile, torch, numpy as np
from pathlib import Path
from clicklabel.bench.encoder import source_images
from clicklabel.images import load_image
from clicklabel.segment.encoder import ImageEncoder
from clicklabel.segment.models import load_model, save_random_checkpoint
ck = save_random_checkpoint(Path(tempfile.mkdtemp()) / "b.pth", "vit_b")
sam = load_model("vit_b", ck, False).module.to("cuda").eval()
rng = np.random.default_rng(0)  # the samples, and noise at odd sizes (where rounding differences show)
imgs = [load_image(p) for p in source_images(None)] + \
    [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((333, 517), (1201, 799), (97, 1500))]
gpu = ImageEncoder(sam, "cuda", sdpa=True, precision="bf16", device_resize=True)
pil = ImageEncoder(sam, "cuda", sdpa=True, precision="bf16", device_resize=False)
pa, pb = [gpu.prepare(i) for i in imgs], [pil.prepare(i) for i in imgs]
a, b = gpu.to_device(pa).int(), pil.to_device(pb).int()
d = torch.cat([(a[k, :h, :w] - b[k, :h, :w]).abs().flatten() for k, (h, w) in enumerate(p.input_size for p in pb)])
print(f"device resize vs PIL on {torch.cuda.get_device_name(0)}: {len(imgs)} images, max diff {int(d.max())} "
      f"grey levels, {float((d > 0).float().mean()) * 100:.4f}% of pixels differ")
fa = gpu.run([gpu.prepare(i) for i in imgs]).float()
fb = pil.run([pil.prepare(i) for i in imgs]).float()
print(f"features (bf16): max |diff| {float((fa - fb).abs().max()):.4g}, relative L2 "
      f"{float((fa - fb).norm() / fb.norm()):.3g}")
PY
# 2. vit_b: batches 8 and 16, precompute of 1,000 distinct JPEGs at the largest batch
timeout 240 python3 -m clicklabel.cli bench encoder --model vit_b --random-weights --device cuda --batch 8,16 \
  --repeats 10 --precompute-images 1000 2>&1 | grep -v Warning | tee "$OUT/encoder_vit_b_b16.txt"
echo "done"
