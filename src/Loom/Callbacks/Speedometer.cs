using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text.RegularExpressions;

namespace Loom;

/// <summary>Logs training speed (samples/s) and the running accuracy.</summary>
/// <param name="interval">Batches between log lines.</param>
public sealed class Speedometer(int interval = 50) : Callback(interval)
{
    private long _lastSamples;
    private double _lastSeconds;

    /// <inheritdoc/>
    public override void Invoke(Module module, BatchEnd e)
    {
        if (e.Batch == Interval) (_lastSamples, _lastSeconds) = (0, 0);
        double dt = e.Seconds - _lastSeconds;
        long ds = e.Samples - _lastSamples;
        (_lastSamples, _lastSeconds) = (e.Samples, e.Seconds);
        if (dt > 0)
            Module.Info($"Epoch[{e.Epoch}] Batch [{e.Batch}]\tSpeed: {ds / dt:F2} samples/sec\t{e.Metric.Name}={e.Metric.Get():F6}");
    }
}
