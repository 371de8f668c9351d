using Loom;
using Loom.Gluon;

namespace Loom.Tests;

// Blocks written as C# classes, run imperatively and hybridized (traced natively into a
// symbol and run by a cached, planned executor): identical bits both ways, training,
// sharing, export, and the errors of bad input.
public class GluonTests
{
    private DisposeScope _scope = null!;
    [SetUp]
    public void Begin() => _scope = NDArray.Scope();
    [TearDown]
    public void End() => _scope.Dispose();

    private sealed class Mlp : HybridBlock
    {
        private readonly Dense _fc1, _fc2, _fc3;
        public Mlp(string? prefix = null) : base(prefix)
        {
            _fc1 = Register(new Dense(128, ActType.Relu));
            _fc2 = Register(new Dense(64, ActType.Relu));
            _fc3 = Register(new Dense(10));
        }
        protected override NDArray HybridForward(NDArray x) => _fc3.Forward(_fc2.Forward(_fc1.Forward(x)));
    }

    private sealed class LeNet : HybridBlock
    {
        private readonly HybridSequential _features;
        private readonly Dense _fc1, _fc2;
        public LeNet(string? prefix = null) : base(prefix)
        {
            _features = Register(new HybridSequential().Add(
                new Conv2D(20, new long[] { 5, 5 }, activation: ActType.Tanh), new MaxPool2D(),
                new Conv2D(50, new long[] { 5, 5 }, activation: ActType.Tanh), new MaxPool2D(), new Flatten()));
            _fc1 = Register(new Dense(500, ActType.Tanh));
            _fc2 = Register(new Dense(10));
        }
        protected override NDArray HybridForward(NDArray x) => _fc2.Forward(_fc1.Forward(_features.Forward(x)));
    }

    // ResNet v1 basic block: conv-BN-relu-conv-BN plus the (projected) input, relu.
    private sealed class BasicBlock : HybridBlock
    {
        private readonly HybridSequential _body;
        private readonly HybridSequential? _down;
        public BasicBlock(long channels, long stride, bool downsample)
        {
            _body = Register(new HybridSequential().Add(
                new Conv2D(channels, new long[] { 3, 3 }, new[] { stride, stride }, new long[] { 1, 1 }, useBias: false),
                new BatchNorm(), new Activation(ActType.Relu),
                new Conv2D(channels, new long[] { 3, 3 }, padding: new long[] { 1, 1 }, useBias: false), new BatchNorm()));
            if (downsample)
                _down = Register(new HybridSequential().Add(
                    new Conv2D(channels, new long[] { 1, 1 }, new[] { stride, stride }, useBias: false), new BatchNorm()));
        }
        protected override NDArray HybridForward(NDArray x)
        {
            var r = _down is null ? x : _down.Forward(x);
            return Op.Activation(Op.Add(_body.Forward(x), r), ActType.Relu);
        }
    }

    private static HybridSequential ResNetStack() => new HybridSequential().Add(
        new Conv2D(8, new long[] { 3, 3 }, padding: new long[] { 1, 1 }, useBias: false), new BatchNorm(), new Activation(ActType.Relu),
        new BasicBlock(8, 1, false), new BasicBlock(8, 1, false), new BasicBlock(16, 2, true), new BasicBlock(16, 1, false),
        new GlobalAvgPool2D(), new Dense(10));

    private static NDArray Input(params long[] shape)
    {
        Rand.Seed(11);
        return Rand.Normal(0, 1, shape);
    }

    private static NDArray Labels(int n, int classes)
    {
        var l = new float[n];
        for (int i = 0; i < n; i++) l[i] = (i * 7) % classes;
        return NDArray.FromArray(l, n);
    }

    private static void CopyParams(Block from, Block to)
    {
        var a = from.Collect().Values.ToArray();
        var b = to.Collect().Values.ToArray();
        Assert.That(b.Length, Is.EqualTo(a.Length));
        for (int i = 0; i < a.Length; i++) b[i].SetData(a[i].Data());
    }

    private static void AssertSameBits(NDArray x, NDArray y, string what)
    {
        Assert.That(y.Shape, Is.EqualTo(x.Shape), what);
        var u = x.ToArray<float>();
        var v = y.ToArray<float>();
        for (int i = 0; i < u.Length; i++)
            if (BitConverter.SingleToInt32Bits(u[i]) != BitConverter.SingleToInt32Bits(v[i]))
                Assert.Fail($"{what}: element {i} differs: {u[i]:R} vs {v[i]:R}");
    }

    // Trains `make()` twice, imperatively and hybridized, from the same parameters, and
    // checks every output, gradient, parameter and running statistic bit for bit.
    private static void ImperativeEqualsHybridized(Func<HybridBlock> make, NDArray x, NDArray y)
    {
        var imp = make();
        var hyb = make();
        Rand.Seed(5);
        imp.Initialize(new XavierInit());
        hyb.Initialize(new XavierInit());
        using (Autograd.Predict()) imp.Forward(x);  // settles the deferred shapes
        hyb.Hybridize();
        using (Autograd.Predict()) hyb.Forward(x);  // traces
        CopyParams(imp, hyb);
        var loss = new SoftmaxCrossEntropyLoss();
        var ti = new Trainer(imp.Collect(), new SGD(0.1, momentum: 0.9));
        var th = new Trainer(hyb.Collect(), new SGD(0.1, momentum: 0.9));
        int batch = (int)x.Shape[0];
        for (int step = 0; step < 3; step++)
        {
            var xs = step == 0 ? x : Op.MultiplyScalar(x, 1 + 0.5 * step);  // new data each step, same shape
            NDArray oi, oh;
            using (Autograd.Record())
            {
                oi = imp.Forward(xs);
                var li = loss.Forward(oi, y);
                li.Backward();
            }
            using (Autograd.Record())
            {
                oh = hyb.Forward(xs);
                var lh = loss.Forward(oh, y);
                lh.Backward();
            }
            AssertSameBits(oi, oh, $"step {step} output");
            var pi = imp.Collect().Values.ToArray();
            var ph = hyb.Collect().Values.ToArray();
            for (int i = 0; i < pi.Length; i++)
                if (pi[i].GradReq != GradReq.Null) AssertSameBits(pi[i].Grad(), ph[i].Grad(), $"step {step} gradient of {pi[i].Name}");
            ti.Step(batch);
            th.Step(batch);
            for (int i = 0; i < pi.Length; i++) AssertSameBits(pi[i].Data(), ph[i].Data(), $"step {step} value of {pi[i].Name}");
        }
        Assert.That(hyb.CachedGraphs, Is.EqualTo(1));
        using (Autograd.Predict()) AssertSameBits(imp.Forward(x), hyb.Forward(x), "prediction after training");
    }

    [Test]
    public void MlpImperativeAndHybridizedGiveIdenticalBits() =>
        ImperativeEqualsHybridized(() => new Mlp(), Input(16, 1, 28, 28), Labels(16, 10));

    [Test]
    public void LeNetImperativeAndHybridizedGiveIdenticalBits() =>
        ImperativeEqualsHybridized(() => new LeNet(), Input(8, 1, 28, 28), Labels(8, 10));

    [Test]
    public void ResNetBlocksImperativeAndHybridizedGiveIdenticalBits() =>
        ImperativeEqualsHybridized(ResNetStack, Input(4, 3, 16, 16), Labels(4, 10));

    [Test]
    public void ResNet18ImperativeAndHybridizedGiveIdenticalBits() =>
        ImperativeEqualsHybridized(() => Models.ResNetBlock(18, classes: 10, thumbnail: true), Input(2, 3, 16, 16), Labels(2, 10));

    [Test]
    public void NamesAreHierarchicalAndCollectSelects()
    {
        var net = new LeNet("lenet0_");
        net.Initialize();
        using (Autograd.Predict()) net.Forward(Input(2, 1, 28, 28));
        var names = net.Collect().Keys.ToArray();
        Assert.That(names, Does.Contain("lenet0_hybridsequential0_conv0_weight"));
        Assert.That(names, Does.Contain("lenet0_hybridsequential0_conv1_bias"));
        Assert.That(names, Does.Contain("lenet0_dense0_weight"));
        Assert.That(names, Does.Contain("lenet0_dense1_bias"));
        Assert.That(net.Collect("weight$").Count, Is.EqualTo(4));
        Assert.That(net.Collect()["lenet0_dense0_weight"].Shape, Is.EqualTo(new long[] { 500, 800 }));  // deferred: 50*4*4
        Assert.That(net.Collect()["lenet0_hybridsequential0_conv0_weight"].Shape, Is.EqualTo(new long[] { 20, 1, 5, 5 }));
        Assert.That(net.ToString(), Does.Contain("Conv2D(1 -> 20, kernel_size=(5, 5)"));
        Assert.That(net.ToString(), Does.Contain("Dense(800 -> 500, tanh)"));
    }

    [Test]
    public void HybridizedGraphNamesNodesByBlockAndTracesEachSignatureOnce()
    {
        var net = new Mlp("mlp0_");
        net.Initialize();
        net.Hybridize();
        using (Autograd.Predict())
        {
            net.Forward(Input(8, 20));
            net.Forward(Input(8, 20));
            Assert.That(net.CachedGraphs, Is.EqualTo(1));
            var b4 = net.Forward(Input(4, 20));
            Assert.That(b4.Shape, Is.EqualTo(new long[] { 4, 10 }));
            Assert.That(net.CachedGraphs, Is.EqualTo(2));
            net.Forward(Input(8, 20));
            Assert.That(net.CachedGraphs, Is.EqualTo(2));
        }
        var args = net.CachedSymbol!.ListArguments();
        Assert.That(args, Is.EqualTo(new[] { "data", "mlp0_dense0_weight", "mlp0_dense0_bias", "mlp0_dense1_weight",
            "mlp0_dense1_bias", "mlp0_dense2_weight", "mlp0_dense2_bias" }));
        Assert.That(net.CachedSymbol.ToJson(), Does.Contain("\"mlp0_dense0_fullyconnected0\""));
    }

    [Test]
    public void SharedParametersReceiveTheSummedGradient()
    {
        foreach (bool hybrid in new[] { false, true })
        {
            var net = new Twin();
            net.Initialize(new UniformInit(0.5));
            if (hybrid) net.Hybridize();
            var x = Input(3, 5);
            for (int rep = 0; rep < 2; rep++)  // traced call, then the cached graph
            {
                using (Autograd.Record()) Op.Sum(net.Forward(x)).Backward();
                Assert.That(net.Collect().Count, Is.EqualTo(2), "one weight and one bias, shared");
                // d/dW sum(xW^T + b) twice = 2 * column sums of x, for every output unit.
                var xs = x.ToArray<float>();
                var g = net.Collect().Values.First().Grad().ToArray<float>();
                for (int j = 0; j < 4; j++)
                    for (int k = 0; k < 5; k++)
                    {
                        double want = 0;
                        for (int i = 0; i < 3; i++) want += 2.0 * xs[i * 5 + k];
                        Assert.That(g[j * 5 + k], Is.EqualTo(want).Within(1e-5), $"hybrid={hybrid} rep={rep} dW[{j},{k}]");
                    }
                var gb = net.Collect().Values.Last().Grad().ToArray<float>();
                Assert.That(gb, Is.All.EqualTo(6f), "2 uses x 3 rows");
            }
        }
    }

    private sealed class Twin : HybridBlock
    {
        private readonly Dense _a, _b;
        public Twin()
        {
            _a = Register(new Dense(4, inUnits: 5));
            _b = Register(new Dense(4, inUnits: 5, @params: _a.Collect()));
        }
        protected override NDArray HybridForward(NDArray x) => Op.Add(_a.Forward(x), _b.Forward(x));
    }

    [Test]
    public void ExportedFilesLoadInModuleAndSymbolBlockWithTheSameOutputs()
    {
        var net = new LeNet("lenet0_");
        Rand.Seed(2);
        net.Initialize(new XavierInit());
        net.Hybridize();
        var x = Input(4, 1, 28, 28);
        NDArray want;
        using (Autograd.Predict())
        {
            net.Forward(x);
            want = net.Forward(x);
        }
        string dir = Path.Combine(Path.GetTempPath(), "loom-gluon-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            string prefix = Path.Combine(dir, "lenet");
            net.Export(prefix);
            Assert.That(File.Exists(prefix + "-symbol.json") && File.Exists(prefix + "-0000.params"));
            var names = NDArray.Load(prefix + "-0000.params").Select(e => e.Name).ToArray();
            Assert.That(names, Does.Contain("arg:lenet0_dense0_weight"));

            using var m = Module.Load(prefix, 0, labelNames: Array.Empty<string>());
            m.Bind(x.Shape, forTraining: false);
            m.Forward(x, null, isTrain: false);
            AssertSameBits(want, m.Output, "Module output");

            var sb = SymbolBlock.Imports(prefix + "-symbol.json", new[] { "data" }, prefix + "-0000.params");
            using (Autograd.Predict()) AssertSameBits(want, sb.Forward(x), "SymbolBlock output");
            Assert.That(sb.Collect().ContainsKey("lenet0_dense0_weight"));
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Test]
    public void SaveAndLoadParametersRoundTripAndRejectMissingOrExtraNames()
    {
        var a = new Mlp();
        var b = new Mlp();
        Rand.Seed(3);
        a.Initialize(new XavierInit());
        b.Initialize(new XavierInit());
        var x = Input(2, 20);
        using (Autograd.Predict())
        {
            a.Forward(x);
            b.Forward(x);
        }
        string path = Path.Combine(Path.GetTempPath(), "loom-gluon-" + Guid.NewGuid().ToString("N") + ".params");
        try
        {
            a.SaveParameters(path);
            Assert.That(NDArray.Load(path).Select(e => e.Name), Does.Contain("dense0_weight"), "names relative to the block");
            b.LoadParameters(path);
            using (Autograd.Predict()) AssertSameBits(a.Forward(x), b.Forward(x), "loaded network");

            // A file lacking a parameter: an error naming it, and nothing changed.
            var partial = a.Collect().Where(kv => !kv.Key.EndsWith("dense2_bias", StringComparison.Ordinal))
                .ToDictionary(kv => kv.Key[a.Prefix.Length..], kv => kv.Value.Data());
            NDArray.Save(path, partial);
            var before = b.Collect().Values.First().Data().ToArray<float>();
            var e = Assert.Throws<LoomException>(() => b.LoadParameters(path));
            Assert.That(e!.Message, Does.Contain($"'{b.Prefix}dense2_bias' (10,)"));
            Assert.That(b.Collect().Values.First().Data().ToArray<float>(), Is.EqualTo(before));
            b.LoadParameters(path, allowMissing: true);

            // An extra name.
            partial["dense9_weight"] = NDArray.Zeros(3, 4);
            partial[$"dense2_bias"] = a.Collect().Values.Last().Data();
            NDArray.Save(path, partial);
            e = Assert.Throws<LoomException>(() => b.LoadParameters(path));
            Assert.That(e.Message, Does.Contain("dense9_weight").And.Contain("(3,4)"));
            b.LoadParameters(path, ignoreExtra: true);

            // A shape that differs.
            partial.Remove("dense9_weight");
            partial["dense0_weight"] = NDArray.Zeros(128, 7);
            NDArray.Save(path, partial);
            e = Assert.Throws<LoomException>(() => b.LoadParameters(path));
            Assert.That(e!.Message, Does.Contain("dense0_weight").And.Contain("(128,20)").And.Contain("(128,7)"));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test]
    public void BadInputGivesClearErrors()
    {
        // Reading a deferred parameter before the first forward.
        var mlp = new Mlp("mlpx_");
        var e = Assert.Throws<LoomException>(() => mlp.Collect()["mlpx_dense0_weight"].Data());
        Assert.That(e!.Message, Does.Contain("mlpx_dense0_weight").And.Contain("Initialize"));
        mlp.Initialize();
        e = Assert.Throws<LoomException>(() => mlp.Collect()["mlpx_dense0_weight"].Data());
        Assert.That(e!.Message, Does.Contain("mlpx_dense0_weight").And.Contain("(128,0)").And.Contain("first forward"));

        // A hybridized network called with another input width or rank.
        mlp.Hybridize();
        using (Autograd.Predict()) mlp.Forward(Input(4, 20));
        e = Assert.Throws<LoomException>(() => mlp.Forward(Input(4, 21)));
        Assert.That(e!.Message, Does.Contain("mlpx_dense0_weight").And.Contain("(128,20)").And.Contain("(4,21)"));
        var lenet = new LeNet();
        lenet.Initialize();
        lenet.Hybridize();
        using (Autograd.Predict()) lenet.Forward(Input(2, 1, 28, 28));
        e = Assert.Throws<LoomException>(() => lenet.Forward(Input(1, 28, 28)));
        Assert.That(e!.Message, Does.Contain("(1,28,28)"));
        using (Autograd.Predict()) Assert.That(lenet.Forward(Input(2, 1, 28, 28)).Shape, Is.EqualTo(new long[] { 2, 10 }), "still usable");

        // An array captured from outside a hybridized block: named by the native trace.
        var captured = new Captures(NDArray.Ones(3, 4));
        captured.Hybridize();
        e = Assert.Throws<LoomException>(() => captured.Forward(NDArray.Ones(3, 4)));
        Assert.That(e!.Message, Does.Contain("add input 1").And.Contain("(3,4)"));
    }

    private sealed class Captures(NDArray c) : HybridBlock
    {
        protected override NDArray HybridForward(NDArray x) => Op.Add(x, c);
    }

    [Test]
    public void LossesMatchFloat64References()
    {
        var pred = NDArray.FromArray(new float[] { 0.5f, -1f, 2f, 0.1f, 0.2f, -0.3f }, 2, 3);
        var label = NDArray.FromArray(new float[] { 2, 0 }, 2);
        double[] p = { 0.5, -1, 2, 0.1, 0.2, -0.3 };
        int[] l = { 2, 0 };
        var ce = new SoftmaxCrossEntropyLoss().Forward(pred, label).ToArray<float>();
        for (int i = 0; i < 2; i++)
        {
            double m = Math.Max(p[i * 3], Math.Max(p[i * 3 + 1], p[i * 3 + 2]));
            double z = 0;
            for (int k = 0; k < 3; k++) z += Math.Exp(p[i * 3 + k] - m);
            Assert.That(ce[i], Is.EqualTo(-(p[i * 3 + l[i]] - m - Math.Log(z))).Within(1e-6));
        }
        // Classes on axis 0 (MXNet's pick along any axis): pred (3,2) read as two columns of
        // three classes, the batch on axis 1; the label may be (2,), (1,2), or any shape of two indices.
        var byCol = NDArray.FromArray(new float[] { 0.5f, 0.1f, -1f, 0.2f, 2f, -0.3f }, 3, 2);
        foreach (var lab in new[] { label, NDArray.FromArray(new float[] { 2, 0 }, 1, 2), NDArray.FromArray(new float[] { 2, 0 }, 2, 1) })
            Assert.That(new SoftmaxCrossEntropyLoss(axis: 0, batchAxis: 1).Forward(byCol, lab).ToArray<float>(), Is.EqualTo(ce).Within(1e-6));
        var bad = Assert.Throws<LoomException>(() => new SoftmaxCrossEntropyLoss().Forward(pred, NDArray.FromArray(new float[] { 1, 2, 0 }, 3)));
        Assert.That(bad!.Message, Does.Contain("the label (3,) should hold one class index per sample of the prediction (2,3) (classes on axis 1)"));
        var target = NDArray.FromArray(new float[] { 1, 0, 1, 0, 1, 1 }, 2, 3);
        double[] t = { 1, 0, 1, 0, 1, 1 };
        var l2 = new L2Loss().Forward(pred, target).ToArray<float>();
        var l1 = new L1Loss().Forward(pred, target).ToArray<float>();
        var bce = new SigmoidBinaryCrossEntropyLoss().Forward(pred, target).ToArray<float>();
        for (int i = 0; i < 2; i++)
        {
            double s2 = 0, s1 = 0, sb = 0;
            for (int k = 0; k < 3; k++)
            {
                double d = t[i * 3 + k] - p[i * 3 + k];
                s2 += 0.5 * d * d;
                s1 += Math.Abs(d);
                double sig = 1 / (1 + Math.Exp(-p[i * 3 + k]));
                sb += -(t[i * 3 + k] * Math.Log(sig) + (1 - t[i * 3 + k]) * Math.Log(1 - sig));
            }
            Assert.That(l2[i], Is.EqualTo(s2 / 3).Within(1e-6));
            Assert.That(l1[i], Is.EqualTo(s1 / 3).Within(1e-6));
            Assert.That(bce[i], Is.EqualTo(sb / 3).Within(1e-6));
        }
        // The cross-entropy's gradient: softmax minus the one-hot label, per sample.
        pred.AttachGrad();
        using (Autograd.Record()) new SoftmaxCrossEntropyLoss().Forward(pred, label).Backward();
        var g = pred.Grad.ToArray<float>();
        for (int i = 0; i < 2; i++)
        {
            double z = 0;
            for (int k = 0; k < 3; k++) z += Math.Exp(p[i * 3 + k]);
            for (int k = 0; k < 3; k++)
                Assert.That(g[i * 3 + k], Is.EqualTo(Math.Exp(p[i * 3 + k]) / z - (k == l[i] ? 1 : 0)).Within(1e-6));
        }
    }

    [Test]
    public void TrainerStepIsSgdOnTheBatchMean()
    {
        var d = new Dense(2, inUnits: 3);
        d.Initialize(new UniformInit(0.5));
        var w0 = d.Weight.Data().ToArray<float>();
        var x = Input(4, 3);
        using (Autograd.Record()) Op.Sum(d.Forward(x)).Backward();
        var g = d.Weight.Grad().ToArray<float>();
        new Trainer(d.Collect(), new SGD(0.5)).Step(4);
        var w1 = d.Weight.Data().ToArray<float>();
        for (int i = 0; i < w0.Length; i++) Assert.That(w1[i], Is.EqualTo(w0[i] - 0.5 * g[i] / 4).Within(1e-6));
    }

    [Test]
    public void PlainBlocksAndEveryLayerRun()
    {
        var seq = new Sequential().Add(new Embedding(10, 4), new Flatten(), new Dense(3), new LeakyReLU(0.1), new Dropout(0.5));
        seq.Initialize();
        var idx = NDArray.FromArray(new float[] { 1, 2, 3, 4 }, 2, 2);
        using (Autograd.Predict()) Assert.That(seq.Forward(idx).Shape, Is.EqualTo(new long[] { 2, 3 }));
        var convs = new HybridSequential().Add(new Conv1D(4, 3), new Activation(ActType.Sigmoid));
        convs.Initialize();
        Assert.That(convs.Forward(Input(2, 3, 10)).Shape, Is.EqualTo(new long[] { 2, 4, 8 }));
        var c3 = new HybridSequential().Add(new Conv3D(2, new long[] { 2, 2, 2 }), new MaxPool3D(new long[] { 3, 3, 3 }, new long[] { 1, 1, 1 }),
            new AvgPool3D(new long[] { 1, 1, 1 }));
        c3.Initialize();
        Assert.That(c3.Forward(Input(1, 1, 4, 4, 4)).Shape, Is.EqualTo(new long[] { 1, 2, 1, 1, 1 }));
        var p1 = new HybridSequential().Add(new MaxPool1D(2), new AvgPool1D(3, strides: 1, padding: 1));
        var ones = NDArray.Ones(1, 1, 6);
        Assert.That(p1.Forward(ones).ToArray<float>(), Is.EqualTo(new float[] { 2f / 3, 1, 2f / 3 }), "avg pool counts padding, as Gluon's default");
        var up = new HybridSequential().Add(new Conv2DTranspose(3, new long[] { 4, 4 }, new long[] { 2, 2 }, new long[] { 1, 1 }),
            new AvgPool2D(), new GlobalMaxPool2D());
        up.Initialize();
        up.Hybridize();
        for (int i = 0; i < 2; i++) Assert.That(up.Forward(Input(1, 2, 5, 5)).Shape, Is.EqualTo(new long[] { 1, 3, 1, 1 }));
    }

    [Test]
    public void ResNetFamilyHasTheStandardParameterCounts()
    {
        // Trainable parameters of torchvision's resnet18/34/50 (1000 classes), an
        // independent count of the same architectures.
        foreach (var (net, want) in new[] { (Vision.ResNet18V1(), 11_689_512L), (Vision.ResNet34V1(), 21_797_672L),
                     (Vision.ResNet50V1(), 25_557_032L) })
        {
            long n = 0;
            foreach (var p in net.Collect().Values)
                if (p.GradReq != GradReq.Null) n += p.Shape.Aggregate(1L, (a, b) => a * b);
            Assert.That(n, Is.EqualTo(want), net.Name);
        }
        var small = Vision.ResNet18V1(classes: 10, thumbnail: true);
        small.Initialize(new XavierInit());
        small.Hybridize();
        using (Autograd.Predict())
            for (int i = 0; i < 2; i++) Assert.That(small.Forward(Input(2, 3, 32, 32)).Shape, Is.EqualTo(new long[] { 2, 10 }));
        // MXNet's model-zoo names: empty-prefix blocks count in the enclosing scope.
        var keys = small.Collect().Keys.ToArray();
        Assert.That(keys[0], Is.EqualTo("resnetv10_conv0_weight"));
        Assert.That(keys, Does.Contain("resnetv10_stage1_conv3_weight"));
        Assert.That(small.Collect()["resnetv10_stage2_conv2_weight"].Shape, Is.EqualTo(new long[] { 128, 64, 1, 1 }),
            "stage 2's first block: body conv0, conv1, then the projection conv2");
        Assert.That(keys, Does.Contain("resnetv10_stage4_batchnorm4_running_var"));
        Assert.That(keys[^1], Is.EqualTo("resnetv10_dense0_bias"));
    }

    [Test]
    public void MXNetsExportedResNet18RunsAsSymbolBlockWithLoomsBlockParameters()
    {
        // tests/mxnet_files/djl-resnet18_v1-symbol.json: MXNet's own export of Gluon's
        // model_zoo resnet18_v1 (kept with its source in manifest.json). Loom's ResNet-18
        // block names its parameters as MXNet's, so its parameter file feeds MXNet's graph,
        // and both compute the same outputs.
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !Directory.Exists(Path.Combine(dir.FullName, "tests", "mxnet_files"))) dir = dir.Parent;
        Assert.That(dir, Is.Not.Null, "tests/mxnet_files not found above the test folder");
        string symbolFile = Path.Combine(dir!.FullName, "tests", "mxnet_files", "djl-resnet18_v1-symbol.json");

        var net = Vision.ResNet18V1();
        Rand.Seed(9);
        net.Initialize(new XavierInit(RndType.Gaussian, FactorType.In, 2));
        net.Hybridize();
        var x = Input(1, 3, 224, 224);
        NDArray want;
        using (Autograd.Predict())
        {
            net.Forward(x);
            want = net.Forward(x);
        }
        string path = Path.Combine(Path.GetTempPath(), "loom-resnet18-" + Guid.NewGuid().ToString("N") + ".params");
        try
        {
            net.Collect().Save(path);
            var mx = SymbolBlock.Imports(symbolFile, new[] { "data" }, path);
            Assert.That(mx.Collect().Count, Is.EqualTo(net.Collect().Count));
            NDArray got;
            using (Autograd.Predict()) got = mx.Forward(x);
            Assert.That(got.Shape, Is.EqualTo(new long[] { 1, 1000 }));
            AssertSameBits(want, got, "MXNet's resnet18_v1 graph vs Loom's ResNet18V1 block");
            // The graph Loom traces has the same parameters in the same order as MXNet's.
            var theirs = Symbol.Load(symbolFile).ListArguments();
            Assert.That(net.CachedSymbol!.ListArguments(), Is.EqualTo(theirs));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Test]
    public void HybridizedTrainingWithoutDisposingDoesNotDeadlock()
    {
        // Recorded calls' nodes are freed wherever their last array dies: by finalizers, or
        // on an engine worker finishing an op, while the training thread may be waiting in
        // Engine.Push with the cached op's lock held. That once deadlocked; this loop (the
        // README's) runs under a time limit.
        var run = Task.Run(() =>
        {
            var net = new LeNet();
            net.Initialize(new XavierInit());
            net.Hybridize();
            var loss = new SoftmaxCrossEntropyLoss();
            var trainer = new Trainer(net.Collect(), new SGD(0.1, momentum: 0.9));
            var x = Input(32, 1, 28, 28);
            var y = Labels(32, 10);
            for (int step = 0; step < 30; step++)
            {
                NDArray l;
                using (Autograd.Record())
                {
                    l = loss.Forward(net.Forward(x), y);
                    l.Backward();
                }
                trainer.Step(32);
                if (step % 3 == 0) GC.Collect();
            }
            Engine.WaitAll();
        });
        Assert.That(run.Wait(TimeSpan.FromSeconds(120)), Is.True, "hybridized training stopped making progress");
    }

    [Test]
    public void TrainerThroughALocalStoreMatchesTheTrainerAlone()
    {
        // One worker: the store's sum is the gradient itself, so both trainers take the same steps.
        var a = new Dense(3, inUnits: 4);
        var b = new Dense(3, inUnits: 4);
        a.Initialize(new UniformInit(0.5));
        b.Initialize();
        b.Weight.SetData(a.Weight.Data());
        b.Bias!.SetData(a.Bias!.Data());
        using var kv = KVStore.Create("local");
        var ta = new Trainer(a.Collect(), new SGD(0.2, momentum: 0.5));
        var tb = new Trainer(b.Collect(), new SGD(0.2, momentum: 0.5), kv);
        var x = Input(5, 4);
        for (int step = 0; step < 3; step++)
        {
            using (Autograd.Record()) Op.Sum(Op.Square(a.Forward(x))).Backward();
            using (Autograd.Record()) Op.Sum(Op.Square(b.Forward(x))).Backward();
            ta.Step(5);
            tb.Step(5);
            AssertSameBits(a.Weight.Data(), b.Weight.Data(), $"step {step} weight");
        }
    }

    [Test]
    public void ThreadsShareAHybridizedBlock()
    {
        var net = new Mlp();
        net.Initialize(new XavierInit());
        var inputs = Enumerable.Range(0, 4).Select(i => Input(3 + i % 2, 20)).ToArray();
        NDArray[] want;
        using (Autograd.Predict()) want = inputs.Select(x => net.Forward(x)).ToArray();
        net.Hybridize();
        var errors = new System.Collections.Concurrent.ConcurrentBag<string>();
        var threads = Enumerable.Range(0, 4).Select(t => new Thread(() =>
        {
            try
            {
                using var scope = NDArray.Scope();
                using var predict = Autograd.Predict();
                for (int rep = 0; rep < 25; rep++)
                {
                    var got = net.Forward(inputs[t]).ToArray<float>();
                    if (!got.SequenceEqual(want[t].ToArray<float>())) errors.Add($"thread {t} rep {rep}: different values");
                }
            }
            catch (Exception e)
            {
                errors.Add($"thread {t}: {e.Message}");
            }
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        Assert.That(errors, Is.Empty);
        Assert.That(net.CachedGraphs, Is.EqualTo(2), "two batch sizes");
    }

    [Test]
    public void DataParallelOverTwoDevicesKeepsIdenticalCopiesAndMatchesOneDevice()
    {
        var ctxs = new[] { Context.Cpu(0), Context.Cpu(1) };
        foreach (bool hybrid in new[] { false, true })
        {
            var one = new Mlp();
            var two = new Mlp();
            Rand.Seed(6);
            one.Initialize(new XavierInit());
            two.Initialize(new XavierInit(), ctxs);
            var x = Input(8, 20);
            var y = Labels(8, 10);
            using (Autograd.Predict()) one.Forward(x);
            using (Autograd.Predict()) foreach (var part in Split.Load(x, ctxs)) two.Forward(part);
            foreach (var (a, b) in one.Collect().Values.Zip(two.Collect().Values)) b.SetData(a.Data());
            if (hybrid)
            {
                one.Hybridize();
                two.Hybridize();
            }
            var loss = new SoftmaxCrossEntropyLoss();
            var t1 = new Trainer(one.Collect(), new SGD(0.1, momentum: 0.9));
            var t2 = new Trainer(two.Collect(), new SGD(0.1, momentum: 0.9));
            for (int step = 0; step < 3; step++)
            {
                using (Autograd.Record()) loss.Forward(one.Forward(x), y).Backward();
                var xs = Split.Load(x, ctxs);
                var ys = Split.Load(y, ctxs);
                using (Autograd.Record())
                {
                    var losses = xs.Zip(ys).Select(p => loss.Forward(two.Forward(p.First), p.Second)).ToArray();
                    Autograd.Backward(losses);
                }
                t1.Step(8);
                t2.Step(8);
            }
            foreach (var (a, b) in one.Collect().Values.Zip(two.Collect().Values))
            {
                var copies = b.ListData();
                Assert.That(copies.Select(c => c.Context), Is.EqualTo(ctxs));
                AssertSameBits(copies[0], copies[1], $"hybrid={hybrid}: the two devices' copies of {b.Name}");
                var want = a.Data().ToArray<float>();
                var got = copies[0].ToArray<float>();
                for (int i = 0; i < want.Length; i++)
                    Assert.That(got[i], Is.EqualTo(want[i]).Within(1e-5 + 1e-4 * Math.Abs(want[i])), $"hybrid={hybrid} {b.Name}[{i}]");
            }
        }
        Assert.That(() => Split.Load(Input(5, 3), ctxs), Throws.TypeOf<LoomException>().With.Message.Contains("(5,3)").And.Message.Contains("evenly"));
        // MXNet 1.9's split_data: the first batch % devices slices take one row more; with fewer
        // rows than devices the last slices are empty; any batch axis.
        Assert.That(Split.Load(Input(5, 3), ctxs, evenSplit: false).Select(p => p.Shape[0]), Is.EqualTo(new long[] { 3, 2 }));
        var three = new[] { Context.Cpu(0), Context.Cpu(1), Context.Cpu(2) };
        Assert.That(Split.Load(Input(2, 3), three, evenSplit: false).Select(p => p.Shape[0]), Is.EqualTo(new long[] { 1, 1, 0 }));
        var grid = NDArray.FromArray(Enumerable.Range(0, 21).Select(v => (float)v).ToArray(), 3, 7);
        var cols = Split.Load(grid, ctxs, batchAxis: 1, evenSplit: false);
        Assert.That(cols.Select(c => c.Context), Is.EqualTo(ctxs));
        Assert.That(cols[0].ToArray<float>(), Is.EqualTo(new float[] { 0, 1, 2, 3, 7, 8, 9, 10, 14, 15, 16, 17 }));
        Assert.That(cols[1].ToArray<float>(), Is.EqualTo(new float[] { 4, 5, 6, 11, 12, 13, 18, 19, 20 }));
        Assert.That(() => Split.Load(grid, ctxs, batchAxis: 2), Throws.TypeOf<LoomException>().With.Message.Contains("batchAxis 2 is outside data of shape (3,7)"));
        var single = new Mlp();
        single.Initialize(new XavierInit(), ctxs);
        using (Autograd.Predict()) single.Forward(Input(2, 20));
        Assert.That(() => single.Collect().Values.First().Data(), Throws.TypeOf<LoomException>().With.Message.Contains("Data(ctx)"));
    }

    [Test]
    public void AHybridizedBlockCalledTwiceInOneRecordingSumsItsGradients()
    {
        // Two calls of one cached graph feed the same parameters: neither may write its
        // gradient straight into the parameter's buffer; the recording adds them.
        foreach (bool hybrid in new[] { false, true })
        {
            var d = new Dense(3, inUnits: 4);
            d.Initialize(new UniformInit(0.5));
            if (hybrid) d.Hybridize();
            var x1 = Input(2, 4);
            var x2 = Op.MultiplyScalar(Input(2, 4), -2);
            for (int rep = 0; rep < 2; rep++)
            {
                using (Autograd.Record()) Op.Add(Op.Sum(d.Forward(x1)), Op.Sum(d.Forward(x2))).Backward();
                var a = x1.ToArray<float>();
                var b = x2.ToArray<float>();
                var g = d.Weight.Grad().ToArray<float>();
                for (int j = 0; j < 3; j++)
                    for (int k = 0; k < 4; k++)
                    {
                        double want = (double)a[k] + a[4 + k] + b[k] + b[4 + k];
                        Assert.That(g[j * 4 + k], Is.EqualTo(want).Within(1e-5), $"hybrid={hybrid} rep={rep} dW[{j},{k}]");
                    }
                Assert.That(d.Bias!.Grad().ToArray<float>(), Is.All.EqualTo(4f));
            }
        }
    }
}
