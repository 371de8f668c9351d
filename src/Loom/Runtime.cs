using System.Runtime.InteropServices;
using Loom.Interop;

namespace Loom;

/// <summary>The native dependency engine.</summary>
public static class Engine
{
    /// <summary>Blocks until every pushed operation has run; throws the first
    /// asynchronous failure recorded since the previous call.</summary>
    public static void WaitAll() => LoomException.Check(LoomNative.loom_wait_all());

    /// <summary>"threaded" or "naive" (environment variable LOOM_ENGINE).</summary>
    public static string Kind
    {
        get
        {
            LoomException.Check(LoomNative.loom_engine_info(out nint kind, out _));
            return Marshal.PtrToStringUTF8(kind) ?? "";
        }
    }

    /// <summary>Worker threads per CPU device (environment variable LOOM_CPU_WORKERS).</summary>
    public static int CpuWorkers
    {
        get
        {
            LoomException.Check(LoomNative.loom_engine_info(out _, out int n));
            return n;
        }
    }
}

/// <summary>Device backends: the built-in CPU one and the GPU plugin
/// (<c>libloom_cuda.so</c>), which libloom loads at run time when present. It is
/// looked for at the path in <c>LOOM_CUDA_LIBRARY</c>, else beside libloom (the
/// NuGet package's native folder), else on the library search path.</summary>
public static class Backend
{
    /// <summary>Devices of a type: 1 for the CPU; for the GPU the devices the
    /// backend reports, or 0 when no GPU backend is available (not an error).</summary>
    /// <param name="type">The device type.</param>
    /// <returns>How many devices of that type there are.</returns>
    public static int DeviceCount(DeviceType type)
    {
        LoomException.Check(LoomNative.loom_device_count(out int n, (int)type));
        return n;
    }

    /// <summary>GPUs usable as <see cref="Context.Gpu"/>; 0 without a GPU backend.</summary>
    public static int GpuCount => DeviceCount(DeviceType.Gpu);

    /// <summary>One line on the backend of a device type: for the CPU, the kernel set
    /// in use (oneDNN with its version and instruction set, or Loom's reference
    /// kernels, chosen by <c>LOOM_CPU_KERNELS</c>); for the GPU, the plugin's
    /// file and devices, or why none is available and where it was looked for.</summary>
    /// <param name="type">The device type.</param>
    /// <returns>A description of the backend.</returns>
    public static string Describe(DeviceType type)
    {
        LoomException.Check(LoomNative.loom_backend_describe(out nint d, (int)type));
        return Marshal.PtrToStringUTF8(d) ?? "";
    }

    /// <summary>Loads the GPU backend plugin from <paramref name="path"/> instead of
    /// searching for it. Throws when the file is missing, is not a Loom backend,
    /// was built for another interface version, or another plugin is loaded.</summary>
    /// <param name="path">The file's path.</param>
    public static void Load(string path)
    {
        System.ArgumentNullException.ThrowIfNull(path);
        LoomException.Check(LoomNative.loom_backend_load(path));
    }
}

/// <summary>The pooled device allocators.</summary>
public static class Storage
{
    /// <summary>Allocator statistics of a device.</summary>
    /// <param name="ctx">The device (the CPU when null).</param>
    /// <returns>The allocator's counters for that device.</returns>
    public static StorageStats Stats(Context ctx)
    {
        LoomException.Check(LoomNative.loom_storage_get_stats(out StorageStats s, (int)ctx.DeviceType, ctx.DeviceId));
        return s;
    }

    /// <summary>Returns a device's pooled, unused memory to the system.</summary>
    /// <param name="ctx">The device (the CPU when null).</param>
    public static void ReleasePooled(Context ctx) =>
        LoomException.Check(LoomNative.loom_storage_release_pooled((int)ctx.DeviceType, ctx.DeviceId));
}

/// <summary>The seeded, counter-based random generator of the engine.</summary>
public static class Rand
{
    /// <summary>Seeds every random operator; the same seed and call sequence gives the
    /// same numbers whatever the engine or thread count.</summary>
    /// <param name="seed">The seed of the counter-based generator.</param>
    public static void Seed(ulong seed) => LoomException.Check(LoomNative.loom_random_seed(seed));

    /// <summary>The generator's state (seed, draws so far); see <see cref="SetState"/>.</summary>
    /// <returns>The seed and the stream position.</returns>
    public static (ulong Seed, ulong Stream) GetState()
    {
        LoomException.Check(LoomNative.loom_random_get_state(out ulong seed, out ulong stream));
        return (seed, stream);
    }

    /// <summary>Restores a state from <see cref="GetState"/>: later draws repeat exactly.</summary>
    /// <param name="seed">The seed of the counter-based generator.</param>
    /// <param name="stream">The position of the generator's stream.</param>
    public static void SetState(ulong seed, ulong stream) => LoomException.Check(LoomNative.loom_random_set_state(seed, stream));

    /// <summary>Uniform samples in [low, high).</summary>
    /// <param name="low">The lower bound (inclusive).</param>
    /// <param name="high">The upper bound (exclusive).</param>
    /// <param name="shape">The shape, one extent per axis.</param>
    /// <param name="dtype">The element type.</param>
    /// <param name="ctx">The device (the CPU when null).</param>
    /// <returns>A new array of draws.</returns>
    public static NDArray Uniform(double low, double high, long[] shape, DType dtype = DType.Float32, Context? ctx = null) =>
        Op.RandomUniform(low: low, high: high, shape: shape, dtype: dtype, ctx: ctx);

    /// <summary>Normal samples with mean <paramref name="loc"/> and deviation <paramref name="scale"/>.</summary>
    /// <param name="shape">The shape, one extent per axis.</param>
    /// <param name="dtype">The element type.</param>
    /// <param name="ctx">The device (the CPU when null).</param>
    /// <returns>A new array of draws.</returns>
    /// <param name="loc">The mean.</param>
    /// <param name="scale">The standard deviation.</param>
    public static NDArray Normal(double loc, double scale, long[] shape, DType dtype = DType.Float32, Context? ctx = null) =>
        Op.RandomNormal(loc: loc, scale: scale, shape: shape, dtype: dtype, ctx: ctx);
}
