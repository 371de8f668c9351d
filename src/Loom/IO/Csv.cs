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
    /// <param name="path">The CSV file, plain or gzip-compressed.</param>
    /// <param name="dtype">The dtype to read the numbers as.</param>
    /// <param name="headerRows">Rows to skip at the top.</param>
    /// <returns>A (rows, columns) array.</returns>
    /// <exception cref="LoomException">A field is not a number of <paramref name="dtype"/>, rows differ in length, or the file cannot be read; the message names the file, line and column.</exception>
    public static NDArray Read(string path, DType dtype = DType.Float32, int headerRows = 0)
    {
        ArgumentNullException.ThrowIfNull(path);
        LoomException.Check(LoomNative.loom_io_read_csv(out NDArrayHandle h, path, (int)dtype, headerRows));
        return new NDArray(h);
    }
}
