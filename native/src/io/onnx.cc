// ONNX export and import (see onnx.h). Each Loom op maps to ONNX nodes with
// the same arithmetic; where a parameter value has no exact counterpart the
// call fails naming the node rather than writing a different model.
#include "io/onnx.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <iterator>
#include <memory>
#include <set>
#include <sstream>

#include "common/atomic_file.h"

#ifdef LOOM_HAVE_ONNX
#include <onnx/checker.h>
#include <onnx/onnx_pb.h>
#endif

namespace loom {

#ifndef LOOM_HAVE_ONNX

bool onnx_available() { return false; }

static const char kNoOnnx[] =
    "this build of Loom has no ONNX support: install libonnx-dev and libprotobuf-dev "
    "(apt-get install libonnx-dev libprotobuf-dev) and rebuild";

void onnx_export(const std::string &, const Symbol &, const std::map<std::string, NDArray> &,
                 const std::map<std::string, Shape> &, int) {
  fail(LOOM_ERR_BACKEND_UNAVAILABLE, "ONNX export: ", kNoOnnx);
}

OnnxModel onnx_import(const std::string &) {
  fail(LOOM_ERR_BACKEND_UNAVAILABLE, "ONNX import: ", kNoOnnx);
}

#else

bool onnx_available() { return true; }

namespace {

std::string num(double v) {
  char b[64];
  std::snprintf(b, sizeof b, "%.9g", v);
  return b;
}

std::string tuple_str(const std::vector<int64_t> &v) {
  std::string s = "(";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + std::to_string(v[i]);
  if (v.size() == 1) s += ",";
  return s + ")";
}

std::vector<int64_t> shape_vec(const Shape &s) { return std::vector<int64_t>(s.d, s.d + s.ndim); }

bool is_loss_op(const std::string &op) {
  return op == "SoftmaxOutput" || op == "LinearRegressionOutput" ||
         op == "LogisticRegressionOutput";
}

// ------------------------------------------------------------------ export

class Exporter {
 public:
  Exporter(const Symbol &sym, const std::map<std::string, NDArray> &params,
           const std::map<std::string, Shape> &input_shapes, int opset)
      : sym_(sym), params_(params), inputs_(input_shapes), opset_(opset) {}

  onnx::ModelProto run();

 private:
  const Symbol &sym_;
  const std::map<std::string, NDArray> &params_;
  const std::map<std::string, Shape> &inputs_;
  int opset_;
  IndexedGraph g_;
  ShapeInfo info_;
  onnx::GraphProto *graph_ = nullptr;
  std::vector<std::string> entry_name_;
  std::set<std::string> taken_;
  const Node *cur_ = nullptr;  // the node being translated (for errors)

  [[noreturn]] void unsupported(const std::string &what) const {
    fail(LOOM_ERR_INVALID_ARGUMENT, "ONNX export: node '", cur_->name, "' (", cur_->op->name,
         "): ", what);
  }
  std::string fresh(const std::string &base) {
    std::string n = base;
    for (int k = 1; taken_.count(n); ++k) n = base + "_" + std::to_string(k);
    taken_.insert(n);
    return n;
  }
  const std::string &in(int i) const { return entry_name_[g_.entry(cur_->inputs[i])]; }
  const Shape &in_shape(int i) const { return info_.shape[g_.entry(cur_->inputs[i])]; }
  std::string out(int i = 0) const { return entry_name_[g_.entry_base[g_.id.at(cur_)] + i]; }
  const Shape &out_shape(int i = 0) const { return info_.shape[g_.entry_base[g_.id.at(cur_)] + i]; }
  int num_in() const { return static_cast<int>(cur_->inputs.size()); }

  onnx::NodeProto *node(const std::string &type, std::vector<std::string> ins,
                        std::vector<std::string> outs, const std::string &suffix = "") {
    onnx::NodeProto *n = graph_->add_node();
    n->set_op_type(type);
    n->set_name(fresh(cur_->name + suffix));
    for (auto &s : ins) n->add_input(s);
    for (auto &s : outs) n->add_output(s);
    return n;
  }
  // A helper value between two ONNX nodes of one Loom node.
  std::string temp(const std::string &what) { return fresh(cur_->name + "_" + what); }

  static void attr(onnx::NodeProto *n, const char *name, int64_t v) {
    auto *a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(v);
  }
  static void attr_f(onnx::NodeProto *n, const char *name, double v) {
    auto *a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::FLOAT);
    a->set_f(static_cast<float>(v));
  }
  static void attr(onnx::NodeProto *n, const char *name, const std::vector<int64_t> &v) {
    auto *a = n->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INTS);
    for (int64_t x : v) a->add_ints(x);
  }

  std::string const_i64(const std::string &what, const std::vector<int64_t> &v) {
    std::string name = temp(what);
    auto *t = graph_->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::INT64);
    t->add_dims(static_cast<int64_t>(v.size()));
    for (int64_t x : v) t->add_int64_data(x);
    return name;
  }
  std::string const_f32(const std::string &what, const std::vector<float> &v,
                        const std::vector<int64_t> &dims) {
    std::string name = temp(what);
    auto *t = graph_->add_initializer();
    t->set_name(name);
    t->set_data_type(onnx::TensorProto::FLOAT);
    for (int64_t d : dims) t->add_dims(d);
    t->set_raw_data(v.data(), v.size() * sizeof(float));
    return name;
  }
  std::string scalar(double v) { return const_f32("scalar", {static_cast<float>(v)}, {}); }

  std::vector<int64_t> spatial(const char *name, size_t n, int64_t dflt) const {
    std::vector<int64_t> v = cur_->parsed->tuple(name);
    if (v.empty()) v.assign(n, dflt);
    if (v.size() != n)
      unsupported(std::string(name) + " " + tuple_str(v) + " does not match the kernel's " +
                  std::to_string(n) + " dimensions");
    return v;
  }
  void check_layout() const {
    const Params &p = *cur_->parsed;
    if (!p.has("layout")) return;
    const std::string &l = p.s("layout");
    if (l != "NCW" && l != "NCHW" && l != "NCDHW")
      unsupported("layout " + l + " (ONNX's Conv and pooling are channels-first)");
  }

  void translate();
  void add_value_info(onnx::ValueInfoProto *v, const std::string &name, const Shape &s) {
    v->set_name(name);
    auto *tt = v->mutable_type()->mutable_tensor_type();
    tt->set_elem_type(onnx::TensorProto::FLOAT);
    auto *sh = tt->mutable_shape();
    for (int k = 0; k < s.ndim; ++k) sh->add_dim()->set_dim_value(s.d[k]);
  }
};

void Exporter::translate() {
  const Params &p = *cur_->parsed;
  const std::string &op = cur_->op->name;
  const std::string o = out();

  static const std::map<std::string, std::string> unary = {
      {"relu", "Relu"},   {"sigmoid", "Sigmoid"}, {"tanh", "Tanh"},   {"softsign", "Softsign"},
      {"exp", "Exp"},     {"log", "Log"},         {"sqrt", "Sqrt"},   {"abs", "Abs"},
      {"negative", "Neg"}, {"reciprocal", "Reciprocal"}, {"floor", "Floor"}, {"ceil", "Ceil"},
      {"BlockGrad", "Identity"}, {"copy", "Identity"}, {"LinearRegressionOutput", "Identity"},
      {"LogisticRegressionOutput", "Sigmoid"}, {"sign", "Sign"}, {"sin", "Sin"}, {"cos", "Cos"}};
  static const std::map<std::string, std::string> binary = {
      {"add", "Add"}, {"subtract", "Sub"}, {"multiply", "Mul"}, {"divide", "Div"},
      {"maximum", "Max"}, {"minimum", "Min"}, {"power", "Pow"}};
  // (ONNX op, scalar on the left)
  static const std::map<std::string, std::pair<std::string, bool>> scalar_ops = {
      {"add_scalar", {"Add", false}},      {"subtract_scalar", {"Sub", false}},
      {"rsubtract_scalar", {"Sub", true}}, {"multiply_scalar", {"Mul", false}},
      {"divide_scalar", {"Div", false}},   {"rdivide_scalar", {"Div", true}},
      {"power_scalar", {"Pow", false}},    {"rpower_scalar", {"Pow", true}},
      {"maximum_scalar", {"Max", false}},  {"minimum_scalar", {"Min", false}}};

  if (auto it = unary.find(op); it != unary.end()) {
    node(it->second, {in(0)}, {o});
  } else if (auto b = binary.find(op); b != binary.end()) {
    node(b->second, {in(0), in(1)}, {o});
  } else if (auto s = scalar_ops.find(op); s != scalar_ops.end()) {
    std::string c = scalar(p.f("scalar"));
    node(s->second.first, s->second.second ? std::vector<std::string>{c, in(0)}
                                           : std::vector<std::string>{in(0), c},
         {o});
  } else if (op == "ElementWiseSum") {
    std::vector<std::string> ins;
    for (int i = 0; i < num_in(); ++i) ins.push_back(in(i));
    node("Sum", ins, {o});
  } else if (op == "FullyConnected") {
    const bool bias = !p.b("no_bias");
    std::string x = in(0);
    if (in_shape(0).ndim != 2) {
      if (!p.b("flatten")) {
        // (..., K) x W^T: MatMul with the transposed weight, then the bias.
        std::string wt = temp("weight_t"), mm = bias ? temp("matmul") : o;
        attr(node("Transpose", {in(1)}, {wt}, "_transpose"), "perm", std::vector<int64_t>{1, 0});
        node("MatMul", {x, wt}, {mm}, "_matmul");
        if (bias) node("Add", {mm, in(2)}, {o});
        return;
      }
      x = temp("flatten");
      attr(node("Flatten", {in(0)}, {x}, "_flatten"), "axis", int64_t{1});
    }
    std::vector<std::string> ins{x, in(1)};
    if (bias) ins.push_back(in(2));
    attr(node("Gemm", ins, {o}), "transB", int64_t{1});
  } else if (op == "Convolution") {
    check_layout();
    std::vector<int64_t> k = p.tuple("kernel");
    std::vector<int64_t> pad = spatial("pad", k.size(), 0);
    std::vector<int64_t> pads = pad;
    pads.insert(pads.end(), pad.begin(), pad.end());
    std::vector<std::string> ins{in(0), in(1)};
    if (!p.b("no_bias")) ins.push_back(in(2));
    auto *n = node("Conv", ins, {o});
    attr(n, "kernel_shape", k);
    attr(n, "strides", spatial("stride", k.size(), 1));
    attr(n, "dilations", spatial("dilate", k.size(), 1));
    attr(n, "pads", pads);
    attr(n, "group", p.i("num_group"));
  } else if (op == "BatchNorm") {
    int64_t axis = p.i("axis");
    if (axis < 0) axis += in_shape(0).ndim;
    if (axis != 1) unsupported("axis " + std::to_string(p.i("axis")) + " (ONNX normalises axis 1)");
    std::string gamma = in(1);
    if (p.b("fix_gamma")) {
      // MXNet's fix_gamma computes with gamma = 1 whatever the array holds.
      const Shape &gs = in_shape(1);
      gamma = const_f32("gamma_fixed", std::vector<float>(gs.size(), 1.0f), shape_vec(gs));
    }
    auto *n = node("BatchNormalization", {in(0), gamma, in(2), in(3), in(4)}, {o});
    attr_f(n, "epsilon", p.f("eps"));
    attr_f(n, "momentum", p.f("momentum"));
  } else if (op == "Pooling") {
    check_layout();
    const std::string &type = p.s("pool_type");
    if (type != "max" && type != "avg")
      unsupported("pool_type " + type + " (ONNX pools by max or average)");
    if (p.b("global_pool")) {
      node(type == "max" ? "GlobalMaxPool" : "GlobalAveragePool", {in(0)}, {o});
      return;
    }
    const std::string &conv = p.s("pooling_convention");
    if (conv != "valid" && conv != "full") unsupported("pooling_convention " + conv);
    std::vector<int64_t> k = p.tuple("kernel");
    std::vector<int64_t> pad = spatial("pad", k.size(), 0);
    std::vector<int64_t> stride = spatial("stride", k.size(), 1);
    // ONNX Runtime drops a last ceil-mode window that would start in the end
    // padding; MXNet keeps it. Refuse the shapes where the two disagree.
    if (conv == "full") {
      const Shape &xs = in_shape(0), &ys = out_shape();
      for (size_t i = 0; i < k.size(); ++i)
        if ((ys.d[2 + i] - 1) * stride[i] >= xs.d[2 + i] + pad[i])
          unsupported("pooling_convention full with input extent " + std::to_string(xs.d[2 + i]) +
                      ", kernel " + std::to_string(k[i]) + ", stride " + std::to_string(stride[i]) +
                      " and pad " + std::to_string(pad[i]) +
                      " puts the last window wholly in the padding, which ONNX's ceil_mode drops");
    }
    std::vector<int64_t> pads = pad;
    pads.insert(pads.end(), pad.begin(), pad.end());
    auto *n = node(type == "max" ? "MaxPool" : "AveragePool", {in(0)}, {o});
    attr(n, "kernel_shape", k);
    attr(n, "strides", stride);
    attr(n, "pads", pads);
    attr(n, "ceil_mode", int64_t{conv == "full"});
    if (type == "avg") attr(n, "count_include_pad", int64_t{p.b("count_include_pad")});
  } else if (op == "Activation") {
    static const std::map<std::string, std::string> acts = {{"relu", "Relu"},
                                                            {"sigmoid", "Sigmoid"},
                                                            {"tanh", "Tanh"},
                                                            {"softrelu", "Softplus"},
                                                            {"softsign", "Softsign"}};
    auto it = acts.find(p.s("act_type"));
    if (it == acts.end()) unsupported("act_type " + p.s("act_type"));
    node(it->second, {in(0)}, {o});
  } else if (op == "LeakyReLU") {
    const std::string &t = p.s("act_type");
    if (t == "leaky" || t == "rrelu") {
      // rrelu predicts with the middle of its slope range.
      double a = t == "leaky" ? p.f("slope") : (p.f("lower_bound") + p.f("upper_bound")) / 2;
      attr_f(node("LeakyRelu", {in(0)}, {o}), "alpha", a);
    } else if (t == "elu") {
      attr_f(node("Elu", {in(0)}, {o}), "alpha", p.f("slope"));
    } else if (t == "selu") {
      auto *n = node("Selu", {in(0)}, {o});
      attr_f(n, "alpha", 1.6732632423543772);
      attr_f(n, "gamma", 1.0507009873554805);
    } else if (t == "prelu") {
      // gamma[c] applies along axis 1: shape (C, 1, ...) broadcasts that way.
      const Shape &xs = in_shape(0);
      std::vector<int64_t> gs{in_shape(1).size()};
      for (int k = 2; k < xs.ndim; ++k) gs.push_back(1);
      std::string g = temp("gamma_r");
      node("Reshape", {in(1), const_i64("gamma_shape", gs)}, {g}, "_reshape");
      node("PRelu", {in(0), g}, {o});
    } else {
      unsupported("act_type " + t + " (no ONNX op at opsets 13 to 17)");
    }
  } else if (op == "Concat" || op == "concat") {
    std::vector<std::string> ins;
    for (int i = 0; i < num_in(); ++i) ins.push_back(in(i));
    attr(node("Concat", ins, {o}), "axis", p.i("dim"));
  } else if (op == "Flatten") {
    attr(node("Flatten", {in(0)}, {o}), "axis", int64_t{1});
  } else if (op == "reshape") {
    // ONNX's 0 (copy) and -1 (infer) mean what MXNet's do; other codes are
    // written as the inferred shape.
    std::vector<int64_t> shape = p.tuple("shape");
    bool plain = !p.b("reverse") && !shape.empty();
    for (int64_t d : shape) plain = plain && d >= -1;
    if (!plain) shape = shape_vec(out_shape());
    node("Reshape", {in(0), const_i64("shape", shape)}, {o});
  } else if (op == "transpose" || op == "SwapAxis") {
    const int nd = in_shape(0).ndim;
    std::vector<int64_t> perm;
    if (op == "transpose") {
      perm = p.tuple("axes");
      if (perm.empty())
        for (int k = nd - 1; k >= 0; --k) perm.push_back(k);
    } else {
      for (int k = 0; k < nd; ++k) perm.push_back(k);
      int64_t a = p.i("dim1"), b2 = p.i("dim2");
      if (a < 0) a += nd;
      if (b2 < 0) b2 += nd;
      std::swap(perm[a], perm[b2]);
    }
    attr(node("Transpose", {in(0)}, {o}), "perm", perm);
  } else if (op == "softmax" || op == "log_softmax") {
    std::string x = in(0);
    if (p.f("temperature") != 1.0) {
      x = temp("scaled");
      node("Div", {in(0), scalar(p.f("temperature"))}, {x}, "_temperature");
    }
    attr(node(op == "softmax" ? "Softmax" : "LogSoftmax", {x}, {o}), "axis", p.i("axis"));
  } else if (op == "SoftmaxOutput" || op == "SoftmaxActivation") {
    const Shape &xs = in_shape(0);
    int64_t axis;
    if (op == "SoftmaxActivation")
      axis = p.s("mode") == "channel" ? 1 : -2;  // -2: over everything but the batch axis
    else
      axis = p.b("multi_output") ? 1 : p.b("preserve_shape") ? -1 : -2;
    if (axis == -2 && xs.ndim == 2) axis = 1;
    if (axis != -2) {
      attr(node("Softmax", {in(0)}, {o}), "axis", axis);
    } else {
      std::string f = temp("flat"), s2 = temp("softmax");
      attr(node("Flatten", {in(0)}, {f}, "_flatten"), "axis", int64_t{1});
      attr(node("Softmax", {f}, {s2}, "_softmax"), "axis", int64_t{1});
      node("Reshape", {s2, const_i64("shape", shape_vec(xs))}, {o});
    }
  } else if (op == "Dropout") {
    if (p.s("mode") == "always")
      unsupported("mode always (ONNX's Dropout is the identity in inference)");
    if (!p.tuple("axes").empty()) unsupported("axes " + tuple_str(p.tuple("axes")));
    node("Dropout", {in(0), scalar(p.f("p"))}, {o});
  } else if (op == "LRN") {
    auto *n = node("LRN", {in(0)}, {o});
    attr(n, "size", p.i("nsize"));
    attr_f(n, "alpha", p.f("alpha"));
    attr_f(n, "beta", p.f("beta"));
    attr_f(n, "bias", p.f("knorm"));
  } else if (op == "clip") {
    node("Clip", {in(0), scalar(p.f("a_min")), scalar(p.f("a_max"))}, {o});
  } else if (op == "dot" || op == "batch_dot") {
    const int want = op == "dot" ? 2 : 3;
    if (in_shape(0).ndim != want || in_shape(1).ndim != want)
      unsupported("operands of " + in_shape(0).str() + " and " + in_shape(1).str() + " (" +
                  std::to_string(want) + "-d operands only)");
    std::vector<int64_t> perm = want == 2 ? std::vector<int64_t>{1, 0}
                                          : std::vector<int64_t>{0, 2, 1};
    std::string a = in(0), b2 = in(1);
    if (p.b("transpose_a")) {
      a = temp("lhs_t");
      attr(node("Transpose", {in(0)}, {a}, "_transpose_a"), "perm", perm);
    }
    if (p.b("transpose_b")) {
      b2 = temp("rhs_t");
      attr(node("Transpose", {in(1)}, {b2}, "_transpose_b"), "perm", perm);
    }
    node("MatMul", {a, b2}, {o});
  } else if (op == "mean" || op == "sum") {
    const int nd = in_shape(0).ndim;
    std::vector<int64_t> axes;
    std::vector<char> picked(nd, 0);
    if (p.has("axis")) {
      for (int64_t a : p.tuple("axis")) picked[a < 0 ? a + nd : a] = 1;
    } else {
      picked.assign(nd, 1);
    }
    const bool exclude = p.has("axis") && p.b("exclude");
    for (int k = 0; k < nd; ++k)
      if (picked[k] != exclude) axes.push_back(k);
    if (axes.empty()) {
      node("Identity", {in(0)}, {o});
      return;
    }
    onnx::NodeProto *n;
    if (op == "mean") {
      n = node("ReduceMean", {in(0)}, {o});
      attr(n, "axes", axes);
    } else {
      n = node("ReduceSum", {in(0), const_i64("axes", axes)}, {o});
    }
    attr(n, "keepdims", int64_t{p.b("keepdims")});
  } else if (op == "Embedding") {
    std::string idx = temp("indices");
    attr(node("Cast", {in(0)}, {idx}, "_cast"), "to", int64_t{onnx::TensorProto::INT64});
    attr(node("Gather", {in(1), idx}, {o}), "axis", int64_t{0});
  } else {
    fail(LOOM_ERR_INVALID_ARGUMENT, "ONNX export: node '", cur_->name, "' has op ", op,
         ", which has no ONNX translation; exportable ops: Activation, BatchNorm, "
         "BlockGrad, Concat, Convolution, Dropout, ElementWiseSum, Embedding, Flatten, "
         "FullyConnected, LRN, LeakyReLU (leaky, elu, selu, prelu, rrelu), "
         "LinearRegressionOutput, LogisticRegressionOutput, Pooling (max, avg), SoftmaxActivation, "
         "SoftmaxOutput, SwapAxis, the elementwise and scalar arithmetic ops, clip, dot, "
         "batch_dot, log_softmax, mean, reshape, softmax, sum, transpose and the unary math ops");
  }
}

onnx::ModelProto Exporter::run() {
  LOOM_CHECK(opset_ >= kOnnxMinOpset && opset_ <= kOnnxMaxOpset, LOOM_ERR_INVALID_ARGUMENT,
             "ONNX export: opset ", opset_, " is not supported; use ", kOnnxMinOpset, " to ",
             kOnnxMaxOpset);
  g_ = sym_.index();

  // Which variables the exported graph reads: loss labels are dropped.
  std::vector<char> used(g_.nodes.size(), 0);
  for (Node *n : g_.nodes) {
    if (n->is_variable()) continue;
    for (size_t i = 0; i < n->inputs.size(); ++i)
      if (!(is_loss_op(n->op->name) && i == 1)) used[g_.id.at(n->inputs[i].node.get())] = 1;
  }
  for (int h : g_.heads) {
    int nid = static_cast<int>(std::upper_bound(g_.entry_base.begin(), g_.entry_base.end(), h) -
                               g_.entry_base.begin()) - 1;
    used[nid] = 1;
  }

  std::map<std::string, Shape> shapes;
  std::map<std::string, int32_t> dtypes;
  std::vector<std::string> graph_inputs;
  for (size_t i = 0; i < g_.nodes.size(); ++i) {
    Node *n = g_.nodes[i];
    if (!n->is_variable()) continue;
    auto pit = params_.find(n->name);
    auto sit = inputs_.find(n->name);
    if (pit != params_.end()) {
      LOOM_CHECK(pit->second.dtype() == kFloat32, LOOM_ERR_DTYPE, "ONNX export: parameter '",
                 n->name, "' is ", dtype_name(pit->second.dtype()),
                 "; export writes float32 parameters");
      shapes[n->name] = pit->second.shape();
      dtypes[n->name] = kFloat32;
    } else if (sit != inputs_.end()) {
      shapes[n->name] = sit->second;
      dtypes[n->name] = kFloat32;
      if (used[i]) graph_inputs.push_back(n->name);
    } else if (used[i]) {
      fail(LOOM_ERR_INVALID_ARGUMENT, "ONNX export: variable '", n->name,
           "' is neither a parameter nor an input with a shape; give its shape as an input or "
           "its value as a parameter");
    }
  }
  for (auto &kv : inputs_)
    LOOM_CHECK(!params_.count(kv.first), LOOM_ERR_INVALID_ARGUMENT, "ONNX export: '", kv.first,
               "' is given both as an input shape and as a parameter");
  info_ = infer(g_, shapes, dtypes);

  onnx::ModelProto model;
  model.set_ir_version(7);
  model.set_producer_name("loom");
  model.set_producer_version("0.1.0");
  auto *os = model.add_opset_import();
  os->set_domain("");
  os->set_version(opset_);
  graph_ = model.mutable_graph();
  graph_->set_name("loom");

  // Value names: variables keep theirs; op outputs are <node>_output[<i>].
  entry_name_.assign(g_.num_entries(), "");
  for (Node *n : g_.nodes)
    if (n->is_variable()) taken_.insert(n->name);
  for (size_t i = 0; i < g_.nodes.size(); ++i) {
    Node *n = g_.nodes[i];
    int base = g_.entry_base[i];
    if (n->is_variable()) {
      entry_name_[base] = n->name;
      continue;
    }
    int k = n->num_outputs();
    for (int j = 0; j < k; ++j)
      entry_name_[base + j] = fresh(n->name + (k == 1 ? "_output" : "_output" + std::to_string(j)));
  }

  for (const std::string &name : graph_inputs) add_value_info(graph_->add_input(), name, shapes[name]);
  for (size_t i = 0; i < g_.nodes.size(); ++i) {
    Node *n = g_.nodes[i];
    if (!n->is_variable() || !used[i]) continue;
    auto pit = params_.find(n->name);
    if (pit == params_.end()) continue;
    const NDArray &a = pit->second;
    auto *t = graph_->add_initializer();
    t->set_name(n->name);
    t->set_data_type(onnx::TensorProto::FLOAT);
    for (int k = 0; k < a.shape().ndim; ++k) t->add_dims(a.shape().d[k]);
    std::string raw(a.nbytes(), '\0');
    a.copy_to_host(raw.data(), raw.size());
    t->set_raw_data(std::move(raw));
  }

  for (Node *n : g_.nodes) {
    if (n->is_variable()) continue;
    cur_ = n;
    for (size_t i = 0; i < n->inputs.size(); ++i) {
      int e = g_.entry(n->inputs[i]);
      LOOM_CHECK(info_.known[e], LOOM_ERR_SHAPE, "ONNX export: the shape of input ", i,
                 " of node '", n->name, "' (", n->op->name,
                 ") is unknown; give the shapes of every input");
    }
    translate();
  }
  std::set<std::string> outs;
  for (int h : g_.heads) {
    LOOM_CHECK(info_.known[h], LOOM_ERR_SHAPE, "ONNX export: an output's shape is unknown");
    const std::string &name = entry_name_[h];
    if (!outs.insert(name).second) continue;
    add_value_info(graph_->add_output(), name, info_.shape[h]);
  }
  // A head that is an internal output (BatchNorm's mean, rrelu's mask) has no
  // ONNX node producing it.
  std::set<std::string> produced;
  for (auto &nd : graph_->node())
    for (auto &o : nd.output()) produced.insert(o);
  for (auto &i : graph_->input()) produced.insert(i.name());
  for (auto &o : graph_->output())
    LOOM_CHECK(produced.count(o.name()), LOOM_ERR_INVALID_ARGUMENT, "ONNX export: output '",
               o.name(), "' is an internal output with no ONNX counterpart");
  try {
    onnx::checker::check_model(model);
  } catch (const std::exception &e) {
    fail(LOOM_ERR_INTERNAL, "ONNX export: ONNX's checker rejects the model Loom built: ", e.what());
  }
  return model;
}

// ------------------------------------------------------------------ import

struct Const {
  std::vector<int64_t> dims;
  std::vector<float> f;    // float tensors
  std::vector<int64_t> i;  // integer tensors
  bool is_float = true;
  int64_t size() const {
    int64_t n = 1;
    for (int64_t d : dims) n *= d;
    return n;
  }
};

class Importer {
 public:
  explicit Importer(std::string path) : path_(std::move(path)) {}
  OnnxModel run();

 private:
  std::string path_;
  onnx::ModelProto model_;
  std::map<std::string, Symbol> values_;
  std::map<std::string, Const> consts_;
  // Shapes computed from tensors, as PyTorch writes x.view(x.size(0), -1): Shape -> Gather
  // -> Unsqueeze -> Concat -> Reshape. `shape_of_` maps a Shape node's output to its tensor;
  // `shape_vals_` holds vectors whose elements are constants or extents of tensors.
  struct ShapeElem {
    std::string tensor;  // empty: the constant `value`
    int64_t dim = 0, value = 0;
  };
  std::map<std::string, std::string> shape_of_;
  std::map<std::string, std::vector<ShapeElem>> shape_vals_;
  std::map<std::string, Symbol> const_vars_;  // constants turned into parameters
  OnnxModel result_;
  const onnx::NodeProto *cur_ = nullptr;
  std::string cur_name_;
  int counter_ = 0;

  [[noreturn]] void bad(const std::string &what) const {
    fail(LOOM_ERR_INVALID_ARGUMENT, "ONNX import of '", path_, "': node '", cur_name_, "' (",
         cur_->op_type(), "): ", what);
  }

  Const read_tensor(const onnx::TensorProto &t, const std::string &what) const;
  const onnx::AttributeProto *find_attr(const char *name) const {
    for (auto &a : cur_->attribute())
      if (a.name() == name) return &a;
    return nullptr;
  }
  int64_t attr_i(const char *name, int64_t dflt) const {
    auto *a = find_attr(name);
    return a ? a->i() : dflt;
  }
  double attr_f(const char *name, double dflt) const {
    auto *a = find_attr(name);
    return a ? a->f() : dflt;
  }
  std::vector<int64_t> attr_ints(const char *name) const {
    auto *a = find_attr(name);
    return a ? std::vector<int64_t>(a->ints().begin(), a->ints().end()) : std::vector<int64_t>{};
  }
  std::string attr_s(const char *name, const std::string &dflt) const {
    auto *a = find_attr(name);
    return a ? a->s() : dflt;
  }
  void only_attrs(std::initializer_list<const char *> known) const {
    for (auto &a : cur_->attribute()) {
      bool ok = false;
      for (const char *k : known) ok = ok || a.name() == k;
      if (!ok) bad("attribute '" + a.name() + "' is not supported");
    }
  }

  bool has_input(int i) const { return i < cur_->input_size() && !cur_->input(i).empty(); }
  const Const *const_input(int i) const {
    if (!has_input(i)) return nullptr;
    auto it = consts_.find(cur_->input(i));
    return it == consts_.end() ? nullptr : &it->second;
  }
  const Const &need_const(int i, const char *what) const {
    const Const *c = const_input(i);
    if (!c) bad(std::string(what) + " (input " + std::to_string(i) + ") must be a constant");
    return *c;
  }
  // An input as a symbol; constants become parameters (float32 arrays).
  Symbol input(int i) {
    if (!has_input(i)) bad("input " + std::to_string(i) + " is missing");
    const std::string &name = cur_->input(i);
    auto it = values_.find(name);
    if (it != values_.end()) return it->second;
    auto cv = const_vars_.find(name);
    if (cv != const_vars_.end()) return cv->second;
    auto c = consts_.find(name);
    if (shape_of_.count(name) || shape_vals_.count(name))
      bad("input '" + name + "' is a shape computed from tensors; only Reshape takes one");
    if (c == consts_.end()) bad("input '" + name + "' is not produced by any earlier node");
    return param(name, c->second, c->second.dims);
  }
  Symbol param(const std::string &name, const Const &c, const std::vector<int64_t> &dims) {
    auto cv = const_vars_.find(name);
    if (cv != const_vars_.end()) return cv->second;
    if (!c.is_float) bad("integer constant '" + name + "' used as data");
    Shape s = Shape::from(dims);
    LOOM_CHECK(s.size() == static_cast<int64_t>(c.f.size()), LOOM_ERR_SHAPE, "ONNX import of '",
               path_, "': constant '", name, "' has ", c.f.size(), " values for shape ", s.str());
    NDArray a = NDArray::empty(s, kFloat32, Context{});
    a.copy_from_host(c.f.data(), c.f.size() * sizeof(float));
    result_.params.emplace_back(name, a);
    Symbol v = Symbol::variable(name);
    const_vars_.emplace(name, v);
    return v;
  }
  Symbol make(const char *op, StrPairs params, std::vector<Symbol> ins) {
    std::vector<const Symbol *> ptrs;
    for (auto &s : ins) ptrs.push_back(&s);
    Symbol s = Symbol::create(Registry::get().lookup(op), cur_name_, params, ptrs, {});
    return s.outputs.size() == 1 ? s : s.output(0);
  }
  void set_output(int i, Symbol s) {
    if (i >= cur_->output_size()) return;
    values_[cur_->output(i)] = std::move(s);
  }
  void single_output() const {
    for (int i = 1; i < cur_->output_size(); ++i)
      if (!cur_->output(i).empty()) bad("optional output " + std::to_string(i) + " is not supported");
  }
  // ONNX pads are [begin..., end...]; Loom pads symmetrically.
  std::vector<int64_t> symmetric_pads(size_t n) const {
    std::vector<int64_t> pads = attr_ints("pads");
    if (pads.empty()) return std::vector<int64_t>(n, 0);
    if (pads.size() != 2 * n) bad("pads has " + std::to_string(pads.size()) + " values for " +
                                  std::to_string(n) + " spatial dimensions");
    for (size_t k = 0; k < n; ++k)
      if (pads[k] != pads[k + n])
        bad("asymmetric pads " + tuple_str(pads) + " (Loom pads both sides equally)");
    return std::vector<int64_t>(pads.begin(), pads.begin() + n);
  }
  void no_auto_pad() const {
    std::string ap = attr_s("auto_pad", "NOTSET");
    if (ap != "NOTSET" && ap != "VALID") bad("auto_pad " + ap + " is not supported");
  }
  std::vector<int64_t> ones_or(const char *name, size_t n) const {
    std::vector<int64_t> v = attr_ints(name);
    if (v.empty()) v.assign(n, 1);
    if (v.size() != n) bad(std::string(name) + " has " + std::to_string(v.size()) + " values for " +
                           std::to_string(n) + " spatial dimensions");
    return v;
  }
  // A 2-d constant transposed into a new parameter (Gemm/MatMul's right operand as FC's weight).
  Symbol transposed_param(int i) {
    const Const &c = need_const(i, "the weight");
    if (c.dims.size() != 2) bad("the weight has rank " + std::to_string(c.dims.size()) + ", not 2");
    Const t = c;
    t.dims = {c.dims[1], c.dims[0]};
    for (int64_t r = 0; r < c.dims[0]; ++r)
      for (int64_t q = 0; q < c.dims[1]; ++q) t.f[q * c.dims[0] + r] = c.f[r * c.dims[1] + q];
    return param(cur_->input(i) + "_T", t, t.dims);
  }

  void translate();
  bool translate_shape_arithmetic();
};

bool Importer::translate_shape_arithmetic() {
  const std::string &op = cur_->op_type();
  auto is_shape = [&](int i) {
    return has_input(i) && (shape_of_.count(cur_->input(i)) || shape_vals_.count(cur_->input(i)));
  };
  if (op == "Shape") {
    only_attrs({});
    if (!has_input(0) || !values_.count(cur_->input(0))) bad("the shape of a constant is not supported");
    shape_of_[cur_->output(0)] = cur_->input(0);
    return true;
  }
  if (op == "Gather" && is_shape(0)) {
    only_attrs({"axis"});
    if (attr_i("axis", 0) != 0) bad("axis other than 0 on a shape");
    const Const &idx = need_const(1, "the indices");
    if (idx.is_float || idx.dims.size() > 1) bad("indices into a shape must be an integer scalar or vector");
    std::vector<ShapeElem> out;
    const std::string &from = cur_->input(0);
    for (int64_t k : idx.i) {
      if (shape_of_.count(from)) {
        if (k < 0) bad("a negative index into the shape of '" + shape_of_.at(from) + "'");
        out.push_back({shape_of_.at(from), k, 0});
      } else {
        const auto &v = shape_vals_.at(from);
        int64_t at = k < 0 ? k + static_cast<int64_t>(v.size()) : k;
        if (at < 0 || at >= static_cast<int64_t>(v.size())) bad("index " + std::to_string(k) + " out of range");
        out.push_back(v[at]);
      }
    }
    shape_vals_[cur_->output(0)] = std::move(out);
    return true;
  }
  if ((op == "Unsqueeze" || op == "Squeeze" || op == "Cast" || op == "Identity") && is_shape(0)) {
    if (!shape_vals_.count(cur_->input(0))) bad("the whole shape of a tensor is not supported here");
    shape_vals_[cur_->output(0)] = shape_vals_.at(cur_->input(0));
    return true;
  }
  if (op == "Concat") {
    bool any = false;
    for (int i = 0; i < cur_->input_size(); ++i) any = any || is_shape(i);
    if (!any) return false;
    only_attrs({"axis"});
    std::vector<ShapeElem> out;
    for (int i = 0; i < cur_->input_size(); ++i) {
      if (shape_vals_.count(cur_->input(i))) {
        const auto &v = shape_vals_.at(cur_->input(i));
        out.insert(out.end(), v.begin(), v.end());
      } else if (const Const *c = const_input(i); c && !c->is_float && c->dims.size() <= 1) {
        for (int64_t x : c->i) out.push_back({"", 0, x});
      } else {
        bad("input " + std::to_string(i) + " of a shape concatenation is neither a shape nor an integer constant");
      }
    }
    shape_vals_[cur_->output(0)] = std::move(out);
    return true;
  }
  return false;
}

Const Importer::read_tensor(const onnx::TensorProto &t, const std::string &what) const {
  Const c;
  c.dims.assign(t.dims().begin(), t.dims().end());
  Shape s;
  LOOM_CHECK(c.dims.size() <= LOOM_MAX_NDIM, LOOM_ERR_SHAPE, "ONNX import of '", path_, "': ",
             what, " has ", c.dims.size(), " dimensions");
  s = Shape::from(c.dims);
  uint64_t bytes;
  LOOM_CHECK(s.checked_bytes(8, &bytes) && bytes < (uint64_t{1} << 40), LOOM_ERR_SHAPE,
             "ONNX import of '", path_, "': ", what, " has an impossible shape ", s.str());
  LOOM_CHECK(t.data_location() != onnx::TensorProto::EXTERNAL, LOOM_ERR_IO, "ONNX import of '",
             path_, "': ", what, " keeps its data in an external file, which is not supported");
  const size_t n = static_cast<size_t>(s.size());
  const std::string &raw = t.raw_data();
  auto check_count = [&](size_t got) {
    LOOM_CHECK(got == n, LOOM_ERR_IO, "ONNX import of '", path_, "': ", what, " of shape ",
               s.str(), " holds ", got, " values instead of ", n, " (truncated or damaged)");
  };
  // Values of element type T from raw_data (little-endian bytes) or the typed field.
  auto take = [&](auto tag, const auto &field, auto &out) {
    using T = decltype(tag);
    if (t.has_raw_data()) {
      LOOM_CHECK(raw.size() % sizeof(T) == 0, LOOM_ERR_IO, "ONNX import of '", path_, "': ", what,
                 " has ", raw.size(), " bytes of ", sizeof(T), "-byte values");
      check_count(raw.size() / sizeof(T));
      std::vector<T> d(n);
      if (n) std::memcpy(d.data(), raw.data(), n * sizeof(T));
      out.assign(d.begin(), d.end());
    } else {
      check_count(static_cast<size_t>(field.size()));
      out.assign(field.begin(), field.end());
    }
  };
  switch (t.data_type()) {
    case onnx::TensorProto::FLOAT: take(float{}, t.float_data(), c.f); break;
    case onnx::TensorProto::DOUBLE: take(double{}, t.double_data(), c.f); break;
    case onnx::TensorProto::INT64: c.is_float = false; take(int64_t{}, t.int64_data(), c.i); break;
    case onnx::TensorProto::INT32: c.is_float = false; take(int32_t{}, t.int32_data(), c.i); break;
    default:
      fail(LOOM_ERR_DTYPE, "ONNX import of '", path_, "': ", what, " has ONNX data type ",
           t.data_type(), "; float, double, int32 and int64 tensors are supported");
  }
  return c;
}

void Importer::translate() {
  const std::string &op = cur_->op_type();
  static const std::map<std::string, std::string> unary = {
      {"Exp", "exp"},   {"Log", "log"},        {"Sqrt", "sqrt"},   {"Abs", "abs"},
      {"Neg", "negative"}, {"Reciprocal", "reciprocal"}, {"Floor", "floor"}, {"Ceil", "ceil"},
      {"Sign", "sign"}, {"Sin", "sin"}, {"Cos", "cos"}};
  static const std::map<std::string, std::string> acts = {
      {"Relu", "relu"}, {"Sigmoid", "sigmoid"}, {"Tanh", "tanh"}, {"Softplus", "softrelu"},
      {"Softsign", "softsign"}};
  static const std::map<std::string, std::pair<const char *, const char *>> binary = {
      {"Add", {"add", "add_scalar"}},         {"Sub", {"subtract", "subtract_scalar"}},
      {"Mul", {"multiply", "multiply_scalar"}}, {"Div", {"divide", "divide_scalar"}},
      {"Max", {"maximum", "maximum_scalar"}}, {"Min", {"minimum", "minimum_scalar"}},
      {"Pow", {"power", "power_scalar"}}};
  static const std::map<std::string, const char *> reversed_scalar = {
      {"Add", "add_scalar"},   {"Sub", "rsubtract_scalar"}, {"Mul", "multiply_scalar"},
      {"Div", "rdivide_scalar"}, {"Max", "maximum_scalar"}, {"Min", "minimum_scalar"},
      {"Pow", "rpower_scalar"}};

  if (translate_shape_arithmetic()) return;
  if (auto u = unary.find(op); u != unary.end()) {
    only_attrs({});
    set_output(0, make(u->second.c_str(), {}, {input(0)}));
  } else if (auto a = acts.find(op); a != acts.end()) {
    only_attrs({});
    set_output(0, make("Activation", {{"act_type", a->second}}, {input(0)}));
  } else if (auto b = binary.find(op); b != binary.end()) {
    only_attrs({});
    if (cur_->input_size() != 2) bad("takes " + std::to_string(cur_->input_size()) + " inputs; 2 are supported");
    // A scalar constant (rank 0 or a single value of rank 1) becomes the scalar op.
    auto scalar_of = [&](int i, double *v) {
      const Const *c = const_input(i);
      if (!c || !c->is_float || c->dims.size() > 1 || c->size() != 1) return false;
      *v = c->f[0];
      return true;
    };
    double v;
    if (scalar_of(1, &v))
      set_output(0, make(b->second.second, {{"scalar", num(v)}}, {input(0)}));
    else if (scalar_of(0, &v))
      set_output(0, make(reversed_scalar.at(op), {{"scalar", num(v)}}, {input(1)}));
    else
      set_output(0, make(b->second.first, {}, {input(0), input(1)}));
  } else if (op == "Sum") {
    only_attrs({});
    Symbol acc = input(0);
    for (int i = 1; i < cur_->input_size(); ++i) acc = make("add", {}, {acc, input(i)});
    set_output(0, acc);
  } else if (op == "Pad") {
    // PyTorch writes a zero Pad before average pooling; other padding has no Loom op.
    only_attrs({"mode"});
    const Const &pads = need_const(1, "pads");
    for (int64_t v : pads.i)
      if (v != 0) bad("non-zero pads " + tuple_str(pads.i) + " (Loom pads only inside Convolution and Pooling)");
    set_output(0, input(0));
  } else if (op == "Identity") {
    set_output(0, input(0));
  } else if (op == "Dropout") {
    only_attrs({"seed"});
    single_output();
    double p = 0.5;
    if (const Const *r = const_input(1)) p = r->is_float ? r->f.at(0) : static_cast<double>(r->i.at(0));
    else if (has_input(1)) bad("ratio must be a constant");
    if (const Const *t = const_input(2)) {
      if ((t->is_float ? t->f.at(0) != 0 : t->i.at(0) != 0)) bad("training_mode true is not supported");
    } else if (has_input(2)) {
      bad("training_mode must be a constant");
    }
    set_output(0, make("Dropout", {{"p", num(p)}}, {input(0)}));
  } else if (op == "Conv") {
    only_attrs({"kernel_shape", "strides", "pads", "dilations", "group", "auto_pad"});
    no_auto_pad();
    const Const &w = need_const(1, "the weight");
    if (w.dims.size() < 3 || w.dims.size() > 5) bad("weight of rank " + std::to_string(w.dims.size()));
    std::vector<int64_t> k = attr_ints("kernel_shape");
    if (k.empty()) k.assign(w.dims.begin() + 2, w.dims.end());
    StrPairs ps{{"kernel", tuple_str(k)},
                {"num_filter", std::to_string(w.dims[0])},
                {"stride", tuple_str(ones_or("strides", k.size()))},
                {"dilate", tuple_str(ones_or("dilations", k.size()))},
                {"pad", tuple_str(symmetric_pads(k.size()))},
                {"num_group", std::to_string(attr_i("group", 1))},
                {"no_bias", has_input(2) ? "false" : "true"}};
    std::vector<Symbol> ins{input(0), input(1)};
    if (has_input(2)) ins.push_back(input(2));
    set_output(0, make("Convolution", ps, ins));
  } else if (op == "Gemm") {
    only_attrs({"alpha", "beta", "transA", "transB"});
    if (attr_f("alpha", 1) != 1 || attr_f("beta", 1) != 1 || attr_i("transA", 0) != 0)
      bad("alpha, beta other than 1 or transA are not supported");
    Symbol w = attr_i("transB", 0) ? input(1) : transposed_param(1);
    int64_t n_out;
    if (const Const *c = const_input(1)) {
      if (c->dims.size() != 2) bad("B has rank " + std::to_string(c->dims.size()));
      n_out = attr_i("transB", 0) ? c->dims[0] : c->dims[1];
    } else {
      bad("B must be a constant (the layer's weight)");
    }
    StrPairs ps{{"num_hidden", std::to_string(n_out)}, {"no_bias", "true"}};
    std::vector<Symbol> ins{input(0), w};
    if (has_input(2)) {
      const Const *c = const_input(2);
      if (c && c->size() == n_out) {
        ps[1].second = "false";
        ins.push_back(param(cur_->input(2), *c, {n_out}));
      } else {
        set_output(0, make("add", {}, {make("FullyConnected", ps, ins), input(2)}));
        return;
      }
    }
    set_output(0, make("FullyConnected", ps, ins));
  } else if (op == "MatMul") {
    only_attrs({});
    const Const *c = const_input(1);
    if (!c || c->dims.size() != 2) bad("the right operand must be a 2-d constant");
    set_output(0, make("FullyConnected",
                       {{"num_hidden", std::to_string(c->dims[1])}, {"no_bias", "true"},
                        {"flatten", "false"}},
                       {input(0), transposed_param(1)}));
  } else if (op == "BatchNormalization") {
    only_attrs({"epsilon", "momentum", "training_mode", "spatial"});
    if (attr_i("training_mode", 0)) bad("training_mode 1 is not supported");
    if (attr_i("spatial", 1) != 1) bad("spatial 0 is not supported");
    single_output();
    set_output(0, make("BatchNorm",
                       {{"eps", num(attr_f("epsilon", 1e-5))},
                        {"momentum", num(attr_f("momentum", 0.9))},
                        {"fix_gamma", "false"}},
                       {input(0), input(1), input(2), input(3), input(4)}));
  } else if (op == "MaxPool" || op == "AveragePool") {
    only_attrs({"kernel_shape", "strides", "pads", "ceil_mode", "count_include_pad", "auto_pad",
                "dilations", "storage_order"});
    no_auto_pad();
    single_output();
    std::vector<int64_t> k = attr_ints("kernel_shape");
    if (k.empty()) bad("kernel_shape is missing");
    for (int64_t d : ones_or("dilations", k.size()))
      if (d != 1) bad("dilations other than 1 are not supported");
    if (attr_i("storage_order", 0) != 0) bad("storage_order 1 is not supported");
    StrPairs ps{{"kernel", tuple_str(k)},
                {"pool_type", op == "MaxPool" ? "max" : "avg"},
                {"stride", tuple_str(ones_or("strides", k.size()))},
                {"pad", tuple_str(symmetric_pads(k.size()))},
                {"pooling_convention", attr_i("ceil_mode", 0) ? "full" : "valid"}};
    if (op == "AveragePool") ps.push_back({"count_include_pad", attr_i("count_include_pad", 0) ? "true" : "false"});
    set_output(0, make("Pooling", ps, {input(0)}));
  } else if (op == "GlobalAveragePool" || op == "GlobalMaxPool") {
    only_attrs({});
    set_output(0, make("Pooling",
                       {{"global_pool", "true"}, {"pool_type", op == "GlobalMaxPool" ? "max" : "avg"}},
                       {input(0)}));
  } else if (op == "Flatten") {
    only_attrs({"axis"});
    int64_t axis = attr_i("axis", 1);
    if (axis == 1) set_output(0, make("Flatten", {}, {input(0)}));
    else if (axis == 0) set_output(0, make("reshape", {{"shape", "(1,-1)"}}, {input(0)}));
    else bad("axis " + std::to_string(axis) + " (0 and 1 are supported)");
  } else if (op == "Reshape" && has_input(1) && shape_vals_.count(cur_->input(1))) {
    only_attrs({"allowzero"});
    // Each element a constant, or the reshaped tensor's own extent at the same position
    // (Loom's and ONNX's 0: copy it).
    std::vector<int64_t> shape;
    const auto &v = shape_vals_.at(cur_->input(1));
    for (size_t k = 0; k < v.size(); ++k) {
      if (v[k].tensor.empty()) {
        if (v[k].value < -1 || (v[k].value == 0 && attr_i("allowzero", 0)))
          bad("shape value " + std::to_string(v[k].value));
        shape.push_back(v[k].value);
      } else if (v[k].tensor == cur_->input(0) && v[k].dim == static_cast<int64_t>(k)) {
        shape.push_back(0);
      } else {
        bad("shape element " + std::to_string(k) + " is extent " + std::to_string(v[k].dim) + " of '" +
            v[k].tensor + "'; computed shapes may only copy the reshaped tensor's own extents in place");
      }
    }
    set_output(0, make("reshape", {{"shape", tuple_str(shape)}}, {input(0)}));
  } else if (op == "Reshape") {
    only_attrs({"allowzero"});
    const Const &s = need_const(1, "the shape");
    if (s.is_float) bad("the shape is not an integer tensor");
    for (int64_t d : s.i) {
      if (d < -1) bad("shape value " + std::to_string(d));
      if (d == 0 && attr_i("allowzero", 0)) bad("allowzero 1 with a 0 in the shape");
    }
    if (const Const *c = const_input(0)) {
      // A constant reshaped (a PReLU slope laid out for broadcasting) stays a constant.
      Const r = *c;
      r.dims.clear();
      int64_t known = 1, infer_at = -1;
      for (size_t k = 0; k < s.i.size(); ++k) {
        int64_t d = s.i[k] == 0 ? (k < c->dims.size() ? c->dims[k] : 1) : s.i[k];
        if (d == -1) infer_at = static_cast<int64_t>(k);
        else known *= d;
        r.dims.push_back(d);
      }
      if (infer_at >= 0) r.dims[infer_at] = known ? c->size() / known : 0;
      if (r.size() != c->size()) bad("shape " + tuple_str(s.i) + " does not fit a constant of " + tuple_str(c->dims));
      consts_[cur_->output(0)] = std::move(r);
      return;
    }
    set_output(0, make("reshape", {{"shape", tuple_str(s.i)}}, {input(0)}));
  } else if (op == "Concat") {
    only_attrs({"axis"});
    std::vector<Symbol> ins;
    for (int i = 0; i < cur_->input_size(); ++i) ins.push_back(input(i));
    set_output(0, make("Concat", {{"dim", std::to_string(attr_i("axis", 0))},
                                  {"num_args", std::to_string(ins.size())}},
                       ins));
  } else if (op == "Softmax" || op == "LogSoftmax") {
    only_attrs({"axis"});
    set_output(0, make(op == "Softmax" ? "softmax" : "log_softmax",
                       {{"axis", std::to_string(attr_i("axis", -1))}}, {input(0)}));
  } else if (op == "LeakyRelu" || op == "Elu") {
    only_attrs({"alpha"});
    double a = attr_f("alpha", op == "LeakyRelu" ? 0.01 : 1.0);
    set_output(0, make("LeakyReLU", {{"act_type", op == "LeakyRelu" ? "leaky" : "elu"}, {"slope", num(a)}},
                       {input(0)}));
  } else if (op == "PRelu") {
    only_attrs({});
    const Const &s = need_const(1, "the slope");
    // Per-channel slopes of shape (C), (C,1) or (C,1,1...) are Loom's gamma.
    for (size_t k = 1; k < s.dims.size(); ++k)
      if (s.dims[k] != 1) bad("slope of shape " + tuple_str(s.dims) + " (per-channel slopes only)");
    set_output(0, make("LeakyReLU", {{"act_type", "prelu"}},
                       {input(0), param(cur_->input(1), s, {s.size()})}));
  } else if (op == "LRN") {
    only_attrs({"size", "alpha", "beta", "bias"});
    set_output(0, make("LRN", {{"nsize", std::to_string(attr_i("size", 0))},
                               {"alpha", num(attr_f("alpha", 1e-4))},
                               {"beta", num(attr_f("beta", 0.75))},
                               {"knorm", num(attr_f("bias", 1.0))}},
                       {input(0)}));
  } else if (op == "Transpose") {
    only_attrs({"perm"});
    set_output(0, make("transpose", {{"axes", tuple_str(attr_ints("perm"))}}, {input(0)}));
  } else if (op == "Clip") {
    only_attrs({});
    auto bound = [&](int i, double dflt) {
      if (!has_input(i)) return dflt;
      const Const &c = need_const(i, i == 1 ? "min" : "max");
      return c.is_float ? static_cast<double>(c.f.at(0)) : static_cast<double>(c.i.at(0));
    };
    set_output(0, make("clip", {{"a_min", num(bound(1, -FLT_MAX))}, {"a_max", num(bound(2, FLT_MAX))}},
                       {input(0)}));
  } else if (op == "ReduceMean" || op == "ReduceSum") {
    only_attrs({"axes", "keepdims", "noop_with_empty_axes"});
    std::vector<int64_t> axes = attr_ints("axes");
    if (op == "ReduceSum" && has_input(1)) {
      const Const &c = need_const(1, "axes");
      axes = c.i;
    }
    if (attr_i("noop_with_empty_axes", 0) && axes.empty()) {
      set_output(0, input(0));
      return;
    }
    StrPairs ps{{"keepdims", attr_i("keepdims", 1) ? "true" : "false"}};
    if (!axes.empty()) ps.push_back({"axis", tuple_str(axes)});
    set_output(0, make(op == "ReduceMean" ? "mean" : "sum", ps, {input(0)}));
  } else {
    bad("this op is not supported; supported: Abs, Add, AveragePool, BatchNormalization, "
        "Ceil, Clip, Concat, Constant, Conv, Cos, Div, Dropout, Elu, Exp, Flatten, Floor, Gemm, "
        "GlobalAveragePool, GlobalMaxPool, Identity, LRN, LeakyRelu, Log, LogSoftmax, MatMul, "
        "Max, MaxPool, Min, Mul, Neg, Pad (zero), Pow, Shape (with Gather, Unsqueeze, Concat into Reshape), PRelu, Reciprocal, ReduceMean, ReduceSum, Relu, "
        "Reshape, Sigmoid, Sign, Sin, Softmax, Softplus, Softsign, Sqrt, Sub, Sum, Tanh, "
        "Transpose");
  }
}

OnnxModel Importer::run() {
  std::ifstream f(path_, std::ios::binary);
  LOOM_CHECK(f, LOOM_ERR_IO, "ONNX import: cannot open '", path_, "': ", std::strerror(errno));
  std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  LOOM_CHECK(!bytes.empty(), LOOM_ERR_IO, "ONNX import: '", path_, "' is empty");
  LOOM_CHECK(model_.ParseFromString(bytes), LOOM_ERR_IO, "ONNX import: '", path_,
             "' is not an ONNX model (its protobuf encoding does not parse: truncated or damaged)");
  LOOM_CHECK(model_.has_graph(), LOOM_ERR_IO, "ONNX import: '", path_, "' has no graph");
  try {
    onnx::checker::check_model(model_);
  } catch (const std::exception &e) {
    fail(LOOM_ERR_IO, "ONNX import: '", path_, "' fails ONNX's checker: ", e.what());
  }
  int64_t opset = -1;
  for (auto &o : model_.opset_import())
    if (o.domain().empty() || o.domain() == "ai.onnx") opset = o.version();
  LOOM_CHECK(opset >= kOnnxMinOpset && opset <= kOnnxMaxOpset, LOOM_ERR_INVALID_ARGUMENT,
             "ONNX import: '", path_, "' uses opset ", opset, "; opsets ", kOnnxMinOpset, " to ",
             kOnnxMaxOpset, " are supported (re-export it with opset_version=13)");
  const onnx::GraphProto &g = model_.graph();

  for (auto &t : g.initializer()) consts_[t.name()] = read_tensor(t, "initializer '" + t.name() + "'");
  std::map<std::string, Shape> known;
  for (auto &in : g.input()) {
    if (consts_.count(in.name())) continue;
    const auto &tt = in.type().tensor_type();
    LOOM_CHECK(tt.elem_type() == onnx::TensorProto::FLOAT, LOOM_ERR_DTYPE, "ONNX import of '",
               path_, "': input '", in.name(), "' has ONNX element type ", tt.elem_type(),
               "; float inputs are supported");
    Shape s;
    s.ndim = tt.shape().dim_size();
    LOOM_CHECK(s.ndim <= LOOM_MAX_NDIM, LOOM_ERR_SHAPE, "ONNX import of '", path_, "': input '",
               in.name(), "' has ", s.ndim, " dimensions");
    Shape check = s;
    for (int k = 0; k < s.ndim; ++k) {
      const auto &d = tt.shape().dim(k);
      s.d[k] = d.has_dim_value() ? d.dim_value() : -1;
      check.d[k] = s.d[k] > 0 ? s.d[k] : 1;
    }
    result_.inputs.emplace_back(in.name(), s);
    known[in.name()] = check;
    values_[in.name()] = Symbol::variable(in.name());
  }

  std::set<std::string> names;
  for (int i = 0; i < g.node_size(); ++i) {
    cur_ = &g.node(i);
    cur_name_ = cur_->name().empty() ? cur_->op_type() + std::to_string(i) : cur_->name();
    while (!names.insert(cur_name_).second) cur_name_ += "_" + std::to_string(++counter_);
    if (!cur_->domain().empty() && cur_->domain() != "ai.onnx")
      bad("domain '" + cur_->domain() + "' is not supported");
    if (cur_->op_type() == "Constant") {
      const onnx::AttributeProto *a = cur_->attribute_size() == 1 ? &cur_->attribute(0) : nullptr;
      if (!a) bad("expects one attribute");
      Const c;
      if (a->name() == "value") c = read_tensor(a->t(), "constant '" + cur_->output(0) + "'");
      else if (a->name() == "value_float") c.f = {a->f()};
      else if (a->name() == "value_floats") { c.f.assign(a->floats().begin(), a->floats().end()); c.dims = {static_cast<int64_t>(c.f.size())}; }
      else if (a->name() == "value_int") { c.is_float = false; c.i = {a->i()}; }
      else if (a->name() == "value_ints") { c.is_float = false; c.i.assign(a->ints().begin(), a->ints().end()); c.dims = {static_cast<int64_t>(c.i.size())}; }
      else bad("attribute '" + a->name() + "' is not supported");
      consts_[cur_->output(0)] = std::move(c);
      continue;
    }
    translate();
  }

  std::vector<Symbol> heads;
  for (auto &o : g.output()) {
    auto it = values_.find(o.name());
    if (it == values_.end()) {
      LOOM_CHECK(!consts_.count(o.name()), LOOM_ERR_INVALID_ARGUMENT, "ONNX import of '", path_,
                 "': output '", o.name(), "' is a constant");
      fail(LOOM_ERR_INVALID_ARGUMENT, "ONNX import of '", path_, "': output '", o.name(),
           "' is not produced by any node");
    }
    heads.push_back(it->second);
  }
  LOOM_CHECK(!heads.empty(), LOOM_ERR_INVALID_ARGUMENT, "ONNX import of '", path_,
             "': the graph has no outputs");
  if (heads.size() == 1) {
    result_.sym = heads[0];
  } else {
    std::vector<const Symbol *> ptrs;
    for (auto &h : heads) ptrs.push_back(&h);
    result_.sym = Symbol::group(ptrs);
  }
  // Every initializer must fit the op it feeds: infer with the inputs' shapes
  // (symbolic extents as 1) and the parameters' shapes.
  for (auto &kv : result_.params) known[kv.first] = kv.second.shape();
  IndexedGraph ig = result_.sym.index();
  ShapeInfo info = infer(ig, known, {});
  (void)info;
  return std::move(result_);
}

}  // namespace

void onnx_export(const std::string &path, const Symbol &sym,
                 const std::map<std::string, NDArray> &params,
                 const std::map<std::string, Shape> &input_shapes, int opset) {
  Exporter e(sym, params, input_shapes, opset);
  onnx::ModelProto m = e.run();
  std::string bytes;
  LOOM_CHECK(m.SerializeToString(&bytes), LOOM_ERR_INTERNAL, "ONNX export: serialising the model failed");
  write_file_atomic(path, bytes.data(), bytes.size(), "ONNX export");
}

OnnxModel onnx_import(const std::string &path) {
  try {
    return Importer(path).run();
  } catch (const Error &e) {
    // Errors from shape inference and symbol building name the node; add the file.
    const std::string m = e.what();
    if (m.find(path) != std::string::npos) throw;
    fail(e.status(), "ONNX import of '", path, "': ", m);
  }
}

#endif  // LOOM_HAVE_ONNX

}  // namespace loom
