using System;
using System.Collections.Generic;
using System.Linq;

namespace Loom.Gluon;

/// <summary>
/// Applies an <see cref="Optimizer"/> to a set of parameters after each backward pass
/// (MXNet Gluon's <c>Trainer</c>): <see cref="Step"/> rescales the gradients by
/// 1 / batch size and runs the optimizer's native update op on every parameter that
/// takes a gradient, with its learning-rate and weight-decay multipliers.
/// </summary>
public sealed class Trainer
{
    private readonly Parameter[] _params;

    /// <summary>Creates the trainer.</summary>
    /// <param name="params">The parameters to update (a network's <see cref="Block.Collect"/>).</param>
    /// <param name="optimizer">The optimizer (it keeps the per-parameter state).</param>
    public Trainer(ParameterDict @params, Optimizer optimizer)
    {
        ArgumentNullException.ThrowIfNull(@params);
        ArgumentNullException.ThrowIfNull(optimizer);
        _params = @params.Values.ToArray();
        Optimizer = optimizer;
        for (int i = 0; i < _params.Length; i++)
        {
            if (_params[i].LrMult != 1.0) optimizer.LrMult[i] = _params[i].LrMult;
            if (_params[i].WdMult != 1.0) optimizer.WdMult[i] = _params[i].WdMult;
        }
    }

    /// <summary>The optimizer.</summary>
    public Optimizer Optimizer { get; }

    /// <summary>The learning rate (of the optimizer).</summary>
    public double LearningRate
    {
        get => Optimizer.LearningRate;
        set => Optimizer.LearningRate = value;
    }

    /// <summary>One update of every parameter from its gradient, scaled by 1 / <paramref name="batchSize"/>
    /// (gradients summed over a batch become a mean, as MXNet's <c>trainer.step</c>).</summary>
    /// <param name="batchSize">The number of samples the gradients were summed over.</param>
    /// <exception cref="LoomException">A parameter has not been initialised (no forward ran).</exception>
    public void Step(int batchSize)
    {
        if (batchSize <= 0) throw new LoomException(LoomStatus.InvalidArgument, $"Trainer.Step: batchSize must be positive, got {batchSize}");
        Optimizer.RescaleGrad = 1.0 / batchSize;
        for (int i = 0; i < _params.Length; i++)
        {
            var p = _params[i];
            if (p.GradReq == GradReq.Null) continue;
            if (!p.IsInitialized)
                throw new LoomException(LoomStatus.InvalidArgument,
                    $"Trainer.Step: parameter '{p.Name}' {NDArray.ShapeString(p.Shape)} has not been initialized; run a forward and backward first");
            using var g = p.Grad();
            Optimizer.Update(i, p.Data(), g);
        }
    }
}
