"""Prediction passes keep a convolution's weights in oneDNN's layout on the weight's engine
var for the weight's version: every write (an executor argument copied into, an imperative
op writing the array with out=, an optimizer step) makes the kept copy stale, and an array
whose memory another library can write (DLPack) keeps nothing. Each case checks the
prediction against PyTorch's float64 convolution after the write."""
import unittest

import numpy as np
import torch
import torch.nn.functional as F

import loom
from loom import nd, sym


def _torch_conv(x, w):
    return F.conv2d(torch.from_numpy(x.astype(np.float64)), torch.from_numpy(w.astype(np.float64)),
                    padding=1).numpy()


def _close(test, got, want):
    err = np.abs(got - want).max() / (1 + np.abs(want).max())
    test.assertLess(err, 1e-5)


class KeptWeights(unittest.TestCase):
    def setUp(self):
        self.rng = np.random.default_rng(7)

    def _rand(self, *shape):
        return self.rng.uniform(-1, 1, shape).astype(np.float32)

    def test_executor_prediction_follows_argument_writes(self):
        net = sym.Convolution(sym.Variable("data"), sym.Variable("w"), kernel=(3, 3), pad=(1, 1),
                              num_filter=64, no_bias=True, name="conv")
        for batch in (1, 5):  # one image (channel pieces) and batches of images
            ex = net.simple_bind(loom.cpu(), grad_req="null", data=(batch, 16, 9, 9))
            x = self._rand(batch, 16, 9, 9)
            for step in range(3):
                w = self._rand(64, 16, 3, 3)
                ex.arg_dict["w"].copyfrom(w)
                y = ex.forward(is_train=False, data=x)[0].asnumpy()
                _close(self, y, _torch_conv(x, w))
                again = ex.forward(is_train=False, data=x)[0].asnumpy()
                np.testing.assert_array_equal(again, y)  # the kept weights give the same bits

    def test_imperative_prediction_follows_writes_with_out(self):
        x, w0 = self._rand(2, 16, 7, 7), self._rand(32, 16, 3, 3)
        X, W = loom.array(x), loom.array(w0)
        conv = lambda: nd.Convolution(X, W, kernel=(3, 3), pad=(1, 1), num_filter=32, no_bias=True).asnumpy()
        _close(self, conv(), _torch_conv(x, w0))
        nd.add(W, W, out=W)  # W doubles in place, through the engine
        _close(self, conv(), _torch_conv(x, 2 * w0))

    def test_dlpack_writes_are_seen(self):
        x, w0 = self._rand(1, 16, 7, 7), self._rand(32, 16, 3, 3)
        X, W = loom.array(x), loom.array(w0)
        conv = lambda: nd.Convolution(X, W, kernel=(3, 3), pad=(1, 1), num_filter=32, no_bias=True).asnumpy()
        _close(self, conv(), _torch_conv(x, w0))
        shared = torch.utils.dlpack.from_dlpack(W)  # the same memory, written by PyTorch
        shared.mul_(-3)
        _close(self, conv(), _torch_conv(x, -3 * w0))
        # and an array made from another library's memory
        t = torch.from_numpy(w0.copy())
        W2 = loom.from_dlpack(torch.utils.dlpack.to_dlpack(t))
        conv2 = lambda: nd.Convolution(X, W2, kernel=(3, 3), pad=(1, 1), num_filter=32, no_bias=True).asnumpy()
        _close(self, conv2(), _torch_conv(x, w0))
        t.add_(1)
        _close(self, conv2(), _torch_conv(x, w0 + 1))


if __name__ == "__main__":
    unittest.main()
