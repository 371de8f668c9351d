"""Symbol files written by MXNet and Gluon in public repositories (tests/mxnet_files: each
file's repository, path and commit are in manifest.json) load, infer the output shapes MXNet's
rules give, bind and run forward with finite outputs."""
import json
import os
import sys
import unittest

import numpy as np

import loom
from loom import sym

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "mxnet_files")
sys.path.insert(0, HERE)
import check  # noqa: E402  (tests/mxnet_files/check.py)


class MXNetFiles(unittest.TestCase):
    def test_corpus_loads_infers_binds_and_runs(self):
        with open(os.path.join(HERE, "manifest.json")) as f:
            entries = json.load(f)["files"]
        self.assertGreaterEqual(len(entries), 10)
        repos = {e["repo"] for e in entries}
        self.assertGreaterEqual(len(repos), 4)
        for e in entries:
            with self.subTest(file=e["file"], source="%s:%s@%s" % (e["repo"], e["path"], e["commit"])):
                self.assertTrue(os.path.exists(os.path.join(HERE, e["file"])))
                outs = check.check(e, HERE)
                if "outputs" in e:
                    self.assertEqual([list(o) for o in outs], e["outputs"])

    def test_zero_extent_of_a_creation_op_is_inferred(self):
        """MXNet 1.x: zeros(shape=(2, 0, 3)) in a symbol leaves the 0 to inference (an RNN's
        begin state written by MXNet's FusedRNNCell takes its batch size this way)."""
        x = sym.Variable("x")
        z = sym.zeros(shape=(2, 0, 3))
        for s in (z + x, x + z):
            self.assertEqual(s.infer_shape(x=(2, 5, 3))[1], [(2, 5, 3)])
        ex = (z + x).simple_bind(x=(2, 5, 3))
        np.testing.assert_array_equal(ex.forward(x=np.ones((2, 5, 3)))[0].asnumpy(), np.ones((2, 5, 3)))
        with self.assertRaises(loom.LoomError) as cm:
            (sym.zeros(shape=(3, 0, 3), name="z0") + x).infer_shape(x=(2, 5, 3))
        self.assertIn("'z0'", str(cm.exception))
        self.assertIn("(3,0,3)", str(cm.exception))


if __name__ == "__main__":
    unittest.main()
