using System.Runtime.InteropServices;

namespace Loom.Interop;

// Calls on raw handles this assembly holds and no other thread can see yet (a
// fresh output before its NDArray exists): no SafeHandle reference counting
// around the call.
public static unsafe partial class LoomNative
{
    [LibraryImport(Library)]
    internal static partial LoomStatus loom_ndarray_get_size(out long @out, nint array);
}
