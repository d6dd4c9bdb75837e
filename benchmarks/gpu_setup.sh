# Sourced by the device scripts (gpu_fast_path.sh, gpu_precompute.sh): the carried wheels installed into /tmp/site,
# the source tree on the path, and $OUT (what the device call sends back).
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/clicklabel_gpu_out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  || { echo "wheel install failed: run benchmarks/fetch_gpu_wheels.sh here and carry .whl"; exit 1; }
export PYTHONPATH=/tmp/site:$PWD/src
