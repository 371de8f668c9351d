"""The fused RNN operator against PyTorch's nn.RNN / nn.LSTM / nn.GRU with the
weights mapped into MXNet's flat layout: outputs, final states and the gradients
of the data, the parameters and the initial states, for every mode, 1 and 2
layers, one and two directions, float64 and float32."""
import itertools
import unittest

import numpy as np

import loom
from loom import nd

try:
    import torch
except ImportError:  # the suite says so instead of passing silently
    torch = None

RNG = np.random.default_rng(7)


def torch_module(mode, i, h, layers, bidir):
    kw = dict(num_layers=layers, bidirectional=bidir)
    if mode == "lstm":
        return torch.nn.LSTM(i, h, **kw)
    if mode == "gru":
        return torch.nn.GRU(i, h, **kw)
    return torch.nn.RNN(i, h, nonlinearity="relu" if mode == "rnn_relu" else "tanh", **kw)


def flat_params(m, layers, dirs):
    """MXNet's layout: every weight (layer, direction: W_x, W_h), then every bias."""
    ws, bs = [], []
    for l in range(layers):
        for d in range(dirs):
            sfx = "_l%d%s" % (l, "_reverse" if d else "")
            ws += [getattr(m, "weight_ih" + sfx), getattr(m, "weight_hh" + sfx)]
            bs += [getattr(m, "bias_ih" + sfx), getattr(m, "bias_hh" + sfx)]
    return ws + bs


@unittest.skipIf(torch is None, "python3-torch is not installed")
class RNNAgainstTorch(unittest.TestCase):
    def run_case(self, mode, layers, bidir, dtype, rtol):
        T, N, I, H = 4, 3, 5, 6
        dirs = 2 if bidir else 1
        tdt = torch.float64 if dtype == np.float64 else torch.float32
        m = torch_module(mode, I, H, layers, bidir).to(tdt)
        with torch.no_grad():
            for prm in m.parameters():
                prm.uniform_(-0.6, 0.6, generator=torch.Generator().manual_seed(int(RNG.integers(1 << 30))))
        x = RNG.uniform(-1, 1, (T, N, I)).astype(dtype)
        h0 = RNG.uniform(-1, 1, (layers * dirs, N, H)).astype(dtype)
        c0 = RNG.uniform(-1, 1, (layers * dirs, N, H)).astype(dtype)
        lstm = mode == "lstm"
        tx, th0, tc0 = (torch.tensor(v, requires_grad=True) for v in (x, h0, c0))
        ty, ts = m(tx, (th0, tc0) if lstm else th0)
        ths = ts if not lstm else ts[0]
        wy = RNG.uniform(-1, 1, ty.shape).astype(dtype)
        wh = RNG.uniform(-1, 1, ths.shape).astype(dtype)
        wc = RNG.uniform(-1, 1, ths.shape).astype(dtype)
        loss = (ty * torch.tensor(wy)).sum() + (ths * torch.tensor(wh)).sum()
        if lstm:
            loss = loss + (ts[1] * torch.tensor(wc)).sum()
        loss.backward()
        flat = torch.cat([p.detach().reshape(-1) for p in flat_params(m, layers, dirs)]).numpy()
        tflat_grad = torch.cat([p.grad.reshape(-1) for p in flat_params(m, layers, dirs)]).numpy()

        ins = [loom.from_numpy(v) for v in ([x, flat, h0, c0] if lstm else [x, flat, h0])]
        for a in ins:
            a.attach_grad()
        with loom.record(train=True):
            outs = nd.RNN(*ins, state_size=H, num_layers=layers, mode=mode, bidirectional=bidir,
                          state_outputs=True)
        heads = [outs[0], outs[1]] + ([outs[2]] if lstm else [])
        grads = [wy, wh] + ([wc] if lstm else [])
        loom.backward(heads, [loom.from_numpy(g) for g in grads])

        def close(got, want, what):
            np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * max(np.abs(want).max(initial=0), 1e-2),
                                       err_msg="%s layers=%d bidir=%s %s: %s" % (mode, layers, bidir, dtype.__name__, what))
        close(outs[0].asnumpy(), ty.detach().numpy(), "output")
        close(outs[1].asnumpy(), ths.detach().numpy(), "final state")
        if lstm:
            close(outs[2].asnumpy(), ts[1].detach().numpy(), "final cell")
        close(ins[0].grad.asnumpy(), tx.grad.numpy(), "data gradient")
        close(ins[1].grad.asnumpy(), tflat_grad, "parameter gradient")
        close(ins[2].grad.asnumpy(), th0.grad.numpy(), "initial state gradient")
        if lstm:
            close(ins[3].grad.asnumpy(), tc0.grad.numpy(), "initial cell gradient")

    def test_every_mode_layers_and_directions(self):
        for mode, layers, bidir in itertools.product(("rnn_relu", "rnn_tanh", "lstm", "gru"), (1, 2), (False, True)):
            with self.subTest(mode=mode, layers=layers, bidir=bidir):
                self.run_case(mode, layers, bidir, np.float64, 1e-10)
                self.run_case(mode, layers, bidir, np.float32, 1e-5)

    def test_without_state_outputs_and_in_prediction(self):
        """One visible output; prediction mode gives the same output as training with p=0."""
        T, N, I, H = 5, 2, 3, 4
        m = torch.nn.GRU(I, H, num_layers=2).double()
        x = RNG.uniform(-1, 1, (T, N, I))
        h0 = np.zeros((2, N, H))
        flat = torch.cat([p.detach().reshape(-1) for p in flat_params(m, 2, 1)]).numpy()
        outs = nd.RNN(loom.from_numpy(x), loom.from_numpy(flat), loom.from_numpy(h0), state_size=H,
                      num_layers=2, mode="gru")
        self.assertEqual(len(outs), 2)  # the output and the internal reserve
        want, _ = m(torch.tensor(x))
        np.testing.assert_allclose(outs[0].asnumpy(), want.detach().numpy(), rtol=1e-10, atol=1e-12)


class RNNInAGraph(unittest.TestCase):
    def test_symbol_infers_bind_runs_and_matches_imperative(self):
        """From the data's shape alone the graph infers the parameter vector and the
        states; the executor's outputs and gradients equal the imperative call's."""
        T, N, I, H, L = 4, 3, 5, 6, 2
        s = loom.sym.RNN(loom.sym.Variable("data"),
                         state_size=H, num_layers=L, mode="lstm", bidirectional=True, state_outputs=True, name="rnn0")
        self.assertEqual(s.list_arguments(), ["data", "rnn0_parameters", "rnn0_state", "rnn0_state_cell"])
        self.assertEqual(len(s.list_outputs()), 3)  # the reserve stays internal
        args, outs, _ = s.infer_shape(data=(T, N, I))
        P = 2 * 4 * H * (I + H + 2) + 2 * 4 * H * (2 * H + H + 2)
        self.assertEqual(args, [(T, N, I), (P,), (2 * L, N, H), (2 * L, N, H)])
        self.assertEqual(outs, [(T, N, 2 * H), (2 * L, N, H), (2 * L, N, H)])
        ex = s.simple_bind(dtype="float64", data=(T, N, I))
        vals = {"data": RNG.uniform(-1, 1, (T, N, I)), "rnn0_parameters": RNG.uniform(-0.5, 0.5, (P,)),
                "rnn0_state": RNG.uniform(-1, 1, (2 * L, N, H)), "rnn0_state_cell": RNG.uniform(-1, 1, (2 * L, N, H))}
        got = [o.asnumpy() for o in ex.forward(is_train=True, **vals)]
        heads = [RNG.uniform(-1, 1, g.shape) for g in got]
        ex.backward([loom.from_numpy(h) for h in heads])
        ins = [loom.from_numpy(vals[k]) for k in ("data", "rnn0_parameters", "rnn0_state", "rnn0_state_cell")]
        for a in ins:
            a.attach_grad()
        with loom.record(train=True):
            want = nd.RNN(*ins, state_size=H, num_layers=L, mode="lstm", bidirectional=True, state_outputs=True)
        loom.backward(want[:3], [loom.from_numpy(h) for h in heads])
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, w.asnumpy())
        for name, a in zip(("data", "rnn0_parameters", "rnn0_state", "rnn0_state_cell"), ins):
            np.testing.assert_array_equal(ex.grad_dict[name].asnumpy(), a.grad.asnumpy(), err_msg=name)

    def test_graph_json_round_trip_keeps_the_node(self):
        s = loom.sym.RNN(loom.sym.Variable("data"), state_size=3, num_layers=1, mode="gru", name="gru0")
        back = loom.Symbol.fromjson(s.tojson())
        self.assertEqual(back.list_arguments(), ["data", "gru0_parameters", "gru0_state"])
        self.assertEqual(back.list_outputs(), ["gru0_output"])


class Cells(unittest.TestCase):
    """loom.rnn cells: unrolled step by step against the same stack run as one fused op."""

    def run_net(self, outs, states, values, T, N, C):
        net = loom.Symbol.group(*([outs] + list(states)))
        ex = net.simple_bind(dtype="float64", data=(N, T, C), **{k: v.shape for k, v in values.items() if k != "data"})
        for k, v in values.items():
            ex.arg_dict[k].copyfrom(v if isinstance(v, np.ndarray) else v.asnumpy())
        return [o.asnumpy() for o in ex.forward(is_train=False)]

    def test_unrolled_cells_equal_the_fused_op(self):
        T, N, C, H = 4, 3, 5, 6
        for kind, make in (("lstm", lambda p: loom.rnn.LSTMCell(H, prefix=p)), ("gru", lambda p: loom.rnn.GRUCell(H, prefix=p)),
                           ("relu", lambda p: loom.rnn.RNNCell(H, "relu", prefix=p)),
                           ("tanh", lambda p: loom.rnn.RNNCell(H, prefix=p))):
            with self.subTest(kind=kind):
                g = {"lstm": 4, "gru": 3}.get(kind, 1)
                cells = [make("c%d_" % l) for l in range(2)]
                values = {"data": RNG.uniform(-1, 1, (N, T, C))}
                for l, c in enumerate(cells):
                    values[c.prefix + "i2h_weight"] = RNG.uniform(-0.5, 0.5, (g * H, C if l == 0 else H))
                    values[c.prefix + "h2h_weight"] = RNG.uniform(-0.5, 0.5, (g * H, H))
                    values[c.prefix + "i2h_bias"] = RNG.uniform(-0.5, 0.5, (g * H,))
                    values[c.prefix + "h2h_bias"] = RNG.uniform(-0.5, 0.5, (g * H,))
                unfused = loom.rnn.SequentialRNNCell(fuse=False)
                for c in cells:
                    unfused.add(c)
                data = loom.sym.Variable("data")
                uo, us = unfused.unroll(T, data, unfused.begin_state(N, "float64"), merge_outputs=True)
                want = self.run_net(uo, us, values, T, N, C)
                fused_stack = loom.rnn.SequentialRNNCell()
                for l in range(2):
                    fused_stack.add(make("c%d_" % l))
                fo, fs = fused_stack.unroll(T, data, fused_stack.begin_state(N, "float64"), merge_outputs=True)
                self.assertIn("c0_parameters", loom.Symbol.group(fo).list_arguments())
                fused = fused_stack.to_fused()
                packed = fused.pack_weights({k: loom.from_numpy(v) for k, v in values.items()})
                got = self.run_net(fo, fs, packed, T, N, C)
                self.assertEqual(len(got), len(want))
                for a, b in zip(got, want):
                    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
                back = fused.unpack_weights(packed)
                for k, v in values.items():
                    np.testing.assert_array_equal(back[k].asnumpy(), v)

    def test_mistakes_are_named(self):
        cell = loom.rnn.LSTMCell(4)
        with self.assertRaisesRegex(loom.LoomError, "LSTMCell 'lstm_': takes 2 state"):
            cell(loom.sym.Variable("x"), [loom.sym.Variable("h")])
        with self.assertRaisesRegex(loom.LoomError, "unroll"):
            loom.rnn.FusedRNNCell(4)(loom.sym.Variable("x"), [])
        mixed = loom.rnn.SequentialRNNCell().add(loom.rnn.LSTMCell(4, prefix="a_")).add(loom.rnn.GRUCell(4, prefix="b_"))
        self.assertIsNone(mixed.to_fused())


if __name__ == "__main__":
    unittest.main()
