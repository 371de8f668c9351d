using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using NUnit.Framework;

namespace Loom.Tests;

// Loom's reference networks written as ONNX and run by ONNX Runtime (NuGet
// Microsoft.ML.OnnxRuntime, an independent engine): its outputs equal Loom's. Models
// exported by PyTorch are imported in the Python suite (tests/python/test_onnx.py).
public class OnnxTests
{
    private string _dir = "";

    [SetUp]
    public void SetUp()
    {
        _dir = Path.Combine(Path.GetTempPath(), "loom-onnx-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_dir);
    }

    [TearDown]
    public void TearDown() => Directory.Delete(_dir, true);

    // Deterministic parameters scaled by fan-in (so 50 layers neither vanish nor explode) and
    // BatchNorm statistics that are not the initial 0 and 1.
    private static (Dictionary<string, NDArray> Args, Dictionary<string, NDArray> Aux) RandomParams(
        Executor ex, int seed)
    {
        var rng = new Random(seed);
        var args = new Dictionary<string, NDArray>();
        var aux = new Dictionary<string, NDArray>();
        foreach (var (name, a) in ex.ArgDict)
        {
            if (name == "data" || name.EndsWith("label")) continue;
            long n = a.Shape.Aggregate(1L, (x, y) => x * y);
            double bound = Math.Sqrt(1.0 / Math.Max(1, n / a.Shape[0]));
            bool isScale = name.EndsWith("gamma");
            a.CopyFrom<float>(Enumerable.Range(0, (int)n)
                .Select(_ => (float)(isScale ? 0.5 + rng.NextDouble() : (2 * rng.NextDouble() - 1) * bound)).ToArray());
            args[name] = a;
        }
        foreach (var (name, a) in ex.AuxDict)
        {
            long n = a.Shape.Aggregate(1L, (x, y) => x * y);
            bool isVar = name.EndsWith("var");
            a.CopyFrom<float>(Enumerable.Range(0, (int)n)
                .Select(_ => (float)(isVar ? 0.5 + rng.NextDouble() : 0.2 * (2 * rng.NextDouble() - 1))).ToArray());
            aux[name] = a;
        }
        return (args, aux);
    }

    private static float[] RandomInput(long[] shape, int seed)
    {
        var rng = new Random(seed);
        return Enumerable.Range(0, (int)shape.Aggregate(1L, (x, y) => x * y)).Select(_ => (float)(2 * rng.NextDouble() - 1)).ToArray();
    }

    private static float[] RunOrt(string path, string input, float[] x, long[] shape)
    {
        using var session = new InferenceSession(path);
        var t = new DenseTensor<float>(x, shape.Select(d => (int)d).ToArray());
        using var results = session.Run(new[] { NamedOnnxValue.CreateFromTensor(input, t) });
        return results.First().AsEnumerable<float>().ToArray();
    }

    // max |a - b| relative to the output's largest magnitude (the networks end in softmax:
    // probabilities of about 1/classes, so an absolute bound would say little).
    private static double Error(float[] a, float[] b)
    {
        Assert.That(a.Length, Is.EqualTo(b.Length));
        double scale = b.Max(v => Math.Abs((double)v));
        Assert.That(scale, Is.GreaterThan(0));
        return a.Zip(b, (p, q) => Math.Abs((double)p - q)).Max() / scale;
    }

    private static IEnumerable<TestCaseData> Networks()
    {
        yield return new TestCaseData("mlp", new long[] { 8, 784 }).SetName("Mlp");
        yield return new TestCaseData("lenet", new long[] { 4, 1, 28, 28 }).SetName("LeNet");
        yield return new TestCaseData("resnet18", new long[] { 2, 3, 224, 224 }).SetName("ResNet18");
        yield return new TestCaseData("resnet50", new long[] { 1, 3, 224, 224 }).SetName("ResNet50");
        yield return new TestCaseData("alexnet", new long[] { 1, 3, 224, 224 }).SetName("AlexNet");
        yield return new TestCaseData("inception-bn", new long[] { 1, 3, 224, 224 }).SetName("InceptionBN");
    }

    private static Symbol Build(string name) => name switch
    {
        "mlp" => Models.Mlp(),
        "lenet" => Models.LeNet(),
        "resnet18" => Models.ResNet(18, 10),
        "resnet50" => Models.ResNet(50),
        "alexnet" => Models.AlexNet(10),
        "inception-bn" => Models.InceptionBN(10),
        _ => throw new ArgumentException(name),
    };

    [TestCaseSource(nameof(Networks))]
    public void ExportRunsInOnnxRuntimeWithLoomsOutputs(string name, long[] shape)
    {
        Assert.That(Onnx.Available, Is.True, "this Loom was built without ONNX (install libonnx-dev)");
        using var net = Build(name);
        var shapes = new Dictionary<string, long[]> { ["data"] = shape, ["softmax_label"] = new[] { shape[0] } };
        using var ex = net.SimpleBind(Context.Cpu(), shapes, GradReq.Null);
        var (args, aux) = RandomParams(ex, 7);
        var x = RandomInput(shape, 3);
        ex.ArgDict["data"].CopyFrom<float>(x);
        ex.Forward(isTrain: false);
        var loom = ex.Outputs[0].ToArray<float>();

        string path = Path.Combine(_dir, name + ".onnx");
        Onnx.Export(path, net, args, aux, new Dictionary<string, long[]> { ["data"] = shape });
        var ort = RunOrt(path, "data", x, shape);
        double err = Error(ort, loom);
        TestContext.Out.WriteLine($"{name}: max |ort - loom| / max |loom| = {err:g3}; outputs in [{loom.Min():g3}, {loom.Max():g3}]");
        Assert.That(err, Is.LessThan(1e-5));

        // and back: the imported model computes the same
        using var m = Onnx.Import(path);
        var back = m.Symbol;
        Assert.That(m.Inputs.Select(i => i.Name), Is.EqualTo(new[] { "data" }));
        Assert.That(m.Inputs[0].Shape, Is.EqualTo(shape));
        Assert.That(m.ArgParams.Keys, Is.EquivalentTo(args.Keys));
        Assert.That(m.AuxParams.Keys, Is.EquivalentTo(aux.Keys));
        using var ex2 = back.SimpleBind(Context.Cpu(), new Dictionary<string, long[]> { ["data"] = shape }, GradReq.Null);
        foreach (var (k, v) in m.ArgParams) v.CopyTo(ex2.ArgDict[k]);
        foreach (var (k, v) in m.AuxParams) v.CopyTo(ex2.AuxDict[k]);
        ex2.ArgDict["data"].CopyFrom<float>(x);
        ex2.Forward(isTrain: false);
        Assert.That(Error(ex2.Outputs[0].ToArray<float>(), loom), Is.LessThan(1e-6));
    }

    [Test]
    public void ImportedLeNetFineTunes()
    {
        // LeNet's logits exported, imported, given a loss and trained from the imported weights
        using var logitsNet = Symbol.Variable("data")
            .Convolution("conv1", kernel: new long[] { 5, 5 }, numFilter: 20).Activation("tanh1", ActType.Tanh)
            .Pooling("pool1", kernel: new long[] { 2, 2 }, stride: new long[] { 2, 2 }, poolType: PoolType.Max)
            .Flatten("flatten")
            .FullyConnected("fc1", numHidden: 64).Activation("relu1", ActType.Relu)
            .FullyConnected("fc2", numHidden: 10);
        var shape = new long[] { 20, 1, 28, 28 };
        using var ex = logitsNet.SimpleBind(Context.Cpu(), new Dictionary<string, long[]> { ["data"] = shape }, GradReq.Null);
        var (args, aux) = RandomParams(ex, 1);
        string path = Path.Combine(_dir, "lenet.onnx");
        Onnx.Export(path, logitsNet, args, aux, new Dictionary<string, long[]> { ["data"] = shape });
        var m = Onnx.Import(path);
        using var train = m.Symbol.SoftmaxOutput("softmax");

        var rng = new Random(5);
        var templates = Enumerable.Range(0, 10).Select(_ => RandomInput(new long[] { 784 }, rng.Next())).ToArray();
        int n = 400;
        var y = Enumerable.Range(0, n).Select(_ => rng.Next(10)).ToArray();
        var xs = y.SelectMany(c => templates[c].Select(v => v + (float)(0.5 * (2 * rng.NextDouble() - 1)))).ToArray();
        using var data = NDArray.FromArray(xs, n, 1, 28, 28);
        using var label = NDArray.FromArray(y.Select(v => (float)v).ToArray(), n);
        using var iter = new NDArrayIter(data, label, batchSize: 20, shuffle: true);
        using var mod = new Module(train);
        mod.Bind(shape, new long[] { 20 });
        mod.SetParams(m.ArgParams, m.AuxParams);
        var before = m.ArgParams["fc2_weight"].ToArray<float>();
        mod.Fit(iter, new SGD(lr: 0.05, momentum: 0.9), epochs: 4, initialize: false);
        double acc = mod.Score(iter);
        Assert.That(acc, Is.GreaterThan(0.9));
        Assert.That(mod.GetParams().Args["fc2_weight"].ToArray<float>(), Is.Not.EqualTo(before));

        // the tuned module written back: ONNX Runtime computes what the module predicts
        string tuned = Path.Combine(_dir, "tuned.onnx");
        mod.ExportOnnx(tuned);
        var batch = data.ToArray<float>().Take(20 * 784).ToArray();
        using var first = NDArray.FromArray(batch, shape);
        mod.Forward(first, null, isTrain: false);
        Assert.That(Error(RunOrt(tuned, "data", batch, shape), mod.Output.ToArray<float>()), Is.LessThan(1e-5));
    }

    [Test]
    public void HybridizedGluonBlockExportsToOnnxRuntime()
    {
        using var scope = NDArray.Scope();
        var net = new Loom.Gluon.HybridSequential().Add(
            new Loom.Gluon.Conv2D(6, new long[] { 3, 3 }, padding: new long[] { 1, 1 }),
            new Loom.Gluon.BatchNorm(), new Loom.Gluon.Activation(ActType.Relu), new Loom.Gluon.MaxPool2D(),
            new Loom.Gluon.Flatten(), new Loom.Gluon.Dense(5));
        net.Initialize();
        net.Hybridize();
        var shape = new long[] { 3, 2, 8, 8 };
        var x = RandomInput(shape, 9);
        NDArray y;
        using (Autograd.Predict()) y = net.Forward(NDArray.FromArray(x, shape));
        string path = Path.Combine(_dir, "gluon.onnx");
        net.ExportOnnx(path, new[] { shape });
        Assert.That(Error(RunOrt(path, "data", x, shape), y.ToArray<float>()), Is.LessThan(1e-5));
        var fresh = new Loom.Gluon.HybridSequential();
        var e = Assert.Throws<LoomException>(() => fresh.ExportOnnx(path, new[] { shape }))!;
        Assert.That(e.Message, Does.Contain("Hybridize"));
    }

    [Test]
    public void BadFilesAndGraphsFailNamingThem()
    {
        string junk = Path.Combine(_dir, "junk.onnx");
        File.WriteAllBytes(junk, new byte[] { 0x12, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2, 3 });
        var e = Assert.Throws<LoomException>(() => Onnx.Import(junk))!;
        Assert.That(e.Status, Is.EqualTo(LoomStatus.Io));
        Assert.That(e.Message, Does.Contain("junk.onnx"));
        e = Assert.Throws<LoomException>(() => Onnx.Import(Path.Combine(_dir, "missing.onnx")))!;
        Assert.That(e.Message, Does.Contain("missing.onnx"));

        using var data = Symbol.Variable("data");
        using var up = Sym.UpSampling("up", new[] { data }, scale: 2, sampleType: SampleType.Nearest, numArgs: 1);
        string keep = Path.Combine(_dir, "keep.onnx");
        File.WriteAllText(keep, "saved before");
        e = Assert.Throws<LoomException>(() => Onnx.Export(keep, up, new Dictionary<string, NDArray>(), null,
            new Dictionary<string, long[]> { ["data"] = new long[] { 1, 1, 2, 2 } }))!;
        Assert.That(e.Message, Does.Contain("'up'").And.Contain("UpSampling"));
        Assert.That(File.ReadAllText(keep), Is.EqualTo("saved before"));
        Assert.That(Directory.GetFiles(_dir).Select(Path.GetFileName), Is.EquivalentTo(new[] { "junk.onnx", "keep.onnx" }));
    }
}
