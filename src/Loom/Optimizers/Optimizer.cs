using System;
using System.Collections.Generic;
using System.Linq;
using Loom.Interop;

namespace Loom;

/// <summary>Updates parameters from their gradients, with native update ops. Keeps
/// per-parameter state arrays ("slots") and update counts, a learning-rate schedule,
/// and per-parameter multipliers of the learning rate and weight decay.</summary>
public abstract class Optimizer
{
    private readonly Dictionary<int, NDArray[]> _slots = new();
    private readonly Dictionary<int, long> _counts = new();

    /// <summary>Base learning rate.</summary>
    public double LearningRate { get; set; }
    /// <summary>Weight decay.</summary>
    public double WeightDecay { get; set; }
    private double? _rescaleGrad;
    private double? _moduleRescaleGrad;

    /// <summary>Multiplies gradients first. Left unset, <see cref="Module"/> sets it to
    /// 1 / batch size when it takes the optimizer (1 / (batch size x workers) with a
    /// synchronous distributed store), as MXNet's <c>Module.init_optimizer</c> does, so
    /// gradients summed over a batch become a mean; 1 outside a module.</summary>
    public double RescaleGrad
    {
        get => _rescaleGrad ?? _moduleRescaleGrad ?? 1.0;
        set => _rescaleGrad = value;
    }

    /// <summary>Whether <see cref="RescaleGrad"/> was set by the user (a module leaves it then).</summary>
    public bool RescaleGradIsSet => _rescaleGrad.HasValue;

    // The module's default (1 / batch size), used while the user has set none.
    internal void SetModuleRescaleGrad(double value) => _moduleRescaleGrad = value;
    /// <summary>Clips rescaled gradients to [-c, c]; negative for none.</summary>
    public double ClipGradient { get; set; } = -1;
    /// <summary>Schedule of the learning rate over updates; null keeps it fixed.</summary>
    public LRScheduler? Scheduler { get; set; }
    /// <summary>Per-parameter learning-rate multipliers (by index); 1 where absent.</summary>
    public Dictionary<int, double> LrMult { get; } = new();
    /// <summary>Per-parameter weight-decay multipliers (by index); 1 where absent.</summary>
    public Dictionary<int, double> WdMult { get; } = new();
    /// <summary>The most updates any parameter has had.</summary>
    public long NumUpdate { get; private set; }

    /// <summary>The native update op and its parameters, for a key-value store that
    /// updates the weights where they live (<see cref="KVStore.SetOptimizer"/>).</summary>
    internal abstract (string Op, List<(string Key, string Value)> Params) Updater();

    // The parameters every update op shares.
    internal List<(string Key, string Value)> CommonUpdaterParams()
    {
        static string F(double v) => v.ToString("R", System.Globalization.CultureInfo.InvariantCulture);
        return new List<(string, string)>
        {
            ("lr", F(LearningRate)), ("wd", F(WeightDecay)), ("rescale_grad", F(RescaleGrad)),
            ("clip_gradient", F(ClipGradient)),
        };
    }

    internal static string Text(double v) => v.ToString("R", System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>Names of the per-parameter state arrays, each shaped like the weight.</summary>
    protected abstract string[] SlotNames { get; }

    /// <summary>One step for one parameter: <paramref name="lr"/> and <paramref name="wd"/> already
    /// scheduled and multiplied; <paramref name="t"/> counts this parameter's updates from 1.</summary>
    protected abstract void Step(NDArray weight, NDArray grad, NDArray[] slots, double lr, double wd, long t);

    /// <summary>The learning rate the next update of a parameter without multiplier uses.</summary>
    public double CurrentLearningRate => Scheduler?.LearningRate(LearningRate, NumUpdate) ?? LearningRate;

    /// <summary>Updates parameter <paramref name="index"/> in place.</summary>
    /// <param name="index">The parameter's index (its state and multipliers are kept by it).</param>
    /// <param name="weight">The parameter, updated in place.</param>
    /// <param name="grad">Its gradient.</param>
    public void Update(int index, NDArray weight, NDArray grad)
    {
        ArgumentNullException.ThrowIfNull(weight);
        ArgumentNullException.ThrowIfNull(grad);
        var s = Prepare(index, weight);
        Step(weight, grad, s.Slots, s.Lr, s.Wd, s.T);
        Commit(index, s.T);
    }

    /// <summary>Updates several parameters in place, with the results of
    /// <see cref="Update(int, NDArray, NDArray)"/> called for each in turn. An optimizer may
    /// update them together: <see cref="SGD"/> does, in groups (MXNet's aggregated update).</summary>
    /// <param name="indices">The parameters' indices (distinct).</param>
    /// <param name="weights">The parameters, updated in place.</param>
    /// <param name="grads">Their gradients.</param>
    /// <exception cref="LoomException">The three lists differ in length.</exception>
    public void Update(IReadOnlyList<int> indices, IReadOnlyList<NDArray> weights, IReadOnlyList<NDArray> grads)
    {
        ArgumentNullException.ThrowIfNull(indices);
        ArgumentNullException.ThrowIfNull(weights);
        ArgumentNullException.ThrowIfNull(grads);
        if (weights.Count != indices.Count || grads.Count != indices.Count)
            throw new LoomException(LoomStatus.InvalidArgument,
                $"{GetType().Name}.Update: {indices.Count} indices, {weights.Count} weights and {grads.Count} gradients; give one of each per parameter");
        if (indices.Distinct().Count() != indices.Count)
        {
            // A parameter named twice is updated twice, one step after the other.
            for (int j = 0; j < indices.Count; j++) Update(indices[j], weights[j], grads[j]);
            return;
        }
        var steps = new StepArgs[indices.Count];
        for (int j = 0; j < steps.Length; j++)
        {
            ArgumentNullException.ThrowIfNull(weights[j]);
            ArgumentNullException.ThrowIfNull(grads[j]);
            steps[j] = Prepare(indices[j], weights[j]);
        }
        StepMany(weights, grads, steps);
        for (int j = 0; j < steps.Length; j++) Commit(indices[j], steps[j].T);
    }

    /// <summary>One parameter's step: its state arrays, scheduled and multiplied learning rate
    /// and weight decay, and its update count (from 1).</summary>
    protected readonly record struct StepArgs(NDArray[] Slots, double Lr, double Wd, long T);

    /// <summary>Steps for several parameters; by default <see cref="Step"/> for each in turn.</summary>
    /// <param name="weights">The parameters, updated in place.</param>
    /// <param name="grads">Their gradients.</param>
    /// <param name="steps">Each one's state, learning rate, weight decay and count.</param>
    protected virtual void StepMany(IReadOnlyList<NDArray> weights, IReadOnlyList<NDArray> grads, StepArgs[] steps)
    {
        for (int j = 0; j < steps.Length; j++)
            Step(weights[j], grads[j], steps[j].Slots, steps[j].Lr, steps[j].Wd, steps[j].T);
    }

    private StepArgs Prepare(int index, NDArray weight)
    {
        long t = (_counts.TryGetValue(index, out var c) ? c : 0) + 1;
        double lr = Scheduler?.LearningRate(LearningRate, t - 1) ?? LearningRate;
        if (LrMult.TryGetValue(index, out var lm)) lr *= lm;
        double wd = WeightDecay * (WdMult.TryGetValue(index, out var wm) ? wm : 1.0);
        if (!_slots.TryGetValue(index, out var slots))
            _slots[index] = slots = SlotNames.Select(_ => OwnedZeros(weight)).ToArray();
        return new StepArgs(slots, lr, wd, t);
    }

    private void Commit(int index, long t)
    {
        _counts[index] = t;
        NumUpdate = Math.Max(NumUpdate, t);
    }

    /// <summary>The state arrays and update counts, by name ("slot:index", "t:index"), for checkpoints.</summary>
    /// <returns>Each state array with its name; the arrays are the optimizer's own.</returns>
    public IEnumerable<(string Name, NDArray Array)> States()
    {
        var names = SlotNames;
        foreach (var kv in _slots)
            for (int j = 0; j < names.Length; j++) yield return ($"{names[j]}:{kv.Key}", kv.Value[j]);
        foreach (var kv in _counts) yield return ($"t:{kv.Key}", NDArray.FromArray(new[] { kv.Value }, 1));
    }

    /// <summary>Restores what <see cref="States"/> wrote.</summary>
    /// <param name="states">What <see cref="States"/> returned, read back from a file.</param>
    /// <exception cref="LoomException">A name is not of the form <c>slot:index</c> or <c>t:index</c>.</exception>
    public void LoadStates(IReadOnlyDictionary<string, NDArray> states)
    {
        ArgumentNullException.ThrowIfNull(states);
        foreach (var a in _slots.Values.SelectMany(x => x)) a.Dispose();
        _slots.Clear();
        _counts.Clear();
        NumUpdate = 0;
        var names = SlotNames;
        foreach (var (key, arr) in states)
        {
            int colon = key.LastIndexOf(':');
            if (colon < 0 || !int.TryParse(key.AsSpan(colon + 1), System.Globalization.NumberStyles.None,
                    System.Globalization.CultureInfo.InvariantCulture, out int index))
                throw new LoomException(LoomStatus.Io, $"{GetType().Name} states: entry '{key}' is not 'name:index'");
            string slot = key[..colon];
            if (slot == "t")
            {
                if (arr.Size != 1 || arr.DType != DType.Int64)
                    throw new LoomException(LoomStatus.Io, $"{GetType().Name} states: '{key}' must be one int64, got {arr.DType} {NDArray.ShapeString(arr.Shape)}");
                _counts[index] = arr.ToArray<long>()[0];
                NumUpdate = Math.Max(NumUpdate, _counts[index]);
                continue;
            }
            int j = Array.IndexOf(names, slot);
            if (j < 0)
                throw new LoomException(LoomStatus.Io,
                    $"{GetType().Name} states: entry '{key}' names no state of this optimizer (its states: {string.Join(", ", names.Append("t"))})");
            if (!_slots.TryGetValue(index, out var slots)) _slots[index] = slots = new NDArray[names.Length];
            slots[j] = OwnedCopy(arr);
        }
        foreach (var (index, slots) in _slots)
        {
            int missing = Array.IndexOf(slots, null);
            if (missing >= 0)
                throw new LoomException(LoomStatus.Io, $"{GetType().Name} states: parameter {index} has no '{names[missing]}:{index}' entry");
        }
    }

    /// <summary>A fresh array of zeros owned by the optimizer (not by any scope).</summary>
    protected static NDArray OwnedZeros(NDArray like)
    {
        NDArray z;
        using (var outer = NDArray.Scope()) z = outer.Keep(NDArray.Zeros(like.Shape, like.DType, like.Context));
        DisposeScope.Forget(z);
        return z;
    }

    /// <summary>An owned copy of <paramref name="src"/>.</summary>
    protected static NDArray OwnedCopy(NDArray src)
    {
        var z = OwnedZeros(src);
        src.CopyTo(z);
        return z;
    }
}
