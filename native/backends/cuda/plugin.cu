// libloom_cuda: the CUDA device backend of Loom (loom/backend.h). libloom opens
// it at run time; this file holds the device, memory, stream, event and copy
// functions, the kernel table and the staged CPU path for ops without a CUDA
// kernel. The kernels live in elemwise.cu, nn.cu and dnn.cu.
//
// Environment: LOOM_CUDA_HOST_FALLBACK=0 turns the staged CPU path off, so an
// op without a CUDA kernel is reported as unsupported on the device (what
// tests/conformance/device_check.py --require-all counts);
// LOOM_CUDA_FALLBACK_LOG=1 prints each op the first time it is staged;
// LOOM_CUDA_TF32=1 lets float32 convolutions and products use TF32 tensor cores.
#include "common.cuh"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>

namespace loomcuda {

const loom_backend_host *g_host = nullptr;

namespace {
thread_local std::string t_error;
}

int32_t fail(const std::string &m) {
  t_error = "cuda: " + m;
  return 1;
}

const char *last_error_text() { return t_error.c_str(); }

int32_t check(cudaError_t e, const char *what) {
  if (e == cudaSuccess) return 0;
  cudaGetLastError();  // clear a non-sticky error
  return fail(std::string(what) + ": " + cudaGetErrorString(e));
}

const char *dtype_str(int32_t dtype) {
  switch (dtype) {
    case LOOM_DTYPE_FLOAT32: return "float32";
    case LOOM_DTYPE_FLOAT64: return "float64";
    case LOOM_DTYPE_FLOAT16: return "float16";
    case LOOM_DTYPE_UINT8: return "uint8";
    case LOOM_DTYPE_INT32: return "int32";
    case LOOM_DTYPE_INT8: return "int8";
    case LOOM_DTYPE_INT64: return "int64";
    default: return "unknown dtype";
  }
}

std::string shape_str(const loom_backend_tensor &t) {
  std::string s = "(";
  for (int32_t k = 0; k < t.ndim; ++k) s += (k ? "," : "") + std::to_string(t.shape[k]);
  return s + ")";
}

double param_f(const loom_kernel_call *c, const char *name, double fallback) {
  double v;
  return g_host->param_float(c->params, name, &v) == 0 ? v : fallback;
}
int64_t param_i(const loom_kernel_call *c, const char *name, int64_t fallback) {
  int64_t v;
  return g_host->param_int(c->params, name, &v) == 0 ? v : fallback;
}
std::string param_s(const loom_kernel_call *c, const char *name, const char *fallback) {
  const char *v = nullptr;
  return g_host->param_string(c->params, name, &v) == 0 && v ? std::string(v) : std::string(fallback);
}
bool param_tuple(const loom_kernel_call *c, const char *name, std::vector<int64_t> *out) {
  const int64_t *v = nullptr;
  int32_t n = 0;
  if (g_host->param_tuple(c->params, name, &v, &n) != 0) return false;
  out->assign(v, v + n);
  return true;
}

bool make_bcast(const loom_backend_tensor &a, const loom_backend_tensor &b,
                const loom_backend_tensor &out, Bcast *bc) {
  if (out.ndim > kMaxDims || a.ndim > out.ndim || b.ndim > out.ndim) return false;
  bc->ndim = out.ndim;
  const loom_backend_tensor *in[2] = {&a, &b};
  int64_t *st[2] = {bc->sa, bc->sb};
  for (int s = 0; s < 2; ++s) {
    int64_t stride = 1;
    for (int32_t k = out.ndim - 1; k >= 0; --k) {
      int32_t ik = k - (out.ndim - in[s]->ndim);
      int64_t dim = ik >= 0 ? in[s]->shape[ik] : 1;
      if (dim != 1 && dim != out.shape[k]) return false;
      st[s][k] = dim == 1 ? 0 : stride;
      stride *= dim;
    }
  }
  for (int32_t k = 0; k < out.ndim; ++k) bc->out[k] = out.shape[k];
  return true;
}

// ------------------------------------------------------------ scratch
namespace {
struct Scratch {
  std::mutex mu;
  void *ptr = nullptr;
  size_t bytes = 0;
};
Scratch g_scratch[64];
}  // namespace

void *scratch(int32_t dev, size_t bytes) {
  if (dev < 0 || dev >= 64) return nullptr;
  Scratch &s = g_scratch[dev];
  std::lock_guard<std::mutex> lk(s.mu);
  if (bytes <= s.bytes) return s.ptr;
  if (s.ptr) cudaFree(s.ptr);  // waits for the work that used it
  s.ptr = nullptr;
  s.bytes = 0;
  size_t want = bytes + bytes / 2;
  if (cudaMalloc(&s.ptr, want) != cudaSuccess) {
    cudaGetLastError();
    s.ptr = nullptr;
    return nullptr;
  }
  s.bytes = want;
  return s.ptr;
}

// ------------------------------------------------------------ device errors
namespace {
struct ErrorSlot {
  std::mutex mu;
  DeviceError *host = nullptr, *dev = nullptr;
};
ErrorSlot g_error_slots[64];
}  // namespace

DeviceError *device_error(int32_t dev) {
  if (dev < 0 || dev >= 64) return nullptr;
  ErrorSlot &e = g_error_slots[dev];
  std::lock_guard<std::mutex> lk(e.mu);
  if (!e.host) {
    void *h = nullptr, *d = nullptr;
    if (cudaHostAlloc(&h, sizeof(DeviceError), cudaHostAllocMapped) != cudaSuccess) {
      cudaGetLastError();
      return nullptr;
    }
    if (cudaHostGetDevicePointer(&d, h, 0) != cudaSuccess) {
      cudaGetLastError();
      cudaFreeHost(h);
      return nullptr;
    }
    std::memset(h, 0, sizeof(DeviceError));
    e.host = static_cast<DeviceError *>(h);
    e.dev = static_cast<DeviceError *>(d);
  }
  return e.dev;
}

int32_t take_device_error(int32_t dev) {
  if (dev < 0 || dev >= 64) return 0;
  ErrorSlot &e = g_error_slots[dev];
  std::lock_guard<std::mutex> lk(e.mu);
  if (!e.host) return 0;
  volatile DeviceError *r = e.host;
  if (!r->done) return 0;
  const int code = r->code;
  const long long pos = r->pos;
  const double value = r->value, limit = r->limit;
  r->done = 0;
  r->code = 0;
  char v[64], l[64];
  std::snprintf(v, sizeof v, "%g", value);
  std::snprintf(l, sizeof l, "%.0f", limit);
  if (code == kErrLabel)
    return fail(std::string("SoftmaxOutput: label ") + v + " at position " + std::to_string(pos) +
                " is outside [0, " + l + ")");
  return fail(std::string("take: index ") + v + " at position " + std::to_string(pos) + " is outside [0, " + l +
              ") (a NaN index)");
}

// ------------------------------------------------------------ staged CPU path
bool host_fallback_enabled() {
  static const bool on = [] {
    const char *v = std::getenv("LOOM_CUDA_HOST_FALLBACK");
    return !(v && std::strcmp(v, "0") == 0);
  }();
  return on;
}

bool tf32_enabled() {
  static const bool on = [] {
    const char *v = std::getenv("LOOM_CUDA_TF32");
    return v && std::strcmp(v, "1") == 0;
  }();
  return on;
}

namespace {
void note_staged(const loom_kernel_call *c) {
  static std::mutex mu;
  static std::set<std::string> seen;
  const char *v = std::getenv("LOOM_CUDA_FALLBACK_LOG");
  if (!(v && std::strcmp(v, "1") == 0)) return;
  std::lock_guard<std::mutex> lk(mu);
  std::string key = std::string(c->op) + (c->backward ? " (gradient)" : "");
  if (seen.insert(key).second) std::fprintf(stderr, "loom cuda: %s runs on the CPU (staged)\n", key.c_str());
}
}  // namespace

int32_t run_on_host(const loom_kernel_call *c) {
  note_staged(c);
  cudaStream_t s = stream_of(c);
  if (check(cudaSetDevice(c->dev_id), "cudaSetDevice")) return 1;
  std::vector<std::vector<char>> bufs;
  std::vector<loom_backend_tensor> in(c->inputs, c->inputs + c->num_inputs),
      out(c->outputs, c->outputs + c->num_outputs);
  bufs.reserve(in.size() + out.size() + 1);
  // Outputs are copied down too: a gradient added to (LOOM_REQ_ADD) and the
  // state an op updates in place need their current values.
  for (auto *list : {&in, &out})
    for (auto &t : *list) {
      size_t bytes = static_cast<size_t>(numel(t)) * dtype_bytes(t.dtype);
      if (!t.data || bytes == 0) continue;
      bufs.emplace_back(bytes);
      if (check(cudaMemcpyAsync(bufs.back().data(), t.data, bytes, cudaMemcpyDeviceToHost, s),
                "staging an array to the host"))
        return 1;
      t.data = bufs.back().data();
    }
  if (check(cudaStreamSynchronize(s), (std::string(c->op) + ": waiting for the device").c_str())) return 1;
  loom_kernel_call h = *c;
  h.inputs = in.data();
  h.outputs = out.data();
  h.stream = nullptr;
  if (c->workspace && c->workspace_bytes) {
    bufs.emplace_back(c->workspace_bytes);
    h.workspace = bufs.back().data();
  }
  char msg[2048] = {0};
  if (g_host->run_on_cpu(&h, msg, sizeof msg) != 0) return fail(msg);
  for (int32_t i = 0; i < c->num_outputs; ++i) {
    const loom_backend_tensor &t = c->outputs[i];
    size_t bytes = static_cast<size_t>(numel(t)) * dtype_bytes(t.dtype);
    if (!t.data || bytes == 0 || (c->req && c->req[i] == LOOM_REQ_NULL)) continue;
    if (check(cudaMemcpyAsync(t.data, out[i].data, bytes, cudaMemcpyHostToDevice, s),
              "copying a staged result to the device"))
      return 1;
  }
  // The host buffers must outlive the copies.
  return check(cudaStreamSynchronize(s), (std::string(c->op) + ": copying results back").c_str());
}

int32_t decline(const loom_kernel_call *c, const std::string &why) {
  if (host_fallback_enabled()) return run_on_host(c);
  return fail(std::string(c->op) + (c->backward ? " (gradient)" : "") + ": " + why +
              " (the CUDA backend has no kernel for this case; LOOM_CUDA_HOST_FALLBACK=1 runs it on the CPU)");
}

// ------------------------------------------------------------ the table
namespace {

const char *last_error() { return t_error.c_str(); }

int32_t device_count(int32_t *out) {
  int n = 0;
  if (check(cudaGetDeviceCount(&n), "cudaGetDeviceCount")) return 1;
  *out = n;
  return 0;
}

int32_t device_name(int32_t dev, char *buf, size_t len) {
  cudaDeviceProp p;
  if (check(cudaGetDeviceProperties(&p, dev), "cudaGetDeviceProperties")) return 1;
  std::snprintf(buf, len, "%s (compute capability %d.%d, %.0f MiB)", p.name, p.major, p.minor,
                double(p.totalGlobalMem) / (1 << 20));
  return 0;
}

int32_t mem_info(int32_t dev, size_t *free_b, size_t *total_b) {
  if (check(cudaSetDevice(dev), "cudaSetDevice")) return 1;
  return check(cudaMemGetInfo(free_b, total_b), "cudaMemGetInfo");
}

int32_t dev_malloc(int32_t dev, size_t bytes, void **out) {
  if (check(cudaSetDevice(dev), "cudaSetDevice")) return 1;
  cudaError_t e = cudaMalloc(out, bytes ? bytes : 1);
  if (e == cudaErrorMemoryAllocation) {
    cudaGetLastError();
    fail("out of memory on gpu(" + std::to_string(dev) + ") allocating " + std::to_string(bytes) + " bytes");
    return LOOM_BACKEND_OUT_OF_MEMORY;
  }
  return check(e, "cudaMalloc");
}

void dev_free(int32_t dev, void *p) {
  cudaSetDevice(dev);
  cudaFree(p);  // waits for queued work that still uses the block
}

int32_t stream_create(int32_t dev, void **out) {
  if (check(cudaSetDevice(dev), "cudaSetDevice")) return 1;
  cudaStream_t s;
  if (check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate")) return 1;
  *out = s;
  return 0;
}

void stream_destroy(int32_t dev, void *s) {
  cudaSetDevice(dev);
  cudaStreamDestroy(static_cast<cudaStream_t>(s));
}

int32_t stream_sync(int32_t dev, void *s) {
  if (check(cudaSetDevice(dev), "cudaSetDevice")) return 1;
  if (check(cudaStreamSynchronize(static_cast<cudaStream_t>(s)), "a queued device operation failed")) return 1;
  return take_device_error(dev);
}

int32_t event_create(int32_t dev, void **out) {
  if (check(cudaSetDevice(dev), "cudaSetDevice")) return 1;
  cudaEvent_t e;
  if (check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreate")) return 1;
  *out = e;
  return 0;
}

void event_destroy(int32_t dev, void *e) {
  cudaSetDevice(dev);
  cudaEventDestroy(static_cast<cudaEvent_t>(e));
}

int32_t event_record(int32_t dev, void *e, void *s) {
  if (check(cudaSetDevice(dev), "cudaSetDevice")) return 1;
  return check(cudaEventRecord(static_cast<cudaEvent_t>(e), static_cast<cudaStream_t>(s)),
               "cudaEventRecord");
}

int32_t stream_wait_event(int32_t dev, void *s, void *e) {
  if (check(cudaSetDevice(dev), "cudaSetDevice")) return 1;
  return check(cudaStreamWaitEvent(static_cast<cudaStream_t>(s), static_cast<cudaEvent_t>(e), 0),
               "cudaStreamWaitEvent");
}

int32_t event_sync(int32_t dev, void *e) {
  if (check(cudaSetDevice(dev), "cudaSetDevice")) return 1;
  if (check(cudaEventSynchronize(static_cast<cudaEvent_t>(e)), "cudaEventSynchronize")) return 1;
  return take_device_error(dev);
}

int32_t memcpy_async(int32_t dev, void *dst, int32_t dst_dev, const void *src, int32_t src_dev,
                     size_t bytes, int32_t kind, void *s) {
  if (check(cudaSetDevice(dev), "cudaSetDevice")) return 1;
  cudaStream_t st = static_cast<cudaStream_t>(s);
  switch (kind) {
    case LOOM_COPY_HOST_TO_DEVICE:
      return check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, st), "copy to the device");
    case LOOM_COPY_DEVICE_TO_HOST:
      return check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, st), "copy to the host");
    case LOOM_COPY_DEVICE_TO_DEVICE:
      if (dst_dev == src_dev)
        return check(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, st), "device copy");
      return check(cudaMemcpyPeerAsync(dst, dst_dev, src, src_dev, bytes, st), "copy between devices");
    default: return fail("memcpy_async: unknown copy kind " + std::to_string(kind));
  }
}

int32_t memset_async(int32_t dev, void *dst, int32_t value, size_t bytes, void *s) {
  if (check(cudaSetDevice(dev), "cudaSetDevice")) return 1;
  return check(cudaMemsetAsync(dst, value, bytes, static_cast<cudaStream_t>(s)), "cudaMemsetAsync");
}

KernelMap &kernels(int backward) {
  static KernelMap maps[2];
  static std::once_flag once;
  std::call_once(once, [] {
    register_elemwise(maps[0], maps[1]);
    register_nn(maps[0], maps[1]);
    register_dnn(maps[0], maps[1]);
    register_tensor(maps[0], maps[1]);
  });
  return maps[backward ? 1 : 0];
}

int32_t k_staged(const loom_kernel_call *c) { return run_on_host(c); }

// A wrapper that makes the op's device current before its kernel runs.
loom_kernel_fn find_kernel(const char *op, int32_t backward) {
  if (!op) return nullptr;
  const KernelMap &m = kernels(backward);
  auto it = m.find(op);
  if (it != m.end()) return it->second;
  if (host_fallback_enabled() && std::strcmp(op, "no_such_operator") != 0) return k_staged;
  return nullptr;
}

loom_backend g_table;

}  // namespace
}  // namespace loomcuda

// For tests and reports: whether op (its gradient when backward) has a CUDA
// kernel of its own (1) or runs staged through the CPU (0).
extern "C" __attribute__((visibility("default"))) int32_t loom_cuda_has_kernel(const char *op,
                                                                               int32_t backward) {
  if (!op) return 0;
  const auto &m = loomcuda::kernels(backward);
  return m.count(op) ? 1 : 0;
}

extern "C" __attribute__((visibility("default"))) int32_t loom_backend_open(
    const loom_backend_host *host, const loom_backend **out) {
  using namespace loomcuda;
  g_host = host;
  g_table.abi_version = LOOM_BACKEND_ABI_VERSION;
  g_table.name = "cuda";
  g_table.dev_type = LOOM_DEVICE_GPU;
  g_table.last_error = last_error;
  g_table.device_count = device_count;
  g_table.device_name = device_name;
  g_table.mem_info = mem_info;
  g_table.malloc = dev_malloc;
  g_table.free = dev_free;
  g_table.stream_create = stream_create;
  g_table.stream_destroy = stream_destroy;
  g_table.stream_sync = stream_sync;
  g_table.event_create = event_create;
  g_table.event_destroy = event_destroy;
  g_table.event_record = event_record;
  g_table.stream_wait_event = stream_wait_event;
  g_table.event_sync = event_sync;
  g_table.memcpy_async = memcpy_async;
  g_table.memset_async = memset_async;
  g_table.find_kernel = find_kernel;
  *out = &g_table;
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) return fail(std::string("no usable CUDA driver or device: ") + cudaGetErrorString(e));
  if (n == 0) return fail("the CUDA driver reports no device");
  return 0;
}
