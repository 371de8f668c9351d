using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Text.RegularExpressions;

namespace Loom;

/// <summary>Xavier/Glorot: scale sqrt(magnitude / fan) with fan by <paramref name="factorType"/>.</summary>
/// <param name="rndType">Uniform or Gaussian draws.</param>
/// <param name="factorType">The fan the scale divides by: fan-in, fan-out or their average.</param>
/// <param name="magnitude">The numerator of the variance.</param>
public class XavierInit(RndType rndType = RndType.Uniform, FactorType factorType = FactorType.Avg, double magnitude = 3) : Initializer
{
    /// <inheritdoc/>
    protected internal override void InitWeight(string name, NDArray a) =>
        Op.InitXavier(rndType: rndType, factorType: factorType, magnitude: magnitude, shape: a.Shape, dtype: a.DType,
            ctx: a.Context, @out: a);
}

/// <summary>MSRA/He: Gaussian with variance 2 / fan_in (for ReLU networks).</summary>
public sealed class MsraInit() : XavierInit(RndType.Gaussian, FactorType.In, 2);
