#!/usr/bin/env bash
# Every C#, C and Python snippet in README.md, extracted and run as shown: each C#
# block is a console program (top-level statements) against src/Loom, each C block a
# program against the build tree's libloom, each Python block a script against the
# in-tree binding. They run from the repository root (the training snippet reads
# data/mnist, which ./build.sh data fetches). Usage: run.sh BUILD_DIR
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:?usage: run.sh BUILD_DIR}" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
/usr/bin/python3 - "$root/README.md" "$tmp" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
n = 0
for lang, body in re.findall(r"^```(csharp|c|python)\n(.*?)^```", text, re.S | re.M):
    n += 1
    ext = {"csharp": "cs", "c": "c", "python": "py"}[lang]
    open("%s/snippet%02d.%s" % (sys.argv[2], n, ext), "w").write(body)
print("%d snippets" % n)
PY
failed=0
ran=0
for f in "$tmp"/snippet*; do
  name=$(basename "$f")
  out="$tmp/$name.out"
  case "$f" in
    *.cs)
      proj="$tmp/${name%.cs}"
      mkdir -p "$proj"
      cp "$f" "$proj/Program.cs"
      cat >"$proj/Snippet.csproj" <<XML
<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup><OutputType>Exe</OutputType><TargetFramework>net10.0</TargetFramework>
    <Nullable>enable</Nullable><ImplicitUsings>enable</ImplicitUsings></PropertyGroup>
  <ItemGroup><ProjectReference Include="$root/src/Loom/Loom.csproj" /></ItemGroup>
</Project>
XML
      (dotnet build "$proj" -c Release -nologo -v q -clp:ErrorsOnly >"$out" 2>&1 &&
        cd "$root" && dotnet "$proj/bin/Release/net10.0/Snippet.dll" >>"$out" 2>&1) ;;
    *.c)
      (cc -std=c99 -Wall -Werror "$f" -I"$root/native/include" -L"$build/lib" -lloom \
        -Wl,-rpath,"$build/lib" -o "$tmp/${name%.c}" >"$out" 2>&1 && cd "$root" && "$tmp/${name%.c}" >>"$out" 2>&1) ;;
    *.py)
      (cd "$root" && PYTHONPATH="$root/bindings/python" LOOM_LIBRARY_PATH="$build/lib/libloom.so" \
        /usr/bin/python3 "$f" >"$out" 2>&1) ;;
  esac
  rc=$?
  ran=$((ran + 1))
  if [ "$rc" -ne 0 ]; then
    failed=$((failed + 1))
    echo "FAIL README snippet $name (exit $rc):"; sed 's/^/    /' "$f" | head -5; tail -20 "$out"
  else
    echo "ok   README snippet $name: $(tail -1 "$out")"
  fi
done
# The training snippet is the main job: it must reach the seed's accuracy.
if grep -h "^test-accuracy=" "$tmp"/*.out >/dev/null 2>&1; then
  acc=$(grep -h "^test-accuracy=" "$tmp"/*.out | tail -1 | cut -d= -f2)
  if ! /usr/bin/python3 -c "import sys; sys.exit(0 if float('$acc') >= 0.97 else 1)"; then
    echo "FAIL the README's training snippet reached test-accuracy=$acc (< 0.97)"; failed=$((failed + 1))
  fi
fi
echo "$((ran - failed)) passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$ran" -gt 0 ]
