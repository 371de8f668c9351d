"""MXNet's key-value store (``loom.kv.create("local")``): arrays by key, summed
when pushed (one value per device, added in device order) and copied out when
pulled, optionally updated where they live by a native optimizer op. Every
number is computed by the native store; this module only passes handles."""
import ctypes

from . import LoomError, NDArray, _LIB, _check, _strs  # noqa: F401  (LoomError re-exported)

__all__ = ["KVStore", "create"]


def _arrays(items):
    arr = (ctypes.c_void_p * max(len(items), 1))()
    for i, a in enumerate(items):
        if not isinstance(a, NDArray):
            raise TypeError("kvstore: expected loom NDArrays, got %r" % type(a).__name__)
        arr[i] = a.handle
    return arr


def _pairs(key, values):
    """(keys, values) lists from a key or list of keys and a value or list of values
    (a key given once with several values means one value per device)."""
    if isinstance(key, (list, tuple)):
        keys, vals = [str(k) for k in key], list(values)
        if len(keys) != len(vals):
            raise ValueError("kvstore: %d keys but %d values" % (len(keys), len(vals)))
        return keys, vals
    vals = list(values) if isinstance(values, (list, tuple)) else [values]
    return [str(key)] * len(vals), vals


class KVStore:
    """A key-value store; see :func:`create`."""

    def __init__(self, handle):
        self.handle = handle

    def __del__(self):
        if getattr(self, "handle", None):
            _LIB.loom_kvstore_free(self.handle)
            self.handle = None

    @property
    def type(self):
        out = ctypes.c_char_p()
        _check(_LIB.loom_kvstore_get_type(ctypes.byref(out), self.handle))
        return out.value.decode()

    @property
    def rank(self):
        out = ctypes.c_int32()
        _check(_LIB.loom_kvstore_get_rank(ctypes.byref(out), self.handle))
        return out.value

    @property
    def num_workers(self):
        out = ctypes.c_int32()
        _check(_LIB.loom_kvstore_get_num_workers(ctypes.byref(out), self.handle))
        return out.value

    def init(self, key, value):
        """Stores a copy of each value under its key (int or str keys)."""
        keys, vals = _pairs(key, value)
        _check(_LIB.loom_kvstore_init(self.handle, len(keys), _strs(keys), _arrays(vals)))

    def push(self, key, value, priority=0):
        """Sums the values given for each key into the store (or applies the updater)."""
        keys, vals = _pairs(key, value)
        _check(_LIB.loom_kvstore_push(self.handle, len(keys), _strs(keys), _arrays(vals), priority))

    def pull(self, key, out, priority=0):
        """Copies each key's value into the output(s) given for it."""
        keys, outs = _pairs(key, out)
        _check(_LIB.loom_kvstore_pull(self.handle, len(keys), _strs(keys), _arrays(outs), priority))

    def pushpull(self, key, value, out, priority=0):
        """A push, then a pull of the same key(s), in one native call (across processes
        the sum can go straight into the outputs)."""
        keys, vals = _pairs(key, value)
        out_keys, outs = _pairs(key, out)
        _check(_LIB.loom_kvstore_pushpull(self.handle, len(keys), _strs(keys), _arrays(vals),
                                          len(out_keys), _strs(out_keys), _arrays(outs), priority))

    def set_updater(self, op, **params):
        """Updates pushed keys with a native optimizer op, such as
        ``set_updater("sgd_mom_update", lr=0.1, momentum=0.9)``."""
        keys = list(params)
        vals = [str(params[k]).lower() if isinstance(params[k], bool) else repr(params[k])
                if isinstance(params[k], float) else str(params[k]) for k in keys]
        _check(_LIB.loom_kvstore_set_updater(self.handle, op.encode(), len(keys), _strs(keys), _strs(vals)))

    def barrier(self):
        _check(_LIB.loom_kvstore_barrier(self.handle))

    def save_optimizer_states(self, path):
        _check(_LIB.loom_kvstore_save_states(self.handle, str(path).encode()))

    def load_optimizer_states(self, path):
        _check(_LIB.loom_kvstore_load_states(self.handle, str(path).encode()))


def create(type="local"):  # noqa: A002  (MXNet's name)
    """A key-value store: "local" (sums on the CPU) or "device" (on the devices);
    the dist_* types need the MPI plugin and say so."""
    h = ctypes.c_void_p()
    _check(_LIB.loom_kvstore_create(ctypes.byref(h), type.encode()))
    return KVStore(h)
