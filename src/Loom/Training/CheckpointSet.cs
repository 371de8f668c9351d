using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Security.Cryptography;

namespace Loom;

/// <summary>A .params file and its .states file committed as one: both are written
/// under <c>.next</c> names, then <c>prefix-NNNN.checkpoint</c> (the digests of the
/// pair) is renamed into place, which is the commit, then the pair is renamed over the
/// old one. A save killed before the commit leaves the old pair; one killed after it is
/// finished by the next load or save. A file that matches neither is an error.</summary>
internal static class CheckpointSet
{
    private const string Magic = "loom-checkpoint 1";

    private static string ManifestOf(string paramsPath) =>
        (paramsPath.EndsWith(".params", StringComparison.Ordinal) ? paramsPath[..^".params".Length] : paramsPath) + ".checkpoint";

    private static string Digest(string path)
    {
        using var f = File.OpenRead(path);
        return Convert.ToHexString(SHA256.HashData(f)).ToLowerInvariant();
    }

    /// <summary>Writes the pair and commits it.</summary>
    public static void Save(string paramsPath, string statesPath, IReadOnlyDictionary<string, NDArray> args,
        IReadOnlyDictionary<string, NDArray> states)
    {
        Complete(paramsPath);  // a commit left half-done must not lose its pair to the .next files below
        NDArray.Save(paramsPath + ".next", args);
        NDArray.Save(statesPath + ".next", states);
        string manifest = ManifestOf(paramsPath), tmp = manifest + ".tmp";
        using (var f = new FileStream(tmp, FileMode.Create, FileAccess.Write))
        using (var w = new StreamWriter(f))
        {
            w.Write($"{Magic}\n{Digest(paramsPath + ".next")} {Path.GetFileName(paramsPath)}\n" +
                    $"{Digest(statesPath + ".next")} {Path.GetFileName(statesPath)}\n");
            w.Flush();
            f.Flush(flushToDisk: true);
        }
        File.Move(tmp, manifest, overwrite: true);  // the commit
        File.Move(paramsPath + ".next", paramsPath, overwrite: true);
        File.Move(statesPath + ".next", statesPath, overwrite: true);
    }

    /// <summary>Finishes a commit that a killed save left half-done, and checks that the
    /// pair is the one committed. Does nothing where no manifest exists (a lone .params,
    /// MXNet's files, or files written before manifests).</summary>
    /// <exception cref="LoomException">A file of the set matches neither the manifest nor its .next copy.</exception>
    public static void Complete(string paramsPath)
    {
        string manifest = ManifestOf(paramsPath);
        if (!File.Exists(manifest)) return;
        string[] lines = File.ReadAllLines(manifest);
        if (lines.Length != 3 || lines[0] != Magic)
            throw new LoomException(LoomStatus.Io, $"checkpoint manifest '{manifest}' is damaged (expected '{Magic}' and two digests)");
        string dir = Path.GetDirectoryName(Path.GetFullPath(paramsPath))!;
        foreach (string line in lines.Skip(1))
        {
            int space = line.IndexOf(' ');
            if (space != 64)
                throw new LoomException(LoomStatus.Io, $"checkpoint manifest '{manifest}' is damaged: line '{line}'");
            string digest = line[..space], file = Path.Combine(dir, line[(space + 1)..]);
            if (File.Exists(file) && Digest(file) == digest) continue;
            if (File.Exists(file + ".next") && Digest(file + ".next") == digest)
            {
                File.Move(file + ".next", file, overwrite: true);
                continue;
            }
            throw new LoomException(LoomStatus.Io,
                $"checkpoint '{file}' is not the file committed in '{manifest}' (it was changed or replaced after the save), " +
                "so the parameters and optimizer states would not be from the same step");
        }
    }

    /// <summary>Drops the manifest (and stale .next files) before a .params is written alone.</summary>
    public static void Forget(string paramsPath)
    {
        string manifest = ManifestOf(paramsPath);
        if (!File.Exists(manifest)) return;
        File.Delete(manifest);
        File.Delete(paramsPath + ".next");
    }
}
