using Loom;
using Loom.Interop;

namespace Loom.Tests;

// Operators through the C# frontend, each against a naive float64 loop.
public class OpsTests
{
    private DisposeScope _scope = null!;
    [SetUp] public void Begin() => _scope = NDArray.Scope();
    [TearDown] public void End() => _scope.Dispose();

    private static double[] RandomValues(int n, int seed, double lo = -1, double hi = 1)
    {
        var r = new System.Random(seed);
        var v = new double[n];
        for (int i = 0; i < n; i++) v[i] = lo + (hi - lo) * r.NextDouble();
        return v;
    }

    [Test]
    public void ArithmeticOperatorsBroadcast()
    {
        var av = RandomValues(6, 1);
        var bv = RandomValues(3, 2, 0.5, 2);
        var a = NDArray.FromArray(av, 2, 3);
        var b = NDArray.FromArray(bv, 3);
        var r = ((a + b) * 2.0 - a / b).ToArray<double>();
        for (int i = 0; i < 2; i++)
            for (int j = 0; j < 3; j++)
            {
                double x = av[i * 3 + j], y = bv[j];
                Assert.That(r[i * 3 + j], Is.EqualTo((x + y) * 2.0 - x / y).Within(1e-12));
            }
        Assert.That((1.0 - a).ToArray<double>()[0], Is.EqualTo(1.0 - av[0]).Within(1e-15));
        Assert.That((-a).ToArray<double>()[5], Is.EqualTo(-av[5]));
        Assert.That((10.0 / b).ToArray<double>()[1], Is.EqualTo(10.0 / bv[1]).Within(1e-12));
    }

    [Test]
    public void ComparisonsGiveOnesAndZeros()
    {
        var a = NDArray.FromArray(new float[] { 1, 2, 3, 4 });
        var b = NDArray.FromArray(new float[] { 4, 2, 1, 5 });
        Assert.That((a < b).ToArray<float>(), Is.EqualTo(new float[] { 1, 0, 0, 1 }));
        Assert.That((a >= 2.0).ToArray<float>(), Is.EqualTo(new float[] { 0, 1, 1, 1 }));
        Assert.That((3.0 > a).ToArray<float>(), Is.EqualTo(new float[] { 1, 1, 0, 0 }));
        Assert.That(a.Eq(b).ToArray<float>(), Is.EqualTo(new float[] { 0, 1, 0, 0 }));
        Assert.That(a.Ne(2.0).ToArray<float>(), Is.EqualTo(new float[] { 1, 0, 1, 1 }));
    }

    [Test]
    public void RnnGruWithoutACellStateMatchesTheRecurrence()
    {
        // GRU, one layer: r, z, n gates; n = tanh(Wx_n x + bx_n + r * (Wh_n h + bh_n)).
        int T = 3, N = 2, I = 2, H = 2, G = 3 * H;
        var x = RandomValues(T * N * I, 11);
        var w = RandomValues(G * (I + H + 2), 12, -0.7, 0.7);
        var h0 = RandomValues(N * H, 13);
        var outs = Op.RNN(NDArray.FromArray(x, T, N, I), NDArray.FromArray(w, w.Length), NDArray.FromArray(h0, 1, N, H),
                          stateCell: null, stateSize: H, numLayers: 1, mode: RNNMode.Gru, stateOutputs: true);
        Assert.That(outs.Length, Is.EqualTo(3), "output, final state and the internal reserve");
        var y = outs[0].ToArray<double>();
        var h = (double[])h0.Clone();
        int wx = 0, wh = G * I, bx = G * (I + H), bh = bx + G;
        static double Sig(double v) => 1 / (1 + Math.Exp(-v));
        for (int t = 0; t < T; t++)
        {
            var hn = new double[N * H];
            for (int n = 0; n < N; n++)
                for (int j = 0; j < H; j++)
                {
                    double Ax(int g) { double v = w[bx + g * H + j]; for (int k = 0; k < I; k++) v += w[wx + (g * H + j) * I + k] * x[(t * N + n) * I + k]; return v; }
                    double Ah(int g) { double v = w[bh + g * H + j]; for (int k = 0; k < H; k++) v += w[wh + (g * H + j) * H + k] * h[n * H + k]; return v; }
                    double r = Sig(Ax(0) + Ah(0)), z = Sig(Ax(1) + Ah(1)), nn = Math.Tanh(Ax(2) + r * Ah(2));
                    hn[n * H + j] = (1 - z) * nn + z * h[n * H + j];
                    Assert.That(y[(t * N + n) * H + j], Is.EqualTo(hn[n * H + j]).Within(1e-12));
                }
            h = hn;
        }
        Assert.That(outs[1].ToArray<double>(), Is.EqualTo(h).Within(1e-12));
        var ex = Assert.Throws<LoomException>(() => Op.RNN(NDArray.FromArray(x, T, N, I), NDArray.FromArray(w[1..], w.Length - 1),
            NDArray.FromArray(h0, 1, N, H), null, H, 1, RNNMode.Gru));
        Assert.That(ex!.Message, Does.Contain("parameters").And.Contain(w.Length.ToString()));
    }

    [Test]
    public void FullyConnectedTakesANullBiasWithNoBias()
    {
        var x = NDArray.FromArray(new double[] { 1, 2, 3, 4 }, 2, 2);
        var w = NDArray.FromArray(new double[] { 1, 0, 0, 1, 1, 1 }, 3, 2);
        var y = Op.FullyConnected(x, w, null, numHidden: 3, noBias: true);
        Assert.That(y.ToArray<double>(), Is.EqualTo(new double[] { 1, 2, 3, 3, 4, 7 }));
    }

    [Test]
    public void DotMatchesNaiveProduct()
    {
        int m = 17, k = 33, n = 9;
        var av = RandomValues(m * k, 3);
        var bv = RandomValues(k * n, 4);
        var c = NDArray.FromArray(av, m, k).Dot(NDArray.FromArray(bv, k, n)).ToArray<double>();
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++)
            {
                double s = 0;
                for (int p = 0; p < k; p++) s += av[i * k + p] * bv[p * n + j];
                Assert.That(c[i * n + j], Is.EqualTo(s).Within(1e-12));
            }
        var ct = Op.Dot(NDArray.FromArray(av, m, k), NDArray.FromArray(av, m, k), transposeB: true);
        Assert.That(ct.Shape, Is.EqualTo(new long[] { m, m }));
    }

    [Test]
    public void ReductionsWithAxesAndKeepdims()
    {
        var v = RandomValues(24, 5);
        var a = NDArray.FromArray(v, 2, 3, 4);
        var s = Op.Sum(a, axis: new long[] { 1 }, keepdims: true);
        Assert.That(s.Shape, Is.EqualTo(new long[] { 2, 1, 4 }));
        var got = s.ToArray<double>();
        for (int i = 0; i < 2; i++)
            for (int k = 0; k < 4; k++)
            {
                double want = 0;
                for (int j = 0; j < 3; j++) want += v[(i * 3 + j) * 4 + k];
                Assert.That(got[i * 4 + k], Is.EqualTo(want).Within(1e-12));
            }
        Assert.That(a.Mean().Scalar<double>(), Is.EqualTo(v.Average()).Within(1e-12));
        Assert.That(a.Max().Scalar<double>(), Is.EqualTo(v.Max()));
        var idx = Op.Argmax(a, axis: -1).ToArray<long>();
        for (int r = 0; r < 6; r++)
        {
            var row = v.Skip(r * 4).Take(4).ToArray();
            Assert.That(idx[r], Is.EqualTo(Array.IndexOf(row, row.Max())));
        }
    }

    [Test]
    public void SoftmaxRowsMatchReference()
    {
        var v = RandomValues(12, 6, -5, 5);
        var p = Op.Softmax(NDArray.FromArray(v, 3, 4)).ToArray<double>();
        var lp = Op.LogSoftmax(NDArray.FromArray(v, 3, 4)).ToArray<double>();
        for (int r = 0; r < 3; r++)
        {
            double mx = v.Skip(r * 4).Take(4).Max();
            double z = v.Skip(r * 4).Take(4).Sum(x => Math.Exp(x - mx));
            for (int c = 0; c < 4; c++)
            {
                Assert.That(p[r * 4 + c], Is.EqualTo(Math.Exp(v[r * 4 + c] - mx) / z).Within(1e-14));
                Assert.That(lp[r * 4 + c], Is.EqualTo(v[r * 4 + c] - mx - Math.Log(z)).Within(1e-13));
            }
        }
    }

    [Test]
    public void ShapeOpsAndCreation()
    {
        var a = NDArray.Arange(6).Reshape(2, 3);
        Assert.That(a.T.ToArray<float>(), Is.EqualTo(new float[] { 0, 3, 1, 4, 2, 5 }));
        Assert.That(Op.Concat(new[] { a, a }, dim: 0).Shape, Is.EqualTo(new long[] { 4, 3 }));
        Assert.That(Op.Slice(a, begin: new long[] { 0, 1 }, end: new long[] { 2, 3 }).ToArray<float>(),
            Is.EqualTo(new float[] { 1, 2, 4, 5 }));
        Assert.That(Op.Reshape(a, shape: new long[] { -1 }).Shape, Is.EqualTo(new long[] { 6 }));
        Assert.That(Op.OneHot(NDArray.FromArray(new int[] { 2, 0 }), depth: 3).ToArray<float>(),
            Is.EqualTo(new float[] { 0, 0, 1, 1, 0, 0 }));
        Assert.That(Op.Clip(a, aMin: 1, aMax: 4).ToArray<float>(), Is.EqualTo(new float[] { 1, 1, 2, 3, 4, 4 }));
        Assert.That(NDArray.Zeros(new long[] { 2 }, DType.Int64).ToArray<long>(), Is.EqualTo(new long[] { 0, 0 }));
        Assert.That(NDArray.Full(7, new long[] { 3 }).ToArray<float>(), Is.EqualTo(new float[] { 7, 7, 7 }));
        Assert.That(a.AsType(DType.Int32).ToArray<int>(), Is.EqualTo(new[] { 0, 1, 2, 3, 4, 5 }));
        var cond = NDArray.FromArray(new float[] { 1, 0, 1 });
        Assert.That(Op.Where(cond, NDArray.Ones(3), NDArray.Zeros(3)).ToArray<float>(), Is.EqualTo(new float[] { 1, 0, 1 }));
    }

    [Test]
    public void ViewsShareMemoryWithTheirBase()
    {
        var a = NDArray.Zeros(4, 3);
        var row = a[1];
        var rows = a[2..];
        Assert.That(row.Shape, Is.EqualTo(new long[] { 3 }));
        Assert.That(rows.Shape, Is.EqualTo(new long[] { 2, 3 }));
        row.CopyFrom<float>(new float[] { 1, 2, 3 });
        rows.CopyFrom<float>(Enumerable.Repeat(9f, 6).ToArray());
        var flat = a.Reshape(-1).ToArray<float>();
        Assert.That(flat, Is.EqualTo(new float[] { 0, 0, 0, 1, 2, 3, 9, 9, 9, 9, 9, 9 }));
        Assert.That(a[^1].ToArray<float>(), Is.EqualTo(new float[] { 9, 9, 9 }));
    }

    [Test]
    public void InPlaceOutputIsWritten()
    {
        var a = NDArray.FromArray(new float[] { 1, 2, 3 });
        var b = NDArray.FromArray(new float[] { 10, 20, 30 });
        var r = Op.Add(a, b, @out: a);
        Assert.That(ReferenceEquals(r, a));
        Assert.That(a.ToArray<float>(), Is.EqualTo(new float[] { 11, 22, 33 }));
    }

    [Test]
    public void RandomIsReproducibleFromASeed()
    {
        Loom.Rand.Seed(7);
        var u1 = Loom.Rand.Uniform(0, 1, new long[] { 1000 }).ToArray<float>();
        var n1 = Loom.Rand.Normal(0, 1, new long[] { 1000 }, DType.Float64).ToArray<double>();
        Loom.Rand.Seed(7);
        var u2 = Loom.Rand.Uniform(0, 1, new long[] { 1000 }).ToArray<float>();
        var n2 = Loom.Rand.Normal(0, 1, new long[] { 1000 }, DType.Float64).ToArray<double>();
        Assert.That(u2, Is.EqualTo(u1));
        Assert.That(n2, Is.EqualTo(n1));
        Assert.That(u1.All(x => x >= 0 && x < 1));
        Assert.That(u1.Average(), Is.EqualTo(0.5).Within(0.05));
    }

    [Test]
    public void SaveAndLoadRoundTrip()
    {
        string path = Path.Combine(Path.GetTempPath(), $"loom_cs_{Environment.ProcessId}.params");
        var w = NDArray.FromArray(new float[] { 1, 2, 3, 4 }, 2, 2);
        var b = NDArray.FromArray(new long[] { 5, 6 });
        NDArray.Save(path, new Dictionary<string, NDArray> { ["arg:w"] = w, ["aux:b"] = b });
        var loaded = NDArray.Load(path);
        Assert.That(loaded.Select(x => x.Name), Is.EqualTo(new[] { "arg:w", "aux:b" }));
        Assert.That(loaded[0].Array.Shape, Is.EqualTo(new long[] { 2, 2 }));
        Assert.That(loaded[0].Array.ToArray<float>(), Is.EqualTo(new float[] { 1, 2, 3, 4 }));
        Assert.That(loaded[1].Array.ToArray<long>(), Is.EqualTo(new long[] { 5, 6 }));
        NDArray.Save(path, new[] { w });
        Assert.That(NDArray.Load(path)[0].Name, Is.EqualTo(""));
        File.Delete(path);
    }

    [Test]
    public void MetadataAndText()
    {
        var a = NDArray.Zeros(new long[] { 2, 3 }, DType.Float64, Context.Cpu(1));
        Assert.That(a.Context, Is.EqualTo(Context.Cpu(1)));
        Assert.That(a.DType, Is.EqualTo(DType.Float64));
        Assert.That(a.Size, Is.EqualTo(6));
        Assert.That(a.NDim, Is.EqualTo(2));
        Assert.That(a.ToString(), Does.StartWith("NDArray(2,3) float64 @cpu(1)"));
        var moved = a.CopyTo(Context.Cpu(0));
        Assert.That(moved.Context, Is.EqualTo(Context.Cpu(0)));
        Assert.That(Engine.CpuWorkers, Is.GreaterThanOrEqualTo(1));
        Assert.That(Engine.Kind, Is.AnyOf("threaded", "naive"));
    }
}
