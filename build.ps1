# Loom's build entry point for PowerShell; mirrors build.sh.
#   ./build.ps1 [build|test|run|bench|generate|clean]
param([string]$Command = "build", [Parameter(ValueFromRemainingArguments = $true)][string[]]$Rest)
$ErrorActionPreference = "Stop"
Set-Location $PSScriptRoot
$Build = if ($env:LOOM_BUILD_DIR) { $env:LOOM_BUILD_DIR } else { Join-Path $PSScriptRoot "build" }
$Config = "Release"
$Python = if ($IsWindows) { "python" } else { "/usr/bin/python3" }

function Build-Native {
    cmake -S $PSScriptRoot -B $Build -G Ninja -DCMAKE_BUILD_TYPE=$Config | Out-Null
    if ($LASTEXITCODE) { throw "cmake configure failed" }
    cmake --build $Build --parallel
    if ($LASTEXITCODE) { throw "native build failed" }
}
function Build-DotNet {
    dotnet build Interop.sln -c $Config -nologo -v quiet -clp:ErrorsOnly
    if ($LASTEXITCODE) { throw "C# build failed" }
}
function Build-All { Build-Native; Build-DotNet }
function Invoke-Generate([string]$Out = "bindings/csharp") {
    & $Python bindings/generator/generate.py all --header native/include/loom/loom.h --lib (Join-Path $Build "lib/libloom.so") --out $Out
}

switch ($Command) {
    "build" { Build-All }
    "test" {
        $passed = 0; $failed = 0
        try { Build-All } catch { Write-Output "0 passed, 1 failed"; exit 1 }
        $tmp = Join-Path ([IO.Path]::GetTempPath()) ([Guid]::NewGuid())
        Invoke-Generate $tmp | Out-Null
        $diff = git diff --no-index --quiet bindings/csharp $tmp; if ($LASTEXITCODE) { $failed++ } else { $passed++ }
        Push-Location $Build
        $ctest = ctest --output-on-failure 2>&1 | Out-String
        Pop-Location
        Write-Host $ctest
        if ($ctest -match '(\d+) tests failed out of (\d+)') { $failed += [int]$Matches[1]; $passed += [int]$Matches[2] - [int]$Matches[1] } else { $failed++ }
        $nunit = dotnet test tests/Loom.Tests/Loom.Tests.csproj -c $Config --no-build -nologo 2>&1 | Out-String
        Write-Host $nunit
        if ($nunit -match 'Failed:\s+(\d+),\s+Passed:\s+(\d+)') { $failed += [int]$Matches[1]; $passed += [int]$Matches[2] } else { $failed++ }
        Write-Output "$passed passed, $failed failed"
        if ($failed) { exit 1 }
    }
    "run" { Build-All; dotnet run -c $Config --no-build --project src/Loom.Examples -- @Rest }
    "bench" {
        Build-All
        & (Join-Path $Build "tests/bench/loom_engine_bench")
        & (Join-Path $Build "tests/bench/loom_dot_bench")
        dotnet run -c $Config --no-build --project tests/bench/Loom.Bench
    }
    "generate" { Build-Native; Invoke-Generate }
    "clean" { Remove-Item -Recurse -Force -ErrorAction SilentlyContinue $Build }
    default { Write-Output "usage: ./build.ps1 [build|test|run|bench|generate|clean]"; exit 2 }
}
