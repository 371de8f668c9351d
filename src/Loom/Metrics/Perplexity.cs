using Loom.Interop;

namespace Loom;

/// <summary>Perplexity (MXNet's Perplexity metric): exp of the mean cross-entropy of the
/// predicted probabilities (rows, classes) at the class labels, over every batch; rows labelled
/// <paramref name="ignoreLabel"/> (padding) are left out. The sums and the exp are native.</summary>
/// <param name="ignoreLabel">A label whose rows are not counted (MXNet's ignore_label), or null.</param>
/// <param name="eps">Added to each probability before the log.</param>
public sealed class Perplexity(double? ignoreLabel = null, double eps = 1e-12) : EvalMetric("perplexity")
{
    /// <inheritdoc/>
    protected override NDArray Count(NDArray pred, NDArray label) =>
        Op.CrossEntropyCount(pred, label, eps: eps, ignoreLabel: ignoreLabel);

    /// <inheritdoc/>
    protected override NDArray Value(NDArray ratio) => Op.Exp(ratio);
}
