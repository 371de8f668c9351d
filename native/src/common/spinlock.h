// A lock for critical sections of a few dozen instructions that every
// imperative call passes through (a var's queue, the live-handle table).
// Taking it is one atomic exchange and releasing it one store, where a pthread
// mutex costs two atomic read-modify-writes and two calls. A waiter spins
// briefly, then gives its core away (the holder may have been preempted).
// Nothing may block or run long while holding it.
#pragma once

#include <atomic>
#include <thread>

namespace loom {

class SpinLock {
 public:
  void lock() noexcept {
    if (!locked_.exchange(true, std::memory_order_acquire)) return;
    lock_contended();
  }
  bool try_lock() noexcept {
    return !locked_.load(std::memory_order_relaxed) &&
           !locked_.exchange(true, std::memory_order_acquire);
  }
  void unlock() noexcept { locked_.store(false, std::memory_order_release); }

 private:
  void lock_contended() noexcept {
    int spins = 0;
    do {
      while (locked_.load(std::memory_order_relaxed)) {
        if (spins < kSpins) {
          ++spins;
          pause();
        } else {
          std::this_thread::yield();
        }
      }
    } while (locked_.exchange(true, std::memory_order_acquire));
  }
  static void pause() noexcept {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    asm volatile("yield");
#endif
  }
  static constexpr int kSpins = 128;
  std::atomic<bool> locked_{false};
};

}  // namespace loom
