// Fork-join parallel loops on a small pool of helper threads that sleep when
// idle (no spinning: on small machines spinning helpers steal the cores that
// OpenBLAS and the engine workers need). Each index is computed independently,
// so results never depend on the number of threads.
#pragma once

#include <cstdint>
#include <functional>

namespace loom {

// Runs body(begin, end) over [0, n) split into contiguous ranges, on the
// calling thread plus idle helpers. The ranges depend only on n, grain and the
// thread count: one range when n < 2 * grain or there is one thread; when the
// pool is busy (a concurrent caller) the same ranges run on the calling thread,
// so a kernel that rounds differently at range edges still gives the same bits.
void parallel_ranges(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)> &body);

// Number of threads a parallel loop can use (LOOM_KERNEL_THREADS, default: cores).
int kernel_threads();

}  // namespace loom
