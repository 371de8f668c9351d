#!/usr/bin/env bash
# Publishes the training program in this folder trimmed (self-contained) and as
# NativeAOT for linux-x64, with warnings as errors, and runs both from outside the
# tree with libloom beside them. Usage: run.sh BUILD_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:?usage: run.sh BUILD_DIR}" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$here/Program.cs" "$here/Aot.csproj" "$tmp/"
sed -i "s|../../../src/Loom/Loom.csproj|$(cd "$here/../../../src/Loom" && pwd)/Loom.csproj|" "$tmp/Aot.csproj"
for mode in trimmed aot; do
  if [ "$mode" = trimmed ]; then flags=(--self-contained -p:PublishTrimmed=true); else flags=(-p:PublishAot=true); fi
  dotnet publish "$tmp/Aot.csproj" -c Release -r linux-x64 -nologo -v q -o "$tmp/$mode" "${flags[@]}" >"$tmp/$mode.log" 2>&1 ||
    { tail -30 "$tmp/$mode.log"; echo "$mode publish failed"; exit 1; }
  cp -L "$build/lib/libloom.so" "$tmp/$mode/libloom.so"
  (cd / && env -u LOOM_LIBRARY_PATH "$tmp/$mode/Aot") || { echo "$mode program failed"; exit 1; }
  echo "$mode: ok"
done
