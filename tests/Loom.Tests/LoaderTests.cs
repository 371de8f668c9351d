using System.Diagnostics;
using Loom;

namespace Loom.Tests;

public class LoaderTests
{
    [Test]
    public void LoadsBesideTheAssemblyAndChecksTheAbi()
    {
        NativeLoader.Load();
        Assert.That(NativeLoader.LoadedFrom, Does.Contain("libloom"));
        Assert.That(NativeLoader.Candidates()[0], Does.Contain("libloom").Or.Contain(Environment.GetEnvironmentVariable("LOOM_LIBRARY_PATH") ?? "libloom"));
    }

    [Test]
    public void MismatchedAbiVersionIsRefusedNamingBothVersions()
    {
        string dir = Path.Combine(Path.GetTempPath(), $"loom_fake_{Environment.ProcessId}");
        Directory.CreateDirectory(dir);
        string src = Path.Combine(dir, "fake.c"), lib = Path.Combine(dir, "libloom.so");
        File.WriteAllText(src, "int loom_abi_version(void) { return 999; }\n");
        var cc = Process.Start(new ProcessStartInfo("cc", $"-shared -fPIC -o {lib} {src}") { RedirectStandardError = true });
        cc!.WaitForExit();
        if (cc.ExitCode != 0) Assert.Ignore("no C compiler to build a fake library");
        var e = Assert.Throws<LoomException>(() => NativeLoader.Verify(lib))!;
        Assert.That(e.Message, Does.Contain("999").And.Contain("ABI version 1").And.Contain(lib));
        Assert.Throws<LoomException>(() => NativeLoader.Verify(Path.Combine(dir, "missing.so")));
        Directory.Delete(dir, true);
    }
}
