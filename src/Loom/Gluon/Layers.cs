using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;

namespace Loom.Gluon;

/// <summary>Runs child blocks one after another (imperatively).</summary>
public sealed class Sequential : Block
{
    /// <summary>An empty sequence.</summary>
    /// <param name="prefix">The prefix (automatic when null).</param>
    public Sequential(string? prefix = null) : base(prefix) { }

    /// <summary>Appends blocks.</summary>
    /// <param name="blocks">The blocks, in order.</param>
    /// <returns>This sequence.</returns>
    public Sequential Add(params Block[] blocks)
    {
        foreach (var b in blocks) Register(b);
        return this;
    }

    /// <inheritdoc/>
    public override NDArray Forward(NDArray x)
    {
        foreach (var c in Children) x = c.Forward(x);
        return x;
    }
}

/// <summary>Runs hybrid child blocks one after another; hybridizes as one graph.</summary>
public sealed class HybridSequential : HybridBlock
{
    /// <summary>An empty sequence.</summary>
    /// <param name="prefix">The prefix (automatic when null).</param>
    public HybridSequential(string? prefix = null) : base(prefix) { }

    /// <summary>Appends blocks.</summary>
    /// <param name="blocks">The blocks, in order.</param>
    /// <returns>This sequence.</returns>
    public HybridSequential Add(params HybridBlock[] blocks)
    {
        foreach (var b in blocks) Register(b);
        return this;
    }

    /// <inheritdoc/>
    protected override NDArray HybridForward(NDArray x)
    {
        foreach (var c in Children) x = c.Forward(x);
        return x;
    }
}

/// <summary>A fully connected layer: <c>y = activation(x W^T + b)</c> (Gluon's <c>Dense</c>,
/// the FullyConnected op). The input features are inferred at the first forward.</summary>
public sealed class Dense : HybridBlock
{
    private readonly long _units;
    private readonly bool _flatten;
    private readonly ActType? _act;

    /// <summary>Creates the layer.</summary>
    /// <param name="units">Output features.</param>
    /// <param name="activation">An activation applied to the output (none when null).</param>
    /// <param name="useBias">Add a bias.</param>
    /// <param name="flatten">Collapse all input axes but the first (else act on the last axis).</param>
    /// <param name="inUnits">Input features (0: inferred at the first forward).</param>
    /// <param name="weightInit">The weight's own initializer (null: the network's).</param>
    /// <param name="biasInit">The bias's own initializer (null: zeros).</param>
    /// <param name="prefix">The prefix (automatic when null).</param>
    /// <param name="params">Parameters to share.</param>
    public Dense(long units, ActType? activation = null, bool useBias = true, bool flatten = true, long inUnits = 0,
        Initializer? weightInit = null, Initializer? biasInit = null, string? prefix = null, ParameterDict? @params = null)
        : base(prefix, @params)
    {
        if (units <= 0) throw new LoomException(LoomStatus.InvalidArgument, $"Dense: units must be positive, got {units}");
        _units = units;
        _flatten = flatten;
        _act = activation;
        Weight = Param("weight", new[] { units, inUnits }, init: weightInit);
        Bias = useBias ? Param("bias", new[] { units }, init: biasInit) : null;
    }

    /// <summary>The weight, (units, in-features).</summary>
    public Parameter Weight { get; }

    /// <summary>The bias, (units,), or null.</summary>
    public Parameter? Bias { get; }

    /// <inheritdoc/>
    protected override NDArray HybridForward(NDArray x)
    {
        var s = x.Shape;
        if (s.Length < (_flatten ? 2 : 1))
            throw new LoomException(LoomStatus.Shape, $"{Name}: input {NDArray.ShapeString(s)} needs a batch axis");
        long inFeat = _flatten ? s.Skip(1).Aggregate(1L, (a, b) => a * b) : s[^1];
        Weight.InferShape(new[] { _units, inFeat }, $"the input {NDArray.ShapeString(s)}");
        var y = Op.FullyConnected(x, Weight.Data(x.Context), Bias?.Data(x.Context), _units, noBias: Bias is null, flatten: _flatten);
        return _act is null ? y : Op.Activation(y, _act);
    }

    /// <inheritdoc/>
    protected override string Describe() =>
        $"Dense({(Weight.Shape[1] > 0 ? Weight.Shape[1].ToString(CultureInfo.InvariantCulture) : "None")} -> {_units}{(_act is null ? "" : ", " + _act.ToString()!.ToLowerInvariant())})";
}

/// <summary>Convolution over 1, 2 or 3 spatial axes (channels first; the Convolution or
/// Deconvolution op). Input channels are inferred at the first forward.</summary>
public abstract class ConvBlock : HybridBlock
{
    private readonly long _channels, _groups;
    private readonly long[] _kernel, _strides, _padding, _dilation, _adj;
    private readonly bool _transpose;
    private readonly ActType? _act;

    /// <summary>Creates the layer (see the 1-D, 2-D and 3-D subclasses).</summary>
    /// <param name="channels">Output channels.</param>
    /// <param name="kernel">The window, one extent per spatial axis.</param>
    /// <param name="strides">Steps (ones when null).</param>
    /// <param name="padding">Zero padding per side (zeros when null).</param>
    /// <param name="dilation">Dilation (ones when null).</param>
    /// <param name="groups">Channel groups.</param>
    /// <param name="inChannels">Input channels (0: inferred).</param>
    /// <param name="activation">An activation after the convolution (none when null).</param>
    /// <param name="useBias">Add a bias.</param>
    /// <param name="transpose">Transposed convolution (Deconvolution).</param>
    /// <param name="outputPadding">Extra output size of a transposed convolution (zeros when null).</param>
    /// <param name="weightInit">The weight's own initializer.</param>
    /// <param name="prefix">The prefix.</param>
    /// <param name="params">Parameters to share.</param>
    protected ConvBlock(long channels, long[] kernel, long[]? strides, long[]? padding, long[]? dilation, long groups,
        long inChannels, ActType? activation, bool useBias, bool transpose, long[]? outputPadding,
        Initializer? weightInit, string? prefix, ParameterDict? @params) : base(prefix, @params)
    {
        int n = kernel.Length;
        long[] Fill(long[]? v, long d, string what)
        {
            v ??= Enumerable.Repeat(d, n).ToArray();
            if (v.Length != n)
                throw new LoomException(LoomStatus.InvalidArgument, $"{GetType().Name}: {what} has {v.Length} extents, the kernel {n}");
            return v;
        }
        if (channels <= 0 || groups <= 0 || channels % groups != 0)
            throw new LoomException(LoomStatus.InvalidArgument, $"{GetType().Name}: channels {channels} must be positive and divisible by groups {groups}");
        _channels = channels;
        _groups = groups;
        _kernel = kernel;
        _strides = Fill(strides, 1, "strides");
        _padding = Fill(padding, 0, "padding");
        _dilation = Fill(dilation, 1, "dilation");
        _adj = Fill(outputPadding, 0, "outputPadding");
        _transpose = transpose;
        _act = activation;
        long[] wshape = transpose
            ? new[] { inChannels, channels / groups }.Concat(kernel).ToArray()
            : new[] { channels, inChannels > 0 ? inChannels / groups : 0 }.Concat(kernel).ToArray();
        Weight = Param("weight", wshape, init: weightInit);
        Bias = useBias ? Param("bias", new[] { channels }) : null;
    }

    /// <summary>The weight.</summary>
    public Parameter Weight { get; }

    /// <summary>The bias, or null.</summary>
    public Parameter? Bias { get; }

    /// <inheritdoc/>
    protected override string Alias => "conv";

    /// <inheritdoc/>
    protected override NDArray HybridForward(NDArray x)
    {
        var s = x.Shape;
        if (s.Length != _kernel.Length + 2)
            throw new LoomException(LoomStatus.Shape,
                $"{Name}: a {_kernel.Length}-D convolution takes (batch, channels, {_kernel.Length} spatial axes); the input is {NDArray.ShapeString(s)}");
        long c = s[1];
        if (c % _groups != 0)
            throw new LoomException(LoomStatus.Shape, $"{Name}: input channels {c} (input {NDArray.ShapeString(s)}) are not divisible by groups {_groups}");
        long[] want = _transpose
            ? new[] { c, _channels / _groups }.Concat(_kernel).ToArray()
            : new[] { _channels, c / _groups }.Concat(_kernel).ToArray();
        Weight.InferShape(want, $"the input {NDArray.ShapeString(s)}");
        var y = _transpose
            ? Op.Deconvolution(x, Weight.Data(x.Context), Bias?.Data(x.Context), _kernel, _channels, stride: _strides, dilate: _dilation,
                numGroup: _groups, pad: _padding, adj: _adj, noBias: Bias is null)
            : Op.Convolution(x, Weight.Data(x.Context), Bias?.Data(x.Context), _kernel, _channels, stride: _strides, dilate: _dilation,
                numGroup: _groups, pad: _padding, noBias: Bias is null);
        return _act is null ? y : Op.Activation(y, _act);
    }

    /// <inheritdoc/>
    protected override string Describe()
    {
        long inC = _transpose ? Weight.Shape[0] : Weight.Shape[1] * _groups;
        string T(long[] v) => "(" + string.Join(", ", v) + ")";
        return $"{GetType().Name}({(inC > 0 ? inC.ToString(CultureInfo.InvariantCulture) : "None")} -> {_channels}, kernel_size={T(_kernel)}, stride={T(_strides)}" +
               $"{(_padding.Any(p => p != 0) ? ", padding=" + T(_padding) : "")}{(_act is null ? "" : ", " + _act.ToString()!.ToLowerInvariant())})";
    }
}

/// <summary>1-D convolution over (batch, channels, width).</summary>
/// <param name="channels">Output channels.</param>
/// <param name="kernelSize">Window width.</param>
/// <param name="strides">Step.</param>
/// <param name="padding">Zero padding per side.</param>
/// <param name="dilation">Dilation.</param>
/// <param name="groups">Channel groups.</param>
/// <param name="inChannels">Input channels (0: inferred).</param>
/// <param name="activation">Activation (none when null).</param>
/// <param name="useBias">Add a bias.</param>
/// <param name="weightInit">The weight's own initializer.</param>
/// <param name="prefix">The prefix.</param>
/// <param name="params">Parameters to share.</param>
public sealed class Conv1D(long channels, long kernelSize, long strides = 1, long padding = 0, long dilation = 1, long groups = 1,
    long inChannels = 0, ActType? activation = null, bool useBias = true, Initializer? weightInit = null, string? prefix = null,
    ParameterDict? @params = null)
    : ConvBlock(channels, new[] { kernelSize }, new[] { strides }, new[] { padding }, new[] { dilation }, groups, inChannels,
        activation, useBias, false, null, weightInit, prefix, @params);

/// <summary>2-D convolution over (batch, channels, height, width).</summary>
/// <param name="channels">Output channels.</param>
/// <param name="kernelSize">Window (height, width).</param>
/// <param name="strides">Steps (ones when null).</param>
/// <param name="padding">Zero padding per side (zeros when null).</param>
/// <param name="dilation">Dilation (ones when null).</param>
/// <param name="groups">Channel groups.</param>
/// <param name="inChannels">Input channels (0: inferred).</param>
/// <param name="activation">Activation (none when null).</param>
/// <param name="useBias">Add a bias.</param>
/// <param name="weightInit">The weight's own initializer.</param>
/// <param name="prefix">The prefix.</param>
/// <param name="params">Parameters to share.</param>
public sealed class Conv2D(long channels, long[] kernelSize, long[]? strides = null, long[]? padding = null, long[]? dilation = null,
    long groups = 1, long inChannels = 0, ActType? activation = null, bool useBias = true, Initializer? weightInit = null,
    string? prefix = null, ParameterDict? @params = null)
    : ConvBlock(channels, Check(kernelSize, 2), strides, padding, dilation, groups, inChannels, activation, useBias, false, null,
        weightInit, prefix, @params)
{
    internal static long[] Check(long[] k, int n) => k?.Length == n ? k
        : throw new LoomException(LoomStatus.InvalidArgument, $"Conv{n}D: kernelSize needs {n} extents, got {(k is null ? "null" : NDArray.ShapeString(k))}");
}

/// <summary>3-D convolution over (batch, channels, depth, height, width).</summary>
/// <param name="channels">Output channels.</param>
/// <param name="kernelSize">Window (depth, height, width).</param>
/// <param name="strides">Steps (ones when null).</param>
/// <param name="padding">Zero padding per side (zeros when null).</param>
/// <param name="dilation">Dilation (ones when null).</param>
/// <param name="groups">Channel groups.</param>
/// <param name="inChannels">Input channels (0: inferred).</param>
/// <param name="activation">Activation (none when null).</param>
/// <param name="useBias">Add a bias.</param>
/// <param name="weightInit">The weight's own initializer.</param>
/// <param name="prefix">The prefix.</param>
/// <param name="params">Parameters to share.</param>
public sealed class Conv3D(long channels, long[] kernelSize, long[]? strides = null, long[]? padding = null, long[]? dilation = null,
    long groups = 1, long inChannels = 0, ActType? activation = null, bool useBias = true, Initializer? weightInit = null,
    string? prefix = null, ParameterDict? @params = null)
    : ConvBlock(channels, Conv2D.Check(kernelSize, 3), strides, padding, dilation, groups, inChannels, activation, useBias, false,
        null, weightInit, prefix, @params);

/// <summary>2-D transposed convolution (the Deconvolution op) over (batch, channels, height, width).</summary>
/// <param name="channels">Output channels.</param>
/// <param name="kernelSize">Window (height, width).</param>
/// <param name="strides">Steps (ones when null).</param>
/// <param name="padding">Padding removed per side (zeros when null).</param>
/// <param name="outputPadding">Extra size added to one side of the output (zeros when null).</param>
/// <param name="dilation">Dilation (ones when null).</param>
/// <param name="groups">Channel groups.</param>
/// <param name="inChannels">Input channels (0: inferred).</param>
/// <param name="activation">Activation (none when null).</param>
/// <param name="useBias">Add a bias.</param>
/// <param name="weightInit">The weight's own initializer.</param>
/// <param name="prefix">The prefix.</param>
/// <param name="params">Parameters to share.</param>
public sealed class Conv2DTranspose(long channels, long[] kernelSize, long[]? strides = null, long[]? padding = null,
    long[]? outputPadding = null, long[]? dilation = null, long groups = 1, long inChannels = 0, ActType? activation = null,
    bool useBias = true, Initializer? weightInit = null, string? prefix = null, ParameterDict? @params = null)
    : ConvBlock(channels, Conv2D.Check(kernelSize, 2), strides, padding, dilation, groups, inChannels, activation, useBias, true,
        outputPadding, weightInit, prefix, @params);

/// <summary>Max or average pooling over the spatial axes (the Pooling op).</summary>
public abstract class PoolBlock : HybridBlock
{
    private readonly long[]? _kernel, _strides, _padding;
    private readonly PoolType _type;
    private readonly bool _global, _ceil, _countIncludePad;

    /// <summary>Creates the layer.</summary>
    /// <param name="type">Max or average.</param>
    /// <param name="kernel">The window (null for global pooling).</param>
    /// <param name="strides">Steps (the window when null, as in Gluon).</param>
    /// <param name="padding">Padding per side (zeros when null).</param>
    /// <param name="ceilMode">Round the output size up ("full" convention) instead of down.</param>
    /// <param name="countIncludePad">Average pooling divides by the whole window, padding included.</param>
    /// <param name="prefix">The prefix.</param>
    protected PoolBlock(PoolType type, long[]? kernel, long[]? strides, long[]? padding, bool ceilMode, bool countIncludePad,
        string? prefix) : base(prefix)
    {
        _type = type;
        _global = kernel is null;
        _kernel = kernel;
        _strides = kernel is null ? null : strides ?? kernel;
        _padding = kernel is null ? null : padding ?? new long[kernel.Length];
        _ceil = ceilMode;
        _countIncludePad = countIncludePad;
    }

    /// <inheritdoc/>
    protected override string Alias => "pool";

    /// <inheritdoc/>
    protected override NDArray HybridForward(NDArray x) => _global
        ? Op.Pooling(x, kernel: new long[] { 1, 1 }, poolType: _type, globalPool: true)
        : Op.Pooling(x, _kernel, _type, stride: _strides, pad: _padding,
            poolingConvention: _ceil ? PoolingConvention.Full : PoolingConvention.Valid,
            countIncludePad: _type == PoolType.Avg ? _countIncludePad : null);

    /// <inheritdoc/>
    protected override string Describe() => _global ? GetType().Name
        : $"{GetType().Name}(size=({string.Join(", ", _kernel!)}), stride=({string.Join(", ", _strides!)}), padding=({string.Join(", ", _padding!)}), ceil_mode={_ceil})";
}

/// <summary>2-D max pooling.</summary>
/// <param name="poolSize">The window ((2, 2) when null).</param>
/// <param name="strides">Steps (the window when null).</param>
/// <param name="padding">Padding per side.</param>
/// <param name="ceilMode">Round the output size up.</param>
/// <param name="prefix">The prefix.</param>
public sealed class MaxPool2D(long[]? poolSize = null, long[]? strides = null, long[]? padding = null, bool ceilMode = false, string? prefix = null)
    : PoolBlock(PoolType.Max, Conv2D.Check(poolSize ?? new long[] { 2, 2 }, 2), strides, padding, ceilMode, true, prefix);

/// <summary>2-D average pooling.</summary>
/// <param name="poolSize">The window ((2, 2) when null).</param>
/// <param name="strides">Steps (the window when null).</param>
/// <param name="padding">Padding per side.</param>
/// <param name="ceilMode">Round the output size up.</param>
/// <param name="countIncludePad">Divide by the whole window, padding included (Gluon's default).</param>
/// <param name="prefix">The prefix.</param>
public sealed class AvgPool2D(long[]? poolSize = null, long[]? strides = null, long[]? padding = null, bool ceilMode = false,
    bool countIncludePad = true, string? prefix = null)
    : PoolBlock(PoolType.Avg, Conv2D.Check(poolSize ?? new long[] { 2, 2 }, 2), strides, padding, ceilMode, countIncludePad, prefix);

/// <summary>1-D max pooling over (batch, channels, width).</summary>
/// <param name="poolSize">The window.</param>
/// <param name="strides">The step (the window when null).</param>
/// <param name="padding">Padding per side.</param>
/// <param name="ceilMode">Round the output size up.</param>
/// <param name="prefix">The prefix.</param>
public sealed class MaxPool1D(long poolSize = 2, long? strides = null, long padding = 0, bool ceilMode = false, string? prefix = null)
    : PoolBlock(PoolType.Max, new[] { poolSize }, new[] { strides ?? poolSize }, new[] { padding }, ceilMode, true, prefix);

/// <summary>1-D average pooling over (batch, channels, width).</summary>
/// <param name="poolSize">The window.</param>
/// <param name="strides">The step (the window when null).</param>
/// <param name="padding">Padding per side.</param>
/// <param name="ceilMode">Round the output size up.</param>
/// <param name="countIncludePad">Divide by the whole window, padding included.</param>
/// <param name="prefix">The prefix.</param>
public sealed class AvgPool1D(long poolSize = 2, long? strides = null, long padding = 0, bool ceilMode = false,
    bool countIncludePad = true, string? prefix = null)
    : PoolBlock(PoolType.Avg, new[] { poolSize }, new[] { strides ?? poolSize }, new[] { padding }, ceilMode, countIncludePad, prefix);

/// <summary>3-D max pooling over (batch, channels, depth, height, width).</summary>
/// <param name="poolSize">The window ((2, 2, 2) when null).</param>
/// <param name="strides">Steps (the window when null).</param>
/// <param name="padding">Padding per side.</param>
/// <param name="ceilMode">Round the output size up.</param>
/// <param name="prefix">The prefix.</param>
public sealed class MaxPool3D(long[]? poolSize = null, long[]? strides = null, long[]? padding = null, bool ceilMode = false, string? prefix = null)
    : PoolBlock(PoolType.Max, Conv2D.Check(poolSize ?? new long[] { 2, 2, 2 }, 3), strides, padding, ceilMode, true, prefix);

/// <summary>3-D average pooling over (batch, channels, depth, height, width).</summary>
/// <param name="poolSize">The window ((2, 2, 2) when null).</param>
/// <param name="strides">Steps (the window when null).</param>
/// <param name="padding">Padding per side.</param>
/// <param name="ceilMode">Round the output size up.</param>
/// <param name="countIncludePad">Divide by the whole window, padding included.</param>
/// <param name="prefix">The prefix.</param>
public sealed class AvgPool3D(long[]? poolSize = null, long[]? strides = null, long[]? padding = null, bool ceilMode = false,
    bool countIncludePad = true, string? prefix = null)
    : PoolBlock(PoolType.Avg, Conv2D.Check(poolSize ?? new long[] { 2, 2, 2 }, 3), strides, padding, ceilMode, countIncludePad, prefix);

/// <summary>Max pooling over all of each channel's 2-D map, to (batch, channels, 1, 1).</summary>
/// <param name="prefix">The prefix.</param>
public sealed class GlobalMaxPool2D(string? prefix = null) : PoolBlock(PoolType.Max, null, null, null, false, true, prefix);

/// <summary>Average over all of each channel's 2-D map, to (batch, channels, 1, 1).</summary>
/// <param name="prefix">The prefix.</param>
public sealed class GlobalAvgPool2D(string? prefix = null) : PoolBlock(PoolType.Avg, null, null, null, false, true, prefix);

/// <summary>Batch normalisation over one axis (the BatchNorm op), with running statistics
/// as auxiliary states. Channels are inferred at the first forward.</summary>
public sealed class BatchNorm : HybridBlock
{
    private readonly long _axis;
    private readonly double _momentum, _eps;
    private readonly bool _scale, _globalStats;

    /// <summary>Creates the layer with Gluon's defaults.</summary>
    /// <param name="axis">The channel axis.</param>
    /// <param name="momentum">Running statistics keep this fraction per step.</param>
    /// <param name="epsilon">Added to the variance.</param>
    /// <param name="center">Learn beta (else it stays 0).</param>
    /// <param name="scale">Learn gamma (else it stays 1).</param>
    /// <param name="useGlobalStats">Normalise with the running statistics in training too.</param>
    /// <param name="inChannels">Channels (0: inferred).</param>
    /// <param name="prefix">The prefix.</param>
    /// <param name="params">Parameters to share.</param>
    public BatchNorm(long axis = 1, double momentum = 0.9, double epsilon = 1e-5, bool center = true, bool scale = true,
        bool useGlobalStats = false, long inChannels = 0, string? prefix = null, ParameterDict? @params = null)
        : base(prefix, @params)
    {
        _axis = axis;
        _momentum = momentum;
        _eps = epsilon;
        _scale = scale;
        _globalStats = useGlobalStats;
        var shape = new[] { inChannels };
        Gamma = Param("gamma", shape, gradReq: scale ? GradReq.Write : GradReq.Null, init: new ConstantInit(1));
        Beta = Param("beta", shape, gradReq: center ? GradReq.Write : GradReq.Null, init: new ConstantInit(0));
        RunningMean = Param("running_mean", shape, gradReq: GradReq.Null, init: new ConstantInit(0));
        RunningVar = Param("running_var", shape, gradReq: GradReq.Null, init: new ConstantInit(1));
    }

    /// <summary>The scale.</summary>
    public Parameter Gamma { get; }

    /// <summary>The shift.</summary>
    public Parameter Beta { get; }

    /// <summary>The running mean (an auxiliary state).</summary>
    public Parameter RunningMean { get; }

    /// <summary>The running variance (an auxiliary state).</summary>
    public Parameter RunningVar { get; }

    /// <inheritdoc/>
    protected override NDArray HybridForward(NDArray x)
    {
        var s = x.Shape;
        long ax = _axis < 0 ? _axis + s.Length : _axis;
        if (ax < 0 || ax >= s.Length)
            throw new LoomException(LoomStatus.Shape, $"{Name}: axis {_axis} is outside the input {NDArray.ShapeString(s)}");
        var c = new[] { s[ax] };
        string from = $"the input {NDArray.ShapeString(s)}";
        foreach (var p in new[] { Gamma, Beta, RunningMean, RunningVar }) p.InferShape(c, from);
        var r = Op.BatchNorm(x, Gamma.Data(x.Context), Beta.Data(x.Context), RunningMean.Data(x.Context), RunningVar.Data(x.Context), eps: _eps, momentum: _momentum,
            fixGamma: !_scale, useGlobalStats: _globalStats, axis: _axis);
        return r[0];
    }

    /// <inheritdoc/>
    protected override string Describe() =>
        $"BatchNorm(axis={_axis}, eps={_eps.ToString(CultureInfo.InvariantCulture)}, momentum={_momentum.ToString(CultureInfo.InvariantCulture)}, in_channels={(Gamma.Shape[0] > 0 ? Gamma.Shape[0].ToString(CultureInfo.InvariantCulture) : "None")})";
}

/// <summary>Zeroes a fraction of the inputs in training (scaling the rest), identity in prediction.</summary>
/// <param name="rate">The fraction dropped.</param>
/// <param name="axes">Axes along which the same mask is shared (none when null).</param>
/// <param name="prefix">The prefix.</param>
public sealed class Dropout(double rate, long[]? axes = null, string? prefix = null) : HybridBlock(prefix)
{
    /// <inheritdoc/>
    protected override NDArray HybridForward(NDArray x) => Op.Dropout(x, p: rate, axes: axes)[0];

    /// <inheritdoc/>
    protected override string Describe() => $"Dropout(p = {rate.ToString(CultureInfo.InvariantCulture)})";
}

/// <summary>Looks up rows of a (inputDim, outputDim) table by integer index.</summary>
public sealed class Embedding : HybridBlock
{
    private readonly long _in, _out;

    /// <summary>Creates the table.</summary>
    /// <param name="inputDim">Number of rows (the vocabulary).</param>
    /// <param name="outputDim">Width of each row.</param>
    /// <param name="weightInit">The table's own initializer.</param>
    /// <param name="prefix">The prefix.</param>
    /// <param name="params">Parameters to share.</param>
    public Embedding(long inputDim, long outputDim, Initializer? weightInit = null, string? prefix = null, ParameterDict? @params = null)
        : base(prefix, @params)
    {
        if (inputDim <= 0 || outputDim <= 0)
            throw new LoomException(LoomStatus.InvalidArgument, $"Embedding: inputDim {inputDim} and outputDim {outputDim} must be positive");
        _in = inputDim;
        _out = outputDim;
        Weight = Param("weight", new[] { inputDim, outputDim }, init: weightInit);
    }

    /// <summary>The table.</summary>
    public Parameter Weight { get; }

    /// <inheritdoc/>
    protected override NDArray HybridForward(NDArray x) => Op.Embedding(x, Weight.Data(x.Context), _in, _out);

    /// <inheritdoc/>
    protected override string Describe() => $"Embedding({_in} -> {_out})";
}

/// <summary>Collapses all axes but the first.</summary>
/// <param name="prefix">The prefix.</param>
public sealed class Flatten(string? prefix = null) : HybridBlock(prefix)
{
    /// <inheritdoc/>
    protected override NDArray HybridForward(NDArray x) => Op.Flatten(x);
}

/// <summary>An elementwise activation (relu, sigmoid, tanh, softrelu, softsign).</summary>
/// <param name="activation">The function.</param>
/// <param name="prefix">The prefix.</param>
public sealed class Activation(ActType activation, string? prefix = null) : HybridBlock(prefix)
{
    /// <inheritdoc/>
    protected override string Alias => activation.ToString().ToLowerInvariant();

    /// <inheritdoc/>
    protected override NDArray HybridForward(NDArray x) => Op.Activation(x, activation);

    /// <inheritdoc/>
    protected override string Describe() => $"Activation({activation.ToString().ToLowerInvariant()})";
}

/// <summary>Leaky rectifier: x for x &gt; 0, alpha * x otherwise.</summary>
/// <param name="alpha">The slope below zero.</param>
/// <param name="prefix">The prefix.</param>
public sealed class LeakyReLU(double alpha, string? prefix = null) : HybridBlock(prefix)
{
    /// <inheritdoc/>
    protected override NDArray HybridForward(NDArray x) => Op.LeakyReLU(x, null, LeakyReLUActType.Leaky, slope: alpha)[0];

    /// <inheritdoc/>
    protected override string Describe() => $"LeakyReLU({alpha.ToString(CultureInfo.InvariantCulture)})";
}
