using System;
using System.Collections.Generic;
using System.Linq;
using Loom.Interop;

namespace Loom;

/// <summary>Mean squared error over all values.</summary>
public sealed class MSE() : EvalMetric("mse")
{
    /// <inheritdoc/>
    protected override NDArray Count(NDArray pred, NDArray label) => Op.MseCount(pred, label);
}
