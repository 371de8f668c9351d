// Device backends: the run-time loaded plugin (loom/backend.h) behind gpu(i)
// contexts, and the host-side helpers every other part uses to reach device
// memory: copies, fills and kernel launches on the calling thread's stream.
//
// Streams. Each device has one compute stream, shared by every thread:
// kernels and fills go there in the order the engine releases them, which
// respects every dependency, so they need no synchronisation between them.
// In the default asynchronous mode an operation counts as done once its
// kernel is enqueued (LOOM_GPU_ASYNC=0, or the naive engine, synchronises
// after every kernel instead, so a failure is reported by the op that caused
// it). Copies run on the calling thread's own stream per device (the GPU's
// copy worker for engine copies): a copy first waits, through an event, for
// the compute work already enqueued on the devices it touches, and is
// synchronised before it returns, since host memory is involved. Waits on
// device arrays (wait_to_read, copy_to_host, wait_all) synchronise the
// compute stream, which is where a failure inside a kernel is reported when
// running asynchronously.
#pragma once

#include <memory>
#include <string>

#include "common/base.h"
#include "loom/backend.h"

namespace loom {

struct TBlob;
struct ErrorInfo;
struct OpDef;
struct OpContext;
class Params;

namespace device {

// The loaded GPU backend plugin.
struct Plugin {
  const loom_backend *table = nullptr;
  std::string path;      // the file it was loaded from
  int32_t count = 0;     // devices it reports
  // Throws `status` with `what` and the plugin's message when rc != 0.
  void check(int32_t rc, const std::string &what, loom_status status = LOOM_ERR_INTERNAL) const;
  std::string describe() const;  // "'cuda' backend from /path (2 devices)"
};

// The GPU plugin, loading it on first call (LOOM_CUDA_LIBRARY, then
// libloom_cuda.so beside libloom, then the system search path). Null when
// none could be loaded; `why_unavailable()` then says what was tried.
const Plugin *gpu();
std::string why_unavailable();

// Loads a plugin from `path` as the GPU backend. Loading the file already
// loaded is a no-op; loading another once one is in use is refused.
void load(const std::string &path);

// gpu(i) is usable: throws BACKEND_UNAVAILABLE (naming what was looked for)
// or INVALID_ARGUMENT (device id out of range).
const Plugin &require(const Context &ctx);

int32_t device_count(int32_t dev_type);
// A static-lifetime description of the backend for dev_type.
const char *describe(int32_t dev_type);

// The calling thread's copy stream for gpu(dev_id).
void *stream(int32_t dev_id);
// The compute stream of gpu(dev_id), shared by all threads.
void *compute_stream(int32_t dev_id);
// Whether kernels run asynchronously (see above).
bool async_mode();

// Waits until the compute work enqueued on ctx's device has finished; throws
// (and reports to the engine) the failure of a kernel that ran meanwhile.
void synchronize(const Context &ctx);
// The same for every device with work enqueued; returns the first failure.
// Loads nothing: without a loaded backend it returns at once.
std::shared_ptr<const ErrorInfo> synchronize_all();

// Copies `bytes` between any two contexts (host memory is CPU context);
// waits for the copy to finish.
void copy(void *dst, const Context &dst_ctx, const void *src, const Context &src_ctx, size_t bytes);
// Sets `bytes` bytes at `dst` on `ctx` to zero; waits for it.
void zero(void *dst, const Context &ctx, size_t bytes);

// Device memory, raw (the caching allocator in storage/ calls these).
// alloc returns nullptr when the device has no room; other failures throw.
void *raw_alloc(const Context &ctx, size_t bytes);
void raw_free(const Context &ctx, void *ptr);
// Free and total bytes the device reports (0, 0 when it cannot say).
void mem_info(const Context &ctx, size_t *free_bytes, size_t *total_bytes);

// Throws when the op has no kernel for ctx (forward, or its gradient).
void require_kernel(const OpDef &op, const Context &ctx, bool backward);
// Runs the plugin's kernel for `op` on ctx's device and waits for it.
// Backward: `in` holds the op's inputs, outputs and output gradients
// (num_fwd_in and num_fwd_out say where each part starts) and `out` the input
// gradients, with `req` per output.
void launch(const OpDef &op, const OpContext &octx, const Params &params, const TBlob *in,
            int32_t nin, const TBlob *out, int32_t nout, bool backward, int32_t num_fwd_in,
            int32_t num_fwd_out, const int32_t *req);

}  // namespace device
}  // namespace loom
