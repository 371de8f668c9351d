#include "imperative/autograd.h"

#include "backend/device.h"

#include <map>
#include <unordered_map>
#include <unordered_set>

namespace loom {
namespace autograd {
namespace {
thread_local bool t_recording = false;
thread_local bool t_training = false;

const OpDef &op_named(const char *name) { return Registry::get().lookup(name); }

NDArray run(const char *name, const ArrayList &ins, const char *const *k = nullptr,
            const char *const *v = nullptr, int32_t n = 0) {
  ArrayList outs(1);
  bool was = set_recording(false);
  try {
    invoke(op_named(name), ins, outs, k, v, n);
  } catch (...) {
    set_recording(was);
    throw;
  }
  set_recording(was);
  return outs[0];
}

void run_into(const char *name, const ArrayList &ins, const NDArray &out) {
  ArrayList outs{out};
  bool was = set_recording(false);
  try {
    invoke(op_named(name), ins, outs, nullptr, nullptr, 0);
  } catch (...) {
    set_recording(was);
    throw;
  }
  set_recording(was);
}

NDArray filled(const NDArray &like, const char *value) {
  std::string shape = "(";
  for (int i = 0; i < like.shape().ndim; ++i) shape += std::to_string(like.shape().d[i]) + ",";
  shape += ")";
  std::string ctx = like.ctx().str();
  const char *k[] = {"shape", "dtype", "ctx", "value"};
  const char *v[] = {shape.c_str(), dtype_name(like.dtype()), ctx.c_str(), value};
  return run("full", {}, k, v, 4);
}

NDArray sum_into(const NDArray &acc, const NDArray &g) {
  return acc.chunk() ? run("add", ArrayList{acc, g}) : g;
}
}  // namespace

bool needs_grad(const NDArray &a) {
  const auto &ag = a.ag();
  return ag && (ag->node || (ag->is_variable && ag->grad_req != kNullOp));
}

void record_node(const std::shared_ptr<AGNode> &node, ArrayList &outputs) {
  node->outputs.clear();
  for (const NDArray &o : outputs) node->outputs.push_back(o.detached());
  for (size_t j = 0; j < outputs.size(); ++j) {
    auto info = std::make_shared<AGInfo>();
    info->node = node;
    info->index = static_cast<int>(j);
    outputs[j].set_ag(std::move(info));
  }
}

bool is_recording() { return t_recording; }
bool set_recording(bool on) {
  bool prev = t_recording;
  t_recording = on;
  return prev;
}
bool is_training() { return t_training; }
bool set_training(bool on) {
  bool prev = t_training;
  t_training = on;
  return prev;
}

void record(const OpDef &op, const std::shared_ptr<const Params> &params, const ArrayList &inputs,
            ArrayList &outputs, const ArrayList &given_outputs) {
  bool any = false;
  for (const NDArray &a : inputs) any |= needs_grad(a);
  if (!any) return;
  for (size_t j = 0; j < given_outputs.size(); ++j)
    if (given_outputs[j].chunk())
      fail(LOOM_ERR_INVALID_ARGUMENT, op.name, ": writing into an existing array (output ", j,
           ") is not recorded by autograd; let the op allocate its output while recording");
  auto node = std::make_shared<AGNode>();
  node->op = &op;
  node->params = params;
  node->is_train = t_training;
  node->inputs = inputs;
  for (const NDArray &o : outputs) node->outputs.push_back(o.detached());
  for (size_t j = 0; j < outputs.size(); ++j) {
    auto info = std::make_shared<AGInfo>();
    info->node = node;
    info->index = static_cast<int>(j);
    outputs[j].set_ag(std::move(info));
  }
}

void mark_variable(NDArray &array, const NDArray &grad, int32_t grad_req) {
  LOOM_CHECK(grad_req == kNullOp || grad_req == kWriteTo || grad_req == kAddTo,
             LOOM_ERR_INVALID_ARGUMENT, "mark_variables: grad_req ", grad_req,
             " is not 0 (null), 1 (write) or 2 (add)");
  LOOM_CHECK(grad.shape() == array.shape() && grad.dtype() == array.dtype(), LOOM_ERR_SHAPE,
             "mark_variables: gradient buffer ", grad.shape().str(), " ", dtype_name(grad.dtype()),
             " does not match the variable ", array.shape().str(), " ",
             dtype_name(array.dtype()));
  LOOM_CHECK(grad.ctx() == array.ctx(), LOOM_ERR_INVALID_ARGUMENT, "mark_variables: the gradient "
             "buffer is on ", grad.ctx().str(), " but the variable ", array.shape().str(), " is on ",
             array.ctx().str(), "; allocate the buffer on the variable's device");
  auto info = std::make_shared<AGInfo>();
  info->is_variable = true;
  info->grad = grad.detached();
  info->grad_req = grad_req;
  array.set_ag(std::move(info));
}

void backward(const ArrayList &heads, const ArrayList &head_grads) {
  LOOM_CHECK(!heads.empty(), LOOM_ERR_INVALID_ARGUMENT, "backward: no head arrays given");
  // Nodes reachable from the heads, in post order (producers first).
  std::vector<AGNode *> order;
  std::unordered_set<AGNode *> seen;
  std::vector<std::pair<AGNode *, size_t>> stack;
  for (size_t h = 0; h < heads.size(); ++h) {
    const auto &ag = heads[h].ag();
    LOOM_CHECK(ag && (ag->node || ag->is_variable), LOOM_ERR_INVALID_ARGUMENT, "backward: head ",
               h, " of shape ", heads[h].shape().str(),
               " was not computed while recording from a variable with a gradient");
    if (ag->node && seen.insert(ag->node.get()).second) stack.emplace_back(ag->node.get(), 0);
    while (!stack.empty()) {
      auto &[n, next] = stack.back();
      if (next < n->inputs.size()) {
        const auto &in_ag = n->inputs[next++].ag();
        if (in_ag && in_ag->node && seen.insert(in_ag->node.get()).second)
          stack.emplace_back(in_ag->node.get(), 0);
      } else {
        order.push_back(n);
        stack.pop_back();
      }
    }
  }
  std::unordered_map<AGNode *, ArrayList> ograds;
  std::map<AGInfo *, NDArray> var_grads;
  // Adds gradient g of `input` to its producer's output gradients, or to its variable's.
  auto route = [&](const NDArray &input, const NDArray &g) {
    const auto &in_ag = input.ag();
    if (in_ag->node) {
      auto &slot = ograds[in_ag->node.get()];
      if (slot.size() < in_ag->node->outputs.size()) slot.resize(in_ag->node->outputs.size());
      slot[in_ag->index] = sum_into(slot[in_ag->index], g);
    } else {
      var_grads[in_ag.get()] = sum_into(var_grads[in_ag.get()], g);
    }
  };
  for (size_t h = 0; h < heads.size(); ++h) {
    const NDArray &head = heads[h];
    NDArray g = h < head_grads.size() && head_grads[h].chunk() ? head_grads[h] : filled(head, "1");
    LOOM_CHECK(g.shape() == head.shape(), LOOM_ERR_SHAPE, "backward: head gradient ", h,
               " has shape ", g.shape().str(), " but the head has shape ", head.shape().str());
    LOOM_CHECK(g.dtype() == head.dtype(), LOOM_ERR_DTYPE, "backward: head gradient ", h,
               " has dtype ", dtype_name(g.dtype()), " but the head has dtype ",
               dtype_name(head.dtype()));
    LOOM_CHECK(g.ctx() == head.ctx(), LOOM_ERR_INVALID_ARGUMENT, "backward: head gradient ", h,
               " is on ", g.ctx().str(), " but the head is on ", head.ctx().str());
    route(head, g);
  }
  // How many gradient contributions each variable receives (edges into it, and heads).
  std::unordered_map<const AGInfo *, int> var_uses;
  for (AGNode *n : order)
    for (const NDArray &in : n->inputs)
      if (in.ag() && !in.ag()->node) ++var_uses[in.ag().get()];
  for (const NDArray &h : heads)
    if (!h.ag()->node) ++var_uses[h.ag().get()];
  // Cached-op nodes lend their gradient buffers until every reader is pushed.
  struct DoneCalls {
    std::vector<AGNode *> nodes;
    ~DoneCalls() {
      for (AGNode *n : nodes) n->custom_done();
    }
  } done_calls;
  // Every gradient kernel must exist on its device before any is pushed.
  for (AGNode *n : order)
    if (!n->custom && !n->inputs.empty() && n->op->backward)
      device::require_kernel(*n->op, n->inputs[0].ctx(), true);
  for (size_t k = order.size(); k-- > 0;) {
    AGNode *n = order[k];
    if (n->custom) {
      ArrayList og = ograds[n];
      og.resize(n->outputs.size());
      for (size_t j = 0; j < og.size(); ++j)
        if (!og[j].chunk()) og[j] = filled(n->outputs[j], "0");
      ArrayList dest(n->inputs.size());
      for (size_t i = 0; i < n->inputs.size(); ++i) {
        const auto &in_ag = n->inputs[i].ag();
        if (in_ag && !in_ag->node && in_ag->is_variable && in_ag->grad_req == kWriteTo &&
            in_ag->grad.chunk() && var_uses[in_ag.get()] == 1)
          dest[i] = in_ag->grad;
      }
      ArrayList ig = n->custom(og, dest);
      if (n->custom_done) done_calls.nodes.push_back(n);
      LOOM_CHECK(ig.size() == n->inputs.size(), LOOM_ERR_INTERNAL, "backward: ", n->custom_name,
                 " returned ", ig.size(), " gradients for ", n->inputs.size(), " inputs");
      for (size_t i = 0; i < n->inputs.size(); ++i)
        if (ig[i].chunk() && needs_grad(n->inputs[i])) route(n->inputs[i], ig[i]);
      ograds.erase(n);
      continue;
    }
    const OpDef &op = *n->op;
    LOOM_CHECK(op.backward, LOOM_ERR_INVALID_ARGUMENT, "backward: op '", op.name,
               "' has no gradient, but a gradient must flow through it");
    ArrayList og = ograds[n];
    og.resize(n->outputs.size());
    for (size_t j = 0; j < og.size(); ++j)
      if (!og[j].chunk()) og[j] = filled(n->outputs[j], "0");
    ArrayList ig(n->inputs.size());
    ReqList req(n->inputs.size());
    VarList reads, writes;
    for (size_t i = 0; i < n->inputs.size(); ++i) {
      const NDArray &in = n->inputs[i];
      bool aux = op.num_aux > 0 && i + op.num_aux >= n->inputs.size();
      // Auxiliary states are updated by the backward pass in training.
      (aux && n->is_train ? writes : reads).push_back(in.var());
      req[i] = !aux && needs_grad(in) ? kWriteTo : kNullOp;
      if (req[i]) {
        ig[i] = NDArray::empty(in.shape(), in.dtype(), in.ctx());
        writes.push_back(ig[i].var());
      }
    }
    for (const NDArray &o : n->outputs) reads.push_back(o.var());
    for (const NDArray &g : og) reads.push_back(g.var());
    OpContext ctx;
    ctx.ctx = n->inputs.empty() ? Context{} : n->inputs[0].ctx();
    ctx.is_train = n->is_train;
    auto keep = std::make_shared<std::tuple<ArrayList, ArrayList, ArrayList, ReqList>>(
        n->inputs, n->outputs, og, req);
    std::get<0>(*keep).clear();  // inputs are re-read below without their graph edges
    for (const NDArray &in : n->inputs) std::get<0>(*keep).push_back(in.detached());
    std::vector<NDArray> in_grads(ig.begin(), ig.end());
    auto params = n->params;
    const OpDef *opp = &op;
    PushOptions po;
    po.name = op.name.c_str();
    Engine::get().push(
        [opp, params, ctx, keep, in_grads]() {
          auto &[ins, outs, ogs, rq] = *keep;
          BlobList bi, bo, bg, bgi;
          for (auto &a : ins) bi.push_back(a.blob());
          for (auto &a : outs) bo.push_back(a.blob());
          for (auto &a : ogs) bg.push_back(a.blob());
          for (auto &a : in_grads) bgi.push_back(a.chunk() ? a.blob() : TBlob{});
          run_backward(*opp, ctx, *params, bi, bo, bg, bgi, rq);
        },
        ctx.ctx, std::move(reads), std::move(writes), po);
    for (size_t i = 0; i < n->inputs.size(); ++i)
      if (req[i]) route(n->inputs[i], ig[i]);
    ograds.erase(n);
  }
  for (auto &[info, g] : var_grads) {
    if (info->grad_req == kNullOp) continue;
    if (g.chunk() == info->grad.chunk() && g.offset() == info->grad.offset()) continue;  // written in place
    if (info->grad_req == kAddTo)
      run_into("add", ArrayList{info->grad, g}, info->grad);
    else
      run_into("copy", ArrayList{g}, info->grad);
  }
}

}  // namespace autograd
}  // namespace loom
