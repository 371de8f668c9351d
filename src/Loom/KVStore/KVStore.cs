using System;
using System.Collections.Generic;
using System.Globalization;
using System.Linq;
using System.Runtime.InteropServices;
using Loom.Interop;

namespace Loom;

/// <summary>MXNet's key-value store: arrays by key, summed when pushed and copied out
/// when pulled, used to synchronise parameters across devices. <c>local</c> adds the
/// pushed values on the CPU, <c>device</c> on the device of the lowest-numbered value;
/// values pushed for one key are added in a fixed order (device, then push order), so
/// results never depend on timing. Operations are asynchronous, like operators.</summary>
public sealed unsafe class KVStore : IDisposable
{
    private readonly KvstoreHandle _handle;

    private KVStore(KvstoreHandle h) => _handle = h;

    /// <summary>Creates a store.</summary>
    /// <param name="type"><c>local</c> or <c>device</c>; the <c>dist_*</c> types work across
    /// processes and need the MPI plugin.</param>
    /// <returns>The store; dispose it when done.</returns>
    /// <exception cref="LoomException">An unknown type, or a dist type without the MPI plugin.</exception>
    public static KVStore Create(string type = "local")
    {
        ArgumentNullException.ThrowIfNull(type);
        LoomException.Check(LoomNative.loom_kvstore_create(out KvstoreHandle h, type));
        return new KVStore(h);
    }

    private KvstoreHandle Handle => _handle.IsClosed
        ? throw new LoomException(LoomStatus.InvalidArgument, "this KVStore was used after Dispose()")
        : _handle;

    /// <summary>The store's type, such as <c>local</c>.</summary>
    public string Type
    {
        get
        {
            LoomException.Check(LoomNative.loom_kvstore_get_type(out nint p, Handle));
            return Marshal.PtrToStringUTF8(p)!;
        }
    }

    /// <summary>This process's rank among the workers (0 in one process).</summary>
    public int Rank
    {
        get
        {
            LoomException.Check(LoomNative.loom_kvstore_get_rank(out int r, Handle));
            return r;
        }
    }

    /// <summary>The number of worker processes (1 in one process).</summary>
    public int NumWorkers
    {
        get
        {
            LoomException.Check(LoomNative.loom_kvstore_get_num_workers(out int n, Handle));
            return n;
        }
    }

    private static string Key(int key) => key.ToString(CultureInfo.InvariantCulture);

    private delegate LoomStatus ArrayCall(int n, string[] keys, nint* arrays);

    // Calls the native function with the handles of `arrays`, kept alive for the call.
    private static void WithHandles(IReadOnlyList<string> keys, IReadOnlyList<NDArray> arrays, string what, ArrayCall f)
    {
        ArgumentNullException.ThrowIfNull(keys);
        ArgumentNullException.ThrowIfNull(arrays);
        if (keys.Count != arrays.Count)
            throw new LoomException(LoomStatus.InvalidArgument, $"KVStore.{what}: {keys.Count} keys but {arrays.Count} arrays");
        var h = new nint[arrays.Count];
        int held = 0;
        try
        {
            for (; held < arrays.Count; held++) h[held] = arrays[held].AddRef($"KVStore.{what}");
            fixed (nint* p = h) LoomException.Check(f(h.Length, keys.ToArray(), p));
        }
        finally
        {
            for (int i = 0; i < held; i++) arrays[i].Release();
        }
    }

    /// <summary>Stores a copy of each value under its key.</summary>
    /// <param name="keys">The keys, one per value; a key may be initialised once.</param>
    /// <param name="values">The initial values.</param>
    /// <exception cref="LoomException">A key is already initialised.</exception>
    public void Init(IReadOnlyList<string> keys, IReadOnlyList<NDArray> values) =>
        WithHandles(keys, values, "Init", (n, k, p) => LoomNative.loom_kvstore_init(Handle, n, k, p));

    /// <summary>Stores a copy of <paramref name="value"/> under <paramref name="key"/>.</summary>
    /// <param name="key">The key.</param>
    /// <param name="value">The initial value.</param>
    public void Init(string key, NDArray value) => Init(new[] { key }, new[] { value });

    /// <summary>Stores a copy of <paramref name="value"/> under an integer key (MXNet's int keys).</summary>
    /// <param name="key">The key.</param>
    /// <param name="value">The initial value.</param>
    public void Init(int key, NDArray value) => Init(Key(key), value);

    /// <summary>Pushes values; those given for one key (one per device) are summed, and the
    /// sum replaces the key's value, or is the gradient the optimizer set by
    /// <see cref="SetOptimizer"/> applies.</summary>
    /// <param name="keys">The keys, one per value; a key may repeat.</param>
    /// <param name="values">The values.</param>
    /// <exception cref="LoomException">A key was never initialised, or a value's shape or dtype differs from its key's; nothing is pushed.</exception>
    public void Push(IReadOnlyList<string> keys, IReadOnlyList<NDArray> values) =>
        WithHandles(keys, values, "Push", (n, k, p) => LoomNative.loom_kvstore_push(Handle, n, k, p, 0));

    /// <summary>Pushes several values (one per device) for one key; they are summed.</summary>
    /// <param name="key">The key.</param>
    /// <param name="values">The values.</param>
    public void Push(string key, params NDArray[] values) => Push(Enumerable.Repeat(key, values.Length).ToArray(), values);

    /// <summary>Pushes several values for an integer key.</summary>
    /// <param name="key">The key.</param>
    /// <param name="values">The values.</param>
    public void Push(int key, params NDArray[] values) => Push(Key(key), values);

    /// <summary>Copies each key's value into the output given for it.</summary>
    /// <param name="keys">The keys, one per output; a key may repeat (one output per device).</param>
    /// <param name="outs">The arrays to write.</param>
    /// <exception cref="LoomException">A key was never initialised, or an output's shape or dtype differs.</exception>
    public void Pull(IReadOnlyList<string> keys, IReadOnlyList<NDArray> outs) =>
        WithHandles(keys, outs, "Pull", (n, k, p) => LoomNative.loom_kvstore_pull(Handle, n, k, p, 0));

    /// <summary>Copies a key's value into every output (one per device).</summary>
    /// <param name="key">The key.</param>
    /// <param name="outs">The arrays to write.</param>
    public void Pull(string key, params NDArray[] outs) => Pull(Enumerable.Repeat(key, outs.Length).ToArray(), outs);

    /// <summary>Copies an integer key's value into every output.</summary>
    /// <param name="key">The key.</param>
    /// <param name="outs">The arrays to write.</param>
    public void Pull(int key, params NDArray[] outs) => Pull(Key(key), outs);

    /// <summary>Pushes <paramref name="values"/> for a key, then pulls its value into <paramref name="outs"/>.</summary>
    /// <param name="key">The key.</param>
    /// <param name="values">The values to sum (one per device).</param>
    /// <param name="outs">The arrays to write the result into (one per device).</param>
    public void PushPull(string key, NDArray[] values, NDArray[] outs)
    {
        ArgumentNullException.ThrowIfNull(values);
        ArgumentNullException.ThrowIfNull(outs);
        var pushKeys = Enumerable.Repeat(key, values.Length).ToArray();
        var pullKeys = Enumerable.Repeat(key, outs.Length).ToArray();
        // One native call: across processes the sum can go straight into the outputs.
        WithHandles(pushKeys, values, "PushPull", (n, k, v) =>
        {
            var o = new nint[outs.Length];
            int held = 0;
            try
            {
                for (; held < outs.Length; held++) o[held] = outs[held].AddRef("KVStore.PushPull");
                fixed (nint* po = o) return LoomNative.loom_kvstore_pushpull(Handle, n, k, v, o.Length, pullKeys, po, 0);
            }
            finally
            {
                for (int i = 0; i < held; i++) outs[i].Release();
            }
        });
    }

    /// <summary>Updates pushed keys with <paramref name="optimizer"/>'s native update op where
    /// the weights live (MXNet's <c>set_optimizer</c>), instead of replacing them. The
    /// optimizer's learning rate, weight decay, gradient rescaling and its own settings are
    /// fixed when this is called.</summary>
    /// <param name="optimizer">The update rule.</param>
    /// <exception cref="NotSupportedException">The optimizer has a learning-rate schedule (schedules run in
    /// <see cref="Module"/>'s own updates).</exception>
    public void SetOptimizer(Optimizer optimizer)
    {
        ArgumentNullException.ThrowIfNull(optimizer);
        if (optimizer.Scheduler is not null)
            throw new NotSupportedException("KVStore.SetOptimizer: the store's updater runs a fixed learning rate; " +
                                            "let the Module's optimizer apply a schedule instead");
        var (op, ps) = optimizer.Updater();
        LoomException.Check(LoomNative.loom_kvstore_set_updater(Handle, op, ps.Count,
            ps.Select(x => x.Key).ToArray(), ps.Select(x => x.Value).ToArray()));
    }

    /// <summary>Updates pushed keys with a native update op by name and its parameters as
    /// text (MXNet's <c>_set_updater</c> with a registered op): the op's inputs are
    /// weight, grad and its states, such as <c>sgd_mom_update</c>.</summary>
    /// <param name="op">The update op, such as <c>"sgd_mom_update"</c>.</param>
    /// <param name="parameters">Its parameters as text, such as <c>lr = "0.1"</c> (none when null).</param>
    /// <exception cref="LoomException">The op is unknown or is not an update op, or a parameter is invalid.</exception>
    public void SetUpdater(string op, IReadOnlyDictionary<string, string>? parameters = null)
    {
        ArgumentNullException.ThrowIfNull(op);
        var ps = parameters?.ToArray() ?? Array.Empty<KeyValuePair<string, string>>();
        LoomException.Check(LoomNative.loom_kvstore_set_updater(Handle, op, ps.Length,
            ps.Select(x => x.Key).ToArray(), ps.Select(x => x.Value).ToArray()));
    }

    /// <summary>Waits until every worker reaches the barrier (immediate in one process).</summary>
    public void Barrier() => LoomException.Check(LoomNative.loom_kvstore_barrier(Handle));

    /// <summary>Writes the optimizer's states on the store to a <c>.params</c> file.</summary>
    /// <param name="path">The file to write (replaced atomically).</param>
    public void SaveOptimizerStates(string path) => LoomException.Check(LoomNative.loom_kvstore_save_states(Handle, path));

    /// <summary>Reads states written by <see cref="SaveOptimizerStates"/>.</summary>
    /// <param name="path">The file to read.</param>
    /// <exception cref="LoomException">The file is missing or corrupt, or names a key the store does not hold.</exception>
    public void LoadOptimizerStates(string path) => LoomException.Check(LoomNative.loom_kvstore_load_states(Handle, path));

    /// <summary>Releases the store (pending pushes and pulls finish first).</summary>
    public void Dispose() => _handle.Dispose();
}
