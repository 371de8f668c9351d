using Loom.Interop;

namespace Loom;

/// <summary>Perplexity (MXNet's Perplexity metric): exp of the mean cross-entropy of the
/// predicted probabilities (rows, classes) at the class labels, over every batch.
/// Both the sum and the exp are computed natively.</summary>
/// <param name="eps">Added to each probability before the log.</param>
public sealed class Perplexity(double eps = 1e-12) : EvalMetric("perplexity")
{
    /// <inheritdoc/>
    protected override NDArray Count(NDArray pred, NDArray label) => Op.CrossEntropyCount(pred, label, eps: eps);

    /// <inheritdoc/>
    protected override NDArray Value(NDArray ratio) => Op.Exp(ratio);
}
