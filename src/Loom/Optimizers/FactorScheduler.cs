using System;
using System.Collections.Generic;
using System.Linq;
using Loom.Interop;

namespace Loom;

/// <summary>Multiplies the rate by <paramref name="factor"/> every <paramref name="step"/> updates,
/// never going below <paramref name="stopFactorLr"/>.</summary>
/// <param name="step">Updates between reductions.</param>
/// <param name="factor">What the rate is multiplied by at each reduction (below 1).</param>
/// <param name="stopFactorLr">The rate never goes below this.</param>
public sealed class FactorScheduler(long step, double factor = 1, double stopFactorLr = 1e-8) : LRScheduler
{
    /// <inheritdoc/>
    protected override NDArray Evaluate(double baseLr, long n) =>
        Op.LrSchedule(baseLr, n, Schedule.Factor, step: step, factor: factor, stopFactorLr: stopFactorLr);
}
