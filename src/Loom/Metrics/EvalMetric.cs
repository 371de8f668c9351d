using System;
using System.Collections.Generic;
using System.Linq;
using Loom.Interop;

namespace Loom;

/// <summary>A metric accumulated natively over batches: each batch adds a
/// [numerator, denominator] pair computed by a native op; the value is their ratio.</summary>
public abstract class EvalMetric : IDisposable
{
    private NDArray _sums;

    /// <summary>Starts at zero.</summary>
    protected EvalMetric(string name)
    {
        Name = name;
        _sums = Fresh();
    }

    /// <summary>The name printed in logs.</summary>
    public string Name { get; }

    private static NDArray Fresh()
    {
        using var scope = NDArray.Scope();
        var z = scope.Keep(NDArray.Zeros(new long[] { 2 }, DType.Float64));
        DisposeScope.Forget(z);
        return z;
    }

    /// <summary>The native op giving this batch's [numerator, denominator].</summary>
    protected abstract NDArray Count(NDArray pred, NDArray label);

    /// <summary>Adds a batch of predictions and labels.</summary>
    /// <param name="pred">The network's output for the batch.</param>
    /// <param name="label">The batch's labels.</param>
    public void Update(NDArray pred, NDArray label)
    {
        ArgumentNullException.ThrowIfNull(pred);
        ArgumentNullException.ThrowIfNull(label);
        using var onDevice = label.Context != pred.Context ? label.CopyTo(pred.Context) : null;
        using var c = Count(pred, onDevice ?? label);
        if (_sums.Context != c.Context)  // the sums live where the batches are counted
        {
            var moved = _sums.CopyTo(c.Context);
            DisposeScope.Forget(moved);
            _sums.Dispose();
            _sums = moved;
        }
        Op.Add(_sums, c, @out: _sums);
    }

    /// <summary>The metric over every batch since the last reset (NaN before any).</summary>
    /// <returns>The accumulated numerator divided by the denominator.</returns>
    public double Get()
    {
        using var scope = NDArray.Scope();
        return Value(Op.Divide(_sums[0], _sums[1])).Scalar<double>();
    }

    /// <summary>The metric from the ratio of the sums (the ratio itself, unless a metric
    /// maps it natively, as Perplexity does with exp).</summary>
    /// <param name="ratio">The accumulated numerator divided by the denominator.</param>
    /// <returns>The metric's value, as an array of one element.</returns>
    protected virtual NDArray Value(NDArray ratio) => ratio;

    /// <summary>Back to zero.</summary>
    public void Reset()
    {
        _sums.Dispose();
        _sums = Fresh();
    }

    /// <summary>Releases the sums.</summary>
    public void Dispose()
    {
        _sums.Dispose();
        GC.SuppressFinalize(this);
    }
}
