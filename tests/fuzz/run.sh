#!/usr/bin/env bash
# Builds the libFuzzer harnesses with clang under AddressSanitizer and
# UndefinedBehaviorSanitizer (build-asan/, the tree ./build.sh sanitize runs the
# native tests in: tests/build/sanitizer_build.sh), replays every committed regression input,
# then fuzzes each harness for SECONDS from its committed seed corpus (in a scratch
# copy). A finding is saved into tests/fuzz/regressions/<harness>/ to be committed
# with its fix. The seed is fixed (LOOM_FUZZ_SEED, default 1), so a short CI run
# repeats the same inputs. Usage: run.sh [SECONDS] (default 60). Ends "N passed, N failed".
set -uo pipefail
shopt -s nullglob
root=$(cd "$(dirname "$0")/../.." && pwd)
seconds=${1:-60}
build="$root/build-asan"
harnesses=(params idx csv symbol op)
if ! "$root/tests/build/sanitizer_build.sh" "$build" asan; then
  echo "FAIL the fuzz harnesses do not build"
  echo "0 passed, ${#harnesses[@]} failed"
  exit 1
fi
# An allocation past 512 MiB fails (Loom reports it as out of memory) instead of
# exhausting the machine: fuzzed shapes may ask for any size. (At 2 GiB, filling a
# fuzzed 1 GiB `ones` under ASan took over libFuzzer's 10 s slow-unit limit.)
export ASAN_OPTIONS=allocator_may_return_null=1:max_allocation_size_mb=512:detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
passed=0 failed=0
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for h in "${harnesses[@]}"; do
  bin="$build/tests/fuzz/fuzz_$h"
  regressions=("$root/tests/fuzz/regressions/$h"/*)
  if [ ${#regressions[@]} -gt 0 ] &&
     ! "$bin" -rss_limit_mb=6144 -malloc_limit_mb=1000000 -timeout=60 "${regressions[@]}" >"$scratch/$h.replay" 2>&1; then
    echo "FAIL fuzz_$h: a committed regression input fails again:"
    grep -E "ERROR|runtime error|SUMMARY" "$scratch/$h.replay" | head -5
    failed=$((failed + 1))
    continue
  fi
  mkdir -p "$scratch/$h" "$scratch/$h-found"
  cp -r "$root/tests/fuzz/corpus/$h/." "$scratch/$h/"
  "$bin" -seed="${LOOM_FUZZ_SEED:-1}" -max_total_time="$seconds" -rss_limit_mb=6144 -malloc_limit_mb=1000000 -timeout=20 -print_final_stats=1 \
    -artifact_prefix="$scratch/$h-found/" "$scratch/$h" >"$scratch/$h.log" 2>&1
  rc=$?
  runs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+)/\1/p' "$scratch/$h.log" | tail -1)
  found=("$scratch/$h-found"/*)
  if [ "$rc" -eq 0 ] && [ ${#found[@]} -eq 0 ]; then
    echo "ok   fuzz_$h: ${runs:-?} executions in ${seconds} s, ${#regressions[@]} regression inputs replayed, no findings"
    passed=$((passed + 1))
  else
    mkdir -p "$root/tests/fuzz/regressions/$h"
    for f in "${found[@]}"; do cp "$f" "$root/tests/fuzz/regressions/$h/"; done
    echo "FAIL fuzz_$h: a finding after ${runs:-?} executions (input saved in tests/fuzz/regressions/$h/):"
    grep -E "ERROR|runtime error|SUMMARY|deadly" "$scratch/$h.log" | head -5
    failed=$((failed + 1))
  fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
