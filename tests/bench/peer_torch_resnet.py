"""ResNet-50 training throughput in PyTorch, as Loom's `resnet` example measures it:
torchvision's architecture (v1.5, written out here: torchvision is not packaged with
Debian's torch), random 3x224x224 images, SGD lr 0.01 momentum 0.9 wd 1e-4, one
warm-up step then STEPS timed. Prints images/s.
Usage: peer_torch_resnet.py THREADS BATCH STEPS [cpu|cuda]"""
import os
import sys
import time

import torch
from torch import nn


class Bottleneck(nn.Module):
    def __init__(self, cin, width, stride):
        super().__init__()
        out = width * 4
        self.body = nn.Sequential(
            nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
            nn.Conv2d(width, out, 1, bias=False), nn.BatchNorm2d(out))
        self.shortcut = (nn.Sequential(nn.Conv2d(cin, out, 1, stride, bias=False), nn.BatchNorm2d(out))
                         if stride != 1 or cin != out else nn.Identity())
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        return self.relu(self.body(x) + self.shortcut(x))


def resnet50(classes=1000):
    layers = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(inplace=True),
              nn.MaxPool2d(3, 2, 1)]
    cin = 64
    for stage, units in enumerate([3, 4, 6, 3]):
        width = 64 << stage
        for u in range(units):
            layers.append(Bottleneck(cin, width, 2 if stage > 0 and u == 0 else 1))
            cin = width * 4
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes)]
    return nn.Sequential(*layers)


def main():
    threads, batch, steps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    device = sys.argv[4] if len(sys.argv) > 4 else "cpu"
    torch.set_num_threads(threads)
    # TORCH_TF32=0: float32 convolutions and products in float32 (PyTorch's default lets
    # cuDNN's convolutions use TF32 tensor cores); =1: both may use TF32.
    tf32 = os.environ.get("TORCH_TF32")
    if tf32 in ("0", "1") and device == "cuda":
        torch.backends.cudnn.allow_tf32 = tf32 == "1"
        torch.backends.cuda.matmul.allow_tf32 = tf32 == "1"
    torch.manual_seed(0)
    net = resnet50().to(device)
    assert sum(p.numel() for p in net.parameters()) == 25_557_032  # torchvision's resnet50
    x = torch.empty(batch, 3, 224, 224, device=device).uniform_(-1, 1)
    y = torch.tensor([i * 37 % 1000 for i in range(batch)], device=device)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    loss_fn = nn.CrossEntropyLoss()

    def step():
        opt.zero_grad()
        loss_fn(net(x), y).backward()
        opt.step()

    step()
    if device == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    print("%.1f" % (batch * steps / (time.perf_counter() - t0)))


if __name__ == "__main__":
    main()
