using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using Loom.Interop;

namespace Loom;

/// <summary>HDF5 datasets (Mocha's data format), read natively through the HDF5 C library,
/// which is loaded when first needed (Debian <c>libhdf5-103-1</c>).</summary>
public static class Hdf5
{
    /// <summary>Reads rows [<paramref name="begin"/>, <paramref name="end"/>) of a dataset onto cpu(0).</summary>
    /// <param name="path">The HDF5 file.</param>
    /// <param name="dataset">The dataset's path inside the file, such as <c>data</c> or <c>train/images</c>.</param>
    /// <param name="begin">The first row (along axis 0).</param>
    /// <param name="end">One past the last row; negative: to the end.</param>
    /// <returns>The rows, float32 or float64 for floats and int8, uint8, int32 or int64 for integers.</returns>
    /// <exception cref="LoomException">The file is missing, damaged or not HDF5, the dataset does not exist
    /// (the message lists the file's top-level names), the rows are out of range, or HDF5 is not installed.</exception>
    public static NDArray Read(string path, string dataset, long begin = 0, long end = -1)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(dataset);
        LoomException.Check(LoomNative.loom_io_read_hdf5(out NDArrayHandle h, path, dataset, begin, end));
        return new NDArray(h);
    }
}

/// <summary>Batches from HDF5 files, as Mocha's HDF5 data layer reads them: the named data and
/// label datasets of every file, one after another, with <see cref="NDArrayIter"/>'s shuffling,
/// last-batch and prefetch options.</summary>
public static class Hdf5Iter
{
    /// <summary>An iterator over the samples of <paramref name="files"/>.</summary>
    /// <param name="files">The HDF5 files, read in order.</param>
    /// <param name="batchSize">Samples per batch.</param>
    /// <param name="data">The data dataset's name in each file.</param>
    /// <param name="label">The label dataset's name (null: no labels).</param>
    /// <param name="shuffle">Visit the samples in a new random order each epoch.</param>
    /// <param name="last">What to do with a last batch that is not full.</param>
    /// <param name="prefetch">Batches a background thread prepares ahead.</param>
    /// <returns>The iterator.</returns>
    /// <exception cref="LoomException">No files, a file or dataset that cannot be read, or files whose
    /// samples differ in shape or dtype, or whose data and label row counts differ (each named).</exception>
    public static NDArrayIter Create(IEnumerable<string> files, int batchSize, string data = "data", string? label = "label",
        bool shuffle = false, LastBatch last = LastBatch.Pad, int prefetch = 2)
    {
        ArgumentNullException.ThrowIfNull(files);
        var list = files.ToList();
        if (list.Count == 0) throw new LoomException(LoomStatus.InvalidArgument, "Hdf5Iter: no files given");
        using var scope = NDArray.Scope();
        NDArray Join(string name)
        {
            var parts = list.Select(f => Hdf5.Read(f, name)).ToList();
            for (int i = 1; i < parts.Count; i++)
                if (!parts[i].Shape.Skip(1).SequenceEqual(parts[0].Shape.Skip(1)) || parts[i].DType != parts[0].DType)
                    throw new LoomException(LoomStatus.Shape,
                        $"Hdf5Iter: '{list[i]}' has '{name}' {NDArray.ShapeString(parts[i].Shape)} {parts[i].DType}, but '{list[0]}' has " +
                        $"{NDArray.ShapeString(parts[0].Shape)} {parts[0].DType}: samples must agree in shape and dtype");
            return parts.Count == 1 ? parts[0] : Op.Concat(parts.ToArray(), numArgs: parts.Count, dim: 0);
        }
        var x = Join(data);
        NDArray? y = null;
        if (label is not null)
        {
            y = Join(label);
            if (y.Shape[0] != x.Shape[0])
                throw new LoomException(LoomStatus.Shape,
                    $"Hdf5Iter: the files hold {x.Shape[0]} rows of '{data}' but {y.Shape[0]} of '{label}'");
        }
        return new NDArrayIter(x, y, batchSize, shuffle, last, prefetch);
    }

    /// <summary>Mocha's form: <paramref name="source"/> is a text file listing one HDF5 file per
    /// line (relative paths are relative to it; blank lines are skipped).</summary>
    /// <param name="source">The list file.</param>
    /// <param name="batchSize">Samples per batch.</param>
    /// <param name="data">The data dataset's name.</param>
    /// <param name="label">The label dataset's name (null: no labels).</param>
    /// <param name="shuffle">Visit the samples in a new random order each epoch.</param>
    /// <param name="last">What to do with a last batch that is not full.</param>
    /// <returns>The iterator.</returns>
    /// <exception cref="LoomException">The list cannot be read, or as <see cref="Create"/>.</exception>
    public static NDArrayIter FromList(string source, int batchSize, string data = "data", string? label = "label",
        bool shuffle = false, LastBatch last = LastBatch.Pad)
    {
        ArgumentNullException.ThrowIfNull(source);
        string[] lines;
        try { lines = File.ReadAllLines(source); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new LoomException(LoomStatus.Io, $"Hdf5Iter: cannot read the list '{source}': {e.Message}");
        }
        string dir = Path.GetDirectoryName(Path.GetFullPath(source)) ?? ".";
        var files = lines.Select(l => l.Trim()).Where(l => l.Length > 0).Select(l => Path.IsPathRooted(l) ? l : Path.Combine(dir, l));
        return Create(files, batchSize, data, label, shuffle, last);
    }
}
