"""The Python binding against NumPy references and the engine's contracts."""
import json
import os
import subprocess
import sys
import tempfile
import unittest
import warnings

import numpy as np

import loom
from loom import nd, sym


class ArrayTests(unittest.TestCase):
    def test_numpy_round_trip_and_arithmetic(self):
        x = np.random.default_rng(1).standard_normal((3, 4))
        a = loom.from_numpy(x)
        self.assertEqual(a.shape, (3, 4))
        self.assertEqual(a.dtype, "float64")
        np.testing.assert_array_equal(np.asarray(a), x)
        np.testing.assert_array_equal((a * 2.0 - 1.0).asnumpy(), x * 2.0 - 1.0)
        np.testing.assert_array_equal((a + a).asnumpy(), x + x)
        np.testing.assert_allclose(nd.dot(a, nd.transpose(a)).asnumpy(), x @ x.T, rtol=1e-12)
        np.testing.assert_allclose(nd.sum(a, axis=(1,)).asnumpy(), x.sum(axis=1), rtol=1e-12)
        i = loom.from_numpy(np.array([1, 2, 3], dtype=np.int32))
        self.assertEqual(i.dtype, "int32")
        np.testing.assert_array_equal(i.reshape(3, 1).asnumpy(), [[1], [2], [3]])

    def test_generated_functions_carry_signatures_and_docs(self):
        import inspect
        sig = inspect.signature(nd.Convolution)
        self.assertIn("kernel", sig.parameters)
        self.assertIs(sig.parameters["kernel"].default, inspect.Parameter.empty)
        self.assertIn("Convolution over NCDHW (3-D), NCHW (2-D)", nd.Convolution.__doc__)
        self.assertIn("num_filter : int (required)", nd.Convolution.__doc__)
        names = {op["name"] for op in loom.describe_ops()}
        self.assertTrue(names <= set(dir(nd)))

    def test_errors_name_the_op_and_shapes(self):
        a = loom.from_numpy(np.zeros((2, 3), np.float32))
        b = loom.from_numpy(np.zeros((4,), np.float32))
        with self.assertRaises(loom.LoomError) as e:
            nd.add(a, b)
        self.assertIn("add: cannot broadcast lhs of shape (2,3) with rhs of shape (4,)", str(e.exception))
        with self.assertRaises(loom.LoomError) as e:
            nd.FullyConnected(a, a, num_hidden=2, bogus=1)
        self.assertIn("bogus", str(e.exception))
        with self.assertRaises(loom.LoomError) as e:
            loom.load("/no/such/file.params")
        self.assertIn("/no/such/file.params", str(e.exception))

    def test_repeated_calls_reuse_their_parameters_by_value_and_type(self):
        # A call's formatted parameters are kept for its next call with equal values of the
        # same types: 1, 1.0 and True are equal in Python but format apart, and a list
        # changed in place between calls is formatted again.
        a = loom.from_numpy(np.arange(6, dtype=np.float32).reshape(2, 3))
        for _ in range(2):
            self.assertEqual(nd.sum(a, axis=1, keepdims=True).shape, (2, 1))
            self.assertEqual(nd.sum(a, axis=1, keepdims=False).shape, (2,))
            with self.assertRaises(loom.LoomError) as e:
                loom._invoke("sum", [a], {"axis": 1.5})
            self.assertIn("'1.5'", str(e.exception))
            self.assertEqual(loom._invoke("sum", [a], {"axis": 1}).shape, (2,))
        shape = [3, 2]
        self.assertEqual(loom._invoke("reshape", [a], {"shape": shape}).shape, (3, 2))
        shape[:] = [6, 1]
        self.assertEqual(loom._invoke("reshape", [a], {"shape": shape}).shape, (6, 1))
        self.assertEqual(loom._invoke("reshape", [a], {"shape": (1, 6)}).shape, (1, 6))

    def test_autograd(self):
        x = loom.from_numpy(np.array([1.0, -2.0, 3.0])).attach_grad()
        loom._LIB.loom_autograd_set_recording(None, 1)
        y = nd.sum(x * x * 3.0)
        loom._LIB.loom_autograd_set_recording(None, 0)
        y.backward()
        np.testing.assert_array_equal(x.grad.asnumpy(), [6.0, -12.0, 18.0])

    def test_params_files_round_trip(self):
        with tempfile.TemporaryDirectory() as d:
            p = os.path.join(d, "a.params")
            loom.save(p, {"arg:w": loom.from_numpy(np.arange(4.0))})
            back = loom.load(p)
            np.testing.assert_array_equal(back["arg:w"].asnumpy(), np.arange(4.0))


class IntegerOverflowTests(unittest.TestCase):
    """Integer arithmetic wraps around as NumPy's does (no undefined behaviour)."""

    def test_results_wrap_like_numpy(self):
        rng = np.random.default_rng(3)
        a = rng.integers(-2**31, 2**31 - 1, (3, 4), dtype=np.int32)
        b = rng.integers(-2**31, 2**31 - 1, (4, 2), dtype=np.int32)
        la, lb = loom.from_numpy(a), loom.from_numpy(b)
        with np.errstate(over="ignore"):
            np.testing.assert_array_equal(nd.dot(la, lb).asnumpy(), np.dot(a, b))
            np.testing.assert_array_equal(nd.multiply(la, la).asnumpy(), a * a)
            np.testing.assert_array_equal(nd.add(la, la).asnumpy(), a + a)
            np.testing.assert_array_equal(nd.subtract(la, nd.negative(la)).asnumpy(), a - (-a))
            np.testing.assert_array_equal(nd.prod(la, axis=(1,)).asnumpy(), np.prod(a, axis=1, dtype=np.int32))
            np.testing.assert_array_equal(nd.sum(la, axis=(0,)).asnumpy(), np.sum(a, axis=0, dtype=np.int32))
            np.testing.assert_array_equal(nd.ElementWiseSum(la, la, la).asnumpy(), a + a + a)
            u = np.array([3, 2, 255, 7], np.uint8)
            e = np.array([200, 9, 3, 0], np.uint8)
            np.testing.assert_array_equal(nd.power(loom.from_numpy(u), loom.from_numpy(e)).asnumpy(), u ** e)
            self.assertEqual(int(nd.power(loom.from_numpy(u[:1]), loom.from_numpy(e[:1])).asnumpy()[0]), 161)
            big = np.array([2**62, 3], np.int64)
            np.testing.assert_array_equal(nd.multiply(loom.from_numpy(big), loom.from_numpy(big)).asnumpy(), big * big)
        with self.assertRaises(loom.LoomError) as ctx:
            nd.power(loom.from_numpy(np.array([2], np.int32)), loom.from_numpy(np.array([-1], np.int32))).asnumpy()
        self.assertIn("negative integer powers", str(ctx.exception))

    def test_casts_give_numpys_results_where_cpp_leaves_them_undefined(self):
        # Found by tests/fuzz (fuzz_op, a long run): float -> int32 of 4.5e16 was undefined behaviour.
        edge = [np.nan, np.inf, -np.inf, 4.5e16, -4.5e16, 2147483647.9, -2147483648.5, 2147483648.0,
                3.7, -3.7, 300.0, -1.5, 255.9, 256.0, 1e19, -1e19, 9.3e18, -9.2233720368547758e18, 0.0, -0.0]
        rng = np.random.default_rng(5)
        values = np.concatenate([edge, rng.normal(0, 1e3, 50), rng.normal(0, 1e12, 50)])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # NumPy warns about the invalid casts it performs
            for src in (np.float64, np.float32):
                x = values.astype(src)
                for dst in (np.int32, np.int64, np.uint8):
                    got = nd.cast(loom.from_numpy(x), dtype=np.dtype(dst).name).asnumpy()
                    np.testing.assert_array_equal(got, x.astype(dst), err_msg="%s -> %s" % (src.__name__, dst.__name__))
            ints = np.array([2**40 + 7, -2**40 - 9, 300, -1, 2**31, -2**31 - 1], np.int64)
            for dst in (np.int32, np.uint8):
                np.testing.assert_array_equal(nd.cast(loom.from_numpy(ints), dtype=np.dtype(dst).name).asnumpy(),
                                              ints.astype(dst))

    def test_unary_ops_wrap_and_scalars_out_of_range_are_errors(self):
        # Found by tests/fuzz: -INT64_MIN, |INT64_MIN| and squares past the range wrap as NumPy's.
        m = np.array([np.iinfo(np.int64).min, 3037000500, -7], np.int64)
        with np.errstate(over="ignore"):
            np.testing.assert_array_equal(nd.negative(loom.from_numpy(m)).asnumpy(), -m)
            np.testing.assert_array_equal(nd.abs(loom.from_numpy(m)).asnumpy(), np.abs(m))
            np.testing.assert_array_equal(nd.square(loom.from_numpy(m)).asnumpy(), m * m)
        # A scalar the array's dtype cannot hold is an error, not undefined behaviour.
        u = loom.from_numpy(np.array([1, 2], np.uint8))
        for scalar in (-1, 256, 1e300, float("nan")):
            with self.assertRaises(loom.LoomError) as ctx:
                loom._invoke("_plus_scalar", [u], {"scalar": scalar}).asnumpy()
            self.assertIn("outside the range of the array's dtype uint8", str(ctx.exception))
        np.testing.assert_array_equal(loom._invoke("_plus_scalar", [u], {"scalar": 2.7}).asnumpy(), [3, 4])


class KVStoreTests(unittest.TestCase):
    def test_push_sums_per_key_and_pull_broadcasts(self):
        kv = loom.kv.create("local")
        self.assertEqual((kv.type, kv.rank, kv.num_workers), ("local", 0, 1))
        kv.init(3, loom.zeros((2, 2)))
        kv.push(3, [loom.from_numpy(np.ones((2, 2), np.float32)), loom.from_numpy(np.full((2, 2), 2, np.float32))])
        a, b = loom.zeros((2, 2)), loom.zeros((2, 2))
        kv.pull(3, [a, b])
        np.testing.assert_array_equal(a.asnumpy(), np.full((2, 2), 3))
        np.testing.assert_array_equal(b.asnumpy(), np.full((2, 2), 3))
        kv.set_updater("sgd_update", lr=0.5)
        kv.pushpull(3, loom.from_numpy(np.ones((2, 2), np.float32)), a)
        np.testing.assert_allclose(a.asnumpy(), np.full((2, 2), 2.5))
        with self.assertRaises(loom.LoomError) as e:
            kv.push("missing", a)
        self.assertIn("key 'missing' was never initialised", str(e.exception))
        with self.assertRaises(loom.LoomError) as e:
            kv.pull(3, loom.zeros((4,)))
        self.assertIn("(2,2) float32, but the output is (4,) float32", str(e.exception))
        with self.assertRaises(loom.LoomError) as e:
            loom.kv.create("dist_sync")
        self.assertIn("MPI plugin", str(e.exception))


class SymbolTests(unittest.TestCase):
    def mlp(self, normalization="batch"):
        data = sym.Variable("data")
        h = sym.Activation(sym.FullyConnected(data, name="fc1", num_hidden=16), name="relu1", act_type="relu")
        return sym.SoftmaxOutput(sym.FullyConnected(h, name="fc2", num_hidden=3), name="softmax",
                                 normalization=normalization)

    def test_drawing_and_summary_are_the_native_ones(self):
        net = self.mlp()
        dot = net.to_dot(title="mlp", data=(5, 4))
        self.assertIn('digraph "mlp" {', dot)
        self.assertIn('"fc1" [label="FullyConnected\\n16" fillcolor="#fb8072"]', dot)
        self.assertIn('"relu1" -> "fc1" [arrowtail=open dir=back label="16"]', dot)
        self.assertNotIn("fc1_weight", dot)
        self.assertIn("fc1_weight", net.to_dot(hide_weights=False))
        table = net.summary(data=(5, 4))
        # fc1: 16 * 4 + 16; fc2: 3 * 16 + 3
        self.assertIn("Total params: %d\n" % (16 * 4 + 16 + 3 * 16 + 3), table)
        self.assertTrue(table.startswith("_" * 120 + "\n"))
        with self.assertRaises(loom.LoomError):
            net.summary(line_length=5, data=(5, 4))
        with tempfile.TemporaryDirectory() as d:
            net.plot(os.path.join(d, "mlp.svg"), data=(5, 4))
            svg = open(os.path.join(d, "mlp.svg")).read()
            self.assertIn(">FullyConnected</text>", svg)
            self.assertEqual(os.listdir(d), ["mlp.svg"])
            with self.assertRaises(loom.LoomError):
                net.plot(os.path.join(d, "mlp.gif"))

    def test_json_inference_and_executor_gradients_match_autograd(self):
        net = self.mlp()
        self.assertEqual(net.list_arguments(), ["data", "fc1_weight", "fc1_bias", "fc2_weight", "fc2_bias", "softmax_label"])
        self.assertEqual(loom.Symbol.fromjson(net.tojson()).tojson(), net.tojson())
        args, outs, _ = net.infer_shape(data=(5, 4))
        self.assertEqual(args[1], (16, 4))
        self.assertEqual(outs[0], (5, 3))
        ex = net.simple_bind(data=(5, 4), softmax_label=(5,), dtype="float64",
                             grad_req={"data": "null", "softmax_label": "null"})
        rng = np.random.default_rng(3)
        vals = {n: rng.standard_normal(a.shape) for n, a in ex.arg_dict.items()}
        vals["softmax_label"] = np.array([0, 1, 2, 1, 0], dtype=np.float64)
        for n, v in vals.items():
            ex.arg_dict[n].copyfrom(v)
        ex.forward(is_train=True)
        ex.backward()
        # The same network imperatively, with autograd.
        w = {n: loom.from_numpy(vals[n]).attach_grad() for n in ["fc1_weight", "fc1_bias", "fc2_weight", "fc2_bias"]}
        loom._LIB.loom_autograd_set_recording(None, 1)
        h = nd.Activation(nd.FullyConnected(loom.from_numpy(vals["data"]), w["fc1_weight"], w["fc1_bias"], num_hidden=16),
                          act_type="relu")
        out = nd.SoftmaxOutput(nd.FullyConnected(h, w["fc2_weight"], w["fc2_bias"], num_hidden=3),
                               loom.from_numpy(vals["softmax_label"]), normalization="batch")
        loom._LIB.loom_autograd_set_recording(None, 0)
        out.backward()
        for n in w:
            np.testing.assert_allclose(ex.grad_dict[n].asnumpy(), w[n].grad.asnumpy(), rtol=1e-12, atol=1e-15)

    def test_sums_pass_their_gradient_on_without_copies(self):
        """An add of same-shape values and ElementWiseSum hand their output's gradient to their
        inputs as it is (no copy, no step): gradients of a graph of such sums, with a repeated
        input, an argument and an output among the summed values and a broadcasting add that
        must reduce, match PyTorch's in float64, written and added to (grad_req add)."""
        import ctypes
        import torch
        from loom import _abi
        x, w1, w2, c = sym.Variable("x"), sym.Variable("w1"), sym.Variable("w2"), sym.Variable("c")
        a = sym.FullyConnected(x, w1, num_hidden=5, no_bias=True, name="fa")
        b = sym.FullyConnected(x, w2, num_hidden=5, no_bias=True, name="fb")
        s = a + b
        t = sym.ElementWiseSum(s, a, s)
        out = (sym.Activation(t, act_type="tanh") + x) + c  # the last one broadcasts c
        net = sym.Group(out, s)
        rng = np.random.default_rng(7)
        vals = {"x": rng.standard_normal((4, 5)), "w1": rng.standard_normal((5, 5)),
                "w2": rng.standard_normal((5, 5)), "c": rng.standard_normal((1, 5))}
        heads = [rng.standard_normal((4, 5)), rng.standard_normal((4, 5))]
        tv = {n: torch.tensor(v, requires_grad=True) for n, v in vals.items()}
        ta = tv["x"] @ tv["w1"].T
        ts = ta + tv["x"] @ tv["w2"].T
        tout = torch.tanh(ts + ta + ts) + tv["x"] + tv["c"]
        torch.autograd.backward([tout, ts], [torch.tensor(h) for h in heads])
        for req in ("write", "add"):
            ex = net.simple_bind(dtype="float64", grad_req=req, x=(4, 5), w1=(5, 5), w2=(5, 5), c=(1, 5))
            for n, v in vals.items():
                ex.arg_dict[n].copyfrom(v)
                ex.grad_dict[n].copyfrom(np.full(v.shape, 0.5))
            ex.forward(is_train=True)
            ex.backward([loom.from_numpy(h) for h in heads])
            for n in vals:
                want = tv[n].grad.numpy() + (0.5 if req == "add" else 0.0)
                np.testing.assert_allclose(ex.grad_dict[n].asnumpy(), want, rtol=1e-12, atol=1e-12, err_msg=n + " " + req)
            # forward: the 2 products, 3 adds, the sum of three and tanh; backward: the products,
            # tanh and the broadcasting add (none for the other three sums); and the sums of
            # gradients: of s (its head's and t's twice), of a, of x into its array, and with
            # grad_req add of w1, w2 and c into theirs
            plan = _abi.loom_memory_plan()
            loom._check(loom._LIB.loom_executor_memory(ctypes.byref(plan), ex._h))
            self.assertEqual(plan.num_steps, 7 + 4 + (3 if req == "write" else 6), req)

    def test_a_gradient_is_written_over_one_only_its_last_reader_reads(self):
        """relu's backward writes its input's gradient over its output's gradient where no later
        step reads that: here both relus read the add's output gradient itself (the add passes
        it on as it is), so the first to run keeps it and the second writes over it; the
        gradients match PyTorch's."""
        import ctypes
        import torch
        from loom import _abi
        x, w1, w2 = sym.Variable("x"), sym.Variable("w1"), sym.Variable("w2")
        u = sym.FullyConnected(x, w1, num_hidden=6, no_bias=True, name="fu")
        v = sym.FullyConnected(x, w2, num_hidden=6, no_bias=True, name="fv")
        net = sym.Activation(sym.Activation(u, act_type="relu") + sym.Activation(v, act_type="relu"), act_type="tanh")
        rng = np.random.default_rng(8)
        vals = {"x": rng.standard_normal((5, 4)), "w1": rng.standard_normal((6, 4)), "w2": rng.standard_normal((6, 4))}
        head = rng.standard_normal((5, 6))
        tv = {n: torch.tensor(a, requires_grad=True) for n, a in vals.items()}
        torch.tanh(torch.relu(tv["x"] @ tv["w1"].T) + torch.relu(tv["x"] @ tv["w2"].T)).backward(torch.tensor(head))
        ex = net.simple_bind(dtype="float64", x=(5, 4), w1=(6, 4), w2=(6, 4))
        for n, a in vals.items():
            ex.arg_dict[n].copyfrom(a)
        ex.forward(is_train=True)
        ex.backward(loom.from_numpy(head))
        for n in vals:
            np.testing.assert_allclose(ex.grad_dict[n].asnumpy(), tv[n].grad.numpy(), rtol=1e-12, atol=1e-12, err_msg=n)
        plan = _abi.loom_memory_plan()
        loom._check(loom._LIB.loom_executor_memory(ctypes.byref(plan), ex._h))
        # the relus over the products' outputs, the add over a relu's, and the second relu's gradient
        # forward: each relu over its product's output, tanh over the sum; backward: the
        # second relu's gradient over the sum's (without it, 3)
        self.assertEqual(plan.num_inplace, 4)

    def test_module_fits_separable_blobs(self):
        loom.seed(5)
        rng = np.random.default_rng(5)
        labels = rng.integers(0, 3, 300)
        x = np.eye(4)[labels] * 3 + rng.normal(0, 0.5, (300, 4))
        X, Y = loom.from_numpy(x.astype(np.float32)), loom.from_numpy(labels.astype(np.float32))
        # MXNet's defaults: SoftmaxOutput sums over the batch, Module rescales by 1/batch_size.
        m = loom.Module(self.mlp("null"))
        m.fit(X, Y, batch_size=20, epochs=4, lr=0.2, log=None)
        self.assertGreater(m.score(X, Y, batch_size=20), 0.95)

    def test_module_params_of_another_network_are_refused_by_name(self):
        import tempfile, os
        rng = np.random.default_rng(2)
        labels = rng.integers(0, 3, 60)
        X = loom.from_numpy((np.eye(4)[labels] * 3).astype(np.float32))
        Y = loom.from_numpy(labels.astype(np.float32))
        a = loom.Module(self.mlp("null"))
        a.fit(X, Y, batch_size=20, epochs=1, log=None)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "a.params")
            a.save_params(path)
            b = loom.Module(self.mlp("null"))
            b.bind((20, 4), (20,))
            b.load_params(path)  # the same network: loads, and scores as a does
            self.assertEqual(b.score(X, Y, batch_size=20), a.score(X, Y, batch_size=20))
            data = sym.Variable("data")
            wide = sym.SoftmaxOutput(sym.FullyConnected(sym.Activation(sym.FullyConnected(
                data, name="fc1", num_hidden=24), act_type="relu"), name="fc2", num_hidden=3), name="softmax")
            c = loom.Module(wide)
            c.bind((20, 4), (20,))
            with self.assertRaises(loom.LoomError) as e:
                c.load_params(path)
            msg = str(e.exception)
            self.assertIn("'fc1_", msg)
            self.assertIn("(24, 4)", msg)
            self.assertIn("(16, 4)", msg)
            with self.assertRaises(loom.LoomError):
                loom.Module(self.mlp("null")).load_params(path)  # not bound

    def test_volumes_infer_bind_and_run(self):
        # MXNet's 3-D layers (NCDHW) in a graph: weights inferred, bound, run forward and backward.
        data = sym.Variable("data")
        net = sym.Convolution(data, name="c1", kernel=(3, 3, 3), num_filter=4, pad=(1, 1, 1))
        net = sym.Pooling(net, name="p1", kernel=(2, 2, 2), stride=(2, 2, 2), pool_type="max")
        net = sym.Deconvolution(net, name="d1", kernel=(2, 2, 2), stride=(2, 2, 2), num_filter=2)
        args, outs, _ = net.infer_shape(data=(1, 2, 6, 8, 4))
        self.assertEqual(dict(zip(net.list_arguments(), args))["c1_weight"], (4, 2, 3, 3, 3))
        self.assertEqual(dict(zip(net.list_arguments(), args))["d1_weight"], (4, 2, 2, 2, 2))
        self.assertEqual(outs[0], (1, 2, 6, 8, 4))
        ex = net.simple_bind(data=(1, 2, 6, 8, 4))
        ex.forward(is_train=True)
        ex.backward(loom.from_numpy(np.ones((1, 2, 6, 8, 4), np.float32)))
        self.assertEqual(ex.grad_dict["c1_weight"].shape, (4, 2, 3, 3, 3))

    def test_bad_graphs_are_reported(self):
        with self.assertRaises(loom.LoomError) as e:
            loom.Symbol.fromjson('{"nodes": [{"op": "NoSuchOp", "name": "x", "inputs": []}], "arg_nodes": [], "heads": [[0, 0, 0]]}')
        self.assertIn("NoSuchOp", str(e.exception))
        with self.assertRaises(loom.LoomError) as e:
            self.mlp().simple_bind(data=(5, 4), softmax_label=(7,))
        self.assertIn("SoftmaxOutput: label has shape (7,), expected (5,)", str(e.exception))


class LoadingTests(unittest.TestCase):
    def test_a_library_of_another_abi_version_is_refused(self):
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "fake.c")
            with open(src, "w") as f:
                f.write("int loom_abi_version(void) { return 99; }\n")
            lib = os.path.join(d, "libloom.so")
            subprocess.run(["cc", "-shared", "-fPIC", "-o", lib, src], check=True)
            env = dict(os.environ, LOOM_LIBRARY_PATH=lib)
            r = subprocess.run([sys.executable, "-c", "import loom"], env=env, capture_output=True, text=True)
            self.assertNotEqual(r.returncode, 0)
            self.assertIn("has ABI version 99 but these bindings were generated for ABI version 1", r.stderr)
            self.assertIn(lib, r.stderr)

    def test_exiting_with_work_in_flight_waits_for_it(self):
        # The process ends while products are still running on the engine's workers:
        # the library waits for them at exit, before OpenBLAS shuts its threads down
        # (without that wait the exit hung in OpenBLAS's thread join, or crashed).
        script = ("import sys, numpy as np, loom\n"
                  "from loom import nd\n"
                  "x = loom.from_numpy(np.random.rand(512, 1024).astype(np.float32))\n"
                  "w = loom.from_numpy(np.random.rand(1024, 1024).astype(np.float32))\n"
                  "b = loom.from_numpy(np.random.rand(1024).astype(np.float32))\n"
                  "ys = [nd.FullyConnected(x, w, b, num_hidden=1024) for _ in range(6)]\n"
                  "sys.exit(3)\n")
        env = dict(os.environ, LOOM_CPU_KERNELS="reference")
        for _ in range(4):
            r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                               text=True, timeout=120)
            self.assertEqual(r.returncode, 3, r.stderr)


# The simulated GPU backend plugin the native suite builds (tests/native/backend/simdev.cc).
SIMDEV = os.path.join(os.path.dirname(os.path.dirname(os.path.realpath(loom.library_path))),
                      "tests", "native", "libloom_simdev.so")

DEVICE_SCRIPT = r"""
import numpy as np, loom
from loom import nd
assert loom.num_gpus() == 2, loom.num_gpus()
print(loom.backend_describe())
a = np.random.RandomState(0).uniform(-2, 2, (8, 16)).astype(np.float32)
b = np.random.RandomState(1).uniform(-2, 2, (8, 16)).astype(np.float32)
x, w = loom.array(a).copyto(loom.gpu(0)), loom.array(b).copyto(loom.gpu(1)).copyto(loom.gpu(0))
x.attach_grad(); w.attach_grad()
with loom.record():
    y = nd.relu(x * w) * x
y.backward()
ref = np.maximum(a * b, 0) * a
assert np.array_equal(y.asnumpy(), ref), "forward"
gx = np.where(a * b > 0, b, 0).astype(np.float32) * a + np.maximum(a * b, 0)
assert np.allclose(x.grad.asnumpy(), gx, rtol=1e-6, atol=1e-6), "gradient"
try:
    nd.exp(x)
except loom.LoomError as e:
    print("refused:", e)
"""


class KernelSetTests(unittest.TestCase):
    """LOOM_CPU_KERNELS picks the CPU kernel set once per process; both sets give the
    same convolution within float32 rounding, and a bad value is refused by name."""

    SCRIPT = """
import json, numpy as np, loom
from loom import nd
rng = np.random.default_rng(5)
x = loom.from_numpy(rng.uniform(-1, 1, (4, 16, 9, 9)).astype(np.float32))
w = loom.from_numpy(rng.uniform(-1, 1, (32, 16, 3, 3)).astype(np.float32))
try:
    y = loom._invoke("Convolution", [x, w], {"kernel": (3, 3), "num_filter": 32, "pad": (1, 1), "no_bias": True})
    print(json.dumps({"describe": loom.backend_describe(1), "y": y.asnumpy().ravel().tolist()}))
except loom.LoomError as e:
    print(json.dumps({"error": str(e)}))
"""

    def run_with(self, kernels):
        env = dict(os.environ, LOOM_CPU_KERNELS=kernels)
        r = subprocess.run([sys.executable, "-c", self.SCRIPT], env=env, capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout.strip().splitlines()[-1])

    def test_sets_agree_and_are_named(self):
        ref = self.run_with("reference")
        self.assertIn("kernels: reference", ref["describe"])
        default = self.run_with("")
        if "onednn" in default["describe"]:
            self.assertIn("Convolution", default["describe"])
        np.testing.assert_allclose(default["y"], ref["y"], rtol=1e-5, atol=1e-5)

    def test_unknown_kernel_set_is_refused(self):
        r = self.run_with("fastest")
        self.assertIn("LOOM_CPU_KERNELS=fastest is not a kernel set", r["error"])

    def test_sgemm_choice_is_named_and_a_bad_one_refused(self):
        # LOOM_SGEMM: whose sgemm the oneDNN set's products run on; a product of
        # extents 512 or more, a float64 reference, and the choice named in the description.
        script = (
            "import json, numpy as np, loom\n"
            "rng = np.random.default_rng(2)\n"
            "a, b = rng.uniform(-1, 1, (512, 600)), rng.uniform(-1, 1, (600, 520))\n"
            "try:\n"
            "    c = loom._invoke('dot', [loom.from_numpy(a.astype(np.float32)), loom.from_numpy(b.astype(np.float32))], {})\n"
            "    err = float(np.abs(c.asnumpy() - a.astype(np.float32).astype(np.float64) @ b.astype(np.float32).astype(np.float64)).max())\n"
            "    print(json.dumps({'describe': loom.backend_describe(1), 'err': err}))\n"
            "except loom.LoomError as e:\n"
            "    print(json.dumps({'error': str(e)}))\n")
        for value in ("onednn", "openblas", ""):
            env = dict(os.environ, LOOM_SGEMM=value)
            env.pop("LOOM_CPU_KERNELS", None)
            r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            out = json.loads(r.stdout.strip().splitlines()[-1])
            with self.subTest(LOOM_SGEMM=value):
                self.assertLess(out["err"], 1e-3)
                if "onednn" in out["describe"] and value == "openblas":
                    self.assertIn("OpenBLAS for matrix products (LOOM_SGEMM)", out["describe"])
                if "onednn" in out["describe"] and value == "onednn":
                    self.assertIn("float32 matrix products and 4-D", out["describe"])
        env = dict(os.environ, LOOM_SGEMM="mkl")
        env.pop("LOOM_CPU_KERNELS", None)
        r = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
        out = json.loads(r.stdout.strip().splitlines()[-1])
        if "error" in out or "onednn" in loom.backend_describe(1):
            self.assertIn("LOOM_SGEMM=mkl is not an sgemm", out.get("error", ""))


class ConvolutionWeightGradientTests(unittest.TestCase):
    """A convolution's weight gradient is summed from per-item pieces in item order; the
    pieces are held a round of kernel threads at a time (threads + 1 of them), not one per
    item, and the bits do not depend on the thread count."""

    SCRIPT = """
import ctypes, hashlib, json, numpy as np, loom
from loom import sym, _abi
rng = np.random.default_rng(3)
x, w = rng.uniform(-1, 1, (16, 128, 5, 5)), rng.uniform(-0.1, 0.1, (128, 128, 3, 3))
head = rng.uniform(-1, 1, (16, 128, 5, 5))
net = sym.Convolution(sym.Variable("x"), sym.Variable("w"), kernel=(3, 3), num_filter=128, pad=(1, 1), no_bias=True)
ex = net.simple_bind(x=x.shape, w=w.shape)
ex.arg_dict["x"].copyfrom(x.astype(np.float32))
ex.arg_dict["w"].copyfrom(w.astype(np.float32))
ex.forward(is_train=True)
ex.backward(loom.from_numpy(head.astype(np.float32)))
plan = _abi.loom_memory_plan()
loom._check(loom._LIB.loom_executor_memory(ctypes.byref(plan), ex._h))
dw, dx = ex.grad_dict["w"].asnumpy(), ex.grad_dict["x"].asnumpy()
print(json.dumps({"describe": loom.backend_describe(1), "planned": plan.planned_bytes,
                  "dw": dw.astype(np.float64).ravel().tolist(),
                  "digest": hashlib.sha256(dw.tobytes() + dx.tobytes()).hexdigest()}))
"""

    def test_pieces_are_held_one_round_at_a_time_with_the_same_bits(self):
        import torch
        rng = np.random.default_rng(3)
        x, w = rng.uniform(-1, 1, (16, 128, 5, 5)), rng.uniform(-0.1, 0.1, (128, 128, 3, 3))
        head = rng.uniform(-1, 1, (16, 128, 5, 5))
        tx, tw = torch.tensor(x.astype(np.float32).astype(np.float64)), torch.tensor(
            w.astype(np.float32).astype(np.float64), requires_grad=True)
        torch.nn.functional.conv2d(tx, tw, padding=1).backward(torch.tensor(head.astype(np.float32).astype(np.float64)))
        wbytes = w.size * 4
        runs = {}
        for threads in (1, 2, 3):
            env = dict(os.environ, LOOM_KERNEL_THREADS=str(threads))
            r = subprocess.run([sys.executable, "-c", self.SCRIPT], env=env, capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            runs[threads] = json.loads(r.stdout.strip().splitlines()[-1])
            np.testing.assert_allclose(np.array(runs[threads]["dw"]).reshape(w.shape), tw.grad.numpy(),
                                       rtol=1e-4, atol=1e-4, err_msg="threads %d" % threads)
            if "onednn" in runs[threads]["describe"]:
                # 16 images are 8 items: one piece per item would be 8 weights' bytes alone
                self.assertLess(runs[threads]["planned"], (threads + 3) * wbytes, "threads %d" % threads)
        self.assertEqual(len({r["digest"] for r in runs.values()}), 1)


class DeviceTests(unittest.TestCase):
    def test_without_a_backend_gpu_contexts_are_refused_with_the_reason(self):
        if os.environ.get("LOOM_CUDA_LIBRARY"):
            self.skipTest("a GPU backend is configured")
        self.assertEqual(loom.num_gpus(), 0)
        self.assertIn("libloom_cuda.so", loom.backend_describe())
        with self.assertRaises(loom.LoomError) as e:
            loom.zeros((2,), ctx=loom.gpu(0))
        self.assertEqual(e.exception.status, -7)
        self.assertIn("no GPU backend is available", str(e.exception))

    def test_arrays_and_gradients_on_a_simulated_device(self):
        if not os.path.exists(SIMDEV):
            self.skipTest("the simulated device plugin is built with the native tests")
        env = dict(os.environ, LOOM_CUDA_LIBRARY=SIMDEV, LOOM_SIMDEV_DELAY_US="10")
        r = subprocess.run([sys.executable, "-c", DEVICE_SCRIPT], env=env, capture_output=True, text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("'simdev' backend from", r.stdout)
        self.assertIn("refused: exp: no kernel for gpu(0)", r.stdout)

    def device_check(self, **env):
        """Runs tests/conformance/device_check.py on the simulated device; its per-case results."""
        if not os.path.exists(SIMDEV):
            self.skipTest("the simulated device plugin is built with the native tests")
        script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "conformance", "device_check.py")
        with tempfile.TemporaryDirectory() as d:
            out = os.path.join(d, "results.json")
            r = subprocess.run([sys.executable, script, "--only", "relu,copy,full,ones,sgd_update,ElementWiseSum,"
                                "exp,lr_schedule", "--json", out],
                               env=dict(os.environ, LOOM_CUDA_LIBRARY=SIMDEV, **env), capture_output=True, text=True)
            with open(out) as f:
                return r, {k: v["status"] for k, v in json.load(f).items()}

    def test_device_conformance_sorts_every_case(self):
        r, status = self.device_check()
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)  # the simulated device refuses float64
        for case in ("relu_float32", "copy_float32", "full", "ones", "sgd_update"):
            self.assertEqual(status[case], "match", case)
        self.assertEqual(status["relu_float64"], "error")
        self.assertEqual(status["ElementWiseSum"], "missing-grad")
        self.assertEqual(status["exp_float32"], "missing")
        self.assertEqual(status["lr_schedule"], "host")
        self.assertIn("no kernel on gpu(0) for: exp", r.stdout)

    def test_every_op_case_runs_through_the_device_path(self):
        # LOOM_SIMDEV_ALL_OPS=1: the simulated device runs every op (its own kernels where it
        # has them, libloom's CPU kernels on its memory otherwise), so every case, outputs and
        # gradients, goes through the device path and must match the CPU.
        if not os.path.exists(SIMDEV):
            self.skipTest("the simulated device plugin is built with the native tests")
        script = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                              "conformance", "device_check.py")
        r = subprocess.run([sys.executable, script, "--require-all"], capture_output=True, text=True,
                           env=dict(os.environ, LOOM_CUDA_LIBRARY=SIMDEV, LOOM_SIMDEV_ALL_OPS="1"))
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertRegex(r.stdout, r"gpu\(0\): 1 host, \d+ match\n")

    def test_device_conformance_catches_a_wrong_answer(self):
        r, status = self.device_check(LOOM_SIMDEV_PERTURB_OP="relu")
        self.assertEqual(status["relu_float32"], "mismatch")
        self.assertIn("relu_float32", r.stdout)
        self.assertEqual(status["copy_float32"], "match")


if __name__ == "__main__":
    unittest.main()
