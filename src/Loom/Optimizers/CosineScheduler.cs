using System;
using System.Collections.Generic;
using System.Linq;
using Loom.Interop;

namespace Loom;

/// <summary>Half a cosine from the base rate down to <paramref name="finalLr"/> over <paramref name="maxUpdate"/> updates.</summary>
/// <param name="maxUpdate">Updates over which the rate falls.</param>
/// <param name="finalLr">The rate from then on.</param>
public sealed class CosineScheduler(long maxUpdate, double finalLr = 0) : LRScheduler
{
    /// <inheritdoc/>
    protected override NDArray Evaluate(double baseLr, long n) =>
        Op.LrSchedule(baseLr, n, Schedule.Cosine, maxUpdate: maxUpdate, finalLr: finalLr);
}
