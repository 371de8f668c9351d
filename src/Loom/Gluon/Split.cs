using System;
using System.Collections.Generic;

namespace Loom.Gluon;

/// <summary>Splitting a batch over devices for data parallel training (MXNet Gluon's
/// <c>split_and_load</c>).</summary>
public static class Split
{
    /// <summary>Cuts <paramref name="data"/> along <paramref name="batchAxis"/> into one slice per
    /// device and copies each slice to its device (MXNet 1.9's <c>split_and_load</c>). With
    /// <paramref name="evenSplit"/> the batch must divide evenly; otherwise the first
    /// <c>batch % devices</c> slices have one row more than the others (so with fewer rows than
    /// devices the last slices are empty), as MXNet's <c>split_data</c>.</summary>
    /// <param name="data">The batch.</param>
    /// <param name="ctxs">The devices.</param>
    /// <param name="batchAxis">The axis to split along.</param>
    /// <param name="evenSplit">Require equal slices.</param>
    /// <returns>One array per device.</returns>
    /// <exception cref="LoomException">No devices, a scalar, an axis outside the data, or an uneven
    /// batch with <paramref name="evenSplit"/>.</exception>
    public static NDArray[] Load(NDArray data, IReadOnlyList<Context> ctxs, int batchAxis = 0, bool evenSplit = true)
    {
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(ctxs);
        if (ctxs.Count == 0) throw new LoomException(LoomStatus.InvalidArgument, "Split.Load: no devices given");
        var shape = data.Shape;
        if (shape.Length == 0) throw new LoomException(LoomStatus.Shape, "Split.Load: a scalar has no batch axis");
        if (batchAxis < 0 || batchAxis >= shape.Length)
            throw new LoomException(LoomStatus.InvalidArgument,
                $"Split.Load: batchAxis {batchAxis} is outside data of shape {NDArray.ShapeString(shape)}");
        long size = shape[batchAxis];
        int slices = ctxs.Count;
        if (evenSplit && size % slices != 0)
            throw new LoomException(LoomStatus.Shape,
                $"Split.Load: data of shape {NDArray.ShapeString(shape)} cannot be split evenly into {slices} slices along axis {batchAxis}; " +
                $"use a batch size that is a multiple of {slices} or pass evenSplit: false");
        long each = size / slices, extras = size % slices, begin = 0;
        var parts = new NDArray[slices];
        for (int i = 0; i < slices; i++)
        {
            long end = begin + each + (i < extras ? 1 : 0);
            if (batchAxis == 0)
            {
                using var view = data.Slice(begin, end);
                parts[i] = view.CopyTo(ctxs[i]);
            }
            else
            {
                var from = new long[shape.Length];
                var to = (long[])shape.Clone();
                from[batchAxis] = begin;
                to[batchAxis] = end;
                using var part = Op.Slice(data, from, to);
                parts[i] = part.CopyTo(ctxs[i]);
            }
            begin = end;
        }
        return parts;
    }
}
