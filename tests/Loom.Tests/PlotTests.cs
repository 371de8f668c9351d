using System;
using System.Collections.Generic;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Text.RegularExpressions;
using Loom.Plot;
using NUnit.Framework;

namespace Loom.Tests;

// Training curves drawn with ScottPlot, checked by content: the SVG's polyline of the
// running metric has one point per record, placed by an affine map of the values; the
// PNG has its signature and size.
[NonParallelizable]
public class PlotTests
{
    private static (NDArrayIter Train, NDArrayIter Test) Blobs()
    {
        Rand.Seed(3);
        var labels = Op.Cast(Op.RandomUniform(low: 0, high: 3, shape: new long[] { 300 }), DType.Int32).AsType(DType.Float32);
        var x = Op.OneHot(labels.AsType(DType.Int64), depth: 5) * 1.0 + Rand.Normal(0, 0.8, new long[] { 300, 5 });
        return (new NDArrayIter(x, labels, 20, shuffle: true), new NDArrayIter(x, labels, 20));
    }

    private static Symbol Mlp() => Symbol.Variable("data")
        .FullyConnected("fc1", numHidden: 8).Activation("relu1", ActType.Relu)
        .FullyConnected("fc2", numHidden: 3)
        .SoftmaxOutput("softmax");

    private static List<(double X, double Y)> Points(string d) =>
        Regex.Matches(d, @"[ML]([-\d.e]+) ([-\d.e]+)").Select(m =>
            (double.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), double.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture))).ToList();

    // The running metric as another callback sees it (the independent record).
    private sealed class Recorder(int interval) : Callback(interval)
    {
        public List<double> Values { get; } = new();
        public override void Invoke(Module module, BatchEnd e) => Values.Add(e.Metric.Get());
    }

    [Test]
    public void CurvesFollowTheTraining()
    {
        string dir = Path.Combine(Path.GetTempPath(), "loom-plot-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        var old = Module.Log;
        Module.Log = _ => { };
        try
        {
            string svg = Path.Combine(dir, "curves.svg");
            var curves = new TrainingCurves(svg, "blobs", interval: 3);
            var seen = new Recorder(3);
            var (train, test) = Blobs();
            using (var m = new Module(Mlp()) { Progress = ProgressMode.Off })
                m.Fit(train, new SGD(0.1), 3, test, new XavierInit(), new Callback[] { curves, seen });
            Assert.That(curves.Epochs.Select(e => e.Epoch), Is.EqualTo(new[] { 1, 2, 3 }));
            Assert.That(curves.Epochs.All(e => e.Batches == 15 && e.Validation is > 0 and <= 1 && e.Metric == "accuracy"), Is.True);
            var running = curves.Running;
            Assert.That(running, Has.Count.EqualTo(15));  // batches 3, 6, ..., 15 of 3 epochs
            Assert.That(running[0].Epoch, Is.EqualTo(0.2).Within(1e-12));
            Assert.That(running[^1].Epoch, Is.EqualTo(3.0).Within(1e-12));
            Assert.That(running.Select(r => r.Value), Is.EqualTo(seen.Values));

            // The running series is the first (blue) polyline with one vertex per record.
            string text = File.ReadAllText(svg);
            Assert.That(text, Does.Contain("<svg").And.Contain("blobs"));
            var line = Regex.Matches(text, "<path[^>]*stroke=\"#1F77B4\"[^>]*d=\"([^\"]+)\"")
                .Select(mt => Points(mt.Groups[1].Value)).Single(p => p.Count == running.Count);
            // x and y are affine in the epoch position and the value (y grows downwards).
            int a = 0, b = running.Count - 1;
            for (int i = 0; i < running.Count; i++)
            {
                double fx = (running[i].Epoch - running[a].Epoch) / (running[b].Epoch - running[a].Epoch);
                Assert.That(line[i].X, Is.EqualTo(line[a].X + fx * (line[b].X - line[a].X)).Within(0.05), $"x of point {i}");
            }
            var lo = running.Select((r, i) => (r.Value, i)).MinBy(t => t.Value);
            var hi = running.Select((r, i) => (r.Value, i)).MaxBy(t => t.Value);
            Assume.That(hi.Value - lo.Value, Is.GreaterThan(0.05));
            for (int i = 0; i < running.Count; i++)
            {
                double fy = (running[i].Value - lo.Value) / (hi.Value - lo.Value);
                Assert.That(line[i].Y, Is.EqualTo(line[lo.i].Y + fy * (line[hi.i].Y - line[lo.i].Y)).Within(0.05), $"y of point {i}");
            }
            Assert.That(line[hi.i].Y, Is.LessThan(line[lo.i].Y));

            string png = Path.Combine(dir, "curves.png");
            curves.Width = 640;
            curves.Height = 360;
            curves.Save(png);
            var bytes = File.ReadAllBytes(png);
            Assert.That(bytes.Take(8), Is.EqualTo(new byte[] { 0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A }));
            int W = (bytes[16] << 24) | (bytes[17] << 16) | (bytes[18] << 8) | bytes[19];
            int H = (bytes[20] << 24) | (bytes[21] << 16) | (bytes[22] << 8) | bytes[23];
            Assert.That((W, H), Is.EqualTo((640, 360)));

            // Bad paths name the file; nothing half-written is left.
            var ex = Assert.Throws<LoomException>(() => curves.Save(Path.Combine(dir, "curves.jpg")))!;
            Assert.That(ex.Message, Does.Contain("curves.jpg").And.Contain(".png or .svg"));
            string missing = Path.Combine(dir, "no-such-dir", "c.png");
            ex = Assert.Throws<LoomException>(() => curves.Save(missing))!;
            Assert.That(ex.Status, Is.EqualTo(LoomStatus.Io));
            Assert.That(ex.Message, Does.Contain(missing));
            Assert.That(Directory.GetFiles(dir).Select(Path.GetFileName), Is.EquivalentTo(new[] { "curves.svg", "curves.png" }));
        }
        finally
        {
            Module.Log = old;
            Directory.Delete(dir, recursive: true);
        }
    }
}
