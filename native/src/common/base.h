// Shared vocabulary of the native library: errors, shapes, dtypes, contexts.
#pragma once

#include <cstdint>
#include <cstring>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "loom/loom.h"

namespace loom {

// The one exception type used inside the library. The C API turns it into a
// status and a per-thread message; nothing else crosses the ABI.
class Error : public std::runtime_error {
 public:
  Error(loom_status status, const std::string &msg) : std::runtime_error(msg), status_(status) {}
  loom_status status() const { return status_; }

 private:
  loom_status status_;
};

namespace detail {
inline void append(std::ostringstream &) {}
template <typename T, typename... Rest>
void append(std::ostringstream &os, const T &v, const Rest &...rest) {
  os << v;
  append(os, rest...);
}
}  // namespace detail

template <typename... Args>
[[noreturn]] void fail(loom_status status, const Args &...args) {
  std::ostringstream os;
  detail::append(os, args...);
  throw Error(status, os.str());
}

#define LOOM_CHECK(cond, status, ...)       \
  do {                                      \
    if (!(cond)) ::loom::fail(status, __VA_ARGS__); \
  } while (0)

// ---------------------------------------------------------------- dtypes
enum DType : int32_t {
  kFloat32 = LOOM_DTYPE_FLOAT32,
  kFloat64 = LOOM_DTYPE_FLOAT64,
  kFloat16 = LOOM_DTYPE_FLOAT16,
  kUInt8 = LOOM_DTYPE_UINT8,
  kInt32 = LOOM_DTYPE_INT32,
  kInt8 = LOOM_DTYPE_INT8,
  kInt64 = LOOM_DTYPE_INT64,
};

inline bool dtype_known(int32_t d) {
  return d == kFloat32 || d == kFloat64 || d == kFloat16 || d == kUInt8 || d == kInt32 ||
         d == kInt8 || d == kInt64;
}
// Types the kernels compute with; float16 and int8 are only carried through files.
inline bool dtype_computable(int32_t d) {
  return d == kFloat32 || d == kFloat64 || d == kUInt8 || d == kInt32 || d == kInt64;
}
inline bool dtype_is_float(int32_t d) { return d == kFloat32 || d == kFloat64 || d == kFloat16; }

inline size_t dtype_size(int32_t d) {
  switch (d) {
    case kFloat32: return 4;
    case kFloat64: return 8;
    case kFloat16: return 2;
    case kUInt8: return 1;
    case kInt32: return 4;
    case kInt8: return 1;
    case kInt64: return 8;
    default: fail(LOOM_ERR_DTYPE, "unknown dtype code ", d);
  }
}

inline const char *dtype_name(int32_t d) {
  switch (d) {
    case kFloat32: return "float32";
    case kFloat64: return "float64";
    case kFloat16: return "float16";
    case kUInt8: return "uint8";
    case kInt32: return "int32";
    case kInt8: return "int8";
    case kInt64: return "int64";
    default: return "unknown";
  }
}

inline int32_t dtype_from_name(const std::string &s) {
  for (int32_t d : {kFloat32, kFloat64, kFloat16, kUInt8, kInt32, kInt8, kInt64})
    if (s == dtype_name(d)) return d;
  return -1;
}

// Runs `body` with `DType` bound to the C++ type of a computable dtype code.
#define LOOM_DTYPE_SWITCH(code, DTypeName, ...)                                     \
  switch (code) {                                                                  \
    case ::loom::kFloat32: { using DTypeName = float; __VA_ARGS__; break; }         \
    case ::loom::kFloat64: { using DTypeName = double; __VA_ARGS__; break; }        \
    case ::loom::kInt32: { using DTypeName = int32_t; __VA_ARGS__; break; }         \
    case ::loom::kInt64: { using DTypeName = int64_t; __VA_ARGS__; break; }         \
    case ::loom::kUInt8: { using DTypeName = uint8_t; __VA_ARGS__; break; }         \
    default:                                                                       \
      ::loom::fail(LOOM_ERR_DTYPE, "dtype ", ::loom::dtype_name(code), " is not supported here"); \
  }

#define LOOM_FLOAT_SWITCH(code, DTypeName, ...)                                     \
  switch (code) {                                                                  \
    case ::loom::kFloat32: { using DTypeName = float; __VA_ARGS__; break; }         \
    case ::loom::kFloat64: { using DTypeName = double; __VA_ARGS__; break; }        \
    default:                                                                       \
      ::loom::fail(LOOM_ERR_DTYPE, "dtype ", ::loom::dtype_name(code), " is not a floating type"); \
  }

// ---------------------------------------------------------------- shapes
struct Shape {
  int32_t ndim = 0;
  int64_t d[LOOM_MAX_NDIM] = {0};

  Shape() = default;
  Shape(std::initializer_list<int64_t> dims) {
    for (int64_t v : dims) d[ndim++] = v;
  }
  static Shape from(const int64_t *dims, int32_t n) {
    Shape s;
    s.ndim = n;
    for (int i = 0; i < n; ++i) s.d[i] = dims[i];
    return s;
  }
  static Shape from(const std::vector<int64_t> &v) {
    LOOM_CHECK(v.size() <= LOOM_MAX_NDIM, LOOM_ERR_SHAPE, "shape has ", v.size(),
               " dimensions; at most ", LOOM_MAX_NDIM, " are supported");
    return from(v.data(), static_cast<int32_t>(v.size()));
  }
  // The element count; a shape whose count does not fit 64 bits is an error (fuzzed
  // or mistyped extents such as reshape's shape=(6666066666666,66666666)).
  int64_t size() const {
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) {
      if (__builtin_mul_overflow(n, d[i], &n))
        fail(LOOM_ERR_SHAPE, "shape ", str(), " has more elements than a 64-bit count holds");
    }
    return n;
  }
  // The byte count of the shape's elements of `esize` bytes, false when an extent
  // is negative or the count overflows 64 bits (shapes read from files).
  bool checked_bytes(uint64_t esize, uint64_t *out) const {
    uint64_t n = esize;
    for (int i = 0; i < ndim; ++i) {
      if (d[i] < 0 || __builtin_mul_overflow(n, static_cast<uint64_t>(d[i]), &n)) return false;
    }
    *out = n;
    return true;
  }
  int64_t operator[](int i) const { return d[i]; }
  int64_t &operator[](int i) { return d[i]; }
  bool operator==(const Shape &o) const {
    if (ndim != o.ndim) return false;
    for (int i = 0; i < ndim; ++i)
      if (d[i] != o.d[i]) return false;
    return true;
  }
  bool operator!=(const Shape &o) const { return !(*this == o); }
  void push_back(int64_t v) {
    LOOM_CHECK(ndim < LOOM_MAX_NDIM, LOOM_ERR_SHAPE, "shape would exceed ", LOOM_MAX_NDIM,
               " dimensions");
    d[ndim++] = v;
  }
  std::vector<int64_t> vec() const { return std::vector<int64_t>(d, d + ndim); }
  std::string str() const {
    std::string s = "(";
    for (int i = 0; i < ndim; ++i) {
      if (i) s += ",";
      s += std::to_string(d[i]);
    }
    if (ndim == 1) s += ",";
    return s + ")";
  }
};

inline std::ostream &operator<<(std::ostream &os, const Shape &s) { return os << s.str(); }

// Resolves a possibly negative axis against ndim; names the op in its error.
inline int normalize_axis(int64_t axis, int ndim, const std::string &op, const char *arg = "axis") {
  int64_t a = axis < 0 ? axis + ndim : axis;
  LOOM_CHECK(a >= 0 && a < ndim, LOOM_ERR_INVALID_ARGUMENT, op, ": ", arg, "=", axis,
             " is out of range for an input with ", ndim, " dimensions");
  return static_cast<int>(a);
}

// ---------------------------------------------------------------- contexts
struct Context {
  int32_t dev_type = LOOM_DEVICE_CPU;
  int32_t dev_id = 0;
  bool operator==(const Context &o) const { return dev_type == o.dev_type && dev_id == o.dev_id; }
  bool operator!=(const Context &o) const { return !(*this == o); }
  std::string str() const {
    return std::string(dev_type == LOOM_DEVICE_GPU ? "gpu(" : "cpu(") + std::to_string(dev_id) + ")";
  }
};

constexpr int kMaxCpuDevices = 64;
constexpr int kMaxGpuDevices = 16;  // gpu(i) for i below this (memory pools, workers)

// Throws unless the GPU backend is loaded and has device ctx.dev_id (backend/device.cc).
void check_gpu_context(const Context &ctx);

inline void check_context(const Context &ctx) {
  if (ctx.dev_type == LOOM_DEVICE_GPU) {
    check_gpu_context(ctx);
    return;
  }
  LOOM_CHECK(ctx.dev_type == LOOM_DEVICE_CPU, LOOM_ERR_INVALID_ARGUMENT, "unknown device type ",
             ctx.dev_type, " (1 = cpu, 2 = gpu)");
  LOOM_CHECK(ctx.dev_id >= 0 && ctx.dev_id < kMaxCpuDevices, LOOM_ERR_INVALID_ARGUMENT,
             "cpu device id ", ctx.dev_id, " is out of range [0, ", kMaxCpuDevices, ")");
}

}  // namespace loom
