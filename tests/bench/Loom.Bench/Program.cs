// Imperative call overhead from C#: a 1-element add, end to end through the
// engine (checked, inferred, allocated, pushed, run, output handle wrapped and
// disposed). Prints numbers; it is not a test.
using System.Diagnostics;
using Loom;
using Loom.Interop;

using var a = NDArray.FromArray(new float[] { 1 });
using var b = NDArray.FromArray(new float[] { 2 });

const int batch = 1000, batches = 400;
// Warm up the JIT and the pool.
for (int i = 0; i < 20_000; i++) { using var w = a + b; }
Engine.WaitAll();

var sw = new Stopwatch();
// Microseconds per call for each batch of calls, sorted.
double[] Measure(Action call, bool waitAllPerBatch)
{
    var t = new double[batches];
    for (int r = 0; r < batches; r++)
    {
        sw.Restart();
        for (int i = 0; i < batch; i++) call();
        if (waitAllPerBatch) Engine.WaitAll();
        t[r] = sw.Elapsed.TotalMicroseconds / batch;
    }
    Array.Sort(t);
    return t;
}

var perCall = Measure(() => { using var c = a + b; }, waitAllPerBatch: true);
using (var check = a + b)
    if (check.Scalar<float>() != 3f) throw new Exception("wrong result");
Console.WriteLine($"C# 1-element add, end to end: median {perCall[batches / 2]:F3} us/call, " +
                  $"p10 {perCall[batches / 10]:F3}, p90 {perCall[batches * 9 / 10]:F3} ({batch * batches} calls)");

// The same with a wait after every call (synchronous use, as in a REPL).
var sync = Measure(() => { using var c = a + b; c.WaitToRead(); }, waitAllPerBatch: false);
Console.WriteLine($"C# 1-element add + WaitToRead each call: median {sync[batches / 2]:F3} us/call");

// The raw ABI from C# (no NDArray or SafeHandle objects), to split the cost
// between the native engine and the managed wrapper.
unsafe
{
    OpHandle add = default;
    Imperative.Resolve(ref add, "add");
    nint* ins = stackalloc nint[2];
    bool r1 = false, r2 = false;
    a.Handle.DangerousAddRef(ref r1);
    b.Handle.DangerousAddRef(ref r2);
    ins[0] = a.Handle.DangerousGetHandle();
    ins[1] = b.Handle.DangerousGetHandle();
    var raw = new double[batches];
    for (int r = 0; r < batches; r++)
    {
        sw.Restart();
        for (int i = 0; i < batch; i++)
        {
            nint o = 0;
            LoomNative.loom_imperative_invoke(&o, 1, add, ins, 2, null, null, 0);
            LoomNative.loom_ndarray_free(o);
        }
        raw[r] = sw.Elapsed.TotalMicroseconds / batch;
    }
    a.Handle.DangerousRelease();
    b.Handle.DangerousRelease();
    Array.Sort(raw);
    Console.WriteLine($"C# raw ABI invoke + free (no wrapper objects): median {raw[batches / 2]:F3} us/call");
}
