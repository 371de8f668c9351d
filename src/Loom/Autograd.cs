using System;
using Loom.Interop;

namespace Loom;

/// <summary>How backward stores a variable's gradient.</summary>
public enum GradReq
{
    /// <summary>No gradient.</summary>
    Null = 0,
    /// <summary>Overwrite the gradient buffer.</summary>
    Write = 1,
    /// <summary>Add to the gradient buffer.</summary>
    Add = 2,
}

/// <summary>Imperative automatic differentiation: record operations, then call
/// <see cref="NDArray.Backward"/> on a result.</summary>
public static class Autograd
{
    /// <summary>Records operations on this thread until disposed; <paramref name="train"/>
    /// also switches training mode (Dropout, BatchNorm).</summary>
    /// <param name="train">Training mode for the recorded ops (dropout drops, BatchNorm uses the batch's statistics).</param>
    /// <returns>A scope: recording stops when it is disposed.</returns>
    public static IDisposable Record(bool train = true) => new Mode(recording: 1, training: train ? 1 : 0);

    /// <summary>Stops recording on this thread until disposed.</summary>
    /// <param name="train">Training mode for the recorded ops (dropout drops, BatchNorm uses the batch's statistics).</param>
    /// <returns>A scope: recording resumes when it is disposed.</returns>
    public static IDisposable Pause(bool train = false) => new Mode(recording: 0, training: train ? 1 : 0);

    /// <summary>Prediction mode (not training) until disposed; recording is left as it is.</summary>
    /// <returns>A scope: the previous mode returns when it is disposed.</returns>
    public static IDisposable Predict() => new Mode(recording: -1, training: 0);

    /// <summary>Training mode until disposed; recording is left as it is.</summary>
    /// <returns>A scope: the previous mode returns when it is disposed.</returns>
    public static IDisposable Train() => new Mode(recording: -1, training: 1);

    /// <summary>Computes the gradients of several heads at once.</summary>
    /// <param name="heads">The outputs to differentiate.</param>
    /// <param name="headGrads">The gradients of the heads, one per head (null: ones).</param>
    public static unsafe void Backward(NDArray[] heads, NDArray?[]? headGrads = null)
    {
        int n = heads.Length;
        nint* hs = stackalloc nint[Math.Max(n, 1)];
        nint* gs = stackalloc nint[Math.Max(n, 1)];
        int added = 0, addedGrads = 0;
        try
        {
            for (; added < n; added++) hs[added] = heads[added].AddRef("backward", "head", added);
            for (; addedGrads < n; addedGrads++)
                gs[addedGrads] = headGrads?[addedGrads]?.AddRef("backward", "head gradient", addedGrads) ?? 0;
            LoomException.Check(LoomNative.loom_autograd_backward(hs, gs, n));
        }
        finally
        {
            for (int i = 0; i < added; i++) heads[i].Release();
            for (int i = 0; i < addedGrads; i++) headGrads?[i]?.Release();
        }
    }

    private sealed class Mode : IDisposable
    {
        private readonly int _prevRecording = -1, _prevTraining;
        private bool _done;

        public Mode(int recording, int training)
        {
            if (recording >= 0)
            {
                LoomException.Check(LoomNative.loom_autograd_set_recording(out int prev, recording));
                _prevRecording = prev;
            }
            LoomException.Check(LoomNative.loom_autograd_set_training(out _prevTraining, training));
        }

        public void Dispose()
        {
            if (_done) return;
            _done = true;
            if (_prevRecording >= 0) LoomNative.loom_autograd_set_recording(out _, _prevRecording);
            LoomNative.loom_autograd_set_training(out _, _prevTraining);
        }
    }
}

public sealed unsafe partial class NDArray
{
    /// <summary>Allocates a zero gradient buffer and marks this array as a variable whose
    /// gradient <see cref="Backward"/> computes. Returns this array.</summary>
    /// <param name="req">How the gradient is stored: written each backward pass, or added to.</param>
    /// <returns>This array.</returns>
    public NDArray AttachGrad(GradReq req = GradReq.Write)
    {
        using var grad = Zeros(Shape, DType, Context);
        nint self = AddRef("AttachGrad");
        nint g = grad.AddRef("AttachGrad gradient");
        try
        {
            int r = (int)req;
            LoomException.Check(LoomNative.loom_autograd_mark_variables(&self, &g, &r, 1));
        }
        finally
        {
            Release();
            grad.Release();
        }
        DisposeScope.Forget(grad);
        return this;
    }

    /// <summary>The gradient buffer of a variable (see <see cref="AttachGrad"/>), as a new
    /// array sharing its memory.</summary>
    public NDArray Grad
    {
        get
        {
            LoomException.Check(LoomNative.loom_ndarray_get_grad(out NDArrayHandle h, Handle));
            return new NDArray(h);
        }
    }

    /// <summary>Computes the gradient of this array (recorded under <see cref="Autograd.Record"/>)
    /// with respect to every variable it depends on; <paramref name="headGrad"/> defaults to ones.</summary>
    /// <param name="headGrad">The gradient of the output (ones when null).</param>
    public void Backward(NDArray? headGrad = null) => Autograd.Backward(new[] { this }, new[] { headGrad });
}
