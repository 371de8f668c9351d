#include "op/registry.h"

#include "op/aliases.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>

namespace loom {

const char *param_type_name(ParamType t) {
  switch (t) {
    case ParamType::Int: return "int";
    case ParamType::Float: return "float";
    case ParamType::Bool: return "bool";
    case ParamType::Tuple: return "tuple";
    case ParamType::String: return "string";
    case ParamType::Enum: return "enum";
    case ParamType::DType: return "dtype";
    case ParamType::Context: return "context";
    case ParamType::Floats: return "floats";
  }
  return "?";
}

namespace {

std::string trim(const std::string &s) {
  size_t b = s.find_first_not_of(" \t\n");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\n");
  return s.substr(b, e - b + 1);
}

bool parse_int(const std::string &s, int64_t *out) {
  if (s.empty()) return false;
  errno = 0;
  char *end = nullptr;
  long long v = std::strtoll(s.c_str(), &end, 10);
  if (errno || *end) return false;
  *out = v;
  return true;
}

bool parse_float(const std::string &s, double *out) {
  if (s.empty()) return false;
  errno = 0;
  char *end = nullptr;
  *out = std::strtod(s.c_str(), &end);
  return !*end && !(errno == ERANGE && std::isinf(*out));
}

// The items of "(a, b)", "[a, b]" or "a, b" (trimmed; a trailing comma is
// allowed, an empty item elsewhere is not); `bad` is called on a malformed text.
template <typename Bad>
std::vector<std::string> tuple_items(const std::string &s, Bad &&bad) {
  std::string body = s;
  if (!body.empty() && (body.front() == '(' || body.front() == '[')) {
    char close = body.front() == '(' ? ')' : ']';
    if (body.back() != close) bad();
    body = body.substr(1, body.size() - 2);
  }
  std::vector<std::string> items;
  size_t start = 0;
  while (start <= body.size()) {
    size_t comma = body.find(',', start);
    std::string item = trim(body.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (!item.empty()) items.push_back(item);
    else if (comma != std::string::npos && comma + 1 < body.size()) bad();
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return items;
}

ParamValue parse_value(const OpDef &op, const ParamDef &def, const std::string &raw) {
  ParamValue v;
  std::string s = trim(raw);
  auto bad = [&](const std::string &expect) -> void {
    fail(LOOM_ERR_INVALID_ARGUMENT, op.name, ": parameter '", def.name, "' expects ", expect,
         ", got '", raw, "'");
  };
  if (s == "None" || s == "none") {
    if (!def.required && def.default_value == "None") return v;
    bad(std::string("a value of type ") + param_type_name(def.type) + " (it cannot be None)");
  }
  v.none = false;
  switch (def.type) {
    case ParamType::Int:
      if (!parse_int(s, &v.i)) bad("an integer");
      break;
    case ParamType::Float:
      if (!parse_float(s, &v.f)) bad("a number");
      break;
    case ParamType::Bool:
      if (s == "1" || s == "true" || s == "True") v.i = 1;
      else if (s == "0" || s == "false" || s == "False") v.i = 0;
      else bad("a boolean (true/false/1/0)");
      break;
    case ParamType::Tuple:
      for (const std::string &item : tuple_items(s, [&] { bad("a tuple of integers like (2,3)"); })) {
        int64_t x;
        if (item == "None") x = INT64_MIN;  // "no bound" inside slice tuples
        else if (!parse_int(item, &x)) bad("a tuple of integers like (2,3)");
        v.tuple.push_back(x);
      }
      if (v.tuple.size() > 64) bad("a tuple of at most 64 integers");
      break;
    case ParamType::Floats:
      for (const std::string &item : tuple_items(s, [&] { bad("a tuple of numbers like (0.1,0.2)"); })) {
        double x;
        if (!parse_float(item, &x)) bad("a tuple of numbers like (0.1,0.2)");
        v.floats.push_back(x);
      }
      break;
    case ParamType::String:
      v.s = raw;
      break;
    case ParamType::Enum: {
      if (std::find(def.choices.begin(), def.choices.end(), s) == def.choices.end()) {
        std::string list;
        for (auto &c : def.choices) list += (list.empty() ? "" : ", ") + c;
        bad("one of {" + list + "}");
      }
      v.s = s;
      break;
    }
    case ParamType::DType: {
      int32_t d = dtype_from_name(s);
      if (d < 0 || !dtype_computable(d))
        bad("a dtype (float32, float64, int32, int64, uint8)");
      v.i = d;
      break;
    }
    case ParamType::Context: {
      int64_t id = 0;
      std::string kind = s;
      size_t paren = s.find('(');
      if (paren != std::string::npos) {
        if (s.back() != ')' || !parse_int(s.substr(paren + 1, s.size() - paren - 2), &id))
          bad("a context like cpu(0)");
        kind = s.substr(0, paren);
      }
      if (kind == "cpu") v.ctx.dev_type = LOOM_DEVICE_CPU;
      else if (kind == "gpu") v.ctx.dev_type = LOOM_DEVICE_GPU;
      else bad("a context like cpu(0)");
      v.ctx.dev_id = static_cast<int32_t>(id);
      break;
    }
  }
  return v;
}

size_t edit_distance(const std::string &a, const std::string &b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string json_escape(const std::string &s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '"': o += "\\\""; break;
      case '\\': o += "\\\\"; break;
      case '\n': o += "\\n"; break;
      case '\t': o += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          o += buf;
        } else {
          o += c;
        }
    }
  }
  return o;
}

std::string json_list(const std::vector<std::string> &v) {
  std::string o = "[";
  for (size_t i = 0; i < v.size(); ++i) o += (i ? ", \"" : "\"") + json_escape(v[i]) + "\"";
  return o + "]";
}

}  // namespace

Params::Params(const OpDef &op, const char *const *keys, const char *const *values, int32_t n)
    : op_(&op), values_(op.params.size()) {
  std::vector<bool> seen(op.params.size(), false);
  for (int32_t k = 0; k < n; ++k) {
    LOOM_CHECK(keys && keys[k], LOOM_ERR_INVALID_ARGUMENT, op.name, ": parameter name ", k,
               " is NULL");
    LOOM_CHECK(values && values[k], LOOM_ERR_INVALID_ARGUMENT, op.name, ": value of parameter '",
               keys[k], "' is NULL");
    std::string key = keys[k];
    size_t idx = op.params.size();
    for (size_t j = 0; j < op.params.size(); ++j)
      if (op.params[j].name == key) idx = j;
    if (idx == op.params.size()) {
      std::string known;
      for (auto &p : op.params) known += (known.empty() ? "" : ", ") + p.name;
      fail(LOOM_ERR_INVALID_ARGUMENT, op.name, ": unknown parameter '", key, "'; ",
           known.empty() ? std::string("it takes no parameters")
                         : "known parameters: " + known);
    }
    LOOM_CHECK(!seen[idx], LOOM_ERR_INVALID_ARGUMENT, op.name, ": parameter '", key,
               "' given twice");
    seen[idx] = true;
    values_[idx] = parse_value(op, op.params[idx], values[k]);
  }
  for (size_t j = 0; j < op.params.size(); ++j) {
    if (seen[j]) continue;
    const ParamDef &d = op.params[j];
    LOOM_CHECK(!d.required, LOOM_ERR_INVALID_ARGUMENT, op.name, ": required parameter '", d.name,
               "' (", param_type_name(d.type), ") is missing");
    values_[j] = parse_value(op, d, d.default_value);
  }
}

const ParamValue &Params::get(const char *name) const {
  for (size_t j = 0; j < op_->params.size(); ++j)
    if (op_->params[j].name == name) return values_[j];
  fail(LOOM_ERR_INTERNAL, op_->name, ": kernel asked for undeclared parameter '", name, "'");
}

const std::string &OpDef::describe() const {
  std::call_once(describe_once_, [this] {
    std::string o = "{\"name\": \"" + json_escape(name) + "\", \"doc\": \"" + json_escape(doc) +
                    "\", \"inputs\": " + json_list(inputs) +
                    ", \"variadic\": " + (variadic ? "true" : "false") +
                    ", \"optional_inputs\": " + std::to_string(optional_inputs) +
                    ", \"outputs\": " + json_list(outputs) +
                    ", \"variable_outputs\": " + (num_outputs ? "true" : "false") + ", \"params\": [";
    for (size_t j = 0; j < params.size(); ++j) {
      const ParamDef &p = params[j];
      o += std::string(j ? ", " : "") + "{\"name\": \"" + json_escape(p.name) +
           "\", \"type\": \"" + param_type_name(p.type) + "\", \"default\": \"" +
           json_escape(p.default_value) + "\", \"required\": " + (p.required ? "true" : "false") +
           ", \"doc\": \"" + json_escape(p.doc) + "\", \"choices\": " + json_list(p.choices) + "}";
    }
    o += "], \"inplace\": [";
    for (size_t j = 0; j < inplace.size(); ++j)
      o += std::string(j ? ", " : "") + "[" + std::to_string(inplace[j].first) + ", " +
           std::to_string(inplace[j].second) + "]";
    o += std::string("], \"temp_space\": ") + (temp_bytes || backward_temp_bytes ? "true" : "false") +
         ", \"differentiable\": " + (backward ? "true" : "false") + "}";
    describe_ = o;
  });
  return describe_;
}

Registry &Registry::get() {
  static Registry *r = new Registry;
  return *r;
}

OpDef &Registry::add(const std::string &name) {
  auto &slot = ops_[name];
  if (!slot) {
    slot = std::make_unique<OpDef>();
    slot->name = name;
  }
  return *slot;
}

const OpDef *Registry::find(const std::string &name) const {
  auto it = ops_.find(name);
  if (it != ops_.end()) return it->second.get();
  std::call_once(aliases_once_, [this] {
    for (const auto &row : op_aliases()) {
      auto op = ops_.find(row.op);
      if (op == ops_.end()) continue;  // checked by the registry tests
      for (const auto &a : row.names)
        if (a != row.op && !ops_.count(a)) aliases_[a] = op->second.get();
      writer_names_[op->second.get()] = row.names.front();
    }
  });
  auto al = aliases_.find(name);
  return al == aliases_.end() ? nullptr : al->second;
}

const std::string &Registry::mxnet_name(const OpDef &op) const {
  find(op.name);  // fills the tables
  auto it = writer_names_.find(&op);
  return it == writer_names_.end() ? op.name : it->second;
}

const OpDef &Registry::lookup(const std::string &name) const {
  if (const OpDef *op = find(name)) return *op;
  std::vector<std::pair<size_t, std::string>> close;
  for (auto &kv : ops_) {
    size_t d = edit_distance(name, kv.first);
    if (d <= std::max<size_t>(2, name.size() / 3)) close.emplace_back(d, kv.first);
  }
  std::sort(close.begin(), close.end());
  std::string hint;
  for (size_t i = 0; i < close.size() && i < 3; ++i)
    hint += (i ? ", " : "; did you mean: ") + close[i].second;
  fail(LOOM_ERR_NOT_FOUND, "unknown operator '", name, "'", hint);
}

const std::vector<const OpDef *> &Registry::list() const {
  std::call_once(sorted_once_, [this] {
    for (auto &kv : ops_) sorted_.push_back(kv.second.get());
  });
  return sorted_;
}

bool Registry::contains(const void *p) const {
  // Built on first use, after every op is registered (as list() is).
  static const std::vector<const void *> by_address = [this] {
    std::vector<const void *> v(list().begin(), list().end());
    std::sort(v.begin(), v.end(), std::less<const void *>());
    return v;
  }();
  return std::binary_search(by_address.begin(), by_address.end(), p, std::less<const void *>());
}

void shape_fail(const Params &p, const std::string &what) {
  fail(LOOM_ERR_SHAPE, p.op().name, ": ", what);
}

int32_t same_dtype(const Params &p, const DTypeList &in) {
  for (size_t i = 1; i < in.size(); ++i)
    LOOM_CHECK(in[i] == in[0], LOOM_ERR_DTYPE, p.op().name, ": input ", i, " (",
               p.op().variadic ? p.op().inputs[0] : p.op().inputs[i], ") has dtype ",
               dtype_name(in[i]), " but input 0 (", p.op().inputs[0], ") has dtype ",
               dtype_name(in[0]), "; cast one of them first");
  return in.empty() ? kFloat32 : in[0];
}

}  // namespace loom
