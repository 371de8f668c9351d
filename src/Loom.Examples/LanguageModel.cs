// A character-level LSTM language model (`./build.sh run lstm`): the English text of
// Debian's `fortunes` package (data/fortunes/fortunes.txt, fetched and checked by
// `./build.sh data`), an embedding, the fused 2-layer LSTM (the RNN op), a softmax over
// the characters; truncated back-propagation through time with the states carried from
// batch to batch; validation perplexity (the native Perplexity metric) after each epoch;
// and text sampled from the trained model (the native sample_multinomial op).
using System.Diagnostics;
using System.Text;
using Loom;

static class LanguageModel
{
    const int Embed = 32, Hidden = 192, Layers = 2, Steps = 64, Streams = 32;

    static string TextPath()
    {
        var env = Environment.GetEnvironmentVariable("LOOM_DATA_DIR");
        var dirs = new List<string>();
        if (!string.IsNullOrEmpty(env)) dirs.Add(Path.Combine(env, "fortunes"));
        for (var d = new DirectoryInfo(Directory.GetCurrentDirectory()); d != null; d = d.Parent)
            dirs.Add(Path.Combine(d.FullName, "data", "fortunes"));
        foreach (var d in dirs)
            if (File.Exists(Path.Combine(d, "fortunes.txt"))) return Path.Combine(d, "fortunes.txt");
        return Path.Combine("data", "fortunes", "fortunes.txt");
    }

    // The characters of the text as indices into its sorted alphabet, laid out as
    // (length, Streams): stream s reads the s-th slice of the text (MXNet's batchify).
    static (NDArray Tokens, long Length) Streamed(byte[] text, int start, int count, byte[] index)
    {
        long len = count / Streams;
        var v = new float[len * Streams];
        for (int s = 0; s < Streams; s++)
            for (long t = 0; t < len; t++) v[t * Streams + s] = index[text[start + s * len + t]];
        return (NDArray.FromArray(v, len, Streams), len);
    }

    public static int Train(int epochs, int maxChars)
    {
        string path = TextPath();
        if (!File.Exists(path))
        {
            Console.Error.WriteLine($"{path} is missing: run ./build.sh data (it fetches Debian's fortunes package)");
            return 1;
        }
        byte[] text = File.ReadAllBytes(path);
        if (maxChars > 0 && text.Length > maxChars) text = text[..maxChars];
        var alphabet = text.Distinct().OrderBy(b => b).ToArray();
        var index = new byte[256];
        for (int i = 0; i < alphabet.Length; i++) index[alphabet[i]] = (byte)i;
        int V = alphabet.Length;
        int validChars = text.Length / 20;  // the last 5% is held out
        Rand.Seed(7);
        using var scope = NDArray.Scope();
        var (train, trainLen) = Streamed(text, 0, text.Length - validChars, index);
        var (valid, validLen) = Streamed(text, text.Length - validChars, validChars, index);
        Console.WriteLine($"text: {path}, {text.Length} characters, alphabet of {V}; " +
                          $"training on {trainLen * Streams}, validating on {validLen * Streams}");

        long paramSize = 0;
        for (int l = 0; l < Layers; l++) paramSize += 4L * Hidden * ((l == 0 ? Embed : Hidden) + Hidden + 2);
        var embed = Rand.Uniform(-0.1, 0.1, new long[] { V, Embed }).AttachGrad();
        var rnn = Rand.Uniform(-0.08, 0.08, new[] { paramSize }).AttachGrad();
        var outW = Rand.Uniform(-0.1, 0.1, new long[] { V, Hidden }).AttachGrad();
        var outB = NDArray.Zeros(V).AttachGrad();
        var parameters = new[] { embed, rnn, outW, outB };
        Console.WriteLine($"model: embedding {V}x{Embed}, LSTM {Layers} layers of {Hidden} (fused RNN op, " +
                          $"{paramSize} parameters), softmax over {V}; batch {Streams} x {Steps} steps");
        var opt = new Adam(lr: 0.004) { ClipGradient = 5 };

        // One batch: the output probabilities and the final states (h, c).
        (NDArray Prob, NDArray H, NDArray C) Step(NDArray x, NDArray y, NDArray h, NDArray c)
        {
            long t = x.Shape[0], n = x.Shape[1];
            var e = Op.Embedding(x, embed, inputDim: V, outputDim: Embed);
            var r = Op.RNN(e, rnn, h, c, stateSize: Hidden, numLayers: Layers, mode: RNNMode.Lstm, stateOutputs: true);
            var logits = Op.FullyConnected(r[0].Reshape(t * n, Hidden), outW, outB, numHidden: V);
            return (Op.SoftmaxOutput(logits, y, normalization: Normalization.Batch), r[1], r[2]);
        }
        NDArray ZeroState(long n) => NDArray.Zeros(Layers, n, Hidden);

        using var perplexity = new Perplexity();
        double Evaluate()
        {
            perplexity.Reset();
            using var predict = Autograd.Predict();
            var h = ZeroState(Streams);
            var c = ZeroState(Streams);
            for (long t = 0; t + Steps + 1 <= validLen; t += Steps)
            {
                using var batchScope = NDArray.Scope();
                var y = valid[(int)(t + 1)..(int)(t + 1 + Steps)].Reshape(Steps * Streams);
                var (p, h2, c2) = Step(valid[(int)t..(int)(t + Steps)], y, h, c);
                perplexity.Update(p, y);
                Op.Copy(h2, @out: h);
                Op.Copy(c2, @out: c);
            }
            return perplexity.Get();
        }

        var total = Stopwatch.StartNew();
        for (int epoch = 1; epoch <= epochs; epoch++)
        {
            var sw = Stopwatch.StartNew();
            perplexity.Reset();
            var h = ZeroState(Streams);
            var c = ZeroState(Streams);
            long batches = 0;
            for (long t = 0; t + Steps + 1 <= trainLen; t += Steps, batches++)
            {
                using var batchScope = NDArray.Scope();
                var x = train[(int)t..(int)(t + Steps)];
                var y = train[(int)(t + 1)..(int)(t + 1 + Steps)].Reshape(Steps * Streams);
                NDArray p, h2, c2;
                using (Autograd.Record()) (p, h2, c2) = Step(x, y, h, c);
                p.Backward();
                for (int i = 0; i < parameters.Length; i++) opt.Update(i, parameters[i], parameters[i].Grad);
                perplexity.Update(p, y);
                // The states go on to the next batch (copied outside the recording, so its
                // gradient stops here).
                Op.Copy(h2, @out: h);
                Op.Copy(c2, @out: c);
                if (batches % 200 == 0 && batches > 0)
                    Console.WriteLine($"  epoch {epoch} batch {batches}: training perplexity {perplexity.Get():F2}");
            }
            double trainPpl = perplexity.Get();
            Engine.WaitAll();
            double secs = sw.Elapsed.TotalSeconds;
            Console.WriteLine($"epoch {epoch}: training perplexity {trainPpl:F3}, validation perplexity {Evaluate():F3}, " +
                              $"{secs:F1} s ({batches * Steps * Streams / secs:F0} characters/s)");
        }
        double validPpl = Evaluate();
        Console.WriteLine($"validation-perplexity={validPpl:F3} after {total.Elapsed.TotalSeconds:F0} s");
        Console.WriteLine("sampled from the model (temperature 0.8), starting from 'The ':");
        Console.WriteLine(Sample("The ", 400, 0.8));
        return 0;

        string Sample(string prime, int length, double temperature)
        {
            using var predict = Autograd.Predict();
            using var sampleScope = NDArray.Scope();
            var h = ZeroState(1);
            var c = ZeroState(1);
            var sb = new StringBuilder(prime);
            NDArray? probs = null;
            foreach (byte b in Encoding.ASCII.GetBytes(prime))
                (probs, h, c) = Next(index[b], h, c);
            for (int i = 0; i < length; i++)
            {
                int k = Op.SampleMultinomial(probs!, dtype: DType.Int32)[0].ToArray<int>()[0];
                sb.Append((char)alphabet[k]);
                (probs, h, c) = Next(k, h, c);
            }
            return sb.ToString();

            // Probabilities of the next character (softmax of logits / temperature) and the states.
            (NDArray, NDArray, NDArray) Next(int token, NDArray hs, NDArray cs)
            {
                var x = NDArray.FromArray(new float[] { token }, 1, 1);
                var e = Op.Embedding(x, embed, inputDim: V, outputDim: Embed);
                var r = Op.RNN(e, rnn, hs, cs, stateSize: Hidden, numLayers: Layers, mode: RNNMode.Lstm, stateOutputs: true);
                var logits = Op.FullyConnected(r[0].Reshape(1, Hidden), outW, outB, numHidden: V);
                return (Op.Softmax(logits * (1.0 / temperature), axis: -1).Reshape(V), r[1], r[2]);
            }
        }
    }
}
