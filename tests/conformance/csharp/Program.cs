// Conformance runner in C#: executes every case of the given JSON files through
// the C# frontend and prints "<name> <sha256 of the raw bytes>" per output, or
// "<case> ERROR <message>" for a case that cannot run (the others still run).
// Usage: Loom.Conformance CASES.json... > digests.txt
using System.Security.Cryptography;
using System.Text.Json;
using Loom;

foreach (string path in args)
{
    string baseDir = Path.GetDirectoryName(Path.GetFullPath(path))!;
    JsonDocument doc;
    try
    {
        doc = JsonDocument.Parse(File.ReadAllText(path));
    }
    catch (JsonException e)
    {
        Console.WriteLine($"{Path.GetFileName(path)} ERROR malformed case file: {e.Message}");
        continue;
    }
    foreach (var c in doc.RootElement.GetProperty("cases").EnumerateArray())
    {
        var lines = new List<string>();
        string name = c.TryGetProperty("name", out var n) ? n.GetString()! : "?";
        try
        {
            using var scope = NDArray.Scope();
            if (c.TryGetProperty("op", out _)) Runner.OpCase(c, lines);
            else if (c.TryGetProperty("kvstore", out _)) Runner.KVStoreCase(c, lines);
            else Runner.GraphCase(c, baseDir, lines);
            Engine.WaitAll();
        }
        catch (Exception e) when (e is LoomException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            lines = new List<string> { $"{name} ERROR {string.Join(' ', e.Message.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries))}" };
        }
        Console.WriteLine(string.Join("\n", lines));
    }
}

static class Runner
{
    // A parameter's text: numbers exactly as written in the case file.
    static string Raw(JsonElement v) => v.ValueKind switch
    {
        JsonValueKind.True => "true",
        JsonValueKind.False => "false",
        JsonValueKind.String => v.GetString()!,
        JsonValueKind.Array => "(" + string.Join(",", v.EnumerateArray().Select(Raw)) + (v.GetArrayLength() == 1 ? ",)" : ")"),
        _ => v.GetRawText(),
    };

    static OpParams Params(JsonElement c, string key)
    {
        var p = new OpParams();
        if (c.TryGetProperty(key, out var ps))
            foreach (var kv in ps.EnumerateObject()) p.Add(kv.Name, Raw(kv.Value));
        return p;
    }

    static string Get(JsonElement spec, string key, string dflt) =>
        spec.ValueKind == JsonValueKind.Object && spec.TryGetProperty(key, out var v) ? Raw(v) : dflt;

    static string Shape(IEnumerable<long> s)
    {
        var a = s.ToArray();
        return "(" + string.Join(",", a) + (a.Length == 1 ? ",)" : ")");
    }

    static NDArray MakeInput(JsonElement spec, long[]? shape = null, string? dtype = null, string? seed = null)
    {
        Rand.Seed(ulong.Parse(seed ?? Get(spec, "seed", "0")));
        var p = new OpParams();
        p.Add("shape", shape is null ? Raw(spec.GetProperty("shape")) : Shape(shape));
        p.Add("low", Get(spec, "low", "-1"));
        p.Add("high", Get(spec, "high", "1"));
        p.Add("dtype", dtype ?? Get(spec, "dtype", "float32"));
        var x = Imperative.Invoke("random_uniform", Array.Empty<NDArray>(), p);
        if (spec.ValueKind == JsonValueKind.Object && spec.TryGetProperty("cast", out var casts))
            foreach (var dt in casts.EnumerateArray())
            {
                var cp = new OpParams();
                cp.Add("dtype", dt.GetString()!);
                x = Imperative.Invoke("cast", new[] { x }, cp);
            }
        return x;
    }

    static string Digest(NDArray a) => Convert.ToHexStringLower(SHA256.HashData(a.ToBytes()));

    public static void OpCase(JsonElement c, List<string> lines)
    {
        var inputs = c.GetProperty("inputs").EnumerateArray().Select(s => MakeInput(s)).ToArray();
        Rand.Seed(ulong.Parse(Get(c, "seed", "0")));
        var outs = Imperative.InvokeAll(c.GetProperty("op").GetString()!, inputs, Params(c, "params"));
        int n = int.Parse(Get(c, "outputs", "1"));
        for (int i = 0; i < n; i++) lines.Add($"{c.GetProperty("name").GetString()}/out{i} {Digest(outs[i])}");
    }

    public static void GraphCase(JsonElement c, string baseDir, List<string> lines)
    {
        string name = c.GetProperty("name").GetString()!;
        var net = Symbol.Load(Path.Combine(baseDir, c.GetProperty("graph").GetString()!));
        var shapes = c.GetProperty("shapes").EnumerateObject()
            .ToDictionary(kv => kv.Name, kv => kv.Value.EnumerateArray().Select(d => d.GetInt64()).ToArray());
        var reqs = shapes.Keys.ToDictionary(k => k, _ => GradReq.Null);
        using var ex = net.SimpleBind(Context.Cpu(), shapes, GradReq.Write, reqs);
        var specs = c.TryGetProperty("inputs", out var sp) ? sp : default;
        long seed = long.Parse(Get(c, "seed", "0"));
        var argNames = net.ListArguments();
        for (int i = 0; i < argNames.Length; i++)
        {
            var spec = specs.ValueKind == JsonValueKind.Object && specs.TryGetProperty(argNames[i], out var s) ? s : default;
            var a = ex.Arguments[i];
            MakeInput(spec, a.Shape, DTypes.Name(a.DType), (seed * 1000 + i).ToString()).CopyTo(a);
        }
        var auxNames = net.ListAuxiliaryStates();
        using var auxDefault = JsonDocument.Parse("{\"low\": 0.5, \"high\": 1.5}");
        for (int j = 0; j < auxNames.Length; j++)
        {
            var spec = specs.ValueKind == JsonValueKind.Object && specs.TryGetProperty(auxNames[j], out var s) ? s : auxDefault.RootElement;
            var a = ex.AuxiliaryStates[j];
            MakeInput(spec, a.Shape, DTypes.Name(a.DType), (seed * 1000 + 500 + j).ToString()).CopyTo(a);
        }
        bool train = !c.TryGetProperty("train", out var t) || t.GetBoolean();
        int steps = int.Parse(Get(c, "steps", "0"));
        if (steps == 0)
        {
            ex.Forward(train);
            if (!c.TryGetProperty("backward", out var b) || b.GetBoolean()) ex.Backward();
            for (int i = 0; i < ex.Outputs.Length; i++) lines.Add($"{name}/out{i} {Digest(ex.Outputs[i])}");
            for (int i = 0; i < argNames.Length; i++)
                if (ex.Gradients[i] is { } g) lines.Add($"{name}/grad:{argNames[i]} {Digest(g)}");
        }
        else
        {
            var opt = c.GetProperty("optimizer");
            string op = opt.GetProperty("op").GetString()!;
            using var describe = JsonDocument.Parse(Describe(op));
            int nstate = describe.RootElement.GetProperty("inputs").GetArrayLength() - 2;
            bool hasT = describe.RootElement.GetProperty("params").EnumerateArray().Any(p => p.GetProperty("name").GetString() == "t");
            var pnames = argNames.Where(a => !shapes.ContainsKey(a)).ToArray();
            var states = pnames.ToDictionary(p => p, p => Enumerable.Range(0, nstate)
                .Select(_ => NDArray.Zeros(ex.ArgDict[p].Shape, ex.ArgDict[p].DType)).ToArray());
            for (int step = 1; step <= steps; step++)
            {
                ex.Forward(true);
                ex.Backward();
                foreach (var p in pnames)
                {
                    var ps = Params(opt, "params");
                    if (hasT) ps.Add("t", step.ToString());
                    var w = ex.ArgDict[p];
                    Imperative.InvokeAll(op, new[] { w, ex.GradDict[p] }.Concat(states[p]).ToArray(), ps,
                        new[] { w }.Concat(states[p]).ToArray());
                }
            }
            foreach (var p in pnames) lines.Add($"{name}/arg:{p} {Digest(ex.ArgDict[p])}");
        }
        for (int j = 0; j < auxNames.Length; j++) lines.Add($"{name}/aux:{auxNames[j]} {Digest(ex.AuxiliaryStates[j])}");
    }

    // A key-value store: init from one drawn value, then each push (one drawn value per
    // seed, value i on cpu(i) when "devices") followed by a pull, digested.
    public static void KVStoreCase(JsonElement c, List<string> lines)
    {
        string name = c.GetProperty("name").GetString()!, key = Get(c, "key", "w");
        var spec = c.GetProperty("value");
        bool devices = c.TryGetProperty("devices", out var d) && d.GetBoolean();
        using var kv = KVStore.Create(c.GetProperty("kvstore").GetString()!);
        if (c.TryGetProperty("updater", out var up))
        {
            var ps = new Dictionary<string, string>();
            if (up.TryGetProperty("params", out var pp))
                foreach (var kv2 in pp.EnumerateObject()) ps[kv2.Name] = Raw(kv2.Value);
            kv.SetUpdater(up.GetProperty("op").GetString()!, ps);
        }
        var init = MakeInput(spec);
        kv.Init(key, init);
        int step = 0;
        foreach (var push in c.GetProperty("pushes").EnumerateArray())
        {
            var values = push.EnumerateArray().Select((seed, i) =>
            {
                var x = MakeInput(spec, seed: seed.GetString());
                if (!devices) return x;
                var on = NDArray.Zeros(x.Shape.ToArray(), x.DType, Context.Cpu(i));
                x.CopyTo(on);
                return on;
            }).ToArray();
            kv.Push(key, values);
            var out0 = NDArray.Zeros(init.Shape.ToArray(), init.DType);
            kv.Pull(key, out0);
            lines.Add($"{name}/pull{step++} {Digest(out0)}");
        }
    }

    static string Describe(string op)
    {
        Loom.Interop.OpHandle h = default;
        Imperative.Resolve(ref h, op);
        Loom.Interop.LoomNative.loom_op_describe(out nint json, h);
        return System.Runtime.InteropServices.Marshal.PtrToStringUTF8(json)!;
    }
}
