// .params files (MXNet's NDArray list format): load, then read every array back.
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::string path = fuzz_file(data, size, ".params");
  loom_ndarray_list list = nullptr;
  loom_status s = loom_ndarray_load(&list, path.c_str());
  fuzz_check(s);
  if (s == LOOM_OK) {
    int32_t n = 0;
    fuzz_check(loom_ndarray_list_size(&n, list));
    for (int32_t i = 0; i < n; ++i) {
      loom_ndarray a = nullptr;
      if (loom_ndarray_list_get(&a, nullptr, list, i) != LOOM_OK) continue;
      fuzz_touch(a);
      loom_ndarray_free(a);
    }
    loom_ndarray_list_free(list);
  }
  std::remove(path.c_str());
  return 0;
}
