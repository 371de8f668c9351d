using System.Collections.Generic;
using System.Text.Json.Serialization;

namespace Loom;

// The JSON shapes the library reads from the native side, serialized by generated
// code rather than reflection, so trimmed and NativeAOT apps work.
[JsonSerializable(typeof(string[]))]
[JsonSerializable(typeof(Dictionary<string, string>))]
internal sealed partial class LoomJson : JsonSerializerContext
{
}
