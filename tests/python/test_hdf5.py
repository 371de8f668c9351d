"""HDF5 files written by h5py (the independent writer) and read by Loom: every element type
h5py writes by default, row ranges, groups, and the errors."""
import os
import tempfile
import unittest

import numpy as np

import loom

try:
    import h5py
except ImportError:  # pragma: no cover - the CI installs python3-h5py
    h5py = None


@unittest.skipIf(h5py is None, "h5py is not installed (sudo apt-get install -y python3-h5py)")
class Hdf5Tests(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.path = os.path.join(self.dir.name, "t.h5")
        rng = np.random.default_rng(11)
        self.values = {
            "f32": rng.normal(size=(7, 3, 2)).astype(np.float32),
            "f64": rng.normal(size=(5,)).astype(np.float64),
            "i8": rng.integers(-128, 128, size=(4, 4)).astype(np.int8),
            "u8": rng.integers(0, 256, size=(6, 2)).astype(np.uint8),
            "i32": rng.integers(-2 ** 31, 2 ** 31, size=(3,)).astype(np.int32),
            "i64": rng.integers(-2 ** 62, 2 ** 62, size=(3, 1)).astype(np.int64),
            "grp/sub/u16": rng.integers(0, 2 ** 16, size=(5,)).astype(np.uint16),
        }
        with h5py.File(self.path, "w") as f:
            for k, v in self.values.items():
                f.create_dataset(k, data=v, chunks=True if v.ndim > 1 else None)

    def tearDown(self):
        self.dir.cleanup()

    def test_every_dtype_and_row_ranges(self):
        want_dtype = {"f32": "float32", "f64": "float64", "i8": "int8", "u8": "uint8", "i32": "int32",
                      "i64": "int64", "grp/sub/u16": "int32"}
        for k, v in self.values.items():
            a = loom.read_hdf5(self.path, k)
            self.assertEqual(a.dtype, want_dtype[k], k)
            np.testing.assert_array_equal(a.asnumpy(), v.astype(a.asnumpy().dtype), err_msg=k)
        part = loom.read_hdf5(self.path, "f32", 2, 5).asnumpy()
        np.testing.assert_array_equal(part, self.values["f32"][2:5])
        self.assertEqual(loom.read_hdf5(self.path, "f32", 7, 7).shape, (0, 3, 2))

    def test_errors_name_the_file_and_dataset(self):
        with self.assertRaisesRegex(loom.LoomError, r"has no dataset 'nope' \(at its top level: f32, f64, grp, i32"):
            loom.read_hdf5(self.path, "nope")
        with self.assertRaisesRegex(loom.LoomError, r"rows \[0, 8\) are outside dataset 'f32' of 7 rows"):
            loom.read_hdf5(self.path, "f32", 0, 8)
        with self.assertRaisesRegex(loom.LoomError, "'grp' is not a dataset"):
            loom.read_hdf5(self.path, "grp")
        bad = os.path.join(self.dir.name, "bad.h5")
        with open(bad, "wb") as f:
            f.write(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)  # the signature, then nothing valid
        with self.assertRaisesRegex(loom.LoomError, "bad.h5"):
            loom.read_hdf5(bad, "f32")


if __name__ == "__main__":
    unittest.main()
