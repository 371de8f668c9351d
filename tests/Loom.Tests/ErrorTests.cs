using Loom;
using Loom.Interop;

namespace Loom.Tests;

// Every kind of bad input gives a LoomException with a status and a message that
// names the op, the argument and the shapes; nothing crashes.
public class ErrorTests
{
    private DisposeScope _scope = null!;
    [SetUp] public void Begin() => _scope = NDArray.Scope();
    [TearDown] public void End() { _scope.Dispose(); try { Engine.WaitAll(); } catch (LoomException) { } }

    private static LoomException Fails(TestDelegate d, LoomStatus status, params string[] fragments)
    {
        var e = Assert.Throws<LoomException>(d)!;
        Assert.That(e.Status, Is.EqualTo(status), e.Message);
        foreach (var f in fragments) Assert.That(e.Message, Does.Contain(f));
        return e;
    }

    [Test]
    public void WrongShapes() =>
        Fails(() => Op.Add(NDArray.Zeros(2, 3), NDArray.Zeros(4)), LoomStatus.Shape, "add", "(2,3)", "(4,)");

    [Test]
    public void WrongDtypes() =>
        Fails(() => Op.Multiply(NDArray.Zeros(3), NDArray.Zeros(new long[] { 3 }, DType.Float64)),
            LoomStatus.DType, "multiply", "float64", "float32");

    [Test]
    public void ReadingWithTheWrongElementType() =>
        Fails(() => NDArray.Zeros(3).ToArray<double>(), LoomStatus.DType, "float32", "float64");

    [Test]
    public void UnknownOp() =>
        Fails(() => Imperative.Invoke("sofmax", new[] { NDArray.Zeros(2) }), LoomStatus.NotFound, "sofmax", "softmax");

    [Test]
    public void UnknownParameter()
    {
        var p = new OpParams();
        p.Add("axs", 1);
        Fails(() => Imperative.Invoke("sum", new[] { NDArray.Zeros(2) }, p), LoomStatus.InvalidArgument,
            "sum", "unknown parameter 'axs'", "axis");
    }

    [Test]
    public void BadParameterValue()
    {
        var p = new OpParams();
        p.Add("keepdims", "perhaps");
        Fails(() => Imperative.Invoke("sum", new[] { NDArray.Zeros(2) }, p), LoomStatus.InvalidArgument,
            "sum", "keepdims", "perhaps");
        Fails(() => Op.Clip(NDArray.Zeros(2), aMin: 3, aMax: 1), LoomStatus.InvalidArgument, "clip", "a_min");
    }

    [Test]
    public void OutOfRangeAxis() =>
        Fails(() => Op.Softmax(NDArray.Zeros(2, 3), axis: 2), LoomStatus.InvalidArgument, "softmax", "axis=2");

    [Test]
    public void WrongOutputShape() =>
        Fails(() => Op.Add(NDArray.Zeros(3), NDArray.Zeros(3), @out: NDArray.Zeros(2)), LoomStatus.Shape,
            "add", "output 0", "(2,)", "(3,)");

    [Test]
    public void NullInput() =>
        Fails(() => Op.Add(NDArray.Zeros(3), null!), LoomStatus.InvalidArgument, "add", "input 1");

    [Test]
    public void UseAfterDispose()
    {
        var a = NDArray.Zeros(3);
        a.Dispose();
        Fails(() => Op.Exp(a), LoomStatus.InvalidArgument, "exp input 0", "Dispose");
        Fails(() => a.ToArray<float>(), LoomStatus.InvalidArgument, "Dispose");
        Fails(() => _ = a.Shape, LoomStatus.InvalidArgument, "Dispose");
    }

    [Test]
    public void BadViews()
    {
        var a = NDArray.Zeros(4, 3);
        Fails(() => a.Reshape(5), LoomStatus.Shape, "(4,3)", "(5,)");
        Fails(() => _ = a[4], LoomStatus.InvalidArgument, "index 4", "(4,3)");
        Fails(() => a.Slice(3, 9), LoomStatus.InvalidArgument, "[3, 9)");
        Fails(() => a.CopyFrom<float>(new float[5]), LoomStatus.Shape, "48 bytes", "20 bytes");
    }

    [Test]
    public void ContextsParseAndPrint()
    {
        Assert.That(Context.Parse("gpu(1)"), Is.EqualTo(Context.Gpu(1)));
        Assert.That(Context.Parse(" cpu "), Is.EqualTo(Context.Cpu(0)));
        Assert.That(Context.Parse(Context.Cpu(3).ToString()), Is.EqualTo(Context.Cpu(3)));
        foreach (var bad in new[] { "tpu(0)", "gpu(", "gpu(x)", "gpu(-1)", "" })
            Assert.Throws<FormatException>(() => Context.Parse(bad), bad);
    }

    [Test]
    public void UnavailableDevice()
    {
        // This process has no GPU backend (none is built on these machines and
        // LOOM_CUDA_LIBRARY is not set): the error says what was looked for, and where.
        Assume.That(Environment.GetEnvironmentVariable("LOOM_CUDA_LIBRARY"), Is.Null.Or.Empty);
        Assert.That(Backend.GpuCount, Is.EqualTo(0));
        Assert.That(Backend.DeviceCount(DeviceType.Cpu), Is.EqualTo(1));
        Assert.That(Backend.Describe(DeviceType.Gpu), Does.StartWith("gpu: unavailable; looked for ").And.Contain("libloom_cuda.so"));
        Assert.That(Backend.Describe(DeviceType.Cpu), Does.StartWith("cpu: built in"));
        Fails(() => NDArray.Zeros(new long[] { 2 }, DType.Float32, Context.Gpu(0)), LoomStatus.BackendUnavailable,
            "gpu(0)", "no GPU backend is available", "libloom_cuda.so", "LOOM_CUDA_LIBRARY");
        Fails(() => Backend.Load("/nonexistent/libloom_cuda.so"), LoomStatus.BackendUnavailable,
            "/nonexistent/libloom_cuda.so", "No such file");
        Fails(() => Backend.DeviceCount((DeviceType)9), LoomStatus.InvalidArgument, "unknown device type 9");
        Assert.Throws<ArgumentNullException>(() => Backend.Load(null!));
    }

    [Test]
    public void AMissingSystemLibraryIsNamedWithItsPackage()
    {
        // A library that needs an OpenBLAS the system lacks, as libloom does on a machine
        // without libopenblas0: the loader's own message, turned into advice.
        string dir = Path.Combine(Path.GetTempPath(), $"loom_dep_{Environment.ProcessId}");
        Directory.CreateDirectory(dir);
        File.WriteAllText(Path.Combine(dir, "stub.c"), "int stub(void) { return 1; }\n");
        Run("cc", $"-shared -fPIC -o {dir}/libopenblas.so.9 -Wl,-soname,libopenblas.so.9 {dir}/stub.c");
        Run("cc", $"-shared -fPIC -o {dir}/libneedsblas.so {dir}/stub.c -L{dir} -Wl,--no-as-needed -l:libopenblas.so.9");
        File.Delete(Path.Combine(dir, "libopenblas.so.9"));
        var e = Assert.Throws<DllNotFoundException>(() => System.Runtime.InteropServices.NativeLibrary.Load($"{dir}/libneedsblas.so"))!;
        string? hint = NativeLoader.MissingDependencyHint(e.Message);
        Directory.Delete(dir, true);
        Assert.That(hint, Does.Contain("libopenblas.so"));
        Assert.That(hint, Does.Contain("apt-get install -y libopenblas0"));
        Assert.That(NativeLoader.MissingDependencyHint("libfoo.so: cannot open shared object file"), Is.Null);
        foreach (var (lib, package) in new[] { ("libdnnl.so.2", "libdnnl2"), ("libonnx.so.1", "libonnx1"),
                                               ("libonnx_proto.so.1", "libonnx1"), ("libprotobuf.so.32", "libprotobuf32") })
            Assert.That(NativeLoader.MissingDependencyHint($"{lib}: cannot open shared object file: No such file or directory"),
                Does.Contain($"apt-get install -y {package}"));
    }

    private static void Run(string file, string args)
    {
        using var p = System.Diagnostics.Process.Start(new System.Diagnostics.ProcessStartInfo(file, args) { RedirectStandardError = true })!;
        string err = p.StandardError.ReadToEnd();
        p.WaitForExit();
        Assert.That(p.ExitCode, Is.EqualTo(0), err);
    }

    [Test]
    public void AsynchronousFailureSurfacesAtTheWait()
    {
        var rows = NDArray.Ones(4, 3);
        var labels = NDArray.FromArray(new int[] { 0, 1, 9 });
        var taken = Op.Take(rows, labels, mode: TakeMode.Raise);  // pushed fine; fails when it runs
        var derived = Op.Exp(taken);                          // skipped, inherits the failure
        Fails(() => derived.WaitToRead(), LoomStatus.InvalidArgument, "take", "index 9");
        Fails(() => Engine.WaitAll(), LoomStatus.InvalidArgument, "take");
        Assert.DoesNotThrow(Engine.WaitAll);
    }

    [Test]
    public void TruncatedAndCorruptedParamsFiles()
    {
        string path = Path.Combine(Path.GetTempPath(), $"loom_bad_{Environment.ProcessId}.params");
        NDArray.Save(path, new Dictionary<string, NDArray> { ["w"] = NDArray.Ones(4, 4) });
        byte[] good = File.ReadAllBytes(path);
        File.WriteAllBytes(path, good[..(good.Length - 10)]);
        Fails(() => NDArray.Load(path), LoomStatus.Io, path, "truncated");
        byte[] bad = (byte[])good.Clone();
        bad[24] ^= 0xFF;
        File.WriteAllBytes(path, bad);
        Fails(() => NDArray.Load(path), LoomStatus.Io, path, "magic");
        Fails(() => NDArray.Load(path + ".missing"), LoomStatus.Io, "cannot open");
        File.Delete(path);
    }

    [Test]
    public void FailedSaveKeepsTheExistingFile()
    {
        string path = Path.Combine(Path.GetTempPath(), $"loom_keep_{Environment.ProcessId}.params");
        NDArray.Save(path, new[] { NDArray.Ones(3) });
        byte[] before = File.ReadAllBytes(path);
        var failed = Op.Take(NDArray.Ones(2), NDArray.FromArray(new int[] { 7 }), mode: TakeMode.Raise);
        Fails(() => NDArray.Save(path, new[] { NDArray.Ones(3), failed }), LoomStatus.InvalidArgument, "take");
        Assert.That(File.ReadAllBytes(path), Is.EqualTo(before));
        File.Delete(path);
    }
}
