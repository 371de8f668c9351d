"""The seed's MLP in PyTorch for comparison: 784-128-64-10 ReLU, SGD lr 0.1,
momentum 0.9, wd 1e-5, batch 100, shuffled, one warm-up epoch then three timed.
Prints the median timed epoch's images/s. Usage: mlp_torch.py DATA_DIR THREADS"""
import sys
import time

import numpy as np
import torch


def idx(path):
    with open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def main():
    d, threads = sys.argv[1], int(sys.argv[2])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x = torch.from_numpy(idx(d + "/train-images-idx3-ubyte").reshape(-1, 784).astype(np.float32) / 255)
    y = torch.from_numpy(idx(d + "/train-labels-idx1-ubyte").astype(np.int64))
    net = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 64),
                              torch.nn.ReLU(), torch.nn.Linear(64, 10))
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-5)
    loss_fn = torch.nn.CrossEntropyLoss()
    n, batch = x.shape[0], 100
    times = []
    for epoch in range(4):
        perm = torch.randperm(n)
        t0 = time.perf_counter()
        for s in range(0, n, batch):
            idx_b = perm[s:s + batch]
            opt.zero_grad()
            loss = loss_fn(net(x[idx_b]), y[idx_b])
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t0)
    print("%.0f" % (n / sorted(times[1:])[1]))


if __name__ == "__main__":
    main()
