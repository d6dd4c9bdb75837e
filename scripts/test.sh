#!/usr/bin/env bash
# Set up .venv (if needed) with everything, then run the whole test suite (GUI tests under a virtual display).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q -e '.[gui,test,hq,ray,sam3,video,openvino]' 2>&1 | grep -v "^WARNING: Location" || true
# SAM 2.1's package is an sdist: built here against the torch just installed, without its CUDA extension (an
# isolated build would download a second torch, 3 GB); pip caches the wheel it builds
.venv/bin/python -m pip install -q setuptools 2>&1 | grep -v "^WARNING: Location" || true
SAM2_BUILD_CUDA=0 .venv/bin/python -m pip install -q --no-build-isolation -e '.[sam2]' 2>&1 \
  | grep -v "^WARNING: Location" || true
# fail early if the install did not work (every model family is tested)
.venv/bin/python -c "import clicklabel, segment_anything, torch, sam2, segment_anything_hq, ray, av, openvino"
run=(.venv/bin/python -m pytest "$@")
if command -v xvfb-run >/dev/null 2>&1; then
  run=(xvfb-run -a -s "-screen 0 1600x1000x24" "${run[@]}")
elif [ -z "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
  echo "test.sh: no display and no xvfb-run: the GUI tests will be skipped (install xvfb to run them)"
fi
set +e
"${run[@]}"
code=$?
set -e
[ "$code" -eq 5 ] && { echo "pytest collected no tests"; exit 1; }
exit "$code"
