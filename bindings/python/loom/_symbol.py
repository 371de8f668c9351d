"""Symbols, executors and a small Module, over the loom_symbol_* and
loom_executor_* ABI."""
import ctypes
import json
import os

import numpy as np

from . import _abi
from . import (_LIB, _check, _strs, _invoke, _op_handle, _format, _dtype_code, NDArray, LoomError,
               cpu)


def _shape_args(shapes):
    names = list(shapes)
    ndims = (ctypes.c_int32 * max(len(names), 1))(*[len(shapes[n]) for n in names])
    flat = [int(d) for n in names for d in shapes[n]]
    dims = (ctypes.c_int64 * max(len(flat), 1))(*flat)
    return names, ndims, dims


class Symbol:
    """A symbolic graph with one or more outputs."""

    def __init__(self, handle):
        self._h = handle if isinstance(handle, ctypes.c_void_p) else ctypes.c_void_p(handle)

    def __del__(self):
        if getattr(self, "_h", None) and self._h.value:
            _LIB.loom_symbol_free(self._h)
            self._h = ctypes.c_void_p()

    @property
    def handle(self):
        return self._h

    @staticmethod
    def variable(name, shape=None, lr_mult=None, wd_mult=None):
        out = ctypes.c_void_p()
        _check(_LIB.loom_symbol_variable(ctypes.byref(out), name.encode()))
        s = Symbol(out)
        if shape is not None:
            s.set_attr("__shape__", _format(tuple(shape)))
        if lr_mult is not None:
            s.set_attr("lr_mult", repr(float(lr_mult)))
        if wd_mult is not None:
            s.set_attr("wd_mult", repr(float(wd_mult)))
        return s

    @staticmethod
    def create(op, name, inputs, named, params):
        """Applies `op` to positional `inputs` or to `named` inputs {input name: Symbol}."""
        keys = [k for k, v in params.items() if v is not None]
        vals = [_format(params[k]) for k in keys]
        if named is not None:
            names = list(named)
            syms = [named[n] for n in names]
            cnames = _strs(names)
        else:
            syms, cnames = list(inputs), None
        hs = (ctypes.c_void_p * max(len(syms), 1))(*[s.handle.value for s in syms])
        out = ctypes.c_void_p()
        _check(_LIB.loom_symbol_create(ctypes.byref(out), _op_handle(op), (name or "").encode(), len(syms), hs,
                                       cnames, len(keys), _strs(keys), _strs(vals)))
        return Symbol(out)

    @staticmethod
    def group(*symbols):
        hs = (ctypes.c_void_p * len(symbols))(*[s.handle.value for s in symbols])
        out = ctypes.c_void_p()
        _check(_LIB.loom_symbol_group(ctypes.byref(out), hs, len(symbols)))
        return Symbol(out)

    def __getitem__(self, index):
        out = ctypes.c_void_p()
        _check(_LIB.loom_symbol_get_output(ctypes.byref(out), self._h, index))
        return Symbol(out)

    def _list(self, kind):
        js = ctypes.c_char_p()
        _check(_LIB.loom_symbol_list(ctypes.byref(js), self._h, kind))
        return json.loads(js.value.decode())

    def list_arguments(self):
        return self._list(_abi.LOOM_LIST_ARGUMENTS)

    def list_outputs(self):
        return self._list(_abi.LOOM_LIST_OUTPUTS)

    def list_auxiliary_states(self):
        return self._list(_abi.LOOM_LIST_AUXILIARY_STATES)

    def attr_dict(self):
        return self._list(_abi.LOOM_LIST_ATTRIBUTES)

    def set_attr(self, key, value):
        _check(_LIB.loom_symbol_set_attr(self._h, key.encode(), str(value).encode()))
        return self

    def tojson(self):
        js = ctypes.c_char_p()
        _check(_LIB.loom_symbol_to_json(ctypes.byref(js), self._h))
        return js.value.decode()

    @staticmethod
    def fromjson(text):
        out = ctypes.c_void_p()
        _check(_LIB.loom_symbol_from_json(ctypes.byref(out), text.encode()))
        return Symbol(out)

    def save(self, path):
        _check(_LIB.loom_symbol_save(self._h, path.encode()))

    @staticmethod
    def load(path):
        out = ctypes.c_void_p()
        _check(_LIB.loom_symbol_load(ctypes.byref(out), path.encode()))
        return Symbol(out)

    def infer_shape(self, **shapes):
        """(arg_shapes, out_shapes, aux_shapes) from known input shapes; None where unknown."""
        names, ndims, dims = _shape_args(shapes)
        js = ctypes.c_char_p()
        _check(_LIB.loom_symbol_infer(ctypes.byref(js), self._h, len(names), _strs(names), ndims, dims, None))
        r = json.loads(js.value.decode())
        tup = lambda l: [tuple(s) if s is not None else None for s in l]  # noqa: E731
        return tup(r["arg_shapes"]), tup(r["out_shapes"]), tup(r["aux_shapes"])

    def to_dot(self, title="plot", hide_weights=True, **shapes):
        """The network in Graphviz's DOT language, drawn as MXNet's mx.viz.plot_network
        draws it (computed natively); edges are labelled with shapes when input shapes
        are given."""
        names, ndims, dims = _shape_args(shapes)
        js = ctypes.c_char_p()
        _check(_LIB.loom_symbol_to_dot(ctypes.byref(js), self._h, len(names), _strs(names), ndims, dims,
                                       title.encode(), 1 if hide_weights else 0))
        return js.value.decode()

    def plot(self, path, title="plot", **shapes):
        """Draws the network (to_dot) into an .svg, .png or .pdf file with Graphviz's dot
        program, written whole or not at all."""
        import os
        import subprocess
        fmt = os.path.splitext(path)[1].lstrip(".").lower()
        if fmt not in ("svg", "png", "pdf"):
            raise LoomError(_abi.LOOM_ERR_INVALID_ARGUMENT, "Symbol.plot: '%s' must end in .svg, .png or .pdf" % path)
        text = self.to_dot(title=title, **shapes)
        tmp = "%s.tmp%d" % (path, os.getpid())
        try:
            r = subprocess.run(["dot", "-T" + fmt, "-o", tmp], input=text.encode(), capture_output=True)
        except FileNotFoundError:
            raise LoomError(_abi.LOOM_ERR_BACKEND_UNAVAILABLE, "Symbol.plot: Graphviz's 'dot' program was not found; install Graphviz "
                            "(Debian: sudo apt-get install -y graphviz), or render to_dot()'s text elsewhere")
        if r.returncode != 0 or not os.path.exists(tmp):
            if os.path.exists(tmp):
                os.remove(tmp)
            raise LoomError(_abi.LOOM_ERR_IO, "Symbol.plot: Graphviz could not write '%s': %s" % (path, r.stderr.decode().strip()))
        os.replace(tmp, path)

    def summary(self, line_length=120, **shapes):
        """MXNet's mx.viz.print_summary as text (computed natively)."""
        names, ndims, dims = _shape_args(shapes)
        js = ctypes.c_char_p()
        _check(_LIB.loom_symbol_summary(ctypes.byref(js), self._h, len(names), _strs(names), ndims, dims,
                                        line_length))
        return js.value.decode()

    def fold_batchnorm(self, arg_params, aux_params=None):
        """For prediction: (symbol, arg_params, aux_params, folded) with each BatchNorm on the
        output of a Convolution or FullyConnected that nothing else reads folded into that
        layer's weight and bias (computed natively, once)."""
        from . import _take_list
        params = dict(arg_params)
        params.update(aux_params or {})
        names = list(params)
        hs = (ctypes.c_void_p * max(len(names), 1))(*[params[n].handle.value for n in names])
        out, lst, folded = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_int32()
        _check(_LIB.loom_symbol_fold_batchnorm(ctypes.byref(out), ctypes.byref(lst), ctypes.byref(folded), self._h,
                                               len(names), _strs(names), hs))
        s = Symbol(out)
        got = _take_list(lst)
        aux = set(s.list_auxiliary_states())
        return (s, {k: v for k, v in got.items() if k not in aux}, {k: v for k, v in got.items() if k in aux},
                folded.value)

    def simple_bind(self, ctx=None, grad_req="write", dtype="float32", **shapes):
        """An executor with arrays allocated from the given input shapes."""
        ctx = ctx or cpu()
        names, ndims, dims = _shape_args(shapes)
        dts = (ctypes.c_int32 * max(len(names), 1))(*[_dtype_code(dtype)] * len(names))
        reqs = {"null": _abi.LOOM_GRAD_NULL, "write": _abi.LOOM_GRAD_WRITE, "add": _abi.LOOM_GRAD_ADD}
        if isinstance(grad_req, dict):
            rn = list(grad_req)
            rv = (ctypes.c_int32 * max(len(rn), 1))(*[reqs[grad_req[n]] for n in rn])
            default = _abi.LOOM_GRAD_WRITE
        else:
            rn, rv, default = [], None, reqs[grad_req]
        out = ctypes.c_void_p()
        _check(_LIB.loom_executor_simple_bind(ctypes.byref(out), self._h, ctx.dev_type, ctx.dev_id, len(names),
                                              _strs(names), ndims, dims, dts, len(rn), _strs(rn), rv, default))
        return Executor(out, self)

    def _binary(self, other, op, scalar_op, reverse=False):
        if isinstance(other, Symbol):
            a, b = (other, self) if reverse else (self, other)
            return Symbol.create(op, None, [a, b], None, {})
        return Symbol.create(scalar_op, None, [self], None, {"scalar": float(other)})

    def __add__(self, o): return self._binary(o, "add", "add_scalar")
    def __radd__(self, o): return self._binary(o, "add", "add_scalar")
    def __sub__(self, o): return self._binary(o, "subtract", "subtract_scalar")
    def __rsub__(self, o): return self._binary(o, "subtract", "rsubtract_scalar", reverse=True)
    def __mul__(self, o): return self._binary(o, "multiply", "multiply_scalar")
    def __rmul__(self, o): return self._binary(o, "multiply", "multiply_scalar")
    def __truediv__(self, o): return self._binary(o, "divide", "divide_scalar")

    def __repr__(self):
        return "<Symbol %s>" % ", ".join(self.list_outputs())


class Executor:
    """A symbol bound to arrays: forward, backward, and its arrays by name."""

    def __init__(self, handle, symbol):
        self._h, self.symbol = handle, symbol

    def __del__(self):
        if getattr(self, "_h", None) and self._h.value:
            _LIB.loom_executor_free(self._h)
            self._h = ctypes.c_void_p()

    def _arrays(self, kind):
        n = ctypes.c_int32()
        _check(_LIB.loom_executor_count(ctypes.byref(n), self._h, kind))
        out = []
        for i in range(n.value):
            h = ctypes.c_void_p()
            _check(_LIB.loom_executor_get(ctypes.byref(h), self._h, kind, i))
            out.append(NDArray(h) if h.value else None)
        return out

    @property
    def arg_arrays(self):
        return self._arrays(_abi.LOOM_EXEC_ARGUMENT)

    @property
    def grad_arrays(self):
        return self._arrays(_abi.LOOM_EXEC_GRADIENT)

    @property
    def aux_arrays(self):
        return self._arrays(_abi.LOOM_EXEC_AUXILIARY_STATE)

    @property
    def outputs(self):
        return self._arrays(_abi.LOOM_EXEC_OUTPUT)

    @property
    def arg_dict(self):
        return dict(zip(self.symbol.list_arguments(), self.arg_arrays))

    @property
    def grad_dict(self):
        return {n: g for n, g in zip(self.symbol.list_arguments(), self.grad_arrays) if g is not None}

    @property
    def aux_dict(self):
        return dict(zip(self.symbol.list_auxiliary_states(), self.aux_arrays))

    def copy_params_from(self, arg_params, aux_params=None, allow_extra_params=False):
        """Copies parameter values into the bound arrays, as MXNet's Executor.copy_params_from:
        a name the executor does not have is an error unless allow_extra_params."""
        for params, arrays in ((arg_params, self.arg_dict), (aux_params or {}, self.aux_dict)):
            for name, value in params.items():
                if name not in arrays:
                    if allow_extra_params:
                        continue
                    raise LoomError(_abi.LOOM_ERR_INVALID_ARGUMENT,
                                    "copy_params_from: '%s' is not an argument or auxiliary state of the "
                                    "executor" % name)
                arrays[name].copyfrom(value.asnumpy() if isinstance(value, NDArray) else np.asarray(value))

    def forward(self, is_train=False, **inputs):
        for name, value in inputs.items():
            self.arg_dict[name].copyfrom(np.asarray(value))
        _check(_LIB.loom_executor_forward(self._h, 1 if is_train else 0))
        return self.outputs

    def backward(self, head_grads=None):
        if head_grads is None:
            _check(_LIB.loom_executor_backward(self._h, 0, None))
            return
        heads = head_grads if isinstance(head_grads, (list, tuple)) else [head_grads]
        hs = (ctypes.c_void_p * len(heads))(*[h.handle.value for h in heads])
        _check(_LIB.loom_executor_backward(self._h, len(heads), hs))


def _ratio(counts):
    """counts[0] / counts[1], divided natively."""
    ratio = _invoke("divide", [_invoke("slice", [counts], {"begin": (0,), "end": (1,)}),
                               _invoke("slice", [counts], {"begin": (1,), "end": (2,)})], {})
    return float(ratio.asnumpy()[0])


def _aggregation_size():
    """Weights per aggregated SGD update: LOOM_OPTIMIZER_AGGREGATION_SIZE, 4 by default, in
    [1, 60] (the most multi_sgd_update takes)."""
    text = os.environ.get("LOOM_OPTIMIZER_AGGREGATION_SIZE", "4")
    try:
        n = int(text)
    except ValueError:
        n = 0
    if not 1 <= n <= 60:
        raise LoomError(_abi.LOOM_ERR_INVALID_ARGUMENT, "LOOM_OPTIMIZER_AGGREGATION_SIZE must be an integer "
                        "in [1, 60], got %r" % (text,))
    return n


class Module:
    """A small training loop: a symbol with a `data` input and a label, trained with
    SGD (the native multi_sgd_mom_update op, LOOM_OPTIMIZER_AGGREGATION_SIZE weights a call)
    over the native batch iterator."""

    def __init__(self, symbol, data_name="data", label_name="softmax_label"):
        self.symbol, self.data_name, self.label_name = symbol, data_name, label_name
        self.executor = None

    def _bind(self, data_shape, label_shape):
        shapes = {self.data_name: data_shape, self.label_name: label_shape}
        reqs = {n: "null" for n in shapes}
        self.executor = self.symbol.simple_bind(grad_req=reqs, **shapes)
        for name, arr in self.executor.arg_dict.items():
            if name in shapes:
                continue
            if name.endswith("weight"):
                _invoke("init_xavier", [], {"shape": arr.shape, "dtype": arr.dtype}, out=arr)
            else:
                _invoke("zeros", [], {"shape": arr.shape, "dtype": arr.dtype}, out=arr)

    def bind(self, data_shape, label_shape):
        """Binds the network for batches of these shapes, parameters initialised."""
        self._bind(tuple(data_shape), tuple(label_shape))

    def _params(self):
        ex = self.executor
        if ex is None:
            raise LoomError(_abi.LOOM_ERR_INVALID_ARGUMENT, "Module: not bound yet (call bind or fit first)")
        args = {n: a for n, a in ex.arg_dict.items() if n not in (self.data_name, self.label_name)}
        return args, dict(ex.aux_dict)

    def get_params(self):
        """(arg_params, aux_params): the bound network's parameters by name, as MXNet's
        Module.get_params (the arrays themselves, not copies)."""
        return self._params()

    def save_params(self, path):
        """Writes the parameters as MXNet's .params (arg:/aux: keys)."""
        from . import save
        args, aux = self._params()
        save(path, {**{"arg:" + n: a for n, a in args.items()}, **{"aux:" + n: a for n, a in aux.items()}})

    def load_params(self, path):
        """Reads a .params file into the bound network; a name the network lacks, a
        parameter missing from the file or one of another shape is an error naming it."""
        from . import load
        args, aux = self._params()
        loaded = load(path)
        for key in loaded:
            kind, _, name = key.partition(":")
            if kind not in ("arg", "aux") or not name:
                raise LoomError(_abi.LOOM_ERR_IO, "load_params: entry '%s' in %s is neither arg: nor aux:" % (key, path))
            dst = (args if kind == "arg" else aux).get(name)
            if dst is None:
                raise LoomError(_abi.LOOM_ERR_NOT_FOUND, "load_params: %s holds '%s', which this network does not have "
                                "(its parameters: %s)" % (path, name, ", ".join(sorted(args) + sorted(aux))))
            if tuple(dst.shape) != tuple(loaded[key].shape):
                raise LoomError(_abi.LOOM_ERR_SHAPE, "load_params: parameter '%s' is %s in this network but %s in %s"
                                % (name, tuple(dst.shape), tuple(loaded[key].shape), path))
        for kind, have in (("arg", args), ("aux", aux)):
            for name in have:
                if kind + ":" + name not in loaded:
                    raise LoomError(_abi.LOOM_ERR_NOT_FOUND, "load_params: %s has no '%s:%s'" % (path, kind, name))
        for key, arr in loaded.items():
            kind, _, name = key.partition(":")
            _check(_LIB.loom_ndarray_copy_to((args if kind == "arg" else aux)[name].handle, arr.handle))

    def _batches(self, x, y, batch_size, shuffle):
        it = ctypes.c_void_p()
        _check(_LIB.loom_dataiter_create(ctypes.byref(it), x.handle, y.handle, batch_size, 1 if shuffle else 0,
                                         _abi.LOOM_LAST_BATCH_DISCARD, 2))
        try:
            while True:
                has, d, lab, pad = ctypes.c_int32(), ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_int64()
                _check(_LIB.loom_dataiter_next(ctypes.byref(has), ctypes.byref(d), ctypes.byref(lab),
                                               ctypes.byref(pad), it))
                if not has.value:
                    return
                yield NDArray(d), NDArray(lab)
        finally:
            _LIB.loom_dataiter_free(it)

    def fit(self, x, y, batch_size=100, epochs=1, lr=0.1, momentum=0.9, wd=0.0, log=print, rescale_grad=None,
            arg_params=None, aux_params=None):
        """Trains on arrays x (samples first) and y; returns the last epoch's training accuracy.
        Gradients are rescaled by rescale_grad, by default 1/batch_size as MXNet's Module does.
        arg_params and aux_params (dicts name -> NDArray, as MXNet's fit takes them) replace
        the initial values of the parameters they name (fine-tuning)."""
        if rescale_grad is None:
            rescale_grad = 1.0 / batch_size
        self._bind((batch_size,) + x.shape[1:], (batch_size,) + y.shape[1:])
        ex = self.executor
        if arg_params or aux_params:
            ex.copy_params_from(arg_params or {}, aux_params or {})
        names = [n for n in self.symbol.list_arguments() if n not in (self.data_name, self.label_name)]
        args, grads = ex.arg_dict, ex.grad_dict
        moms = {n: _invoke("zeros", [], {"shape": args[n].shape, "dtype": args[n].dtype}) for n in names}
        group = _aggregation_size()
        acc = 0.0
        for epoch in range(1, epochs + 1):
            counts = _invoke("zeros", [], {"shape": (2,), "dtype": "float64"})
            for d, lab in self._batches(x, y, batch_size, True):
                _check(_LIB.loom_ndarray_copy_to(args[self.data_name].handle, d.handle))
                _check(_LIB.loom_ndarray_copy_to(args[self.label_name].handle, lab.handle))
                ex.forward(is_train=True)
                ex.backward()
                # MXNet's Module updates its weights in groups (multi_sgd_mom_update), with
                # the bits of one sgd_mom_update per weight.
                for k in range(0, len(names), group):
                    part = names[k:k + group]
                    _invoke("multi_sgd_mom_update", [a for n in part for a in (args[n], grads[n], moms[n])],
                            {"lrs": [lr] * len(part), "wds": [wd] * len(part), "momentum": momentum,
                             "rescale_grad": rescale_grad, "num_weights": len(part)},
                            out=[a for n in part for a in (args[n], moms[n])])
                _invoke("add", [counts, _invoke("accuracy_count", [ex.outputs[0], lab], {})], {}, out=counts)
            acc = _ratio(counts)
            if log:
                log("epoch %d: training accuracy %.4f" % (epoch, acc))
        return acc

    def score(self, x, y, batch_size=100):
        """Accuracy on x, y (counted by the native accuracy_count op)."""
        counts = _invoke("zeros", [], {"shape": (2,), "dtype": "float64"})
        ex = self.executor
        dst = ex.arg_dict[self.data_name]  # keep the wrapper (and its handle) alive
        for d, lab in self._batches(x, y, batch_size, False):
            _check(_LIB.loom_ndarray_copy_to(dst.handle, d.handle))
            out = ex.forward(is_train=False)[0]
            _invoke("add", [counts, _invoke("accuracy_count", [out, lab], {})], {}, out=counts)
        return _ratio(counts)


__all__ = ["Symbol", "Executor", "Module", "LoomError"]
