#include "storage/storage.h"

#include <cstdlib>
#include <map>
#include <mutex>
#include <vector>

namespace loom {
namespace {

constexpr size_t kAlign = 64;

// Rounds up to a size class: powers of two up to 4 KiB, then multiples of
// 1/8 of the next power of two, so reuse wastes at most 12.5%.
size_t size_class(size_t bytes) {
  if (bytes <= kAlign) return kAlign;
  if (bytes <= 4096) {
    size_t c = kAlign;
    while (c < bytes) c <<= 1;
    return c;
  }
  size_t p = 4096;
  while (p < bytes) p <<= 1;
  size_t step = p / 8;
  return (bytes + step - 1) / step * step;
}

bool pooling_enabled() {
  static const bool on = [] {
    const char *v = std::getenv("LOOM_POOL");
    return !(v && std::string(v) == "0");
  }();
  return on;
}

class Pool {
 public:
  void *take(size_t cls) {
    std::lock_guard<std::mutex> lk(mu_);
    ++stats_.alloc_calls;
    auto it = free_.find(cls);
    void *p = nullptr;
    if (it != free_.end() && !it->second.empty()) {
      p = it->second.back();
      it->second.pop_back();
      stats_.bytes_pooled -= static_cast<int64_t>(cls);
      ++stats_.pool_hits;
    } else {
      p = std::aligned_alloc(kAlign, cls);
      if (!p) {
        release_locked();
        p = std::aligned_alloc(kAlign, cls);
      }
      if (!p)
        fail(LOOM_ERR_OUT_OF_MEMORY, "out of memory: asked for ", cls, " bytes on the CPU; ",
             stats_.bytes_in_use, " bytes are in use");
    }
    stats_.bytes_in_use += static_cast<int64_t>(cls);
    if (stats_.bytes_in_use > stats_.peak_bytes_in_use)
      stats_.peak_bytes_in_use = stats_.bytes_in_use;
    return p;
  }
  void give(void *p, size_t cls) {
    std::lock_guard<std::mutex> lk(mu_);
    stats_.bytes_in_use -= static_cast<int64_t>(cls);
    if (pooling_enabled()) {
      free_[cls].push_back(p);
      stats_.bytes_pooled += static_cast<int64_t>(cls);
    } else {
      std::free(p);
    }
  }
  loom_storage_stats stats() {
    std::lock_guard<std::mutex> lk(mu_);
    return stats_;
  }
  void release() {
    std::lock_guard<std::mutex> lk(mu_);
    release_locked();
  }

 private:
  void release_locked() {
    for (auto &kv : free_)
      for (void *p : kv.second) std::free(p);
    free_.clear();
    stats_.bytes_pooled = 0;
  }
  std::mutex mu_;
  std::map<size_t, std::vector<void *>> free_;
  loom_storage_stats stats_{};
};

// Pools live for the whole process (never destroyed), so blocks freed during
// static destruction still have somewhere to go.
Pool &pool_for(const Context &ctx) {
  static Pool *pools = new Pool[kMaxCpuDevices];
  check_context(ctx);
  return pools[ctx.dev_id];
}

}  // namespace

Block::~Block() {
  if (external_release) external_release();
  else if (ptr) pool_for(ctx).give(ptr, bytes);
}

void Storage::alloc_into(Block &b, size_t bytes, const Context &ctx) {
  Pool &pool = pool_for(ctx);
  size_t cls = size_class(bytes);
  b.ptr = pool.take(cls);
  b.bytes = cls;
  b.ctx = ctx;
}

BlockPtr Storage::alloc(size_t bytes, const Context &ctx) {
  auto b = std::make_shared<Block>();
  alloc_into(*b, bytes, ctx);
  return b;
}

loom_storage_stats Storage::stats(const Context &ctx) { return pool_for(ctx).stats(); }

void Storage::release_pooled(const Context &ctx) { pool_for(ctx).release(); }

}  // namespace loom
