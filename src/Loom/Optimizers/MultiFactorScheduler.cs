using System;
using System.Collections.Generic;
using System.Linq;
using Loom.Interop;

namespace Loom;

/// <summary>Multiplies the rate by <paramref name="factor"/> once each listed update count is passed.</summary>
/// <param name="steps">The update counts at which the rate is reduced, increasing.</param>
/// <param name="factor">What the rate is multiplied by at each of them.</param>
public sealed class MultiFactorScheduler(long[] steps, double factor = 1) : LRScheduler
{
    /// <inheritdoc/>
    protected override NDArray Evaluate(double baseLr, long n) =>
        Op.LrSchedule(baseLr, n, Schedule.Multifactor, steps: steps, factor: factor);
}
