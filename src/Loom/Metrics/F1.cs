using System;
using System.Collections.Generic;
using System.Linq;
using Loom.Interop;

namespace Loom;

/// <summary>Binary F1 score over all batches (label 1 is positive).</summary>
public sealed class F1() : EvalMetric("f1")
{
    /// <inheritdoc/>
    protected override NDArray Count(NDArray pred, NDArray label) => Op.F1Count(pred, label);
}
