// Fork-join parallel loops on a small pool of helper threads that sleep when
// idle, after polling for the next loop for at most LOOM_KERNEL_SPIN_US
// microseconds (default 200; 0 sleeps at once; no polling at all where there are
// more kernel threads than cores). Each index is computed independently, so
// results never depend on the number of threads.
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

// How many ranges parallel_ranges(n, grain, ...) cuts [0, n) into.
int64_t parallel_range_count(int64_t n, int64_t grain);

// parallel_ranges, telling the body which of the parallel_range_count(n, grain)
// ranges it runs: body(range, begin, end). No two ranges run at once with the
// same index, so a range may use work memory of its own.
void parallel_ranges_indexed(int64_t n, int64_t grain,
                             const std::function<void(int64_t, int64_t, int64_t)> &body);

// Runs body(slot, i) for every i in [0, n), each exactly once: the calling
// thread and idle helpers, min(kernel threads, n) slots in all, each take the
// next index in turn until none is left, so a thread the machine slows down
// takes fewer. Which slot runs an index depends on timing, so body(slot, i) must
// compute index i's result alone (a slot may keep work memory of its own: no two
// run at once with the same slot). When the pool is busy, slot 0 runs them all
// on the calling thread, in order.
void parallel_items(int64_t n, const std::function<void(int64_t, int64_t)> &body);

// Number of threads a parallel loop can use (LOOM_KERNEL_THREADS, default:
// available_cpus()).
int kernel_threads();

// The cores this process may run on (its affinity mask, as mpirun's binding or
// taskset set it; else the machine's).
int available_cpus();

}  // namespace loom
