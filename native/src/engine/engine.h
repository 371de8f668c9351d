// Dependency engine (MXNet's model). Each array chunk owns a Var. An operation
// is pushed with the vars it reads and the vars it writes; reads of the same
// version run in parallel, writes are ordered in push order. Operations run on
// a worker pool per device, or synchronously under LOOM_ENGINE=naive.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/base.h"
#include "common/small_vector.h"
#include "common/spinlock.h"

namespace loom {

// An asynchronous failure, stored on the vars an operation writes.
struct ErrorInfo {
  loom_status status;
  std::string message;
};
using ErrorPtr = std::shared_ptr<const ErrorInfo>;

struct OprBlock;

using VarList = SmallVec<std::shared_ptr<class Var>, 3>;

class Var {
 public:
  // Version counter: bumped by every completed write.
  uint64_t version() {
    std::lock_guard<SpinLock> lk(mu_);
    return version_;
  }
  ErrorPtr error() {
    if (!has_error_.load(std::memory_order_acquire)) return nullptr;
    std::lock_guard<SpinLock> lk(mu_);
    return error_;
  }

  // Data a kernel derived from this var's contents (oneDNN's reordered weights),
  // kept with the var for the version it was derived from, under a key the
  // kernel chooses; a write makes it stale, and it goes with the var. Kernels
  // call these while they read the var (no write can be running then).
  // `derived` returns null when nothing is kept for `key` at the current version.
  std::shared_ptr<const void> derived(const std::string &key);
  // Keeps `data` for `key` at the current version (at most kDerivedSlots keys;
  // the oldest goes). Does nothing when the var's memory can change behind the
  // engine's back (set_external).
  void keep_derived(const std::string &key, std::shared_ptr<const void> data);
  // The memory is shared with another library (zero-copy arrays, DLPack
  // exports): writes there bump no version, so nothing is derived and kept.
  void set_external() {
    std::vector<Derived> dropped;  // freed after the lock
    std::lock_guard<SpinLock> lk(mu_);
    external_ = true;
    dropped.swap(derived_);
  }

 private:
  friend class Engine;
  struct Pending {
    OprBlock *op;
    bool write;
    Pending *next;
  };
  // FIFO of ops waiting on this var; nodes are allocated only when an op must wait.
  struct Queue {
    Pending *head = nullptr, *tail = nullptr;
    bool empty() const { return head == nullptr; }
    const Pending &front() const { return *head; }
    void push_back(OprBlock *op, bool write) {
      auto *n = new Pending{op, write, nullptr};
      if (tail) tail->next = n;
      else head = n;
      tail = n;
    }
    void pop_front() {
      Pending *n = head;
      head = n->next;
      if (!head) tail = nullptr;
      delete n;
    }
    ~Queue() {
      while (head) pop_front();
    }
  };
  SpinLock mu_;  // held for a few instructions at a time (every push takes it)
  Queue queue_;
  int running_reads_ = 0;
  bool writing_ = false;
  uint64_t version_ = 0;
  static constexpr size_t kDerivedSlots = 2;
  struct Derived {
    std::string key;
    uint64_t version;
    std::shared_ptr<const void> data;
  };
  std::vector<Derived> derived_;
  bool external_ = false;
  ErrorPtr error_;
  std::atomic<bool> has_error_{false};  // lets the common, error-free path skip the lock
};
using VarPtr = std::shared_ptr<Var>;

// Hints given with a push.
struct PushOptions {
  const char *name = "op";
  // The op is cheap enough to run on the pushing thread when its inputs are
  // already ready (avoids a thread hand-off for tiny imperative calls).
  bool allow_inline = false;
  // The op neither sets nor clears errors on the vars it writes (used by waits).
  bool keep_errors = false;
  // A backward kernel (the profiler lists it apart from the forward one).
  bool backward = false;
  // The op records its parts in the profiler itself (executor bulks).
  bool profiled_inside = false;
  // A copy to or from a device: it runs on that device's copy worker, so
  // transfers overlap with the device's compute (ctx names the device).
  bool copy = false;
};

class Engine {
 public:
  using Fn = std::function<void()>;

  static Engine &get();
  // Waits (at most `limit`) for every pushed operation to finish, if an engine
  // exists and the caller is not one of its workers. Runs at process exit, so no
  // operation is still inside a kernel while the libraries it calls (OpenBLAS,
  // oneDNN) and static objects are torn down.
  static void drain(std::chrono::milliseconds limit);

  // Pushes `fn` to run on `ctx`'s workers once the vars are ready. `fn`
  // throwing loom::Error (or any exception) marks every written var as failed.
  void push(Fn fn, const Context &ctx, VarList reads, VarList writes,
            const PushOptions &opts = {});

  // Blocks until pending writes to `var` are done; returns its stored error.
  ErrorPtr wait_to_read(const VarPtr &var);
  // Blocks until pending reads and writes of `var` are done; returns its stored error.
  ErrorPtr wait_to_write(const VarPtr &var);
  // Blocks until everything pushed has run; returns (and forgets) the first
  // failure recorded since the last call.
  ErrorPtr wait_all();
  // Records a failure found outside an operation (a device stream's error
  // surfacing at a synchronisation), so the next wait_all reports it too.
  void report_error(const ErrorPtr &e) { record_error(e); }

  bool naive() const { return naive_; }
  // Pending ops above which a pushing (non-worker) thread waits for the
  // workers to drain to half, so a fast producer cannot queue unbounded work
  // and memory (LOOM_MAX_PENDING, default 256).
  int64_t max_pending() const { return max_pending_; }
  void set_max_pending(int64_t n) { max_pending_ = n > 1 ? n : 2; }
  int cpu_workers() const { return cpu_workers_; }
  // Worker threads per GPU for compute (LOOM_GPU_WORKERS, default 1); each
  // GPU also has one copy worker. Each worker owns a stream per device.
  int gpu_workers() const { return gpu_workers_; }
  const char *kind() const { return naive_ ? "naive" : "threaded"; }

  // Builds an engine of the given kind; used by the singleton and by tests.
  Engine(bool naive, int cpu_workers);
  ~Engine();
  Engine(const Engine &) = delete;
  Engine &operator=(const Engine &) = delete;

 private:
  struct WorkerPool;
  void append_read(Var *v, OprBlock *op);
  void append_write(Var *v, OprBlock *op);
  void complete(OprBlock *op, SmallVec<OprBlock *, 8> &runnable);
  void dec_wait(OprBlock *op, bool may_inline);
  bool dec_wait_ready(OprBlock *op);
  OprBlock *run_one(OprBlock *op);
  ErrorPtr wait_on(const VarPtr &var, bool write);
  void dispatch(OprBlock *op);
  void execute(OprBlock *op);
  WorkerPool &pool_for(const Context &ctx, bool copy);
  void record_error(const ErrorPtr &e);

  const bool naive_;
  const int cpu_workers_;
  int gpu_workers_ = 1;
  std::mutex naive_mu_;
  std::mutex pools_mu_;
  std::vector<std::unique_ptr<WorkerPool>> pools_;
  std::atomic<int64_t> pending_{0};
  std::atomic<int> all_waiters_{0};
  int64_t max_pending_ = 256;
  std::mutex space_mu_;
  std::condition_variable space_cv_;
  std::atomic<int> space_waiters_{0};
  std::mutex all_mu_;
  std::condition_variable all_cv_;
  ErrorPtr first_error_;
};

}  // namespace loom
