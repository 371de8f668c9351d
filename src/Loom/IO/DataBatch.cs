using System;
using System.Collections.Generic;
using System.Linq;
using Loom.Interop;

namespace Loom;

/// <summary>One batch: data, label (null without labels) and how many samples at its end are padding.</summary>
public sealed record DataBatch(NDArray Data, NDArray? Label, int Pad);
