using System;
using System.Collections.Generic;
using System.Linq;
using Loom.Interop;

namespace Loom;

/// <summary>Mocha's <c>Inv(base, gamma, power)</c>: base * (1 + gamma * updates)^-power.</summary>
/// <param name="gamma">The rate is base * (1 + gamma * n)^-power after n updates.</param>
/// <param name="power">See <paramref name="gamma"/>.</param>
public sealed class InvScheduler(double gamma, double power) : LRScheduler
{
    /// <inheritdoc/>
    protected override NDArray Evaluate(double baseLr, long n) =>
        Op.LrSchedule(baseLr, n, Schedule.Inv, gamma: gamma, power: power);
}
