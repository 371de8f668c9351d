using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using NUnit.Framework;

namespace Loom.Tests;

// HDF5 files as Mocha's data layer reads them, from tests/hdf5/mocha.h5 (written by h5py:
// tests/hdf5/make.py; data[r, i, j] = (100 r + 4 i + j) / 8, label[r] = r % 3).
public class Hdf5Tests
{
    private static string File5()
    {
        var dir = new DirectoryInfo(TestContext.CurrentContext.TestDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "tests", "hdf5", "mocha.h5"))) dir = dir.Parent;
        Assert.That(dir, Is.Not.Null, "tests/hdf5/mocha.h5 not found above the test folder");
        return Path.Combine(dir!.FullName, "tests", "hdf5", "mocha.h5");
    }

    [Test]
    public void ReadsDatasetsAndRows()
    {
        string f = File5();
        using var all = Hdf5.Read(f, "data");
        Assert.That(all.Shape, Is.EqualTo(new long[] { 10, 3, 4 }));
        Assert.That(all.DType, Is.EqualTo(DType.Float32));
        using var rows = Hdf5.Read(f, "data", 8);
        Assert.That(rows.ToArray<float>(), Is.EqualTo(Enumerable.Range(0, 24).Select(k => (float)((100 * (8 + k / 12) + k % 12) / 8.0))));
        using var label = Hdf5.Read(f, "label");
        Assert.That(label.DType, Is.EqualTo(DType.Int64));
        var e = Assert.Throws<LoomException>(() => Hdf5.Read(f, "images"))!;
        Assert.That(e.Status, Is.EqualTo(LoomStatus.NotFound));
        Assert.That(e.Message, Does.Contain("mocha.h5").And.Contain("no dataset 'images'").And.Contain("data, extra, label"));
    }

    [Test]
    public void IteratesLikeMochasDataLayer()
    {
        string f = File5();
        string dir = Path.Combine(Path.GetTempPath(), "loom-h5-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            // Mocha's source: a list of files, relative to the list; the same file twice is 20 samples.
            File.Copy(f, Path.Combine(dir, "a.h5"));
            File.WriteAllText(Path.Combine(dir, "list.txt"), "a.h5\n\n" + f + "\n");
            using var it = Hdf5Iter.FromList(Path.Combine(dir, "list.txt"), batchSize: 6, last: LastBatch.Pad);
            var firsts = new List<float>();
            var labels = new List<long>();
            var pads = new List<long>();
            foreach (var batch in it.Batches())
            {
                using var scope = NDArray.Scope();
                var d = batch.Data.ToArray<float>();
                for (int r = 0; r < batch.Data.Shape[0]; r++) firsts.Add(d[r * 12]);
                labels.AddRange(batch.Label!.ToArray<long>());
                pads.Add(batch.Pad);
            }
            var rows = Enumerable.Range(0, 24).Select(k => k % 20 % 10).ToList();  // padded with the first rows
            Assert.That(firsts, Is.EqualTo(rows.Select(r => (float)(100 * r / 8.0))));
            Assert.That(labels, Is.EqualTo(rows.Select(r => (long)(r % 3))));
            Assert.That(pads, Is.EqualTo(new long[] { 0, 0, 0, 4 }));
            // Without labels, and shuffled: the same samples in another order.
            using var shuffled = Hdf5Iter.Create(new[] { f }, 5, label: null, shuffle: true, last: LastBatch.Discard);
            var seen = new List<float>();
            foreach (var batch in shuffled.Batches())
            {
                using var scope = NDArray.Scope();
                Assert.That(batch.Label, Is.Null);
                var d = batch.Data.ToArray<float>();
                for (int r = 0; r < 5; r++) seen.Add(d[r * 12]);
            }
            Assert.That(seen.OrderBy(v => v), Is.EqualTo(Enumerable.Range(0, 10).Select(r => (float)(100 * r / 8.0))));
            // Bad input names what is wrong.
            var e = Assert.Throws<LoomException>(() => Hdf5Iter.Create(new[] { f }, 4, label: "extra/u8"))!;
            Assert.That(e.Message, Does.Contain("10 rows of 'data' but 6 of 'extra/u8'"));
            e = Assert.Throws<LoomException>(() => Hdf5Iter.FromList(Path.Combine(dir, "missing.txt"), 4))!;
            Assert.That(e.Message, Does.Contain("missing.txt"));
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
