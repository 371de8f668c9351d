using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text.RegularExpressions;

namespace Loom;

/// <summary>Code run during training every <paramref name="interval"/> batches, to log
/// progress or save checkpoints (what Mocha calls "coffee breaks").</summary>
/// <param name="interval">Batches between calls.</param>
public abstract class Callback(int interval)
{
    /// <summary>Batches between calls.</summary>
    public int Interval { get; } = interval;
    /// <summary>Called after batches number Interval, 2*Interval, ...</summary>
    /// <param name="module">The module being trained.</param>
    /// <param name="e">Where training stands.</param>
    public abstract void Invoke(Module module, BatchEnd e);

    /// <summary>Called after each epoch of <see cref="Module.Fit"/>, after its validation
    /// (nothing by default).</summary>
    /// <param name="module">The module being trained.</param>
    /// <param name="e">The epoch's results.</param>
    public virtual void EpochEnd(Module module, EpochEnd e) { }
}

/// <summary>The results of one epoch of <see cref="Module.Fit"/>.</summary>
/// <param name="Epoch">The epoch (from 1).</param>
/// <param name="Batches">Batches trained in it.</param>
/// <param name="Metric">The metric's name.</param>
/// <param name="Train">The training metric over the epoch.</param>
/// <param name="Validation">The validation metric, when <c>Fit</c> was given validation data.</param>
/// <param name="Seconds">The epoch's training time.</param>
public sealed record EpochEnd(int Epoch, long Batches, string Metric, double Train, double? Validation, double Seconds);
