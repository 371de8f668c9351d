// MXNet's KVStore, natively: a table of arrays by key that sums what is pushed
// and broadcasts what is pulled, optionally applying a native update op where
// the weights live (set_updater). `local` reduces on the CPU, `device` on the
// device of the lowest-numbered value. Several values pushed for a key are added
// in a fixed order (device type and index, then push order), so results never
// depend on timing. Every step is an operator pushed to the engine, so pushes
// and pulls are asynchronous and ordered by their arrays like any other op.
// The dist_* types need the MPI plugin and say how to launch (kvstore.cc).
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "kvstore/shared_segment.h"
#include "ndarray/ndarray.h"

namespace loom {

class KVStore {
 public:
  explicit KVStore(const std::string &type);
  // dist_async: waits at a barrier for every worker, then stops this rank's server.
  ~KVStore();
  KVStore(const KVStore &) = delete;
  KVStore &operator=(const KVStore &) = delete;
  const std::string &type() const { return type_; }
  int rank() const { return rank_; }
  int num_workers() const { return workers_; }
  bool dist() const { return dist_; }
  void barrier();

  // Stores a copy of each value (a key may be initialised once).
  void init(const std::vector<std::string> &keys, const std::vector<NDArray> &values);
  // Sums the values given for each key (keys may repeat) into the store, or
  // applies the updater with that sum as the gradient.
  void push(const std::vector<std::string> &keys, const std::vector<NDArray> &values);
  // Copies each key's value into the output(s) given for it (keys may repeat).
  void pull(const std::vector<std::string> &keys, const std::vector<NDArray> &outs);
  // push(keys, values) then pull(out_keys, outs). Across processes without an
  // updater, where each key has one value and one CPU output, the sum goes straight
  // into the output and the store's value (in the same passes where the ranks sum
  // in shared memory, else by an engine op after).
  void pushpull(const std::vector<std::string> &keys, const std::vector<NDArray> &values,
                const std::vector<std::string> &out_keys, const std::vector<NDArray> &outs);
  // The update op (an optimizer op such as sgd_mom_update: inputs weight, grad,
  // states...; outputs weight, states...) and its parameters. States start at 0;
  // an op with a "t" parameter is given each key's update count, from 1.
  void set_updater(const std::string &op, const std::vector<std::pair<std::string, std::string>> &params);
  // The updater's states (and update counts) in a .params file, and back.
  void save_states(const std::string &path);
  void load_states(const std::string &path);
  // dist_async: ends this rank's server thread (idempotent).
  void stop_server();

 private:
  struct Entry {
    NDArray value;
    std::vector<NDArray> states;
    int64_t updates = 0;
    // dist_sync with every rank on this host: the memory the ranks sum this key
    // in, and its sum as an array (the value itself while no updater is set).
    std::shared_ptr<SharedSegment> shared;
    NDArray sum;
  };
  Entry &entry(const std::string &key, const char *what);
  void apply_update(Entry &e, const NDArray &grad);
  static NDArray copy_to_context(const NDArray &a, const Context &ctx);
  static void copy_into(const NDArray &from, const NDArray &to);
  // dist_async (kvstore_async.cc): the rank serving a key, the server thread, and
  // the worker's side of a push and a pull.
  int owner(const std::string &key) const;
  void start_server();
  void serve();
  void await_reply(int dest, const std::string &key, const char *what);
  void async_push(const std::vector<std::string> &order, std::map<std::string, std::vector<NDArray>> &groups);
  void async_pull(const std::vector<std::string> &keys, const std::vector<NDArray> &outs);
  NDArray reduce(const std::string &key, std::vector<NDArray> values);
  // Every value has the key's shape and dtype (an error naming both otherwise).
  void reduce_check(const std::string &key, const std::vector<NDArray> &values);
  // Every rank pushes (or initialises) the same keys with the same sizes (one
  // exchange per call); the error's words come from `call`.
  struct Agreement {
    const char *op, *did, *unit, *rule;
  };
  static constexpr Agreement kPushAgreement{"push", "pushed", "values", "push the same keys in the same order"};
  static constexpr Agreement kInitAgreement{"init", "initialised", "bytes",
                                            "initialise the same keys, with the same shapes and dtypes, in the same order"};
  void check_agrees(const Agreement &call, const std::vector<std::string> &keys, const std::vector<int64_t> &sizes);
  // Sums a CPU array of key `e` over the ranks into dst, in rank order, identically on
  // every rank; with `into_value` the sum is also written to the key's value.
  void allreduce(const NDArray &src, const NDArray &dst, const Entry &e, bool into_value = false);
  void allreduce_shared(const Entry &e, const NDArray &src, const NDArray &dst, const NDArray *also);
  void allreduce_mpi(const NDArray &src, const NDArray &dst);
  // Rank 0's value of a CPU array, on every rank.
  void broadcast(const NDArray &a);

  std::string type_;
  bool dist_ = false, async_ = false;
  bool shared_memory_ = true;  // LOOM_KVSTORE_SHM=0 turns the shared-memory sums off
  int rank_ = 0, workers_ = 1;
  std::mutex mu_;  // one worker call at a time
  // dist_async: the server thread, and what it shares with the worker's calls (the
  // table, the updater, each entry's states); taken after mu_, never while waiting.
  std::thread server_;
  std::atomic<bool> stop_{false};
  std::mutex server_mu_;
  std::map<std::string, Entry> store_;
  // Reused scratch of allreduce, grown as needed.
  struct Scratch {
    std::unique_ptr<char[]> buf;
    size_t n = 0;
    size_t size() const { return n; }
    char *data() { return buf.get(); }
    void reset(size_t bytes) {
      buf.reset(new char[bytes]);
      n = bytes;
    }
  } scratch_;
  std::string updater_;
  std::vector<std::pair<std::string, std::string>> updater_params_;
};

}  // namespace loom
