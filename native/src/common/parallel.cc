#include "common/parallel.h"

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

namespace loom {
namespace {

class Pool {
 public:
  explicit Pool(int helpers) {
    for (int i = 0; i < helpers; ++i) threads_.emplace_back([this] { loop(); });
  }
  // The pool lives for the process; helpers block on the condition variable.

  bool try_run(int64_t n, int64_t chunks, const std::function<void(int64_t, int64_t)> &body) {
    std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    if (!busy.owns_lock()) return false;
    {
      std::lock_guard<std::mutex> lk(mu_);
      body_ = &body;
      n_ = n;
      chunks_ = chunks;
      next_.store(0);
      done_.store(0);
      ++generation_;
    }
    cv_.notify_all();
    work();
    std::unique_lock<std::mutex> lk(mu_);
    done_cv_.wait(lk, [&] { return done_.load() == chunks_; });
    body_ = nullptr;
    return true;
  }

 private:
  void work() {
    for (;;) {
      int64_t c = next_.fetch_add(1);
      if (c >= chunks_) return;
      int64_t b = n_ * c / chunks_, e = n_ * (c + 1) / chunks_;
      (*body_)(b, e);
      if (done_.fetch_add(1) + 1 == chunks_) {
        std::lock_guard<std::mutex> lk(mu_);
        done_cv_.notify_all();
      }
    }
  }
  void loop() {
    uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return generation_ != seen && body_ != nullptr; });
        seen = generation_;
      }
      work();
    }
  }

  std::vector<std::thread> threads_;
  std::mutex busy_, mu_;
  std::condition_variable cv_, done_cv_;
  const std::function<void(int64_t, int64_t)> *body_ = nullptr;
  int64_t n_ = 0, chunks_ = 0;
  std::atomic<int64_t> next_{0}, done_{0};
  uint64_t generation_ = 0;
};

int threads_from_env() {
  const char *v = std::getenv("LOOM_KERNEL_THREADS");
  int hw = static_cast<int>(std::thread::hardware_concurrency());
  if (v && std::atoi(v) > 0) return std::atoi(v);
  return hw > 0 ? hw : 1;
}

Pool *pool() {
  static Pool *p = kernel_threads() > 1 ? new Pool(kernel_threads() - 1) : nullptr;
  return p;
}

}  // namespace

int kernel_threads() {
  static const int n = threads_from_env();
  return n;
}

void parallel_ranges(int64_t n, int64_t grain,
                     const std::function<void(int64_t, int64_t)> &body) {
  if (n <= 0) return;
  int threads = kernel_threads();
  if (threads <= 1 || n < 2 * grain) {
    body(0, n);
    return;
  }
  int64_t chunks = std::min<int64_t>(threads, n / grain);
  if (pool()->try_run(n, chunks, body)) return;
  // The pool is busy (another caller): the same ranges, one after another. Kernels
  // may round differently at a range's edges (a vector body and its scalar tail, a
  // BLAS call on fewer columns), so the ranges must not depend on timing.
  for (int64_t c = 0; c < chunks; ++c) body(n * c / chunks, n * (c + 1) / chunks);
}

}  // namespace loom
