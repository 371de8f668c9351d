using Loom;

namespace Loom.Tests;

// Autograd, optimizers, iterators and metrics through C#, against independent
// references computed here.
public class TrainingTests
{
    private DisposeScope _scope = null!;
    [SetUp] public void Begin() => _scope = NDArray.Scope();
    [TearDown] public void End() => _scope.Dispose();

    [Test]
    public void RecordedComputationGivesGradients()
    {
        var w = NDArray.FromArray(new double[] { 1, -2, 3 }).AttachGrad();
        var x = NDArray.FromArray(new double[] { 0.5, 0.25, 2 });
        NDArray loss;
        using (Autograd.Record()) loss = Op.Sum(w * w * x);
        loss.Backward();
        Assert.That(w.Grad.ToArray<double>(), Is.EqualTo(new double[] { 1.0, -1.0, 12.0 }));
        // Not recorded: no gradient.
        var plain = Op.Sum(w * x);
        var e = Assert.Throws<LoomException>(() => plain.Backward())!;
        Assert.That(e.Message, Does.Contain("was not computed while recording"));
    }

    [Test]
    public void SgdWithMomentumMatchesTheFormula()
    {
        var w = NDArray.FromArray(new double[] { 1, 2 });
        var g = NDArray.FromArray(new double[] { 0.5, -1 });
        var opt = new SGD(lr: 0.1, momentum: 0.9, wd: 0.01);
        double[] wv = { 1, 2 }, mv = { 0, 0 }, gv = { 0.5, -1 };
        for (int step = 0; step < 3; step++)
        {
            opt.Update(0, w, g);
            for (int i = 0; i < 2; i++)
            {
                mv[i] = 0.9 * mv[i] - 0.1 * (gv[i] + 0.01 * wv[i]);
                wv[i] += mv[i];
            }
        }
        var got = w.ToArray<double>();
        for (int i = 0; i < 2; i++) Assert.That(got[i], Is.EqualTo(wv[i]).Within(1e-14));
    }

    [Test]
    public void IteratorShufflesWholeEpochsAndPads()
    {
        var data = Op.Arange(0, 10, dtype: DType.Float32).Reshape(10, 1);
        var label = Op.Arange(0, 10, dtype: DType.Float32);
        Loom.Rand.Seed(3);
        var seen = new List<float>();
        foreach (var (x, y) in new NDArrayIter(data, label, 3, shuffle: true, last: LastBatch.Pad).Epoch())
        {
            Assert.That(x.Shape, Is.EqualTo(new long[] { 3, 1 }));
            Assert.That(x.Reshape(3).ToArray<float>(), Is.EqualTo(y.ToArray<float>()), "data and labels stay paired");
            seen.AddRange(y.ToArray<float>());
        }
        Assert.That(seen.Count, Is.EqualTo(12));
        Assert.That(seen.Take(10).OrderBy(v => v), Is.EqualTo(Enumerable.Range(0, 10).Select(v => (float)v)));
        Assert.That(seen.Take(10), Is.Not.EqualTo(Enumerable.Range(0, 10).Select(v => (float)v)), "shuffled");
        int batches = new NDArrayIter(data, label, 3).Epoch().Count();
        Assert.That(batches, Is.EqualTo(3), "the last partial batch is discarded by default");
        Assert.Throws<LoomException>(() => new NDArrayIter(data, NDArray.Zeros(4), 2));
    }

    [Test]
    public void IteratorRollsOverAndReportsPadding()
    {
        var data = Op.Arange(0, 7, dtype: DType.Float32).Reshape(7, 1);
        using var roll = new NDArrayIter(data, null, 3, last: LastBatch.RollOver);
        float[][] Epoch(NDArrayIter it) => it.Batches().Select(b => b.Data.Reshape(3).ToArray<float>()).ToArray();
        Assert.That(Epoch(roll), Is.EqualTo(new[] { new float[] { 0, 1, 2 }, new float[] { 3, 4, 5 } }));
        Assert.That(Epoch(roll), Is.EqualTo(new[] { new float[] { 6, 0, 1 }, new float[] { 2, 3, 4 } }));
        Assert.That(Epoch(roll)[0], Is.EqualTo(new float[] { 5, 6, 0 }));
        using var pad = new NDArrayIter(data, data, 3, last: LastBatch.Pad, prefetch: 0);
        Assert.That(pad.Batches().Select(b => b.Pad), Is.EqualTo(new[] { 0, 0, 2 }));
        Assert.That(pad.Batches().Last().Label!.Reshape(3).ToArray<float>(), Is.EqualTo(new float[] { 6, 0, 1 }));
    }

    [Test]
    public void CsvIteratorReadsRowsAsSamples()
    {
        string dir = Path.Combine(Path.GetTempPath(), "loom-csv-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            string d = Path.Combine(dir, "data.csv"), l = Path.Combine(dir, "label.csv");
            File.WriteAllText(d, "1,2,3,4\n5,6,7,8\n9,10,11,12\n");
            File.WriteAllText(l, "0\n1\n2\n");
            using var it = CsvIter.Create(d, new long[] { 2, 2 }, 2, l);
            var batches = it.Batches().ToList();
            Assert.That(batches[0].Data.Shape, Is.EqualTo(new long[] { 2, 2, 2 }));
            Assert.That(batches[1].Data.ToArray<float>(), Is.EqualTo(new float[] { 9, 10, 11, 12, 1, 2, 3, 4 }));
            Assert.That(batches[1].Label!.ToArray<float>(), Is.EqualTo(new float[] { 2, 0 }));
            Assert.That(batches[1].Pad, Is.EqualTo(1));
            File.WriteAllText(l, "0\n1\n");
            var e = Assert.Throws<LoomException>(() => CsvIter.Create(d, new long[] { 4 }, 2, l))!;
            Assert.That(e.Message, Does.Contain("has 3 rows but").And.Contain("label.csv' has 2"));
            File.WriteAllText(d, "1,2\n3,x\n");
            e = Assert.Throws<LoomException>(() => CsvIter.Create(d, new long[] { 2 }, 1))!;
            Assert.That(e.Message, Does.Contain("data.csv' line 2 column 2: 'x' is not a number"));
            e = Assert.Throws<LoomException>(() => CsvIter.Create(d.Replace("data", "nope"), new long[] { 2 }, 1))!;
            Assert.That(e.Status, Is.EqualTo(LoomStatus.Io));
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Test]
    public void DLPackSpanViewsShareMemory()
    {
        var a = NDArray.FromArray(new float[] { 1, 2, 3, 4 }, 2, 2);
        using (var view = a.AsSpanView<float>())
        {
            Assert.That(view.Span.ToArray(), Is.EqualTo(new float[] { 1, 2, 3, 4 }));
            view.Span[3] = 40;  // written through the view, seen by Loom
            Assert.That(Op.Sum(a).Scalar<float>(), Is.EqualTo(46));
            Op.MultiplyScalar(a, 2, @out: a);
            a.WaitToRead();
            Assert.That(view.Span[0], Is.EqualTo(2));
        }
        // Export and import: the imported array aliases the original's memory.
        var b = NDArray.FromDLPack(a.ToDLPack());
        Op.AddScalar(a, 1, @out: a);
        Assert.That(b.ToArray<float>(), Is.EqualTo(new float[] { 3, 5, 7, 81 }));
        var e = Assert.Throws<LoomException>(() => a.AsSpanView<double>())!;
        Assert.That(e.Message, Does.Contain("AsSpanView"));
        e = Assert.Throws<LoomException>(() => NDArray.FromDLPack(0))!;
        Assert.That(e.Message, Does.Contain("from_dlpack: the tensor is NULL"));
    }

    [Test]
    public void AccuracyCountsArgmaxMatches()
    {
        using var acc = new Accuracy();
        acc.Update(NDArray.FromArray(new float[] { 0.1f, 0.9f, 0.8f, 0.2f }, 2, 2), NDArray.FromArray(new float[] { 1, 1 }));
        acc.Update(NDArray.FromArray(new float[] { 0.3f, 0.7f }, 1, 2), NDArray.FromArray(new float[] { 1 }));
        Assert.That(acc.Get(), Is.EqualTo(2.0 / 3.0).Within(1e-15));
        acc.Reset();
        acc.Update(NDArray.FromArray(new float[] { 0.3f, 0.7f }, 1, 2), NDArray.FromArray(new float[] { 0 }));
        Assert.That(acc.Get(), Is.EqualTo(0.0));
    }

    [Test]
    public void SmallNetworkLearnsASeparableProblem()
    {
        // Labels from a fixed linear rule over native random inputs; a 2-layer MLP must fit them.
        Loom.Rand.Seed(11);
        var x = Loom.Rand.Uniform(-1, 1, new long[] { 512, 4 });
        var rule = NDArray.FromArray(new float[] { 1, -2, 0.5f, 1 }, 4, 1);
        var y = Op.Reshape(x.Dot(rule) > 0.0, shape: new long[] { -1 });
        var w1 = Op.InitXavier(shape: new long[] { 16, 4 }).AttachGrad();
        var b1 = NDArray.Zeros(16).AttachGrad();
        var w2 = Op.InitXavier(shape: new long[] { 2, 16 }).AttachGrad();
        var b2 = NDArray.Zeros(2).AttachGrad();
        var ps = new[] { w1, b1, w2, b2 };
        var opt = new Adam(lr: 0.05);
        var iter = new NDArrayIter(x, y, 32, shuffle: true);
        using var acc = new Accuracy();
        for (int epoch = 0; epoch < 15; epoch++)
        {
            acc.Reset();
            foreach (var (xb, yb) in iter.Epoch())
            {
                using var s = NDArray.Scope();
                NDArray outp;
                using (Autograd.Record())
                {
                    var h = Op.Activation(Op.FullyConnected(xb, w1, b1, numHidden: 16), actType: ActType.Tanh);
                    outp = Op.SoftmaxOutput(Op.FullyConnected(h, w2, b2, numHidden: 2), yb, normalization: Normalization.Batch);
                }
                outp.Backward();
                for (int i = 0; i < ps.Length; i++) opt.Update(i, ps[i], ps[i].Grad);
                acc.Update(outp, yb);
            }
        }
        Assert.That(acc.Get(), Is.GreaterThan(0.95));
    }

    [Test]
    public void TensorBoardCallbackLogsMetricsHistogramsAndTheGraph()
    {
        Loom.Rand.Seed(5);
        var x = Loom.Rand.Uniform(-1, 1, new long[] { 64, 4 });
        var y = Op.Reshape(x.Dot(NDArray.FromArray(new float[] { 1, -1, 1, 1 }, 4, 1)) > 0.0, shape: new long[] { -1 });
        var net = Symbol.Variable("data").FullyConnected("fc1", numHidden: 8).Activation("r", ActType.Relu)
            .FullyConnected("fc2", numHidden: 2).SoftmaxOutput("softmax");
        var dir = Directory.CreateTempSubdirectory("loom-tb").FullName;
        try
        {
            using var train = new NDArrayIter(x, y, 16);
            using var test = new NDArrayIter(x, y, 16);
            using var tb = new TensorBoard(Path.Combine(dir, "run"), interval: 2);
            using var m = new Module(net, new[] { Context.Cpu() });
            Module.Log = _ => { };
            try { m.Fit(train, new SGD(lr: 0.1), 2, test, new XavierInit(), new Callback[] { tb }); }
            finally { Module.Log = s => Console.WriteLine("INFO: " + s); }
            tb.Dispose();
            var bytes = File.ReadAllBytes(tb.Path);
            // Every TFRecord frame's length is consistent with the file (the CRCs are checked
            // by tests/python/test_tensorboard.py with an independent reader).
            long at = 0, frames = 0;
            while (at < bytes.Length)
            {
                long len = BitConverter.ToInt64(bytes, (int)at);
                at += 12 + len + 4;
                frames++;
            }
            Assert.That(at, Is.EqualTo(bytes.Length));
            var text = System.Text.Encoding.Latin1.GetString(bytes);
            foreach (var tag in new[] { "brain.Event:2", "train/accuracy", "learning_rate", "fc1_weight", "fc1_weight_grad",
                                        "validation/accuracy", "FullyConnected" })
                Assert.That(text, Does.Contain(tag), tag);
            // 2 epochs of 4 batches, every 2 batches: 4 records of each scalar, and 2 validations.
            Assert.That(System.Text.RegularExpressions.Regex.Matches(text, "train/accuracy").Count, Is.EqualTo(4));
            Assert.That(System.Text.RegularExpressions.Regex.Matches(text, "validation/accuracy").Count, Is.EqualTo(2));
            var bad = Assert.Throws<LoomException>(() => new SummaryWriter(Path.Combine(tb.Path, "sub")))!;
            Assert.That(bad.Message, Does.Contain(tb.Path));
        }
        finally { Directory.Delete(dir, true); }
    }

    [Test]
    public void MissingIdxFileIsAnIoError()
    {
        var e = Assert.Throws<LoomException>(() => Idx.Read("/nonexistent/train-images-idx3-ubyte"))!;
        Assert.That(e.Status, Is.EqualTo(LoomStatus.Io));
        Assert.That(e.Message, Does.Contain("/nonexistent/train-images-idx3-ubyte"));
    }
}
