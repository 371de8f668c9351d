// Shared helpers of the CUDA backend plugin (libloom_cuda): errors, parameters,
// launch sizes, tensor shapes and the kernel tables each source file fills.
#pragma once

#include <loom/backend.h>
#include <loom/loom.h>

#include <cuda_runtime.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace loomcuda {

extern const loom_backend_host *g_host;

// Sets the calling thread's message ("cuda: " + m) and returns 1.
int32_t fail(const std::string &m);
// 0 when e is cudaSuccess, else fail() naming `what` and CUDA's message.
int32_t check(cudaError_t e, const char *what);
// The message of the calling thread's last failure.
const char *last_error_text();

// An op the plugin has no kernel for in this case (a dtype, a rank): staged
// through libloom's CPU kernel when LOOM_CUDA_HOST_FALLBACK allows it (the
// default), else an error naming the op and the case.
int32_t decline(const loom_kernel_call *c, const std::string &why);
// The staged CPU path itself: waits for the stream, copies every array to the
// host, runs libloom's CPU kernel and copies the outputs back.
int32_t run_on_host(const loom_kernel_call *c);
bool host_fallback_enabled();
// LOOM_CUDA_TF32=1: float32 convolutions and matrix products may use TF32 tensor
// cores (PyTorch's default for convolutions; results then differ from the CPU's
// by about 1e-3). Off by default: float32 products in float32, within 1e-5 of the CPU.
bool tf32_enabled();

using KernelMap = std::map<std::string, loom_kernel_fn>;
void register_elemwise(KernelMap &fwd, KernelMap &bwd);
void register_nn(KernelMap &fwd, KernelMap &bwd);
void register_dnn(KernelMap &fwd, KernelMap &bwd);
void register_tensor(KernelMap &fwd, KernelMap &bwd);  // cuDNN convolutions (empty without cuDNN)

inline cudaStream_t stream_of(const loom_kernel_call *c) {
  return static_cast<cudaStream_t>(c->stream);
}

inline int64_t numel(const loom_backend_tensor &t) {
  int64_t n = 1;
  for (int32_t k = 0; k < t.ndim; ++k) n *= t.shape[k];
  return n;
}

inline bool same_shape(const loom_backend_tensor &a, const loom_backend_tensor &b) {
  if (a.ndim != b.ndim) return false;
  for (int32_t k = 0; k < a.ndim; ++k)
    if (a.shape[k] != b.shape[k]) return false;
  return true;
}

inline size_t dtype_bytes(int32_t dtype) {
  switch (dtype) {
    case LOOM_DTYPE_FLOAT64:
    case LOOM_DTYPE_INT64: return 8;
    case LOOM_DTYPE_FLOAT32:
    case LOOM_DTYPE_INT32: return 4;
    case LOOM_DTYPE_FLOAT16: return 2;
    default: return 1;
  }
}

std::string shape_str(const loom_backend_tensor &t);
const char *dtype_str(int32_t dtype);

// Parameters (already checked against the op's schema by libloom).
double param_f(const loom_kernel_call *c, const char *name, double fallback);
int64_t param_i(const loom_kernel_call *c, const char *name, int64_t fallback);  // int, bool
std::string param_s(const loom_kernel_call *c, const char *name, const char *fallback);  // enum, string
bool param_tuple(const loom_kernel_call *c, const char *name, std::vector<int64_t> *out);

// Grid-stride launches: a grid of at most 64K blocks of 256 threads.
constexpr int kThreads = 256;
inline unsigned grid_for(int64_t n) {
  int64_t b = (n + kThreads - 1) / kThreads;
  if (b < 1) b = 1;
  if (b > 65536) b = 65536;
  return static_cast<unsigned>(b);
}

#define LOOM_GRID_LOOP(i, n) \
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < (n); i += int64_t(blockDim.x) * gridDim.x)

// The error of the launch just made (a bad configuration), as a kernel's result.
inline int32_t launched(const loom_kernel_call *c) {
  cudaError_t e = cudaGetLastError();
  if (e == cudaSuccess) return 0;
  return fail(std::string(c->op) + (c->backward ? " (gradient)" : "") + ": " + cudaGetErrorString(e));
}

// Stores v under a gradient request: overwrite or add.
template <typename T>
__device__ __forceinline__ void store_req(T *p, int32_t req, T v) {
  if (req == LOOM_REQ_ADD) *p += v;
  else *p = v;
}

// Broadcast indexing: up to 8 axes, the output's shape and each input's
// strides over it (0 on a broadcast axis).
constexpr int kMaxDims = 8;
struct Bcast {
  int32_t ndim;
  int64_t out[kMaxDims];
  int64_t sa[kMaxDims], sb[kMaxDims];
};
// False when the ranks do not fit kMaxDims or the shapes do not broadcast.
bool make_bcast(const loom_backend_tensor &a, const loom_backend_tensor &b,
                const loom_backend_tensor &out, Bcast *bc);

// Kernels are registered through on_device<fn>, which makes the call's device
// current on the calling thread first.
template <loom_kernel_fn F>
int32_t on_device(const loom_kernel_call *c) {
  if (check(cudaSetDevice(c->dev_id), "cudaSetDevice")) return 1;
  return F(c);
}
#define LOOM_CUDA_REG(map, name, fn) (map)[name] = &::loomcuda::on_device<fn>

// Dtype dispatch: T is the C type of dtype `dt` in the body (the trailing
// arguments, so it may hold commas); other dtypes run `other`.
#define LOOM_CUDA_FLOATS(dt, T, other, ...)                          \
  switch (dt) {                                                      \
    case LOOM_DTYPE_FLOAT32: { typedef float T; __VA_ARGS__; } break;  \
    case LOOM_DTYPE_FLOAT64: { typedef double T; __VA_ARGS__; } break; \
    default: other;                                                  \
  }
#define LOOM_CUDA_ALL(dt, T, other, ...)                             \
  switch (dt) {                                                      \
    case LOOM_DTYPE_FLOAT32: { typedef float T; __VA_ARGS__; } break;  \
    case LOOM_DTYPE_FLOAT64: { typedef double T; __VA_ARGS__; } break; \
    case LOOM_DTYPE_INT32: { typedef int32_t T; __VA_ARGS__; } break;  \
    case LOOM_DTYPE_INT64: { typedef int64_t T; __VA_ARGS__; } break;  \
    case LOOM_DTYPE_UINT8: { typedef uint8_t T; __VA_ARGS__; } break;  \
    case LOOM_DTYPE_INT8: { typedef int8_t T; __VA_ARGS__; } break;    \
    default: other;                                                  \
  }

// Bad input a kernel finds (a label outside the classes, a NaN index): the
// first is recorded in this device-visible record (pinned host memory) instead
// of making the host wait for the kernel, and the plugin reports it at the next
// stream or event synchronisation, as CUDA reports its own errors.
struct DeviceError {
  int code;  // 0 none; kErrLabel, kErrIndex
  int done;  // set last, once the fields below are written
  long long pos;
  double value, limit;
};
constexpr int kErrLabel = 1;  // SoftmaxOutput: a label outside [0, limit)
constexpr int kErrIndex = 2;  // take: a NaN index
// The device's record (a device-usable pointer), or nullptr when it cannot be made.
DeviceError *device_error(int32_t dev);
// After a synchronisation: 0, or fail() with the recorded error (then cleared).
int32_t take_device_error(int32_t dev);

__device__ __forceinline__ void record_error(DeviceError *e, int code, long long pos, double value, double limit) {
  if (!e || atomicCAS(&e->code, 0, code) != 0) return;
  e->pos = pos;
  e->value = value;
  e->limit = limit;
  __threadfence_system();
  *static_cast<volatile int *>(&e->done) = 1;
}

// Per-device scratch memory of the plugin's own (cuDNN workspaces, counters),
// grown on demand; used on the device's compute stream only.
void *scratch(int32_t dev, size_t bytes);

}  // namespace loomcuda
