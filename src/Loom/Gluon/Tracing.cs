using System;
using System.Collections.Generic;
using Loom.Interop;

namespace Loom.Gluon;

// The thread's open trace (native loom_trace_*): which parameters have been declared
// as the traced graph's variables, by name.
internal static unsafe class Tracing
{
    [ThreadStatic] private static Dictionary<string, Parameter>? t_declared;

    internal static bool Active => t_declared is not null;

    internal static Dictionary<string, Parameter> Begin()
    {
        LoomException.Check(LoomNative.loom_trace_begin());
        t_declared = new Dictionary<string, Parameter>();
        return t_declared;
    }

    internal static void Input(NDArray array, string name) =>
        LoomException.Check(LoomNative.loom_trace_input(array.Handle, name));

    // A parameter read inside the trace becomes a variable of the graph (once).
    internal static void Declare(Parameter p, NDArray data)
    {
        var d = t_declared;
        if (d is null) return;
        if (d.TryGetValue(p.Name, out var seen))
        {
            if (!ReferenceEquals(seen, p))
                throw new LoomException(LoomStatus.InvalidArgument,
                    $"hybridize: two different parameters are named '{p.Name}'; give the blocks distinct prefixes");
            return;
        }
        Input(data, p.Name);
        d[p.Name] = p;
    }

    internal static Symbol End(NDArray[] heads)
    {
        nint* hs = stackalloc nint[Math.Max(heads.Length, 1)];
        int added = 0;
        try
        {
            for (; added < heads.Length; added++) hs[added] = heads[added].AddRef($"hybridize output {added}");
            LoomException.Check(LoomNative.loom_trace_end(out SymbolHandle h, hs, heads.Length));
            t_declared = null;
            return new Symbol(h);
        }
        finally
        {
            for (int i = 0; i < added; i++) heads[i].Release();
        }
    }

    internal static void Abort()
    {
        t_declared = null;
        LoomNative.loom_trace_abort();
    }

    internal static IDisposable Scope(string prefix)
    {
        if (!Active) return Nothing.Instance;
        LoomException.Check(LoomNative.loom_trace_scope_push(prefix));
        return new Popper();
    }

    // Ops run while paused are not recorded (a parameter initialised in a traced forward).
    internal static IDisposable Pause()
    {
        if (!Active) return Nothing.Instance;
        LoomException.Check(LoomNative.loom_trace_pause(out int prev, 1));
        return new Resumer(prev);
    }

    private sealed class Nothing : IDisposable
    {
        internal static readonly Nothing Instance = new();
        public void Dispose() { }
    }

    private sealed class Popper : IDisposable
    {
        public void Dispose()
        {
            if (Active) LoomNative.loom_trace_scope_pop();
        }
    }

    private sealed class Resumer(int prev) : IDisposable
    {
        public void Dispose()
        {
            if (Active) LoomNative.loom_trace_pause(out _, prev);
        }
    }
}
