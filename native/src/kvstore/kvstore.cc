#include "kvstore/kvstore.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>

#include "imperative/imperative.h"
#include "kvstore/comm.h"
#include "op/registry.h"
#include "ops/common.h"

namespace loom {
namespace {

// Calls an op imperatively; `outs` may hold arrays to write into.
ArrayList call(const char *name, const ArrayList &ins, ArrayList outs = {},
               const std::vector<std::pair<std::string, std::string>> &params = {}) {
  const OpDef &op = Registry::get().lookup(name);
  std::vector<const char *> k, v;
  for (auto &p : params) {
    k.push_back(p.first.c_str());
    v.push_back(p.second.c_str());
  }
  if (outs.empty()) outs.resize(op.output_count(Params(op, k.data(), v.data(), static_cast<int32_t>(k.size()))));
  invoke(op, ins, outs, k.data(), v.data(), static_cast<int32_t>(k.size()));
  return outs;
}

NDArray copy_to(const NDArray &a, const Context &ctx) {
  ArrayList out;
  out.push_back(NDArray::empty(a.shape(), a.dtype(), ctx));
  return call("copy", ArrayList{a}, out)[0];
}

std::string ctx_str(const Context &c) { return c.str(); }

bool known_dist(const std::string &t) {
  return t == "dist_sync" || t == "dist_async" || t == "dist_device_sync" || t == "dist_sync_device" ||
         t == "dist";
}

}  // namespace

KVStore::KVStore(const std::string &type) : type_(type) {
  if (known_dist(type)) {
    LOOM_CHECK(type != "dist_async", LOOM_ERR_BACKEND_UNAVAILABLE,
               "kvstore 'dist_async' (servers applying updates as they arrive) is not implemented; "
               "use dist_sync");
    try {
      const loom_comm &c = comm();
      rank_ = c.rank();
      workers_ = c.size();
    } catch (const Error &e) {
      fail(e.status(), "kvstore '", type, "' works across processes through the MPI plugin: ", e.what());
    }
    dist_ = true;
    return;
  }
  LOOM_CHECK(type == "local" || type == "device", LOOM_ERR_INVALID_ARGUMENT, "kvstore: unknown type '",
             type, "'; one of local, device, dist_sync, dist_device_sync, dist_async");
}

namespace {
void comm_check(int rc, const char *what) {
  if (rc != 0) fail(LOOM_ERR_IO, "kvstore: ", what, " failed across the workers: ", comm().last_error());
}
}  // namespace

void KVStore::barrier() {
  if (dist_) comm_check(comm().barrier(), "barrier");
}

void KVStore::broadcast(const NDArray &a) {
  a.wait_to_read();
  const size_t bytes = a.nbytes();
  std::vector<char> all(bytes * static_cast<size_t>(workers_));
  comm_check(comm().allgather(a.data(), bytes, all.data()), "init (broadcast of rank 0's value)");
  a.copy_from_host(all.data(), bytes);
}

// A reduce-scatter by all-to-all, each chunk summed by its owner in rank order,
// then an all-gather of the sums: 2 (N-1)/N of the array moved each way, like a
// ring all-reduce, and every rank ends with the same bits.
void KVStore::allreduce(const std::string &key, const NDArray &a) {
  a.wait_to_write();  // its buffer is sent from and written in place below
  const int n = workers_;
  // Every rank must push the same key with the same size now: compare a small
  // header first, so a mismatch is an error naming the ranks, not a hang or garbage.
  uint64_t header[2] = {std::hash<std::string>{}(key), static_cast<uint64_t>(a.size())};
  std::vector<uint64_t> headers(2 * static_cast<size_t>(n));
  comm_check(comm().allgather(header, sizeof header, headers.data()), ("push of key '" + key + "'").c_str());
  for (int r = 0; r < n; ++r)
    LOOM_CHECK(headers[2 * r] == header[0] && headers[2 * r + 1] == header[1], LOOM_ERR_INVALID_ARGUMENT,
               "kvstore push: rank ", rank_, " pushed key '", key, "' with ", a.size(), " values (",
               a.shape().str(), "), but rank ", r, " pushed another key or size (",
               headers[2 * r + 1], " values) at the same time; every worker must push the same keys in the same order");
  const int64_t count = a.size();
  const int64_t q = (count + n - 1) / n;
  const size_t es = dtype_size(a.dtype()), block = static_cast<size_t>(q) * es;
  // Where the array splits evenly its own buffer is sent from and gathered into;
  // otherwise a zero-padded copy is. Scratch is never zero-filled needlessly.
  const bool even = static_cast<size_t>(a.nbytes()) == block * n;
  std::unique_ptr<char[]> padded(even ? nullptr : new char[block * n]()), recv(new char[block * n]);
  char *data = static_cast<char *>(a.data());
  if (!even) std::memcpy(padded.get(), data, a.nbytes());
  char *io = even ? data : padded.get();
  comm_check(comm().alltoall(io, block, recv.get()), ("push of key '" + key + "'").c_str());
  // This rank's chunk, summed in rank order into the first received block.
  LOOM_DTYPE_SWITCH(a.dtype(), T, {
    T *acc = reinterpret_cast<T *>(recv.get());
    for (int r = 1; r < n; ++r) {
      const T *part = reinterpret_cast<const T *>(recv.get() + block * r);
      for (int64_t i = 0; i < q; ++i) acc[i] = wrap_add(acc[i], part[i]);
    }
  });
  comm_check(comm().allgather(recv.get(), block, io), ("push of key '" + key + "'").c_str());
  if (!even) std::memcpy(data, padded.get(), a.nbytes());
}

KVStore::Entry &KVStore::entry(const std::string &key, const char *what) {
  auto it = store_.find(key);
  LOOM_CHECK(it != store_.end(), LOOM_ERR_NOT_FOUND, "kvstore ", what, ": key '", key,
             "' was never initialised (call init first)");
  return it->second;
}

void KVStore::init(const std::vector<std::string> &keys, const std::vector<NDArray> &values) {
  LOOM_CHECK(keys.size() == values.size(), LOOM_ERR_INVALID_ARGUMENT, "kvstore init: ", keys.size(),
             " keys but ", values.size(), " values");
  std::lock_guard<std::mutex> lk(mu_);
  for (size_t i = 0; i < keys.size(); ++i)
    LOOM_CHECK(!store_.count(keys[i]), LOOM_ERR_INVALID_ARGUMENT, "kvstore init: key '", keys[i],
               "' is already initialised");
  for (size_t i = 0; i < keys.size(); ++i) {
    Context where = type_ == "local" || dist_ ? Context{} : values[i].ctx();
    store_[keys[i]].value = copy_to(values[i], where);
    if (dist_) broadcast(store_[keys[i]].value);  // every worker starts from rank 0's value
  }
}

// The values of one key, added in device order (then push order), on the
// store's device for `local` or the lowest-numbered value's device otherwise.
NDArray KVStore::reduce(const std::string &key, std::vector<NDArray> values) {
  const Entry &e = entry(key, "push");
  for (const NDArray &v : values) {
    LOOM_CHECK(v.shape() == e.value.shape() && v.dtype() == e.value.dtype(), LOOM_ERR_SHAPE,
               "kvstore push: key '", key, "' holds ", e.value.shape().str(), " ",
               dtype_name(e.value.dtype()), ", but a value of ", v.shape().str(), " ", dtype_name(v.dtype()),
               " was pushed (rank ", rank(), ")");
  }
  std::stable_sort(values.begin(), values.end(), [](const NDArray &a, const NDArray &b) {
    return std::make_pair(a.ctx().dev_type, a.ctx().dev_id) < std::make_pair(b.ctx().dev_type, b.ctx().dev_id);
  });
  Context where = type_ == "local" || type_ == "dist_sync" ? e.value.ctx() : values.front().ctx();
  ArrayList parts;
  for (const NDArray &v : values) parts.push_back(v.ctx() == where ? v : copy_to(v, where));
  if (parts.size() == 1) return copy_to(parts[0], where);
  return call("ElementWiseSum", parts, {}, {{"num_args", std::to_string(parts.size())}})[0];
}

void KVStore::push(const std::vector<std::string> &keys, const std::vector<NDArray> &values) {
  LOOM_CHECK(keys.size() == values.size(), LOOM_ERR_INVALID_ARGUMENT, "kvstore push: ", keys.size(),
             " keys but ", values.size(), " values");
  std::lock_guard<std::mutex> lk(mu_);
  // Group by key, keeping the first-seen order of keys.
  std::vector<std::string> order;
  std::map<std::string, std::vector<NDArray>> groups;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (!groups.count(keys[i])) order.push_back(keys[i]);
    groups[keys[i]].push_back(values[i]);
  }
  for (const std::string &key : order) entry(key, "push");  // every key checked before any work
  for (const std::string &key : order) {
    Entry &e = store_[key];
    if (dist_ && updater_.empty()) {
      // No updater: the sum is the stored value. One value is copied straight into it
      // (several are added in device order first), then summed over ranks in place.
      const auto &vals = groups[key];
      if (vals.size() == 1) {
        LOOM_CHECK(vals[0].shape() == e.value.shape() && vals[0].dtype() == e.value.dtype(), LOOM_ERR_SHAPE,
                   "kvstore push: key '", key, "' holds ", e.value.shape().str(), " ", dtype_name(e.value.dtype()),
                   ", but a value of ", vals[0].shape().str(), " ", dtype_name(vals[0].dtype()), " was pushed (rank ",
                   rank(), ")");
        call("copy", ArrayList{vals[0]}, ArrayList{e.value});
      } else {
        call("copy", ArrayList{reduce(key, vals)}, ArrayList{e.value});
      }
      allreduce(key, e.value);
      continue;
    }
    NDArray merged = reduce(key, groups[key]);
    if (merged.ctx() != e.value.ctx()) merged = copy_to(merged, e.value.ctx());
    if (dist_) allreduce(key, merged);  // devices first, then ranks
    if (updater_.empty()) {
      call("copy", ArrayList{merged}, ArrayList{e.value});
      continue;
    }
    const OpDef &op = Registry::get().lookup(updater_);
    size_t nstates = op.inputs.size() - 2;
    while (e.states.size() < nstates) {
      NDArray z = NDArray::empty(e.value.shape(), e.value.dtype(), e.value.ctx());
      call("zeros", ArrayList{}, ArrayList{z},
           {{"shape", e.value.shape().str()}, {"dtype", dtype_name(e.value.dtype())}, {"ctx", ctx_str(e.value.ctx())}});
      e.states.push_back(z);
    }
    ++e.updates;
    auto params = updater_params_;
    bool has_t = false;
    for (auto &p : op.params) has_t |= p.name == "t";
    if (has_t && std::none_of(params.begin(), params.end(), [](auto &kv) { return kv.first == "t"; }))
      params.emplace_back("t", std::to_string(e.updates));
    ArrayList ins{e.value, merged}, outs{e.value};
    for (NDArray &s : e.states) {
      ins.push_back(s);
      outs.push_back(s);
    }
    call(updater_.c_str(), ins, outs, params);
  }
}

void KVStore::pull(const std::vector<std::string> &keys, const std::vector<NDArray> &outs) {
  LOOM_CHECK(keys.size() == outs.size(), LOOM_ERR_INVALID_ARGUMENT, "kvstore pull: ", keys.size(),
             " keys but ", outs.size(), " outputs");
  std::lock_guard<std::mutex> lk(mu_);
  for (size_t i = 0; i < keys.size(); ++i) {
    const Entry &e = entry(keys[i], "pull");
    LOOM_CHECK(outs[i].shape() == e.value.shape() && outs[i].dtype() == e.value.dtype(), LOOM_ERR_SHAPE,
               "kvstore pull: key '", keys[i], "' holds ", e.value.shape().str(), " ",
               dtype_name(e.value.dtype()), ", but the output is ", outs[i].shape().str(), " ",
               dtype_name(outs[i].dtype()));
  }
  for (size_t i = 0; i < keys.size(); ++i) call("copy", ArrayList{store_[keys[i]].value}, ArrayList{outs[i]});
}

void KVStore::set_updater(const std::string &op_name,
                          const std::vector<std::pair<std::string, std::string>> &params) {
  const OpDef &op = Registry::get().lookup(op_name);
  LOOM_CHECK(op.inputs.size() >= 2 && op.inputs[0] == "weight" && op.inputs[1] == "grad" &&
                 !op.num_outputs && op.outputs.size() + 1 == op.inputs.size(),
             LOOM_ERR_INVALID_ARGUMENT, "kvstore set_updater: '", op_name,
             "' is not an update op (inputs weight, grad, states...; outputs weight, states...)");
  std::vector<const char *> k, v;
  for (auto &p : params) {
    k.push_back(p.first.c_str());
    v.push_back(p.second.c_str());
  }
  Params check(op, k.data(), v.data(), static_cast<int32_t>(k.size()));  // unknown names fail here
  (void)check;
  std::lock_guard<std::mutex> lk(mu_);
  updater_ = op_name;
  updater_params_ = params;
}

void KVStore::save_states(const std::string &path) {
  std::lock_guard<std::mutex> lk(mu_);
  std::vector<NDArray> arrays;
  std::vector<std::string> names;
  for (auto &[key, e] : store_) {
    for (size_t s = 0; s < e.states.size(); ++s) {
      arrays.push_back(e.states[s]);
      names.push_back("state" + std::to_string(s) + ":" + key);
    }
    NDArray t = NDArray::empty(Shape{1}, kInt64, Context{});
    t.copy_from_host(&e.updates, sizeof(int64_t));
    arrays.push_back(t);
    names.push_back("t:" + key);
  }
  for (auto &a : arrays) a.wait_to_read();
  save_params(path, arrays, names);
}

void KVStore::load_states(const std::string &path) {
  auto loaded = load_params(path);
  std::lock_guard<std::mutex> lk(mu_);
  for (auto &[name, arr] : loaded) {
    size_t colon = name.find(':');
    LOOM_CHECK(colon != std::string::npos, LOOM_ERR_IO, "kvstore load_states: '", path, "' entry '", name,
               "' is neither state<i>:key nor t:key");
    std::string kind = name.substr(0, colon), key = name.substr(colon + 1);
    Entry &e = entry(key, "load_states");
    if (kind == "t") {
      LOOM_CHECK(arr.size() == 1 && arr.dtype() == kInt64, LOOM_ERR_IO, "kvstore load_states: '", path,
                 "' entry '", name, "' must be one int64");
      arr.copy_to_host(&e.updates, sizeof(int64_t));
      continue;
    }
    LOOM_CHECK(kind.rfind("state", 0) == 0, LOOM_ERR_IO, "kvstore load_states: '", path, "' entry '", name,
               "' is neither state<i>:key nor t:key");
    size_t s = static_cast<size_t>(std::atoi(kind.c_str() + 5));
    LOOM_CHECK(arr.shape() == e.value.shape(), LOOM_ERR_SHAPE, "kvstore load_states: state of key '", key,
               "' has shape ", arr.shape().str(), ", but the key holds ", e.value.shape().str());
    if (e.states.size() <= s) e.states.resize(s + 1);
    e.states[s] = copy_to(arr, e.value.ctx());
  }
}

}  // namespace loom
