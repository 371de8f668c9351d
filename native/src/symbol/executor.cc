#include "symbol/executor.h"

#include "backend/device.h"

#include "engine/profiler.h"

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <limits>
#include <map>
#include <set>

#include "imperative/autograd.h"
#include "common/parallel.h"
#include "ops/common.h"
#include "ops/nn/fused.h"
#include "ops/nn/onednn.h"

namespace loom {

namespace {

// Where a value's memory comes from.
enum class Src : int8_t { Internal, Arg, Aux, Grad, HeadGrad };

struct Value {
  Shape shape;
  int32_t dtype = kFloat32;
  Src src = Src::Internal;
  int index = -1;    // argument / aux / head index for external values
  size_t bytes = 0;  // scratch values: raw bytes (shape unused)
  bool scratch = false;
  bool blocked = false;  // held in oneDNN's blocked layout (onednn_block()); copied into its gradient's value
  bool last = false;     // with blocked: in channels last (NHWC) instead (a pooling's output, prediction)
  size_t nbytes() const {
    return scratch ? bytes : static_cast<size_t>(shape.size()) * dtype_size(dtype);
  }
};

enum class StepKind : int8_t { Forward, Backward, Sum, Zero };

// A Convolution step of a graph bound for prediction with the steps it absorbed
// (fuse_for_prediction): BatchNorm, an add of another value, relu, in that order;
// or a FullyConnected step with its Activation.
struct Fused {
  // The absorbed nodes, for bind time (the executor's graph owns them).
  const Node *bn = nullptr, *add = nullptr, *act = nullptr;
  // What the step runs of each of them: its op and a share of its parameters. A
  // pushed call outlives the graph when the executor is freed with the call still
  // queued, so it must not read the nodes then (the output it writes stays alive).
  struct Part {
    const OpDef *op = nullptr;
    std::shared_ptr<const Params> params;
  };
  Part bn_run, add_run, act_run;
  static Part part(const Node &n) { return Part{n.op, n.parsed}; }
  // A FullyConnected step with the Activation after it (act, any act_type), not a
  // Convolution: its product, then the activation in place on its output.
  bool fc = false;
  int add_chain_pos = 0;   // which input of the add the convolution's chain is
  size_t conv_inputs = 0;  // data, weight[, bias]; then gamma, beta, mean, var; then the addend
  bool onednn = false;     // oneDNN takes the convolution (at bind)
  bool winograd = false;   // LOOM_CONV_WINOGRAD=1 at bind (ConvEpilogue::winograd)
  bool onednn_relu = false;  // LOOM_EXEC_RELU=onednn at bind, with act (ConvEpilogue::onednn_relu)
  // The data, and the output (and the addend), in the blocked layout rather than NCHW.
  bool src_blocked = false, dst_blocked = false;
  // Which of those is in channels last (NHWC) instead (ConvEpilogue::src_last, dst_last).
  bool src_last = false, dst_last = false;
  bool row_bands = false;  // oneDNN cuts its forward pass into bands of rows (at bind)
  bool loom_winograd = false;  // Loom's Winograd kernels run it (winograd; at bind)
};

struct Step {
  StepKind kind = StepKind::Forward;
  int node = -1;
  std::vector<int> in, out;  // kernel inputs / outputs (value ids; -1: none)
  // Backward: the forward node's inputs, outputs and output gradients.
  std::vector<int> fin, fout, ograd;
  ReqList req;
  int temp = -1;           // scratch value
  std::vector<int> reads;  // values whose contents the step reads (for planning)
  std::vector<std::pair<int, int>> inplace;  // (position in `in`, position in `out`)
  // Backward: (position in `ograd`, position in `out`) that may share memory.
  std::vector<std::pair<int, int>> grad_inplace;
  std::shared_ptr<Fused> fused;              // a fused Convolution step (prediction)
  bool relu_after = false;  // a BatchNorm that took in its relu (training; OpContext::relu_after)
  bool winograd = false;    // a Convolution's steps marked for Winograd (training; OpContext::winograd)
};

// The step list of one binding, independent of any memory.
struct Program {
  IndexedGraph g;
  ShapeInfo info;
  std::vector<Value> values;
  std::vector<Step> steps;
  size_t num_forward = 0;  // steps[0, num_forward) run on Forward
  std::vector<int> head_values;
  std::vector<int> head_grad_values;  // -1 where the head takes no gradient
};

std::string shape_list(const std::vector<std::string> &names) {
  std::string s;
  for (auto &n : names) s += (s.empty() ? "" : ", ") + n;
  return s;
}

void apply_mirror(Program &p);

// Whether node i's gradient for each input is its output's gradient unchanged: an
// add or ElementWiseSum whose inputs all have the output's shape and dtype.
bool identity_gradient(const IndexedGraph &g, size_t i, const std::vector<Value> &values) {
  const Node &n = *g.nodes[i];
  if ((n.op->name != "add" && n.op->name != "ElementWiseSum") || n.num_outputs() != 1) return false;
  const Value &out = values[g.entry_base[i]];
  for (size_t k = 0; k < n.inputs.size(); ++k) {
    const Value &in = values[g.entry(n.inputs[k])];
    if (n.input_is_aux(k) || !(in.shape == out.shape) || in.dtype != out.dtype) return false;
  }
  return true;
}

void choose_training_layouts(Program &p);

Program build(const Symbol &sym, const ShapeInfo &info, const std::vector<int32_t> &grad_req,
              bool for_training, bool blocked_layouts = false) {
  Program p;
  p.g = sym.index();
  p.info = info;
  const IndexedGraph &g = p.g;
  const int ne = g.num_entries();
  for (int e = 0; e < ne; ++e)
    LOOM_CHECK(info.known[e], LOOM_ERR_SHAPE, "bind: cannot infer the shape of ",
               [&] {
                 auto it = std::upper_bound(g.entry_base.begin(), g.entry_base.end(), e);
                 const Node &n = *g.nodes[it - g.entry_base.begin() - 1];
                 return n.is_variable() ? "argument '" + n.name + "'"
                                        : "node '" + n.name + "' (" + n.op->name + ")";
               }(),
               "; give the shapes of more arguments");
  p.values.resize(ne);
  std::vector<int> arg_pos(g.nodes.size(), -1), aux_pos(g.nodes.size(), -1);
  for (size_t i = 0; i < g.args.size(); ++i) arg_pos[g.args[i]] = static_cast<int>(i);
  for (size_t i = 0; i < g.aux.size(); ++i) aux_pos[g.aux[i]] = static_cast<int>(i);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    for (int j = 0; j < g.nodes[i]->num_outputs(); ++j) {
      Value &v = p.values[g.entry_base[i] + j];
      v.shape = info.shape[g.entry_base[i] + j];
      v.dtype = info.dtype[g.entry_base[i] + j];
    }
    if (arg_pos[i] >= 0) {
      p.values[g.entry_base[i]].src = Src::Arg;
      p.values[g.entry_base[i]].index = arg_pos[i];
    } else if (aux_pos[i] >= 0) {
      p.values[g.entry_base[i]].src = Src::Aux;
      p.values[g.entry_base[i]].index = aux_pos[i];
    }
  }
  auto add_value = [&](Value v) {
    p.values.push_back(v);
    return static_cast<int>(p.values.size()) - 1;
  };
  // Forward steps.
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const Node &n = *g.nodes[i];
    if (n.is_variable()) continue;
    Step s;
    s.kind = StepKind::Forward;
    s.node = static_cast<int>(i);
    ShapeList in_shapes;
    DTypeList in_dtypes;
    for (auto &e : n.inputs) {
      s.in.push_back(g.entry(e));
      in_shapes.push_back(info.shape[g.entry(e)]);
      in_dtypes.push_back(info.dtype[g.entry(e)]);
    }
    for (int j = 0; j < n.num_outputs(); ++j) s.out.push_back(g.entry_base[i] + j);
    s.reads = s.in;
    for (auto &io : n.op->inplace)
      if (io.first < static_cast<int>(s.in.size()) && io.second < static_cast<int>(s.out.size()))
        s.inplace.push_back(io);
    if (n.op->temp_bytes) {
      size_t b = n.op->temp_bytes(*n.parsed, in_shapes, in_dtypes);
      if (b) {
        Value t;
        t.scratch = true;
        t.bytes = b;
        s.temp = add_value(t);
      }
    }
    p.steps.push_back(std::move(s));
  }
  p.num_forward = p.steps.size();
  p.head_values = g.heads;
  p.head_grad_values.assign(g.heads.size(), -1);
  if (!for_training) return p;
  // Before the gradients' values are made: each copies its value's layout.
  if (blocked_layouts) choose_training_layouts(p);

  // Which values carry a gradient (depend on an argument that wants one).
  std::vector<char> needs(p.values.size(), 0);
  for (size_t a = 0; a < g.args.size(); ++a)
    if (grad_req[a] != kNullOp) needs[g.entry_base[g.args[a]]] = 1;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const Node &n = *g.nodes[i];
    if (n.is_variable()) continue;
    bool any = false;
    for (size_t k = 0; k < n.inputs.size(); ++k)
      any |= !n.input_is_aux(k) && needs[g.entry(n.inputs[k])];
    for (int j = 0; j < n.num_outputs(); ++j) needs[g.entry_base[i] + j] = any;
  }
  // Gradient contributions per forward value.
  std::vector<std::vector<int>> contrib(ne);
  for (size_t h = 0; h < g.heads.size(); ++h) {
    int e = g.heads[h];
    if (!needs[e]) continue;
    Value v = p.values[e];
    v.src = Src::HeadGrad;
    v.index = static_cast<int>(h);
    int id = add_value(v);
    p.head_grad_values[h] = id;
    contrib[e].push_back(id);
  }
  // How many backward steps will produce a gradient for each argument.
  std::vector<int> producers(ne, 0);
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const Node &n = *g.nodes[i];
    if (n.is_variable()) continue;
    for (size_t k = 0; k < n.inputs.size(); ++k)
      if (!n.input_is_aux(k)) producers[g.entry(n.inputs[k])]++;
  }
  auto combine = [&](int e) -> int {  // value holding the total gradient of entry e
    auto &c = contrib[e];
    if (c.size() == 1) return c[0];
    Value v = p.values[e];
    v.src = Src::Internal;
    v.index = -1;
    int out = add_value(v);
    Step s;
    s.node = -1;
    if (c.empty()) {
      s.kind = StepKind::Zero;
    } else {
      s.kind = StepKind::Sum;
      s.in = c;
      s.reads = c;
      s.inplace.emplace_back(0, 0);
    }
    s.out.push_back(out);
    p.steps.push_back(std::move(s));
    return out;
  };
  for (size_t i = g.nodes.size(); i-- > 0;) {
    const Node &n = *g.nodes[i];
    if (n.is_variable()) continue;
    bool any_grad = false;
    for (int j = 0; j < n.num_outputs(); ++j) any_grad |= !contrib[g.entry_base[i] + j].empty();
    bool any_input = false;
    for (size_t k = 0; k < n.inputs.size(); ++k)
      any_input |= !n.input_is_aux(k) && needs[g.entry(n.inputs[k])];
    if (!any_grad || !any_input) continue;  // no gradient flows through this node
    LOOM_CHECK(n.op->backward, LOOM_ERR_INVALID_ARGUMENT, "bind: node '", n.name, "' (",
               n.op->name, ") has no gradient, but a gradient must flow through it to ",
               "the arguments; wrap it in BlockGrad or set their grad_req to null");
    // A sum of values of the output's shape and dtype (add without broadcasting,
    // ElementWiseSum): each input's gradient is the output's gradient itself, not a
    // copy of it (a ResNet's residual adds copied 36 ms of a 1.6 s step); where a
    // value needs it written apart (an argument's gradient array), a later step copies.
    if (identity_gradient(g, i, p.values)) {
      const int og = combine(g.entry_base[i]);
      for (size_t k = 0; k < n.inputs.size(); ++k) {
        const int e = g.entry(n.inputs[k]);
        if (!n.input_is_aux(k) && needs[e]) contrib[e].push_back(og);
      }
      continue;
    }
    Step s;
    s.kind = StepKind::Backward;
    s.node = static_cast<int>(i);
    for (int j = 0; j < n.num_outputs(); ++j) {
      s.fout.push_back(g.entry_base[i] + j);
      s.ograd.push_back(combine(g.entry_base[i] + j));
    }
    for (auto &e : n.inputs) s.fin.push_back(g.entry(e));
    s.req.resize(n.inputs.size());
    for (size_t k = 0; k < n.inputs.size(); ++k) {
      int e = g.entry(n.inputs[k]);
      if (n.input_is_aux(k) || !needs[e]) {
        s.req[k] = kNullOp;
        s.out.push_back(-1);
        continue;
      }
      s.req[k] = kWriteTo;
      const Value &src = p.values[e];
      int gv;
      if (src.src == Src::Arg && producers[e] == 1 && grad_req[src.index] == kWriteTo &&
          std::find(g.heads.begin(), g.heads.end(), e) == g.heads.end()) {
        Value v = src;
        v.src = Src::Grad;
        gv = add_value(v);
      } else {
        Value v = src;
        v.src = Src::Internal;
        v.index = -1;
        gv = add_value(v);
      }
      s.out.push_back(gv);
      contrib[e].push_back(gv);
    }
    for (auto &io : n.op->backward_inplace)
      if (io.first < static_cast<int>(s.ograd.size()) && io.second < static_cast<int>(s.out.size()) &&
          s.out[io.second] >= 0)
        s.grad_inplace.push_back(io);
    if (n.op->backward_temp_bytes) {
      ShapeList in_shapes;
      DTypeList in_dtypes;
      for (int e : s.fin) in_shapes.push_back(p.values[e].shape), in_dtypes.push_back(p.values[e].dtype);
      if (size_t b = n.op->backward_temp_bytes(*n.parsed, in_shapes, in_dtypes, s.req)) {
        Value t;
        t.scratch = true;
        t.bytes = b;
        s.temp = add_value(t);
      }
    }
    if (n.op->backward_uses & kBwdInputs) s.reads.insert(s.reads.end(), s.fin.begin(), s.fin.end());
    if (n.op->backward_uses & kBwdOutputs)
      s.reads.insert(s.reads.end(), s.fout.begin(), s.fout.end());
    s.reads.insert(s.reads.end(), s.ograd.begin(), s.ograd.end());
    p.steps.push_back(std::move(s));
  }
  // Argument gradients that were not written in place.
  for (size_t a = 0; a < g.args.size(); ++a) {
    if (grad_req[a] == kNullOp) continue;
    int e = g.entry_base[g.args[a]];
    auto &c = contrib[e];
    if (c.size() == 1 && p.values[c[0]].src == Src::Grad) continue;
    Value v = p.values[e];
    v.src = Src::Grad;
    v.index = static_cast<int>(a);
    int out = add_value(v);
    Step s;
    s.node = -1;
    s.kind = c.empty() && grad_req[a] == kWriteTo ? StepKind::Zero : StepKind::Sum;
    if (grad_req[a] == kAddTo) s.in.push_back(out);
    for (int x : c) s.in.push_back(x);
    if (s.kind == StepKind::Sum && s.in.empty()) continue;  // add of nothing
    s.reads = s.in;
    s.out.push_back(out);
    p.steps.push_back(std::move(s));
  }
  apply_mirror(p);
  return p;
}

// ---------------------------------------------------------------- backward mirroring
// MXNet's backward mirroring (MXNET_BACKWARD_DO_MIRROR; Chen et al.'s sublinear-memory
// training): the backward pass recomputes the outputs of cheap nodes from their inputs
// instead of keeping them from the forward pass, so they are freed as soon as the forward
// pass is done with them. A node is mirrored when its attribute __force_mirroring__ is
// true, or when LOOM_BACKWARD_MIRROR=1 and it is not one of the nodes MXNet keeps
// (Convolution, FullyConnected, Concat, SoftmaxOutput, Dropout; Loom adds the other
// expensive ones: Deconvolution, RNN, dot, batch_dot). Nodes that draw random numbers
// (Dropout) are never mirrored, whatever the attribute: a recomputation would draw other
// values. BatchNorm is mirrored as in MXNet: its forward pass never writes the moving
// statistics (the backward pass updates them), so recomputing it changes nothing.
// Results are bit-identical with and without mirroring.
bool attr_flag(const Node &n, const char *key, bool *value) {
  auto it = n.attrs.find(key);
  if (it == n.attrs.end()) return false;
  const std::string &v = it->second;
  *value = v == "1" || v == "True" || v == "true";
  return true;
}

bool env_mirror() {
  const char *e = std::getenv("LOOM_BACKWARD_MIRROR");
  return e && std::strcmp(e, "1") == 0;
}

bool mirrorable(const Node &n, bool by_default) {
  if (n.is_variable() || n.op->draws(*n.parsed) || n.op->name == "Dropout") return false;
  bool forced;
  if (attr_flag(n, "force_mirroring", &forced)) return forced;  // __force_mirroring__
  if (!by_default) return false;
  static const std::set<std::string> keep = {"Convolution", "Deconvolution", "FullyConnected",
                                             "Concat",      "concat",        "SoftmaxOutput",
                                             "Dropout",     "RNN",           "dot",
                                             "batch_dot"};
  return keep.count(n.op->name) == 0;
}

// Rewrites the backward steps of `p` to read recomputed copies of the mirrored nodes'
// outputs; each copy is computed once, just before the first backward step reading it.
bool fusion_enabled() {
  const char *e = std::getenv("LOOM_EXEC_FUSE");
  return !(e && std::strcmp(e, "0") == 0);
}

// Whether a fused prediction step folds its BatchNorm into the convolution's
// weights (LOOM_EXEC_FOLD=0: per-channel post-ops instead). Read at each call.
bool fold_enabled() {
  const char *e = std::getenv("LOOM_EXEC_FOLD");
  return !(e && std::strcmp(e, "0") == 0);
}

// Whether executors keep blocked layouts (LOOM_EXEC_BLOCKED=0: every value
// stays NCHW, in prediction and in training). Read at each bind.
bool blocked_layouts_enabled() {
  const char *e = std::getenv("LOOM_EXEC_BLOCKED");
  return !(e && std::strcmp(e, "0") == 0);
}

// Blocked layouts between oneDNN convolutions (prediction): a value a oneDNN
// convolution step produces, with channels a multiple of the block (16, or 8 on
// AVX2: onednn_block()), no output of the
// graph, and read only as the data of oneDNN convolution steps, as the addend
// of such a step whose own output is in the same layout, or as the data of a 2-D Pooling
// whose output is blocked too (or reads the same either way: a global pooling's
// (n, c, 1, 1), blocked_same_as_plain), stays in oneDNN's blocked layout: neither its
// producer nor its readers reorder it. Such a pooling's output is blocked under
// the same rules (the pooling runs its blocked kernels, TBlob::blocked). A step
// whose output is kept so and that adds an addend needs the addend in the same
// layout. Kept to a fixed point; the values' sizes do not change.
//
// The output of a step cut into bands of rows (batches under 4 on AVX-512:
// onednn_conv_row_bands) is kept in channels last (NHWC) instead, any channel
// count, where no pooling or Loom's Winograd kernels read it: a band's input rows and
// output rows are each one dense stretch there (onednn.cc, row_bands). So is a
// blocked pooling's output read by such steps alone (the pooling writes it so:
// TBlob::last). The other convolution steps read and write either layout (they reorder).
void choose_blocked_layouts(Program &p) {
  const int block = onednn_block();  // 16, or 8 on AVX2: oneDNN's convolutions' preferred layout
  if (!block || !blocked_layouts_enabled()) return;
  enum Lay : char { kPlain, kBlocked, kLast };
  const size_t nv = p.values.size();
  std::vector<std::vector<int>> readers(nv);
  for (size_t i = 0; i < p.num_forward; ++i)
    for (int v : p.steps[i].reads) readers[v].push_back(static_cast<int>(i));
  std::vector<char> lay(nv, kPlain);
  auto dnn = [&](int i) -> Fused * {
    const Step &s = p.steps[i];
    return s.kind == StepKind::Forward && s.fused && s.fused->onednn ? s.fused.get() : nullptr;
  };
  std::vector<char> pool(p.num_forward, 0);
  for (size_t i = 0; i < p.num_forward; ++i) {
    const Step &s = p.steps[i];
    if (s.kind != StepKind::Forward || s.fused || s.node < 0) continue;
    const Node &n = *p.g.nodes[s.node];
    pool[i] = n.op->name == "Pooling" && s.in.size() == 1 && p.values[s.in[0]].dtype == kFloat32 &&
              pooling_takes_blocked(*n.parsed, p.values[s.in[0]].shape);
  }
  // What a reader takes: the data of a convolution step in any layout (but
  // Loom's Winograd kernels', not in channels last); a pooling's data, blocked.
  auto takes_last = [&](int r) {
    const Fused *f = dnn(r);
    return f && !f->loom_winograd;
  };
  for (size_t i = 0; i < p.num_forward; ++i) {
    const Fused *f = dnn(static_cast<int>(i));
    if (!f && !pool[i]) continue;
    int v = p.steps[i].out[0];
    const Value &val = p.values[v];
    if (val.dtype != kFloat32 || val.shape.ndim != 4) continue;
    // A pooling's output in channels last where every reader takes it and one at least runs in bands.
    const bool bands = f ? f->row_bands != 0 : std::any_of(readers[v].begin(), readers[v].end(), [&](int r) {
      return dnn(r) && dnn(r)->row_bands;
    });
    const bool last = bands && std::all_of(readers[v].begin(), readers[v].end(), takes_last);
    lay[v] = last ? kLast : val.shape.d[1] % block == 0 ? kBlocked : kPlain;
  }
  for (int h : p.head_values) lay[h] = kPlain;
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t v = 0; v < nv; ++v) {
      if (lay[v] == kPlain) continue;
      for (int r : readers[v]) {
        const Step &rs = p.steps[r];
        const Fused *f = dnn(r);
        // each use is as the data, or as the addend of an output in the same layout
        bool ok = (f && (lay[v] == kBlocked || takes_last(r))) ||
                  (pool[r] && lay[v] == kBlocked &&
                   (lay[rs.out[0]] != kPlain || blocked_same_as_plain(p.values[rs.out[0]].shape)));
        for (size_t k = 0; ok && k < rs.in.size(); ++k)
          if (rs.in[k] == static_cast<int>(v))
            ok = k == 0 || (f && f->add && k + 1 == rs.in.size() && lay[rs.out[0]] == lay[v]);
        if (!ok) {
          lay[v] = kPlain;
          changed = true;
          break;
        }
      }
    }
    for (size_t i = 0; i < p.num_forward; ++i) {
      Fused *f = dnn(static_cast<int>(i));
      const Step &s = p.steps[i];
      if ((f && f->add && lay[s.out[0]] != kPlain && lay[s.in.back()] != lay[s.out[0]]) ||
          (pool[i] && lay[s.out[0]] != kPlain && lay[s.in[0]] != kBlocked)) {
        lay[s.out[0]] = kPlain;
        changed = true;
      }
    }
  }
  for (size_t i = 0; i < p.num_forward; ++i)
    if (Fused *f = dnn(static_cast<int>(i))) {
      const int x = p.steps[i].in[0], y = p.steps[i].out[0];
      f->src_blocked = lay[x] != kPlain;
      f->src_last = lay[x] == kLast;
      f->dst_blocked = lay[y] != kPlain;
      f->dst_last = lay[y] == kLast;
    } else if (pool[i] && lay[p.steps[i].in[0]] == kBlocked) {
      // its output blocked, or plain where both read the same (blocked_same_as_plain)
      p.values[p.steps[i].in[0]].blocked = true;
      p.values[p.steps[i].out[0]].blocked = lay[p.steps[i].out[0]] != kPlain;
      p.values[p.steps[i].out[0]].last = lay[p.steps[i].out[0]] == kLast;
    }
}

// Blocked layouts in training: a value kept in oneDNN's blocked layout (nChw16c,
// or nChw8c on AVX2: onednn_block()) between the steps that take it spares the
// oneDNN convolutions that write or read it their reorders to and from NCHW (about
// a tenth of a ResNet-50 step). The steps that take such values: a Convolution
// oneDNN runs (its data and its output, each on its own), and steps whose
// values all share one layout: BatchNorm over axis 1 (its data and output;
// its kernels compute each channel as on NCHW, in the same order), relu and
// the other Activations, 2-D Pooling (a global pooling's output, which reads the
// same in both layouts, may be either), and adds of same-shape values (elementwise). A value
// is kept blocked when it is float32 (n, c, h, w) with c a multiple of the block, is
// no output of the graph, is made by such a step and read only by such steps,
// and every value sharing a layout with it is kept blocked too (to a fixed
// point). Gradients take their values' layouts; the backward kernels of those
// ops take them (TBlob::blocked). Results are the same bits either way.
void choose_training_layouts(Program &p) {
  const IndexedGraph &g = p.g;
  const size_t nv = p.values.size();
  // The values of each forward step that share its layout (empty: none), and
  // whether it is a Convolution oneDNN runs.
  std::vector<std::vector<int>> group(p.num_forward);
  std::vector<char> conv(p.num_forward, 0);
  for (size_t i = 0; i < p.num_forward; ++i) {
    const Step &s = p.steps[i];
    if (s.kind != StepKind::Forward || s.node < 0) continue;
    const Node &n = *g.nodes[s.node];
    const std::string &op = n.op->name;
    if (op == "Convolution") {
      conv[i] = p.values[s.in[0]].dtype == kFloat32 && conv_onednn_takes(*n.parsed, p.values[s.in[0]].shape);
    } else if (op == "BatchNorm") {
      const Value &x = p.values[s.in[0]];
      if (x.shape.ndim == 4 && normalize_axis(n.parsed->i("axis"), 4, op, "axis") == 1)
        group[i] = {s.in[0], s.out[0]};
    } else if (op == "Activation" || op == "relu") {
      group[i] = {s.in[0], s.out[0]};
    } else if (op == "Pooling") {
      // an output that reads the same in both layouts may be either (global pooling)
      if (pooling_takes_blocked(*n.parsed, p.values[s.in[0]].shape))
        group[i] = blocked_same_as_plain(p.values[s.out[0]].shape) ? std::vector<int>{s.in[0]}
                                                                     : std::vector<int>{s.in[0], s.out[0]};
    } else if (identity_gradient(g, s.node, p.values)) {
      group[i] = s.in;
      group[i].push_back(s.out[0]);
    }
  }
  std::vector<std::vector<int>> readers(nv);
  for (size_t i = 0; i < p.num_forward; ++i)
    for (int v : p.steps[i].in)
      if (v >= 0) readers[v].push_back(static_cast<int>(i));
  std::vector<char> blocked(nv, 0);
  for (size_t i = 0; i < p.num_forward; ++i) {
    const Step &s = p.steps[i];
    if (!conv[i] && group[i].empty()) continue;
    const int v = s.out[0];
    const Value &val = p.values[v];
    blocked[v] = val.src == Src::Internal && val.dtype == kFloat32 && val.shape.ndim == 4 &&
                 val.shape.d[1] % onednn_block() == 0;
  }
  for (int h : p.head_values) blocked[h] = 0;
  // A reader takes v blocked where it reads v only as a convolution's data or as
  // one of the values sharing its layout.
  auto takes = [&](int r, int v) {
    const Step &s = p.steps[r];
    for (size_t k = 0; k < s.in.size(); ++k) {
      if (s.in[k] != v) continue;
      if (conv[r] ? k != 0 : std::find(group[r].begin(), group[r].end(), v) == group[r].end()) return false;
    }
    return conv[r] || !group[r].empty();
  };
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t v = 0; v < nv; ++v)
      if (blocked[v])
        for (int r : readers[v])
          if (!takes(r, static_cast<int>(v))) {
            blocked[v] = 0;
            changed = true;
            break;
          }
    for (size_t i = 0; i < p.num_forward; ++i) {
      const auto &gr = group[i];
      const bool all = std::all_of(gr.begin(), gr.end(), [&](int v) { return blocked[v] != 0; });
      if (all) continue;
      for (int v : gr)
        if (blocked[v]) blocked[v] = 0, changed = true;
    }
  }
  for (size_t v = 0; v < nv; ++v) p.values[v].blocked = blocked[v] != 0;
}

// Removes the steps marked in `gone`, keeping the count of forward steps right.
void drop_steps(Program &p, const std::vector<char> &gone) {
  std::vector<Step> kept;
  size_t forward = 0;
  for (size_t i = 0; i < p.steps.size(); ++i) {
    if (gone[i]) continue;
    if (i < p.num_forward) ++forward;
    kept.push_back(std::move(p.steps[i]));
  }
  p.steps = std::move(kept);
  p.num_forward = forward;
}

// The backward half, for a BatchNorm (node `bn`) fused with its relu (node `act`,
// output z): the relu's backward step is gone too, and the BatchNorm's reads the
// relu's output gradient and z in its place (OpContext::relu_after in a backward
// call), forming each channel's gradient as the relu's step would (norm.cc; in
// plain layouts into a per-thread buffer, in blocked ones as each value is
// read), so the bits are the same and a pass writing the activation's gradient
// is saved. Only when the relu's input gradient reaches the BatchNorm's step
// alone (no sum) and nothing else reads it, and all three share one layout.
void fuse_relu_backward(Program &p, int bn, int act, int z, std::vector<char> &gone) {
  int rb = -1, bb = -1;
  for (size_t k = p.num_forward; k < p.steps.size(); ++k) {
    const Step &b = p.steps[k];
    if (b.kind != StepKind::Backward || gone[k]) continue;
    if (b.node == act) rb = static_cast<int>(k);
    if (b.node == bn) bb = static_cast<int>(k);
  }
  if (rb < 0 || bb < 0) return;
  Step &r = p.steps[rb], &b = p.steps[bb];
  if (r.out.size() != 1 || r.out[0] < 0 || r.ograd.size() != 1 || r.ograd[0] < 0 || b.ograd.empty() ||
      b.ograd[0] != r.out[0] || b.fout.empty() || b.fout[0] != z || r.temp >= 0)
    return;
  const int dy = r.out[0], dz = r.ograd[0];
  const bool blocked = p.values[z].blocked;  // the BatchNorm's kernels take both layouts
  for (int v : {dy, dz})
    if (p.values[v].blocked != blocked) return;
  if (std::find(p.head_grad_values.begin(), p.head_grad_values.end(), dy) != p.head_grad_values.end()) return;
  for (size_t k = 0; k < p.steps.size(); ++k) {
    if (static_cast<int>(k) == rb || static_cast<int>(k) == bb || gone[k]) continue;
    const Step &o = p.steps[k];
    for (const std::vector<int> *list : {&o.in, &o.reads, &o.fin, &o.fout, &o.ograd})
      if (std::find(list->begin(), list->end(), dy) != list->end()) return;
  }
  b.ograd[0] = dz;
  for (int &v : b.reads)
    if (v == dy) v = dz;
  if (std::find(b.reads.begin(), b.reads.end(), z) == b.reads.end()) b.reads.push_back(z);
  b.relu_after = true;
  gone[rb] = 1;
}

// Training fusion (a graph bound for training on the CPU; LOOM_EXEC_FUSE=0 turns it
// off): a BatchNorm whose output only a relu reads (Activation relu; the output no
// output of the graph, its statistics outputs read by nothing, neither node
// mirrored) writes the relu's output itself, MXNet's relu applied as it stores
// each value, and the relu's forward step is gone: a pass over the activation
// less (and its backward step too: fuse_relu_backward). The
// values are computed as the two ops compute them, so the bits are the same.
void fuse_relu_into_batchnorm(Program &p) {
  const IndexedGraph &g = p.g;
  const size_t nv = p.values.size();
  std::vector<std::vector<int>> readers(nv);
  for (size_t i = 0; i < p.steps.size(); ++i) {
    for (int v : p.steps[i].reads) readers[v].push_back(static_cast<int>(i));
    for (int v : p.steps[i].in)
      if (v >= 0 && std::find(p.steps[i].reads.begin(), p.steps[i].reads.end(), v) == p.steps[i].reads.end())
        readers[v].push_back(static_cast<int>(i));
  }
  std::vector<char> head(nv, 0);
  for (int h : p.head_values) head[h] = 1;
  const bool by_default = env_mirror();
  std::vector<char> gone(p.steps.size(), 0);
  bool any = false;
  for (size_t i = 0; i < p.num_forward; ++i) {
    Step &s = p.steps[i];
    if (s.kind != StepKind::Forward || s.node < 0 || s.fused) continue;
    const Node &bn = *g.nodes[s.node];
    if (bn.op->name != "BatchNorm" || mirrorable(bn, by_default) || head[s.out[0]]) continue;
    bool stats_unread = true;
    for (size_t k = 1; k < s.out.size(); ++k) stats_unread &= readers[s.out[k]].empty() && !head[s.out[k]];
    const int y = s.out[0];
    if (!stats_unread || readers[y].size() != 1) continue;
    const int r = readers[y][0];
    const Step &rs = p.steps[r];
    if (static_cast<size_t>(r) >= p.num_forward || rs.kind != StepKind::Forward || rs.node < 0 || gone[r]) continue;
    const Node &act = *g.nodes[rs.node];
    if (act.op->name != "Activation" || act.parsed->s("act_type") != "relu" || mirrorable(act, by_default) ||
        rs.in.size() != 1 || rs.in[0] != y || rs.out.size() != 1 || rs.temp >= 0 ||
        !(p.values[rs.out[0]].shape == p.values[y].shape) || p.values[rs.out[0]].dtype != p.values[y].dtype ||
        p.values[rs.out[0]].blocked != p.values[y].blocked)
      continue;
    const int z = rs.out[0];
    // Backward steps naming the BatchNorm's output (the relu's, as its data; the
    // BatchNorm's, as its output) read neither (backward_uses): they name z now.
    for (size_t k = p.num_forward; k < p.steps.size(); ++k) {
      Step &b = p.steps[k];
      for (auto *list : {&b.fin, &b.fout})
        for (int &v : *list)
          if (v == y) v = z;
      LOOM_CHECK(std::find(b.reads.begin(), b.reads.end(), y) == b.reads.end(), LOOM_ERR_INTERNAL,
                 "bind: a backward step reads the output of '", bn.name, "' fused with its relu");
    }
    s.out[0] = z;
    s.relu_after = true;
    gone[r] = 1;
    any = true;
    fuse_relu_backward(p, s.node, rs.node, z, gone);
  }
  if (any) drop_steps(p, gone);
}

// Training with Winograd (a graph bound for training on the CPU): the forward and
// backward steps of each Convolution whose __winograd__ attribute is true, or of
// every Convolution without the attribute when LOOM_CONV_WINOGRAD=1 at bind, are
// marked (OpContext::winograd); the op decides per shape whether Loom's kernels run.
void mark_training_winograd(Program &p) {
  for (Step &s : p.steps) {
    if (s.node < 0 || (s.kind != StepKind::Forward && s.kind != StepKind::Backward)) continue;
    const Node &n = *p.g.nodes[s.node];
    if (n.op->name != "Convolution") continue;
    bool wino;
    s.winograd = attr_flag(n, "winograd", &wino) ? wino : winograd_requested();
  }
}

// Prediction fusion (a graph bound without gradients on the CPU; LOOM_EXEC_FUSE=0
// turns it off): a Convolution whose output only a BatchNorm (channel axis 1, no
// statistics outputs) reads, whose output only an add of two same-shape float32
// values reads, whose output only a relu reads (each part optional, in that
// order, no intermediate value an output of the graph) becomes one step at the
// last absorbed step's place. That step runs the convolution through oneDNN with
// the BatchNorm and relu as post-ops (the add, when present, and then the relu
// follow on each piece of the output as oneDNN writes it; with LOOM_EXEC_RELU=onednn
// or the relu's __onednn_relu__ attribute, oneDNN's relu post-op, where NaN gives
// 0, is the last post-op instead), or, where oneDNN does
// not take it or the BatchNorm uses
// the batch's statistics (forward with is_train), the original kernels one after
// another through a scratch buffer. A FullyConnected whose output only an
// Activation reads (no output of the graph) becomes one step too: the product into
// the activation's output, then the activation over it in place (MXNet's oneDNN
// FullyConnected+Activation fusion; the same kernels, so the same bits).
void fuse_for_prediction(Program &p) {
  const IndexedGraph &g = p.g;
  const size_t nv = p.values.size();
  std::vector<std::vector<int>> readers(nv);
  for (size_t i = 0; i < p.num_forward; ++i)
    for (int v : p.steps[i].reads) readers[v].push_back(static_cast<int>(i));
  std::vector<char> head(nv, 0), taken(p.steps.size(), 0);
  for (int h : p.head_values) head[h] = 1;
  auto node = [&](int step) -> const Node & { return *g.nodes[p.steps[step].node]; };
  // The one forward step reading value v, once, when v is no output of the graph.
  auto sole = [&](int v) -> int {
    if (head[v] || readers[v].size() != 1) return -1;
    int r = readers[v][0];
    const Step &s = p.steps[r];
    if (taken[r] || s.node < 0 || s.kind != StepKind::Forward || s.temp >= 0 || s.fused) return -1;
    return std::count(s.in.begin(), s.in.end(), v) == 1 ? r : -1;
  };
  auto f32 = [&](int v) { return p.values[v].dtype == kFloat32; };
  const bool onednn_relu = onednn_relu_requested();
  std::vector<int> remove;
  for (size_t i = 0; i < p.num_forward; ++i) {
    Step &s = p.steps[i];
    if (taken[i] || s.node < 0 || s.kind != StepKind::Forward || s.fused) continue;
    if (node(static_cast<int>(i)).op->name == "FullyConnected" && s.out.size() == 1 && s.temp < 0) {
      const int r = sole(s.out[0]);
      if (r < 0 || node(r).op->name != "Activation" || p.steps[r].out.size() != 1 ||
          !(p.values[p.steps[r].out[0]].shape == p.values[s.out[0]].shape) ||
          p.values[p.steps[r].out[0]].dtype != p.values[s.out[0]].dtype)
        continue;
      auto f = std::make_shared<Fused>();
      f->fc = true;
      f->act = &node(r);
      f->act_run = Fused::part(node(r));
      f->conv_inputs = s.in.size();
      Step fs;
      fs.kind = StepKind::Forward;
      fs.node = s.node;
      fs.in = s.in;
      fs.out = p.steps[r].out;
      fs.reads = fs.in;
      fs.fused = f;
      taken[i] = taken[r] = 1;
      remove.push_back(static_cast<int>(i));
      p.steps[r] = std::move(fs);
      continue;
    }
    if (node(static_cast<int>(i)).op->name != "Convolution" || s.out.size() != 1 || !f32(s.out[0])) continue;
    auto f = std::make_shared<Fused>();
    f->conv_inputs = s.in.size();
    f->onednn = conv_onednn_takes(*node(static_cast<int>(i)).parsed, p.values[s.in[0]].shape);
    // Winograd: the node's __winograd__ attribute, else LOOM_CONV_WINOGRAD=1; its
    // work memory may be larger than the direct algorithm's.
    bool wino;
    f->winograd = f->onednn && (attr_flag(node(static_cast<int>(i)), "winograd", &wino) ? wino : winograd_requested());
    f->row_bands =
        f->onednn && conv_onednn_row_bands(*node(static_cast<int>(i)).parsed, p.values[s.in[0]].shape, f->winograd);
    f->loom_winograd =
        f->winograd && conv_loom_winograd_runs(*node(static_cast<int>(i)).parsed, p.values[s.in[0]].shape);
    if (f->winograd) {
      const size_t b = conv_winograd_scratch(*node(static_cast<int>(i)).parsed, p.values[s.in[0]].shape);
      if (s.temp >= 0) {
        p.values[s.temp].bytes = std::max(p.values[s.temp].bytes, b);
      } else if (b) {
        Value t;
        t.scratch = true;
        t.bytes = b;
        s.temp = static_cast<int>(p.values.size());
        p.values.push_back(t);
      }
    }
    std::vector<int> absorbed;
    int cur = s.out[0], addend = -1;
    int r = sole(cur);
    if (r >= 0 && node(r).op->name == "BatchNorm" && p.steps[r].in[0] == cur && p.steps[r].out.size() == 1 &&
        node(r).parsed->i("axis") == 1) {
      f->bn = &node(r);
      f->bn_run = Fused::part(node(r));
      absorbed.push_back(r);
      cur = p.steps[r].out[0];
      r = sole(cur);
    }
    if (r >= 0 && (node(r).op->name == "add" || node(r).op->name == "ElementWiseSum")) {
      const Step &a = p.steps[r];
      int other = a.in.size() == 2 ? (a.in[0] == cur ? a.in[1] : a.in[0]) : -1;
      if (other >= 0 && other != cur && f32(other) && a.out.size() == 1 &&
          p.values[other].shape == p.values[cur].shape && p.values[a.out[0]].shape == p.values[cur].shape) {
        f->add = &node(r);
        f->add_run = Fused::part(node(r));
        f->add_chain_pos = a.in[0] == cur ? 0 : 1;
        addend = other;
        absorbed.push_back(r);
        cur = a.out[0];
        r = sole(cur);
      }
    }
    if (r >= 0 && node(r).op->name == "Activation" && node(r).parsed->s("act_type") == "relu") {
      f->act = &node(r);
      f->act_run = Fused::part(node(r));
      // oneDNN's relu post-op (NaN gives 0): the relu node's __onednn_relu__
      // attribute, else LOOM_EXEC_RELU=onednn.
      bool own;
      f->onednn_relu = f->onednn && (attr_flag(node(r), "onednn_relu", &own) ? own : onednn_relu);
      absorbed.push_back(r);
      cur = p.steps[r].out[0];
    }
    if (absorbed.empty()) {
      if (f->onednn) s.fused = f;  // alone, it may still keep blocked layouts
      continue;
    }
    Step fs;
    fs.kind = StepKind::Forward;
    fs.node = s.node;
    fs.in = s.in;
    if (f->bn)
      for (size_t k = 1; k < 5; ++k) fs.in.push_back(p.steps[absorbed[0]].in[k]);
    if (addend >= 0) fs.in.push_back(addend);
    fs.out = {cur};
    fs.reads = fs.in;
    // The output may take the addend's buffer (its last reader): oneDNN sums in
    // place (run_fused), where a copy of the addend into the output would cost a
    // pass over memory as large as the output. With a BatchNorm that oneDNN does
    // not take, the original kernels would need that copy anyway.
    if (addend >= 0 && (!f->bn || f->onednn)) fs.inplace.emplace_back(static_cast<int>(fs.in.size()) - 1, 0);
    fs.temp = s.temp;  // the convolution's own scratch
    fs.fused = f;
    taken[i] = 1;
    remove.push_back(static_cast<int>(i));
    for (size_t k = 0; k + 1 < absorbed.size(); ++k) taken[absorbed[k]] = 1, remove.push_back(absorbed[k]);
    taken[absorbed.back()] = 1;
    p.steps[absorbed.back()] = std::move(fs);
  }
  if (!remove.empty()) {
    std::vector<char> gone(p.steps.size(), 0);
    for (int i : remove) gone[i] = 1;
    drop_steps(p, gone);
  }
  choose_blocked_layouts(p);
}

void apply_mirror(Program &p) {
  const bool by_default = env_mirror();
  std::vector<int> producer(p.values.size(), -1);  // forward step of each value
  bool any = false;
  for (size_t i = 0; i < p.num_forward; ++i) {
    const Step &s = p.steps[i];
    bool m = mirrorable(*p.g.nodes[s.node], by_default);
    any |= m;
    if (m)
      for (int v : s.out) producer[v] = static_cast<int>(i);
  }
  if (!any) return;
  std::vector<int> copy_of(p.values.size(), -1);
  std::vector<Step> out(p.steps.begin(), p.steps.begin() + p.num_forward);
  // The recomputed copy of forward value v (v itself when its node is not mirrored).
  std::function<int(int)> ensure = [&](int v) -> int {
    if (v < 0 || v >= static_cast<int>(producer.size()) || producer[v] < 0) return v;
    if (copy_of[v] >= 0) return copy_of[v];
    Step r = p.steps[producer[v]];  // a copy of the forward step
    for (int &u : r.in) u = ensure(u);
    r.reads = r.in;
    const Step &f = p.steps[producer[v]];
    for (size_t j = 0; j < f.out.size(); ++j) {
      Value val = p.values[f.out[j]];
      p.values.push_back(val);
      r.out[j] = static_cast<int>(p.values.size()) - 1;
      copy_of[f.out[j]] = r.out[j];
      producer.push_back(-1);
    }
    if (f.temp >= 0) {
      p.values.push_back(p.values[f.temp]);
      r.temp = static_cast<int>(p.values.size()) - 1;
      producer.push_back(-1);
    }
    out.push_back(std::move(r));
    return copy_of[v];
  };
  for (size_t i = p.num_forward; i < p.steps.size(); ++i) {
    Step s = p.steps[i];
    if (s.kind == StepKind::Backward) {
      const OpDef &op = *p.g.nodes[s.node]->op;
      if (op.backward_uses & kBwdInputs)
        for (int &v : s.fin) v = ensure(v);
      if (op.backward_uses & kBwdOutputs)
        for (int &v : s.fout) v = ensure(v);
      for (int &v : s.reads) v = ensure(v);
    }
    out.push_back(std::move(s));
  }
  p.steps = std::move(out);
}

struct Planned {
  std::vector<int> storage;  // per value: its region (-1: external, or never written)
  // Per region: where it starts in the executor's one allocation, its bytes, the
  // step that first writes it, and the regions that share some of its bytes at
  // other times (that step waits for everything pushed on them).
  std::vector<size_t> offset, sizes;
  std::vector<int> first;
  std::vector<std::vector<int>> overlaps;
  size_t total = 0;  // the allocation's bytes
  MemoryPlan stats;
};

// Memory planning in two passes.
//
// 1. In step order: which outputs may overwrite an input (the op allows it, the
//    input has no later reader, same size), and each value's lifetime, from the
//    step that writes it to the last step that reads it (never ends for heads;
//    a step's scratch lives for that step only). A value and the outputs written
//    over it form one group, one region of memory, one lifetime.
// 2. The regions are placed in one allocation: in decreasing size (ties: earlier
//    first), each at the offset of the smallest gap that fits between the regions
//    already placed whose lifetimes meet its own, else above them all ("greedy by
//    size" offset planning, as in Pisarchyk and Lee's TensorFlow Lite planner).
//    Lifetimes are closed step ranges: an output never shares memory with the
//    same step's inputs unless it overwrites one.
//
// Each region is its own array (its own engine variable), so steps on regions
// that never share bytes run in parallel; the first step that writes a region
// also writes the variables of the regions it shares bytes with, so it waits for
// their last readers (in this pass, or the previous one).
Planned plan(const Program &p, bool enabled) {
  Planned r;
  const size_t nv = p.values.size();
  const int nsteps = static_cast<int>(p.steps.size());
  r.storage.assign(nv, -1);
  std::vector<int> refs(nv, 0);
  for (auto &s : p.steps)
    for (int v : s.reads) refs[v]++;
  for (int h : p.head_values) refs[h]++;  // outputs stay readable
  auto internal = [&](int v) { return v >= 0 && p.values[v].src == Src::Internal; };
  auto bytes = [&](int v) { return std::max<size_t>(p.values[v].nbytes(), 1); };
  // Pass 1: groups and lifetimes.
  std::vector<int> group(nv, -1);  // per value: its group
  struct Group {
    int first = 0, last = std::numeric_limits<int>::max();
    size_t bytes = 0;
    int live = 0;  // members written and not yet read for the last time
  };
  std::vector<Group> groups;
  auto open = [&](int v, int step) {
    group[v] = static_cast<int>(groups.size());
    groups.push_back(Group{step, std::numeric_limits<int>::max(), bytes(v), 1});
    r.stats.unplanned_bytes += static_cast<int64_t>(bytes(v));
    r.stats.num_values++;
  };
  auto close = [&](int v, int step) {
    Group &gr = groups[group[v]];
    if (--gr.live == 0) gr.last = step;
  };
  for (int i = 0; i < nsteps; ++i) {
    const Step &s = p.steps[i];
    std::vector<char> done(s.out.size(), 0);
    if (enabled) {
      // Output j takes input value u's buffer when u is internal, read by no later step,
      // alone in its group and of the same size (`once`: u is read once by this step).
      auto take_over = [&](int u, int j, bool once) {
        const int v = s.out[j];
        if (!internal(u) || !internal(v) || done[j] || !once) return;
        if (refs[u] != 1 || groups[group[u]].live != 1 || p.values[u].nbytes() != p.values[v].nbytes()) return;
        group[v] = group[u];
        groups[group[u]].live++;
        done[j] = 1;
        r.stats.num_inplace++;
        r.stats.unplanned_bytes += static_cast<int64_t>(p.values[v].nbytes());
        r.stats.num_values++;
      };
      for (auto &io : s.inplace) {
        const int u = s.in[io.first];
        take_over(u, io.second, std::count(s.in.begin(), s.in.end(), u) == 1);
      }
      // A backward step's input gradient over an output gradient it reads last.
      for (auto &io : s.grad_inplace) {
        const int u = s.ograd[io.first];
        const bool once = std::count(s.ograd.begin(), s.ograd.end(), u) == 1 &&
                          std::count(s.reads.begin(), s.reads.end(), u) == 1;
        take_over(u, io.second, once);
      }
    }
    for (size_t j = 0; j < s.out.size(); ++j)
      if (internal(s.out[j]) && !done[j]) open(s.out[j], i);
    if (s.temp >= 0) open(s.temp, i);
    for (int u : s.reads)
      if (--refs[u] == 0 && internal(u)) close(u, i);
    if (s.temp >= 0) close(s.temp, i);
    for (int v : s.out)
      if (internal(v) && refs[v] == 0) close(v, i);
  }
  // Pass 2: offsets.
  const size_t ng = groups.size();
  auto up = [](size_t b) { return (b + 63) / 64 * 64; };  // regions start on cache lines
  r.offset.assign(ng, 0);
  r.sizes.resize(ng);
  r.first.resize(ng);
  r.overlaps.resize(ng);
  for (size_t k = 0; k < ng; ++k) r.sizes[k] = groups[k].bytes, r.first[k] = groups[k].first;
  if (enabled) {
    std::vector<int> order(ng);
    for (size_t k = 0; k < ng; ++k) order[k] = static_cast<int>(k);
    std::stable_sort(order.begin(), order.end(),
                     [&](int a, int b) { return groups[a].bytes > groups[b].bytes; });
    std::vector<int> placed;
    std::vector<std::pair<size_t, size_t>> meet;  // (offset, end) of placed regions alive at the same time
    for (int k : order) {
      const Group &gr = groups[k];
      meet.clear();
      for (int j : placed)
        if (groups[j].first <= gr.last && gr.first <= groups[j].last)
          meet.emplace_back(r.offset[j], r.offset[j] + up(groups[j].bytes));
      std::sort(meet.begin(), meet.end());
      const size_t need = up(gr.bytes);
      size_t end = 0, best = 0, best_gap = std::numeric_limits<size_t>::max();
      for (auto &m : meet) {
        if (m.first >= end + need && m.first - end < best_gap) best = end, best_gap = m.first - end;
        end = std::max(end, m.second);
      }
      r.offset[k] = best_gap != std::numeric_limits<size_t>::max() ? best : end;
      placed.push_back(k);
    }
  } else {
    for (size_t k = 0; k < ng; ++k) r.offset[k] = r.total, r.total += up(groups[k].bytes);
  }
  // Regions sharing bytes (their lifetimes never meet), by a sweep in offset order.
  std::vector<int> by_offset(ng);
  for (size_t k = 0; k < ng; ++k) by_offset[k] = static_cast<int>(k);
  std::sort(by_offset.begin(), by_offset.end(), [&](int a, int b) { return r.offset[a] < r.offset[b]; });
  for (size_t a = 0; a < ng; ++a) {
    const int ka = by_offset[a];
    const size_t end_a = r.offset[ka] + up(groups[ka].bytes);
    r.total = std::max(r.total, end_a);
    for (size_t b = a + 1; b < ng && r.offset[by_offset[b]] < end_a; ++b) {
      r.overlaps[ka].push_back(by_offset[b]);
      r.overlaps[by_offset[b]].push_back(ka);
    }
  }
  for (size_t v = 0; v < nv; ++v) r.storage[v] = group[v];
  r.stats.planned_bytes = static_cast<int64_t>(r.total);
  r.stats.num_buffers = static_cast<int32_t>(ng);
  r.stats.num_steps = static_cast<int32_t>(p.steps.size());
  if (!enabled) r.stats.planned_bytes = r.stats.unplanned_bytes;
  return r;
}

bool planning_enabled() {
  const char *e = std::getenv("LOOM_EXEC_PLAN");
  return !(e && std::strcmp(e, "0") == 0);
}

// Elementwise sum of the inputs into out (out may alias an input).
// Gradient sums: in[0] + in[1] + ... in input order (sum_in_order).
void sum_kernel(const BlobList &in, const TBlob &out) {
  LOOM_DTYPE_SWITCH(out.dtype, T, {
    SmallVec<const T *, 8> src;
    for (const TBlob &b : in) src.push_back(b.ptr<T>());
    sum_in_order(src.data(), src.size(), out.ptr<T>(), out.size(), false);
  });
}

// On a device, gradient sums run the device's ElementWiseSum kernel.
const OpDef &sum_op() { return Registry::get().lookup("ElementWiseSum"); }
const Params &sum_params() {
  static const Params *p = new Params(sum_op(), nullptr, nullptr, 0);
  return *p;
}

// Every kernel the program runs exists on ctx (checked at bind, so a missing
// device kernel is reported before anything is pushed).
void require_kernels(const Program &p, const Context &ctx) {
  for (const Step &s : p.steps) {
    if (s.kind == StepKind::Sum) device::require_kernel(sum_op(), ctx, false);
    if (s.node < 0 || (s.kind != StepKind::Forward && s.kind != StepKind::Backward)) continue;
    const Node &n = *p.g.nodes[s.node];
    if (n.op->any_context && n.parsed && n.parsed->has("ctx"))
      LOOM_CHECK(n.parsed->ctx("ctx") == ctx, LOOM_ERR_INVALID_ARGUMENT, "bind: node '", n.name,
                 "' (", n.op->name, ") copies to ", n.parsed->ctx("ctx").str(),
                 ", but an executor runs on one device and this one binds to ", ctx.str());
    device::require_kernel(*n.op, ctx, s.kind == StepKind::Backward);
  }
}

}  // namespace

struct Executor::Impl {
  Program prog;
  Planned planned;
  NDArray memory;                // the planned memory, in one allocation
  std::vector<NDArray> regions;  // per region: an array over its bytes, with its own variable
  std::vector<NDArray> arrays;   // per value
  std::vector<NDArray> head_grads;
  std::vector<std::string> arg_names, aux_names;
};

Executor::~Executor() = default;

namespace {
std::vector<int32_t> reqs_for(const IndexedGraph &g, const std::map<std::string, int32_t> &reqs,
                              int32_t default_req) {
  std::vector<int32_t> r;
  std::set<std::string> names;
  for (int a : g.args) {
    const std::string &nm = g.nodes[a]->name;
    names.insert(nm);
    auto it = reqs.find(nm);
    int32_t q = it != reqs.end() ? it->second : default_req;
    LOOM_CHECK(q == kNullOp || q == kWriteTo || q == kAddTo, LOOM_ERR_INVALID_ARGUMENT,
               "bind: grad_req ", q, " for '", nm, "' is not 0 (null), 1 (write) or 2 (add)");
    r.push_back(q);
  }
  for (auto &kv : reqs)
    LOOM_CHECK(names.count(kv.first), LOOM_ERR_NOT_FOUND, "bind: grad_req names '", kv.first,
               "', which is not an argument of the symbol");
  return r;
}
}  // namespace

MemoryPlan Executor::plan_only(const Symbol &sym, const std::map<std::string, Shape> &shapes,
                               const std::map<std::string, int32_t> &reqs, int32_t default_req,
                               bool for_training) {
  IndexedGraph g = sym.index();
  ShapeInfo info = infer(g, shapes, {});
  std::vector<int32_t> rq = reqs_for(g, reqs, default_req);
  Program p = build(sym, info, rq, for_training);
  if (!for_training && fusion_enabled()) fuse_for_prediction(p);
  if (for_training && fusion_enabled()) fuse_relu_into_batchnorm(p);
  Planned on = plan(p, true);
  MemoryPlan m = on.stats;
  for (auto &v : p.values)
    if (v.src == Src::Arg || v.src == Src::Aux || v.src == Src::Grad)
      m.argument_bytes += static_cast<int64_t>(v.nbytes());
  m.allocated_bytes = 0;
  return m;
}

std::unique_ptr<Executor> Executor::bind(const Symbol &sym, BindSpec spec, const Executor *share) {
  IndexedGraph g = sym.index();
  std::vector<std::string> arg_names, aux_names;
  for (int a : g.args) arg_names.push_back(g.nodes[a]->name);
  for (int a : g.aux) aux_names.push_back(g.nodes[a]->name);
  LOOM_CHECK(spec.args.size() == arg_names.size(), LOOM_ERR_INVALID_ARGUMENT, "bind: got ",
             spec.args.size(), " argument arrays, the symbol has ", arg_names.size(), " (",
             shape_list(arg_names), ")");
  LOOM_CHECK(spec.aux.size() == aux_names.size(), LOOM_ERR_INVALID_ARGUMENT, "bind: got ",
             spec.aux.size(), " auxiliary-state arrays, the symbol has ", aux_names.size(),
             aux_names.empty() ? "" : " (" + shape_list(aux_names) + ")");
  if (spec.grad_req.empty()) spec.grad_req.assign(arg_names.size(), kNullOp);
  LOOM_CHECK(spec.grad_req.size() == arg_names.size(), LOOM_ERR_INVALID_ARGUMENT, "bind: got ",
             spec.grad_req.size(), " grad_req values for ", arg_names.size(), " arguments");
  spec.grads.resize(arg_names.size());
  std::map<std::string, Shape> shapes;
  std::map<std::string, int32_t> dtypes;
  auto check_array = [&](const NDArray &a, const std::string &what) {
    LOOM_CHECK(a.chunk(), LOOM_ERR_INVALID_ARGUMENT, "bind: ", what, " is missing");
    LOOM_CHECK(a.ctx() == spec.ctx, LOOM_ERR_INVALID_ARGUMENT, "bind: ", what, " is on ",
               a.ctx().str(), " but the executor binds to ", spec.ctx.str());
  };
  bool training = false;
  for (size_t i = 0; i < arg_names.size(); ++i) {
    check_array(spec.args[i], "argument '" + arg_names[i] + "'");
    shapes[arg_names[i]] = spec.args[i].shape();
    dtypes[arg_names[i]] = spec.args[i].dtype();
    int32_t q = spec.grad_req[i];
    LOOM_CHECK(q == kNullOp || q == kWriteTo || q == kAddTo, LOOM_ERR_INVALID_ARGUMENT,
               "bind: grad_req ", q, " for '", arg_names[i],
               "' is not 0 (null), 1 (write) or 2 (add)");
    if (q == kNullOp) continue;
    training = true;
    const NDArray &gr = spec.grads[i];
    check_array(gr, "gradient array for '" + arg_names[i] + "' (grad_req is not null)");
    LOOM_CHECK(gr.shape() == spec.args[i].shape() && gr.dtype() == spec.args[i].dtype(),
               LOOM_ERR_SHAPE, "bind: gradient array for '", arg_names[i], "' is ",
               gr.shape().str(), " ", dtype_name(gr.dtype()), " but the argument is ",
               spec.args[i].shape().str(), " ", dtype_name(spec.args[i].dtype()));
  }
  for (size_t i = 0; i < aux_names.size(); ++i) {
    check_array(spec.aux[i], "auxiliary state '" + aux_names[i] + "'");
    shapes[aux_names[i]] = spec.aux[i].shape();
    dtypes[aux_names[i]] = spec.aux[i].dtype();
  }
  ShapeInfo info = infer(g, shapes, dtypes);
  auto ex = std::unique_ptr<Executor>(new Executor);
  ex->sym_ = sym;
  ex->impl_ = std::make_unique<Impl>();
  Impl &im = *ex->impl_;
  im.arg_names = arg_names;
  im.aux_names = aux_names;
  im.prog = build(sym, info, spec.grad_req, training,
                  training && spec.fuse && spec.ctx.dev_type == LOOM_DEVICE_CPU && use_onednn() &&
                      onednn_block() != 0 && blocked_layouts_enabled());
  if (!training && spec.fuse && spec.ctx.dev_type == LOOM_DEVICE_CPU && fusion_enabled())
    fuse_for_prediction(im.prog);
  if (training && spec.fuse && spec.ctx.dev_type == LOOM_DEVICE_CPU && fusion_enabled())
    fuse_relu_into_batchnorm(im.prog);
  if (training && spec.ctx.dev_type == LOOM_DEVICE_CPU) mark_training_winograd(im.prog);
  require_kernels(im.prog, spec.ctx);
  im.planned = plan(im.prog, planning_enabled());
  Program &p = im.prog;
  ex->plan_ = im.planned.stats;
  if (!planning_enabled()) ex->plan_.planned_bytes = plan(p, true).stats.planned_bytes;
  // The planned memory: the shared executor's when it is large enough.
  const size_t total = std::max<size_t>(im.planned.total, 1);
  if (share && share->impl_->memory.chunk() && share->impl_->memory.nbytes() >= total &&
      share->impl_->memory.ctx() == spec.ctx)
    im.memory = share->impl_->memory;
  else
    im.memory = NDArray::empty(Shape{static_cast<int64_t>(total)}, kUInt8, spec.ctx);
  ex->plan_.allocated_bytes = static_cast<int64_t>(im.planned.total);
  NDArray whole = im.memory;  // kept alive by every region
  for (size_t k = 0; k < im.planned.sizes.size(); ++k)
    im.regions.push_back(NDArray::external(static_cast<char *>(whole.data()) + im.planned.offset[k],
                                           Shape{static_cast<int64_t>(im.planned.sizes[k])}, kUInt8, spec.ctx,
                                           [whole] {}));
  im.arrays.resize(p.values.size());
  for (size_t h = 0; h < p.head_grad_values.size(); ++h) {
    im.head_grads.emplace_back();
    if (p.head_grad_values[h] < 0) continue;
    const Value &v = p.values[p.head_grad_values[h]];
    NDArray hg = NDArray::empty(v.shape, v.dtype, spec.ctx);
    std::string shp = "(";
    for (int i = 0; i < v.shape.ndim; ++i) shp += std::to_string(v.shape.d[i]) + ",";
    shp += ")";
    ArrayList outs{hg};
    std::string c = spec.ctx.str();
    const char *k[] = {"shape", "dtype", "ctx", "value"};
    const char *val[] = {shp.c_str(), dtype_name(v.dtype), c.c_str(), "1"};
    bool was = autograd::set_recording(false);
    invoke(Registry::get().lookup("full"), {}, outs, k, val, 4);
    autograd::set_recording(was);
    im.head_grads.back() = hg;
  }
  for (size_t v = 0; v < p.values.size(); ++v) {
    const Value &val = p.values[v];
    switch (val.src) {
      case Src::Arg: im.arrays[v] = spec.args[val.index].detached(); break;
      case Src::Aux: im.arrays[v] = spec.aux[val.index].detached(); break;
      case Src::Grad: im.arrays[v] = spec.grads[val.index].detached(); break;
      case Src::HeadGrad: im.arrays[v] = im.head_grads[val.index]; break;
      case Src::Internal: {
        int s = im.planned.storage[v];
        if (s < 0) break;  // never produced (unused)
        if (val.scratch)
          im.arrays[v] = im.regions[s].view(Shape{static_cast<int64_t>(val.bytes)}, kUInt8);
        else
          im.arrays[v] = im.regions[s].view(val.shape, val.dtype);
        break;
      }
    }
  }
  for (auto &a : spec.args) ex->plan_.argument_bytes += static_cast<int64_t>(a.nbytes());
  for (auto &a : spec.aux) ex->plan_.argument_bytes += static_cast<int64_t>(a.nbytes());
  for (auto &a : spec.grads)
    if (a.chunk()) ex->plan_.argument_bytes += static_cast<int64_t>(a.nbytes());
  for (int h : p.head_values) ex->outputs_.push_back(im.arrays[h]);
  ex->spec_ = std::move(spec);
  return ex;
}

std::unique_ptr<Executor> Executor::simple_bind(const Symbol &sym, const Context &ctx,
                                                const std::map<std::string, Shape> &shapes,
                                                const std::map<std::string, int32_t> &dtypes,
                                                const std::map<std::string, int32_t> &reqs,
                                                int32_t default_req) {
  check_context(ctx);
  IndexedGraph g = sym.index();
  ShapeInfo info = infer(g, shapes, dtypes);
  BindSpec spec;
  spec.ctx = ctx;
  spec.grad_req = reqs_for(g, reqs, default_req);
  auto need = [&](int node, const char *what) {
    int e = g.entry_base[node];
    LOOM_CHECK(info.known[e], LOOM_ERR_SHAPE, "simple_bind: cannot infer the shape of ", what,
               " '", g.nodes[node]->name, "'; give its shape or the shapes of the inputs it "
               "depends on");
    return NDArray::empty(info.shape[e], info.dtype[e] < 0 ? kFloat32 : info.dtype[e], ctx);
  };
  for (size_t a = 0; a < g.args.size(); ++a) {
    spec.args.push_back(need(g.args[a], "argument"));
    spec.grads.push_back(spec.grad_req[a] != kNullOp ? need(g.args[a], "argument") : NDArray());
  }
  for (int a : g.aux) spec.aux.push_back(need(a, "auxiliary state"));
  // Fresh arrays hold zeros until initialised.
  auto zero = [](const NDArray &a) {
    if (!a.chunk()) return;
    std::vector<char> z(a.nbytes(), 0);
    a.copy_from_host(z.data(), z.size());
  };
  for (auto &a : spec.args) zero(a);
  for (auto &a : spec.grads) zero(a);
  for (auto &a : spec.aux) zero(a);
  return bind(sym, std::move(spec));
}

std::unique_ptr<Executor> Executor::reshape(const std::map<std::string, Shape> &shapes) const {
  const Impl &im = *impl_;
  std::map<std::string, Shape> all;
  for (size_t i = 0; i < im.arg_names.size(); ++i) all[im.arg_names[i]] = spec_.args[i].shape();
  for (size_t i = 0; i < im.aux_names.size(); ++i) all[im.aux_names[i]] = spec_.aux[i].shape();
  for (auto &kv : shapes) {
    LOOM_CHECK(all.count(kv.first), LOOM_ERR_NOT_FOUND, "reshape: the symbol has no argument '",
               kv.first, "'");
    all[kv.first] = kv.second;
  }
  // Re-infer from the changed inputs only, so parameter shapes follow them.
  std::map<std::string, Shape> given = shapes;
  IndexedGraph g = sym_.index();
  ShapeInfo info = infer(g, given, {});
  BindSpec spec;
  spec.ctx = spec_.ctx;
  spec.grad_req = spec_.grad_req;
  auto pick = [&](const NDArray &old, int node, const std::string &name) {
    int e = g.entry_base[node];
    Shape s = info.known[e] ? info.shape[e] : all[name];
    if (s == old.shape()) return old;
    return NDArray::empty(s, old.dtype(), spec.ctx);
  };
  for (size_t a = 0; a < g.args.size(); ++a) {
    spec.args.push_back(pick(spec_.args[a], g.args[a], im.arg_names[a]));
    spec.grads.push_back(spec_.grads[a].chunk() ? pick(spec_.grads[a], g.args[a], im.arg_names[a])
                                                : NDArray());
  }
  for (size_t a = 0; a < g.aux.size(); ++a)
    spec.aux.push_back(pick(spec_.aux[a], g.aux[a], im.aux_names[a]));
  return bind(sym_, std::move(spec), this);
}

namespace {
struct Pushed {
  const OpDef *op = nullptr;
  std::shared_ptr<const Params> params;
  StepKind kind;
  OpContext ctx;
  SmallVec<NDArray, 4> in, out, fin, fout, ograd;
  SmallVec<char, 4> in_stable;  // in[k] is a bound argument (Forward steps)
  // Which arrays are blocked (Value::blocked: 1, or 2 in channels last), in the
  // order of in, out, fin, fout and ograd; empty when none is.
  std::vector<char> blocked;
  NDArray temp;                 // the step's scratch (ctx.temp), kept alive with the call
  std::shared_ptr<const Fused> fused;
  ReqList req;
  std::string label;  // "op node" for the profiler; lives as long as the pushed call
};

// Prepares one step: its call, and the vars it reads and writes.
std::shared_ptr<Pushed> make_call(const Executor::Impl &im, size_t step, const Context &ctx, bool is_train,
                                  VarList &reads, VarList &writes) {
  const Program &p = im.prog;
  const std::vector<NDArray> &arrays = im.arrays;
  const Step &s = p.steps[step];
  auto call = std::make_shared<Pushed>();
  call->kind = s.kind;
  call->ctx.ctx = ctx;
  call->ctx.is_train = is_train;
  call->ctx.relu_after = s.relu_after;
  call->ctx.winograd = s.winograd;
  auto arr = [&](int v) -> const NDArray & { return arrays[v]; };
  const Node *node = s.node >= 0 ? p.g.nodes[s.node] : nullptr;
  if (node) {
    call->op = node->op;
    call->params = node->parsed;
  }
  for (int v : s.in) {
    call->in.push_back(arr(v));
    // Arguments are written only through the engine, never by a forward step.
    call->in_stable.push_back(s.kind == StepKind::Forward && p.values[v].src == Src::Arg);
    reads.push_back(arr(v).var());
  }
  for (int v : s.out) {
    if (v < 0) {
      call->out.push_back(NDArray());
      continue;
    }
    call->out.push_back(arr(v));
    writes.push_back(arr(v).var());
  }
  // A region's first writer waits for the last readers of the regions it shares
  // bytes with (Planned::overlaps).
  auto after_overlaps = [&](int v) {
    const int r = v >= 0 ? im.planned.storage[v] : -1;
    if (r >= 0 && im.planned.first[r] == static_cast<int>(step))
      for (int o : im.planned.overlaps[r]) writes.push_back(im.regions[o].var());
  };
  for (int v : s.out) after_overlaps(v);
  after_overlaps(s.temp);
  if (s.temp >= 0) {
    call->temp = arr(s.temp);
    call->ctx.temp = call->temp.data();
    call->ctx.temp_bytes = call->temp.nbytes();
    writes.push_back(call->temp.var());
  }
  if (s.kind == StepKind::Forward) {
    if (node->op->draws(*node->parsed)) next_random_stream(&call->ctx.rng_key, &call->ctx.rng_stream);
  } else if (s.kind == StepKind::Backward) {
    for (int v : s.fin) call->fin.push_back(arr(v));
    // Auxiliary states are updated by the backward pass in training (BatchNorm's
    // moving statistics, as in MXNet).
    if (node->op->num_aux > 0 && is_train)
      for (size_t k = s.fin.size() - node->op->num_aux; k < s.fin.size(); ++k)
        writes.push_back(arr(s.fin[k]).var());
    for (int v : s.fout) call->fout.push_back(arr(v));
    for (int v : s.ograd) call->ograd.push_back(arr(v));
    for (int v : s.reads) reads.push_back(arr(v).var());
    call->req = s.req;
  }
  call->fused = s.fused;
  {
    std::vector<char> b;
    bool any = false;
    for (const std::vector<int> *list : {&s.in, &s.out, &s.fin, &s.fout, &s.ograd})
      for (int v : *list) {
        const bool bl = v >= 0 && p.values[v].blocked;
        b.push_back(bl ? (p.values[v].last ? 2 : 1) : 0);
        any |= bl;
      }
    if (any) call->blocked = std::move(b);
  }
  if (node && profiler::enabled() && s.fused) {
    const Fused &f = *s.fused;
    call->label = node->op->name + (f.bn ? "+BatchNorm" : "") + (f.add ? "+" + f.add->op->name : "") +
                  (f.act ? "+" + f.act->parsed->s("act_type") : "") + " " + node->name;
  } else if (node && profiler::enabled()) {
    call->label = node->op->name + (s.relu_after ? "+relu " : " ") + node->name;
  }
  else call->label = node ? node->op->name : (s.kind == StepKind::Sum ? "grad_sum" : "grad_zero");
  return call;
}

void run_original(const Pushed &call, const OpContext &ctx, const BlobList &conv_in, BlobList &bn_in,
                  const TBlob *addend, const TBlob &y);

// A fused Convolution step (fuse_for_prediction): in = conv inputs, then the
// BatchNorm's gamma, beta, mean and var, then the addend; out = the last value.
void run_fused(const Pushed &call, const BlobList &in, const TBlob &y) {
  const Fused &f = *call.fused;
  if (f.fc) {  // FullyConnected, then its Activation in place
    run_forward(*call.op, call.ctx, *call.params, in, BlobList{y});
    OpContext plain = call.ctx;
    plain.temp = nullptr;
    plain.temp_bytes = 0;
    run_forward(*f.act_run.op, plain, *f.act_run.params, BlobList{y}, BlobList{y});
    return;
  }
  const size_t nc = f.conv_inputs;
  BlobList conv_in, bn_in;
  for (size_t k = 0; k < nc; ++k) conv_in.push_back(in[k]);
  const OpContext &ctx = call.ctx;  // its scratch is the convolution's
  std::vector<float> scale, shift;
  bool affine = true;
  if (f.bn) {
    bn_in.push_back(TBlob{});  // the convolution's output, below
    for (size_t k = 0; k < 4; ++k) bn_in.push_back(in[nc + k]);
    bn_in[0].shape = y.shape;
    bn_in[0].dtype = y.dtype;
    affine = batchnorm_prediction_affine(call.ctx, *f.bn_run.params, bn_in, scale, shift);
  }
  const TBlob *addend = f.add ? &in[in.size() - 1] : nullptr;
  ConvEpilogue ep;
  // With oneDNN the BatchNorm is folded into the weights and bias (kept between
  // calls; LOOM_EXEC_FOLD=0 applies it as per-channel post-ops instead), so the
  // convolution is followed by nothing per channel and sums the addend fast.
  std::shared_ptr<const FoldedConv> fold;
  BlobList dnn_in = conv_in;
  if (f.bn && affine && use_onednn() && f.onednn && fold_enabled())
    fold = fold_batchnorm_into_conv(*f.bn_run.params, conv_in, bn_in);
  if (fold) {
    dnn_in[1].dptr = const_cast<float *>(fold->weight.data());
    TBlob b{const_cast<float *>(fold->bias.data()), Shape{static_cast<int64_t>(fold->bias.size())}, kFloat32,
            conv_in[1].ctx, nullptr};
    if (dnn_in.size() > 2)
      dnn_in[2] = b;
    else
      dnn_in.push_back(b);
    ep.weights_id = fold->id;
  }
  const bool bn_post = f.bn && !fold;  // the BatchNorm as oneDNN post-ops
  if (bn_post) ep.scale = scale.data(), ep.shift = shift.data();
  auto buffer = [](int64_t n) {
    return std::unique_ptr<float[]>(new float[static_cast<size_t>(std::max<int64_t>(n, 1))]);
  };
  // With the BatchNorm as post-ops the addend is not summed from y, so an addend
  // planned in place (y is its buffer) is kept apart first.
  std::unique_ptr<float[]> addend_apart;
  TBlob apart;
  if (addend && bn_post && addend->dptr == y.dptr) {
    addend_apart = buffer(addend->size());
    std::memcpy(addend_apart.get(), addend->dptr, static_cast<size_t>(addend->size()) * sizeof(float));
    apart = *addend;
    apart.dptr = addend_apart.get();
    addend = &apart;
  }
  ep.src_blocked = f.src_blocked;
  ep.dst_blocked = f.dst_blocked;
  ep.src_last = f.src_last;
  ep.dst_last = f.dst_last;
  ep.winograd = f.winograd;
  // Without a BatchNorm as post-ops (none, or folded), the addend is summed by
  // oneDNN from y: y is its buffer (planned in place) or gets a copy (same layout:
  // both blocked or both plain). oneDNN 2.6 has only its slow reference kernel for
  // per-channel post-ops followed by a sum: with the BatchNorm as post-ops, a
  // blocked addend is a binary post-op of its own, and a plain one is added
  // after oneDNN (with the relu, below).
  const bool addend_op = addend && bn_post && f.dst_blocked;
  if (addend_op) ep.addend = addend->ptr<float>();
  if (affine && use_onednn() && f.onednn && addend && !bn_post) {
    ep.sum = true;
    if (y.dptr != addend->dptr) {
      char *o = static_cast<char *>(y.dptr);
      const char *a = static_cast<const char *>(addend->dptr);
      parallel_ranges(static_cast<int64_t>(y.size() * sizeof(float)), 1 << 18,
                      [&](int64_t b, int64_t e) { std::memcpy(o + b, a + b, static_cast<size_t>(e - b)); });
    }
  }
  // The rest, y = relu(y + addend) as the add then the Activation do, Loom applies
  // to each piece of the output as soon as oneDNN has written it (ConvEpilogue::
  // after_add, relu). By default the relu is MXNet's (NaN passes through), not a
  // oneDNN post-op (which turns NaN into 0); elementwise, so the layout does not
  // matter. With onednn_relu (at bind) oneDNN applies its own instead, where it can.
  ep.relu = f.act != nullptr;
  ep.onednn_relu = f.onednn_relu;
  if (addend && bn_post && !addend_op) ep.after_add = addend->ptr<float>();
  if (affine && (!addend || ep.sum || bn_post) && conv_forward_with_epilogue(ctx, *call.params, dnn_in, y, ep))
    return;
  // The original kernels (the reference kernel set, a case oneDNN does not
  // take, a BatchNorm on the batch's statistics), on plain arrays: blocked data,
  // output and addend are reordered to and from plain buffers.
  auto relayout = [](const TBlob &b, const float *src, float *dst, bool to_blocked, bool last) {
    if (last)
      onednn_channels_last_layout(src, dst, b.shape.d[0], b.shape.d[1], b.shape.d[2], b.shape.d[3], to_blocked);
    else
      onednn_blocked_layout(src, dst, b.shape.d[0], b.shape.d[1], b.shape.d[2], b.shape.d[3], to_blocked);
  };
  std::unique_ptr<float[]> plain_x, plain_y, plain_a;
  if (f.src_blocked) {
    plain_x = buffer(conv_in[0].size());
    relayout(conv_in[0], conv_in[0].ptr<float>(), plain_x.get(), false, f.src_last);
    conv_in[0].dptr = plain_x.get();
  }
  TBlob yb = y;
  TBlob ab = addend ? *addend : TBlob{};
  if (addend && addend->dptr == y.dptr && !f.dst_blocked) {  // in place: keep the addend apart
    plain_a = buffer(addend->size());
    std::memcpy(plain_a.get(), addend->dptr, static_cast<size_t>(addend->size()) * sizeof(float));
    ab.dptr = plain_a.get();
    addend = &ab;
  }
  if (f.dst_blocked) {
    plain_y = buffer(y.size());
    yb.dptr = plain_y.get();
    if (addend) {
      plain_a = buffer(addend->size());
      relayout(*addend, addend->ptr<float>(), plain_a.get(), false, f.dst_last);
      ab.dptr = plain_a.get();
      addend = &ab;
    }
  }
  run_original(call, ctx, conv_in, bn_in, addend, yb);
  if (f.dst_blocked) relayout(y, yb.ptr<float>(), y.ptr<float>(), true, f.dst_last);
}

// The fused step's original kernels, one after another, on plain arrays: the
// convolution into a buffer of its own (with a BatchNorm) or into y; the rest in
// place on y.
void run_original(const Pushed &call, const OpContext &ctx, const BlobList &conv_in, BlobList &bn_in,
                  const TBlob *addend, const TBlob &y) {
  const Fused &f = *call.fused;
  TBlob conv_out = y;
  std::unique_ptr<float[]> between;
  if (f.bn) {
    between.reset(new float[static_cast<size_t>(std::max<int64_t>(y.size(), 1))]);
    conv_out.dptr = between.get();
  }
  run_forward(*call.op, ctx, *call.params, conv_in, BlobList{conv_out});
  OpContext plain = call.ctx;
  plain.temp = nullptr;
  plain.temp_bytes = 0;
  if (f.bn) {
    bn_in[0] = conv_out;
    run_forward(*f.bn_run.op, plain, *f.bn_run.params, bn_in, BlobList{y});
  }
  if (addend) {
    BlobList ab{y, *addend};
    if (f.add_chain_pos == 1) std::swap(ab[0], ab[1]);
    run_forward(*f.add_run.op, plain, *f.add_run.params, ab, BlobList{y});
  }
  if (f.act) run_forward(*f.act_run.op, plain, *f.act_run.params, BlobList{y}, BlobList{y});
}

void run_call(Pushed &call) {
  BlobList in, out;
  for (size_t k = 0; k < call.in.size(); ++k)
    in.push_back(call.in_stable[k] ? call.in[k].stable_blob() : call.in[k].blob());
  for (auto &a : call.out) out.push_back(a.chunk() ? a.blob() : TBlob{});
  // Marks the blobs of arrays kept blocked, list by list as make_call recorded them.
  size_t at = 0;
  auto mark = [&](BlobList &list) {
    for (auto &b : list) {
      const char c = call.blocked.empty() ? 0 : call.blocked[at++];
      b.blocked = c != 0;
      b.last = c == 2;
    }
  };
  // (A fused step takes its layouts from Fused::src_blocked and dst_blocked.)
  if (!call.fused) {
    mark(in);
    mark(out);
  }
  switch (call.kind) {
    case StepKind::Forward:
      if (call.fused)
        run_fused(call, in, out[0]);
      else
        run_forward(*call.op, call.ctx, *call.params, in, out);
      break;
    case StepKind::Backward: {
      BlobList fi, fo, og;
      for (auto &a : call.fin) fi.push_back(a.blob());
      for (auto &a : call.fout) fo.push_back(a.blob());
      for (auto &a : call.ograd) og.push_back(a.blob());
      mark(fi);
      mark(fo);
      mark(og);
      run_backward(*call.op, call.ctx, *call.params, fi, fo, og, out, call.req);
      break;
    }
    case StepKind::Sum:
      if (call.ctx.ctx.dev_type == LOOM_DEVICE_GPU)
        run_forward(sum_op(), call.ctx, sum_params(), in, out);
      else
        sum_kernel(in, out[0]);
      break;
    case StepKind::Zero: device::zero(out[0].dptr, call.ctx.ctx, call.out[0].nbytes()); break;
  }
}

// Steps whose outputs total at most this many bytes are cheap enough that the
// engine's per-op cost matters: consecutive ones are pushed as one op.
constexpr size_t kSmallStepBytes = size_t(1) << 18;

// Most steps in one bulk (LOOM_EXEC_BULK, default 16; 0 or 1 turns bulking off).
int bulk_limit() {
  const char *e = std::getenv("LOOM_EXEC_BULK");
  return e && *e ? std::max(1, std::atoi(e)) : 16;
}

size_t output_bytes(const std::vector<NDArray> &arrays, const Step &s) {
  size_t b = 0;
  for (int v : s.out)
    if (v >= 0) b += arrays[v].nbytes();
  return b;
}

// Pushes steps [first, last): large steps alone, runs of small ones as bulks.
// A bulk runs its steps in order on one worker; it reads what its steps read
// and writes what they write (the engine drops reads that are also writes).
//
// Every step reads the variable of the planned memory as a whole, and the first
// step of a forward pass writes it: a pass waits for everything pushed before on
// that memory, which an executor bound with `share` may have in use too.
void push_steps(const Executor::Impl &im, size_t first, size_t last, const Context &ctx, bool is_train) {
  const Program &p = im.prog;
  const std::vector<NDArray> &arrays = im.arrays;
  const int limit = bulk_limit();
  size_t i = first;
  while (i < last) {
    size_t j = i + 1;
    if (limit > 1 && output_bytes(arrays, p.steps[i]) <= kSmallStepBytes)
      while (j < last && j - i < static_cast<size_t>(limit) &&
             output_bytes(arrays, p.steps[j]) <= kSmallStepBytes)
        ++j;
    VarList reads, writes;
    std::vector<std::shared_ptr<Pushed>> calls;
    for (size_t k = i; k < j; ++k) calls.push_back(make_call(im, k, ctx, is_train, reads, writes));
    (i == 0 ? writes : reads).push_back(im.memory.var());
    PushOptions po;
    po.backward = p.steps[i].kind == StepKind::Backward;
    if (calls.size() == 1) {
      auto call = calls[0];
      po.name = call->label.c_str();
      Engine::get().push([call]() { run_call(*call); }, ctx, std::move(reads), std::move(writes), po);
    } else {
      po.name = "bulk";
      po.profiled_inside = true;
      Engine::get().push(
          [calls]() {
            for (auto &c : calls) {
              if (!profiler::enabled()) {
                run_call(*c);
                continue;
              }
              auto t0 = std::chrono::steady_clock::now();
              run_call(*c);
              profiler::record(c->label.c_str(), c->kind == StepKind::Backward,
                               std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
            }
          },
          ctx, std::move(reads), std::move(writes), po);
    }
    i = j;
  }
}
}  // namespace

void Executor::rebind(Bound which, size_t index, const NDArray &array) {
  const char *what = which == Bound::Argument   ? "argument "
                     : which == Bound::AuxState ? "auxiliary state "
                                                : "gradient ";
  std::vector<NDArray> &list = which == Bound::Argument   ? spec_.args
                               : which == Bound::AuxState ? spec_.aux
                                                          : spec_.grads;
  LOOM_CHECK(index < list.size(), LOOM_ERR_INVALID_ARGUMENT, "rebind: ", what, index,
             " is out of range (", list.size(), ")");
  NDArray &slot = list[index];
  LOOM_CHECK(slot.chunk(), LOOM_ERR_INVALID_ARGUMENT, "rebind: ", what, index,
             " is not bound (its gradient request is null)");
  if (slot.chunk() == array.chunk() && slot.offset() == array.offset()) return;
  LOOM_CHECK(array.shape() == slot.shape() && array.dtype() == slot.dtype() &&
                 array.ctx() == slot.ctx(),
             LOOM_ERR_SHAPE, "rebind: ", what, index, " is ", slot.shape().str(), " ",
             dtype_name(slot.dtype()), " on ", slot.ctx().str(), ", the new array is ",
             array.shape().str(), " ", dtype_name(array.dtype()), " on ", array.ctx().str());
  slot = array.detached();
  const Program &p = impl_->prog;
  const Src want = which == Bound::Argument ? Src::Arg : which == Bound::AuxState ? Src::Aux : Src::Grad;
  for (size_t v = 0; v < p.values.size(); ++v)
    if (p.values[v].src == want && p.values[v].index == static_cast<int>(index))
      impl_->arrays[v] = slot;
  for (size_t h = 0; h < outputs_.size(); ++h)
    if (p.head_values.size() > h && p.values[p.head_values[h]].src == want &&
        p.values[p.head_values[h]].index == static_cast<int>(index))
      outputs_[h] = slot;
}

void Executor::forward(bool is_train) {
  const Program &p = impl_->prog;
  push_steps(*impl_, 0, p.num_forward, spec_.ctx, is_train);
}

void Executor::backward(const std::vector<NDArray> &head_grads) {
  const Program &p = impl_->prog;
  LOOM_CHECK(p.steps.size() > p.num_forward || p.num_forward == p.steps.size(),
             LOOM_ERR_INTERNAL, "backward: inconsistent program");
  bool training = false;
  for (int32_t q : spec_.grad_req) training |= q != kNullOp;
  LOOM_CHECK(training, LOOM_ERR_INVALID_ARGUMENT,
             "backward: the executor was bound without gradients (every grad_req is null)");
  if (!head_grads.empty()) {
    LOOM_CHECK(head_grads.size() == impl_->head_grads.size(), LOOM_ERR_INVALID_ARGUMENT,
               "backward: got ", head_grads.size(), " head gradients for ",
               impl_->head_grads.size(), " outputs");
    for (size_t h = 0; h < head_grads.size(); ++h) {
      const NDArray &dst = impl_->head_grads[h];
      if (!head_grads[h].chunk() || !dst.chunk()) continue;
      LOOM_CHECK(head_grads[h].shape() == dst.shape(), LOOM_ERR_SHAPE, "backward: head gradient ",
                 h, " has shape ", head_grads[h].shape().str(), " but output ", h, " is ",
                 dst.shape().str());
      LOOM_CHECK(head_grads[h].dtype() == dst.dtype(), LOOM_ERR_DTYPE, "backward: head gradient ",
                 h, " has dtype ", dtype_name(head_grads[h].dtype()), " but output ", h, " is ",
                 dtype_name(dst.dtype()));
      ArrayList outs{dst};
      bool was = autograd::set_recording(false);
      try {
        invoke(Registry::get().lookup("copy"), ArrayList{head_grads[h]}, outs, nullptr, nullptr, 0);
      } catch (...) {
        autograd::set_recording(was);
        throw;
      }
      autograd::set_recording(was);
    }
  }
  push_steps(*impl_, p.num_forward, p.steps.size(), spec_.ctx, true);
}

}  // namespace loom
