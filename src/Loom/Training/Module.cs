using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text.RegularExpressions;

namespace Loom;

/// <summary>A symbol bound for training and prediction with data and label inputs:
/// <see cref="Fit"/>, <see cref="Predict"/>, <see cref="Score"/>, checkpoints.</summary>
public sealed class Module : IDisposable
{
    private Executor? _exec;
    // Data parallelism: one executor per further context, a batch split across them,
    // gradients summed through a local key-value store (MXNet's executor group).
    private readonly Context[] _contexts;
    private readonly List<Executor> _extra = new();
    private int[] _slices = Array.Empty<int>();
    private long _batch;
    private KVStore? _kv;
    private bool _ownsKv, _kvReady;
    private Optimizer? _opt;
    private int[] _paramIndex = Array.Empty<int>();
    // Parameters read by Load, copied in at the first Bind.
    private (Dictionary<string, NDArray> Args, Dictionary<string, NDArray> Aux)? _pending;
    private bool _paramsLoaded;

    /// <summary>The network.</summary>
    public Symbol Symbol { get; }
    /// <summary>Data input names.</summary>
    public string[] DataNames { get; }
    /// <summary>Label input names.</summary>
    public string[] LabelNames { get; }
    /// <summary>Device (the first, with several).</summary>
    public Context Context { get; }
    /// <summary>Every device the module runs on; each batch is split across them.</summary>
    public IReadOnlyList<Context> Contexts => _contexts;
    /// <summary>Where progress goes (the console by default).</summary>
    public static Action<string> Log { get; set; } = s => Console.WriteLine("INFO: " + s);

    /// <summary>How <see cref="Fit"/> shows progress within an epoch: by default a live line
    /// (batches, samples/s, time left, running metric) on a terminal and a plain
    /// <see cref="Log"/> line at each tenth of the epoch (at most one a second) when the
    /// output is redirected.</summary>
    public ProgressMode Progress { get; set; } = ProgressMode.Auto;

    /// <summary>The console the live progress line is drawn on (Spectre.Console's by default).</summary>
    public static Spectre.Console.IAnsiConsole ProgressConsole { get; set; } = Spectre.Console.AnsiConsole.Console;

    internal static void Info(string s) => Log(s);

    /// <summary>A module over <paramref name="symbol"/>; inputs not named as data or labels are parameters.</summary>
    /// <param name="symbol">The network; its loss head (such as <c>SoftmaxOutput</c>) gives the training gradient.</param>
    /// <param name="dataNames">The inputs fed from the data batches (default <c>data</c>).</param>
    /// <param name="labelNames">The inputs fed from the label batches (default <c>softmax_label</c>).</param>
    /// <param name="context">The device to run on (the CPU when null).</param>
    /// <exception cref="LoomException">A data or label name is not an input of the symbol.</exception>
    public Module(Symbol symbol, string[]? dataNames = null, string[]? labelNames = null, Context? context = null)
    {
        Symbol = symbol;
        DataNames = dataNames ?? new[] { "data" };
        LabelNames = labelNames ?? new[] { "softmax_label" };
        Context = context ?? Context.Cpu();
        _contexts = new[] { Context };
        var args = symbol.ListArguments();
        foreach (var n in DataNames.Concat(LabelNames))
            if (!args.Contains(n))
                throw new LoomException(LoomStatus.NotFound,
                    $"Module: the symbol has no input '{n}'; its arguments are: {string.Join(", ", args)}");
    }

    /// <summary>A module that trains on several devices: each batch is split across
    /// <paramref name="contexts"/> (MXNet's rule for uneven splits), every device runs
    /// the network on its part, the gradients are summed through a key-value store in
    /// device order and every device applies the same update. The gradients are
    /// rescaled by 1 / (whole batch), as one device with the whole batch would be.</summary>
    /// <param name="symbol">The network.</param>
    /// <param name="contexts">The devices, such as <c>new[] { Context.Cpu(0), Context.Cpu(1) }</c> or GPUs.</param>
    /// <param name="dataNames">The inputs fed from the data batches (default <c>data</c>).</param>
    /// <param name="labelNames">The inputs fed from the label batches (default <c>softmax_label</c>).</param>
    /// <exception cref="ArgumentException">No device, or one given twice.</exception>
    public Module(Symbol symbol, IReadOnlyList<Context> contexts, string[]? dataNames = null, string[]? labelNames = null)
        : this(symbol, dataNames, labelNames, contexts is { Count: > 0 } ? contexts[0] : throw new ArgumentException("Module: give at least one device", nameof(contexts)))
    {
        if (contexts.Distinct().Count() != contexts.Count)
            throw new ArgumentException($"Module: a device is given twice in [{string.Join(", ", contexts)}]", nameof(contexts));
        _contexts = contexts.ToArray();
    }

    // MXNet's _split_input_slice with equal work loads: round(batch / n) each (round
    // half to even, as Python does), the remainder to the last device.
    internal static int[] SplitBatch(long batch, int devices)
    {
        var sizes = Enumerable.Repeat((int)Math.Round((double)batch / devices, MidpointRounding.ToEven), devices).ToArray();
        long sum = sizes.Sum(x => (long)x);
        if (sum < batch) sizes[^1] += (int)(batch - sum);
        long end = 0;
        for (int k = 0; k < devices; k++)
        {
            long begin = Math.Min(end, batch);
            end = Math.Min(begin + sizes[k], batch);
            sizes[k] = (int)(end - begin);
            if (sizes[k] <= 0)
                throw new LoomException(LoomStatus.InvalidArgument,
                    $"Module: a batch of {batch} cannot be split over {devices} devices (some parts would be empty)");
        }
        return sizes;
    }

    /// <summary>The bound executor (after <see cref="Bind"/>).</summary>
    public Executor Executor => _exec ?? throw new LoomException(LoomStatus.InvalidArgument, "Module: call Bind first");

    /// <summary>Parameter names (arguments that are neither data nor labels).</summary>
    public string[] ParamNames => Symbol.ListArguments().Where(n => !DataNames.Contains(n) && !LabelNames.Contains(n)).ToArray();

    /// <summary>Binds for a batch shape; parameters keep their values across rebinds.</summary>
    /// <param name="dataShape">The data batch's shape, batch size first, such as (100, 784).</param>
    /// <param name="labelShape">The label batch's shape, or null to infer it from the network.</param>
    /// <param name="forTraining">Allocate gradients (for <see cref="Backward"/>); false for prediction only.</param>
    /// <exception cref="LoomException">The shapes do not fit the network; the message names the node.</exception>
    public void Bind(long[] dataShape, long[]? labelShape = null, bool forTraining = true)
    {
        ArgumentNullException.ThrowIfNull(dataShape);
        _batch = dataShape[0];
        _slices = _contexts.Length == 1 ? new[] { (int)dataShape[0] } : SplitBatch(dataShape[0], _contexts.Length);
        Dictionary<string, long[]> ShapesFor(int k)
        {
            var d = dataShape.ToArray();
            d[0] = _slices[k];
            var sh = new Dictionary<string, long[]> { [DataNames[0]] = d };
            if (labelShape is not null)
            {
                var l = labelShape.ToArray();
                l[0] = _slices[k];
                sh[LabelNames[0]] = l;
            }
            return sh;
        }
        var shapes = ShapesFor(0);
        var reqs = DataNames.Concat(LabelNames).ToDictionary(n => n, _ => GradReq.Null);
        var old = _exec;
        if (old is not null && forTraining == (old.GradDict.Count > 0))
        {
            _exec = old.Reshape(shapes);
        }
        else
        {
            _exec = Symbol.SimpleBind(Context, shapes, forTraining ? GradReq.Write : GradReq.Null, reqs);
            if (old is not null)
            {
                foreach (var kv in old.ArgDict) if (!IsInput(kv.Key)) kv.Value.CopyTo(_exec.ArgDict[kv.Key]);
                foreach (var kv in old.AuxDict) kv.Value.CopyTo(_exec.AuxDict[kv.Key]);
            }
        }
        old?.Dispose();
        var args = Symbol.ListArguments();
        _paramIndex = Enumerable.Range(0, args.Length).Where(i => !IsInput(args[i])).ToArray();
        foreach (var e in _extra) e.Dispose();
        _extra.Clear();
        for (int k = 1; k < _contexts.Length; k++)
            _extra.Add(Symbol.SimpleBind(_contexts[k], ShapesFor(k), forTraining ? GradReq.Write : GradReq.Null, reqs));
        BroadcastParams();
        if (_pending is { } p)
        {
            _pending = null;
            SetParams(p.Args, p.Aux);
            foreach (var a in p.Args.Values.Concat(p.Aux.Values)) a.Dispose();
            _paramsLoaded = true;
        }
    }

    /// <summary>A module over a checkpoint: <c>prefix-symbol.json</c> and the parameters of
    /// <c>prefix-NNNN.params</c> (MXNet's <c>Module.load</c>). The parameters are copied in
    /// when the module is bound, which <see cref="Fit"/>, <see cref="Predict"/> and
    /// <see cref="Score"/> do for the batch they see; <see cref="Fit"/> then keeps them
    /// instead of initialising.</summary>
    /// <param name="prefix">The checkpoint's path without the suffixes, as given to <see cref="SaveCheckpoint"/>.</param>
    /// <param name="epoch">The epoch number of the parameter file (<c>prefix-0003.params</c> for 3).</param>
    /// <param name="context">The device to run on (the CPU when null).</param>
    /// <param name="dataNames">The data inputs (default <c>data</c>).</param>
    /// <param name="labelNames">The label inputs (default <c>softmax_label</c>).</param>
    /// <returns>The module, not yet bound.</returns>
    /// <exception cref="LoomException">A file is missing or corrupt, or an entry is neither <c>arg:</c> nor <c>aux:</c>.</exception>
    public static Module Load(string prefix, int epoch, Context? context = null, string[]? dataNames = null,
        string[]? labelNames = null)
    {
        ArgumentNullException.ThrowIfNull(prefix);
        var module = new Module(Symbol.Load($"{prefix}-symbol.json"), dataNames, labelNames, context);
        module._pending = ReadParams(prefix, epoch);
        return module;
    }

    private static (Dictionary<string, NDArray> Args, Dictionary<string, NDArray> Aux) ReadParams(string prefix, int epoch)
    {
        var args = new Dictionary<string, NDArray>();
        var aux = new Dictionary<string, NDArray>();
        CheckpointSet.Complete($"{prefix}-{epoch:D4}.params");  // finish a save interrupted after its commit
        foreach (var (name, arr) in NDArray.Load($"{prefix}-{epoch:D4}.params"))
        {
            if (name.StartsWith("arg:", StringComparison.Ordinal)) args[name[4..]] = arr;
            else if (name.StartsWith("aux:", StringComparison.Ordinal)) aux[name[4..]] = arr;
            else throw new LoomException(LoomStatus.Io, $"entry '{name}' in {prefix}-{epoch:D4}.params is neither arg: nor aux:");
        }
        return (args, aux);
    }

    private bool IsInput(string n) => DataNames.Contains(n) || LabelNames.Contains(n);

    /// <summary>Initialises every parameter and auxiliary state.</summary>
    /// <param name="init">How to fill each parameter by name (uniform in [-0.01, 0.01] when null).</param>
    public void InitParams(Initializer? init = null)
    {
        init ??= new UniformInit(0.01);
        foreach (var n in ParamNames) init.Init(n, Executor.ArgDict[n]);
        foreach (var kv in Executor.AuxDict) init.Init(kv.Key, kv.Value);
        BroadcastParams();
    }

    // Every further device starts from the first device's parameters and states.
    private void BroadcastParams()
    {
        if (_exec is null) return;
        foreach (var e in _extra)
        {
            foreach (var n in ParamNames) _exec.ArgDict[n].CopyTo(e.ArgDict[n]);
            foreach (var kv in _exec.AuxDict) kv.Value.CopyTo(e.AuxDict[kv.Key]);
        }
    }

    // Auxiliary states (BatchNorm's moving statistics) are averaged over the devices,
    // natively, and given back to each (MXNet averages them when it reads parameters).
    private void SyncAuxStates()
    {
        if (_exec is null || _extra.Count == 0) return;
        using var scope = NDArray.Scope();
        foreach (var (name, first) in _exec.AuxDict)
        {
            var parts = new[] { first }.Concat(_extra.Select(e => e.AuxDict[name].CopyTo(first.Context))).ToArray();
            Op.DivideScalar(Op.ElementWiseSum(parts), _contexts.Length, @out: first);
        }
        foreach (var e in _extra)
            foreach (var kv in _exec.AuxDict) kv.Value.CopyTo(e.AuxDict[kv.Key]);
    }

    /// <summary>Parameters and auxiliary states by name (the executor's arrays).</summary>
    /// <returns>The parameters and the auxiliary states (BatchNorm's moving statistics), by name; the arrays are the module's own, not copies.</returns>
    public (Dictionary<string, NDArray> Args, Dictionary<string, NDArray> Aux) GetParams() =>
        (ParamNames.ToDictionary(n => n, n => Executor.ArgDict[n]), new Dictionary<string, NDArray>(Executor.AuxDict));

    /// <summary>Copies values into the parameters and states; unknown names and shape
    /// mismatches are errors naming the parameter.</summary>
    /// <param name="args">Parameter values by name, such as <c>fc1_weight</c>.</param>
    /// <param name="aux">Auxiliary state values by name (null for none).</param>
    /// <param name="allowMissing">Leave parameters that have no value as they are, instead of failing.</param>
    /// <exception cref="LoomException">A name is unknown, a shape differs, or a value is missing.</exception>
    public void SetParams(IReadOnlyDictionary<string, NDArray> args, IReadOnlyDictionary<string, NDArray>? aux = null,
        bool allowMissing = false)
    {
        void Copy(string kind, IReadOnlyDictionary<string, NDArray> src, IReadOnlyDictionary<string, NDArray> dst)
        {
            foreach (var kv in src)
            {
                if (!dst.TryGetValue(kv.Key, out var d))
                    throw new LoomException(LoomStatus.NotFound, $"SetParams: the network has no {kind} '{kv.Key}'");
                if (!d.Shape.SequenceEqual(kv.Value.Shape))
                    throw new LoomException(LoomStatus.Shape,
                        $"SetParams: {kind} '{kv.Key}' has shape {NDArray.ShapeString(kv.Value.Shape)} but the network expects {NDArray.ShapeString(d.Shape)}");
                kv.Value.CopyTo(d);
            }
            if (!allowMissing)
                foreach (var n in dst.Keys)
                    if (!src.ContainsKey(n))
                        throw new LoomException(LoomStatus.NotFound, $"SetParams: no value given for {kind} '{n}'");
        }
        var (myArgs, myAux) = GetParams();
        Copy("parameter", args, myArgs);
        Copy("auxiliary state", aux ?? new Dictionary<string, NDArray>(), myAux);
        BroadcastParams();
    }

    /// <summary>Sets the optimizer used by <see cref="Update"/> (bind first).
    /// The parameters' <c>lr_mult</c> and <c>wd_mult</c> attributes become the optimizer's
    /// multipliers; without a <c>wd_mult</c>, parameters whose names do not end in
    /// <c>_weight</c> (biases, BatchNorm's gamma and beta) get no weight decay, as in MXNet.</summary>
    /// <param name="optimizer">The update rule; its <c>RescaleGrad</c> becomes 1 / batch size unless it was set.</param>
    public void InitOptimizer(Optimizer optimizer)
    {
        ArgumentNullException.ThrowIfNull(optimizer);
        var attrs = Symbol.ListAttributes();
        var args = Symbol.ListArguments();
        optimizer.LrMult.Clear();
        optimizer.WdMult.Clear();
        foreach (int i in _paramIndex)
            for (int k = 0; k < _contexts.Length; k++)
            {
                string n = args[i];
                int slot = OptimizerIndex(i, k);
                if (attrs.TryGetValue(n + "$lr_mult", out var lm)) optimizer.LrMult[slot] = ParseMult(n, "lr_mult", lm);
                if (attrs.TryGetValue(n + "$wd_mult", out var wm)) optimizer.WdMult[slot] = ParseMult(n, "wd_mult", wm);
                else if (!n.EndsWith("_weight", StringComparison.Ordinal)) optimizer.WdMult[slot] = 0;
            }
        if (_contexts.Length > 1 && _kv is null)
        {
            _kv = KVStore.Create("local");
            _ownsKv = true;
        }
        if (_kv is not null && !_kvReady)
        {
            // Every key starts from this module's values (rank 0's, in a distributed
            // store), and every device of every worker takes them.
            foreach (int i in _paramIndex) _kv.Init(args[i], Executor.Arguments[i]);
            foreach (int i in _paramIndex)
                _kv.Pull(args[i], Enumerable.Range(0, _contexts.Length).Select(k => ExecutorOf(k).Arguments[i]).ToArray());
            _kvReady = true;
        }
        // MXNet's Module.init_optimizer: gradients are rescaled by 1 / batch size (the
        // whole batch, over every device, times the workers of a synchronous
        // distributed store) unless the user chose a rescale_grad, and a different
        // choice is warned about.
        long batch = _batch > 0 ? _batch : Executor.ArgDict[DataNames[0]].Shape[0];
        if (_kv is not null && _kv.Type.StartsWith("dist", StringComparison.Ordinal) && _kv.Type.Contains("_sync"))
            batch *= _kv.NumWorkers;
        double rescale = 1.0 / Math.Max(batch, 1);
        if (!optimizer.RescaleGradIsSet) optimizer.SetModuleRescaleGrad(rescale);
        else if (optimizer.RescaleGrad != rescale)
            Log($"WARNING: the optimizer's RescaleGrad is {optimizer.RescaleGrad}, not 1/batch_size = {rescale} " +
                "(as MXNet, Module rescales summed gradients to a mean unless told otherwise). Is this intended?");
        // MXNet's update_on_kvstore, which an asynchronous store requires: the servers
        // apply the optimizer to every push as it arrives, and workers pull the weights.
        if (UpdateOnKVStore) _kv!.SetOptimizer(optimizer);
        _opt = optimizer;
    }

    // A dist_async store updates the weights itself (MXNet's update_on_kvstore).
    private bool UpdateOnKVStore => _kv is not null && _kv.Type == "dist_async";

    // The optimizer's state slot of parameter i on device k (MXNet's i * devices + k).
    private int OptimizerIndex(int i, int k) => i * _contexts.Length + k;

    private static double ParseMult(string name, string key, string value) =>
        double.TryParse(value, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out var v)
            ? v
            : throw new LoomException(LoomStatus.InvalidArgument, $"Module: attribute {key}='{value}' of '{name}' is not a number");

    /// <summary>The optimizer (after <see cref="InitOptimizer"/>).</summary>
    public Optimizer? Optimizer => _opt;

    /// <summary>Copies a batch in and pushes the forward pass.</summary>
    /// <param name="data">One data batch, of the bound shape.</param>
    /// <param name="label">Its labels (null in prediction).</param>
    /// <param name="isTrain">Training mode: dropout drops and BatchNorm uses the batch's statistics.</param>
    public void Forward(NDArray data, NDArray? label, bool isTrain)
    {
        ArgumentNullException.ThrowIfNull(data);
        if (_extra.Count == 0)
        {
            data.CopyTo(Executor.ArgDict[DataNames[0]]);
            if (label is not null && Executor.ArgDict.TryGetValue(LabelNames[0], out var l)) label.CopyTo(l);
            Executor.Forward(isTrain);
            return;
        }
        using var scope = NDArray.Scope();
        long begin = 0;
        for (int k = 0; k < _contexts.Length; k++)
        {
            var e = ExecutorOf(k);
            long end = begin + _slices[k];
            data.Slice(begin, end).CopyTo(e.ArgDict[DataNames[0]]);
            if (label is not null && e.ArgDict.TryGetValue(LabelNames[0], out var l)) label.Slice(begin, end).CopyTo(l);
            e.Forward(isTrain);
            begin = end;
        }
    }

    private Executor ExecutorOf(int k) => k == 0 ? Executor : _extra[k - 1];

    // The whole batch's data shape the module is bound for (over every device).
    private long[] BoundDataShape()
    {
        var s = Executor.ArgDict[DataNames[0]].Shape.ToArray();
        s[0] = _batch;
        return s;
    }

    /// <summary>Pushes the backward pass.</summary>
    public void Backward()
    {
        Executor.Backward();
        foreach (var e in _extra) e.Backward();
    }

    /// <summary>Applies the optimizer to every parameter (with several devices, to the
    /// gradients summed over them, so every device keeps the same weights).</summary>
    public void Update()
    {
        var opt = _opt ?? throw new LoomException(LoomStatus.InvalidArgument, "Module: call InitOptimizer (or Fit) first");
        if (_kv is null)
        {
            opt.Update(_paramIndex, _paramIndex.Select(i => Executor.Arguments[i]).ToArray(),
                _paramIndex.Select(i => Executor.Gradients[i]!).ToArray());
            return;
        }
        var args = Symbol.ListArguments();
        if (UpdateOnKVStore)
        {
            // Every parameter in one push and one pull: one request per server each.
            var keys = new List<string>();
            var grads = new List<NDArray>();
            var weights = new List<NDArray>();
            foreach (int i in _paramIndex)
                for (int k = 0; k < _contexts.Length; k++)
                {
                    keys.Add(args[i]);
                    grads.Add(ExecutorOf(k).Gradients[i]!);
                    weights.Add(ExecutorOf(k).Arguments[i]);
                }
            _kv.Push(keys, grads);
            _kv.Pull(keys, weights);
            return;
        }
        var indices = new List<int>();
        var ws = new List<NDArray>();
        var gs = new List<NDArray>();
        foreach (int i in _paramIndex)
        {
            var grads = Enumerable.Range(0, _contexts.Length).Select(k => ExecutorOf(k).Gradients[i]!).ToArray();
            _kv!.PushPull(args[i], grads, grads);
            for (int k = 0; k < _contexts.Length; k++)
            {
                indices.Add(OptimizerIndex(i, k));
                ws.Add(ExecutorOf(k).Arguments[i]);
                gs.Add(grads[k]);
            }
        }
        opt.Update(indices, ws, gs);
    }

    // Adds every device's outputs and labels of the last forward pass to the metric.
    private void UpdateMetric(EvalMetric metric, NDArray label)
    {
        if (_extra.Count == 0)
        {
            metric.Update(Output, BoundLabel(label));
            return;
        }
        for (int k = 0; k < _contexts.Length; k++)
        {
            var e = ExecutorOf(k);
            metric.Update(e.Outputs[0], e.ArgDict[LabelNames[0]]);
        }
    }

    // The label as bound to the executor (already on its device) when the graph
    // takes one; the batch's own label otherwise.
    private NDArray BoundLabel(NDArray label) =>
        LabelNames.Length > 0 && Executor.ArgDict.TryGetValue(LabelNames[0], out var bound) ? bound : label;

    /// <summary>The first output of the last forward pass.</summary>
    public NDArray Output => Executor.Outputs[0];

    /// <summary>Trains for <paramref name="epochs"/> epochs (from <paramref name="beginEpoch"/>),
    /// logging after each the training metric and time and, with <paramref name="eval"/>, the
    /// validation metric (MXNet.jl's log format).</summary>
    /// <param name="train">The training batches; data and labels must have the network's dtypes (float32).</param>
    /// <param name="optimizer">The update rule, such as <c>new SGD(lr: 0.1, momentum: 0.9)</c>.</param>
    /// <param name="epochs">Passes over <paramref name="train"/>.</param>
    /// <param name="eval">Batches scored after each epoch (null for none).</param>
    /// <param name="init">How parameters start (uniform in [-0.01, 0.01] when null).</param>
    /// <param name="callbacks">Called every few batches, such as <see cref="Speedometer"/> or <see cref="Snapshot"/>.</param>
    /// <param name="beginEpoch">The epoch training resumes after (numbers in logs and checkpoints continue from it).</param>
    /// <param name="initialize">Initialise the parameters first; false keeps their values (a resumed run). Parameters read by <see cref="Load"/> are kept either way.</param>
    /// <param name="metric">Makes the training and evaluation metric (accuracy when null).</param>
    /// <param name="kvstore">The key-value store that sums gradients over devices and workers:
    /// a <c>dist_sync</c> store trains one model over several processes started by mpirun (each
    /// iterating over its own part of the data). Null: a local store when there are several
    /// devices, none otherwise. The module does not dispose a store it is given.</param>
    /// <exception cref="LoomException">Shapes or dtypes of the batches do not fit the network.</exception>
    public void Fit(NDArrayIter train, Optimizer optimizer, int epochs, NDArrayIter? eval = null,
        Initializer? init = null, IEnumerable<Callback>? callbacks = null, int beginEpoch = 0, bool initialize = true,
        Func<EvalMetric>? metric = null, KVStore? kvstore = null)
    {
        ArgumentNullException.ThrowIfNull(train);
        ArgumentNullException.ThrowIfNull(optimizer);
        if (kvstore is not null && !ReferenceEquals(kvstore, _kv))
        {
            if (_ownsKv) _kv?.Dispose();
            _kv = kvstore;
            _ownsKv = false;
            _kvReady = false;
        }
        metric ??= () => new Accuracy();
        var dataShape = train.BatchDataShape;
        var labelShape = train.BatchLabelShape;
        if (_exec is null || !BoundDataShape().SequenceEqual(dataShape) || _exec.GradDict.Count == 0)
            Bind(dataShape, labelShape, forTraining: true);
        CheckIteratorDTypes("Fit", train);
        if (eval is not null) CheckIteratorDTypes("Fit (eval data)", eval);
        Info($"Start training on [{string.Join(", ", _contexts)}]");
        if (initialize && !_paramsLoaded)
        {
            Info("Initializing parameters...");
            InitParams(init);
        }
        InitOptimizer(optimizer);
        using var trainMetric = metric();
        var cbs = callbacks?.ToList() ?? new List<Callback>();
        Info("Start training...");
        for (int epoch = beginEpoch + 1; epoch <= beginEpoch + epochs; epoch++)
        {
            Info($"== Epoch {epoch:D3} ==========");
            var sw = Stopwatch.StartNew();
            trainMetric.Reset();
            int batch = 0, nonFiniteBatches = 0;
            NDArray[]? lastFlag = null;
            long samples = 0;
            long total = train.Count / train.BatchSize;
            int ep = epoch;
            EpochProgress.Run(Progress, ProgressConsole, epoch, total, progress =>
            {
                foreach (var (x, y) in train.Epoch())
                {
                    using var scope = NDArray.Scope();
                    using var batchData = x;  // freed at once, not when the GC finalizes them
                    using var batchLabel = y;
                    Forward(x, y, isTrain: true);
                    Backward();
                    batch++;
                    var flag = NonFinite == NonFinitePolicy.Ignore ? null : PushFiniteFlag();
                    if (NonFinite == NonFinitePolicy.Warn)
                    {
                        Update();
                        ReadFiniteFlag(lastFlag, ep, batch - 1, ref nonFiniteBatches);  // the previous batch's, ready by now
                        lastFlag = flag is null ? null : Array.ConvertAll(flag, scope.Keep);  // outlive this batch's scope
                    }
                    else if (ReadFiniteFlag(flag, ep, batch, ref nonFiniteBatches))
                    {
                        Update();
                    }
                    UpdateMetric(trainMetric, y);
                    samples += x.Shape[0];
                    foreach (var cb in cbs)
                        if (batch % cb.Interval == 0) cb.Invoke(this, new BatchEnd(ep, batch, samples, sw.Elapsed.TotalSeconds, trainMetric));
                    progress?.Batch(batch, samples, sw.Elapsed.TotalSeconds, () => (trainMetric.Name, trainMetric.Get()));
                }
            });
            ReadFiniteFlag(lastFlag, epoch, batch, ref nonFiniteBatches);
            if (nonFiniteBatches > MaxNonFiniteReports)
                Log($"WARNING: epoch {epoch}: {nonFiniteBatches} batches held non-finite values (the first {MaxNonFiniteReports} are named above)");
            double value = trainMetric.Get();
            SyncAuxStates();
            Engine.WaitAll();
            Info("## Training summary");
            Info($"{trainMetric.Name,18} = {value:F4}");
            WarnIfTrainingIsBroken(trainMetric, value, epoch);
            Info($"              time = {sw.Elapsed.TotalSeconds:F4} seconds");
            double? validation = null;
            if (eval is not null)
            {
                Info("## Validation summary");
                using var evalMetric = metric();
                double score = Score(eval, evalMetric);
                validation = score;
                Info($"{evalMetric.Name,18} = {score:F4}");
                foreach (var cb in cbs)
                    if (cb is TensorBoard tb) tb.LogValidation(epoch, evalMetric.Name, score);
            }
            var ended = new EpochEnd(epoch, batch, trainMetric.Name, value, validation, sw.Elapsed.TotalSeconds);
            foreach (var cb in cbs) cb.EpochEnd(this, ended);
        }
    }

    /// <summary>What <see cref="Fit"/> does when a batch's data, the network's outputs, a
    /// gradient or a parameter holds NaN or infinity (checked natively after each backward pass with the
    /// <c>multi_all_finite</c> op, one flag read per batch): <see cref="NonFinitePolicy.Warn"/>
    /// by default, which reads each flag one batch late so training never waits for it.
    /// The check costs about 15% of an epoch of the seed's small MLP (1 ms per batch) and
    /// nothing measurable on LeNet; <see cref="NonFinitePolicy.Ignore"/> turns it off.</summary>
    public NonFinitePolicy NonFinite { get; set; } = NonFinitePolicy.Warn;

    private const int MaxNonFiniteReports = 5;

    // The arrays a batch's check covers, each with how a report names it.
    private List<(string What, NDArray Array)> CheckedArrays()
    {
        if (_checked is not null && ReferenceEquals(_checkedFor, _exec)) return _checked;
        var arrays = new List<(string What, NDArray Array)>();
        var args = Symbol.ListArguments();
        for (int k = 0; k < _contexts.Length; k++)
        {
            var e = ExecutorOf(k);
            string dev = _contexts.Length > 1 ? $" on {_contexts[k]}" : "";
            if (e.ArgDict.TryGetValue(DataNames[0], out var d) && d.DType is DType.Float32 or DType.Float64)
                arrays.Add(($"the data batch ('{DataNames[0]}'){dev}", d));
            for (int o = 0; o < e.Outputs.Length; o++)
                if (e.Outputs[o].DType is DType.Float32 or DType.Float64) arrays.Add(($"output {o}{dev}", e.Outputs[o]));
            foreach (int i in _paramIndex)
                if (e.Gradients[i] is { } g && g.DType is DType.Float32 or DType.Float64)
                    arrays.Add(($"the gradient of '{args[i]}'{dev}", g));
            if (k == 0)  // a NaN weight need not reach an output or a gradient (a zero input, a clip): check the weights too
                foreach (int i in _paramIndex)
                    if (e.Arguments[i].DType is DType.Float32 or DType.Float64)
                        arrays.Add(($"parameter '{args[i]}'", e.Arguments[i]));
        }
        _checkedFor = _exec;
        _checkedInputs = arrays.GroupBy(a => a.Array.Context.ToString()).Select(g => g.Select(a => a.Array).ToArray()).ToArray();
        return _checked = arrays;
    }

    private List<(string What, NDArray Array)>? _checked;  // for the executor _checkedFor
    private NDArray[][] _checkedInputs = Array.Empty<NDArray[]>();  // grouped by device
    private Executor? _checkedFor;

    // Native flags over the batch's data, outputs, gradients and parameters (1: all
    // finite), one per device, pushed asynchronously.
    private NDArray[] PushFiniteFlag()
    {
        CheckedArrays();
        return _checkedInputs.Select(g => Op.MultiAllFinite(g, numArrays: g.Length)).ToArray();
    }

    // Reads a batch's flag; on a non-finite batch names the first offending array as it
    // is now and applies the policy. Returns whether the batch's update should run.
    // Warn reads each flag one batch late, so the check never stalls the pipeline; its
    // report then names the array that holds non-finite values when it is read.
    private bool ReadFiniteFlag(NDArray[]? flags, int epoch, int batch, ref int count)
    {
        if (flags is null) return true;
        bool finite = true;
        foreach (var f in flags)
            using (f)
                finite &= f.ToArray<float>()[0] == 1f;
        if (finite) return true;
        string what;
        using (NDArray.Scope())
            what = CheckedArrays().Select(a => (a.What, Finite: Op.AllFinite(a.Array).ToArray<float>()[0] == 1f))
                .FirstOrDefault(a => !a.Finite).What ?? "an array of that batch (finite again now)";
        string msg = $"epoch {epoch} batch {batch}: " + (NonFinite == NonFinitePolicy.Warn
            ? $"non-finite values (NaN or infinity); now in {what}"
            : $"{what} holds non-finite values (NaN or infinity)");
        if (NonFinite == NonFinitePolicy.Stop)
            throw new LoomException(LoomStatus.InvalidArgument,
                $"Module.Fit: {msg}; training stopped before this batch's update (Module.NonFinite = Stop)");
        if (++count <= MaxNonFiniteReports)
            Log($"WARNING: {msg}" + (NonFinite == NonFinitePolicy.Skip ? "; its update was skipped" : ""));
        return NonFinite != NonFinitePolicy.Skip;
    }

    // A batch is copied into the bound inputs, which have the network's dtypes (float32
    // unless bound otherwise): data or labels of another dtype (uint8 from Idx.Read, say)
    // are refused here, before any batch runs, with the cast to write.
    private void CheckIteratorDTypes(string what, NDArrayIter data)
    {
        void Check(string input, DType? given, string kind)
        {
            if (given is not { } g || !Executor.ArgDict.TryGetValue(input, out var bound) || bound.DType == g) return;
            throw new LoomException(LoomStatus.DType,
                $"Module.{what}: the {kind} are {g.ToString().ToLowerInvariant()} but the network's input '{input}' is " +
                $"{bound.DType.ToString().ToLowerInvariant()}: pass {kind}.AsType(DType.{bound.DType}) to the NDArrayIter " +
                "(MXNet's iterators give float32)");
        }
        Check(DataNames[0], data.DataDType, "data");
        if (LabelNames.Length > 0) Check(LabelNames[0], data.LabelDType, "labels");
    }

    // Training that has gone wrong should say so: a non-finite metric or parameter
    // (each parameter's sum of magnitudes, reduced natively), or an accuracy no better
    // than chance over a whole epoch.
    private void WarnIfTrainingIsBroken(EvalMetric metric, double value, int epoch)
    {
        if (!double.IsFinite(value))
            Log($"WARNING: epoch {epoch}: the training {metric.Name} is {value}");
        var args = Symbol.ListArguments();
        foreach (int i in _paramIndex)
        {
            using var scope = NDArray.Scope();
            double size = Op.Sum(Op.Abs(Executor.Arguments[i])).ToArray<float>()[0];
            if (!double.IsFinite(size))
                Log($"WARNING: epoch {epoch}: parameter '{args[i]}' holds non-finite values (NaN or infinity)");
        }
        if (metric is Accuracy && Output.Shape.Length >= 2 && Output.Shape[1] > 1)
        {
            double chance = 1.0 / Output.Shape[1];
            if (value <= chance * 1.2)
                Log($"WARNING: epoch {epoch}: training accuracy {value:F4} is at chance level ({chance:F4} for " +
                    $"{Output.Shape[1]} classes): check the learning rate, RescaleGrad and the loss normalization");
        }
    }

    /// <summary>The metric (accuracy by default) of the network on <paramref name="data"/>, in prediction mode.</summary>
    /// <param name="data">Batches with labels.</param>
    /// <param name="metric">What to compute (accuracy when null).</param>
    /// <returns>The metric's value over every batch.</returns>
    public double Score(NDArrayIter data, EvalMetric? metric = null)
    {
        using var own = metric is null ? new Accuracy() : null;
        metric ??= own!;
        metric.Reset();
        foreach (var (x, y) in data.Epoch())
        {
            using var scope = NDArray.Scope();
            using var batchData = x;
            using var batchLabel = y;
            EnsureBatch(x.Shape);
            CheckIteratorDTypes("Score", data);
            Forward(x, y, isTrain: false);
            UpdateMetric(metric, y);
        }
        return metric.Get();
    }

    /// <summary>Outputs for every sample of <paramref name="data"/>, concatenated.</summary>
    /// <param name="data">The batches to run (labels, if any, are ignored).</param>
    /// <returns>The network's first output, one row per sample (padding of the last batch removed).</returns>
    public NDArray Predict(NDArrayIter data)
    {
        var parts = new List<NDArray>();
        using (var scope = NDArray.Scope())
        {
            foreach (var (x, _) in data.Epoch())
            {
                EnsureBatch(x.Shape);
                Forward(x, null, isTrain: false);
                for (int k = 0; k < _contexts.Length; k++)  // in batch order, on the first device
                    parts.Add(scope.Keep(k == 0 ? Op.Copy(Output) : ExecutorOf(k).Outputs[0].CopyTo(Context)));
            }
        }
        var all = Op.Concat(parts.ToArray(), dim: 0);
        foreach (var p in parts) p.Dispose();
        return all.Shape[0] > data.Count ? all.Slice(0, data.Count) : all;
    }

    private void EnsureBatch(long[] shape)
    {
        if (_exec is null && _pending is not null)
        {
            Bind(shape, null, forTraining: false);  // a loaded module binds for what it is given
            return;
        }
        if (_exec is null) throw new LoomException(LoomStatus.InvalidArgument, "Module: bind (or Fit) before predicting");
        if (!BoundDataShape().SequenceEqual(shape))
        {
            var labelShape = _exec.ArgDict.TryGetValue(LabelNames[0], out var l) ? l.Shape.ToArray() : null;
            if (labelShape is not null) labelShape[0] = shape[0];
            Bind(shape, labelShape, forTraining: _exec.GradDict.Count > 0);
        }
    }

    /// <summary>Writes the bound network with its current parameters as an ONNX model (see
    /// <see cref="Onnx.Export"/>), for ONNX Runtime or any other ONNX engine: the data inputs keep
    /// the bound batch shape, the label is dropped and a SoftmaxOutput head becomes Softmax.</summary>
    /// <param name="path">The <c>.onnx</c> file to write (replaced whole or not at all).</param>
    /// <param name="opset">The ONNX opset, 13 to 17.</param>
    /// <exception cref="LoomException">Not bound yet, or an op without an ONNX counterpart (named).</exception>
    public void ExportOnnx(string path, int opset = 13)
    {
        var (args, aux) = GetParams();
        var shapes = DataNames.ToDictionary(n => n, n => Executor.ArgDict[n].Shape);
        Onnx.Export(path, Symbol, args, aux, shapes, opset);
    }

    /// <summary>Writes prefix-symbol.json, prefix-NNNN.params (arg:/aux: keys) and, when
    /// asked, prefix-NNNN.states (optimizer state and the random generator's position).
    /// Each file is written to a temporary name and renamed, so an interrupted save
    /// never replaces a good checkpoint with a partial one; with optimizer states the
    /// pair is committed together through prefix-NNNN.checkpoint, so a killed save
    /// leaves either the old pair or the new one, never a mix. In a distributed run
    /// only rank 0 writes (every worker holds the same parameters).</summary>
    /// <param name="prefix">The path without suffixes, such as <c>models/lenet</c>.</param>
    /// <param name="epoch">The number in the parameter file's name (<c>prefix-0003.params</c> for 3).</param>
    /// <param name="saveOptimizerStates">Also write <c>prefix-NNNN.states</c>, so training can resume exactly.</param>
    /// <exception cref="LoomException">The folder does not exist or a file cannot be written; an existing checkpoint is left whole.</exception>
    public void SaveCheckpoint(string prefix, int epoch, bool saveOptimizerStates = false)
    {
        if (_kv is not null && _kv.Rank != 0)
        {
            SyncAuxStates();  // every worker still takes part in what the save needs
            return;  // rank 0 writes the checkpoint of a distributed run
        }
        string dir = Path.GetDirectoryName(Path.GetFullPath(prefix))!;
        if (!Directory.Exists(dir))
            throw new LoomException(LoomStatus.Io, $"SaveCheckpoint: directory '{dir}' does not exist");
        SyncAuxStates();
        Engine.WaitAll();
        Symbol.Save($"{prefix}-symbol.json");
        var (args, aux) = GetParams();
        var all = new Dictionary<string, NDArray>();
        foreach (var kv in args) all["arg:" + kv.Key] = kv.Value;
        foreach (var kv in aux) all["aux:" + kv.Key] = kv.Value;
        string paramsPath = $"{prefix}-{epoch:D4}.params";
        if (!saveOptimizerStates)
        {
            CheckpointSet.Forget(paramsPath);  // a lone .params is a set by itself
            NDArray.Save(paramsPath, all);
        }
        else
        {
            using var scope = NDArray.Scope();
            var states = new Dictionary<string, NDArray>();
            if (_opt is not null) foreach (var (n, a) in _opt.States()) states[n] = a;
            var (seed, stream) = Rand.GetState();
            using var rng = NDArray.FromArray(new long[] { (long)seed, (long)stream }, 2);
            states["rng"] = rng;
            string statesPath = $"{prefix}-{epoch:D4}.states";
            CheckpointSet.Save(paramsPath, statesPath, all, states);
        }
        Info($"Saved checkpoint to \"{prefix}-{epoch:D4}.params\"");
    }

    /// <summary>Reads a checkpoint into this (bound) module; with optimizer states,
    /// also restores the optimizer and the random generator so training resumes
    /// exactly where it stopped.</summary>
    /// <param name="prefix">The path without suffixes, as given to <see cref="SaveCheckpoint"/>.</param>
    /// <param name="epoch">The epoch of the files to read.</param>
    /// <param name="optimizer">With an optimizer, also restore its state from <c>prefix-NNNN.states</c> (then it becomes the module's optimizer).</param>
    /// <exception cref="LoomException">A file is missing or corrupt, or a parameter's name or shape does not match (named in the message).</exception>
    public void LoadCheckpoint(string prefix, int epoch, Optimizer? optimizer = null)
    {
        (Dictionary<string, NDArray> args, Dictionary<string, NDArray> aux) loaded;
        try { loaded = ReadParams(prefix, epoch); }
        catch (LoomException e) { throw new LoomException(e.Status, "LoadCheckpoint: " + e.Message); }
        SetParams(loaded.args, loaded.aux);
        if (optimizer is not null)
        {
            string path = $"{prefix}-{epoch:D4}.states";
            var states = NDArray.Load(path).ToDictionary(t => t.Name, t => t.Array);
            if (!states.TryGetValue("rng", out var rng) || rng.Size != 2 || rng.DType != DType.Int64)
                throw new LoomException(LoomStatus.Io, $"LoadCheckpoint: {path} has no valid 'rng' entry");
            var r = rng.ToArray<long>();
            Rand.SetState((ulong)r[0], (ulong)r[1]);
            states.Remove("rng");
            optimizer.LoadStates(states);
            InitOptimizer(optimizer);
        }
        Engine.WaitAll();
    }

    /// <summary>Releases the executor.</summary>
    public void Dispose()
    {
        _exec?.Dispose();
        _exec = null;
        foreach (var e in _extra) e.Dispose();
        _extra.Clear();
        if (_ownsKv) _kv?.Dispose();
        _kv = null;
    }
}
