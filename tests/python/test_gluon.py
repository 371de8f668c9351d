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
        ti = gluon.Trainer(imp.collect_params(), "sgd", {"learning_rate": 0.1, "momentum": 0.9})
        th = gluon.Trainer(hyb.collect_params(), "sgd", {"learning_rate": 0.1, "momentum": 0.9})
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

    def test_sgd_aggregated_updates_give_the_per_weight_bits(self):
        # MXNet's SGD updates groups of weights with multi_sgd_(mom_)update; the weights after
        # three steps are the bits of one sgd_(mom_)update per weight, for any group size.
        from unittest import mock
        rng = np.random.default_rng(11)
        x = arr(rng.normal(size=(5, 1, 8, 8)))
        y = arr(rng.integers(0, 10, size=(5,)), "float32")
        for opts in ({"learning_rate": 0.1, "momentum": 0.9, "wd": 0.01, "nesterov": False},
                     {"learning_rate": 0.2, "wd": 0.001, "clip_gradient": 0.05}):
            results = {}
            for size in (1, 3, 4, 60):
                loom.seed(3)
                net = ConvNet()
                net.initialize()
                trainer = gluon.Trainer(net.collect_params(), "sgd", opts)
                trainer.aggregate_num = size
                calls = []
                real = gluon._invoke

                def spy(name, *a, **k):
                    calls.append(name)
                    return real(name, *a, **k)
                with mock.patch.object(gluon, "_invoke", spy):
                    for _ in range(3):
                        with loom.record(train=True):
                            gluon.SoftmaxCrossEntropyLoss()(net(x), y).backward()
                        trainer.step(5)
                live = [p for p in net.collect_params().values() if p.grad_req != "null"]
                single = "sgd_mom_update" if "momentum" in opts else "sgd_update"
                if size == 1:
                    self.assertEqual(calls.count(single), 3 * len(live))
                else:
                    groups = -(-len(live) // size)
                    self.assertEqual(calls.count("multi_" + single), 3 * groups, (size, calls))
                    self.assertNotIn(single, calls)
                results[size] = [p.data().asnumpy() for p in live]
            for size in (3, 4, 60):
                for a, b in zip(results[1], results[size]):
                    np.testing.assert_array_equal(a, b, err_msg="%s, groups of %d" % (opts, size))
        old = os.environ.get("LOOM_OPTIMIZER_AGGREGATION_SIZE")
        try:
            os.environ["LOOM_OPTIMIZER_AGGREGATION_SIZE"] = "61"
            with self.assertRaisesRegex(loom.LoomError, r"LOOM_OPTIMIZER_AGGREGATION_SIZE must be an integer in "
                                        r"\[1, 60\], got '61'"):
                gluon.Trainer(ConvNet().collect_params(), "sgd")
        finally:
            if old is None:
                del os.environ["LOOM_OPTIMIZER_AGGREGATION_SIZE"]
            else:
                os.environ["LOOM_OPTIMIZER_AGGREGATION_SIZE"] = old

    def test_trainer_optimizers_match_pytorch(self):
        # Three steps of each optimizer (MXNet's names and options) on a Dense layer under an
        # L2 loss, against torch.optim on the same layer, data and start.
        rng = np.random.default_rng(5)
        x = rng.normal(size=(4, 3)).astype(np.float32)
        y = rng.normal(size=(4, 2)).astype(np.float32)
        w0 = rng.normal(size=(2, 3)).astype(np.float32)
        b0 = rng.normal(size=(2,)).astype(np.float32)
        cases = [("sgd", {"learning_rate": 0.1, "momentum": 0.9, "wd": 0.01},
                  lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01)),
                 ("sgd", {"learning_rate": 0.2}, lambda ps: torch.optim.SGD(ps, lr=0.2)),
                 ("adam", {"learning_rate": 0.01, "beta1": 0.8, "wd": 0.001},
                  lambda ps: torch.optim.Adam(ps, lr=0.01, betas=(0.8, 0.999), weight_decay=0.001)),
                 ("adadelta", {"rho": 0.9, "epsilon": 1e-5}, lambda ps: torch.optim.Adadelta(ps, lr=1.0, rho=0.9,
                                                                                              eps=1e-5))]
        for name, opts, make in cases:
            d = gluon.Dense(2, in_units=3)
            d.initialize()
            d.weight.set_data(arr(w0))
            d.bias.set_data(arr(b0))
            trainer = gluon.Trainer(d.collect_params(), name, opts)
            tw = torch.from_numpy(w0.copy()).requires_grad_()
            tb = torch.from_numpy(b0.copy()).requires_grad_()
            topt = make([tw, tb])
            for _ in range(3):
                with loom.record(train=True):
                    gluon.L2Loss()(d(arr(x)), arr(y)).backward()
                trainer.step(4)
                topt.zero_grad()
                (0.5 * (F.linear(torch.from_numpy(x), tw, tb) - torch.from_numpy(y)) ** 2).mean(1).sum().div(4).backward()
                topt.step()
            np.testing.assert_allclose(d.weight.data().asnumpy(), tw.detach().numpy(), rtol=1e-5, atol=1e-6,
                                       err_msg=name + str(opts))
            np.testing.assert_allclose(d.bias.data().asnumpy(), tb.detach().numpy(), rtol=1e-5, atol=1e-6,
                                       err_msg=name + str(opts))
        # AdaGrad and RMSProp take the root of (state + epsilon) in MXNet (PyTorch adds epsilon
        # after the root): against MXNet's formulas in float64, with the analytic gradient.
        x64, y64 = x.astype(np.float64), y.astype(np.float64)
        for name, opts in [("adagrad", {"learning_rate": 0.1, "eps": 1e-7, "wd": 0.01}),
                           ("rmsprop", {"learning_rate": 0.01, "gamma1": 0.8, "epsilon": 1e-8, "wd": 0.01})]:
            d = gluon.Dense(2, in_units=3)
            d.initialize()
            d.weight.set_data(arr(w0))
            d.bias.set_data(arr(b0))
            trainer = gluon.Trainer(d.collect_params(), name, opts)
            ws = [w0.astype(np.float64), b0.astype(np.float64)]
            state = [np.zeros_like(ws[0]), np.zeros_like(ws[1])]
            lr, wd = opts["learning_rate"], opts["wd"]
            for _ in range(3):
                with loom.record(train=True):
                    gluon.L2Loss()(d(arr(x)), arr(y)).backward()
                trainer.step(4)
                dpred = (x64 @ ws[0].T + ws[1] - y64) / 2 / 4  # d(mean over outputs of 0.5 e^2) / 4
                for k, g in enumerate([dpred.T @ x64, dpred.sum(0)]):
                    if name == "adagrad":
                        state[k] += g * g
                        ws[k] = ws[k] - lr * (g / np.sqrt(state[k] + opts["eps"]) + wd * ws[k])
                    else:
                        g = g + wd * ws[k]
                        state[k] = (1 - opts["gamma1"]) * g * g + opts["gamma1"] * state[k]
                        ws[k] = ws[k] - lr * g / np.sqrt(state[k] + opts["epsilon"])
            np.testing.assert_allclose(d.weight.data().asnumpy(), ws[0], rtol=1e-5, atol=1e-6, err_msg=name)
            np.testing.assert_allclose(d.bias.data().asnumpy(), ws[1], rtol=1e-5, atol=1e-6, err_msg=name)
        p = gluon.Dense(2, in_units=3).collect_params()
        with self.assertRaisesRegex(loom.LoomError, "unknown optimizer 'lbfgs'; one of: adadelta, adagrad, adam"):
            gluon.Trainer(p, "lbfgs")
        with self.assertRaisesRegex(loom.LoomError, "'beta3' is not an option of adam; its options: beta1, beta2"):
            gluon.Trainer(p, "adam", {"beta3": 0.5})
        with self.assertRaisesRegex(loom.LoomError, "centered RMSProp"):
            gluon.Trainer(p, "rmsprop", {"centered": True})
        with self.assertRaisesRegex(loom.LoomError, "has not been initialized; run a forward"):
            gluon.Trainer(gluon.Dense(2).collect_params(), "sgd").step(4)
        with self.assertRaisesRegex(loom.LoomError, "batch_size must be positive"):
            gluon.Trainer(p, "sgd").step(0)

    def test_split_and_load_is_mxnets(self):
        two, three = [loom.cpu(0), loom.cpu(1)], [loom.cpu(0), loom.cpu(1), loom.cpu(2)]
        grid = arr(np.arange(21).reshape(3, 7))
        self.assertEqual([p.shape[0] for p in gluon.split_and_load(arr(np.ones((5, 3))), two, even_split=False)],
                         [3, 2])
        self.assertEqual([p.shape[0] for p in gluon.split_and_load(arr(np.ones((2, 3))), three, even_split=False)],
                         [1, 1, 0])
        cols = gluon.split_and_load(grid, two, batch_axis=1, even_split=False)
        self.assertEqual([c.context for c in cols], two)
        np.testing.assert_array_equal(cols[0].asnumpy(), np.arange(21).reshape(3, 7)[:, :4])
        np.testing.assert_array_equal(cols[1].asnumpy(), np.arange(21).reshape(3, 7)[:, 4:])
        with self.assertRaisesRegex(loom.LoomError, r"\(5,3\) cannot be split evenly into 2 slices"):
            gluon.split_and_load(arr(np.ones((5, 3))), two)
        with self.assertRaisesRegex(loom.LoomError, r"batch_axis 2 is outside data of shape \(3,7\)"):
            gluon.split_and_load(grid, two, batch_axis=2)

    def test_two_devices_train_as_one(self):
        # Data parallelism: the batch split over cpu(0) and cpu(1), each device's copy of the
        # network run on its slice, the gradients summed by the Trainer. The copies stay
        # bit-identical, and match one device trained on the whole batch; hybridized as well.
        ctxs = [loom.cpu(0), loom.cpu(1)]
        rng = np.random.default_rng(7)
        x = arr(rng.normal(size=(8, 20)))
        y = arr(rng.integers(0, 10, size=(8,)))
        for hybrid in (False, True):
            one, two = Mlp(), Mlp()
            loom.seed(11)
            one.initialize("xavier")
            one(x)
            two.initialize("xavier", ctx=ctxs)
            two(gluon.split_and_load(x, ctxs)[0])
            for a, b in zip(one.collect_params().values(), two.collect_params().values()):
                b.set_data(a.data())
            if hybrid:
                one.hybridize()
                two.hybridize()
            loss = gluon.SoftmaxCrossEntropyLoss()
            t1 = gluon.Trainer(one.collect_params(), "adam", {"learning_rate": 0.01})
            t2 = gluon.Trainer(two.collect_params(), "adam", {"learning_rate": 0.01})
            for _ in range(3):
                with loom.record(train=True):
                    loss(one(x), y).backward()
                t1.step(8)
                xs, ys = gluon.split_and_load(x, ctxs), gluon.split_and_load(y, ctxs)
                with loom.record(train=True):
                    losses = [loss(two(a), b) for a, b in zip(xs, ys)]
                loom.backward(losses)
                t2.step(8)
            for a, b in zip(one.collect_params().values(), two.collect_params().values()):
                copies = b.list_data()
                self.assertEqual([c.context for c in copies], ctxs)
                np.testing.assert_array_equal(copies[0].asnumpy(), copies[1].asnumpy(), err_msg=b.name)
                np.testing.assert_allclose(copies[0].asnumpy(), a.data().asnumpy(), rtol=1e-4, atol=1e-5,
                                           err_msg="hybrid=%s %s" % (hybrid, b.name))
        w = two.collect_params()[two.prefix + "dense0_weight"]
        with self.assertRaisesRegex(loom.LoomError, r"has a copy on each of \[cpu\(0\), cpu\(1\)\]; call data\(ctx\)"):
            w.data()
        with self.assertRaisesRegex(loom.LoomError, r"was initialized on \[cpu\(0\), cpu\(1\)\], not on cpu\(2\)"):
            w.data(loom.cpu(2))


if __name__ == "__main__":
    unittest.main()
