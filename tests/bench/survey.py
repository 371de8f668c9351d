"""The engine survey's five CPU benchmark networks (Shi et al., 2017) trained in Loom
and in PyTorch, side by side in one run, with the same network, batch, optimizer
(plain SGD) and thread count, on synthetic data. Each measurement is a separate
process (so neither framework's threads disturb the other), repetitions are
interleaved, and the median is reported, beside the sgemm FLOP rate measured in
the same run.

The CPU speed networks (MLP and LeNet on MNIST-shaped data, ResNet-50 v1.5) run the
same way. Loom runs twice: with its default CPU kernel set (oneDNN where built with
it) and with LOOM_CPU_KERNELS=reference (its own kernels), so both are in one table;
ResNet-50 runs a third time with LOOM_CONV_WINOGRAD=1 (its 3x3 layers by Winograd),
printed on a line of its own.

Usage: survey.py [THREADS] [REPS] [NET ...]
       (nets: fcn-s fcn-r alexnet-s alexnet-r lstm mlp lenet resnet50; default: all)
A worker call: survey.py --worker loom|loom-ref|loom-wino|torch|sgemm NET THREADS STEPS"""
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

# name -> (description, batch, sizes). The hidden sizes are chosen so the parameter
# counts match the survey's table (FCN-S ~55M, FCN-R ~31M, AlexNet-S ~61M,
# AlexNet-R ~81K, LSTM ~13M); the exact count is printed.
NETS = {
    "fcn-s": ("FCN-S: 26752-976-976-976-976-26752, ReLU, softmax", 64, {"in": 26752, "hidden": 976, "out": 26752}),
    "fcn-r": ("FCN-R: 784-3072-3072-3072-3072-10 (MNIST shaped), ReLU, softmax", 1024,
              {"in": 784, "hidden": 3072, "out": 10}),
    "alexnet-s": ("AlexNet-S: 224x224x3 -> 1000 (torchvision's AlexNet, no dropout)", 16, {}),
    "alexnet-r": ("AlexNet-R: 32x32x3 -> 10 (Caffe's CIFAR-10 net: conv 32/32/64 5x5, pool 3/2, fc 10)", 1024, {}),
    "lstm": ("LSTM: vocabulary 10000, embedding 480, 2 layers of 480, length 32, fc 10000", 256,
             {"vocab": 10000, "hidden": 480, "layers": 2, "seq": 32}),
    "mlp": ("MLP: 784-128-64-10, ReLU, softmax (the MNIST job's network)", 100, {}),
    "lenet": ("LeNet: conv 5x5x20, tanh, max-pool 2, conv 5x5x50, tanh, max-pool 2, fc 500 tanh, fc 10", 100, {}),
    "resnet50": ("ResNet-50 v1.5: 224x224x3 -> 1000 (torchvision's architecture)", 16, {}),
}
# Training steps timed per run (after one warm-up step). The MLP's step takes well under a
# millisecond, and Loom's first few dozen steps ran up to 1.7x slower than the rest in some
# processes (PyTorch's did not): its median is taken over 600.
STEPS = {"fcn-s": 6, "fcn-r": 6, "alexnet-s": 4, "alexnet-r": 6, "lstm": 3, "mlp": 600, "lenet": 20, "resnet50": 3}
# Networks also trained with LOOM_CONV_WINOGRAD=1 (not the default: results within 1e-4 instead of 1e-5).
WINOGRAD_NETS = ("resnet50",)


def resnet50_units():
    """ResNet-50 v1.5's bottleneck units: (in channels, width, stride, has projection)."""
    units, cin = [], 64
    for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for b in range(blocks):
            units.append((cin, width, stride if b == 0 else 1, b == 0))
            cin = width * 4
    return units


def conv_out(n, k, s, p):
    return (n + 2 * p - k) // s + 1


def alexnet_s_layers():
    # (kind, cin, cout, kernel, stride, pad) as torchvision's AlexNet; pools (3, 2).
    return [("conv", 3, 64, 11, 4, 2), ("pool",), ("conv", 64, 192, 5, 1, 2), ("pool",),
            ("conv", 192, 384, 3, 1, 1), ("conv", 384, 256, 3, 1, 1), ("conv", 256, 256, 3, 1, 1), ("pool",),
            ("fc", 256 * 6 * 6, 4096), ("fc", 4096, 4096), ("fc", 4096, 1000, "last")]


def alexnet_r_layers():
    return [("conv", 3, 32, 5, 1, 2), ("pool",), ("conv", 32, 32, 5, 1, 2), ("pool",),
            ("conv", 32, 64, 5, 1, 2), ("pool",), ("fc", 64 * 3 * 3, 10, "last")]


def lenet_layers():
    return [("conv", 1, 20, 5, 1, 0), ("pool2",), ("conv", 20, 50, 5, 1, 0), ("pool2",), ("fc", 800, 500),
            ("fc", 500, 10, "last")]


def conv_layers(net):
    return {"alexnet-s": alexnet_s_layers, "alexnet-r": alexnet_r_layers, "lenet": lenet_layers}[net]()


def image_shape(net):
    return {"alexnet-s": (3, 224, 224), "resnet50": (3, 224, 224), "lenet": (1, 28, 28)}.get(net, (3, 32, 32))


def count(net):
    """(parameters, forward multiply-adds per sample), counted from the layers."""
    cfg = NETS[net][2]
    if net.startswith("fcn"):
        dims = [cfg["in"]] + [cfg["hidden"]] * 4 + [cfg["out"]]
        params = sum(a * b + b for a, b in zip(dims, dims[1:]))
        return params, sum(a * b for a, b in zip(dims, dims[1:]))
    if net == "mlp":
        dims = [784, 128, 64, 10]
        return sum(a * b + b for a, b in zip(dims, dims[1:])), sum(a * b for a, b in zip(dims, dims[1:]))
    if net == "lstm":
        V, H, L, T = cfg["vocab"], cfg["hidden"], cfg["layers"], cfg["seq"]
        rnn = sum(4 * H * (H + H + 2) for _ in range(L))
        params = V * H + rnn + H * V + V
        macs = T * (sum(4 * H * (H + H) for _ in range(L)) + H * V)
        return params, macs
    if net == "resnet50":
        hw = 112  # after the 7x7/2 stem convolution
        params, macs = 3 * 64 * 49 + 2 * 64, 3 * 64 * 49 * hw * hw
        hw = 56  # after the 3x3/2 max-pool
        for cin, w, st, proj in resnet50_units():
            out_hw = hw // st
            params += cin * w + 2 * w + w * w * 9 + 2 * w + w * 4 * w + 2 * 4 * w
            macs += cin * w * hw * hw + w * w * 9 * out_hw * out_hw + w * 4 * w * out_hw * out_hw
            if proj:
                params += cin * 4 * w + 2 * 4 * w
                macs += cin * 4 * w * out_hw * out_hw
            hw = out_hw
        return params + 2048 * 1000 + 1000, macs + 2048 * 1000
    c, h, w = image_shape(net)
    params = macs = 0
    for layer in conv_layers(net):
        if layer[0] == "conv":
            _, cin, cout, k, s, p = layer
            h, w, c = conv_out(h, k, s, p), conv_out(w, k, s, p), cout
            params += cin * cout * k * k + cout
            macs += cin * cout * k * k * h * w
        elif layer[0] == "pool":
            h, w = conv_out(h, 3, 2, 0), conv_out(w, 3, 2, 0)
        elif layer[0] == "pool2":
            h, w = conv_out(h, 2, 2, 0), conv_out(w, 2, 2, 0)
        else:
            params += layer[1] * layer[2] + layer[2]
            macs += layer[1] * layer[2]
    return params, macs


# ------------------------------------------------------------------ workers

def synthetic(net, batch):
    rng = np.random.default_rng(0)
    cfg = NETS[net][2]
    if net.startswith("fcn"):
        return rng.uniform(0, 1, (batch, cfg["in"])).astype(np.float32), rng.integers(0, cfg["out"], batch)
    if net == "lstm":
        return (rng.integers(0, cfg["vocab"], (cfg["seq"], batch)).astype(np.float32),
                rng.integers(0, cfg["vocab"], (cfg["seq"] * batch,)))
    if net == "mlp":
        return rng.uniform(0, 1, (batch, 784)).astype(np.float32), rng.integers(0, 10, batch)
    classes = 1000 if net in ("alexnet-s", "resnet50") else 10
    return rng.uniform(0, 1, (batch,) + image_shape(net)).astype(np.float32), rng.integers(0, classes, batch)


def loom_symbol(net):
    import loom
    s = loom.sym
    x = s.Variable("data")
    cfg = NETS[net][2]
    if net.startswith("fcn"):
        for i in range(4):
            x = s.Activation(s.FullyConnected(x, num_hidden=cfg["hidden"], name="fc%d" % i), act_type="relu")
        x = s.FullyConnected(x, num_hidden=cfg["out"], name="fc4")
    elif net == "mlp":
        x = s.Activation(s.FullyConnected(x, num_hidden=128, name="fc1"), act_type="relu")
        x = s.Activation(s.FullyConnected(x, num_hidden=64, name="fc2"), act_type="relu")
        x = s.FullyConnected(x, num_hidden=10, name="fc3")
    elif net == "resnet50":
        def conv_bn(x, name, f, k, st, relu):
            p = (k - 1) // 2
            x = s.Convolution(x, kernel=(k, k), stride=(st, st), pad=(p, p), num_filter=f, no_bias=True,
                              name=name)
            x = s.BatchNorm(x, fix_gamma=False, eps=1e-5, momentum=0.9, name=name + "_bn")
            return s.Activation(x, act_type="relu") if relu else x
        x = conv_bn(x, "stem", 64, 7, 2, True)
        x = s.Pooling(x, kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="max")
        for i, (cin, w, st, proj) in enumerate(resnet50_units()):
            y = conv_bn(x, "u%d_a" % i, w, 1, 1, True)
            y = conv_bn(y, "u%d_b" % i, w, 3, st, True)
            y = conv_bn(y, "u%d_c" % i, 4 * w, 1, 1, False)
            sc = conv_bn(x, "u%d_proj" % i, 4 * w, 1, st, False) if proj else x
            x = s.Activation(y + sc, act_type="relu")
        x = s.Pooling(x, kernel=(1, 1), global_pool=True, pool_type="avg")
        x = s.FullyConnected(s.Flatten(x), num_hidden=1000, name="fc")
    elif net == "lstm":
        V, H, L = cfg["vocab"], cfg["hidden"], cfg["layers"]
        x = s.Embedding(x, input_dim=V, output_dim=H, name="embed")
        x = s.RNN(x, state_size=H, num_layers=L, mode="lstm", name="lstm")
        x = s.reshape(x, shape=(-1, H))
        x = s.FullyConnected(x, num_hidden=V, name="pred")
    else:
        act = "tanh" if net == "lenet" else "relu"
        for i, layer in enumerate(conv_layers(net)):
            if layer[0] == "conv":
                _, _, cout, k, st, p = layer
                x = s.Activation(s.Convolution(x, kernel=(k, k), stride=(st, st), pad=(p, p), num_filter=cout,
                                               name="conv%d" % i), act_type=act)
            elif layer[0] == "pool":
                x = s.Pooling(x, kernel=(3, 3), stride=(2, 2), pool_type="max")
            elif layer[0] == "pool2":
                x = s.Pooling(x, kernel=(2, 2), stride=(2, 2), pool_type="max")
            else:
                x = s.FullyConnected(s.Flatten(x), num_hidden=layer[2], name="fc%d" % i)
                if len(layer) < 4:
                    x = s.Activation(x, act_type=act)
    return s.SoftmaxOutput(x, name="softmax")


def bind_loom(net, batch=None):
    """The network bound for training on synthetic data, parameters initialised:
    (executor, argument names to update, batch)."""
    from loom import _invoke
    desc, default_batch, cfg = NETS[net]
    batch = batch or default_batch
    x, y = synthetic(net, batch)
    sym = loom_symbol(net)
    shapes = {"data": x.shape, "softmax_label": y.shape}
    ex = sym.simple_bind(grad_req={"data": "null", "softmax_label": "null"}, **shapes)
    args = ex.arg_dict
    names = [n for n in sym.list_arguments() if n not in shapes]
    for n in names:
        a = args[n]
        if n.endswith("weight") or n.endswith("parameters"):
            _invoke("random_uniform", [], {"shape": a.shape, "low": -0.05, "high": 0.05}, out=a)
        elif n.endswith("gamma"):
            _invoke("ones", [], {"shape": a.shape}, out=a)
        else:
            _invoke("zeros", [], {"shape": a.shape}, out=a)
    args["data"].copyfrom(x)
    args["softmax_label"].copyfrom(y.astype(np.float32))
    return ex, names, batch


def train_loom(ex, names, batch, steps):
    """Median seconds of a training step (forward, backward, plain SGD) over `steps` after one warm-up.
    The update is MXNet's: SGD's weights in groups of 4 (MXNET_OPTIMIZER_AGGREGATION_SIZE's default),
    one multi_sgd_update each, as Loom's Module and Gluon Trainer run it; PyTorch's is torch.optim.SGD."""
    import loom
    from loom import _invoke
    args, grads = ex.arg_dict, ex.grad_dict
    group = 4
    times = []
    for step in range(steps + 1):
        t0 = time.perf_counter()
        ex.forward(is_train=True)
        ex.backward()
        for k in range(0, len(names), group):
            part = names[k:k + group]
            _invoke("multi_sgd_update", [a for n in part for a in (args[n], grads[n])],
                    {"lrs": [0.01] * len(part), "wds": [0.0] * len(part), "rescale_grad": 1.0 / batch,
                     "num_weights": len(part)}, out=[args[n] for n in part])
        loom.wait_all()
        if step:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_loom(net, steps):
    ex, names, batch = bind_loom(net)
    return train_loom(ex, names, batch, steps)


def torch_net(net):
    import torch
    nn = torch.nn
    cfg = NETS[net][2]
    if net.startswith("fcn"):
        dims = [cfg["in"]] + [cfg["hidden"]] * 4
        layers = []
        for a, b in zip(dims, dims[1:]):
            layers += [nn.Linear(a, b), nn.ReLU()]
        return nn.Sequential(*layers, nn.Linear(cfg["hidden"], cfg["out"]))
    if net == "mlp":
        return nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 10))
    if net == "resnet50":  # torchvision's architecture, written out beside this file
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from peer_torch_resnet import resnet50
        return resnet50()
    if net == "lstm":
        class LM(nn.Module):
            def __init__(self):
                super().__init__()
                self.embed = nn.Embedding(cfg["vocab"], cfg["hidden"])
                self.lstm = nn.LSTM(cfg["hidden"], cfg["hidden"], num_layers=cfg["layers"])
                self.pred = nn.Linear(cfg["hidden"], cfg["vocab"])

            def forward(self, x):
                y, _ = self.lstm(self.embed(x))
                return self.pred(y.reshape(-1, cfg["hidden"]))
        return LM()
    layers = []
    act = nn.Tanh if net == "lenet" else nn.ReLU
    for layer in conv_layers(net):
        if layer[0] == "conv":
            _, cin, cout, k, st, p = layer
            layers += [nn.Conv2d(cin, cout, k, st, p), act()]
        elif layer[0] == "pool":
            layers.append(nn.MaxPool2d(3, 2))
        elif layer[0] == "pool2":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Flatten(), nn.Linear(layer[1], layer[2])] + ([] if len(layer) > 3 else [act()])
    return nn.Sequential(*layers)


def run_torch(net, steps, threads, batch=None):
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    desc, default_batch, cfg = NETS[net]
    batch = batch or default_batch
    x, y = synthetic(net, batch)
    model = torch_net(net)
    params = sum(p.numel() for p in model.parameters())
    assert params == count(net)[0], "PyTorch's %s has %d parameters, Loom's count %d" % (net, params, count(net)[0])
    tx = torch.from_numpy(x).long() if net == "lstm" else torch.from_numpy(x)
    ty = torch.from_numpy(y).long()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    loss_fn = torch.nn.CrossEntropyLoss()
    times = []
    for step in range(steps + 1):
        t0 = time.perf_counter()
        opt.zero_grad()
        loss_fn(model(tx), ty).backward()
        opt.step()
        if step:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run_sgemm():
    """Loom's dot of two 2048x2048 float32 matrices, median of 5: oneDNN's sgemm in the default kernel set,
    OpenBLAS's in the reference set (the worker kind sgemm-ref)."""
    import loom
    from loom import _invoke
    n = 2048
    a = loom.from_numpy(np.random.default_rng(1).uniform(-1, 1, (n, n)).astype(np.float32))
    times = []
    for i in range(6):
        t0 = time.perf_counter()
        c = _invoke("dot", [a, a], {})
        c.asnumpy()
        if i:
            times.append(time.perf_counter() - t0)
    return 2.0 * n ** 3 / statistics.median(times)


def kernels_describe():
    out = subprocess.run([sys.executable, "-c", "import loom; print(loom.backend_describe(loom._abi.LOOM_DEVICE_CPU))"],
                         capture_output=True, text=True)
    return out.stdout.strip() or out.stderr.strip().splitlines()[-1]


def worker(argv):
    kind, net, threads, steps = argv[0], argv[1], int(argv[2]), int(argv[3])
    if kind in ("loom", "loom-ref", "loom-wino"):
        r = run_loom(net, steps)
    elif kind == "torch":
        r = run_torch(net, steps, threads)
    else:
        r = run_sgemm()
    print(json.dumps({"value": r}))


# ------------------------------------------------------------------ driver

def spawn(kind, net, threads, steps):
    env = dict(os.environ, LOOM_KERNEL_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    if kind in ("loom-ref", "sgemm-ref"):
        env["LOOM_CPU_KERNELS"] = "reference"
    if kind == "loom-wino":
        env["LOOM_CONV_WINOGRAD"] = "1"
    out = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", kind, net, str(threads), str(steps)],
                         env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["value"]


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2:])
        return
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else os.cpu_count()
    reps = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    nets = sys.argv[3:] or list(NETS)
    have_torch = subprocess.run([sys.executable, "-c", "import torch"], capture_output=True).returncode == 0
    sgemm, sgemm_ref, res = [], [], {n: {"loom": [], "loom-ref": [], "loom-wino": [], "torch": []} for n in nets}
    for rep in range(reps):  # interleaved: every network and framework once per round
        sgemm.append(spawn("sgemm", "-", threads, 0))
        sgemm_ref.append(spawn("sgemm-ref", "-", threads, 0))
        for net in nets:
            res[net]["loom"].append(spawn("loom", net, threads, STEPS[net]))
            res[net]["loom-ref"].append(spawn("loom-ref", net, threads, STEPS[net]))
            if net in WINOGRAD_NETS:
                res[net]["loom-wino"].append(spawn("loom-wino", net, threads, STEPS[net]))
            if have_torch:
                res[net]["torch"].append(spawn("torch", net, threads, STEPS[net]))
    # The machine's sgemm rate: the faster of the two sets' (oneDNN's AVX-512 kernels where the CPU has them,
    # OpenBLAS 0.3.21's AVX2 ones); every fraction below is of that one.
    rate_onednn, rate_openblas = statistics.median(sgemm), statistics.median(sgemm_ref)
    rate = max(rate_onednn, rate_openblas)
    print("survey networks, training with plain SGD on synthetic data, %d threads, median of %d interleaved runs"
          % (threads, reps))
    print("sgemm (Loom dot 2048x2048 float32) in this run: %.1f GFLOP/s (default kernel set), %.1f GFLOP/s "
          "(reference set: OpenBLAS); fractions are of %.1f" % (rate_onednn / 1e9, rate_openblas / 1e9, rate / 1e9))
    print("Loom's CPU kernels: %s" % kernels_describe())
    print("%-10s %6s %10s %10s %10s %10s %7s %9s %9s" % ("network", "batch", "params", "Loom/s", "ref/s", "PyTorch/s",
                                                         "ratio", "of sgemm", "ref/sgemm"))
    for net in nets:
        desc, batch, _ = NETS[net]
        params, macs = count(net)
        flops = 6.0 * macs * batch  # 2 per multiply-add, x3 for training
        lt = statistics.median(res[net]["loom"])
        rt = statistics.median(res[net]["loom-ref"])
        tt = statistics.median(res[net]["torch"]) if have_torch else float("nan")
        unit = batch
        print("%-10s %6d %10d %10.2f %10.2f %10.2f %7.2f %8.1f%% %8.1f%%" % (
            net, batch, params, unit / lt, unit / rt, unit / tt, tt / lt, 100 * flops / lt / rate,
            100 * flops / rt / rate))
        if res[net]["loom-wino"]:
            wt = statistics.median(res[net]["loom-wino"])
            print("%-10s %6s %10s %10.2f %10s %10s %7.2f %8.1f%%   (LOOM_CONV_WINOGRAD=1)" % (
                "  Winograd", "", "", unit / wt, "", "", tt / wt, 100 * flops / wt / rate))
    for net in nets:
        params, macs = count(net)
        print("  %s; %d parameters, %.2f GFLOP per training step" % (NETS[net][0], params,
                                                                     6.0 * macs * NETS[net][1] / 1e9))
    print("  (LSTM figures are sequences/s of 32 tokens; the others images/s. ref: LOOM_CPU_KERNELS=reference;"
          " ratio: Loom/PyTorch)")
    if not have_torch:
        print("PyTorch is not installed (sudo apt-get install -y python3-torch); no comparison printed")


if __name__ == "__main__":
    main()
