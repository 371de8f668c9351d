using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text.RegularExpressions;

namespace Loom;

/// <summary>Chooses an initializer by the first regular expression matching the name.</summary>
/// <param name="rules">(regular expression, initializer) pairs, tried in order against each parameter name.</param>
public sealed class MixedInit(params (string Pattern, Initializer Init)[] rules) : Initializer
{
    /// <inheritdoc/>
    protected internal override void InitWeight(string name, NDArray a)
    {
        foreach (var (pattern, init) in rules)
            if (Regex.IsMatch(name, pattern))
            {
                init.InitWeight(name, a);
                return;
            }
        throw new LoomException(LoomStatus.InvalidArgument,
            $"MixedInit: no pattern matches parameter '{name}' (patterns: {string.Join(", ", rules.Select(r => r.Pattern))})");
    }
}
