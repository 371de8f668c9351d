// IDX files (MNIST's format), plain and gzip-compressed (the reader detects gzip by
// its magic bytes, so both paths are reached from one corpus).
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::string path = fuzz_file(data, size, ".idx");
  loom_ndarray a = nullptr;
  loom_status s = loom_io_read_idx(&a, path.c_str());
  fuzz_check(s);
  if (s == LOOM_OK) {
    fuzz_touch(a);
    loom_ndarray_free(a);
  }
  std::remove(path.c_str());
  return 0;
}
