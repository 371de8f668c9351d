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

/// <summary>What an iterator does with the final, incomplete batch.</summary>
public enum LastBatch
{
    /// <summary>Drop it.</summary>
    Discard,
    /// <summary>Fill it up with samples from the start of the epoch's order.</summary>
    Pad,
}

/// <summary>Batches of (data, label) from arrays whose first axis is the sample axis;
/// shuffles with the native seeded generator each epoch.</summary>
public sealed class NDArrayIter
{
    private readonly NDArray _data, _label;

    /// <summary>Samples per batch.</summary>
    public int BatchSize { get; }
    /// <summary>Number of samples.</summary>
    public long Count { get; }
    private readonly bool _shuffle;
    private readonly LastBatch _last;

    /// <summary>Iterates over <paramref name="data"/> and <paramref name="label"/> (same first extent).</summary>
    public NDArrayIter(NDArray data, NDArray label, int batchSize, bool shuffle = false, LastBatch last = LastBatch.Discard)
    {
        long n = data.Shape[0];
        if (label.Shape.Length == 0 || label.Shape[0] != n)
            throw new LoomException(LoomStatus.Shape,
                $"NDArrayIter: data has {n} samples (shape {NDArray.ShapeString(data.Shape)}) but label has shape {NDArray.ShapeString(label.Shape)}");
        if (batchSize <= 0)
            throw new LoomException(LoomStatus.InvalidArgument, $"NDArrayIter: batch size must be positive, got {batchSize}");
        _data = data;
        _label = label;
        BatchSize = batchSize;
        Count = n;
        _shuffle = shuffle;
        _last = last;
    }

    /// <summary>Shape of one data batch.</summary>
    public long[] BatchDataShape
    {
        get
        {
            var s = _data.Shape.ToArray();
            s[0] = BatchSize;
            return s;
        }
    }

    /// <summary>Shape of one label batch.</summary>
    public long[] BatchLabelShape
    {
        get
        {
            var s = _label.Shape.ToArray();
            s[0] = BatchSize;
            return s;
        }
    }

    /// <summary>One pass over the data. Batches are created in the caller's dispose scope.</summary>
    public IEnumerable<(NDArray Data, NDArray Label)> Epoch()
    {
        NDArray? order = _shuffle ? Op.RandomPermutation(Count) : null;
        try
        {
            for (long start = 0; start < Count; start += BatchSize)
            {
                long end = Math.Min(start + BatchSize, Count);
                if (end - start < BatchSize && _last == LastBatch.Discard) yield break;
                if (order is null && end - start == BatchSize)
                {
                    yield return (_data.Slice(start, end), _label.Slice(start, end));
                    continue;
                }
                NDArray idx = order?.Slice(start, end) ?? Op.Arange(start, end, dtype: DType.Int64);
                if (end - start < BatchSize)
                {
                    using var head = order?.Slice(0, BatchSize - (end - start)) ?? Op.Arange(0, BatchSize - (end - start), dtype: DType.Int64);
                    idx = Op.Concat(new[] { idx, head }, dim: 0);
                }
                yield return (Op.Take(_data, idx), Op.Take(_label, idx));
            }
        }
        finally
        {
            order?.Dispose();
        }
    }
}

/// <summary>Updates parameters from their gradients, with native update ops.</summary>
public abstract class Optimizer
{
    /// <summary>Learning rate.</summary>
    public double LearningRate { get; set; }
    /// <summary>Weight decay.</summary>
    public double WeightDecay { get; set; }
    /// <summary>Multiplies gradients first.</summary>
    public double RescaleGrad { get; set; } = 1.0;
    /// <summary>Clips rescaled gradients to [-c, c]; negative for none.</summary>
    public double ClipGradient { get; set; } = -1;

    /// <summary>Updates parameter <paramref name="index"/> in place.</summary>
    public abstract void Update(int index, NDArray weight, NDArray grad);

    /// <summary>The optimizer's per-parameter state arrays, by name (for checkpoints).</summary>
    public virtual IEnumerable<(string Name, NDArray Array)> States() => Array.Empty<(string, NDArray)>();

    /// <summary>Restores state arrays written by <see cref="States"/>.</summary>
    public virtual void LoadStates(IReadOnlyDictionary<string, NDArray> states) { }

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
    private readonly Dictionary<int, NDArray> _mom = new();
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
    public override void Update(int index, NDArray weight, NDArray grad)
    {
        if (Momentum == 0)
        {
            Op.SgdUpdate(weight, grad, LearningRate, wd: WeightDecay, rescaleGrad: RescaleGrad, clipGradient: ClipGradient, @out: weight);
            return;
        }
        if (!_mom.TryGetValue(index, out var mom)) _mom[index] = mom = OwnedZeros(weight);
        Op.SgdMomUpdate(weight, grad, mom, LearningRate, wd: WeightDecay, rescaleGrad: RescaleGrad,
            clipGradient: ClipGradient, momentum: Momentum, nesterov: Nesterov, @out: new[] { weight, mom });
    }

    /// <inheritdoc/>
    public override IEnumerable<(string Name, NDArray Array)> States()
    {
        foreach (var kv in _mom) yield return ($"momentum:{kv.Key}", kv.Value);
    }

    /// <inheritdoc/>
    public override void LoadStates(IReadOnlyDictionary<string, NDArray> states)
    {
        foreach (var kv in _mom) kv.Value.Dispose();
        _mom.Clear();
        foreach (var kv in states)
            if (kv.Key.StartsWith("momentum:", StringComparison.Ordinal))
                _mom[int.Parse(kv.Key.AsSpan(9), System.Globalization.CultureInfo.InvariantCulture)] = OwnedCopy(kv.Value);
    }
}

/// <summary>Adam with bias correction.</summary>
public sealed class Adam : Optimizer
{
    private readonly Dictionary<int, (NDArray Mean, NDArray Var, long T)> _state = new();
    /// <summary>Decay rates and epsilon.</summary>
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
    public override void Update(int index, NDArray weight, NDArray grad)
    {
        if (!_state.TryGetValue(index, out var s))
        {
            s = (OwnedZeros(weight), OwnedZeros(weight), 0);
        }
        s.T++;
        _state[index] = s;
        Op.AdamUpdate(weight, grad, s.Mean, s.Var, LearningRate, wd: WeightDecay, rescaleGrad: RescaleGrad,
            clipGradient: ClipGradient, beta1: Beta1, beta2: Beta2, epsilon: Epsilon, t: s.T,
            @out: new[] { weight, s.Mean, s.Var });
    }

    /// <inheritdoc/>
    public override IEnumerable<(string Name, NDArray Array)> States()
    {
        foreach (var kv in _state)
        {
            yield return ($"mean:{kv.Key}", kv.Value.Mean);
            yield return ($"var:{kv.Key}", kv.Value.Var);
            yield return ($"t:{kv.Key}", NDArray.FromArray(new long[] { kv.Value.T }, 1));
        }
    }

    /// <inheritdoc/>
    public override void LoadStates(IReadOnlyDictionary<string, NDArray> states)
    {
        _state.Clear();
        foreach (var kv in states)
        {
            if (!kv.Key.StartsWith("mean:", StringComparison.Ordinal)) continue;
            string i = kv.Key.Substring(5);
            if (!states.TryGetValue("var:" + i, out var v) || !states.TryGetValue("t:" + i, out var t))
                throw new LoomException(LoomStatus.Io, $"Adam states: 'mean:{i}' has no matching 'var:{i}' and 't:{i}'");
            _state[int.Parse(i, System.Globalization.CultureInfo.InvariantCulture)] =
                (OwnedCopy(kv.Value), OwnedCopy(v), t.ToArray<long>()[0]);
        }
    }
}

/// <summary>Classification accuracy, counted natively over batches.</summary>
public sealed class Accuracy : IDisposable
{
    private NDArray _counts;

    /// <summary>Starts at zero.</summary>
    public Accuracy()
    {
        _counts = Fresh();
    }

    private static NDArray Fresh()
    {
        using var scope = NDArray.Scope();
        var z = scope.Keep(NDArray.Zeros(new long[] { 2 }, DType.Float64));
        DisposeScope.Forget(z);
        return z;
    }

    /// <summary>Adds a batch: predictions (N, classes) and labels (N).</summary>
    public void Update(NDArray pred, NDArray label)
    {
        using var c = Op.AccuracyCount(pred, label);
        Op.Add(_counts, c, @out: _counts);
    }

    /// <summary>Correct / total so far.</summary>
    public double Get()
    {
        using var scope = NDArray.Scope();
        return Op.Divide(_counts[0], _counts[1]).Scalar<double>();
    }

    /// <summary>Back to zero.</summary>
    public void Reset()
    {
        _counts.Dispose();
        _counts = Fresh();
    }

    /// <summary>Releases the counters.</summary>
    public void Dispose() => _counts.Dispose();
}
