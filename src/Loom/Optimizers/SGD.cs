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
        AggregateNum = DefaultAggregation();
    }

    private int _aggregateNum;

    /// <summary>How many weights one update call takes when several are updated together
    /// (<see cref="Optimizer.Update(IReadOnlyList{int}, IReadOnlyList{NDArray}, IReadOnlyList{NDArray})"/>,
    /// as modules and trainers do): MXNet's SGD calls <c>multi_sgd_update</c> or
    /// <c>multi_sgd_mom_update</c> on groups of weights of one dtype and device. The results are
    /// the bits of one update per weight. The default is <c>LOOM_OPTIMIZER_AGGREGATION_SIZE</c>,
    /// else 4 (MXNet's default); 1 updates each weight with its own call. Nesterov momentum is
    /// never aggregated (MXNet's aggregated update has none).</summary>
    /// <exception cref="ArgumentOutOfRangeException">Not in [1, 60].</exception>
    public int AggregateNum
    {
        get => _aggregateNum;
        set
        {
            if (value < 1 || value > MaxAggregation)
                throw new ArgumentOutOfRangeException(nameof(AggregateNum), value,
                    $"SGD.AggregateNum must be in [1, {MaxAggregation}] (the most multi_sgd_update takes)");
            _aggregateNum = value;
        }
    }

    private const int MaxAggregation = 60;

    private static int DefaultAggregation()
    {
        string? text = Environment.GetEnvironmentVariable("LOOM_OPTIMIZER_AGGREGATION_SIZE");
        if (string.IsNullOrEmpty(text)) return 4;
        if (!int.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out int n)
            || n < 1 || n > MaxAggregation)
            throw new LoomException(LoomStatus.InvalidArgument,
                $"LOOM_OPTIMIZER_AGGREGATION_SIZE must be an integer in [1, {MaxAggregation}], got '{text}'");
        return n;
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
    protected override void StepMany(IReadOnlyList<NDArray> weights, IReadOnlyList<NDArray> grads, StepArgs[] steps)
    {
        if (Nesterov || AggregateNum == 1)
        {
            base.StepMany(weights, grads, steps);
            return;
        }
        // Groups of one dtype and device, in order, AggregateNum weights at most each.
        var groups = Enumerable.Range(0, steps.Length).GroupBy(j => (weights[j].DType, weights[j].Context));
        foreach (var group in groups)
            foreach (var chunk in group.Chunk(AggregateNum))
            {
                if (chunk.Length == 1)
                {
                    int j = chunk[0];
                    Step(weights[j], grads[j], steps[j].Slots, steps[j].Lr, steps[j].Wd, steps[j].T);
                    continue;
                }
                var data = new List<NDArray>();
                var outs = new List<NDArray>();
                foreach (int j in chunk)
                {
                    data.Add(weights[j]);
                    data.Add(grads[j]);
                    outs.Add(weights[j]);
                    if (Momentum != 0)
                    {
                        data.Add(steps[j].Slots[0]);
                        outs.Add(steps[j].Slots[0]);
                    }
                }
                var lrs = chunk.Select(j => steps[j].Lr).ToArray();
                var wds = chunk.Select(j => steps[j].Wd).ToArray();
                if (Momentum == 0)
                    Op.MultiSgdUpdate(data.ToArray(), lrs, wds, rescaleGrad: RescaleGrad, clipGradient: ClipGradient,
                        numWeights: chunk.Length, @out: outs.ToArray());
                else
                    Op.MultiSgdMomUpdate(data.ToArray(), lrs, wds, rescaleGrad: RescaleGrad, clipGradient: ClipGradient,
                        numWeights: chunk.Length, momentum: Momentum, @out: outs.ToArray());
            }
    }

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
