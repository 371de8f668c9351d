using System;
using System.Runtime.InteropServices;
using Loom.Interop;

namespace Loom;

/// <summary>A TensorBoard event file, written natively (TFRecord framing with masked
/// CRC-32C around TensorFlow's <c>Event</c>/<c>Summary</c> protobuf messages): scalars,
/// histograms computed natively, and the network graph. Point TensorBoard at the log
/// directory: <c>tensorboard --logdir runs</c>.</summary>
public sealed class SummaryWriter : IDisposable
{
    private readonly SummaryWriterHandle _handle;

    /// <summary>Starts a new event file in <paramref name="logDir"/> (created if needed).</summary>
    /// <param name="logDir">The run's log directory.</param>
    /// <exception cref="LoomException">The directory cannot be made or written (the path is named).</exception>
    public SummaryWriter(string logDir)
    {
        ArgumentNullException.ThrowIfNull(logDir);
        LoomException.Check(LoomNative.loom_summary_writer_create(out SummaryWriterHandle h, logDir));
        _handle = h;
        LoomException.Check(LoomNative.loom_summary_writer_get_path(out nint p, h));
        Path = Marshal.PtrToStringUTF8(p)!;
    }

    private SummaryWriterHandle Handle => _handle.IsClosed
        ? throw new LoomException(LoomStatus.InvalidArgument, "this SummaryWriter was used after Dispose()")
        : _handle;

    /// <summary>The event file being written (it stays after <see cref="Dispose"/>).</summary>
    public string Path { get; }

    /// <summary>A scalar at a step (TensorBoard's Scalars tab).</summary>
    /// <param name="tag">Its name, such as <c>train/accuracy</c>.</param>
    /// <param name="value">The value.</param>
    /// <param name="step">The step (for example the batch count).</param>
    public void AddScalar(string tag, double value, long step) =>
        LoomException.Check(LoomNative.loom_summary_add_scalar(Handle, tag, value, step));

    /// <summary>A histogram of an array's finite values, computed natively (TensorBoard's
    /// Histograms and Distributions tabs).</summary>
    /// <param name="tag">Its name, such as <c>fc1_weight</c>.</param>
    /// <param name="values">A float32 or float64 array.</param>
    /// <param name="step">The step.</param>
    /// <param name="bins">Equal-width buckets between the smallest and largest value.</param>
    public void AddHistogram(string tag, NDArray values, long step, int bins = 30)
    {
        ArgumentNullException.ThrowIfNull(values);
        LoomException.Check(LoomNative.loom_summary_add_histogram(Handle, tag, values.Handle, step, bins));
    }

    /// <summary>The network (TensorBoard's Graphs tab).</summary>
    /// <param name="symbol">The network.</param>
    public void AddGraph(Symbol symbol)
    {
        ArgumentNullException.ThrowIfNull(symbol);
        LoomException.Check(LoomNative.loom_summary_add_graph(Handle, symbol.Handle));
    }

    /// <summary>Writes what is buffered to the file.</summary>
    public void Flush() => LoomException.Check(LoomNative.loom_summary_writer_flush(Handle));

    /// <summary>Closes the file.</summary>
    public void Dispose() => _handle.Dispose();
}
