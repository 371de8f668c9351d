using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text.RegularExpressions;

namespace Loom;

/// <summary>Normal with mean 0 and deviation sigma.</summary>
/// <param name="sigma">The standard deviation.</param>
public sealed class NormalInit(double sigma = 0.01) : Initializer
{
    /// <inheritdoc/>
    protected internal override void InitWeight(string name, NDArray a) =>
        Op.RandomNormal(loc: 0, scale: sigma, shape: a.Shape, dtype: a.DType, ctx: a.Context, @out: a);
}
