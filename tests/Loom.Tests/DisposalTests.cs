using System.Diagnostics;
using Loom;

namespace Loom.Tests;

// Native memory must stay flat in loops: disposal, scopes and the finalizer net.
public class DisposalTests
{
    private static long InUse()
    {
        Engine.WaitAll();
        return Storage.Stats(Context.Cpu()).BytesInUse;
    }

    // Bytes in use once what earlier tests left to the finalizer is gone.
    private static long Baseline()
    {
        for (int i = 0; i < 2; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
        return InUse();
    }

    [Test]
    public void HundredThousandCreateDisposeCyclesKeepMemoryFlat()
    {
        long before = Baseline();  // arrays an earlier test left to the finalizer are not this test's
        var proc = Process.GetCurrentProcess();
        for (int i = 0; i < 1000; i++) using (var warm = NDArray.Zeros(64)) { }
        GC.Collect();
        proc.Refresh();
        // The process's memory outside the managed heap (whose size the GC sets by the
        // machine's cache sizes): what native leaks would grow.
        long NonManaged() => proc.WorkingSet64 - GC.GetGCMemoryInfo().TotalCommittedBytes;
        long rssBefore = NonManaged();
        for (int i = 0; i < 100_000; i++)
        {
            using var scope = NDArray.Scope();
            var a = NDArray.Zeros(64);
            var b = a + 1.0;
        }
        GC.Collect();
        GC.WaitForPendingFinalizers();
        proc.Refresh();
        Assert.That(InUse(), Is.EqualTo(before), "native bytes in use returned to the baseline");
        Assert.That(NonManaged() - rssBefore, Is.LessThan(64L << 20), "process memory outside the managed heap stayed flat");
    }

    [Test]
    public void ForgottenArraysAreCollectedBecauseTheGCKnowsTheirSize()
    {
        // 2000 x two 1 MiB arrays never disposed: 4 GiB if nothing ran the finalizers.
        // The arrays report their native size to the GC, so collections come as memory
        // is used and the peak stays bounded.
        GC.Collect();
        GC.WaitForPendingFinalizers();
        long peak = 0;
        for (int i = 0; i < 2000; i++)
        {
            var a = NDArray.Ones(256, 1024) * 2.0;
            if (i % 50 == 0) peak = Math.Max(peak, InUse());
            GC.KeepAlive(a);
        }
        Console.WriteLine($"peak native bytes in use: {peak >> 20} MiB");
        GC.Collect();  // leave nothing behind for the next test's baseline
        GC.WaitForPendingFinalizers();
        Engine.WaitAll();
        Assert.That(peak, Is.LessThan(1L << 30), "native memory of undisposed arrays stayed under 1 GiB");
    }

    [Test]
    public void UseAfterDisposeNamesTheScopeAndKeep()
    {
        NDArray escaped;
        using (var scope = NDArray.Scope()) escaped = NDArray.Ones(2);
        var e = Assert.Throws<LoomException>(() => escaped.ToArray<float>())!;
        Assert.That(e.Message, Does.Contain("NDArray.Scope()"));
        Assert.That(e.Message, Does.Contain("scope.Keep(array)"));
        using var longs = NDArray.FromArray(new long[] { 1, 2 }, 2);
        var t = Assert.Throws<LoomException>(() => longs.ToArray<float>())!;
        Assert.That(t.Message, Does.Contain("AsType(DType.Float32)"));
    }

    [Test]
    public void ScopeDisposesItsArraysAndKeepSurvives()
    {
        NDArray kept, dropped;
        using (var outer = NDArray.Scope())
        {
            using (var inner = NDArray.Scope())
            {
                dropped = NDArray.Ones(3);
                kept = inner.Keep(NDArray.Ones(3) * 2.0);
                Assert.That(inner.Count, Is.EqualTo(2)); // Ones(3) temp and dropped
            }
            Assert.That(dropped.IsDisposed);
            Assert.That(kept.IsDisposed, Is.False);
            Assert.That(kept.ToArray<float>(), Is.EqualTo(new float[] { 2, 2, 2 }));
        }
        Assert.That(kept.IsDisposed, "the outer scope took over the kept array");
    }

    [Test]
    public void FinalizerReleasesForgottenArrays()
    {
        long before = Baseline();
        static void Leak()
        {
            for (int i = 0; i < 2000; i++) NDArray.Zeros(256);
        }
        Leak();
        for (int i = 0; i < 3; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
        Assert.That(InUse(), Is.EqualTo(before));
    }

    [Test]
    public void DisposeTwiceIsHarmless()
    {
        var a = NDArray.Ones(2);
        a.Dispose();
        a.Dispose();
        Assert.That(a.IsDisposed);
        Assert.That(a.ToString(), Is.EqualTo("NDArray(disposed)"));
    }
}
