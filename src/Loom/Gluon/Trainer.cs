using System;
using System.Collections.Generic;
using System.Linq;

namespace Loom.Gluon;

/// <summary>
/// Applies an <see cref="Optimizer"/> to a set of parameters after each backward pass
/// (MXNet Gluon's <c>Trainer</c>): <see cref="Step"/> rescales the gradients by
/// 1 / batch size and runs the optimizer's native update op on every parameter that
/// takes a gradient, with its learning-rate and weight-decay multipliers. With a
/// <see cref="KVStore"/> the gradients are first summed through it (across processes with
/// <c>dist_sync</c>), as MXNet's trainer does, and every worker applies the same update.
/// </summary>
public sealed class Trainer
{
    private readonly Parameter[] _params;

    /// <summary>Creates the trainer.</summary>
    /// <param name="params">The parameters to update (a network's <see cref="Block.Collect"/>).</param>
    /// <param name="optimizer">The optimizer (it keeps the per-parameter state).</param>
    /// <param name="kvstore">Sums each gradient across workers before the update (null: none).
    /// As in MXNet the rescaling stays 1 / <c>batchSize</c>: pass the batch of all workers
    /// together to average over it.</param>
    public Trainer(ParameterDict @params, Optimizer optimizer, KVStore? kvstore = null)
    {
        KVStore = kvstore;
        ArgumentNullException.ThrowIfNull(@params);
        ArgumentNullException.ThrowIfNull(optimizer);
        _params = @params.Values.ToArray();
        Optimizer = optimizer;
    }

    /// <summary>The optimizer.</summary>
    public Optimizer Optimizer { get; }

    /// <summary>The store the gradients are summed through, or null.</summary>
    public KVStore? KVStore { get; }

    private bool _kvInitialized;

    /// <summary>The learning rate (of the optimizer).</summary>
    public double LearningRate
    {
        get => Optimizer.LearningRate;
        set => Optimizer.LearningRate = value;
    }

    /// <summary>One update of every parameter from its gradient, scaled by 1 / <paramref name="batchSize"/>
    /// (gradients summed over a batch become a mean, as MXNet's <c>trainer.step</c>).</summary>
    /// <param name="batchSize">The number of samples the gradients were summed over.</param>
    /// <exception cref="LoomException">A parameter has not been initialised (no forward ran).</exception>
    public void Step(int batchSize)
    {
        if (batchSize <= 0) throw new LoomException(LoomStatus.InvalidArgument, $"Trainer.Step: batchSize must be positive, got {batchSize}");
        Optimizer.RescaleGrad = 1.0 / batchSize;
        foreach (var p in _params)
            if (p.GradReq != GradReq.Null && !p.IsInitialized)
                throw new LoomException(LoomStatus.InvalidArgument,
                    $"Trainer.Step: parameter '{p.Name}' {NDArray.ShapeString(p.Shape)} has not been initialized; run a forward and backward first");
        // Several devices and no store: the devices' gradients are summed in a local store
        // (MXNet's trainer makes a "device" store for several contexts).
        var kv = KVStore ?? (_params.Any(p => p.Contexts.Count > 1) ? (_local ??= KVStore.Create("local")) : null);
        if (kv is not null)
        {
            if (!_kvInitialized)
            {
                // Every worker starts from rank 0's values (the store's initial value).
                for (int i = 0; i < _params.Length; i++)
                    if (_params[i].GradReq != GradReq.Null) kv.Init(Key(i), _params[i].ListData()[0]);
                for (int i = 0; i < _params.Length; i++)
                    if (_params[i].GradReq != GradReq.Null) kv.Pull(Key(i), _params[i].ListData());
                _kvInitialized = true;
            }
            for (int i = 0; i < _params.Length; i++)
            {
                if (_params[i].GradReq == GradReq.Null) continue;
                var grads = _params[i].ListGrad();
                kv.PushPull(Key(i), grads, grads);  // every device receives the sum
                foreach (var g in grads) g.Dispose();
            }
        }
        var indices = new List<int>();
        var weights = new List<NDArray>();
        var gradients = new List<NDArray>();
        try
        {
            for (int i = 0; i < _params.Length; i++)
            {
                var p = _params[i];
                if (p.GradReq == GradReq.Null) continue;
                var ctxs = p.Contexts;
                for (int c = 0; c < ctxs.Count; c++)
                {
                    // Each device's copy has its own optimizer state: the same update on the same
                    // values and the same summed gradient keeps the copies identical.
                    int index = i * ctxs.Count + c;
                    if (p.LrMult != 1.0) Optimizer.LrMult[index] = p.LrMult;
                    if (p.WdMult != 1.0) Optimizer.WdMult[index] = p.WdMult;
                    indices.Add(index);
                    weights.Add(p.Data(ctxs[c]));
                    gradients.Add(p.Grad(ctxs[c]));
                }
            }
            Optimizer.Update(indices, weights, gradients);
        }
        finally
        {
            foreach (var g in gradients) g.Dispose();
        }
    }

    private KVStore? _local;

    // Keys name the parameter, so a mismatch between workers' networks is caught by name.
    private string Key(int i) => $"{i}:{_params[i].Name}";
}
