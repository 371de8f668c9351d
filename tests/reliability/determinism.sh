#!/usr/bin/env bash
# Determinism: the main job (the seed's MLP) and the LeNet example, each run R times
# with default settings, must end with the same parameter digest (params-sha256, a
# SHA-256 of every trained parameter's bytes) every time.
# Usage: determinism.sh [runs] [mlp-epochs] [lenet-epochs]   (default 30 20 2)
# Not part of ./build.sh test (30 runs of each take about half an hour on 2 cores);
# ./build.sh determinism runs it. Ends "N passed, N failed" (one test per example).
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
app="$root/src/Loom.Examples/bin/Release/net10.0/Loom.Examples.dll"
runs=${1:-30}
export LOOM_DATA_DIR=${LOOM_DATA_DIR:-$root/data}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
check() {  # check NAME ARGS...
  local name=$1
  shift
  : >"$tmp/$name.digests"
  for i in $(seq 1 "$runs"); do
    if ! dotnet "$app" "$@" >"$tmp/$name.$i.log" 2>&1; then
      echo "FAIL $name run $i exited non-zero:" >&2
      tail -5 "$tmp/$name.$i.log" >&2
      fail=$((fail + 1))
      return
    fi
    d=$(sed -n 's/^params-sha256=//p' "$tmp/$name.$i.log")
    acc=$(sed -n 's/^test-accuracy=//p' "$tmp/$name.$i.log")
    echo "$name run $i: $d accuracy $acc" >&2
    echo "$d" >>"$tmp/$name.digests"
  done
  local distinct
  distinct=$(sort -u "$tmp/$name.digests" | grep -c .)
  if [ "$distinct" -eq 1 ]; then
    echo "ok   $name: $runs runs, one parameter digest ($(head -1 "$tmp/$name.digests"))"
    pass=$((pass + 1))
  else
    echo "FAIL $name: $runs runs gave $distinct different parameter digests:"
    sort "$tmp/$name.digests" | uniq -c
    fail=$((fail + 1))
  fi
}
check mlp mnist "${2:-20}"
check lenet lenet "${3:-2}"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
