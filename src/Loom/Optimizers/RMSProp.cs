using System;
using System.Collections.Generic;
using System.Linq;
using Loom.Interop;

namespace Loom;

/// <summary>RMSProp: steps scaled by a running root mean square of the gradients.</summary>
public sealed class RMSProp : Optimizer
{
    /// <summary>Decay of the squared-gradient average.</summary>
    public double Gamma1 { get; }
    /// <summary>Added under the square root.</summary>
    public double Epsilon { get; }
    /// <summary>Clips updated weights to [-c, c]; negative for none.</summary>
    public double ClipWeights { get; set; } = -1;

    /// <summary>Creates the optimizer.</summary>
    /// <param name="lr">The learning rate.</param>
    /// <param name="gamma1">Decay of the mean of the squared gradients.</param>
    /// <param name="epsilon">Added to the denominator for stability.</param>
    /// <param name="wd">Weight decay.</param>
    public RMSProp(double lr = 0.001, double gamma1 = 0.9, double epsilon = 1e-8, double wd = 0)
    {
        LearningRate = lr;
        Gamma1 = gamma1;
        Epsilon = epsilon;
        WeightDecay = wd;
    }

    internal override (string Op, List<(string Key, string Value)> Params) Updater()
    {
        var p = CommonUpdaterParams();
        p.AddRange(new (string, string)[] { ("gamma1", Text(Gamma1)), ("epsilon", Text(Epsilon)), ("clip_weights", Text(ClipWeights)) });
        return ("rmsprop_update", p);
    }

    /// <inheritdoc/>
    protected override string[] SlotNames => new[] { "n" };

    /// <inheritdoc/>
    protected override void Step(NDArray weight, NDArray grad, NDArray[] s, double lr, double wd, long t) =>
        Op.RmspropUpdate(weight, grad, s[0], lr, wd: wd, rescaleGrad: RescaleGrad, clipGradient: ClipGradient,
            gamma1: Gamma1, epsilon: Epsilon, clipWeights: ClipWeights, @out: new[] { weight, s[0] });
}
