// Symbol JSON: parse, list, infer shapes with a small shape for every argument the
// graph names "data" (or its first argument), and bind and run forward when the
// inferred arrays are small.
#include <cstring>
#include <string>
#include <vector>

#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::string json(reinterpret_cast<const char *>(data), size);
  loom_symbol sym = nullptr;
  loom_status s = loom_symbol_from_json(&sym, json.c_str());
  fuzz_check(s);
  if (s != LOOM_OK) return 0;
  const char *args = nullptr;
  fuzz_check(loom_symbol_list(&args, sym, 0));
  std::string first = "data";
  if (args && std::strstr(args, "\"data\"") == nullptr) {  // the first listed name instead
    const char *q = std::strchr(args, '"');
    const char *e = q ? std::strchr(q + 1, '"') : nullptr;
    if (q && e) first.assign(q + 1, e);
  }
  const char *names[1] = {first.c_str()};
  int32_t ndims[1] = {2};
  int64_t dims[2] = {2, 3};
  const char *inferred = nullptr;
  s = loom_symbol_infer(&inferred, sym, 1, names, ndims, dims, nullptr);
  fuzz_check(s);
  if (s == LOOM_OK && inferred && std::strstr(inferred, "\"complete\": true")) {
    // Bind only small graphs: shapes in the JSON may ask for any size.
    loom_memory_plan plan{};
    loom_status p = loom_symbol_plan_memory(&plan, sym, 1, names, ndims, dims, 0, nullptr, nullptr, 0, 0);
    fuzz_check(p);
    if (p == LOOM_OK && plan.unplanned_bytes < (64 << 20) && plan.argument_bytes < (64 << 20)) {
      loom_executor ex = nullptr;
      loom_status b = loom_executor_simple_bind(&ex, sym, LOOM_DEVICE_CPU, 0, 1, names, ndims, dims, nullptr, 0,
                                                nullptr, nullptr, 0);
      fuzz_check(b);
      if (b == LOOM_OK) {
        fuzz_check(loom_executor_forward(ex, 0));
        fuzz_check(loom_wait_all());
        loom_executor_free(ex);
      }
    }
  }
  loom_symbol_free(sym);
  return 0;
}
