// Runnable examples. With no argument: the seed notebook's MNIST MLP.
//   mnist [epochs]   the seed's symbolic MLP 784-128-64-10 (ReLU), FeedForward with SGD
//                    (lr 0.1, momentum 0.9, wd 1e-5), batch 100
//   lenet [epochs]   LeNet as a symbol (conv 5x5x20, tanh, max-pool, conv 5x5x50, tanh,
//                    max-pool, fc 500, fc 10), trained by a Module
//   mnist-imperative [epochs], lenet-imperative [epochs]
//                    the same networks written with NDArrays and autograd
//   fashion [epochs] LeNet on Fashion-MNIST (Debian's dataset-fashion-mnist, gzip IDX files)
//   resnet [batch] [steps]  ResNet-50 training throughput on random images
//   lstm [epochs] [max characters]  a character LSTM language model (the fused RNN op) on
//                    Debian's fortunes text: validation perplexity, then sampled text
//   mnist-gluon [mlp|lenet] [epochs]  the MLP or LeNet written as a C# class (Loom.Gluon),
//                    trained imperatively, then hybridized; `mnist-gluon bench [batches]`
//                    times imperative, hybridized and Module training side by side
//   tour             a walk through the imperative API
// The training examples take --ctx=gpu(0) (default cpu(0)) to train on another device, and
// the symbolic ones --ctx=cpu(0),cpu(1) (or gpu(0),gpu(1)) to split each batch over several.
using System.Diagnostics;
using Loom;

var ctxArg = args.FirstOrDefault(a => a.StartsWith("--ctx="));
var kvArg = args.FirstOrDefault(a => a.StartsWith("--kvstore="));
var ckptArg = args.FirstOrDefault(a => a.StartsWith("--checkpoint="));
var resumeArg = args.FirstOrDefault(a => a.StartsWith("--resume="));
args = args.Where(a => a != ctxArg && a != kvArg && a != ckptArg && a != resumeArg).ToArray();
Mnist.CheckpointPrefix = ckptArg?["--checkpoint=".Length..];
Mnist.Resume = resumeArg?["--resume=".Length..];
try
{
    var devices = ctxArg is null ? new[] { Context.Cpu() }
        : ctxArg["--ctx=".Length..].Split("),").Select(t => Context.Parse(t.EndsWith(')') ? t : t + ")")).ToArray();
    Mnist.Ctx = devices[0];
    Mnist.Devices = devices;
    Mnist.KVStoreType = kvArg?["--kvstore=".Length..];
}
catch (FormatException e)
{
    Console.Error.WriteLine(e.Message);
    return 2;
}
string example = args.Length > 0 ? args[0] : "mnist";
try
{
    return Run(example, args);
}
catch (LoomException e) when (e.Status == LoomStatus.BackendUnavailable)
{
    Console.Error.WriteLine(e.Message);
    return 3;
}

static int Run(string example, string[] args)
{
switch (example)
{
    case "mnist":
        return Mnist.FitMlp(args.Length > 1 ? int.Parse(args[1]) : 20);
    case "lenet":
        return Mnist.FitLeNet(args.Length > 1 ? int.Parse(args[1]) : 10);
    case "mnist-imperative":
        return Mnist.TrainMlp(args.Length > 1 ? int.Parse(args[1]) : 20);
    case "lenet-imperative":
        return Mnist.TrainLeNet(args.Length > 1 ? int.Parse(args[1]) : 10);
    case "fashion":
        return Mnist.FitFashion(args.Length > 1 ? int.Parse(args[1]) : 10);
    case "dist-check":
        return Mnist.DistCheck(args.Length > 1 ? int.Parse(args[1]) : 4);
    case "checkpoint-stress":
        return Mnist.CheckpointStress(args[1]);
    case "checkpoint-verify":
        return Mnist.CheckpointVerify(args[1]);
    case "memory":
        return Mnist.Memory(args.Length > 1 ? int.Parse(args[1]) : 32);
    case "resnet":
        return Mnist.ResNetSteps(args.Length > 1 ? int.Parse(args[1]) : 16, args.Length > 2 ? int.Parse(args[2]) : 3);
    case "plot":
        return Mnist.Plot(args.Length > 1 ? args[1] : "lenet", args.Length > 2 ? args[2] : null);
    case "lstm":
        return LanguageModel.Train(args.Length > 1 ? int.Parse(args[1]) : 1, args.Length > 2 ? int.Parse(args[2]) : 0);
    case "mnist-gluon":
        if (args.Length > 1 && args[1] == "bench") return Mnist.GluonBench(args.Length > 2 ? int.Parse(args[2]) : 100);
        return Mnist.GluonTrain(args.Length > 1 ? args[1] : "mlp", args.Length > 2 ? int.Parse(args[2]) : 2);
    case "tour":
        Tour.Run();
        return 0;
    default:
        Console.Error.WriteLine($"unknown example '{example}'; available: mnist [epochs], lenet [epochs], memory [batch], fashion [epochs], mnist-imperative [epochs], lenet-imperative [epochs], resnet [batch] [steps], plot [mlp|lenet|resnet] [file.svg], lstm [epochs] [max characters], mnist-gluon [mlp|lenet|bench] [epochs|batches], tour; training examples take --ctx=gpu(0)");
        return 2;
}
}

static partial class Mnist
{
    // The device the training examples run on (--ctx=...).
    public static Context Ctx = Context.Cpu();
    // Every device the symbolic examples train on (--ctx=cpu(0),cpu(1)).
    public static Context[] Devices = { Context.Cpu() };
    // The key-value store of the symbolic examples (--kvstore=dist_sync across processes).
    public static string? KVStoreType;
    static KVStore? Store;
    // --checkpoint=PREFIX saves every 100 batches (rank 0 of a distributed run);
    // --resume=PREFIX,EPOCH starts from such a checkpoint.
    public static string? CheckpointPrefix, Resume;

    // Peak allocator memory of the CPU, and of the training device when it is another.
    static string PeakMemory() =>
        $"peak memory {Storage.Stats(Context.Cpu()).PeakBytesInUse >> 20} MB" +
        (Ctx == Context.Cpu() ? "" : $" (cpu), {Storage.Stats(Ctx).PeakBytesInUse >> 20} MB ({Ctx})");

    static string DataDir(string set)
    {
        var env = Environment.GetEnvironmentVariable("LOOM_DATA_DIR");
        if (!string.IsNullOrEmpty(env)) return Path.Combine(env, set);
        for (var d = new DirectoryInfo(Directory.GetCurrentDirectory()); d != null; d = d.Parent)
            if (Directory.Exists(Path.Combine(d.FullName, "data", set))) return Path.Combine(d.FullName, "data", set);
        return Path.Combine("data", set);
    }

    // An IDX file, plain or gzip-compressed (the reader takes both).
    static string IdxPath(string dir, string name) =>
        File.Exists(Path.Combine(dir, name)) ? Path.Combine(dir, name) : Path.Combine(dir, name + ".gz");

    // Images as float32 (N, 784) in [0, 1]; labels as float32 (N).
    static (NDArray X, NDArray Y) Load(string dir, string prefix)
    {
        using var scope = NDArray.Scope();
        var images = Idx.Read(IdxPath(dir, $"{prefix}-images-idx3-ubyte"));
        var labels = Idx.Read(IdxPath(dir, $"{prefix}-labels-idx1-ubyte"));
        long n = images.Shape[0];
        var pixels = images.AsType(DType.Float32);
        images.Dispose();  // its memory returns as soon as the cast has read it
        Op.DivideScalar(pixels, 255.0, @out: pixels);  // in place: one float copy of the set at a time
        var x = scope.Keep(pixels.Reshape(n, 784));
        var y = scope.Keep(labels.AsType(DType.Float32));
        return (x, y);
    }

    // MNIST's training (shuffled) and test iterators, batch 100; images flat (N, 784)
    // or as (N, 1, 28, 28). Null, with a message, when the data is missing.
    static (NDArrayIter Train, NDArrayIter Test)? Iterators(bool flat, string set = "mnist")
    {
        string dir = DataDir(set);
        if (!File.Exists(IdxPath(dir, "train-images-idx3-ubyte")))
        {
            Console.Error.WriteLine($"{set} not found in {dir}; fetch it with ./build.sh data");
            return null;
        }
        var (trainX, trainY) = Load(dir, "train");
        var (testX, testY) = Load(dir, "t10k");
        (int parts, int part) = Store is { } kv ? (kv.NumWorkers, kv.Rank) : (1, 0);
        if (!flat)
        {
            trainX = trainX.Reshape(-1, 1, 28, 28);
            testX = testX.Reshape(-1, 1, 28, 28);
        }
        if (Ctx != Context.Cpu())  // the data set lives on the device; batches are gathered there
            (trainX, trainY, testX, testY) = (trainX.CopyTo(Ctx), trainY.CopyTo(Ctx), testX.CopyTo(Ctx), testY.CopyTo(Ctx));
        // A distributed run: each worker trains on its part of the data set.
        return (new NDArrayIter(trainX, trainY, 100, shuffle: true, numParts: parts, partIndex: part),
                new NDArrayIter(testX, testY, 100));
    }

    static void Info(string s) => Console.WriteLine("INFO: " + s);

    static NDArray Weight(params long[] shape) => Op.InitXavier(shape: shape).AttachGrad();
    static NDArray Bias(long n) => NDArray.Zeros(n).AttachGrad();

    // The seed notebook, symbolically: @mx.chain becomes a fluent chain.
    public static int FitMlp(int epochs)
    {
        var mlp = Models.Mlp();
        // MXNet.jl's default initializer, as in the seed notebook: uniform in [-0.01, 0.01].
        return Fit(mlp, new UniformInit(0.01), epochs, flat: true);
    }

    public static int FitLeNet(int epochs)
    {
        var lenet = Models.LeNet();
        return Fit(lenet, new XavierInit(), epochs, flat: false);
    }

    // LeNet on Fashion-MNIST: same network, harder data (expect about 0.90).
    public static int FitFashion(int epochs) => Fit(Models.LeNet(), new XavierInit(), epochs, flat: false, set: "fashion-mnist");

    static int Fit(Symbol net, Initializer init, int epochs, bool flat, string set = "mnist")
    {
        Rand.Seed(42);
        using var store = KVStoreType is null ? null : KVStore.Create(KVStoreType);
        Store = store;
        if (Iterators(flat, set) is not { } iterators) return 1;
        var (train, test) = iterators;
        var total = Stopwatch.StartNew();
        int begin = 0;
        FeedForward model;
        if (Resume is { } r)
        {
            var parts = r.Split(',');
            begin = int.Parse(parts[1]);
            model = FeedForward.Load(parts[0], begin, Ctx);
            Info($"resuming from {parts[0]}-{begin:D4}.params");
        }
        else
        {
            model = Devices.Length > 1 ? new FeedForward(net, Devices) : new FeedForward(net, Ctx);
        }
        using var owned = model;
        if (store is not null) Info($"worker {store.Rank} of {store.NumWorkers} ({store.Type})");
        var callbacks = new List<Callback>();
        if (CheckpointPrefix is { } prefix) callbacks.Add(new Snapshot(prefix, 100));
        // The training curves, redrawn after every epoch next to the log (rank 0 only).
        string curves = Path.GetFullPath($"{(set == "mnist" ? "" : set + "-")}{(flat ? "mlp" : "lenet")}-curves.png");
        if (store is null || store.Rank == 0)
            callbacks.Add(new Loom.Plot.TrainingCurves(curves, $"{(flat ? "MLP" : "LeNet")} on {set}", interval: 50));
        model.Module.Fit(train, new SGD(lr: 0.1, momentum: 0.9, wd: 0.00001), epochs, test, init, callbacks,
            beginEpoch: begin, kvstore: store);
        if (store is null || store.Rank == 0) Info($"training curves: {curves}");
        var plan = model.Module.Executor.Memory;
        Info($"Finished training in {total.Elapsed.TotalSeconds:F1} seconds; {PeakMemory()}; " +
             $"executor {plan.PlannedBytes >> 10} KB planned for {plan.UnplannedBytes >> 10} KB of intermediate values");
        Console.WriteLine($"test-accuracy={model.Score(test):F4}");
        Console.WriteLine($"params-sha256={ParamsDigest(model.Module)}");
        return 0;
    }

    // Several devices in one process and several MPI ranks give the same bits: 64
    // samples, one batch per step, split as --ctx devices or as --kvstore=dist_sync
    // ranks (each rank's part is what one device gets); prints a digest of the
    // parameters after `steps` SGD-momentum steps (tests/dist compares them).
    public static int DistCheck(int steps)
    {
        Rand.Seed(3);
        var labels = Op.Cast(Op.RandomUniform(low: 0, high: 3, shape: new long[] { 64 }), DType.Int32).AsType(DType.Float32);
        var x = Op.OneHot(labels.AsType(DType.Int64), depth: 5) * 3.0 + Rand.Normal(0, 0.5, new long[] { 64, 5 });
        var net = Symbol.Variable("data").FullyConnected("fc1", numHidden: 8).Activation("r", ActType.Relu)
            .FullyConnected("fc2", numHidden: 3).SoftmaxOutput("softmax");
        using var store = KVStoreType is null ? null : KVStore.Create(KVStoreType);
        int parts = store?.NumWorkers ?? 1;
        using var iter = new NDArrayIter(x, labels, 64 / parts, numParts: parts, partIndex: store?.Rank ?? 0);
        using var m = new Module(net, Devices);
        Module.Log = _ => { };
        Rand.Seed(5);
        m.Fit(iter, new SGD(lr: 0.1, momentum: 0.9), steps, init: new XavierInit(), kvstore: store);
        Console.WriteLine($"params-sha256={ParamsDigest(m)}");
        return 0;
    }

    // Draws a network of the examples (MXNet's plot_network, natively, rendered by
    // Graphviz) and prints its layer table (print_summary).
    public static int Plot(string name, string? path)
    {
        var (net, shape) = name switch
        {
            "mlp" => (Models.Mlp(), new long[] { 100, 784 }),
            "lenet" => (Models.LeNet(), new long[] { 100, 1, 28, 28 }),
            "resnet" => (Models.ResNet(18, 1000), new long[] { 1, 3, 224, 224 }),
            _ => throw new LoomException(LoomStatus.InvalidArgument, $"plot: unknown network '{name}'; one of mlp, lenet, resnet"),
        };
        var shapes = new Dictionary<string, long[]> { ["data"] = shape };
        path ??= name + ".svg";
        net.Plot(path, shapes, name);
        Console.Write(net.Summary(shapes));
        Info($"wrote {path}");
        return 0;
    }

    // SHA-256 of every parameter's bytes (arguments, then auxiliary states, by name):
    // equal digests mean bit-identical trained models.
    static string ParamsDigest(Module m)
    {
        using var sha = System.Security.Cryptography.SHA256.Create();
        var p = m.GetParams();
        foreach (var (name, w) in p.Args.OrderBy(kv => kv.Key, StringComparer.Ordinal)
                     .Concat(p.Aux.OrderBy(kv => kv.Key, StringComparer.Ordinal)))
        {
            var bytes = w.ToBytes();
            sha.TransformBlock(bytes, 0, bytes.Length, null, 0);
        }
        sha.TransformFinalBlock(Array.Empty<byte>(), 0, 0);
        return Convert.ToHexString(sha.Hash!).ToLowerInvariant();
    }

    // For tests/reliability/checkpoint_kills.sh: saves checkpoint sets (parameters and
    // optimizer states) in a loop, every value of save i equal to i, until killed.
    private static Module CheckpointModule()
    {
        var net = Symbol.Variable("data").FullyConnected("fc1", numHidden: 1024).Activation("r", ActType.Relu)
            .FullyConnected("fc2", numHidden: 10).SoftmaxOutput("softmax");
        var m = new Module(net);
        Module.Log = _ => { };
        m.Bind(new long[] { 8, 784 }, new long[] { 8 });
        m.InitParams();
        return m;
    }

    public static int CheckpointStress(string prefix)
    {
        using var m = CheckpointModule();
        var opt = new SGD(lr: 0.1, momentum: 0.9);
        m.InitOptimizer(opt);
        using (var x = NDArray.Zeros(8, 784)) using (var y = NDArray.Zeros(8))
        using (var it = new NDArrayIter(x, y, 8))
            m.Fit(it, opt, 1);  // one step, so the optimizer holds its momentum arrays
        for (int i = 1; ; i++)
        {
            using var scope = NDArray.Scope();
            var (args, aux) = m.GetParams();
            m.SetParams(args.ToDictionary(kv => kv.Key, kv => NDArray.Full(i, kv.Value.Shape.ToArray())), aux);
            foreach (var (name, a) in opt.States())
                if (!name.StartsWith("t:", StringComparison.Ordinal)) NDArray.Full(i, a.Shape.ToArray()).CopyTo(a);
            m.SaveCheckpoint(prefix, 1, saveOptimizerStates: true);
            Console.WriteLine($"saved {i}");
        }
    }

    // Loads what CheckpointStress left and checks every parameter and state is from one save.
    public static int CheckpointVerify(string prefix)
    {
        using var m = CheckpointModule();
        var opt = new SGD(lr: 0.1, momentum: 0.9);
        m.LoadCheckpoint(prefix, 1, opt);
        var values = new SortedSet<float>();
        foreach (var a in m.GetParams().Args.Values) values.UnionWith(a.ToArray<float>());
        int states = 0;
        foreach (var (name, a) in opt.States())
            if (!name.StartsWith("t:", StringComparison.Ordinal)) { values.UnionWith(a.ToArray<float>()); states++; }
        Console.WriteLine(values.Count == 1 && states == 4 ? $"consistent save {values.Min}" :
            $"MIXED: {states} states, values {string.Join(",", values.Take(5))}");
        return values.Count == 1 && states == 4 ? 0 : 1;
    }

    // Planned memory of Inception-BN at batch n, 3x224x224 (no allocation).
    public static int Memory(int n)
    {
        var net = Models.InceptionBN();
        var shapes = new Dictionary<string, long[]> { ["data"] = new long[] { n, 3, 224, 224 } };
        var reqs = new Dictionary<string, GradReq> { ["data"] = GradReq.Null, ["softmax_label"] = GradReq.Null };
        Console.WriteLine($"Inception-BN, batch {n}, 3x224x224: {net.ListArguments().Length} arguments, {net.ListAuxiliaryStates().Length} auxiliary states");
        Console.WriteLine("mode       unplanned_MB  planned_MB  ratio  buffers/values  in_place  args_MB");
        foreach (bool training in new[] { true, false })
        {
            var m = net.PlanMemory(shapes, training, GradReq.Write, reqs);
            Console.WriteLine($"{(training ? "training " : "inference")}  {m.UnplannedBytes / 1048576.0,12:F1}  {m.PlannedBytes / 1048576.0,10:F1}  " +
                $"{(double)m.PlannedBytes / m.UnplannedBytes,5:F3}  {m.NumBuffers,7}/{m.NumValues,-6}  {m.NumInplace,8}  {m.ArgumentBytes / 1048576.0,7:F1}");
        }
        return 0;
    }

    // ResNet-50 training throughput on random 3x224x224 images: one warm-up step, then
    // `steps` timed SGD-momentum steps of batch `batch` (the same as tests/bench/peer_torch.py resnet).
    public static int ResNetSteps(int batch, int steps)
    {
        Rand.Seed(42);
        using var scope = NDArray.Scope();
        var x = Rand.Uniform(-1, 1, new long[] { batch, 3, 224, 224 }, ctx: Ctx);
        var y = NDArray.FromArray(Enumerable.Range(0, batch).Select(i => (float)(i * 37 % 1000)).ToArray(), batch).CopyTo(Ctx);
        using var mod = new Module(Models.ResNet(50), context: Ctx);
        mod.Bind(new long[] { batch, 3, 224, 224 }, new long[] { batch });
        mod.InitParams(new XavierInit());
        mod.InitOptimizer(new SGD(lr: 0.01, momentum: 0.9, wd: 0.0001));
        void Step()
        {
            using var s = NDArray.Scope();
            mod.Forward(x, y, isTrain: true);
            mod.Backward();
            mod.Update();
        }
        Step();
        Engine.WaitAll();
        var sw = Stopwatch.StartNew();
        for (int i = 0; i < steps; i++) Step();
        Engine.WaitAll();
        double secs = sw.Elapsed.TotalSeconds;
        var plan = mod.Executor.Memory;
        Console.WriteLine($"ResNet-50 training on {Ctx}, batch {batch}: {batch * steps / secs:F1} img/s " +
                          $"({secs / steps:F2} s/step); executor {plan.PlannedBytes >> 20} MB planned for {plan.UnplannedBytes >> 20} MB; {PeakMemory()}");
        return 0;
    }

    public static int TrainMlp(int epochs)
    {
        Rand.Seed(42);
        long[] sizes = { 784, 128, 64, 10 };
        var p = new List<NDArray>();
        // MXNet.jl's default initializer, as in the seed notebook: uniform in [-0.01, 0.01].
        for (int l = 0; l < 3; l++)
        {
            p.Add(Rand.Uniform(-0.01, 0.01, new[] { sizes[l + 1], sizes[l] }).AttachGrad());
            p.Add(Bias(sizes[l + 1]));
        }
        NDArray Forward(NDArray x, NDArray y)
        {
            var h = x;
            for (int l = 0; l < 3; l++)
            {
                h = Op.FullyConnected(h, p[2 * l], p[2 * l + 1], numHidden: sizes[l + 1]);
                if (l < 2) h = Op.Activation(h, actType: ActType.Relu);
            }
            // normalization=batch: gradients are averaged over the batch.
            return Op.SoftmaxOutput(h, y, normalization: Normalization.Batch);
        }
        return Train(p, Forward, epochs, flat: true);
    }

    public static int TrainLeNet(int epochs)
    {
        Rand.Seed(42);
        var p = new List<NDArray>
        {
            Weight(20, 1, 5, 5), Bias(20), Weight(50, 20, 5, 5), Bias(50),
            Weight(500, 800), Bias(500), Weight(10, 500), Bias(10),
        };
        NDArray Forward(NDArray x, NDArray y)
        {
            var h = Op.Convolution(x, p[0], p[1], kernel: new long[] { 5, 5 }, numFilter: 20);
            h = Op.Pooling(Op.Activation(h, actType: ActType.Tanh), kernel: new long[] { 2, 2 }, stride: new long[] { 2, 2 });
            h = Op.Convolution(h, p[2], p[3], kernel: new long[] { 5, 5 }, numFilter: 50);
            h = Op.Pooling(Op.Activation(h, actType: ActType.Tanh), kernel: new long[] { 2, 2 }, stride: new long[] { 2, 2 });
            h = Op.Activation(Op.FullyConnected(h, p[4], p[5], numHidden: 500), actType: ActType.Tanh);
            h = Op.FullyConnected(h, p[6], p[7], numHidden: 10);
            return Op.SoftmaxOutput(h, y, normalization: Normalization.Batch);
        }
        return Train(p, Forward, epochs, flat: false);
    }

    static int Train(List<NDArray> parameters, Func<NDArray, NDArray, NDArray> Forward, int epochs, bool flat)
    {
        if (Iterators(flat) is not { } iterators) return 1;
        var (train, test) = iterators;
        // On another device the parameters move there, and each batch is copied there.
        if (Ctx != Context.Cpu())
            for (int i = 0; i < parameters.Count; i++) parameters[i] = parameters[i].CopyTo(Ctx).AttachGrad();
        (NDArray, NDArray) OnCtx(NDArray x, NDArray y) => x.Context == Ctx ? (x, y) : (x.CopyTo(Ctx), y.CopyTo(Ctx));

        Info($"Start training on [{Ctx}]");
        Info("Initializing parameters...");
        var opt = new SGD(lr: 0.1, momentum: 0.9, wd: 0.00001);
        using var accuracy = new Accuracy();

        double Evaluate(NDArrayIter data)
        {
            accuracy.Reset();
            using var predict = Autograd.Predict();
            foreach (var (bx, by) in data.Epoch())
            {
                using var scope = NDArray.Scope();
                using var batchData = bx;  // freed at once, not when the GC finalizes them
                using var batchLabel = by;
                var (x, y) = OnCtx(bx, by);
                accuracy.Update(Forward(x, y), y);
            }
            return accuracy.Get();
        }

        Info("Start training...");
        var total = Stopwatch.StartNew();
        for (int epoch = 1; epoch <= epochs; epoch++)
        {
            Info($"== Epoch {epoch:D3} ==========");
            var sw = Stopwatch.StartNew();
            accuracy.Reset();
            foreach (var (bx, by) in train.Epoch())
            {
                using var scope = NDArray.Scope();
                using var batchData = bx;
                using var batchLabel = by;
                var (x, y) = OnCtx(bx, by);
                NDArray output;
                using (Autograd.Record()) output = Forward(x, y);
                output.Backward();
                for (int i = 0; i < parameters.Count; i++) opt.Update(i, parameters[i], parameters[i].Grad);
                accuracy.Update(output, y);
            }
            double trainAcc = accuracy.Get();
            Engine.WaitAll();
            double seconds = sw.Elapsed.TotalSeconds;
            Info("## Training summary");
            Info($"          accuracy = {trainAcc:F4}");
            Info($"              time = {seconds:F4} seconds");
            Info("## Validation summary");
            Info($"          accuracy = {Evaluate(test):F4}");
        }
        Info($"Finished training in {total.Elapsed.TotalSeconds:F1} seconds; {PeakMemory()}");
        Console.WriteLine($"test-accuracy={Evaluate(test):F4}");
        return 0;
    }
}

static class Tour
{
    public static void Run()
    {
        Console.WriteLine($"Loom engine: {Engine.Kind}, {Engine.CpuWorkers} CPU workers");
        using var scope = NDArray.Scope();   // everything created below is freed at the end

        // Arrays and arithmetic: every number is computed by the native engine.
        var x = NDArray.FromArray(new float[] { 1, 2, 3, 4, 5, 6 }, 2, 3);
        Console.WriteLine($"x          = {x}");
        Console.WriteLine($"x*2+1      = {x * 2.0 + 1.0}");
        Console.WriteLine($"row sums   = {x.Sum(1)}");
        Console.WriteLine($"x . x^T    = {x.Dot(x.T)}");
        Console.WriteLine($"softmax(x) = {Op.Softmax(x, axis: -1)}");

        // Broadcasting, comparisons and views that share memory.
        var bias = NDArray.FromArray(new float[] { 10, 20, 30 });
        Console.WriteLine($"x + bias   = {x + bias}");
        Console.WriteLine($"x > 3      = {x > 3.0}");
        Console.WriteLine($"x[1]       = {x[1]}");

        // Gradients by recording.
        var w = NDArray.FromArray(new double[] { 1, -2, 3 }).AttachGrad();
        NDArray loss;
        using (Autograd.Record()) loss = Op.Sum(Op.Square(w));
        loss.Backward();
        Console.WriteLine($"d/dw sum(w^2) = {w.Grad}");

        // Seeded random numbers: identical for every thread count and language.
        Rand.Seed(42);
        var r = Rand.Normal(0, 0.01, new long[] { 784, 128 });
        Console.WriteLine($"normal     = NDArray(784,128) mean {r.Mean().Scalar<float>():F5}");

        // Parameters files in MXNet's format.
        string path = Path.Combine(Path.GetTempPath(), "loom-tour.params");
        NDArray.Save(path, new Dictionary<string, NDArray> { ["arg:w"] = r, ["arg:b"] = bias });
        foreach (var (name, arr) in NDArray.Load(path))
            Console.WriteLine($"loaded {name,-6} ({string.Join(",", arr.Shape)})");

        // Errors are exceptions that say what went wrong.
        try { _ = x + NDArray.Zeros(4); }
        catch (LoomException e) { Console.WriteLine($"error ({e.Status}): {e.Message}"); }

        var stats = Storage.Stats(Context.Cpu());
        Console.WriteLine($"cpu(0) memory: {stats.BytesInUse} bytes in use, {stats.BytesPooled} pooled, peak {stats.PeakBytesInUse}");
    }
}
