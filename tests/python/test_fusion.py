"""Prediction fusion (symbol/executor.cc): a graph bound without gradients runs Convolution
[+ BatchNorm] [+ add] [+ relu] as one step (oneDNN post-ops where it takes the case). Its
predictions equal the unfused graph's (LOOM_EXEC_FUSE=0) within float32 rounding; the steps
it fused are gone from the plan; what must stay apart (a value that is also an output, a value
read twice, BatchNorm statistics outputs, another activation) stays apart; a forward pass with
is_train=True (BatchNorm on the batch's statistics) and the reference kernel set run the
original kernels and give the unfused bits exactly."""
import ctypes
import json
import os
import subprocess
import sys
import unittest

import numpy as np

import loom
from loom import _abi, sym


def _steps(ex):
    plan = _abi.loom_memory_plan()
    loom._check(loom._LIB.loom_executor_memory(ctypes.byref(plan), ex._h))
    return plan.num_steps


def _inplace(ex):
    plan = _abi.loom_memory_plan()
    loom._check(loom._LIB.loom_executor_memory(ctypes.byref(plan), ex._h))
    return plan.num_inplace


def _bind(net, shapes, fuse, params):
    os.environ["LOOM_EXEC_FUSE"] = "1" if fuse else "0"
    try:
        ex = net.simple_bind(loom.cpu(), grad_req="null", **shapes)
    finally:
        del os.environ["LOOM_EXEC_FUSE"]
    for n, a in ex.arg_dict.items():
        if n in params:
            a.copyfrom(params[n])
    for n, a in ex.aux_dict.items():
        a.copyfrom(params[n])
    return ex


def _params(net, shapes, rng):
    arg, _, aux = net.infer_shape(**shapes)
    p = {}
    for n, s in list(zip(net.list_arguments(), arg)) + list(zip(net.list_auxiliary_states(), aux)):
        if n in shapes:
            continue
        if n.endswith("gamma") or n.endswith("moving_var"):
            p[n] = rng.uniform(0.5, 1.5, s).astype(np.float32)
        else:
            p[n] = (rng.normal(size=s) * 0.3).astype(np.float32)
    return p


def conv(x, name, f, k=3, bias=False):
    return sym.Convolution(x, kernel=(k, k), pad=(k // 2, k // 2), num_filter=f, no_bias=not bias, name=name)


def bn(x, name, fix_gamma=False, **kw):
    return sym.BatchNorm(x, fix_gamma=fix_gamma, eps=1e-5, name=name, **kw)


def relu(x, name):
    return sym.Activation(x, act_type="relu", name=name)


def residual_net():
    """A ResNet-like graph: every pattern, and the cases that must not fuse."""
    data = sym.Variable("data")
    a = relu(bn(conv(data, "c1", 32), "b1"), "r1")                        # conv+bn+relu
    b = bn(conv(a, "c2", 32), "b2")                                         # conv+bn (then add)
    c = relu(sym.ElementWiseSum(b, a, name="sum1"), "r2")                   # +add+relu
    d = relu(conv(c, "c3", 32, k=1, bias=True), "r3")                       # conv+relu, with bias
    e = bn(conv(d, "c4", 32), "b4", fix_gamma=True)                         # fix_gamma
    f = relu(sym.elemwise_add(d, e, name="add2") if hasattr(sym, "elemwise_add") else d + e, "r4")
    p1 = relu(bn(conv(f, "c8", 32), "b8"), "r8")                            # an identity unit: the
    q = relu(bn(conv(p1, "c9", 32), "b9") + f, "r9")                        # sum takes f's buffer
    g = conv(q, "c5", 16)                                                   # read twice: not fused
    h = sym.Activation(g, act_type="tanh", name="t5") + relu(g, "r5")
    i = conv(h, "c6", 16)                                                   # also an output
    j = relu(i, "r6")
    k = bn(conv(j, "c7", 16), "b7", output_mean_var=True)                   # statistics out
    return sym.Group(relu(k[0], "r7"), i)


class PredictionFusion(unittest.TestCase):
    shapes = {"data": (2, 16, 10, 10)}

    def setUp(self):
        self.rng = np.random.default_rng(11)
        self.net = residual_net()
        self.params = _params(self.net, self.shapes, self.rng)
        self.x = self.rng.normal(size=self.shapes["data"]).astype(np.float32)

    def test_fused_predictions_equal_the_unfused_graph(self):
        for batch in (1, 2, 5):  # one image (channel pieces) and batches
            shapes = {"data": (batch, 16, 10, 10)}
            x = self.rng.normal(size=shapes["data"]).astype(np.float32)
            fused, plain = _bind(self.net, shapes, True, self.params), _bind(self.net, shapes, False, self.params)
            want = [o.asnumpy() for o in plain.forward(is_train=False, data=x)]
            got = [o.asnumpy() for o in fused.forward(is_train=False, data=x)]
            for g, w in zip(got, want):
                self.assertEqual(g.shape, w.shape)
                self.assertLess(np.abs(g - w).max() / (1 + np.abs(w).max()), 1e-5)
            # c1+b1+r1, c2+b2+sum1+r2, c3+r3, c4+b4+add2+r4, c8+b8+r8, c9+b9+add+r9 fuse
            # (14 steps fewer); c5, c6, c7 stay
            self.assertEqual(_steps(plain) - _steps(fused), 14)

    def test_nan_passes_the_fused_relu_as_it_passes_mxnets(self):
        # MXNet's relu keeps NaN (mshadow_op.h: IsNan(a) || a > 0 ? a : 0); oneDNN's relu
        # and clip post-ops give 0. A NaN pixel spreads through the convolutions: the
        # fused graph must put NaN exactly where the unfused one does. Batches under 4
        # are cut by output channels, larger ones by images (onednn.cc).
        for batch in (1, 3, 5):
            shapes = {"data": (batch, 16, 10, 10)}
            x = self.rng.normal(size=shapes["data"]).astype(np.float32)
            x[0, 3, 4, 5] = np.nan
            fused, plain = _bind(self.net, shapes, True, self.params), _bind(self.net, shapes, False, self.params)
            want = [o.asnumpy() for o in plain.forward(is_train=False, data=x)]
            got = [o.asnumpy() for o in fused.forward(is_train=False, data=x)]
            for g, w in zip(got, want):
                self.assertTrue(np.isnan(w).any())
                np.testing.assert_array_equal(np.isnan(g), np.isnan(w))
                ok = ~np.isnan(w)
                self.assertLess(np.abs(g[ok] - w[ok]).max(initial=0) / (1 + np.abs(w[ok]).max(initial=0)), 1e-5)

    def test_an_identity_unit_writes_over_its_shortcut(self):
        # c9+b9+add+r9 reads f last (c8 read it before): with oneDNN its output takes f's
        # buffer, BatchNorm or not, instead of copying f into a buffer of its own. With the
        # BatchNorm as post-ops (LOOM_EXEC_FOLD=0, read at each call) f is not summed from
        # the output and is kept apart first. Batches under 4 are cut by channels, 5 by images.
        onednn = "onednn" in loom.backend_describe(1) and os.environ.get("LOOM_CPU_KERNELS", "") != "reference"
        for batch in (1, 3, 5):
            shapes = {"data": (batch, 16, 10, 10)}
            x = self.rng.normal(size=shapes["data"]).astype(np.float32)
            fused, plain = _bind(self.net, shapes, True, self.params), _bind(self.net, shapes, False, self.params)
            # c2+b2+sum1 reads a twice (as data too) and must not write over it
            self.assertEqual(_inplace(fused), 4 if onednn else 3)
            want = [o.asnumpy() for o in plain.forward(is_train=False, data=x)]
            for fold in ("1", "0", "1"):
                os.environ["LOOM_EXEC_FOLD"] = fold
                try:
                    got = [o.asnumpy() for o in fused.forward(is_train=False, data=x)]
                finally:
                    del os.environ["LOOM_EXEC_FOLD"]
                for g, w in zip(got, want):
                    self.assertLess(np.abs(g - w).max() / (1 + np.abs(w).max()), 1e-5, (batch, fold))

    def test_is_train_forward_runs_the_original_kernels(self):
        fused, plain = _bind(self.net, self.shapes, True, self.params), _bind(self.net, self.shapes, False, self.params)
        for a, b in zip(fused.forward(is_train=True, data=self.x), plain.forward(is_train=True, data=self.x)):
            np.testing.assert_array_equal(a.asnumpy(), b.asnumpy())
        # and prediction afterwards still uses the moving statistics
        for a, b in zip(fused.forward(is_train=False, data=self.x), plain.forward(is_train=False, data=self.x)):
            self.assertLess(np.abs(a.asnumpy() - b.asnumpy()).max() / (1 + np.abs(b.asnumpy()).max()), 1e-5)

    def test_reference_kernels_give_the_unfused_bits(self):
        # The kernel set is chosen once per process: a child process with the reference set.
        code = (
            "import sys, numpy as np; sys.path.insert(0, %r); import test_fusion as t\n"
            "c = t.PredictionFusion(); c.setUp()\n"
            "f = t._bind(c.net, c.shapes, True, c.params); p = t._bind(c.net, c.shapes, False, c.params)\n"
            "for a, b in zip(f.forward(is_train=False, data=c.x), p.forward(is_train=False, data=c.x)):\n"
            "    np.testing.assert_array_equal(a.asnumpy(), b.asnumpy())\n"
            "assert t._steps(p) - t._steps(f) == 14\n"
            "print('same bits')\n") % os.path.dirname(os.path.abspath(__file__))
        env = dict(os.environ, LOOM_CPU_KERNELS="reference")
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("same bits", r.stdout)

    def test_bad_input_names_the_original_node(self):
        # A weight of the wrong shape in a chain that would fuse: the error names its node.
        os.environ["LOOM_EXEC_FUSE"] = "1"
        try:
            with self.assertRaises(loom.LoomError) as cm:
                self.net.simple_bind(loom.cpu(), grad_req="null", data=(2, 16, 10, 10), c2_weight=(32, 31, 3, 3))
        finally:
            del os.environ["LOOM_EXEC_FUSE"]
        self.assertIn("c2", str(cm.exception))
        self.assertIn("(32,31,3,3)", str(cm.exception).replace(" ", ""))


def banded_net():
    """A residual unit on 28x28 images of 16 channels: batches under 4 run in bands of rows
    (AVX-512), larger ones by images."""
    data = sym.Variable("data")
    a = relu(bn(conv(data, "d1", 16), "e1"), "s1")
    return relu(bn(conv(a, "d2", 16), "e2") + a, "s2")


class OnednnRelu(unittest.TestCase):
    """LOOM_EXEC_RELU=onednn (or a relu's __onednn_relu__ attribute): a fused convolution's
    relu is oneDNN's post-op, max(x, 0), where NaN gives 0 as in MXNet's oneDNN builds;
    by default it is Loom's, where NaN passes through as in MXNet's reference relu.
    Elsewhere the two agree bit for bit (both give +0 for -0)."""

    def setUp(self):
        self.rng = np.random.default_rng(5)
        self.onednn = "onednn" in loom.backend_describe(1) and os.environ.get("LOOM_CPU_KERNELS", "") != "reference"

    def bind(self, net, shapes, params, env=None):
        if env is not None:
            os.environ["LOOM_EXEC_RELU"] = env
        try:
            return _bind(net, shapes, True, params)
        finally:
            os.environ.pop("LOOM_EXEC_RELU", None)

    def cases(self):
        for make, chans, hw in ((residual_net, 16, 10), (banded_net, 16, 28)):
            for batch in (1, 5):
                net = make()
                shapes = {"data": (batch, chans, hw, hw)}
                yield net, shapes, _params(net, shapes, self.rng)

    def test_the_same_bits_without_nan(self):
        for net, shapes, params in self.cases():
            x = self.rng.normal(size=shapes["data"]).astype(np.float32)
            x[0, 0, :2, :] = 0.0  # exact zeros and -0 products on the way
            mine = [o.asnumpy() for o in self.bind(net, shapes, params).forward(is_train=False, data=x)]
            theirs = [o.asnumpy() for o in self.bind(net, shapes, params, "onednn").forward(is_train=False, data=x)]
            for m, t in zip(mine, theirs):
                np.testing.assert_array_equal(m.view(np.uint32), t.view(np.uint32))

    def test_nan_gives_zero_only_with_onednn_relu(self):
        for net, shapes, params in self.cases():
            x = self.rng.normal(size=shapes["data"]).astype(np.float32)
            x[0, 3, 4, 5] = np.nan
            mine = self.bind(net, shapes, params).forward(is_train=False, data=x)[0].asnumpy()
            theirs = self.bind(net, shapes, params, "onednn").forward(is_train=False, data=x)[0].asnumpy()
            # Every path from the data goes through a fused relu first: oneDNN's stops the NaN.
            self.assertTrue(np.isnan(mine).any())
            if self.onednn:
                self.assertFalse(np.isnan(theirs).any(), "oneDNN's relu did not run")
                ok = ~np.isnan(mine)
                np.testing.assert_array_equal(mine[ok], theirs[ok])
            else:  # Loom's kernels alone: the option changes nothing
                np.testing.assert_array_equal(np.isnan(theirs), np.isnan(mine))

    def test_a_relu_attribute_decides_for_its_node(self):
        shapes = {"data": (2, 16, 10, 10)}
        x = self.rng.normal(size=shapes["data"]).astype(np.float32)
        x[1, 2, 3, 4] = np.nan

        def net(attr):
            c = bn(conv(sym.Variable("data"), "a1", 16), "a2")
            r = relu(c, "a3")
            return conv(r.set_attr("__onednn_relu__", attr) if attr else r, "a4", 8)

        params = _params(net(None), shapes, self.rng)
        for attr, env, stops in (("True", None, True), ("False", "onednn", False), (None, "mxnet", False),
                                 (None, "onednn", True)):
            got = self.bind(net(attr), shapes, params, env).forward(is_train=False, data=x)[0].asnumpy()
            self.assertEqual(not np.isnan(got).any(), stops and self.onednn, (attr, env))

    def test_a_bad_value_is_refused_at_bind(self):
        net = banded_net()
        shapes = {"data": (1, 16, 28, 28)}
        with self.assertRaises(loom.LoomError) as e:
            self.bind(net, shapes, _params(net, shapes, self.rng), "fast")
        self.assertIn("LOOM_EXEC_RELU=fast", str(e.exception))
        self.assertIn("onednn", str(e.exception))

def dense_net():
    """FullyConnected + Activation pairs: relu and tanh fuse; an output of the graph and a
    value read twice stay apart."""
    data = sym.Variable("data")
    a = sym.Activation(sym.FullyConnected(data, num_hidden=32, name="d1"), act_type="relu", name="a1")
    b = sym.Activation(sym.FullyConnected(a, num_hidden=24, name="d2"), act_type="tanh", name="a2")
    c = sym.FullyConnected(b, num_hidden=16, name="d3")                 # also an output
    d = sym.Activation(c, act_type="sigmoid", name="a3")
    e = sym.FullyConnected(d, num_hidden=8, no_bias=True, name="d4")    # read twice
    f = sym.Activation(e, act_type="relu", name="a4") + e
    return sym.Group(sym.Activation(sym.FullyConnected(f, num_hidden=4, name="d5"), act_type="softrelu"), c)


class DenseFusion(unittest.TestCase):
    """A prediction runs FullyConnected and the Activation after it as one step: the same
    kernels one after the other, so the unfused graph's bits, with NaN passing the relu as
    it passes MXNet's."""

    def test_fused_predictions_have_the_unfused_bits(self):
        rng = np.random.default_rng(8)
        net = dense_net()
        for batch in (1, 7):
            shapes = {"data": (batch, 20)}
            params = _params(net, shapes, rng)
            x = rng.normal(size=shapes["data"]).astype(np.float32)
            x[0, 3] = np.nan
            plain, fused = _bind(net, shapes, False, params), _bind(net, shapes, True, params)
            want = [o.asnumpy() for o in plain.forward(is_train=False, data=x)]
            got = [o.asnumpy() for o in fused.forward(is_train=False, data=x)]
            for g, w in zip(got, want):
                self.assertEqual(g.shape, w.shape)
                self.assertTrue(np.array_equal(g.view(np.uint32), w.view(np.uint32)))
            self.assertTrue(np.isnan(got[0]).any())
            # d1+a1, d2+a2 and d5+softrelu fuse; d3 (an output) and d4 (read twice) stay
            self.assertEqual(_steps(plain) - _steps(fused), 3)


def pooled_net():
    """Fused convolutions with poolings between them: a max pooling and an average pooling
    keep the values around them in nChw16c."""
    data = sym.Variable("data")
    a = relu(bn(conv(data, "p1", 32), "pb1"), "pr1")
    a = sym.Pooling(a, kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="max", name="pool1")
    b = relu(bn(conv(a, "p2", 32), "pb2"), "pr2")
    b = sym.Pooling(b, kernel=(2, 2), stride=(2, 2), pool_type="avg", name="pool2")
    return conv(b, "p3", 16)


def global_pooled_net():
    """A residual unit ending in a global pooling and a classifier, as ResNet's last stage: the
    pooling's (n, 32, 1, 1) output reads the same in nChw16c as in NCHW, so the values before
    it stay in nChw16c although a FullyConnected reads it."""
    data = sym.Variable("data")
    a = relu(bn(conv(data, "g1", 32), "gb1"), "gr1")
    b = relu(bn(conv(a, "g2", 32), "gb2") + a, "gr2")
    b = sym.Pooling(b, kernel=(1, 1), global_pool=True, pool_type="avg", name="gpool")
    return sym.FullyConnected(sym.Flatten(b), num_hidden=10, name="gfc")


def banded_pool_net():
    """A max pooling read by two convolutions of 16x16 outputs: for one image on AVX-512 they run
    in bands of rows in channels last, which the pooling writes directly."""
    data = sym.Variable("data")
    a = relu(bn(conv(data, "q1", 32), "qb1"), "qr1")
    a = sym.Pooling(a, kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="max", name="qpool")
    return relu(bn(conv(a, "q2", 32), "qb2"), "qr2") + conv(a, "q3", 32, k=1)


class PoolingBetweenFusedSteps(unittest.TestCase):
    """In the oneDNN kernel set, a prediction keeps a pooling's data and output in nChw16c
    where the steps around it are oneDNN convolutions: its predictions equal the unfused
    graph's, and no value around the poolings is reordered (oneDNN's verbose log)."""
    SCRIPT = ("import sys, numpy as np; sys.path.insert(0, %r); import test_fusion as t\n"
              "shapes = {'data': (2, 3, 12, 12)}; net = t.pooled_net()\n"
              "p = t._params(net, shapes, np.random.default_rng(3))\n"
              "t._bind(net, shapes, sys.argv[1] == '1', p).forward(is_train=False)[0].asnumpy()\n")

    def assert_fused_equals_unfused(self, net, batches, hw, seed, classes=None):
        """The fused executor's predictions within 1e-5 of the unfused graph's, 3-channel data."""
        rng = np.random.default_rng(seed)
        for batch in batches:
            shapes = {"data": (batch, 3) + hw}
            params = _params(net, shapes, rng)
            x = rng.normal(size=shapes["data"]).astype(np.float32)
            want = _bind(net, shapes, False, params).forward(is_train=False, data=x)[0].asnumpy()
            got = _bind(net, shapes, True, params).forward(is_train=False, data=x)[0].asnumpy()
            if classes:
                self.assertEqual(got.shape, (batch,) + classes)
            self.assertLess(np.abs(got - want).max() / (1 + np.abs(want).max()), 1e-5)

    def reorders(self, fuse, net="pooled_net", data=(2, 3, 12, 12)):
        """oneDNN's verbose lines of the reorders one prediction of `net` runs, in a process of its own."""
        script = self.SCRIPT.replace("pooled_net()", net + "()").replace("(2, 3, 12, 12)", str(data))
        env = dict(os.environ, ONEDNN_VERBOSE="1", DNNL_VERBOSE="1")
        log = subprocess.run([sys.executable, "-c", script % os.path.dirname(os.path.abspath(__file__)), fuse],
                             env=env, check=True, capture_output=True, text=True, timeout=300).stdout
        return [line for line in log.splitlines() if ",exec,cpu,reorder," in line]

    def test_predictions_equal_the_unfused_graph(self):
        self.assert_fused_equals_unfused(pooled_net(), (1, 2, 5), (12, 12), 4, classes=(16, 3, 3))

    def test_values_before_a_global_pooling_are_not_reordered(self):
        if "onednn" not in loom.backend_describe(1) or os.environ.get("LOOM_CPU_KERNELS", "") == "reference":
            self.skipTest("blocked layouts are the oneDNN kernel set's")
        shapes = {fuse: [line.split(",")[-2] for line in self.reorders(fuse, "global_pooled_net", (5, 3, 12, 12))]
                  for fuse in ("0", "1")}
        # Reorders of the two convolutions' 12x12 outputs (the addend's among them)
        self.assertTrue([sh for sh in shapes["0"] if sh.endswith("x12x12")], shapes["0"])  # unfused: reordered
        if "blocked layout nChw" in loom.backend_describe(1):  # nChw16c, or nChw8c on AVX2
            self.assertFalse([sh for sh in shapes["1"] if sh.endswith("x12x12")], shapes["1"])
        self.assert_fused_equals_unfused(global_pooled_net(), (1, 5), (12, 12), 6, classes=(10,))

    def test_a_pooling_read_by_bands_of_rows_writes_channels_last(self):
        if "bands of rows" not in loom.backend_describe(1) or os.environ.get("LOOM_CPU_KERNELS", "") == "reference":
            self.skipTest("bands of rows are the oneDNN kernel set's, on AVX-512")
        reorders = self.reorders("1", "banded_pool_net", (1, 3, 32, 32))
        self.assertTrue(reorders, "oneDNN's verbose log shows no reorders")
        # the pooling's blocked output reordered into channels last by each reader: gone
        self.assertFalse([r for r in reorders if "aBcd16b" in r and "acdb" in r], reorders)
        self.assert_fused_equals_unfused(banded_pool_net(), (1, 2, 4), (32, 32), 7)

    def test_values_around_the_poolings_are_not_reordered(self):
        if "onednn" not in loom.backend_describe(1) or os.environ.get("LOOM_CPU_KERNELS", "") == "reference":
            self.skipTest("blocked layouts are the oneDNN kernel set's")
        shapes = {fuse: [line.split(",")[-2] for line in self.reorders(fuse)] for fuse in ("0", "1")}
        # Reorders of values (per image and per piece of channels) around the poolings: the
        # convolutions' outputs (12x12, then 6x6) and the poolings' outputs (6x6, then 3x3 with
        # 32 channels); the data's 3 channels are taken plain, the last output is reordered.
        def around(sh):
            return sh.endswith(("x12x12", "x6x6")) or sh in ("1x32x3x3", "2x32x3x3")
        self.assertTrue([sh for sh in shapes["0"] if around(sh)], shapes["0"])  # unfused: reordered
        if "blocked layout nChw" in loom.backend_describe(1):  # nChw16c, or nChw8c on AVX2
            self.assertFalse([sh for sh in shapes["1"] if around(sh)], shapes["1"])
        else:  # no blocked layouts on this CPU: executors keep every value plain
            self.assertTrue([sh for sh in shapes["1"] if around(sh)], shapes["1"])


class WinogradPrediction(unittest.TestCase):
    """LOOM_CONV_WINOGRAD=1 at bind (or a node's __winograd__ attribute): the fused prediction
    steps run 3x3 stride-1 convolutions on images of 14x14 or more by a Winograd algorithm
    (oneDNN's with AVX-512, else Loom's F(2x2,3x3), with their epilogues: folded BatchNorm,
    residual additions, relu), but on AVX-512 not those of fewer than 4 images with 14 or more
    output rows, which run direct in bands of rows. The predictions stay within 1e-4 of the direct algorithm's relative to the
    largest output, differ from them in some bits (so Winograd ran), and have the same bits
    for any count of kernel threads."""

    SCRIPT = """
import hashlib, sys, numpy as np
sys.path.insert(0, %r)
import test_fusion as t
rng = np.random.default_rng(5)
net = t.residual_net()
out = []
for batch in (1, 4):
    shapes = {"data": (batch, 16, 14, 14)}
    params = t._params(net, shapes, rng)
    x = rng.normal(size=shapes["data"]).astype(np.float32)
    ex = t._bind(net, shapes, True, params)
    out += [o.asnumpy().tobytes() for o in ex.forward(is_train=False, data=x)]
print(hashlib.sha256(b"".join(out)).hexdigest())
"""

    def test_winograd_predictions_are_close_and_do_not_depend_on_threads(self):
        # oneDNN 2.6 has Winograd convolutions for AVX-512 only; elsewhere Loom's run.
        describe = loom.backend_describe(1)
        onednn = ("onednn" in describe and ("avx512" in describe or "Loom's Winograd" in describe)
                  and os.environ.get("LOOM_CPU_KERNELS", "") != "reference")
        rng = np.random.default_rng(5)
        net = residual_net()
        for batch in (1, 2, 4):  # channel halves for fewer than 4 images, items of one image for 4
            shapes = {"data": (batch, 16, 14, 14)}
            params = _params(net, shapes, rng)
            x = rng.normal(size=shapes["data"]).astype(np.float32)
            plain = _bind(net, shapes, False, params)
            direct = _bind(net, shapes, True, params)
            os.environ["LOOM_CONV_WINOGRAD"] = "1"
            try:
                wino = _bind(net, shapes, True, params)
            finally:
                del os.environ["LOOM_CONV_WINOGRAD"]
            want = [o.asnumpy() for o in plain.forward(is_train=False, data=x)]
            same = [o.asnumpy() for o in direct.forward(is_train=False, data=x)]
            got = [o.asnumpy() for o in wino.forward(is_train=False, data=x)]
            for g, d, w in zip(got, same, want):
                self.assertLess(np.abs(g - w).max() / np.abs(w).max(), 1e-4, batch)
                self.assertLess(np.abs(d - w).max() / np.abs(w).max(), 1e-5, batch)
            # On AVX-512, fewer than 4 images of 14 or more output rows are cut into bands of
            # rows, which run the direct algorithm.
            if onednn and not (batch < 4 and "avx512" in describe):
                self.assertFalse(all(np.array_equal(g, d) for g, d in zip(got, same)), "Winograd did not run")
            elif batch < 4:
                for g, d in zip(got, same):
                    np.testing.assert_array_equal(g, d)
        # A node's __winograd__ attribute decides for that node, whatever LOOM_CONV_WINOGRAD says.
        def two_convs(attr):
            c1 = conv(sym.Variable("data"), "a1", 32)
            c2 = conv(relu(c1.set_attr("__winograd__", attr) if attr else c1, "ar"), "a2", 32)
            return c2.set_attr("__winograd__", attr) if attr else c2

        for attr, env in (("False", "1"), ("True", None)):
            net2 = two_convs(attr)
            shapes = {"data": (4, 16, 14, 14)}
            params = _params(net2, shapes, rng)
            x = rng.normal(size=shapes["data"]).astype(np.float32)
            direct = _bind(two_convs(None), shapes, True, params).forward(is_train=False, data=x)[0].asnumpy()
            if env:
                os.environ["LOOM_CONV_WINOGRAD"] = env
            try:
                got = _bind(net2, shapes, True, params).forward(is_train=False, data=x)[0].asnumpy()
            finally:
                os.environ.pop("LOOM_CONV_WINOGRAD", None)
            self.assertLess(np.abs(got - direct).max() / np.abs(direct).max(), 1e-4)
            if attr == "False" or not onednn:
                np.testing.assert_array_equal(got, direct)
            else:
                self.assertFalse(np.array_equal(got, direct), "the attribute did not ask for Winograd")
        digests = set()
        for threads in ("1", "3"):
            env = dict(os.environ, LOOM_KERNEL_THREADS=threads, LOOM_CONV_WINOGRAD="1")
            r = subprocess.run([sys.executable, "-c", self.SCRIPT % os.path.dirname(os.path.abspath(__file__))],
                               env=env, capture_output=True, text=True, timeout=300)
            self.assertEqual(r.returncode, 0, r.stderr)
            digests.add(r.stdout.strip().splitlines()[-1])
        self.assertEqual(len(digests), 1)

    TILE_SCRIPT = """
import json, sys, numpy as np, loom
sys.path.insert(0, %r)
import test_fusion as t
rng = np.random.default_rng(8)
net = t.residual_net()
shapes = {"data": (2, 16, 14, 14)}
params = t._params(net, shapes, rng)
x = rng.normal(size=shapes["data"]).astype(np.float32)
want = [o.asnumpy() for o in t._bind(net, shapes, False, params).forward(is_train=False, data=x)]
try:
    ex = t._bind(net, shapes, True, params)
    got = [o.asnumpy() for o in ex.forward(is_train=False, data=x)]
    print(json.dumps({"err": max(float(np.abs(g - w).max() / np.abs(w).max()) for g, w in zip(got, want)),
                      "bits": [g.tobytes().hex()[:4000] for g in got]}))
except loom.LoomError as e:
    print(json.dumps({"error": str(e)}))
"""

    def test_loom_winograd_tiles_and_a_bad_tile(self):
        # LOOM_WINOGRAD_TILE, where Loom's Winograd kernels run: 4 (the default, unset) and 2
        # both stay close to the plain graph's predictions (2x2 tiles within 1e-5) and give
        # different bits; any other value is refused by name when a convolution runs.
        describe = loom.backend_describe(1)
        if "Loom's Winograd" not in describe or os.environ.get("LOOM_CPU_KERNELS", "") == "reference":
            self.skipTest("Loom's Winograd kernels do not run here (oneDNN's do, or the reference set)")
        here = os.path.dirname(os.path.abspath(__file__))
        out = {}
        for tile in ("", "4", "2", "3"):
            env = dict(os.environ, LOOM_CONV_WINOGRAD="1", LOOM_WINOGRAD_TILE=tile)
            r = subprocess.run([sys.executable, "-c", self.TILE_SCRIPT % here], env=env, capture_output=True,
                               text=True, timeout=300)
            self.assertEqual(r.returncode, 0, r.stderr)
            out[tile] = json.loads(r.stdout.strip().splitlines()[-1])
        self.assertLess(out[""]["err"], 1e-4)
        self.assertEqual(out[""]["bits"], out["4"]["bits"])
        self.assertLess(out["2"]["err"], 1e-5)
        self.assertNotEqual(out["2"]["bits"], out["4"]["bits"])
        self.assertIn("LOOM_WINOGRAD_TILE=3 is not a tile size", out["3"].get("error", ""))



class WinogradTraining(unittest.TestCase):
    """LOOM_CONV_WINOGRAD=1 at bind (or __winograd__) in a graph bound for training: where Loom's
    Winograd kernels run, each marked 3x3 stride-1 convolution's forward pass, data gradient and
    weight gradient run by them. Outputs and every gradient, the data's too,
    stay within 1e-4 of the direct algorithm's relative to their largest value, in blocked and
    plain layouts, and differ from them in some bits (so Winograd ran); an attribute False keeps
    a node direct."""

    @staticmethod
    def net(attr=None):
        data = sym.Variable("data")
        a = relu(bn(conv(data, "w1", 32), "wb1"), "wr1")
        b = conv(a, "w2", 32, bias=True)
        if attr:
            b = b.set_attr("__winograd__", attr)
        c = relu(b + a, "wr2")  # no BatchNorm after w2: its bias has a gradient
        x = sym.Pooling(c, kernel=(1, 1), global_pool=True, pool_type="avg")
        return sym.SoftmaxOutput(sym.FullyConnected(sym.Flatten(x), num_hidden=10, name="wfc"), name="softmax")

    def run_net(self, net, wino, blocked):
        os.environ["LOOM_EXEC_BLOCKED"] = "1" if blocked else "0"
        if wino:
            os.environ["LOOM_CONV_WINOGRAD"] = "1"
        try:
            ex = net.simple_bind(grad_req={"softmax_label": "null"}, data=(3, 16, 14, 14), softmax_label=(3,))
        finally:
            del os.environ["LOOM_EXEC_BLOCKED"]
            os.environ.pop("LOOM_CONV_WINOGRAD", None)
        rng = np.random.default_rng(21)
        for n in sorted(ex.arg_dict):
            a = ex.arg_dict[n]
            if n == "softmax_label":
                a.copyfrom(rng.integers(0, 10, a.shape).astype(np.float32))
            else:
                a.copyfrom((rng.standard_normal(a.shape) * (1.0 if n == "data" else 0.2)).astype(np.float32))
        outs = [o.asnumpy() for o in ex.forward(is_train=True)]
        ex.backward()
        grads = {n: g.asnumpy() for n, g in ex.grad_dict.items() if g is not None}
        return outs, grads

    def test_training_with_winograd_is_close_to_direct(self):
        describe = loom.backend_describe(1)
        runs = "Loom's Winograd" in describe and os.environ.get("LOOM_CPU_KERNELS", "") != "reference"
        for blocked in (True, False):
            want_o, want_g = self.run_net(self.net(), False, blocked)
            got_o, got_g = self.run_net(self.net(), True, blocked)
            self.assertIn("data", got_g)
            for n in want_g:
                scale = max(np.abs(want_g[n]).max(), 1e-30)
                self.assertLess(np.abs(got_g[n] - want_g[n]).max() / scale, 1e-4, (n, blocked))
            for g, w in zip(got_o, want_o):
                self.assertLess(np.abs(g - w).max() / np.abs(w).max(), 1e-4, blocked)
            differ = [n for n in want_g if not np.array_equal(got_g[n], want_g[n])]
            if runs:
                # the data gradient (w1's data gradient by Winograd) and w2's inputs' gradients
                self.assertIn("data", differ, blocked)
                self.assertIn("w1_weight", differ, blocked)
            else:
                self.assertEqual(differ, [], blocked)
        if runs:
            # w2 marked False, w1 by the environment: w2's weight gradient comes from its
            # output gradient (direct through the head) and w1's output, which w1's Winograd
            # forward pass changed; with both marked False nothing changes.
            def both_false():
                data = sym.Variable("data")
                a = relu(bn(conv(data, "w1", 32).set_attr("__winograd__", "False"), "wb1"), "wr1")
                b = conv(a, "w2", 32, bias=True).set_attr("__winograd__", "False")
                c = relu(b + a, "wr2")
                x = sym.Pooling(c, kernel=(1, 1), global_pool=True, pool_type="avg")
                return sym.SoftmaxOutput(sym.FullyConnected(sym.Flatten(x), num_hidden=10, name="wfc"),
                                         name="softmax")
            want_o, want_g = self.run_net(self.net(), False, True)
            got_o, got_g = self.run_net(both_false(), True, True)
            for n in want_g:
                np.testing.assert_array_equal(got_g[n], want_g[n], n)

    THREAD_SCRIPT = """
import hashlib, sys
sys.path.insert(0, %r)
import test_fusion as t
h = hashlib.sha256()
for blocked in (True, False):
    outs, grads = t.WinogradTraining.run_net(None, t.WinogradTraining.net(), True, blocked)
    for o in outs:
        h.update(o.tobytes())
    for n in sorted(grads):
        h.update(n.encode())
        h.update(grads[n].tobytes())
print(h.hexdigest())
"""

    def test_training_bits_do_not_depend_on_threads(self):
        """Outputs and every gradient of a Winograd training step, 1 and 3 kernel threads: the
        same bits (each of the weight gradient's products is one thread's, added in pass order)."""
        here = os.path.dirname(os.path.abspath(__file__))
        digests = set()
        for threads in ("1", "3"):
            env = dict(os.environ, LOOM_KERNEL_THREADS=threads)
            r = subprocess.run([sys.executable, "-c", self.THREAD_SCRIPT % here], env=env, capture_output=True,
                               text=True, timeout=300)
            self.assertEqual(r.returncode, 0, r.stderr)
            digests.add(r.stdout.strip().splitlines()[-1])
        self.assertEqual(len(digests), 1)

    def test_weight_gradient_alone(self):
        """A lone convolution given its output gradient: its weight gradient by Winograd differs
        from direct in some bits (only that path could change it) and stays within 1e-4, also
        for 7x7 outputs, where the forward pass and the data gradient stay direct."""
        runs = "Loom's Winograd" in loom.backend_describe(1) and \
            os.environ.get("LOOM_CPU_KERNELS", "") != "reference"
        rng = np.random.default_rng(5)
        for shape, pad in (((4, 16, 14, 14), 1), ((8, 32, 9, 9), 0), ((2, 16, 12, 11), 2)):
            data = sym.Variable("data")
            net = sym.Convolution(data, kernel=(3, 3), pad=(pad, pad), num_filter=32, no_bias=True, name="c")
            x = rng.standard_normal(shape).astype(np.float32)
            w = (rng.standard_normal((32, shape[1], 3, 3)) * 0.2).astype(np.float32)
            grads = []
            for wino in (False, True):
                for blocked in (False, True):
                    os.environ["LOOM_EXEC_BLOCKED"] = "1" if blocked else "0"
                    if wino:
                        os.environ["LOOM_CONV_WINOGRAD"] = "1"
                    try:
                        ex = net.simple_bind(grad_req={"data": "null", "c_weight": "write"}, data=shape)
                    finally:
                        del os.environ["LOOM_EXEC_BLOCKED"]
                        os.environ.pop("LOOM_CONV_WINOGRAD", None)
                    ex.arg_dict["data"].copyfrom(x)
                    ex.arg_dict["c_weight"].copyfrom(w)
                    out = ex.forward(is_train=True)[0]
                    head = np.cos(np.arange(out.size, dtype=np.float32)).reshape(out.shape)
                    ex.backward(loom.array(head))
                    grads.append(ex.grad_dict["c_weight"].asnumpy())
            want = grads[0]
            scale = np.abs(want).max()
            for got in grads[1:]:
                self.assertLess(np.abs(got - want).max() / scale, 1e-4, shape)
            np.testing.assert_array_equal(grads[1], want)  # direct in both layouts: the same bits
            for got in grads[2:]:
                self.assertEqual(not np.array_equal(got, want), runs, shape)


if __name__ == "__main__":
    unittest.main()
