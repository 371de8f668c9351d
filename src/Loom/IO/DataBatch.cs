using System;
using System.Collections.Generic;
using System.Linq;
using Loom.Interop;

namespace Loom;

/// <summary>One batch of an iterator.</summary>
/// <param name="Data">The samples.</param>
/// <param name="Label">Their labels (null without labels).</param>
/// <param name="Pad">How many samples at the end are padding (a last batch filled up by <see cref="LastBatch.Pad"/>).</param>
public sealed record DataBatch(NDArray Data, NDArray? Label, int Pad);
