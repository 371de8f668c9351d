using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text.RegularExpressions;

namespace Loom;

/// <summary>Runs every <paramref name="interval"/> batches (Mocha's "coffee breaks").</summary>
public abstract class Callback(int interval)
{
    /// <summary>Batches between calls.</summary>
    public int Interval { get; } = interval;
    /// <summary>Called after batches number Interval, 2*Interval, ...</summary>
    public abstract void Invoke(Module module, BatchEnd e);
}
