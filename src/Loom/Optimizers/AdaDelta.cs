using System;
using System.Collections.Generic;
using System.Linq;
using Loom.Interop;

namespace Loom;

/// <summary>AdaDelta: needs no learning rate (it scales the step, 1 by default).</summary>
public sealed class AdaDelta : Optimizer
{
    /// <summary>Decay of both running averages.</summary>
    public double Rho { get; }
    /// <summary>Added under the square roots.</summary>
    public double Epsilon { get; }

    /// <summary>Creates the optimizer.</summary>
    /// <param name="rho">Decay of the running means.</param>
    /// <param name="epsilon">Added inside the square roots for stability.</param>
    /// <param name="wd">Weight decay.</param>
    /// <param name="lr">Scales the step (AdaDelta needs none: 1).</param>
    public AdaDelta(double rho = 0.9, double epsilon = 1e-5, double wd = 0, double lr = 1.0)
    {
        LearningRate = lr;
        Rho = rho;
        Epsilon = epsilon;
        WeightDecay = wd;
    }

    internal override (string Op, List<(string Key, string Value)> Params) Updater()
    {
        var p = CommonUpdaterParams();
        p.AddRange(new (string, string)[] { ("rho", Text(Rho)), ("epsilon", Text(Epsilon)) });
        return ("adadelta_update", p);
    }

    /// <inheritdoc/>
    protected override string[] SlotNames => new[] { "acc_g", "acc_delta" };

    /// <inheritdoc/>
    protected override void Step(NDArray weight, NDArray grad, NDArray[] s, double lr, double wd, long t) =>
        Op.AdadeltaUpdate(weight, grad, s[0], s[1], lr: lr, wd: wd, rescaleGrad: RescaleGrad, clipGradient: ClipGradient,
            rho: Rho, epsilon: Epsilon, @out: new[] { weight, s[0], s[1] });
}
