using Loom.Interop;

namespace Loom;

/// <summary>A device: <c>Context.Cpu(0)</c>, <c>Context.Cpu(1)</c> (several CPU devices,
/// each with its own workers) or <c>Context.Gpu(0)</c> (needs the CUDA backend).</summary>
public readonly record struct Context(DeviceType DeviceType, int DeviceId)
{
    /// <summary>CPU device <paramref name="id"/>.</summary>
    public static Context Cpu(int id = 0) => new(DeviceType.Cpu, id);

    /// <summary>GPU device <paramref name="id"/>.</summary>
    public static Context Gpu(int id = 0) => new(DeviceType.Gpu, id);

    /// <summary>The context new arrays use when none is given.</summary>
    public static Context Default { get; set; } = Cpu(0);

    /// <summary>"cpu(0)", the form the engine's parameters take.</summary>
    public override string ToString() => (DeviceType == DeviceType.Gpu ? "gpu(" : "cpu(") + DeviceId + ")";
}
