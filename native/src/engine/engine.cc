#include "engine/engine.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <cstdlib>
#include <future>
#include <thread>

#include "backend/device.h"
#include "common/parallel.h"
#include "engine/profiler.h"

namespace loom {

struct OprBlock {
  Engine::Fn fn;
  VarList reads;
  VarList writes;
  std::atomic<int> wait{0};
  Context ctx;
  PushOptions opts;
};

// A pool of workers serving one device, fed from one FIFO queue.
namespace {
// Set on engine worker threads: they may run a successor op directly.
thread_local bool t_on_worker = false;
}  // namespace

struct Engine::WorkerPool {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<OprBlock *> queue;
  std::vector<std::thread> threads;
  bool stop = false;

  WorkerPool(Engine *engine, int n) {
    for (int i = 0; i < n; ++i)
      threads.emplace_back([this, engine] {
        t_on_worker = true;
        for (;;) {
          OprBlock *op;
          {
            std::unique_lock<std::mutex> lk(mu);
            cv.wait(lk, [this] { return stop || !queue.empty(); });
            if (queue.empty()) return;
            op = queue.front();
            queue.pop_front();
          }
          engine->execute(op);
        }
      });
  }
  void enqueue(OprBlock *op) {
    {
      std::lock_guard<std::mutex> lk(mu);
      queue.push_back(op);
    }
    cv.notify_one();
  }
  ~WorkerPool() {
    {
      std::lock_guard<std::mutex> lk(mu);
      stop = true;
    }
    cv.notify_all();
    for (auto &t : threads) t.join();
  }
};

namespace {
int env_int(const char *name, int fallback) {
  const char *v = std::getenv(name);
  if (!v || !*v) return fallback;
  char *end = nullptr;
  long n = std::strtol(v, &end, 10);
  return (end && *end == 0 && n > 0 && n < 1024) ? static_cast<int>(n) : fallback;
}

// Removes repeats; a var both read and written is only written. Lists are a
// handful of vars, so a quadratic pass beats sorting.
void dedup(VarList &reads, VarList &writes) {
  auto contains = [](const VarList &l, size_t n, const Var *v) {
    for (size_t i = 0; i < n; ++i)
      if (l[i].get() == v) return true;
    return false;
  };
  size_t w = 0;
  for (size_t i = 0; i < writes.size(); ++i)
    if (!contains(writes, w, writes[i].get())) writes[w++] = std::move(writes[i]);
  writes.resize(w);
  size_t r = 0;
  for (size_t i = 0; i < reads.size(); ++i)
    if (!contains(reads, r, reads[i].get()) && !contains(writes, w, reads[i].get()))
      reads[r++] = std::move(reads[i]);
  reads.resize(r);
}
}  // namespace

namespace {
std::atomic<Engine *> g_engine{nullptr};
// Registered when the engine is made, so it runs before the exit handlers that
// came earlier (OpenBLAS's shutdown joins its threads and hangs, or frees memory
// under a running product, when a worker is still inside a call).
void drain_at_exit() { Engine::drain(std::chrono::seconds(30)); }
}  // namespace

void Engine::drain(std::chrono::milliseconds limit) {
  Engine *e = g_engine.load();
  if (!e || t_on_worker) return;
  std::unique_lock<std::mutex> lk(e->all_mu_);
  e->all_waiters_.fetch_add(1);
  e->all_cv_.wait_for(lk, limit, [e] { return e->pending_.load() == 0; });
  e->all_waiters_.fetch_sub(1);
}

Engine &Engine::get() {
  // Never destroyed: workers may still be finishing when static destructors run.
  static Engine *engine = [] {
    const char *kind = std::getenv("LOOM_ENGINE");
    bool naive = kind && std::string(kind) == "naive";
    // One op at a time by default, each split over the kernel threads (MXNet's
    // MXNET_CPU_WORKER_NTHREADS is 1 too): two ops at once on two workers shared the
    // kernel threads' cores, the second one running its ranges on one thread, and a
    // training step took longer (docs/backends.md). With fewer kernel threads than
    // cores, the workers take the rest.
    auto *e = new Engine(naive, env_int("LOOM_CPU_WORKERS", std::max(1, available_cpus() / kernel_threads())));
    const char *mp = std::getenv("LOOM_MAX_PENDING");
    if (mp && std::atoll(mp) > 0) e->set_max_pending(std::atoll(mp));
    g_engine.store(e);
    std::atexit(drain_at_exit);
    return e;
  }();
  return *engine;
}

Engine::Engine(bool naive, int cpu_workers)
    : naive_(naive), cpu_workers_(cpu_workers) {
  gpu_workers_ = env_int("LOOM_GPU_WORKERS", 1);
  // CPU devices, then a compute and a copy pool per GPU.
  pools_.resize(kMaxCpuDevices + 2 * kMaxGpuDevices);
}

Engine::~Engine() {
  wait_all();
  pools_.clear();
}

Engine::WorkerPool &Engine::pool_for(const Context &ctx, bool copy) {
  bool gpu = ctx.dev_type == LOOM_DEVICE_GPU;
  size_t slot = gpu ? kMaxCpuDevices + 2 * static_cast<size_t>(ctx.dev_id) + (copy ? 1 : 0)
                    : static_cast<size_t>(ctx.dev_id);
  std::lock_guard<std::mutex> lk(pools_mu_);
  auto &p = pools_[slot];
  if (!p) p = std::make_unique<WorkerPool>(this, gpu ? (copy ? 1 : gpu_workers_) : cpu_workers_);
  return *p;
}

std::shared_ptr<const void> Var::derived(const std::string &key) {
  std::lock_guard<SpinLock> lk(mu_);
  for (const Derived &d : derived_)
    if (d.version == version_ && d.key == key) return d.data;
  return nullptr;
}

void Var::keep_derived(const std::string &key, std::shared_ptr<const void> data) {
  std::shared_ptr<const void> dropped;  // freed outside the lock
  std::lock_guard<SpinLock> lk(mu_);
  if (external_) return;
  for (Derived &d : derived_)
    if (d.key == key || d.version != version_) {
      dropped = std::move(d.data);
      d = Derived{key, version_, std::move(data)};
      return;
    }
  if (derived_.size() >= kDerivedSlots) {
    dropped = std::move(derived_.front().data);
    derived_.erase(derived_.begin());
  }
  derived_.push_back(Derived{key, version_, std::move(data)});
}

void Engine::record_error(const ErrorPtr &e) {
  std::lock_guard<std::mutex> lk(all_mu_);
  if (!first_error_) first_error_ = e;
}

void Engine::push(Fn fn, const Context &ctx, VarList reads, VarList writes,
                  const PushOptions &opts) {
  check_context(ctx);
  LOOM_CHECK(ctx.dev_type != LOOM_DEVICE_GPU || ctx.dev_id < kMaxGpuDevices,
             LOOM_ERR_INVALID_ARGUMENT, "context ", ctx.str(), ": Loom supports gpu(0) to gpu(",
             kMaxGpuDevices - 1, ")");
  dedup(reads, writes);
  if (!naive_ && !t_on_worker && pending_.load() >= max_pending_) {
    std::unique_lock<std::mutex> lk(space_mu_);
    space_waiters_.fetch_add(1);  // registered before the check, as in wait_all
    space_cv_.wait(lk, [this] { return pending_.load() < max_pending_ / 2; });
    space_waiters_.fetch_sub(1);
  }
  auto *op = new OprBlock;
  op->fn = std::move(fn);
  op->reads = std::move(reads);
  op->writes = std::move(writes);
  op->ctx = ctx;
  op->opts = opts;
  pending_.fetch_add(1, std::memory_order_relaxed);
  if (naive_) {
    std::lock_guard<std::mutex> lk(naive_mu_);
    execute(op);
    return;
  }
  op->wait.store(static_cast<int>(op->reads.size() + op->writes.size()) + 1,
                 std::memory_order_relaxed);
  for (auto &v : op->reads) append_read(v.get(), op);
  for (auto &v : op->writes) append_write(v.get(), op);
  dec_wait(op, opts.allow_inline);
}

void Engine::append_read(Var *v, OprBlock *op) {
  bool granted;
  {
    std::lock_guard<SpinLock> lk(v->mu_);
    granted = !v->writing_ && v->queue_.empty();
    if (granted)
      ++v->running_reads_;
    else
      v->queue_.push_back(op, false);
  }
  if (granted) dec_wait(op, false);
}

void Engine::append_write(Var *v, OprBlock *op) {
  bool granted;
  {
    std::lock_guard<SpinLock> lk(v->mu_);
    granted = !v->writing_ && v->running_reads_ == 0 && v->queue_.empty();
    if (granted)
      v->writing_ = true;
    else
      v->queue_.push_back(op, true);
  }
  if (granted) dec_wait(op, false);
}

void Engine::dec_wait(OprBlock *op, bool may_inline) {
  if (op->wait.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    if (may_inline)
      execute(op);
    else
      dispatch(op);
  }
}

bool Engine::dec_wait_ready(OprBlock *op) {
  return op->wait.fetch_sub(1, std::memory_order_acq_rel) == 1;
}

void Engine::dispatch(OprBlock *op) { pool_for(op->ctx, op->opts.copy).enqueue(op); }

void Engine::execute(OprBlock *op) {
  // A worker that finishes an op runs one successor it made ready itself, so a
  // chain of dependent ops does not pay a thread wake-up per op.
  while (op) op = run_one(op);
}

OprBlock *Engine::run_one(OprBlock *op) {
  // An op reading a failed var is skipped and passes the failure on.
  // Waits (keep_errors) always run: they report the failure themselves.
  ErrorPtr err;
  if (!op->opts.keep_errors) {
    for (auto &v : op->reads) {
      if ((err = v->error())) break;
    }
  }
  bool failed_here = false;
  if (!err) {
    try {
      if (profiler::enabled() && !op->opts.profiled_inside) {
        auto t0 = std::chrono::steady_clock::now();
        op->fn();
        profiler::record(op->opts.name, op->opts.backward,
                         std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      } else {
        op->fn();
      }
    } catch (const Error &e) {
      err = std::make_shared<ErrorInfo>(ErrorInfo{e.status(), e.what()});
      failed_here = true;
    } catch (const std::bad_alloc &) {
      err = std::make_shared<ErrorInfo>(
          ErrorInfo{LOOM_ERR_OUT_OF_MEMORY, std::string(op->opts.name) + ": out of memory"});
      failed_here = true;
    } catch (const std::exception &e) {
      err = std::make_shared<ErrorInfo>(
          ErrorInfo{LOOM_ERR_INTERNAL, std::string(op->opts.name) + ": " + e.what()});
      failed_here = true;
    } catch (...) {
      err = std::make_shared<ErrorInfo>(
          ErrorInfo{LOOM_ERR_INTERNAL, std::string(op->opts.name) + ": unknown failure"});
      failed_here = true;
    }
  }
  if (failed_here) record_error(err);
  if (!op->opts.keep_errors) {
    for (auto &v : op->writes) {
      if (!err && !v->has_error_.load(std::memory_order_acquire)) continue;
      std::lock_guard<SpinLock> lk(v->mu_);
      v->error_ = err;  // a successful write clears an old failure
      v->has_error_.store(err != nullptr, std::memory_order_release);
    }
  }
  OprBlock *next = nullptr;
  if (naive_) {
    for (auto &v : op->writes) {
      std::lock_guard<SpinLock> lk(v->mu_);
      ++v->version_;
    }
    delete op;
  } else {
    Context ctx = op->ctx;
    bool copy = op->opts.copy;
    SmallVec<OprBlock *, 8> ready;
    complete(op, ready);
    for (OprBlock *r : ready) {
      if (!next && t_on_worker && r->ctx == ctx && r->opts.copy == copy)
        next = r;
      else
        dispatch(r);
    }
  }
  int64_t left = pending_.fetch_sub(1) - 1;
  if (left == 0 && all_waiters_.load() > 0) {
    std::lock_guard<std::mutex> lk(all_mu_);
    all_cv_.notify_all();
  }
  if (left < max_pending_ / 2 && space_waiters_.load() > 0) {
    std::lock_guard<std::mutex> lk(space_mu_);
    space_cv_.notify_all();
  }
  return next;
}

void Engine::complete(OprBlock *op, SmallVec<OprBlock *, 8> &runnable) {
  SmallVec<OprBlock *, 8> ready;
  for (auto &vp : op->reads) {
    Var *v = vp.get();
    std::lock_guard<SpinLock> lk(v->mu_);
    if (--v->running_reads_ == 0 && !v->queue_.empty()) {
      // Only a write can be waiting behind running reads.
      auto next = v->queue_.front();
      v->queue_.pop_front();
      v->writing_ = true;
      ready.push_back(next.op);
    }
  }
  std::vector<Var::Derived> stale;  // freed after the lock (reordered weights can be large)
  for (auto &vp : op->writes) {
    Var *v = vp.get();
    std::lock_guard<SpinLock> lk(v->mu_);
    v->writing_ = false;
    ++v->version_;
    if (!v->derived_.empty()) {
      for (auto &d : v->derived_) stale.push_back(std::move(d));
      v->derived_.clear();
    }
    if (!v->queue_.empty() && v->queue_.front().write) {
      ready.push_back(v->queue_.front().op);
      v->queue_.pop_front();
      v->writing_ = true;
    } else {
      while (!v->queue_.empty() && !v->queue_.front().write) {
        ready.push_back(v->queue_.front().op);
        v->queue_.pop_front();
        ++v->running_reads_;
      }
    }
  }
  // Release the op's vars and closure before waking successors.
  delete op;
  for (OprBlock *r : ready)
    if (dec_wait_ready(r)) runnable.push_back(r);
}

// Blocks until the ops pushed before are done with `var`: at once when none is
// pending, else by pushing a no-op that reads (or writes) it and waiting for it.
ErrorPtr Engine::wait_on(const VarPtr &var, bool write) {
  // No write running or queued on the var (and, to write, no read running):
  // everything pushed before this wait is done with it, so there is nothing to
  // wait for. Each push registers with all its vars at once, even while it
  // waits on others, so this sees every earlier op on the var. A wait to write
  // counts as the write that follows it, as the pushed wait does in complete():
  // the version moves on and data derived from the old contents goes.
  if (!naive_) {
    std::vector<Var::Derived> stale;  // freed after the lock
    std::lock_guard<SpinLock> lk(var->mu_);
    if (!var->writing_ && var->queue_.empty() && (!write || var->running_reads_ == 0)) {
      if (write) {
        ++var->version_;
        stale.swap(var->derived_);
      }
      return var->error_;
    }
  }
  std::promise<void> done;
  auto fut = done.get_future();
  PushOptions o;
  o.name = write ? "wait_to_write" : "wait_to_read";
  o.allow_inline = true;
  o.keep_errors = true;
  VarList none, which{var};
  push([&done] { done.set_value(); }, Context{}, write ? none : which, write ? which : none, o);
  fut.wait();
  return var->error();
}

ErrorPtr Engine::wait_to_read(const VarPtr &var) { return wait_on(var, false); }

ErrorPtr Engine::wait_to_write(const VarPtr &var) { return wait_on(var, true); }

ErrorPtr Engine::wait_all() {
  std::unique_lock<std::mutex> lk(all_mu_);
  // Registered before the predicate is checked, so a finishing op that sees
  // no waiter cannot have been the one this wait needed.
  all_waiters_.fetch_add(1);
  all_cv_.wait(lk, [this] { return pending_.load() == 0; });
  all_waiters_.fetch_sub(1);
  // Device work may still be queued on streams: wait for it too.
  lk.unlock();
  ErrorPtr device_error = device::synchronize_all();
  lk.lock();
  if (device_error && !first_error_) first_error_ = device_error;
  ErrorPtr e = std::move(first_error_);
  first_error_.reset();
  return e;
}

}  // namespace loom
