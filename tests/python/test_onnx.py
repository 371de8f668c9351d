"""ONNX import and export (loom.onnx, native loom_onnx_*), checked against independent
engines and tools: models exported by PyTorch's torch.onnx (torchvision's ResNet-18/50
and a LeNet) must give PyTorch's outputs in Loom; every model Loom writes must pass
the Python onnx package's checker and come back to the same outputs; bad files and
unsupported graphs must fail naming the file and node, leaving saved files intact.
(ONNX Runtime runs Loom's exports in the C# suite: OnnxTests.cs.)"""
import os
import tempfile
import unittest

import numpy as np
import onnx
import torch
import torchvision
from onnx import helper, TensorProto

import loom
from loom import sym

TOL = 1e-5


def _read(path):
    with open(path, "rb") as f:
        return f.read()


def _write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def _forward(symbol, arg, aux, **inputs):
    shapes = {k: v.shape for k, v in inputs.items()}
    ex = symbol.simple_bind(loom.cpu(), grad_req="null", **shapes)
    ex.copy_params_from(arg, aux)
    return [o.asnumpy() for o in ex.forward(is_train=False, **inputs)]


class LeNet(torch.nn.Module):
    def __init__(self, softmax=True):
        super().__init__()
        self.softmax = softmax
        self.c1 = torch.nn.Conv2d(1, 6, 5, padding=2)
        self.c2 = torch.nn.Conv2d(6, 16, 5)
        self.f1 = torch.nn.Linear(16 * 5 * 5, 120)
        self.f2 = torch.nn.Linear(120, 84)
        self.f3 = torch.nn.Linear(84, 10)

    def forward(self, x):
        x = torch.max_pool2d(torch.relu(self.c1(x)), 2)
        x = torch.nn.functional.avg_pool2d(torch.tanh(self.c2(x)), 2)
        x = torch.flatten(x, 1)
        x = torch.relu(self.f2(torch.relu(self.f1(x))))
        x = self.f3(x)
        return torch.softmax(x, 1) if self.softmax else x


class ImportFromPyTorch(unittest.TestCase):
    """torch.onnx.export of PyTorch models, imported by Loom: outputs equal PyTorch's."""

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        torch.manual_seed(3)

    def tearDown(self):
        self.dir.cleanup()

    def _check(self, model, shape, name, **export_args):
        model.eval()
        x = torch.randn(*shape)
        path = os.path.join(self.dir.name, name + ".onnx")
        torch.onnx.export(model, x, path, opset_version=13, input_names=["data"], output_names=["out"],
                          **export_args)
        ops = {n.op_type for n in onnx.load(path).graph.node}
        symbol, arg, aux = loom.onnx.import_model(path)
        self.assertEqual(loom.onnx.input_shapes(path), {"data": tuple(shape)})
        with torch.no_grad():
            ref = model(x).numpy()
        out = _forward(symbol, arg, aux, data=x.numpy())[0]
        self.assertEqual(out.shape, ref.shape)
        # within 1e-5 of the output's scale (ResNet-50's logits reach ~|3|; float32 sums of
        # 2048 products in another order differ by ~1e-6 relative)
        err = float(np.abs(out - ref).max()) / max(1.0, float(np.abs(ref).max()))
        self.assertLess(err, TOL, "%s: max |loom - torch| / max(1, max |torch|) = %g" % (name, err))
        return ops, symbol, arg, aux

    def test_lenet(self):
        ops, symbol, arg, aux = self._check(LeNet(), (4, 1, 28, 28), "lenet")
        self.assertTrue({"Conv", "MaxPool", "AveragePool", "Gemm", "Softmax", "Flatten"} <= ops, ops)
        self.assertEqual(aux, {})
        self.assertEqual(len(arg), 10)

    def test_resnet18_with_batchnorm(self):
        model = torchvision.models.resnet18(num_classes=100)
        model.train()
        with torch.no_grad():  # running statistics that are not the initial 0 and 1
            for _ in range(2):
                model(torch.randn(8, 3, 64, 64) * 2 + 0.5)
        ops, symbol, arg, aux = self._check(model, (2, 3, 64, 64), "resnet18", do_constant_folding=False,
                                            training=torch.onnx.TrainingMode.PRESERVE)
        self.assertIn("BatchNormalization", ops)
        self.assertEqual(len(aux), 2 * 20)  # moving mean and variance of 20 BatchNorm layers
        self.assertTrue(all(k in symbol.list_auxiliary_states() for k in aux))

    def test_resnet50(self):
        model = torchvision.models.resnet50()
        ops, _, _, _ = self._check(model, (1, 3, 224, 224), "resnet50")
        self.assertTrue({"Conv", "Add", "GlobalAveragePool", "Gemm", "MaxPool"} <= ops, ops)

    def test_view_with_computed_batch_size(self):
        """x.view(x.size(0), -1) exports as Shape -> Gather -> Unsqueeze -> Concat -> Reshape."""
        class Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.conv = torch.nn.Conv2d(3, 4, 3)
                self.fc = torch.nn.Linear(4 * 6 * 6, 5)

            def forward(self, x):
                y = torch.relu(self.conv(x))
                return self.fc(y.view(y.size(0), -1))

        model = Net().eval()
        for dynamic in (False, True):
            with self.subTest(dynamic_batch=dynamic):
                path = os.path.join(self.dir.name, "view%d.onnx" % dynamic)
                torch.onnx.export(model, torch.randn(2, 3, 8, 8), path, opset_version=13, input_names=["data"],
                                  dynamic_axes={"data": {0: "batch"}} if dynamic else None)
                # with a fixed batch PyTorch folds the shape into a constant
                self.assertEqual("Shape" in {n.op_type for n in onnx.load(path).graph.node}, dynamic)
                symbol, arg, aux = loom.onnx.import_model(path)
                for batch in ((2, 5) if dynamic else (2,)):
                    x = torch.randn(batch, 3, 8, 8)
                    with torch.no_grad():
                        ref = model(x).numpy()
                    np.testing.assert_allclose(_forward(symbol, arg, aux, data=x.numpy())[0], ref, rtol=1e-5,
                                               atol=1e-6)

        class Other(torch.nn.Module):  # a reshape to another tensor's extent: refused, naming the node
            def forward(self, x, z):
                return x.reshape(z.size(1), -1)

        path = os.path.join(self.dir.name, "other.onnx")
        torch.onnx.export(Other(), (torch.randn(4, 6), torch.randn(2, 3)), path, opset_version=13,
                          input_names=["x", "z"], dynamic_axes={"z": {1: "n"}})
        with self.assertRaises(loom.LoomError) as cm:
            loom.onnx.import_model(path)
        self.assertIn("Reshape", str(cm.exception))
        self.assertIn("extent 1 of 'z'", str(cm.exception))

    def test_finetune_imported_lenet(self):
        """The imported LeNet trains in Loom: a head added, fit from the imported weights."""
        path = os.path.join(self.dir.name, "lenet_logits.onnx")
        model = LeNet(softmax=False).eval()
        torch.onnx.export(model, torch.randn(1, 1, 28, 28), path, opset_version=13, input_names=["data"],
                          dynamic_axes={"data": {0: "batch"}})
        self.assertEqual(loom.onnx.input_shapes(path), {"data": (-1, 1, 28, 28)})
        logits, arg, aux = loom.onnx.import_model(path)
        net = sym.SoftmaxOutput(logits, name="softmax")
        rng = np.random.default_rng(5)
        templates = rng.normal(size=(10, 1, 28, 28)).astype(np.float32)
        y = rng.integers(0, 10, size=600)
        x = (templates[y] + 0.5 * rng.normal(size=(600, 1, 28, 28))).astype(np.float32)
        mod = loom.Module(net)
        before = dict((k, v.asnumpy().copy()) for k, v in arg.items())
        acc = mod.fit(loom.array(x), loom.array(y.astype(np.float32)), batch_size=50, epochs=4, lr=0.1,
                      log=None, arg_params=arg, aux_params=aux)
        self.assertGreater(acc, 0.9)
        trained, _ = mod._params()
        # training started from the imported values and moved them
        moved = [k for k in before if not np.array_equal(before[k], trained[k].asnumpy())]
        self.assertEqual(sorted(moved), sorted(before))


def _random_params(symbol, seed=0, **shapes):
    ex = symbol.simple_bind(loom.cpu(), grad_req="null", **shapes)
    rng = np.random.default_rng(seed)
    arg, aux = {}, {}
    for name, a in ex.arg_dict.items():
        if name in shapes or name.endswith("label"):
            continue
        a.copyfrom((rng.normal(size=a.shape) * 0.3).astype(np.float32))
        arg[name] = a
    for name, a in ex.aux_dict.items():
        v = rng.uniform(0.5, 1.5, size=a.shape) if name.endswith("var") else rng.normal(size=a.shape) * 0.2
        a.copyfrom(v.astype(np.float32))
        aux[name] = a
    return arg, aux


def _nets():
    data = sym.Variable("data")
    yield "mlp", (3, 1, 6, 6), sym.SoftmaxOutput(sym.FullyConnected(sym.Dropout(sym.Activation(
        sym.FullyConnected(data, name="fc1", num_hidden=16), act_type="tanh", name="t1"), p=0.3, name="drop"),
        name="fc2", num_hidden=5), name="softmax")
    # AlexNet's pieces: LRN, ceil-mode pooling, grouped convolution, leaky activations
    c = sym.Convolution(data, name="c1", kernel=(3, 3), num_filter=8, stride=(2, 2), pad=(1, 1))
    c = sym.LRN(sym.Activation(c, act_type="relu", name="r1"), nsize=5, alpha=1e-3, beta=0.75, knorm=2.0, name="lrn")
    c = sym.Pooling(c, kernel=(3, 3), stride=(2, 2), pooling_convention="full", name="p1")
    c = sym.Convolution(c, name="c2", kernel=(3, 3), num_filter=8, num_group=2, pad=(1, 1), no_bias=True)
    c = sym.LeakyReLU(c, act_type="leaky", slope=0.1, name="lk")
    c = sym.LeakyReLU(c, act_type="elu", slope=0.7, name="elu")
    c = sym.Pooling(c, kernel=(2, 2), stride=(1, 1), pool_type="avg", pad=(1, 1), name="p2")
    yield "alexnet-parts", (2, 3, 17, 17), sym.SoftmaxOutput(sym.FullyConnected(c, name="fc", num_hidden=4),
                                                             name="softmax")
    # Inception-BN and ResNet pieces: BatchNorm (fix_gamma both ways), Concat, add, global pooling, prelu
    b1 = sym.BatchNorm(sym.Convolution(data, name="b1c", kernel=(1, 1), num_filter=4), name="b1bn", fix_gamma=True)
    b2 = sym.BatchNorm(sym.Convolution(data, name="b2c", kernel=(3, 3), num_filter=6, pad=(1, 1)), name="b2bn",
                       fix_gamma=False, eps=1e-3)
    b3 = sym.Pooling(data, kernel=(3, 3), stride=(1, 1), pad=(1, 1), pool_type="avg", count_include_pad=False,
                     name="b3")
    cat = sym.Concat(b1, b2, b3, num_args=3, dim=1, name="cat")
    res = sym.LeakyReLU(cat + sym.Convolution(cat, name="sc", kernel=(1, 1), num_filter=13), act_type="prelu",
                        name="prelu")
    g = sym.Flatten(sym.Pooling(res, global_pool=True, pool_type="avg", kernel=(1, 1), name="gap"), name="flat")
    yield "inception-resnet-parts", (2, 3, 8, 8), sym.SoftmaxOutput(sym.FullyConnected(g, name="fc",
                                                                                       num_hidden=3), name="softmax")
    # shape and arithmetic ops
    r = sym.reshape(sym.FullyConnected(data, name="fc", num_hidden=12), shape=(0, 3, -1), name="rs")
    r = sym.transpose(r, axes=(0, 2, 1), name="tr")
    r = sym.clip(r * 2.0 - 0.5, a_min=-1.0, a_max=1.5)
    r = sym.log_softmax(sym.softmax(r, axis=1, name="sm") + 1.0, axis=-1, name="lsm")
    yield "shapes-and-math", (4, 2, 3), sym.Group(sym.mean(r, axis=(1,), keepdims=True, name="mean"),
                                                  sym.Activation(r, act_type="sigmoid", name="sig"))


class ExportRoundTrip(unittest.TestCase):
    """Loom -> ONNX (onnx.checker passes) -> Loom gives the same outputs."""

    def test_round_trips(self):
        with tempfile.TemporaryDirectory() as d:
            for name, shape, net in _nets():
                with self.subTest(net=name):
                    arg, aux = _random_params(net, data=shape)
                    path = os.path.join(d, name + ".onnx")
                    loom.onnx.export_model(net, (arg, aux), {"data": shape}, path)
                    model = onnx.load(path)
                    onnx.checker.check_model(model)
                    self.assertEqual(model.opset_import[0].version, 13)
                    self.assertEqual([i.name for i in model.graph.input], ["data"])  # no label input
                    x = np.random.default_rng(1).normal(size=shape).astype(np.float32)
                    ref = _forward(net, arg, aux, data=x, **({"softmax_label": np.zeros(shape[0], np.float32)}
                                                            if "softmax_label" in net.list_arguments() else {}))
                    back, arg2, aux2 = loom.onnx.import_model(path)
                    out = _forward(back, arg2, aux2, data=x)
                    self.assertEqual(len(out), len(ref))
                    for o, r in zip(out, ref):
                        np.testing.assert_allclose(o, r, rtol=1e-6, atol=1e-6)

    def test_ops_written(self):
        with tempfile.TemporaryDirectory() as d:
            got = set()
            for name, shape, net in _nets():
                arg, aux = _random_params(net, data=shape)
                path = os.path.join(d, name + ".onnx")
                loom.onnx.export_model(net, (arg, aux), {"data": shape}, path, opset_version=17)
                got |= {n.op_type for n in onnx.load(path).graph.node}
            for op in ["Gemm", "Conv", "BatchNormalization", "MaxPool", "AveragePool", "GlobalAveragePool",
                       "Concat", "Flatten", "Reshape", "Softmax", "LogSoftmax", "Dropout", "Add", "Relu", "Tanh",
                       "Sigmoid", "LRN", "LeakyRelu", "Elu", "PRelu", "Transpose", "Clip", "ReduceMean"]:
                self.assertIn(op, got)


class GluonExport(unittest.TestCase):
    def test_hybridized_block_round_trips(self):
        from loom.gluon import HybridSequential, Conv2D, BatchNorm, Activation, MaxPool2D, Flatten, Dense
        net = HybridSequential()
        net.add(Conv2D(6, (3, 3), padding=(1, 1)), BatchNorm(), Activation("relu"), MaxPool2D(), Flatten(),
                Dense(5))
        net.initialize()
        net.hybridize()
        x = np.random.default_rng(2).normal(size=(3, 2, 8, 8)).astype(np.float32)
        want = net(loom.array(x)).asnumpy()
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "gluon.onnx")
            net.export_onnx(path, (3, 2, 8, 8))
            onnx.checker.check_model(onnx.load(path))
            back, arg, aux = loom.onnx.import_model(path)
            np.testing.assert_allclose(_forward(back, arg, aux, data=x)[0], want, rtol=1e-5, atol=1e-6)


class BadInput(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.d = self.dir.name

    def tearDown(self):
        self.dir.cleanup()

    def _model(self, nodes, inits, opset=13, out_shape=(1, 4)):
        g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, list(out_shape))], inits)
        path = os.path.join(self.d, "m%d.onnx" % len(os.listdir(self.d)))
        onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)]), path)
        return path

    def _gemm(self, w_shape=(4, 3), b_len=4):
        w = helper.make_tensor("w", TensorProto.FLOAT, w_shape, np.ones(w_shape, np.float32).ravel())
        b = helper.make_tensor("b", TensorProto.FLOAT, [b_len], np.zeros(b_len, np.float32))
        return helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="fc", transB=1), [w, b]

    def assertFails(self, fn, *words):
        with self.assertRaises(loom.LoomError) as cm:
            fn()
        for w in words:
            self.assertIn(w, str(cm.exception))

    def test_small_model_imports(self):
        node, inits = self._gemm()
        s, arg, aux = loom.onnx.import_model(self._model([node], inits))
        out = _forward(s, arg, aux, x=np.ones((1, 3), np.float32))[0]
        np.testing.assert_array_equal(out, np.full((1, 4), 3, np.float32))

    def test_damaged_files(self):
        node, inits = self._gemm()
        good = self._model([node], inits)
        raw = _read(good)
        cut = os.path.join(self.d, "cut.onnx")
        _write(cut, raw[: len(raw) * 2 // 3])
        self.assertFails(lambda: loom.onnx.import_model(cut), "cut.onnx")
        junk = os.path.join(self.d, "junk.onnx")
        _write(junk, b"\x12\xff\xff\xff\xff\x0f not onnx at all")
        self.assertFails(lambda: loom.onnx.import_model(junk), "junk.onnx")
        empty = os.path.join(self.d, "empty.onnx")
        _write(empty, b"")
        self.assertFails(lambda: loom.onnx.import_model(empty), "empty.onnx", "empty")
        self.assertFails(lambda: loom.onnx.import_model(os.path.join(self.d, "missing.onnx")), "missing.onnx")

    def test_unsupported_opset_op_attribute(self):
        node, inits = self._gemm()
        self.assertFails(lambda: loom.onnx.import_model(self._model([node], inits, opset=11)), "opset 11")
        resize = helper.make_node("Resize", ["x", "", "sc"], ["y"], name="up")
        sc = helper.make_tensor("sc", TensorProto.FLOAT, [2], [1.0, 2.0])
        self.assertFails(lambda: loom.onnx.import_model(self._model([resize], [sc], out_shape=(1, 6))),
                         "'up'", "Resize", "not supported")
        bad_gemm = helper.make_node("Gemm", ["x", "w", "b"], ["y"], name="fc", transB=1, alpha=2.0)
        self.assertFails(lambda: loom.onnx.import_model(self._model([bad_gemm], inits)), "'fc'", "alpha")

    def test_initializer_that_does_not_fit(self):
        node, inits = self._gemm(b_len=5)  # bias of 5 for 4 outputs
        self.assertFails(lambda: loom.onnx.import_model(self._model([node], inits)), "fc")
        node, inits = self._gemm(w_shape=(4, 2))  # weight for 2 inputs, data has 3
        self.assertFails(lambda: loom.onnx.import_model(self._model([node], inits)), "fc")

    def test_export_errors_leave_files_intact(self):
        data = sym.Variable("data")
        net = sym.UpSampling(data, scale=2, sample_type="nearest", num_args=1, name="up")
        target = os.path.join(self.d, "keep.onnx")
        _write(target, b"saved before")
        self.assertFails(lambda: loom.onnx.export_model(net, {}, {"data": (1, 1, 2, 2)}, target), "'up'", "UpSampling")
        self.assertEqual(_read(target), b"saved before")
        self.assertEqual(os.listdir(self.d), ["keep.onnx"])  # no temporary left behind
        fc = sym.FullyConnected(data, name="fc", num_hidden=2)
        self.assertFails(lambda: loom.onnx.export_model(fc, {}, {"data": (1, 3)}, target), "fc_weight")
        w = loom.array(np.ones((2, 3), np.float32))
        b = loom.array(np.ones((2,), np.float32))
        self.assertFails(lambda: loom.onnx.export_model(fc, {"fc_weight": w, "fc_bias": b}, {},
                                                        target), "data")
        self.assertFails(lambda: loom.onnx.export_model(fc, {"fc_weight": w, "fc_bias": b}, {"data": (1, 3)},
                                                        os.path.join(self.d, "no", "such", "dir", "m.onnx")),
                         "no/such/dir")
        self.assertFails(lambda: loom.onnx.export_model(fc, {"fc_weight": w, "fc_bias": b}, {"data": (1, 3)},
                                                        target, opset_version=9), "opset 9")
        pool = sym.Pooling(data, kernel=(2, 2), pool_type="sum", name="ps")
        self.assertFails(lambda: loom.onnx.export_model(pool, {}, {"data": (1, 1, 4, 4)}, target), "'ps'", "sum")
        self.assertEqual(_read(target), b"saved before")
        loom.onnx.export_model(fc, {"fc_weight": w, "fc_bias": b}, {"data": (1, 3)}, target)
        onnx.checker.check_model(onnx.load(target))


if __name__ == "__main__":
    unittest.main()
