"""Writes mocha.h5, the HDF5 test file, with h5py (an independent writer): the values are
formulas the tests recompute. Run: python3 tests/hdf5/make.py tests/hdf5/mocha.h5"""
import sys

import h5py
import numpy as np

with h5py.File(sys.argv[1], "w") as f:
    rows = np.arange(10).reshape(10, 1, 1)
    cols = np.arange(12).reshape(1, 3, 4)
    f.create_dataset("data", data=(rows * 100 + cols).astype(np.float32) / 8)  # (10, 3, 4) float32
    f.create_dataset("label", data=(np.arange(10) % 3).astype(np.int64))      # (10,) int64
    g = f.create_group("extra")
    g.create_dataset("f64", data=np.linspace(-1, 1, 6, dtype=np.float64).reshape(3, 2))
    g.create_dataset("u8", data=np.arange(200, 206, dtype=np.uint8))
    g.create_dataset("i16", data=np.array([-300, 7, 300], dtype=np.int16))
    g.create_dataset("u32", data=np.array([0, 4000000000], dtype=np.uint32))
    g.create_dataset("f16", data=np.array([0.5, -2.25], dtype=np.float16))
    g.create_dataset("u64", data=np.array([1], dtype=np.uint64))
    g.create_dataset("scalar", data=3.0)
