#!/usr/bin/env bash
# Runs every case in C, C# and Python (and in Python again under the naive
# engine, with 1 and 4 workers and with 1 and 3 kernel threads), then compares the digests with each other
# and with the goldens of each CPU kernel set. Usage: run.sh BUILD_DIR [--update]
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=$1
shift
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cases=("$here"/cases/*.json)
export LOOM_LIBRARY_PATH="$build/lib/libloom.so"
# The goldens hold OpenBLAS's Haswell (AVX2) kernels' bits: OpenBLAS picks its kernels by
# processor, and another kernel set rounds sums in another order. Every run here is pinned
# to that set where the processor has it, so the digests mean the same on any such machine.
if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -qw avx2 /proc/cpuinfo 2>/dev/null; then
  export OPENBLAS_CORETYPE=Haswell
fi
# Each CPU kernel set has its goldens: golden.sha256 for Loom's reference kernels and,
# where libloom is built with oneDNN, golden.onednn.sha256 with oneDNN pinned to its
# AVX2 kernels (as OpenBLAS above), so the digests hold on any AVX2 machine, and its
# matrix products on oneDNN's sgemm (LOOM_SGEMM=onednn: on AVX2 they would run on
# OpenBLAS's by default, whose bits the reference set's goldens already hold).
run_set() {  # KERNELS GOLDEN [--update]: every case in every language under one kernel set
  local set=$1 golden=$2 out
  shift 2
  export LOOM_CPU_KERNELS=$set
  "$build/tests/conformance/loom_conformance" "${cases[@]}" > "$tmp/c.txt" || true
  dotnet "$root/tests/conformance/csharp/bin/Release/net10.0/Loom.Conformance.dll" "${cases[@]}" > "$tmp/csharp.txt" || true
  py LOOM_UNUSED=1 > "$tmp/python.txt" || true
  py LOOM_ENGINE=naive > "$tmp/python-naive.txt" || true
  py LOOM_CPU_WORKERS=1 > "$tmp/python-1-worker.txt" || true
  py LOOM_CPU_WORKERS=4 > "$tmp/python-4-workers.txt" || true
  py LOOM_KERNEL_THREADS=1 > "$tmp/python-1-kernel-thread.txt" || true
  py LOOM_KERNEL_THREADS=3 > "$tmp/python-3-kernel-threads.txt" || true
  out=$(/usr/bin/python3 "$here/compare.py" "$golden" "$@" python="$tmp/python.txt" c="$tmp/c.txt" \
    csharp="$tmp/csharp.txt" python-naive-engine="$tmp/python-naive.txt" python-1-worker="$tmp/python-1-worker.txt" \
    python-4-workers="$tmp/python-4-workers.txt" python-1-kernel-thread="$tmp/python-1-kernel-thread.txt" \
    python-3-kernel-threads="$tmp/python-3-kernel-threads.txt")
  echo "$out" | sed "s/^/[$set] /"
  read -r p f <<<"$(echo "$out" | sed -nE 's/^([0-9]+) passed, ([0-9]+) failed$/\1 \2/p' | tail -1)"
  passed=$((passed + ${p:-0})) failed=$((failed + ${f:-1}))
}
py() { env "$@" PYTHONPATH="$root/bindings/python" /usr/bin/python3 "$here/run.py" "${cases[@]}"; }
passed=0 failed=0
run_set reference "$here/golden.sha256" "$@"
deps=$(ldd "$build/lib/libloom.so" 2>/dev/null || true)  # read whole: see build.sh's run_ctest
if [[ $deps == *libdnnl* ]]; then
  DNNL_MAX_CPU_ISA=AVX2 LOOM_SGEMM=onednn run_set onednn "$here/golden.onednn.sha256" "$@"
fi
echo "$passed passed, $failed failed"
