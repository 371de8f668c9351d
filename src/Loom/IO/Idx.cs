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
