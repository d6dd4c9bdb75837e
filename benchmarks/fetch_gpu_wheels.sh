#!/usr/bin/env bash
# Wheels the device machine lacks (its image has torch, torchvision, numpy, pillow, xxhash, tqdm, but no PyPI),
# for its Python 3.12 on x86-64, into .whl/ (git-ignored through .git/info/exclude). See gpu_fast_path.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qs '^/.whl/' .git/info/exclude || { mkdir -p .git/info; echo /.whl/ >> .git/info/exclude; }
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl pycocotools==2.0.11 segment-anything==1.0 platformdirs
ls -l .whl
