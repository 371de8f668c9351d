// Device memory: one pooled allocator per context, with usage statistics.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>

#include "common/base.h"

namespace loom {

// A block of device memory. Returned to its pool when the last reference dies.
struct Block {
  void *ptr = nullptr;
  size_t bytes = 0;     // usable bytes (the size class)
  Context ctx;
  // Memory owned by someone else (an imported DLPack tensor): called instead
  // of returning ptr to the pool.
  std::function<void()> external_release;
  ~Block();
};
using BlockPtr = std::shared_ptr<Block>;

class Storage {
 public:
  // Allocates at least `bytes` (aligned to 64) on `ctx`. Throws LOOM_ERR_OUT_OF_MEMORY
  // naming the bytes asked for and the bytes in use.
  static BlockPtr alloc(size_t bytes, const Context &ctx);
  // Fills an embedded block (no separate allocation for the block itself).
  static void alloc_into(Block &b, size_t bytes, const Context &ctx);
  static loom_storage_stats stats(const Context &ctx);
  static void release_pooled(const Context &ctx);
};

}  // namespace loom
