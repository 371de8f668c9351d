using System;
using System.Collections.Generic;
using System.Linq;
using Loom.Interop;

namespace Loom;

/// <summary>A learning-rate schedule, evaluated by the native <c>lr_schedule</c> op.</summary>
public abstract class LRScheduler
{
    private long _cachedUpdate = -1;
    private double _cachedBase = double.NaN, _cachedLr;

    /// <summary>The learning rate after <paramref name="numUpdate"/> updates, starting from <paramref name="baseLr"/>.</summary>
    /// <param name="baseLr">The optimizer's base learning rate.</param>
    /// <param name="numUpdate">Updates done so far.</param>
    /// <returns>The rate for the next update.</returns>
    public double LearningRate(double baseLr, long numUpdate)
    {
        if (numUpdate == _cachedUpdate && baseLr.Equals(_cachedBase)) return _cachedLr;
        using var lr = Evaluate(baseLr, numUpdate);
        (_cachedUpdate, _cachedBase, _cachedLr) = (numUpdate, baseLr, lr.Scalar<double>());
        return _cachedLr;
    }

    /// <summary>Invokes <c>lr_schedule</c> with this schedule's parameters.</summary>
    protected abstract NDArray Evaluate(double baseLr, long numUpdate);
}
