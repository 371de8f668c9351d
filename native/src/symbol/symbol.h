// Symbols: declarative graphs of registered ops. A symbol is a list of
// output entries of shared nodes; variables are nodes without an op.
// Composition, grouping, listing, attributes, partial shape/dtype inference
// and MXNet's symbol JSON live here; executors (executor.h) run them.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "op/registry.h"

namespace loom {

struct Node;
using NodePtr = std::shared_ptr<Node>;

struct NodeEntry {
  NodePtr node;
  int index = 0;
};

using StrPairs = std::vector<std::pair<std::string, std::string>>;

struct Node {
  const OpDef *op = nullptr;  // null: a variable
  std::string name;
  StrPairs params;                             // op parameters as given
  std::shared_ptr<const Params> parsed;        // checked against the op's schema
  std::map<std::string, std::string> attrs;    // user attributes (lr_mult, ctx_group, ...)
  std::vector<NodeEntry> inputs;

  bool is_variable() const { return op == nullptr; }
  int num_outputs() const { return op ? op->output_count(*parsed) : 1; }
  int num_visible() const { return op ? op->visible_count(*parsed) : 1; }
  // Where input i counts as an auxiliary state of this node's op.
  bool input_is_aux(size_t i) const {
    return op && op->num_aux > 0 && i + op->num_aux >= inputs.size();
  }
};

// The nodes of a symbol in topological order (inputs first, each input list
// walked in order: MXNet's DFS post-order), with entry numbering.
struct IndexedGraph {
  std::vector<Node *> nodes;
  std::unordered_map<const Node *, int> id;
  std::vector<int> entry_base;  // first entry id of each node; size nodes+1
  std::vector<int> heads;       // entry ids of the symbol's outputs
  std::vector<int> args, aux;   // variable node ids, in list order
  int num_entries() const { return entry_base.back(); }
  int entry(const NodeEntry &e) const { return entry_base[id.at(e.node.get())] + e.index; }
};

struct ShapeInfo {
  std::vector<Shape> shape;  // per entry
  std::vector<char> known;
  std::vector<int32_t> dtype;  // per entry; -1 unknown
};

class Symbol {
 public:
  std::vector<NodeEntry> outputs;

  static Symbol variable(const std::string &name);
  // `inputs` are positional, or keyed by input name when `keys` is given.
  // Missing trailing inputs become variables named <name>_<input>.
  static Symbol create(const OpDef &op, const std::string &name, const StrPairs &params,
                       const std::vector<const Symbol *> &inputs,
                       const std::vector<std::string> &keys);
  static Symbol group(const std::vector<const Symbol *> &parts);

  Symbol output(int index) const;
  // Replaces variables by name with the given single-output symbols (a copy).
  Symbol compose(const std::vector<std::pair<std::string, const Symbol *>> &replace) const;

  IndexedGraph index() const;
  std::vector<std::string> list_arguments() const;
  std::vector<std::string> list_outputs() const;
  std::vector<std::string> list_auxiliary_states() const;

  // Attributes of the head node (a symbol with one output node).
  void set_attr(const std::string &key, const std::string &value);
  bool get_attr(const std::string &key, std::string *value) const;
  // Every node's attributes as "node$key" -> value.
  std::vector<std::pair<std::string, std::string>> list_attrs() const;

  std::string to_json() const;
  static Symbol from_json(const std::string &text, const std::string &what);

 private:
  Node *single_head(const char *what) const;
};

// Partial inference from known argument shapes/dtypes (by argument or
// auxiliary-state name). Sweeps forward and backward until nothing changes.
// Inconsistent shapes throw naming the node; unknown names throw.
ShapeInfo infer(const IndexedGraph &g, const std::map<std::string, Shape> &shapes,
                const std::map<std::string, int32_t> &dtypes);

// Attribute scope (per thread): attributes given to nodes created inside it.
void attr_scope_push(const StrPairs &attrs);
void attr_scope_pop();

}  // namespace loom
