using System;
using System.Collections.Generic;
using System.Linq;
using Loom.Interop;

namespace Loom;

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
