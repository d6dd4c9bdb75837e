#!/usr/bin/env bash
# The GPU side of "the wait before the first click", prepared as ONE device call (random weights: timings only):
#   1. vit_b prompt latency on CUDA with the default interactive encoder (bf16 + SDPA) against stock, interleaved,
#      with the cached embedding read in a new process (disk -> pinned memory -> GPU) next to encoding;
#   2. the same with --precision fp32 (fp32 + SDPA): which interactive path is faster while agreeing;
#   3. vit_b images/s of the compiled bf16 encoder at batches 16, 32 and 64 (the best batch is the figure);
#   4. the CPU-path table's GPU counterpart is not needed: bf16 is chosen by compute capability.
# Here, once:   ./benchmarks/fetch_gpu_wheels.sh
# Device call:  command "bash benchmarks/gpu_first_click.sh", carry [".whl"], timeout_s 570; then give_back.
# Every figure is printed and written under $OUT; copy the tables into docs/benchmarks.md with the device name.
source "$(dirname "$0")/gpu_setup.sh"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
  nproc
} 2>&1 | tee "$OUT/machine.txt"
timeout 120 python3 -m clicklabel.cli bench latency --model vit_b --random-weights --device cuda --repeats 50 \
  --pairs 10 2>&1 | grep -v Warning | tee "$OUT/latency_vit_b_auto.txt"
timeout 120 python3 -m clicklabel.cli bench latency --model vit_b --random-weights --device cuda --repeats 50 \
  --pairs 10 --precision fp32 2>&1 | grep -v Warning | tee "$OUT/latency_vit_b_fp32.txt"
timeout 240 python3 -m clicklabel.cli bench encoder --model vit_b --random-weights --device cuda --batch 16,32,64 \
  --repeats 10 2>&1 | grep -v Warning | tee "$OUT/encoder_vit_b_batches.txt"
echo "done"
