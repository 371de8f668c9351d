using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text.RegularExpressions;

namespace Loom;

/// <summary>Writes a checkpoint (symbol, parameters, optimizer state) at the interval.</summary>
/// <param name="prefix">The checkpoint path without suffixes; files are named by epoch.</param>
/// <param name="interval">Batches between checkpoints.</param>
public sealed class Snapshot(string prefix, int interval) : Callback(interval)
{
    /// <inheritdoc/>
    public override void Invoke(Module module, BatchEnd e) => module.SaveCheckpoint(prefix, e.Epoch, saveOptimizerStates: true);
}
