#!/usr/bin/env bash
# Checks the CUDA backend's sources (native/backends/cuda) with clang's CUDA
# front end against declaration-only stand-ins for the CUDA runtime, cuBLAS and
# cuDNN (tests/build/cuda_stub), host and device sides, so a machine without the
# CUDA toolkit still finds C++ errors in the plugin. It cannot find a wrong CUDA
# signature the stand-ins repeat; the GPU machine's build (tests/device/cuda.sh) does.
# A source that fails is printed with clang's errors and the script exits 1.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
CXX=${CLANGXX:-clang++-14}
command -v "$CXX" >/dev/null || { echo "cuda_syntax: $CXX not found"; exit 1; }
stub="$ROOT/tests/build/cuda_stub"
rc=0
for f in "$ROOT"/native/backends/cuda/*.cu; do
  for side in host device; do
    if ! out=$("$CXX" -x cuda --cuda-$side-only -nocudainc -nocudalib --cuda-gpu-arch=sm_70 -std=c++17 \
                 -fsyntax-only -Wall -Werror -DLOOM_HAVE_CUDNN -include "$stub/cuda_runtime.h" -I"$stub" \
                 -I"$ROOT/native/include" "$f" 2>&1); then
      echo "cuda_syntax: $(basename "$f") ($side side):"
      echo "$out" | head -30
      rc=1
    fi
  done
done
[ $rc = 0 ] && echo "cuda_syntax: $(ls "$ROOT"/native/backends/cuda/*.cu | wc -l) sources checked, host and device sides"
exit $rc
