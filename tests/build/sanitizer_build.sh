#!/usr/bin/env bash
# Configures and builds an instrumented tree, Debug at -O1 with line tables (enough
# for the reports' stack traces), the tests' own code at -O0 but for the two files
# with heavy reference loops (tests/native/CMakeLists.txt), without the benchmarks:
#   sanitizer_build.sh DIR asan   clang-14, AddressSanitizer + UndefinedBehaviorSanitizer,
#                                 libloom's objects also instrumented for libFuzzer
#                                 (-DLOOM_FUZZ=ON): one tree runs every native test
#                                 (./build.sh sanitize) and the fuzz harnesses
#                                 (tests/fuzz/run.sh), so CI builds it once
#   sanitizer_build.sh DIR tsan   GCC, ThreadSanitizer (GCC builds this tree faster than clang)
# Quiet when it works; on failure prints the compiler's errors and exits 1.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
dir=${1:?usage: sanitizer_build.sh DIR asan|tsan}
case "${2:-}" in
  asan) flags=(-DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 -DLOOM_SANITIZE=address,undefined -DLOOM_FUZZ=ON) ;;
  tsan) flags=(-DLOOM_SANITIZE=thread) ;;
  *) echo "usage: sanitizer_build.sh DIR asan|tsan" >&2; exit 2 ;;
esac
if [ "$2" = asan ] && { ! command -v clang++-14 >/dev/null ||
   [ ! -f /usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.fuzzer-x86_64.a ]; }; then
  echo "clang-14 with its sanitizer and libFuzzer runtimes is not installed (Debian: clang-14 libclang-rt-14-dev)" >&2
  exit 1
fi
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if cmake -S "$root" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG=-O1 -DCMAKE_C_FLAGS_DEBUG=-O1 "${flags[@]}" \
     -DLOOM_TEST_OPTIMIZE=-O0 -DLOOM_BUILD_BENCH=OFF >"$log" 2>&1 &&
   cmake --build "$dir" --parallel >"$log" 2>&1; then
  exit 0
fi
grep -E "error|Error|FAILED" "$log" | head -40 >&2
echo "the $2 build in $dir failed" >&2
exit 1
