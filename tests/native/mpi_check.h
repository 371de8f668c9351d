// Helpers of the programs mpirun runs (kvstore_dist.cc, kvstore_async.cc): a check
// that counts failures and prints where, and float32 arrays to and from the host.
#pragma once

#include <cstdio>
#include <vector>

#include "loom/loom.h"

static int failures = 0;
#define EXPECT(cond, ...)                                       \
  do {                                                          \
    if (!(cond)) {                                              \
      std::fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
      std::fprintf(stderr, __VA_ARGS__);                        \
      std::fprintf(stderr, "\n");                               \
      ++failures;                                               \
    }                                                           \
  } while (0)

static inline loom_ndarray array(const std::vector<float> &v) {
  int64_t shape[1] = {static_cast<int64_t>(v.size())};
  loom_ndarray h = nullptr;
  loom_ndarray_create(&h, shape, 1, LOOM_DTYPE_FLOAT32, LOOM_DEVICE_CPU, 0);
  loom_ndarray_copy_from_host(h, v.data(), v.size() * sizeof(float));
  return h;
}

static inline std::vector<float> read(loom_ndarray h, size_t n) {
  std::vector<float> v(n);
  loom_ndarray_copy_to_host(v.data(), n * sizeof(float), h);
  return v;
}
