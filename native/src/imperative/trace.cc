#include "imperative/trace.h"

#include <cctype>
#include <map>
#include <memory>
#include <set>
#include <tuple>
#include <vector>

namespace loom {
namespace trace {
namespace {

// An array is found by the memory it reads and how it reads it.
using Key = std::tuple<const void *, size_t, std::vector<int64_t>, int32_t>;

Key key_of(const NDArray &a) {
  std::vector<int64_t> dims(a.shape().d, a.shape().d + a.shape().ndim);
  return Key{a.chunk().get(), a.offset(), std::move(dims), a.dtype()};
}

struct State {
  std::map<Key, NodeEntry> entries;
  std::set<std::string> names;             // every node name used so far
  std::map<std::string, int> counts;       // automatic names: prefix+op -> next number
  std::vector<std::string> scopes;
  std::vector<NDArray> keep;  // holds every traced array, so no chunk is reused mid-trace
};

thread_local std::unique_ptr<State> t_state;
thread_local bool t_paused = false;

State &state(const char *what) {
  LOOM_CHECK(t_state, LOOM_ERR_INVALID_ARGUMENT, "trace: ", what,
             " needs an open trace on this thread (trace_begin)");
  return *t_state;
}

std::string describe(const NDArray &a) {
  return a.shape().str() + " " + dtype_name(a.dtype());
}
}  // namespace

bool active() { return t_state != nullptr && !t_paused; }
bool open() { return t_state != nullptr; }

bool set_paused(bool paused) {
  bool prev = t_paused;
  t_paused = paused;
  return prev;
}

void begin() {
  LOOM_CHECK(!t_state, LOOM_ERR_INVALID_ARGUMENT,
             "trace_begin: a trace is already open on this thread; end or abort it first");
  t_state = std::make_unique<State>();
  t_paused = false;
}

void input(const NDArray &array, const std::string &name) {
  State &s = state("trace_input");
  LOOM_CHECK(!name.empty(), LOOM_ERR_INVALID_ARGUMENT, "trace_input: the name must not be empty");
  LOOM_CHECK(array.chunk(), LOOM_ERR_INVALID_ARGUMENT, "trace_input '", name,
             "': the array has no memory");
  LOOM_CHECK(s.names.insert(name).second, LOOM_ERR_INVALID_ARGUMENT, "trace_input: the name '",
             name, "' is already used in this trace");
  Key k = key_of(array);
  auto it = s.entries.find(k);
  LOOM_CHECK(it == s.entries.end(), LOOM_ERR_INVALID_ARGUMENT, "trace_input '", name,
             "': this array (", describe(array), ") is already in the trace as '",
             it == s.entries.end() ? std::string() : it->second.node->name,
             "'; pass each array once");
  auto n = std::make_shared<Node>();
  n->name = name;
  s.entries[k] = NodeEntry{n, 0};
  s.keep.push_back(array.detached());
}

void push_scope(const std::string &prefix) { state("trace_scope_push").scopes.push_back(prefix); }

void pop_scope() {
  State &s = state("trace_scope_pop");
  LOOM_CHECK(!s.scopes.empty(), LOOM_ERR_INVALID_ARGUMENT,
             "trace_scope_pop: no scope was pushed in this trace");
  s.scopes.pop_back();
}

void check(const OpDef &op, const ArrayList &inputs, const ArrayList &given_outputs) {
  State &s = *t_state;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const std::string &iname = op.variadic || i >= op.inputs.size() ? op.inputs[0] : op.inputs[i];
    LOOM_CHECK(s.entries.count(key_of(inputs[i])), LOOM_ERR_INVALID_ARGUMENT, "trace: ", op.name,
               " input ", i, " (", iname, ", ", describe(inputs[i]),
               ") is neither an input of the traced block nor computed inside it (an array captured "
               "from outside, or a view made without an op); make it a parameter or an input, or "
               "use the Reshape/slice ops inside the block");
  }
  for (size_t j = 0; j < given_outputs.size(); ++j)
    LOOM_CHECK(!given_outputs[j].chunk(), LOOM_ERR_INVALID_ARGUMENT, "trace: ", op.name,
               " writes into an existing array (output ", j,
               "); inside a traced block let every op allocate its outputs");
}

void record(const OpDef &op, const char *const *keys, const char *const *values,
            int32_t num_params, const ArrayList &inputs, const ArrayList &outputs) {
  State &s = *t_state;
  auto n = std::make_shared<Node>();
  n->op = &op;
  for (int32_t i = 0; i < num_params; ++i) n->params.emplace_back(keys[i], values[i]);
  n->parsed = std::make_shared<Params>(op, keys, values, num_params);
  std::string base = s.scopes.empty() ? std::string() : s.scopes.back();
  for (char c : op.name) base += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  do {
    n->name = base + std::to_string(s.counts[base]++);
  } while (!s.names.insert(n->name).second);
  for (const NDArray &a : inputs) n->inputs.push_back(s.entries.at(key_of(a)));
  for (size_t j = 0; j < outputs.size(); ++j) {
    // An output that reuses an input's memory in place keeps the newest producer.
    s.entries[key_of(outputs[j])] = NodeEntry{n, static_cast<int>(j)};
    s.keep.push_back(outputs[j].detached());
  }
}

Symbol end(const ArrayList &heads) {
  State &s = state("trace_end");
  LOOM_CHECK(!heads.empty(), LOOM_ERR_INVALID_ARGUMENT, "trace_end: no output arrays given");
  Symbol sym;
  for (size_t h = 0; h < heads.size(); ++h) {
    auto it = s.entries.find(key_of(heads[h]));
    LOOM_CHECK(it != s.entries.end(), LOOM_ERR_INVALID_ARGUMENT, "trace_end: output ", h, " (",
               describe(heads[h]),
               ") was not computed inside the trace; return arrays the block's ops produced");
    sym.outputs.push_back(it->second);
  }
  t_state.reset();
  t_paused = false;
  return sym;
}

void abort() {
  t_state.reset();
  t_paused = false;
}

}  // namespace trace
}  // namespace loom
