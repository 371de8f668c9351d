using System;
using System.Collections.Generic;
using System.Linq;
using Loom.Interop;

namespace Loom;

/// <summary>AdaGrad: steps scaled by the root of the summed squared gradients.</summary>
public sealed class AdaGrad : Optimizer
{
    /// <summary>Added under the square root.</summary>
    public double Epsilon { get; }

    /// <summary>Creates the optimizer.</summary>
    /// <param name="lr">The learning rate.</param>
    /// <param name="epsilon">Added to the denominator for stability.</param>
    /// <param name="wd">Weight decay.</param>
    public AdaGrad(double lr = 0.01, double epsilon = 1e-7, double wd = 0)
    {
        LearningRate = lr;
        Epsilon = epsilon;
        WeightDecay = wd;
    }

    internal override (string Op, List<(string Key, string Value)> Params) Updater()
    {
        var p = CommonUpdaterParams();
        p.AddRange(new (string, string)[] { ("epsilon", Text(Epsilon)) });
        return ("adagrad_update", p);
    }

    /// <inheritdoc/>
    protected override string[] SlotNames => new[] { "history" };

    /// <inheritdoc/>
    protected override void Step(NDArray weight, NDArray grad, NDArray[] s, double lr, double wd, long t) =>
        Op.AdagradUpdate(weight, grad, s[0], lr, wd: wd, rescaleGrad: RescaleGrad, clipGradient: ClipGradient,
            epsilon: Epsilon, @out: new[] { weight, s[0] });
}
