"""TensorBoard event files written by libloom, read back by an independent reader:
TFRecord framing checked here with a CRC-32C written from its definition (checked
against the standard test vector), and the records parsed by Google's protobuf
library from TensorFlow's message definitions (event.proto, summary.proto,
graph.proto, node_def.proto, attr_value.proto field numbers), compiled by protoc."""
import glob
import importlib
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import unittest

import numpy as np

import loom
from loom import sym

PROTO = """
syntax = "proto3";
package tbcheck;
message HistogramProto {
  double min = 1; double max = 2; double num = 3; double sum = 4; double sum_squares = 5;
  repeated double bucket_limit = 6 [packed = true]; repeated double bucket = 7 [packed = true];
}
message Summary {
  message Value {
    string node_name = 7; string tag = 1;
    oneof value { float simple_value = 2; bytes obsolete_old_style_histogram = 3; HistogramProto histo = 5; }
  }
  repeated Value value = 1;
}
message AttrValue { oneof value { bytes s = 2; int64 i = 3; float f = 4; bool b = 5; } }
message NodeDef { string name = 1; string op = 2; repeated string input = 3; string device = 4;
                  map<string, AttrValue> attr = 5; }
message GraphDef { repeated NodeDef node = 1; }
message Event {
  double wall_time = 1; int64 step = 2;
  oneof what { string file_version = 3; bytes graph_def = 4; Summary summary = 5; }
}
"""


def crc32c(data):
    """CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), bit by bit."""
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFF


def masked(data):
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def records(path):
    with open(path, "rb") as f:
        raw = f.read()
    at, out = 0, []
    while at < len(raw):
        header = raw[at:at + 8]
        (length,) = struct.unpack("<Q", header)
        (lcrc,) = struct.unpack("<I", raw[at + 8:at + 12])
        assert lcrc == masked(header), "length CRC"
        data = raw[at + 12:at + 12 + length]
        (dcrc,) = struct.unpack("<I", raw[at + 12 + length:at + 16 + length])
        assert dcrc == masked(data), "data CRC"
        out.append(data)
        at += 16 + length
    return out


@unittest.skipUnless(shutil.which("protoc"), "protoc (Debian protobuf-compiler) is needed to read the files")
class TensorBoardTests(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp()
        with open(os.path.join(cls.tmp, "tbcheck.proto"), "w") as f:
            f.write(PROTO)
        subprocess.check_call(["protoc", "--python_out=" + cls.tmp, "-I" + cls.tmp, "tbcheck.proto"])
        sys.path.insert(0, cls.tmp)
        cls.pb = importlib.import_module("tbcheck_pb2")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def test_crc32c_matches_the_standard_check_value(self):
        self.assertEqual(crc32c(b"123456789"), 0xE3069283)

    def test_scalars_histograms_and_graph_read_back(self):
        logdir = os.path.join(self.tmp, "run", "a")
        values = np.array([-2.0, -1.0, 0.0, 0.5, 1.0, 3.0, np.nan, 2.0], dtype=np.float32)
        data = sym.Variable("data")
        net = sym.SoftmaxOutput(sym.FullyConnected(data, name="fc1", num_hidden=4), name="softmax")
        with loom.summary.SummaryWriter(logdir) as w:
            path = w.path
            w.add_scalar("train/accuracy", 0.75, 10)
            w.add_scalar("train/accuracy", 0.875, 20)
            w.add_histogram("fc1_weight", loom.from_numpy(values), 20, bins=5)
            w.add_graph(net)
            w.flush()
            with self.assertRaises(loom.LoomError):
                w.add_histogram("nan", loom.from_numpy(np.array([np.nan], dtype=np.float32)), 1)
        self.assertEqual(glob.glob(os.path.join(logdir, "events.out.tfevents.*")), [path])
        events = []
        for r in records(path):
            e = self.pb.Event()
            e.ParseFromString(r)
            events.append(e)
        self.assertEqual(events[0].file_version, "brain.Event:2")
        scalars = [(e.step, v.tag, v.simple_value) for e in events if e.HasField("summary")
                   for v in e.summary.value if v.WhichOneof("value") == "simple_value"]
        self.assertEqual(scalars, [(10, "train/accuracy", 0.75), (20, "train/accuracy", 0.875)])
        histos = [v.histo for e in events if e.HasField("summary") for v in e.summary.value
                  if v.WhichOneof("value") == "histo"]
        self.assertEqual(len(histos), 1)
        h = histos[0]
        finite = values[np.isfinite(values)].astype(np.float64)
        self.assertEqual((h.min, h.max, h.num), (-2.0, 3.0, 7.0))
        self.assertEqual(h.sum, finite.sum())
        self.assertEqual(h.sum_squares, (finite ** 2).sum())
        counts, edges = np.histogram(finite, bins=5, range=(-2.0, 3.0))
        np.testing.assert_allclose(list(h.bucket_limit), edges[1:], rtol=0, atol=1e-12)
        self.assertEqual(list(h.bucket), list(counts.astype(float)))
        graphs = [e.graph_def for e in events if e.WhichOneof("what") == "graph_def"]
        self.assertEqual(len(graphs), 1)
        g = self.pb.GraphDef()
        g.ParseFromString(graphs[0])
        nodes = {n.name: n for n in g.node}
        self.assertEqual(nodes["fc1"].op, "FullyConnected")
        self.assertEqual(list(nodes["fc1"].input), ["data", "fc1_weight", "fc1_bias"])
        self.assertEqual(nodes["fc1"].attr["num_hidden"].s, b"4")
        self.assertEqual(nodes["data"].op, "Variable")
        self.assertEqual(list(nodes["softmax"].input), ["fc1", "softmax_label"])

    def test_a_log_directory_that_cannot_be_made_is_named(self):
        blocker = os.path.join(self.tmp, "file")
        open(blocker, "w").close()
        with self.assertRaises(loom.LoomError) as cm:
            loom.summary.SummaryWriter(os.path.join(blocker, "run"))
        self.assertIn(blocker, str(cm.exception))


if __name__ == "__main__":
    unittest.main()
