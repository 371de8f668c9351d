using System;
using System.Collections.Generic;
using System.Linq;

namespace Loom.Gluon;

/// <summary>
/// A block made from a saved graph and its parameters (MXNet Gluon's <c>SymbolBlock</c>):
/// what <see cref="HybridBlock.Export"/>, <see cref="Module"/> checkpoints or MXNet 1.9
/// wrote. It runs as one planned graph; its parameters can be trained with a
/// <see cref="Trainer"/> like any block's.
/// </summary>
public sealed class SymbolBlock : HybridBlock
{
    private readonly string[] _inputs;
    private readonly HybridBlock.CachedGraph _graph;

    /// <summary>Wraps a symbol: its arguments other than <paramref name="inputNames"/> become
    /// parameters (named as in the symbol), its auxiliary states parameters without gradient.</summary>
    /// <param name="symbol">The graph.</param>
    /// <param name="inputNames">The data inputs, in call order.</param>
    /// <param name="shapes">The parameters' shapes by name (from a parameter file).</param>
    public SymbolBlock(Symbol symbol, string[] inputNames, IReadOnlyDictionary<string, long[]> shapes) : base("")
    {
        ArgumentNullException.ThrowIfNull(symbol);
        ArgumentNullException.ThrowIfNull(inputNames);
        ArgumentNullException.ThrowIfNull(shapes);
        _inputs = inputNames;
        var args = symbol.ListArguments();
        foreach (var n in inputNames)
            if (!args.Contains(n))
                throw new LoomException(LoomStatus.NotFound, $"SymbolBlock: the graph has no input '{n}'; its arguments are: {string.Join(", ", args)}");
        var aux = new HashSet<string>(symbol.ListAuxiliaryStates());
        var declared = new Dictionary<string, Parameter>();
        foreach (var n in args.Concat(aux))
        {
            if (inputNames.Contains(n)) continue;
            if (!shapes.TryGetValue(n, out var shape))
                throw new LoomException(LoomStatus.NotFound, $"SymbolBlock: no value for the graph's parameter '{n}'");
            declared[n] = Param(n, shape, gradReq: aux.Contains(n) ? GradReq.Null : GradReq.Write);
        }
        _graph = new HybridBlock.CachedGraph(symbol, inputNames, declared);
    }

    /// <summary>Loads <c>symbolFile</c> and, when given, a parameter file (with or without
    /// <c>arg:</c>/<c>aux:</c> prefixes) into a block ready to run (MXNet's <c>SymbolBlock.imports</c>).</summary>
    /// <param name="symbolFile">The <c>-symbol.json</c> file.</param>
    /// <param name="inputNames">The data inputs (usually <c>data</c>).</param>
    /// <param name="paramFile">The <c>.params</c> file.</param>
    /// <param name="ctx">The device (the CPU when null).</param>
    /// <returns>The block, its parameters filled from the file.</returns>
    /// <exception cref="LoomException">A file is missing or corrupt, or a parameter is missing or has another shape.</exception>
    public static SymbolBlock Imports(string symbolFile, string[] inputNames, string paramFile, Context? ctx = null)
    {
        var sym = Symbol.Load(symbolFile);
        var loaded = NDArray.Load(paramFile);
        try
        {
            var shapes = new Dictionary<string, long[]>();
            foreach (var (name, arr) in loaded)
                shapes[name.StartsWith("arg:", StringComparison.Ordinal) || name.StartsWith("aux:", StringComparison.Ordinal) ? name[4..] : name] = arr.Shape;
            var block = new SymbolBlock(sym, inputNames, shapes);
            block.Collect().Initialize(new ConstantInit(0), ctx);
            block.Collect().Load(paramFile, ignoreExtra: false);
            return block;
        }
        finally
        {
            foreach (var (_, a) in loaded) a.Dispose();
        }
    }

    /// <inheritdoc/>
    protected override NDArray[] HybridForward(NDArray[] inputs)
    {
        if (inputs.Length != _inputs.Length)
            throw new LoomException(LoomStatus.InvalidArgument, $"SymbolBlock: takes {_inputs.Length} inputs ({string.Join(", ", _inputs)}), got {inputs.Length}");
        return _graph.Invoke(inputs, this);
    }

    internal override bool IsGraph => true;

    /// <inheritdoc/>
    protected override string Describe() => $"SymbolBlock(inputs: {string.Join(", ", _inputs)}; outputs: {string.Join(", ", _graph.Symbol.ListOutputs())})";
}
