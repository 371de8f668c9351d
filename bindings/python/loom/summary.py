"""TensorBoard event files (``loom.summary.SummaryWriter("runs/mlp")``), written by the
native library: scalars, histograms computed natively, and the network graph. This
module only passes handles; every byte and number comes from libloom."""
import ctypes

from . import NDArray, Symbol, _LIB, _check

__all__ = ["SummaryWriter"]


class SummaryWriter:
    """A new event file in ``logdir`` (created if needed)."""

    def __init__(self, logdir):
        h = ctypes.c_void_p()
        _check(_LIB.loom_summary_writer_create(ctypes.byref(h), str(logdir).encode()))
        self.handle = h.value

    def __del__(self):
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def path(self):
        p = ctypes.c_char_p()
        _check(_LIB.loom_summary_writer_get_path(ctypes.byref(p), self.handle))
        return p.value.decode()

    def add_scalar(self, tag, value, step):
        _check(_LIB.loom_summary_add_scalar(self.handle, tag.encode(), float(value), int(step)))

    def add_histogram(self, tag, values, step, bins=30):
        if not isinstance(values, NDArray):
            raise TypeError("add_histogram: expected a loom NDArray, got %r" % type(values).__name__)
        _check(_LIB.loom_summary_add_histogram(self.handle, tag.encode(), values.handle, int(step), int(bins)))

    def add_graph(self, symbol):
        if not isinstance(symbol, Symbol):
            raise TypeError("add_graph: expected a loom Symbol, got %r" % type(symbol).__name__)
        _check(_LIB.loom_summary_add_graph(self.handle, symbol._h))

    def flush(self):
        _check(_LIB.loom_summary_writer_flush(self.handle))

    def close(self):
        if getattr(self, "handle", None) and _LIB is not None:
            _LIB.loom_summary_writer_free(self.handle)
            self.handle = None
