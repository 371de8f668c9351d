using Loom.Interop;

namespace Loom;

/// <summary>A device: <c>Context.Cpu(0)</c>, <c>Context.Cpu(1)</c> (several CPU devices,
/// each with its own workers) or <c>Context.Gpu(0)</c> (needs the CUDA backend).</summary>
/// <param name="DeviceType">CPU or GPU.</param>
/// <param name="DeviceId">The device's number, from 0.</param>
public readonly record struct Context(DeviceType DeviceType, int DeviceId)
{
    /// <summary>CPU device <paramref name="id"/>.</summary>
    /// <param name="id">The device number.</param>
    /// <returns>The CPU context.</returns>
    public static Context Cpu(int id = 0) => new(DeviceType.Cpu, id);

    /// <summary>GPU device <paramref name="id"/>.</summary>
    /// <param name="id">The device number.</param>
    /// <returns>The GPU context.</returns>
    public static Context Gpu(int id = 0) => new(DeviceType.Gpu, id);

    /// <summary>The context new arrays use when none is given.</summary>
    public static Context Default { get; set; } = Cpu(0);

    /// <summary>Reads "cpu", "cpu(1)", "gpu" or "gpu(0)" (the form <see cref="ToString"/> writes).</summary>
    /// <exception cref="System.FormatException">The text is not a context.</exception>
    /// <param name="text">The text, such as cpu(0) or gpu(1).</param>
    /// <returns>The context.</returns>
    public static Context Parse(string text)
    {
        System.ArgumentNullException.ThrowIfNull(text);
        string t = text.Trim();
        int open = t.IndexOf('(');
        string kind = open < 0 ? t : t[..open];
        int id = 0;
        if (open >= 0 && (!t.EndsWith(')') || !int.TryParse(t[(open + 1)..^1], out id) || id < 0))
            throw new System.FormatException($"'{text}' is not a context like cpu(0) or gpu(1)");
        return kind switch
        {
            "cpu" => Cpu(id),
            "gpu" => Gpu(id),
            _ => throw new System.FormatException($"'{text}' is not a context like cpu(0) or gpu(1)"),
        };
    }

    /// <summary>"cpu(0)", the form the engine's parameters take.</summary>
    /// <returns>The context as cpu(0) or gpu(1), the form <see cref="Parse"/> reads.</returns>
    public override string ToString() => (DeviceType == DeviceType.Gpu ? "gpu(" : "cpu(") + DeviceId + ")";
}
