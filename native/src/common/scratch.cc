#include "common/scratch.h"

#include <cstdlib>
#include <mutex>
#include <utility>
#include <vector>

#include "common/base.h"

namespace loom {
namespace {

class ScratchCache {
 public:
  std::shared_ptr<void> take(size_t n, const char *what) {
    if (n == 0) n = 64;
    void *p = nullptr;
    size_t size = n;
    {
      std::lock_guard<std::mutex> lock(mu_);
      size_t best = kept_.size();
      for (size_t i = 0; i < kept_.size(); ++i)
        if (kept_[i].first >= n && kept_[i].first / 4 <= n &&
            (best == kept_.size() || kept_[i].first < kept_[best].first))
          best = i;
      if (best < kept_.size()) {
        size = kept_[best].first;
        p = kept_[best].second;
        kept_.erase(kept_.begin() + static_cast<std::ptrdiff_t>(best));
      }
    }
    if (!p) {
      if (posix_memalign(&p, 64, n) != 0) p = nullptr;
      LOOM_CHECK(p, LOOM_ERR_OUT_OF_MEMORY, "could not allocate ", n, " bytes ", what);
    }
    return std::shared_ptr<void>(p, [this, size](void *q) { give_back(size, q); });
  }

 private:
  static constexpr size_t kKept = 4, kKeptBytes = size_t(160) << 20;
  void give_back(size_t n, void *p) {
    std::vector<void *> drop;
    {
      std::lock_guard<std::mutex> lock(mu_);
      kept_.emplace_back(n, p);
      size_t total = 0;
      for (auto &k : kept_) total += k.first;
      while (kept_.size() > 1 && (kept_.size() > kKept || total > kKeptBytes)) {  // free the smallest
        size_t s = 0;
        for (size_t i = 1; i < kept_.size(); ++i)
          if (kept_[i].first < kept_[s].first) s = i;
        total -= kept_[s].first;
        drop.push_back(kept_[s].second);
        kept_.erase(kept_.begin() + static_cast<std::ptrdiff_t>(s));
      }
    }
    for (void *q : drop) std::free(q);
  }
  std::mutex mu_;
  std::vector<std::pair<size_t, void *>> kept_;
};

}  // namespace

std::shared_ptr<void> reusable_scratch(size_t bytes, const char *what) {
  static ScratchCache *cache = new ScratchCache;  // never destroyed: buffers may outlive statics
  return cache->take(bytes, what);
}

}  // namespace loom
