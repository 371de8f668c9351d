using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text.RegularExpressions;

namespace Loom;

/// <summary>The seed notebook's model: <c>new FeedForward(net, ctx).Fit(train, optimizer, epochs, evalData)</c>,
/// a <see cref="Module"/> with MXNet.jl's defaults.</summary>
/// <param name="net">The network, with a <c>data</c> input and a <c>softmax_label</c> label.</param>
/// <param name="context">The device to train on (the CPU when null).</param>
public sealed class FeedForward(Symbol net, Context? context = null) : IDisposable
{
    private FeedForward(Module module) : this(module.Symbol, module.Context) => Module = module;

    /// <summary>A model that trains on several devices (see <see cref="Loom.Module(Symbol, IReadOnlyList{Context}, string[], string[])"/>).</summary>
    /// <param name="net">The network.</param>
    /// <param name="contexts">The devices; each batch is split across them.</param>
    public FeedForward(Symbol net, IReadOnlyList<Context> contexts) : this(net, contexts.Count > 0 ? contexts[0] : null) =>
        Module = new Module(net, contexts);

    /// <summary>The module doing the work.</summary>
    public Module Module { get; } = new Module(net, context: context);

    /// <summary>Trains for <paramref name="epochs"/> epochs, in the argument order of
    /// <see cref="Module.Fit"/>, with MXNet.jl's defaults: weights drawn uniformly from
    /// [-0.01, 0.01] unless <paramref name="init"/> is given.</summary>
    /// <param name="train">The training batches; their data and labels must have the network's dtypes (float32).</param>
    /// <param name="optimizer">The update rule, such as <c>new SGD(lr: 0.1, momentum: 0.9)</c>.</param>
    /// <param name="epochs">Passes over <paramref name="train"/>.</param>
    /// <param name="evalData">Batches scored after each epoch (null for none).</param>
    /// <param name="init">How parameters start (uniform in [-0.01, 0.01] when null).</param>
    /// <param name="callbacks">Called every few batches, such as <see cref="Speedometer"/>.</param>
    /// <param name="metric">Makes the training metric (accuracy when null).</param>
    /// <returns>This model, trained.</returns>
    /// <exception cref="LoomException">Shapes or dtypes of the data do not fit the network.</exception>
    public FeedForward Fit(NDArrayIter train, Optimizer optimizer, int epochs, NDArrayIter? evalData = null,
        Initializer? init = null, IEnumerable<Callback>? callbacks = null, Func<EvalMetric>? metric = null)
    {
        Module.Fit(train, optimizer, epochs, evalData, init, callbacks, metric: metric);
        return this;
    }

    /// <summary>Outputs for every sample.</summary>
    /// <param name="data">The batches to run (labels, if any, are ignored).</param>
    /// <returns>The network's first output, one row per sample.</returns>
    public NDArray Predict(NDArrayIter data) => Module.Predict(data);

    /// <summary>Accuracy on <paramref name="data"/>.</summary>
    /// <param name="data">Batches with labels.</param>
    /// <returns>The fraction of samples whose top prediction is the label.</returns>
    public double Score(NDArrayIter data) => Module.Score(data);

    /// <summary>Saves <c>prefix-symbol.json</c> and <c>prefix-NNNN.params</c> (MXNet's checkpoint format).</summary>
    /// <param name="prefix">The path without suffixes, such as <c>models/mlp</c>.</param>
    /// <param name="epoch">The number written into the parameter file's name.</param>
    public void Save(string prefix, int epoch) => Module.SaveCheckpoint(prefix, epoch);

    /// <summary>A model from a checkpoint written by <see cref="Save"/>, <see cref="Module.SaveCheckpoint"/> or MXNet.</summary>
    /// <param name="prefix">The path without suffixes.</param>
    /// <param name="epoch">The epoch of the parameter file.</param>
    /// <param name="context">The device to run on (the CPU when null).</param>
    /// <returns>The model; it binds on its first <see cref="Predict"/>, <see cref="Score"/> or <see cref="Fit"/>.</returns>
    public static FeedForward Load(string prefix, int epoch, Context? context = null) =>
        new(Module.Load(prefix, epoch, context));

    /// <summary>Releases the module.</summary>
    public void Dispose() => Module.Dispose();
}
