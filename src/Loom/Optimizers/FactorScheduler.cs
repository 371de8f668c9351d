using System;
using System.Collections.Generic;
using System.Linq;
using Loom.Interop;

namespace Loom;

/// <summary>Multiplies the rate by <paramref name="factor"/> every <paramref name="step"/> updates,
/// never going below <paramref name="stopFactorLr"/>.</summary>
public sealed class FactorScheduler(long step, double factor = 1, double stopFactorLr = 1e-8) : LRScheduler
{
    /// <inheritdoc/>
    protected override NDArray Evaluate(double baseLr, long n) =>
        Op.LrSchedule(baseLr, n, Schedule.Factor, step: step, factor: factor, stopFactorLr: stopFactorLr);
}
