using System;
using System.Collections.Generic;
using System.Linq;
using Loom.Interop;

namespace Loom;

/// <summary>Multiplies the rate by <paramref name="factor"/> once each listed update count is passed.</summary>
public sealed class MultiFactorScheduler(long[] steps, double factor = 1) : LRScheduler
{
    /// <inheritdoc/>
    protected override NDArray Evaluate(double baseLr, long n) =>
        Op.LrSchedule(baseLr, n, Schedule.Multifactor, steps: steps, factor: factor);
}
