using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text.RegularExpressions;

namespace Loom;

/// <summary>Every weight set to one value.</summary>
/// <param name="value">The value of every weight.</param>
public sealed class ConstantInit(double value) : Initializer
{
    /// <inheritdoc/>
    protected internal override void InitWeight(string name, NDArray a) =>
        Op.Full(value, shape: a.Shape, dtype: a.DType, ctx: a.Context, @out: a);
}
