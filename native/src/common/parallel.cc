#include "common/parallel.h"

#include <sched.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

namespace loom {
namespace {

// Waits up to `spin` for ready() to hold, polling; false when it did not.
template <typename F>
bool spin_until(std::chrono::microseconds spin, F &&ready) {
  if (spin.count() <= 0) return ready();
  const auto end = std::chrono::steady_clock::now() + spin;
  for (unsigned i = 1;; ++i) {
    if (ready()) return true;
#if defined(__x86_64__) || defined(__i386__)
    _mm_pause();
#endif
    if (i % 64 == 0 && std::chrono::steady_clock::now() >= end) return ready();
  }
}

// One loop at a time runs on the pool. A helper copies the loop (a job) under the
// lock when it wakes, and claims chunks from one atomic word holding the job's
// generation and the next chunk, so a helper still finishing an earlier job can
// never claim (or count) a chunk of the next one. Before blocking, a helper
// waiting for the next job and a caller waiting for the helpers poll for a
// short while (kernel_spin_us): a thread that has blocked takes tens of
// microseconds to wake on some machines (virtual ones especially), as long as a
// small product itself, while loops follow one another closely in training.
class Pool {
 public:
  Pool(int helpers, std::chrono::microseconds spin) : spin_(spin) {
    for (int i = 0; i < helpers; ++i) threads_.emplace_back([this] { loop(); });
  }
  // The pool lives for the process; helpers block on the condition variable.

  bool try_run(int64_t n, int64_t chunks, const std::function<void(int64_t, int64_t)> &body) {
    std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
    if (!busy.owns_lock()) return false;
    Job job;
    {
      std::lock_guard<std::mutex> lk(mu_);
      job = Job{&body, n, chunks, ++generation_};
      job_ = job;
      done_.store(0);
      claim_.store(static_cast<uint64_t>(job.generation) << 32);
      posted_.store(job.generation, std::memory_order_release);
    }
    cv_.notify_all();
    work(job);
    if (spin_until(spin_, [&] { return done_.load() == chunks; })) return true;
    std::unique_lock<std::mutex> lk(mu_);
    done_cv_.wait(lk, [&] { return done_.load() == chunks; });
    return true;
  }

 private:
  struct Job {
    const std::function<void(int64_t, int64_t)> *body = nullptr;
    int64_t n = 0, chunks = 0;
    uint32_t generation = 0;
  };

  void work(const Job &j) {
    for (;;) {
      uint64_t v = claim_.load();
      do {
        if (static_cast<uint32_t>(v >> 32) != j.generation || static_cast<int64_t>(v & 0xffffffffu) >= j.chunks)
          return;
      } while (!claim_.compare_exchange_weak(v, v + 1));
      int64_t c = static_cast<int64_t>(v & 0xffffffffu);
      (*j.body)(j.n * c / j.chunks, j.n * (c + 1) / j.chunks);
      if (done_.fetch_add(1) + 1 == j.chunks) {
        std::lock_guard<std::mutex> lk(mu_);
        done_cv_.notify_all();
      }
    }
  }
  void loop() {
    uint32_t seen = 0;
    for (;;) {
      Job j;
      spin_until(spin_, [&] { return posted_.load(std::memory_order_acquire) != seen; });
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return generation_ != seen; });
        seen = generation_;
        j = job_;
      }
      work(j);
    }
  }

  std::vector<std::thread> threads_;
  std::mutex busy_, mu_;
  std::condition_variable cv_, done_cv_;
  Job job_;                          // the current loop (under mu_)
  uint32_t generation_ = 0;          // under mu_
  std::atomic<uint32_t> posted_{0};  // generation_, for polling without the lock
  const std::chrono::microseconds spin_;
  std::atomic<uint64_t> claim_{0};   // generation << 32 | next chunk
  std::atomic<int64_t> done_{0};     // chunks finished of the current loop
};

int threads_from_env() {
  const char *v = std::getenv("LOOM_KERNEL_THREADS");
  if (v && std::atoi(v) > 0) return std::atoi(v);
  return available_cpus();
}

// Polling only where every kernel thread has a core of its own: a thread that
// polls on a shared core holds it from the thread it waits for.
std::chrono::microseconds spin_from_env() {
  const char *v = std::getenv("LOOM_KERNEL_SPIN_US");
  const long long us = v && *v ? std::atoll(v) : 200;
  return std::chrono::microseconds(kernel_threads() <= available_cpus() ? std::max(0LL, us) : 0);
}

Pool *pool() {
  static Pool *p = kernel_threads() > 1 ? new Pool(kernel_threads() - 1, spin_from_env()) : nullptr;
  return p;
}

}  // namespace

int kernel_threads() {
  static const int n = threads_from_env();
  return n;
}

int available_cpus() {
  static const int n = [] {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
    const int hw = static_cast<int>(std::thread::hardware_concurrency());
    return hw > 0 ? hw : 1;
  }();
  return n;
}

int64_t parallel_range_count(int64_t n, int64_t grain) {
  const int threads = kernel_threads();
  if (n <= 0) return 0;
  if (threads <= 1 || n < 2 * grain) return 1;
  return std::min<int64_t>(threads, n / grain);
}

void parallel_ranges_indexed(int64_t n, int64_t grain,
                             const std::function<void(int64_t, int64_t, int64_t)> &body) {
  const int64_t chunks = parallel_range_count(n, grain);
  // Range c starts at n * c / chunks (chunks <= n): c is the one integer in
  // [begin * chunks / n, (begin + 1) * chunks / n).
  parallel_ranges(n, grain, [&](int64_t b, int64_t e) { body((b * chunks + n - 1) / n, b, e); });
}

void parallel_items(int64_t n, const std::function<void(int64_t, int64_t)> &body) {
  if (n <= 0) return;
  const int64_t slots = parallel_range_count(n, 1);
  std::atomic<int64_t> next{0};
  // One range per slot (parallel_ranges cuts `slots` indices into `slots` ranges).
  parallel_ranges(slots, 1, [&](int64_t s0, int64_t s1) {
    for (int64_t slot = s0; slot < s1; ++slot)
      for (int64_t i = next.fetch_add(1, std::memory_order_relaxed); i < n;
           i = next.fetch_add(1, std::memory_order_relaxed))
        body(slot, i);
  });
}

void parallel_ranges(int64_t n, int64_t grain,
                     const std::function<void(int64_t, int64_t)> &body) {
  if (n <= 0) return;
  const int64_t chunks = parallel_range_count(n, grain);
  if (chunks == 1) {
    body(0, n);
    return;
  }
  if (pool()->try_run(n, chunks, body)) return;
  // The pool is busy (another caller): the same ranges, one after another. Kernels
  // may round differently at a range's edges (a vector body and its scalar tail, a
  // BLAS call on fewer columns), so the ranges must not depend on timing.
  for (int64_t c = 0; c < chunks; ++c) body(n * c / chunks, n * (c + 1) / chunks);
}

}  // namespace loom
