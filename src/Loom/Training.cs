using System;
using System.Collections.Generic;
using System.Linq;
using Loom.Interop;

namespace Loom;

/// <summary>IDX files (MNIST's format), read natively.</summary>
public static class Idx
{
    /// <summary>Reads a plain or gzip-compressed IDX file onto cpu(0).</summary>
    public static NDArray Read(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        LoomException.Check(LoomNative.loom_io_read_idx(out NDArrayHandle h, path));
        return new NDArray(h);
    }
}

/// <summary>CSV files of numbers, read natively.</summary>
public static class Csv
{
    /// <summary>Reads a CSV file (plain or gzip) into a (rows, columns) array on cpu(0),
    /// skipping <paramref name="headerRows"/> lines first and blank lines anywhere.</summary>
    public static NDArray Read(string path, DType dtype = DType.Float32, int headerRows = 0)
    {
        ArgumentNullException.ThrowIfNull(path);
        LoomException.Check(LoomNative.loom_io_read_csv(out NDArrayHandle h, path, (int)dtype, headerRows));
        return new NDArray(h);
    }
}

/// <summary>What an iterator does with the final, incomplete batch.</summary>
public enum LastBatch
{
    /// <summary>Drop it.</summary>
    Discard = LoomConstants.LOOM_LAST_BATCH_DISCARD,
    /// <summary>Fill it up with samples from the start of the epoch's order (the batch's Pad says how many).</summary>
    Pad = LoomConstants.LOOM_LAST_BATCH_PAD,
    /// <summary>Carry its samples over to the start of the next epoch.</summary>
    RollOver = LoomConstants.LOOM_LAST_BATCH_ROLL_OVER,
}

/// <summary>One batch: data, label (null without labels) and how many samples at its end are padding.</summary>
public sealed record DataBatch(NDArray Data, NDArray? Label, int Pad);

/// <summary>Batches of (data, label) from arrays whose first axis is the sample axis,
/// assembled by the native iterator: shuffled with the seeded generator each epoch, with a
/// background thread preparing the next <c>prefetch</c> batches while the caller trains.
/// The arrays must not be written while an epoch runs.</summary>
public sealed class NDArrayIter : IDisposable
{
    private readonly DataiterHandle _handle;
    private readonly long[] _dataShape, _labelShape;

    /// <summary>Samples per batch.</summary>
    public int BatchSize { get; }
    /// <summary>Number of samples.</summary>
    public long Count { get; }

    /// <summary>Iterates over <paramref name="data"/> and <paramref name="label"/> (same first extent; null for none).</summary>
    public NDArrayIter(NDArray data, NDArray? label, int batchSize, bool shuffle = false, LastBatch last = LastBatch.Discard,
        int prefetch = 2)
    {
        ArgumentNullException.ThrowIfNull(data);
        LoomException.Check(LoomNative.loom_dataiter_create(out _handle, data.Handle, label?.Handle ?? new NDArrayHandle(),
            batchSize, shuffle ? 1 : 0, (int)last, prefetch));
        _dataShape = data.Shape.ToArray();
        _dataShape[0] = batchSize;
        _labelShape = label?.Shape.ToArray() ?? Array.Empty<long>();
        if (_labelShape.Length > 0) _labelShape[0] = batchSize;
        BatchSize = batchSize;
        Count = data.Shape[0];
        DataDType = data.DType;
        LabelDType = label?.DType;
    }

    /// <summary>The dtype of the data batches (that of the array given).</summary>
    public DType DataDType { get; }

    /// <summary>The dtype of the label batches, or null without labels.</summary>
    public DType? LabelDType { get; }

    /// <summary>Shape of one data batch.</summary>
    public long[] BatchDataShape => _dataShape.ToArray();

    /// <summary>Shape of one label batch (empty without labels).</summary>
    public long[] BatchLabelShape => _labelShape.ToArray();

    /// <summary>One pass over the data (a new epoch each call). Batches are created in the caller's dispose scope.</summary>
    public IEnumerable<DataBatch> Batches()
    {
        LoomException.Check(LoomNative.loom_dataiter_reset(_handle));
        while (Next() is { } batch) yield return batch;
    }

    private unsafe DataBatch? Next()
    {
        int has;
        long pad;
        LoomException.Check(LoomNative.loom_dataiter_next(&has, out NDArrayHandle d, out NDArrayHandle l, &pad, _handle));
        if (has == 0) return null;
        return new DataBatch(new NDArray(d), l.IsInvalid ? null : new NDArray(l), (int)pad);
    }

    /// <summary>One pass over the data as (data, label) pairs.</summary>
    public IEnumerable<(NDArray Data, NDArray Label)> Epoch()
    {
        foreach (var b in Batches()) yield return (b.Data, b.Label!);
    }

    /// <summary>Stops the prefetch thread and releases the iterator.</summary>
    public void Dispose() => _handle.Dispose();
}

/// <summary>MXNet's CSVIter: batches from CSV files, each row one sample reshaped to a given shape.</summary>
public static class CsvIter
{
    /// <summary>Reads <paramref name="dataCsv"/> (and <paramref name="labelCsv"/>, or zeros without one)
    /// and batches the rows, each reshaped to <paramref name="dataShape"/> / <paramref name="labelShape"/>.</summary>
    public static NDArrayIter Create(string dataCsv, long[] dataShape, int batchSize, string? labelCsv = null,
        long[]? labelShape = null, bool shuffle = false, LastBatch last = LastBatch.Pad, int headerRows = 0)
    {
        ArgumentNullException.ThrowIfNull(dataShape);
        using var scope = NDArray.Scope();
        var raw = Csv.Read(dataCsv, DType.Float32, headerRows);
        long rows = raw.Shape[0];
        var data = Op.Reshape(raw, new[] { rows }.Concat(dataShape).ToArray());
        NDArray label;
        if (labelCsv is null)
            label = NDArray.Zeros(new[] { rows }, DType.Float32);
        else
        {
            var rawLabel = Csv.Read(labelCsv, DType.Float32, headerRows);
            if (rawLabel.Shape[0] != rows)
                throw new LoomException(LoomStatus.Shape,
                    $"CsvIter: '{dataCsv}' has {rows} rows but '{labelCsv}' has {rawLabel.Shape[0]}");
            label = Op.Reshape(rawLabel, new[] { rows }.Concat(labelShape ?? Array.Empty<long>()).ToArray());
        }
        return new NDArrayIter(data, label, batchSize, shuffle, last);
    }
}

/// <summary>A learning-rate schedule, evaluated by the native <c>lr_schedule</c> op.</summary>
public abstract class LRScheduler
{
    private long _cachedUpdate = -1;
    private double _cachedBase = double.NaN, _cachedLr;

    /// <summary>The learning rate after <paramref name="numUpdate"/> updates, starting from <paramref name="baseLr"/>.</summary>
    public double LearningRate(double baseLr, long numUpdate)
    {
        if (numUpdate == _cachedUpdate && baseLr.Equals(_cachedBase)) return _cachedLr;
        using var lr = Evaluate(baseLr, numUpdate);
        (_cachedUpdate, _cachedBase, _cachedLr) = (numUpdate, baseLr, lr.Scalar<double>());
        return _cachedLr;
    }

    /// <summary>Invokes <c>lr_schedule</c> with this schedule's parameters.</summary>
    protected abstract NDArray Evaluate(double baseLr, long numUpdate);
}

/// <summary>Multiplies the rate by <paramref name="factor"/> every <paramref name="step"/> updates,
/// never going below <paramref name="stopFactorLr"/>.</summary>
public sealed class FactorScheduler(long step, double factor = 1, double stopFactorLr = 1e-8) : LRScheduler
{
    /// <inheritdoc/>
    protected override NDArray Evaluate(double baseLr, long n) =>
        Op.LrSchedule(baseLr, n, Schedule.Factor, step: step, factor: factor, stopFactorLr: stopFactorLr);
}

/// <summary>Multiplies the rate by <paramref name="factor"/> once each listed update count is passed.</summary>
public sealed class MultiFactorScheduler(long[] steps, double factor = 1) : LRScheduler
{
    /// <inheritdoc/>
    protected override NDArray Evaluate(double baseLr, long n) =>
        Op.LrSchedule(baseLr, n, Schedule.Multifactor, steps: steps, factor: factor);
}

/// <summary>Mocha's <c>Inv(base, gamma, power)</c>: base * (1 + gamma * updates)^-power.</summary>
public sealed class InvScheduler(double gamma, double power) : LRScheduler
{
    /// <inheritdoc/>
    protected override NDArray Evaluate(double baseLr, long n) =>
        Op.LrSchedule(baseLr, n, Schedule.Inv, gamma: gamma, power: power);
}

/// <summary>Half a cosine from the base rate down to <paramref name="finalLr"/> over <paramref name="maxUpdate"/> updates.</summary>
public sealed class CosineScheduler(long maxUpdate, double finalLr = 0) : LRScheduler
{
    /// <inheritdoc/>
    protected override NDArray Evaluate(double baseLr, long n) =>
        Op.LrSchedule(baseLr, n, Schedule.Cosine, maxUpdate: maxUpdate, finalLr: finalLr);
}

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

    /// <summary>Names of the per-parameter state arrays, each shaped like the weight.</summary>
    protected abstract string[] SlotNames { get; }

    /// <summary>One step for one parameter: <paramref name="lr"/> and <paramref name="wd"/> already
    /// scheduled and multiplied; <paramref name="t"/> counts this parameter's updates from 1.</summary>
    protected abstract void Step(NDArray weight, NDArray grad, NDArray[] slots, double lr, double wd, long t);

    /// <summary>The learning rate the next update of a parameter without multiplier uses.</summary>
    public double CurrentLearningRate => Scheduler?.LearningRate(LearningRate, NumUpdate) ?? LearningRate;

    /// <summary>Updates parameter <paramref name="index"/> in place.</summary>
    public void Update(int index, NDArray weight, NDArray grad)
    {
        ArgumentNullException.ThrowIfNull(weight);
        ArgumentNullException.ThrowIfNull(grad);
        long t = (_counts.TryGetValue(index, out var c) ? c : 0) + 1;
        double lr = Scheduler?.LearningRate(LearningRate, t - 1) ?? LearningRate;
        if (LrMult.TryGetValue(index, out var lm)) lr *= lm;
        double wd = WeightDecay * (WdMult.TryGetValue(index, out var wm) ? wm : 1.0);
        if (!_slots.TryGetValue(index, out var slots))
            _slots[index] = slots = SlotNames.Select(_ => OwnedZeros(weight)).ToArray();
        Step(weight, grad, slots, lr, wd, t);
        _counts[index] = t;
        NumUpdate = Math.Max(NumUpdate, t);
    }

    /// <summary>The state arrays and update counts, by name ("slot:index", "t:index"), for checkpoints.</summary>
    public IEnumerable<(string Name, NDArray Array)> States()
    {
        var names = SlotNames;
        foreach (var kv in _slots)
            for (int j = 0; j < names.Length; j++) yield return ($"{names[j]}:{kv.Key}", kv.Value[j]);
        foreach (var kv in _counts) yield return ($"t:{kv.Key}", NDArray.FromArray(new[] { kv.Value }, 1));
    }

    /// <summary>Restores what <see cref="States"/> wrote.</summary>
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

/// <summary>SGD with optional (Nesterov) momentum.</summary>
public sealed class SGD : Optimizer
{
    /// <summary>Momentum factor.</summary>
    public double Momentum { get; }
    /// <summary>Nesterov momentum.</summary>
    public bool Nesterov { get; }

    /// <summary>Creates the optimizer.</summary>
    public SGD(double lr = 0.01, double momentum = 0, double wd = 0, bool nesterov = false)
    {
        LearningRate = lr;
        Momentum = momentum;
        WeightDecay = wd;
        Nesterov = nesterov;
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
    public Adam(double lr = 0.001, double beta1 = 0.9, double beta2 = 0.999, double epsilon = 1e-8, double wd = 0)
    {
        LearningRate = lr;
        Beta1 = beta1;
        Beta2 = beta2;
        Epsilon = epsilon;
        WeightDecay = wd;
    }

    /// <inheritdoc/>
    protected override string[] SlotNames => new[] { "mean", "var" };

    /// <inheritdoc/>
    protected override void Step(NDArray weight, NDArray grad, NDArray[] s, double lr, double wd, long t) =>
        Op.AdamUpdate(weight, grad, s[0], s[1], lr, wd: wd, rescaleGrad: RescaleGrad, clipGradient: ClipGradient,
            beta1: Beta1, beta2: Beta2, epsilon: Epsilon, t: t, @out: new[] { weight, s[0], s[1] });
}

/// <summary>AdaGrad: steps scaled by the root of the summed squared gradients.</summary>
public sealed class AdaGrad : Optimizer
{
    /// <summary>Added under the square root.</summary>
    public double Epsilon { get; }

    /// <summary>Creates the optimizer.</summary>
    public AdaGrad(double lr = 0.01, double epsilon = 1e-7, double wd = 0)
    {
        LearningRate = lr;
        Epsilon = epsilon;
        WeightDecay = wd;
    }

    /// <inheritdoc/>
    protected override string[] SlotNames => new[] { "history" };

    /// <inheritdoc/>
    protected override void Step(NDArray weight, NDArray grad, NDArray[] s, double lr, double wd, long t) =>
        Op.AdagradUpdate(weight, grad, s[0], lr, wd: wd, rescaleGrad: RescaleGrad, clipGradient: ClipGradient,
            epsilon: Epsilon, @out: new[] { weight, s[0] });
}

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
    public RMSProp(double lr = 0.001, double gamma1 = 0.9, double epsilon = 1e-8, double wd = 0)
    {
        LearningRate = lr;
        Gamma1 = gamma1;
        Epsilon = epsilon;
        WeightDecay = wd;
    }

    /// <inheritdoc/>
    protected override string[] SlotNames => new[] { "n" };

    /// <inheritdoc/>
    protected override void Step(NDArray weight, NDArray grad, NDArray[] s, double lr, double wd, long t) =>
        Op.RmspropUpdate(weight, grad, s[0], lr, wd: wd, rescaleGrad: RescaleGrad, clipGradient: ClipGradient,
            gamma1: Gamma1, epsilon: Epsilon, clipWeights: ClipWeights, @out: new[] { weight, s[0] });
}

/// <summary>AdaDelta: needs no learning rate (it scales the step, 1 by default).</summary>
public sealed class AdaDelta : Optimizer
{
    /// <summary>Decay of both running averages.</summary>
    public double Rho { get; }
    /// <summary>Added under the square roots.</summary>
    public double Epsilon { get; }

    /// <summary>Creates the optimizer.</summary>
    public AdaDelta(double rho = 0.9, double epsilon = 1e-5, double wd = 0, double lr = 1.0)
    {
        LearningRate = lr;
        Rho = rho;
        Epsilon = epsilon;
        WeightDecay = wd;
    }

    /// <inheritdoc/>
    protected override string[] SlotNames => new[] { "acc_g", "acc_delta" };

    /// <inheritdoc/>
    protected override void Step(NDArray weight, NDArray grad, NDArray[] s, double lr, double wd, long t) =>
        Op.AdadeltaUpdate(weight, grad, s[0], s[1], lr: lr, wd: wd, rescaleGrad: RescaleGrad, clipGradient: ClipGradient,
            rho: Rho, epsilon: Epsilon, @out: new[] { weight, s[0], s[1] });
}

/// <summary>A metric accumulated natively over batches: each batch adds a
/// [numerator, denominator] pair computed by a native op; the value is their ratio.</summary>
public abstract class EvalMetric : IDisposable
{
    private NDArray _sums;

    /// <summary>Starts at zero.</summary>
    protected EvalMetric(string name)
    {
        Name = name;
        _sums = Fresh();
    }

    /// <summary>The name printed in logs.</summary>
    public string Name { get; }

    private static NDArray Fresh()
    {
        using var scope = NDArray.Scope();
        var z = scope.Keep(NDArray.Zeros(new long[] { 2 }, DType.Float64));
        DisposeScope.Forget(z);
        return z;
    }

    /// <summary>The native op giving this batch's [numerator, denominator].</summary>
    protected abstract NDArray Count(NDArray pred, NDArray label);

    /// <summary>Adds a batch of predictions and labels.</summary>
    public void Update(NDArray pred, NDArray label)
    {
        ArgumentNullException.ThrowIfNull(pred);
        ArgumentNullException.ThrowIfNull(label);
        using var onDevice = label.Context != pred.Context ? label.CopyTo(pred.Context) : null;
        using var c = Count(pred, onDevice ?? label);
        if (_sums.Context != c.Context)  // the sums live where the batches are counted
        {
            var moved = _sums.CopyTo(c.Context);
            DisposeScope.Forget(moved);
            _sums.Dispose();
            _sums = moved;
        }
        Op.Add(_sums, c, @out: _sums);
    }

    /// <summary>The metric over every batch since the last reset (NaN before any).</summary>
    public double Get()
    {
        using var scope = NDArray.Scope();
        return Op.Divide(_sums[0], _sums[1]).Scalar<double>();
    }

    /// <summary>Back to zero.</summary>
    public void Reset()
    {
        _sums.Dispose();
        _sums = Fresh();
    }

    /// <summary>Releases the sums.</summary>
    public void Dispose()
    {
        _sums.Dispose();
        GC.SuppressFinalize(this);
    }
}

/// <summary>Classification accuracy: the label is among the <paramref name="topK"/> best scores.</summary>
public class Accuracy(int topK = 1) : EvalMetric(topK == 1 ? "accuracy" : $"top_k_accuracy_{topK}")
{
    /// <inheritdoc/>
    protected override NDArray Count(NDArray pred, NDArray label) => Op.AccuracyCount(pred, label, topK: topK);
}

/// <summary>Top-k accuracy.</summary>
public sealed class TopKAccuracy(int topK) : Accuracy(topK);

/// <summary>Mean cross-entropy of predicted probabilities against class labels.</summary>
public sealed class CrossEntropy(double eps = 1e-12) : EvalMetric("cross-entropy")
{
    /// <inheritdoc/>
    protected override NDArray Count(NDArray pred, NDArray label) => Op.CrossEntropyCount(pred, label, eps: eps);
}

/// <summary>Mean squared error over all values.</summary>
public sealed class MSE() : EvalMetric("mse")
{
    /// <inheritdoc/>
    protected override NDArray Count(NDArray pred, NDArray label) => Op.MseCount(pred, label);
}

/// <summary>Mean absolute error over all values.</summary>
public sealed class MAE() : EvalMetric("mae")
{
    /// <inheritdoc/>
    protected override NDArray Count(NDArray pred, NDArray label) => Op.MaeCount(pred, label);
}

/// <summary>Binary F1 score over all batches (label 1 is positive).</summary>
public sealed class F1() : EvalMetric("f1")
{
    /// <inheritdoc/>
    protected override NDArray Count(NDArray pred, NDArray label) => Op.F1Count(pred, label);
}
