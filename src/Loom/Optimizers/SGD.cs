using System;
using System.Collections.Generic;
using System.Linq;
using Loom.Interop;

namespace Loom;

/// <summary>SGD with optional (Nesterov) momentum.</summary>
public sealed class SGD : Optimizer
{
    /// <summary>Momentum factor.</summary>
    public double Momentum { get; }
    /// <summary>Nesterov momentum.</summary>
    public bool Nesterov { get; }

    /// <summary>Creates the optimizer.</summary>
    /// <param name="lr">The learning rate (step size).</param>
    /// <param name="momentum">The momentum (0 for plain SGD; 0.9 is usual).</param>
    /// <param name="wd">Weight decay: wd * w is added to the gradient (L2 regularisation).</param>
    /// <param name="nesterov">Use Nesterov's momentum.</param>
    public SGD(double lr = 0.01, double momentum = 0, double wd = 0, bool nesterov = false)
    {
        LearningRate = lr;
        Momentum = momentum;
        WeightDecay = wd;
        Nesterov = nesterov;
    }

    internal override (string Op, List<(string Key, string Value)> Params) Updater()
    {
        var p = CommonUpdaterParams();
        if (Momentum == 0) return ("sgd_update", p);
        p.Add(("momentum", Text(Momentum)));
        p.Add(("nesterov", Nesterov ? "true" : "false"));
        return ("sgd_mom_update", p);
    }

    /// <inheritdoc/>
    protected override string[] SlotNames => Momentum == 0 ? Array.Empty<string>() : new[] { "momentum" };

    /// <inheritdoc/>
    protected override void Step(NDArray weight, NDArray grad, NDArray[] s, double lr, double wd, long t)
    {
        if (Momentum == 0)
            Op.SgdUpdate(weight, grad, lr, wd: wd, rescaleGrad: RescaleGrad, clipGradient: ClipGradient, @out: weight);
        else
            Op.SgdMomUpdate(weight, grad, s[0], lr, wd: wd, rescaleGrad: RescaleGrad,
                clipGradient: ClipGradient, momentum: Momentum, nesterov: Nesterov, @out: new[] { weight, s[0] });
    }
}
