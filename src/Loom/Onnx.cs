using System;
using System.Collections.Generic;
using System.Linq;
using System.Runtime.InteropServices;
using System.Text.Json;
using Loom.Interop;

namespace Loom;

/// <summary>A model read from an ONNX file: the network, its parameters and its inputs.</summary>
/// <param name="Symbol">The network.</param>
/// <param name="ArgParams">Learned parameters by name (arguments of <paramref name="Symbol"/>).</param>
/// <param name="AuxParams">Auxiliary states by name (BatchNorm's moving mean and variance).</param>
/// <param name="Inputs">The model's inputs and their shapes, in the file's order; -1 marks a
/// symbolic extent (a batch axis exported as dynamic).</param>
public sealed record OnnxModel(Symbol Symbol, Dictionary<string, NDArray> ArgParams,
    Dictionary<string, NDArray> AuxParams, IReadOnlyList<(string Name, long[] Shape)> Inputs) : IDisposable
{
    /// <summary>Releases the network and the parameter arrays.</summary>
    public void Dispose()
    {
        Symbol.Dispose();
        foreach (var a in ArgParams.Values) a.Dispose();
        foreach (var a in AuxParams.Values) a.Dispose();
    }
}

/// <summary>ONNX models (opsets 13 to 17), written and read natively: networks go to ONNX
/// Runtime and come from PyTorch's <c>torch.onnx.export</c>. The ops covered are those of the
/// MLP, LeNet, AlexNet, Inception-BN and ResNet families (Conv, BatchNormalization, pooling
/// with ceil mode, Gemm/MatMul, activations, Concat, Flatten/Reshape, Softmax, Dropout, Add,
/// LRN, ...); anything else fails naming the node.</summary>
public static unsafe class Onnx
{
    /// <summary>Whether this build of Loom reads and writes ONNX (built with libonnx-dev).</summary>
    public static bool Available
    {
        get
        {
            LoomException.Check(LoomNative.loom_onnx_available(out int v));
            return v != 0;
        }
    }

    /// <summary>Writes a network with its parameters as an ONNX model. Variables that are not
    /// parameters are the model's inputs, each needing a shape; loss labels are dropped and
    /// loss heads written as their predictions (SoftmaxOutput as Softmax). The model passes
    /// ONNX's checker before it is written, to a temporary name that is then renamed.</summary>
    /// <param name="path">The <c>.onnx</c> file to write.</param>
    /// <param name="symbol">The network.</param>
    /// <param name="argParams">Learned parameters by name (float32).</param>
    /// <param name="auxParams">Auxiliary states by name, or null.</param>
    /// <param name="inputShapes">Each input's shape, the batch axis included.</param>
    /// <param name="opset">The ONNX opset, 13 to 17.</param>
    /// <exception cref="LoomException">An op or parameter value without an exact ONNX counterpart
    /// (the node named), a variable that is neither a parameter nor an input, or a path that
    /// cannot be written.</exception>
    public static void Export(string path, Symbol symbol, IReadOnlyDictionary<string, NDArray> argParams,
        IReadOnlyDictionary<string, NDArray>? auxParams, IReadOnlyDictionary<string, long[]> inputShapes, int opset = 13)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(symbol);
        ArgumentNullException.ThrowIfNull(argParams);
        ArgumentNullException.ThrowIfNull(inputShapes);
        var all = argParams.Concat(auxParams ?? new Dictionary<string, NDArray>()).ToArray();
        var names = all.Select(kv => kv.Key).ToArray();
        var handles = new nint[Math.Max(all.Length, 1)];
        int added = 0;
        try
        {
            for (; added < all.Length; added++)
                handles[added] = (all[added].Value ?? throw new LoomException(LoomStatus.InvalidArgument,
                    $"ONNX export: parameter '{all[added].Key}' is null")).AddRef($"ONNX export: parameter '{all[added].Key}'");
            var a = new Symbol.ShapeArgs(inputShapes);
            fixed (nint* hs = handles)
            fixed (int* nd = a.NDims)
            fixed (long* d = a.Dims)
                LoomException.Check(LoomNative.loom_onnx_export(path, symbol.Handle, all.Length, names, hs,
                    a.Names.Length, a.Names, nd, d, opset));
        }
        finally
        {
            for (int i = 0; i < added; i++) all[i].Value.Release();
        }
    }

    /// <summary>Reads an ONNX model (opsets 13 to 17) into a Loom network with its parameters on cpu(0).</summary>
    /// <param name="path">The <c>.onnx</c> file.</param>
    /// <returns>The network, its parameters split into arguments and auxiliary states, and its inputs.</returns>
    /// <exception cref="LoomException">A missing, truncated or damaged file, one that fails ONNX's
    /// checker, an unsupported opset, op or attribute value, or an initializer that does not fit
    /// its node (the file and the node named).</exception>
    public static OnnxModel Import(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        LoomException.Check(LoomNative.loom_onnx_import(out SymbolHandle sh, out NDArrayListHandle list, out nint js, path));
        var inputsJson = Marshal.PtrToStringUTF8(js) ?? "[]";
        var symbol = new Symbol(sh);
        var args = new Dictionary<string, NDArray>();
        var aux = new Dictionary<string, NDArray>();
        using (list)
        {
            var auxNames = new HashSet<string>(symbol.ListAuxiliaryStates());
            LoomException.Check(LoomNative.loom_ndarray_list_size(out int n, list));
            for (int i = 0; i < n; i++)
            {
                LoomException.Check(LoomNative.loom_ndarray_list_get(out NDArrayHandle h, out nint name, list, i));
                var key = Marshal.PtrToStringUTF8(name) ?? "";
                (auxNames.Contains(key) ? aux : args)[key] = new NDArray(h);
            }
        }
        using var doc = JsonDocument.Parse(inputsJson);
        var inputs = doc.RootElement.EnumerateArray()
            .Select(e => (e.GetProperty("name").GetString()!,
                          e.GetProperty("shape").EnumerateArray().Select(x => x.GetInt64()).ToArray()))
            .ToList();
        return new OnnxModel(symbol, args, aux, inputs);
    }
}
