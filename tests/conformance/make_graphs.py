#!/usr/bin/env python3
"""Writes the graphs of the graph cases (graphs/*.json, MXNet symbol JSON) and
cases/graphs.json. Run once; the committed JSON is the data the runners read."""
import json
import os

import loom
from loom import sym

here = os.path.dirname(os.path.abspath(__file__))


def mlp():
    h = sym.Activation(sym.FullyConnected(sym.Variable("data"), name="fc1", num_hidden=32), name="relu1", act_type="relu")
    h = sym.Activation(sym.FullyConnected(h, name="fc2", num_hidden=16), name="relu2", act_type="relu")
    return sym.SoftmaxOutput(sym.FullyConnected(h, name="fc3", num_hidden=10), name="softmax", normalization="batch")


def lenet():
    h = sym.Convolution(sym.Variable("data"), name="conv1", kernel=(5, 5), num_filter=6)
    h = sym.Pooling(sym.Activation(h, name="tanh1", act_type="tanh"), name="pool1", kernel=(2, 2), stride=(2, 2), pool_type="max")
    h = sym.Convolution(h, name="conv2", kernel=(3, 3), num_filter=8)
    h = sym.Pooling(sym.Activation(h, name="tanh2", act_type="tanh"), name="pool2", kernel=(2, 2), stride=(2, 2), pool_type="max")
    h = sym.FullyConnected(sym.Flatten(h, name="flatten"), name="fc1", num_hidden=10)
    return sym.SoftmaxOutput(h, name="softmax", normalization="batch")


def conv_bn(x, filters, k, pad, name):
    c = sym.Convolution(x, name="conv_" + name, kernel=(k, k), num_filter=filters, pad=(pad, pad))
    return sym.Activation(sym.BatchNorm(c, name="bn_" + name, fix_gamma=False), name="relu_" + name, act_type="relu")


def inception():
    x = sym.Variable("data")
    b1 = conv_bn(x, 4, 1, 0, "1x1")
    b3 = conv_bn(conv_bn(x, 3, 1, 0, "3x3_reduce"), 4, 3, 1, "3x3")
    bp = conv_bn(sym.Pooling(x, name="pool", kernel=(3, 3), stride=(1, 1), pad=(1, 1), pool_type="avg"), 2, 1, 0, "proj")
    cat = sym.Concat(b1, b3, bp, name="concat", num_args=3)
    g = sym.Pooling(cat, name="global", global_pool=True, pool_type="avg")
    return sym.SoftmaxOutput(sym.FullyConnected(sym.Flatten(g, name="flat"), name="fc", num_hidden=5), name="softmax")


def bn_net():
    h = sym.BatchNorm(sym.FullyConnected(sym.Variable("data"), name="fc1", num_hidden=12), name="bn1", fix_gamma=False)
    h = sym.Activation(h, name="relu1", act_type="relu")
    return sym.SoftmaxOutput(sym.FullyConnected(h, name="fc2", num_hidden=4), name="softmax")


def blocks():
    """Channel counts in whole 16-channel blocks, so the oneDNN kernel set computes the
    convolutions: 3x3 16->32, a stride-2 1x1 32->64, and a deconvolution 64->16."""
    x = conv_bn(sym.Variable("data"), 32, 3, 1, "a")
    x = sym.Convolution(x, name="conv_b", kernel=(1, 1), stride=(2, 2), num_filter=64)
    x = sym.Deconvolution(x, name="deconv_c", kernel=(2, 2), stride=(2, 2), num_filter=16, no_bias=False)
    g = sym.Pooling(x, name="global", global_pool=True, pool_type="avg")
    return sym.SoftmaxOutput(sym.FullyConnected(sym.Flatten(g, name="flat"), name="fc", num_hidden=5), name="softmax")


os.makedirs(os.path.join(here, "graphs"), exist_ok=True)
for name, net in [("mlp", mlp()), ("lenet", lenet()), ("inception_block", inception()), ("bn_net", bn_net()),
                  ("blocks", blocks())]:
    with open(os.path.join(here, "graphs", name + ".json"), "w") as f:
        f.write(net.tojson() + "\n")


def label(k):
    return {"softmax_label": {"low": 0, "high": k, "cast": ["int32", "float32"]}}


cases = [
    {"name": "mlp_forward_backward", "graph": "../graphs/mlp.json", "shapes": {"data": [8, 20], "softmax_label": [8]},
     "inputs": label(10), "seed": 11},
    {"name": "lenet_forward_backward", "graph": "../graphs/lenet.json", "shapes": {"data": [4, 1, 16, 16], "softmax_label": [4]},
     "inputs": label(10), "seed": 12},
    {"name": "inception_block_forward_backward", "graph": "../graphs/inception_block.json",
     "shapes": {"data": [2, 4, 8, 8], "softmax_label": [2]}, "inputs": label(5), "seed": 13},
    {"name": "batchnorm_train", "graph": "../graphs/bn_net.json", "shapes": {"data": [6, 7], "softmax_label": [6]},
     "inputs": label(4), "seed": 14},
    {"name": "batchnorm_predict", "graph": "../graphs/bn_net.json", "shapes": {"data": [6, 7], "softmax_label": [6]},
     "inputs": label(4), "seed": 15, "train": False, "backward": False},
    {"name": "mlp_sgd_5_steps", "graph": "../graphs/mlp.json", "shapes": {"data": [8, 20], "softmax_label": [8]},
     "inputs": label(10), "seed": 16, "steps": 5,
     "optimizer": {"op": "sgd_mom_update", "params": {"lr": 0.1, "momentum": 0.9, "wd": 0.0001}}},
    {"name": "mlp_adam_5_steps", "graph": "../graphs/mlp.json", "shapes": {"data": [8, 20], "softmax_label": [8]},
     "inputs": label(10), "seed": 17, "steps": 5, "optimizer": {"op": "adam_update", "params": {"lr": 0.01}}},
    # 13 images: pieces of 2 and a last of 1; 2 images: the forward pass also cuts output channels.
    {"name": "blocks_forward_backward", "graph": "../graphs/blocks.json",
     "shapes": {"data": [13, 16, 8, 8], "softmax_label": [13]}, "inputs": label(5), "seed": 18},
    {"name": "blocks_small_batch", "graph": "../graphs/blocks.json",
     "shapes": {"data": [2, 16, 8, 8], "softmax_label": [2]}, "inputs": label(5), "seed": 19},
]
with open(os.path.join(here, "cases", "graphs.json"), "w") as f:
    json.dump({"cases": cases}, f, indent=1)
    f.write("\n")
print("wrote %d graph cases" % len(cases))
