using Loom;
using Loom.Interop;

namespace Loom.Tests;

public class ThreadingTests
{
    [Test]
    public void SeveralThreadsCallingAtOnce()
    {
        using var shared = NDArray.Full(2, new long[] { 128 });
        int bad = 0;
        var threads = Enumerable.Range(0, 8).Select(t => new Thread(() =>
        {
            for (int i = 0; i < 300; i++)
            {
                using var scope = NDArray.Scope();
                var mine = NDArray.Full(t, new long[] { 128 });
                var total = (mine + shared).Sum().Scalar<float>();
                if (total != 128f * (t + 2)) Interlocked.Increment(ref bad);
                try { Imperative.Invoke("no_such_op_" + t, Array.Empty<NDArray>()); }
                catch (LoomException e) when (e.Status == LoomStatus.NotFound && e.Message.Contains("no_such_op_" + t)) { }
            }
        })).ToList();
        threads.ForEach(th => th.Start());
        threads.ForEach(th => th.Join());
        Assert.That(bad, Is.EqualTo(0));
    }

    [Test]
    public void DisposingWhileAnotherThreadUsesTheArrayNeverCrashes()
    {
        for (int round = 0; round < 50; round++)
        {
            var a = NDArray.Ones(1000);
            var user = new Thread(() =>
            {
                for (int i = 0; i < 100; i++)
                {
                    try { using var r = Op.Exp(a); }
                    catch (LoomException e) when (e.Status == LoomStatus.InvalidArgument) { }
                }
            });
            user.Start();
            a.Dispose();
            user.Join();
        }
        Engine.WaitAll();
    }
}
