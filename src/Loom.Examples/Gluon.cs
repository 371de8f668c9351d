// The seed's MLP and LeNet written as C# classes (Loom.Gluon blocks), trained
// imperatively and then hybridized; `mnist-gluon bench` times both against Module.
using System.Diagnostics;
using Loom;
using Loom.Gluon;

// The seed notebook's MLP: 784-128-64-10 with ReLU.
sealed class GluonMlp : HybridBlock
{
    private readonly Dense _fc1, _fc2, _fc3;

    public GluonMlp()
    {
        _fc1 = Register(new Dense(128, ActType.Relu));
        _fc2 = Register(new Dense(64, ActType.Relu));
        _fc3 = Register(new Dense(10));
    }

    protected override NDArray HybridForward(NDArray x) => _fc3.Forward(_fc2.Forward(_fc1.Forward(x)));
}

// LeNet: two tanh convolutions with max pooling, then two dense layers.
sealed class GluonLeNet : HybridBlock
{
    private readonly Conv2D _conv1, _conv2;
    private readonly MaxPool2D _pool1, _pool2;
    private readonly Dense _fc1, _fc2;

    public GluonLeNet()
    {
        _conv1 = Register(new Conv2D(20, new long[] { 5, 5 }, activation: ActType.Tanh));
        _pool1 = Register(new MaxPool2D());
        _conv2 = Register(new Conv2D(50, new long[] { 5, 5 }, activation: ActType.Tanh));
        _pool2 = Register(new MaxPool2D());
        _fc1 = Register(new Dense(500, ActType.Tanh));
        _fc2 = Register(new Dense(10));
    }

    protected override NDArray HybridForward(NDArray x) =>
        _fc2.Forward(_fc1.Forward(_pool2.Forward(_conv2.Forward(_pool1.Forward(_conv1.Forward(x))))));
}

static partial class Mnist
{
    static HybridBlock MakeGluon(string model) => model switch
    {
        "mlp" => new GluonMlp(),
        "lenet" => new GluonLeNet(),
        _ => throw new ArgumentException($"unknown model '{model}'; use mlp or lenet"),
    };

    // ./build.sh run mnist-gluon [mlp|lenet] [epochs]: the same class trained imperatively,
    // then hybridized, from the same seed.
    public static int GluonTrain(string model, int epochs)
    {
        // --kvstore=dist_sync: each rank trains on its part of the data and the Trainer sums
        // the gradients of all ranks; Step is given the batch of all ranks together.
        using var store = KVStoreType is null ? null : KVStore.Create(KVStoreType);
        Store = store;
        int workers = store?.NumWorkers ?? 1;
        if (Iterators(flat: model == "mlp") is not { } iterators) return 1;
        var (train, test) = iterators;
        double last = 0;
        foreach (bool hybrid in new[] { false, true })
        {
            Rand.Seed(42);
            var net = MakeGluon(model);
            net.Initialize(new XavierInit());
            if (hybrid) net.Hybridize();
            var loss = new SoftmaxCrossEntropyLoss();
            var trainer = new Trainer(net.Collect(), new SGD(lr: 0.1, momentum: 0.9, wd: 0.00001), store);
            using var accuracy = new Accuracy();
            Info($"{net.GetType().Name} {(hybrid ? "hybridized" : "imperative")}:");
            if (!hybrid) Console.WriteLine(net);
            var total = Stopwatch.StartNew();
            for (int epoch = 1; epoch <= epochs; epoch++)
            {
                var sw = Stopwatch.StartNew();
                long images = 0;
                accuracy.Reset();
                foreach (var (x, y) in train.Epoch())
                {
                    using var scope = NDArray.Scope();
                    using var batchData = x;
                    using var batchLabel = y;
                    NDArray output;
                    using (Autograd.Record())
                    {
                        output = net.Forward(x);
                        loss.Forward(output, y).Backward();
                    }
                    trainer.Step((int)x.Shape[0] * workers);
                    accuracy.Update(output, y);
                    images += x.Shape[0];
                }
                Engine.WaitAll();
                Info($"epoch {epoch}: train accuracy {accuracy.Get():F4}, {images / sw.Elapsed.TotalSeconds:F0} img/s");
            }
            accuracy.Reset();
            using (Autograd.Predict())
                foreach (var (x, y) in test.Epoch())
                {
                    using var scope = NDArray.Scope();
                    using var batchData = x;
                    using var batchLabel = y;
                    accuracy.Update(net.Forward(x), y);
                }
            last = accuracy.Get();
            Info($"{(hybrid ? "hybridized" : "imperative")}: test accuracy {last:F4} after {epochs} epoch(s), {total.Elapsed.TotalSeconds:F1} s");
            if (hybrid)
            {
                Info($"traced graph: {string.Join(", ", net.CachedSymbol!.ListArguments())}");
                using var sha = System.Security.Cryptography.SHA256.Create();
                foreach (var p in net.Collect().Values)
                {
                    var bytes = p.Data().ToBytes();
                    sha.TransformBlock(bytes, 0, bytes.Length, null, 0);
                }
                sha.TransformFinalBlock(Array.Empty<byte>(), 0, 0);
                Console.WriteLine($"params-sha256={Convert.ToHexString(sha.Hash!).ToLowerInvariant()}");
            }
        }
        Console.WriteLine($"test-accuracy={last:F4}");
        return 0;
    }

    // ./build.sh run mnist-gluon bench [batches]: training img/s of each network written as a
    // class and run imperatively, the same class hybridized, and the same network as a
    // symbol in Module, side by side in one run (batch 100, SGD with momentum). The three
    // take turns, 5 rounds of the given batches each (the MLP runs 10x as many), and the
    // best round counts, so drift of the machine hits all three alike.
    public static int GluonBench(int batches)
    {
        Console.WriteLine($"{"network",-8} {"imperative",11} {"hybridized",11} {"Module",9} {"hybrid/Module",14} {"hybrid/imperative",18}");
        foreach (var model in new[] { "mlp", "lenet" })
        {
            Rand.Seed(1);
            long[] shape = model == "mlp" ? new long[] { 100, 784 } : new long[] { 100, 1, 28, 28 };
            var xs = Enumerable.Range(0, 8).Select(_ => Rand.Uniform(0, 1, shape)).ToArray();
            var ys = Enumerable.Range(0, 8).Select(i => Op.Cast(Rand.Uniform(0, 9.99, new long[] { 100 }), DType.Int32).AsType(DType.Float32)).ToArray();
            Action<int> Gluon(bool hybrid)
            {
                var net = MakeGluon(model);
                net.Initialize(new XavierInit());
                var loss = new SoftmaxCrossEntropyLoss();
                if (hybrid)
                {
                    net.Hybridize();
                    loss.Hybridize();  // the loss is a block too: one graph call instead of its ten ops
                }
                var trainer = new Trainer(net.Collect(), new SGD(lr: 0.01, momentum: 0.9));
                return i =>
                {
                    using var scope = NDArray.Scope();
                    using (Autograd.Record()) loss.Forward(net.Forward(xs[i % 8]), ys[i % 8]).Backward();
                    trainer.Step(100);
                };
            }
            var m = new Module(model == "mlp" ? Models.Mlp() : Models.LeNet());
            m.Bind(shape, new long[] { 100 });
            m.InitParams(new XavierInit());
            m.InitOptimizer(new SGD(lr: 0.01, momentum: 0.9));
            Action<int> moduleStep = i =>
            {
                m.Forward(xs[i % 8], ys[i % 8], true);
                m.Backward();
                m.Update();
            };
            var steps = new[] { Gluon(false), Gluon(true), moduleStep };
            int n = model == "mlp" ? batches * 10 : batches;
            var best = new double[3];
            foreach (var step in steps)
            {
                for (int i = 0; i < 5; i++) step(i);  // warm-up: traces, binds, plans
                Engine.WaitAll();
            }
            for (int round = 0; round < 5; round++)
                for (int k = 0; k < 3; k++)
                {
                    var sw = Stopwatch.StartNew();
                    for (int i = 0; i < n; i++) steps[k](i);
                    Engine.WaitAll();
                    best[k] = Math.Max(best[k], n * 100 / sw.Elapsed.TotalSeconds);
                }
            m.Dispose();
            Console.WriteLine($"{model,-8} {best[0],11:F0} {best[1],11:F0} {best[2],9:F0} {best[1] / best[2],14:F3} {best[1] / best[0],18:F3}");
        }
        Console.WriteLine($"(training images per second, batch 100; best of 5 interleaved rounds of {batches * 10} MLP and {batches} LeNet batches)");
        return 0;
    }
}
