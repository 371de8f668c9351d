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
}
