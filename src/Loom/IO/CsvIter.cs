using System;
using System.Collections.Generic;
using System.Linq;
using Loom.Interop;

namespace Loom;

/// <summary>MXNet's CSVIter: batches from CSV files, each row one sample reshaped to a given shape.</summary>
public static class CsvIter
{
    /// <summary>Reads <paramref name="dataCsv"/> (and <paramref name="labelCsv"/>, or zeros without one)
    /// and batches the rows, each reshaped to <paramref name="dataShape"/> / <paramref name="labelShape"/>.</summary>
    /// <param name="dataCsv">The data file, one sample per row.</param>
    /// <param name="dataShape">The shape of one sample (its row is reshaped to it), such as (1, 28, 28).</param>
    /// <param name="batchSize">Samples per batch.</param>
    /// <param name="labelCsv">The label file, one row per sample (null: zero labels).</param>
    /// <param name="labelShape">The shape of one label (default (1,) read as a scalar).</param>
    /// <param name="shuffle">Visit the samples in a new random order each epoch.</param>
    /// <param name="last">What to do with a last batch that is not full.</param>
    /// <param name="headerRows">Rows to skip at the top of each file.</param>
    /// <returns>An iterator over the files' samples.</returns>
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
