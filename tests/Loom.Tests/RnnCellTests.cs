using Loom;

namespace Loom.Tests;

// Recurrent cells for symbols: unrolled cells (FullyConnected, SliceChannel, sigmoid, tanh per
// step) against the fused RNN op with the same weights, both ways of naming them.
public class RnnCellTests
{
    private DisposeScope _scope = null!;
    [SetUp] public void Begin() => _scope = NDArray.Scope();
    [TearDown] public void End() => _scope.Dispose();

    const long N = 3, T = 4, C = 6, H = 5;

    private static SequentialRNNCell Stack(string kind, int layers)
    {
        var s = new SequentialRNNCell();
        for (int l = 0; l < layers; l++)
            s.Add(kind switch
            {
                "lstm" => new LSTMCell(H, $"lstm{l}_"),
                "gru" => new GRUCell(H, $"gru{l}_"),
                _ => new RNNCell(H, kind == "relu" ? ActType.Relu : ActType.Tanh, $"rnn{l}_"),
            });
        return s;
    }

    // Binds the unrolled symbol (merged outputs and final states), fills the given arrays, runs
    // forward and backward (head gradients of ones) and returns outputs and the data gradient.
    private static (double[][] Outputs, double[] DataGrad) Run(Symbol net, Dictionary<string, NDArray> values)
    {
        var shapes = new Dictionary<string, long[]> { ["data"] = new[] { N, T, C } };
        foreach (var kv in values) shapes[kv.Key] = kv.Value.Shape;
        var dtypes = shapes.Keys.ToDictionary(k => k, _ => DType.Float64);
        using var ex = net.SimpleBind(Context.Cpu(), shapes, dtypes: dtypes);
        foreach (var kv in values) kv.Value.CopyTo(ex.ArgDict[kv.Key]);
        ex.Forward(isTrain: true);
        ex.Backward(ex.Outputs.Select(o => NDArray.Ones(o.Shape, DType.Float64)).ToArray());
        return (ex.Outputs.Select(o => o.ToArray<double>()).ToArray(), ex.GradDict["data"].ToArray<double>());
    }

    [TestCase("lstm", 1)]
    [TestCase("lstm", 2)]
    [TestCase("gru", 2)]
    [TestCase("relu", 1)]
    [TestCase("tanh", 3)]
    public void UnrolledCellsAndTheFusedOpAgree(string kind, int layers)
    {
        Rand.Seed(3);
        var data = Symbol.Variable("data");
        var unfused = Stack(kind, layers);
        unfused.Fuse = false;
        var (uo, us) = unfused.Unroll((int)T, data, unfused.BeginState(N, DType.Float64), RnnLayout.NTC, mergeOutputs: true);
        var uNet = Symbol.Group(new[] { uo[0] }.Concat(us).ToArray());
        // The cells' weights: i2h (G*H, in), h2h (G*H, H), biases (G*H).
        int g = kind == "lstm" ? 4 : kind == "gru" ? 3 : 1;
        var values = new Dictionary<string, NDArray> { ["data"] = Rand.Uniform(-1, 1, new[] { N, T, C }, DType.Float64) };
        for (int l = 0; l < layers; l++)
        {
            string p = unfused.Cells[l].Prefix;
            values[p + "i2h_weight"] = Rand.Uniform(-0.5, 0.5, new[] { g * H, l == 0 ? C : H }, DType.Float64);
            values[p + "h2h_weight"] = Rand.Uniform(-0.5, 0.5, new[] { g * H, H }, DType.Float64);
            values[p + "i2h_bias"] = Rand.Uniform(-0.5, 0.5, new[] { g * H }, DType.Float64);
            values[p + "h2h_bias"] = Rand.Uniform(-0.5, 0.5, new[] { g * H }, DType.Float64);
        }
        var (uOut, uGrad) = Run(uNet, values);

        var stack = Stack(kind, layers);
        var fusedCell = stack.ToFused()!;
        Assert.That(fusedCell, Is.Not.Null, "plain stacks fuse");
        var (fo, fs) = stack.Unroll((int)T, data, stack.BeginState(N, DType.Float64), RnnLayout.NTC, mergeOutputs: true);
        var fNet = Symbol.Group(new[] { fo[0] }.Concat(fs).ToArray());
        Assert.That(fNet.ListArguments(), Does.Contain(stack.Cells[0].Prefix + "parameters"));
        Assert.That(fNet.ListArguments().Count(a => a.EndsWith("_weight")), Is.EqualTo(0), "one flat vector");
        var packed = fusedCell.PackWeights(values);
        var (fOut, fGrad) = Run(fNet, packed);

        Assert.That(fOut.Length, Is.EqualTo(uOut.Length));
        for (int i = 0; i < uOut.Length; i++)
            Assert.That(fOut[i], Is.EqualTo(uOut[i]).Within(1e-12), $"output {i} (0: the sequence, then the final states)");
        Assert.That(fGrad, Is.EqualTo(uGrad).Within(1e-12), "data gradient");

        // Unpacking gives the cells' arrays back.
        var unpacked = fusedCell.UnpackWeights(packed);
        foreach (var kv in values)
            Assert.That(unpacked[kv.Key].ToArray<double>(), Is.EqualTo(kv.Value.ToArray<double>()), kv.Key);
    }

    [Test]
    public void UnfuseGivesCellsComputingTheSameFunction()
    {
        Rand.Seed(5);
        var data = Symbol.Variable("data");
        var fused = new FusedRNNCell(H, 2, RNNMode.Gru, prefix: "gru_");
        var seq = fused.Unfuse();
        Assert.That(seq.Cells.Select(c => c.Prefix), Is.EqualTo(new[] { "gru_l0_", "gru_l1_" }));
        var (fo, _) = fused.Unroll((int)T, data, fused.BeginState(N, DType.Float64), RnnLayout.NTC, mergeOutputs: true);
        var (uo, _) = seq.Unroll((int)T, data, seq.BeginState(N, DType.Float64), RnnLayout.NTC, mergeOutputs: true);
        long p = 3 * H * (C + H + 2) + 3 * H * (H + H + 2);
        var flat = new Dictionary<string, NDArray>
        {
            ["data"] = Rand.Uniform(-1, 1, new[] { N, T, C }, DType.Float64),
            ["gru_parameters"] = Rand.Uniform(-0.5, 0.5, new[] { p }, DType.Float64),
        };
        var (fOut, _) = Run(fo[0], flat);
        var (uOut, _) = Run(uo[0], fused.UnpackWeights(flat));
        Assert.That(uOut[0], Is.EqualTo(fOut[0]).Within(1e-12));
    }

    [Test]
    public void StepsAndTimeMajorLayoutAndMistakes()
    {
        var cell = new LSTMCell(H);
        var data = Symbol.Variable("data");
        var (outs, states) = cell.Unroll((int)T, data, cell.BeginState(N), RnnLayout.TNC);
        Assert.That(outs.Length, Is.EqualTo((int)T));
        Assert.That(states.Length, Is.EqualTo(2));
        var shapes = Symbol.Group(outs).InferShape(new Dictionary<string, long[]> { ["data"] = new[] { T, N, C } });
        Assert.That(shapes.OutputShapes[0], Is.EqualTo(new[] { N, H }));
        Assert.That(Symbol.Group(outs).ListArguments(),
            Is.EqualTo(new[] { "data", "lstm_i2h_weight", "lstm_i2h_bias", "lstm_h2h_weight", "lstm_h2h_bias" }));
        var e = Assert.Throws<LoomException>(() => cell.Step(data, new[] { data }))!;
        Assert.That(e.Message, Does.Contain("LSTMCell 'lstm_'").And.Contain("2 state(s)"));
        var fe = Assert.Throws<LoomException>(() => new FusedRNNCell(H).Step(data, Array.Empty<Symbol>()))!;
        Assert.That(fe.Message, Does.Contain("Unroll"));
        var mixed = new SequentialRNNCell().Add(new LSTMCell(H, "a_")).Add(new GRUCell(H, "b_"));
        Assert.That(mixed.ToFused(), Is.Null, "an LSTM on a GRU does not fuse");
        var pe = Assert.Throws<LoomException>(() => new FusedRNNCell(H, 1, RNNMode.Lstm, prefix: "x_")
            .UnpackWeights(new Dictionary<string, NDArray> { ["x_parameters"] = NDArray.Zeros(7) }))!;
        Assert.That(pe.Message, Does.Contain("7 values"));
    }
}
