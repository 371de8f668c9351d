// ABI entry points for symbols and executors.
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "c_api/c_api_internal.h"
#include "common/atomic_file.h"
#include "common/json.h"
#include "imperative/cached_op.h"
#include "imperative/trace.h"
#include "symbol/executor.h"
#include "symbol/viz.h"
#include "io/onnx.h"
#include "symbol/fold.h"
#include "io/summary.h"

struct loom_symbol_s {
  loom::Symbol sym;
};
struct loom_executor_s {
  std::shared_ptr<loom::Executor> exec;
};
struct loom_cached_op_s {
  std::shared_ptr<loom::CachedOp> op;
};

namespace {

// Symbols share nodes; attribute edits and graph walks are serialised.
std::mutex &graph_mutex() {
  static auto *m = new std::mutex;
  return *m;
}

thread_local std::string t_symbol_text;

HandleTable<loom_symbol_s> &symbols() {
  static auto *t = new HandleTable<loom_symbol_s>;
  return *t;
}
HandleTable<loom_executor_s> &executors() {
  static auto *t = new HandleTable<loom_executor_s>;
  return *t;
}

loom::Symbol get_symbol(loom_symbol h, const char *arg) {
  return symbols().with(h, "symbol", arg, [](loom_symbol_s &s) { return s.sym; });
}
std::shared_ptr<loom::Executor> get_exec(loom_executor h) {
  return executors().with(h, "executor", "executor", [](loom_executor_s &s) { return s.exec; });
}
HandleTable<loom_cached_op_s> &cached_ops() {
  static auto *t = new HandleTable<loom_cached_op_s>;
  return *t;
}
std::shared_ptr<loom::CachedOp> get_cached_op(loom_cached_op h) {
  return cached_ops().with(h, "cached op", "op", [](loom_cached_op_s &s) { return s.op; });
}
loom_symbol new_symbol(loom::Symbol s) { return symbols().add(new loom_symbol_s{std::move(s)}); }

std::string str_arg(const char *s, const char *what) {
  LOOM_CHECK(s, LOOM_ERR_INVALID_ARGUMENT, "argument '", what, "' is NULL");
  return s;
}

std::map<std::string, loom::Shape> shape_map(int32_t count, const char *const *names,
                                             const int32_t *ndims, const int64_t *dims) {
  std::map<std::string, loom::Shape> r;
  LOOM_CHECK(count >= 0, LOOM_ERR_INVALID_ARGUMENT, "shape count ", count, " is negative");
  if (count == 0) return r;
  LOOM_CHECK(names && ndims, LOOM_ERR_INVALID_ARGUMENT, "shape names or ndims is NULL");
  size_t at = 0;
  for (int32_t i = 0; i < count; ++i) {
    std::string n = str_arg(names[i], "names[i]");
    LOOM_CHECK(ndims[i] >= 0 && ndims[i] <= LOOM_MAX_NDIM, LOOM_ERR_SHAPE, "shape of '", n,
               "': ndim ", ndims[i], " is out of range [0, ", LOOM_MAX_NDIM, "]");
    LOOM_CHECK(dims || ndims[i] == 0, LOOM_ERR_INVALID_ARGUMENT, "dims is NULL");
    loom::Shape s = loom::Shape::from(dims + at, ndims[i]);
    for (int k = 0; k < s.ndim; ++k)
      LOOM_CHECK(s.d[k] >= 0, LOOM_ERR_SHAPE, "shape of '", n, "' ", s.str(),
                 " has a negative extent");
    at += static_cast<size_t>(ndims[i]);
    LOOM_CHECK(r.emplace(n, s).second, LOOM_ERR_INVALID_ARGUMENT, "shape of '", n,
               "' given twice");
  }
  return r;
}

// Known dtypes by name (-1 entries, or a NULL array, leave a dtype unknown).
std::map<std::string, int32_t> dtype_map(int32_t count, const char *const *names,
                                         const int32_t *dtypes) {
  std::map<std::string, int32_t> r;
  if (!dtypes) return r;
  for (int32_t i = 0; i < count; ++i)
    if (dtypes[i] >= 0) {
      LOOM_CHECK(loom::dtype_known(dtypes[i]), LOOM_ERR_DTYPE, "unknown dtype code ", dtypes[i],
                 " for '", names[i], "'");
      r[names[i]] = dtypes[i];
    }
  return r;
}

std::map<std::string, int32_t> req_map(int32_t n, const char *const *names, const int32_t *reqs) {
  std::map<std::string, int32_t> r;
  LOOM_CHECK(n >= 0 && (n == 0 || (names && reqs)), LOOM_ERR_INVALID_ARGUMENT,
             "grad_req names or values are NULL");
  for (int32_t i = 0; i < n; ++i) r[str_arg(names[i], "req_names[i]")] = reqs[i];
  return r;
}

std::string names_json(const std::vector<std::string> &v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + loom::json::quote(v[i]);
  return s + "]";
}

void write_atomic(const std::string &path, const std::string &text) {
  loom::write_file_atomic(path, text.data(), text.size(), "symbol save");
}

std::map<std::string, loom::NDArray> named_arrays(int32_t n, const char *const *names,
                                                 const loom_ndarray *arrays, const char *what) {
  LOOM_CHECK(n >= 0 && (n == 0 || (names && arrays)), LOOM_ERR_INVALID_ARGUMENT, what,
             ": param_names or params is NULL");
  std::map<std::string, loom::NDArray> ps;
  for (int32_t i = 0; i < n; ++i) {
    std::string arg = "params[" + std::to_string(i) + "]";
    std::string nm = str_arg(names[i], "param_names[i]");
    LOOM_CHECK(ps.emplace(nm, get_array(arrays[i], arg.c_str())).second, LOOM_ERR_INVALID_ARGUMENT,
               what, ": parameter '", nm, "' given twice");
  }
  return ps;
}

}  // namespace

void summary_add_graph(loom::SummaryWriter &w, loom_symbol symbol) {
  loom::Symbol s = get_symbol(symbol, "symbol");
  std::lock_guard<std::mutex> lk(graph_mutex());
  w.add_graph(s);
}

extern "C" {

loom_status loom_symbol_variable(loom_symbol *out, const char *name) {
  API_BEGIN
  need(out, "out");
  std::string n = str_arg(name, "name");
  std::lock_guard<std::mutex> lk(graph_mutex());
  *out = new_symbol(loom::Symbol::variable(n));
  API_END
}

loom_status loom_symbol_create(loom_symbol *out, loom_op op, const char *name, int32_t num_inputs,
                               const loom_symbol *inputs, const char *const *input_names,
                               int32_t num_params, const char *const *keys,
                               const char *const *values) {
  API_BEGIN
  need(out, "out");
  const loom::OpDef &def = get_op(op);
  LOOM_CHECK(num_inputs >= 0 && (num_inputs == 0 || inputs), LOOM_ERR_INVALID_ARGUMENT,
             def.name, ": inputs is NULL");
  LOOM_CHECK(num_params >= 0 && (num_params == 0 || (keys && values)), LOOM_ERR_INVALID_ARGUMENT,
             def.name, ": parameter keys or values are NULL");
  std::vector<loom::Symbol> ins;
  std::vector<std::string> in_names;
  for (int32_t i = 0; i < num_inputs; ++i) {
    std::string arg = def.name + " input " + std::to_string(i);
    ins.push_back(get_symbol(inputs[i], arg.c_str()));
    if (input_names) in_names.push_back(str_arg(input_names[i], "input_names[i]"));
  }
  loom::StrPairs params;
  for (int32_t i = 0; i < num_params; ++i)
    params.emplace_back(str_arg(keys[i], "keys[i]"), str_arg(values[i], "values[i]"));
  std::vector<const loom::Symbol *> ptrs;
  for (auto &s : ins) ptrs.push_back(&s);
  std::lock_guard<std::mutex> lk(graph_mutex());
  *out = new_symbol(loom::Symbol::create(def, name ? name : "", params, ptrs, in_names));
  API_END
}

loom_status loom_symbol_group(loom_symbol *out, const loom_symbol *syms, int32_t count) {
  API_BEGIN
  need(out, "out");
  LOOM_CHECK(count > 0 && syms, LOOM_ERR_INVALID_ARGUMENT, "symbol_group: no symbols given");
  std::vector<loom::Symbol> parts;
  for (int32_t i = 0; i < count; ++i) parts.push_back(get_symbol(syms[i], "symbols[i]"));
  std::vector<const loom::Symbol *> ptrs;
  for (auto &s : parts) ptrs.push_back(&s);
  *out = new_symbol(loom::Symbol::group(ptrs));
  API_END
}

loom_status loom_symbol_num_outputs(int32_t *out, loom_symbol symbol) {
  API_BEGIN
  need(out, "out");
  *out = static_cast<int32_t>(get_symbol(symbol, "symbol").outputs.size());
  API_END
}

loom_status loom_symbol_get_output(loom_symbol *out, loom_symbol symbol, int32_t index) {
  API_BEGIN
  need(out, "out");
  *out = new_symbol(get_symbol(symbol, "symbol").output(index));
  API_END
}

loom_status loom_symbol_compose(loom_symbol *out, loom_symbol symbol, int32_t count,
                                const char *const *names, const loom_symbol *replacements) {
  API_BEGIN
  need(out, "out");
  loom::Symbol s = get_symbol(symbol, "symbol");
  LOOM_CHECK(count >= 0 && (count == 0 || (names && replacements)), LOOM_ERR_INVALID_ARGUMENT,
             "symbol_compose: names or replacements is NULL");
  std::vector<loom::Symbol> reps;
  for (int32_t i = 0; i < count; ++i) reps.push_back(get_symbol(replacements[i], "replacements[i]"));
  std::vector<std::pair<std::string, const loom::Symbol *>> r;
  for (int32_t i = 0; i < count; ++i) r.emplace_back(str_arg(names[i], "names[i]"), &reps[i]);
  std::lock_guard<std::mutex> lk(graph_mutex());
  *out = new_symbol(s.compose(r));
  API_END
}

loom_status loom_symbol_list(const char **out_json, loom_symbol symbol, int32_t kind) {
  API_BEGIN
  need(out_json, "out_json");
  loom::Symbol s = get_symbol(symbol, "symbol");
  std::lock_guard<std::mutex> lk(graph_mutex());
  switch (kind) {
    case LOOM_LIST_ARGUMENTS: t_symbol_text = names_json(s.list_arguments()); break;
    case LOOM_LIST_OUTPUTS: t_symbol_text = names_json(s.list_outputs()); break;
    case LOOM_LIST_AUXILIARY_STATES: t_symbol_text = names_json(s.list_auxiliary_states()); break;
    case LOOM_LIST_ATTRIBUTES: {
      std::string o = "{";
      bool first = true;
      for (auto &kv : s.list_attrs()) {
        o += (first ? "" : ", ") + loom::json::quote(kv.first) + ": " + loom::json::quote(kv.second);
        first = false;
      }
      t_symbol_text = o + "}";
      break;
    }
    default:
      fail(LOOM_ERR_INVALID_ARGUMENT, "symbol_list: kind ", kind,
           " is not one of LOOM_LIST_ARGUMENTS/OUTPUTS/AUXILIARY_STATES/ATTRIBUTES (0-3)");
  }
  *out_json = t_symbol_text.c_str();
  API_END
}

loom_status loom_symbol_set_attr(loom_symbol symbol, const char *key, const char *value) {
  API_BEGIN
  loom::Symbol s = get_symbol(symbol, "symbol");
  std::string k = str_arg(key, "key"), v = str_arg(value, "value");
  std::lock_guard<std::mutex> lk(graph_mutex());
  s.set_attr(k, v);
  API_END
}

loom_status loom_symbol_get_attr(const char **out_value, int32_t *out_found, loom_symbol symbol,
                                 const char *key) {
  API_BEGIN
  need(out_value, "out_value");
  need(out_found, "out_found");
  loom::Symbol s = get_symbol(symbol, "symbol");
  std::string k = str_arg(key, "key");
  std::lock_guard<std::mutex> lk(graph_mutex());
  std::string v;
  bool found = s.get_attr(k, &v);
  t_symbol_text = v;
  *out_value = t_symbol_text.c_str();
  *out_found = found ? 1 : 0;
  API_END
}

loom_status loom_symbol_attr_scope_push(int32_t count, const char *const *keys,
                                        const char *const *values) {
  API_BEGIN
  LOOM_CHECK(count >= 0 && (count == 0 || (keys && values)), LOOM_ERR_INVALID_ARGUMENT,
             "attr_scope_push: keys or values is NULL");
  loom::StrPairs a;
  for (int32_t i = 0; i < count; ++i) a.emplace_back(str_arg(keys[i], "keys[i]"), str_arg(values[i], "values[i]"));
  loom::attr_scope_push(a);
  API_END
}

loom_status loom_symbol_attr_scope_pop(void) {
  API_BEGIN
  loom::attr_scope_pop();
  API_END
}

loom_status loom_symbol_to_json(const char **out_json, loom_symbol symbol) {
  API_BEGIN
  need(out_json, "out_json");
  loom::Symbol s = get_symbol(symbol, "symbol");
  std::lock_guard<std::mutex> lk(graph_mutex());
  t_symbol_text = s.to_json();
  *out_json = t_symbol_text.c_str();
  API_END
}

loom_status loom_symbol_from_json(loom_symbol *out, const char *json) {
  API_BEGIN
  need(out, "out");
  *out = new_symbol(loom::Symbol::from_json(str_arg(json, "json"), "symbol JSON"));
  API_END
}

loom_status loom_symbol_save(loom_symbol symbol, const char *path) {
  API_BEGIN
  loom::Symbol s = get_symbol(symbol, "symbol");
  std::string p = str_arg(path, "path");
  std::string text;
  {
    std::lock_guard<std::mutex> lk(graph_mutex());
    text = s.to_json();
  }
  write_atomic(p, text);
  API_END
}

loom_status loom_symbol_load(loom_symbol *out, const char *path) {
  API_BEGIN
  need(out, "out");
  std::string p = str_arg(path, "path");
  std::ifstream f(p, std::ios::binary);
  LOOM_CHECK(f, LOOM_ERR_IO, "symbol load: cannot open '", p, "'");
  std::stringstream ss;
  ss << f.rdbuf();
  *out = new_symbol(loom::Symbol::from_json(ss.str(), "'" + p + "'"));
  API_END
}

loom_status loom_symbol_infer(const char **out_json, loom_symbol symbol, int32_t count,
                              const char *const *names, const int32_t *ndims, const int64_t *dims,
                              const int32_t *dtypes) {
  API_BEGIN
  need(out_json, "out_json");
  loom::Symbol s = get_symbol(symbol, "symbol");
  auto shapes = shape_map(count, names, ndims, dims);
  auto dt = dtype_map(count, names, dtypes);
  std::lock_guard<std::mutex> lk(graph_mutex());
  loom::IndexedGraph g = s.index();
  loom::ShapeInfo info = loom::infer(g, shapes, dt);
  bool complete = true;
  auto shape_of = [&](int e) {
    if (!info.known[e]) {
      complete = false;
      return std::string("null");
    }
    std::string o = "[";
    for (int k = 0; k < info.shape[e].ndim; ++k) o += (k ? ", " : "") + std::to_string(info.shape[e].d[k]);
    return o + "]";
  };
  auto list = [&](const std::vector<int> &entries, bool want_dtype) {
    std::string o = "[";
    for (size_t i = 0; i < entries.size(); ++i)
      o += (i ? ", " : "") + (want_dtype ? std::to_string(info.dtype[entries[i]]) : shape_of(entries[i]));
    return o + "]";
  };
  std::vector<int> args, aux;
  for (int a : g.args) args.push_back(g.entry_base[a]);
  for (int a : g.aux) aux.push_back(g.entry_base[a]);
  std::string o = "{\"arg_shapes\": " + list(args, false) + ", \"out_shapes\": " +
                  list(g.heads, false) + ", \"aux_shapes\": " + list(aux, false) +
                  ", \"arg_dtypes\": " + list(args, true) + ", \"out_dtypes\": " +
                  list(g.heads, true) + ", \"aux_dtypes\": " + list(aux, true);
  o += std::string(", \"complete\": ") + (complete ? "true" : "false") + "}";
  t_symbol_text = o;
  *out_json = t_symbol_text.c_str();
  API_END
}

loom_status loom_symbol_to_dot(const char **out_text, loom_symbol symbol, int32_t count,
                               const char *const *names, const int32_t *ndims, const int64_t *dims,
                               const char *title, int32_t hide_weights) {
  API_BEGIN
  need(out_text, "out_text");
  loom::Symbol s = get_symbol(symbol, "symbol");
  auto shapes = shape_map(count, names, ndims, dims);
  std::lock_guard<std::mutex> lk(graph_mutex());
  t_symbol_text = loom::to_dot(s, shapes, title ? title : "plot", hide_weights != 0);
  *out_text = t_symbol_text.c_str();
  API_END
}

loom_status loom_symbol_summary(const char **out_text, loom_symbol symbol, int32_t count,
                                const char *const *names, const int32_t *ndims, const int64_t *dims,
                                int32_t line_length) {
  API_BEGIN
  need(out_text, "out_text");
  loom::Symbol s = get_symbol(symbol, "symbol");
  auto shapes = shape_map(count, names, ndims, dims);
  std::lock_guard<std::mutex> lk(graph_mutex());
  t_symbol_text = loom::summary(s, shapes, line_length);
  *out_text = t_symbol_text.c_str();
  API_END
}

loom_status loom_onnx_available(int32_t *out) {
  API_BEGIN
  need(out, "out");
  *out = loom::onnx_available() ? 1 : 0;
  API_END
}

loom_status loom_symbol_fold_batchnorm(loom_symbol *out_symbol, loom_ndarray_list *out_list,
                                       int32_t *out_folded, loom_symbol symbol, int32_t num_params,
                                       const char *const *param_names, const loom_ndarray *params) {
  API_BEGIN
  need(out_symbol, "out_symbol");
  need(out_list, "out_list");
  loom::Symbol s = get_symbol(symbol, "symbol");
  auto ps = named_arrays(num_params, param_names, params, "fold_batchnorm");
  loom::FoldResult r;
  {
    std::lock_guard<std::mutex> lk(graph_mutex());
    r = loom::fold_batchnorm(s, ps);
  }
  *out_list = lists().add(new loom_ndarray_list_s{std::move(r.params)});
  *out_symbol = new_symbol(std::move(r.sym));
  if (out_folded) *out_folded = r.folded;
  API_END
}

loom_status loom_onnx_export(const char *path, loom_symbol symbol, int32_t num_params,
                             const char *const *param_names, const loom_ndarray *params,
                             int32_t count, const char *const *names, const int32_t *ndims,
                             const int64_t *dims, int32_t opset) {
  API_BEGIN
  std::string p = str_arg(path, "path");
  loom::Symbol s = get_symbol(symbol, "symbol");
  auto ps = named_arrays(num_params, param_names, params, "ONNX export");
  auto shapes = shape_map(count, names, ndims, dims);
  std::lock_guard<std::mutex> lk(graph_mutex());
  loom::onnx_export(p, s, ps, shapes, opset == 0 ? loom::kOnnxMinOpset : opset);
  API_END
}

loom_status loom_onnx_import(loom_symbol *out_symbol, loom_ndarray_list *out_list,
                             const char **out_inputs, const char *path) {
  API_BEGIN
  need(out_symbol, "out_symbol");
  need(out_list, "out_list");
  std::string p = str_arg(path, "path");
  loom::OnnxModel m = loom::onnx_import(p);
  std::string js = "[";
  for (size_t i = 0; i < m.inputs.size(); ++i) {
    js += (i ? ", " : "") + std::string("{\"name\": ") + loom::json::quote(m.inputs[i].first) +
          ", \"shape\": [";
    const loom::Shape &sh = m.inputs[i].second;
    for (int k = 0; k < sh.ndim; ++k) js += (k ? ", " : "") + std::to_string(sh.d[k]);
    js += "]}";
  }
  js += "]";
  auto *l = new loom_ndarray_list_s{std::move(m.params)};
  loom_ndarray_list lh = lists().add(l);
  *out_symbol = new_symbol(std::move(m.sym));
  *out_list = lh;
  t_symbol_text = std::move(js);
  if (out_inputs) *out_inputs = t_symbol_text.c_str();
  API_END
}

loom_status loom_symbol_plan_memory(loom_memory_plan *out, loom_symbol symbol, int32_t count,
                                    const char *const *names, const int32_t *ndims,
                                    const int64_t *dims, int32_t num_reqs,
                                    const char *const *req_names, const int32_t *reqs,
                                    int32_t default_req, int32_t for_training) {
  API_BEGIN
  need(out, "out");
  loom::Symbol s = get_symbol(symbol, "symbol");
  auto shapes = shape_map(count, names, ndims, dims);
  auto rq = req_map(num_reqs, req_names, reqs);
  loom::MemoryPlan m;
  {
    std::lock_guard<std::mutex> lk(graph_mutex());
    m = loom::Executor::plan_only(s, shapes, rq, default_req, for_training != 0);
  }
  *out = loom_memory_plan{m.planned_bytes, m.unplanned_bytes, m.allocated_bytes, m.argument_bytes,
                          m.num_values,    m.num_buffers,     m.num_steps,       m.num_inplace};
  API_END
}

void loom_symbol_free(loom_symbol symbol) {
  // Node destruction touches shared attribute maps only through refcounts.
  std::lock_guard<std::mutex> lk(graph_mutex());
  symbols().remove(symbol);
}

loom_status loom_executor_bind(loom_executor *out, loom_symbol symbol, int32_t dev_type,
                               int32_t dev_id, int32_t num_args, const loom_ndarray *args,
                               const loom_ndarray *arg_grads, const int32_t *grad_reqs,
                               int32_t num_aux, const loom_ndarray *aux_states) {
  API_BEGIN
  need(out, "out");
  loom::Symbol s = get_symbol(symbol, "symbol");
  LOOM_CHECK(num_args >= 0 && (num_args == 0 || args), LOOM_ERR_INVALID_ARGUMENT,
             "bind: args is NULL");
  LOOM_CHECK(num_aux >= 0 && (num_aux == 0 || aux_states), LOOM_ERR_INVALID_ARGUMENT,
             "bind: aux_states is NULL");
  loom::BindSpec spec;
  spec.ctx = loom::Context{dev_type, dev_id};
  loom::check_context(spec.ctx);
  for (int32_t i = 0; i < num_args; ++i) {
    std::string a = "args[" + std::to_string(i) + "]";
    spec.args.push_back(get_array(args[i], a.c_str()));
    int32_t q = grad_reqs ? grad_reqs[i] : 0;
    spec.grad_req.push_back(q);
    if (q != 0) {
      LOOM_CHECK(arg_grads, LOOM_ERR_INVALID_ARGUMENT, "bind: arg_grads is NULL but grad_reqs[",
                 i, "] is ", q);
      std::string g = "arg_grads[" + std::to_string(i) + "]";
      spec.grads.push_back(get_array(arg_grads[i], g.c_str()));
    } else {
      spec.grads.emplace_back();
    }
  }
  for (int32_t i = 0; i < num_aux; ++i) {
    std::string a = "aux_states[" + std::to_string(i) + "]";
    spec.aux.push_back(get_array(aux_states[i], a.c_str()));
  }
  std::shared_ptr<loom::Executor> ex;
  {
    std::lock_guard<std::mutex> lk(graph_mutex());
    ex = loom::Executor::bind(s, std::move(spec));
  }
  *out = executors().add(new loom_executor_s{ex});
  API_END
}

loom_status loom_executor_simple_bind(loom_executor *out, loom_symbol symbol, int32_t dev_type,
                                      int32_t dev_id, int32_t count, const char *const *names,
                                      const int32_t *ndims, const int64_t *dims,
                                      const int32_t *dtypes, int32_t num_reqs,
                                      const char *const *req_names, const int32_t *reqs,
                                      int32_t default_req) {
  API_BEGIN
  need(out, "out");
  loom::Symbol s = get_symbol(symbol, "symbol");
  auto shapes = shape_map(count, names, ndims, dims);
  auto dt = dtype_map(count, names, dtypes);
  auto rq = req_map(num_reqs, req_names, reqs);
  std::shared_ptr<loom::Executor> ex;
  {
    std::lock_guard<std::mutex> lk(graph_mutex());
    ex = loom::Executor::simple_bind(s, loom::Context{dev_type, dev_id}, shapes, dt, rq,
                                     default_req);
  }
  *out = executors().add(new loom_executor_s{ex});
  API_END
}

loom_status loom_executor_reshape(loom_executor *out, loom_executor executor, int32_t count,
                                  const char *const *names, const int32_t *ndims,
                                  const int64_t *dims) {
  API_BEGIN
  need(out, "out");
  auto ex = get_exec(executor);
  auto shapes = shape_map(count, names, ndims, dims);
  std::shared_ptr<loom::Executor> r;
  {
    std::lock_guard<std::mutex> lk(graph_mutex());
    r = ex->reshape(shapes);
  }
  *out = executors().add(new loom_executor_s{r});
  API_END
}

loom_status loom_executor_forward(loom_executor executor, int32_t is_train) {
  API_BEGIN
  get_exec(executor)->forward(is_train != 0);
  API_END
}

loom_status loom_executor_backward(loom_executor executor, int32_t count,
                                   const loom_ndarray *head_grads) {
  API_BEGIN
  auto ex = get_exec(executor);
  LOOM_CHECK(count >= 0 && (count == 0 || head_grads), LOOM_ERR_INVALID_ARGUMENT,
             "backward: head_grads is NULL");
  std::vector<loom::NDArray> hg;
  for (int32_t i = 0; i < count; ++i) {
    if (!head_grads[i]) {
      hg.emplace_back();
      continue;
    }
    std::string a = "head_grads[" + std::to_string(i) + "]";
    hg.push_back(get_array(head_grads[i], a.c_str()));
  }
  ex->backward(hg);
  API_END
}

extern "C++" {  // a C++ helper inside the extern "C" block
namespace {
const std::vector<loom::NDArray> &exec_arrays(const loom::Executor &ex, int32_t kind) {
  switch (kind) {
    case LOOM_EXEC_ARGUMENT: return ex.spec().args;
    case LOOM_EXEC_GRADIENT: return ex.spec().grads;
    case LOOM_EXEC_AUXILIARY_STATE: return ex.spec().aux;
    case LOOM_EXEC_OUTPUT: return ex.outputs();
    default:
      fail(LOOM_ERR_INVALID_ARGUMENT, "executor: kind ", kind,
           " is not one of LOOM_EXEC_ARGUMENT/GRADIENT/AUXILIARY_STATE/OUTPUT (0-3)");
  }
}
}  // namespace
}  // extern "C++"

loom_status loom_executor_count(int32_t *out, loom_executor executor, int32_t kind) {
  API_BEGIN
  need(out, "out");
  auto ex = get_exec(executor);
  *out = static_cast<int32_t>(exec_arrays(*ex, kind).size());
  API_END
}

loom_status loom_executor_get(loom_ndarray *out, loom_executor executor, int32_t kind,
                              int32_t index) {
  API_BEGIN
  need(out, "out");
  auto ex = get_exec(executor);
  const auto &v = exec_arrays(*ex, kind);
  LOOM_CHECK(index >= 0 && index < static_cast<int32_t>(v.size()), LOOM_ERR_INVALID_ARGUMENT,
             "executor_get: index ", index, " is out of range [0, ", v.size(), ")");
  *out = v[index].chunk() ? new_handle(v[index]) : nullptr;
  API_END
}

loom_status loom_executor_memory(loom_memory_plan *out, loom_executor executor) {
  API_BEGIN
  need(out, "out");
  const loom::MemoryPlan &m = get_exec(executor)->memory();
  *out = loom_memory_plan{m.planned_bytes, m.unplanned_bytes, m.allocated_bytes, m.argument_bytes,
                          m.num_values,    m.num_buffers,     m.num_steps,       m.num_inplace};
  API_END
}

void loom_executor_free(loom_executor executor) { executors().remove(executor); }

}  // extern "C"

loom_status loom_trace_begin(void) {
  API_BEGIN
  loom::trace::begin();
  API_END
}

loom_status loom_trace_input(loom_ndarray array, const char *name) {
  API_BEGIN
  std::string n = str_arg(name, "name");
  loom::trace::input(get_array(array, "array"), n);
  API_END
}

loom_status loom_trace_scope_push(const char *prefix) {
  API_BEGIN
  loom::trace::push_scope(str_arg(prefix, "prefix"));
  API_END
}

loom_status loom_trace_scope_pop(void) {
  API_BEGIN
  loom::trace::pop_scope();
  API_END
}

loom_status loom_trace_active(int32_t *out) {
  API_BEGIN
  need(out, "out");
  *out = loom::trace::open() ? 1 : 0;
  API_END
}

loom_status loom_trace_pause(int32_t *out_prev, int32_t paused) {
  API_BEGIN
  LOOM_CHECK(loom::trace::open(), LOOM_ERR_INVALID_ARGUMENT,
             "trace_pause: no trace is open on this thread");
  bool prev = loom::trace::set_paused(paused != 0);
  if (out_prev) *out_prev = prev ? 1 : 0;
  API_END
}

loom_status loom_trace_end(loom_symbol *out, const loom_ndarray *heads, int32_t count) {
  API_BEGIN
  need(out, "out");
  LOOM_CHECK(count >= 0 && (heads || count == 0), LOOM_ERR_INVALID_ARGUMENT,
             "trace_end: heads is NULL or count is negative");
  loom::ArrayList hs(count);
  for (int32_t i = 0; i < count; ++i) hs[i] = get_array(heads[i], "heads");
  loom::Symbol sym = loom::trace::end(hs);
  *out = new_symbol(std::move(sym));
  API_END
}

loom_status loom_trace_abort(void) {
  API_BEGIN
  loom::trace::abort();
  API_END
}

loom_status loom_cached_op_create(loom_cached_op *out, loom_symbol symbol) {
  API_BEGIN
  need(out, "out");
  loom::Symbol s = get_symbol(symbol, "symbol");
  std::shared_ptr<loom::CachedOp> op;
  {
    std::lock_guard<std::mutex> lk(graph_mutex());
    op = std::make_shared<loom::CachedOp>(s.compose({}));  // its own nodes
  }
  *out = cached_ops().add(new loom_cached_op_s{std::move(op)});
  API_END
}

loom_status loom_cached_op_invoke(loom_cached_op op, int32_t num_inputs, const loom_ndarray *inputs,
                                  int32_t num_outputs, loom_ndarray *outputs) {
  API_BEGIN
  auto c = get_cached_op(op);
  LOOM_CHECK(num_inputs >= 0 && (inputs || num_inputs == 0), LOOM_ERR_INVALID_ARGUMENT,
             "cached op: inputs is NULL or num_inputs is negative");
  LOOM_CHECK(num_outputs >= 0 && (outputs || num_outputs == 0), LOOM_ERR_INVALID_ARGUMENT,
             "cached op: outputs is NULL or num_outputs is negative");
  LOOM_CHECK(static_cast<size_t>(num_outputs) == c->num_outputs(), LOOM_ERR_INVALID_ARGUMENT,
             "cached op: the graph has ", c->num_outputs(), " outputs, but ", num_outputs,
             " output slots were given");
  loom::ArrayList ins(num_inputs);
  for (int32_t i = 0; i < num_inputs; ++i) {
    std::string arg = "inputs[" + std::to_string(i) + "]";
    ins[i] = get_array(inputs[i], arg.c_str());
  }
  loom::ArrayList outs;
  c->invoke(ins, outs);
  for (int32_t j = 0; j < num_outputs; ++j) outputs[j] = new_handle(outs[j]);
  API_END
}

loom_status loom_cached_op_get_counts(int32_t *out_inputs, int32_t *out_outputs, loom_cached_op op) {
  API_BEGIN
  auto c = get_cached_op(op);
  if (out_inputs) *out_inputs = static_cast<int32_t>(c->num_inputs());
  if (out_outputs) *out_outputs = static_cast<int32_t>(c->num_outputs());
  API_END
}

loom_status loom_cached_op_num_executors(int32_t *out, loom_cached_op op) {
  API_BEGIN
  need(out, "out");
  *out = static_cast<int32_t>(get_cached_op(op)->num_executors());
  API_END
}

void loom_cached_op_free(loom_cached_op op) { cached_ops().remove(op); }
