"""ONNX models (opsets 13 to 17), read and written natively (loom_onnx_*), in the
shape of MXNet's mx.onnx.export_model and mx.contrib.onnx.import_model."""
import ctypes
import json

from . import _LIB, _check, _strs, _take_list
from ._symbol import Symbol, _shape_args


def available():
    """Whether this build of Loom reads and writes ONNX."""
    out = ctypes.c_int32()
    _check(_LIB.loom_onnx_available(ctypes.byref(out)))
    return bool(out.value)


def export_model(sym, params, in_shapes, onnx_file_path, opset_version=13):
    """Writes `sym` with `params` (a dict name -> NDArray of arguments and auxiliary
    states, or a pair (arg_params, aux_params)) to `onnx_file_path`. `in_shapes` maps
    each input's name to its shape. Returns the path."""
    if isinstance(params, (tuple, list)):
        merged = {}
        for d in params:
            merged.update(d)
        params = merged
    names = list(params)
    handles = (ctypes.c_void_p * max(len(names), 1))(*[params[n].handle for n in names])
    snames, ndims, dims = _shape_args(dict(in_shapes))
    _check(_LIB.loom_onnx_export(str(onnx_file_path).encode(), sym.handle, len(names), _strs(names),
                                 handles, len(snames), _strs(snames), ndims, dims, int(opset_version)))
    return str(onnx_file_path)


def import_model(model_file):
    """Reads an ONNX model: (sym, arg_params, aux_params), as MXNet's import_model.
    The model's inputs and their shapes (-1 where symbolic) are in `input_shapes(model_file)`."""
    sym, params, _ = _import(model_file)
    aux_names = set(sym.list_auxiliary_states())
    arg = {k: v for k, v in params.items() if k not in aux_names}
    aux = {k: v for k, v in params.items() if k in aux_names}
    return sym, arg, aux


def input_shapes(model_file):
    """The model's inputs as a dict name -> shape (-1 where an extent is symbolic)."""
    return _import(model_file)[2]


def _import(model_file):
    sym, lst, js = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_char_p()
    _check(_LIB.loom_onnx_import(ctypes.byref(sym), ctypes.byref(lst), ctypes.byref(js),
                                 str(model_file).encode()))
    s = Symbol(sym)
    inputs = {d["name"]: tuple(d["shape"]) for d in json.loads(js.value.decode())}
    return s, _take_list(lst), inputs
