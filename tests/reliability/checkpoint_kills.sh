#!/usr/bin/env bash
# kill -9 during checkpoint saves: a C# program saves parameters and optimizer states
# in a loop (every value of save i equal to i) and is killed at a random moment, 50
# times; after each kill the surviving set must load and be from one save, and the
# temporaries of killed saves must not pile up. Usage: checkpoint_kills.sh [kills].
# Ends "N passed, N failed" (one test).
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
app="$root/src/Loom.Examples/bin/Release/net10.0/Loom.Examples.dll"
kills=${1:-50}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export LOOM_CPU_WORKERS=1
bad=0 loaded=0
for i in $(seq 1 "$kills"); do
  dotnet "$app" checkpoint-stress "$tmp/c" >"$tmp/stress.log" 2>&1 &
  pid=$!
  # Wait for a first save, then kill at a random point of a later one.
  for _ in $(seq 1 100); do grep -q '^saved' "$tmp/stress.log" 2>/dev/null && break; sleep 0.05; done
  sleep "0.$(printf '%03d' $((RANDOM % 400)))"
  kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  if out=$(dotnet "$app" checkpoint-verify "$tmp/c" 2>&1); then
    loaded=$((loaded + 1))
  else
    echo "kill $i: the surviving checkpoint did not load as one set: $out" >&2
    bad=$((bad + 1))
  fi
done
temps=$(find "$tmp" -name '*.tmp*' | wc -l)
if [ "$bad" -eq 0 ] && [ "$temps" -le 3 ]; then
  echo "ok   $kills kill -9 during checkpoint saves: every surviving set loaded and was from one save ($temps temporaries left)"
  echo "1 passed, 0 failed"
else
  echo "FAIL $bad of $kills surviving sets were mixed or did not load; $temps temporaries left (at most 3 allowed)"
  echo "0 passed, 1 failed"
  exit 1
fi
