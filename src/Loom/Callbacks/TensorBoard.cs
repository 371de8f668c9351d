using System;
using System.Linq;

namespace Loom;

/// <summary>Logs training to TensorBoard every <c>interval</c> batches: the running training
/// metric (<c>train/&lt;metric&gt;</c>), the learning rate (<c>learning_rate</c>), images per
/// second (<c>speed</c>) and, when <paramref name="histograms"/> is set, a histogram of every
/// parameter and of its gradient; the network graph once; and, through
/// <see cref="LogValidation"/> (which <see cref="Module.Fit"/> calls after each epoch's
/// validation), <c>validation/&lt;metric&gt;</c>. The step is the number of batches trained so far.</summary>
/// <param name="logDir">The run's log directory (created if needed).</param>
/// <param name="interval">Batches between records.</param>
/// <param name="histograms">Also log parameter and gradient histograms.</param>
public sealed class TensorBoard(string logDir, int interval = 50, bool histograms = true) : Callback(interval), IDisposable
{
    private readonly SummaryWriter _writer = new(logDir);
    private bool _graphWritten;
    private long _batchesPerEpoch;
    private double _lastSeconds;
    private long _lastSamples;

    /// <summary>The event file being written.</summary>
    public string Path => _writer.Path;

    private long Step(BatchEnd e) => e.Epoch * Math.Max(_batchesPerEpoch, e.Batch) + e.Batch;

    /// <inheritdoc/>
    public override void Invoke(Module module, BatchEnd e)
    {
        _batchesPerEpoch = Math.Max(_batchesPerEpoch, e.Batch);
        long step = Step(e);
        if (!_graphWritten)
        {
            _writer.AddGraph(module.Symbol);
            _graphWritten = true;
        }
        _writer.AddScalar("train/" + e.Metric.Name, e.Metric.Get(), step);
        if (module.Optimizer is { } opt) _writer.AddScalar("learning_rate", opt.CurrentLearningRate, step);
        if (e.Seconds > _lastSeconds && e.Samples > _lastSamples)
            _writer.AddScalar("speed", (e.Samples - _lastSamples) / (e.Seconds - _lastSeconds), step);
        (_lastSeconds, _lastSamples) = e.Batch <= Interval ? (0.0, 0L) : (e.Seconds, e.Samples);
        if (histograms)
        {
            var ex = module.Executor;
            var names = module.Symbol.ListArguments();
            for (int i = 0; i < names.Length; i++)
            {
                if (ex.Gradients[i] is not { } g || ex.Arguments[i].DType is not (DType.Float32 or DType.Float64)) continue;
                _writer.AddHistogram(names[i], ex.Arguments[i], step);
                _writer.AddHistogram(names[i] + "_grad", g, step);
            }
        }
        _writer.Flush();
    }

    /// <summary>Logs a validation metric at the end of an epoch.</summary>
    /// <param name="epoch">The epoch (from 0).</param>
    /// <param name="metric">The metric's name.</param>
    /// <param name="value">Its value.</param>
    public void LogValidation(int epoch, string metric, double value)
    {
        _writer.AddScalar("validation/" + metric, value, (epoch + 1) * _batchesPerEpoch);
        _writer.Flush();
    }

    /// <summary>Closes the event file.</summary>
    public void Dispose() => _writer.Dispose();
}
