// ResNet-50 v1.5 inference in Loom beside ONNX Runtime, on the same threads: batch-1
// latency and batch-32 throughput, medians of interleaved repetitions. ONNX Runtime runs
// the architecture exported from PyTorch (tests/bench/export_resnet50_onnx.py, BatchNorm
// folded into the convolutions by the export); Loom runs its own ResNet-50 (Models.ResNet,
// BatchNorm as separate ops, random weights, which do not change the work) and the same
// ONNX file imported (Onnx.Import), whose outputs are checked against ONNX Runtime's.
// Prints numbers; it is not a test.
// Usage: Loom.InferenceBench MODEL.onnx [THREADS] [REPS]   (THREADS other than the cores: set
// LOOM_KERNEL_THREADS to the same count)
// ORT_NOSPIN=1 turns off ONNX Runtime's spinning between its threads' work items
// (session.intra_op.allow_spinning=0): its batch-1 latency then roughly doubles here.
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
// Loom's kernel threads come from LOOM_KERNEL_THREADS (read by libloom when it loads;
// default: the cores): the comparison is only fair when both use the same count.
if (threads != (int.TryParse(Environment.GetEnvironmentVariable("LOOM_KERNEL_THREADS"), out int lt) ? lt
                                                                                               : Environment.ProcessorCount))
{
    Console.Error.WriteLine($"Loom would not use {threads} threads: set LOOM_KERNEL_THREADS={threads} too");
    return 2;
}

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

// One prediction pass of a bound executor.
double Seconds(Executor ex)
{
    var sw = Stopwatch.StartNew();
    ex.Forward(isTrain: false);
    ex.Outputs[0].WaitToRead();
    return sw.Elapsed.TotalSeconds;
}
// `net` bound for prediction at each batch size over Loom's parameters (`args`; `aux`
// too when given) and input.
Dictionary<int, Executor> BindResNet(Symbol net, Func<int, Dictionary<string, NDArray>> args,
                                     Func<int, Dictionary<string, NDArray>>? aux) =>
    batches.ToDictionary(b => b, b =>
    {
        var ex = net.SimpleBind(Context.Cpu(), new Dictionary<string, long[]>
            { ["data"] = new long[] { b, 3, 224, 224 }, ["softmax_label"] = new long[] { b } }, GradReq.Null);
        foreach (var (k, v) in args(b)) v.CopyTo(ex.ArgDict[k]);
        if (aux != null) foreach (var (k, v) in aux(b)) v.CopyTo(ex.AuxDict[k]);
        modules[b].x.CopyTo(ex.ArgDict["data"]);
        return ex;
    });

// Loom's ResNet-50 with its BatchNorms folded into the convolutions (Symbol.FoldBatchNorm).
var (foldedNet, foldedArgs, _, foldedCount) = modules[1].mod.Symbol.FoldBatchNorm(
    modules[1].mod.GetParams().Args, modules[1].mod.GetParams().Aux);
var foldedExec = BindResNet(foldedNet, _ => foldedArgs, null);
double FoldedSeconds(int b) => Seconds(foldedExec[b]);

// Loom's ResNet-50 with every convolution marked for Winograd (__winograd__, what
// LOOM_CONV_WINOGRAD=1 does for all): a Winograd algorithm (oneDNN's with AVX-512,
// Loom's F(2x2,3x3) elsewhere) runs the 3x3 stride-1 ones on images of 14x14 or
// more; same parameters as Loom's.
Symbol winoNet;
using (Symbol.AttrScope(("__winograd__", "True"))) winoNet = Models.ResNet(50);
var winoExec = BindResNet(winoNet, b => modules[b].mod.GetParams().Args, b => modules[b].mod.GetParams().Aux);
double WinogradSeconds(int b) => Seconds(winoExec[b]);

// Loom's ResNet-50 with oneDNN's relu (__onednn_relu__, what LOOM_EXEC_RELU=onednn does
// for all): each fused convolution's relu is oneDNN's last post-op, in registers, where
// NaN gives 0 (MXNet's oneDNN builds), instead of Loom's pass over each piece of the
// output, where NaN passes through (MXNet's reference relu); same parameters as Loom's.
Symbol reluNet;
using (Symbol.AttrScope(("__onednn_relu__", "True"))) reluNet = Models.ResNet(50);
var reluExec = BindResNet(reluNet, b => modules[b].mod.GetParams().Args, b => modules[b].mod.GetParams().Aux);
double ReluSeconds(int b) => Seconds(reluExec[b]);

// The ONNX file imported: one executor per batch size over the imported parameters.
var imported = Onnx.Import(model);
var importedExec = batches.ToDictionary(b => b, b =>
{
    var ex = imported.Symbol.SimpleBind(Context.Cpu(),
        new Dictionary<string, long[]> { [imported.Inputs[0].Name] = new long[] { b, 3, 224, 224 } }, GradReq.Null);
    foreach (var (k, v) in imported.ArgParams) v.CopyTo(ex.ArgDict[k]);
    foreach (var (k, v) in imported.AuxParams) v.CopyTo(ex.AuxDict[k]);
    return ex;
});
double ImportedSeconds(int b) => Seconds(importedExec[b]);

var options = new SessionOptions
{
    IntraOpNumThreads = threads,
    InterOpNumThreads = 1,
    GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
};
if (Environment.GetEnvironmentVariable("ORT_NOSPIN") == "1")
    options.AddSessionConfigEntry("session.intra_op.allow_spinning", "0");
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

// The imported model on ONNX Runtime's batch-1 input computes ONNX Runtime's output.
{
    var t = (DenseTensor<float>)feeds[1][0].Value;
    importedExec[1].ArgDict[imported.Inputs[0].Name].CopyFrom<float>(t.Buffer.Span);
    importedExec[1].Forward(isTrain: false);
    var mine = importedExec[1].Outputs[0].ToArray<float>();
    using var r = session.Run(feeds[1]);
    var theirs = r.First().AsEnumerable<float>().ToArray();
    double scale = theirs.Max(v => Math.Abs((double)v));
    double err = mine.Zip(theirs, (p, q) => Math.Abs((double)p - q)).Max() / scale;
    Console.WriteLine($"imported model vs ONNX Runtime, batch 1: max |difference| / max |output| = {err:g3}");
    if (!(err < 1e-4)) { Console.Error.WriteLine("the imported model disagrees with ONNX Runtime"); return 1; }
}

// Warm up both (first calls plan memory, create primitives, JIT), then interleave.
foreach (int b in batches)
{
    LoomSeconds(b); FoldedSeconds(b); WinogradSeconds(b); ReluSeconds(b); ImportedSeconds(b); OrtSeconds(b);
}
var loom = batches.ToDictionary(b => b, _ => new List<double>());
var imp = batches.ToDictionary(b => b, _ => new List<double>());
var fold = batches.ToDictionary(b => b, _ => new List<double>());
var wino = batches.ToDictionary(b => b, _ => new List<double>());
var relu = batches.ToDictionary(b => b, _ => new List<double>());
var ort = batches.ToDictionary(b => b, _ => new List<double>());
// ONNX Runtime's threads spin for a while after a run and would slow whatever runs next:
// each measurement starts after a pause, and the order rotates between repetitions.
var runs = new (Func<int, double> run, Dictionary<int, List<double>> into)[]
    { (LoomSeconds, loom), (FoldedSeconds, fold), (WinogradSeconds, wino), (ReluSeconds, relu), (ImportedSeconds, imp),
      (OrtSeconds, ort) };
for (int r = 0; r < reps; r++)
    foreach (int b in batches)
        for (int k = 0; k < runs.Length; k++)
        {
            var (run, into) = runs[(k + r) % runs.Length];
            Thread.Sleep(50);
            into[b].Add(run(b));
        }
double Median(List<double> v) { var s = v.OrderBy(t => t).ToList(); return s[s.Count / 2]; }

Console.WriteLine($"ResNet-50 v1.5 inference, {threads} threads, median of {reps} interleaved runs; Loom's CPU kernels: {Backend.Describe(DeviceType.Cpu)}");
Console.WriteLine($"ONNX Runtime {OrtEnv.Instance().GetVersionString()} ({model})");
const double gflopPerImage = 2 * 4.089184256;  // 2 x multiply-adds, counted in tests/bench/survey.py
double l1 = Median(loom[1]), f1 = Median(fold[1]), w1 = Median(wino[1]), r1 = Median(relu[1]), i1 = Median(imp[1]),
    o1 = Median(ort[1]);
Console.WriteLine($"Loom's ResNet-50 with BatchNorm folded ({foldedCount} BatchNorms, Symbol.FoldBatchNorm), " +
                  "with Winograd (__winograd__ / LOOM_CONV_WINOGRAD=1), and with oneDNN's relu " +
                  "(__onednn_relu__ / LOOM_EXEC_RELU=onednn: NaN gives 0)");
Console.WriteLine($"batch 1 latency:     Loom {l1 * 1e3:F1} ms, BatchNorm folded {f1 * 1e3:F1} ms, " +
                  $"Winograd {w1 * 1e3:F1} ms, oneDNN relu {r1 * 1e3:F1} ms, " +
                  $"Loom on the imported ONNX file {i1 * 1e3:F1} ms, " +
                  $"ONNX Runtime {o1 * 1e3:F1} ms; Loom/ORT speed {o1 / l1:F2}, folded {o1 / f1:F2}, " +
                  $"Winograd {o1 / w1:F2}, oneDNN relu {o1 / r1:F2}, imported {o1 / i1:F2}");
double l32 = Median(loom[32]), f32 = Median(fold[32]), w32 = Median(wino[32]), r32 = Median(relu[32]),
    i32 = Median(imp[32]), o32 = Median(ort[32]);
Console.WriteLine($"batch 32 throughput: Loom {32 / l32:F1} img/s ({32 * gflopPerImage / l32:F0} GFLOP/s), " +
                  $"BatchNorm folded {32 / f32:F1} img/s, Winograd {32 / w32:F1} img/s, " +
                  $"oneDNN relu {32 / r32:F1} img/s, imported {32 / i32:F1} img/s, ONNX Runtime {32 / o32:F1} img/s " +
                  $"({32 * gflopPerImage / o32:F0} GFLOP/s); Loom/ORT speed {o32 / l32:F2}, folded {o32 / f32:F2}, " +
                  $"Winograd {o32 / w32:F2}, oneDNN relu {o32 / r32:F2}, imported {o32 / i32:F2}");
foreach (var (mod, x) in modules.Values) { mod.Dispose(); x.Dispose(); }
foreach (var ex in importedExec.Values) ex.Dispose();
foreach (var ex in foldedExec.Values) ex.Dispose();
foreach (var ex in winoExec.Values) ex.Dispose();
foreach (var ex in reluExec.Values) ex.Dispose();
return 0;
