// Imperative invocation: check, infer, allocate and push one operator call.
#pragma once

#include <vector>

#include "ndarray/ndarray.h"
#include "op/registry.h"

namespace loom {

using ArrayList = SmallVec<NDArray, 4>;

// `outputs` has one slot per op output; empty slots (no chunk) are allocated.
// Everything is checked before anything is pushed.
void invoke(const OpDef &op, const ArrayList &inputs, ArrayList &outputs,
            const char *const *keys, const char *const *values, int32_t num_params);

// While one lives on a thread, every op that thread invokes runs on it when its
// inputs are ready, whatever its size (a server thread that must not queue
// behind the engine's workers).
class RunInlineScope {
 public:
  RunInlineScope();
  ~RunInlineScope();
  RunInlineScope(const RunInlineScope &) = delete;
  RunInlineScope &operator=(const RunInlineScope &) = delete;

 private:
  bool prev_;
};

// Counter-based random streams: seed plus a per-call stream number.
void random_seed(uint64_t seed);
void next_random_stream(uint64_t *key, uint64_t *stream);
void random_state(uint64_t *seed, uint64_t *stream);
void set_random_state(uint64_t seed, uint64_t stream);

}  // namespace loom
