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
    try {
      const loom_comm &c = comm();
      rank_ = c.rank();
      workers_ = c.size();
    } catch (const Error &e) {
      fail(e.status(), "kvstore '", type, "' works across processes through the MPI plugin: ", e.what());
    }
    dist_ = true;
    async_ = type == "dist_async";
    const char *shm = std::getenv("LOOM_KVSTORE_SHM");
    shared_memory_ = !(shm && std::string(shm) == "0");
    if (async_) start_server();
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

// Before a push or an init moves any data, every rank must be calling it with the
// same keys and sizes: one exchange of a small fixed-size header per call (the key
// count and a hash of the keys and sizes), so a mismatch is an error naming the
// keys and ranks on every rank, not a hang or garbage.
void KVStore::check_agrees(const Agreement &call, const std::vector<std::string> &keys,
                           const std::vector<int64_t> &sizes) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a over "key\0size\0..."
  auto mix = [&h](const void *p, size_t n) {
    for (size_t i = 0; i < n; ++i) h = (h ^ static_cast<const unsigned char *>(p)[i]) * 1099511628211ull;
  };
  for (size_t i = 0; i < keys.size(); ++i) {
    mix(keys[i].c_str(), keys[i].size() + 1);
    mix(&sizes[i], sizeof sizes[i]);
  }
  uint64_t header[2] = {static_cast<uint64_t>(keys.size()), h};
  std::vector<uint64_t> headers(2 * static_cast<size_t>(workers_));
  const std::string what = std::string(call.op) + " of key '" + (keys.empty() ? std::string() : keys[0]) + "'";
  comm_check(comm().allgather(header, sizeof header, headers.data()), what.c_str());
  for (int r = 0; r < workers_; ++r) {
    if (headers[2 * r] == header[0] && headers[2 * r + 1] == header[1]) continue;
    std::string mine;
    for (size_t i = 0; i < keys.size() && i < 4; ++i)
      mine += (i ? ", '" : "'") + keys[i] + "' (" + std::to_string(sizes[i]) + " " + call.unit + ")";
    if (keys.size() > 4) mine += ", ...";
    fail(LOOM_ERR_INVALID_ARGUMENT, "kvstore ", call.op, ": rank ", rank_, " ", call.did, " ", keys.size(),
         " key(s) ", mine, ", but rank ", r, " ", call.did, " ", headers[2 * r],
         " key(s) with other names or sizes at the same time; every worker must ", call.rule);
  }
}

namespace {
// Where a key's sums live in its shared segment: the whole sum first (chunk j
// written by rank j), then one region per rank whose chunk j (j != r) holds rank
// r's values of the chunk rank j sums. A chunk is an equal share of the array in
// whole cache lines, so no two ranks write one line; areas start on pages.
struct SharedLayout {
  int64_t count, chunk;  // elements
  size_t sum_bytes, region_bytes;
  SharedLayout(int64_t count_, int ranks, size_t es) : count(count_) {
    const int64_t line = std::max<int64_t>(1, 64 / static_cast<int64_t>(es));
    chunk = ((count + ranks - 1) / ranks + line - 1) / line * line;
    const size_t page = 4096;
    sum_bytes = region_bytes = (static_cast<size_t>(chunk) * es * ranks + page - 1) / page * page;
  }
  size_t total(int ranks) const { return sum_bytes + region_bytes * static_cast<size_t>(ranks); }
  // The elements [begin(j), end(j)) rank j sums.
  int64_t begin(int j) const { return std::min(count, chunk * j); }
  int64_t end(int j) const { return std::min(count, chunk * (j + 1)); }
};
}  // namespace

void KVStore::allreduce(const NDArray &src, const NDArray &dst, const Entry &e, bool into_value) {
  if (e.shared) return allreduce_shared(e, src, dst, into_value && !e.value.same_memory(e.sum) ? &e.value : nullptr);
  allreduce_mpi(src, dst);
  if (into_value) call("copy", ArrayList{dst}, ArrayList{e.value});  // an engine op, off the caller's path
}

// Every rank on this host. Each rank copies its values of the chunks others own
// into its region; after a barrier it adds its own chunk in rank order (its own
// values read in place) into the shared sum and `dst`; after a second barrier it
// copies the others' chunks of the sum into `dst`. With two ranks each reads
// about two arrays' worth and writes one and a half, less than MPI's all-reduce
// between processes, and the key's value is that shared sum (without an
// updater), so keeping it costs nothing. No rank writes the shared memory before
// the next call's first barrier, and every rank first waits for its own pending
// reads of the sum (pulls), so none is read while it changes. The additions are
// allreduce_mpi's, in the same order: the same bits.
void KVStore::allreduce_shared(const Entry &e, const NDArray &src, const NDArray &dst, const NDArray *also) {
  src.wait_to_read();
  e.sum.wait_to_write();
  const bool into_dst = !dst.same_memory(e.sum);
  if (into_dst) dst.wait_to_write();
  if (also) also->wait_to_write();
  const int n = workers_, me = rank_;
  const size_t es = dtype_size(src.dtype());
  const SharedLayout at(src.size(), n, es);
  char *const sum = e.shared->base();
  auto region = [&](int r) { return sum + at.sum_bytes + at.region_bytes * static_cast<size_t>(r); };
  const char *in = static_cast<const char *>(src.data());
  char *outs[2] = {into_dst ? static_cast<char *>(dst.data()) : nullptr,
                   also ? static_cast<char *>(also->data()) : nullptr};
  for (int j = 0; j < n; ++j)
    if (j != me) std::memcpy(region(me) + at.begin(j) * es, in + at.begin(j) * es, (at.end(j) - at.begin(j)) * es);
  comm_check(comm().barrier(), "push (all-reduce in shared memory)");
  LOOM_DTYPE_SWITCH(src.dtype(), T, {
    const int64_t b = at.begin(me), len = at.end(me) - b;
    std::vector<const T *> part(n);
    for (int r = 0; r < n; ++r) part[r] = reinterpret_cast<const T *>(r == me ? in : region(r)) + b;
    constexpr int64_t kBlock = 2048;  // stays in cache while the ranks' values are added
    for (int64_t i0 = 0; i0 < len; i0 += kBlock) {
      const int64_t m = std::min(kBlock, len - i0);
      T *acc = reinterpret_cast<T *>(sum) + b + i0;
      std::copy(part[0] + i0, part[0] + i0 + m, acc);
      for (int r = 1; r < n; ++r) {
        const T *x = part[r] + i0;
        for (int64_t i = 0; i < m; ++i) acc[i] = wrap_add(acc[i], x[i]);
      }
      for (char *o : outs)
        if (o) std::copy(acc, acc + m, reinterpret_cast<T *>(o) + b + i0);
    }
  });
  comm_check(comm().barrier(), "push (all-reduce in shared memory)");
  for (char *o : outs)
    for (int j = 0; o && j < n; ++j)
      if (j != me) std::memcpy(o + at.begin(j) * es, sum + at.begin(j) * es, (at.end(j) - at.begin(j)) * es);
}

// Sums `src` over the ranks into `dst` (which may be `src`), in rank order, with
// the same bits on every rank: a reduce-scatter by all-to-all, each chunk summed
// by its owner in rank order, then an all-gather of the sums straight into `dst`:
// 2 (N-1)/N of the array moved each way, like a ring all-reduce. Both arrays are
// CPU arrays of the same size and dtype.
void KVStore::allreduce_mpi(const NDArray &src, const NDArray &dst) {
  src.wait_to_read();
  dst.wait_to_write();  // its buffer is written below
  const int n = workers_;
  const int64_t count = src.size();
  // Two ranks below 32 MB: MPI's own all-reduce. With two ranks each element is
  // one addition, a + b == b + a, so the bits cannot depend on MPI's algorithm.
  // Open MPI 4.1 is faster there (1.1-1.9x ours at 1-24 MB measured); between
  // 24 and 32 MB it switches algorithm, and from there ours is 1.2-1.6x faster.
  constexpr size_t kMpiBelow = size_t{32} << 20;
  const bool floats = src.dtype() == LOOM_DTYPE_FLOAT32 || src.dtype() == LOOM_DTYPE_FLOAT64;
  if (n == 2 && floats && src.nbytes() < kMpiBelow) {
    const int32_t code = src.dtype() == LOOM_DTYPE_FLOAT32 ? LOOM_COMM_FLOAT32 : LOOM_COMM_FLOAT64;
    comm_check(comm().allreduce_sum(src.data(), dst.data(), static_cast<size_t>(count), code), "push (all-reduce)");
    return;
  }
  const int64_t q = (count + n - 1) / n;
  const size_t es = dtype_size(src.dtype()), block = static_cast<size_t>(q) * es;
  // Scratch is kept between pushes (fresh pages would be faulted in on every push)
  // and never zero-filled needlessly. Where the array splits evenly the arrays'
  // own buffers are sent from and gathered into; otherwise a zero-padded copy is.
  const bool even = static_cast<size_t>(src.nbytes()) == block * n;
  const size_t need = block * n * (even ? 1 : 2);
  if (scratch_.size() < need) scratch_.reset(need);
  char *recv = scratch_.data(), *padded = even ? nullptr : scratch_.data() + block * n;
  if (!even) {
    std::memcpy(padded, src.data(), src.nbytes());
    std::memset(padded + src.nbytes(), 0, block * n - src.nbytes());
  }
  const char *send = even ? static_cast<const char *>(src.data()) : padded;
  comm_check(comm().alltoall(send, block, recv), "push (reduce-scatter)");
  // This rank's chunk, summed in rank order into the first received block.
  LOOM_DTYPE_SWITCH(src.dtype(), T, {
    T *acc = reinterpret_cast<T *>(recv);
    for (int r = 1; r < n; ++r) {
      const T *part = reinterpret_cast<const T *>(recv + block * r);
      for (int64_t i = 0; i < q; ++i) acc[i] = wrap_add(acc[i], part[i]);
    }
  });
  char *gather = even ? static_cast<char *>(dst.data()) : padded;
  comm_check(comm().allgather(recv, block, gather), "push (all-gather)");
  if (!even) std::memcpy(dst.data(), padded, dst.nbytes());
}

NDArray KVStore::copy_to_context(const NDArray &a, const Context &ctx) { return copy_to(a, ctx); }

void KVStore::copy_into(const NDArray &from, const NDArray &to) { call("copy", ArrayList{from}, ArrayList{to}); }

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
  if (dist_) {  // rank 0's values are sent to every rank: the same keys, shapes and dtypes
    std::vector<int64_t> bytes;
    for (const NDArray &v : values) bytes.push_back(static_cast<int64_t>(v.nbytes()));
    check_agrees(kInitAgreement, keys, bytes);
  }
  for (size_t i = 0; i < keys.size(); ++i) {
    Context where = type_ == "local" || dist_ ? Context{} : values[i].ctx();
    NDArray v = copy_to(values[i], where);
    if (dist_) broadcast(v);  // every worker starts from rank 0's value
    std::shared_ptr<SharedSegment> shared;
    const size_t es = dtype_size(v.dtype());
    const SharedLayout at(v.size(), workers_, es);
    if (dist_ && !async_ && workers_ > 1)
      shared = SharedSegment::open(comm(), at.total(workers_), shared_memory_ && v.size() > 0);
    NDArray sum;
    if (shared) {
      // The key's value becomes the shared sum (a private copy once an updater is
      // set): each rank writes its chunk of rank 0's value, then all wait.
      sum = NDArray::external(shared->base(), v.shape(), v.dtype(), v.ctx(), [shared] {});
      const int64_t b = at.begin(rank_), e = at.end(rank_);
      v.wait_to_read();
      std::memcpy(shared->base() + b * es, static_cast<const char *>(v.data()) + b * es, (e - b) * es);
      barrier();
      if (updater_.empty()) v = sum;
    }
    std::lock_guard<std::mutex> slk(server_mu_);
    Entry &e = store_[keys[i]];
    e.value = v;
    e.shared = std::move(shared);
    e.sum = sum;
  }
}

// The values of one key, added in device order (then push order), on the
// store's device for `local` or the lowest-numbered value's device otherwise.
void KVStore::reduce_check(const std::string &key, const std::vector<NDArray> &values) {
  const Entry &e = entry(key, "push");
  for (const NDArray &v : values) {
    LOOM_CHECK(v.shape() == e.value.shape() && v.dtype() == e.value.dtype(), LOOM_ERR_SHAPE,
               "kvstore push: key '", key, "' holds ", e.value.shape().str(), " ",
               dtype_name(e.value.dtype()), ", but a value of ", v.shape().str(), " ", dtype_name(v.dtype()),
               " was pushed (rank ", rank(), ")");
  }
}

NDArray KVStore::reduce(const std::string &key, std::vector<NDArray> values) {
  reduce_check(key, values);
  const Entry &e = entry(key, "push");
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
  if (async_) {
    LOOM_CHECK(!updater_.empty(), LOOM_ERR_INVALID_ARGUMENT, "kvstore push (dist_async, rank ", rank_,
               "): an asynchronous store applies every push with its updater, and none is set; call "
               "set_optimizer/set_updater first (MXNet: 'Updater needs to be set for async mode')");
    for (const std::string &key : order) reduce_check(key, groups[key]);
    async_push(order, groups);
    return;
  }
  if (dist_) {
    std::vector<int64_t> sizes;
    for (const std::string &key : order) sizes.push_back(store_[key].value.size());
    check_agrees(kPushAgreement, order, sizes);
  }
  for (const std::string &key : order) {
    Entry &e = store_[key];
    if (dist_ && updater_.empty()) {
      // No updater: the sum is the stored value. One value is summed over the ranks
      // straight into it; several are added in device order first.
      const auto &vals = groups[key];
      if (vals.size() == 1 && vals[0].ctx() == e.value.ctx()) {
        LOOM_CHECK(vals[0].shape() == e.value.shape() && vals[0].dtype() == e.value.dtype(), LOOM_ERR_SHAPE,
                   "kvstore push: key '", key, "' holds ", e.value.shape().str(), " ", dtype_name(e.value.dtype()),
                   ", but a value of ", vals[0].shape().str(), " ", dtype_name(vals[0].dtype()), " was pushed (rank ",
                   rank(), ")");
        allreduce(vals[0], e.value, e);
      } else {
        NDArray merged = reduce(key, vals);
        if (merged.ctx() != e.value.ctx()) merged = copy_to(merged, e.value.ctx());
        allreduce(merged, e.value, e);
      }
      continue;
    }
    NDArray merged = reduce(key, groups[key]);
    if (merged.ctx() != e.value.ctx()) merged = copy_to(merged, e.value.ctx());
    if (dist_) allreduce(merged, merged, e);  // devices first, then ranks
    if (updater_.empty()) {
      call("copy", ArrayList{merged}, ArrayList{e.value});
      continue;
    }
    apply_update(e, merged);
  }
}

// The updater op on a key's value and states, with `grad` as the gradient.
void KVStore::apply_update(Entry &e, const NDArray &grad) {
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
  ArrayList ins{e.value, grad}, outs{e.value};
  for (NDArray &st : e.states) {
    ins.push_back(st);
    outs.push_back(st);
  }
  call(updater_.c_str(), ins, outs, params);
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
  if (async_) return async_pull(keys, outs);
  for (size_t i = 0; i < keys.size(); ++i) call("copy", ArrayList{store_[keys[i]].value}, ArrayList{outs[i]});
}

void KVStore::pushpull(const std::vector<std::string> &keys, const std::vector<NDArray> &values,
                       const std::vector<std::string> &out_keys, const std::vector<NDArray> &outs) {
  bool direct = dist_ && !async_ && keys == out_keys && values.size() == keys.size() && outs.size() == keys.size();
  if (direct) {
    std::lock_guard<std::mutex> lk(mu_);
    direct = updater_.empty();
    std::vector<std::string> seen;
    for (size_t i = 0; direct && i < keys.size(); ++i) {
      auto it = store_.find(keys[i]);
      direct = it != store_.end() && std::find(seen.begin(), seen.end(), keys[i]) == seen.end() &&
               values[i].ctx() == it->second.value.ctx() && outs[i].ctx() == it->second.value.ctx() &&
               values[i].shape() == it->second.value.shape() && values[i].dtype() == it->second.value.dtype() &&
               outs[i].shape() == it->second.value.shape() && outs[i].dtype() == it->second.value.dtype();
      seen.push_back(keys[i]);
    }
    if (direct) {
      std::vector<int64_t> sizes;
      for (const std::string &key : keys) sizes.push_back(store_[key].value.size());
      check_agrees(kPushAgreement, keys, sizes);
      for (size_t i = 0; i < keys.size(); ++i) allreduce(values[i], outs[i], store_[keys[i]], true);
      return;
    }
  }
  // Anything else (an updater, several values for a key, other devices, a bad
  // argument, which push and pull report): the two steps.
  push(keys, values);
  pull(out_keys, outs);
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
  {
    std::lock_guard<std::mutex> slk(server_mu_);
    updater_ = op_name;
    updater_params_ = params;
  }
  // Every rank updates its own weights: a value kept in shared memory becomes a
  // private copy (finished here, before any rank can change the shared sum).
  for (auto &[key, e] : store_)
    if (e.shared && e.value.same_memory(e.sum)) {
      e.value = copy_to(e.sum, e.sum.ctx());
      e.value.wait_to_read();
    }
  // dist_async: every rank serves keys with its own updater, so every worker sets
  // it, and nobody pushes before all servers have it (MXNet's set_optimizer on a
  // distributed store reaches every server before it returns).
  if (async_) barrier();
}

void KVStore::save_states(const std::string &path) {
  LOOM_CHECK(!async_, LOOM_ERR_INVALID_ARGUMENT, "kvstore save_states: a dist_async store's optimizer states "
             "live on the servers of their keys and cannot be saved from a worker (as in MXNet)");
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
  LOOM_CHECK(!async_, LOOM_ERR_INVALID_ARGUMENT, "kvstore load_states: a dist_async store's optimizer states "
             "live on the servers of their keys and cannot be loaded by a worker (as in MXNet)");
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
