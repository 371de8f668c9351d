// Large scratch that lives for one kernel call, kept for the next call.
#pragma once

#include <cstddef>
#include <memory>

namespace loom {

// A 64-byte aligned buffer of at least `bytes` bytes, uninitialised, returned to a
// small process-wide cache when the last reference goes. An allocation of tens
// of MB is mapped afresh by the kernel each time it is made, and its page faults
// can cost more than the kernel that fills it (ResNet-50's weight-gradient pieces:
// about 450 MB a training step). At most two buffers stay cached; a call takes
// the smallest that fits. `what` names the buffer in the out-of-memory error.
std::shared_ptr<void> reusable_scratch(size_t bytes, const char *what);

}  // namespace loom
