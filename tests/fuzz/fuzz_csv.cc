// CSV files read as each dtype the reader takes, with 0-2 header rows (the first
// input byte chooses; the rest is the file).
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  static const int32_t dtypes[] = {LOOM_DTYPE_FLOAT32, LOOM_DTYPE_FLOAT64, LOOM_DTYPE_INT32, LOOM_DTYPE_INT64,
                                   LOOM_DTYPE_UINT8};
  int32_t dtype = dtypes[data[0] % 5];
  int64_t header = (data[0] / 5) % 3;
  std::string path = fuzz_file(data + 1, size - 1, ".csv");
  loom_ndarray a = nullptr;
  loom_status s = loom_io_read_csv(&a, path.c_str(), dtype, header);
  fuzz_check(s);
  if (s == LOOM_OK) {
    fuzz_touch(a);
    loom_ndarray_free(a);
  }
  std::remove(path.c_str());
  return 0;
}
