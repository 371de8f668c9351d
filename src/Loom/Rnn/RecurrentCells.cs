using System;
using System.Collections.Generic;
using System.Linq;

namespace Loom;

/// <summary>How an unrolled sequence is laid out: batch first (N, T, C) or time first (T, N, C).</summary>
public enum RnnLayout
{
    /// <summary>(batch, time, channels), MXNet's default for cells.</summary>
    NTC,
    /// <summary>(time, batch, channels), the fused RNN op's own layout.</summary>
    TNC,
}

/// <summary>A recurrent cell for symbols (MXNet's <c>mx.rnn</c> cells): one step maps an input
/// and the states to an output and new states; <see cref="Unroll(int, Symbol, Symbol[], RnnLayout, bool)"/> repeats it over a sequence,
/// sharing the cell's parameters across steps. Every number is computed by native ops; the
/// cell only wires the graph.</summary>
public abstract class RecurrentCell
{
    private int _steps;

    /// <summary>A cell whose parameters and nodes are named with <paramref name="prefix"/>.</summary>
    /// <param name="prefix">The prefix of every name the cell creates (<c>lstm_</c>, ...).</param>
    protected RecurrentCell(string prefix) => Prefix = prefix ?? throw new ArgumentNullException(nameof(prefix));

    /// <summary>The prefix of every parameter and node name.</summary>
    public string Prefix { get; }

    /// <summary>The size of each state per sample (an LSTM has two: h and c).</summary>
    public abstract IReadOnlyList<long> StateSizes { get; }

    /// <summary>One step: the output and the new states from an input (batch, channels) and the states.</summary>
    /// <param name="input">This step's input, (batch, channels).</param>
    /// <param name="states">The states, one per <see cref="StateSizes"/> entry, each (batch, size).</param>
    /// <returns>The step's output and the new states.</returns>
    public abstract (Symbol Output, Symbol[] States) Step(Symbol input, Symbol[] states);

    /// <summary>The name of step t's node <paramref name="what"/> (MXNet's <c>prefix + "t%d_" + what</c>).</summary>
    private protected string StepName(string what) => $"{Prefix}t{_steps}_{what}";

    /// <summary>Advances the step counter (called once per <see cref="Step"/>).</summary>
    private protected void NextStep() => _steps++;

    /// <summary>Forgets how many steps were made, so an unroll names its nodes from t0 again.</summary>
    public virtual void Reset() => _steps = 0;

    /// <summary>Zero states for a batch of <paramref name="batchSize"/> (MXNet's begin_state with zeros).</summary>
    /// <param name="batchSize">The batch size the states are for.</param>
    /// <param name="dtype">The states' dtype (the data's).</param>
    /// <returns>One zeros symbol per state, each (batchSize, size).</returns>
    public virtual Symbol[] BeginState(long batchSize, DType dtype = DType.Float32)
    {
        if (batchSize <= 0) throw new ArgumentOutOfRangeException(nameof(batchSize), batchSize, "must be > 0");
        return StateSizes.Select((h, i) => Sym.Zeros($"{Prefix}begin_state_{i}", shape: new[] { batchSize, h }, dtype: dtype)).ToArray();
    }

    /// <summary>Unrolls the cell over <paramref name="length"/> steps of <paramref name="inputs"/>
    /// (one symbol, split along the time axis of <paramref name="layout"/>).</summary>
    /// <param name="length">The number of steps.</param>
    /// <param name="inputs">The sequence, (N, T, C) or (T, N, C).</param>
    /// <param name="beginState">The initial states (see <see cref="BeginState"/>).</param>
    /// <param name="layout">The layout of inputs and of merged outputs.</param>
    /// <param name="mergeOutputs">Return the outputs as one symbol in <paramref name="layout"/>
    /// (else one symbol per step, each (N, hidden)).</param>
    /// <returns>The outputs and the final states.</returns>
    public virtual (Symbol[] Outputs, Symbol[] States) Unroll(int length, Symbol inputs, Symbol[] beginState,
        RnnLayout layout = RnnLayout.NTC, bool mergeOutputs = false)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        if (length <= 0) throw new ArgumentOutOfRangeException(nameof(length), length, "must be > 0");
        var steps = Sym.SliceChannel($"{Prefix}split", length, inputs, axis: layout == RnnLayout.NTC ? 1 : 0, squeezeAxis: true);
        return Unroll(Enumerable.Range(0, length).Select(i => length == 1 ? steps : steps[i]).ToArray(), beginState, layout, mergeOutputs);
    }

    /// <summary>Unrolls the cell over one input symbol per step.</summary>
    /// <param name="inputs">The steps' inputs, each (N, C).</param>
    /// <param name="beginState">The initial states.</param>
    /// <param name="layout">The layout of merged outputs.</param>
    /// <param name="mergeOutputs">Return the outputs as one symbol.</param>
    /// <returns>The outputs and the final states.</returns>
    public virtual (Symbol[] Outputs, Symbol[] States) Unroll(Symbol[] inputs, Symbol[] beginState,
        RnnLayout layout = RnnLayout.NTC, bool mergeOutputs = false)
    {
        CheckStates(beginState);
        Reset();
        var states = beginState;
        var outputs = new Symbol[inputs.Length];
        for (int t = 0; t < inputs.Length; t++) (outputs[t], states) = Step(inputs[t], states);
        return (mergeOutputs ? new[] { Merge(outputs, layout, Prefix) } : outputs, states);
    }

    /// <summary>Stacks per-step outputs (N, H) into (N, T, H) or (T, N, H).</summary>
    private protected static Symbol Merge(Symbol[] outputs, RnnLayout layout, string prefix)
    {
        // Each (N, H) becomes (N, 1, H); joined on axis 1, then (for TNC) the first two axes swapped.
        var expanded = outputs.Select((o, t) => Sym.Reshape($"{prefix}out{t}_expand", o, shape: new long[] { 0, 1, -1 })).ToArray();
        var merged = expanded.Length == 1 ? expanded[0] : Sym.Concat($"{prefix}merge", expanded, expanded.Length, dim: 1);
        return layout == RnnLayout.NTC ? merged : Sym.SwapAxis($"{prefix}merge_tnc", merged, dim1: 0, dim2: 1);
    }

    private protected void CheckStates(Symbol[] states)
    {
        ArgumentNullException.ThrowIfNull(states);
        if (states.Length != StateSizes.Count)
            throw new LoomException(LoomStatus.InvalidArgument,
                $"{GetType().Name} '{Prefix}': takes {StateSizes.Count} state(s) ({string.Join(", ", StateSizes.Select(s => $"(batch, {s})"))}), got {states.Length}");
    }
}

/// <summary>A cell with i2h and h2h fully connected layers (MXNet's parameter names:
/// prefix + i2h_weight, i2h_bias, h2h_weight, h2h_bias).</summary>
public abstract class GatedCell : RecurrentCell
{
    /// <summary>The cell with <paramref name="numHidden"/> units and <paramref name="gates"/> gates.</summary>
    private protected GatedCell(long numHidden, int gates, string prefix) : base(prefix)
    {
        if (numHidden <= 0) throw new ArgumentOutOfRangeException(nameof(numHidden), numHidden, "must be > 0");
        NumHidden = numHidden;
        Gates = gates;
        I2hWeight = Symbol.Variable(prefix + "i2h_weight");
        I2hBias = Symbol.Variable(prefix + "i2h_bias");
        H2hWeight = Symbol.Variable(prefix + "h2h_weight");
        H2hBias = Symbol.Variable(prefix + "h2h_bias");
    }

    /// <summary>The number of hidden units.</summary>
    public long NumHidden { get; }
    /// <summary>Gates per unit (1, 3 for GRU, 4 for LSTM).</summary>
    public int Gates { get; }
    /// <summary>The input-to-hidden weight (gates * hidden, input), shared by every step.</summary>
    public Symbol I2hWeight { get; }
    /// <summary>The input-to-hidden bias.</summary>
    public Symbol I2hBias { get; }
    /// <summary>The hidden-to-hidden weight (gates * hidden, hidden).</summary>
    public Symbol H2hWeight { get; }
    /// <summary>The hidden-to-hidden bias.</summary>
    public Symbol H2hBias { get; }

    /// <summary>The fused RNN op's mode for this cell.</summary>
    internal abstract RNNMode Mode { get; }

    private protected (Symbol I2h, Symbol H2h) Projections(Symbol input, Symbol h) =>
        (Sym.FullyConnected(StepName("i2h"), Gates * NumHidden, input, I2hWeight, I2hBias),
         Sym.FullyConnected(StepName("h2h"), Gates * NumHidden, h, H2hWeight, H2hBias));
}

/// <summary>A plain recurrent cell: h' = act(W_x x + b_x + W_h h + b_h) (MXNet's RNNCell).</summary>
public sealed class RNNCell : GatedCell
{
    private readonly ActType _activation;

    /// <summary>An RNN cell.</summary>
    /// <param name="numHidden">Hidden units.</param>
    /// <param name="activation">tanh (default) or relu (the ones the fused op has).</param>
    /// <param name="prefix">Name prefix.</param>
    public RNNCell(long numHidden, ActType activation = ActType.Tanh, string prefix = "rnn_") : base(numHidden, 1, prefix)
    {
        if (activation is not (ActType.Tanh or ActType.Relu))
            throw new ArgumentException($"RNNCell: activation must be Tanh or Relu, got {activation}", nameof(activation));
        _activation = activation;
    }

    /// <inheritdoc/>
    public override IReadOnlyList<long> StateSizes => new[] { NumHidden };
    internal override RNNMode Mode => _activation == ActType.Relu ? RNNMode.RnnRelu : RNNMode.RnnTanh;

    /// <inheritdoc/>
    public override (Symbol Output, Symbol[] States) Step(Symbol input, Symbol[] states)
    {
        CheckStates(states);
        var (i2h, h2h) = Projections(input, states[0]);
        var output = Sym.Activation(StepName("out"), i2h + h2h, _activation);
        NextStep();
        return (output, new[] { output });
    }
}

/// <summary>A long short-term memory cell, gates i, f, g, o (MXNet's LSTMCell; the fused op's
/// order). States: h, then c.</summary>
public sealed class LSTMCell : GatedCell
{
    /// <summary>An LSTM cell.</summary>
    /// <param name="numHidden">Hidden units.</param>
    /// <param name="prefix">Name prefix.</param>
    public LSTMCell(long numHidden, string prefix = "lstm_") : base(numHidden, 4, prefix) { }

    /// <inheritdoc/>
    public override IReadOnlyList<long> StateSizes => new[] { NumHidden, NumHidden };
    internal override RNNMode Mode => RNNMode.Lstm;

    /// <inheritdoc/>
    public override (Symbol Output, Symbol[] States) Step(Symbol input, Symbol[] states)
    {
        CheckStates(states);
        var (i2h, h2h) = Projections(input, states[0]);
        var gates = Sym.SliceChannel(StepName("slice"), 4, i2h + h2h);
        var inGate = Sym.Sigmoid(StepName("i"), gates[0]);
        var forgetGate = Sym.Sigmoid(StepName("f"), gates[1]);
        var inTransform = Sym.Tanh(StepName("c"), gates[2]);
        var outGate = Sym.Sigmoid(StepName("o"), gates[3]);
        var nextC = forgetGate * states[1] + inGate * inTransform;
        var nextH = outGate * Sym.Tanh(StepName("tanh_c"), nextC);
        NextStep();
        return (nextH, new[] { nextH, nextC });
    }
}

/// <summary>A gated recurrent unit, gates r, z, n with n = tanh(W_xn x + b_xn + r * (W_hn h + b_hn))
/// (MXNet's GRUCell, the cuDNN form the fused op computes).</summary>
public sealed class GRUCell : GatedCell
{
    /// <summary>A GRU cell.</summary>
    /// <param name="numHidden">Hidden units.</param>
    /// <param name="prefix">Name prefix.</param>
    public GRUCell(long numHidden, string prefix = "gru_") : base(numHidden, 3, prefix) { }

    /// <inheritdoc/>
    public override IReadOnlyList<long> StateSizes => new[] { NumHidden };
    internal override RNNMode Mode => RNNMode.Gru;

    /// <inheritdoc/>
    public override (Symbol Output, Symbol[] States) Step(Symbol input, Symbol[] states)
    {
        CheckStates(states);
        var (i2h, h2h) = Projections(input, states[0]);
        var xi = Sym.SliceChannel(StepName("i2h_slice"), 3, i2h);
        var hh = Sym.SliceChannel(StepName("h2h_slice"), 3, h2h);
        var reset = Sym.Sigmoid(StepName("r"), xi[0] + hh[0]);
        var update = Sym.Sigmoid(StepName("z"), xi[1] + hh[1]);
        var candidate = Sym.Tanh(StepName("h"), xi[2] + reset * hh[2]);
        var next = (1.0 - update) * candidate + update * states[0];
        NextStep();
        return (next, new[] { next });
    }
}

/// <summary>Cells stacked: each cell's output is the next one's input (MXNet's SequentialRNNCell).
/// When the cells stack plainly (one kind, one hidden size), <see cref="Unroll(int, Symbol, Symbol[], RnnLayout, bool)"/>
/// runs them as one fused RNN op over the whole sequence: its parameter vector is
/// <c>{first cell's prefix}parameters</c> (<see cref="FusedRNNCell.UnpackWeights"/> gives the cells' own names).</summary>
public sealed class SequentialRNNCell : RecurrentCell
{
    private readonly List<RecurrentCell> _cells = new();

    /// <summary>An empty stack.</summary>
    /// <param name="prefix">Name prefix of the stack's own nodes.</param>
    public SequentialRNNCell(string prefix = "") : base(prefix) { }

    /// <summary>The cells, bottom first.</summary>
    public IReadOnlyList<RecurrentCell> Cells => _cells;

    /// <summary>Unroll with the fused op when the cells stack plainly (default true).</summary>
    public bool Fuse { get; set; } = true;

    /// <summary>Adds a cell on top.</summary>
    /// <param name="cell">The cell.</param>
    /// <returns>This stack.</returns>
    public SequentialRNNCell Add(RecurrentCell cell)
    {
        _cells.Add(cell ?? throw new ArgumentNullException(nameof(cell)));
        return this;
    }

    /// <inheritdoc/>
    public override IReadOnlyList<long> StateSizes => _cells.SelectMany(c => c.StateSizes).ToArray();

    /// <inheritdoc/>
    public override void Reset()
    {
        base.Reset();
        foreach (var c in _cells) c.Reset();
    }

    /// <inheritdoc/>
    public override Symbol[] BeginState(long batchSize, DType dtype = DType.Float32) =>
        _cells.SelectMany(c => c.BeginState(batchSize, dtype)).ToArray();

    /// <inheritdoc/>
    public override (Symbol Output, Symbol[] States) Step(Symbol input, Symbol[] states)
    {
        CheckStates(states);
        var next = new List<Symbol>();
        int at = 0;
        foreach (var c in _cells)
        {
            int n = c.StateSizes.Count;
            (input, var s) = c.Step(input, states[at..(at + n)]);
            next.AddRange(s);
            at += n;
        }
        return (input, next.ToArray());
    }

    /// <summary>The fused equivalent of this stack, or null when the cells do not stack plainly.</summary>
    /// <returns>A fused cell named after the first cell, or null.</returns>
    public FusedRNNCell? ToFused()
    {
        if (_cells.Count == 0 || _cells.Any(c => c is not GatedCell)) return null;
        var g = _cells.Cast<GatedCell>().ToArray();
        if (g.Any(c => c.GetType() != g[0].GetType() || c.Mode != g[0].Mode || c.NumHidden != g[0].NumHidden)) return null;
        return new FusedRNNCell(g[0].NumHidden, g.Length, g[0].Mode, prefix: g[0].Prefix, cellPrefixes: g.Select(c => c.Prefix).ToArray());
    }

    /// <inheritdoc/>
    public override (Symbol[] Outputs, Symbol[] States) Unroll(int length, Symbol inputs, Symbol[] beginState,
        RnnLayout layout = RnnLayout.NTC, bool mergeOutputs = false)
    {
        CheckStates(beginState);
        if (Fuse && ToFused() is { } fused) return fused.Unroll(length, inputs, beginState, layout, mergeOutputs);
        return base.Unroll(length, inputs, beginState, layout, mergeOutputs);
    }
}

/// <summary>Layers of one recurrence computed by the fused RNN op over the whole sequence
/// (MXNet's FusedRNNCell). Its one parameter is the flat vector <c>{prefix}parameters</c> in the
/// op's layout. States, each (batch, hidden): per layer and direction h (and c, for LSTM), as a
/// stack of cells orders them.</summary>
public sealed class FusedRNNCell : RecurrentCell
{
    private readonly string[] _cellPrefixes;

    /// <summary>A fused stack of recurrent layers.</summary>
    /// <param name="numHidden">Hidden units of every layer.</param>
    /// <param name="numLayers">Layers.</param>
    /// <param name="mode">rnn_relu, rnn_tanh, lstm or gru.</param>
    /// <param name="bidirectional">Run each layer both ways.</param>
    /// <param name="dropout">Dropout between layers, in training.</param>
    /// <param name="prefix">Name prefix.</param>
    /// <param name="cellPrefixes">The prefixes of the equivalent unfused cells (default prefix + l0_, l1_, ...).</param>
    public FusedRNNCell(long numHidden, int numLayers = 1, RNNMode mode = RNNMode.Lstm, bool bidirectional = false,
        double dropout = 0, string prefix = "rnn_", string[]? cellPrefixes = null) : base(prefix)
    {
        if (numHidden <= 0) throw new ArgumentOutOfRangeException(nameof(numHidden), numHidden, "must be > 0");
        if (numLayers <= 0) throw new ArgumentOutOfRangeException(nameof(numLayers), numLayers, "must be > 0");
        NumHidden = numHidden;
        NumLayers = numLayers;
        Mode = mode;
        Bidirectional = bidirectional;
        Dropout = dropout;
        Parameters = Symbol.Variable(prefix + "parameters");
        _cellPrefixes = cellPrefixes ?? Enumerable.Range(0, numLayers).Select(l => $"{prefix}l{l}_").ToArray();
        if (_cellPrefixes.Length != numLayers)
            throw new ArgumentException($"FusedRNNCell: {_cellPrefixes.Length} cell prefixes for {numLayers} layers", nameof(cellPrefixes));
    }

    /// <summary>Hidden units per layer.</summary>
    public long NumHidden { get; }
    /// <summary>Layers.</summary>
    public int NumLayers { get; }
    /// <summary>The recurrence.</summary>
    public RNNMode Mode { get; }
    /// <summary>Both directions.</summary>
    public bool Bidirectional { get; }
    /// <summary>Dropout between layers.</summary>
    public double Dropout { get; }
    /// <summary>The flat parameter vector.</summary>
    public Symbol Parameters { get; }

    private int Directions => Bidirectional ? 2 : 1;
    private int Gates => Mode switch { RNNMode.Lstm => 4, RNNMode.Gru => 3, _ => 1 };

    /// <inheritdoc/>
    public override IReadOnlyList<long> StateSizes =>
        Enumerable.Repeat(NumHidden, NumLayers * Directions * (Mode == RNNMode.Lstm ? 2 : 1)).ToArray();

    /// <summary>The fused op runs whole sequences only: this always throws.</summary>
    /// <param name="input">Unused.</param>
    /// <param name="states">Unused.</param>
    /// <returns>Nothing; it throws.</returns>
    /// <exception cref="LoomException">Always: call <see cref="Unroll(int, Symbol, Symbol[], RnnLayout, bool)"/>.</exception>
    public override (Symbol Output, Symbol[] States) Step(Symbol input, Symbol[] states) =>
        throw new LoomException(LoomStatus.InvalidArgument,
            $"FusedRNNCell '{Prefix}': runs whole sequences; call Unroll (or use the unfused cells for single steps)");

    /// <inheritdoc/>
    public override (Symbol[] Outputs, Symbol[] States) Unroll(int length, Symbol inputs, Symbol[] beginState,
        RnnLayout layout = RnnLayout.NTC, bool mergeOutputs = false)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        CheckStates(beginState);
        bool lstm = Mode == RNNMode.Lstm;
        int n = NumLayers * Directions;
        // The op's states are (layers * directions, batch, hidden): the cells' (batch, hidden)
        // states stacked; a stack's states come per layer (h, c), the op's h first, then c.
        Symbol Stack(IEnumerable<Symbol> s, string what) =>
            Merge(s.ToArray(), RnnLayout.TNC, Prefix + what + "_");
        var hs = lstm ? beginState.Where((_, i) => i % 2 == 0) : beginState;
        var cs = lstm ? beginState.Where((_, i) => i % 2 == 1) : null;
        var data = layout == RnnLayout.NTC ? Sym.SwapAxis($"{Prefix}swap_in", inputs, dim1: 0, dim2: 1) : inputs;
        var rnn = Sym.RNN($"{Prefix}rnn", NumHidden, NumLayers, Mode, data, Parameters, Stack(hs, "begin_h"),
            lstm ? Stack(cs!, "begin_c") : null, bidirectional: Bidirectional, p: Dropout, stateOutputs: true);
        var seq = layout == RnnLayout.NTC ? Sym.SwapAxis($"{Prefix}swap_out", rnn[0], dim1: 0, dim2: 1) : rnn[0];
        Symbol[] Unstack(Symbol s, string what)
        {
            var parts = Sym.SliceChannel($"{Prefix}{what}", n, s, axis: 0, squeezeAxis: true);
            return n == 1 ? new[] { parts } : Enumerable.Range(0, n).Select(i => parts[i]).ToArray();
        }
        var hOut = Unstack(rnn[1], "final_h");
        var states = lstm ? hOut.Zip(Unstack(rnn[2], "final_c"), (h, c) => new[] { h, c }).SelectMany(x => x).ToArray() : hOut;
        if (mergeOutputs) return (new[] { seq }, states);
        var steps = Sym.SliceChannel($"{Prefix}out_split", length, seq, axis: layout == RnnLayout.NTC ? 1 : 0, squeezeAxis: true);
        return (length == 1 ? new[] { steps } : Enumerable.Range(0, length).Select(t => steps[t]).ToArray(), states);
    }

    /// <summary>The same layers as separate cells (MXNet's unfuse), named with the cell prefixes.</summary>
    /// <returns>A stack of cells computing the same function.</returns>
    public SequentialRNNCell Unfuse()
    {
        if (Bidirectional)
            throw new LoomException(LoomStatus.InvalidArgument, $"FusedRNNCell '{Prefix}': a bidirectional stack has no unfused form here");
        var seq = new SequentialRNNCell(Prefix) { Fuse = false };
        foreach (var p in _cellPrefixes)
            seq.Add(Mode switch
            {
                RNNMode.Lstm => new LSTMCell(NumHidden, p),
                RNNMode.Gru => new GRUCell(NumHidden, p),
                RNNMode.RnnRelu => new RNNCell(NumHidden, ActType.Relu, p),
                _ => new RNNCell(NumHidden, ActType.Tanh, p),
            });
        return seq;
    }

    // (name, rows, columns) of each piece of the flat vector, in the op's order.
    private IEnumerable<(string Name, long Rows, long Cols)> Pieces(long inputSize)
    {
        long gh = Gates * NumHidden;
        string Dir(int l, int d) => Directions == 1 ? _cellPrefixes[l] : $"{_cellPrefixes[l]}{(d == 0 ? "l" : "r")}_";
        for (int l = 0; l < NumLayers; l++)
            for (int d = 0; d < Directions; d++)
            {
                yield return (Dir(l, d) + "i2h_weight", gh, l == 0 ? inputSize : Directions * NumHidden);
                yield return (Dir(l, d) + "h2h_weight", gh, NumHidden);
            }
        for (int l = 0; l < NumLayers; l++)
            for (int d = 0; d < Directions; d++)
            {
                yield return (Dir(l, d) + "i2h_bias", gh, 0);
                yield return (Dir(l, d) + "h2h_bias", gh, 0);
            }
    }

    private long InputSize(long total)
    {
        long gh = Gates * NumHidden, d = Directions;
        // total = d*gh*(I + H + 2) + (L-1)*d*gh*(d*H + H + 2), solved for I.
        long rest = total - (NumLayers - 1) * d * gh * (d * NumHidden + NumHidden + 2);
        if (rest <= 0 || rest % (d * gh) != 0 || rest / (d * gh) - NumHidden - 2 <= 0)
            throw new LoomException(LoomStatus.Shape,
                $"FusedRNNCell '{Prefix}': a parameter vector of {total} values does not fit {NumLayers} layer(s) of {NumHidden} ({Mode})");
        return rest / (d * gh) - NumHidden - 2;
    }

    /// <summary>Splits <c>{prefix}parameters</c> into the unfused cells' weights and biases
    /// (MXNet's unpack_weights); other entries pass through. The pieces are copies made by native ops.</summary>
    /// <param name="args">Parameters by name.</param>
    /// <returns>The parameters with the flat vector replaced by the cells' arrays.</returns>
    public Dictionary<string, NDArray> UnpackWeights(IReadOnlyDictionary<string, NDArray> args)
    {
        var r = args.Where(kv => kv.Key != Prefix + "parameters").ToDictionary(kv => kv.Key, kv => kv.Value);
        if (!args.TryGetValue(Prefix + "parameters", out var flat))
            throw new LoomException(LoomStatus.NotFound, $"FusedRNNCell.UnpackWeights: no '{Prefix}parameters' among {string.Join(", ", args.Keys)}");
        long at = 0;
        foreach (var (name, rows, cols) in Pieces(InputSize(flat.Shape[0])))
        {
            long size = cols == 0 ? rows : rows * cols;
            var piece = Op.Slice(flat, new[] { at }, new[] { at + size });
            r[name] = cols == 0 ? piece : piece.Reshape(rows, cols);
            at += size;
        }
        return r;
    }

    /// <summary>Joins the unfused cells' weights and biases into <c>{prefix}parameters</c> (MXNet's
    /// pack_weights), by native reshape and concat; other entries pass through.</summary>
    /// <param name="args">Parameters by name.</param>
    /// <returns>The parameters with the cells' arrays replaced by the flat vector.</returns>
    public Dictionary<string, NDArray> PackWeights(IReadOnlyDictionary<string, NDArray> args)
    {
        string first = Pieces(1).First().Name;
        if (!args.TryGetValue(first, out var w0))
            throw new LoomException(LoomStatus.NotFound, $"FusedRNNCell.PackWeights: no '{first}' among {string.Join(", ", args.Keys)}");
        var pieces = Pieces(w0.Shape[^1]).ToArray();
        var parts = new List<NDArray>();
        foreach (var (name, rows, cols) in pieces)
        {
            if (!args.TryGetValue(name, out var a))
                throw new LoomException(LoomStatus.NotFound, $"FusedRNNCell.PackWeights: no '{name}' among {string.Join(", ", args.Keys)}");
            var want = cols == 0 ? new[] { rows } : new[] { rows, cols };
            if (!a.Shape.SequenceEqual(want))
                throw new LoomException(LoomStatus.Shape, $"FusedRNNCell.PackWeights: '{name}' has shape ({string.Join(",", a.Shape)}), expected ({string.Join(",", want)})");
            parts.Add(a.Reshape(-1));
        }
        var names = pieces.Select(p => p.Name).ToHashSet();
        var r = args.Where(kv => !names.Contains(kv.Key)).ToDictionary(kv => kv.Key, kv => kv.Value);
        r[Prefix + "parameters"] = Op.Concat(parts.ToArray(), numArgs: parts.Count, dim: 0);
        return r;
    }
}
