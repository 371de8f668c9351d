#include "symbol/viz.h"

#include <set>
#include <sstream>

#include "common/base.h"

namespace loom {
namespace {

// MXNet's colours, by op family (python/mxnet/visualization.py).
constexpr const char *kColours[] = {"#8dd3c7", "#fb8072", "#ffffb3", "#bebada",
                                    "#80b1d3", "#fdb462", "#b3de69", "#fccde5"};

bool looks_like_weight(const std::string &name) {
  for (const char *suffix : {"_weight", "_bias", "_beta", "_gamma", "_moving_var", "_moving_mean",
                             "_running_var", "_running_mean"}) {
    std::string s(suffix);
    if (name.size() >= s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0) return true;
  }
  return false;
}

// A DOT quoted string; `\n` sequences already in `s` stay line breaks.
std::string quote(const std::string &s) {
  std::string o = "\"";
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (c == '"') o += "\\\"";
    else if (c == '\\' && !(i + 1 < s.size() && s[i + 1] == 'n')) o += "\\\\";
    else if (c == '\n') o += "\\n";
    else o += c;
  }
  return o + "\"";
}

std::string joined(const std::vector<int64_t> &v, size_t from = 0) {
  std::string o;
  for (size_t i = from; i < v.size(); ++i) o += (i > from ? "x" : "") + std::to_string(v[i]);
  return o;
}

std::string shape_text(const Shape &s) {  // without the batch axis, as MXNet labels
  std::vector<int64_t> d(s.d, s.d + s.ndim);
  return joined(d, 1);
}

std::string given_tuple(const Node &n, const char *name, const char *otherwise) {
  for (auto &p : n.params)
    if (p.first == name) return joined(n.parsed->tuple(name));
  return otherwise;
}

struct Inferred {
  IndexedGraph g;
  ShapeInfo info;
  bool have = false;
};

Inferred infer_all(const Symbol &s, const std::map<std::string, Shape> &shapes, const char *what) {
  Inferred r;
  r.g = s.index();
  if (shapes.empty()) return r;
  r.info = infer(r.g, shapes, {});
  r.have = true;
  for (size_t i = 0; i < r.g.nodes.size(); ++i) {
    const Node &n = *r.g.nodes[i];
    for (int k = 0; k < n.num_outputs(); ++k)
      LOOM_CHECK(r.info.known[r.g.entry_base[i] + k], LOOM_ERR_SHAPE, what, ": the shape of '", n.name,
                 "' cannot be inferred from the input shapes given; give the shapes of every input");
  }
  return r;
}

}  // namespace

std::string to_dot(const Symbol &s, const std::map<std::string, Shape> &shapes, const std::string &title,
                   bool hide_weights) {
  Inferred in = infer_all(s, shapes, "to_dot");
  const IndexedGraph &g = in.g;
  std::ostringstream o;
  o << "digraph " << quote(title.empty() ? "plot" : title) << " {\n";
  o << "\tnode [fixedsize=true height=0.8034 shape=box style=filled width=1.3]\n";
  std::set<const Node *> hidden;
  for (const Node *n : g.nodes) {
    std::string label = n->name, colour, shape;
    if (n->is_variable()) {
      if (looks_like_weight(n->name)) {
        if (hide_weights) hidden.insert(n);
        else o << "\t" << quote(n->name) << " [label=" << quote(n->name) << " fillcolor=\"" << kColours[0]
               << "\" shape=oval]\n";
        continue;
      }
      colour = kColours[0];
      shape = "oval";
    } else {
      const std::string op = Registry::get().mxnet_name(*n->op);
      const Params &p = *n->parsed;
      if (op == "Convolution" || op == "Deconvolution") {
        label = op + "\\n" + joined(p.tuple("kernel")) + "/" + given_tuple(*n, "stride", "1") + ", " +
                std::to_string(static_cast<long long>(p.i("num_filter")));
        colour = kColours[1];
      } else if (op == "FullyConnected") {
        label = op + "\\n" + std::to_string(static_cast<long long>(p.i("num_hidden")));
        colour = kColours[1];
      } else if (op == "BatchNorm") {
        colour = kColours[3];
      } else if (op == "Activation" || op == "LeakyReLU") {
        label = op + "\\n" + p.s("act_type");
        colour = kColours[2];
      } else if (op == "Pooling") {
        label = op + "\\n" + p.s("pool_type") + ", " + given_tuple(*n, "kernel", "[]") + "/" +
                given_tuple(*n, "stride", "1");
        colour = kColours[4];
      } else if (op == "Concat" || op == "Flatten" || op == "Reshape") {
        colour = kColours[5];
      } else if (op == "Softmax" || op == "SoftmaxOutput" || op == "softmax") {
        colour = op == "Softmax" ? kColours[6] : kColours[7];
      } else {
        colour = kColours[7];
      }
    }
    o << "\t" << quote(n->name) << " [label=" << quote(label) << " fillcolor=\"" << colour << "\"";
    if (!shape.empty()) o << " shape=" << shape;
    o << "]\n";
  }
  for (const Node *n : g.nodes) {
    if (n->is_variable()) continue;
    for (const NodeEntry &e : n->inputs) {
      if (hidden.count(e.node.get())) continue;
      o << "\t" << quote(n->name) << " -> " << quote(e.node->name) << " [arrowtail=open dir=back";
      if (in.have) o << " label=" << quote(shape_text(in.info.shape[g.entry(e)]));
      o << "]\n";
    }
  }
  o << "}\n";
  return o.str();
}

std::string summary(const Symbol &s, const std::map<std::string, Shape> &shapes, int line_length) {
  LOOM_CHECK(line_length >= 40 && line_length <= 1000, LOOM_ERR_INVALID_ARGUMENT,
             "summary: line_length must be in [40, 1000], got ", line_length);
  Inferred in = infer_all(s, shapes, "summary");
  const IndexedGraph &g = in.g;
  const double rel[] = {.44, .64, .74, 1.};
  int pos[4];
  for (int i = 0; i < 4; ++i) pos[i] = static_cast<int>(line_length * rel[i]);
  std::ostringstream o;
  auto row = [&](const std::string (&fields)[4]) {
    std::string line;
    for (int i = 0; i < 4; ++i) {
      line += fields[i];
      line = line.substr(0, static_cast<size_t>(pos[i]));
      line += std::string(static_cast<size_t>(pos[i]) - line.size(), ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    o << line << "\n";
  };
  o << std::string(static_cast<size_t>(line_length), '_') << "\n";
  row({"Layer (type)", "Output Shape", "Param #", "Previous Layer"});
  o << std::string(static_cast<size_t>(line_length), '=') << "\n";
  std::set<const Node *> heads;
  for (const NodeEntry &e : s.outputs) heads.insert(e.node.get());
  std::set<std::string> given;
  for (auto &kv : shapes) given.insert(kv.first);
  int64_t total = 0;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const Node *n = g.nodes[i];
    // As MXNet: op nodes, and variables only when first (the data) or an output.
    if (n->is_variable() && i > 0 && !heads.count(n)) continue;
    std::vector<std::string> previous;
    int64_t params = 0;
    for (size_t k = 0; k < n->inputs.size(); ++k) {
      const NodeEntry &e = n->inputs[k];
      const Node *src = e.node.get();
      if (!src->is_variable() || heads.count(src)) previous.push_back(src->name);
      // Learnable: a variable feeding an input the op names other than data or label
      // (weight, bias, gamma, ...), neither given a shape nor an auxiliary state.
      const std::string role = k < n->op->inputs.size() ? n->op->inputs[k] : std::string("data");
      bool learnable = src->is_variable() && !n->input_is_aux(k) && !given.count(src->name) &&
                       role != "data" && role != "label";
      if (learnable && in.have) params += in.info.shape[g.entry(e)].size();
    }
    std::string shape = in.have ? shape_text(in.info.shape[g.entry_base[i]]) : "";
    std::string type = n->is_variable() ? "null" : Registry::get().mxnet_name(*n->op);
    row({n->name + "(" + type + ")", shape, std::to_string(static_cast<long long>(params)),
         previous.empty() ? "" : previous[0]});
    for (size_t k = 1; k < previous.size(); ++k) row({"", "", "", previous[k]});
    total += params;
    o << std::string(static_cast<size_t>(line_length), i + 1 == g.nodes.size() ? '=' : '_') << "\n";
  }
  o << "Total params: " << total << "\n";
  o << std::string(static_cast<size_t>(line_length), '_') << "\n";
  return o.str();
}

}  // namespace loom
