#include "imperative/cached_op.h"

#include "imperative/trace.h"

#include <atomic>

namespace loom {

// One bound executor. While a recorded call waits for its backward the slot is
// leased to that call; a later call with the same signature takes another slot.
struct CachedOp::Slot {
  std::string signature;
  std::unique_ptr<Executor> exec;
  std::vector<NDArray> own_grads;  // the executor's own gradient buffers (empty: null request)
  // 0: free; else the lease number of the call holding it. Atomic: a recorded call's
  // node may be freed on an engine worker, which must never wait for the op's lock
  // (a caller holding it may be waiting in Engine::push for that worker).
  std::atomic<uint64_t> lease{0};
  // Its backward ran and the recording still reads its gradient buffers: not free,
  // and not to be taken back from the holder.
  std::atomic<bool> draining{false};
  uint64_t last_used = 0;  // for taking back the oldest lease when too many are held
};

namespace {
// Slots per signature held by calls that await backward before the oldest
// lease is taken back (its backward then fails with a clear message).
constexpr size_t kMaxLeased = 8;

std::string signature_of(const ArrayList &inputs, const std::vector<int32_t> &reqs) {
  std::string s = inputs.empty() ? std::string() : inputs[0].ctx().str();
  for (size_t i = 0; i < inputs.size(); ++i) {
    s += "|" + inputs[i].shape().str() + dtype_name(inputs[i].dtype());
    if (i < reqs.size()) s += reqs[i] ? "g" : "-";
  }
  return s;
}

NDArray copy_of(const NDArray &a) {
  ArrayList outs(1);
  bool was = autograd::set_recording(false);
  try {
    invoke(Registry::get().lookup("copy"), ArrayList{a}, outs, nullptr, nullptr, 0);
  } catch (...) {
    autograd::set_recording(was);
    throw;
  }
  autograd::set_recording(was);
  return outs[0];
}
}  // namespace

CachedOp::CachedOp(Symbol sym) : sym_(std::move(sym)) {
  LOOM_CHECK(!sym_.outputs.empty(), LOOM_ERR_INVALID_ARGUMENT, "cached op: the symbol has no outputs");
  arg_names_ = sym_.list_arguments();
  aux_names_ = sym_.list_auxiliary_states();
}

size_t CachedOp::num_executors() const {
  std::lock_guard<std::mutex> lk(*mu_);
  return slots_.size();
}

void CachedOp::invoke(const ArrayList &inputs, ArrayList &outputs) {
  LOOM_CHECK(!trace::active(), LOOM_ERR_INVALID_ARGUMENT,
             "cached op: called while a trace is open on this thread; a traced block runs its "
             "children imperatively so their ops are recorded");
  const size_t na = arg_names_.size(), nx = aux_names_.size();
  if (inputs.size() != na + nx) {
    std::string names;
    for (auto &n : arg_names_) names += (names.empty() ? "" : ", ") + n;
    for (auto &n : aux_names_) names += (names.empty() ? "" : ", ") + n;
    fail(LOOM_ERR_INVALID_ARGUMENT, "cached op: expects ", na + nx, " inputs (", names, "), got ",
         inputs.size());
  }
  for (size_t i = 0; i < inputs.size(); ++i) {
    const std::string &name = i < na ? arg_names_[i] : aux_names_[i - na];
    LOOM_CHECK(inputs[i].chunk(), LOOM_ERR_INVALID_ARGUMENT, "cached op: input '", name,
               "' has no memory");
    LOOM_CHECK(inputs[i].ctx() == inputs[0].ctx(), LOOM_ERR_INVALID_ARGUMENT,
               "cached op: input '", name, "' is on ", inputs[i].ctx().str(), " but '",
               i ? (na ? arg_names_[0] : aux_names_[0]) : name, "' is on ",
               inputs[0].ctx().str());
  }
  const bool recording = autograd::is_recording();
  const bool is_train = autograd::is_training();
  std::vector<int32_t> reqs(na, kNullOp);
  bool any_grad = false;
  for (size_t i = 0; i < na; ++i) {
    reqs[i] = recording && autograd::needs_grad(inputs[i]) ? kWriteTo : kNullOp;
    any_grad |= reqs[i] != kNullOp;
  }
  const std::string sig = signature_of(inputs, reqs);

  std::shared_ptr<Slot> slot;
  uint64_t lease = 0;
  ArrayList outs;
  {
    std::lock_guard<std::mutex> lk(*mu_);
    ++clock_;
    std::shared_ptr<Slot> oldest;
    size_t leased = 0;
    for (auto &s : slots_) {
      if (s->signature != sig) continue;
      if (!s->lease.load() && !s->draining.load()) {
        slot = s;
        break;
      }
      if (s->draining.load()) continue;
      ++leased;
      if (!oldest || s->last_used < oldest->last_used) oldest = s;
    }
    if (!slot && leased >= kMaxLeased) slot = oldest;  // its pending backward will refuse to run
    if (!slot) {
      BindSpec spec;
      spec.ctx = inputs[0].ctx();
      for (size_t i = 0; i < na; ++i) {
        spec.args.push_back(inputs[i].detached());
        spec.grad_req.push_back(reqs[i]);
        spec.grads.push_back(reqs[i] ? NDArray::empty(inputs[i].shape(), inputs[i].dtype(),
                                                      inputs[i].ctx())
                                     : NDArray());
      }
      for (size_t i = 0; i < nx; ++i) spec.aux.push_back(inputs[na + i].detached());
      // A hybridized block computes the imperative block's bits: no prediction
      // fusion (whose BatchNorm post-ops round differently).
      spec.fuse = false;
      slot = std::make_shared<Slot>();
      slot->signature = sig;
      slot->own_grads = spec.grads;
      try {
        slot->exec = Executor::bind(sym_, std::move(spec));
      } catch (const Error &e) {
        std::string given;
        for (size_t i = 0; i < inputs.size(); ++i)
          given += (i ? ", " : "") + (i < na ? arg_names_[i] : aux_names_[i - na]) + " " +
                   inputs[i].shape().str();
        throw Error(e.status(), std::string("cached op: the inputs (") + given +
                                    ") do not fit the graph: " + e.what());
      }
      slots_.push_back(slot);
    }
    for (size_t i = 0; i < inputs.size(); ++i)
      slot->exec->rebind(i < na ? Executor::Bound::Argument : Executor::Bound::AuxState,
                         i < na ? i : i - na, inputs[i]);
    slot->last_used = clock_;
    lease = any_grad ? clock_ : 0;
    slot->lease.store(lease);
    slot->exec->forward(is_train);
    // Copied out before another caller can push a forward on this executor.
    for (const NDArray &o : slot->exec->outputs()) outs.push_back(copy_of(o));
  }
  if (any_grad) {
    auto node = std::make_shared<AGNode>();
    node->is_train = is_train;
    node->inputs = inputs;
    node->custom_name = "cached op";
    std::vector<int32_t> rq = reqs;
    // The node keeps the slot leased until its backward and every reader of the
    // gradients it returns have been pushed (custom_done), or until it is freed.
    struct Release {
      std::shared_ptr<Slot> slot;
      uint64_t lease;
      std::shared_ptr<std::mutex> mu;
      ~Release() {
        uint64_t mine = lease;
        if (slot->lease.load() == mine) slot->draining.store(false);
        slot->lease.compare_exchange_strong(mine, 0);  // lock-free: see Slot::lease
      }
    };
    std::shared_ptr<Release> hold(new Release{slot, lease, mu_});  // built in place: no temporary to release early
    node->custom = [hold, rq, na, nx](const ArrayList &og, const ArrayList &dest) {
      std::shared_ptr<Slot> s = hold->slot;
      // Under the lock: no other caller rebinds or runs this executor meanwhile.
      std::lock_guard<std::mutex> lk(*hold->mu);
      LOOM_CHECK(s->lease.load() == hold->lease, LOOM_ERR_INVALID_ARGUMENT,
                 "backward: this call of a hybridized block can no longer be differentiated: "
                 "its executor was taken by later calls (more than ", kMaxLeased,
                 " calls awaited backward) or its backward already ran; run backward once "
                 "per forward");
      // Gradients of variables this call alone feeds go straight into their buffers;
      // the rest into the executor's own.
      for (size_t i = 0; i < na; ++i)
        if (rq[i])
          s->exec->rebind(Executor::Bound::Gradient, i,
                          i < dest.size() && dest[i].chunk() ? dest[i] : s->own_grads[i]);
      std::vector<NDArray> hg(og.begin(), og.end());
      s->exec->backward(hg);
      ArrayList ig(na + nx);
      // The executor's own gradient buffers, lent until the recording has pushed
      // every reader (custom_done): until then no other call may run this executor.
      for (size_t i = 0; i < na; ++i)
        if (rq[i]) ig[i] = s->exec->spec().grads[i];
      s->draining.store(true);
      return ig;
    };
    node->custom_done = [hold]() {
      std::lock_guard<std::mutex> lk(*hold->mu);
      if (hold->slot->lease.load() != hold->lease) return;
      hold->slot->draining.store(false);
      hold->slot->lease.store(0);
    };
    autograd::record_node(node, outs);
  }
  outputs = std::move(outs);
}

}  // namespace loom
