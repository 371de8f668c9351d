namespace Loom;

/// <summary>Reference network definitions (the seeds' MLP, LeNet, AlexNet and Inception-BN; ResNet).</summary>
public static class Models
{
    /// <summary>The seed notebook's MLP: 784-128-64-10 with ReLU and a softmax output.</summary>
    /// <returns>The symbol, ending in SoftmaxOutput.</returns>
    public static Symbol Mlp() => Symbol.Variable("data")
        .FullyConnected("fc1", numHidden: 128).Activation("relu1", ActType.Relu)
        .FullyConnected("fc2", numHidden: 64).Activation("relu2", ActType.Relu)
        .FullyConnected("fc3", numHidden: 10)
        .SoftmaxOutput("softmax");

    /// <summary>LeNet: conv 5x5x20, tanh, max-pool 2, conv 5x5x50, tanh, max-pool 2, fc 500 tanh, fc 10.</summary>
    /// <returns>The symbol, ending in SoftmaxOutput.</returns>
    public static Symbol LeNet() => Symbol.Variable("data")
        .Convolution("conv1", kernel: new long[] { 5, 5 }, numFilter: 20).Activation("tanh1", ActType.Tanh)
        .Pooling("pool1", kernel: new long[] { 2, 2 }, stride: new long[] { 2, 2 }, poolType: PoolType.Max)
        .Convolution("conv2", kernel: new long[] { 5, 5 }, numFilter: 50).Activation("tanh2", ActType.Tanh)
        .Pooling("pool2", kernel: new long[] { 2, 2 }, stride: new long[] { 2, 2 }, poolType: PoolType.Max)
        .Flatten("flatten")
        .FullyConnected("fc1", numHidden: 500).Activation("tanh3", ActType.Tanh)
        .FullyConnected("fc2", numHidden: 10)
        .SoftmaxOutput("softmax");

    /// <summary>AlexNet (Krizhevsky et al. 2012, single tower) for 3x224x224 images, with LRN
    /// after the first two convolutions and dropout 0.5 before the two 4096-unit layers.</summary>
    /// <returns>The symbol, ending in SoftmaxOutput.</returns>
    /// <param name="classes">The number of classes.</param>
    public static Symbol AlexNet(int classes = 1000)
    {
        long[] K(long k) => new[] { k, k };
        return Symbol.Variable("data")
            .Convolution("conv1", kernel: K(11), numFilter: 96, stride: K(4)).Activation("relu1", ActType.Relu)
            .LRN("norm1", nsize: 5, alpha: 1e-4, beta: 0.75, knorm: 2)
            .Pooling("pool1", kernel: K(3), stride: K(2), poolType: PoolType.Max)
            .Convolution("conv2", kernel: K(5), numFilter: 256, pad: K(2)).Activation("relu2", ActType.Relu)
            .LRN("norm2", nsize: 5, alpha: 1e-4, beta: 0.75, knorm: 2)
            .Pooling("pool2", kernel: K(3), stride: K(2), poolType: PoolType.Max)
            .Convolution("conv3", kernel: K(3), numFilter: 384, pad: K(1)).Activation("relu3", ActType.Relu)
            .Convolution("conv4", kernel: K(3), numFilter: 384, pad: K(1)).Activation("relu4", ActType.Relu)
            .Convolution("conv5", kernel: K(3), numFilter: 256, pad: K(1)).Activation("relu5", ActType.Relu)
            .Pooling("pool3", kernel: K(3), stride: K(2), poolType: PoolType.Max)
            .Flatten("flatten")
            .FullyConnected("fc1", numHidden: 4096).Activation("relu6", ActType.Relu).Dropout("dropout1", p: 0.5)
            .FullyConnected("fc2", numHidden: 4096).Activation("relu7", ActType.Relu).Dropout("dropout2", p: 0.5)
            .FullyConnected("fc3", numHidden: classes)
            .SoftmaxOutput("softmax");
    }

    private static Symbol ConvFactory(Symbol data, long filters, long k, long stride, long pad, string name) => data
        .Convolution("conv_" + name, kernel: new[] { k, k }, numFilter: filters, stride: new[] { stride, stride }, pad: new[] { pad, pad })
        .BatchNorm("bn_" + name, fixGamma: false, eps: 1e-5, momentum: 0.9)
        .Activation("relu_" + name, ActType.Relu);

    private static Symbol InceptionA(Symbol data, long n1, long n3r, long n3, long nd3r, long nd3, PoolType pool, long proj, string name)
    {
        var c1 = ConvFactory(data, n1, 1, 1, 0, name + "_1x1");
        var c3 = ConvFactory(ConvFactory(data, n3r, 1, 1, 0, name + "_3x3_reduce"), n3, 3, 1, 1, name + "_3x3");
        var cd = ConvFactory(data, nd3r, 1, 1, 0, name + "_double_3x3_reduce");
        cd = ConvFactory(ConvFactory(cd, nd3, 3, 1, 1, name + "_double_3x3_0"), nd3, 3, 1, 1, name + "_double_3x3_1");
        var pooled = data.Pooling($"{pool.ToString().ToLowerInvariant()}_pool_{name}_pool", kernel: new long[] { 3, 3 },
            stride: new long[] { 1, 1 }, pad: new long[] { 1, 1 }, poolType: pool);
        var cp = ConvFactory(pooled, proj, 1, 1, 0, name + "_proj");
        return Sym.Concat($"ch_concat_{name}_chconcat", new[] { c1, c3, cd, cp }, numArgs: 4);
    }

    private static Symbol InceptionB(Symbol data, long n3r, long n3, long nd3r, long nd3, string name)
    {
        var c3 = ConvFactory(ConvFactory(data, n3r, 1, 1, 0, name + "_3x3_reduce"), n3, 3, 2, 1, name + "_3x3");
        var cd = ConvFactory(data, nd3r, 1, 1, 0, name + "_double_3x3_reduce");
        cd = ConvFactory(ConvFactory(cd, nd3, 3, 1, 1, name + "_double_3x3_0"), nd3, 3, 2, 1, name + "_double_3x3_1");
        var pooled = data.Pooling($"max_pool_{name}_pool", kernel: new long[] { 3, 3 }, stride: new long[] { 2, 2 },
            pad: new long[] { 1, 1 }, poolType: PoolType.Max);
        return Sym.Concat($"ch_concat_{name}_chconcat", new[] { c3, cd, pooled }, numArgs: 3);
    }

    // conv (no bias) -> BatchNorm, optionally -> relu: ResNet's unit of work.
    private static Symbol ConvBn(Symbol data, long filters, long k, long stride, string name, bool relu)
    {
        var x = data
            .Convolution(name, kernel: new[] { k, k }, numFilter: filters, stride: new[] { stride, stride },
                pad: new[] { k / 2, k / 2 }, noBias: true)
            .BatchNorm(name + "_bn", fixGamma: false, eps: 1e-5, momentum: 0.9);
        return relu ? x.Activation(name + "_relu", ActType.Relu) : x;
    }

    /// <summary>ResNet v1 as a network of blocks (<see cref="Gluon.ResNetV1"/>, MXNet Gluon's
    /// model zoo): depth 18 or 34 with <see cref="Gluon.BasicBlockV1"/>, 50, 101 or 152 with
    /// <see cref="Gluon.BottleneckV1"/>, named as MXNet names them (<c>resnetv10_stage1_conv0_weight</c>).
    /// Train it imperatively or after <c>Hybridize()</c>; <c>Export</c> writes a Module checkpoint.</summary>
    /// <param name="depth">The number of layers (18, 34, 50, 101 or 152).</param>
    /// <param name="classes">The number of classes.</param>
    /// <param name="thumbnail">A 3x3 stem without pooling, for 32x32 images.</param>
    /// <returns>The block, uninitialised.</returns>
    /// <exception cref="LoomException">Another depth.</exception>
    public static Gluon.ResNetV1 ResNetBlock(int depth = 50, int classes = 1000, bool thumbnail = false) => depth switch
    {
        18 => Gluon.Vision.ResNet18V1(classes, thumbnail),
        34 => Gluon.Vision.ResNet34V1(classes, thumbnail),
        50 => Gluon.Vision.ResNet50V1(classes, thumbnail),
        101 => Gluon.Vision.ResNet101V1(classes, thumbnail),
        152 => Gluon.Vision.ResNet152V1(classes, thumbnail),
        _ => throw new LoomException(LoomStatus.InvalidArgument, $"ResNetBlock: depth {depth} is not one of 18, 34, 50, 101, 152"),
    };

    /// <summary>ResNet (He et al. 2016) for 3x224x224 images, as torchvision builds it
    /// ("v1.5": a bottleneck's stride is on its 3x3 convolution): depth 18 or 34 with basic
    /// blocks, 50, 101 or 152 with bottlenecks. A projection (1x1 conv + BatchNorm) joins
    /// a unit whose shape changes. ResNet-50 has 25,557,032 parameters, as torchvision's.</summary>
    /// <param name="depth">The number of layers (18, 34, 50, 101 or 152).</param>
    /// <returns>The symbol, ending in SoftmaxOutput.</returns>
    /// <param name="classes">The number of classes.</param>
    public static Symbol ResNet(int depth = 50, long classes = 1000)
    {
        int[] units = depth switch
        {
            18 => new[] { 2, 2, 2, 2 },
            34 or 50 => new[] { 3, 4, 6, 3 },
            101 => new[] { 3, 4, 23, 3 },
            152 => new[] { 3, 8, 36, 3 },
            _ => throw new System.ArgumentOutOfRangeException(nameof(depth), depth, "ResNet depth must be 18, 34, 50, 101 or 152"),
        };
        bool bottleneck = depth >= 50;
        long expansion = bottleneck ? 4 : 1;
        var x = ConvBn(Symbol.Variable("data"), 64, 7, 2, "conv0", relu: true)
            .Pooling("pool0", kernel: new long[] { 3, 3 }, stride: new long[] { 2, 2 }, pad: new long[] { 1, 1 }, poolType: PoolType.Max);
        long channels = 64;
        for (int stage = 0; stage < 4; stage++)
        {
            long width = 64L << stage, outChannels = width * expansion;
            for (int u = 0; u < units[stage]; u++)
            {
                string name = $"stage{stage + 1}_unit{u + 1}";
                long stride = stage > 0 && u == 0 ? 2 : 1;
                Symbol body = bottleneck
                    ? ConvBn(ConvBn(ConvBn(x, width, 1, 1, name + "_conv1", true), width, 3, stride, name + "_conv2", true),
                        outChannels, 1, 1, name + "_conv3", false)
                    : ConvBn(ConvBn(x, width, 3, stride, name + "_conv1", true), width, 3, 1, name + "_conv2", false);
                Symbol shortcut = stride != 1 || channels != outChannels
                    ? ConvBn(x, outChannels, 1, stride, name + "_sc", false)
                    : x;
                x = Sym.ElementWiseSum(name + "_sum", new[] { body, shortcut }).Activation(name + "_relu", ActType.Relu);
                channels = outChannels;
            }
        }
        return x.Pooling("pool1", globalPool: true, kernel: new long[] { 7, 7 }, poolType: PoolType.Avg)
            .Flatten("flatten")
            .FullyConnected("fc1", numHidden: classes)
            .SoftmaxOutput("softmax");
    }

    /// <summary>Inception-BN (GoogLeNet with batch normalisation) for 3x224x224 images,
    /// as in MXNet's image-classification examples.</summary>
    /// <param name="numClasses">The number of classes.</param>
    /// <returns>The symbol, ending in SoftmaxOutput.</returns>
    public static Symbol InceptionBN(long numClasses = 1000)
    {
        var data = Symbol.Variable("data");
        var x = ConvFactory(data, 64, 7, 2, 3, "1")
            .Pooling("pool_1", kernel: new long[] { 3, 3 }, stride: new long[] { 2, 2 }, poolType: PoolType.Max);
        x = ConvFactory(ConvFactory(x, 64, 1, 1, 0, "2_red"), 192, 3, 1, 1, "2")
            .Pooling("pool_2", kernel: new long[] { 3, 3 }, stride: new long[] { 2, 2 }, poolType: PoolType.Max);
        x = InceptionA(x, 64, 64, 64, 64, 96, PoolType.Avg, 32, "3a");
        x = InceptionA(x, 64, 64, 96, 64, 96, PoolType.Avg, 64, "3b");
        x = InceptionB(x, 128, 160, 64, 96, "3c");
        x = InceptionA(x, 224, 64, 96, 96, 128, PoolType.Avg, 128, "4a");
        x = InceptionA(x, 192, 96, 128, 96, 128, PoolType.Avg, 128, "4b");
        x = InceptionA(x, 160, 128, 160, 128, 160, PoolType.Avg, 128, "4c");
        x = InceptionA(x, 96, 128, 192, 160, 192, PoolType.Avg, 128, "4d");
        x = InceptionB(x, 128, 192, 192, 256, "4e");
        x = InceptionA(x, 352, 192, 320, 160, 224, PoolType.Avg, 128, "5a");
        x = InceptionA(x, 352, 192, 320, 192, 224, PoolType.Max, 128, "5b");
        return x.Pooling("global_pool", kernel: new long[] { 7, 7 }, stride: new long[] { 1, 1 }, poolType: PoolType.Avg)
            .Flatten("flatten")
            .FullyConnected("fc1", numHidden: numClasses)
            .SoftmaxOutput("softmax");
    }
}
