// Shared by the libFuzzer harnesses: every input goes through Loom's public C ABI
// only, and every call must return a status (never crash, hang or leak).
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "loom/loom.h"

// Writes the input to a file of this process (the readers take paths), returns its path.
inline std::string fuzz_file(const uint8_t *data, size_t size, const char *suffix) {
  std::string path = "/tmp/loom-fuzz-" + std::to_string(::getpid()) + suffix;
  FILE *f = std::fopen(path.c_str(), "wb");
  if (!f) return path;
  if (size) std::fwrite(data, 1, size, f);
  std::fclose(f);
  return path;
}

// A status must be one Loom defines, and a failure must say something.
inline void fuzz_check(loom_status s) {
  if (s != LOOM_OK && (loom_last_error() == nullptr || loom_last_error()[0] == 0)) __builtin_trap();
}

// Reads an array back to the host (bounded), so its stored bytes are touched.
inline void fuzz_touch(loom_ndarray a) {
  int64_t count = 0;
  int32_t ndim = 0;
  int64_t shape[32];
  fuzz_check(loom_ndarray_get_size(&count, a));
  fuzz_check(loom_ndarray_get_ndim(&ndim, a));
  fuzz_check(loom_ndarray_get_shape(shape, 32, a));
  if (count <= 0 || count > (1 << 22)) return;
  std::string buf(static_cast<size_t>(count) * 8, '\0');
  loom_status s = loom_ndarray_copy_to_host(buf.data(), buf.size(), a);  // the wrong size for most dtypes
  if (s != LOOM_OK) {
    int32_t dt = 0;
    loom_ndarray_get_dtype(&dt, a);
    size_t es = dt == LOOM_DTYPE_FLOAT64 || dt == LOOM_DTYPE_INT64 ? 8 : dt == LOOM_DTYPE_UINT8 || dt == LOOM_DTYPE_INT8 ? 1 : dt == LOOM_DTYPE_FLOAT16 ? 2 : 4;
    fuzz_check(loom_ndarray_copy_to_host(buf.data(), static_cast<size_t>(count) * es, a));
  }
}
