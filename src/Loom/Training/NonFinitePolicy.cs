namespace Loom;

/// <summary>What <see cref="Module.Fit"/> does with a batch whose data, outputs,
/// gradients or parameters hold NaN or infinity (<see cref="Module.NonFinite"/>).</summary>
public enum NonFinitePolicy
{
    /// <summary>Log a warning naming the epoch, batch and array (the first five per epoch, then a count) and apply the update anyway.</summary>
    Warn,
    /// <summary>Log the warning and skip that batch's update, so the parameters stay finite.</summary>
    Skip,
    /// <summary>Throw a <see cref="LoomException"/> naming the epoch, batch and array, before the batch's update.</summary>
    Stop,
    /// <summary>Do not check (no flag is read per batch).</summary>
    Ignore,
}
