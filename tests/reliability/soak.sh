#!/usr/bin/env bash
# Soak: LeNet trains on MNIST for M minutes (default 20) with a checkpoint set saved
# every 100 batches, while the process's resident memory (VmRSS) is sampled every
# 10 s. After the first epoch RSS must stay flat: no sample after the end of epoch 1
# may exceed the first such sample by more than 5% (and 16 MB). Prints the curve.
# Usage: soak.sh [minutes]   (./build.sh soak; not part of ./build.sh test)
# Ends "N passed, N failed" (one test).
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
app="$root/src/Loom.Examples/bin/Release/net10.0/Loom.Examples.dll"
minutes=${1:-20}
export LOOM_DATA_DIR=${LOOM_DATA_DIR:-$root/data}
tmp=$(mktemp -d)
trap 'kill -9 "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
dotnet "$app" lenet 100000 --checkpoint="$tmp/lenet" >"$tmp/train.log" 2>&1 &
pid=$!
start=$(date +%s)
end=$((start + minutes * 60))
echo "   s  epochs   RSS_MB"
: >"$tmp/samples"
while [ "$(date +%s)" -lt "$end" ]; do
  sleep 10
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "FAIL the training process ended early:"
    tail -20 "$tmp/train.log"
    echo "0 passed, 1 failed"
    exit 1
  fi
  rss=$(awk '/^VmRSS/ {print int($2 / 1024)}' "/proc/$pid/status")
  epochs=$(grep -c '## Training summary' "$tmp/train.log")
  t=$(($(date +%s) - start))
  printf '%4d %7d %8d\n' "$t" "$epochs" "$rss"
  echo "$t $epochs $rss" >>"$tmp/samples"
done
kill -9 "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
saves=$(ls "$tmp"/lenet-*.params 2>/dev/null | wc -l)
# Flat after the first epoch: compare every later sample with the first one.
verdict=$(awk '$2 >= 1 { if (!base) base = $3; if ($3 > max) max = $3 }
  END { if (!base) { print "none"; exit }
        limit = base * 1.05; if (base + 16 > limit) limit = base + 16
        printf "%d %d %d\n", base, max, (max <= limit) }' "$tmp/samples")
if [ "$verdict" = none ]; then
  echo "FAIL no epoch finished in $minutes minutes"
  echo "0 passed, 1 failed"
  exit 1
fi
read -r base max ok <<<"$verdict"
epochs=$(grep -c '## Training summary' "$tmp/train.log")
if [ "$ok" = 1 ]; then
  echo "ok   soak: $minutes min, $epochs epochs, $saves checkpoint sets; RSS after epoch 1 ${base} MB, at most ${max} MB"
  echo "1 passed, 0 failed"
else
  echo "FAIL soak: RSS grew after epoch 1 from ${base} MB to ${max} MB"
  echo "0 passed, 1 failed"
  exit 1
fi
