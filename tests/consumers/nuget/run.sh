#!/usr/bin/env bash
# Consumes the Loom package from a local folder feed in a brand-new console
# project outside the repository, with no other package source: restore, build,
# train a tiny network, print its accuracy. Usage: run.sh FEED_DIR VERSION
set -euo pipefail
feed=$(cd "$1" && pwd)
version=$2
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/app"
cat > "$tmp/app/nuget.config" <<XML
<?xml version="1.0" encoding="utf-8"?>
<configuration>
  <packageSources>
    <clear />
    <add key="local" value="$feed" />
  </packageSources>
</configuration>
XML
cat > "$tmp/app/app.csproj" <<XML
<Project Sdk="Microsoft.NET.Sdk">
  <PropertyGroup>
    <OutputType>Exe</OutputType>
    <TargetFramework>net10.0</TargetFramework>
    <ImplicitUsings>enable</ImplicitUsings>
    <Nullable>enable</Nullable>
    <RestorePackagesPath>$tmp/packages</RestorePackagesPath>
  </PropertyGroup>
  <ItemGroup>
    <PackageReference Include="Loom" Version="$version" />
  </ItemGroup>
</Project>
XML
cp "$here/Program.cs" "$tmp/app/"
cd "$tmp/app"
# The package must bring its own native library.
unset LOOM_LIBRARY_PATH
dotnet build -c Release -nologo -v q
dotnet run -c Release --no-build
