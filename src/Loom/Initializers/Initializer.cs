using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text.RegularExpressions;

namespace Loom;

/// <summary>Fills parameter arrays by name with the native seeded generator. Names
/// ending in bias, beta or moving_mean get zeros; gamma and moving_var get ones
/// (MXNet's convention); the rest go to <see cref="InitWeight"/>.</summary>
public abstract class Initializer
{
    /// <summary>Initialises one named array in place.</summary>
    /// <param name="name">The parameter's name; its ending chooses the rule (bias, gamma, moving_mean ...).</param>
    /// <param name="array">The array to fill.</param>
    public void Init(string name, NDArray array)
    {
        if (name.EndsWith("bias", StringComparison.Ordinal) || name.EndsWith("beta", StringComparison.Ordinal) ||
            name.EndsWith("moving_mean", StringComparison.Ordinal))
            Op.Full(0, shape: array.Shape, dtype: array.DType, ctx: array.Context, @out: array);
        else if (name.EndsWith("gamma", StringComparison.Ordinal) || name.EndsWith("moving_var", StringComparison.Ordinal))
            Op.Full(1, shape: array.Shape, dtype: array.DType, ctx: array.Context, @out: array);
        else
            InitWeight(name, array);
    }

    /// <summary>Initialises a weight.</summary>
    protected internal abstract void InitWeight(string name, NDArray array);
}
