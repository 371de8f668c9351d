using System;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Text;
using Loom.Interop;

namespace Loom;

/// <summary>
/// An n-dimensional array on a device. Operations are asynchronous: they are pushed to
/// the native engine and run when their inputs are ready; reading values
/// (<see cref="ToArray{T}"/>) waits. Dispose arrays, or create them inside
/// <c>using var scope = NDArray.Scope();</c> so a loop does not hold native memory.
/// </summary>
public sealed unsafe partial class NDArray : IDisposable
{
    private readonly NDArrayHandle _handle;
    private long[]? _shape;

    internal NDArray(NDArrayHandle handle)
    {
        _handle = handle;
        ReportMemory(handle);
        DisposeScope.Register(this);
    }

    // Arrays owned by another object (an executor's) are not put in a scope.
    internal NDArray(NDArrayHandle handle, bool scoped)
    {
        _handle = handle;
        ReportMemory(handle);
        if (scoped) DisposeScope.Register(this);
    }

    // Arrays below this size are not reported to the GC: the report costs more than they do.
    private const long PressureThreshold = 1 << 16;

    // Native memory is invisible to the .NET GC: a loop that forgets to dispose would
    // hold gigabytes until the next collection. Each array of 64 KiB or more tells the GC
    // its size, so collections (and the handles' release) come as memory is used; the
    // handle takes the pressure back when it is released, by Dispose or by finalization.
    private static void ReportMemory(NDArrayHandle handle)
    {
        if (handle.IsInvalid) return;
        // One call for the small arrays of most imperative code: no element is over 8 bytes.
        // The handle is not yet published, so it is read raw (no reference counting).
        if (LoomNative.loom_ndarray_get_size(out long n, handle.DangerousGetHandle()) != 0 ||
            n * 8 < PressureThreshold) return;
        if (LoomNative.loom_ndarray_get_dtype(out int dt, handle) != 0) return;
        long bytes = n * DTypes.Size((DType)dt);
        if (bytes < PressureThreshold) return;
        handle.MemoryPressure = bytes;
        GC.AddMemoryPressure(bytes);
    }

    /// <summary>The SafeHandle, for calls into <see cref="LoomNative"/>.</summary>
    public NDArrayHandle Handle
    {
        get
        {
            if (_handle.IsClosed)
                throw new LoomException(LoomStatus.InvalidArgument, DisposedMessage(""));
            return _handle;
        }
    }

    private static string DisposedMessage(string what) =>
        what + "this NDArray was used after it was disposed, by Dispose() or by the end of the NDArray.Scope() " +
        "that created it; to use an array after its scope, keep it with scope.Keep(array) (DisposeScope.Keep)";

    /// <summary>True once disposed.</summary>
    public bool IsDisposed => _handle.IsClosed;

    /// <summary>Releases the native array now (the memory returns to the pool once
    /// pending operations on it finish). Safe to call twice.</summary>
    public void Dispose() => _handle.Dispose();

    internal nint AddRef(string what)
    {
        if (_handle.IsClosed)
            throw new LoomException(LoomStatus.InvalidArgument, DisposedMessage(what + ": "));
        bool ok = false;
        _handle.DangerousAddRef(ref ok);
        return _handle.DangerousGetHandle();
    }

    // The same for an op's input or output: the name is built only if the array was
    // disposed, not on every call.
    internal nint AddRef(string op, string role, int index)
    {
        if (_handle.IsClosed)
            throw new LoomException(LoomStatus.InvalidArgument, DisposedMessage($"{op} {role} {index}: "));
        bool ok = false;
        _handle.DangerousAddRef(ref ok);
        return _handle.DangerousGetHandle();
    }

    internal void Release() => _handle.DangerousRelease();

    // ------------------------------------------------------------------ metadata

    /// <summary>The extents, outermost first.</summary>
    public long[] Shape
    {
        get
        {
            if (_shape is null)
            {
                long* buf = stackalloc long[LoomConstants.LOOM_MAX_NDIM];
                LoomException.Check(LoomNative.loom_ndarray_get_ndim(out int nd, Handle));
                LoomException.Check(LoomNative.loom_ndarray_get_shape(buf, LoomConstants.LOOM_MAX_NDIM, Handle));
                var s = new long[nd];
                for (int i = 0; i < nd; i++) s[i] = buf[i];
                _shape = s;
            }
            return (long[])_shape.Clone();
        }
    }

    /// <summary>Number of dimensions.</summary>
    public int NDim => Shape.Length;

    /// <summary>Number of elements.</summary>
    public long Size
    {
        get
        {
            LoomException.Check(LoomNative.loom_ndarray_get_size(out long n, Handle));
            return n;
        }
    }

    /// <summary>Element type.</summary>
    public DType DType
    {
        get
        {
            LoomException.Check(LoomNative.loom_ndarray_get_dtype(out int d, Handle));
            return (DType)d;
        }
    }

    /// <summary>Device the array lives on.</summary>
    public Context Context
    {
        get
        {
            LoomException.Check(LoomNative.loom_ndarray_get_context(out int t, out int id, Handle));
            return new Context((DeviceType)t, id);
        }
    }

    // ------------------------------------------------------------------ factories

    /// <summary>An uninitialised array.</summary>
    /// <param name="shape">The shape, one extent per axis.</param>
    /// <param name="dtype">The element type.</param>
    /// <param name="ctx">The device (the CPU when null).</param>
    /// <returns>A new array whose contents are undefined until written.</returns>
    public static NDArray Empty(long[] shape, DType dtype = DType.Float32, Context? ctx = null)
    {
        ArgumentNullException.ThrowIfNull(shape);
        var c = ctx ?? Context.Default;
        fixed (long* s = shape)
        {
            LoomException.Check(LoomNative.loom_ndarray_create(out NDArrayHandle h, s, shape.Length, (int)dtype,
                (int)c.DeviceType, c.DeviceId));
            return new NDArray(h);
        }
    }

    /// <summary>Zeros of the given shape (float32).</summary>
    /// <param name="shape">The shape, one extent per axis.</param>
    /// <returns>A new array of zeros.</returns>
    public static NDArray Zeros(params long[] shape) => Op.Zeros(shape: shape);
    /// <summary>Zeros of the given shape, dtype and device.</summary>
    /// <param name="shape">The shape, one extent per axis.</param>
    /// <param name="dtype">The element type.</param>
    /// <param name="ctx">The device (the CPU when null).</param>
    /// <returns>A new array of zeros.</returns>
    public static NDArray Zeros(long[] shape, DType dtype, Context? ctx = null) => Op.Zeros(shape: shape, dtype: dtype, ctx: ctx);
    /// <summary>Ones of the given shape (float32).</summary>
    /// <param name="shape">The shape, one extent per axis.</param>
    /// <returns>A new array of ones.</returns>
    public static NDArray Ones(params long[] shape) => Op.Ones(shape: shape);
    /// <summary>Ones of the given shape, dtype and device.</summary>
    /// <param name="shape">The shape, one extent per axis.</param>
    /// <param name="dtype">The element type.</param>
    /// <param name="ctx">The device (the CPU when null).</param>
    /// <returns>A new array of ones.</returns>
    public static NDArray Ones(long[] shape, DType dtype, Context? ctx = null) => Op.Ones(shape: shape, dtype: dtype, ctx: ctx);
    /// <summary>An array filled with <paramref name="value"/>.</summary>
    /// <param name="value">The value.</param>
    /// <param name="shape">The shape, one extent per axis.</param>
    /// <param name="dtype">The element type.</param>
    /// <param name="ctx">The device (the CPU when null).</param>
    /// <returns>A new array with every element set to the value.</returns>
    public static NDArray Full(double value, long[] shape, DType dtype = DType.Float32, Context? ctx = null) =>
        Op.Full(value, shape: shape, dtype: dtype, ctx: ctx);
    /// <summary>Values start, start+step, ... below stop (NumPy's arange).</summary>
    /// <param name="start">The first value.</param>
    /// <param name="stop">Where the values stop (exclusive); with only start given, start is the stop and 0 the start.</param>
    /// <param name="step">The spacing of the values.</param>
    /// <param name="dtype">The element type.</param>
    /// <param name="ctx">The device (the CPU when null).</param>
    /// <returns>A new 1-D array of evenly spaced values.</returns>
    public static NDArray Arange(double start, double? stop = null, double step = 1, DType dtype = DType.Float32, Context? ctx = null) =>
        Op.Arange(start: start, stop: stop, step: step, dtype: dtype, ctx: ctx);

    /// <summary>An array holding a copy of <paramref name="data"/>, with the given shape
    /// (default: one dimension of data.Length).</summary>
    /// <param name="data">The elements, in row-major order.</param>
    /// <param name="shape">The shape, one extent per axis.</param>
    /// <returns>A new array holding a copy of the values.</returns>
    public static NDArray FromArray<T>(T[] data, params long[] shape) where T : unmanaged =>
        FromSpan<T>(data, shape.Length == 0 ? new long[] { data.Length } : shape);

    /// <summary>An array holding a copy of <paramref name="data"/> with the given shape.</summary>
    /// <param name="data">The elements, in row-major order.</param>
    /// <param name="shape">The shape, one extent per axis.</param>
    /// <param name="ctx">The device (the CPU when null).</param>
    /// <returns>A new array holding a copy of the values.</returns>
    public static NDArray FromSpan<T>(ReadOnlySpan<T> data, long[] shape, Context? ctx = null) where T : unmanaged
    {
        var a = Empty(shape, DTypes.Of<T>(), ctx);
        try { a.CopyFrom(data); }
        catch { a.Dispose(); throw; }
        return a;
    }

    /// <summary>A 2-D array from a rectangular CLR array.</summary>
    /// <param name="data">The elements, in row-major order.</param>
    /// <returns>A new array holding a copy of the values.</returns>
    public static NDArray FromArray<T>(T[,] data) where T : unmanaged
    {
        var flat = new T[data.Length];
        int k = 0;
        foreach (T v in data) flat[k++] = v;
        return FromSpan<T>(flat, new long[] { data.GetLength(0), data.GetLength(1) });
    }

    // ------------------------------------------------------------------ data transfer

    /// <summary>Overwrites the array with <paramref name="data"/> (same element count
    /// and type). Waits for pending operations on the array first.</summary>
    /// <param name="data">The elements, in row-major order.</param>
    public void CopyFrom<T>(ReadOnlySpan<T> data) where T : unmanaged
    {
        CheckType<T>("CopyFrom");
        fixed (T* p = data)
            LoomException.Check(LoomNative.loom_ndarray_copy_from_host(Handle, p, (nuint)(data.Length * sizeof(T))));
    }

    /// <summary>Waits for the value and copies it into a new CLR array.</summary>
    /// <returns>The elements in row-major order (waits for pending writes).</returns>
    public T[] ToArray<T>() where T : unmanaged
    {
        CheckType<T>("ToArray");
        var result = new T[Size];
        fixed (T* p = result)
            LoomException.Check(LoomNative.loom_ndarray_copy_to_host(p, (nuint)(result.Length * sizeof(T)), Handle));
        return result;
    }

    /// <summary>A zero-copy view of this CPU array's memory as a <see cref="Span{T}"/>, through a
    /// DLPack export that keeps the memory alive until the view is disposed. Pending writes
    /// are waited for first; after later Loom writes, call <see cref="WaitToRead"/> before reading.</summary>
    /// <returns>A view of the array's memory; it keeps the array alive until disposed.</returns>
    public DLPackView<T> AsSpanView<T>() where T : unmanaged
    {
        CheckType<T>("AsSpanView");
        LoomException.Check(LoomNative.loom_ndarray_to_dlpack(out nint managed, Handle));
        return new DLPackView<T>(managed, checked((int)Size));
    }

    /// <summary>Exports the array as a DLPack <c>DLManagedTensor*</c> (zero-copy) for another
    /// library; the receiver calls its deleter (or pass it to <see cref="DLPackView{T}"/>).</summary>
    /// <returns>A DLPack DLManagedTensor pointer; its deleter releases the array.</returns>
    public nint ToDLPack()
    {
        LoomException.Check(LoomNative.loom_ndarray_to_dlpack(out nint managed, Handle));
        return managed;
    }

    /// <summary>An array over the memory of a DLPack <c>DLManagedTensor*</c> (zero-copy); Loom
    /// owns the tensor afterwards and runs its deleter when the array is gone.</summary>
    /// <param name="managedTensor">A DLPack DLManagedTensor pointer (ownership passes to the array).</param>
    /// <returns>An array sharing the tensor's memory (no copy).</returns>
    public static NDArray FromDLPack(nint managedTensor)
    {
        LoomException.Check(LoomNative.loom_ndarray_from_dlpack(out NDArrayHandle h, (void*)managedTensor));
        return new NDArray(h);
    }

    /// <summary>Waits for the value and copies its raw bytes (C order, the array's dtype).</summary>
    /// <returns>The raw bytes in row-major order.</returns>
    public byte[] ToBytes()
    {
        var result = new byte[Size * DTypes.Size(DType)];
        fixed (byte* p = result)
            LoomException.Check(LoomNative.loom_ndarray_copy_to_host(p, (nuint)result.Length, Handle));
        return result;
    }

    /// <summary>Waits for the value of a one-element array and returns it.</summary>
    /// <returns>The single element's value.</returns>
    public T Scalar<T>() where T : unmanaged
    {
        var v = ToArray<T>();
        if (v.Length != 1)
            throw new LoomException(LoomStatus.Shape, $"Scalar: array of shape {ShapeString(Shape)} has {v.Length} elements, not 1");
        return v[0];
    }

    /// <summary>Copies this array into <paramref name="dst"/> (same shape and dtype; any device).</summary>
    /// <param name="dst">The array to copy into (same shape and dtype).</param>
    public void CopyTo(NDArray dst) => LoomException.Check(LoomNative.loom_ndarray_copy_to(dst.Handle, Handle));

    /// <summary>A copy on another device (recorded by autograd: gradients flow back
    /// to this array's device).</summary>
    /// <param name="ctx">The device (the CPU when null).</param>
    /// <returns>A new array on that device with the same values.</returns>
    public NDArray CopyTo(Context ctx) => Op.Copy(this, ctx: ctx);

    /// <summary>Blocks until pending writes finish; throws the failure of the operation
    /// that produced this array, if it failed.</summary>
    public void WaitToRead() => LoomException.Check(LoomNative.loom_ndarray_wait_to_read(Handle));

    /// <summary>Blocks until pending reads and writes finish.</summary>
    public void WaitToWrite() => LoomException.Check(LoomNative.loom_ndarray_wait_to_write(Handle));

    private void CheckType<T>(string what) where T : unmanaged
    {
        DType want = DTypes.Of<T>(), have = DType;
        if (want != have)
            throw new LoomException(LoomStatus.DType,
                $"{what}<{typeof(T).Name}>: the array has dtype {DTypes.Name(have)}, not {DTypes.Name(want)}; convert it first with array.AsType(DType.{want})");
    }

    // ------------------------------------------------------------------ views

    /// <summary>A view with another shape over the same memory (one extent may be -1).</summary>
    /// <param name="shape">The shape, one extent per axis.</param>
    /// <returns>A view with the new shape (no copy; -1 infers one extent).</returns>
    public NDArray Reshape(params long[] shape)
    {
        fixed (long* s = shape)
        {
            LoomException.Check(LoomNative.loom_ndarray_reshape(out NDArrayHandle h, Handle, s, shape.Length));
            return new NDArray(h);
        }
    }

    /// <summary>A view of rows [begin, end) of the first axis, sharing memory.</summary>
    /// <param name="begin">The first index along axis 0.</param>
    /// <param name="end">One past the last index along axis 0.</param>
    /// <returns>A view of the rows [begin, end) (no copy).</returns>
    public NDArray Slice(long begin, long end)
    {
        LoomException.Check(LoomNative.loom_ndarray_slice(out NDArrayHandle h, Handle, begin, end));
        return new NDArray(h);
    }

    /// <summary>Row <paramref name="index"/> of the first axis (negative counts from the
    /// end), as a view with that axis removed.</summary>
    public NDArray this[long index]
    {
        get
        {
            LoomException.Check(LoomNative.loom_ndarray_at(out NDArrayHandle h, Handle, index));
            return new NDArray(h);
        }
    }

    /// <summary>Row <paramref name="index"/> of the first axis (negative counts from the end), as a view.</summary>
    public NDArray this[int index] => this[(long)index];

    /// <summary>Row <paramref name="index"/> of the first axis (<c>^1</c> is the last), as a view.</summary>
    public NDArray this[Index index] => this[index.IsFromEnd ? -(long)index.Value : index.Value];

    /// <summary>Rows selected by a range of the first axis, as a view.</summary>
    public NDArray this[Range range]
    {
        get
        {
            var s = Shape;
            if (s.Length == 0)
                throw new LoomException(LoomStatus.Shape, "cannot slice a 0-dimensional array");
            long n = s[0];
            long b = range.Start.IsFromEnd ? n - range.Start.Value : range.Start.Value;
            long e = range.End.IsFromEnd ? n - range.End.Value : range.End.Value;
            return Slice(b, e);
        }
    }

    // ------------------------------------------------------------------ files

    /// <summary>Saves named arrays in MXNet's .params format (atomically replaced).</summary>
    /// <param name="path">The file's path.</param>
    /// <param name="arrays">The arrays to write.</param>
    public static void Save(string path, IReadOnlyDictionary<string, NDArray> arrays)
    {
        var names = new string[arrays.Count];
        var list = new NDArray[arrays.Count];
        int i = 0;
        foreach (var kv in arrays) { names[i] = kv.Key; list[i++] = kv.Value; }
        SaveCore(path, list, names);
    }

    /// <summary>Saves an unnamed list of arrays in MXNet's .params format.</summary>
    /// <param name="path">The file's path.</param>
    /// <param name="arrays">The arrays to write.</param>
    public static void Save(string path, IReadOnlyList<NDArray> arrays)
    {
        var list = new NDArray[arrays.Count];
        for (int i = 0; i < list.Length; i++) list[i] = arrays[i];
        SaveCore(path, list, null);
    }

    private static void SaveCore(string path, NDArray[] list, string[]? names)
    {
        ArgumentNullException.ThrowIfNull(path);
        nint* hs = stackalloc nint[Math.Max(list.Length, 1)];
        int added = 0;
        try
        {
            for (; added < list.Length; added++)
                hs[added] = (list[added] ?? throw new LoomException(LoomStatus.InvalidArgument, $"save: array {added} is null"))
                    .AddRef($"save: array {added}");
            LoomException.Check(LoomNative.loom_ndarray_save(path, hs, names, list.Length));
        }
        finally
        {
            for (int i = 0; i < added; i++) list[i].Release();
        }
    }

    /// <summary>Loads a .params file (MXNet V1 or V2 records) onto cpu(0). Names are ""
    /// in an unnamed list.</summary>
    /// <param name="path">The file's path.</param>
    /// <returns>The arrays in the file, with their names (empty names for an unnamed list).</returns>
    public static List<(string Name, NDArray Array)> Load(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        LoomException.Check(LoomNative.loom_ndarray_load(out NDArrayListHandle list, path));
        using (list)
        {
            LoomException.Check(LoomNative.loom_ndarray_list_size(out int n, list));
            var result = new List<(string, NDArray)>(n);
            for (int i = 0; i < n; i++)
            {
                LoomException.Check(LoomNative.loom_ndarray_list_get(out NDArrayHandle h, out nint name, list, i));
                result.Add((Marshal.PtrToStringUTF8(name) ?? "", new NDArray(h)));
            }
            return result;
        }
    }

    // ------------------------------------------------------------------ operators

    /// <summary>Elementwise sum with broadcasting.</summary>
    /// <param name="a">An array.</param>
    /// <param name="b">An array (broadcast against the other, NumPy's rule).</param>
    /// <returns>A new array, computed natively (asynchronously: reading it waits).</returns>
    public static NDArray operator +(NDArray a, NDArray b) => Op.Add(a, b);
    /// <summary>Adds a scalar.</summary>
    /// <param name="a">An array.</param>
    /// <param name="s">A number.</param>
    /// <returns>A new array, computed natively (asynchronously: reading it waits).</returns>
    public static NDArray operator +(NDArray a, double s) => Op.AddScalar(a, s);
    /// <summary>Adds a scalar.</summary>
    /// <param name="s">A number.</param>
    /// <param name="a">An array.</param>
    /// <returns>A new array, computed natively (asynchronously: reading it waits).</returns>
    public static NDArray operator +(double s, NDArray a) => Op.AddScalar(a, s);
    /// <summary>Elementwise difference with broadcasting.</summary>
    /// <param name="a">An array.</param>
    /// <param name="b">An array (broadcast against the other, NumPy's rule).</param>
    /// <returns>A new array, computed natively (asynchronously: reading it waits).</returns>
    public static NDArray operator -(NDArray a, NDArray b) => Op.Subtract(a, b);
    /// <summary>Subtracts a scalar.</summary>
    /// <param name="a">An array.</param>
    /// <param name="s">A number.</param>
    /// <returns>A new array, computed natively (asynchronously: reading it waits).</returns>
    public static NDArray operator -(NDArray a, double s) => Op.SubtractScalar(a, s);
    /// <summary>Scalar minus array.</summary>
    /// <param name="s">A number.</param>
    /// <param name="a">An array.</param>
    /// <returns>A new array, computed natively (asynchronously: reading it waits).</returns>
    public static NDArray operator -(double s, NDArray a) => Op.RsubtractScalar(a, s);
    /// <summary>Negation.</summary>
    /// <param name="a">An array.</param>
    /// <returns>A new array, computed natively (asynchronously: reading it waits).</returns>
    public static NDArray operator -(NDArray a) => Op.Negative(a);
    /// <summary>Elementwise product with broadcasting.</summary>
    /// <param name="a">An array.</param>
    /// <param name="b">An array (broadcast against the other, NumPy's rule).</param>
    /// <returns>A new array, computed natively (asynchronously: reading it waits).</returns>
    public static NDArray operator *(NDArray a, NDArray b) => Op.Multiply(a, b);
    /// <summary>Multiplies by a scalar.</summary>
    /// <param name="a">An array.</param>
    /// <param name="s">A number.</param>
    /// <returns>A new array, computed natively (asynchronously: reading it waits).</returns>
    public static NDArray operator *(NDArray a, double s) => Op.MultiplyScalar(a, s);
    /// <summary>Multiplies by a scalar.</summary>
    /// <param name="s">A number.</param>
    /// <param name="a">An array.</param>
    /// <returns>A new array, computed natively (asynchronously: reading it waits).</returns>
    public static NDArray operator *(double s, NDArray a) => Op.MultiplyScalar(a, s);
    /// <summary>Elementwise quotient with broadcasting.</summary>
    /// <param name="a">An array.</param>
    /// <param name="b">An array (broadcast against the other, NumPy's rule).</param>
    /// <returns>A new array, computed natively (asynchronously: reading it waits).</returns>
    public static NDArray operator /(NDArray a, NDArray b) => Op.Divide(a, b);
    /// <summary>Divides by a scalar.</summary>
    /// <param name="a">An array.</param>
    /// <param name="s">A number.</param>
    /// <returns>A new array, computed natively (asynchronously: reading it waits).</returns>
    public static NDArray operator /(NDArray a, double s) => Op.DivideScalar(a, s);
    /// <summary>Scalar divided by array.</summary>
    /// <param name="s">A number.</param>
    /// <param name="a">An array.</param>
    /// <returns>A new array, computed natively (asynchronously: reading it waits).</returns>
    public static NDArray operator /(double s, NDArray a) => Op.RdivideScalar(a, s);
    /// <summary>1 where a &lt; b, else 0 (input dtype).</summary>
    /// <param name="a">An array.</param>
    /// <param name="b">An array (broadcast against the other, NumPy's rule).</param>
    /// <returns>A new array, computed natively (asynchronously: reading it waits).</returns>
    public static NDArray operator <(NDArray a, NDArray b) => Op.Less(a, b);
    /// <summary>1 where a &gt; b, else 0 (input dtype).</summary>
    /// <param name="a">An array.</param>
    /// <param name="b">An array (broadcast against the other, NumPy's rule).</param>
    /// <returns>A new array, computed natively (asynchronously: reading it waits).</returns>
    public static NDArray operator >(NDArray a, NDArray b) => Op.Greater(a, b);
    /// <summary>1 where a &lt;= b, else 0 (input dtype).</summary>
    /// <param name="a">An array.</param>
    /// <param name="b">An array (broadcast against the other, NumPy's rule).</param>
    /// <returns>A new array, computed natively (asynchronously: reading it waits).</returns>
    public static NDArray operator <=(NDArray a, NDArray b) => Op.LessEqual(a, b);
    /// <summary>1 where a &gt;= b, else 0 (input dtype).</summary>
    /// <param name="a">An array.</param>
    /// <param name="b">An array (broadcast against the other, NumPy's rule).</param>
    /// <returns>A new array, computed natively (asynchronously: reading it waits).</returns>
    public static NDArray operator >=(NDArray a, NDArray b) => Op.GreaterEqual(a, b);
    /// <summary>1 where a &lt; s, else 0.</summary>
    /// <param name="a">An array.</param>
    /// <param name="s">A number.</param>
    /// <returns>A new array, computed natively (asynchronously: reading it waits).</returns>
    public static NDArray operator <(NDArray a, double s) => Op.LessScalar(a, s);
    /// <summary>1 where a &gt; s, else 0.</summary>
    /// <param name="a">An array.</param>
    /// <param name="s">A number.</param>
    /// <returns>A new array, computed natively (asynchronously: reading it waits).</returns>
    public static NDArray operator >(NDArray a, double s) => Op.GreaterScalar(a, s);
    /// <summary>1 where a &lt;= s, else 0.</summary>
    /// <param name="a">An array.</param>
    /// <param name="s">A number.</param>
    /// <returns>A new array, computed natively (asynchronously: reading it waits).</returns>
    public static NDArray operator <=(NDArray a, double s) => Op.LessEqualScalar(a, s);
    /// <summary>1 where a &gt;= s, else 0.</summary>
    /// <param name="a">An array.</param>
    /// <param name="s">A number.</param>
    /// <returns>A new array, computed natively (asynchronously: reading it waits).</returns>
    public static NDArray operator >=(NDArray a, double s) => Op.GreaterEqualScalar(a, s);
    /// <summary>1 where s &lt; a, else 0.</summary>
    /// <param name="s">A number.</param>
    /// <param name="a">An array.</param>
    /// <returns>A new array, computed natively (asynchronously: reading it waits).</returns>
    public static NDArray operator <(double s, NDArray a) => Op.GreaterScalar(a, s);
    /// <summary>1 where s &gt; a, else 0.</summary>
    /// <param name="s">A number.</param>
    /// <param name="a">An array.</param>
    /// <returns>A new array, computed natively (asynchronously: reading it waits).</returns>
    public static NDArray operator >(double s, NDArray a) => Op.LessScalar(a, s);
    /// <summary>1 where s &lt;= a, else 0.</summary>
    /// <param name="s">A number.</param>
    /// <param name="a">An array.</param>
    /// <returns>A new array, computed natively (asynchronously: reading it waits).</returns>
    public static NDArray operator <=(double s, NDArray a) => Op.GreaterEqualScalar(a, s);
    /// <summary>1 where s &gt;= a, else 0.</summary>
    /// <param name="s">A number.</param>
    /// <param name="a">An array.</param>
    /// <returns>A new array, computed natively (asynchronously: reading it waits).</returns>
    public static NDArray operator >=(double s, NDArray a) => Op.LessEqualScalar(a, s);

    /// <summary>Elementwise equality as 1/0 (== stays reference equality in C#).</summary>
    /// <param name="other">The array to compare with (broadcast, NumPy's rule).</param>
    /// <returns>A new array of 1 where the elements are equal and 0 elsewhere.</returns>
    public NDArray Eq(NDArray other) => Op.Equal(this, other);
    /// <summary>Elementwise equality with a scalar as 1/0.</summary>
    /// <param name="s">A number.</param>
    /// <returns>A new array of 1 where the elements are equal and 0 elsewhere.</returns>
    public NDArray Eq(double s) => Op.EqualScalar(this, s);
    /// <summary>Elementwise inequality as 1/0.</summary>
    /// <param name="other">The array to compare with (broadcast, NumPy's rule).</param>
    /// <returns>A new array of 1 where the elements differ and 0 elsewhere.</returns>
    public NDArray Ne(NDArray other) => Op.NotEqual(this, other);
    /// <summary>Elementwise inequality with a scalar as 1/0.</summary>
    /// <param name="s">A number.</param>
    /// <returns>A new array of 1 where the elements differ and 0 elsewhere.</returns>
    public NDArray Ne(double s) => Op.NotEqualScalar(this, s);

    /// <summary>Matrix product (see <see cref="Op.Dot"/>).</summary>
    /// <param name="other">The array to compare with (broadcast, NumPy's rule).</param>
    /// <returns>The matrix product, a new array.</returns>
    public NDArray Dot(NDArray other) => Op.Dot(this, other);
    /// <summary>Sum over axes (all when none are given).</summary>
    /// <param name="axis">The axes to reduce (null: all of them).</param>
    /// <returns>The sums, a new array (shape (1,) for a full reduction, as in MXNet 1.x).</returns>
    public NDArray Sum(params long[] axis) => Op.Sum(this, axis: axis.Length == 0 ? null : axis);
    /// <summary>Mean over axes (all when none are given).</summary>
    /// <param name="axis">The axes to reduce (null: all of them).</param>
    /// <returns>The means, a new array.</returns>
    public NDArray Mean(params long[] axis) => Op.Mean(this, axis: axis.Length == 0 ? null : axis);
    /// <summary>Maximum over axes (all when none are given).</summary>
    /// <param name="axis">The axes to reduce (null: all of them).</param>
    /// <returns>The maxima, a new array.</returns>
    public NDArray Max(params long[] axis) => Op.Max(this, axis: axis.Length == 0 ? null : axis);
    /// <summary>Minimum over axes (all when none are given).</summary>
    /// <param name="axis">The axes to reduce (null: all of them).</param>
    /// <returns>The minima, a new array.</returns>
    public NDArray Min(params long[] axis) => Op.Min(this, axis: axis.Length == 0 ? null : axis);
    /// <summary>Transpose (axes reversed when none are given).</summary>
    public NDArray T => Op.Transpose(this);
    /// <summary>Converts to another dtype.</summary>
    /// <param name="dtype">The element type.</param>
    /// <returns>A new array with the values converted (floats to integers truncate).</returns>
    public NDArray AsType(DType dtype) => Op.Cast(this, dtype);

    // ------------------------------------------------------------------ text

    /// <summary>Shape, dtype, device and (for small arrays) the values.</summary>
    /// <returns>The shape, dtype and values as text.</returns>
    public override string ToString()
    {
        if (IsDisposed) return "NDArray(disposed)";
        var s = Shape;
        var sb = new StringBuilder();
        sb.Append("NDArray").Append(ShapeString(s)).Append(' ').Append(DTypes.Name(DType)).Append(" @").Append(Context);
        if (Size <= 32 && (DType == DType.Float32 || DType == DType.Float64 || DType == DType.Int32 || DType == DType.Int64))
        {
            sb.Append(" [");
            string[] vals = DType switch
            {
                DType.Float32 => Array.ConvertAll(ToArray<float>(), v => v.ToString("G6", System.Globalization.CultureInfo.InvariantCulture)),
                DType.Float64 => Array.ConvertAll(ToArray<double>(), v => v.ToString("G10", System.Globalization.CultureInfo.InvariantCulture)),
                DType.Int32 => Array.ConvertAll(ToArray<int>(), v => v.ToString(System.Globalization.CultureInfo.InvariantCulture)),
                _ => Array.ConvertAll(ToArray<long>(), v => v.ToString(System.Globalization.CultureInfo.InvariantCulture)),
            };
            sb.Append(string.Join(", ", vals)).Append(']');
        }
        return sb.ToString();
    }

    internal static string ShapeString(long[] s) => "(" + string.Join(",", s) + (s.Length == 1 ? ",)" : ")");

    /// <summary>Starts a dispose scope on this thread: arrays created until it is
    /// disposed are disposed with it (use <see cref="DisposeScope.Keep"/> to keep one).</summary>
    /// <returns>The scope; dispose it (a using block) to free the arrays made inside.</returns>
    public static DisposeScope Scope() => new();
}

/// <summary>Disposes every array created on this thread while it is the innermost scope.</summary>
public sealed class DisposeScope : IDisposable
{
    [ThreadStatic] private static DisposeScope? t_current;
    private readonly DisposeScope? _parent;
    private List<NDArray>? _arrays = new();

    internal DisposeScope()
    {
        _parent = t_current;
        t_current = this;
    }

    internal static void Register(NDArray a) => t_current?._arrays?.Add(a);

    // An array disposed right away by its creator need not wait for the scope.
    internal static void Forget(NDArray a) => t_current?._arrays?.Remove(a);

    /// <summary>Number of arrays this scope will dispose.</summary>
    public int Count => _arrays?.Count ?? 0;

    /// <summary>Removes <paramref name="array"/> from this scope (handing it to the enclosing
    /// scope, if any) so it outlives this one. Returns it.</summary>
    /// <param name="array">The array.</param>
    /// <returns>The same array, now owned by the caller.</returns>
    public NDArray Keep(NDArray array)
    {
        if (_arrays is not null && _arrays.Remove(array)) _parent?._arrays?.Add(array);
        return array;
    }

    /// <summary>Disposes the arrays of this scope and ends it.</summary>
    public void Dispose()
    {
        var list = _arrays;
        if (list is null) return;
        _arrays = null;
        for (int i = list.Count - 1; i >= 0; i--) list[i].Dispose();
        if (t_current == this) t_current = _parent;
    }
}

/// <summary>A <see cref="Span{T}"/> over an array's CPU memory, kept alive by a DLPack export
/// until disposed.</summary>
public sealed unsafe class DLPackView<T> : IDisposable where T : unmanaged
{
    private nint _managed;
    private readonly int _length;

    internal DLPackView(nint managed, int length)
    {
        _managed = managed;
        _length = length;
    }

    /// <summary>The elements, in C order. DLTensor.data is the first field of the managed tensor.</summary>
    public Span<T> Span => _managed == 0
        ? throw new ObjectDisposedException(nameof(DLPackView<T>))
        : new Span<T>((void*)System.Runtime.InteropServices.Marshal.ReadIntPtr(_managed), _length);

    /// <summary>Ends the export (runs the DLPack deleter).</summary>
    public void Dispose()
    {
        if (_managed != 0) LoomNative.loom_dlpack_delete((void*)_managed);
        _managed = 0;
    }
}
