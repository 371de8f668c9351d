using System;
using System.Collections.Generic;
using System.Linq;
using Loom.Interop;

namespace Loom;

/// <summary>Adam with bias correction.</summary>
public sealed class Adam : Optimizer
{
    /// <summary>Decay of the first moment.</summary>
    public double Beta1 { get; }
    /// <summary>Decay of the second moment.</summary>
    public double Beta2 { get; }
    /// <summary>Added to the denominator.</summary>
    public double Epsilon { get; }

    /// <summary>Creates the optimizer.</summary>
    /// <param name="lr">The learning rate.</param>
    /// <param name="beta1">Decay of the mean of the gradients.</param>
    /// <param name="beta2">Decay of the mean of the squared gradients.</param>
    /// <param name="epsilon">Added to the denominator for stability.</param>
    /// <param name="wd">Weight decay.</param>
    public Adam(double lr = 0.001, double beta1 = 0.9, double beta2 = 0.999, double epsilon = 1e-8, double wd = 0)
    {
        LearningRate = lr;
        Beta1 = beta1;
        Beta2 = beta2;
        Epsilon = epsilon;
        WeightDecay = wd;
    }

    internal override (string Op, List<(string Key, string Value)> Params) Updater()
    {
        var p = CommonUpdaterParams();
        p.AddRange(new (string, string)[] { ("beta1", Text(Beta1)), ("beta2", Text(Beta2)), ("epsilon", Text(Epsilon)) });
        return ("adam_update", p);
    }

    /// <inheritdoc/>
    protected override string[] SlotNames => new[] { "mean", "var" };

    /// <inheritdoc/>
    protected override void Step(NDArray weight, NDArray grad, NDArray[] s, double lr, double wd, long t) =>
        Op.AdamUpdate(weight, grad, s[0], s[1], lr, wd: wd, rescaleGrad: RescaleGrad, clipGradient: ClipGradient,
            beta1: Beta1, beta2: Beta2, epsilon: Epsilon, t: t, @out: new[] { weight, s[0], s[1] });
}
