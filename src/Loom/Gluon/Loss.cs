using System;
using System.Linq;

namespace Loom.Gluon;

/// <summary>
/// A loss as a hybrid block of two inputs, prediction and label: one value per sample,
/// the mean over every axis but the batch axis (MXNet Gluon's losses). Each is
/// composed of native ops, so it differentiates and hybridizes like any block.
/// </summary>
public abstract class Loss : HybridBlock
{
    /// <summary>Creates the loss.</summary>
    /// <param name="weight">A global scale of the loss.</param>
    /// <param name="batchAxis">The batch axis (kept by the final mean).</param>
    /// <param name="prefix">The prefix.</param>
    protected Loss(double weight, long batchAxis, string? prefix) : base(prefix)
    {
        Weight = weight;
        BatchAxis = batchAxis;
    }

    /// <summary>The global scale.</summary>
    public double Weight { get; }

    /// <summary>The batch axis.</summary>
    public long BatchAxis { get; }

    /// <summary>The loss of a prediction against a label, one value per sample.</summary>
    /// <param name="pred">The prediction.</param>
    /// <param name="label">The label.</param>
    /// <returns>The per-sample loss.</returns>
    public NDArray Forward(NDArray pred, NDArray label) => Forward(new[] { pred, label })[0];

    /// <inheritdoc/>
    protected sealed override NDArray[] HybridForward(NDArray[] inputs)
    {
        if (inputs.Length != 2)
            throw new LoomException(LoomStatus.InvalidArgument, $"{Name}: a loss takes (prediction, label), got {inputs.Length} inputs");
        var l = Compute(inputs[0], inputs[1]);
        if (Weight != 1.0) l = Op.MultiplyScalar(l, Weight);
        return new[] { Op.Mean(l, axis: new[] { BatchAxis }, exclude: true) };
    }

    /// <summary>The elementwise (unweighted, unreduced) loss.</summary>
    /// <param name="pred">The prediction.</param>
    /// <param name="label">The label.</param>
    /// <returns>The loss before the weight and the mean.</returns>
    protected abstract NDArray Compute(NDArray pred, NDArray label);

    /// <summary>The label reshaped to the prediction's shape (same element count).</summary>
    /// <param name="label">The label.</param>
    /// <param name="pred">The prediction.</param>
    /// <returns>The label with the prediction's shape.</returns>
    protected NDArray LikePred(NDArray label, NDArray pred)
    {
        var ps = pred.Shape;
        var ls = label.Shape;
        if (NDArray.ShapeString(ps) == NDArray.ShapeString(ls)) return label;
        long n = 1, m = 1;
        foreach (var d in ps) n *= d;
        foreach (var d in ls) m *= d;
        if (n != m)
            throw new LoomException(LoomStatus.Shape,
                $"{Name}: the label {NDArray.ShapeString(ls)} does not match the prediction {NDArray.ShapeString(ps)}");
        return Op.Reshape(label, shape: ps);
    }
}

/// <summary>Half the squared error, <c>weight/2 (label - pred)^2</c> (Gluon's L2Loss).</summary>
/// <param name="weight">The global scale (1).</param>
/// <param name="batchAxis">The batch axis.</param>
/// <param name="prefix">The prefix.</param>
public sealed class L2Loss(double weight = 1.0, long batchAxis = 0, string? prefix = null) : Loss(weight / 2, batchAxis, prefix)
{
    /// <inheritdoc/>
    protected override NDArray Compute(NDArray pred, NDArray label) => Op.Square(Op.Subtract(LikePred(label, pred), pred));
}

/// <summary>Absolute error, <c>|label - pred|</c> (Gluon's L1Loss).</summary>
/// <param name="weight">The global scale.</param>
/// <param name="batchAxis">The batch axis.</param>
/// <param name="prefix">The prefix.</param>
public sealed class L1Loss(double weight = 1.0, long batchAxis = 0, string? prefix = null) : Loss(weight, batchAxis, prefix)
{
    /// <inheritdoc/>
    protected override NDArray Compute(NDArray pred, NDArray label) => Op.Abs(Op.Subtract(LikePred(label, pred), pred));
}

/// <summary>Softmax cross-entropy: <c>-log softmax(pred)[label]</c> for class-index labels,
/// or <c>-sum(label * log softmax(pred))</c> for dense labels (Gluon's SoftmaxCrossEntropyLoss).</summary>
/// <param name="axis">The class axis.</param>
/// <param name="sparseLabel">Labels are class indices (else distributions shaped like pred).</param>
/// <param name="fromLogits">The prediction is already log-probabilities.</param>
/// <param name="weight">The global scale.</param>
/// <param name="batchAxis">The batch axis.</param>
/// <param name="prefix">The prefix.</param>
public sealed class SoftmaxCrossEntropyLoss(long axis = -1, bool sparseLabel = true, bool fromLogits = false, double weight = 1.0,
    long batchAxis = 0, string? prefix = null) : Loss(weight, batchAxis, prefix)
{
    /// <inheritdoc/>
    protected override string Alias => "softmaxcrossentropyloss";

    /// <inheritdoc/>
    protected override NDArray Compute(NDArray pred, NDArray label)
    {
        var logp = fromLogits ? pred : Op.LogSoftmax(pred, axis: axis);
        var ps = pred.Shape;
        long ax = axis < 0 ? axis + ps.Length : axis;
        if (ax < 0 || ax >= ps.Length)
            throw new LoomException(LoomStatus.Shape, $"{Name}: axis {axis} is outside the prediction {NDArray.ShapeString(ps)}");
        if (sparseLabel)
        {
            // MXNet's -pick(logp, label, axis, keepdims=True). pick takes the label with the
            // prediction's shape less the class axis, or with that axis of length 1; a label
            // of any other shape with one class index per sample is reshaped to the latter.
            var ls = label.Shape;
            var kept = ps.Select((d, i) => i == ax ? 1L : d).ToArray();
            var dropped = ps.Where((_, i) => i != ax).ToArray();
            bool Same(long[] a, long[] b) => a.AsSpan().SequenceEqual(b);
            if (!Same(ls, kept) && !Same(ls, dropped))
            {
                if (ls.Aggregate(1L, (a, d) => a * d) != kept.Aggregate(1L, (a, d) => a * d))
                    throw new LoomException(LoomStatus.Shape,
                        $"{Name}: the label {NDArray.ShapeString(ls)} should hold one class index per sample of the prediction {NDArray.ShapeString(ps)} (classes on axis {ax})");
                label = Op.Reshape(label, shape: kept);
            }
            return Op.Negative(Op.Pick(logp, label, axis: ax, keepdims: true));
        }
        return Op.Negative(Op.Sum(Op.Multiply(logp, LikePred(label, pred)), axis: new[] { ax }, keepdims: true));
    }
}

/// <summary>Binary cross-entropy of a logit (or, with <c>fromSigmoid</c>, a probability)
/// against a 0/1 label, in the numerically stable form (Gluon's SigmoidBinaryCrossEntropyLoss).</summary>
/// <param name="fromSigmoid">The prediction is already a probability.</param>
/// <param name="weight">The global scale.</param>
/// <param name="batchAxis">The batch axis.</param>
/// <param name="prefix">The prefix.</param>
public sealed class SigmoidBinaryCrossEntropyLoss(bool fromSigmoid = false, double weight = 1.0, long batchAxis = 0, string? prefix = null)
    : Loss(weight, batchAxis, prefix)
{
    /// <inheritdoc/>
    protected override string Alias => "sigmoidbinarycrossentropyloss";

    /// <inheritdoc/>
    protected override NDArray Compute(NDArray pred, NDArray label)
    {
        label = LikePred(label, pred);
        if (!fromSigmoid)
            // max(x, 0) - x * z + log(1 + exp(-|x|))
            return Op.Add(Op.Subtract(Op.Relu(pred), Op.Multiply(pred, label)),
                Op.Activation(Op.Negative(Op.Abs(pred)), ActType.Softrelu));
        // -(z log(p + eps) + (1 - z) log(1 - p + eps)), eps = 1e-12 as in Gluon
        const double eps = 1e-12;
        var a = Op.Multiply(Op.Log(Op.AddScalar(pred, eps)), label);
        var b = Op.Multiply(Op.Log(Op.AddScalar(Op.RsubtractScalar(pred, 1.0), eps)), Op.RsubtractScalar(label, 1.0));
        return Op.Negative(Op.Add(a, b));
    }
}
