using System;
using System.Collections.Generic;
using System.Linq;
using Loom.Interop;

namespace Loom;

/// <summary>What an iterator does with the final, incomplete batch.</summary>
public enum LastBatch
{
    /// <summary>Drop it.</summary>
    Discard = LoomConstants.LOOM_LAST_BATCH_DISCARD,
    /// <summary>Fill it up with samples from the start of the epoch's order (the batch's Pad says how many).</summary>
    Pad = LoomConstants.LOOM_LAST_BATCH_PAD,
    /// <summary>Carry its samples over to the start of the next epoch.</summary>
    RollOver = LoomConstants.LOOM_LAST_BATCH_ROLL_OVER,
}
