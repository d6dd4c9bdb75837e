#!/usr/bin/env bash
# The GPU measurements of the fast encoder path (issue #8), prepared as ONE run for a lent H100/H200 (the
# device tool, 15 minutes in all): random weights, so timings only.
#
# Here, once:   ./benchmarks/fetch_gpu_wheels.sh          (segment-anything + pycocotools wheels into .whl/)
# Device call:  command "bash benchmarks/gpu_fast_path.sh", carry [".whl"], timeout_s 570; then give_back.
# Every figure is printed and written under $OUT; copy the tables into docs/benchmarks.md with the device name.
source "$(dirname "$0")/gpu_setup.sh"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
  nproc
} 2>&1 | tee "$OUT/machine.txt"
# 1. technique table + precompute of 1,000 distinct JPEGs, vit_h then vit_b (compilation is in 'first pass s';
#    rows are also printed as they are measured, so a run cut by its timeout still reports what it measured)
timeout 300 python3 -m clicklabel.cli bench encoder --model vit_h --random-weights --device cuda --batch 1,8 \
  --repeats 10 --precompute-images 1000 2>&1 | grep -v Warning | tee "$OUT/encoder_vit_h.txt"
timeout 180 python3 -m clicklabel.cli bench encoder --model vit_b --random-weights --device cuda --batch 1,8 \
  --repeats 10 --precompute-images 1000 2>&1 | grep -v Warning | tee "$OUT/encoder_vit_b.txt"
# 2. prompt latency against stock, if time is left
timeout 60 python3 -m clicklabel.cli bench latency --model vit_b --random-weights --device cuda --repeats 50 2>&1 \
  | grep -v Warning | tee "$OUT/latency_vit_b.txt"
echo "done"
