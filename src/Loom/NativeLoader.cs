using System;
using System.Collections.Generic;
using System.IO;
using System.Reflection;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Loom.Interop;

namespace Loom;

/// <summary>
/// Finds libloom and checks its ABI version. Search order: the file or folder in
/// <c>LOOM_LIBRARY_PATH</c>; beside the Loom assembly; the NuGet
/// <c>runtimes/&lt;rid&gt;/native</c> folder; the system loader's own search.
/// </summary>
public static partial class NativeLoader
{
    private static readonly object s_lock = new();
    private static nint s_handle;
    private static List<string> s_tried = new();

    // A library must install its resolver before the first P/Invoke; a module
    // initializer is the one place that runs early enough.
#pragma warning disable CA2255
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Register()
    {
        NativeLibrary.SetDllImportResolver(typeof(NativeLoader).Assembly, Resolve);
    }

    private static nint Resolve(string name, Assembly assembly, DllImportSearchPath? path)
    {
        if (name != LoomNative.Library) return 0;
        return Load();
    }

    /// <summary>The file names libloom has on this platform.</summary>
    private static IEnumerable<string> FileNames()
    {
        if (OperatingSystem.IsWindows()) yield return "loom.dll";
        else if (OperatingSystem.IsMacOS()) yield return "libloom.dylib";
        else { yield return "libloom.so"; yield return "libloom.so.0"; }
    }

    /// <summary>Candidate paths, in search order.</summary>
    /// <returns>The paths to try, in order.</returns>
    public static IReadOnlyList<string> Candidates()
    {
        var list = new List<string>();
        string? env = Environment.GetEnvironmentVariable("LOOM_LIBRARY_PATH");
        if (!string.IsNullOrEmpty(env))
        {
            if (File.Exists(env) || !Directory.Exists(env) && Path.HasExtension(env)) list.Add(env);
            else foreach (var f in FileNames()) list.Add(Path.Combine(env, f));
        }
        // The app's folder (where a published app, single-file and NativeAOT ones too, keeps
        // libloom), then the Loom assembly's own folder when it lives elsewhere.
        string dir = AppContext.BaseDirectory;
        string? assemblyDir = AssemblyFolder();
        if (assemblyDir is not null && Path.GetFullPath(assemblyDir) != Path.GetFullPath(dir))
            foreach (var f in FileNames()) list.Add(Path.Combine(assemblyDir, f));
        foreach (var f in FileNames()) list.Add(Path.Combine(dir, f));
        string rid = RuntimeInformation.RuntimeIdentifier;
        foreach (var r in new[] { rid, OperatingSystem.IsLinux() ? "linux-x64" : rid })
            foreach (var f in FileNames())
                list.Add(Path.Combine(dir, "runtimes", r, "native", f));
        return list;
    }

    [System.Diagnostics.CodeAnalysis.UnconditionalSuppressMessage("SingleFile", "IL3000",
        Justification = "Empty in single-file and NativeAOT apps, which find libloom in AppContext.BaseDirectory")]
    private static string? AssemblyFolder() =>
        typeof(NativeLoader).Assembly.Location is { Length: > 0 } loc ? Path.GetDirectoryName(loc) : null;

    [LibraryImport("libc", EntryPoint = "getenv", StringMarshalling = StringMarshalling.Utf8)]
    private static partial nint GetEnv(string name);

    [LibraryImport("libc", EntryPoint = "setenv", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int SetEnv(string name, string value, int overwrite);

    // OpenBLAS (0.3.21, Debian 12) picks its kernels when libloom loads it, from the
    // CPU's model; on a CPU it does not recognise (virtual machines often report a
    // generic model) it falls back to its slowest kernels, two to three times slower
    // here. Unless the user chose, name the kernels by the CPU's instruction sets
    // (the environment of the process, before the library loads).
    internal static string? ChooseBlasKernels()
    {
        if (!OperatingSystem.IsLinux() || !System.Runtime.Intrinsics.X86.Avx2.IsSupported) return null;
        try
        {
            if (GetEnv("OPENBLAS_CORETYPE") != 0) return null;
            string core = System.Runtime.Intrinsics.X86.Avx512F.IsSupported ? "SkylakeX" : "Haswell";
            return SetEnv("OPENBLAS_CORETYPE", core, 0) == 0 ? core : null;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return null;
        }
    }

    /// <summary>Loads libloom once and verifies its ABI version; throws
    /// <see cref="LoomException"/> naming every path tried, or both versions.</summary>
    /// <returns>The native library's handle.</returns>
    public static nint Load()
    {
        lock (s_lock)
        {
            if (s_handle != 0) return s_handle;
            ChooseBlasKernels();
            var tried = new List<string>();
            nint h = 0;
            string? loadedFrom = null;
            string? dependencyHint = null;
            foreach (var c in Candidates())
            {
                if (!File.Exists(c)) { tried.Add(c + " (no such file)"); continue; }
                try
                {
                    h = NativeLibrary.Load(c);
                    loadedFrom = c;
                    tried.Add(c);
                    break;
                }
                catch (Exception e) when (e is DllNotFoundException or BadImageFormatException)
                {
                    // The file is there but the loader refused it: most often a library it
                    // needs is missing, which the loader's message names.
                    tried.Add($"{c} (found, but it did not load: {e.Message})");
                    dependencyHint ??= MissingDependencyHint(e.Message);
                }
            }
            if (h == 0)
            {
                foreach (var f in FileNames())
                {
                    tried.Add(f + " (system search path)");
                    if (NativeLibrary.TryLoad(f, out h)) { loadedFrom = f; break; }
                }
            }
            s_tried = tried;
            if (h == 0)
                throw new LoomException(LoomStatus.BackendUnavailable,
                    (dependencyHint ?? "the native library libloom was not found.") + " Looked for:\n  " +
                    string.Join("\n  ", tried) +
                    "\nBuild it with ./build.sh, or set LOOM_LIBRARY_PATH to the file or its folder.");
            CheckAbi(h, loadedFrom!);
            s_handle = h;
            LoadedFrom = loadedFrom;
            return h;
        }
    }

    // libloom's own dependencies come from the system (the NuGet package carries
    // libloom alone): name the missing one and the Debian package that provides it.
    internal static string? MissingDependencyHint(string loaderMessage)
    {
        var known = new (string Lib, string Package)[]
        {
            ("libopenblas.so", "libopenblas0 (OpenBLAS, libloom's BLAS)"),
            ("libgfortran.so", "libgfortran5 (needed by OpenBLAS)"),
            ("libgomp.so", "libgomp1 (OpenMP)"),
            ("libdnnl.so", "libdnnl2 (oneDNN, libloom's convolution kernels)"),
            ("libonnx.so", "libonnx1 (ONNX, for Onnx.Export and Onnx.Import)"),
            ("libonnx_proto.so", "libonnx1 (ONNX, for Onnx.Export and Onnx.Import)"),
            ("libprotobuf.so", "libprotobuf32 (protobuf, needed by ONNX)"),
            ("libstdc++.so", "libstdc++6"),
        };
        foreach (var (lib, package) in known)
            if (loaderMessage.Contains(lib, StringComparison.Ordinal))
                return $"libloom was found but could not be loaded: the system library {lib}* it needs is missing; " +
                       $"install the Debian/Ubuntu package {package}, e.g. sudo apt-get install -y {package.Split(' ')[0]}.";
        return null;
    }

    /// <summary>Loads the library at <paramref name="path"/> and checks that it is libloom with
    /// this assembly's ABI version; throws <see cref="LoomException"/> otherwise. The
    /// library is not used for calls.</summary>
    /// <param name="path">The file's path.</param>
    public static void Verify(string path)
    {
        if (!File.Exists(path) || !NativeLibrary.TryLoad(path, out nint h))
            throw new LoomException(LoomStatus.BackendUnavailable, $"cannot load the native library '{path}'");
        CheckAbi(h, path);
    }

    private static unsafe void CheckAbi(nint h, string path)
    {
        if (!NativeLibrary.TryGetExport(h, "loom_abi_version", out nint fn))
            throw new LoomException(LoomStatus.BackendUnavailable,
                $"'{path}' is not libloom: it has no loom_abi_version symbol");
        int version = ((delegate* unmanaged<int>)fn)();
        if (version != LoomConstants.LOOM_ABI_VERSION)
            throw new LoomException(LoomStatus.BackendUnavailable,
                $"'{path}' has ABI version {version}, but this Loom assembly needs ABI version " +
                $"{LoomConstants.LOOM_ABI_VERSION}; use the libloom that came with this package");
    }

    /// <summary>Where libloom was loaded from, once loaded.</summary>
    public static string? LoadedFrom { get; private set; }
}
