#include "engine/profiler.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "engine/engine.h"

namespace loom {
namespace profiler {
namespace {

// An op's calls: their count and total, and the durations of up to kKept of them
// for the median (the first kKept calls; on a machine shared with other work a
// few slow calls move the mean far more than the median). Kept in double, as the
// total is: a single call's median and mean are then the same number and print
// the same (in float, 3.15 us printed as 3.2 beside a mean of 3.1).
constexpr size_t kKept = 1 << 16;
struct Entry {
  long calls = 0;
  double seconds = 0;
  std::vector<double> each;
};

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  auto mid = v.begin() + static_cast<std::ptrdiff_t>(v.size() / 2);
  std::nth_element(v.begin(), mid, v.end());
  return *mid;
}

struct Table {
  std::mutex mu;
  std::map<std::string, Entry> rows;
  ~Table() {
    Engine::drain(std::chrono::seconds(30));  // no worker records into a destroyed table
    std::lock_guard<std::mutex> lk(mu);
    if (rows.empty()) return;
    std::vector<std::pair<std::string, Entry>> v(rows.begin(), rows.end());
    std::sort(v.begin(), v.end(),
              [](const auto &a, const auto &b) { return a.second.seconds > b.second.seconds; });
    double total = 0;
    for (auto &r : v) total += r.second.seconds;
    std::fprintf(stderr, "\nLoom profile (LOOM_PROFILE=1): time inside ops, all threads\n");
    std::fprintf(stderr, "%-36s %10s %12s %12s %12s %7s\n", "op", "calls", "total ms", "mean us", "median us",
                 "share");
    for (auto &r : v)
      std::fprintf(stderr, "%-36s %10ld %12.1f %12.1f %12.1f %6.1f%%\n", r.first.c_str(), r.second.calls,
                   r.second.seconds * 1e3, r.second.seconds * 1e6 / double(r.second.calls),
                   median(r.second.each) * 1e6, 100 * r.second.seconds / total);
    std::fprintf(stderr, "%-36s %10s %12.1f\n", "total", "", total * 1e3);
  }
};

Table &table() {
  static Table t;  // printed when the library unloads
  return t;
}

}  // namespace

bool enabled() {
  static const bool on = [] {
    const char *v = std::getenv("LOOM_PROFILE");
    return v && std::strcmp(v, "0") != 0 && *v;
  }();
  return on;
}

void record(const char *name, bool backward, double seconds) {
  Table &t = table();
  std::string key = backward ? std::string("backward:") + name : std::string(name);
  std::lock_guard<std::mutex> lk(t.mu);
  Entry &e = t.rows[key];
  ++e.calls;
  e.seconds += seconds;
  if (e.each.size() < kKept) e.each.push_back(seconds);
}

}  // namespace profiler
}  // namespace loom
