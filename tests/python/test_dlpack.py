"""DLPack: arrays cross between Loom, NumPy and PyTorch without copies."""
import unittest

import numpy as np

import loom

try:
    import torch
    from torch.utils import dlpack as tdl
except ImportError:
    torch = None


class DLPackTests(unittest.TestCase):
    def test_numpy_views_loom_memory(self):
        a = loom.from_numpy(np.arange(6.0).reshape(2, 3))
        n = np.from_dlpack(a)
        np.testing.assert_array_equal(n, np.arange(6.0).reshape(2, 3))
        loom.nd.multiply_scalar(a, scalar=2.0, out=a)  # written in place by Loom (asynchronously)...
        a.wait_to_read()
        np.testing.assert_array_equal(n, 2 * np.arange(6.0).reshape(2, 3))  # ...and seen through the view
        self.assertFalse(n.flags["OWNDATA"])

    def test_loom_imports_numpy_without_copying(self):
        x = np.arange(12, dtype=np.float32).reshape(3, 4)
        a = loom.from_dlpack(x)
        self.assertEqual(a.shape, (3, 4))
        x[0, 0] = 100
        self.assertEqual(float(loom.nd.sum(a).asnumpy().reshape(-1)[0]), 166.0)

    @unittest.skipIf(torch is None, "PyTorch is not installed (apt-get install python3-torch)")
    def test_torch_round_trip_shares_memory(self):
        a = loom.from_numpy(np.zeros((2, 3), np.float32))
        t = tdl.from_dlpack(a)
        t += 5
        np.testing.assert_array_equal(a.asnumpy(), np.full((2, 3), 5, np.float32))
        src = torch.arange(6, dtype=torch.float64).reshape(2, 3)
        b = loom.from_dlpack(tdl.to_dlpack(src))
        src.mul_(10)
        np.testing.assert_array_equal(b.asnumpy(), np.arange(6.0).reshape(2, 3) * 10)
        self.assertEqual(b.dtype, "float64")

    @unittest.skipIf(torch is None, "PyTorch is not installed (apt-get install python3-torch)")
    def test_what_cannot_be_viewed_is_refused(self):
        t = torch.arange(6, dtype=torch.float32).reshape(2, 3).t()  # not row-major
        with self.assertRaises(loom.LoomError) as e:
            loom.from_dlpack(tdl.to_dlpack(t))
        self.assertIn("not compact row-major", str(e.exception))
        with self.assertRaises(loom.LoomError) as e:
            loom.from_dlpack(tdl.to_dlpack(torch.zeros(3, dtype=torch.complex64)))
        self.assertIn("has no Loom dtype", str(e.exception))


if __name__ == "__main__":
    unittest.main()
