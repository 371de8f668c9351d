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
    /// <param name="data">The samples, first axis the sample axis, such as float32 (60000, 784). Training through <see cref="Module"/> needs the network's dtype (float32).</param>
    /// <param name="label">The labels, one per sample (null for none), such as float32 (60000).</param>
    /// <param name="batchSize">Samples per batch.</param>
    /// <param name="shuffle">Visit the samples in a new random order each epoch (seeded by <see cref="Rand.Seed"/>).</param>
    /// <param name="last">What to do with a last batch that is not full: drop it, pad it, or roll over into the next epoch.</param>
    /// <param name="prefetch">Batches a background thread prepares ahead (0 for none).</param>
    /// <param name="numParts">Split the samples into this many equal parts (one per worker of a
    /// distributed run, MXNet's <c>num_parts</c>) and iterate over one of them.</param>
    /// <param name="partIndex">The part to iterate over, from 0 (the worker's rank).</param>
    /// <exception cref="LoomException">The first extents differ, the batch size is not positive, there are no
    /// samples, or fewer samples than one batch when the last batch is discarded (nothing would be trained).</exception>
    public NDArrayIter(NDArray data, NDArray? label, int batchSize, bool shuffle = false, LastBatch last = LastBatch.Discard,
        int prefetch = 2, int numParts = 1, int partIndex = 0)
    {
        ArgumentNullException.ThrowIfNull(data);
        if (numParts < 1 || partIndex < 0 || partIndex >= numParts)
            throw new LoomException(LoomStatus.InvalidArgument,
                $"NDArrayIter: partIndex {partIndex} is not in [0, numParts={numParts})");
        if (numParts > 1)
        {
            // MXNet's parts: samples [n * i / parts, n * (i + 1) / parts).
            long n = data.Shape.Length > 0 ? data.Shape[0] : 0;
            long lo = n * partIndex / numParts, hi = n * (partIndex + 1) / numParts;
            data = data.Slice(lo, hi);
            label = label?.Slice(lo, hi);
        }
        long count = data.Shape.Length > 0 ? data.Shape[0] : 0;
        if (count == 0)
            throw new LoomException(LoomStatus.InvalidArgument, "NDArrayIter: the data holds no samples" +
                (numParts > 1 ? $" (part {partIndex} of {numParts})" : ""));
        if (last == LastBatch.Discard && batchSize > 0 && count < batchSize)
            throw new LoomException(LoomStatus.InvalidArgument,
                $"NDArrayIter: {count} samples are fewer than one batch of {batchSize}, and the last batch is discarded: " +
                "nothing would be trained (use a smaller batch, or LastBatch.Pad)");
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
    /// <returns>The batches of one epoch, with the padding of the last one.</returns>
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
    /// <returns>The (data, label) pairs of one epoch.</returns>
    public IEnumerable<(NDArray Data, NDArray Label)> Epoch()
    {
        foreach (var b in Batches()) yield return (b.Data, b.Label!);
    }

    /// <summary>Stops the prefetch thread and releases the iterator.</summary>
    public void Dispose() => _handle.Dispose();
}
