"""Blocked layouts in training (symbol/executor.cc, choose_training_layouts): in the oneDNN
kernel set a graph bound for training keeps the values between its oneDNN convolutions,
BatchNorms, relus, poolings and residual adds in oneDNN's blocked layout (nChw16c, or nChw8c on
AVX2; LOOM_EXEC_BLOCKED=0 turns
it off). Training gives the same bits either way: every weight, moving statistic and output
after several steps, at several batch sizes, with fix_gamma on and off, with backward
mirroring, and in a forward pass for prediction on the training executor; and the
convolutions' reorders to and from NCHW are gone (counted by oneDNN's verbose log)."""
import ctypes
import os
import subprocess
import sys
import unittest

import numpy as np

import loom
from loom import _invoke, sym

ONEDNN = "onednn" in loom.backend_describe(1) and os.environ.get("LOOM_CPU_KERNELS", "") != "reference"


def residual_net(fix_gamma=False):
    """A small ResNet: a stem, max pooling, three bottleneck units (two with a projection,
    one with an identity shortcut), global pooling and a classifier."""
    def conv_bn(x, name, f, k, st, relu):
        # one convolution with a bias: its gradient is summed from a blocked output gradient
        x = sym.Convolution(x, kernel=(k, k), stride=(st, st), pad=((k - 1) // 2, (k - 1) // 2), num_filter=f,
                            no_bias=name != "u1_a", name=name)
        x = sym.BatchNorm(x, fix_gamma=fix_gamma, eps=1e-5, momentum=0.9, name=name + "_bn")
        return sym.Activation(x, act_type="relu") if relu else x
    x = conv_bn(sym.Variable("data"), "stem", 16, 3, 1, True)
    x = sym.Pooling(x, kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="max")
    for i, (w, st, proj) in enumerate([(16, 1, True), (16, 1, False), (32, 2, True)]):
        y = conv_bn(x, "u%d_a" % i, w, 1, 1, True)
        y = conv_bn(y, "u%d_b" % i, w, 3, st, True)
        y = conv_bn(y, "u%d_c" % i, 2 * w, 1, 1, False)
        sc = conv_bn(x, "u%d_proj" % i, 2 * w, 1, st, False) if proj else x
        x = sym.Activation(y + sc, act_type="relu")
    x = sym.Pooling(x, kernel=(1, 1), global_pool=True, pool_type="avg")
    x = sym.FullyConnected(sym.Flatten(x), num_hidden=10, name="fc")
    return sym.SoftmaxOutput(x, name="softmax")


def train(blocked, batch, steps=3, fix_gamma=False, mirror=False, fuse=True, nan=False, steps_out=None, dtype="float32"):
    """Every argument, auxiliary state and output after `steps` SGD steps from fixed values,
    then the outputs of a forward pass for prediction. `fuse`: LOOM_EXEC_FUSE (training
    fusion: a BatchNorm writes the relu after it); `nan`: NaN in the data; `dtype`: every array's."""
    os.environ["LOOM_EXEC_BLOCKED"] = "1" if blocked else "0"
    os.environ["LOOM_EXEC_FUSE"] = "1" if fuse else "0"
    if mirror:
        os.environ["LOOM_BACKWARD_MIRROR"] = "1"
    try:
        net = residual_net(fix_gamma)
        ex = net.simple_bind(grad_req={"data": "null", "softmax_label": "null"}, data=(batch, 3, 16, 16),
                             softmax_label=(batch,), dtype=dtype)
    finally:
        del os.environ["LOOM_EXEC_BLOCKED"]
        del os.environ["LOOM_EXEC_FUSE"]
        os.environ.pop("LOOM_BACKWARD_MIRROR", None)
    if steps_out is not None:
        plan = loom._abi.loom_memory_plan()
        loom._check(loom._LIB.loom_executor_memory(ctypes.byref(plan), ex._h))
        steps_out.append(plan.num_steps)
    rng = np.random.default_rng(batch)
    for n in sorted(ex.arg_dict):
        a = ex.arg_dict[n]
        if n == "softmax_label":
            a.copyfrom(rng.integers(0, 10, a.shape).astype(dtype))
        elif n.endswith("gamma"):
            a.copyfrom((1 + 0.1 * rng.standard_normal(a.shape)).astype(dtype))
        else:
            v = (rng.standard_normal(a.shape) * (1.0 if n == "data" else 0.3)).astype(dtype)
            if nan and n == "data":
                v[0, 0, 2, 3] = np.nan
            a.copyfrom(v)
    names = [n for n in net.list_arguments() if n not in ("data", "softmax_label")]
    for _ in range(steps):
        ex.forward(is_train=True)
        ex.backward()
        for n in names:
            _invoke("sgd_update", [ex.arg_dict[n], ex.grad_dict[n]], {"lr": 0.1}, out=ex.arg_dict[n])
    out = {n: ex.arg_dict[n].asnumpy() for n in names}
    out.update({"aux " + n: a.asnumpy() for n, a in ex.aux_dict.items()})
    out["training output"] = ex.outputs[0].asnumpy()
    ex.forward(is_train=False)
    out["prediction output"] = ex.outputs[0].asnumpy()
    return out


def assert_same_bits(test, a, b):
    test.assertEqual(sorted(a), sorted(b))
    for k in a:
        bits = np.uint64 if a[k].dtype == np.float64 else np.uint32
        test.assertTrue(np.array_equal(a[k].view(bits), b[k].view(bits)),
                        "%s differs: largest difference %g" % (k, np.max(np.abs(a[k] - b[k]))))


class TrainingFusionFloat64(unittest.TestCase):
    def test_batchnorm_fused_with_its_relu_in_float64_has_the_same_bits(self):
        # Loom's kernels (oneDNN takes float32 only): the fused forward and backward steps in
        # float64, NaN data too.
        for nan in (False, True):
            with self.subTest(nan=nan):
                n_plain, n_fused = [], []
                assert_same_bits(self, train(False, 3, fuse=False, nan=nan, steps_out=n_plain, dtype="float64"),
                                 train(False, 3, fuse=True, nan=nan, steps_out=n_fused, dtype="float64"))
                self.assertEqual(n_plain[0] - n_fused[0], 14)


@unittest.skipUnless(ONEDNN, "blocked layouts are the oneDNN kernel set's")
class TrainingLayouts(unittest.TestCase):
    def assert_same_bits(self, a, b):
        assert_same_bits(self, a, b)

    def test_training_has_the_same_bits(self):
        for batch in (1, 4, 11):
            for fix_gamma in (False, True):
                with self.subTest(batch=batch, fix_gamma=fix_gamma):
                    self.assert_same_bits(train(False, batch, fix_gamma=fix_gamma),
                                          train(True, batch, fix_gamma=fix_gamma))

    def test_batchnorm_fused_with_its_relu_has_the_same_bits(self):
        # Training fusion: each BatchNorm that only a relu reads writes the relu's output (7 of
        # the 12 BatchNorms here), in both layouts, and its backward step takes in the relu's
        # too (7 steps more; in blocked layouts the relu's gradient formed as each value is
        # read); NaN data passes the fused relu and its gradient as MXNet's.
        for blocked in (False, True):
            for batch in (1, 5):
                for fix_gamma in (False, True):
                    with self.subTest(blocked=blocked, batch=batch, fix_gamma=fix_gamma):
                        n_plain, n_fused = [], []
                        self.assert_same_bits(train(blocked, batch, fix_gamma=fix_gamma, fuse=False, steps_out=n_plain),
                                              train(blocked, batch, fix_gamma=fix_gamma, fuse=True, steps_out=n_fused))
                        self.assertEqual(n_plain[0] - n_fused[0], 14)
            a, b = train(blocked, 3, fuse=False, nan=True), train(blocked, 3, fuse=True, nan=True)
            self.assertTrue(np.isnan(a["training output"]).any())
            self.assert_same_bits(a, b)

    def test_backward_mirroring_has_the_same_bits(self):
        self.assert_same_bits(train(False, 5, mirror=True), train(True, 5, mirror=True))

    def test_the_convolutions_reorders_are_gone(self):
        script = ("import os, sys; sys.path.insert(0, %r); import test_training_layouts as t; "
                  "t.train(os.environ['B'] == '1', 4, steps=1)" % os.path.dirname(os.path.abspath(__file__)))
        counts, data = {}, {}
        for b in ("0", "1"):
            env = dict(os.environ, B=b, ONEDNN_VERBOSE="1", DNNL_VERBOSE="1")
            log = subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True,
                                 text=True).stdout
            lines = [line for line in log.splitlines()
                     if line.startswith(("onednn_verbose,exec,cpu,reorder", "dnnl_verbose,exec,cpu,reorder"))]
            counts[b] = len(lines)
            # reorders of data, outputs and gradients (aBcd16b or aBcd8b), not of weights
            data[b] = sum(1 for line in lines if "aBcd16b" in line or "aBcd8b" in line)
        # One step of the 14 convolutions: their data, outputs and gradients stay blocked
        # from the stem's output (its 3-channel data is read plain) to the global pooling
        # before the classifier, whose (4, 64, 1, 1) output reads the same in both layouts
        # (blocked_same_as_plain): 142 of 393 reorders were left while the max pooling after
        # the stem made its values plain, 97 while the global pooling did, 73 now, all of
        # them the weights' and their gradients'.
        self.assertGreater(counts["0"], 0, "oneDNN's verbose log shows no reorders")
        if "blocked layout nChw" in loom.backend_describe(1):  # nChw16c, or nChw8c on AVX2
            self.assertLess(counts["1"], counts["0"] / 3, counts)
            self.assertGreater(data["0"], 0, data)
            self.assertEqual(data["1"], 0, data)
        else:  # no blocked layouts on this CPU: executors keep every value plain
            self.assertEqual(counts["1"], counts["0"], counts)

if __name__ == "__main__":
    unittest.main()
