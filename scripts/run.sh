#!/usr/bin/env bash
# Set up .venv (if needed) with everything, then open the clicklabel annotator (napari) on the bundled sample photos.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q -e '.[gui,openvino]' 2>&1 | grep -v "^WARNING: Location" || true
exec .venv/bin/clicklabel gui "$@"
