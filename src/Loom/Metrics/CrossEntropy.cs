using System;
using System.Collections.Generic;
using System.Linq;
using Loom.Interop;

namespace Loom;

/// <summary>Mean cross-entropy of predicted probabilities against class labels.</summary>
/// <param name="eps">Added to probabilities before the logarithm, so a zero gives a finite loss.</param>
public sealed class CrossEntropy(double eps = 1e-12) : EvalMetric("cross-entropy")
{
    /// <inheritdoc/>
    protected override NDArray Count(NDArray pred, NDArray label) => Op.CrossEntropyCount(pred, label, eps: eps);
}
