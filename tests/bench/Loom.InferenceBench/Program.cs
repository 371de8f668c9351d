// ResNet-50 v1.5 inference in Loom beside ONNX Runtime, on the same threads: batch-1
// latency and batch-32 throughput, medians of interleaved repetitions. ONNX Runtime runs
// the same architecture exported from PyTorch (tests/bench/export_resnet50_onnx.py); both
// have random weights, which do not change the work. Prints numbers; it is not a test.
// Usage: Loom.InferenceBench MODEL.onnx [THREADS] [REPS]
using System.Diagnostics;
using Loom;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

if (args.Length < 1)
{
    Console.Error.WriteLine("usage: Loom.InferenceBench MODEL.onnx [THREADS] [REPS]");
    return 2;
}
string model = args[0];
int threads = args.Length > 1 ? int.Parse(args[1]) : Environment.ProcessorCount;
int reps = args.Length > 2 ? int.Parse(args[2]) : 5;
int[] batches = { 1, 32 };

Rand.Seed(7);
var modules = new Dictionary<int, (Module mod, NDArray x)>();
foreach (int b in batches)
{
    var mod = new Module(Models.ResNet(50), context: Context.Cpu());
    mod.Bind(new long[] { b, 3, 224, 224 }, null, forTraining: false);
    mod.InitParams(new XavierInit());
    modules[b] = (mod, Rand.Uniform(-1, 1, new long[] { b, 3, 224, 224 }));
}
double LoomSeconds(int b)
{
    var (mod, x) = modules[b];
    var sw = Stopwatch.StartNew();
    mod.Forward(x, null, isTrain: false);
    mod.Output.WaitToRead();
    return sw.Elapsed.TotalSeconds;
}

var options = new SessionOptions
{
    IntraOpNumThreads = threads,
    InterOpNumThreads = 1,
    GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
};
using var session = new InferenceSession(model, options);
string input = session.InputMetadata.Keys.First();
var rng = new Random(7);
var feeds = batches.ToDictionary(b => b, b =>
{
    var t = new DenseTensor<float>(new[] { b, 3, 224, 224 });
    for (int i = 0; i < t.Length; i++) t.SetValue(i, (float)(rng.NextDouble() * 2 - 1));
    return new List<NamedOnnxValue> { NamedOnnxValue.CreateFromTensor(input, t) };
});
double OrtSeconds(int b)
{
    var sw = Stopwatch.StartNew();
    using var r = session.Run(feeds[b]);
    return sw.Elapsed.TotalSeconds;
}

// Warm up both (first calls plan memory, create primitives, JIT), then interleave.
foreach (int b in batches) { LoomSeconds(b); OrtSeconds(b); }
var loom = batches.ToDictionary(b => b, _ => new List<double>());
var ort = batches.ToDictionary(b => b, _ => new List<double>());
for (int r = 0; r < reps; r++)
    foreach (int b in batches)
    {
        loom[b].Add(LoomSeconds(b));
        ort[b].Add(OrtSeconds(b));
    }
double Median(List<double> v) { var s = v.OrderBy(t => t).ToList(); return s[s.Count / 2]; }

Console.WriteLine($"ResNet-50 v1.5 inference, {threads} threads, median of {reps} interleaved runs; Loom's CPU kernels: {Backend.Describe(DeviceType.Cpu)}");
Console.WriteLine($"ONNX Runtime {OrtEnv.Instance().GetVersionString()} ({model})");
const double gflopPerImage = 2 * 4.089184256;  // 2 x multiply-adds, counted in tests/bench/survey.py
double l1 = Median(loom[1]), o1 = Median(ort[1]);
Console.WriteLine($"batch 1 latency:     Loom {l1 * 1e3:F1} ms, ONNX Runtime {o1 * 1e3:F1} ms, Loom/ORT speed {o1 / l1:F2}");
double l32 = Median(loom[32]), o32 = Median(ort[32]);
Console.WriteLine($"batch 32 throughput: Loom {32 / l32:F1} img/s ({32 * gflopPerImage / l32:F0} GFLOP/s), " +
                  $"ONNX Runtime {32 / o32:F1} img/s ({32 * gflopPerImage / o32:F0} GFLOP/s), Loom/ORT speed {o32 / l32:F2}");
foreach (var (mod, x) in modules.Values) { mod.Dispose(); x.Dispose(); }
return 0;
