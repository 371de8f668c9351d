"""Backward mirroring (LOOM_BACKWARD_MIRROR=1, MXNet's MXNET_BACKWARD_DO_MIRROR): ResNet-50
v1.5 training at batch 16 and 64, with and without it, and PyTorch's training of the same
network (same plain SGD step), each run in its own process. Prints the median step time
(forward, backward, SGD update), the process's peak resident memory and its ratio to
PyTorch's, and the executor's planned intermediate memory. Repetitions are interleaved.

Usage: mirror.py [THREADS] [REPS] [BATCH ...]   (default batches: 16 64)
       mirror.py --worker|--torch-worker BATCH STEPS THREADS"""
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


def torch_worker(batch, steps, threads):
    step = survey.run_torch("resnet50", steps, threads, batch)
    return {"step": step, "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "planned": 0}


def spawn(batch, mirror, threads, steps):
    """mirror: 0 or 1 for Loom, "torch" for PyTorch."""
    env = dict(os.environ, LOOM_KERNEL_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               LOOM_BACKWARD_MIRROR="1" if mirror == 1 else "0")
    kind = "--torch-worker" if mirror == "torch" else "--worker"
    out = subprocess.run([sys.executable, os.path.abspath(__file__), kind, str(batch), str(steps), str(threads)],
                         env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        print(json.dumps(worker(int(sys.argv[2]), int(sys.argv[3]))))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--torch-worker":
        print(json.dumps(torch_worker(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]))))
        return
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else os.cpu_count()
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    batches = [int(b) for b in sys.argv[3:]] or [16, 64]
    kinds = (0, 1, "torch")
    res = {(b, m): [] for b in batches for m in kinds}
    for _ in range(reps):
        for b in batches:
            for m in kinds:
                res[(b, m)].append(spawn(b, m, threads, 2))
    print("ResNet-50 v1.5 training: Loom with and without backward mirroring, and PyTorch %s; %d threads,"
          " median of %d interleaved runs" % (torch_version(), threads, reps))
    print("%6s %16s %8s %8s %12s %12s %12s" % ("batch", "run", "step s", "img/s", "peak RSS MB", "/ PyTorch's",
                                                "planned MB"))
    med = lambda b, m, k: statistics.median(x[k] for x in res[(b, m)])  # noqa: E731
    for b in batches:
        for m in kinds:
            name = "PyTorch" if m == "torch" else "Loom, mirror " + ("on" if m else "off")
            print("%6d %16s %8.2f %8.2f %12.0f %12.2f %12s" % (
                b, name, med(b, m, "step"), b / med(b, m, "step"), med(b, m, "peak") / 2 ** 20,
                med(b, m, "peak") / med(b, "torch", "peak"),
                "-" if m == "torch" else "%.0f" % (med(b, m, "planned") / 2 ** 20)))
    print("  (planned: the executor's intermediate values and gradients after memory planning; peak RSS: the"
          " whole process, Python and the libraries included, for both)")


def torch_version():
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.__version__)"], capture_output=True,
                         text=True).stdout.strip()
    return out or "(not found)"


if __name__ == "__main__":
    main()
