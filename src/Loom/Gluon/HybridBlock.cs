using System;
using System.Collections.Generic;
using System.Linq;
using Loom.Interop;

namespace Loom.Gluon;

/// <summary>
/// A block that can run as a planned graph (MXNet Gluon's <c>HybridBlock</c>). Written
/// imperatively in <see cref="HybridForward(NDArray)"/>; after <see cref="Hybridize"/> the next
/// call records its native op calls into a symbol (a trace through the same op registry,
/// not a second implementation of any layer), and later calls with the same input
/// shapes and types run that graph through one bound, memory-planned executor. New
/// shapes or types are traced again (one graph per input signature). C# control flow
/// (<c>if</c>, loops) is traced for the values seen at that call: a branch that depends
/// on the data is frozen into the graph, so keep such blocks imperative.
/// </summary>
public abstract unsafe class HybridBlock : Block
{
    private bool _hybridized;
    private readonly Dictionary<string, CachedGraph> _cache = new();
    private CachedGraph? _last;

    /// <summary>Creates the block (see <see cref="Block(string?, ParameterDict?)"/>).</summary>
    /// <param name="prefix">The block's own prefix (automatic when null).</param>
    /// <param name="params">Parameters to share.</param>
    protected HybridBlock(string? prefix = null, ParameterDict? @params = null) : base(prefix, @params) { }

    // A block that already runs as a graph (SymbolBlock) is never traced.
    internal virtual bool IsGraph => false;

    /// <summary>True after <see cref="Hybridize"/>.</summary>
    public bool IsHybridized => _hybridized;

    /// <summary>Graphs traced so far (one per input signature).</summary>
    public int CachedGraphs
    {
        get
        {
            lock (_cache) return _cache.Count;
        }
    }

    /// <summary>Turns graph execution on (or off) for this block and its hybrid children;
    /// cached graphs are dropped.</summary>
    /// <param name="active">True to run as a graph from the next call.</param>
    public void Hybridize(bool active = true)
    {
        void Walk(Block b)
        {
            if (b is HybridBlock h)
            {
                h._hybridized = active;
                h.ClearCache();
            }
            foreach (var c in b.Children) Walk(c);
        }
        Walk(this);
    }

    private void ClearCache()
    {
        lock (_cache)
        {
            foreach (var c in _cache.Values) c.Dispose();
            _cache.Clear();
            _last = null;
        }
    }

    /// <summary>The computation for one input, written with <see cref="Op"/> calls and child
    /// blocks. Override this or the array form.</summary>
    /// <param name="x">The input.</param>
    /// <returns>The output.</returns>
    protected virtual NDArray HybridForward(NDArray x) => Single(Bridge("HybridForward", () => HybridForward(new[] { x })));

    /// <summary>The computation for several inputs. Override this or the one-input form.</summary>
    /// <param name="inputs">The inputs.</param>
    /// <returns>The outputs.</returns>
    protected virtual NDArray[] HybridForward(NDArray[] inputs)
    {
        CheckOne(inputs);
        return Bridge("HybridForward", () => new[] { HybridForward(inputs[0]) });
    }

    /// <summary>Runs the block: imperatively, or as its cached graph once hybridized.</summary>
    /// <param name="x">The input.</param>
    /// <returns>The output.</returns>
    public sealed override NDArray Forward(NDArray x) => Single(Forward(new[] { x }));

    /// <summary>Runs the block on several inputs (see <see cref="Forward(NDArray)"/>).</summary>
    /// <param name="inputs">The inputs.</param>
    /// <returns>The outputs.</returns>
    public sealed override NDArray[] Forward(params NDArray[] inputs)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        if (inputs.Length == 0) throw new LoomException(LoomStatus.InvalidArgument, $"{Name}: no inputs given");
        for (int i = 0; i < inputs.Length; i++)
            if (inputs[i] is null) throw new LoomException(LoomStatus.InvalidArgument, $"{Name}: input {i} is null");
        if (IsGraph)
        {
            if (Tracing.Active)
                throw new LoomException(LoomStatus.InvalidArgument,
                    $"{Name}: a SymbolBlock is already a graph and cannot be traced inside another hybridized block; call it outside, or keep the outer block imperative");
            return HybridForward(inputs);
        }
        if (Tracing.Active)
        {
            // Inside a block being traced: record this block's ops too, under its prefix.
            using var scope = Tracing.Scope(Prefix);
            return HybridForward(inputs);
        }
        if (!_hybridized) return HybridForward(inputs);
        string key = string.Join("|", inputs.Select(a => NDArray.ShapeString(a.Shape) + a.DType + a.Context));
        CachedGraph? cached;
        lock (_cache)  // calls from several threads share the graphs (the native op is thread-safe)
        {
            if (_cache.TryGetValue(key, out cached)) _last = cached;
        }
        if (cached is not null) return cached.Invoke(inputs, this);
        return Trace(inputs, key);
    }

    private NDArray[] Trace(NDArray[] inputs, string key)
    {
        var declared = Tracing.Begin();
        Symbol? sym = null;
        NDArray[] outs;
        try
        {
            var names = DataNames(inputs.Length);
            for (int i = 0; i < inputs.Length; i++) Tracing.Input(inputs[i], names[i]);
            using (Tracing.Scope(Prefix)) outs = HybridForward(inputs);
            sym = Tracing.End(outs);
        }
        catch
        {
            Tracing.Abort();
            throw;
        }
        var entry = new CachedGraph(sym, DataNames(inputs.Length), declared);
        lock (_cache)
        {
            if (_cache.TryGetValue(key, out var other))  // another thread traced it meanwhile
            {
                entry.Dispose();
                entry = other;
            }
            else
            {
                _cache[key] = entry;
            }
            _last = entry;
        }
        return outs;
    }

    private static string[] DataNames(int n) => n == 1 ? new[] { "data" } : Enumerable.Range(0, n).Select(i => $"data{i}").ToArray();

    /// <summary>The graph of the most recent hybridized call (null before one).</summary>
    public Symbol? CachedSymbol => _last?.Symbol;

    /// <summary>Writes the graph of the most recent hybridized call and the parameters in
    /// Module's checkpoint format: <c>path-symbol.json</c> and <c>path-0000.params</c>
    /// (<c>arg:</c>/<c>aux:</c> names), which <see cref="Module.Load"/>, MXNet 1.9 and
    /// <see cref="SymbolBlock.Imports"/> read. The inputs are named <c>data</c> (or
    /// <c>data0</c>, <c>data1</c>, ...).</summary>
    /// <param name="path">The path prefix.</param>
    /// <param name="epoch">The epoch number in the parameter file's name.</param>
    /// <exception cref="LoomException">The block was not hybridized and run at least once.</exception>
    public void Export(string path, int epoch = 0)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (_last is null)
            throw new LoomException(LoomStatus.InvalidArgument,
                $"{Name}: Export needs a traced graph; call Hybridize() and run one forward first");
        _last.Symbol.Save($"{path}-symbol.json");
        var arrays = new Dictionary<string, NDArray>();
        var aux = new HashSet<string>(_last.Symbol.ListAuxiliaryStates());
        foreach (var (name, p) in _last.Parameters)
            arrays[(aux.Contains(name) ? "aux:" : "arg:") + name] = p.Data(p.Contexts[0]);
        NDArray.Save($"{path}-{epoch:D4}.params", arrays);
    }

    /// <summary>Writes the graph of the most recent hybridized call with the current parameters as
    /// an ONNX model (see <see cref="Onnx.Export"/>), for ONNX Runtime or any other ONNX engine.
    /// The inputs are named as in <see cref="Export"/>: <c>data</c> (or <c>data0</c>, <c>data1</c>, ...).</summary>
    /// <param name="path">The <c>.onnx</c> file to write (replaced whole or not at all).</param>
    /// <param name="inputShapes">The shape of each input, the batch axis included.</param>
    /// <param name="opset">The ONNX opset, 13 to 17.</param>
    /// <exception cref="LoomException">The block was not hybridized and run, the shapes do not fit,
    /// or an op has no ONNX counterpart (named).</exception>
    public void ExportOnnx(string path, IReadOnlyList<long[]> inputShapes, int opset = 13)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(inputShapes);
        if (_last is null)
            throw new LoomException(LoomStatus.InvalidArgument,
                $"{Name}: ExportOnnx needs a traced graph; call Hybridize() and run one forward first");
        var aux = new HashSet<string>(_last.Symbol.ListAuxiliaryStates());
        var argParams = new Dictionary<string, NDArray>();
        var auxParams = new Dictionary<string, NDArray>();
        foreach (var (name, p) in _last.Parameters)
            (aux.Contains(name) ? auxParams : argParams)[name] = p.Data(p.Contexts[0]);
        var names = DataNames(inputShapes.Count);
        var shapes = new Dictionary<string, long[]>();
        for (int i = 0; i < names.Length; i++) shapes[names[i]] = inputShapes[i];
        Onnx.Export(path, _last.Symbol, argParams, auxParams, shapes, opset);
    }

    // One traced graph: its symbol, its native cached op and where each of its inputs
    // (arguments, then auxiliary states) comes from.
    internal sealed class CachedGraph : IDisposable
    {
        internal readonly Symbol Symbol;
        internal readonly List<(string Name, Parameter Param)> Parameters = new();
        private readonly CachedOpHandle _op;
        private readonly int[] _dataIndex;          // -1 for a parameter
        private readonly Parameter?[] _param;
        private readonly int _numOutputs;

        internal CachedGraph(Symbol symbol, string[] dataNames, Dictionary<string, Parameter> declared)
        {
            Symbol = symbol;
            LoomException.Check(LoomNative.loom_cached_op_create(out _op, symbol.Handle));
            LoomException.Check(LoomNative.loom_cached_op_get_counts(out int nin, out _numOutputs, _op));
            var names = symbol.ListArguments().Concat(symbol.ListAuxiliaryStates()).ToArray();
            _dataIndex = new int[names.Length];
            _param = new Parameter?[names.Length];
            for (int i = 0; i < names.Length; i++)
            {
                _dataIndex[i] = Array.IndexOf(dataNames, names[i]);
                if (_dataIndex[i] >= 0) continue;
                if (!declared.TryGetValue(names[i], out var p))
                    throw new LoomException(LoomStatus.Internal, $"hybridize: the graph input '{names[i]}' is neither data nor a parameter");
                _param[i] = p;
                Parameters.Add((names[i], p));
            }
        }

        internal NDArray[] Invoke(NDArray[] inputs, Block owner)
        {
            int n = _dataIndex.Length;
            var arrays = new NDArray[n];
            var ctx = inputs[0].Context;  // the parameters' copies on the data's device
            for (int i = 0; i < n; i++)
            {
                int d = _dataIndex[i];
                if (d >= inputs.Length)
                    throw new LoomException(LoomStatus.InvalidArgument, $"{owner.Name}: the graph takes input {d}, got {inputs.Length} inputs");
                arrays[i] = d >= 0 ? inputs[d] : _param[i]!.Data(ctx);
            }
            nint* ins = stackalloc nint[Math.Max(n, 1)];
            nint* outs = stackalloc nint[Math.Max(_numOutputs, 1)];
            int added = 0;
            try
            {
                for (; added < n; added++) ins[added] = arrays[added].AddRef(owner.Name, "input", added);
                LoomException.Check(LoomNative.loom_cached_op_invoke(_op, n, ins, _numOutputs, outs));
            }
            finally
            {
                for (int i = 0; i < added; i++) arrays[i].Release();
            }
            var r = new NDArray[_numOutputs];
            for (int j = 0; j < _numOutputs; j++) r[j] = new NDArray(new NDArrayHandle(outs[j]));
            return r;
        }

        public void Dispose()
        {
            _op.Dispose();
            Symbol.Dispose();
        }
    }
}
