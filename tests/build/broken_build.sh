#!/usr/bin/env bash
# Proves that ./build.sh test cannot lie: a copy of the tree whose native library
# does not compile, built into a folder that already holds a working libloom
# (what a developer's stale build folder looks like), must end with a non-zero
# exit and "0 passed, 1 failed", never with the stale library's test results.
# Usage: broken_build.sh BUILD_DIR_WITH_A_WORKING_LIBLOOM [sh|ps1]  (./build.sh or pwsh ./build.ps1)
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
built=${1:?usage: broken_build.sh BUILD_DIR [sh|ps1]}
script=${2:-sh}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$root" && git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$tmp" 2>/dev/null) ||
  (cd "$root" && tar cf - --exclude=./build --exclude=./artifacts . | tar xf - -C "$tmp")
# The first source the native build compiles, so the check stays quick.
echo 'this is not C++;' >>"$tmp/native/src/backend/device.cc"
mkdir -p "$tmp/build/lib"
cp -L "$built/lib/libloom.so" "$tmp/build/lib/libloom.so"
cp -L "$built/lib/libloom.so" "$tmp/build/lib/libloom.so.0"
if [ "$script" = ps1 ]; then
  out=$(cd "$tmp" && LOOM_BUILD_DIR="$tmp/build" pwsh -NoProfile ./build.ps1 test 2>&1)
else
  out=$(cd "$tmp" && LOOM_BUILD_DIR="$tmp/build" ./build.sh test 2>&1)
fi
rc=$?
last=$(echo "$out" | tail -1)
if [ "$rc" -ne 0 ] && [ "$last" = "0 passed, 1 failed" ] && [[ $out == *"this is not C++"* ]]; then
  echo "broken build: exit $rc, '$last', compile error shown"
  exit 0
fi
echo "$out" | tail -20
echo "broken build was not reported: exit $rc, last line '$last'" >&2
exit 1
