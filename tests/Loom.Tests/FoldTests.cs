using System;
using System.Collections.Generic;
using System.Linq;
using NUnit.Framework;

namespace Loom.Tests;

// BatchNorm folded into the convolutions of Loom's ResNet-50 and Inception-BN
// (Symbol.FoldBatchNorm): every BatchNorm goes, predictions stay (float32 sums in
// another order: within 1e-5 of the largest output).
public class FoldTests
{
    [TestCase(50, 53)]
    [TestCase(18, 20)]
    public void ResNetPredictsTheSameWithBatchNormFolded(int depth, int batchNorms)
    {
        using var net = Models.ResNet(depth, 10);
        var shape = new long[] { 2, 3, 64, 64 };
        var shapes = new Dictionary<string, long[]> { ["data"] = shape, ["softmax_label"] = new long[] { 2 } };
        using var ex = net.SimpleBind(Context.Cpu(), shapes, GradReq.Null);
        var rng = new Random(11);
        float[] Draw(long n, double lo, double hi) => Enumerable.Range(0, (int)n).Select(_ => (float)(lo + (hi - lo) * rng.NextDouble())).ToArray();
        var args = new Dictionary<string, NDArray>();
        foreach (var (name, a) in ex.ArgDict)
        {
            if (name is "data" or "softmax_label") continue;
            long n = a.Shape.Aggregate(1L, (x, y) => x * y), fanIn = Math.Max(1, n / a.Shape[0]);
            double bound = Math.Sqrt(1.0 / fanIn);
            a.CopyFrom<float>(name.EndsWith("gamma") ? Draw(n, 0.5, 1.5) : Draw(n, -bound, bound));
            args[name] = a;
        }
        var aux = new Dictionary<string, NDArray>();
        foreach (var (name, a) in ex.AuxDict)
        {
            long n = a.Shape.Aggregate(1L, (x, y) => x * y);
            a.CopyFrom<float>(name.EndsWith("var") ? Draw(n, 0.5, 1.5) : Draw(n, -0.2, 0.2));
            aux[name] = a;
        }
        var x = Draw(shape.Aggregate(1L, (p, q) => p * q), -1, 1);
        ex.ArgDict["data"].CopyFrom<float>(x);
        ex.Forward(isTrain: false);
        var want = ex.Outputs[0].ToArray<float>();

        var (folded, fargs, faux, count) = net.FoldBatchNorm(args, aux);
        using (folded)
        {
            Assert.That(count, Is.EqualTo(batchNorms));
            Assert.That(faux, Is.Empty);
            Assert.That(folded.ListAuxiliaryStates(), Is.Empty);
            Assert.That(folded.ToJson(), Does.Not.Contain("\"BatchNorm\""));
            using var ex2 = folded.SimpleBind(Context.Cpu(), shapes, GradReq.Null);
            foreach (var (k, v) in fargs) v.CopyTo(ex2.ArgDict[k]);
            ex2.ArgDict["data"].CopyFrom<float>(x);
            ex2.Forward(isTrain: false);
            var got = ex2.Outputs[0].ToArray<float>();
            double scale = want.Max(v => Math.Abs((double)v));
            double err = got.Zip(want, (p, q) => Math.Abs((double)p - q)).Max() / scale;
            TestContext.Out.WriteLine($"ResNet-{depth}: {count} BatchNorms folded, max |folded - unfolded| / max |out| = {err:g3}");
            Assert.That(err, Is.LessThan(1e-5));
        }
    }

    // A relu node's __onednn_relu__ attribute (what LOOM_EXEC_RELU=onednn does for all):
    // the fused convolutions' relu becomes oneDNN's post-op, max(x, 0). The same bits as
    // Loom's relu for finite data; a NaN pixel, which Loom's relu passes on as MXNet's
    // reference relu does, stops at the first fused relu (0, as in MXNet's oneDNN builds).
    [Test]
    public void ResNetWithOnednnReluHasTheSameBitsAndStopsNaN()
    {
        var shape = new long[] { 2, 3, 64, 64 };
        var shapes = new Dictionary<string, long[]> { ["data"] = shape, ["softmax_label"] = new long[] { 2 } };
        using var net = Models.ResNet(18, 10);
        Symbol marked;
        using (Symbol.AttrScope(("__onednn_relu__", "True"))) marked = Models.ResNet(18, 10);
        using var _ = marked;
        using var ex = net.SimpleBind(Context.Cpu(), shapes, GradReq.Null);
        using var ex2 = marked.SimpleBind(Context.Cpu(), shapes, GradReq.Null);
        var rng = new Random(5);
        float[] Draw(long n, double lo, double hi) => Enumerable.Range(0, (int)n).Select(_ => (float)(lo + (hi - lo) * rng.NextDouble())).ToArray();
        foreach (var (name, a) in ex.ArgDict.Concat(ex.AuxDict))
        {
            if (name is "data" or "softmax_label") continue;
            long n = a.Shape.Aggregate(1L, (p, q) => p * q), fanIn = Math.Max(1, n / a.Shape[0]);
            double bound = Math.Sqrt(3.0 / fanIn);
            a.CopyFrom<float>(name.EndsWith("gamma") || name.EndsWith("var") ? Draw(n, 0.5, 1.5) : Draw(n, -bound, bound));
            a.CopyTo(ex.ArgDict.ContainsKey(name) ? ex2.ArgDict[name] : ex2.AuxDict[name]);
        }
        var x = Draw(shape.Aggregate(1L, (p, q) => p * q), -1, 1);
        float[] Run(Executor e, float[] data)
        {
            e.ArgDict["data"].CopyFrom<float>(data);
            e.Forward(isTrain: false);
            return e.Outputs[0].ToArray<float>();
        }
        Assert.That(Run(ex2, x), Is.EqualTo(Run(ex, x)), "finite data: the same bits");
        // An 8x8 patch of image 1: max pooling passes a NaN on only when a whole window
        // holds NaN (MXNet's rule), so one pixel would not reach the output.
        for (int r = 10; r < 18; r++)
            for (int c = 20; c < 28; c++) x[3 * 64 * 64 + r * 64 + c] = float.NaN;
        var mine = Run(ex, x);
        var theirs = Run(ex2, x);
        Assert.That(mine.Skip(10).Any(float.IsNaN), Is.True, "Loom's relu passes NaN on");
        Assert.That(mine.Take(10).Any(float.IsNaN), Is.False);
        bool onednn = Backend.Describe(DeviceType.Cpu).Contains("onednn") &&
                      Environment.GetEnvironmentVariable("LOOM_CPU_KERNELS") != "reference";
        if (onednn)
            Assert.That(theirs.Any(float.IsNaN), Is.False, "oneDNN's relu did not run");
        else
            Assert.That(theirs, Is.EqualTo(mine).Using<float>((p, q) => p.Equals(q)));
    }
}
