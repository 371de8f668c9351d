"""BatchNorm folded into the layer before it (Symbol.fold_batchnorm, native): predictions equal
the unfolded network's, the folded BatchNorms are gone, and what cannot be folded stays."""
import json
import os
import unittest

import numpy as np

import loom
from loom import sym


def _ops(s):
    return [n["op"] for n in json.loads(s.tojson())["nodes"]]


def _params(net, rng, **shapes):
    ex = net.simple_bind(loom.cpu(), grad_req="null", **shapes)
    arg, aux = {}, {}
    for n, a in ex.arg_dict.items():
        if n in shapes:
            continue
        a.copyfrom(((rng.uniform(0.5, 1.5, a.shape)) if n.endswith("gamma") else rng.normal(size=a.shape) * 0.3)
                   .astype(np.float32))
        arg[n] = a
    for n, a in ex.aux_dict.items():
        a.copyfrom((rng.uniform(0.5, 1.5, a.shape) if n.endswith("var") else rng.normal(size=a.shape) * 0.2)
                   .astype(np.float32))
        aux[n] = a
    return arg, aux


def _predict(net, arg, aux, **inputs):
    ex = net.simple_bind(loom.cpu(), grad_req="null", **{k: v.shape for k, v in inputs.items()})
    ex.copy_params_from(arg, aux)
    return [o.asnumpy() for o in ex.forward(is_train=False, **inputs)]


class FoldBatchNorm(unittest.TestCase):
    def test_folds_and_predicts_the_same(self):
        data = sym.Variable("data")
        c1 = sym.Convolution(data, name="c1", kernel=(3, 3), num_filter=8, pad=(1, 1))
        b1 = sym.BatchNorm(c1, name="bn1", fix_gamma=False, eps=1e-3)
        r1 = sym.Activation(b1, act_type="relu", name="r1")
        c2 = sym.Convolution(r1, name="c2", kernel=(3, 3), num_filter=8, num_group=2, pad=(1, 1), no_bias=True)
        b2 = sym.BatchNorm(c2, name="bn2", fix_gamma=True)            # gamma taken as 1
        c3 = sym.Convolution(r1, name="c3", kernel=(1, 1), num_filter=8)
        b3 = sym.BatchNorm(c3, name="bn3", fix_gamma=False)
        kept = sym.Activation(c3, act_type="tanh", name="kept")        # c3 read twice: bn3 stays
        s = b2 + b3 + kept
        fc = sym.FullyConnected(s, name="fc", num_hidden=6)
        b4 = sym.BatchNorm(fc, name="bn4", fix_gamma=False)
        net = sym.SoftmaxOutput(b4, name="softmax")
        rng = np.random.default_rng(0)
        arg, aux = _params(net, rng, data=(3, 2, 7, 7), softmax_label=(3,))
        arg.pop("softmax_label", None)
        x = rng.normal(size=(3, 2, 7, 7)).astype(np.float32)
        label = np.zeros(3, np.float32)
        want = _predict(net, arg, aux, data=x, softmax_label=label)[0]
        folded, arg2, aux2, n = net.fold_batchnorm(arg, aux)
        self.assertEqual(n, 3)
        ops = _ops(folded)
        self.assertEqual(ops.count("BatchNorm"), 1)  # bn3 stays
        self.assertIn("c2_bias", folded.list_arguments())  # a bias added where there was none
        self.assertEqual(sorted(aux2), ["bn3_moving_mean", "bn3_moving_var"])
        self.assertNotIn("bn1_gamma", arg2)
        got = _predict(folded, arg2, aux2, data=x, softmax_label=label)[0]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        # the given arrays are not changed
        np.testing.assert_array_equal(_predict(net, arg, aux, data=x, softmax_label=label)[0], want)

    def test_prediction_executor_folds_as_fold_batchnorm_does(self):
        """A graph bound for prediction folds each BatchNorm after a oneDNN convolution into the
        convolution's weights and bias itself: the same bits as the graph Symbol.fold_batchnorm
        gives, near the per-channel post-op form (LOOM_EXEC_FOLD=0), and folded again after a
        weight or a moving statistic changes."""
        data = sym.Variable("data")
        c1 = sym.Convolution(data, name="c1", kernel=(3, 3), num_filter=16, pad=(1, 1), no_bias=True)
        r1 = sym.Activation(sym.BatchNorm(c1, name="bn1", fix_gamma=False), act_type="relu", name="r1")
        c2 = sym.Convolution(r1, name="c2", kernel=(1, 1), num_filter=16)
        r2 = sym.Activation(sym.BatchNorm(c2, name="bn2", fix_gamma=False) + r1, act_type="relu", name="r2")
        c3 = sym.Convolution(r2, name="c3", kernel=(3, 3), num_filter=32, stride=(2, 2), pad=(1, 1), no_bias=True)
        net = sym.BatchNorm(c3, name="bn3", fix_gamma=True, eps=1e-5)
        rng = np.random.default_rng(1)
        shape = (2, 16, 9, 9)
        arg, aux = _params(net, rng, data=shape)
        x = rng.normal(size=shape).astype(np.float32)
        onednn = "onednn" in loom.backend_describe(1) and os.environ.get("LOOM_CPU_KERNELS", "") != "reference"

        ex = net.simple_bind(loom.cpu(), grad_req="null", data=shape)
        ex.copy_params_from(arg, aux)

        def check(post=True):
            got = ex.forward(is_train=False, data=x)[0].asnumpy()
            folded, arg2, aux2, n = net.fold_batchnorm(arg, aux)
            self.assertEqual(n, 3)
            want = _predict(folded, arg2, aux2, data=x)[0]
            if onednn:
                np.testing.assert_array_equal(got, want)
            else:  # the reference kernels run the BatchNorm after the convolution
                np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
            if post:  # (its reordered weights take the place of the kept fold: not in the loop below)
                os.environ["LOOM_EXEC_FOLD"] = "0"
                try:
                    unfolded = ex.forward(is_train=False, data=x)[0].asnumpy()
                finally:
                    del os.environ["LOOM_EXEC_FOLD"]
                np.testing.assert_allclose(got, unfolded, rtol=1e-4, atol=1e-5)
            return got

        check()
        first = check(post=False)  # the fold kept from the call before
        # Each written into the bound executor's own array alone: a statistic or beta
        # leaves the weight's version as it was, so only the fold's key sees it.
        for name, d, mine in (("bn2_moving_var", aux, ex.aux_dict), ("bn3_beta", arg, ex.arg_dict),
                              ("c1_weight", arg, ex.arg_dict)):
            d[name].copyfrom(d[name].asnumpy() * 1.5 + 0.25)
            mine[name].copyfrom(d[name].asnumpy())
            self.assertFalse(np.array_equal(check(post=False), first), name)

    def test_float64_reference(self):
        """One channel checked against MXNet's inference formula in float64."""
        data = sym.Variable("data")
        net = sym.BatchNorm(sym.Convolution(data, name="c", kernel=(1, 1), num_filter=2), name="bn", fix_gamma=False,
                            eps=0.01)
        w = np.array([[[[2.0]], [[-1.0]]], [[[0.5]], [[3.0]]]], np.float32)
        p = {"c_weight": w, "c_bias": np.array([0.25, -1.0], np.float32), "bn_gamma": np.array([1.5, 0.5], np.float32),
             "bn_beta": np.array([0.1, 0.2], np.float32)}
        a = {"bn_moving_mean": np.array([0.3, -0.4], np.float32), "bn_moving_var": np.array([2.0, 0.5], np.float32)}
        folded, arg2, _, n = net.fold_batchnorm({k: loom.array(v) for k, v in p.items()},
                                                {k: loom.array(v) for k, v in a.items()})
        self.assertEqual(n, 1)
        s = p["bn_gamma"].astype(np.float64) / np.sqrt(a["bn_moving_var"].astype(np.float64) + 0.01)
        np.testing.assert_allclose(arg2["c_weight"].asnumpy(), (w * s[:, None, None, None]).astype(np.float32), rtol=1e-7)
        np.testing.assert_allclose(arg2["c_bias"].asnumpy(),
                                   ((p["c_bias"].astype(np.float64) - a["bn_moving_mean"]) * s + p["bn_beta"])
                                   .astype(np.float32), rtol=1e-7)

    def test_missing_parameter_is_named(self):
        data = sym.Variable("data")
        net = sym.BatchNorm(sym.FullyConnected(data, name="fc", num_hidden=2), name="bn")
        w = loom.array(np.ones((2, 3), np.float32))
        folded, arg, aux, n = net.fold_batchnorm({"fc_weight": w})  # no bias or BatchNorm values: nothing folds
        self.assertEqual(n, 0)
        self.assertIn("BatchNorm", _ops(folded))
        v = {k: loom.array(np.ones(2, np.float32)) for k in ("fc_bias", "bn_gamma", "bn_beta", "bn_moving_mean",
                                                               "bn_moving_var")}
        with self.assertRaises(loom.LoomError) as cm:
            net.fold_batchnorm({"fc_weight": loom.array(np.ones((2, 3), np.float64)), **v})
        self.assertIn("fc_weight", str(cm.exception))
        self.assertIn("float64", str(cm.exception))


if __name__ == "__main__":
    unittest.main()
