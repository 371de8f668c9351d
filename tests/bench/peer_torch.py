"""The seed's networks in PyTorch for comparison, trained as Loom's examples do:
SGD lr 0.1, momentum 0.9, wd 1e-5, batch 100, shuffled; one warm-up epoch then
EPOCHS-1 timed. Prints the median timed epoch's images/s.
Usage: peer_torch.py DATA_DIR THREADS [mlp|lenet] [EPOCHS] [cpu|cuda]
(cuda: the whole data set, the network and every step on the GPU)
  mlp:   784-128-64-10, ReLU
  lenet: conv 5x5x20, tanh, max-pool 2, conv 5x5x50, tanh, max-pool 2, fc 500 tanh, fc 10"""
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
    model = sys.argv[3] if len(sys.argv) > 3 else "mlp"
    epochs = int(sys.argv[4]) if len(sys.argv) > 4 else 4
    device = sys.argv[5] if len(sys.argv) > 5 else "cpu"
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x = torch.from_numpy(idx(d + "/train-images-idx3-ubyte").reshape(-1, 784).astype(np.float32) / 255)
    y = torch.from_numpy(idx(d + "/train-labels-idx1-ubyte").astype(np.int64))
    if model == "lenet":
        x = x.reshape(-1, 1, 28, 28)
        net = torch.nn.Sequential(
            torch.nn.Conv2d(1, 20, 5), torch.nn.Tanh(), torch.nn.MaxPool2d(2, 2),
            torch.nn.Conv2d(20, 50, 5), torch.nn.Tanh(), torch.nn.MaxPool2d(2, 2), torch.nn.Flatten(),
            torch.nn.Linear(800, 500), torch.nn.Tanh(), torch.nn.Linear(500, 10))
    else:
        net = torch.nn.Sequential(torch.nn.Linear(784, 128), torch.nn.ReLU(), torch.nn.Linear(128, 64),
                                  torch.nn.ReLU(), torch.nn.Linear(64, 10))
    net, x, y = net.to(device), x.to(device), y.to(device)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-5)
    loss_fn = torch.nn.CrossEntropyLoss()
    n, batch = x.shape[0], 100
    times = []
    for epoch in range(epochs):
        perm = torch.randperm(n, device=device)
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for s in range(0, n, batch):
            idx_b = perm[s:s + batch]
            opt.zero_grad()
            loss = loss_fn(net(x[idx_b]), y[idx_b])
            loss.backward()
            opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    timed = sorted(times[1:])
    print("%.0f" % (n / timed[len(timed) // 2]))


if __name__ == "__main__":
    main()
