#include "symbol/symbol.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <functional>
#include <set>
#include <sstream>
#include <unordered_set>

#include "common/json.h"

namespace loom {

namespace {

thread_local std::vector<StrPairs> t_attr_scopes;
thread_local std::map<std::string, int> t_name_counts;

std::string auto_name(const OpDef &op) {
  std::string base;
  for (char c : op.name) base += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  int n = t_name_counts[base]++;
  return base + std::to_string(n);
}

std::shared_ptr<const Params> parse_params(const OpDef &op, const StrPairs &params) {
  std::vector<const char *> k, v;
  for (auto &kv : params) {
    k.push_back(kv.first.c_str());
    v.push_back(kv.second.c_str());
  }
  return std::make_shared<Params>(op, k.data(), v.data(), static_cast<int32_t>(k.size()));
}

// "__lr_mult__" -> "lr_mult"; other keys unchanged.
std::string strip_dunder(const std::string &k) {
  if (k.size() > 4 && k.compare(0, 2, "__") == 0 && k.compare(k.size() - 2, 2, "__") == 0)
    return k.substr(2, k.size() - 4);
  return k;
}

// Keys are stored as set_attr and the JSON reader store them (without MXNet's dunders).
void apply_scope(Node &n) {
  for (auto &scope : t_attr_scopes)
    for (auto &kv : scope) n.attrs[strip_dunder(kv.first)] = kv.second;
}

// User attributes that may appear without underscores in older files (MXNet's
// kHiddenKeys, src/c_api/c_api_symbolic.cc, and the variables' own keys).
bool is_known_user_attr(const std::string &k) {
  static const std::set<std::string> names{"ctx_group", "lr_mult", "wd_mult", "force_mirroring",
                                           "mirror_stage", "shape", "dtype", "init", "storage_type"};
  return names.count(k) > 0;
}

// ARG_key for a hidden key: an attribute meant for the input variable ARG.
bool hidden_key_suffix(const std::string &k) {
  for (const char *h : {"ctx_group", "lr_mult", "wd_mult", "force_mirroring", "mirror_stage"}) {
    std::string suffix = std::string("_") + h;
    if (k.size() > suffix.size() && k.compare(k.size() - suffix.size(), suffix.size(), suffix) == 0)
      return true;
  }
  return false;
}


}  // namespace

void attr_scope_push(const StrPairs &attrs) { t_attr_scopes.push_back(attrs); }
void attr_scope_pop() {
  LOOM_CHECK(!t_attr_scopes.empty(), LOOM_ERR_INVALID_ARGUMENT,
             "attribute scope: pop without a matching push");
  t_attr_scopes.pop_back();
}

Symbol Symbol::variable(const std::string &name) {
  LOOM_CHECK(!name.empty(), LOOM_ERR_INVALID_ARGUMENT, "variable: the name must not be empty");
  auto n = std::make_shared<Node>();
  n->name = name;
  apply_scope(*n);
  Symbol s;
  s.outputs.push_back(NodeEntry{n, 0});
  return s;
}

Symbol Symbol::create(const OpDef &op, const std::string &name_in, const StrPairs &params,
                      const std::vector<const Symbol *> &inputs,
                      const std::vector<std::string> &keys) {
  auto n = std::make_shared<Node>();
  n->op = &op;
  n->params = params;
  n->parsed = parse_params(op, params);
  n->name = name_in.empty() ? auto_name(op) : name_in;
  LOOM_CHECK(keys.empty() || keys.size() == inputs.size(), LOOM_ERR_INVALID_ARGUMENT, op.name,
             " '", n->name, "': ", keys.size(), " input names for ", inputs.size(), " inputs");
  for (size_t i = 0; i < inputs.size(); ++i) {
    LOOM_CHECK(inputs[i], LOOM_ERR_INVALID_ARGUMENT, op.name, " '", n->name, "': input ", i,
               " is NULL");
    size_t k = inputs[i]->outputs.size();
    LOOM_CHECK(k == 1, LOOM_ERR_INVALID_ARGUMENT, op.name, " '", n->name, "': input ",
               keys.empty() ? std::to_string(i) : "'" + keys[i] + "'", " is a group of ", k,
               " outputs; pick one with an output index");
  }
  if (op.variadic) {
    LOOM_CHECK(!inputs.empty(), LOOM_ERR_INVALID_ARGUMENT, op.name, " '", n->name,
               "': expects at least one input");
    for (auto *s : inputs) n->inputs.push_back(s->outputs[0]);
  } else {
    const int want = op.input_count(*n->parsed);
    std::vector<const Symbol *> slots(want, nullptr);
    auto names = [&] {
      std::string all;
      for (int i = 0; i < want; ++i) all += (i ? ", " : "") + op.inputs[i];
      return all;
    };
    for (size_t i = 0; i < inputs.size(); ++i) {
      int slot = static_cast<int>(i);
      if (!keys.empty()) {
        slot = -1;
        for (int j = 0; j < want; ++j)
          if (op.inputs[j] == keys[i]) slot = j;
        LOOM_CHECK(slot >= 0, LOOM_ERR_INVALID_ARGUMENT, op.name, " '", n->name,
                   "': unknown input '", keys[i], "'; its inputs are: ", names());
      }
      LOOM_CHECK(slot < want, LOOM_ERR_INVALID_ARGUMENT, op.name, " '", n->name, "': takes ",
                 want, " input", want == 1 ? "" : "s", " (", names(), "), got ", inputs.size());
      LOOM_CHECK(!slots[slot], LOOM_ERR_INVALID_ARGUMENT, op.name, " '", n->name, "': input '",
                 op.inputs[slot], "' given twice");
      slots[slot] = inputs[i];
    }
    for (int j = 0; j < want; ++j) {
      if (slots[j]) {
        n->inputs.push_back(slots[j]->outputs[0]);
      } else {
        Symbol v = variable(n->name + "_" + op.inputs[j]);
        n->inputs.push_back(v.outputs[0]);
      }
    }
  }
  apply_scope(*n);
  Symbol s;
  int visible = n->num_visible();
  for (int j = 0; j < visible; ++j) s.outputs.push_back(NodeEntry{n, j});
  return s;
}

Symbol Symbol::group(const std::vector<const Symbol *> &parts) {
  Symbol s;
  for (size_t i = 0; i < parts.size(); ++i) {
    LOOM_CHECK(parts[i], LOOM_ERR_INVALID_ARGUMENT, "group: symbol ", i, " is NULL");
    for (auto &e : parts[i]->outputs) s.outputs.push_back(e);
  }
  LOOM_CHECK(!s.outputs.empty(), LOOM_ERR_INVALID_ARGUMENT, "group: no symbols given");
  return s;
}

Symbol Symbol::output(int index) const {
  LOOM_CHECK(index >= 0 && index < static_cast<int>(outputs.size()), LOOM_ERR_INVALID_ARGUMENT,
             "symbol output: index ", index, " is out of range; it has ", outputs.size(),
             " output", outputs.size() == 1 ? "" : "s");
  Symbol s;
  s.outputs.push_back(outputs[index]);
  return s;
}

Symbol Symbol::compose(const std::vector<std::pair<std::string, const Symbol *>> &replace) const {
  std::map<std::string, NodeEntry> with;
  for (auto &r : replace) {
    LOOM_CHECK(r.second && r.second->outputs.size() == 1, LOOM_ERR_INVALID_ARGUMENT,
               "compose: replacement for '", r.first, "' must be a single-output symbol");
    with[r.first] = r.second->outputs[0];
  }
  IndexedGraph g = index();
  std::set<std::string> used;
  std::unordered_map<const Node *, NodePtr> copy;
  std::unordered_map<const Node *, NodeEntry> replaced;
  for (Node *old : g.nodes) {
    if (old->is_variable() && with.count(old->name)) {
      replaced[old] = with[old->name];
      used.insert(old->name);
      continue;
    }
    auto n = std::make_shared<Node>(*old);
    for (auto &in : n->inputs) {
      auto r = replaced.find(in.node.get());
      if (r != replaced.end()) in = r->second;
      else in.node = copy.at(in.node.get());
    }
    copy[old] = n;
  }
  for (auto &r : replace)
    LOOM_CHECK(used.count(r.first), LOOM_ERR_NOT_FOUND, "compose: the symbol has no argument '",
               r.first, "'");
  Symbol s;
  for (auto &e : outputs) {
    auto r = replaced.find(e.node.get());
    s.outputs.push_back(r != replaced.end() ? r->second : NodeEntry{copy.at(e.node.get()), e.index});
  }
  return s;
}

IndexedGraph Symbol::index() const {
  IndexedGraph g;
  std::vector<std::pair<Node *, size_t>> stack;
  std::unordered_set<const Node *> seen;
  for (auto &h : outputs) {
    if (!seen.insert(h.node.get()).second) continue;
    stack.emplace_back(h.node.get(), 0);
    while (!stack.empty()) {
      auto &[n, next] = stack.back();
      if (next < n->inputs.size()) {
        Node *in = n->inputs[next++].node.get();
        if (seen.insert(in).second) stack.emplace_back(in, 0);
      } else {
        g.id[n] = static_cast<int>(g.nodes.size());
        g.nodes.push_back(n);
        stack.pop_back();
      }
    }
  }
  g.entry_base.push_back(0);
  for (Node *n : g.nodes) g.entry_base.push_back(g.entry_base.back() + n->num_outputs());
  for (auto &h : outputs) g.heads.push_back(g.entry(h));
  // A variable is an auxiliary state when it feeds an op's aux slot.
  std::unordered_set<const Node *> aux;
  for (Node *n : g.nodes)
    for (size_t i = 0; i < n->inputs.size(); ++i)
      if (n->input_is_aux(i) && n->inputs[i].node->is_variable()) aux.insert(n->inputs[i].node.get());
  std::map<std::string, const Node *> by_name;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    Node *n = g.nodes[i];
    if (!n->is_variable()) continue;
    auto [it, fresh] = by_name.emplace(n->name, n);
    LOOM_CHECK(fresh || it->second == n, LOOM_ERR_INVALID_ARGUMENT,
               "symbol: two different variables are named '", n->name,
               "'; argument names must be unique");
    (aux.count(n) ? g.aux : g.args).push_back(static_cast<int>(i));
  }
  return g;
}

std::vector<std::string> Symbol::list_arguments() const {
  IndexedGraph g = index();
  std::vector<std::string> r;
  for (int i : g.args) r.push_back(g.nodes[i]->name);
  return r;
}

std::vector<std::string> Symbol::list_auxiliary_states() const {
  IndexedGraph g = index();
  std::vector<std::string> r;
  for (int i : g.aux) r.push_back(g.nodes[i]->name);
  return r;
}

std::vector<std::string> Symbol::list_outputs() const {
  std::vector<std::string> r;
  for (auto &e : outputs) {
    const Node &n = *e.node;
    if (n.is_variable()) r.push_back(n.name);
    else if (n.num_visible() == 1) r.push_back(n.name + "_output");
    else r.push_back(n.name + "_output" + std::to_string(e.index));
  }
  return r;
}

Node *Symbol::single_head(const char *what) const {
  LOOM_CHECK(!outputs.empty(), LOOM_ERR_INVALID_ARGUMENT, what, ": the symbol is empty");
  Node *n = outputs[0].node.get();
  for (auto &e : outputs)
    LOOM_CHECK(e.node.get() == n, LOOM_ERR_INVALID_ARGUMENT, what,
               ": the symbol is a group of several nodes; attributes belong to one node");
  return n;
}

void Symbol::set_attr(const std::string &key, const std::string &value) {
  Node *n = single_head("set_attr");
  LOOM_CHECK(!key.empty(), LOOM_ERR_INVALID_ARGUMENT, "set_attr: empty attribute name");
  std::string k = strip_dunder(key);
  if (n->op)
    for (auto &p : n->op->params)
      LOOM_CHECK(p.name != k, LOOM_ERR_INVALID_ARGUMENT, "set_attr: '", k, "' is a parameter of ",
                 n->op->name, " node '", n->name, "'; parameters are fixed at creation");
  n->attrs[k] = value;
}

bool Symbol::get_attr(const std::string &key, std::string *value) const {
  Node *n = single_head("get_attr");
  std::string k = strip_dunder(key);
  auto it = n->attrs.find(k);
  if (it != n->attrs.end()) {
    *value = it->second;
    return true;
  }
  for (auto &p : n->params)
    if (p.first == k) {
      *value = p.second;
      return true;
    }
  return false;
}

std::vector<std::pair<std::string, std::string>> Symbol::list_attrs() const {
  IndexedGraph g = index();
  std::vector<std::pair<std::string, std::string>> r;
  for (Node *n : g.nodes) {
    for (auto &p : n->params) r.emplace_back(n->name + "$" + p.first, p.second);
    for (auto &a : n->attrs) r.emplace_back(n->name + "$" + a.first, a.second);
  }
  return r;
}

// ------------------------------------------------------------------ JSON
std::string Symbol::to_json() const {
  IndexedGraph g = index();
  std::ostringstream o;
  o << "{\n  \"nodes\": [";
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const Node &n = *g.nodes[i];
    o << (i ? "," : "") << "\n    {\n      \"op\": "
      << json::quote(n.op ? Registry::get().mxnet_name(*n.op) : std::string("null"))
      << ",\n      \"name\": " << json::quote(n.name);
    if (!n.params.empty() || !n.attrs.empty()) {
      o << ",\n      \"attrs\": {";
      bool first = true;
      for (auto &p : n.params) {
        o << (first ? "" : ", ") << json::quote(p.first) << ": " << json::quote(p.second);
        first = false;
      }
      for (auto &a : n.attrs) {
        o << (first ? "" : ", ") << json::quote("__" + a.first + "__") << ": "
          << json::quote(a.second);
        first = false;
      }
      o << "}";
    }
    o << ",\n      \"inputs\": [";
    for (size_t k = 0; k < n.inputs.size(); ++k)
      o << (k ? ", " : "") << "[" << g.id.at(n.inputs[k].node.get()) << ", " << n.inputs[k].index
        << ", 0]";
    o << "]\n    }";
  }
  o << "\n  ],\n  \"arg_nodes\": [";
  bool first = true;
  for (size_t i = 0; i < g.nodes.size(); ++i)
    if (g.nodes[i]->is_variable()) {
      o << (first ? "" : ", ") << i;
      first = false;
    }
  o << "],\n  \"node_row_ptr\": [";
  for (size_t i = 0; i < g.entry_base.size(); ++i) o << (i ? ", " : "") << g.entry_base[i];
  o << "],\n  \"heads\": [";
  for (size_t i = 0; i < outputs.size(); ++i)
    o << (i ? ", " : "") << "[" << g.id.at(outputs[i].node.get()) << ", " << outputs[i].index
      << ", 0]";
  o << "],\n  \"attrs\": {\"mxnet_version\": [\"int\", 10600], \"loom_version\": [\"int\", 1]}\n}\n";
  return o.str();
}

namespace {
int64_t json_int(const json::Value &v, const std::string &where) {
  LOOM_CHECK(v.kind == json::Value::Number && v.num == std::floor(v.num) && v.num >= 0 &&
                 v.num < 1e9,
             LOOM_ERR_IO, where, " must be a non-negative integer, got ", v.kind_name());
  return static_cast<int64_t>(v.num);
}

std::pair<int64_t, int64_t> json_entry(const json::Value &v, const std::string &where) {
  LOOM_CHECK(v.kind == json::Value::Array && v.arr.size() >= 2 && v.arr.size() <= 3, LOOM_ERR_IO,
             where, " must be [node, output] or [node, output, version]");
  return {json_int(v.arr[0], where + "[0]"), json_int(v.arr[1], where + "[1]")};
}
}  // namespace

Symbol Symbol::from_json(const std::string &text, const std::string &what) {
  json::Value root = json::parse(text, what);
  LOOM_CHECK(root.kind == json::Value::Object, LOOM_ERR_IO, what,
             ": a symbol file must hold a JSON object, found ", root.kind_name());
  const json::Value *nodes = root.find("nodes");
  const json::Value *heads = root.find("heads");
  LOOM_CHECK(nodes && nodes->kind == json::Value::Array, LOOM_ERR_IO, what,
             ": missing the \"nodes\" array");
  LOOM_CHECK(heads && heads->kind == json::Value::Array, LOOM_ERR_IO, what,
             ": missing the \"heads\" array");
  // The writer's MXNet version (attrs.mxnet_version = ["int", 10600]): the legacy
  // upgrades apply to older files; a file without it is taken as the oldest.
  int64_t version = 0;
  if (const json::Value *ga = root.find("attrs"); ga && ga->kind == json::Value::Object)
    if (const json::Value *mv = ga->find("mxnet_version");
        mv && mv->kind == json::Value::Array && mv->arr.size() == 2 && mv->arr[1].kind == json::Value::Number &&
        mv->arr[1].num >= 0 && mv->arr[1].num < 1e15)  // any other value would be an undefined cast
      version = static_cast<int64_t>(mv->arr[1].num);
  std::vector<NodePtr> made;
  for (size_t i = 0; i < nodes->arr.size(); ++i) {
    const json::Value &jn = nodes->arr[i];
    std::string where = what + ": node " + std::to_string(i);
    LOOM_CHECK(jn.kind == json::Value::Object, LOOM_ERR_IO, where, " is not an object");
    const json::Value *op = jn.find("op");
    const json::Value *name = jn.find("name");
    LOOM_CHECK(op && op->kind == json::Value::String, LOOM_ERR_IO, where,
               " has no \"op\" string");
    LOOM_CHECK(name && name->kind == json::Value::String, LOOM_ERR_IO, where,
               " has no \"name\" string");
    where += " ('" + name->str + "')";
    auto n = std::make_shared<Node>();
    n->name = name->str;
    if (op->str != "null") {
      try {
        n->op = &Registry::get().lookup(op->str);
      } catch (const Error &e) {
        fail(e.status(), where, ": ", e.what());
      }
    }
    // MXNet reads "attrs", the older "attr" and "param" into one dictionary
    // (nnvm's JSON loader), then upgrades it (src/nnvm/legacy_json_util.cc):
    // __key__ is a user attribute; an op's parameter is a parameter; a hidden
    // key (ctx_group, lr_mult, ...) is a user attribute, and ARG_key moves to
    // the input variable ARG (applied below, once the inputs are known).
    std::vector<std::pair<std::string, std::string>> to_inputs;
    auto read_map = [&](const char *key) {
      const json::Value *m = jn.find(key);
      if (!m) return;
      LOOM_CHECK(m->kind == json::Value::Object, LOOM_ERR_IO, where, ": \"", key,
                 "\" must be an object");
      for (auto &kv : m->obj) {
        LOOM_CHECK(kv.second.kind == json::Value::String, LOOM_ERR_IO, where, ": attribute '",
                   kv.first, "' must be a string");
        std::string k = strip_dunder(kv.first);
        bool is_param = false;
        if (n->op && k == kv.first)
          for (auto &p : n->op->params) is_param |= p.name == k;
        if (is_param) {
          n->params.emplace_back(k, kv.second.str);
        } else if (k != kv.first || !n->op || is_known_user_attr(k)) {
          n->attrs[k] = kv.second.str;
        } else if (hidden_key_suffix(k)) {
          to_inputs.emplace_back(k, kv.second.str);
        } else {
          std::string known;
          for (auto &p : n->op->params) known += (known.empty() ? "" : ", ") + p.name;
          fail(LOOM_ERR_INVALID_ARGUMENT, where, ": ", n->op->name, " has no parameter '", k,
               "'", known.empty() ? std::string() : "; known parameters: " + known);
        }
      }
    };
    read_map("attrs");
    read_map("attr");
    read_map("param");
    // MXNet 0.9.5's upgrade: argmax/argmin with axis=-1 meant the flattened search.
    if (n->op && version < 905 && (n->op->name == "argmax" || n->op->name == "argmin"))
      n->params.erase(std::remove_if(n->params.begin(), n->params.end(),
                                     [](const auto &kv) { return kv.first == "axis" && kv.second == "-1"; }),
                      n->params.end());
    if (n->op) {
      try {
        n->parsed = parse_params(*n->op, n->params);
      } catch (const Error &e) {
        fail(e.status(), where, ": ", e.what());
      }
    }
    const json::Value *inputs = jn.find("inputs");
    if (inputs) {
      LOOM_CHECK(inputs->kind == json::Value::Array, LOOM_ERR_IO, where,
                 ": \"inputs\" must be an array");
      for (size_t k = 0; k < inputs->arr.size(); ++k) {
        auto [src, idx] = json_entry(inputs->arr[k], where + " input " + std::to_string(k));
        LOOM_CHECK(src < static_cast<int64_t>(i), LOOM_ERR_IO, where, ": input ", k,
                   " refers to node ", src, ", which does not come before it");
        LOOM_CHECK(idx < made[src]->num_outputs(), LOOM_ERR_IO, where, ": input ", k,
                   " refers to output ", idx, " of node '", made[src]->name, "', which has ",
                   made[src]->num_outputs());
        n->inputs.push_back(NodeEntry{made[src], static_cast<int>(idx)});
      }
    }
    if (n->op && !n->op->variadic &&
        n->inputs.size() < static_cast<size_t>(n->op->input_count(*n->parsed))) {
      // Files from MXNet before 0.9 leave inputs out (BatchNorm's moving statistics,
      // say): MXNet's upgrade adds them as variables named node_input, carrying the
      // node's attributes.
      const auto &names = n->op->inputs;
      for (size_t k = n->inputs.size(); k < static_cast<size_t>(n->op->input_count(*n->parsed)) &&
                                        k < names.size(); ++k) {
        auto v = std::make_shared<Node>();
        v->name = n->name + "_" + names[k];
        v->attrs = n->attrs;
        n->inputs.push_back(NodeEntry{v, 0});
      }
    }
    for (auto &[k, value] : to_inputs) {
      // ARG_lr_mult and the like: the attribute of input variable ARG.
      bool placed = false;
      for (size_t a = 0; n->op && a < n->op->inputs.size() && a < n->inputs.size(); ++a) {
        const std::string &arg = n->op->inputs[a];
        if (k.size() > arg.size() + 1 && k.compare(0, arg.size() + 1, arg + "_") == 0 &&
            n->inputs[a].node->is_variable() && is_known_user_attr(k.substr(arg.size() + 1))) {
          n->inputs[a].node->attrs[k.substr(arg.size() + 1)] = value;
          placed = true;
        }
      }
      if (!placed) n->attrs[k] = value;  // as MXNet keeps it when no input matches
    }
    if (n->op) {
      size_t want = n->op->variadic ? n->inputs.size()
                                    : static_cast<size_t>(n->op->input_count(*n->parsed));
      LOOM_CHECK(n->inputs.size() == want && (want > 0 || !n->op->variadic), LOOM_ERR_IO, where,
                 ": ", n->op->name, " takes ", want, " inputs, the file gives ",
                 n->inputs.size());
    } else {
      LOOM_CHECK(n->inputs.empty(), LOOM_ERR_IO, where, ": a variable cannot have inputs");
    }
    made.push_back(n);
  }
  Symbol s;
  for (size_t h = 0; h < heads->arr.size(); ++h) {
    auto [src, idx] = json_entry(heads->arr[h], what + ": head " + std::to_string(h));
    LOOM_CHECK(src < static_cast<int64_t>(made.size()) && idx < made[src]->num_outputs(),
               LOOM_ERR_IO, what, ": head ", h, " refers to a missing node or output");
    s.outputs.push_back(NodeEntry{made[src], static_cast<int>(idx)});
  }
  LOOM_CHECK(!s.outputs.empty(), LOOM_ERR_IO, what, ": the symbol has no heads");
  return s;
}

// ------------------------------------------------------------------ inference
namespace {
bool parse_shape_attr(const std::string &s, Shape *out) {
  Shape r;
  std::string body;
  for (char c : s)
    if (c != '(' && c != ')' && c != '[' && c != ']' && c != ' ') body += c;
  std::stringstream ss(body);
  std::string tok;
  while (std::getline(ss, tok, ',')) {
    if (tok.empty()) continue;
    if (r.ndim >= LOOM_MAX_NDIM) return false;
    r.d[r.ndim++] = std::strtoll(tok.c_str(), nullptr, 10);
  }
  // MXNet writes unknown extents as 0; such a shape is only a hint.
  for (int i = 0; i < r.ndim; ++i)
    if (r.d[i] <= 0) return false;
  *out = r;
  return r.ndim > 0;
}

[[noreturn]] void node_fail(const Node &n, const Error &e) {
  fail(e.status(), "node '", n.name, "': ", e.what());
}
}  // namespace

namespace {

// Whether a creation op (no inputs) has a shape parameter with a 0 extent.
bool partial_creation_shape(const Node &n) {
  bool has_shape = false;
  for (const ParamDef &d : n.op->params) has_shape |= d.name == "shape" && d.type == ParamType::Tuple;
  if (!has_shape || !n.op->inputs.empty()) return false;
  for (int64_t d : n.parsed->tuple("shape"))
    if (d == 0) return true;
  return false;
}

std::string tuple_text(const std::vector<int64_t> &v) {
  std::string t = "(";
  for (size_t k = 0; k < v.size(); ++k) t += (k ? "," : "") + std::to_string(v[k]);
  return t + ")";
}

}  // namespace

ShapeInfo infer(const IndexedGraph &g, const std::map<std::string, Shape> &shapes,
                const std::map<std::string, int32_t> &dtypes) {
  const int ne = g.num_entries();
  ShapeInfo r;
  r.shape.assign(ne, Shape{});
  r.known.assign(ne, 0);
  r.dtype.assign(ne, -1);
  std::set<std::string> names;
  for (size_t i = 0; i < g.nodes.size(); ++i) {
    const Node &n = *g.nodes[i];
    if (!n.is_variable()) continue;
    names.insert(n.name);
    int e = g.entry_base[i];
    auto s = shapes.find(n.name);
    if (s != shapes.end()) {
      r.shape[e] = s->second;
      r.known[e] = 1;
    } else if (auto a = n.attrs.find("shape"); a != n.attrs.end()) {
      r.known[e] = parse_shape_attr(a->second, &r.shape[e]);
    }
    auto d = dtypes.find(n.name);
    if (d != dtypes.end()) r.dtype[e] = d->second;
  }
  auto check_names = [&](const auto &given, const char *what) {
    for (auto &kv : given)
      if (!names.count(kv.first)) {
        std::string all;
        for (auto &nm : names) all += (all.empty() ? "" : ", ") + nm;
        fail(LOOM_ERR_NOT_FOUND, "infer ", what, ": the symbol has no argument or auxiliary state '",
             kv.first, "'; it has: ", all);
      }
  };
  check_names(shapes, "shape");
  check_names(dtypes, "dtype");

  auto visit = [&](size_t i, bool forward) -> bool {
    const Node &n = *g.nodes[i];
    if (n.is_variable()) return false;
    const size_t nin = n.inputs.size();
    const int nout = n.num_outputs();
    if (nin == 0 && partial_creation_shape(n)) {
      // MXNet 1.x symbols: a 0 extent in a creation op's shape (zeros, ones, full) is unknown
      // and comes from the op's consumers (an RNN's begin state gets the batch size of its data).
      int e = g.entry_base[i];
      bool changed = false;
      if (r.dtype[e] < 0) {
        r.dtype[e] = n.parsed->has("dtype") ? n.parsed->dtype("dtype") : kFloat32;
        changed = true;
      }
      if (r.known[e]) {
        const std::vector<int64_t> &want = n.parsed->tuple("shape");
        bool fits = r.shape[e].ndim == static_cast<int>(want.size());
        for (size_t k = 0; fits && k < want.size(); ++k) fits = want[k] == 0 || want[k] == r.shape[e].d[k];
        LOOM_CHECK(fits, LOOM_ERR_SHAPE, "node '", n.name, "' (", n.op->name, "): its consumers need shape ",
                   r.shape[e].str(), ", which does not fit its shape parameter ", tuple_text(want),
                   " (0 marks an extent left to inference)");
      }
      return changed;
    }
    ShapeList in(nin), out(nout);
    SmallVec<char, 4> kin(nin), kout(nout);
    bool changed = false;
    for (size_t k = 0; k < nin; ++k) {
      int e = g.entry(n.inputs[k]);
      in[k] = r.shape[e];
      kin[k] = r.known[e];
    }
    for (int j = 0; j < nout; ++j) {
      out[j] = r.shape[g.entry_base[i] + j];
      kout[j] = r.known[g.entry_base[i] + j];
    }
    bool all_in = std::all_of(kin.begin(), kin.end(), [](char c) { return c != 0; });
    if (!all_in && n.op->infer_inputs) {
      try {
        n.op->infer_inputs(*n.parsed, in, kin, out, kout);
      } catch (const Error &e) {
        node_fail(n, e);
      }
      for (size_t k = 0; k < nin; ++k) {
        int e = g.entry(n.inputs[k]);
        if (kin[k] && !r.known[e]) {
          r.shape[e] = in[k];
          r.known[e] = 1;
          changed = true;
        }
      }
      all_in = std::all_of(kin.begin(), kin.end(), [](char c) { return c != 0; });
    }
    // dtypes: unknown inputs take the first known input dtype (float32 if none).
    int32_t fallback = -1;
    for (size_t k = 0; k < nin && fallback < 0; ++k) fallback = r.dtype[g.entry(n.inputs[k])];
    bool have_out_dtype = false;
    for (int j = 0; j < nout; ++j) have_out_dtype |= r.dtype[g.entry_base[i] + j] >= 0;
    if (fallback < 0 && !have_out_dtype && !forward) return changed;
    if (fallback < 0) fallback = kFloat32;
    DTypeList dt(nin);
    for (size_t k = 0; k < nin; ++k) {
      int e = g.entry(n.inputs[k]);
      if (r.dtype[e] < 0 && !n.input_is_aux(k)) {
        r.dtype[e] = fallback;
        changed = true;
      }
      if (r.dtype[e] < 0) r.dtype[e] = fallback;
      dt[k] = r.dtype[e];
    }
    if (!all_in) return changed;
    bool all_out = std::all_of(kout.begin(), kout.end(), [](char c) { return c != 0; });
    if (!forward && all_out) return changed;
    ShapeList oshape(nout);
    DTypeList odt(nout, nin ? dt[0] : kFloat32);
    try {
      n.op->infer(*n.parsed, in, dt, oshape, odt);
    } catch (const Error &e) {
      node_fail(n, e);
    }
    for (int j = 0; j < nout; ++j) {
      int e = g.entry_base[i] + j;
      if (r.known[e] && r.shape[e] != oshape[j])
        fail(LOOM_ERR_SHAPE, "node '", n.name, "' (", n.op->name, "): output ", j, " has shape ",
             oshape[j].str(), " from its inputs, but ", r.shape[e].str(),
             " was inferred from its consumers");
      if (!r.known[e]) changed = true;
      r.shape[e] = oshape[j];
      r.known[e] = 1;
      r.dtype[e] = odt[j];
    }
    return changed;
  };
  for (int sweep = 0; sweep < 2 * static_cast<int>(g.nodes.size()) + 2; ++sweep) {
    bool changed = false;
    for (size_t i = 0; i < g.nodes.size(); ++i) changed |= visit(i, true);
    for (size_t i = g.nodes.size(); i-- > 0;) changed |= visit(i, false);
    if (!changed) break;
  }
  for (int e = 0; e < ne; ++e)
    if (r.dtype[e] < 0 && r.known[e]) r.dtype[e] = kFloat32;
  return r;
}

}  // namespace loom
