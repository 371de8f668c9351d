using System;
using System.Diagnostics;
using Spectre.Console;

namespace Loom;

/// <summary>How <see cref="Module.Fit"/> shows progress within an epoch.</summary>
public enum ProgressMode
{
    /// <summary>A live line on a terminal (Spectre.Console), plain log lines when the output is
    /// redirected (CI, files).</summary>
    Auto,
    /// <summary>Always the live line (on <see cref="Module.ProgressConsole"/>).</summary>
    Live,
    /// <summary>Always plain log lines (<see cref="Module.Log"/>), about every tenth of an epoch.</summary>
    Plain,
    /// <summary>No progress within an epoch (the epoch summaries stay).</summary>
    Off,
}

// Progress within one epoch of Fit: batches done, samples per second, the time left and the
// running training metric. Live, it is a Spectre.Console progress line redrawn about four
// times a second; plain, a log line at each tenth of the epoch, at most one a second.
// Reading the running metric
// waits for the batch in flight, so it is read only when a line is drawn.
internal sealed class EpochProgress
{
    private readonly int _epoch;
    private readonly long _total;
    private readonly ProgressTask? _task;
    private readonly ProgressContext? _ctx;
    private readonly Action<string>? _log;
    private readonly Stopwatch _since = Stopwatch.StartNew();
    private long _nextPlain;
    private double _lastPlain;  // seconds into the epoch of the last line (0: its start)

    // Plain lines come at most this often (seconds): a short epoch logs only its summary.
    internal static double PlainMinSeconds = 1.0;

    private EpochProgress(int epoch, long total, ProgressContext? ctx, ProgressTask? task, Action<string>? log)
    {
        _ctx = ctx;
        _epoch = epoch;
        _total = Math.Max(total, 1);
        _task = task;
        _log = log;
        _nextPlain = NextTenth(0);
    }

    // Runs one epoch's body with the display `mode` chooses; the body reports each batch.
    internal static void Run(ProgressMode mode, IAnsiConsole console, int epoch, long totalBatches,
        Action<EpochProgress?> body)
    {
        bool live = mode == ProgressMode.Live ||
                    (mode == ProgressMode.Auto && !Console.IsOutputRedirected && console.Profile.Capabilities.Interactive);
        if (mode == ProgressMode.Off)
        {
            body(null);
            return;
        }
        if (!live)
        {
            body(new EpochProgress(epoch, totalBatches, null, null, Module.Info));
            return;
        }
        console.Progress()
            .AutoClear(true)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(),
                new PercentageColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask($"epoch {epoch}", maxValue: Math.Max(totalBatches, 1));
                body(new EpochProgress(epoch, totalBatches, ctx, task, null));
                task.StopTask();
            });
    }

    // The next batch after `batch` that ends a tenth of the epoch.
    private long NextTenth(long batch)
    {
        for (long k = 1; k <= 10; k++)
        {
            long t = (k * _total + 9) / 10;
            if (t > batch) return t;
        }
        return long.MaxValue;
    }

    // After batch `batch` (from 1) with `samples` seen in `seconds`; `metric` reads the
    // running metric (a native wait) and is called only when a line is drawn.
    internal void Batch(long batch, long samples, double seconds, Func<(string Name, double Value)> metric)
    {
        if (_task is not null)
        {
            _task.Value = batch;
            if (_since.Elapsed.TotalSeconds < 0.25 && batch < _total) return;
            _since.Restart();
            var (name, value) = metric();
            _task.Description = $"epoch {_epoch}  {batch}/{_total}  {Rate(samples, seconds)}  {name} {value:F4}";
            _ctx!.Refresh();
            return;
        }
        if (batch < _nextPlain) return;
        _nextPlain = NextTenth(batch);
        if (seconds - _lastPlain < PlainMinSeconds) return;
        _lastPlain = seconds;
        var (n, v) = metric();
        double left = batch < _total && batch > 0 ? seconds / batch * (_total - batch) : 0;
        _log!($"Epoch[{_epoch}] {batch}/{_total} batches  {Rate(samples, seconds)}  ETA {left:F1} s  {n}={v:F4}");
    }

    private static string Rate(long samples, double seconds) =>
        seconds > 0 ? $"{samples / seconds:F0} samples/s" : "- samples/s";
}
