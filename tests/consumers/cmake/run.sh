#!/usr/bin/env bash
# Installs Loom from a build tree into a temporary prefix, then configures,
# builds and runs a C project outside the repository against it with
# find_package(Loom CONFIG REQUIRED). Usage: run.sh BUILD_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
ls "$tmp/prefix/lib/"libloom.so.0 "$tmp/prefix/lib/cmake/Loom/LoomConfigVersion.cmake" >/dev/null
cp -r "$here" "$tmp/src"
cmake -S "$tmp/src" -B "$tmp/build" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/build" >/dev/null
"$tmp/build/consumer"
