using System;
using System.Collections.Generic;
using System.Linq;
using Loom.Interop;

namespace Loom;

/// <summary>Classification accuracy: the label is among the <paramref name="topK"/> best scores.</summary>
/// <param name="topK">How many of the best scores may hold the label (1: the best).</param>
public class Accuracy(int topK = 1) : EvalMetric(topK == 1 ? "accuracy" : $"top_k_accuracy_{topK}")
{
    /// <inheritdoc/>
    protected override NDArray Count(NDArray pred, NDArray label) => Op.AccuracyCount(pred, label, topK: topK);
}

/// <summary>Top-k accuracy.</summary>
/// <param name="topK">How many of the best scores may hold the label.</param>
public sealed class TopKAccuracy(int topK) : Accuracy(topK);
