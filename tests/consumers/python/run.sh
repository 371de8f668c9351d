#!/usr/bin/env bash
# Installs the Python wheel that ./build.sh pack wrote, with pip, offline, into a
# fresh virtual environment outside the repository, as the README says, then uses
# it from another directory: the package must carry libloom and find it beside
# itself. Usage: run.sh ARTIFACTS_DIR VERSION
set -euo pipefail
artifacts=$(cd "${1:?usage: run.sh ARTIFACTS_DIR VERSION}" && pwd)
version=${2:?usage: run.sh ARTIFACTS_DIR VERSION}
wheel=$(ls "$artifacts"/loom-"$version"-*-linux_*.whl | head -1)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 -m venv --system-site-packages "$tmp/venv"  # NumPy comes from the system
env -u PYTHONPATH "$tmp/venv/bin/pip" install -q --no-index "$wheel"  # a PYTHONPATH holding the source tree would satisfy it
cd "$tmp"
env -u PYTHONPATH -u LOOM_LIBRARY_PATH "$tmp/venv/bin/python" - <<'PY'
import os
import numpy as np
import loom
assert os.path.dirname(loom.library_path) == os.path.dirname(loom.__file__), loom.library_path
y = loom.nd.dot(loom.from_numpy(np.eye(2)), loom.from_numpy(np.array([[1.0], [2.0]])))
assert y.asnumpy().tolist() == [[1.0], [2.0]]
print("the wheel's loom works; libloom from", loom.library_path)
PY
