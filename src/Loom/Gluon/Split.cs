using System;
using System.Collections.Generic;

namespace Loom.Gluon;

/// <summary>Splitting a batch over devices for data parallel training (MXNet Gluon's
/// <c>split_and_load</c>).</summary>
public static class Split
{
    /// <summary>Cuts <paramref name="data"/> along axis 0 into one slice per device and copies
    /// each slice to its device. With <paramref name="evenSplit"/> the batch must divide evenly;
    /// otherwise every slice has batch / devices rows and the last takes the rest (with fewer
    /// rows than devices, one row per slice on the first devices), as MXNet's <c>split_data</c>.</summary>
    /// <param name="data">The batch.</param>
    /// <param name="ctxs">The devices.</param>
    /// <param name="evenSplit">Require equal slices.</param>
    /// <returns>One array per device (fewer when the batch has fewer rows than devices).</returns>
    /// <exception cref="LoomException">No devices, a scalar, or an uneven batch with <paramref name="evenSplit"/>.</exception>
    public static NDArray[] Load(NDArray data, IReadOnlyList<Context> ctxs, bool evenSplit = true)
    {
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(ctxs);
        if (ctxs.Count == 0) throw new LoomException(LoomStatus.InvalidArgument, "Split.Load: no devices given");
        var shape = data.Shape;
        if (shape.Length == 0) throw new LoomException(LoomStatus.Shape, "Split.Load: a scalar has no batch axis");
        long size = shape[0];
        int slices = ctxs.Count;
        if (evenSplit && size % slices != 0)
            throw new LoomException(LoomStatus.Shape,
                $"Split.Load: data of shape {NDArray.ShapeString(shape)} cannot be split evenly into {slices} slices along axis 0; " +
                $"use a batch size that is a multiple of {slices} or pass evenSplit: false");
        long step = size / slices;
        if (size < slices)
        {
            step = 1;
            slices = (int)size;
        }
        var parts = new NDArray[slices];
        for (int i = 0; i < slices; i++)
        {
            using var view = data.Slice(i * step, i < slices - 1 ? (i + 1) * step : size);
            parts[i] = view.CopyTo(ctxs[i]);
        }
        return parts;
    }
}
