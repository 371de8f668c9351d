"""Recurrent cells for symbols (MXNet's mx.rnn): RNNCell, LSTMCell, GRUCell,
SequentialRNNCell and FusedRNNCell, with unroll and begin_state. A cell only wires
the graph; every number is computed by native ops. A SequentialRNNCell of plain
cells (one kind, one hidden size) unrolls as one fused RNN op, whose flat parameter
vector is named after the first cell ('<prefix>parameters'); FusedRNNCell's
pack_weights/unpack_weights convert between that vector and the cells' own
i2h/h2h weights and biases."""
from . import LoomError, _abi, _invoke
from ._symbol import Symbol

_MODES = {"lstm": 4, "gru": 3, "rnn_relu": 1, "rnn_tanh": 1}


def _sym():
    from . import sym
    return sym


class BaseRNNCell:
    """One step maps an input (batch, channels) and the states to an output and new states."""

    def __init__(self, prefix):
        self._prefix = prefix
        self._steps = 0

    @property
    def prefix(self):
        return self._prefix

    @property
    def state_sizes(self):
        raise NotImplementedError

    def reset(self):
        self._steps = 0

    def _name(self, what):
        return "%st%d_%s" % (self._prefix, self._steps, what)

    def _check_states(self, states):
        if len(states) != len(self.state_sizes):
            raise LoomError(_abi.LOOM_ERR_INVALID_ARGUMENT, "%s '%s': takes %d state(s), got %d"
                            % (type(self).__name__, self._prefix, len(self.state_sizes), len(states)))

    def begin_state(self, batch_size, dtype="float32"):
        """Zero states for a batch, each (batch_size, size)."""
        if batch_size <= 0:
            raise LoomError(_abi.LOOM_ERR_INVALID_ARGUMENT, "begin_state: batch_size must be > 0, got %d" % batch_size)
        return [_sym().zeros(shape=(batch_size, h), dtype=dtype, name="%sbegin_state_%d" % (self._prefix, i))
                for i, h in enumerate(self.state_sizes)]

    def __call__(self, inputs, states):
        raise NotImplementedError

    def unroll(self, length, inputs, begin_state, layout="NTC", merge_outputs=False):
        """Repeats the step over `length` steps of `inputs` (one symbol in `layout`, or a list of
        per-step symbols). Returns (outputs, final states): one merged symbol in `layout`, or a list."""
        self._check_states(begin_state)
        if isinstance(inputs, Symbol):
            parts = _sym().SliceChannel(inputs, num_outputs=length, axis=1 if layout == "NTC" else 0,
                                        squeeze_axis=True, name=self._prefix + "split")
            inputs = [parts[t] for t in range(length)]
        self.reset()
        states, outputs = list(begin_state), []
        for x in inputs:
            out, states = self(x, states)
            outputs.append(out)
        return (_merge(outputs, layout, self._prefix) if merge_outputs else outputs), states


def _merge(outputs, layout, prefix):
    s = _sym()
    parts = [s.reshape(o, shape=(0, 1, -1), name="%sout%d_expand" % (prefix, t)) for t, o in enumerate(outputs)]
    merged = parts[0] if len(parts) == 1 else s.Concat(*parts, num_args=len(parts), dim=1, name=prefix + "merge")
    return merged if layout == "NTC" else s.SwapAxis(merged, dim1=0, dim2=1, name=prefix + "merge_tnc")


class _GatedCell(BaseRNNCell):
    def __init__(self, num_hidden, gates, mode, prefix):
        super().__init__(prefix)
        if num_hidden <= 0:
            raise LoomError(_abi.LOOM_ERR_INVALID_ARGUMENT, "%s: num_hidden must be > 0" % type(self).__name__)
        self.num_hidden, self.gates, self.mode = num_hidden, gates, mode
        v = _sym().Variable
        self.i2h_weight, self.i2h_bias = v(prefix + "i2h_weight"), v(prefix + "i2h_bias")
        self.h2h_weight, self.h2h_bias = v(prefix + "h2h_weight"), v(prefix + "h2h_bias")

    @property
    def state_sizes(self):
        return [self.num_hidden] * (2 if self.mode == "lstm" else 1)

    def _projections(self, x, h):
        s, n = _sym(), self.gates * self.num_hidden
        return (s.FullyConnected(x, self.i2h_weight, self.i2h_bias, num_hidden=n, name=self._name("i2h")),
                s.FullyConnected(h, self.h2h_weight, self.h2h_bias, num_hidden=n, name=self._name("h2h")))


class RNNCell(_GatedCell):
    """h' = activation(W_x x + b_x + W_h h + b_h), activation tanh or relu."""

    def __init__(self, num_hidden, activation="tanh", prefix="rnn_"):
        if activation not in ("tanh", "relu"):
            raise LoomError(_abi.LOOM_ERR_INVALID_ARGUMENT, "RNNCell: activation must be tanh or relu, got %r" % activation)
        super().__init__(num_hidden, 1, "rnn_" + activation, prefix)
        self.activation = activation

    def __call__(self, inputs, states):
        self._check_states(states)
        i2h, h2h = self._projections(inputs, states[0])
        out = _sym().Activation(i2h + h2h, act_type=self.activation, name=self._name("out"))
        self._steps += 1
        return out, [out]


class LSTMCell(_GatedCell):
    """Gates i, f, g, o; states h then c."""

    def __init__(self, num_hidden, prefix="lstm_"):
        super().__init__(num_hidden, 4, "lstm", prefix)

    def __call__(self, inputs, states):
        self._check_states(states)
        s = _sym()
        i2h, h2h = self._projections(inputs, states[0])
        g = s.SliceChannel(i2h + h2h, num_outputs=4, name=self._name("slice"))
        i, f = s.sigmoid(g[0], name=self._name("i")), s.sigmoid(g[1], name=self._name("f"))
        c, o = s.tanh(g[2], name=self._name("c")), s.sigmoid(g[3], name=self._name("o"))
        next_c = f * states[1] + i * c
        next_h = o * s.tanh(next_c, name=self._name("tanh_c"))
        self._steps += 1
        return next_h, [next_h, next_c]


class GRUCell(_GatedCell):
    """Gates r, z, n with n = tanh(W_xn x + b_xn + r * (W_hn h + b_hn))."""

    def __init__(self, num_hidden, prefix="gru_"):
        super().__init__(num_hidden, 3, "gru", prefix)

    def __call__(self, inputs, states):
        self._check_states(states)
        s = _sym()
        i2h, h2h = self._projections(inputs, states[0])
        xi = s.SliceChannel(i2h, num_outputs=3, name=self._name("i2h_slice"))
        hh = s.SliceChannel(h2h, num_outputs=3, name=self._name("h2h_slice"))
        r = s.sigmoid(xi[0] + hh[0], name=self._name("r"))
        z = s.sigmoid(xi[1] + hh[1], name=self._name("z"))
        n = s.tanh(xi[2] + r * hh[2], name=self._name("h"))
        nxt = (1.0 - z) * n + z * states[0]
        self._steps += 1
        return nxt, [nxt]


class SequentialRNNCell(BaseRNNCell):
    """Cells stacked bottom first; unrolled as one fused RNN op when they stack plainly (fuse=True)."""

    def __init__(self, prefix="", fuse=True):
        super().__init__(prefix)
        self.cells, self.fuse = [], fuse

    def add(self, cell):
        self.cells.append(cell)
        return self

    @property
    def state_sizes(self):
        return [h for c in self.cells for h in c.state_sizes]

    def reset(self):
        super().reset()
        for c in self.cells:
            c.reset()

    def begin_state(self, batch_size, dtype="float32"):
        return [s for c in self.cells for s in c.begin_state(batch_size, dtype)]

    def __call__(self, inputs, states):
        self._check_states(states)
        nxt, at = [], 0
        for c in self.cells:
            n = len(c.state_sizes)
            inputs, st = c(inputs, states[at:at + n])
            nxt += st
            at += n
        return inputs, nxt

    def to_fused(self):
        """The equivalent FusedRNNCell, or None when the cells do not stack plainly."""
        cs = self.cells
        if not cs or not all(isinstance(c, _GatedCell) for c in cs):
            return None
        if any(type(c) is not type(cs[0]) or c.mode != cs[0].mode or c.num_hidden != cs[0].num_hidden for c in cs):
            return None
        return FusedRNNCell(cs[0].num_hidden, len(cs), cs[0].mode, prefix=cs[0].prefix,
                            cell_prefixes=[c.prefix for c in cs])

    def unroll(self, length, inputs, begin_state, layout="NTC", merge_outputs=False):
        self._check_states(begin_state)
        fused = self.to_fused() if self.fuse and isinstance(inputs, Symbol) else None
        if fused is not None:
            return fused.unroll(length, inputs, begin_state, layout, merge_outputs)
        return super().unroll(length, inputs, begin_state, layout, merge_outputs)


class FusedRNNCell(BaseRNNCell):
    """Layers of one recurrence as the fused RNN op over whole sequences; one parameter,
    '<prefix>parameters'. States per layer and direction: h (and c for lstm), each (batch, hidden)."""

    def __init__(self, num_hidden, num_layers=1, mode="lstm", bidirectional=False, dropout=0.0, prefix="rnn_",
                 cell_prefixes=None):
        super().__init__(prefix)
        if mode not in _MODES:
            raise LoomError(_abi.LOOM_ERR_INVALID_ARGUMENT, "FusedRNNCell: mode must be one of %s, got %r"
                            % (", ".join(_MODES), mode))
        self.num_hidden, self.num_layers, self.mode = num_hidden, num_layers, mode
        self.bidirectional, self.dropout = bidirectional, dropout
        self.parameters = _sym().Variable(prefix + "parameters")
        self.cell_prefixes = cell_prefixes or ["%sl%d_" % (prefix, l) for l in range(num_layers)]

    @property
    def _dirs(self):
        return 2 if self.bidirectional else 1

    @property
    def state_sizes(self):
        return [self.num_hidden] * (self.num_layers * self._dirs * (2 if self.mode == "lstm" else 1))

    def __call__(self, inputs, states):
        raise LoomError(_abi.LOOM_ERR_INVALID_ARGUMENT,
                        "FusedRNNCell '%s': runs whole sequences; call unroll" % self._prefix)

    def unroll(self, length, inputs, begin_state, layout="NTC", merge_outputs=False):
        self._check_states(begin_state)
        s, p, lstm = _sym(), self._prefix, self.mode == "lstm"
        n = self.num_layers * self._dirs
        hs = begin_state[0::2] if lstm else begin_state
        data = s.SwapAxis(inputs, dim1=0, dim2=1, name=p + "swap_in") if layout == "NTC" else inputs
        args = [data, self.parameters, _merge(hs, "TNC", p + "begin_h_")]
        if lstm:
            args.append(_merge(begin_state[1::2], "TNC", p + "begin_c_"))
        rnn = s.RNN(*args, state_size=self.num_hidden, num_layers=self.num_layers, mode=self.mode,
                    bidirectional=self.bidirectional, p=self.dropout, state_outputs=True, name=p + "rnn")
        seq = s.SwapAxis(rnn[0], dim1=0, dim2=1, name=p + "swap_out") if layout == "NTC" else rnn[0]

        def unstack(x, what):
            parts = s.SliceChannel(x, num_outputs=n, axis=0, squeeze_axis=True, name=p + what)
            return [parts[i] for i in range(n)]
        hout = unstack(rnn[1], "final_h")
        states = [x for pair in zip(hout, unstack(rnn[2], "final_c")) for x in pair] if lstm else hout
        if merge_outputs:
            return seq, states
        steps = s.SliceChannel(seq, num_outputs=length, axis=1 if layout == "NTC" else 0, squeeze_axis=True,
                               name=p + "out_split")
        return [steps[t] for t in range(length)], states

    def unfuse(self):
        """The same layers as separate cells (not for bidirectional stacks)."""
        if self.bidirectional:
            raise LoomError(_abi.LOOM_ERR_INVALID_ARGUMENT, "FusedRNNCell '%s': a bidirectional stack has no unfused form"
                            % self._prefix)
        make = {"lstm": LSTMCell, "gru": GRUCell}
        seq = SequentialRNNCell(self._prefix, fuse=False)
        for cp in self.cell_prefixes:
            seq.add(make[self.mode](self.num_hidden, prefix=cp) if self.mode in make
                    else RNNCell(self.num_hidden, self.mode[4:], prefix=cp))
        return seq

    def _pieces(self, input_size):
        g, h, d = _MODES[self.mode] * self.num_hidden, self.num_hidden, self._dirs

        def name(l, k):
            return self.cell_prefixes[l] if d == 1 else "%s%s_" % (self.cell_prefixes[l], "lr"[k])
        out = []
        for l in range(self.num_layers):
            for k in range(d):
                out += [(name(l, k) + "i2h_weight", (g, input_size if l == 0 else d * h)),
                        (name(l, k) + "h2h_weight", (g, h))]
        for l in range(self.num_layers):
            for k in range(d):
                out += [(name(l, k) + "i2h_bias", (g,)), (name(l, k) + "h2h_bias", (g,))]
        return out

    def unpack_weights(self, args):
        """Splits '<prefix>parameters' into the cells' arrays (native slices); other entries pass."""
        key = self._prefix + "parameters"
        if key not in args:
            raise LoomError(_abi.LOOM_ERR_NOT_FOUND, "unpack_weights: no '%s' among %s" % (key, ", ".join(args)))
        flat = args[key]
        total, g, h, d = flat.shape[0], _MODES[self.mode] * self.num_hidden, self.num_hidden, self._dirs
        rest = total - (self.num_layers - 1) * d * g * (d * h + h + 2)
        if rest <= 0 or rest % (d * g) or rest // (d * g) - h - 2 <= 0:
            raise LoomError(_abi.LOOM_ERR_SHAPE, "unpack_weights: %d values do not fit %d layer(s) of %d (%s)"
                            % (total, self.num_layers, h, self.mode))
        out = {k: v for k, v in args.items() if k != key}
        at = 0
        for name, shape in self._pieces(rest // (d * g) - h - 2):
            size = shape[0] * (shape[1] if len(shape) > 1 else 1)
            piece = _invoke("slice", [flat], {"begin": (at,), "end": (at + size,)})
            out[name] = _invoke("reshape", [piece], {"shape": shape})
            at += size
        return out

    def pack_weights(self, args):
        """Joins the cells' arrays into '<prefix>parameters' (native reshape and concat)."""
        first = self._pieces(1)[0][0]
        if first not in args:
            raise LoomError(_abi.LOOM_ERR_NOT_FOUND, "pack_weights: no '%s' among %s" % (first, ", ".join(args)))
        pieces = self._pieces(args[first].shape[-1])
        parts = []
        for name, shape in pieces:
            if name not in args:
                raise LoomError(_abi.LOOM_ERR_NOT_FOUND, "pack_weights: no '%s' among %s" % (name, ", ".join(args)))
            if tuple(args[name].shape) != tuple(shape):
                raise LoomError(_abi.LOOM_ERR_SHAPE, "pack_weights: '%s' has shape %s, expected %s"
                                % (name, tuple(args[name].shape), tuple(shape)))
            parts.append(_invoke("reshape", [args[name]], {"shape": (-1,)}))
        out = {k: v for k, v in args.items() if k not in dict(pieces)}
        out[self._prefix + "parameters"] = _invoke("Concat", parts, {"num_args": len(parts), "dim": 0})
        return out


__all__ = ["BaseRNNCell", "RNNCell", "LSTMCell", "GRUCell", "SequentialRNNCell", "FusedRNNCell"]
