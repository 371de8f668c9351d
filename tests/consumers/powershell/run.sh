#!/usr/bin/env bash
# Checks build.ps1 without PowerShell: parsed by tree-sitter's PowerShell
# grammar (npm packages, pinned) and compared with build.sh's commands.
# Exit 0 pass, 1 fail, 77 skipped (no node/npm, or the registry unreachable).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
command -v node >/dev/null && command -v npm >/dev/null || { echo "skipped: node and npm are needed"; exit 77; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cp "$here/check.mjs" "$tmp/"
if ! (cd "$tmp" && npm install --silent --no-save --ignore-scripts web-tree-sitter@0.27.1 \
      tree-sitter-powershell@0.26.4 >/dev/null 2>&1); then
  echo "skipped: npm could not install web-tree-sitter and tree-sitter-powershell"
  exit 77
fi
cd "$tmp" && node check.mjs node_modules/tree-sitter-powershell/tree-sitter-powershell.wasm \
  "$root/build.ps1" "$root/build.sh"
