using System;
using System.Collections.Generic;
using System.Linq;
using Loom.Interop;

namespace Loom;

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
