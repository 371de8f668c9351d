using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;

namespace Loom;

/// <summary>Trains a network whose graph depends on the sequence length (MXNet's
/// BucketingModule): <c>symGen(bucketKey)</c> makes the network for one bucket; each bucket gets
/// its own executor, bound the first time a batch of that bucket arrives, and every executor
/// uses the same parameter, gradient and auxiliary arrays, those of the default (largest) bucket.
/// One device.</summary>
public sealed class BucketingModule : IDisposable
{
    private readonly Func<int, Symbol> _symGen;
    private readonly Dictionary<int, Executor> _execs = new();
    private readonly List<NDArray> _inputs = new();  // other buckets' data and label arrays
    private readonly Context _ctx;
    private Dictionary<string, NDArray> _params = new(), _grads = new(), _aux = new();
    private string[] _paramNames = Array.Empty<string>();
    private Optimizer? _opt;
    private long _batch;

    /// <summary>A module over <paramref name="symGen"/>.</summary>
    /// <param name="symGen">The network for a bucket key (the sequence length).</param>
    /// <param name="defaultBucketKey">The bucket bound first; its network holds every parameter.</param>
    /// <param name="dataNames">The data inputs (default <c>data</c>).</param>
    /// <param name="labelNames">The label inputs (default <c>softmax_label</c>).</param>
    /// <param name="context">The device (the CPU when null).</param>
    public BucketingModule(Func<int, Symbol> symGen, int defaultBucketKey, string[]? dataNames = null,
        string[]? labelNames = null, Context? context = null)
    {
        _symGen = symGen ?? throw new ArgumentNullException(nameof(symGen));
        DefaultBucketKey = defaultBucketKey;
        DataNames = dataNames ?? new[] { "data" };
        LabelNames = labelNames ?? new[] { "softmax_label" };
        _ctx = context ?? Context.Cpu();
    }

    /// <summary>The bucket whose network holds every parameter.</summary>
    public int DefaultBucketKey { get; }
    /// <summary>The bucket of the last forward pass.</summary>
    public int CurrentBucketKey { get; private set; }
    /// <summary>The data inputs.</summary>
    public string[] DataNames { get; }
    /// <summary>The label inputs.</summary>
    public string[] LabelNames { get; }
    /// <summary>The buckets bound so far.</summary>
    public IReadOnlyCollection<int> BoundBuckets => _execs.Keys;
    /// <summary>Parameter names (the default bucket's arguments that are neither data nor labels).</summary>
    public IReadOnlyList<string> ParamNames => _paramNames;

    /// <summary>The executor of a bound bucket.</summary>
    /// <param name="bucketKey">The bucket.</param>
    /// <returns>Its executor.</returns>
    public Executor ExecutorFor(int bucketKey) => _execs.TryGetValue(bucketKey, out var e) ? e
        : throw new LoomException(LoomStatus.InvalidArgument, $"BucketingModule: bucket {bucketKey} is not bound (bound: {string.Join(", ", _execs.Keys)})");

    /// <summary>Parameters by name: the arrays every bucket shares.</summary>
    public IReadOnlyDictionary<string, NDArray> Params => _params;

    private bool IsInput(string n) => DataNames.Contains(n) || LabelNames.Contains(n);

    /// <summary>Binds the default bucket for batches of these shapes; its arrays become the shared parameters.</summary>
    /// <param name="dataShape">The default bucket's data batch shape.</param>
    /// <param name="labelShape">Its label shape (null: inferred).</param>
    public void Bind(long[] dataShape, long[]? labelShape = null)
    {
        ArgumentNullException.ThrowIfNull(dataShape);
        Dispose();
        var sym = _symGen(DefaultBucketKey);
        var shapes = new Dictionary<string, long[]> { [DataNames[0]] = dataShape };
        if (labelShape is not null) shapes[LabelNames[0]] = labelShape;
        var reqs = DataNames.Concat(LabelNames).ToDictionary(n => n, _ => GradReq.Null);
        var ex = sym.SimpleBind(_ctx, shapes, GradReq.Write, reqs);
        _paramNames = sym.ListArguments().Where(n => !IsInput(n)).ToArray();
        _params = _paramNames.ToDictionary(n => n, n => ex.ArgDict[n]);
        _grads = _paramNames.ToDictionary(n => n, n => ex.GradDict[n]);
        _aux = new Dictionary<string, NDArray>(ex.AuxDict);
        _execs[DefaultBucketKey] = ex;
        CurrentBucketKey = DefaultBucketKey;
        _batch = dataShape[0];
    }

    /// <summary>Makes <paramref name="bucketKey"/> current, binding its network over the shared
    /// parameters the first time (MXNet's switch_bucket).</summary>
    /// <param name="bucketKey">The bucket.</param>
    /// <param name="dataShape">Its data batch shape.</param>
    /// <param name="labelShape">Its label shape (null: inferred).</param>
    /// <exception cref="LoomException">The bucket's network has a parameter the default one lacks,
    /// or one of another shape; the message names it and the shapes.</exception>
    public void SwitchBucket(int bucketKey, long[] dataShape, long[]? labelShape = null)
    {
        if (_execs.Count == 0) throw new LoomException(LoomStatus.InvalidArgument, "BucketingModule: call Bind first");
        CurrentBucketKey = bucketKey;
        if (_execs.ContainsKey(bucketKey)) return;
        var sym = _symGen(bucketKey);
        var known = new Dictionary<string, long[]> { [DataNames[0]] = dataShape };
        if (labelShape is not null) known[LabelNames[0]] = labelShape;
        var inferred = sym.InferShape(known);
        var names = sym.ListArguments();
        var args = new NDArray[names.Length];
        var grads = new NDArray?[names.Length];
        var reqs = new GradReq[names.Length];
        for (int i = 0; i < names.Length; i++)
        {
            var shape = inferred.ArgumentShapes[i] ?? throw new LoomException(LoomStatus.Shape,
                $"BucketingModule: bucket {bucketKey}: the shape of '{names[i]}' cannot be inferred from data {Fmt(dataShape)}");
            if (IsInput(names[i]))
            {
                args[i] = NDArray.Zeros(shape, inferred.ArgumentTypes[i] ?? DType.Float32, _ctx);
                DisposeScope.Forget(args[i]);
                _inputs.Add(args[i]);
                reqs[i] = GradReq.Null;
                continue;
            }
            if (!_params.TryGetValue(names[i], out var p))
                throw new LoomException(LoomStatus.InvalidArgument,
                    $"BucketingModule: bucket {bucketKey} has parameter '{names[i]}', which the default bucket {DefaultBucketKey} lacks");
            if (!p.Shape.SequenceEqual(shape))
                throw new LoomException(LoomStatus.Shape,
                    $"BucketingModule: parameter '{names[i]}' is {Fmt(shape)} in bucket {bucketKey} but {Fmt(p.Shape)} in the default bucket {DefaultBucketKey}");
            args[i] = p;
            grads[i] = _grads[names[i]];
            reqs[i] = GradReq.Write;
        }
        var auxNames = sym.ListAuxiliaryStates();
        var aux = auxNames.Select(n => _aux.TryGetValue(n, out var a) ? a : throw new LoomException(LoomStatus.InvalidArgument,
            $"BucketingModule: bucket {bucketKey} has auxiliary state '{n}', which the default bucket lacks")).ToArray();
        _execs[bucketKey] = sym.Bind(_ctx, args, grads, reqs, aux);
    }

    private static string Fmt(long[] s) => "(" + string.Join(",", s) + ")";

    /// <summary>Initialises every parameter and auxiliary state (uniform in [-0.01, 0.01] when null).</summary>
    /// <param name="init">The initializer.</param>
    public void InitParams(Initializer? init = null)
    {
        init ??= new UniformInit(0.01);
        foreach (var (n, a) in _params) init.Init(n, a);
        foreach (var (n, a) in _aux) init.Init(n, a);
    }

    /// <summary>Sets the update rule; gradients are rescaled by 1/batch size unless the optimizer says otherwise (as Module).</summary>
    /// <param name="optimizer">The optimizer.</param>
    public void InitOptimizer(Optimizer optimizer)
    {
        _opt = optimizer ?? throw new ArgumentNullException(nameof(optimizer));
        if (!optimizer.RescaleGradIsSet) optimizer.SetModuleRescaleGrad(1.0 / Math.Max(_batch, 1));
        for (int i = 0; i < _paramNames.Length; i++)
            if (!_paramNames[i].EndsWith("_weight", StringComparison.Ordinal)) optimizer.WdMult[i] = 0;
    }

    /// <summary>The current bucket's executor.</summary>
    public Executor Executor => ExecutorFor(CurrentBucketKey);

    /// <summary>Switches to the batch's bucket, copies it in and pushes the forward pass.</summary>
    /// <param name="batch">The batch.</param>
    /// <param name="isTrain">Training mode.</param>
    public void Forward(BucketBatch batch, bool isTrain)
    {
        ArgumentNullException.ThrowIfNull(batch);
        SwitchBucket(batch.BucketKey, batch.Data.Shape, batch.Label.Shape);
        batch.Data.CopyTo(Executor.ArgDict[DataNames[0]]);
        if (Executor.ArgDict.TryGetValue(LabelNames[0], out var l)) batch.Label.Reshape(l.Shape).CopyTo(l);
        Executor.Forward(isTrain);
    }

    /// <summary>Pushes the current bucket's backward pass (into the shared gradients).</summary>
    public void Backward() => Executor.Backward();

    /// <summary>Applies the optimizer to every shared parameter.</summary>
    public void Update()
    {
        var opt = _opt ?? throw new LoomException(LoomStatus.InvalidArgument, "BucketingModule: call InitOptimizer (or Fit) first");
        opt.Update(Enumerable.Range(0, _paramNames.Length).ToArray(), _paramNames.Select(n => _params[n]).ToArray(),
            _paramNames.Select(n => _grads[n]).ToArray());
    }

    /// <summary>The first output of the last forward pass.</summary>
    public NDArray Output => Executor.Outputs[0];

    private NDArray BoundLabel(BucketBatch b) => Executor.ArgDict.TryGetValue(LabelNames[0], out var l) ? l : b.Label;

    /// <summary>Trains for <paramref name="epochs"/> epochs, logging the training metric and time
    /// and, with <paramref name="eval"/>, the validation metric after each.</summary>
    /// <param name="train">The training batches.</param>
    /// <param name="optimizer">The update rule.</param>
    /// <param name="epochs">Passes over the data.</param>
    /// <param name="eval">Batches scored after each epoch (null for none).</param>
    /// <param name="init">How parameters start (null: uniform in [-0.01, 0.01]).</param>
    /// <param name="metric">Makes the metric (accuracy when null).</param>
    /// <returns>The last epoch's training metric.</returns>
    public double Fit(BucketSentenceIter train, Optimizer optimizer, int epochs, BucketSentenceIter? eval = null,
        Initializer? init = null, Func<EvalMetric>? metric = null)
    {
        ArgumentNullException.ThrowIfNull(train);
        metric ??= () => new Accuracy();
        if (_execs.Count == 0)
        {
            Bind(new long[] { train.BatchSize, DefaultBucketKey }, new long[] { train.BatchSize, DefaultBucketKey });
            InitParams(init);
        }
        InitOptimizer(optimizer);
        using var m = metric();
        double value = double.NaN;
        for (int epoch = 1; epoch <= epochs; epoch++)
        {
            var sw = Stopwatch.StartNew();
            m.Reset();
            foreach (var b in ForwardEach(train, isTrain: true))
            {
                Backward();
                Update();
                m.Update(Output, BoundLabel(b));
            }
            value = m.Get();
            Engine.WaitAll();
            string line = $"epoch {epoch}: training {m.Name} {value:F4}, {sw.Elapsed.TotalSeconds:F1} s, buckets bound: {string.Join(", ", _execs.Keys.OrderBy(k => k))}";
            if (eval is not null)
            {
                using var em = metric();
                line += $"; validation {em.Name} {Score(eval, em):F4}";
            }
            Module.Log(line);
        }
        return value;
    }

    /// <summary>The metric over <paramref name="data"/> in prediction mode.</summary>
    /// <param name="data">The batches.</param>
    /// <param name="metric">The metric (reset first).</param>
    /// <returns>Its value.</returns>
    public double Score(BucketSentenceIter data, EvalMetric metric)
    {
        ArgumentNullException.ThrowIfNull(data);
        ArgumentNullException.ThrowIfNull(metric);
        metric.Reset();
        foreach (var b in ForwardEach(data, isTrain: false)) metric.Update(Output, BoundLabel(b));
        return metric.Get();
    }

    // Each batch after its forward pass; its arrays, and what the caller makes with it, are
    // freed when the caller moves on.
    private IEnumerable<BucketBatch> ForwardEach(BucketSentenceIter data, bool isTrain)
    {
        foreach (var b in data.Epoch())
        {
            using var scope = NDArray.Scope();
            using var d = b.Data;
            using var l = b.Label;
            Forward(b, isTrain);
            yield return b;
        }
    }

    /// <summary>Frees every bucket's executor (the shared arrays with them).</summary>
    public void Dispose()
    {
        foreach (var e in _execs.Values) e.Dispose();
        _execs.Clear();
        foreach (var a in _inputs) a.Dispose();
        _inputs.Clear();
    }
}
