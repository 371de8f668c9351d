using Loom;

namespace Loom.Tests;

// Data parallelism in one process: a batch split over devices, gradients summed
// through a key-value store, the same update everywhere.
public class DataParallelTests
{
    private DisposeScope _scope = null!;

    [SetUp]
    public void Begin() => _scope = NDArray.Scope();

    [TearDown]
    public void End() => _scope.Dispose();

    private static Symbol Mlp() => Symbol.Variable("data")
        .FullyConnected("fc1", numHidden: 16).Activation("relu1", ActType.Relu)
        .FullyConnected("fc2", numHidden: 3)
        .SoftmaxOutput("softmax");

    private static (NDArray X, NDArray Y) Blobs(int n)
    {
        Rand.Seed(9);
        var labels = Op.Cast(Op.RandomUniform(low: 0, high: 3, shape: new long[] { n }), DType.Int32).AsType(DType.Float32);
        var x = Op.OneHot(labels.AsType(DType.Int64), depth: 5) * 3.0 + Rand.Normal(0, 0.5, new long[] { n, 5 });
        return (x, labels);
    }

    // Parameters after `steps` SGD-momentum steps from the same start.
    private static Dictionary<string, float[]> Train(Context[] devices, int steps, int batch = 20)
    {
        var (x, y) = Blobs(batch * steps);
        using var iter = new NDArrayIter(x, y, batch);
        Rand.Seed(1);
        using var m = new Module(Mlp(), devices);
        Module.Log = _ => { };
        try { m.Fit(iter, new SGD(lr: 0.5, momentum: 0.9), 1, init: new XavierInit()); }
        finally { Module.Log = s => Console.WriteLine("INFO: " + s); }
        return m.GetParams().Args.ToDictionary(kv => kv.Key, kv => kv.Value.ToArray<float>());
    }

    [Test]
    public void SeveralDevicesMatchOneDeviceWithTheWholeBatch()
    {
        var one = Train(new[] { Context.Cpu(0) }, 1);
        var two = Train(new[] { Context.Cpu(0), Context.Cpu(1) }, 1);
        foreach (var (name, w) in one)
            for (int i = 0; i < w.Length; i++)
                Assert.That(two[name][i], Is.EqualTo(w[i]).Within(1e-6 * Math.Max(1, Math.Abs(w[i]))), $"{name}[{i}]");
    }

    [Test]
    public void RepeatedRunsGiveIdenticalBits()
    {
        var devices = new[] { Context.Cpu(0), Context.Cpu(1), Context.Cpu(2) };
        var a = Train(devices, 4);
        var b = Train(devices, 4);
        foreach (var (name, w) in a) Assert.That(b[name], Is.EqualTo(w), name);
    }

    [Test]
    public void UnevenBatchesFollowMXNetsSplit()
    {
        // MXNet's _split_input_slice: round(batch / n) each (half to even), the rest to the last.
        Assert.That(Module.SplitBatch(100, 3), Is.EqualTo(new[] { 33, 33, 34 }));
        Assert.That(Module.SplitBatch(5, 2), Is.EqualTo(new[] { 2, 3 }));
        Assert.That(Module.SplitBatch(7, 2), Is.EqualTo(new[] { 4, 3 }));
        Assert.That(Module.SplitBatch(10, 4), Is.EqualTo(new[] { 2, 2, 2, 4 }));
        Assert.Throws<LoomException>(() => Module.SplitBatch(2, 3));
        // An uneven split still trains as one device would.
        var one = Train(new[] { Context.Cpu(0) }, 1, batch: 7);
        var two = Train(new[] { Context.Cpu(0), Context.Cpu(1) }, 1, batch: 7);
        foreach (var (name, w) in one)
            for (int i = 0; i < w.Length; i++)
                Assert.That(two[name][i], Is.EqualTo(w[i]).Within(1e-6 * Math.Max(1, Math.Abs(w[i]))), $"{name}[{i}]");
    }

    [Test]
    public void TwoDevicesTrainAndScore()
    {
        var (x, y) = Blobs(300);
        using var train = new NDArrayIter(x, y, 20, shuffle: true);
        using var test = new NDArrayIter(x, y, 20);
        using var model = new FeedForward(Mlp(), new[] { Context.Cpu(0), Context.Cpu(1) });
        model.Fit(train, new SGD(lr: 0.5, momentum: 0.9), 4, init: new XavierInit());
        Assert.That(model.Score(test), Is.GreaterThan(0.95));
        Assert.That(model.Predict(test).Shape, Is.EqualTo(new long[] { 300, 3 }));
    }

    [Test]
    public void AKeyValueStoreSumsInDeviceOrder()
    {
        using var kv = KVStore.Create("local");
        Assert.That(kv.Type, Is.EqualTo("local"));
        Assert.That((kv.Rank, kv.NumWorkers), Is.EqualTo((0, 1)));
        kv.Init(3, NDArray.Zeros(2));
        kv.Push(3, NDArray.FromArray(new float[] { 1, 2 }, 2).CopyTo(Context.Cpu(1)), NDArray.FromArray(new float[] { 10, 20 }, 2));
        var outs = new[] { NDArray.Zeros(2), NDArray.Zeros(new long[] { 2 }, DType.Float32, Context.Cpu(1)) };
        kv.Pull(3, outs);
        Assert.That(outs[0].ToArray<float>(), Is.EqualTo(new float[] { 11, 22 }));
        Assert.That(outs[1].ToArray<float>(), Is.EqualTo(new float[] { 11, 22 }));
        kv.SetOptimizer(new SGD(lr: 0.1));
        kv.Push(3, NDArray.FromArray(new float[] { 1, 1 }, 2));
        kv.Pull(3, outs[0]);
        Assert.That(outs[0].ToArray<float>(), Is.EqualTo(new float[] { 10.9f, 21.9f }).Within(1e-5));
        var e = Assert.Throws<LoomException>(() => kv.Push("nope", NDArray.Zeros(2)))!;
        Assert.That(e.Message, Does.Contain("key 'nope' was never initialised"));
        Assert.Throws<NotSupportedException>(() => kv.SetOptimizer(new SGD(0.1) { Scheduler = new FactorScheduler(10, 0.5) }));
        var d = Assert.Throws<LoomException>(() => KVStore.Create("dist_sync"))!;
        Assert.That(d.Message, Does.Contain("MPI plugin"));
    }
}
