"""Loom for Python: the same native engine as the C and C# frontends.

Arrays (:class:`NDArray`) live in the engine; every operator registered in
the library is generated at import time as a function of :mod:`loom.nd`
(imperative) and :mod:`loom.sym` (symbolic), with its signature and
documentation taken from the registry. No number is computed here.
"""
import ctypes
import json
import os

import numpy as np

from . import _abi

__all__ = ["LoomError", "NDArray", "Symbol", "Executor", "Module", "nd", "sym", "cpu", "gpu", "seed",
           "wait_all", "library_path", "from_numpy", "array", "zeros", "num_gpus", "backend_describe",
           "backend_load", "kv", "summary", "onnx"]


class LoomError(Exception):
    """A failed Loom call: `status` is the LOOM_ERR_* code, the message is the library's."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


# ----------------------------------------------------------------- library
def _candidates():
    names = ["libloom.so", "libloom.so.0"]
    here = os.path.dirname(os.path.abspath(__file__))
    out = []
    env = os.environ.get("LOOM_LIBRARY_PATH")
    if env:
        out += [env] if os.path.isfile(env) else [os.path.join(env, n) for n in names]
    # Run from the repository: bindings/python/loom -> build/lib
    root = os.path.dirname(os.path.dirname(os.path.dirname(here)))
    out += [os.path.join(root, "build", "lib", n) for n in names]
    out += [os.path.join(here, n) for n in names]  # installed with the package
    return out


def _choose_blas_kernels():
    """OpenBLAS picks its kernels when libloom loads it, from the CPU's model, and
    falls back to its slowest ones on a CPU it does not recognise (virtual machines):
    unless the user chose, name them by the CPU's instruction sets (as the C#
    frontend does)."""
    if "OPENBLAS_CORETYPE" in os.environ or not os.path.exists("/proc/cpuinfo"):
        return
    try:
        flags = next((l.split(":", 1)[1].split() for l in open("/proc/cpuinfo") if l.startswith("flags")), [])
    except OSError:
        return
    if "avx512f" in flags:
        os.environ["OPENBLAS_CORETYPE"] = "SkylakeX"
    elif "avx2" in flags:
        os.environ["OPENBLAS_CORETYPE"] = "Haswell"


def _load():
    _choose_blas_kernels()
    tried = []
    for path in _candidates():
        tried.append(path)
        if os.path.isfile(path):
            lib = ctypes.CDLL(path)
            break
    else:
        try:
            lib = ctypes.CDLL("libloom.so.0")
            path = "libloom.so.0 (system search)"
        except OSError:
            raise ImportError("loom: libloom not found; looked for: " + ", ".join(tried) +
                              " and libloom.so.0 on the system path. Build it (./build.sh) or set "
                              "LOOM_LIBRARY_PATH.") from None
    lib.loom_abi_version.restype = ctypes.c_int32
    got = lib.loom_abi_version()
    if got != _abi.LOOM_ABI_VERSION:
        raise ImportError("loom: %s has ABI version %d but these bindings were generated for ABI "
                          "version %d" % (path, got, _abi.LOOM_ABI_VERSION))
    return _abi.declare(lib), path


_LIB, library_path = _load()


def _check(status):
    if status != _abi.LOOM_OK:
        msg = _LIB.loom_last_error()
        raise LoomError(status, msg.decode("utf-8", "replace") if msg else "status %d" % status)


def _strs(items):
    arr = (ctypes.c_char_p * max(len(items), 1))()
    for i, s in enumerate(items):
        arr[i] = s.encode("utf-8")
    return arr


# ------------------------------------------------------------------ dtypes
_DTYPES = {name[len("LOOM_DTYPE_"):].lower(): code for name, code in vars(_abi).items()
           if name.startswith("LOOM_DTYPE_")}
_DTYPE_NAMES = {code: name for name, code in _DTYPES.items()}
_NUMPY = {"float32": np.float32, "float64": np.float64, "float16": np.float16, "uint8": np.uint8,
          "int8": np.int8, "int32": np.int32, "int64": np.int64, "bool": np.bool_}


def _dtype_code(dtype):
    if isinstance(dtype, int):
        return dtype
    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if name not in _DTYPES:
        raise LoomError(_abi.LOOM_ERR_DTYPE, "dtype %r is not one of %s" % (dtype, sorted(_DTYPES)))
    return _DTYPES[name]


class Context:
    """A device: cpu(i) or gpu(i)."""

    def __init__(self, dev_type, dev_id=0):
        self.dev_type, self.dev_id = dev_type, dev_id

    def __repr__(self):
        return "%s(%d)" % ("gpu" if self.dev_type == _abi.LOOM_DEVICE_GPU else "cpu", self.dev_id)

    def __eq__(self, other):
        return isinstance(other, Context) and (self.dev_type, self.dev_id) == (other.dev_type, other.dev_id)

    def __hash__(self):
        return hash((self.dev_type, self.dev_id))


def cpu(i=0):
    return Context(_abi.LOOM_DEVICE_CPU, i)


def gpu(i=0):
    """GPU device i; needs the GPU backend plugin (see num_gpus)."""
    return Context(_abi.LOOM_DEVICE_GPU, i)


def num_gpus():
    """GPUs the GPU backend reports; 0 when no backend is available (not an error)."""
    n = ctypes.c_int32()
    _check(_LIB.loom_device_count(ctypes.byref(n), _abi.LOOM_DEVICE_GPU))
    return n.value


def backend_describe(dev_type=_abi.LOOM_DEVICE_GPU):
    """One line on the backend of a device type: the GPU plugin's file and
    devices, or why none is available and where it was looked for."""
    d = ctypes.c_char_p()
    _check(_LIB.loom_backend_describe(ctypes.byref(d), dev_type))
    return d.value.decode("utf-8")


def backend_load(path):
    """Loads the GPU backend plugin from path instead of searching for it."""
    _check(_LIB.loom_backend_load(os.fsencode(path)))


def seed(value):
    """Seeds the native random generator (all random ops draw from it)."""
    _check(_LIB.loom_random_seed(value))


def wait_all():
    """Waits for every pushed operation; raises the first failure."""
    _check(_LIB.loom_wait_all())


class record:
    """Records operations for autograd inside the block: `with loom.record(): y = f(x)`.
    train=True also switches layers to training mode (Dropout, BatchNorm)."""

    def __init__(self, train=False):
        self.train = train

    def __enter__(self):
        self._rec, self._tr = ctypes.c_int32(), ctypes.c_int32()
        _check(_LIB.loom_autograd_set_recording(ctypes.byref(self._rec), 1))
        _check(_LIB.loom_autograd_set_training(ctypes.byref(self._tr), 1 if self.train else 0))
        return self

    def __exit__(self, *exc):
        _LIB.loom_autograd_set_recording(None, self._rec.value)
        _LIB.loom_autograd_set_training(None, self._tr.value)
        return False


# ------------------------------------------------------------------ arrays
class NDArray:
    """An n-dimensional array in the engine. Operations are asynchronous; reading
    values (asnumpy) waits for them."""

    __slots__ = ("_h",)
    __array_priority__ = 100

    def __init__(self, handle):
        self._h = ctypes.c_void_p(handle) if not isinstance(handle, ctypes.c_void_p) else handle

    def __del__(self):
        if getattr(self, "_h", None) and self._h.value:
            _LIB.loom_ndarray_free(self._h)
            self._h = ctypes.c_void_p()

    @property
    def handle(self):
        if not self._h.value:
            raise LoomError(_abi.LOOM_ERR_INVALID_ARGUMENT, "the NDArray was freed")
        return self._h

    @property
    def shape(self):
        nd = ctypes.c_int32()
        _check(_LIB.loom_ndarray_get_ndim(ctypes.byref(nd), self.handle))
        buf = (ctypes.c_int64 * max(nd.value, 1))()
        _check(_LIB.loom_ndarray_get_shape(buf, nd.value, self.handle))
        return tuple(buf[i] for i in range(nd.value))

    @property
    def dtype(self):
        d = ctypes.c_int32()
        _check(_LIB.loom_ndarray_get_dtype(ctypes.byref(d), self.handle))
        return _DTYPE_NAMES[d.value]

    @property
    def size(self):
        n = ctypes.c_int64()
        _check(_LIB.loom_ndarray_get_size(ctypes.byref(n), self.handle))
        return n.value

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def context(self):
        t, i = ctypes.c_int32(), ctypes.c_int32()
        _check(_LIB.loom_ndarray_get_context(ctypes.byref(t), ctypes.byref(i), self.handle))
        return Context(t.value, i.value)

    def copyto(self, target):
        """A copy on device `target` (a Context), or into the array `target`."""
        if isinstance(target, Context):  # recorded by autograd
            return _invoke("copy", [self], {"ctx": target})
        return _invoke("copy", [self], {}, out=target)

    def asnumpy(self):
        """A NumPy copy of the values (waits for pending writes)."""
        out = np.empty(self.shape, dtype=_NUMPY[self.dtype])
        _check(_LIB.loom_ndarray_copy_to_host(out.ctypes.data_as(ctypes.c_void_p), out.nbytes, self.handle))
        return out

    def tobytes(self):
        """The raw bytes of the values, in C order."""
        return self.asnumpy().tobytes()

    def __array__(self, dtype=None):
        a = self.asnumpy()
        return a.astype(dtype) if dtype is not None else a

    def copyfrom(self, values):
        src = np.ascontiguousarray(values, dtype=_NUMPY[self.dtype])
        if src.shape != self.shape:
            raise LoomError(_abi.LOOM_ERR_SHAPE, "copyfrom: values have shape %s but the array has shape %s"
                            % (src.shape, self.shape))
        _check(_LIB.loom_ndarray_copy_from_host(self.handle, src.ctypes.data_as(ctypes.c_void_p), src.nbytes))
        return self

    def reshape(self, *shape):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        dims = (ctypes.c_int64 * max(len(shape), 1))(*shape)
        out = ctypes.c_void_p()
        _check(_LIB.loom_ndarray_reshape(ctypes.byref(out), self.handle, dims, len(shape)))
        return NDArray(out)

    def wait_to_read(self):
        _check(_LIB.loom_ndarray_wait_to_read(self.handle))

    def attach_grad(self, grad_req="write"):
        """Marks the array as a variable for autograd, with a zero gradient buffer."""
        g = zeros(self.shape, self.dtype, ctx=self.context)
        req = ctypes.c_int32({"null": 0, "write": 1, "add": 2}[grad_req])
        _check(_LIB.loom_autograd_mark_variables(ctypes.byref(self.handle), ctypes.byref(g.handle),
                                                 ctypes.byref(req), 1))
        return self

    @property
    def grad(self):
        out = ctypes.c_void_p()
        _check(_LIB.loom_ndarray_get_grad(ctypes.byref(out), self.handle))
        return NDArray(out)

    def backward(self, head_grad=None):
        heads = (ctypes.c_void_p * 1)(self.handle.value)
        grads = (ctypes.c_void_p * 1)(head_grad.handle.value) if head_grad is not None else None
        _check(_LIB.loom_autograd_backward(heads, grads, 1))

    def _binary(self, other, op, scalar_op):
        if isinstance(other, NDArray):
            return _invoke(op, [self, other], {})
        return _invoke(scalar_op, [self], {"scalar": float(other)})

    def __add__(self, o): return self._binary(o, "add", "add_scalar")
    def __radd__(self, o): return self._binary(o, "add", "add_scalar")
    def __sub__(self, o): return self._binary(o, "subtract", "subtract_scalar")
    def __rsub__(self, o): return _invoke("rsubtract_scalar", [self], {"scalar": float(o)})
    def __mul__(self, o): return self._binary(o, "multiply", "multiply_scalar")
    def __rmul__(self, o): return self._binary(o, "multiply", "multiply_scalar")
    def __truediv__(self, o): return self._binary(o, "divide", "divide_scalar")
    def __neg__(self): return _invoke("negative", [self], {})

    # DLPack (zero-copy exchange): numpy.from_dlpack(a), torch.utils.dlpack.from_dlpack(a).
    def __dlpack__(self, stream=None):
        managed = ctypes.c_void_p()
        _check(_LIB.loom_ndarray_to_dlpack(ctypes.byref(managed), self.handle))
        return _capsule(managed.value)

    def __dlpack_device__(self):
        return (1, 0)  # kDLCPU

    def __repr__(self):
        return "<NDArray %s %s>\n%s" % ("x".join(map(str, self.shape)) or "scalar", self.dtype, self.asnumpy())


_PyCapsule_New = ctypes.pythonapi.PyCapsule_New
_PyCapsule_New.restype = ctypes.py_object
_PyCapsule_New.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
_PyCapsule_GetPointer = ctypes.pythonapi.PyCapsule_GetPointer
_PyCapsule_GetPointer.restype = ctypes.c_void_p
_PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
_PyCapsule_IsValid = ctypes.pythonapi.PyCapsule_IsValid
_PyCapsule_IsValid.restype = ctypes.c_int
_PyCapsule_IsValid.argtypes = [ctypes.py_object, ctypes.c_char_p]
_PyCapsule_SetName = ctypes.pythonapi.PyCapsule_SetName
_PyCapsule_SetName.restype = ctypes.c_int
_PyCapsule_SetName.argtypes = [ctypes.py_object, ctypes.c_char_p]
_PyCapsule_GetPointerRaw = ctypes.pythonapi.PyCapsule_GetPointer
_CAPSULE_DESTRUCTOR = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


@_CAPSULE_DESTRUCTOR
def _capsule_destructor(capsule):
    # An unconsumed "dltensor" capsule still owns its tensor: run the deleter.
    obj = ctypes.cast(capsule, ctypes.py_object)
    if _PyCapsule_IsValid(obj, b"dltensor"):
        _LIB.loom_dlpack_delete(_PyCapsule_GetPointer(obj, b"dltensor"))


def _capsule(ptr):
    return _PyCapsule_New(ptr, b"dltensor", ctypes.cast(_capsule_destructor, ctypes.c_void_p))


def from_dlpack(obj):
    """A Loom array over the memory of any DLPack producer (NumPy, PyTorch, ...), without copying."""
    capsule = obj.__dlpack__() if hasattr(obj, "__dlpack__") else obj
    if not _PyCapsule_IsValid(capsule, b"dltensor"):
        raise LoomError(_abi.LOOM_ERR_INVALID_ARGUMENT, "from_dlpack: not an unused DLPack capsule")
    out = ctypes.c_void_p()
    _check(_LIB.loom_ndarray_from_dlpack(ctypes.byref(out), _PyCapsule_GetPointer(capsule, b"dltensor")))
    _PyCapsule_SetName(capsule, b"used_dltensor")  # Loom owns the tensor now
    return NDArray(out)


def from_numpy(values, dtype=None):
    """A new cpu(0) array holding a copy of `values`."""
    a = np.asarray(values)
    if dtype is None:
        dtype = a.dtype.name if a.dtype.name in _DTYPES else "float32"
    return empty(a.shape, dtype).copyfrom(a)


array = from_numpy


def empty(shape, dtype="float32", ctx=None):
    ctx = ctx or cpu()
    shape = tuple(shape)
    dims = (ctypes.c_int64 * max(len(shape), 1))(*shape)
    out = ctypes.c_void_p()
    _check(_LIB.loom_ndarray_create(ctypes.byref(out), dims, len(shape), _dtype_code(dtype), ctx.dev_type, ctx.dev_id))
    return NDArray(out)


def zeros(shape, dtype="float32", ctx=None):
    return _invoke("zeros", [], {"shape": tuple(shape), "dtype": dtype, "ctx": ctx})


def save(path, arrays):
    """Writes a .params file: `arrays` is a dict name -> NDArray."""
    names = list(arrays)
    hs = (ctypes.c_void_p * max(len(names), 1))(*[arrays[n].handle.value for n in names])
    _check(_LIB.loom_ndarray_save(path.encode(), hs, _strs(names), len(names)))


def load(path):
    """Reads a .params file into a dict name -> NDArray."""
    lst = ctypes.c_void_p()
    _check(_LIB.loom_ndarray_load(ctypes.byref(lst), path.encode()))
    return _take_list(lst)


def _take_list(lst):
    """A loom_ndarray_list as a dict name -> NDArray; frees the list."""
    try:
        n = ctypes.c_int32()
        _check(_LIB.loom_ndarray_list_size(ctypes.byref(n), lst))
        out = {}
        for i in range(n.value):
            h, name = ctypes.c_void_p(), ctypes.c_char_p()
            _check(_LIB.loom_ndarray_list_get(ctypes.byref(h), ctypes.byref(name), lst, i))
            out[name.value.decode()] = NDArray(h)
        return out
    finally:
        _LIB.loom_ndarray_list_free(lst)


def read_hdf5(path, dataset, begin=0, end=-1):
    """Rows [begin, end) of an HDF5 dataset (Mocha's data format) as an NDArray on cpu(0);
    end=-1 reads to the last row. Read natively; the HDF5 library is loaded when first needed."""
    out = ctypes.c_void_p()
    _check(_LIB.loom_io_read_hdf5(ctypes.byref(out), str(path).encode(), dataset.encode(), int(begin), int(end)))
    return NDArray(out)


# --------------------------------------------------------------- operators
def _format(value):
    """A parameter value as the registry parses it (the same text C# sends)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return repr(float(value))
    if isinstance(value, (tuple, list)):
        # Whole numbers as integers (integer tuples), others as numbers (tuples of
        # numbers, such as lrs); an integer tuple given 2.5 is refused, not truncated.
        items = [str(int(v)) if float(v).is_integer() else repr(float(v)) for v in value]
        return "(" + ",".join(items) + ("," if len(value) == 1 else "") + ")"
    if isinstance(value, Context):
        return repr(value)
    return str(value)


_OPS = {}


def _op_handle(name):
    if name not in _OPS:
        h = ctypes.c_void_p()
        _check(_LIB.loom_op_find(ctypes.byref(h), name.encode()))
        _OPS[name] = h
    return _OPS[name]


# Parameters as the registry takes them, and the op's output count, per call shape:
# a training loop calls the same ops with the same parameters on every step, and
# formatting and counting them cost more than the call itself.
_CALLS = {}


_PLAIN = (bool, int, float, str, type(None))


def _call_key(name, params):
    """A key for parameters of plain values (numbers, strings and lists of them), else None."""
    key = [name]
    for k, v in params.items():
        if type(v) in _PLAIN:  # with its type: True == 1 == 1.0, but they format apart
            key.append((k, type(v), v))
        elif type(v) in (list, tuple) and all(type(e) in _PLAIN for e in v):
            key.append((k, type(v), tuple((type(e), e) for e in v)))
        else:
            return None
    return tuple(key)


def _prepared(name, params):
    key = _call_key(name, params)
    hit = _CALLS.get(key) if key is not None else None
    if hit is not None:
        return hit
    op = _op_handle(name)
    keys = [k for k, v in params.items() if v is not None]
    vals = [_format(params[k]) for k in keys]
    ck, cv = _strs(keys), _strs(vals)
    n = ctypes.c_int32()
    _check(_LIB.loom_op_num_outputs(ctypes.byref(n), op, ck, cv, len(keys)))
    hit = (op, ck, cv, len(keys), n.value)
    if key is not None:
        if len(_CALLS) >= 4096:
            _CALLS.clear()
        _CALLS[key] = hit
    return hit


def _invoke(name, inputs, params, out=None):
    op, ck, cv, nkeys, n = _prepared(name, params)
    outs = out if isinstance(out, (list, tuple)) else ([out] if out is not None else [])
    if outs and len(outs) != n:
        raise LoomError(_abi.LOOM_ERR_INVALID_ARGUMENT, "%s: out has %d arrays, the op has %d outputs"
                        % (name, len(outs), n))
    slots = (ctypes.c_void_p * max(n, 1))(*[o.handle.value for o in outs])
    ins = (ctypes.c_void_p * max(len(inputs), 1))(*[a.handle.value for a in inputs])
    _check(_LIB.loom_imperative_invoke(slots, n, op, ins, len(inputs), ck, cv, nkeys))
    results = list(outs) if outs else [NDArray(slots[i]) for i in range(n)]
    return results[0] if len(results) == 1 else results


def backward(heads, head_grads=None):
    """Back-propagates from several recorded outputs at once (their gradients are summed
    into the marked variables); head_grads default to ones, as NDArray.backward's does."""
    heads = list(heads)
    hs = (ctypes.c_void_p * max(len(heads), 1))(*[h.handle.value for h in heads])
    gs = None
    if head_grads is not None:
        head_grads = list(head_grads)
        if len(head_grads) != len(heads):
            raise LoomError(_abi.LOOM_ERR_INVALID_ARGUMENT, "backward: %d heads but %d head gradients"
                            % (len(heads), len(head_grads)))
        gs = (ctypes.c_void_p * max(len(heads), 1))(*[g.handle.value for g in head_grads])
    _check(_LIB.loom_autograd_backward(hs, gs, len(heads)))


def describe_ops():
    """The registry's description of every operator (the JSON of loom_op_describe)."""
    n = ctypes.c_int32()
    _check(_LIB.loom_op_count(ctypes.byref(n)))
    out = []
    for i in range(n.value):
        h, js = ctypes.c_void_p(), ctypes.c_char_p()
        _check(_LIB.loom_op_get(ctypes.byref(h), i))
        _check(_LIB.loom_op_describe(ctypes.byref(js), h))
        out.append(json.loads(js.value.decode()))
    return out


def describe_op(name):
    """The registry's description of one operator."""
    js = ctypes.c_char_p()
    _check(_LIB.loom_op_describe(ctypes.byref(js), _op_handle(name)))
    return json.loads(js.value.decode())


from . import _ops  # noqa: E402  (needs the definitions above)

nd = _ops.make_nd_module(describe_ops(), _invoke, NDArray)

from ._symbol import Symbol, Executor, Module  # noqa: E402

sym = _ops.make_sym_module(describe_ops(), Symbol)

from . import kv  # noqa: E402,F401  (MXNet's mx.kv)
from . import summary  # noqa: E402,F401  (TensorBoard event files)
from . import rnn  # noqa: E402,F401  (MXNet's mx.rnn cells)
from . import gluon  # noqa: E402,F401  (blocks written as classes; hybridize)
from . import onnx  # noqa: E402,F401  (ONNX export and import)
