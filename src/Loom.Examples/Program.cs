// Runnable examples. `dotnet run -- tour` walks through the imperative API.
using Loom;
using Loom.Interop;

string example = args.Length > 0 ? args[0] : "tour";
switch (example)
{
    case "tour":
        Tour();
        break;
    case "mnist":
        Console.Error.WriteLine("MNIST training needs the symbolic executor and autograd, which are not built yet.");
        return 2;
    default:
        Console.Error.WriteLine($"unknown example '{example}'; available: tour");
        return 2;
}
return 0;

static void Tour()
{
    Console.WriteLine($"Loom engine: {Engine.Kind}, {Engine.CpuWorkers} CPU workers, library {NativeLoader.LoadedFrom ?? "(not loaded yet)"}");
    using var scope = NDArray.Scope();   // everything created below is freed at the end

    // Arrays and arithmetic: every number is computed by the native engine.
    var x = NDArray.FromArray(new float[] { 1, 2, 3, 4, 5, 6 }, 2, 3);
    var y = x * 2.0 + 1.0;
    Console.WriteLine($"x          = {x}");
    Console.WriteLine($"x*2+1      = {y}");
    Console.WriteLine($"row sums   = {x.Sum(1)}");
    Console.WriteLine($"x . x^T    = {x.Dot(x.T)}");
    Console.WriteLine($"softmax(x) = {Op.Softmax(x, axis: -1)}");

    // Broadcasting, comparisons and views that share memory.
    var bias = NDArray.FromArray(new float[] { 10, 20, 30 });
    Console.WriteLine($"x + bias   = {x + bias}");
    Console.WriteLine($"x > 3      = {x > 3.0}");
    var row = x[1];
    Console.WriteLine($"x[1]       = {row}");

    // Seeded random numbers: identical for every thread count and language.
    Rand.Seed(42);
    var w = Rand.Normal(0, 0.01, new long[] { 784, 128 });
    Console.WriteLine($"w          = NDArray{NDArrayShape(w)} mean {w.Mean().Scalar<float>():F5}");

    // Parameters files in MXNet's format.
    string path = Path.Combine(Path.GetTempPath(), "loom-tour.params");
    NDArray.Save(path, new Dictionary<string, NDArray> { ["arg:w"] = w, ["arg:b"] = bias });
    foreach (var (name, arr) in NDArray.Load(path))
        Console.WriteLine($"loaded {name,-6} {NDArrayShape(arr)}");

    // Errors are exceptions that say what went wrong.
    try { _ = x + NDArray.Zeros(4); }
    catch (LoomException e) { Console.WriteLine($"error ({e.Status}): {e.Message}"); }

    var stats = Storage.Stats(Context.Cpu());
    Console.WriteLine($"cpu(0) memory: {stats.BytesInUse} bytes in use, {stats.BytesPooled} pooled, peak {stats.PeakBytesInUse}");
}

static string NDArrayShape(NDArray a) => "(" + string.Join(",", a.Shape) + ")";
