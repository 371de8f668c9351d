using Loom;

namespace Loom.Tests;

// Bucketed sentences and a module with one executor per bucket over shared parameters.
public class BucketingTests
{
    private DisposeScope _scope = null!;
    [SetUp] public void Begin() => _scope = NDArray.Scope();
    [TearDown] public void End() => _scope.Dispose();

    const int V = 8, Batch = 8;

    // An LSTM language model for sentences of length t: embedding, an LSTM cell unrolled t
    // steps (one fused op), a softmax over the vocabulary ignoring the padding label -1.
    private static Symbol LanguageModel(int t, long hidden = 16)
    {
        var data = Symbol.Variable("data");
        var label = Sym.Reshape("label_flat", Symbol.Variable("softmax_label"), shape: new long[] { -1 });
        var embed = Sym.Embedding("embed", V, 8, data);
        var cell = new SequentialRNNCell().Add(new LSTMCell(16, "lstm_"));
        var (outs, _) = cell.Unroll(t, embed, cell.BeginState(Batch), RnnLayout.NTC, mergeOutputs: true);
        var pred = Sym.FullyConnected("pred", hidden == 16 ? V : V + 1, Sym.Reshape("flat", outs[0], shape: new long[] { -1, 16 }));
        return Sym.SoftmaxOutput("softmax", pred, label, useIgnore: true, ignoreLabel: -1, normalization: Normalization.Valid);
    }

    // Counting sentences: each token is the previous one plus 1 (mod V), lengths 2 to 8.
    private static int[][] Sentences(int n, int seed)
    {
        var r = new Random(seed);
        return Enumerable.Range(0, n).Select(_ =>
        {
            int len = r.Next(2, 9), start = r.Next(V);
            return Enumerable.Range(0, len).Select(i => (start + i) % V).ToArray();
        }).ToArray();
    }

    [Test]
    public void IteratorPadsShiftsAndDiscards()
    {
        var s = new[] { new[] { 1, 2, 3 }, new[] { 4, 5 }, new[] { 6, 7, 8, 9, 10, 11 }, new[] { 7 } };
        var it = new BucketSentenceIter(s, batchSize: 1, buckets: new[] { 3, 4 }, invalidLabel: -1);
        Assert.That(it.Discarded, Is.EqualTo(1), "the 6-token sentence is longer than every bucket");
        Assert.That(it.DefaultBucketKey, Is.EqualTo(4));
        var batches = it.Epoch().ToList();
        Assert.That(batches.Select(b => b.BucketKey), Is.EqualTo(new[] { 3, 3, 3 }));
        Assert.That(batches[0].Data.ToArray<float>(), Is.EqualTo(new float[] { 1, 2, 3 }));
        Assert.That(batches[0].Label.ToArray<float>(), Is.EqualTo(new float[] { 2, 3, -1 }));
        Assert.That(batches[1].Data.ToArray<float>(), Is.EqualTo(new float[] { 4, 5, -1 }));
        Assert.That(batches[1].Label.ToArray<float>(), Is.EqualTo(new float[] { 5, -1, -1 }));
        Assert.That(batches[2].Label.ToArray<float>(), Is.EqualTo(new float[] { -1, -1, -1 }));
        var e = Assert.Throws<LoomException>(() => new BucketSentenceIter(s, batchSize: 5))!;
        Assert.That(e.Message, Does.Contain("no sentence length has 5 sentences"));
    }

    [Test]
    public void BucketsShareParametersLearnAndMatchAPlainExecutor()
    {
        var train = new BucketSentenceIter(Sentences(400, 1), Batch, buckets: new[] { 4, 6, 8 }, shuffle: true, seed: 2);
        var valid = new BucketSentenceIter(Sentences(100, 3), Batch, buckets: new[] { 4, 6, 8 });
        Rand.Seed(4);
        using var mod = new BucketingModule(t => LanguageModel(t), train.DefaultBucketKey);
        double first = mod.Fit(train, new Adam(lr: 0.02), 1, init: new UniformInit(0.1), metric: () => new Perplexity(ignoreLabel: -1));
        double last = mod.Fit(train, new Adam(lr: 0.02), 4, metric: () => new Perplexity(ignoreLabel: -1));
        using var ppl = new Perplexity(ignoreLabel: -1);
        double validPpl = mod.Score(valid, ppl);
        Assert.That(mod.BoundBuckets.OrderBy(k => k), Is.EqualTo(new[] { 4, 6, 8 }));
        Assert.That(last, Is.LessThan(first));
        // Every label is the previous token plus one: learnable to a perplexity near 1 (the vocabulary has 8).
        Assert.That(validPpl, Is.LessThan(1.2), $"validation perplexity {validPpl}");

        // One parameter array for every bucket.
        var p4 = mod.ExecutorFor(4).ArgDict["lstm_parameters"];
        var p8 = mod.ExecutorFor(8).ArgDict["lstm_parameters"];
        var saved = p8.ToArray<float>();
        Op.MultiplyScalar(p4, 1.0, @out: p4);
        NDArray.FromArray(saved.Select(x => x * 0 + 0.25f).ToArray(), p4.Shape).CopyTo(p4);
        Assert.That(p8.ToArray<float>()[0], Is.EqualTo(0.25f), "a write through bucket 4's executor shows in bucket 8's");
        NDArray.FromArray(saved, p8.Shape).CopyTo(p8);

        // A bucket-6 batch gives the bits of a plain executor of the same network and parameters.
        var batch = valid.Epoch().First(b => b.BucketKey == 6);
        mod.Forward(batch, isTrain: false);
        var got = mod.Output.ToArray<float>();
        var shapes = new Dictionary<string, long[]> { ["data"] = batch.Data.Shape, ["softmax_label"] = batch.Label.Shape };
        using var plain = LanguageModel(6).SimpleBind(Context.Cpu(), shapes);
        foreach (var (name, arr) in mod.Params) arr.CopyTo(plain.ArgDict[name]);
        batch.Data.CopyTo(plain.ArgDict["data"]);
        batch.Label.CopyTo(plain.ArgDict["softmax_label"]);
        plain.Forward();
        Assert.That(plain.Outputs[0].ToArray<float>(), Is.EqualTo(got));
    }

    [Test]
    public void ABucketWhoseParameterDiffersIsNamed()
    {
        var it = new BucketSentenceIter(Sentences(100, 5), Batch, buckets: new[] { 4, 8 });
        using var mod = new BucketingModule(t => LanguageModel(t, hidden: t == 8 ? 16 : 17), 8);
        mod.Bind(new long[] { Batch, 8 }, new long[] { Batch, 8 });
        var e = Assert.Throws<LoomException>(() => mod.SwitchBucket(4, new long[] { Batch, 4 }, new long[] { Batch, 4 }))!;
        Assert.That(e.Message, Does.Contain("'pred_weight'").And.Contain("(9,16) in bucket 4").And.Contain("(8,16) in the default bucket 8"));
    }
}
