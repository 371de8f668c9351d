using Loom;

namespace Loom.Tests;

// Symbols, executors and the Module training API through C#.
public class SymbolTests
{
    // The native environment (.NET keeps its own copy; libloom reads the process's).
    [System.Runtime.InteropServices.DllImport("libc")]
    private static extern int setenv(string name, string value, int overwrite);
    [System.Runtime.InteropServices.DllImport("libc")]
    private static extern int unsetenv(string name);

    private DisposeScope _scope = null!;
    private string _dir = null!;
    [SetUp]
    public void Begin()
    {
        _scope = NDArray.Scope();
        _dir = Path.Combine(Path.GetTempPath(), "loom-sym-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_dir);
        Module.Log = _ => { };
    }
    [TearDown]
    public void End()
    {
        _scope.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    private static Symbol Mlp(int hidden = 8) => Symbol.Variable("data")
        .FullyConnected("fc1", numHidden: hidden).Activation("relu1", ActType.Relu)
        .FullyConnected("fc2", numHidden: 3)
        .SoftmaxOutput("softmax");

    [Test]
    public void FluentChainBuildsTheSeedsGraph()
    {
        var net = Mlp();
        Assert.That(net.ListArguments(), Is.EqualTo(new[] { "data", "fc1_weight", "fc1_bias", "fc2_weight", "fc2_bias", "softmax_label" }));
        Assert.That(net.ListOutputs(), Is.EqualTo(new[] { "softmax_output" }));
        var inf = net.InferShape(new Dictionary<string, long[]> { ["data"] = new long[] { 4, 5 } });
        Assert.That(inf.Complete, Is.True);
        Assert.That(inf.ArgumentShapes[1], Is.EqualTo(new long[] { 8, 5 }));
        Assert.That(inf.OutputShapes[0], Is.EqualTo(new long[] { 4, 3 }));
        // Operators and JSON.
        var a = Symbol.Variable("a");
        var b = Symbol.Variable("b");
        var c = (a + b) * 2.0 - a / b;
        Assert.That(c.ListArguments(), Is.EqualTo(new[] { "a", "b" }));
        var back = Symbol.FromJson(c.ToJson());
        Assert.That(back.ToJson(), Is.EqualTo(c.ToJson()));
        using var ex = c.SimpleBind(Context.Cpu(), new Dictionary<string, long[]> { ["a"] = new long[] { 2 }, ["b"] = new long[] { 2 } });
        ex.ArgDict["a"].CopyFrom<float>(new float[] { 1, 2 });
        ex.ArgDict["b"].CopyFrom<float>(new float[] { 4, 8 });
        ex.Forward();
        Assert.That(ex.Outputs[0].ToArray<float>(), Is.EqualTo(new float[] { 10 - 0.25f, 20 - 0.25f }));
        ex.Backward(NDArray.FromArray(new float[] { 1, 1 }));
        // d/da = 2 - 1/b, d/db = 2 + a/b^2
        Assert.That(ex.GradDict["a"].ToArray<float>(), Is.EqualTo(new float[] { 1.75f, 1.875f }));
        Assert.That(ex.GradDict["b"].ToArray<float>(), Is.EqualTo(new float[] { 2.0625f, 2.03125f }));
        // Attributes and scopes.
        using (Symbol.AttrScope(("ctx_group", "stage1")))
        {
            var d = Symbol.Variable("d", lrMult: 0.5);
            Assert.That(d.GetAttr("ctx_group"), Is.EqualTo("stage1"));
            Assert.That(d.GetAttr("lr_mult"), Is.EqualTo("0.5"));
        }
        Assert.That(Symbol.Variable("e").GetAttr("ctx_group"), Is.Null);
    }

    [Test]
    public void NetworksAreDrawnAndSummarisedAsMXNetDoes()
    {
        var net = Models.LeNet();
        var shapes = new Dictionary<string, long[]> { ["data"] = new long[] { 100, 1, 28, 28 } };
        var dot = net.ToDot(shapes, "lenet");
        Assert.That(dot, Does.StartWith("digraph \"lenet\" {"));
        Assert.That(dot, Does.Contain("[label=\"Convolution\\n5x5/1, 20\" fillcolor=\"#fb8072\"]"));
        Assert.That(dot, Does.Contain("label=\"20x24x24\""));
        var table = net.Summary(shapes);
        // LeNet: conv 20*1*5*5+20, conv 50*20*5*5+50, fc 500*800+500, fc 10*500+10.
        long total = 20 * 25 + 20 + 50 * 20 * 25 + 50 + 500 * 800 + 500 + 10 * 500 + 10;
        Assert.That(table, Does.Contain($"Total params: {total}\n"));
        // The picture, through Graphviz: an SVG holding the labels, written whole.
        var dir = Directory.CreateTempSubdirectory("loom-plot").FullName;
        try
        {
            var svg = Path.Combine(dir, "lenet.svg");
            net.Plot(svg, shapes, "lenet");
            var text = File.ReadAllText(svg);
            Assert.That(text, Does.Contain("<svg"));
            Assert.That(text, Does.Contain(">Convolution</text>"));
            Assert.That(text, Does.Contain(">5x5/1, 20</text>"));
            Assert.That(Directory.GetFiles(dir), Has.Length.EqualTo(1), "no temporary file is left");
            var e = Assert.Throws<LoomException>(() => net.Plot(Path.Combine(dir, "lenet.gif")))!;
            Assert.That(e.Message, Does.Contain(".svg, .png or .pdf"));
        }
        finally { Directory.Delete(dir, true); }
        var bad = Assert.Throws<LoomException>(() => net.Summary(new Dictionary<string, long[]> { ["dta"] = new long[] { 1, 1, 28, 28 } }))!;
        Assert.That(bad.Message, Does.Contain("'dta'"));
    }

    [Test]
    public void BadGraphsAndBindsGiveClearErrors()
    {
        var net = Mlp();
        var e = Assert.Throws<LoomException>(() => net.SimpleBind(Context.Cpu(), new Dictionary<string, long[]>
        {
            ["data"] = new long[] { 4, 5 }, ["softmax_label"] = new long[] { 5 },
        }))!;
        Assert.That(e.Status, Is.EqualTo(LoomStatus.Shape));
        Assert.That(e.Message, Does.Contain("node 'softmax'").And.Contain("label has shape (5,)"));
        e = Assert.Throws<LoomException>(() => Symbol.FromJson("{\"nodes\": [{\"op\": \"Blah\", \"name\": \"x\", \"inputs\": []}], \"heads\": [[0,0,0]]}"))!;
        Assert.That(e.Message, Does.Contain("unknown operator 'Blah'"));
        e = Assert.Throws<LoomException>(() => Symbol.Load(Path.Combine(_dir, "missing.json")))!;
        Assert.That(e.Status, Is.EqualTo(LoomStatus.Io));
        e = Assert.Throws<LoomException>(() => new Module(net, dataNames: new[] { "input" }))!;
        Assert.That(e.Message, Does.Contain("no input 'input'"));
        var disposed = Symbol.Variable("z");
        disposed.Dispose();
        Assert.Throws<LoomException>(() => disposed.ListArguments());
    }

    private static (NDArrayIter Train, NDArrayIter Test) Blobs()
    {
        // Three separable clusters in 5-D, made by the native generator.
        Rand.Seed(7);
        var labels = Op.Cast(Op.RandomUniform(low: 0, high: 3, shape: new long[] { 300 }), DType.Int32).AsType(DType.Float32);
        var centers = Op.OneHot(labels.AsType(DType.Int64), depth: 5) * 3.0;
        var x = centers + Rand.Normal(0, 0.5, new long[] { 300, 5 });
        return (new NDArrayIter(x, labels, 20, shuffle: true), new NDArrayIter(x, labels, 20));
    }

    [Test]
    public void ModuleFitsScoresAndPredicts()
    {
        var (train, test) = Blobs();
        using var model = new FeedForward(Mlp(), Context.Cpu());
        model.Fit(train, new SGD(lr: 0.5, momentum: 0.9), 5, test, new XavierInit());
        Assert.That(model.Score(test), Is.GreaterThan(0.95));
        var p = model.Predict(test);
        Assert.That(p.Shape, Is.EqualTo(new long[] { 300, 3 }));
    }

    [Test]
    public void FeedForwardSavesAndLoadsInOneCallEach()
    {
        var (train, test) = Blobs();
        string prefix = Path.Combine(Path.GetTempPath(), $"loom_ff_{Environment.ProcessId}");
        using var model = new FeedForward(Mlp(), Context.Cpu());
        model.Fit(train, new SGD(lr: 0.5, momentum: 0.9), 3, init: new XavierInit());
        model.Save(prefix, 3);
        using var want = model.Predict(test);
        using var back = FeedForward.Load(prefix, 3);
        using var got = back.Predict(test);
        Assert.That(got.ToArray<float>(), Is.EqualTo(want.ToArray<float>()));
        Assert.That(back.Score(test), Is.EqualTo(model.Score(test)));
        // Module.Load keeps the loaded parameters when training goes on (MXNet's Module.load).
        using var m = Module.Load(prefix, 3);
        m.Fit(train, new SGD(lr: 0.0), 1);
        Assert.That(m.Score(test), Is.EqualTo(model.Score(test)));
        foreach (var f in Directory.GetFiles(Path.GetTempPath(), $"loom_ff_{Environment.ProcessId}*")) File.Delete(f);
    }

    [Test]
    public void LabelsOfAnotherDTypeAreRefusedBeforeTrainingWithTheCastToWrite()
    {
        var (x, _) = (Rand.Normal(0, 1, new long[] { 40, 5 }), 0);
        var labels = NDArray.FromArray(Enumerable.Range(0, 40).Select(i => (byte)(i % 3)).ToArray(), 40);
        using var train = new NDArrayIter(x, labels, 20);
        using var m = new Module(Mlp());
        var e = Assert.Throws<LoomException>(() => m.Fit(train, new SGD(0.1), 1))!;
        Assert.That(e.Status, Is.EqualTo(LoomStatus.DType));
        Assert.That(e.Message, Does.Contain("labels are uint8"));
        Assert.That(e.Message, Does.Contain("softmax_label"));
        Assert.That(e.Message, Does.Contain("AsType(DType.Float32)"));
    }

    private static float[][] Params(Module m) =>
        m.ParamNames.Select(n => m.Executor.ArgDict[n].ToArray<float>()).ToArray();

    // Optimizers with state, some with a schedule, for the resume test.
    private static readonly Func<Optimizer>[] Resumable =
    {
        () => new SGD(lr: 0.1, momentum: 0.9, wd: 1e-4),
        () => new Adam(lr: 0.01) { Scheduler = new CosineScheduler(40, 0.001) },
        () => new AdaGrad(lr: 0.1) { Scheduler = new FactorScheduler(10, 0.5) },
        () => new RMSProp(lr: 0.01, wd: 1e-4),
        () => new AdaDelta() { Scheduler = new MultiFactorScheduler(new long[] { 20, 35 }, 0.5) },
    };

    [TestCase(0), TestCase(1), TestCase(2), TestCase(3), TestCase(4)]
    public void ResumingFromACheckpointIsBitIdentical(int which)
    {
        var make = Resumable[which];
        var (train, _) = Blobs();
        Rand.Seed(1);
        using var straight = new Module(Mlp());
        straight.Fit(train, make(), 3, init: new XavierInit());
        var want = Params(straight);

        Rand.Seed(1);
        string prefix = Path.Combine(_dir, "mlp");
        using (var first = new Module(Mlp()))
        {
            first.Fit(train, make(), 2, init: new XavierInit());
            first.SaveCheckpoint(prefix, 2, saveOptimizerStates: true);
        }
        Rand.Seed(12345);  // whatever happens in between
        using var resumed = new Module(Symbol.Load(prefix + "-symbol.json"));
        resumed.Bind(train.BatchDataShape, train.BatchLabelShape);
        var opt = make();
        resumed.LoadCheckpoint(prefix, 2, opt);
        Assert.That(opt.NumUpdate, Is.EqualTo(2 * 300 / 20));
        resumed.Fit(train, opt, 1, beginEpoch: 2, initialize: false);
        var got = Params(resumed);
        for (int i = 0; i < want.Length; i++) Assert.That(got[i], Is.EqualTo(want[i]), $"parameter {i}");
        // Without the optimizer state the run differs (the test can fail).
        using var fresh = new Module(Symbol.Load(prefix + "-symbol.json"));
        fresh.Bind(train.BatchDataShape, train.BatchLabelShape);
        fresh.LoadCheckpoint(prefix, 2);
        Rand.Seed(12345);
        fresh.Fit(train, make(), 1, beginEpoch: 2, initialize: false);
        Assert.That(Params(fresh)[0], Is.Not.EqualTo(want[0]));
    }

    [Test]
    public void OptimizerStatesFromAnotherOptimizerAreRefused()
    {
        var (train, _) = Blobs();
        string prefix = Path.Combine(_dir, "s");
        using var m = new Module(Mlp());
        m.Fit(train, new Adam(), 1, init: new XavierInit());
        m.SaveCheckpoint(prefix, 1, saveOptimizerStates: true);
        var e = Assert.Throws<LoomException>(() => m.LoadCheckpoint(prefix, 1, new SGD(momentum: 0.9)))!;
        Assert.That(e.Message, Does.Contain("'mean:1' names no state of this optimizer (its states: momentum, t)"));
    }

    [Test]
    public void ACheckpointSetIsCommittedAsOne()
    {
        var (train, _) = Blobs();
        string prefix = Path.Combine(_dir, "set");
        using var m = new Module(Mlp());
        var opt = new SGD(lr: 0.1, momentum: 0.9);
        m.Fit(train, opt, 1, init: new XavierInit());
        m.SaveCheckpoint(prefix, 1, saveOptimizerStates: true);
        Assert.That(File.Exists(prefix + "-0001.checkpoint"), Is.True);
        Assert.That(File.Exists(prefix + "-0001.params.next"), Is.False);
        byte[] first = File.ReadAllBytes(prefix + "-0001.params");

        // A save killed after its commit, before its renames: the next load finishes it.
        m.Fit(train, opt, 1, initialize: false);
        m.SaveCheckpoint(prefix, 1, saveOptimizerStates: true);
        byte[] second = File.ReadAllBytes(prefix + "-0001.params");
        Assert.That(second, Is.Not.EqualTo(first));
        File.Move(prefix + "-0001.params", prefix + "-0001.params.next");
        File.WriteAllBytes(prefix + "-0001.params", first);
        m.LoadCheckpoint(prefix, 1, new SGD(lr: 0.1, momentum: 0.9));
        Assert.That(File.ReadAllBytes(prefix + "-0001.params"), Is.EqualTo(second));
        Assert.That(File.Exists(prefix + "-0001.params.next"), Is.False);

        // A .params replaced behind the manifest's back (a mixed pair) is refused, naming it.
        File.WriteAllBytes(prefix + "-0001.params", first);
        var e = Assert.Throws<LoomException>(() => m.LoadCheckpoint(prefix, 1, new SGD(lr: 0.1, momentum: 0.9)))!;
        Assert.That(e.Message, Does.Contain("set-0001.params' is not the file committed in"));

        // Saving the parameters alone makes them a set by themselves again.
        m.SaveCheckpoint(prefix, 1);
        Assert.That(File.Exists(prefix + "-0001.checkpoint"), Is.False);
        m.LoadCheckpoint(prefix, 1);
    }

    [Test]
    public void TemporariesOfKilledSavesAreCleared()
    {
        string path = Path.Combine(_dir, "t.params");
        // A process id that cannot be running (above Linux's pid_max), and one that is (ours).
        File.WriteAllBytes(path + ".tmp.99999999.7", new byte[100]);
        string live = path + $".tmp.{Environment.ProcessId}.77";
        File.WriteAllBytes(live, new byte[100]);
        using (var a = NDArray.Ones(3)) NDArray.Save(path, new Dictionary<string, NDArray> { ["a"] = a });
        Assert.That(File.Exists(path + ".tmp.99999999.7"), Is.False);
        Assert.That(File.Exists(live), Is.True);
        File.Delete(live);
    }

    // Three separable clusters with one NaN in sample 45 (batch 3 of 20-sample batches).
    private static NDArrayIter PoisonedBlobs()
    {
        Rand.Seed(7);
        var labels = Op.Cast(Op.RandomUniform(low: 0, high: 3, shape: new long[] { 300 }), DType.Int32).AsType(DType.Float32);
        using var x = Op.OneHot(labels.AsType(DType.Int64), depth: 5) * 3.0 + Rand.Normal(0, 0.5, new long[] { 300, 5 });
        float[] host = x.ToArray<float>();
        host[45 * 5 + 2] = float.NaN;
        return new NDArrayIter(NDArray.FromArray(host, 300, 5), labels, 20);
    }

    [TestCase(NonFinitePolicy.Warn), TestCase(NonFinitePolicy.Skip), TestCase(NonFinitePolicy.Stop), TestCase(NonFinitePolicy.Ignore)]
    public void NonFiniteBatchesAreNamedByEpochBatchAndArray(NonFinitePolicy policy)
    {
        var log = new List<string>();
        var old = Module.Log;
        Module.Log = log.Add;
        try
        {
            using var train = PoisonedBlobs();
            using var m = new Module(Mlp()) { NonFinite = policy };
            void Fit() => m.Fit(train, new SGD(lr: 0.1, momentum: 0.9), 2, init: new XavierInit());
            if (policy == NonFinitePolicy.Stop)
            {
                var e = Assert.Throws<LoomException>(Fit)!;
                Assert.That(e.Message, Does.Contain("epoch 1 batch 3: the data batch ('data') holds non-finite values"));
            }
            else
            {
                Fit();
            }
            var reports = log.Where(l => l.Contains(" batch ") && l.Contains("non-finite values")).ToList();
            var weights = m.GetParams().Args["fc1_weight"].ToArray<float>();
            switch (policy)
            {
                case NonFinitePolicy.Warn:  // the NaN reaches the weights as before; every later batch is
                    // reported too, the first five per epoch by name and the rest as a count
                    // (read one batch late, so the arrays named are those holding NaN when it is read)
                    Assert.That(reports[0], Does.Contain("epoch 1 batch 3: non-finite values (NaN or infinity); now in "));
                    // (relu passes NaN, as MXNet's does: the NaN weights reach the output)
                    Assert.That(reports[1], Does.Contain("epoch 1 batch 4: non-finite values (NaN or infinity); now in output 0"));
                    Assert.That(reports, Has.Count.EqualTo(10));
                    Assert.That(log.Any(l => l.Contains("epoch 1: 13 batches held non-finite values")), Is.True, string.Join("\n", log));
                    Assert.That(weights.Any(float.IsNaN), Is.True);
                    break;
                case NonFinitePolicy.Skip:  // the poisoned batch's update is skipped: weights stay finite
                    Assert.That(reports, Has.Count.EqualTo(2));
                    Assert.That(reports[0], Does.EndWith("its update was skipped"));
                    Assert.That(weights.All(float.IsFinite), Is.True);
                    break;
                case NonFinitePolicy.Stop:  // stopped before the update: weights finite
                    Assert.That(weights.All(float.IsFinite), Is.True);
                    break;
                case NonFinitePolicy.Ignore:
                    Assert.That(reports, Is.Empty);
                    break;
            }
        }
        finally { Module.Log = old; }
    }

    [Test]
    public void AFailedSaveLeavesTheGoodCheckpoint()
    {
        var (train, _) = Blobs();
        using var m = new Module(Mlp());
        m.Fit(train, new SGD(lr: 0.1), 1, init: new XavierInit());
        string prefix = Path.Combine(_dir, "ck");
        m.SaveCheckpoint(prefix, 1);
        byte[] good = File.ReadAllBytes(prefix + "-0001.params");
        m.Fit(train, new SGD(lr: 0.1), 1, initialize: false);
        // The symbol file cannot be replaced (a directory took its name): the save
        // fails and the parameters already saved are untouched.
        File.Delete(prefix + "-symbol.json");
        Directory.CreateDirectory(Path.Combine(prefix + "-symbol.json", "occupied"));
        var e = Assert.Throws<LoomException>(() => m.SaveCheckpoint(prefix, 1))!;
        Assert.That(e.Status, Is.EqualTo(LoomStatus.Io));
        Assert.That(e.Message, Does.Contain("ck-symbol.json"));
        Assert.That(Directory.GetFiles(_dir).Where(f => f.Contains(".tmp")), Is.Empty);
        Assert.That(File.ReadAllBytes(prefix + "-0001.params"), Is.EqualTo(good));
        e = Assert.Throws<LoomException>(() => m.SaveCheckpoint(Path.Combine(_dir, "no", "such", "dir", "ck"), 1))!;
        Assert.That(e.Message, Does.Contain("does not exist"));
        // A truncated parameters file is refused with the file named.
        File.WriteAllBytes(prefix + "-0003.params", good.AsSpan(0, good.Length / 2).ToArray());
        e = Assert.Throws<LoomException>(() => m.LoadCheckpoint(prefix, 3))!;
        Assert.That(e.Message, Does.Contain("ck-0003.params"));
    }

    [Test]
    public void AlexNetAndADeconvolutionInferTheirShapes()
    {
        var alex = Models.AlexNet();
        var inf = alex.InferShape(new Dictionary<string, long[]> { ["data"] = new long[] { 2, 3, 224, 224 } });
        Assert.That(inf.Complete, Is.True);
        Assert.That(inf.OutputShapes[0], Is.EqualTo(new long[] { 2, 1000 }));
        var args = alex.ListArguments();
        Assert.That(inf.ArgumentShapes[Array.IndexOf(args, "fc1_weight")], Is.EqualTo(new long[] { 4096, 256 * 5 * 5 }));
        // An upsampling decoder: Deconvolution doubles the extent; its weight is (C, F, k, k).
        var up = Symbol.Variable("data").Deconvolution("up", kernel: new long[] { 4, 4 }, numFilter: 8,
            stride: new long[] { 2, 2 }, pad: new long[] { 1, 1 });
        inf = up.InferShape(new Dictionary<string, long[]> { ["data"] = new long[] { 1, 3, 7, 7 } });
        Assert.That(inf.OutputShapes[0], Is.EqualTo(new long[] { 1, 8, 14, 14 }));
        Assert.That(inf.ArgumentShapes[1], Is.EqualTo(new long[] { 3, 8, 4, 4 }));
        var e = Assert.Throws<LoomException>(() => up.InferShape(new Dictionary<string, long[]> { ["data"] = new long[] { 3, 7, 7 } }))!;
        Assert.That(e.Message, Does.Contain("Deconvolution").And.Contain("(3,7,7)"));
    }

    // Parameter counts of torchvision's resnet18 and resnet50 (weights, BatchNorm scales and
    // shifts, the classifier's bias), an independent reference for the architecture.
    [TestCase(18, 11_689_512L)]
    [TestCase(50, 25_557_032L)]
    public void ResNetHasTorchvisionsShapesAndParameterCount(int depth, long parameters)
    {
        var net = Models.ResNet(depth);
        var inf = net.InferShape(new Dictionary<string, long[]> { ["data"] = new long[] { 2, 3, 224, 224 } });
        Assert.That(inf.Complete, Is.True);
        Assert.That(inf.OutputShapes[0], Is.EqualTo(new long[] { 2, 1000 }));
        var names = net.ListArguments();
        long count = 0;
        for (int i = 0; i < names.Length; i++)
            if (names[i] != "data" && names[i] != "softmax_label") count += inf.ArgumentShapes[i]!.Aggregate(1L, (a, b) => a * b);
        Assert.That(count, Is.EqualTo(parameters));
        Assert.Throws<ArgumentOutOfRangeException>(() => Models.ResNet(20));
    }

    [Test]
    public void InceptionBnPlansWithinTheMemoryTargets()
    {
        var net = Models.InceptionBN();
        Assert.That(net.ListAuxiliaryStates(), Has.Length.EqualTo(138));
        var shapes = new Dictionary<string, long[]> { ["data"] = new long[] { 32, 3, 224, 224 } };
        var reqs = new Dictionary<string, GradReq> { ["data"] = GradReq.Null, ["softmax_label"] = GradReq.Null };
        var train = net.PlanMemory(shapes, true, GradReq.Write, reqs);
        // Prediction plans the fused graph (Convolution+BatchNorm+relu as one step): it is
        // measured against the unfused graph's plan, which keeps the 4x target.
        Loom.Interop.MemoryPlan infer, unfused;
        setenv("LOOM_EXEC_FUSE", "0", 1);
        try { unfused = net.PlanMemory(shapes, false, GradReq.Write, reqs); }
        finally { unsetenv("LOOM_EXEC_FUSE"); }
        infer = net.PlanMemory(shapes, false, GradReq.Write, reqs);
        Assert.That(train.PlannedBytes, Is.LessThanOrEqualTo(train.UnplannedBytes / 2), "training");
        Assert.That(unfused.PlannedBytes, Is.LessThanOrEqualTo(unfused.UnplannedBytes / 4), "inference");
        Assert.That(unfused.NumInplace, Is.GreaterThan(0));
        Assert.That(infer.NumSteps, Is.LessThan(unfused.NumSteps), "fusion removed steps");
        Assert.That(infer.PlannedBytes, Is.LessThanOrEqualTo(unfused.PlannedBytes), "fusion costs no memory");
        // The graph survives MXNet's JSON.
        Assert.That(Symbol.FromJson(net.ToJson()).ListArguments(), Is.EqualTo(net.ListArguments()));
    }
}
