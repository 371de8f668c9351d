using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text.RegularExpressions;

namespace Loom;

/// <summary>What a callback sees after a batch.</summary>
/// <param name="Epoch">The epoch, from 1.</param>
/// <param name="Batch">Batches done in this epoch.</param>
/// <param name="Samples">Samples done in this epoch.</param>
/// <param name="Seconds">Seconds since the epoch began.</param>
/// <param name="Metric">The running training metric.</param>
public sealed record BatchEnd(int Epoch, int Batch, long Samples, double Seconds, EvalMetric Metric);
