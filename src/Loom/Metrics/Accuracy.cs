using System;
using System.Collections.Generic;
using System.Linq;
using Loom.Interop;

namespace Loom;

/// <summary>Classification accuracy: the label is among the <paramref name="topK"/> best scores.</summary>
public class Accuracy(int topK = 1) : EvalMetric(topK == 1 ? "accuracy" : $"top_k_accuracy_{topK}")
{
    /// <inheritdoc/>
    protected override NDArray Count(NDArray pred, NDArray label) => Op.AccuracyCount(pred, label, topK: topK);
}

/// <summary>Top-k accuracy.</summary>
public sealed class TopKAccuracy(int topK) : Accuracy(topK);
