#!/usr/bin/env bash
# Distributed training on this machine with MPI (dist_sync and dist_async key-value
# stores, one process per worker started by mpirun): the seed's MLP on MNIST over 2 ranks, each
# on its half of the data. Checks, one test each:
#   0. two devices in one process (CPU, and the simulated GPU plugin) and two ranks
#      give bit-identical parameters;
#   1. both ranks end with the same model, within 0.5% test accuracy of one process;
#   2. a distributed run resumes from the checkpoint rank 0 wrote;
#   3. a rank killed with kill -9 ends the job within a bounded time, naming the
#      lost rank, and the last checkpoint still loads;
#   4. dist_async (each rank serving its keys, updates applied as they arrive): both
#      ranks train to within 5% of one process's test accuracy;
#   5. the Gluon Trainer summing gradients through dist_sync: identical parameters on
#      both ranks, no more than 1% below one process's test accuracy after as many
#      updates (4 epochs of 2 ranks, 2 of one process).
# Usage: run.sh (after ./build.sh, with data/mnist fetched). Ends "N passed, N failed".
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
app="$root/src/Loom.Examples/bin/Release/net10.0/Loom.Examples.dll"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# orte_allowed_exit_without_sync: see tests/native/CMakeLists.txt (Open MPI's
# race between a rank's exit and its finalize message; failing ranks still fail).
export LOOM_DATA_DIR="$root/data" LOOM_CPU_WORKERS=1 OMPI_MCA_btl=self,vader OMPI_MCA_plm_rsh_agent= \
  OMPI_MCA_orte_allowed_exit_without_sync=1
mpi=(mpirun --oversubscribe --allow-run-as-root -n 2)
passed=0 failed=0
ok() { echo "ok   $1"; passed=$((passed + 1)); }
bad() { echo "FAIL $1"; failed=$((failed + 1)); }
# The ranks share one stdout: a line may start with another rank's progress bar.
acc_of() { grep -oh 'test-accuracy=[0-9.]*' "$@" | cut -d= -f2; }
if ! command -v mpirun >/dev/null || [ ! -f "$root/build/lib/libloom_mpi.so" ]; then
  echo "FAIL MPI is not installed (Debian: libopenmpi-dev openmpi-bin) or libloom_mpi.so was not built"
  echo "0 passed, 6 failed"
  exit 1
fi

# 0. Two devices in one process (CPU devices, and the simulated GPU plugin with the
# store reducing on the devices) and two ranks: the same bits after 4 SGD-momentum steps.
inproc=$(dotnet "$app" dist-check 4 --ctx='cpu(0),cpu(1)' 2>&1 | grep -o 'params-sha256=[0-9a-f]*')
simdev="$root/build/tests/native/libloom_simdev.so"
gpus=$(LOOM_SIMDEV_ALL_OPS=1 LOOM_CUDA_LIBRARY="$simdev" dotnet "$app" dist-check 4 --ctx='gpu(0),gpu(1)' \
  --kvstore=device 2>&1 | grep -o 'params-sha256=[0-9a-f]*')
ranks=$("${mpi[@]}" dotnet "$app" dist-check 4 --kvstore=dist_sync 2>&1 | grep -o 'params-sha256=[0-9a-f]*' | sort -u)
if [ -n "$inproc" ] && [ "$ranks" = "$inproc" ] && [ "$gpus" = "$inproc" ]; then
  ok "2 CPU devices, 2 simulated GPUs (device store) and 2 MPI ranks: identical parameters ($inproc)"
else
  bad "2 CPU devices ($inproc), 2 simulated GPUs ($gpus) and 2 ranks ($(echo $ranks)) differ"
fi

# 1. One process, then two ranks.
dotnet "$app" mnist 5 >"$tmp/one.log" 2>&1
"${mpi[@]}" dotnet "$app" mnist 5 --kvstore=dist_sync --checkpoint="$tmp/ckpt" >"$tmp/two.log" 2>&1
one=$(acc_of "$tmp/one.log") two=$(acc_of "$tmp/two.log" | sort -u)
if [ -n "$one" ] && [ "$(echo "$two" | wc -l)" = 1 ] && [ -n "$two" ] &&
  python3 -c "import sys; sys.exit(0 if abs($one - $two) <= 0.005 else 1)"; then
  ok "2 ranks agree (test accuracy $two) and match one process ($one) within 0.5%"
else
  bad "2 ranks: accuracies '$(acc_of "$tmp/two.log" | tr '\n' ' ')', one process '$one'"; tail -20 "$tmp/two.log"
fi

# 2. Resume from rank 0's checkpoint of epoch 5.
if [ -f "$tmp/ckpt-0005.params" ] &&
  "${mpi[@]}" dotnet "$app" mnist 1 --kvstore=dist_sync --resume="$tmp/ckpt,5" >"$tmp/resume.log" 2>&1 &&
  grep -q "resuming from" "$tmp/resume.log" && [ -n "$(acc_of "$tmp/resume.log")" ] &&
  python3 -c "import sys; sys.exit(0 if min(map(float, '''$(acc_of "$tmp/resume.log")'''.split())) >= $two - 0.005 else 1)"; then
  ok "a distributed run resumed from epoch 5 (test accuracy $(acc_of "$tmp/resume.log" | sort -u | tr '\n' ' '))"
else
  bad "resume from the checkpoint"; tail -20 "$tmp/resume.log" 2>/dev/null
fi

# 3. kill -9 one rank during training.
"${mpi[@]}" dotnet "$app" mnist 30 --kvstore=dist_sync --checkpoint="$tmp/kill" >"$tmp/kill.log" 2>&1 &
launcher=$!
for _ in $(seq 1 300); do [ -f "$tmp/kill-0001.params" ] && break; sleep 0.1; done
victim=$(pgrep -P "$launcher" | tail -1)
start=$(date +%s)
[ -n "$victim" ] && kill -9 "$victim"
ended=0
for _ in $(seq 1 600); do kill -0 "$launcher" 2>/dev/null || { ended=1; break; }; sleep 0.1; done
wait "$launcher"
rc=$?
took=$(($(date +%s) - start))
last=$(ls "$tmp"/kill-*.params 2>/dev/null | sort | tail -1)
epoch=$(basename "${last:-x-0.params}" .params | sed 's/.*-0*//')
if [ -n "$victim" ] && [ "$ended" = 1 ] && [ "$rc" -ne 0 ] && grep -qiE "rank|signal 9|killed" "$tmp/kill.log" &&
  [ -n "$last" ] && dotnet "$app" mnist 1 --resume="$tmp/kill,${epoch:-1}" >"$tmp/after.log" 2>&1 &&
  [ -n "$(acc_of "$tmp/after.log")" ]; then
  ok "a killed rank ended the job in ${took} s (exit $rc, the launcher named it); checkpoint $(basename "$last") loads"
else
  bad "kill -9: victim '$victim', ended $ended after ${took} s, exit $rc, checkpoint '${last:-none}'"
  grep -iE "rank|signal|exit" "$tmp/kill.log" | head -5
fi

# 4. dist_async: no lockstep, so the two ranks end with different weights; each must
# still come within 5% of one process. Updates computed on stale weights cost accuracy,
# and how stale depends on timing: 0.8% to 2.9% below one process after 5 epochs in
# six CI runs on these two cores (a rank that stopped learning ends far lower; the
# exact semantics of the asynchronous store are checked by kvstore.dist_async_*).
if "${mpi[@]}" dotnet "$app" mnist 5 --kvstore=dist_async >"$tmp/async.log" 2>&1 &&
  [ "$(acc_of "$tmp/async.log" | wc -l)" = 2 ] &&
  python3 -c "import sys; sys.exit(0 if all(abs(float(a) - $one) <= 0.05 for a in '$(acc_of "$tmp/async.log" | tr '\n' ' ')'.split()) else 1)"; then
  ok "dist_async: 2 ranks reach test accuracy $(acc_of "$tmp/async.log" | tr '\n' ' ')(one process $one)"
else
  bad "dist_async: accuracies '$(acc_of "$tmp/async.log" | tr '\n' ' ')', one process '$one'"; tail -20 "$tmp/async.log"
fi

# 5. Networks written as classes (Loom.Gluon), hybridized, trained by a Trainer whose
# gradients go through the dist_sync store: both ranks end with the same parameters. Each
# rank trains on half the data, so an epoch of 2 ranks makes half the updates of one
# process's (each on 200 samples instead of 100): the ranks train 4 epochs, as many updates
# as one process's 2, and must not end more than 1% below it. (At the same epoch count the
# gap is systematic: 0.9566 for 2 ranks against 0.9666 for one process after 2 epochs.)
one_gluon=$(dotnet "$app" mnist-gluon mlp 2 2>&1 | acc_of /dev/stdin)
"${mpi[@]}" dotnet "$app" mnist-gluon mlp 4 --kvstore=dist_sync >"$tmp/gluon.log" 2>&1
gluon_digests=$(grep -o 'params-sha256=[0-9a-f]*' "$tmp/gluon.log" | sort -u | wc -l)
gluon_accs=$(acc_of "$tmp/gluon.log" | tr '\n' ' ')
if [ -n "$one_gluon" ] && [ "$gluon_digests" = 1 ] && [ "$(acc_of "$tmp/gluon.log" | wc -l)" = 2 ] &&
  python3 -c "import sys; sys.exit(0 if all(float(a) >= $one_gluon - 0.01 for a in '$gluon_accs'.split()) else 1)"; then
  ok "Gluon Trainer over dist_sync: 2 ranks with identical parameters, test accuracy $gluon_accs(4 epochs; one process $one_gluon after 2)"
else
  bad "Gluon Trainer over dist_sync: $gluon_digests distinct digests, accuracies '$gluon_accs', one process '$one_gluon'"
  tail -20 "$tmp/gluon.log"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
