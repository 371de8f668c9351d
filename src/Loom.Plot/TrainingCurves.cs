using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;

namespace Loom.Plot;

/// <summary>
/// A <see cref="Callback"/> that draws the training curves of <see cref="Module.Fit"/>: the
/// running training metric every <c>interval</c> batches, and the training and validation
/// metrics of each epoch, against the epoch (fractional between epochs). With a
/// <c>path</c> the picture is rewritten after every epoch (PNG or SVG by the extension), so it
/// is there even if training stops early. Files are written to a temporary name and renamed,
/// so a reader never sees half a picture.
/// </summary>
/// <param name="path">The picture written after each epoch (null: only by <see cref="Save"/>).</param>
/// <param name="title">The picture's title.</param>
/// <param name="interval">Batches between points of the running training metric.</param>
public sealed class TrainingCurves(string? path = null, string title = "training", int interval = 20) : Callback(interval)
{
    private readonly List<(int Epoch, long Batch, double Value)> _running = new();
    private readonly List<EpochEnd> _epochs = new();
    private readonly Dictionary<int, long> _batchesPerEpoch = new();
    private string _metric = "metric";

    /// <summary>The picture's width in pixels.</summary>
    public int Width { get; set; } = 800;

    /// <summary>The picture's height in pixels.</summary>
    public int Height { get; set; } = 450;

    /// <summary>The epochs seen so far, with their training and validation metrics.</summary>
    public IReadOnlyList<EpochEnd> Epochs => _epochs;

    /// <summary>The running training metric: (position in epochs, value).</summary>
    public IReadOnlyList<(double Epoch, double Value)> Running => _running
        .Where(r => _batchesPerEpoch.ContainsKey(r.Epoch))
        .Select(r => (r.Epoch - 1 + (double)r.Batch / _batchesPerEpoch[r.Epoch], r.Value)).ToList();

    /// <inheritdoc/>
    public override void Invoke(Module module, BatchEnd e)
    {
        _metric = e.Metric.Name;
        _running.Add((e.Epoch, e.Batch, e.Metric.Get()));
    }

    /// <inheritdoc/>
    public override void EpochEnd(Module module, EpochEnd e)
    {
        ArgumentNullException.ThrowIfNull(e);
        _metric = e.Metric;
        _batchesPerEpoch[e.Epoch] = Math.Max(e.Batches, 1);
        _epochs.Add(e);
        if (path is not null) Save(path);
    }

    /// <summary>Writes the curves so far as a PNG or SVG picture (by the extension).</summary>
    /// <param name="file">The picture's path (.png or .svg).</param>
    /// <exception cref="LoomException">Another extension, or the file cannot be written (named).</exception>
    public void Save(string file)
    {
        ArgumentNullException.ThrowIfNull(file);
        string ext = Path.GetExtension(file).ToLowerInvariant();
        if (ext != ".png" && ext != ".svg")
            throw new LoomException(LoomStatus.InvalidArgument, $"TrainingCurves: '{file}' must end in .png or .svg");
        var plot = new ScottPlot.Plot();
        var running = Running;
        if (running.Count > 0)
        {
            var line = plot.Add.ScatterLine(running.Select(r => r.Epoch).ToArray(), running.Select(r => r.Value).ToArray());
            line.LegendText = $"training {_metric} (running, every {Interval} batches)";
            line.LineWidth = 1;
        }
        if (_epochs.Count > 0)
        {
            var train = plot.Add.Scatter(_epochs.Select(e => (double)e.Epoch).ToArray(), _epochs.Select(e => e.Train).ToArray());
            train.LegendText = $"training {_metric} (epoch)";
            train.MarkerSize = 7;
            var validated = _epochs.Where(e => e.Validation.HasValue).ToList();
            if (validated.Count > 0)
            {
                var val = plot.Add.Scatter(validated.Select(e => (double)e.Epoch).ToArray(),
                    validated.Select(e => e.Validation!.Value).ToArray());
                val.LegendText = $"validation {_metric}";
                val.MarkerSize = 7;
            }
        }
        plot.Title(title);
        plot.XLabel("epoch");
        plot.YLabel(_metric);
        plot.ShowLegend(ScottPlot.Alignment.LowerRight);
        string full = Path.GetFullPath(file);
        string tmp = Path.Combine(Path.GetDirectoryName(full) ?? ".", $".{Path.GetFileName(full)}.{Environment.ProcessId}.tmp{ext}");
        try
        {
            if (ext == ".png") plot.SavePng(tmp, Width, Height);
            else plot.SaveSvg(tmp, Width, Height);
            File.Move(tmp, full, overwrite: true);
        }
        catch (Exception ex) when (ex is not LoomException)
        {
            try { File.Delete(tmp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            throw new LoomException(LoomStatus.Io, $"TrainingCurves: cannot write '{file}': {ex.Message}");
        }
    }
}
