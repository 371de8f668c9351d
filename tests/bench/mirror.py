"""Backward mirroring (LOOM_BACKWARD_MIRROR=1, MXNet's MXNET_BACKWARD_DO_MIRROR): ResNet-50
v1.5 training at batch 16 and 64, with and without it, each run in its own process. Prints
the median step time (forward, backward, SGD update), the process's peak resident memory
and the executor's planned intermediate memory. Repetitions are interleaved.

Usage: mirror.py [THREADS] [REPS] [BATCH ...]   (default batches: 16 64)"""
import ctypes
import json
import os
import resource
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import survey  # noqa: E402  (the networks, shared with the survey)


def worker(batch, steps):
    from loom import _abi, _check, _LIB
    ex, names, batch = survey.bind_loom("resnet50", batch)
    step = survey.train_loom(ex, names, batch, steps)
    plan = _abi.loom_memory_plan()
    _check(_LIB.loom_executor_memory(ctypes.byref(plan), ex._h))
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"step": step, "peak": peak_kib * 1024, "planned": plan.planned_bytes}


def spawn(batch, mirror, threads, steps):
    env = dict(os.environ, LOOM_CPU_WORKERS=str(threads), OMP_NUM_THREADS=str(threads),
               LOOM_BACKWARD_MIRROR="1" if mirror else "0")
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", str(batch), str(steps)],
                         env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        print(json.dumps(worker(int(sys.argv[2]), int(sys.argv[3]))))
        return
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else os.cpu_count()
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    batches = [int(b) for b in sys.argv[3:]] or [16, 64]
    res = {(b, m): [] for b in batches for m in (0, 1)}
    for _ in range(reps):
        for b in batches:
            for m in (0, 1):
                res[(b, m)].append(spawn(b, m, threads, 2))
    print("ResNet-50 v1.5 training with and without backward mirroring, %d threads, median of %d interleaved runs"
          % (threads, reps))
    print("%6s %7s %10s %10s %12s %12s" % ("batch", "mirror", "step s", "img/s", "peak RSS MB", "planned MB"))
    for b in batches:
        for m in (0, 1):
            r = res[(b, m)]
            step = statistics.median(x["step"] for x in r)
            print("%6d %7s %10.2f %10.2f %12.0f %12.0f" % (
                b, "on" if m else "off", step, b / step, statistics.median(x["peak"] for x in r) / 2 ** 20,
                statistics.median(x["planned"] for x in r) / 2 ** 20))
    print("  (planned: the executor's intermediate values and gradients after memory planning; peak RSS: the"
          " whole process)")


if __name__ == "__main__":
    main()
