"""Networks written as Python classes (MXNet Gluon's blocks), on the same native
engine as the C# Loom.Gluon: Block (imperative), HybridBlock (hybridize() records
the next call's native op calls into a symbol and runs later calls through a
cached, memory-planned executor, one per input signature), layers, losses and a
Trainer. Parameter names, the trace and the exported files are the same as C#'s,
so a network exported from either loads in both and in MXNet 1.9."""
import ctypes
import re
import threading
from functools import reduce

from . import _abi, _invoke, _check, _LIB, LoomError, NDArray, cpu, nd, zeros, save, load
from ._symbol import Symbol, _aggregation_size

_COUNTS = {}


class _TraceState(threading.local):
    """Per thread, as the native trace: the parameters declared as the open trace's variables."""
    declared = None


_trace = _TraceState()


def _next_name(counts, alias):
    n = counts.get(alias, 0)
    counts[alias] = n + 1
    return "%s%d" % (alias, n)


class _paused:
    """Ops run inside are not recorded by the open trace (a parameter's initialisation)."""

    def __enter__(self):
        self.prev = None
        if _trace.declared is not None:
            self.prev = ctypes.c_int32()
            _check(_LIB.loom_trace_pause(ctypes.byref(self.prev), 1))
        return self

    def __exit__(self, *exc):
        if self.prev is not None and _trace.declared is not None:
            _LIB.loom_trace_pause(None, self.prev.value)
        return False


def _first(r):
    """The op's first output (_invoke returns a list only for several outputs)."""
    return r[0] if isinstance(r, list) else r


def _shape_str(shape):
    return "(" + ",".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


class Parameter:
    """A learnable array named by its block's prefix (dense0_weight). Zeros in the shape
    are inferred at the first forward; data() before then raises, naming the parameter.
    initialize(ctx=[cpu(0), cpu(1)]) keeps one identical copy per device (data parallelism):
    data(ctx) is the copy on ctx, and layers use the copy on their input's device."""

    def __init__(self, owner, local_name, shape, dtype="float32", grad_req="write", init=None):
        self.owner, self.local_name = owner, local_name
        self._shape = tuple(shape)
        self.dtype, self.grad_req, self.init = dtype, grad_req, init
        self._arrays = []     # one per context, in the order initialize() gave them
        self._ctxs = None
        self._pending = None

    @property
    def name(self):
        return self.owner.prefix + self.local_name

    @property
    def shape(self):
        return self._shape

    def _known(self):
        return len(self._shape) > 0 and all(d > 0 for d in self._shape)

    def infer_shape(self, shape, source):
        shape = tuple(shape)
        ok = len(shape) == len(self._shape) or not self._shape
        ok = ok and all(a == 0 or b == 0 or a == b for a, b in zip(self._shape, shape))
        if not ok:
            raise LoomError(_abi.LOOM_ERR_SHAPE, "Parameter '%s' has shape %s, but %s needs %s"
                            % (self.name, _shape_str(self._shape), source, _shape_str(shape)))
        self._shape = shape if not self._shape else tuple(a if a > 0 else b for a, b in zip(self._shape, shape))
        if not self._arrays and self._pending is not None and self._known():
            self._materialize()

    def initialize(self, init=None, ctx=None, force_reinit=False):
        """Fills the parameter (now, or at the first forward when its shape is not known yet)
        on each context of ctx (a Context or a list; default cpu(0)), one identical copy each."""
        if self._arrays and not force_reinit:
            return
        ctxs = [cpu()] if ctx is None else list(ctx) if isinstance(ctx, (list, tuple)) else [ctx]
        if not ctxs or len(set(ctxs)) != len(ctxs):
            raise LoomError(_abi.LOOM_ERR_INVALID_ARGUMENT, "Parameter '%s': initialize needs distinct contexts, "
                            "got %s" % (self.name, ctxs))
        self._pending = self.init or init or "uniform"
        if self._arrays and ctxs != self._ctxs:
            self._arrays = []
        self._ctxs = ctxs
        if self._arrays:
            with _paused():
                self._fill()
        elif self._known():
            self._materialize()

    def _fill(self):
        """Fills the first copy by the initializer and copies it to the others."""
        init, n, first = self._pending, self.name, self._arrays[0]
        if callable(init):
            init(n, first)
        elif n.endswith(("bias", "beta", "running_mean", "moving_mean")) or init == "zeros":
            _invoke("full", [], {"shape": self._shape, "dtype": self.dtype, "value": 0.0}, out=first)
        elif n.endswith(("gamma", "running_var", "moving_var")) or init == "ones":
            _invoke("full", [], {"shape": self._shape, "dtype": self.dtype, "value": 1.0}, out=first)
        elif init == "xavier":
            _invoke("init_xavier", [], {"shape": self._shape, "dtype": self.dtype}, out=first)
        else:  # Gluon's default: uniform in [-0.07, 0.07]
            _invoke("random_uniform", [], {"low": -0.07, "high": 0.07, "shape": self._shape,
                                           "dtype": self.dtype}, out=first)
        for a in self._arrays[1:]:
            _invoke("copy", [first], {}, out=a)

    def _materialize(self, fill=True):
        with _paused():
            self._arrays = [zeros(self._shape, self.dtype, ctx=c) for c in (self._ctxs or [cpu()])]
            if fill:
                self._fill()
            for a in self._arrays:
                a.attach_grad(self.grad_req)

    def _check_ready(self):
        if not self._arrays:
            if self._pending is None:
                raise LoomError(_abi.LOOM_ERR_INVALID_ARGUMENT, "Parameter '%s' has not been initialized; "
                                "call initialize() on its block first" % self.name)
            if not self._known():
                raise LoomError(_abi.LOOM_ERR_INVALID_ARGUMENT,
                                "Parameter '%s' has not been initialized yet: its shape %s is inferred from "
                                "the first forward (deferred initialization)" % (self.name, _shape_str(self._shape)))
            self._materialize()

    def data(self, ctx=None):
        """The copy on ctx (default: the only copy; with several, data(ctx) must name one)."""
        self._check_ready()
        if ctx is None:
            if len(self._arrays) > 1:
                raise LoomError(_abi.LOOM_ERR_INVALID_ARGUMENT, "Parameter '%s' has a copy on each of %s; "
                                "call data(ctx) or list_data()" % (self.name, self._ctxs))
            arr = self._arrays[0]
        else:
            try:
                arr = self._arrays[self._ctxs.index(ctx)] if self._ctxs else None
            except ValueError:
                arr = None
            if arr is None:
                raise LoomError(_abi.LOOM_ERR_INVALID_ARGUMENT, "Parameter '%s' was initialized on %s, not on %s"
                                % (self.name, self._ctxs or [cpu()], ctx))
        declared = _trace.declared
        if declared is not None and self.name not in declared:
            _check(_LIB.loom_trace_input(arr.handle, self.name.encode()))
            declared[self.name] = self
        return arr

    def list_data(self):
        self._check_ready()
        return list(self._arrays)

    def list_ctx(self):
        return list(self._ctxs or [cpu()])

    def grad(self, ctx=None):
        if self.grad_req == "null":
            raise LoomError(_abi.LOOM_ERR_INVALID_ARGUMENT, "Parameter '%s' has no gradient" % self.name)
        return self.data(ctx).grad

    def list_grad(self):
        if self.grad_req == "null":
            raise LoomError(_abi.LOOM_ERR_INVALID_ARGUMENT, "Parameter '%s' has no gradient" % self.name)
        return [a.grad for a in self.list_data()]

    def set_data(self, value):
        """Copies value into every copy."""
        self.infer_shape(value.shape, "the value")
        if not self._arrays:
            self._pending = self._pending or "zeros"
            self._materialize(fill=False)
        for a in self._arrays:
            _invoke("copy", [value], {}, out=a)

    def __repr__(self):
        return "Parameter %s %s %s" % (self.name, _shape_str(self._shape), self.dtype)


class ParameterDict(dict):
    """Parameters by full name, in registration order."""

    def __init__(self, prefix=""):
        super().__init__()
        self.prefix = prefix

    def initialize(self, init=None, ctx=None, force_reinit=False):
        for p in self.values():
            p.initialize(init, ctx, force_reinit)

    def select(self, pattern):
        d = ParameterDict(self.prefix)
        for k, p in self.items():
            if re.search(pattern, k):
                d[k] = p
        return d

    def save(self, path, strip_prefix=""):
        save(path, {(k[len(strip_prefix):] if strip_prefix and k.startswith(strip_prefix) else k): p.list_data()[0]
                    for k, p in self.items()})

    def load(self, path, allow_missing=False, ignore_extra=False, restore_prefix=""):
        loaded = {}
        for k, v in load(path).items():
            loaded[restore_prefix + (k[4:] if k.startswith(("arg:", "aux:")) else k)] = v
        extra = [k for k in loaded if k not in self]
        if extra and not ignore_extra:
            raise LoomError(_abi.LOOM_ERR_NOT_FOUND, "%s: %s not a parameter of the network" % (
                path, ", ".join("'%s' %s" % (k, _shape_str(loaded[k].shape)) for k in extra)))
        missing = [p for k, p in self.items() if k not in loaded]
        if missing and not allow_missing:
            raise LoomError(_abi.LOOM_ERR_NOT_FOUND, "%s: no value for %s" % (
                path, ", ".join("'%s' %s" % (p.name, _shape_str(p.shape)) for p in missing)))
        for k, p in self.items():
            if k in loaded:
                v = loaded[k]
                if len(v.shape) != len(p.shape) or any(a and a != b for a, b in zip(p.shape, v.shape)):
                    raise LoomError(_abi.LOOM_ERR_SHAPE, "%s: parameter '%s' is %s, the file has %s"
                                    % (path, k, _shape_str(p.shape), _shape_str(v.shape)))
        for k, p in self.items():
            if k in loaded:
                p.set_data(loaded[k])

    def zero_grad(self):
        for p in self.values():
            if p.grad_req != "null" and p._arrays:
                for g in p.list_grad():
                    _invoke("full", [], {"shape": g.shape, "dtype": g.dtype, "value": 0.0}, out=g)


class Block:
    """A network piece as a class: parameters, children, and forward(). Prefixes are
    hierarchical (lenet0_dense0_); pass params=other.collect_params() to share."""

    def __init__(self, prefix=None, params=None):
        self._explicit = prefix is not None
        self._local = prefix if prefix is not None else _next_name(_COUNTS, self._alias()) + "_"
        self._parent = None
        self._children = []
        self._params = []
        self._shared = params

    def _alias(self):
        return type(self).__name__.lower()

    @property
    def prefix(self):
        return (self._parent.prefix if self._parent else "") + self._local

    @property
    def name(self):
        return self.prefix[:-1] if self.prefix.endswith("_") else self.prefix

    def param(self, name, shape, dtype="float32", grad_req="write", init=None):
        if self._shared is not None and self._shared.prefix + name in self._shared:
            p = self._shared[self._shared.prefix + name]
            p.infer_shape(shape, "%s (sharing it)" % self.name)
        else:
            p = Parameter(self, name, shape, dtype, grad_req, init)
        self._params.append(p)
        return p

    def register(self, child):
        if child._parent is not None:
            raise LoomError(_abi.LOOM_ERR_INVALID_ARGUMENT, "%s: the block '%s' already has a parent"
                            % (self.name, child.name))
        child._parent = self
        self._children.append(child)
        root = self
        while root._parent is not None:
            root = root._parent
        _renumber(root, {})
        return child

    def collect_params(self, select=None):
        d = ParameterDict(self.prefix)

        def walk(b):
            for p in b._params:
                d[p.name] = p
            for c in b._children:
                walk(c)
        walk(self)
        return d.select(select) if select else d

    def initialize(self, init=None, ctx=None, force_reinit=False):
        """Initializes every parameter on ctx (a Context or a list: one copy per device)."""
        self.collect_params().initialize(init, ctx, force_reinit)

    def save_parameters(self, path):
        self.collect_params().save(path, strip_prefix=self.prefix)

    def load_parameters(self, path, allow_missing=False, ignore_extra=False):
        self.collect_params().load(path, allow_missing, ignore_extra, restore_prefix=self.prefix)

    def __call__(self, *inputs):
        return self.forward(*inputs)

    def forward(self, *inputs):
        raise NotImplementedError("%s does not define forward()" % type(self).__name__)


def _renumber(block, scope):
    """Automatic prefixes count per name scope (MXNet's rule): a block with an empty
    prefix opens no scope, so its children count in the enclosing one."""
    own = scope if block._local == "" and block._parent is not None else {}
    for c in block._children:
        if not c._explicit:
            c._local = _next_name(own, c._alias()) + "_"
        _renumber(c, own)


class HybridBlock(Block):
    """A block whose hybrid_forward() can run as a planned graph after hybridize():
    the next call is traced natively into a symbol; later calls with the same input
    shapes and dtypes run it through one cached executor. Python control flow is
    traced for the values seen at that call."""

    def __init__(self, prefix=None, params=None):
        super().__init__(prefix, params)
        self._active = False
        self._cache = {}
        self._last = None

    def hybridize(self, active=True):
        def walk(b):
            if isinstance(b, HybridBlock):
                b._active = active
                b._cache = {}
                b._last = None
            for c in b._children:
                walk(c)
        walk(self)

    def hybrid_forward(self, *inputs):
        raise NotImplementedError("%s does not define hybrid_forward()" % type(self).__name__)

    def forward(self, *inputs):
        if _trace.declared is not None:
            _check(_LIB.loom_trace_scope_push(self.prefix.encode()))
            try:
                return self.hybrid_forward(*inputs)
            finally:
                _LIB.loom_trace_scope_pop()
        if not self._active:
            return self.hybrid_forward(*inputs)
        key = tuple((a.shape, a.dtype) for a in inputs) + (inputs[0].context if inputs else None,)
        entry = self._cache.get(key)
        if entry is None:
            return self._trace(inputs, key)
        self._last = entry
        return entry.invoke(inputs)

    def _trace(self, inputs, key):
        names = ["data"] if len(inputs) == 1 else ["data%d" % i for i in range(len(inputs))]
        _check(_LIB.loom_trace_begin())
        declared = {}
        _trace.declared = declared
        try:
            for a, n in zip(inputs, names):
                _check(_LIB.loom_trace_input(a.handle, n.encode()))
            _check(_LIB.loom_trace_scope_push(self.prefix.encode()))
            outs = self.hybrid_forward(*inputs)
            _check(_LIB.loom_trace_scope_pop())
            heads = list(outs) if isinstance(outs, (list, tuple)) else [outs]
            hs = (ctypes.c_void_p * len(heads))(*[h.handle.value for h in heads])
            sym = ctypes.c_void_p()
            _check(_LIB.loom_trace_end(ctypes.byref(sym), hs, len(heads)))
        except BaseException:
            _LIB.loom_trace_abort()
            raise
        finally:
            _trace.declared = None
        entry = _CachedGraph(Symbol(sym), names, declared)
        self._cache[key] = entry
        self._last = entry
        return outs

    def export(self, path, epoch=0):
        """Writes path-symbol.json and path-%04d.params (arg:/aux: names) of the last traced graph."""
        if self._last is None:
            raise LoomError(_abi.LOOM_ERR_INVALID_ARGUMENT,
                            "%s: export needs a traced graph; call hybridize() and run one forward first" % self.name)
        self._last.symbol.save("%s-symbol.json" % path)
        aux = set(self._last.symbol.list_auxiliary_states())
        save("%s-%04d.params" % (path, epoch),
             {("aux:" if n in aux else "arg:") + n: p.list_data()[0] for n, p in self._last.params})


    def export_onnx(self, path, *input_shapes, opset_version=13):
        """Writes the last traced graph with the current parameters as an ONNX model; the inputs
        are named as export names them (data, or data0, data1, ...) and take these shapes."""
        if self._last is None:
            raise LoomError(_abi.LOOM_ERR_INVALID_ARGUMENT,
                            "%s: export_onnx needs a traced graph; call hybridize() and run one forward first"
                            % self.name)
        from . import onnx
        names = ["data"] if len(input_shapes) == 1 else ["data%d" % i for i in range(len(input_shapes))]
        params = {n: p.list_data()[0] for n, p in self._last.params}
        return onnx.export_model(self._last.symbol, params, dict(zip(names, input_shapes)), path, opset_version)


class _CachedGraph:
    def __init__(self, symbol, data_names, declared):
        self.symbol = symbol
        self.op = ctypes.c_void_p()
        _check(_LIB.loom_cached_op_create(ctypes.byref(self.op), symbol.handle))
        nout = ctypes.c_int32()
        _check(_LIB.loom_cached_op_get_counts(None, ctypes.byref(nout), self.op))
        self.num_outputs = nout.value
        names = symbol.list_arguments() + symbol.list_auxiliary_states()
        self.sources = []
        self.params = []
        for n in names:
            if n in data_names:
                self.sources.append(data_names.index(n))
            else:
                self.sources.append(declared[n])
                self.params.append((n, declared[n]))

    def invoke(self, inputs):
        ctx = inputs[0].context if inputs else None
        arrays = [inputs[s] if isinstance(s, int) else s.data(ctx) for s in self.sources]
        ins = (ctypes.c_void_p * max(len(arrays), 1))(*[a.handle.value for a in arrays])
        outs = (ctypes.c_void_p * max(self.num_outputs, 1))()
        _check(_LIB.loom_cached_op_invoke(self.op, len(arrays), ins, self.num_outputs, outs))
        res = [NDArray(outs[i]) for i in range(self.num_outputs)]
        return res[0] if len(res) == 1 else res

    def __del__(self):
        if getattr(self, "op", None) is not None and self.op.value:
            _LIB.loom_cached_op_free(self.op)
            self.op = ctypes.c_void_p()


class SymbolBlock(HybridBlock):
    """A saved graph and its parameters as a block (MXNet Gluon's SymbolBlock): what
    export(), Module checkpoints or MXNet 1.9 wrote. It runs as one planned graph."""

    def __init__(self, symbol, input_names, shapes):
        super().__init__(prefix="")
        self._inputs = list(input_names)
        args = symbol.list_arguments()
        for n in self._inputs:
            if n not in args:
                raise LoomError(_abi.LOOM_ERR_NOT_FOUND, "SymbolBlock: the graph has no input '%s'; its arguments "
                                "are: %s" % (n, ", ".join(args)))
        aux = set(symbol.list_auxiliary_states())
        declared = {}
        for n in args + symbol.list_auxiliary_states():
            if n in self._inputs:
                continue
            if n not in shapes:
                raise LoomError(_abi.LOOM_ERR_NOT_FOUND, "SymbolBlock: no value for the graph's parameter '%s'" % n)
            declared[n] = self.param(n, shapes[n], grad_req="null" if n in aux else "write")
        self._graph = _CachedGraph(symbol, self._inputs, declared)

    @staticmethod
    def imports(symbol_file, input_names, param_file):
        """Loads a -symbol.json file and a .params file (arg:/aux: prefixes or none)."""
        values = {(k[4:] if k.startswith(("arg:", "aux:")) else k): v for k, v in load(param_file).items()}
        block = SymbolBlock(Symbol.load(symbol_file), input_names, {k: v.shape for k, v in values.items()})
        block.collect_params().initialize("zeros")
        block.collect_params().load(param_file)
        return block

    def forward(self, *inputs):
        if _trace.declared is not None:
            raise LoomError(_abi.LOOM_ERR_INVALID_ARGUMENT, "a SymbolBlock is already a graph and cannot be traced "
                            "inside another hybridized block")
        if len(inputs) != len(self._inputs):
            raise LoomError(_abi.LOOM_ERR_INVALID_ARGUMENT, "SymbolBlock: takes %d inputs (%s), got %d"
                            % (len(self._inputs), ", ".join(self._inputs), len(inputs)))
        return self._graph.invoke(inputs)


class Sequential(Block):
    def add(self, *blocks):
        for b in blocks:
            self.register(b)
        return self

    def forward(self, x):
        for c in self._children:
            x = c(x)
        return x


class HybridSequential(HybridBlock):
    def add(self, *blocks):
        for b in blocks:
            self.register(b)
        return self

    def hybrid_forward(self, x):
        for c in self._children:
            x = c(x)
        return x


class Dense(HybridBlock):
    def __init__(self, units, activation=None, use_bias=True, flatten=True, in_units=0, prefix=None, params=None):
        super().__init__(prefix, params)
        self._units, self._act, self._flatten = units, activation, flatten
        self.weight = self.param("weight", (units, in_units))
        self.bias = self.param("bias", (units,)) if use_bias else None

    def hybrid_forward(self, x):
        s = x.shape
        in_feat = reduce(lambda a, b: a * b, s[1:], 1) if self._flatten else s[-1]
        self.weight.infer_shape((self._units, in_feat), "the input %s" % _shape_str(s))
        c = x.context
        ins = [x, self.weight.data(c)] + ([self.bias.data(c)] if self.bias else [])
        y = _invoke("FullyConnected", ins, {"num_hidden": self._units, "no_bias": self.bias is None,
                                            "flatten": self._flatten})
        return _invoke("Activation", [y], {"act_type": self._act}) if self._act else y


class _Conv(HybridBlock):
    def __init__(self, channels, kernel, strides, padding, dilation, groups, activation, use_bias,
                 transpose=False, adj=None, prefix=None, params=None):
        super().__init__(prefix, params)
        n = len(kernel)
        self._c, self._k, self._g, self._act, self._t = channels, tuple(kernel), groups, activation, transpose
        self._s = tuple(strides or (1,) * n)
        self._p = tuple(padding or (0,) * n)
        self._d = tuple(dilation or (1,) * n)
        self._adj = tuple(adj or (0,) * n)
        wshape = ((0, channels // groups) if transpose else (channels, 0)) + self._k
        self.weight = self.param("weight", wshape)
        self.bias = self.param("bias", (channels,)) if use_bias else None

    def _alias(self):
        return "conv"

    def hybrid_forward(self, x):
        s = x.shape
        if len(s) != len(self._k) + 2:
            raise LoomError(_abi.LOOM_ERR_SHAPE, "%s: a %d-D convolution takes (batch, channels, %d spatial axes); "
                            "the input is %s" % (self.name, len(self._k), len(self._k), _shape_str(s)))
        c = s[1]
        want = ((c, self._c // self._g) if self._t else (self._c, c // self._g)) + self._k
        self.weight.infer_shape(want, "the input %s" % _shape_str(s))
        c = x.context
        ins = [x, self.weight.data(c)] + ([self.bias.data(c)] if self.bias else [])
        p = {"kernel": self._k, "num_filter": self._c, "stride": self._s, "dilate": self._d, "pad": self._p,
             "num_group": self._g, "no_bias": self.bias is None}
        if self._t:
            p["adj"] = self._adj
        y = _invoke("Deconvolution" if self._t else "Convolution", ins, p)
        return _invoke("Activation", [y], {"act_type": self._act}) if self._act else y


class Conv1D(_Conv):
    def __init__(self, channels, kernel_size, strides=1, padding=0, dilation=1, groups=1, activation=None,
                 use_bias=True, prefix=None, params=None):
        super().__init__(channels, (kernel_size,), (strides,), (padding,), (dilation,), groups, activation,
                         use_bias, prefix=prefix, params=params)


class Conv2D(_Conv):
    def __init__(self, channels, kernel_size, strides=None, padding=None, dilation=None, groups=1,
                 activation=None, use_bias=True, prefix=None, params=None):
        super().__init__(channels, kernel_size, strides, padding, dilation, groups, activation, use_bias,
                         prefix=prefix, params=params)


class Conv3D(Conv2D):
    pass


class Conv2DTranspose(_Conv):
    def __init__(self, channels, kernel_size, strides=None, padding=None, output_padding=None, dilation=None,
                 groups=1, activation=None, use_bias=True, prefix=None, params=None):
        super().__init__(channels, kernel_size, strides, padding, dilation, groups, activation, use_bias,
                         transpose=True, adj=output_padding, prefix=prefix, params=params)


class _Pool(HybridBlock):
    def __init__(self, pool_type, pool_size, strides, padding, ceil_mode=False, count_include_pad=True, prefix=None):
        super().__init__(prefix)
        self._t, self._k = pool_type, pool_size
        self._s = strides or pool_size
        self._p = padding or ((0,) * len(pool_size) if pool_size else None)
        self._ceil, self._cip = ceil_mode, count_include_pad

    def _alias(self):
        return "pool"

    def hybrid_forward(self, x):
        if self._k is None:
            return _invoke("Pooling", [x], {"kernel": (1, 1), "pool_type": self._t, "global_pool": True})
        p = {"kernel": self._k, "pool_type": self._t, "stride": self._s, "pad": self._p,
             "pooling_convention": "full" if self._ceil else "valid"}
        if self._t == "avg":
            p["count_include_pad"] = self._cip
        return _invoke("Pooling", [x], p)


class MaxPool2D(_Pool):
    def __init__(self, pool_size=(2, 2), strides=None, padding=None, ceil_mode=False, prefix=None):
        super().__init__("max", tuple(pool_size), strides, padding, ceil_mode, prefix=prefix)


class AvgPool2D(_Pool):
    def __init__(self, pool_size=(2, 2), strides=None, padding=None, ceil_mode=False, count_include_pad=True,
                 prefix=None):
        super().__init__("avg", tuple(pool_size), strides, padding, ceil_mode, count_include_pad, prefix=prefix)


class GlobalAvgPool2D(_Pool):
    def __init__(self, prefix=None):
        super().__init__("avg", None, None, None, prefix=prefix)


class GlobalMaxPool2D(_Pool):
    def __init__(self, prefix=None):
        super().__init__("max", None, None, None, prefix=prefix)


class BatchNorm(HybridBlock):
    def __init__(self, axis=1, momentum=0.9, epsilon=1e-5, center=True, scale=True, use_global_stats=False,
                 in_channels=0, prefix=None, params=None):
        super().__init__(prefix, params)
        self._axis, self._m, self._eps, self._scale, self._g = axis, momentum, epsilon, scale, use_global_stats
        self.gamma = self.param("gamma", (in_channels,), grad_req="write" if scale else "null", init="ones")
        self.beta = self.param("beta", (in_channels,), grad_req="write" if center else "null", init="zeros")
        self.running_mean = self.param("running_mean", (in_channels,), grad_req="null", init="zeros")
        self.running_var = self.param("running_var", (in_channels,), grad_req="null", init="ones")

    def hybrid_forward(self, x):
        c = (x.shape[self._axis],)
        for p in (self.gamma, self.beta, self.running_mean, self.running_var):
            p.infer_shape(c, "the input %s" % _shape_str(x.shape))
        c = x.context
        return _first(_invoke("BatchNorm", [x, self.gamma.data(c), self.beta.data(c), self.running_mean.data(c),
                                     self.running_var.data(c)],
                       {"eps": self._eps, "momentum": self._m, "fix_gamma": not self._scale,
                        "use_global_stats": self._g, "axis": self._axis}))


class Dropout(HybridBlock):
    def __init__(self, rate, axes=(), prefix=None):
        super().__init__(prefix)
        self._rate, self._axes = rate, tuple(axes)

    def hybrid_forward(self, x):
        return _first(_invoke("Dropout", [x], {"p": self._rate, "axes": self._axes}))


class Embedding(HybridBlock):
    def __init__(self, input_dim, output_dim, prefix=None, params=None):
        super().__init__(prefix, params)
        self._in, self._out = input_dim, output_dim
        self.weight = self.param("weight", (input_dim, output_dim))

    def hybrid_forward(self, x):
        return _invoke("Embedding", [x, self.weight.data(x.context)], {"input_dim": self._in, "output_dim": self._out})


class Flatten(HybridBlock):
    def hybrid_forward(self, x):
        return _invoke("Flatten", [x], {})


class Activation(HybridBlock):
    def __init__(self, activation, prefix=None):
        self._act = activation
        super().__init__(prefix)

    def _alias(self):
        return self._act

    def hybrid_forward(self, x):
        return _invoke("Activation", [x], {"act_type": self._act})


class LeakyReLU(HybridBlock):
    def __init__(self, alpha, prefix=None):
        super().__init__(prefix)
        self._alpha = alpha

    def hybrid_forward(self, x):
        return _invoke("LeakyReLU", [x], {"act_type": "leaky", "slope": self._alpha})


class Loss(HybridBlock):
    """prediction, label -> one loss per sample (mean over all axes but the batch axis)."""

    def __init__(self, weight=1.0, batch_axis=0, prefix=None):
        super().__init__(prefix)
        self._weight, self._batch_axis = weight, batch_axis

    def hybrid_forward(self, pred, label):
        l = self._compute(pred, label)
        if self._weight != 1.0:
            l = _invoke("multiply_scalar", [l], {"scalar": self._weight})
        return _invoke("mean", [l], {"axis": (self._batch_axis,), "exclude": True})

    @staticmethod
    def _like(label, pred):
        return label if label.shape == pred.shape else _invoke("reshape", [label], {"shape": pred.shape})


class L2Loss(Loss):
    def __init__(self, weight=1.0, batch_axis=0, prefix=None):
        super().__init__(weight / 2, batch_axis, prefix)

    def _compute(self, pred, label):
        return _invoke("square", [_invoke("subtract", [self._like(label, pred), pred], {})], {})


class L1Loss(Loss):
    def _compute(self, pred, label):
        return _invoke("abs", [_invoke("subtract", [self._like(label, pred), pred], {})], {})


class SigmoidBinaryCrossEntropyLoss(Loss):
    """Binary cross-entropy of logits (or, with from_sigmoid, probabilities) against 0/1 labels."""

    def __init__(self, from_sigmoid=False, weight=1.0, batch_axis=0, prefix=None):
        super().__init__(weight, batch_axis, prefix)
        self._from_sigmoid = from_sigmoid

    def _compute(self, pred, label):
        label = self._like(label, pred)
        if not self._from_sigmoid:  # max(x, 0) - x z + log(1 + exp(-|x|))
            soft = _invoke("Activation", [_invoke("negative", [_invoke("abs", [pred], {})], {})],
                           {"act_type": "softrelu"})
            return _invoke("add", [_invoke("subtract", [_invoke("relu", [pred], {}),
                                                        _invoke("multiply", [pred, label], {})], {}), soft], {})
        eps = 1e-12
        a = _invoke("multiply", [_invoke("log", [_invoke("add_scalar", [pred], {"scalar": eps})], {}), label], {})
        one_minus = _invoke("rsubtract_scalar", [pred], {"scalar": 1.0})
        b = _invoke("multiply", [_invoke("log", [_invoke("add_scalar", [one_minus], {"scalar": eps})], {}),
                                 _invoke("rsubtract_scalar", [label], {"scalar": 1.0})], {})
        return _invoke("negative", [_invoke("add", [a, b], {})], {})


class SoftmaxCrossEntropyLoss(Loss):
    """-log softmax(pred)[label] for class-index labels: MXNet's -pick(log_softmax(pred), label,
    axis, keepdims=True). The label has pred's shape less the class axis, or that axis of
    length 1; another shape with one index per sample is reshaped to the latter."""

    def __init__(self, axis=-1, weight=1.0, batch_axis=0, prefix=None):
        super().__init__(weight, batch_axis, prefix)
        self._axis = axis

    def _compute(self, pred, label):
        s = tuple(pred.shape)
        ax = self._axis + len(s) if self._axis < 0 else self._axis
        if not 0 <= ax < len(s):
            raise LoomError(_abi.LOOM_ERR_SHAPE, "%s: axis %d is outside the prediction %s" % (self.name, self._axis, s))
        logp = _invoke("log_softmax", [pred], {"axis": ax})
        kept = tuple(1 if i == ax else d for i, d in enumerate(s))
        dropped = tuple(d for i, d in enumerate(s) if i != ax)
        if tuple(label.shape) not in (kept, dropped):
            if reduce(lambda a, b: a * b, label.shape, 1) != reduce(lambda a, b: a * b, kept, 1):
                raise LoomError(_abi.LOOM_ERR_SHAPE, "%s: the label %s should hold one class index per sample of the prediction %s"
                                % (self.name, tuple(label.shape), s))
            label = _invoke("reshape", [label], {"shape": kept})
        return _invoke("negative", [_invoke("pick", [logp, label], {"axis": ax, "keepdims": True})], {})


# MXNet's optimizers by name: the native update op, its state arrays (each shaped like the
# weight), MXNet's option names mapped to the op's parameters, and MXNet's default learning rate.
_OPTIMIZERS = {
    "sgd": ("sgd_mom_update", ["mom"], {"momentum": "momentum", "nesterov": "nesterov"}, 0.01),
    "adam": ("adam_update", ["mean", "var"], {"beta1": "beta1", "beta2": "beta2", "epsilon": "epsilon"}, 0.001),
    "adagrad": ("adagrad_update", ["history"], {"eps": "epsilon", "epsilon": "epsilon"}, 0.01),
    "rmsprop": ("rmsprop_update", ["n"], {"gamma1": "gamma1", "epsilon": "epsilon", "clip_weights": "clip_weights"},
                0.001),
    "adadelta": ("adadelta_update", ["acc_g", "acc_delta"], {"rho": "rho", "epsilon": "epsilon"}, 1.0),
}
# MXNet's Python defaults where they differ from the native op's (RMSProp's gamma1).
_OPTIMIZER_DEFAULTS = {"rmsprop": {"gamma1": 0.9}}
_COMMON_OPTIONS = {"learning_rate": "lr", "wd": "wd", "clip_gradient": "clip_gradient"}


def split_and_load(data, ctx_list, batch_axis=0, even_split=True):
    """MXNet's gluon.utils.split_and_load: one slice of data along batch_axis per context,
    copied there. Without even_split the first size % len(ctx_list) slices take one row
    more (with fewer rows than contexts the last slices are empty), as MXNet 1.9's split_data."""
    ctx_list = list(ctx_list)
    if not ctx_list:
        raise LoomError(_abi.LOOM_ERR_INVALID_ARGUMENT, "split_and_load: no contexts given")
    s = tuple(data.shape)
    if not 0 <= batch_axis < len(s):
        raise LoomError(_abi.LOOM_ERR_INVALID_ARGUMENT, "split_and_load: batch_axis %d is outside data of shape %s"
                        % (batch_axis, _shape_str(s)))
    size, n = s[batch_axis], len(ctx_list)
    if even_split and size % n:
        raise LoomError(_abi.LOOM_ERR_SHAPE, "split_and_load: data of shape %s cannot be split evenly into %d slices "
                        "along axis %d; use a batch size that is a multiple of %d or even_split=False"
                        % (_shape_str(s), n, batch_axis, n))
    each, extras = divmod(size, n)
    out, begin = [], 0
    for i, ctx in enumerate(ctx_list):
        end = begin + each + (1 if i < extras else 0)
        lo = tuple(begin if a == batch_axis else 0 for a in range(len(s)))
        hi = tuple(end if a == batch_axis else d for a, d in enumerate(s))
        out.append(_invoke("copy", [_invoke("slice", [data], {"begin": lo, "end": hi})], {"ctx": ctx}))
        begin = end
    return out


class Trainer:
    """MXNet Gluon's Trainer: Trainer(params, "adam", {"learning_rate": 0.001}, kvstore=None).
    step(batch_size) rescales the gradients by 1/batch_size and runs the optimizer's native
    update op (sgd, adam, adagrad, rmsprop, adadelta) on every parameter that takes a gradient.
    A parameter with copies on several devices has its gradients summed first (through a
    local store), and every copy gets the same update; with a kvstore (a loom.kv store or
    its type, such as "dist_sync") every gradient is summed through it, across processes.
    SGD updates its weights in groups of aggregate_num (LOOM_OPTIMIZER_AGGREGATION_SIZE,
    default 4, as MXNet's SGD does) with multi_sgd_update or multi_sgd_mom_update, which give
    the same bits as one update per weight; set aggregate_num = 1 for one call per weight."""

    def __init__(self, params, optimizer="sgd", optimizer_params=None, kvstore=None):
        if isinstance(params, dict):
            params = list(params.values())
        self._params = list(params)
        name = str(optimizer).lower()
        if name not in _OPTIMIZERS:
            raise LoomError(_abi.LOOM_ERR_INVALID_ARGUMENT, "Trainer: unknown optimizer %r; one of: %s"
                            % (optimizer, ", ".join(sorted(_OPTIMIZERS))))
        self._name = name
        op, self._slots, options, default_lr = _OPTIMIZERS[name]
        given = dict(optimizer_params or {})
        if name == "rmsprop" and given.get("centered"):
            raise LoomError(_abi.LOOM_ERR_INVALID_ARGUMENT, "Trainer: centered RMSProp has no native update op")
        given.pop("centered", None)
        known = dict(_COMMON_OPTIONS, **options)
        unknown = [k for k in given if k not in known]
        if unknown:
            raise LoomError(_abi.LOOM_ERR_INVALID_ARGUMENT, "Trainer: %s %s not an option of %s; its options: %s"
                            % (", ".join(repr(k) for k in unknown), "is" if len(unknown) == 1 else "are", name,
                               ", ".join(sorted(known))))
        self.learning_rate = float(given.pop("learning_rate", default_lr))
        self._options = dict(_OPTIMIZER_DEFAULTS.get(name, {}))
        for k, v in given.items():
            self._options[known[k]] = v
        self._op = op
        if name == "sgd" and not self._options.get("momentum"):
            self._op, self._slots = "sgd_update", []  # plain SGD keeps no state (as the C# SGD)
            self._options.pop("momentum", None)
            self._options.pop("nesterov", None)
        if isinstance(kvstore, str):
            from . import kv as _kv
            kvstore = _kv.create(kvstore)
        self._kv = kvstore
        self._local = None
        self._kv_ready = False
        self._states = {}
        self._counts = {}
        # MXNet's SGD updates groups of weights with one call each (its
        # MXNET_OPTIMIZER_AGGREGATION_SIZE, 4 by default); 1 updates them one by one.
        self.aggregate_num = _aggregation_size()

    @property
    def optimizer(self):
        return self._name

    def set_learning_rate(self, lr):
        self.learning_rate = float(lr)

    def _key(self, i):
        return "%d:%s" % (i, self._params[i].name)

    def _sum_gradients(self):
        kv = self._kv
        if kv is None and any(len(p.list_ctx()) > 1 for p in self._params if p.grad_req != "null"):
            if self._local is None:
                from . import kv as _kv
                self._local = _kv.create("local")
            kv = self._local
        if kv is None:
            return
        live = [i for i, p in enumerate(self._params) if p.grad_req != "null"]
        if not self._kv_ready:  # every worker and device starts from the first copy of rank 0
            for i in live:
                kv.init(self._key(i), self._params[i].list_data()[0])
            for i in live:
                kv.pull(self._key(i), self._params[i].list_data())
            self._kv_ready = True
        for i in live:
            grads = self._params[i].list_grad()
            kv.pushpull(self._key(i), grads, grads)

    def step(self, batch_size):
        if batch_size <= 0:
            raise LoomError(_abi.LOOM_ERR_INVALID_ARGUMENT, "Trainer.step: batch_size must be positive, got %r"
                            % (batch_size,))
        for p in self._params:
            if p.grad_req != "null" and not p._arrays:
                raise LoomError(_abi.LOOM_ERR_INVALID_ARGUMENT, "Trainer.step: parameter '%s' %s has not been "
                                "initialized; run a forward and backward first" % (p.name, _shape_str(p.shape)))
        self._sum_gradients()
        common = {"lr": self.learning_rate, "rescale_grad": 1.0 / batch_size}
        common.update(self._options)
        groups = {}  # SGD's weights by dtype and device, for the aggregated updates
        for i, p in enumerate(self._params):
            if p.grad_req == "null":
                continue
            for c, w in enumerate(p.list_data()):
                # each copy keeps its own state: the same update of the same values with the
                # same summed gradient keeps the copies identical
                key = (i, c)
                t = self._counts.get(key, 0) + 1
                self._counts[key] = t
                if key not in self._states:
                    self._states[key] = [zeros(w.shape, w.dtype, ctx=w.context) for _ in self._slots]
                st = self._states[key]
                if self._aggregates():
                    groups.setdefault((w.dtype, repr(w.context)), []).append((w, st))
                    continue
                params = dict(common, t=t) if self._op == "adam_update" else common
                _invoke(self._op, [w, w.grad] + st, params, out=[w] + st if st else w)
        for items in groups.values():
            for k in range(0, len(items), self.aggregate_num):
                self._multi_sgd(items[k:k + self.aggregate_num], common)

    def _aggregates(self):
        return self._op in ("sgd_update", "sgd_mom_update") and not self._options.get("nesterov") \
            and self.aggregate_num > 1

    def _multi_sgd(self, items, common):
        """MXNet's aggregated SGD step (multi_sgd_update, multi_sgd_mom_update) for a
        group of weights; each weight's result is the same as sgd_update's or
        sgd_mom_update's."""
        n = len(items)
        params = {k: v for k, v in common.items() if k not in ("lr", "wd", "nesterov")}
        params.update(lrs=[common["lr"]] * n, wds=[common.get("wd", 0.0)] * n, num_weights=n)
        data, out = [], []
        for w, st in items:
            data += [w, w.grad] + st
            out += [w] + st
        _invoke("multi_" + self._op, data, params, out=out)
