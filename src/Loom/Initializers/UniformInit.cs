using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text.RegularExpressions;

namespace Loom;

/// <summary>Weights drawn uniformly from [-scale, scale]. MXNet's default scale is 0.07; the seed
/// notebook (MXNet.jl) uses 0.01.</summary>
/// <param name="scale">Half the width of the interval.</param>
public sealed class UniformInit(double scale = 0.07) : Initializer
{
    /// <inheritdoc/>
    protected internal override void InitWeight(string name, NDArray a) =>
        Op.RandomUniform(low: -scale, high: scale, shape: a.Shape, dtype: a.DType, ctx: a.Context, @out: a);
}
