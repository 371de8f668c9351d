#include "storage/storage.h"

#include <cstdlib>
#include <map>
#include <mutex>
#include <vector>

#include "backend/device.h"
#include "common/spinlock.h"

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
  void init(const Context &ctx) { ctx_ = ctx; }

  // The lock covers the free lists and counters only: device allocations and
  // frees run outside it, so it stays a few instructions long.
  void *take(size_t cls) {
    {
      std::lock_guard<SpinLock> lk(mu_);
      ++stats_.alloc_calls;
      auto it = free_.find(cls);
      if (it != free_.end() && !it->second.empty()) {
        void *p = it->second.back();
        it->second.pop_back();
        stats_.bytes_pooled -= static_cast<int64_t>(cls);
        ++stats_.pool_hits;
        count_in_use(cls);
        return p;
      }
    }
    void *p = raw_alloc(cls);
    if (!p) {  // give the cache back to the device and try once more
      release();
      p = raw_alloc(cls);
    }
    if (!p) out_of_memory(cls);
    std::lock_guard<SpinLock> lk(mu_);
    count_in_use(cls);
    return p;
  }
  void give(void *p, size_t cls) {
    {
      std::lock_guard<SpinLock> lk(mu_);
      stats_.bytes_in_use -= static_cast<int64_t>(cls);
      if (pooling_enabled()) {
        free_[cls].push_back(p);
        stats_.bytes_pooled += static_cast<int64_t>(cls);
        return;
      }
    }
    raw_free(p);
  }
  loom_storage_stats stats() {
    std::lock_guard<SpinLock> lk(mu_);
    return stats_;
  }
  void release() {
    std::map<size_t, std::vector<void *>> blocks;
    {
      std::lock_guard<SpinLock> lk(mu_);
      blocks.swap(free_);
      stats_.bytes_pooled = 0;
    }
    for (auto &kv : blocks)
      for (void *p : kv.second) raw_free(p);
  }

 private:
  void count_in_use(size_t cls) {
    stats_.bytes_in_use += static_cast<int64_t>(cls);
    if (stats_.bytes_in_use > stats_.peak_bytes_in_use)
      stats_.peak_bytes_in_use = stats_.bytes_in_use;
  }
  bool on_gpu() const { return ctx_.dev_type == LOOM_DEVICE_GPU; }
  void *raw_alloc(size_t cls) {
    return on_gpu() ? device::raw_alloc(ctx_, cls) : std::aligned_alloc(kAlign, cls);
  }
  void raw_free(void *p) {
    if (on_gpu()) device::raw_free(ctx_, p);
    else std::free(p);
  }
  [[noreturn]] void out_of_memory(size_t cls) {
    int64_t in_use = stats().bytes_in_use;
    if (!on_gpu())
      fail(LOOM_ERR_OUT_OF_MEMORY, "out of memory: asked for ", cls, " bytes on the CPU; ", in_use,
           " bytes are in use");
    size_t free_bytes = 0, total = 0;
    device::mem_info(ctx_, &free_bytes, &total);
    fail(LOOM_ERR_OUT_OF_MEMORY, "out of memory on ", ctx_.str(), ": asked for ", cls,
         " bytes; the device has ", free_bytes, " bytes free of ", total, "; Loom's arrays hold ",
         in_use, " bytes (its cache was released and the allocation retried)");
  }
  Context ctx_;
  SpinLock mu_;
  std::map<size_t, std::vector<void *>> free_;
  loom_storage_stats stats_{};
};

// Pools live for the whole process (never destroyed), so blocks freed during
// static destruction still have somewhere to go.
Pool &pool_for(const Context &ctx) {
  static Pool *pools = [] {
    auto *p = new Pool[kMaxCpuDevices + kMaxGpuDevices];
    for (int i = 0; i < kMaxCpuDevices; ++i) p[i].init(Context{LOOM_DEVICE_CPU, i});
    for (int i = 0; i < kMaxGpuDevices; ++i)
      p[kMaxCpuDevices + i].init(Context{LOOM_DEVICE_GPU, i});
    return p;
  }();
  check_context(ctx);
  if (ctx.dev_type == LOOM_DEVICE_GPU) {
    LOOM_CHECK(ctx.dev_id < kMaxGpuDevices, LOOM_ERR_INVALID_ARGUMENT, "context ", ctx.str(),
               ": Loom supports gpu(0) to gpu(", kMaxGpuDevices - 1, ")");
    return pools[kMaxCpuDevices + ctx.dev_id];
  }
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
