// Engine push -> execute latency and throughput of independent ops.
// Prints numbers; it is not a test.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <future>
#include <vector>

#include "engine/engine.h"

using clk = std::chrono::steady_clock;
using loom::Context;
using loom::Engine;

static double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int main() {
  Engine engine(false, 2);
  auto var = std::make_shared<loom::Var>();

  // Latency: push one op to a worker (no inline run) and wait until it ran.
  std::vector<double> lat;
  for (int i = 0; i < 20000; ++i) {
    std::atomic<bool> ran{false};
    auto t0 = clk::now();
    engine.push([&] { ran.store(true, std::memory_order_release); }, Context{}, {}, {var});
    while (!ran.load(std::memory_order_acquire)) {
    }
    lat.push_back(std::chrono::duration<double, std::micro>(clk::now() - t0).count());
    engine.wait_all();
  }
  std::printf("push->execute latency (worker hand-off): median %.2f us, p90 %.2f us\n", median(lat),
              [&] { auto v = lat; std::sort(v.begin(), v.end()); return v[v.size() * 9 / 10]; }());

  // Inline path: a ready, cheap op runs on the pushing thread.
  loom::PushOptions inl;
  inl.allow_inline = true;
  std::vector<double> lat2;
  for (int r = 0; r < 50; ++r) {
    auto t0 = clk::now();
    for (int i = 0; i < 2000; ++i) engine.push([] {}, Context{}, {}, {var}, inl);
    lat2.push_back(std::chrono::duration<double, std::nano>(clk::now() - t0).count() / 2000);
  }
  engine.wait_all();
  std::printf("push + inline execute: median %.0f ns per op\n", median(lat2));

  // Throughput: independent ops (one var each) on 2 workers, empty and with work.
  for (int work : {0, 2000}) {
    const int n = 200000 / (work ? 20 : 1);
    std::vector<std::shared_ptr<loom::Var>> vars(64);
    for (auto &v : vars) v = std::make_shared<loom::Var>();
    auto t0 = clk::now();
    for (int i = 0; i < n; ++i)
      engine.push(
          [work] {
            volatile double x = 0;
            for (int k = 0; k < work; ++k) x = x + k;
          },
          Context{}, {}, {vars[i % vars.size()]});
    engine.wait_all();
    double s = std::chrono::duration<double>(clk::now() - t0).count();
    std::printf("throughput, independent ops with %d-iteration bodies on 2 workers: %.0f ops/s\n", work,
                n / s);
  }
  return 0;
}
