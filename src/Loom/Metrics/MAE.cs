using System;
using System.Collections.Generic;
using System.Linq;
using Loom.Interop;

namespace Loom;

/// <summary>Mean absolute error over all values.</summary>
public sealed class MAE() : EvalMetric("mae")
{
    /// <inheritdoc/>
    protected override NDArray Count(NDArray pred, NDArray label) => Op.MaeCount(pred, label);
}
