#!/usr/bin/env bash
# The CUDA backend's checks on a GPU machine that has the CUDA toolkit but not
# Loom's build dependencies (OpenBLAS, oneDNN, .NET): libloom and the programs
# come prebuilt from ARTIFACTS (made by tests/device/pack.sh on the build
# machine); this script builds libloom_cuda there and runs
#   1. the plugin contract (loom_backend_contract),
#   2. device_check.py: every op case on gpu(0) against cpu(0), once with the
#      staged CPU path (every op must match) and once without it
#      (LOOM_CUDA_HOST_FALLBACK=0: the ops with no CUDA kernel are listed),
#   3. the examples with --ctx=gpu(0) and tests/bench/gpu.sh beside PyTorch.
# Logs go to OUT.   tests/device/cuda.sh ARTIFACTS OUT [STAGES]
# STAGES: a subset of "build contract check examples bench" (default: all).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
ART=$(cd "${1:?usage: cuda.sh ARTIFACTS OUT [STAGES]}" && pwd)
OUT=${2:?usage: cuda.sh ARTIFACTS OUT [STAGES]}
STAGES=${3:-build contract check examples bench}
mkdir -p "$OUT"
want() { [[ " $STAGES " == *" $1 "* ]]; }
W=/tmp/loom-device
mkdir -p $W/lib $W/ex
log() { echo "== $*" | tee -a "$OUT/summary.log"; }
t0=$(date +%s)
stamp() { echo "[$(($(date +%s) - t0)) s] $*" | tee -a "$OUT/summary.log"; }

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee -a "$OUT/summary.log"
nvcc --version | tail -2 | tee -a "$OUT/summary.log"
tar -xJf "$ART/libs.tar.xz" -C $W/lib
tar -xJf "$ART/examples.tar.xz" -C $W/ex
mkdir -p "$ROOT/data"
[ -d "$ROOT/data/mnist" ] || tar -xJf "$ART/mnist.tar.xz" -C "$ROOT/data"
export LD_LIBRARY_PATH=$W/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export LOOM_LIBRARY_PATH=$W/lib/libloom.so
export PYTHONPATH=$ROOT/bindings/python
PY=${PYTHON:-python3}
# cuDNN and (where the toolkit lacks it) cuBLAS: from the toolkit or Python's wheels.
roots="/usr/local /usr/include /usr/lib/x86_64-linux-gnu /opt $($PY -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null)"
cudnn_h=$(find $roots -name cudnn.h 2>/dev/null | head -1)
CUDNN_ROOT=$([ -n "$cudnn_h" ] && dirname "$(dirname "$cudnn_h")")
cublas_h=$(find $roots -name cublas_v2.h 2>/dev/null | head -1)
export LOOM_CUBLAS_ROOT=$([ -n "$cublas_h" ] && dirname "$(dirname "$cublas_h")")
found=$(find $roots \( -name 'libcudnn.so*' -o -name 'libcublas.so*' \) 2>/dev/null)
echo "$found" | head -6 | tee -a "$OUT/summary.log"
for d in $(echo "$found" | xargs -r -n1 dirname | sort -u); do export LD_LIBRARY_PATH=$LD_LIBRARY_PATH:$d; done
stamp "cuDNN root: ${CUDNN_ROOT:-none}; cuBLAS headers: ${LOOM_CUBLAS_ROOT:-none}"

if want build; then
  log "build libloom_cuda"
  ok=0
  for cudnn in ON OFF; do
    rm -rf $W/build
    if cmake -S "$ROOT/native/backends/cuda" -B $W/build -G Ninja -DCMAKE_BUILD_TYPE=Release \
         -DLOOM_CUDA_ARCHITECTURES=90 -DLOOM_CUDA_CUDNN=$cudnn -DLOOM_CUDNN_ROOT="$CUDNN_ROOT" >>"$OUT/build.log" 2>&1 &&
       cmake --build $W/build -j16 >>"$OUT/build.log" 2>&1; then
      ok=1; stamp "built (cuDNN $cudnn)"; break
    fi
    stamp "build with cuDNN $cudnn failed:"; grep -E "error|Error" "$OUT/build.log" | head -20 | tee -a "$OUT/summary.log"
  done
  [ $ok = 1 ] || { stamp "no plugin built"; exit 1; }
  cp $W/build/lib/libloom_cuda.so $W/lib/
  cp $W/build/lib/libloom_cuda.so $W/ex/
  ldd $W/lib/libloom_cuda.so | grep -E "not found|cudnn|cublas" | tee -a "$OUT/summary.log"
fi

if want contract; then
  log "contract"
  "$ART/loom_backend_contract" $W/lib/libloom_cuda.so >"$OUT/contract.log" 2>&1
  stamp "contract rc=$?: $(grep -c '^ok' "$OUT/contract.log") ok, $(grep -c '^FAIL' "$OUT/contract.log") failed"
  grep '^FAIL' "$OUT/contract.log" | head | tee -a "$OUT/summary.log"
  $PY -c 'import loom; print(loom.backend_describe())' 2>&1 | tee -a "$OUT/summary.log"
fi

if want check; then
  log "device_check (staged CPU path on)"
  (cd "$ROOT/tests/conformance" && timeout 90 $PY device_check.py --json "$OUT/device_check.json" >"$OUT/check.log" 2>&1)
  stamp "device_check rc=$?"; grep -E "^gpu|mismatch|error" "$OUT/check.log" | tail -25 | tee -a "$OUT/summary.log"
  log "device_check, CUDA kernels only (LOOM_CUDA_HOST_FALLBACK=0)"
  (cd "$ROOT/tests/conformance" && LOOM_CUDA_HOST_FALLBACK=0 timeout 90 $PY device_check.py --require-all >"$OUT/check_native.log" 2>&1)
  stamp "device_check native rc=$?"; grep -E "^gpu|^missing|on gpu" "$OUT/check_native.log" | tail -8 | tee -a "$OUT/summary.log"
fi

if want examples; then
  log "examples on gpu(0)"
  export LOOM_DATA_DIR="$ROOT/data"
  IFS=';' read -ra exs <<< "${EXAMPLES:-mnist 2;lenet 2}"  # EXAMPLES: "name args;name args"
  for ex in "${exs[@]}"; do
    LOOM_CUDA_FALLBACK_LOG=1 timeout 180 $W/ex/Loom.Examples $ex "--ctx=gpu(0)" >>"$OUT/examples.log" 2>&1
    stamp "$ex rc=$?"; grep -E "time =|ccuracy|staged|rror" "$OUT/examples.log" | tail -6 | tee -a "$OUT/summary.log"
  done
  # PROFILE="resnet 64 3": that example once more, each kernel waited for, with the
  # engine's per-op table (LOOM_PROFILE=1) appended to examples.log.
  if [ -n "${PROFILE:-}" ]; then
    LOOM_GPU_ASYNC=0 LOOM_PROFILE=1 timeout 120 $W/ex/Loom.Examples $PROFILE "--ctx=gpu(0)" >>"$OUT/examples.log" 2>&1
    stamp "profile of $PROFILE rc=$?"
  fi
fi

if want bench; then
  log "gpu.sh"
  LOOM_EXAMPLES=$W/ex/Loom.Examples PYTHON=$PY LOOM_DATA_DIR="$ROOT/data" RESNET_STEPS=${RESNET_STEPS:-10} \
    timeout ${BENCH_TIMEOUT:-420} bash "$ROOT/tests/bench/gpu.sh" >"$OUT/bench.log" 2>&1
  stamp "gpu.sh rc=$?"; grep -vE "^\s*$" "$OUT/bench.log" | tail -12 | tee -a "$OUT/summary.log"
fi
stamp "done"
