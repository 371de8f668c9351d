"""Writes ResNet-50 v1.5 (torchvision's architecture, written out in peer_torch_resnet.py)
with random weights to an ONNX file, input "data" (N, 3, 224, 224) with a free batch axis,
for the inference comparison with ONNX Runtime (tests/bench/Loom.InferenceBench).
Usage: export_resnet50_onnx.py OUT.onnx"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from peer_torch_resnet import resnet50  # noqa: E402


def main():
    torch.manual_seed(0)
    model = resnet50().eval()
    x = torch.randn(1, 3, 224, 224)
    torch.onnx.export(model, x, sys.argv[1], input_names=["data"], output_names=["out"],
                      dynamic_axes={"data": {0: "batch"}, "out": {0: "batch"}}, opset_version=13)


if __name__ == "__main__":
    main()
