using System;
using System.Collections.Generic;
using System.Linq;

namespace Loom;

/// <summary>One batch of a bucketed iterator: the bucket (sequence length) it was padded to,
/// the data (batch, length) and the labels (the data shifted by one step).</summary>
/// <param name="BucketKey">The bucket's sequence length.</param>
/// <param name="Data">Token indices, (batch, BucketKey), float32; padding is the invalid label.</param>
/// <param name="Label">The next token at each step, (batch, BucketKey); the invalid label past each sentence's end.</param>
public sealed record BucketBatch(int BucketKey, NDArray Data, NDArray Label);

/// <summary>Sentences of different lengths in batches of equal length (MXNet's
/// <c>mx.rnn.BucketSentenceIter</c>): each sentence goes to the smallest bucket that holds it and
/// is padded with <see cref="InvalidLabel"/>; the label of step t is token t+1. Sentences longer
/// than the largest bucket are left out (<see cref="Discarded"/> says how many). Each epoch
/// visits every full batch of every bucket, in a seeded random order when shuffling.</summary>
public sealed class BucketSentenceIter
{
    private readonly List<(int Key, float[][] Rows)> _buckets = new();
    private readonly Random? _rng;

    /// <summary>Buckets the sentences.</summary>
    /// <param name="sentences">Token indices of each sentence.</param>
    /// <param name="batchSize">Sentences per batch.</param>
    /// <param name="buckets">The bucket lengths; null: every length that has at least a batch of
    /// sentences (MXNet's default).</param>
    /// <param name="invalidLabel">The padding and the label past a sentence's end (MXNet's -1).</param>
    /// <param name="shuffle">Shuffle sentences and batches each epoch (seeded by <paramref name="seed"/>).</param>
    /// <param name="seed">The shuffling seed.</param>
    /// <exception cref="LoomException">No bucket, a bucket not above 0, or no full batch in any bucket.</exception>
    public BucketSentenceIter(IEnumerable<int[]> sentences, int batchSize, int[]? buckets = null, int invalidLabel = -1,
        bool shuffle = false, int seed = 0)
    {
        ArgumentNullException.ThrowIfNull(sentences);
        if (batchSize <= 0) throw new LoomException(LoomStatus.InvalidArgument, $"BucketSentenceIter: batch size must be > 0, got {batchSize}");
        var all = sentences.ToArray();
        buckets ??= all.GroupBy(s => s.Length).Where(g => g.Key > 0 && g.Count() >= batchSize).Select(g => g.Key).ToArray();
        if (buckets.Length == 0)
            throw new LoomException(LoomStatus.InvalidArgument,
                $"BucketSentenceIter: no bucket: no sentence length has {batchSize} sentences (give the buckets)");
        if (buckets.Any(b => b <= 0))
            throw new LoomException(LoomStatus.InvalidArgument, $"BucketSentenceIter: bucket lengths must be > 0, got [{string.Join(", ", buckets)}]");
        BatchSize = batchSize;
        InvalidLabel = invalidLabel;
        Buckets = buckets.Distinct().OrderBy(b => b).ToArray();
        var rows = Buckets.ToDictionary(b => b, _ => new List<float[]>());
        foreach (var s in all)
        {
            int key = Array.FindIndex(Buckets, b => b >= s.Length);
            if (key < 0 || s.Length == 0)
            {
                Discarded++;
                continue;
            }
            var row = new float[Buckets[key]];
            Array.Fill(row, invalidLabel);
            for (int t = 0; t < s.Length; t++) row[t] = s[t];
            rows[Buckets[key]].Add(row);
        }
        foreach (var b in Buckets) _buckets.Add((b, rows[b].ToArray()));
        if (_buckets.All(b => b.Rows.Length < batchSize))
            throw new LoomException(LoomStatus.InvalidArgument,
                $"BucketSentenceIter: no bucket of [{string.Join(", ", Buckets)}] has {batchSize} sentences for a batch");
        if (shuffle) _rng = new Random(seed);
    }

    /// <summary>Sentences per batch.</summary>
    public int BatchSize { get; }
    /// <summary>The bucket lengths, ascending.</summary>
    public int[] Buckets { get; }
    /// <summary>The padding value and the label past a sentence's end.</summary>
    public int InvalidLabel { get; }
    /// <summary>Sentences left out: empty, or longer than the largest bucket.</summary>
    public int Discarded { get; }
    /// <summary>The largest bucket (MXNet's default_bucket_key), which binds first.</summary>
    public int DefaultBucketKey => Buckets[^1];
    /// <summary>Full batches per epoch.</summary>
    public int BatchCount => _buckets.Sum(b => b.Rows.Length / BatchSize);

    /// <summary>One pass over the data: every full batch of every bucket. The caller owns the arrays.</summary>
    /// <returns>The batches.</returns>
    public IEnumerable<BucketBatch> Epoch()
    {
        var plan = new List<(int Bucket, int Start)>();
        for (int k = 0; k < _buckets.Count; k++)
        {
            var rows = _buckets[k].Rows;
            if (_rng is not null)
                for (int i = rows.Length - 1; i > 0; i--)
                {
                    int j = _rng.Next(i + 1);
                    (rows[i], rows[j]) = (rows[j], rows[i]);
                }
            for (int s = 0; s + BatchSize <= rows.Length; s += BatchSize) plan.Add((k, s));
        }
        if (_rng is not null)
            for (int i = plan.Count - 1; i > 0; i--)
            {
                int j = _rng.Next(i + 1);
                (plan[i], plan[j]) = (plan[j], plan[i]);
            }
        foreach (var (k, s) in plan)
        {
            var (key, rows) = _buckets[k];
            var data = new float[BatchSize * key];
            var label = new float[BatchSize * key];
            for (int i = 0; i < BatchSize; i++)
            {
                var r = rows[s + i];
                Array.Copy(r, 0, data, i * key, key);
                Array.Copy(r, 1, label, i * key, key - 1);
                label[i * key + key - 1] = InvalidLabel;
            }
            yield return new BucketBatch(key, NDArray.FromArray(data, BatchSize, key), NDArray.FromArray(label, BatchSize, key));
        }
    }
}
