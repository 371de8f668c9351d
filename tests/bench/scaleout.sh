#!/usr/bin/env bash
# Scale-out on this machine, side by side in one run: the seed's MLP and LeNet, one
# MNIST epoch each, as 1 device x 2 worker threads, 2 devices x 1 thread in one
# process, and 2 MPI ranks x 1 thread (each rank on half the data, dist_sync, then
# dist_async); then a dist_sync pushpull against MPI_Allreduce for 1-100 MB between
# 2 ranks.
# Prints images/s (the training epoch's, as the example logs it). Usage: scaleout.sh BUILD_DIR
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build}
app="$root/src/Loom.Examples/bin/Release/net10.0/Loom.Examples.dll"
export LOOM_DATA_DIR="$root/data" OMPI_MCA_btl=self,vader
mpi=(mpirun --oversubscribe --allow-run-as-root -n 2)
# The training epoch's seconds from the example's log (only the training summary has a
# "time =" line; with several ranks their lines interleave: the slowest rank's).
secs() { sed -nE 's/.*time = ([0-9.]+) seconds.*/\1/p' | sort -n | tail -1; }
printf "%-8s %-32s %10s\n" net configuration images/s
for net in mnist lenet; do
  t1=$(LOOM_CPU_WORKERS=2 dotnet "$app" $net 1 2>&1 | secs)
  t2=$(LOOM_CPU_WORKERS=1 dotnet "$app" $net 1 --ctx='cpu(0),cpu(1)' 2>&1 | secs)
  t3=$(LOOM_CPU_WORKERS=1 "${mpi[@]}" dotnet "$app" $net 1 --kvstore=dist_sync 2>&1 | secs)
  t4=$(LOOM_CPU_WORKERS=1 "${mpi[@]}" dotnet "$app" $net 1 --kvstore=dist_async 2>&1 | secs)
  for pair in "1 device x 2 threads:$t1" "2 devices x 1 thread:$t2" "2 MPI ranks x 1 thread:$t3" \
    "2 ranks x 1 thread, dist_async:$t4"; do
    t=${pair##*:}
    printf "%-8s %-32s %10s\n" "$net" "${pair%%:*}" "$(python3 -c "print('%.0f' % (60000 / $t))" 2>/dev/null || echo n/a)"
  done
done
if [ -x "$build/tests/bench/loom_kvstore_bench" ]; then
  LOOM_CPU_WORKERS=1 "${mpi[@]}" "$build/tests/bench/loom_kvstore_bench" 2>&1 | grep -v "^\s*$"
fi
python3 "$root/tests/bench/scaling_model.py"
