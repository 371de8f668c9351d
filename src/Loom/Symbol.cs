using System;
using System.Collections.Generic;
using System.Linq;
using System.Runtime.InteropServices;
using System.Text.Json;
using Loom.Interop;

namespace Loom;


/// <summary>Result of partial shape inference: null where a shape is unknown.</summary>
/// <param name="ArgumentShapes">The shape of each argument, in <see cref="Symbol.ListArguments"/> order.</param>
/// <param name="OutputShapes">The shape of each output.</param>
/// <param name="AuxiliaryShapes">The shape of each auxiliary state.</param>
/// <param name="ArgumentTypes">The dtype of each argument (null where unknown).</param>
/// <param name="Complete">Whether every shape is known.</param>
public sealed record ShapeInference(long[]?[] ArgumentShapes, long[]?[] OutputShapes,
    long[]?[] AuxiliaryShapes, DType?[] ArgumentTypes, bool Complete);

/// <summary>A declarative graph of operators (MXNet's symbol). Build one from
/// <see cref="Variable"/> with the generated fluent methods
/// (<c>Symbol.Variable("data").FullyConnected("fc1", numHidden: 128)</c>),
/// the <see cref="Sym"/> constructors and the arithmetic operators; bind it
/// with <see cref="SimpleBind"/> or <see cref="Bind"/>.</summary>
public sealed unsafe partial class Symbol : IDisposable
{
    private readonly SymbolHandle _handle;

    internal Symbol(SymbolHandle handle) { _handle = handle; }

    /// <summary>The SafeHandle, for calls into <see cref="LoomNative"/>.</summary>
    public SymbolHandle Handle => _handle.IsClosed
        ? throw new LoomException(LoomStatus.InvalidArgument, "this Symbol was used after Dispose()")
        : _handle;

    /// <summary>Releases the native symbol (the graph lives on in symbols built from it).</summary>
    public void Dispose() => _handle.Dispose();

    /// <summary>A named input of the graph. Optional attributes: <paramref name="shape"/>
    /// (a shape hint for inference), <paramref name="lrMult"/>/<paramref name="wdMult"/>
    /// (per-parameter learning-rate and weight-decay multipliers) and any others.</summary>
    /// <param name="name">The input's name, such as <c>data</c> or <c>fc1_weight</c>.</param>
    /// <param name="shape">A shape hint for inference (null for none).</param>
    /// <param name="lrMult">This parameter's learning-rate multiplier (null: 1).</param>
    /// <param name="wdMult">This parameter's weight-decay multiplier (null: the default rule).</param>
    /// <param name="attrs">Other attributes, by name (null for none).</param>
    /// <returns>A symbol with one output: the variable.</returns>
    public static Symbol Variable(string name, long[]? shape = null, double? lrMult = null,
        double? wdMult = null, IReadOnlyDictionary<string, string>? attrs = null)
    {
        LoomException.Check(LoomNative.loom_symbol_variable(out SymbolHandle h, name));
        var s = new Symbol(h);
        if (shape is not null) s.SetAttr("shape", "(" + string.Join(",", shape) + ")");
        if (lrMult is not null) s.SetAttr("lr_mult", lrMult.Value.ToString("R", System.Globalization.CultureInfo.InvariantCulture));
        if (wdMult is not null) s.SetAttr("wd_mult", wdMult.Value.ToString("R", System.Globalization.CultureInfo.InvariantCulture));
        if (attrs is not null) foreach (var kv in attrs) s.SetAttr(kv.Key, kv.Value);
        return s;
    }

    /// <summary>Groups the outputs of several symbols into one.</summary>
    /// <param name="symbols">The symbols to group.</param>
    /// <returns>A symbol with the outputs of all of them.</returns>
    public static Symbol Group(params Symbol[] symbols)
    {
        nint* hs = stackalloc nint[Math.Max(symbols.Length, 1)];
        for (int i = 0; i < symbols.Length; i++) hs[i] = symbols[i].Handle.DangerousGetHandle();
        LoomException.Check(LoomNative.loom_symbol_group(out SymbolHandle h, hs, symbols.Length));
        GC.KeepAlive(symbols);
        return new Symbol(h);
    }

    /// <summary>Creates an op node (what the generated constructors call). Null inputs
    /// become variables named &lt;name&gt;_&lt;input&gt;.</summary>
    /// <param name="op">The operator's name.</param>
    /// <param name="name">The name.</param>
    /// <param name="inputs">The input symbols (null: a new variable).</param>
    /// <param name="inputNames">The operator's input names, matching inputs.</param>
    /// <param name="p">The operator's parameters (null for none).</param>
    /// <returns>The new node's symbol.</returns>
    public static Symbol Create(string op, string? name, Symbol?[] inputs, string[]? inputNames, OpParams? p)
    {
        OpHandle cache = default;
        OpHandle oh = Imperative.Resolve(ref cache, op);
        var given = new List<Symbol>();
        var names = inputNames is null ? null : new List<string>();
        for (int i = 0; i < inputs.Length; i++)
        {
            if (inputs[i] is null)
            {
                if (inputNames is null) throw new LoomException(LoomStatus.InvalidArgument, $"{op}: input {i} is null");
                continue;
            }
            given.Add(inputs[i]!);
            names?.Add(inputNames![i]);
        }
        nint* hs = stackalloc nint[Math.Max(given.Count, 1)];
        for (int i = 0; i < given.Count; i++) hs[i] = given[i].Handle.DangerousGetHandle();
        LoomException.Check(LoomNative.loom_symbol_create(out SymbolHandle h, oh, name ?? "", given.Count, hs,
            names?.ToArray(), p?.Count ?? 0, p?.Keys, p?.Values));
        GC.KeepAlive(given);
        return new Symbol(h);
    }

    /// <summary>Number of outputs.</summary>
    public int NumOutputs
    {
        get
        {
            LoomException.Check(LoomNative.loom_symbol_num_outputs(out int n, Handle));
            return n;
        }
    }

    /// <summary>Output <paramref name="index"/> as a single-output symbol.</summary>
    public Symbol this[int index]
    {
        get
        {
            LoomException.Check(LoomNative.loom_symbol_get_output(out SymbolHandle h, Handle, index));
            return new Symbol(h);
        }
    }

    private string List(int kind)
    {
        LoomException.Check(LoomNative.loom_symbol_list(out nint json, Handle, kind));
        return Marshal.PtrToStringUTF8(json) ?? "[]";
    }

    /// <summary>Argument names (inputs and parameters), in binding order.</summary>
    /// <returns>The argument names, in binding order.</returns>
    public string[] ListArguments() => JsonSerializer.Deserialize(List(LoomConstants.LOOM_LIST_ARGUMENTS), LoomJson.Default.StringArray)!;
    /// <summary>Output names (&lt;node&gt;_output).</summary>
    /// <returns>The output names.</returns>
    public string[] ListOutputs() => JsonSerializer.Deserialize(List(LoomConstants.LOOM_LIST_OUTPUTS), LoomJson.Default.StringArray)!;
    /// <summary>Auxiliary states (BatchNorm's moving statistics), in binding order.</summary>
    /// <returns>The auxiliary state names.</returns>
    public string[] ListAuxiliaryStates() => JsonSerializer.Deserialize(List(LoomConstants.LOOM_LIST_AUXILIARY_STATES), LoomJson.Default.StringArray)!;
    /// <summary>Every node's parameters and attributes, keyed "node$key".</summary>
    /// <returns>Attributes by node$key.</returns>
    public Dictionary<string, string> ListAttributes() =>
        JsonSerializer.Deserialize(List(LoomConstants.LOOM_LIST_ATTRIBUTES), LoomJson.Default.DictionaryStringString)!;

    /// <summary>Sets a user attribute (lr_mult, wd_mult, ctx_group, ...) on this symbol's node. Returns this.</summary>
    /// <param name="key">The attribute's name.</param>
    /// <param name="value">The value.</param>
    /// <returns>This symbol.</returns>
    public Symbol SetAttr(string key, string value)
    {
        LoomException.Check(LoomNative.loom_symbol_set_attr(Handle, key, value));
        return this;
    }

    /// <summary>An attribute or parameter of this symbol's node, or null.</summary>
    /// <param name="key">The attribute's name.</param>
    /// <returns>The value, or null when unset.</returns>
    public string? GetAttr(string key)
    {
        LoomException.Check(LoomNative.loom_symbol_get_attr(out nint v, out int found, Handle, key));
        return found != 0 ? Marshal.PtrToStringUTF8(v) : null;
    }

    /// <summary>Attributes given to every node created until the scope is disposed
    /// (on this thread), e.g. <c>using (Symbol.AttrScope(("ctx_group", "stage1"))) ...</c>.</summary>
    /// <param name="attrs">(key, value) pairs, such as ("lr_mult", "0.1").</param>
    /// <returns>A scope: the attributes stop applying when it is disposed.</returns>
    public static IDisposable AttrScope(params (string Key, string Value)[] attrs)
    {
        LoomException.Check(LoomNative.loom_symbol_attr_scope_push(attrs.Length,
            attrs.Select(a => a.Key).ToArray(), attrs.Select(a => a.Value).ToArray()));
        return new ScopePop();
    }

    private sealed class ScopePop : IDisposable
    {
        private bool _done;
        public void Dispose()
        {
            if (_done) return;
            _done = true;
            LoomException.Check(LoomNative.loom_symbol_attr_scope_pop());
        }
    }

    /// <summary>The graph in MXNet's symbol JSON.</summary>
    /// <returns>The symbol in MXNet's JSON format.</returns>
    public string ToJson()
    {
        LoomException.Check(LoomNative.loom_symbol_to_json(out nint j, Handle));
        return Marshal.PtrToStringUTF8(j)!;
    }

    /// <summary>Reads MXNet's symbol JSON (new "attrs" or legacy "param"/"attr" keys).</summary>
    /// <param name="json">The symbol in MXNet's JSON format.</param>
    /// <returns>The symbol.</returns>
    public static Symbol FromJson(string json)
    {
        LoomException.Check(LoomNative.loom_symbol_from_json(out SymbolHandle h, json));
        return new Symbol(h);
    }

    /// <summary>Writes the JSON to <paramref name="path"/> (temporary file, then rename).</summary>
    /// <param name="path">The file's path.</param>
    public void Save(string path) => LoomException.Check(LoomNative.loom_symbol_save(Handle, path));

    /// <summary>Reads a symbol JSON file.</summary>
    /// <param name="path">The file's path.</param>
    /// <returns>The symbol in the file.</returns>
    public static Symbol Load(string path)
    {
        LoomException.Check(LoomNative.loom_symbol_load(out SymbolHandle h, path));
        return new Symbol(h);
    }

    /// <summary>A copy with the named variables replaced by other symbols.</summary>
    /// <param name="replace">Arguments to replace, by name.</param>
    /// <returns>A new symbol with the arguments replaced.</returns>
    public Symbol Compose(IReadOnlyDictionary<string, Symbol> replace)
    {
        var names = replace.Keys.ToArray();
        nint* hs = stackalloc nint[Math.Max(names.Length, 1)];
        for (int i = 0; i < names.Length; i++) hs[i] = replace[names[i]].Handle.DangerousGetHandle();
        LoomException.Check(LoomNative.loom_symbol_compose(out SymbolHandle h, Handle, names.Length, names, hs));
        GC.KeepAlive(replace);
        return new Symbol(h);
    }

    internal readonly struct ShapeArgs
    {
        public readonly string[] Names;
        public readonly int[] NDims;
        public readonly long[] Dims;
        public ShapeArgs(IReadOnlyDictionary<string, long[]>? shapes)
        {
            shapes ??= new Dictionary<string, long[]>();
            Names = shapes.Keys.ToArray();
            NDims = Names.Select(n => shapes[n].Length).ToArray();
            Dims = Names.SelectMany(n => shapes[n]).ToArray();
        }
    }

    /// <summary>Partial shape (and dtype) inference from the shapes that are known.</summary>
    /// <param name="known">The input shapes that are known, by name.</param>
    /// <returns>What could be inferred: shapes and dtypes of arguments, outputs and auxiliary states.</returns>
    public ShapeInference InferShape(IReadOnlyDictionary<string, long[]> known)
    {
        var a = new ShapeArgs(known);
        nint json;
        fixed (int* nd = a.NDims)
        fixed (long* d = a.Dims)
            LoomException.Check(LoomNative.loom_symbol_infer(out json, Handle, a.Names.Length, a.Names, nd, d, null));
        using var doc = JsonDocument.Parse(Marshal.PtrToStringUTF8(json)!);
        var root = doc.RootElement;
        long[]?[] shapes(string key) => root.GetProperty(key).EnumerateArray()
            .Select(e => e.ValueKind == JsonValueKind.Null ? null : e.EnumerateArray().Select(x => x.GetInt64()).ToArray())
            .ToArray();
        var types = root.GetProperty("arg_dtypes").EnumerateArray()
            .Select(e => e.GetInt32() < 0 ? (DType?)null : (DType)e.GetInt32()).ToArray();
        return new ShapeInference(shapes("arg_shapes"), shapes("out_shapes"), shapes("aux_shapes"), types,
            root.GetProperty("complete").GetBoolean());
    }

    /// <summary>The network in Graphviz's DOT language, drawn as MXNet's <c>mx.viz.plot_network</c>
    /// draws it (computed natively): a box per op with MXNet's label and colour, inputs as ovals,
    /// parameters hidden unless <paramref name="hideWeights"/> is false, and with
    /// <paramref name="shapes"/> every edge labelled with its shape (without the batch axis).</summary>
    /// <param name="shapes">Input shapes by name (the batch dimension included), or null.</param>
    /// <param name="title">The graph's name.</param>
    /// <param name="hideWeights">Hide the parameters (<c>_weight</c>, <c>_bias</c>, ...).</param>
    /// <returns>The DOT text.</returns>
    /// <exception cref="LoomException">The shapes leave a node's shape unknown (named).</exception>
    public string ToDot(IReadOnlyDictionary<string, long[]>? shapes = null, string title = "plot", bool hideWeights = true)
    {
        var a = new ShapeArgs(shapes);
        nint text;
        fixed (int* nd = a.NDims)
        fixed (long* d = a.Dims)
            LoomException.Check(LoomNative.loom_symbol_to_dot(out text, Handle, a.Names.Length, a.Names, nd, d, title, hideWeights ? 1 : 0));
        return Marshal.PtrToStringUTF8(text)!;
    }

    /// <summary>For prediction: folds each BatchNorm on the output of a Convolution or
    /// FullyConnected that nothing else reads into that layer's weight and bias, computed once
    /// natively (in float64), so inference skips the BatchNorm passes. The result keeps the
    /// inputs and outputs; it has no training semantics for the folded nodes.</summary>
    /// <param name="argParams">The learned parameters by name (float32).</param>
    /// <param name="auxParams">The auxiliary states by name (BatchNorm's moving statistics).</param>
    /// <returns>The folded network, the parameters it reads (new arrays where folded; the
    /// given ones otherwise) split into arguments and auxiliary states, and how many
    /// BatchNorms were folded.</returns>
    /// <exception cref="LoomException">A parameter is missing, of another dtype or length (named).</exception>
    public (Symbol Symbol, Dictionary<string, NDArray> ArgParams, Dictionary<string, NDArray> AuxParams, int Folded)
        FoldBatchNorm(IReadOnlyDictionary<string, NDArray> argParams, IReadOnlyDictionary<string, NDArray>? auxParams = null)
    {
        ArgumentNullException.ThrowIfNull(argParams);
        var all = argParams.Concat(auxParams ?? new Dictionary<string, NDArray>()).ToArray();
        var names = all.Select(kv => kv.Key).ToArray();
        var handles = new nint[Math.Max(all.Length, 1)];
        int added = 0;
        SymbolHandle sh;
        NDArrayListHandle list;
        int folded;
        try
        {
            for (; added < all.Length; added++)
                handles[added] = (all[added].Value ?? throw new LoomException(LoomStatus.InvalidArgument,
                    $"FoldBatchNorm: parameter '{all[added].Key}' is null")).AddRef($"FoldBatchNorm: parameter '{all[added].Key}'");
            fixed (nint* hs = handles)
                LoomException.Check(LoomNative.loom_symbol_fold_batchnorm(out sh, out list, out folded, Handle,
                    all.Length, names, hs));
        }
        finally
        {
            for (int i = 0; i < added; i++) all[i].Value.Release();
        }
        var symbol = new Symbol(sh);
        var aux = new HashSet<string>(symbol.ListAuxiliaryStates());
        var args = new Dictionary<string, NDArray>();
        var auxOut = new Dictionary<string, NDArray>();
        using (list)
        {
            LoomException.Check(LoomNative.loom_ndarray_list_size(out int n, list));
            for (int i = 0; i < n; i++)
            {
                LoomException.Check(LoomNative.loom_ndarray_list_get(out NDArrayHandle h, out nint name, list, i));
                var key = Marshal.PtrToStringUTF8(name) ?? "";
                (aux.Contains(key) ? auxOut : args)[key] = new NDArray(h);
            }
        }
        return (symbol, args, auxOut, folded);
    }

    /// <summary>A layer table as MXNet's <c>mx.viz.print_summary</c> prints it (computed natively):
    /// each layer's output shape, parameter count and previous layers, then the total.</summary>
    /// <param name="shapes">Input shapes by name (the batch dimension included).</param>
    /// <param name="lineLength">Characters per line (40 to 1000).</param>
    /// <returns>The table.</returns>
    public string Summary(IReadOnlyDictionary<string, long[]> shapes, int lineLength = 120)
    {
        var a = new ShapeArgs(shapes);
        nint text;
        fixed (int* nd = a.NDims)
        fixed (long* d = a.Dims)
            LoomException.Check(LoomNative.loom_symbol_summary(out text, Handle, a.Names.Length, a.Names, nd, d, lineLength));
        return Marshal.PtrToStringUTF8(text)!;
    }

    /// <summary>Draws the network (<see cref="ToDot"/>) into an SVG, PNG or PDF file with Graphviz's
    /// <c>dot</c> program, by the file's extension; the file is written whole or not at all.</summary>
    /// <param name="path">The picture to write (<c>.svg</c>, <c>.png</c> or <c>.pdf</c>).</param>
    /// <param name="shapes">Input shapes by name, to label the edges, or null.</param>
    /// <param name="title">The graph's name.</param>
    /// <exception cref="LoomException">Graphviz is not installed, or it failed (its message is included).</exception>
    public void Plot(string path, IReadOnlyDictionary<string, long[]>? shapes = null, string title = "plot")
    {
        ArgumentNullException.ThrowIfNull(path);
        var format = System.IO.Path.GetExtension(path).TrimStart('.').ToLowerInvariant();
        if (format is not ("svg" or "png" or "pdf"))
            throw new LoomException(LoomStatus.InvalidArgument, $"Symbol.Plot: '{path}' must end in .svg, .png or .pdf");
        var dot = ToDot(shapes, title);
        var full = System.IO.Path.GetFullPath(path);
        var tmp = full + ".tmp" + Environment.ProcessId;
        var psi = new System.Diagnostics.ProcessStartInfo("dot", $"-T{format} -o \"{tmp}\"")
        {
            RedirectStandardInput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        System.Diagnostics.Process proc;
        try { proc = System.Diagnostics.Process.Start(psi)!; }
        catch (System.ComponentModel.Win32Exception)
        {
            throw new LoomException(LoomStatus.BackendUnavailable,
                "Symbol.Plot: Graphviz's 'dot' program was not found; install Graphviz (Debian: sudo apt-get install -y graphviz), " +
                "or write ToDot()'s text to a file and render it elsewhere");
        }
        using (proc)
        {
            proc.StandardInput.Write(dot);
            proc.StandardInput.Close();
            var err = proc.StandardError.ReadToEnd();
            proc.WaitForExit();
            if (proc.ExitCode != 0 || !System.IO.File.Exists(tmp))
            {
                System.IO.File.Delete(tmp);
                throw new LoomException(LoomStatus.Io, $"Symbol.Plot: Graphviz could not write '{path}': {err.Trim()}");
            }
        }
        System.IO.File.Move(tmp, full, overwrite: true);
    }

    /// <summary>The memory an executor for these input shapes would plan, without allocating.</summary>
    /// <param name="shapes">Input shapes by name (the batch dimension included).</param>
    /// <param name="forTraining">Plan for a backward pass too.</param>
    /// <param name="gradReq">How gradients are stored: written, added or none.</param>
    /// <param name="reqs">Per-input gradient requests overriding gradReq (null for none).</param>
    /// <returns>The bytes planned for the intermediate values and what one buffer each would take.</returns>
    public MemoryPlan PlanMemory(IReadOnlyDictionary<string, long[]> shapes, bool forTraining,
        GradReq gradReq = GradReq.Write, IReadOnlyDictionary<string, GradReq>? reqs = null)
    {
        var a = new ShapeArgs(shapes);
        var rn = reqs?.Keys.ToArray() ?? Array.Empty<string>();
        var rv = rn.Select(n => (int)reqs![n]).ToArray();
        MemoryPlan m;
        fixed (int* nd = a.NDims)
        fixed (long* d = a.Dims)
        fixed (int* r = rv)
            LoomException.Check(LoomNative.loom_symbol_plan_memory(out m, Handle, a.Names.Length, a.Names, nd, d,
                rn.Length, rn, r, (int)gradReq, forTraining ? 1 : 0));
        return m;
    }

    /// <summary>Binds with arrays allocated from the input shapes (zero-filled): every
    /// argument gets a gradient by <paramref name="gradReq"/> unless <paramref name="reqs"/>
    /// says otherwise for it.</summary>
    /// <param name="ctx">The device to run on.</param>
    /// <param name="shapes">Input shapes by name (the batch dimension included); the rest are inferred.</param>
    /// <param name="gradReq">How gradients are stored: written, added or none.</param>
    /// <param name="reqs">Per-input gradient requests overriding gradReq (null for none).</param>
    /// <param name="dtypes">Input dtypes by name (float32 where not given).</param>
    /// <returns>An executor with every array allocated and the memory of intermediate values planned.</returns>
    /// <exception cref="LoomException">Shapes or dtypes cannot be inferred or do not fit; the message names the node.</exception>
    public Executor SimpleBind(Context ctx, IReadOnlyDictionary<string, long[]> shapes,
        GradReq gradReq = GradReq.Write, IReadOnlyDictionary<string, GradReq>? reqs = null,
        IReadOnlyDictionary<string, DType>? dtypes = null)
    {
        var a = new ShapeArgs(shapes);
        var rn = reqs?.Keys.ToArray() ?? Array.Empty<string>();
        var rv = rn.Select(n => (int)reqs![n]).ToArray();
        var dt = a.Names.Select(n => dtypes is not null && dtypes.TryGetValue(n, out var t) ? (int)t : -1).ToArray();
        ExecutorHandle h;
        fixed (int* nd = a.NDims)
        fixed (long* d = a.Dims)
        fixed (int* r = rv)
        fixed (int* dtp = dt)
            LoomException.Check(LoomNative.loom_executor_simple_bind(out h, Handle, (int)ctx.DeviceType, ctx.DeviceId,
                a.Names.Length, a.Names, nd, d, dtp, rn.Length, rn, r, (int)gradReq));
        return new Executor(h, this);
    }

    /// <summary>Binds to given arrays, in the order of <see cref="ListArguments"/> and
    /// <see cref="ListAuxiliaryStates"/>; <paramref name="grads"/> holds null where the
    /// request is <see cref="GradReq.Null"/>.</summary>
    /// <param name="ctx">The device to run on.</param>
    /// <param name="args">The argument arrays, in ListArguments order.</param>
    /// <param name="grads">Where gradients go, one per argument (null: none).</param>
    /// <param name="reqs">How each gradient is stored (null: written where a gradient array is given).</param>
    /// <param name="aux">The auxiliary states (BatchNorm's moving statistics), in ListAuxiliaryStates order.</param>
    /// <returns>An executor over the given arrays.</returns>
    public Executor Bind(Context ctx, NDArray[] args, NDArray?[]? grads = null, GradReq[]? reqs = null,
        NDArray[]? aux = null)
    {
        aux ??= Array.Empty<NDArray>();
        nint* ah = stackalloc nint[Math.Max(args.Length, 1)];
        nint* gh = stackalloc nint[Math.Max(args.Length, 1)];
        nint* xh = stackalloc nint[Math.Max(aux.Length, 1)];
        int* rq = stackalloc int[Math.Max(args.Length, 1)];
        for (int i = 0; i < args.Length; i++)
        {
            ah[i] = args[i].Handle.DangerousGetHandle();
            NDArray? g = grads is not null && i < grads.Length ? grads[i] : null;
            gh[i] = g?.Handle.DangerousGetHandle() ?? 0;
            rq[i] = reqs is not null && i < reqs.Length ? (int)reqs[i] : (g is null ? 0 : 1);
        }
        for (int i = 0; i < aux.Length; i++) xh[i] = aux[i].Handle.DangerousGetHandle();
        LoomException.Check(LoomNative.loom_executor_bind(out ExecutorHandle h, Handle, (int)ctx.DeviceType, ctx.DeviceId,
            args.Length, ah, grads is null ? null : gh, rq, aux.Length, xh));
        GC.KeepAlive(args);
        GC.KeepAlive(grads);
        GC.KeepAlive(aux);
        return new Executor(h, this);
    }

    // ------------------------------------------------------------ operators
    /// <summary>Elementwise sum (broadcasting).</summary>
    /// <param name="a">A symbol.</param>
    /// <param name="b">A symbol (broadcast against the other, NumPy's rule).</param>
    /// <returns>A new symbol whose node applies the operator.</returns>
    public static Symbol operator +(Symbol a, Symbol b) => Sym.Add(null, a, b);
    /// <summary>Elementwise difference (broadcasting).</summary>
    /// <param name="a">A symbol.</param>
    /// <param name="b">A symbol (broadcast against the other, NumPy's rule).</param>
    /// <returns>A new symbol whose node applies the operator.</returns>
    public static Symbol operator -(Symbol a, Symbol b) => Sym.Subtract(null, a, b);
    /// <summary>Elementwise product (broadcasting).</summary>
    /// <param name="a">A symbol.</param>
    /// <param name="b">A symbol (broadcast against the other, NumPy's rule).</param>
    /// <returns>A new symbol whose node applies the operator.</returns>
    public static Symbol operator *(Symbol a, Symbol b) => Sym.Multiply(null, a, b);
    /// <summary>Elementwise quotient (broadcasting).</summary>
    /// <param name="a">A symbol.</param>
    /// <param name="b">A symbol (broadcast against the other, NumPy's rule).</param>
    /// <returns>A new symbol whose node applies the operator.</returns>
    public static Symbol operator /(Symbol a, Symbol b) => Sym.Divide(null, a, b);
    /// <summary>Adds a scalar.</summary>
    /// <param name="a">A symbol.</param>
    /// <param name="s">A number.</param>
    /// <returns>A new symbol whose node applies the operator.</returns>
    public static Symbol operator +(Symbol a, double s) => Sym.AddScalar(null, s, a);
    /// <summary>Adds a scalar.</summary>
    /// <param name="s">A number.</param>
    /// <param name="a">A symbol.</param>
    /// <returns>A new symbol whose node applies the operator.</returns>
    public static Symbol operator +(double s, Symbol a) => Sym.AddScalar(null, s, a);
    /// <summary>Subtracts a scalar.</summary>
    /// <param name="a">A symbol.</param>
    /// <param name="s">A number.</param>
    /// <returns>A new symbol whose node applies the operator.</returns>
    public static Symbol operator -(Symbol a, double s) => Sym.SubtractScalar(null, s, a);
    /// <summary>A scalar minus the symbol.</summary>
    /// <param name="s">A number.</param>
    /// <param name="a">A symbol.</param>
    /// <returns>A new symbol whose node applies the operator.</returns>
    public static Symbol operator -(double s, Symbol a) => Sym.RsubtractScalar(null, s, a);
    /// <summary>Multiplies by a scalar.</summary>
    /// <param name="a">A symbol.</param>
    /// <param name="s">A number.</param>
    /// <returns>A new symbol whose node applies the operator.</returns>
    public static Symbol operator *(Symbol a, double s) => Sym.MultiplyScalar(null, s, a);
    /// <summary>Multiplies by a scalar.</summary>
    /// <param name="s">A number.</param>
    /// <param name="a">A symbol.</param>
    /// <returns>A new symbol whose node applies the operator.</returns>
    public static Symbol operator *(double s, Symbol a) => Sym.MultiplyScalar(null, s, a);
    /// <summary>Divides by a scalar.</summary>
    /// <param name="a">A symbol.</param>
    /// <param name="s">A number.</param>
    /// <returns>A new symbol whose node applies the operator.</returns>
    public static Symbol operator /(Symbol a, double s) => Sym.DivideScalar(null, s, a);
    /// <summary>Negation.</summary>
    /// <param name="a">A symbol.</param>
    /// <returns>A new symbol whose node applies the operator.</returns>
    public static Symbol operator -(Symbol a) => Sym.Negative(null, a);

    /// <summary>The output names, for display.</summary>
    /// <returns>The output names, as text.</returns>
    public override string ToString() => "Symbol[" + string.Join(", ", ListOutputs()) + "]";
}

/// <summary>A symbol bound to arrays: runs forward and backward passes through the
/// engine with planned memory.</summary>
public sealed unsafe class Executor : IDisposable
{
    private readonly ExecutorHandle _handle;

    /// <summary>The bound symbol.</summary>
    public Symbol Symbol { get; }
    /// <summary>Argument arrays, in <see cref="Symbol.ListArguments"/> order.</summary>
    public NDArray[] Arguments { get; }
    /// <summary>Gradient arrays (null where the request is null).</summary>
    public NDArray?[] Gradients { get; }
    /// <summary>Auxiliary-state arrays.</summary>
    public NDArray[] AuxiliaryStates { get; }
    /// <summary>Outputs (valid after <see cref="Forward"/>).</summary>
    public NDArray[] Outputs { get; }
    /// <summary>Arguments by name.</summary>
    public IReadOnlyDictionary<string, NDArray> ArgDict { get; }
    /// <summary>Gradients by name (arguments with a gradient only).</summary>
    public IReadOnlyDictionary<string, NDArray> GradDict { get; }
    /// <summary>Auxiliary states by name.</summary>
    public IReadOnlyDictionary<string, NDArray> AuxDict { get; }

    internal Executor(ExecutorHandle h, Symbol symbol)
    {
        _handle = h;
        Symbol = symbol;
        Arguments = Fetch(LoomConstants.LOOM_EXEC_ARGUMENT).Select(a => a!).ToArray();
        Gradients = Fetch(LoomConstants.LOOM_EXEC_GRADIENT);
        AuxiliaryStates = Fetch(LoomConstants.LOOM_EXEC_AUXILIARY_STATE).Select(a => a!).ToArray();
        Outputs = Fetch(LoomConstants.LOOM_EXEC_OUTPUT).Select(a => a!).ToArray();
        var args = symbol.ListArguments();
        var aux = symbol.ListAuxiliaryStates();
        ArgDict = args.Select((n, i) => (n, i)).ToDictionary(t => t.n, t => Arguments[t.i]);
        GradDict = args.Select((n, i) => (n, i)).Where(t => Gradients[t.i] is not null)
            .ToDictionary(t => t.n, t => Gradients[t.i]!);
        AuxDict = aux.Select((n, i) => (n, i)).ToDictionary(t => t.n, t => AuxiliaryStates[t.i]);
    }

    private NDArray?[] Fetch(int kind)
    {
        LoomException.Check(LoomNative.loom_executor_count(out int n, _handle, kind));
        var r = new NDArray?[n];
        for (int i = 0; i < n; i++)
        {
            LoomException.Check(LoomNative.loom_executor_get(out NDArrayHandle h, _handle, kind, i));
            r[i] = h.IsInvalid ? null : new NDArray(h, scoped: false);
        }
        return r;
    }

    private ExecutorHandle Handle => _handle.IsClosed
        ? throw new LoomException(LoomStatus.InvalidArgument, "this Executor was used after Dispose()")
        : _handle;

    /// <summary>Pushes the forward pass (training behaviour when <paramref name="isTrain"/>).</summary>
    /// <param name="isTrain">Training mode (dropout drops, BatchNorm uses the batch's statistics).</param>
    public void Forward(bool isTrain = false) => LoomException.Check(LoomNative.loom_executor_forward(Handle, isTrain ? 1 : 0));

    /// <summary>Pushes the backward pass; no head gradients means ones (loss outputs ignore them).</summary>
    /// <param name="headGrads">The gradients of the heads, one per head (null: ones).</param>
    public void Backward(params NDArray[] headGrads)
    {
        nint* hs = stackalloc nint[Math.Max(headGrads.Length, 1)];
        for (int i = 0; i < headGrads.Length; i++) hs[i] = headGrads[i]?.Handle.DangerousGetHandle() ?? 0;
        LoomException.Check(LoomNative.loom_executor_backward(Handle, headGrads.Length, hs));
        GC.KeepAlive(headGrads);
    }

    /// <summary>An executor for other input shapes (e.g. a smaller last batch) sharing
    /// the parameters, gradients, states and, where they fit, the intermediate buffers.</summary>
    /// <param name="shapes">Input shapes by name (the batch dimension included).</param>
    /// <returns>A view with the new shape (no copy; -1 infers one extent).</returns>
    public Executor Reshape(IReadOnlyDictionary<string, long[]> shapes)
    {
        var a = new Symbol.ShapeArgs(shapes);
        ExecutorHandle h;
        fixed (int* nd = a.NDims)
        fixed (long* d = a.Dims)
            LoomException.Check(LoomNative.loom_executor_reshape(out h, Handle, a.Names.Length, a.Names, nd, d));
        return new Executor(h, Symbol);
    }

    /// <summary>Planned and allocated memory of this executor.</summary>
    public MemoryPlan Memory
    {
        get
        {
            LoomException.Check(LoomNative.loom_executor_memory(out MemoryPlan m, Handle));
            return m;
        }
    }

    /// <summary>Releases the executor and its array handles (memory returns to the pool
    /// once pending work finishes).</summary>
    public void Dispose()
    {
        foreach (var a in Arguments) a.Dispose();
        foreach (var a in Gradients) a?.Dispose();
        foreach (var a in AuxiliaryStates) a.Dispose();
        foreach (var a in Outputs) a.Dispose();
        _handle.Dispose();
    }
}
