// BatchNorm folding (see fold.h).
#include "symbol/fold.h"

#include <cmath>
#include <set>
#include <unordered_map>

#include "ops/nn/fused.h"

namespace loom {

namespace {

std::vector<float> host_values(const NDArray &a, const std::string &name) {
  LOOM_CHECK(a.dtype() == kFloat32, LOOM_ERR_DTYPE, "fold_batchnorm: parameter '", name, "' is ",
             dtype_name(a.dtype()), "; folding takes float32 parameters");
  std::vector<float> v(static_cast<size_t>(a.shape().size()));
  a.copy_to_host(v.data(), v.size() * sizeof(float));
  return v;
}

NDArray host_array(const std::vector<float> &v, const Shape &s) {
  NDArray a = NDArray::empty(s, kFloat32, Context{});
  a.copy_from_host(v.data(), v.size() * sizeof(float));
  return a;
}

}  // namespace

FoldResult fold_batchnorm(const Symbol &sym, const std::map<std::string, NDArray> &params) {
  IndexedGraph g = sym.index();
  const size_t nn = g.nodes.size();
  // How many times each entry is read (heads count).
  std::vector<int> reads(g.num_entries(), 0);
  for (Node *n : g.nodes)
    for (auto &e : n->inputs) ++reads[g.entry(e)];
  for (int h : g.heads) ++reads[h];
  // Shared pointers of the nodes (variables are reused as they are).
  std::unordered_map<const Node *, NodePtr> ptr;
  for (Node *n : g.nodes)
    for (auto &e : n->inputs) ptr[e.node.get()] = e.node;
  for (auto &e : sym.outputs) ptr[e.node.get()] = e.node;

  auto param_of = [&](const NodeEntry &e, std::string *name) {
    if (!e.node->is_variable()) return false;
    *name = e.node->name;
    return params.count(*name) > 0;
  };
  // The BatchNorms to fold, by node id, with their layer's node id.
  std::map<int, int> bn_layer;
  for (size_t i = 0; i < nn; ++i) {
    const Node &bn = *g.nodes[i];
    if (bn.is_variable() || bn.op->name != "BatchNorm") continue;
    const Params &p = *bn.parsed;
    if (p.b("output_mean_var")) continue;
    const int base = g.entry_base[i];
    bool stats_read = false;  // outputs beyond the first (the batch's mean and variance)
    for (int k = 1; k < bn.num_outputs(); ++k) stats_read = stats_read || reads[base + k] > 0;
    if (stats_read) continue;
    const NodeEntry &in = bn.inputs[0];
    const Node &layer = *in.node;
    if (layer.is_variable() || (layer.op->name != "Convolution" && layer.op->name != "FullyConnected"))
      continue;
    if (reads[g.entry(in)] != 1) continue;  // the layer's output is read by the BatchNorm only
    int64_t axis = p.i("axis");
    if (axis != 1) continue;
    std::string nm;
    bool ok = true;
    for (size_t k = 1; k < 5; ++k) ok = ok && param_of(bn.inputs[k], &nm);
    for (size_t k = 1; k < layer.inputs.size(); ++k)
      ok = ok && param_of(layer.inputs[k], &nm) && reads[g.entry(layer.inputs[k])] == 1;
    if (!ok) continue;
    bn_layer[static_cast<int>(i)] = g.id.at(&layer);
  }
  std::set<int> layers;
  for (auto &kv : bn_layer) layers.insert(kv.second);

  FoldResult r;
  std::map<std::string, NDArray> out_params;
  std::vector<NodePtr> made(nn);
  std::unordered_map<int, int> layer_bn;
  for (auto &kv : bn_layer) layer_bn[kv.second] = kv.first;
  auto map_entry = [&](const NodeEntry &e) {
    int id = g.id.at(e.node.get());
    auto f = bn_layer.find(id);
    if (f != bn_layer.end()) return NodeEntry{made[f->second], 0};
    return NodeEntry{made[id], e.index};
  };
  for (size_t i = 0; i < nn; ++i) {
    const Node &n = *g.nodes[i];
    if (n.is_variable()) {
      made[i] = ptr.at(&n);
      continue;
    }
    if (bn_layer.count(static_cast<int>(i))) continue;  // replaced by its layer
    if (!layers.count(static_cast<int>(i))) {
      auto c = std::make_shared<Node>(n);
      for (auto &e : c->inputs) e = map_entry(e);
      made[i] = c;
      continue;
    }
    // The layer, folded: weight and bias recomputed, bias added where it had none.
    const Node &bn = *g.nodes[layer_bn.at(static_cast<int>(i))];
    const Params &bp = *bn.parsed;
    const std::string wname = n.inputs[1].node->name;
    const bool had_bias = n.inputs.size() > 2;
    std::string bname = had_bias ? n.inputs[2].node->name : n.name + "_bias";
    auto taken = [&](const std::string &x) {
      if (params.count(x) || out_params.count(x)) return true;
      for (Node *m : g.nodes)
        if (m->is_variable() && m->name == x) return true;
      return false;
    };
    if (!had_bias)
      for (int k = 1; taken(bname); ++k) bname = n.name + "_bias" + std::to_string(k);
    const NDArray &W = params.at(wname);
    std::vector<float> w = host_values(W, wname);
    const int64_t f = W.shape().d[0], per = f ? W.shape().size() / f : 0;
    std::vector<float> b = had_bias ? host_values(params.at(bname), bname) : std::vector<float>(f, 0.0f);
    std::vector<float> gamma = host_values(params.at(bn.inputs[1].node->name), bn.inputs[1].node->name),
                       beta = host_values(params.at(bn.inputs[2].node->name), bn.inputs[2].node->name),
                       mean = host_values(params.at(bn.inputs[3].node->name), bn.inputs[3].node->name),
                       var = host_values(params.at(bn.inputs[4].node->name), bn.inputs[4].node->name);
    LOOM_CHECK(static_cast<int64_t>(b.size()) == f && static_cast<int64_t>(gamma.size()) == f &&
                   static_cast<int64_t>(beta.size()) == f && static_cast<int64_t>(mean.size()) == f &&
                   static_cast<int64_t>(var.size()) == f,
               LOOM_ERR_SHAPE, "fold_batchnorm: BatchNorm '", bn.name, "' has parameters of another length than the ",
               f, " outputs of '", n.name, "'");
    fold_batchnorm_values(f, per, bp.f("eps"), bp.b("fix_gamma"), gamma.data(), beta.data(), mean.data(), var.data(),
                          w.data(), b.data());
    out_params[wname] = host_array(w, W.shape());
    out_params[bname] = host_array(b, Shape{f});
    StrPairs ps;
    for (auto &kv : n.params)
      if (kv.first != "no_bias") ps.push_back(kv);
    ps.push_back({"no_bias", "false"});
    Symbol data, weight, bias;
    data.outputs = {map_entry(n.inputs[0])};
    weight.outputs = {NodeEntry{made[g.id.at(n.inputs[1].node.get())], 0}};
    if (had_bias) bias.outputs = {NodeEntry{made[g.id.at(n.inputs[2].node.get())], 0}};
    else bias = Symbol::variable(bname);
    Symbol s = Symbol::create(*n.op, n.name, ps, {&data, &weight, &bias}, {});
    s.outputs[0].node->attrs = n.attrs;
    made[i] = s.outputs[0].node;
    ++r.folded;
  }
  for (auto &e : sym.outputs) r.sym.outputs.push_back(map_entry(e));
  // Every parameter the new graph reads: folded ones recomputed, the rest as given.
  IndexedGraph ng = r.sym.index();
  for (Node *n : ng.nodes) {
    if (!n->is_variable()) continue;
    auto o = out_params.find(n->name);
    if (o != out_params.end()) {
      r.params.emplace_back(n->name, o->second);
    } else if (auto p = params.find(n->name); p != params.end()) {
      r.params.emplace_back(n->name, p->second);
    }
  }
  return r;
}

}  // namespace loom
