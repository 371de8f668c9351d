// The dependency engine: ordering against a sequential replay, read/write
// exclusion under many threads, asynchronous error propagation, naive mode.
#include <gtest/gtest.h>
#include <sched.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <condition_variable>
#include <chrono>
#include <cstring>
#include <mutex>
#include <map>
#include <set>
#include <random>
#include <thread>

#include "common/parallel.h"
#include "common/pointer_set.h"
#include "common/spinlock.h"
#include "ops/linalg/gemm.h"
#include "ops/nn/onednn.h"
#include "engine/engine.h"

using loom::Context;
using loom::Engine;
using loom::VarPtr;

namespace {

// A cell guarded only by the engine; the atomics detect forbidden overlap.
struct Cell {
  int64_t value = 0;
  std::atomic<int> readers{0};
  std::atomic<int> writers{0};
};

struct RandomOp {
  std::vector<int> reads;
  int write;
  int64_t salt;
};

// A hash step in unsigned arithmetic, so it wraps rather than overflowing.
int64_t mix(int64_t acc, int64_t x) {
  return static_cast<int64_t>((static_cast<uint64_t>(acc) * 1000003u) ^ static_cast<uint64_t>(x + 0x9E37));
}

std::vector<RandomOp> random_program(int n_ops, int n_vars, uint32_t seed) {
  std::mt19937 g(seed);
  std::vector<RandomOp> prog;
  for (int i = 0; i < n_ops; ++i) {
    RandomOp op;
    int nr = static_cast<int>(g() % 4);
    for (int k = 0; k < nr; ++k) op.reads.push_back(static_cast<int>(g() % n_vars));
    op.write = static_cast<int>(g() % n_vars);
    op.salt = i;
    prog.push_back(op);
  }
  return prog;
}

void run_program(Engine &engine, const std::vector<RandomOp> &prog, std::vector<Cell> &cells,
                 std::vector<VarPtr> &vars, std::atomic<int> &violations) {
  for (const RandomOp &op : prog) {
    loom::VarList r, w{vars[op.write]};
    for (int x : op.reads) r.push_back(vars[x]);
    engine.push(
        [&cells, &violations, op] {
          Cell &out = cells[op.write];
          if (out.writers.fetch_add(1) != 0 || out.readers.load() != 0) ++violations;
          for (int x : op.reads)
            if (x != op.write) {
              cells[x].readers.fetch_add(1);
              if (cells[x].writers.load() != 0) ++violations;
            }
          int64_t acc = out.value;
          for (int x : op.reads) acc = mix(acc, cells[x].value);
          acc = mix(acc, op.salt);
          // Stretch the critical section so overlaps would be seen.
          for (volatile int spin = 0; spin < 200; spin = spin + 1) {
          }
          out.value = acc;
          for (int x : op.reads)
            if (x != op.write) cells[x].readers.fetch_sub(1);
          out.writers.fetch_sub(1);
        },
        Context{}, r, w);
  }
}

std::vector<int64_t> replay(const std::vector<RandomOp> &prog, int n_vars) {
  std::vector<int64_t> v(n_vars, 0);
  for (const RandomOp &op : prog) {
    int64_t acc = v[op.write];
    for (int x : op.reads) acc = mix(acc, v[x]);
    v[op.write] = mix(acc, op.salt);
  }
  return v;
}

TEST(Engine, RandomProgramMatchesSequentialReplayOn8Workers) {
  for (bool naive : {false, true}) {
    Engine engine(naive, 8);
    const int n_vars = 24, n_ops = 6000;
    auto prog = random_program(n_ops, n_vars, 7);
    std::vector<Cell> cells(n_vars);
    std::vector<VarPtr> vars;
    for (int i = 0; i < n_vars; ++i) vars.push_back(std::make_shared<loom::Var>());
    std::atomic<int> violations{0};
    run_program(engine, prog, cells, vars, violations);
    EXPECT_EQ(engine.wait_all(), nullptr);
    auto want = replay(prog, n_vars);
    for (int i = 0; i < n_vars; ++i) EXPECT_EQ(cells[i].value, want[i]) << "var " << i;
    EXPECT_EQ(violations.load(), 0);
  }
}

TEST(Engine, EightPushingThreadsKeepPerThreadOrderAndExclusion) {
  Engine engine(false, 4);
  const int threads = 8, per_thread = 1500, private_vars = 4;
  std::vector<Cell> cells(threads * private_vars + 1);  // last cell is shared
  std::vector<VarPtr> vars;
  for (size_t i = 0; i < cells.size(); ++i) vars.push_back(std::make_shared<loom::Var>());
  std::atomic<int> violations{0};
  std::vector<std::vector<RandomOp>> progs(threads);
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; ++t) {
    // Each thread runs its own random program over its private vars, and
    // also increments the shared cell (order-independent, but racy if two
    // writes ever overlapped).
    progs[t] = random_program(per_thread, private_vars, 100 + t);
    for (auto &op : progs[t]) {
      for (auto &r : op.reads) r += t * private_vars;
      op.write += t * private_vars;
    }
    ts.emplace_back([&, t] {
      run_program(engine, progs[t], cells, vars, violations);
      Cell &shared = cells.back();
      for (int k = 0; k < per_thread; ++k)
        engine.push(
            [&shared, &violations] {
              if (shared.writers.fetch_add(1) != 0) ++violations;
              int64_t v = shared.value;
              for (volatile int spin = 0; spin < 50; spin = spin + 1) {
              }
              shared.value = v + 1;
              shared.writers.fetch_sub(1);
            },
            Context{}, {}, {vars.back()});
    });
  }
  for (auto &t : ts) t.join();
  EXPECT_EQ(engine.wait_all(), nullptr);
  for (int t = 0; t < threads; ++t) {
    std::vector<RandomOp> local = progs[t];
    for (auto &op : local) {
      for (auto &r : op.reads) r -= t * private_vars;
      op.write -= t * private_vars;
    }
    auto want = replay(local, private_vars);
    for (int i = 0; i < private_vars; ++i)
      EXPECT_EQ(cells[t * private_vars + i].value, want[i]) << "thread " << t << " var " << i;
  }
  EXPECT_EQ(cells.back().value, threads * per_thread);
  EXPECT_EQ(violations.load(), 0);
}

TEST(Engine, ReadsOfTheSameVersionRunInParallel) {
  Engine engine(false, 2);
  auto v = std::make_shared<loom::Var>();
  std::atomic<int> inside{0}, max_inside{0};
  for (int i = 0; i < 2; ++i)
    engine.push(
        [&] {
          int now = ++inside;
          int prev = max_inside.load();
          while (now > prev && !max_inside.compare_exchange_weak(prev, now)) {
          }
          for (int k = 0; k < 200 && max_inside.load() < 2; ++k)
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
          --inside;
        },
        Context{}, {v}, {});
  engine.wait_all();
  EXPECT_EQ(max_inside.load(), 2);
}

TEST(Engine, ErrorIsStoredOnOutputsAndPropagatesToDependents) {
  for (bool naive : {false, true}) {
    Engine engine(naive, 2);
    auto a = std::make_shared<loom::Var>(), b = std::make_shared<loom::Var>(),
         c = std::make_shared<loom::Var>();
    std::atomic<bool> dependent_ran{false}, independent_ran{false};
    engine.push([] { throw loom::Error(LOOM_ERR_SHAPE, "boom: shapes (2,3) and (4,)"); },
                Context{}, {}, {a});
    engine.push([&] { dependent_ran = true; }, Context{}, {a}, {b});
    engine.push([&] { independent_ran = true; }, Context{}, {}, {c});
    auto eb = engine.wait_to_read(b);
    ASSERT_NE(eb, nullptr);
    EXPECT_EQ(eb->status, LOOM_ERR_SHAPE);
    EXPECT_EQ(eb->message, "boom: shapes (2,3) and (4,)");
    EXPECT_FALSE(dependent_ran.load());
    EXPECT_EQ(engine.wait_to_read(c), nullptr);
    EXPECT_TRUE(independent_ran.load());
    auto all = engine.wait_all();
    ASSERT_NE(all, nullptr);
    EXPECT_EQ(all->status, LOOM_ERR_SHAPE);
    EXPECT_EQ(engine.wait_all(), nullptr) << "wait_all forgets reported failures";
    // A later successful write of `a` clears its failure.
    engine.push([] {}, Context{}, {}, {a});
    EXPECT_EQ(engine.wait_to_read(a), nullptr);
    // Non-loom exceptions become internal errors, never a crash.
    engine.push([] { throw std::runtime_error("plain"); }, Context{}, {}, {a});
    auto ea = engine.wait_to_read(a);
    ASSERT_NE(ea, nullptr);
    EXPECT_EQ(ea->status, LOOM_ERR_INTERNAL);
    engine.wait_all();
  }
}

TEST(Engine, WaitToWriteWaitsForReaders) {
  Engine engine(false, 2);
  auto v = std::make_shared<loom::Var>();
  std::atomic<bool> done{false};
  engine.push(
      [&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(30));
        done = true;
      },
      Context{}, {v}, {});
  engine.wait_to_write(v);
  EXPECT_TRUE(done.load());
}

// A wait on a var nothing is pending on returns without pushing; it must still
// see an op that is registered on the var while it waits on another var, report
// the var's failure, and (to write) count as a write: the version moves on and
// data derived from the old contents is dropped, as after a pushed wait.
TEST(Engine, WaitsOnIdleVarsKeepTheirMeaning) {
  Engine engine(false, 2);
  auto u = std::make_shared<loom::Var>(), v = std::make_shared<loom::Var>();
  std::atomic<bool> second_ran{false};
  engine.push([] { std::this_thread::sleep_for(std::chrono::milliseconds(30)); }, Context{}, {},
              {u});
  engine.push([&] { second_ran = true; }, Context{}, {u}, {v});  // waits on u, writes v
  EXPECT_EQ(engine.wait_to_read(v), nullptr);
  EXPECT_TRUE(second_ran.load()) << "the wait on v returned before the write queued on it ran";
  engine.wait_all();

  const uint64_t before = v->version();
  v->keep_derived("reordered", std::make_shared<int>(7));
  EXPECT_EQ(engine.wait_to_read(v), nullptr);
  EXPECT_EQ(v->version(), before) << "a wait to read changed the version";
  EXPECT_NE(v->derived("reordered"), nullptr) << "a wait to read dropped derived data";
  EXPECT_EQ(engine.wait_to_write(v), nullptr);
  EXPECT_EQ(v->version(), before + 1) << "a wait to write on an idle var did not count as a write";
  EXPECT_EQ(v->derived("reordered"), nullptr) << "derived data outlived a wait to write";

  engine.push([] { throw loom::Error(LOOM_ERR_SHAPE, "boom"); }, Context{}, {}, {v});
  engine.wait_all();
  auto e = engine.wait_to_read(v);  // idle now, and failed
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->status, LOOM_ERR_SHAPE);
  engine.push([] {}, Context{}, {}, {v});
  engine.wait_all();
  EXPECT_EQ(engine.wait_to_read(v), nullptr) << "a later write clears the failure";
}

// The lock of vars and array handles: no two holders at once, from eight
// threads, and every increment kept.
TEST(Engine, SpinLockExcludesEightThreads) {
  loom::SpinLock lock;
  int64_t count = 0;
  std::atomic<int> holders{0}, overlaps{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 20000; ++i) {
        std::lock_guard<loom::SpinLock> lk(lock);
        if (holders.fetch_add(1) != 0) overlaps.fetch_add(1);
        ++count;
        holders.fetch_sub(1);
      }
    });
  for (auto &t : threads) t.join();
  EXPECT_EQ(count, 8 * 20000);
  EXPECT_EQ(overlaps.load(), 0);
  EXPECT_TRUE(lock.try_lock());
  EXPECT_FALSE(lock.try_lock());
  lock.unlock();
}

// The live-handle set against std::set: random adds and removes of nearby
// addresses (heap pointers share their low bits), through several growths and
// rebuilds that clear removed entries.
TEST(Engine, PointerSetMatchesStdSet) {
  loom::PointerSet set;
  std::set<uintptr_t> ref;
  std::mt19937_64 rng(11);
  for (int step = 0; step < 200000; ++step) {
    uintptr_t p = 0x10000 + 16 * (rng() % 5000);
    const void *vp = reinterpret_cast<const void *>(p);
    switch (rng() % 3) {
      case 0: ASSERT_EQ(set.insert(vp), ref.insert(p).second) << "step " << step; break;
      case 1: ASSERT_EQ(set.erase(vp), ref.erase(p) == 1) << "step " << step; break;
      default: ASSERT_EQ(set.contains(vp), ref.count(p) == 1) << "step " << step;
    }
    ASSERT_EQ(set.size(), ref.size());
  }
  for (uintptr_t p : ref) EXPECT_TRUE(set.contains(reinterpret_cast<const void *>(p)));
  EXPECT_FALSE(set.contains(nullptr));
  EXPECT_FALSE(set.insert(nullptr));
  // The address marking removed entries, passed as a garbage handle, is not found
  // and removes nothing, in tables left full of removed entries by 50 patterns.
  const void *marker = reinterpret_cast<const void *>(uintptr_t{1});
  for (uintptr_t pattern = 1; pattern <= 50; ++pattern) {
    loom::PointerSet holes;
    for (uintptr_t j = 1; j <= 40; ++j) holes.insert(reinterpret_cast<const void *>(0x10000 * pattern + 48 * j));
    for (uintptr_t j = 1; j <= 40; j += 2) holes.erase(reinterpret_cast<const void *>(0x10000 * pattern + 48 * j));
    ASSERT_FALSE(holes.contains(marker)) << "pattern " << pattern;
    ASSERT_FALSE(holes.erase(marker)) << "pattern " << pattern;
    ASSERT_FALSE(holes.insert(marker)) << "pattern " << pattern;
    ASSERT_EQ(holes.size(), 20u) << "pattern " << pattern;
  }
}

TEST(Engine, FastProducerIsHeldBackAtMaxPending) {
  Engine engine(false, 1);
  engine.set_max_pending(8);
  auto v = std::make_shared<loom::Var>();
  std::atomic<int> done{0};
  int worst = 0;
  for (int i = 0; i < 200; ++i) {
    engine.push(
        [&done] {
          std::this_thread::sleep_for(std::chrono::microseconds(200));
          ++done;
        },
        Context{}, {}, {v});
    worst = std::max(worst, i + 1 - done.load());
  }
  engine.wait_all();
  EXPECT_EQ(done.load(), 200);
  EXPECT_LE(worst, 8 + 1) << "the producer ran more than max_pending ops ahead";
  EXPECT_GE(worst, 4) << "the producer was not allowed to run ahead at all";
}

TEST(Engine, ParallelRangesVisitEveryIndexOnceFromManyThreads) {
  const int callers = 4;
  const int64_t n = 200000;
  std::vector<std::vector<std::atomic<int>>> hits(callers);
  for (auto &h : hits) h = std::vector<std::atomic<int>>(n);
  std::vector<std::thread> ts;
  for (int t = 0; t < callers; ++t)
    ts.emplace_back([&, t] {
      for (int rep = 0; rep < 5; ++rep)
        loom::parallel_ranges(n, 1000, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) hits[t][i].fetch_add(1, std::memory_order_relaxed);
        });
    });
  for (auto &th : ts) th.join();
  for (int t = 0; t < callers; ++t)
    for (int64_t i = 0; i < n; i += 997) ASSERT_EQ(hits[t][i].load(), 5) << "caller " << t << " index " << i;
  int64_t total = 0;
  for (int t = 0; t < callers; ++t)
    for (int64_t i = 0; i < n; ++i) total += hits[t][i].load();
  EXPECT_EQ(total, int64_t(callers) * 5 * n);
}

// parallel_ranges_indexed names each range by its index among
// parallel_range_count(n, grain): distinct, in range, and the range is the one
// parallel_ranges gives that index (n * c / count to n * (c + 1) / count), from
// two callers at once (one of them runs its ranges on its own thread).
TEST(Engine, IndexedRangesNameEachRangeOnce) {
  auto check = [](int64_t n, int64_t grain) {
    const int64_t count = loom::parallel_range_count(n, grain);
    ASSERT_GE(count, 1);
    ASSERT_LE(count, std::max<int64_t>(1, n));
    std::vector<std::atomic<int>> seen(count);
    std::atomic<int64_t> covered{0};
    std::atomic<bool> bad{false};
    loom::parallel_ranges_indexed(n, grain, [&](int64_t c, int64_t b, int64_t e) {
      if (c < 0 || c >= count || b != n * c / count || e != n * (c + 1) / count) bad = true;
      else seen[c].fetch_add(1);
      covered += e - b;
    });
    EXPECT_FALSE(bad) << "n " << n << " grain " << grain;
    EXPECT_EQ(covered.load(), n);
    for (int64_t c = 0; c < count; ++c) EXPECT_EQ(seen[c].load(), 1) << "n " << n << " range " << c;
  };
  std::thread other([&] {
    for (int64_t n : {1, 2, 3, 7, 8, 13, 1000}) check(n, 1);
  });
  for (int64_t n : {1, 2, 3, 5, 8, 9, 16, 17, 100, 4097}) {
    check(n, 1);
    check(n, 4);
  }
  other.join();
}

// Without LOOM_KERNEL_THREADS a loop splits over the cores this process may run
// on: one under `mpirun`'s binding to a core or `taskset -c 0`, not the machine's.
TEST(Engine, KernelThreadsDefaultToTheCoresThisProcessMayUse) {
  cpu_set_t set;
  CPU_ZERO(&set);
  ASSERT_EQ(sched_getaffinity(0, sizeof set, &set), 0);
  EXPECT_EQ(loom::available_cpus(), CPU_COUNT(&set));
  const char *env = std::getenv("LOOM_KERNEL_THREADS");
  if (env && std::atoi(env) > 0)
    EXPECT_EQ(loom::kernel_threads(), std::atoi(env));
  else
    EXPECT_EQ(loom::kernel_threads(), CPU_COUNT(&set));
}

// Back-to-back small loops from several threads: every call must have run each
// index exactly once by the time it returns. (A helper waking late for one loop used
// to be able to claim a chunk of the next, running it twice and ending it early.)
TEST(Engine, ParallelRangesFromManyThreadsNeverShareOrLoseChunks) {
  const int callers = 3, calls = 3000;
  std::atomic<int> bad{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < callers; ++t)
    ts.emplace_back([&] {
      for (int rep = 0; rep < calls; ++rep) {
        const int64_t n = 4 + rep % 13;
        std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
        loom::parallel_ranges(n, 1, [&](int64_t b, int64_t e) {
          for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
        });
        for (auto &h : hits) bad += h.load() != 1;
      }
    });
  for (auto &th : ts) th.join();
  EXPECT_EQ(bad.load(), 0);
}

// Holds the kernel pool busy (a parallel loop whose ranges wait) until released, so
// the next caller finds it taken, as an op on another engine worker would.
class BusyPool {
 public:
  BusyPool() {
    t_ = std::thread([this] {
      loom::parallel_ranges(1 << 20, 1, [this](int64_t, int64_t) {
        std::unique_lock<std::mutex> lk(mu_);
        ++inside_;
        cv_.notify_all();
        cv_.wait(lk, [this] { return released_; });
      });
    });
    std::unique_lock<std::mutex> lk(mu_);
    cv_.wait(lk, [this] { return inside_ >= 1; });
  }
  ~BusyPool() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      released_ = true;
    }
    cv_.notify_all();
    t_.join();
  }

 private:
  std::thread t_;
  std::mutex mu_;
  std::condition_variable cv_;
  int inside_ = 0;
  bool released_ = false;
};

// Issue 16, finding 6: a busy pool used to run a loop as one range, and kernels round
// differently at range edges, so results depended on what else was running.
TEST(Engine, ParallelRangesDoNotDependOnAConcurrentCaller) {
  if (loom::kernel_threads() < 2) GTEST_SKIP() << "one kernel thread: a loop is never split";
  auto ranges = [] {
    std::mutex mu;
    std::set<std::pair<int64_t, int64_t>> r;
    loom::parallel_ranges(100000, 1000, [&](int64_t b, int64_t e) {
      std::lock_guard<std::mutex> lk(mu);
      r.emplace(b, e);
    });
    return r;
  };
  auto free_pool = ranges();
  EXPECT_GT(free_pool.size(), 1u);
  std::set<std::pair<int64_t, int64_t>> busy_pool;
  {
    BusyPool busy;
    busy_pool = ranges();
  }
  EXPECT_EQ(free_pool, busy_pool);
}

// parallel_items runs each index once, names slots among
// parallel_range_count(n, 1) with no slot on two threads at once, and hands the
// indices out as threads come free: with one index stalled, the other threads
// take the rest (contiguous ranges would leave half of them behind the stall).
// With the pool busy, slot 0 runs them all in order on the calling thread.
TEST(Engine, ParallelItemsRunEachIndexOnceAndGoToWhicheverThreadIsFree) {
  for (int64_t n : {0, 1, 2, 3, 7, 64, 1000}) {
    const int64_t slots = loom::parallel_range_count(n, 1);
    std::vector<std::atomic<int>> hits(static_cast<size_t>(n)), busy(static_cast<size_t>(std::max<int64_t>(slots, 1)));
    std::atomic<int> bad{0};
    loom::parallel_items(n, [&](int64_t slot, int64_t i) {
      if (slot < 0 || slot >= slots || i < 0 || i >= n) {
        ++bad;
        return;
      }
      if (busy[static_cast<size_t>(slot)].exchange(1)) ++bad;
      hits[static_cast<size_t>(i)].fetch_add(1);
      busy[static_cast<size_t>(slot)].store(0);
    });
    EXPECT_EQ(bad.load(), 0) << "n " << n;
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1) << "n " << n << " index " << i;
  }
  {
    std::vector<int64_t> order;
    std::set<int64_t> slots_seen;
    BusyPool busy;
    loom::parallel_items(50, [&](int64_t slot, int64_t i) {  // one thread: no lock needed
      order.push_back(i);
      slots_seen.insert(slot);
    });
    ASSERT_EQ(order.size(), 50u);
    for (int64_t i = 0; i < 50; ++i) EXPECT_EQ(order[static_cast<size_t>(i)], i);
    EXPECT_EQ(slots_seen, std::set<int64_t>{0});
  }
  if (loom::kernel_threads() < 2) GTEST_SKIP() << "one kernel thread: nothing to hand out";
  const int64_t n = 41;
  std::mutex mu;
  std::map<std::thread::id, int> per_thread;
  std::thread::id stalled;
  loom::parallel_items(n, [&](int64_t, int64_t i) {
    {
      std::lock_guard<std::mutex> lk(mu);
      ++per_thread[std::this_thread::get_id()];
      if (i == 0) stalled = std::this_thread::get_id();
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(i == 0 ? 300 : 2));
  });
  int others = 0;
  for (auto &[id, count] : per_thread)
    if (id != stalled) others += count;
  // 40 items of 2 ms beside one of 300 ms: the free threads take (nearly) all 40.
  EXPECT_GE(others, 34) << "the thread with the stalled item took " << per_thread[stalled] << " of " << n;
}

// The same product with the pool free, with it busy, and beside a threaded BLAS call
// (OpenBLAS's thread count is global): the same bits. 100x800 . 800x500 is LeNet's
// fc1, whose split columns round differently from one call.
TEST(Engine, ProductsGiveTheSameBitsWhateverRunsBesideThem) {
  const int64_t m = 100, n = 500, k = 800;
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> a(m * k), b(k * n), c0(m * n), c1(m * n), c2(m * n);
  for (auto &v : a) v = u(rng);
  for (auto &v : b) v = u(rng);
  loom::gemm<float>(false, false, m, n, k, 1.0, a.data(), k, b.data(), n, 0.0, c0.data(), n);
  {
    BusyPool busy;
    loom::gemm<float>(false, false, m, n, k, 1.0, a.data(), k, b.data(), n, 0.0, c1.data(), n);
  }
  EXPECT_EQ(0, std::memcmp(c0.data(), c1.data(), c0.size() * sizeof(float))) << "the pool was busy";
  // A large threaded product runs on another thread while this one repeats a
  // single-threaded product; every repetition must match the one made alone.
  const int64_t big = 512;
  std::vector<float> x(big * big, 0.5f), y(big * big, 0.25f), z(big * big);
  std::vector<float> s0(m * n), s1(m * n);
  loom::gemm_serial<float>(false, false, m, n, k, 1.0, a.data(), k, b.data(), n, 0.0, s0.data(), n);
  std::atomic<bool> stop{false};
  std::thread threaded([&] {
    while (!stop.load())
      loom::run_with_blas_threads([&] {
        loom::gemm_serial<float>(false, false, big, big, big, 1.0, x.data(), big, y.data(), big, 0.0, z.data(), big);
      });
  });
  int differed = 0;
  for (int rep = 0; rep < 40; ++rep) {
    loom::gemm_serial<float>(false, false, m, n, k, 1.0, a.data(), k, b.data(), n, 0.0, s1.data(), n);
    differed += std::memcmp(s0.data(), s1.data(), s0.size() * sizeof(float)) != 0;
  }
  stop = true;
  threaded.join();
  EXPECT_EQ(differed, 0) << "of 40 single-threaded products beside a threaded one";
}

// One float32 product C = alpha * op(A) . op(B) + beta * C0 (uniform values from
// `rng`) in the oneDNN set with the pool idle and busy, and in the reference set.
struct SetProducts {
  std::vector<float> a, b, c0, onednn, onednn_busy, reference;
};
SetProducts products_by_set(std::mt19937 &rng, bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha,
                            double beta) {
  std::uniform_real_distribution<float> u(-1, 1);
  SetProducts r;
  r.a.resize(m * k), r.b.resize(k * n), r.c0.resize(m * n);
  for (auto &v : r.a) v = u(rng);
  for (auto &v : r.b) v = u(rng);
  for (auto &v : r.c0) v = u(rng);
  r.onednn = r.onednn_busy = r.reference = r.c0;
  const int64_t lda = ta ? m : k, ldb = tb ? k : n;
  const loom::CpuKernels before = loom::cpu_kernels();
  loom::set_cpu_kernels(loom::CpuKernels::OneDnn);
  loom::gemm<float>(ta, tb, m, n, k, alpha, r.a.data(), lda, r.b.data(), ldb, beta, r.onednn.data(), n);
  {
    BusyPool busy;
    loom::gemm<float>(ta, tb, m, n, k, alpha, r.a.data(), lda, r.b.data(), ldb, beta, r.onednn_busy.data(), n);
  }
  loom::set_cpu_kernels(loom::CpuKernels::Reference);
  loom::gemm<float>(ta, tb, m, n, k, alpha, r.a.data(), lda, r.b.data(), ldb, beta, r.reference.data(), n);
  loom::set_cpu_kernels(before);
  return r;
}

// The oneDNN kernel set's float products (oneDNN's sgemm over pieces cut by the
// shape): against a float64 loop in every transpose, with alpha and beta, for
// shapes below the cut (one call), cut by columns and cut by rows, pieces of
// uneven width; the same bits with the kernel pool busy (the pieces then run one
// after another on this thread) and run again. The reference set still runs
// OpenBLAS, whose bits differ from oneDNN's somewhere in these products.
TEST(Engine, OneDnnProductsMatchAFloat64Reference) {
  if (!loom::onednn_built()) GTEST_SKIP() << "built without oneDNN";
  struct Case {
    int64_t m, n, k;
  };
  const Case cases[] = {{1, 1, 1}, {3, 7, 5}, {100, 10, 64}, {100, 128, 784}, {128, 784, 100},
                        {784, 128, 100}, {50, 1000, 33}, {1000, 50, 33}, {65, 200, 300}};
  std::mt19937 rng(11);
  const loom::SgemmChoice sgemm_before = loom::set_sgemm_choice(loom::SgemmChoice::OneDnn);  // on any CPU
  int differs_from_openblas = 0;
  for (const Case &cs : cases)
    for (int t = 0; t < 4; ++t)
      for (double beta : {0.0, 1.0}) {
        const bool ta = t & 1, tb = t & 2;
        const int64_t m = cs.m, n = cs.n, k = cs.k, lda = ta ? m : k, ldb = tb ? k : n;
        const double alpha = t == 3 ? 0.5 : 1.0;
        const SetProducts p = products_by_set(rng, ta, tb, m, n, k, alpha, beta);
        const std::vector<float> &a = p.a, &b = p.b, &c0 = p.c0, &c1 = p.onednn, &c2 = p.onednn_busy,
                                 &c3 = p.reference;
        EXPECT_EQ(0, std::memcmp(c1.data(), c2.data(), c1.size() * sizeof(float)))
            << m << "x" << n << "x" << k << " ta " << ta << " tb " << tb << ": the pool was busy";
        differs_from_openblas += std::memcmp(c1.data(), c3.data(), c1.size() * sizeof(float)) != 0;
        double worst = 0;
        for (int64_t i = 0; i < m; ++i)
          for (int64_t j = 0; j < n; ++j) {
            double acc = 0, mag = 0;
            for (int64_t p = 0; p < k; ++p) {
              const double x = ta ? a[p * lda + i] : a[i * lda + p], y = tb ? b[j * ldb + p] : b[p * ldb + j];
              acc += x * y;
              mag += std::fabs(x * y);
            }
            const double want = alpha * acc + beta * c0[i * n + j];
            const double scale = alpha * mag + std::fabs(beta * c0[i * n + j]) + 1e-30;
            worst = std::max(worst, std::fabs(c1[i * n + j] - want) / scale);
          }
        EXPECT_LT(worst, 1e-6) << m << "x" << n << "x" << k << " ta " << ta << " tb " << tb << " beta " << beta;
      }
  loom::set_sgemm_choice(sgemm_before);
  EXPECT_GT(differs_from_openblas, 0) << "the oneDNN set gave OpenBLAS's bits everywhere: is it running?";
}

// Where the oneDNN set runs its products on OpenBLAS's sgemm (LOOM_SGEMM=openblas,
// and without AVX-512 where all three extents are 512 or more), they have the reference set's
// bits, idle or busy pool; with oneDNN's they differ somewhere (the test above).
TEST(Engine, OneDnnSetProductsOnOpenBlasHaveTheReferenceBits) {
  if (!loom::onednn_built()) GTEST_SKIP() << "built without oneDNN";
  const loom::CpuKernels before = loom::cpu_kernels();
  const loom::SgemmChoice sgemm_before = loom::set_sgemm_choice(loom::SgemmChoice::OpenBlas);
  std::mt19937 rng(12);
  std::uniform_real_distribution<float> u(-1, 1);
  for (int64_t m : {3, 100, 300})
    for (int t = 0; t < 4; ++t) {
      const int64_t n = 257, k = m == 300 ? 1500 : 784;
      const SetProducts p = products_by_set(rng, t & 1, t & 2, m, n, k, 1.0, 1.0);
      const size_t bytes = p.reference.size() * sizeof(float);
      EXPECT_EQ(0, std::memcmp(p.onednn.data(), p.reference.data(), bytes)) << m << "x" << n << "x" << k << " t " << t;
      EXPECT_EQ(0, std::memcmp(p.onednn_busy.data(), p.reference.data(), bytes)) << m << "x" << n << "x" << k << " t " << t;
    }
  // Without AVX-512 (BySize): products whose extents are all 512 or more run on
  // OpenBLAS's, the others on oneDNN's; the choice follows the shape alone.
  for (int64_t e : {511, 512}) {
    std::vector<float> a(e * e), b(e * e);
    for (auto &v : a) v = u(rng);
    for (auto &v : b) v = u(rng);
    auto product = [&](loom::CpuKernels kernels, loom::SgemmChoice choice) {
      std::vector<float> c(e * e);
      loom::set_cpu_kernels(kernels);
      loom::set_sgemm_choice(choice);
      loom::gemm<float>(false, false, e, e, e, 1.0, a.data(), e, b.data(), e, 0.0, c.data(), e);
      return c;
    };
    const auto by_size = product(loom::CpuKernels::OneDnn, loom::SgemmChoice::BySize),
               onednn = product(loom::CpuKernels::OneDnn, loom::SgemmChoice::OneDnn),
               openblas = product(loom::CpuKernels::Reference, loom::SgemmChoice::BySize);
    loom::set_cpu_kernels(before);
    const auto &want = e == 512 ? openblas : onednn;
    EXPECT_EQ(0, std::memcmp(by_size.data(), want.data(), want.size() * sizeof(float))) << e << " cubed";
    EXPECT_NE(0, std::memcmp(onednn.data(), openblas.data(), want.size() * sizeof(float))) << e << " cubed";
  }
  loom::set_sgemm_choice(sgemm_before);
}

// C = A . B^T with few rows of A and a large B (a fully connected layer at a small
// batch) takes Loom's own kernel where the CPU has AVX2: against a float64 loop, over
// row counts around the tile sizes, inner lengths around the 8 lanes and their tail,
// strided rows, alpha and beta (beta 0 never reads C: it starts as NaN). Columns
// computed apart give the same bits (so the thread count cannot matter), and gemm
// routes these shapes to it.
TEST(Engine, SkinnyProductsMatchAFloat64Reference) {
  struct Case {
    int64_t m, n, k;
  };
  const Case cases[] = {{1, 1024, 1024}, {2, 1024, 1029}, {3, 1, int64_t(1) << 20}, {4, 5, 209716}, {5, 3, 349526},
                        {7, 1030, 1031}, {16, 1031, 1025}, {17, 258, 4100}, {31, 257, 4099}, {32, 4096, 257}};
  const bool has_kernel = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                          !(std::getenv("LOOM_SKINNY_GEMM") && std::string(std::getenv("LOOM_SKINNY_GEMM")) == "0");
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(-1, 1);
  for (const Case &cs : cases)
    for (int variant = 0; variant < 2; ++variant) {
      const int64_t m = cs.m, n = cs.n, k = cs.k;
      const int64_t lda = k + (variant ? 3 : 0), ldb = k + (variant ? 5 : 0), ldc = n + (variant ? 2 : 0);
      const float alpha = variant ? -0.5f : 1.0f, beta = variant ? 0.75f : 0.0f;
      std::vector<float> a(m * lda), b(n * ldb), c(m * ldc), c0;
      for (auto &v : a) v = u(rng);
      for (auto &v : b) v = u(rng);
      for (auto &v : c) v = variant ? u(rng) : std::nanf("");
      c0 = c;
      const bool taken = loom::skinny_sgemm(false, true, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, c.data(), ldc);
      ASSERT_EQ(taken, has_kernel) << m << "x" << n << "x" << k;
      if (!taken) continue;
      int64_t bad = 0;
      for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) {
          double s = 0, mag = 0;
          for (int64_t p = 0; p < k; ++p) {
            s += double(a[i * lda + p]) * b[j * ldb + p];
            mag += std::fabs(double(a[i * lda + p]) * b[j * ldb + p]);
          }
          const double want = alpha * s + (beta != 0 ? beta * double(c0[i * ldc + j]) : 0.0);
          const double tol = (double(k) / 8 + 16) * 6e-8 * mag + 1e-6;
          if (!(std::fabs(c[i * ldc + j] - want) <= tol) && bad++ < 3)
            ADD_FAILURE() << m << "x" << n << "x" << k << " variant " << variant << " C[" << i << "," << j
                          << "] = " << c[i * ldc + j] << ", float64 " << want << " (tolerance " << tol << ")";
        }
      EXPECT_EQ(bad, 0) << m << "x" << n << "x" << k << " variant " << variant;
      // C's columns from 3 on, computed on their own: the same bits.
      if (n > 3) {
        std::vector<float> part = c0;
        if (loom::skinny_sgemm(false, true, m, n - 3, k, alpha, a.data(), lda, b.data() + 3 * ldb, ldb, beta,
                               part.data() + 3, ldc)) {
          for (int64_t i = 0; i < m; ++i)
            EXPECT_EQ(0, std::memcmp(part.data() + i * ldc + 3, c.data() + i * ldc + 3, (n - 3) * sizeof(float)))
                << m << "x" << n << "x" << k << " row " << i;
        }
      }
      // gemm sends the product here.
      std::vector<float> via = c0;
      loom::gemm<float>(false, true, m, n, k, alpha, a.data(), lda, b.data(), ldb, beta, via.data(), ldc);
      EXPECT_EQ(0, std::memcmp(via.data(), c.data(), c.size() * sizeof(float))) << m << "x" << n << "x" << k;
    }
  // Other shapes are left to OpenBLAS: 33 rows, a transposed A, B under 4 MB, B not transposed.
  std::vector<float> x(33 * 1024, 1.0f), y(1024 * 1024, 1.0f), z(33 * 1024);
  EXPECT_FALSE(loom::skinny_sgemm(false, true, 33, 1024, 1024, 1, x.data(), 1024, y.data(), 1024, 0, z.data(), 1024));
  EXPECT_FALSE(loom::skinny_sgemm(true, true, 8, 1024, 1024, 1, x.data(), 8, y.data(), 1024, 0, z.data(), 1024));
  EXPECT_FALSE(loom::skinny_sgemm(false, true, 8, 1000, 1000, 1, x.data(), 1000, y.data(), 1000, 0, z.data(), 1000));
  EXPECT_FALSE(loom::skinny_sgemm(false, false, 8, 1024, 1024, 1, x.data(), 1024, y.data(), 1024, 0, z.data(), 1024));
}

TEST(Engine, SingletonHonoursEnvironment) {
  auto &e = Engine::get();
  const char *kind = std::getenv("LOOM_ENGINE");
  EXPECT_STREQ(e.kind(), kind && std::string(kind) == "naive" ? "naive" : "threaded");
  const char *w = std::getenv("LOOM_CPU_WORKERS");
  if (w) {
    EXPECT_EQ(e.cpu_workers(), std::atoi(w));
  } else {
    // One op at a time where the kernel threads take every core (MXNet's default
    // MXNET_CPU_WORKER_NTHREADS=1); the spare cores' worth of workers otherwise.
    EXPECT_EQ(e.cpu_workers(), std::max(1, loom::available_cpus() / loom::kernel_threads()));
    if (!std::getenv("LOOM_KERNEL_THREADS")) {
      EXPECT_EQ(e.cpu_workers(), 1);
    }
  }
  EXPECT_GE(e.cpu_workers(), 1);
}

}  // namespace
