"""Blocks written as Python classes (loom.gluon): imperative and hybridized runs give
identical bits, layers and losses match PyTorch, shared parameters sum their
gradients, and bad input is refused with the parameter and shapes named."""
import os
import tempfile
import unittest

import numpy as np
import torch
import torch.nn.functional as F

import loom
from loom import gluon, nd, LoomError


class Mlp(gluon.HybridBlock):
    def __init__(self, prefix=None):
        super().__init__(prefix)
        self.fc1 = self.register(gluon.Dense(32, activation="relu"))
        self.fc2 = self.register(gluon.Dense(10))

    def hybrid_forward(self, x):
        return self.fc2(self.fc1(x))


class ConvNet(gluon.HybridBlock):
    def __init__(self, prefix=None):
        super().__init__(prefix)
        self.body = self.register(gluon.HybridSequential().add(
            gluon.Conv2D(6, (3, 3), activation="tanh"), gluon.BatchNorm(), gluon.MaxPool2D(),
            gluon.Conv2D(8, (3, 3), padding=(1, 1)), gluon.Activation("relu"), gluon.GlobalAvgPool2D(),
            gluon.Flatten(), gluon.Dense(10)))

    def hybrid_forward(self, x):
        return self.body(x)


def arr(values, dtype="float32"):
    return loom.from_numpy(np.asarray(values, dtype=dtype))


class GluonTests(unittest.TestCase):
    def train_both(self, make, x, y):
        imp, hyb = make(), make()
        loom.seed(3)
        imp.initialize("xavier")
        hyb.initialize("xavier")
        imp(x)
        hyb.hybridize()
        hyb(x)
        for a, b in zip(imp.collect_params().values(), hyb.collect_params().values()):
            b.set_data(a.data())
        loss = gluon.SoftmaxCrossEntropyLoss()
        ti = gluon.Trainer(imp.collect_params(), 0.1, momentum=0.9)
        th = gluon.Trainer(hyb.collect_params(), 0.1, momentum=0.9)
        for step in range(3):
            xs = x if step == 0 else x * (1 + 0.5 * step)
            with loom.record(train=True):
                oi = imp(xs)
                loss(oi, y).backward()
            with loom.record(train=True):
                oh = hyb(xs)
                loss(oh, y).backward()
            np.testing.assert_array_equal(oi.asnumpy(), oh.asnumpy(), "step %d output" % step)
            pi, ph = list(imp.collect_params().values()), list(hyb.collect_params().values())
            for a, b in zip(pi, ph):
                if a.grad_req != "null":
                    np.testing.assert_array_equal(a.grad().asnumpy(), b.grad().asnumpy(), a.name)
            ti.step(x.shape[0])
            th.step(x.shape[0])
            for a, b in zip(pi, ph):
                np.testing.assert_array_equal(a.data().asnumpy(), b.data().asnumpy(), a.name)
        self.assertEqual(len(hyb._cache), 1)
        return hyb

    def test_mlp_imperative_and_hybridized_identical(self):
        rng = np.random.default_rng(0)
        self.train_both(Mlp, arr(rng.normal(size=(8, 20))), arr(np.arange(8) % 10))

    def test_convnet_imperative_and_hybridized_identical(self):
        rng = np.random.default_rng(1)
        net = self.train_both(ConvNet, arr(rng.normal(size=(4, 2, 10, 10))), arr([1, 2, 3, 4]))
        names = net._last.symbol.list_auxiliary_states()
        self.assertTrue(any(n.endswith("batchnorm0_running_mean") for n in names), names)

    def test_layers_match_pytorch(self):
        rng = np.random.default_rng(2)
        x = rng.normal(size=(3, 4, 9, 9)).astype(np.float32)
        net = gluon.HybridSequential().add(
            gluon.Conv2D(5, (3, 3), strides=(2, 2), padding=(1, 1), activation="relu"),
            gluon.AvgPool2D((2, 2)), gluon.Flatten(), gluon.Dense(7))
        net.initialize()
        for hybrid in (False, True):
            net.hybridize(hybrid)
            for _ in range(2):
                out = net(arr(x)).asnumpy()
                ps = [p.data().asnumpy() for p in net.collect_params().values()]
                t = F.relu(F.conv2d(torch.from_numpy(x), torch.from_numpy(ps[0]), torch.from_numpy(ps[1]),
                                    stride=2, padding=1))
                t = F.avg_pool2d(t, 2).flatten(1)
                t = F.linear(t, torch.from_numpy(ps[2]), torch.from_numpy(ps[3]))
                np.testing.assert_allclose(out, t.numpy(), rtol=1e-5, atol=1e-5)

    def test_losses_match_pytorch(self):
        rng = np.random.default_rng(3)
        pred = rng.normal(size=(6, 5)).astype(np.float32)
        label = np.array([0, 4, 2, 1, 3, 3], dtype=np.float32)
        got = gluon.SoftmaxCrossEntropyLoss()(arr(pred), arr(label)).asnumpy()
        want = F.cross_entropy(torch.from_numpy(pred), torch.from_numpy(label).long(), reduction="none").numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        # Classes on axis 1 of (N, C, H, W) with (N, H, W) labels (MXNet's pick along any axis),
        # the mean over all but the batch axis, and the gradient, against PyTorch.
        img = rng.normal(size=(2, 4, 3, 3)).astype(np.float32)
        seg = rng.integers(0, 4, size=(2, 3, 3)).astype(np.float32)
        x = arr(img)
        x.attach_grad()
        with loom.record():
            out = gluon.SoftmaxCrossEntropyLoss(axis=1)(x, arr(seg))
        out.backward()
        ti = torch.from_numpy(img).requires_grad_()
        tl = F.cross_entropy(ti, torch.from_numpy(seg).long(), reduction="none").mean((1, 2))
        tl.sum().backward()
        np.testing.assert_allclose(out.asnumpy(), tl.detach().numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(x.grad.asnumpy(), ti.grad.numpy(), rtol=1e-5, atol=1e-6)
        with self.assertRaisesRegex(LoomError, r"the label \(5,\) should hold one class index per sample"):
            gluon.SoftmaxCrossEntropyLoss()(arr(pred), arr(label[:5]))
        target = rng.normal(size=(6, 5)).astype(np.float32)
        got = gluon.L2Loss()(arr(pred), arr(target)).asnumpy()
        want = (0.5 * (torch.from_numpy(pred) - torch.from_numpy(target)) ** 2).mean(1).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        got = gluon.L1Loss()(arr(pred), arr(target)).asnumpy()
        np.testing.assert_allclose(got, np.abs(pred - target).mean(1), rtol=1e-5, atol=1e-6)
        z = (target > 0).astype(np.float32)
        got = gluon.SigmoidBinaryCrossEntropyLoss()(arr(pred), arr(z)).asnumpy()
        want = F.binary_cross_entropy_with_logits(torch.from_numpy(pred), torch.from_numpy(z),
                                                  reduction="none").mean(1).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        p = 1 / (1 + np.exp(-pred))
        got = gluon.SigmoidBinaryCrossEntropyLoss(from_sigmoid=True)(arr(p), arr(z)).asnumpy()
        want = F.binary_cross_entropy(torch.from_numpy(p), torch.from_numpy(z), reduction="none").mean(1).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)

    def test_shared_parameters_sum_gradients(self):
        class Twin(gluon.HybridBlock):
            def __init__(self):
                super().__init__()
                self.a = self.register(gluon.Dense(3, in_units=4))
                self.b = self.register(gluon.Dense(3, in_units=4, params=self.a.collect_params()))

            def hybrid_forward(self, x):
                return self.a(x) + self.b(x)

        x = np.random.default_rng(4).normal(size=(5, 4)).astype(np.float32)
        for hybrid in (False, True):
            net = Twin()
            net.initialize()
            net.hybridize(hybrid)
            for _ in range(2):
                with loom.record():
                    y = nd.sum(net(arr(x)))
                y.backward()
                ps = list(net.collect_params().values())
                self.assertEqual(len(ps), 2)
                np.testing.assert_allclose(ps[0].grad().asnumpy(), np.tile(2 * x.sum(0), (3, 1)), rtol=1e-5)
                np.testing.assert_allclose(ps[1].grad().asnumpy(), np.full(3, 10.0), rtol=1e-6)

    def test_export_writes_module_checkpoint(self):
        net = Mlp("mlp0_")
        net.initialize()
        net.hybridize()
        x = arr(np.ones((2, 20)))
        net(x)
        want = net(x).asnumpy()
        with tempfile.TemporaryDirectory() as d:
            prefix = os.path.join(d, "mlp")
            net.export(prefix)
            s = loom.Symbol.load(prefix + "-symbol.json")
            self.assertEqual(s.list_arguments()[0], "data")
            params = loom.load(prefix + "-0000.params")
            self.assertIn("arg:mlp0_dense0_weight", params)
            # Reload into a fresh network of the same class by name.
            other = Mlp("mlp0_")
            other.initialize()
            other(x)
            other.collect_params().load(prefix + "-0000.params")
            np.testing.assert_array_equal(other(x).asnumpy(), want)
            # And as a SymbolBlock: the graph and its parameters, run as one.
            sb = gluon.SymbolBlock.imports(prefix + "-symbol.json", ["data"], prefix + "-0000.params")
            np.testing.assert_array_equal(sb(x).asnumpy(), want)
            self.assertIn("mlp0_dense0_weight", sb.collect_params())
            with self.assertRaisesRegex(loom.LoomError, "no input 'images'"):
                gluon.SymbolBlock.imports(prefix + "-symbol.json", ["images"], prefix + "-0000.params")

    def test_bad_input(self):
        net = Mlp("badmlp_")
        with self.assertRaisesRegex(loom.LoomError, "badmlp_dense0_weight.*initialize"):
            net.collect_params()["badmlp_dense0_weight"].data()
        net.initialize()
        with self.assertRaisesRegex(loom.LoomError, r"badmlp_dense0_weight.*\(32,0\).*first forward"):
            net.collect_params()["badmlp_dense0_weight"].data()
        net.hybridize()
        net(arr(np.ones((2, 20))))
        with self.assertRaisesRegex(loom.LoomError, r"badmlp_dense0_weight.*\(32,20\).*\(2,21\)"):
            net(arr(np.ones((2, 21))))
        self.assertEqual(net(arr(np.ones((2, 20)))).shape, (2, 10))

        outside = arr(np.ones((2, 3)))

        class Captures(gluon.HybridBlock):
            def hybrid_forward(self, x):
                return x + outside
        c = Captures()
        c.hybridize()
        with self.assertRaisesRegex(loom.LoomError, r"add input 1.*\(2,3\)"):
            c(arr(np.ones((2, 3))))
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "p.params")
            loom.save(path, {"dense0_weight": arr(np.ones((32, 20)))})
            with self.assertRaisesRegex(loom.LoomError, r"no value for 'badmlp_dense0_bias' \(32,\)"):
                net.load_parameters(path)


if __name__ == "__main__":
    unittest.main()
