using System;
using System.Globalization;
using System.Runtime.InteropServices;
using Loom.Interop;

namespace Loom;

/// <summary>String-keyed operator parameters, formatted the way the engine parses them.</summary>
public sealed class OpParams
{
    private string[] _keys = Array.Empty<string>();
    private string[] _values = Array.Empty<string>();

    /// <summary>No parameters yet; add them with <see cref="Add(string, string)"/> and its overloads.</summary>
    public OpParams() { }

    /// <summary>Number of parameters added.</summary>
    public int Count { get; private set; }

    /// <summary>Adds a raw textual value.</summary>
    /// <param name="key">The attribute's name.</param>
    /// <param name="value">The value.</param>
    public void Add(string key, string value)
    {
        if (Count == _keys.Length)
        {
            Array.Resize(ref _keys, Math.Max(4, Count * 2));
            Array.Resize(ref _values, Math.Max(4, Count * 2));
        }
        _keys[Count] = key;
        _values[Count] = value;
        Count++;
    }

    /// <summary>Adds an integer.</summary>
    /// <param name="key">The attribute's name.</param>
    /// <param name="value">The value.</param>
    public void Add(string key, long value) => Add(key, value.ToString(CultureInfo.InvariantCulture));
    /// <summary>Adds a number (round-trip formatting, so no precision is lost).</summary>
    /// <param name="key">The attribute's name.</param>
    /// <param name="value">The value.</param>
    public void Add(string key, double value) => Add(key, value.ToString("R", CultureInfo.InvariantCulture));
    /// <summary>Adds a boolean.</summary>
    /// <param name="key">The attribute's name.</param>
    /// <param name="value">The value.</param>
    public void Add(string key, bool value) => Add(key, value ? "true" : "false");
    /// <summary>Adds a tuple of integers.</summary>
    /// <param name="key">The attribute's name.</param>
    /// <param name="value">The value.</param>
    public void Add(string key, long[] value)
    {
        var parts = new string[value.Length];
        for (int i = 0; i < value.Length; i++) parts[i] = value[i].ToString(CultureInfo.InvariantCulture);
        Add(key, "(" + string.Join(",", parts) + (value.Length == 1 ? ",)" : ")"));
    }
    /// <summary>Adds a tuple of numbers.</summary>
    /// <param name="key">The attribute's name.</param>
    /// <param name="value">The value.</param>
    public void Add(string key, double[] value)
    {
        var parts = new string[value.Length];
        for (int i = 0; i < value.Length; i++) parts[i] = value[i].ToString("R", CultureInfo.InvariantCulture);
        Add(key, "(" + string.Join(",", parts) + (value.Length == 1 ? ",)" : ")"));
    }
    /// <summary>Adds a dtype by name.</summary>
    /// <param name="key">The attribute's name.</param>
    /// <param name="value">The value.</param>
    public void Add(string key, DType value) => Add(key, DTypes.Name(value));
    /// <summary>Adds a device.</summary>
    /// <param name="key">The attribute's name.</param>
    /// <param name="value">The value.</param>
    public void Add(string key, Context value) => Add(key, value.ToString());

    internal string[]? Keys => Count == 0 ? null : _keys;
    internal string[]? Values => Count == 0 ? null : _values;
}

/// <summary>Imperative operator calls through the engine (what the generated
/// <see cref="Op"/> methods use).</summary>
public static unsafe class Imperative
{
    /// <summary>Looks an operator up by name once, caching its handle.</summary>
    /// <param name="cache">A field that keeps the handle between calls.</param>
    /// <param name="name">The name.</param>
    /// <returns>The operator's handle.</returns>
    public static OpHandle Resolve(ref OpHandle cache, string name)
    {
        if (!cache.IsNull) return cache;
        LoomException.Check(LoomNative.loom_op_find(out OpHandle h, name));
        cache = h;
        return h;
    }

    /// <summary>Invokes a single-output operator by name.</summary>
    /// <param name="name">The name.</param>
    /// <param name="inputs">The input arrays.</param>
    /// <returns>The outputs.</returns>
    /// <param name="p">The operator's parameters (null for none).</param>
    /// <param name="out">Arrays to write the results into (null: new ones).</param>
    public static NDArray Invoke(string name, NDArray[] inputs, OpParams? p = null, NDArray? @out = null)
    {
        OpHandle h = default;
        return Invoke(ref h, name, inputs, p ?? new OpParams(), @out);
    }

    /// <summary>Invokes an operator by name and returns all its outputs; arrays in
    /// <paramref name="out"/> (one per output) are written in place.</summary>
    /// <param name="name">The name.</param>
    /// <param name="inputs">The input arrays.</param>
    /// <param name="p">The operator's parameters (null for none).</param>
    /// <param name="out">Arrays to write the results into (null: new ones).</param>
    /// <returns>Every output of the operator.</returns>
    public static NDArray[] InvokeAll(string name, NDArray[] inputs, OpParams? p = null, NDArray[]? @out = null)
    {
        OpHandle h = default;
        return InvokeMany(ref h, name, inputs, p, @out);
    }

    /// <summary>The inputs given, in order, leaving out nulls (optional trailing inputs).</summary>
    internal static NDArray[] Given(params NDArray?[] inputs)
    {
        int n = 0;
        foreach (var a in inputs) if (a is not null) n++;
        var r = new NDArray[n];
        n = 0;
        foreach (var a in inputs) if (a is not null) r[n++] = a;
        return r;
    }

    // The inputs come as a span: generated code passes them as a collection expression,
    // which lives on the stack (no array per call).
    internal static NDArray Invoke(ref OpHandle cache, string name, ReadOnlySpan<NDArray> inputs, OpParams? p, NDArray? @out)
    {
        OpHandle op = Resolve(ref cache, name);
        int n = inputs.Length;
        nint* ins = stackalloc nint[Math.Max(n, 1)];
        int added = 0;
        bool outAdded = false;
        nint outp = 0;
        try
        {
            for (; added < n; added++)
            {
                NDArray a = inputs[added] ?? throw new LoomException(LoomStatus.InvalidArgument,
                    $"{name}: input {added} is null");
                ins[added] = a.AddRef(name, "input", added);
            }
            if (@out is not null)
            {
                outp = @out.AddRef(name, "output", 0);
                outAdded = true;
            }
            LoomException.Check(LoomNative.loom_imperative_invoke(&outp, 1, op, ins, n, p?.Keys, p?.Values, p?.Count ?? 0));
            return @out ?? new NDArray(new NDArrayHandle(outp));
        }
        finally
        {
            for (int i = 0; i < added; i++) inputs[i].Release();
            if (outAdded) @out!.Release();
        }
    }

    internal static NDArray[] InvokeMany(ref OpHandle cache, string name, NDArray[] inputs, OpParams? p, NDArray[]? @out)
    {
        OpHandle op = Resolve(ref cache, name);
        p ??= new OpParams();
        LoomException.Check(LoomNative.loom_op_num_outputs(out int n, op, p.Keys, p.Values, p.Count));
        if (@out is not null && @out.Length != n)
            throw new LoomException(LoomStatus.InvalidArgument, $"{name}: produces {n} outputs, but {@out.Length} output arrays were given");
        var outs = new NDArray?[n];
        if (@out is not null) Array.Copy(@out, outs, n);
        Call(op, name, inputs, p, outs);
        return Array.ConvertAll(outs, o => o!);
    }

    private static void Call(OpHandle op, string name, NDArray[] inputs, OpParams p, NDArray?[] outs)
    {
        int n = inputs.Length, m = outs.Length;
        nint* ins = stackalloc nint[Math.Max(n, 1)];
        nint* outp = stackalloc nint[Math.Max(m, 1)];
        int addedIn = 0, addedOut = 0;
        NDArray?[] given = (NDArray?[])outs.Clone();
        try
        {
            for (; addedIn < n; addedIn++)
            {
                NDArray a = inputs[addedIn] ?? throw new LoomException(LoomStatus.InvalidArgument,
                    $"{name}: input {addedIn} is null");
                ins[addedIn] = a.AddRef(name, "input", addedIn);
            }
            for (; addedOut < m; addedOut++)
                outp[addedOut] = given[addedOut]?.AddRef(name, "output", addedOut) ?? 0;
            LoomException.Check(LoomNative.loom_imperative_invoke(outp, m, op, ins, n, p.Keys, p.Values, p.Count));
            for (int j = 0; j < m; j++)
                if (outs[j] is null) outs[j] = new NDArray(new NDArrayHandle(outp[j]));
        }
        finally
        {
            for (int i = 0; i < addedIn; i++) inputs[i].Release();
            for (int j = 0; j < addedOut; j++) given[j]?.Release();
        }
    }
}

/// <summary>Element types and their names.</summary>
public static class DTypes
{
    /// <summary>The engine's name for a dtype ("float32", ...).</summary>
    /// <param name="d">The dtype.</param>
    /// <returns>The dtype's name, such as float32.</returns>
    public static string Name(DType d) => d switch
    {
        DType.Float32 => "float32",
        DType.Float64 => "float64",
        DType.Float16 => "float16",
        DType.Uint8 => "uint8",
        DType.Int32 => "int32",
        DType.Int8 => "int8",
        DType.Int64 => "int64",
        _ => d.ToString(),
    };

    /// <summary>The dtype of a CLR element type.</summary>
    /// <returns>The dtype of the C# type.</returns>
    public static DType Of<T>() where T : unmanaged
    {
        if (typeof(T) == typeof(float)) return DType.Float32;
        if (typeof(T) == typeof(double)) return DType.Float64;
        if (typeof(T) == typeof(int)) return DType.Int32;
        if (typeof(T) == typeof(long)) return DType.Int64;
        if (typeof(T) == typeof(byte)) return DType.Uint8;
        throw new LoomException(LoomStatus.DType,
            $"element type {typeof(T).Name} has no Loom dtype; use float, double, int, long or byte");
    }

    /// <summary>Bytes per element.</summary>
    /// <param name="d">The dtype.</param>
    /// <returns>Bytes per element.</returns>
    public static int Size(DType d) => d switch
    {
        DType.Float32 or DType.Int32 => 4,
        DType.Float64 or DType.Int64 => 8,
        DType.Float16 => 2,
        _ => 1,
    };
}
