#!/usr/bin/env bash
# Packs what tests/device/cuda.sh needs on a GPU machine without Loom's build
# dependencies: libloom and the libraries it links (OpenBLAS, oneDNN, ONNX...),
# loom_backend_contract, Loom.Examples published as NativeAOT, and MNIST.
#   tests/device/pack.sh BUILD_DIR ARTIFACTS     (run ./build.sh and ./build.sh data first)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=$(cd "${1:?usage: pack.sh BUILD_DIR ARTIFACTS}" && pwd)
ART=${2:?usage: pack.sh BUILD_DIR ARTIFACTS}
mkdir -p "$ART"
ART=$(cd "$ART" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/lib" "$tmp/ex"
cp -L "$BUILD/lib/libloom.so" "$tmp/lib/libloom.so"
# The shared libraries libloom needs, except the C library's own.
ldd "$BUILD/lib/libloom.so" | awk '/=>/ {print $3}' | grep -vE '/(libc|libm|libdl|libpthread|librt|ld-linux[^/]*)\.so' |
  while read -r f; do cp -L "$f" "$tmp/lib/"; done
tar -cJf "$ART/libs.tar.xz" -C "$tmp/lib" .
dotnet publish "$ROOT/src/Loom.Examples/Loom.Examples.csproj" -c Release -r linux-x64 -nologo -v q \
  -p:PublishAot=true -o "$tmp/pub" >"$tmp/publish.log" 2>&1 || { tail -20 "$tmp/publish.log"; exit 1; }
cp "$tmp/pub/Loom.Examples" "$tmp/pub/"*.so "$tmp/ex/"
cp -L "$BUILD/lib/libloom.so" "$tmp/ex/libloom.so"
tar -cJf "$ART/examples.tar.xz" -C "$tmp/ex" .
tar -cJf "$ART/mnist.tar.xz" -C "$ROOT/data" mnist
cp "$BUILD/tests/native/loom_backend_contract" "$ART/"
du -sh "$ART"/*
