using Loom;

namespace Loom.Tests;

// Optimizers, schedules, per-parameter multipliers and metrics through C#,
// against references computed here in float64.
public class OptimizerTests
{
    private DisposeScope _scope = null!;
    [SetUp]
    public void Begin()
    {
        _scope = NDArray.Scope();
        Module.Log = _ => { };
    }
    [TearDown]
    public void End() => _scope.Dispose();

    private static (NDArrayIter Train, NDArrayIter Test) Blobs()
    {
        Rand.Seed(3);
        var labels = Op.Cast(Op.RandomUniform(low: 0, high: 3, shape: new long[] { 300 }), DType.Int32).AsType(DType.Float32);
        var x = Op.OneHot(labels.AsType(DType.Int64), depth: 5) * 3.0 + Rand.Normal(0, 0.5, new long[] { 300, 5 });
        return (new NDArrayIter(x, labels, 20, shuffle: true), new NDArrayIter(x, labels, 20));
    }

    private static Symbol Mlp(Symbol? w1 = null) => Symbol.Variable("data")
        .FullyConnected("fc1", numHidden: 8, weight: w1).Activation("relu1", ActType.Relu)
        .FullyConnected("fc2", numHidden: 3)
        .SoftmaxOutput("softmax");

    private static IEnumerable<TestCaseData> Optimizers()
    {
        yield return new TestCaseData((Func<Optimizer>)(() => new SGD(0.5, momentum: 0.9, nesterov: true))).SetName("SGD_Nesterov");
        yield return new TestCaseData((Func<Optimizer>)(() => new Adam(0.05))).SetName("Adam");
        yield return new TestCaseData((Func<Optimizer>)(() => new AdaGrad(0.3))).SetName("AdaGrad");
        yield return new TestCaseData((Func<Optimizer>)(() => new RMSProp(0.02))).SetName("RMSProp");
        yield return new TestCaseData((Func<Optimizer>)(() => new AdaDelta())).SetName("AdaDelta");
        yield return new TestCaseData((Func<Optimizer>)(() => new SGD(0.5) { Scheduler = new InvScheduler(0.01, 0.75) })).SetName("SGD_Inv");
    }

    [TestCaseSource(nameof(Optimizers))]
    public void EveryOptimizerTrainsTheBlobs(Func<Optimizer> make)
    {
        var (train, test) = Blobs();
        using var m = new Module(Mlp());
        Rand.Seed(4);
        m.Fit(train, make(), 4, init: new XavierInit());
        Assert.That(m.Score(test), Is.GreaterThan(0.95));
        using var ce = new CrossEntropy();
        Assert.That(m.Score(test, ce), Is.LessThan(0.3));
    }

    [Test]
    public void SgdAggregatedUpdatesGiveThePerWeightBits()
    {
        // MXNet's SGD updates groups of weights with multi_sgd_(mom_)update; a module trained
        // with groups of 3 or 4 (and a learning-rate multiplier, clipping and weight decay)
        // ends with the bits of one update per weight.
        foreach (double momentum in new[] { 0.0, 0.9 })
        {
            Dictionary<string, float[]>? first = null;
            foreach (int size in new[] { 1, 3, 4 })
            {
                var (train, _) = Blobs();
                using var m = new Module(Mlp());
                var sgd = new SGD(0.3, momentum: momentum, wd: 0.01) { AggregateNum = size, ClipGradient = 0.2 };
                sgd.LrMult[1] = 0.5;
                Rand.Seed(4);
                m.Fit(train, sgd, 2, init: new XavierInit());
                var got = m.GetParams().Args.ToDictionary(kv => kv.Key, kv => kv.Value.ToArray<float>());
                if (first is null)
                {
                    first = got;
                    continue;
                }
                foreach (var (name, values) in first)
                    Assert.That(got[name], Is.EqualTo(values), $"momentum {momentum}, groups of {size}: {name}");
            }
        }
        // One batch call against one call per weight, with a weight named twice (two steps).
        var a = new SGD(0.1, momentum: 0.9);
        var b = new SGD(0.1, momentum: 0.9) { AggregateNum = 1 };
        var wa = new[] { NDArray.FromArray(new float[] { 1, 2, 3 }), NDArray.FromArray(new float[] { -1, 0.5f }) };
        var wb = wa.Select(w => w.CopyTo(Context.Cpu())).ToArray();
        var g = new[] { NDArray.FromArray(new float[] { 0.5f, -1, 2 }), NDArray.FromArray(new float[] { 3, -2 }) };
        a.Update(new[] { 0, 1, 0 }, new[] { wa[0], wa[1], wa[0] }, new[] { g[0], g[1], g[0] });
        b.Update(0, wb[0], g[0]);
        b.Update(1, wb[1], g[1]);
        b.Update(0, wb[0], g[0]);
        for (int i = 0; i < 2; i++) Assert.That(wa[i].ToArray<float>(), Is.EqualTo(wb[i].ToArray<float>()));
        var e = Assert.Throws<LoomException>(() => a.Update(new[] { 0, 1 }, wa, new[] { g[0] }))!;
        Assert.That(e.Message, Does.Contain("SGD.Update: 2 indices, 2 weights and 1 gradients"));
        Assert.Throws<ArgumentOutOfRangeException>(() => a.AggregateNum = 0);
        Assert.Throws<ArgumentOutOfRangeException>(() => a.AggregateNum = 61);
    }

    [Test]
    public void ModuleRescalesGradientsByTheBatchAsMXNetDoes()
    {
        // MXNet's Module.init_optimizer: rescale_grad = 1/batch_size unless the user set one
        // (then a warning), so SoftmaxOutput's summed gradients become a batch mean.
        var (train, _) = Blobs();
        var logged = new List<string>();
        var oldLog = Module.Log;
        Module.Log = logged.Add;
        try
        {
            using var m = new Module(Mlp());
            var sgd = new SGD(0.5);
            Assert.That(sgd.RescaleGrad, Is.EqualTo(1.0));
            m.Fit(train, sgd, 1, init: new XavierInit());
            Assert.That(sgd.RescaleGrad, Is.EqualTo(1.0 / 20));
            Assert.That(sgd.RescaleGradIsSet, Is.False);
            Assert.That(logged.Any(l => l.Contains("RescaleGrad")), Is.False);
            var mine = new SGD(0.5) { RescaleGrad = 0.5 };
            m.Fit(train, mine, 1, init: new XavierInit());
            Assert.That(mine.RescaleGrad, Is.EqualTo(0.5));
            Assert.That(logged.Any(l => l.Contains("WARNING") && l.Contains("1/batch_size = 0.05")), Is.True);
            // Training that cannot learn says so: accuracy at chance over an epoch.
            logged.Clear();
            m.Fit(train, new SGD(0.0), 1, init: new ConstantInit(0));
            Assert.That(logged.Any(l => l.Contains("at chance level")), Is.True, string.Join("\n", logged));
        }
        finally
        {
            Module.Log = oldLog;
        }
    }

    [Test]
    public void SchedulesDriveTheStepSize()
    {
        // Zero weights and a unit gradient: each update subtracts exactly the scheduled rate.
        var cases = new (LRScheduler S, Func<long, double> Lr)[]
        {
            (new FactorScheduler(2, 0.5), t => Math.Pow(0.5, t / 2)),
            (new MultiFactorScheduler(new long[] { 1, 4 }, 0.1), t => (t >= 1 ? 0.1 : 1) * (t >= 4 ? 0.1 : 1)),
            (new InvScheduler(0.5, 2), t => Math.Pow(1 + 0.5 * t, -2)),
            (new CosineScheduler(4, 0.1), t => t >= 4 ? 0.1 : 0.1 + 0.9 * (1 + Math.Cos(Math.PI * t / 4)) / 2),
        };
        foreach (var (sched, lr) in cases)
        {
            var opt = new SGD(1.0) { Scheduler = sched };
            var w = NDArray.Zeros(new long[] { 3 }, DType.Float64);
            var g = NDArray.Ones(new long[] { 3 }, DType.Float64);
            double want = 0;
            for (long t = 0; t < 6; t++)
            {
                Assert.That(opt.CurrentLearningRate, Is.EqualTo(lr(t)).Within(1e-12), $"{sched.GetType().Name} at {t}");
                opt.Update(0, w, g);
                want -= lr(t);
            }
            Assert.That(w.ToArray<double>(), Is.All.EqualTo(want).Within(1e-12), sched.GetType().Name);
            Assert.That(opt.NumUpdate, Is.EqualTo(6));
        }
    }

    [Test]
    public void MultipliersScaleRateAndDecayPerParameter()
    {
        var w = new[] { NDArray.FromArray(new double[] { 1, 2 }), NDArray.FromArray(new double[] { 1, 2 }), NDArray.FromArray(new double[] { 1, 2 }) };
        var g = NDArray.Zeros(new long[] { 2 }, DType.Float64);
        var opt = new SGD(0.1, wd: 0.5);
        opt.WdMult[0] = 0;
        opt.WdMult[1] = 2;
        opt.LrMult[2] = 3;
        for (int i = 0; i < 3; i++) opt.Update(i, w[i], g);
        Assert.That(w[0].ToArray<double>(), Is.EqualTo(new double[] { 1, 2 }));
        Assert.That(w[1].ToArray<double>(), Is.EqualTo(new[] { 1 - 0.1 * 1.0 * 1, 2 - 0.1 * 1.0 * 2 }).Within(1e-15));
        Assert.That(w[2].ToArray<double>(), Is.EqualTo(new[] { 1 - 0.3 * 0.5 * 1, 2 - 0.3 * 0.5 * 2 }).Within(1e-15));

        // From symbol attributes through Module: lr_mult 0 freezes fc1's weight;
        // biases get no weight decay unless a wd_mult says so.
        var (train, _) = Blobs();
        var w1 = Symbol.Variable("fc1_weight", lrMult: 0);
        using var m = new Module(Mlp(w1));
        m.Bind(train.BatchDataShape, train.BatchLabelShape);
        m.InitParams(new XavierInit());
        var before = m.Executor.ArgDict["fc1_weight"].ToArray<float>();
        var fc2Before = m.Executor.ArgDict["fc2_weight"].ToArray<float>();
        var sgd = new SGD(0.5, wd: 1e-3);
        m.Fit(train, sgd, 1, initialize: false);
        Assert.That(m.Executor.ArgDict["fc1_weight"].ToArray<float>(), Is.EqualTo(before));
        Assert.That(m.Executor.ArgDict["fc2_weight"].ToArray<float>(), Is.Not.EqualTo(fc2Before));
        var args = m.Symbol.ListArguments();
        Assert.That(sgd.LrMult[Array.IndexOf(args, "fc1_weight")], Is.EqualTo(0));
        Assert.That(sgd.WdMult[Array.IndexOf(args, "fc1_bias")], Is.EqualTo(0));
        Assert.That(sgd.WdMult.ContainsKey(Array.IndexOf(args, "fc2_weight")), Is.False);
        w1.SetAttr("wd_mult", "often");
        var e = Assert.Throws<LoomException>(() => m.InitOptimizer(new SGD()))!;
        Assert.That(e.Message, Does.Contain("wd_mult='often' of 'fc1_weight' is not a number"));
    }

    [Test]
    public void MetricsMatchNaiveReferencesAcrossBatches()
    {
        Rand.Seed(11);
        var probs = new[] { Op.Softmax(Rand.Normal(0, 2, new long[] { 30, 5 })), Op.Softmax(Rand.Normal(0, 2, new long[] { 17, 5 })) };
        var labels = new[] { Op.Cast(Op.RandomUniform(0, 5, new long[] { 30 }), DType.Int32), Op.Cast(Op.RandomUniform(0, 5, new long[] { 17 }), DType.Int32) };
        double top1 = 0, top3 = 0, ce = 0, se = 0, ae = 0, tp = 0, fp = 0, fn = 0, rows = 0, vals = 0;
        for (int b = 0; b < 2; b++)
        {
            var p = probs[b].ToArray<float>();
            var l = labels[b].ToArray<int>();
            for (int i = 0; i < l.Length; i++, rows++)
            {
                var row = p.Skip(i * 5).Take(5).ToArray();
                int rank = Enumerable.Range(0, 5).Count(c => row[c] > row[l[i]] || (row[c] == row[l[i]] && c < l[i]));
                top1 += rank < 1 ? 1 : 0;
                top3 += rank < 3 ? 1 : 0;
                ce -= Math.Log(row[l[i]] + 1e-12);
                bool pred = row[1] > row[0], actual = l[i] == 1;
                tp += pred && actual ? 1 : 0;
                fp += pred && !actual ? 1 : 0;
                fn += !pred && actual ? 1 : 0;
                for (int c = 0; c < 5; c++, vals++)
                {
                    double d = (c == l[i] ? 1.0 : 0.0) - row[c];
                    se += d * d;
                    ae += Math.Abs(d);
                }
            }
        }
        var metrics = new (EvalMetric M, double Want, bool TwoColumns, bool OneHot)[]
        {
            (new Accuracy(), top1 / rows, false, false),
            (new TopKAccuracy(3), top3 / rows, false, false),
            (new CrossEntropy(), ce / rows, false, false),
            (new Perplexity(), Math.Exp(ce / rows), false, false),
            (new MSE(), se / vals, false, true),
            (new MAE(), ae / vals, false, true),
            (new F1(), 2 * tp / (2 * tp + fp + fn), true, false),
        };
        foreach (var (m, want, twoCols, oneHot) in metrics)
        {
            using (m)
            {
                Assert.That(m.Get(), Is.NaN, m.Name);
                for (int b = 0; b < 2; b++)
                {
                    var pred = twoCols ? Op.Slice(probs[b], new long[] { 0, 0 }, new long[] { probs[b].Shape[0], 2 }) : probs[b];
                    var label = oneHot ? Op.OneHot(labels[b].AsType(DType.Int64), depth: 5) : labels[b];
                    m.Update(pred, label);
                }
                Assert.That(m.Get(), Is.EqualTo(want).Within(1e-6), m.Name);
                m.Reset();
                Assert.That(m.Get(), Is.NaN, m.Name);
            }
        }
        Assert.That(top3, Is.GreaterThan(top1));
        Assert.That(tp * (fp + fn), Is.GreaterThan(0));
        using var acc = new Accuracy();
        var ex = Assert.Throws<LoomException>(() => acc.Update(probs[0], labels[1]))!;
        Assert.That(ex.Message, Does.Contain("accuracy_count").And.Contain("label has shape (17,)"));
    }
}
