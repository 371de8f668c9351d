using System;
using System.Runtime.InteropServices;
using Loom.Interop;

namespace Loom;

/// <summary>A failure reported by the native engine: its status category and
/// message (which names the op, the argument and the shapes involved).</summary>
public sealed class LoomException : Exception
{
    /// <summary>The status category.</summary>
    public LoomStatus Status { get; }

    /// <summary>Creates an exception with a status and message.</summary>
    /// <param name="status">The status code.</param>
    /// <param name="message">The message.</param>
    public LoomException(LoomStatus status, string message) : base(message) { Status = status; }

    /// <summary>Throws for a non-OK status, with the calling thread's last error.</summary>
    internal static void Check(LoomStatus status)
    {
        if (status != LoomStatus.Ok) Throw(status);
    }

    private static void Throw(LoomStatus status)
    {
        string msg = Marshal.PtrToStringUTF8(LoomNative.loom_last_error()) ?? "";
        throw new LoomException(status, msg);
    }
}
