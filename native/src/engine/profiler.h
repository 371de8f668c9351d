// Per-op time, on when LOOM_PROFILE=1: every op the engine runs adds its wall
// time under its name, and the totals are printed to stderr at exit, largest
// first (calls, total ms, mean us, median us of the first 65536 calls, share).
#pragma once

namespace loom {
namespace profiler {
bool enabled();
void record(const char *name, bool backward, double seconds);
}  // namespace profiler
}  // namespace loom
