using System;
using System.Collections.Generic;
using System.Linq;
using System.Text;
using Loom.Interop;

namespace Loom.Gluon;

/// <summary>
/// A piece of a network written as a C# class (MXNet Gluon's <c>Block</c>, TorchSharp's
/// <c>Module</c>): it owns parameters and child blocks and computes its output
/// imperatively in <see cref="Forward(NDArray)"/>. Names are hierarchical: a block's
/// prefix is its parent's prefix and its own (class name and a counter,
/// <c>lenet0_dense0_</c>), and its parameters are named by it (<c>lenet0_dense0_weight</c>).
/// Override one of the two <c>Forward</c> methods.
/// </summary>
public abstract class Block
{
    private static readonly Dictionary<string, int> s_counts = new();
    private readonly List<Parameter> _params = new();
    private readonly List<Block> _children = new();
    private readonly ParameterDict? _shared;
    private readonly bool _explicitPrefix;
    private string _localPrefix;
    private Block? _parent;

    /// <summary>Creates the block.</summary>
    /// <param name="prefix">The block's own prefix (its class name in lower case and a counter when null).</param>
    /// <param name="params">Parameters to share: a parameter this block would create is taken
    /// from here when the dictionary has one of the same name under its prefix (MXNet's
    /// <c>params=other.collect_params()</c>).</param>
    protected Block(string? prefix = null, ParameterDict? @params = null)
    {
        _explicitPrefix = prefix is not null;
        lock (s_counts) _localPrefix = prefix ?? NextName(s_counts, Alias) + "_";
        _shared = @params;
    }

    private static string NextName(Dictionary<string, int> counts, string alias)
    {
        counts.TryGetValue(alias, out int n);
        counts[alias] = n + 1;
        return alias + n.ToString(System.Globalization.CultureInfo.InvariantCulture);
    }

    /// <summary>The name stem of automatic prefixes (the class name in lower case).</summary>
    protected virtual string Alias => GetType().Name.ToLowerInvariant();

    /// <summary>The full prefix of the block's parameters and graph nodes (<c>lenet0_dense0_</c>).</summary>
    public string Prefix => (_parent?.Prefix ?? "") + _localPrefix;

    /// <summary>The prefix without its trailing underscore.</summary>
    public string Name => Prefix.EndsWith('_') ? Prefix[..^1] : Prefix;

    /// <summary>The registered child blocks, in order.</summary>
    public IReadOnlyList<Block> Children => _children;

    /// <summary>The block's own parameters (not its children's), in order.</summary>
    public IReadOnlyList<Parameter> OwnParameters => _params;

    /// <summary>Creates (or takes from the shared dictionary) a parameter of this block.</summary>
    /// <param name="name">The local name (<c>weight</c>).</param>
    /// <param name="shape">The shape; zeros are inferred at the first forward.</param>
    /// <param name="dtype">The element type.</param>
    /// <param name="gradReq">The gradient request (Null for statistics such as running means).</param>
    /// <param name="init">An initializer for this parameter only (null: the one given to Initialize).</param>
    /// <returns>The parameter.</returns>
    protected Parameter Param(string name, long[] shape, DType dtype = DType.Float32, GradReq gradReq = GradReq.Write,
        Initializer? init = null)
    {
        ArgumentNullException.ThrowIfNull(name);
        ArgumentNullException.ThrowIfNull(shape);
        if (_params.Any(p => p.LocalName == name))
            throw new LoomException(LoomStatus.InvalidArgument, $"{Name}: the parameter '{name}' is declared twice");
        Parameter? p = null;
        if (_shared is not null && _shared.TryGetValue(_shared.Prefix + name, out var s))
        {
            p = s;
            p.InferShape(shape, $"{Name} (sharing it)");
        }
        p ??= new Parameter(this, name, shape, dtype, gradReq, init);
        _params.Add(p);
        return p;
    }

    /// <summary>Registers a child block: its prefix becomes this block's prefix and its own
    /// (class name and a counter within this block, unless it was given one).</summary>
    /// <typeparam name="T">The child's type.</typeparam>
    /// <param name="child">The child.</param>
    /// <returns>The child, for assignment to a field.</returns>
    protected T Register<T>(T child) where T : Block
    {
        ArgumentNullException.ThrowIfNull(child);
        if (child._parent is not null)
            throw new LoomException(LoomStatus.InvalidArgument,
                $"{Name}: the block '{child.Name}' is already a child of another block; share its parameters instead (pass its Collect() as params)");
        if (ReferenceEquals(child, this))
            throw new LoomException(LoomStatus.InvalidArgument, $"{Name}: a block cannot be its own child");
        child._parent = this;
        _children.Add(child);
        var root = this;
        while (root._parent is not null) root = root._parent;
        Renumber(root, new Dictionary<string, int>());
        return child;
    }

    // Automatic prefixes count per name scope, as MXNet's: a block's children are
    // numbered within it, except that a block with an empty prefix opens no scope of its
    // own (its children count in the enclosing one: resnetv10_stage1_conv3_ across the
    // blocks of a stage). Renumbered from the root whenever the tree grows.
    private static void Renumber(Block b, Dictionary<string, int> scope)
    {
        var own = b._localPrefix.Length == 0 && b._parent is not null ? scope : new Dictionary<string, int>();
        foreach (var c in b._children)
        {
            if (!c._explicitPrefix) c._localPrefix = NextName(own, c.Alias) + "_";
            Renumber(c, own);
        }
    }

    /// <summary>Every parameter of this block and its descendants, by full name; with
    /// <paramref name="select"/>, only those whose names match that regular expression.</summary>
    /// <param name="select">A regular expression (such as <c>"weight$"</c>) or null for all.</param>
    /// <returns>The parameters, in registration order.</returns>
    public ParameterDict Collect(string? select = null)
    {
        var d = new ParameterDict(Prefix);
        void Walk(Block b)
        {
            foreach (var p in b._params) d.Add(p);
            foreach (var c in b._children) Walk(c);
        }
        Walk(this);
        return select is null ? d : d.Select(select);
    }

    /// <summary>Initialises every parameter natively: those whose shapes are known now,
    /// the rest at the first forward (deferred initialisation).</summary>
    /// <param name="init">The initializer (uniform in [-0.07, 0.07] when null, as in Gluon);
    /// biases, betas and running means get zeros, gammas and running variances ones.</param>
    /// <param name="ctx">The device (the CPU when null).</param>
    /// <param name="forceReinit">Fill parameters that already have values again.</param>
    public void Initialize(Initializer? init = null, Context? ctx = null, bool forceReinit = false) =>
        Collect().Initialize(init, ctx, forceReinit);

    /// <summary>Initialises every parameter with one identical copy per device, for data
    /// parallel training (<see cref="Split.Load"/> splits each batch; <see cref="Trainer"/>
    /// sums the gradients of the devices).</summary>
    /// <param name="init">The initializer.</param>
    /// <param name="ctxs">The devices.</param>
    /// <param name="forceReinit">Fill parameters that already have values again.</param>
    public void Initialize(Initializer? init, IReadOnlyList<Context> ctxs, bool forceReinit = false) =>
        Collect().Initialize(init, ctxs, forceReinit);

    /// <summary>Writes the parameters to an MXNet <c>.params</c> file, named by their full
    /// names less this block's prefix (<c>dense0_weight</c> for <c>lenet0_dense0_weight</c>).</summary>
    /// <param name="path">The file.</param>
    public void SaveParameters(string path) => Collect().Save(path, stripPrefix: Prefix);

    /// <summary>Reads what <see cref="SaveParameters"/> wrote (names are taken relative to this
    /// block's prefix, so another instance of the same class loads it).</summary>
    /// <param name="path">The file.</param>
    /// <param name="allowMissing">Leave parameters the file lacks as they are.</param>
    /// <param name="ignoreExtra">Skip names no parameter has.</param>
    /// <exception cref="LoomException">Missing or extra names, or shapes that differ, named with their shapes; nothing is changed then.</exception>
    public void LoadParameters(string path, bool allowMissing = false, bool ignoreExtra = false) =>
        Collect().Load(path, allowMissing, ignoreExtra, restorePrefix: Prefix);

    /// <summary>Computes the block's output for one input. Override this or the array form.</summary>
    /// <param name="x">The input.</param>
    /// <returns>The output.</returns>
    public virtual NDArray Forward(NDArray x) => Single(Bridge("Forward", () => Forward(new[] { x })));

    /// <summary>Computes the block's outputs for several inputs. Override this or the one-input form.</summary>
    /// <param name="inputs">The inputs.</param>
    /// <returns>The outputs.</returns>
    public virtual NDArray[] Forward(params NDArray[] inputs)
    {
        ArgumentNullException.ThrowIfNull(inputs);
        CheckOne(inputs);
        return Bridge("Forward", () => new[] { Forward(inputs[0]) });
    }

    // The default one-input and array forms call each other; a block that overrides
    // neither would recurse: the second entry on the same block and thread is refused.
    [ThreadStatic] private static HashSet<(Block, string)>? t_bridging;

    internal T Bridge<T>(string method, Func<T> other)
    {
        var set = t_bridging ??= new HashSet<(Block, string)>();
        if (!set.Add((this, method)))
            throw new LoomException(LoomStatus.InvalidArgument,
                $"{GetType().Name} overrides neither {method}(NDArray) nor {method}(NDArray[])");
        try
        {
            return other();
        }
        finally
        {
            set.Remove((this, method));
        }
    }

    internal NDArray Single(NDArray[] r) => r.Length == 1 ? r[0]
        : throw new LoomException(LoomStatus.InvalidArgument, $"{Name} returns {r.Length} outputs; call Forward(NDArray[])");

    internal void CheckOne(NDArray[] inputs)
    {
        if (inputs.Length != 1)
            throw new LoomException(LoomStatus.InvalidArgument, $"{Name} takes one input, got {inputs.Length}");
    }

    /// <summary>A one-line description of the layer (its settings), used by <see cref="ToString"/>.</summary>
    /// <returns>Text such as <c>Dense(784 -> 128, relu)</c>.</returns>
    protected virtual string Describe() => GetType().Name;

    /// <summary>The block tree, one child per line (MXNet's block printout).</summary>
    /// <returns>The description.</returns>
    public override string ToString()
    {
        var sb = new StringBuilder();
        void Walk(Block b, string indent, string label)
        {
            sb.Append(indent).Append(label).Append(b.Describe());
            if (b._children.Count == 0)
            {
                sb.Append('\n');
                return;
            }
            sb.Append("(\n");
            for (int i = 0; i < b._children.Count; i++) Walk(b._children[i], indent + "  ", $"({i}): ");
            sb.Append(indent).Append(")\n");
        }
        Walk(this, "", "");
        return sb.ToString().TrimEnd('\n');
    }
}
