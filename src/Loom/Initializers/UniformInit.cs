using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text.RegularExpressions;

namespace Loom;

/// <summary>Uniform in [-scale, scale] (MXNet.jl's default with scale 0.01... here 0.07, MXNet's).</summary>
public sealed class UniformInit(double scale = 0.07) : Initializer
{
    /// <inheritdoc/>
    protected internal override void InitWeight(string name, NDArray a) =>
        Op.RandomUniform(low: -scale, high: scale, shape: a.Shape, dtype: a.DType, ctx: a.Context, @out: a);
}
