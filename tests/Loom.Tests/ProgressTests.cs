using System;
using System.Collections.Generic;
using System.Linq;
using System.Text.RegularExpressions;
using NUnit.Framework;
using Spectre.Console.Testing;

namespace Loom.Tests;

// Fit's progress within an epoch: a live Spectre.Console line on a terminal, plain log
// lines at each tenth of the epoch otherwise, nothing when turned off.
[NonParallelizable]
public class ProgressTests
{
    private static NDArrayIter Blobs()
    {
        Rand.Seed(3);
        var labels = Op.Cast(Op.RandomUniform(low: 0, high: 3, shape: new long[] { 300 }), DType.Int32).AsType(DType.Float32);
        var x = Op.OneHot(labels.AsType(DType.Int64), depth: 5) * 3.0 + Rand.Normal(0, 0.5, new long[] { 300, 5 });
        return new NDArrayIter(x, labels, 20, shuffle: true);
    }

    private static Symbol Mlp() => Symbol.Variable("data")
        .FullyConnected("fc1", numHidden: 8).Activation("relu1", ActType.Relu)
        .FullyConnected("fc2", numHidden: 3)
        .SoftmaxOutput("softmax");

    private static List<string> FitLogged(ProgressMode mode, int epochs)
    {
        var log = new List<string>();
        var old = Module.Log;
        Module.Log = log.Add;
        try
        {
            using var m = new Module(Mlp()) { Progress = mode };
            m.Fit(Blobs(), new SGD(0.5), epochs, init: new XavierInit());
        }
        finally { Module.Log = old; }
        return log;
    }

    [Test]
    public void PlainLinesAtEachTenthOfAnEpoch()
    {
        // A short epoch logs no lines (at most one a second) ...
        Assert.That(FitLogged(ProgressMode.Plain, 1).Any(l => l.StartsWith("Epoch[", StringComparison.Ordinal)), Is.False);
        // ... and without that limit, one at each tenth.
        double old = EpochProgress.PlainMinSeconds;
        EpochProgress.PlainMinSeconds = 0;
        List<string> log;
        try { log = FitLogged(ProgressMode.Plain, 2); }
        finally { EpochProgress.PlainMinSeconds = old; }
        var lines = log.Where(l => Regex.IsMatch(l, @"^Epoch\[\d\] \d+/15 batches")).ToList();
        // 15 batches of 20: lines after batches 2, 3, 5, 6, 8, 9, 11, 12, 14, 15 of each epoch.
        Assert.That(lines, Has.Count.EqualTo(20), string.Join("\n", log));
        Assert.That(lines.Take(10).Select(l => int.Parse(Regex.Match(l, @"(\d+)/15").Groups[1].Value)),
            Is.EqualTo(new[] { 2, 3, 5, 6, 8, 9, 11, 12, 14, 15 }));
        Assert.That(lines[0], Does.Match(@"^Epoch\[1\] 2/15 batches  \d+ samples/s  ETA \d+\.\d s  accuracy=0\.\d{4}$"));
        Assert.That(lines[10], Does.StartWith("Epoch[2] 2/15 batches"));
        Assert.That(lines[9], Does.Contain("ETA 0.0 s"));
        // The epoch summaries follow each epoch's lines.
        int summary = log.FindIndex(l => l.Contains("## Training summary"));
        Assert.That(summary, Is.GreaterThan(log.IndexOf(lines[9])));
        Assert.That(summary, Is.LessThan(log.IndexOf(lines[10])));
    }

    [Test]
    public void LiveLineOnATerminal()
    {
        var console = new TestConsole().Interactive().EmitAnsiSequences();
        console.Profile.Width = 160;
        var old = Module.ProgressConsole;
        Module.ProgressConsole = console;
        try
        {
            var log = FitLogged(ProgressMode.Live, 1);
            Assert.That(log.Any(l => l.StartsWith("Epoch[", StringComparison.Ordinal)), Is.False, "no plain lines when live");
            string shown = console.Output;
            Assert.That(shown, Does.Contain("epoch 1"));
            Assert.That(shown, Does.Match(@"15/15 +\d+ samples/s +accuracy 0\.\d{4}"));
            Assert.That(shown, Does.Contain("100%"));
        }
        finally { Module.ProgressConsole = old; }
    }

    [Test]
    public void OffShowsNothingWithinAnEpoch()
    {
        var log = FitLogged(ProgressMode.Off, 1);
        Assert.That(log.Any(l => l.StartsWith("Epoch[", StringComparison.Ordinal)), Is.False);
        Assert.That(log.Count(l => l.Contains("## Training summary")), Is.EqualTo(1));
    }
}
