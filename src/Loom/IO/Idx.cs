using System;
using System.Collections.Generic;
using System.Linq;
using Loom.Interop;

namespace Loom;

/// <summary>IDX files (MNIST's format), read natively.</summary>
public static class Idx
{
    /// <summary>Reads a plain or gzip-compressed IDX file onto cpu(0).</summary>
    /// <param name="path">An IDX file, plain or gzip-compressed (<c>.gz</c>), such as MNIST's <c>train-images-idx3-ubyte</c>.</param>
    /// <returns>The array in the file's own dtype and shape: MNIST's images are uint8 (N, 28, 28) and its labels uint8 (N). Convert with <c>AsType(DType.Float32)</c> (and divide images by 255) before training.</returns>
    /// <exception cref="LoomException">The file is missing, truncated or not IDX; the message names the file.</exception>
    public static NDArray Read(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        LoomException.Check(LoomNative.loom_io_read_idx(out NDArrayHandle h, path));
        return new NDArray(h);
    }
}
