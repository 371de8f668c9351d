using System;

namespace Loom.Gluon;

/// <summary>A ResNet v1 residual block: relu(residual + body(x)), the residual being the
/// input or, when the shape changes, its projection by a strided 1x1 convolution and
/// BatchNorm. Subclasses build the body.</summary>
public abstract class ResidualBlockV1 : HybridBlock
{
    private HybridSequential _body = null!;
    private HybridSequential? _downsample;

    /// <summary>Creates the block.</summary>
    /// <param name="prefix">The prefix.</param>
    protected ResidualBlockV1(string? prefix) : base(prefix) { }

    /// <summary>Registers the body, then (when <paramref name="downsample"/>) the projection,
    /// in MXNet's order, so the parameters are numbered as MXNet numbers them.</summary>
    /// <param name="body">The body.</param>
    /// <param name="channels">Output channels.</param>
    /// <param name="stride">Stride of the projection.</param>
    /// <param name="downsample">Project the input.</param>
    /// <param name="inChannels">Input channels (0: inferred).</param>
    protected void Build(HybridSequential body, long channels, long stride, bool downsample, long inChannels)
    {
        _body = Register(body);
        if (downsample)
            _downsample = Register(new HybridSequential("").Add(
                new Conv2D(channels, new long[] { 1, 1 }, new[] { stride, stride }, useBias: false, inChannels: inChannels),
                new BatchNorm(inChannels: channels)));
    }

    /// <inheritdoc/>
    protected override NDArray HybridForward(NDArray x)
    {
        var body = _body.Forward(x);
        // residual + body, in MXNet's order (so the traced graph lists its arguments as MXNet's does)
        return Op.Activation(Op.Add(_downsample is null ? x : _downsample.Forward(x), body), ActType.Relu);
    }
}

/// <summary>ResNet v1 basic block: two 3x3 convolutions with BatchNorm, added to the
/// input (projected by a strided 1x1 convolution when the shape changes), then ReLU.</summary>
public sealed class BasicBlockV1 : ResidualBlockV1
{

    /// <summary>Creates the block.</summary>
    /// <param name="channels">Output channels.</param>
    /// <param name="stride">Stride of the first convolution (2 halves the map).</param>
    /// <param name="downsample">Project the input (needed when stride or channels change).</param>
    /// <param name="inChannels">Input channels (0: inferred at the first forward).</param>
    /// <param name="prefix">The prefix.</param>
    public BasicBlockV1(long channels, long stride, bool downsample = false, long inChannels = 0, string? prefix = null) : base(prefix)
    {
        var s = new[] { stride, stride };
        Build(new HybridSequential("").Add(
            new Conv2D(channels, new long[] { 3, 3 }, s, new long[] { 1, 1 }, useBias: false, inChannels: inChannels),
            new BatchNorm(inChannels: channels), new Activation(ActType.Relu),
            new Conv2D(channels, new long[] { 3, 3 }, padding: new long[] { 1, 1 }, useBias: false, inChannels: channels),
            new BatchNorm(inChannels: channels)), channels, stride, downsample, inChannels);
    }
}

/// <summary>ResNet v1 bottleneck block: 1x1 (strided), 3x3 and 1x1 convolutions with
/// BatchNorm, the middle ones at a quarter of the output channels, added to the
/// (projected) input, then ReLU.</summary>
public sealed class BottleneckV1 : ResidualBlockV1
{

    /// <summary>Creates the block.</summary>
    /// <param name="channels">Output channels (four times the inner width).</param>
    /// <param name="stride">Stride of the first convolution.</param>
    /// <param name="downsample">Project the input.</param>
    /// <param name="inChannels">Input channels (0: inferred).</param>
    /// <param name="prefix">The prefix.</param>
    public BottleneckV1(long channels, long stride, bool downsample = false, long inChannels = 0, string? prefix = null) : base(prefix)
    {
        long inner = channels / 4;
        var s = new[] { stride, stride };
        Build(new HybridSequential("").Add(
            new Conv2D(inner, new long[] { 1, 1 }, s, useBias: false, inChannels: inChannels), new BatchNorm(inChannels: inner),
            new Activation(ActType.Relu),
            new Conv2D(inner, new long[] { 3, 3 }, padding: new long[] { 1, 1 }, useBias: false, inChannels: inner),
            new BatchNorm(inChannels: inner), new Activation(ActType.Relu),
            new Conv2D(channels, new long[] { 1, 1 }, useBias: false, inChannels: inner), new BatchNorm(inChannels: channels)),
            channels, stride, downsample, inChannels);
    }
}

/// <summary>ResNet v1 (He et al. 2015) built from blocks, as MXNet Gluon's model zoo
/// builds it: a stem, four stages of basic or bottleneck blocks, global average
/// pooling and a dense classifier. <see cref="Vision"/> has the standard depths. The
/// parameters are named as MXNet's (<c>resnetv10_stage1_conv0_weight</c>,
/// <c>resnetv10_dense0_weight</c>), so files exported from either load in the other.</summary>
public sealed class ResNetV1 : HybridBlock
{
    private readonly HybridSequential _features;
    private readonly Dense _output;

    /// <summary>Creates the network.</summary>
    /// <param name="bottleneck">Bottleneck blocks (ResNet-50 and deeper) instead of basic blocks.</param>
    /// <param name="layers">Blocks per stage (four stages).</param>
    /// <param name="channels">The stem's channels, then each stage's output channels (five values).</param>
    /// <param name="classes">Classes of the classifier.</param>
    /// <param name="thumbnail">A 3x3 stem without pooling, for small images such as CIFAR's 32x32.</param>
    /// <param name="prefix">The prefix.</param>
    public ResNetV1(bool bottleneck, int[] layers, long[] channels, int classes = 1000, bool thumbnail = false, string? prefix = null)
        : base(prefix)
    {
        ArgumentNullException.ThrowIfNull(layers);
        ArgumentNullException.ThrowIfNull(channels);
        if (layers.Length != 4 || channels.Length != 5)
            throw new LoomException(LoomStatus.InvalidArgument, $"ResNetV1: needs 4 stage depths and 5 channel counts, got {layers.Length} and {channels.Length}");
        _features = Register(new HybridSequential(""));
        if (thumbnail)
            _features.Add(new Conv2D(channels[0], new long[] { 3, 3 }, padding: new long[] { 1, 1 }, useBias: false, inChannels: 3));
        else
            _features.Add(new Conv2D(channels[0], new long[] { 7, 7 }, new long[] { 2, 2 }, new long[] { 3, 3 }, useBias: false, inChannels: 3),
                new BatchNorm(inChannels: channels[0]), new Activation(ActType.Relu),
                new MaxPool2D(new long[] { 3, 3 }, new long[] { 2, 2 }, new long[] { 1, 1 }));
        for (int i = 0; i < 4; i++)
        {
            var stage = new HybridSequential($"stage{i + 1}_");
            long stride = i == 0 ? 1 : 2;
            long inC = channels[i];
            for (int j = 0; j < layers[i]; j++)
            {
                bool first = j == 0;
                long cin = first ? inC : channels[i + 1];
                long st = first ? stride : 1;
                bool down = first && (stride != 1 || cin != channels[i + 1]);
                stage.Add(bottleneck ? new BottleneckV1(channels[i + 1], st, down, cin, "") : new BasicBlockV1(channels[i + 1], st, down, cin, ""));
            }
            _features.Add(stage);
        }
        _features.Add(new GlobalAvgPool2D());
        _output = Register(new Dense(classes, inUnits: channels[4]));
    }

    /// <inheritdoc/>
    protected override NDArray HybridForward(NDArray x) => _output.Forward(_features.Forward(x));
}

/// <summary>The standard ResNet v1 depths, built from blocks (MXNet Gluon's
/// <c>model_zoo.vision.resnet*_v1</c>).</summary>
public static class Vision
{
    private static readonly long[] BasicChannels = { 64, 64, 128, 256, 512 };
    private static readonly long[] BottleneckChannels = { 64, 256, 512, 1024, 2048 };

    /// <summary>ResNet-18 v1.</summary>
    /// <param name="classes">Classes.</param>
    /// <param name="thumbnail">The small-image stem.</param>
    /// <returns>The network (uninitialised).</returns>
    public static ResNetV1 ResNet18V1(int classes = 1000, bool thumbnail = false) =>
        new(false, new[] { 2, 2, 2, 2 }, BasicChannels, classes, thumbnail, "resnetv10_");

    /// <summary>ResNet-34 v1.</summary>
    /// <param name="classes">Classes.</param>
    /// <param name="thumbnail">The small-image stem.</param>
    /// <returns>The network (uninitialised).</returns>
    public static ResNetV1 ResNet34V1(int classes = 1000, bool thumbnail = false) =>
        new(false, new[] { 3, 4, 6, 3 }, BasicChannels, classes, thumbnail, "resnetv10_");

    /// <summary>ResNet-50 v1.</summary>
    /// <param name="classes">Classes.</param>
    /// <param name="thumbnail">The small-image stem.</param>
    /// <returns>The network (uninitialised).</returns>
    public static ResNetV1 ResNet50V1(int classes = 1000, bool thumbnail = false) =>
        new(true, new[] { 3, 4, 6, 3 }, BottleneckChannels, classes, thumbnail, "resnetv10_");

    /// <summary>ResNet-101 v1.</summary>
    /// <param name="classes">Classes.</param>
    /// <param name="thumbnail">The small-image stem.</param>
    /// <returns>The network (uninitialised).</returns>
    public static ResNetV1 ResNet101V1(int classes = 1000, bool thumbnail = false) =>
        new(true, new[] { 3, 4, 23, 3 }, BottleneckChannels, classes, thumbnail, "resnetv10_");

    /// <summary>ResNet-152 v1.</summary>
    /// <param name="classes">Classes.</param>
    /// <param name="thumbnail">The small-image stem.</param>
    /// <returns>The network (uninitialised).</returns>
    public static ResNetV1 ResNet152V1(int classes = 1000, bool thumbnail = false) =>
        new(true, new[] { 3, 8, 36, 3 }, BottleneckChannels, classes, thumbnail, "resnetv10_");
}
