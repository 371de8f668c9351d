using System;
using System.Collections;
using System.Collections.Generic;
using System.Linq;
using System.Text.RegularExpressions;

namespace Loom.Gluon;

/// <summary>
/// One learnable array of a block (a weight, a bias, a BatchNorm statistic), with its
/// gradient. Its name is the owning block's prefix and a local name
/// (<c>lenet0_dense0_weight</c>). A shape with zeros is inferred at the first forward
/// (deferred initialisation); <see cref="Data()"/> before then is an error naming the
/// parameter. Values are filled natively by an <see cref="Initializer"/>.
/// </summary>
public sealed class Parameter
{
    private NDArray[]? _data;  // one copy per context, in _ctxs order
    private long[] _shape;
    private Initializer? _pendingInit;
    private Context[] _ctxs = { Context.Cpu() };

    internal Parameter(Block owner, string localName, long[] shape, DType dtype, GradReq gradReq, Initializer? init)
    {
        Owner = owner;
        LocalName = localName;
        _shape = (long[])shape.Clone();
        DType = dtype;
        GradReq = gradReq;
        Init = init;
    }

    /// <summary>The block that created the parameter (its prefix names it).</summary>
    public Block Owner { get; }

    /// <summary>The name within the owning block (<c>weight</c>).</summary>
    public string LocalName { get; }

    /// <summary>The full name: the owner's prefix and the local name (<c>dense0_weight</c>).</summary>
    public string Name => Owner.Prefix + LocalName;

    /// <summary>The shape; zeros are extents not known until the first forward.</summary>
    public long[] Shape => (long[])_shape.Clone();

    /// <summary>The element type.</summary>
    public DType DType { get; }

    /// <summary>How the gradient is kept: written by each backward pass, added to, or none
    /// (BatchNorm's moving statistics, frozen parameters).</summary>
    public GradReq GradReq { get; private set; }

    /// <summary>This parameter's own initializer; when null, the one given to
    /// <see cref="Block.Initialize(Initializer?, Context?, bool)"/> (bias, gamma and moving statistics follow MXNet's
    /// naming rules in <see cref="Initializer.Init"/>).</summary>
    public Initializer? Init { get; set; }

    /// <summary>Learning-rate multiplier used by <see cref="Trainer"/>.</summary>
    public double LrMult { get; set; } = 1.0;

    /// <summary>Weight-decay multiplier used by <see cref="Trainer"/>.</summary>
    public double WdMult { get; set; } = 1.0;

    /// <summary>True once the array exists (the shape is known and it was initialised).</summary>
    public bool IsInitialized => _data is not null;

    /// <summary>True when every extent of the shape is known.</summary>
    public bool ShapeKnown => _shape.Length > 0 && _shape.All(d => d > 0);

    /// <summary>The devices the parameter has a copy on (the contexts given to Initialize).</summary>
    public IReadOnlyList<Context> Contexts => _ctxs;

    /// <summary>The parameter's array (the same array on every call; ops update it in place).</summary>
    /// <exception cref="LoomException">The parameter was never initialised, its shape is
    /// still waiting for the first forward, or it has copies on several devices (use <see cref="Data(Context)"/>).</exception>
    public NDArray Data()
    {
        if (_ctxs.Length > 1)
            throw new LoomException(LoomStatus.InvalidArgument,
                $"Parameter '{Name}' has copies on {string.Join(", ", _ctxs)}; call Data(ctx) for one of them");
        return Data(_ctxs[0]);
    }

    /// <summary>The parameter's copy on <paramref name="ctx"/> (a layer asks for its input's device).</summary>
    /// <param name="ctx">The device.</param>
    /// <returns>The array on that device.</returns>
    /// <exception cref="LoomException">Not initialised, or not initialised on that device.</exception>
    public NDArray Data(Context ctx)
    {
        int c = Array.IndexOf(_ctxs, ctx);
        if (c < 0)
            throw new LoomException(LoomStatus.InvalidArgument,
                $"Parameter '{Name}' was initialized on {string.Join(", ", _ctxs)}, not on {ctx}; initialize the network with that context too");
        if (_data is null)
        {
            if (_pendingInit is null)
                throw new LoomException(LoomStatus.InvalidArgument,
                    $"Parameter '{Name}' has not been initialized; call Initialize() on its block (or on the network) first");
            if (!ShapeKnown)
                throw new LoomException(LoomStatus.InvalidArgument,
                    $"Parameter '{Name}' has not been initialized yet: its shape {NDArray.ShapeString(_shape)} is inferred " +
                    "from the first forward (deferred initialization); run one forward before reading it");
            Materialize();
        }
        Tracing.Declare(this, _data![c]);
        return _data![c];
    }

    /// <summary>The copies on every device, in <see cref="Contexts"/> order.</summary>
    /// <returns>One array per device.</returns>
    public NDArray[] ListData() => _ctxs.Select(Data).ToArray();

    /// <summary>The gradients on every device, in <see cref="Contexts"/> order (new handles; dispose them).</summary>
    /// <returns>One gradient per device.</returns>
    public NDArray[] ListGrad() => _ctxs.Select(Grad).ToArray();

    /// <summary>The gradient array (written by backward).</summary>
    /// <exception cref="LoomException">The parameter takes no gradient, or is not initialised.</exception>
    public NDArray Grad() => Grad(Data().Context);

    /// <summary>The gradient on <paramref name="ctx"/>.</summary>
    /// <param name="ctx">The device.</param>
    /// <returns>The gradient array there.</returns>
    /// <exception cref="LoomException">The parameter takes no gradient, or is not initialised there.</exception>
    public NDArray Grad(Context ctx)
    {
        if (GradReq == GradReq.Null)
            throw new LoomException(LoomStatus.InvalidArgument, $"Parameter '{Name}' has no gradient (its GradReq is Null)");
        return Data(ctx).Grad;
    }

    /// <summary>Copies <paramref name="value"/> into the parameter (every device's copy), fixing its shape if it was deferred.</summary>
    /// <param name="value">An array of the parameter's shape.</param>
    /// <exception cref="LoomException">The shape differs from the parameter's known extents.</exception>
    public void SetData(NDArray value)
    {
        ArgumentNullException.ThrowIfNull(value);
        if (value.DType != DType)
            throw new LoomException(LoomStatus.DType, $"Parameter '{Name}' is {DType}; the value is {value.DType}");
        InferShape(value.Shape, "the value");
        if (_data is null)
        {
            _pendingInit ??= new ConstantInit(0);
            Materialize(skipInit: true);
        }
        foreach (var d in _data!) value.CopyTo(d);
    }

    /// <summary>Sets the gradient request; the gradient buffer is dropped for <see cref="GradReq.Null"/>.</summary>
    /// <param name="req">The new request.</param>
    public void SetGradReq(GradReq req)
    {
        if (req == GradReq) return;
        GradReq = req;
        if (_data is not null) AttachGrad();
    }

    // Called by layers once the input shows the unknown extents: the known ones must agree.
    // Zeros on either side are unknown extents; known extents must agree.
    internal void InferShape(long[] shape, string from)
    {
        bool ok = shape.Length == _shape.Length || _shape.Length == 0;
        for (int i = 0; ok && i < _shape.Length; i++) ok = _shape[i] == 0 || shape[i] == 0 || _shape[i] == shape[i];
        if (!ok)
            throw new LoomException(LoomStatus.Shape,
                $"Parameter '{Name}' has shape {NDArray.ShapeString(_shape)}, but {from} needs {NDArray.ShapeString(shape)}");
        if (shape.Any(d => d < 0))
            throw new LoomException(LoomStatus.Shape, $"Parameter '{Name}': {from} gives the negative shape {NDArray.ShapeString(shape)}");
        _shape = _shape.Length == 0 ? (long[])shape.Clone() : _shape.Select((d, i) => d > 0 ? d : shape[i]).ToArray();
        if (_data is null && _pendingInit is not null && ShapeKnown) Materialize();
    }

    internal void Initialize(Initializer init, Context[] ctxs, bool force)
    {
        if (_data is not null && !force) return;
        if (ctxs.Length == 0 || ctxs.Distinct().Count() != ctxs.Length)
            throw new LoomException(LoomStatus.InvalidArgument,
                $"Parameter '{Name}': the contexts must be distinct and at least one, got ({string.Join(", ", ctxs)})");
        if (_data is not null && !ctxs.SequenceEqual(_ctxs))
            throw new LoomException(LoomStatus.InvalidArgument,
                $"Parameter '{Name}' lives on {string.Join(", ", _ctxs)}; reinitializing on {string.Join(", ", ctxs)} is not supported");
        _pendingInit = Init ?? init;
        _ctxs = (Context[])ctxs.Clone();
        if (_data is not null)
        {
            InitValues();
            return;
        }
        if (ShapeKnown) Materialize();
    }

    // Every device's copy starts from the same values: filled on the first, copied to the rest.
    private void Materialize(bool skipInit = false)
    {
        using var paused = Tracing.Pause();
        var arrays = new NDArray[_ctxs.Length];
        for (int c = 0; c < _ctxs.Length; c++)
        {
            arrays[c] = NDArray.Zeros(_shape, DType, _ctxs[c]);
            DisposeScope.Forget(arrays[c]);
        }
        _data = arrays;
        if (!skipInit) InitValues();
        foreach (var a in _data) a.AttachGrad(GradReq);
    }

    private void InitValues()
    {
        using var _ = Tracing.Pause();
        _pendingInit!.Init(Name, _data![0]);
        for (int c = 1; c < _data.Length; c++) _data[0].CopyTo(_data[c]);
    }

    private void AttachGrad()
    {
        using var _ = Tracing.Pause();
        foreach (var a in _data!) a.AttachGrad(GradReq);
    }

    /// <summary>The name, shape and type.</summary>
    /// <returns>Text such as <c>Parameter dense0_weight (128, 784) Float32</c>.</returns>
    public override string ToString() => $"Parameter {Name} {NDArray.ShapeString(_shape)} {DType}";
}

/// <summary>
/// Parameters by full name, in registration order (what <see cref="Block.Collect"/>
/// returns). Saved and loaded in MXNet's <c>.params</c> format; passing one to a block's
/// constructor shares its parameters with that block.
/// </summary>
public sealed class ParameterDict : IReadOnlyDictionary<string, Parameter>
{
    private readonly List<Parameter> _list = new();
    private readonly Dictionary<string, Parameter> _byName = new();

    internal ParameterDict(string prefix) { Prefix = prefix; }

    /// <summary>The prefix of the block the parameters were collected from.</summary>
    public string Prefix { get; }

    internal void Add(Parameter p)
    {
        if (_byName.TryGetValue(p.Name, out var existing))
        {
            if (ReferenceEquals(existing, p)) return;
            throw new LoomException(LoomStatus.InvalidArgument,
                $"two different parameters are named '{p.Name}'; give the blocks distinct prefixes");
        }
        _byName[p.Name] = p;
        _list.Add(p);
    }

    /// <inheritdoc/>
    public Parameter this[string key] => _byName.TryGetValue(key, out var p) ? p
        : throw new LoomException(LoomStatus.NotFound, $"no parameter named '{key}'; the parameters are: {string.Join(", ", _byName.Keys)}");

    /// <inheritdoc/>
    public IEnumerable<string> Keys => _list.Select(p => p.Name);

    /// <inheritdoc/>
    public IEnumerable<Parameter> Values => _list;

    /// <inheritdoc/>
    public int Count => _list.Count;

    /// <inheritdoc/>
    public bool ContainsKey(string key) => _byName.ContainsKey(key);

    /// <inheritdoc/>
    public bool TryGetValue(string key, out Parameter value) => _byName.TryGetValue(key, out value!);

    /// <inheritdoc/>
    public IEnumerator<KeyValuePair<string, Parameter>> GetEnumerator() =>
        _list.Select(p => new KeyValuePair<string, Parameter>(p.Name, p)).GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    /// <summary>The parameters whose full names match a regular expression (MXNet's <c>collect_params(select)</c>).</summary>
    /// <param name="pattern">A .NET regular expression, matched anywhere in the name (anchor it with ^ and $).</param>
    /// <returns>A new dictionary with the matching parameters.</returns>
    public ParameterDict Select(string pattern)
    {
        var re = new Regex(pattern);
        var d = new ParameterDict(Prefix);
        foreach (var p in _list) if (re.IsMatch(p.Name)) d.Add(p);
        return d;
    }

    /// <summary>Initialises every parameter (deferred ones at their first forward).</summary>
    /// <param name="init">The initializer (uniform in [-0.07, 0.07] when null, Gluon's default; see <see cref="Block.Initialize(Initializer?, Context?, bool)"/>).</param>
    /// <param name="ctx">The device (the CPU when null).</param>
    /// <param name="forceReinit">Fill parameters that already have values again.</param>
    public void Initialize(Initializer? init = null, Context? ctx = null, bool forceReinit = false) =>
        Initialize(init, new[] { ctx ?? Context.Cpu() }, forceReinit);

    /// <summary>Initialises every parameter with one identical copy per device (data parallelism:
    /// each device runs its part of the batch, and <see cref="Trainer"/> sums the gradients).</summary>
    /// <param name="init">The initializer (uniform in [-0.07, 0.07] when null).</param>
    /// <param name="ctxs">The devices.</param>
    /// <param name="forceReinit">Fill parameters that already have values again.</param>
    public void Initialize(Initializer? init, IReadOnlyList<Context> ctxs, bool forceReinit = false)
    {
        ArgumentNullException.ThrowIfNull(ctxs);
        init ??= new UniformInit(0.07);
        var arr = ctxs.ToArray();
        foreach (var p in _list) p.Initialize(init, arr, forceReinit);
    }

    /// <summary>Sets every parameter's gradient request.</summary>
    /// <param name="req">The request.</param>
    public void SetGradReq(GradReq req)
    {
        foreach (var p in _list) p.SetGradReq(req);
    }

    /// <summary>Writes every parameter to an MXNet <c>.params</c> file, by full name
    /// (less <paramref name="stripPrefix"/> where a name starts with it).</summary>
    /// <param name="path">The file (written to a temporary file and renamed, so a failed save loses nothing).</param>
    /// <param name="stripPrefix">A prefix to drop from the names.</param>
    /// <exception cref="LoomException">A parameter is not initialised yet.</exception>
    public void Save(string path, string stripPrefix = "")
    {
        var arrays = new Dictionary<string, NDArray>();
        foreach (var p in _list)
        {
            string n = stripPrefix.Length > 0 && p.Name.StartsWith(stripPrefix, StringComparison.Ordinal) ? p.Name[stripPrefix.Length..] : p.Name;
            arrays[n] = p.Data(p.Contexts[0]);  // the copies are identical
        }
        NDArray.Save(path, arrays);
    }

    /// <summary>Reads an MXNet <c>.params</c> file into the parameters, by name (with
    /// <paramref name="restorePrefix"/> put in front of each stored name; <c>arg:</c> and
    /// <c>aux:</c> prefixes of Module checkpoints are accepted).</summary>
    /// <param name="path">The file.</param>
    /// <param name="allowMissing">Leave parameters the file lacks as they are instead of failing.</param>
    /// <param name="ignoreExtra">Skip names in the file that no parameter has instead of failing.</param>
    /// <param name="restorePrefix">Put before every name read.</param>
    /// <exception cref="LoomException">A name is missing or extra, or a shape or type differs; nothing is changed then.</exception>
    public void Load(string path, bool allowMissing = false, bool ignoreExtra = false, string restorePrefix = "")
    {
        var loaded = new Dictionary<string, NDArray>();
        foreach (var (name, arr) in NDArray.Load(path))
        {
            string n = name.StartsWith("arg:", StringComparison.Ordinal) || name.StartsWith("aux:", StringComparison.Ordinal) ? name[4..] : name;
            loaded[restorePrefix + n] = arr;
        }
        try
        {
            if (!ignoreExtra)
            {
                var extra = loaded.Keys.Where(k => !_byName.ContainsKey(k)).ToList();
                if (extra.Count > 0)
                    throw new LoomException(LoomStatus.NotFound,
                        $"{path}: {string.Join(", ", extra.Select(k => $"'{k}' {NDArray.ShapeString(loaded[k].Shape)}"))} " +
                        $"{(extra.Count == 1 ? "is" : "are")} not a parameter of the network (its parameters: {string.Join(", ", _byName.Keys)}); " +
                        "pass ignoreExtra: true to skip");
            }
            if (!allowMissing)
            {
                var missing = _list.Where(p => !loaded.ContainsKey(p.Name)).ToList();
                if (missing.Count > 0)
                    throw new LoomException(LoomStatus.NotFound,
                        $"{path}: no value for {string.Join(", ", missing.Select(p => $"'{p.Name}' {NDArray.ShapeString(p.Shape)}"))}; " +
                        "pass allowMissing: true to keep their values");
            }
            foreach (var p in _list)
                if (loaded.TryGetValue(p.Name, out var v))
                {
                    bool ok = v.DType == p.DType && v.Shape.Length == p.Shape.Length;
                    for (int i = 0; ok && i < v.Shape.Length; i++) ok = p.Shape[i] == 0 || p.Shape[i] == v.Shape[i];
                    if (!ok)
                        throw new LoomException(LoomStatus.Shape,
                            $"{path}: parameter '{p.Name}' is {NDArray.ShapeString(p.Shape)} {p.DType}, the file has {NDArray.ShapeString(v.Shape)} {v.DType}");
                }
            foreach (var p in _list)
                if (loaded.TryGetValue(p.Name, out var v)) p.SetData(v);
        }
        finally
        {
            foreach (var a in loaded.Values) a.Dispose();
        }
    }

    /// <summary>Sets every gradient to zero (for gradients that are added to).</summary>
    public void ZeroGrad()
    {
        foreach (var p in _list)
            if (p.GradReq != GradReq.Null && p.IsInitialized)
                foreach (var g in p.ListGrad())
                {
                    Op.Full(0, shape: g.Shape, dtype: g.DType, ctx: g.Context, @out: g);
                    g.Dispose();
                }
    }
}
