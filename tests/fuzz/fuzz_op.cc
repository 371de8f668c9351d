// Op invocation by name with fuzzed inputs and parameters. The input chooses the op
// (byte 0), the number of inputs for variadic ops, each input's dtype and shape
// (up to 4-D, extents 0-5) and its bytes, then "name index, value text" lines for
// parameters named from the op's own description (so the values reach the parsers).
#include <cstring>
#include <string>
#include <vector>

#include "fuzz_common.h"

namespace {

struct Reader {
  const uint8_t *p, *end;
  uint8_t byte() { return p < end ? *p++ : 0; }
};

// The quoted strings of the JSON array after `key` (a flat list of names).
std::vector<std::string> names_after(const std::string &json, const char *key, const char *field) {
  std::vector<std::string> out;
  size_t at = json.find(key);
  if (at == std::string::npos) return out;
  size_t close = key[std::strlen(key) - 1] == '[' && std::strcmp(field, "") == 0 ? json.find(']', at) : json.size();
  std::string marker = std::string(field) + "\"";
  for (size_t q = json.find(marker, at + std::strlen(key)); q != std::string::npos && q < close;
       q = json.find(marker, q + 1)) {
    size_t start = q + marker.size(), e = json.find('"', start);
    if (e == std::string::npos || e > close) break;
    out.push_back(json.substr(start, e - start));
    q = e;
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  Reader r{data, data + size};
  int32_t count = 0;
  loom_op_count(&count);
  loom_op op = nullptr;
  if (count <= 0 || loom_op_get(&op, r.byte() % count) != LOOM_OK) return 0;
  const char *desc = nullptr;
  loom_op_describe(&desc, op);
  std::string json = desc ? desc : "";
  std::vector<std::string> inputs = names_after(json, "\"inputs\": [", "");
  std::vector<std::string> params = names_after(json, "\"params\": [", "\"name\": ");
  bool variadic = json.find("\"variadic\": true") != std::string::npos;
  size_t nin = variadic ? 1 + r.byte() % 3 : inputs.size();
  static const int32_t dtypes[] = {LOOM_DTYPE_FLOAT32, LOOM_DTYPE_FLOAT64, LOOM_DTYPE_INT32,
                                   LOOM_DTYPE_INT64, LOOM_DTYPE_UINT8};
  std::vector<loom_ndarray> ins;
  for (size_t i = 0; i < nin && i < 6; ++i) {
    int32_t dt = dtypes[r.byte() % 5];
    int32_t ndim = r.byte() % 5;
    int64_t shape[4], n = 1;
    for (int d = 0; d < ndim; ++d) n *= (shape[d] = r.byte() % 6);
    loom_ndarray a = nullptr;
    if (loom_ndarray_create(&a, shape, ndim, dt, LOOM_DEVICE_CPU, 0) != LOOM_OK) break;
    size_t es = dt == LOOM_DTYPE_FLOAT64 || dt == LOOM_DTYPE_INT64 ? 8 : dt == LOOM_DTYPE_UINT8 ? 1 : 4;
    std::string bytes(static_cast<size_t>(n) * es, '\0');
    for (char &c : bytes) c = static_cast<char>(r.byte());
    fuzz_check(loom_ndarray_copy_from_host(a, bytes.data(), bytes.size()));
    ins.push_back(a);
  }
  // Parameters: a byte picking the name, then text up to a newline.
  std::vector<std::string> keys, vals;
  while (r.p < r.end && keys.size() < 8 && !params.empty()) {
    std::string name = params[r.byte() % params.size()], value;
    while (r.p < r.end && *r.p != '\n') value.push_back(static_cast<char>(r.byte()));
    r.byte();
    keys.push_back(name);
    vals.push_back(value);
  }
  std::vector<const char *> k, v;
  for (size_t i = 0; i < keys.size(); ++i) {
    k.push_back(keys[i].c_str());
    v.push_back(vals[i].c_str());
  }
  int32_t nout = 0;
  loom_status s = loom_op_num_outputs(&nout, op, k.data(), v.data(), static_cast<int32_t>(k.size()));
  fuzz_check(s);
  if (s == LOOM_OK && nout > 0 && nout < 16) {
    std::vector<loom_ndarray> outs(static_cast<size_t>(nout), nullptr);
    s = loom_imperative_invoke(outs.data(), nout, op, ins.data(), static_cast<int32_t>(ins.size()), k.data(),
                               v.data(), static_cast<int32_t>(k.size()));
    fuzz_check(s);
    if (s == LOOM_OK) {
      fuzz_check(loom_wait_all());  // a kernel's failure surfaces here
      for (loom_ndarray o : outs) {
        fuzz_touch(o);
        loom_ndarray_free(o);
      }
    }
  }
  loom_wait_all();
  for (loom_ndarray a : ins) loom_ndarray_free(a);
  return 0;
}
