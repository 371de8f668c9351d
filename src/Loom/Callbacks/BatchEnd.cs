using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text.RegularExpressions;

namespace Loom;

/// <summary>What a callback sees.</summary>
public sealed record BatchEnd(int Epoch, int Batch, long Samples, double Seconds, EvalMetric Metric);
