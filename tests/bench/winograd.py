"""Winograd against direct convolutions on ResNet-50's 3x3 layers: a prediction executor's
1x1 - 3x3 - 1x1 chain of convolutions with relus (so the 3x3 one reads and writes the
executors' blocked layout, as inside ResNet-50), bound twice in one process, the 3x3 node's
__winograd__ attribute True in one and False in the other. The two are alternated; prints each
median pass and the ratio. Which Winograd runs is the CPU's: oneDNN's with AVX-512, Loom's
elsewhere (LOOM_WINOGRAD_TILE=2 or 4 picks its tile). Prints numbers; it is not a test.

Usage: winograd.py [REPS] [N,C,H ...]   (default: ResNet-50's stride-1 3x3 layers at batch 16
and 1; set LOOM_KERNEL_THREADS and LOOM_CPU_WORKERS to compare thread counts)"""
import statistics
import sys
import time

import numpy as np

import loom
from loom import sym

DEFAULT = ["16,64,56", "16,128,28", "16,256,14", "1,64,56", "1,128,28", "1,256,14"]


def chain(n, c, h, wino):
    x = sym.Variable("data")
    x = sym.Activation(sym.Convolution(x, kernel=(1, 1), num_filter=c, no_bias=True, name="a"), act_type="relu")
    y = sym.Convolution(x, kernel=(3, 3), pad=(1, 1), num_filter=c, no_bias=True, name="b")
    y = sym.Activation(y.set_attr("__winograd__", "True" if wino else "False"), act_type="relu")
    y = sym.Convolution(y, kernel=(1, 1), num_filter=c, no_bias=True, name="c")
    ex = y.simple_bind(grad_req="null", data=(n, c, h, h))
    rng = np.random.default_rng(0)
    for name, arr in ex.arg_dict.items():
        arr.copyfrom(rng.uniform(-1, 1, arr.shape).astype(np.float32))
    return ex


def main():
    reps = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    shapes = [tuple(int(v) for v in a.split(",")) for a in (sys.argv[2:] or DEFAULT)]
    print("kernels:", loom.backend_describe(1))
    for n, c, h in shapes:
        exs = [chain(n, c, h, wino) for wino in (False, True)]
        times = [[], []]
        for r in range(reps + 2):
            for i, ex in enumerate(exs):
                t0 = time.perf_counter()
                ex.forward(is_train=False)
                ex.outputs[0].wait_to_read()
                if r >= 2:  # the first passes transform the weights and make the primitives
                    times[i].append(time.perf_counter() - t0)
        direct, wino = (statistics.median(t) * 1e3 for t in times)
        print("%2d x %4d channels, %3dx%-3d  direct %8.2f ms  Winograd %8.2f ms  %.2fx" %
              (n, c, h, h, direct, wino, direct / wino), flush=True)


if __name__ == "__main__":
    main()
