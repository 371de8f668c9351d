// CUDA kernels of the layers and updates: FullyConnected (cuBLAS),
// SoftmaxOutput, sum and mean, 2-D Pooling and the SGD, momentum and Adam
// updates. Each follows its CPU kernel's definition (native/src/ops/nn,
// reduce, optimizer); sums accumulate in double.
#include "common.cuh"

#include <cublas_v2.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <type_traits>

namespace loomcuda {
namespace {

// ------------------------------------------------------------ cuBLAS
struct Blas {
  std::mutex mu;
  cublasHandle_t h = nullptr;
};
Blas g_blas[64];

const char *blas_error(cublasStatus_t s) {
  switch (s) {
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "cuBLAS error";
  }
}

// Row-major C = alpha op(A) op(B) + beta C (the CPU's gemm<T> arguments), as
// the column-major product C^T = op(B)^T op(A)^T on the call's stream.
template <typename T>
int32_t gemm(const loom_kernel_call *c, bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha,
             const T *a, int64_t lda, const T *b, int64_t ldb, T beta, T *out, int64_t ldc) {
  if (m == 0 || n == 0) return 0;
  if (m > INT32_MAX || n > INT32_MAX || k > INT32_MAX) return fail(std::string(c->op) + ": matrix too large for cuBLAS");
  Blas &bl = g_blas[c->dev_id & 63];
  std::lock_guard<std::mutex> lk(bl.mu);
  if (!bl.h) {
    cublasStatus_t s = cublasCreate(&bl.h);
    if (s != CUBLAS_STATUS_SUCCESS) return fail(std::string("cublasCreate: ") + blas_error(s));
    // float32 products in float32 (no TF32), as on the CPU, unless LOOM_CUDA_TF32=1
    cublasSetMathMode(bl.h, tf32_enabled() ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_PEDANTIC_MATH);
  }
  cublasSetStream(bl.h, stream_of(c));
  cublasOperation_t oa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, ob = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
  cublasStatus_t s;
  if constexpr (std::is_same<T, float>::value)
    s = cublasSgemm(bl.h, ob, oa, int(n), int(m), int(k), &alpha, b, int(ldb), a, int(lda), &beta, out, int(ldc));
  else
    s = cublasDgemm(bl.h, ob, oa, int(n), int(m), int(k), &alpha, b, int(ldb), a, int(lda), &beta, out, int(ldc));
  if (s != CUBLAS_STATUS_SUCCESS)
    return fail(std::string(c->op) + ": cuBLAS gemm " + std::to_string(m) + "x" + std::to_string(n) + "x" +
                std::to_string(k) + ": " + blas_error(s));
  return 0;
}

// ------------------------------------------------------------ FullyConnected
void fc_dims(const loom_kernel_call *c, const loom_backend_tensor &x, int64_t *n, int64_t *k) {
  if (param_i(c, "flatten", 1)) {
    *n = x.ndim ? x.shape[0] : 1;
    *k = 1;
    for (int32_t i = 1; i < x.ndim; ++i) *k *= x.shape[i];
  } else {
    *k = x.ndim ? x.shape[x.ndim - 1] : 1;
    *n = 1;
    for (int32_t i = 0; i + 1 < x.ndim; ++i) *n *= x.shape[i];
  }
}

template <typename T>
__global__ void rows_of_bias(const T *b, T *o, int64_t n, int64_t h) {
  LOOM_GRID_LOOP(i, n * h) o[i] = b[i % h];
}

int32_t k_fc(const loom_kernel_call *c) {
  const loom_backend_tensor &x = c->inputs[0], &w = c->inputs[1], &o = c->outputs[0];
  int64_t n, k, h = w.shape[0];
  fc_dims(c, x, &n, &k);
  bool bias = c->num_inputs > 2;
  LOOM_CUDA_FLOATS(x.dtype, T, return decline(c, std::string("dtype ") + dtype_str(x.dtype)), {
    T beta = T(0);
    if (bias) {
      rows_of_bias<T><<<grid_for(n * h), kThreads, 0, stream_of(c)>>>(static_cast<const T *>(c->inputs[2].data),
                                                                   static_cast<T *>(o.data), n, h);
      if (int32_t rc = launched(c)) return rc;
      beta = T(1);
    }
    return gemm<T>(c, false, true, n, h, k, T(1), static_cast<const T *>(x.data), k,
                   static_cast<const T *>(w.data), k, beta, static_cast<T *>(o.data), h);
  });
  return 0;
}

// db[j] = sum over rows of dy[i, j], in row order, in double.
template <typename T>
__global__ void column_sums(const T *dy, T *db, int64_t n, int64_t h, int32_t req) {
  LOOM_GRID_LOOP(j, h) {
    double a = 0;
    for (int64_t i = 0; i < n; ++i) a += double(dy[i * h + j]);
    store_req(db + j, req, static_cast<T>(a));
  }
}

// Inputs: x, w, [b], y, dy; outputs: dx, dw, [db].
int32_t k_fc_grad(const loom_kernel_call *c) {
  const loom_backend_tensor &x = c->inputs[0], &w = c->inputs[1];
  const loom_backend_tensor &dy = c->inputs[c->num_fwd_inputs + c->num_fwd_outputs];
  int64_t n, k, h = w.shape[0];
  fc_dims(c, x, &n, &k);
  LOOM_CUDA_FLOATS(x.dtype, T, return decline(c, std::string("dtype ") + dtype_str(x.dtype)), {
    const T *g = static_cast<const T *>(dy.data);
    if (c->req[0]) {
      T beta = c->req[0] == LOOM_REQ_ADD ? T(1) : T(0);
      if (int32_t rc = gemm<T>(c, false, false, n, k, h, T(1), g, h, static_cast<const T *>(w.data), k, beta,
                               static_cast<T *>(c->outputs[0].data), k))
        return rc;
    }
    if (c->req[1]) {
      T beta = c->req[1] == LOOM_REQ_ADD ? T(1) : T(0);
      if (int32_t rc = gemm<T>(c, true, false, h, k, n, T(1), g, h, static_cast<const T *>(x.data), k, beta,
                               static_cast<T *>(c->outputs[1].data), k))
        return rc;
    }
    if (c->num_outputs > 2 && c->req[2]) {
      column_sums<T><<<grid_for(h), kThreads, 0, stream_of(c)>>>(g, static_cast<T *>(c->outputs[2].data), n, h,
                                                                 c->req[2]);
      return launched(c);
    }
  });
  return 0;
}

// ------------------------------------------------------------ SoftmaxOutput
struct SmDims {
  int64_t outer, k, inner;
};

SmDims sm_dims(const loom_kernel_call *c, const loom_backend_tensor &x) {
  SmDims d{1, 1, 1};
  int64_t size = numel(x);
  if (param_i(c, "multi_output", 0)) {
    d.outer = x.shape[0];
    d.k = x.shape[1];
    for (int32_t i = 2; i < x.ndim; ++i) d.inner *= x.shape[i];
  } else if (param_i(c, "preserve_shape", 0)) {
    d.k = x.ndim ? x.shape[x.ndim - 1] : 1;
    d.outer = d.k ? size / d.k : 0;
  } else {
    d.outer = x.ndim ? x.shape[0] : 1;
    d.k = d.outer ? size / d.outer : 0;
  }
  return d;
}

// One thread per (outer, inner) position: the maximum, the exponentials'
// sum in double, then each output (the exponential computed again).
template <typename T>
__global__ void softmax_positions(const T *x, T *y, SmDims s) {
  LOOM_GRID_LOOP(idx, s.outer * s.inner) {
    int64_t o = idx / s.inner, j = idx % s.inner;
    const T *xr = x + o * s.k * s.inner + j;
    T *yr = y + o * s.k * s.inner + j;
    double mx = -INFINITY, sum = 0;
    for (int64_t c = 0; c < s.k; ++c) mx = fmax(mx, double(xr[c * s.inner]));
    for (int64_t c = 0; c < s.k; ++c) sum += exp(double(xr[c * s.inner]) - mx);
    for (int64_t c = 0; c < s.k; ++c) yr[c * s.inner] = static_cast<T>(exp(double(xr[c * s.inner]) - mx) / sum);
  }
}

// One block per row of k contiguous values (inner == 1), for wide rows.
template <typename T>
__global__ void softmax_rows(const T *x, T *y, int64_t k) {
  __shared__ double red[kThreads];
  const T *xr = x + blockIdx.x * k;
  T *yr = y + blockIdx.x * k;
  double mx = -INFINITY;
  for (int64_t c = threadIdx.x; c < k; c += blockDim.x) mx = fmax(mx, double(xr[c]));
  red[threadIdx.x] = mx;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) red[threadIdx.x] = fmax(red[threadIdx.x], red[threadIdx.x + s]);
    __syncthreads();
  }
  mx = red[0];
  __syncthreads();
  double sum = 0;
  for (int64_t c = threadIdx.x; c < k; c += blockDim.x) sum += exp(double(xr[c]) - mx);
  red[threadIdx.x] = sum;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
    __syncthreads();
  }
  sum = red[0];
  for (int64_t c = threadIdx.x; c < k; c += blockDim.x) yr[c] = static_cast<T>(exp(double(xr[c]) - mx) / sum);
}

template <typename T>
int32_t softmax_forward(const loom_kernel_call *c, const T *x, T *y, const SmDims &s) {
  if (s.outer * s.inner == 0 || s.k == 0) return 0;
  if (s.inner == 1 && s.k >= 64 && s.outer <= INT32_MAX)
    softmax_rows<T><<<unsigned(s.outer), kThreads, 0, stream_of(c)>>>(x, y, s.k);
  else
    softmax_positions<T><<<grid_for(s.outer * s.inner), kThreads, 0, stream_of(c)>>>(x, y, s);
  return launched(c);
}

int32_t k_softmax_output(const loom_kernel_call *c) {
  const loom_backend_tensor &x = c->inputs[0], &y = c->outputs[0];
  SmDims s = sm_dims(c, x);
  LOOM_CUDA_FLOATS(x.dtype, T, return decline(c, std::string("dtype ") + dtype_str(x.dtype)),
                   return softmax_forward<T>(c, static_cast<const T *>(x.data), static_cast<T *>(y.data), s));
  return 0;
}

// Labels checked and counted on the device: stats[0] = labels whose integer
// value differs from ignore_label, stats[1] = 1 + the first bad position (0: none).
template <typename T>
__global__ void label_stats(const T *lab, int64_t nlabels, int64_t used, int64_t k, int ignore, bool use_ignore,
                            unsigned long long *stats) {
  LOOM_GRID_LOOP(i, nlabels) {
    double l = double(lab[i]);
    bool ign = static_cast<int>(l) == ignore;
    if (!ign) atomicAdd(&stats[0], 1ull);
    if (i < used && !(use_ignore && ign) && !(l >= 0 && l < double(k) && l == floor(l)))
      atomicMin(&stats[1], static_cast<unsigned long long>(i) + 1);
  }
}

__global__ void init_stats(unsigned long long *stats) {
  stats[0] = 0;
  stats[1] = ~0ull;
}

struct SmGrad {
  SmDims s;
  double scale, alpha, smooth;
  int norm;  // 0 null, 1 batch, 2 valid
  bool multi, use_ignore;
  int ignore;
  int64_t nlabels;
};

template <typename T>
__global__ void softmax_output_grad(const T *y, const T *lab, const T *dy, T *dx, SmGrad a,
                                    const unsigned long long *stats, int32_t req, DeviceError *err) {
  // A label outside [0, k): the first such position is reported at the next wait.
  if (blockIdx.x == 0 && threadIdx.x == 0 && stats[1] != ~0ull) {
    const long long pos = static_cast<long long>(stats[1]) - 1;
    record_error(err, kErrLabel, pos, double(lab[pos]), double(a.s.k));
  }
  double count = 1;
  if (a.norm == 1) count = double(a.multi ? a.s.outer : a.nlabels);
  else if (a.norm == 2) count = double(stats[0] > 0 ? stats[0] : 1);
  double factor = a.scale / count;
  if (a.multi && a.norm != 2) factor /= double(a.s.inner);
  LOOM_GRID_LOOP(idx, a.s.outer * a.s.inner) {
    int64_t o = idx / a.s.inner, j = idx % a.s.inner;
    double l = double(lab[idx]);
    bool skip = a.use_ignore && static_cast<int>(l) == a.ignore;
    int64_t cls = static_cast<int64_t>(l);
    for (int64_t cc = 0; cc < a.s.k; ++cc) {
      int64_t at = (o * a.s.k + cc) * a.s.inner + j;
      double g = 0.0;
      if (!skip) g = (double(y[at]) - (cc == cls ? 1.0 - a.alpha : a.smooth)) * factor;
      store_req(dx + at, req, static_cast<T>(dy ? g * double(dy[at]) : g));
    }
  }
}

template <typename T>
__global__ void prob_label_grad(const T *y, const T *lab, const T *dy, T *dx, double scale, int64_t n, int32_t req) {
  LOOM_GRID_LOOP(i, n) {
    double g = (double(y[i]) - double(lab[i])) * scale;
    store_req(dx + i, req, static_cast<T>(dy ? g * double(dy[i]) : g));
  }
}

// Inputs: data, label, out, dy; outputs: ddata, dlabel.
int32_t k_softmax_output_grad(const loom_kernel_call *c) {
  const loom_backend_tensor &x = c->inputs[0], &lab = c->inputs[1], &y = c->inputs[2], &dyt = c->inputs[3];
  const double scale = param_f(c, "grad_scale", 1), alpha = param_f(c, "smooth_alpha", 0);
  const bool out_grad = param_i(c, "out_grad", 0) != 0;
  cudaStream_t st = stream_of(c);
  if (lab.dtype != x.dtype) return decline(c, "labels of another dtype");
  if (c->req[1] == LOOM_REQ_WRITE && numel(c->outputs[1]))
    if (check(cudaMemsetAsync(c->outputs[1].data, 0, size_t(numel(c->outputs[1])) * dtype_bytes(x.dtype), st),
              c->op))
      return 1;
  if (!c->req[0]) return 0;
  const int64_t total = numel(y);
  if (total == 0) return 0;
  LOOM_CUDA_FLOATS(x.dtype, T, return decline(c, std::string("dtype ") + dtype_str(x.dtype)), {
    const T *dy = out_grad ? static_cast<const T *>(dyt.data) : nullptr;
    if (same_shape(lab, x)) {
      prob_label_grad<T><<<grid_for(total), kThreads, 0, st>>>(static_cast<const T *>(y.data), static_cast<const T *>(lab.data),
                                                          dy, static_cast<T *>(c->outputs[0].data), scale, total, c->req[0]);
      return launched(c);
    }
    SmGrad a{};
    a.s = sm_dims(c, x);
    a.scale = scale;
    a.alpha = alpha;
    a.smooth = a.s.k > 1 ? alpha / double(a.s.k - 1) : 0.0;
    std::string norm = param_s(c, "normalization", "null");
    a.norm = norm == "batch" ? 1 : norm == "valid" ? 2 : 0;
    a.multi = param_i(c, "multi_output", 0) != 0;
    a.use_ignore = param_i(c, "use_ignore", 0) != 0;
    a.ignore = static_cast<int>(param_f(c, "ignore_label", -1));
    a.nlabels = numel(lab);
    const int64_t used = a.s.outer * a.s.inner;
    auto *stats = static_cast<unsigned long long *>(scratch(c->dev_id, 2 * sizeof(unsigned long long)));
    if (!stats) return fail(std::string(c->op) + ": no device memory for the label check");
    init_stats<<<1, 1, 0, st>>>(stats);  // not a copy from pageable memory: that would wait for the stream
    label_stats<T><<<grid_for(a.nlabels), kThreads, 0, st>>>(static_cast<const T *>(lab.data), a.nlabels, used, a.s.k,
                                                          a.ignore, a.use_ignore, stats);
    if (int32_t rc = launched(c)) return rc;
    // A label outside [0, k) is an error, as on the CPU; it is reported at the next wait
    // for the device rather than making the host wait here.
    softmax_output_grad<T><<<grid_for(used), kThreads, 0, st>>>(static_cast<const T *>(y.data), static_cast<const T *>(lab.data),
                                                             dy, static_cast<T *>(c->outputs[0].data), a, stats, c->req[0],
                                                             device_error(c->dev_id));
    return launched(c);
  });
  return 0;
}

// ------------------------------------------------------------ sum, mean
struct Red {
  int32_t nkept, nred;
  int64_t kept[kMaxDims], kept_stride[kMaxDims];  // extents and input strides of kept axes
  int64_t red[kMaxDims], red_stride[kMaxDims];    // of reduced axes
  int64_t count;                                  // reduced elements per output
};

// The reduced axes (sum and mean's axis, exclude): false for ranks over kMaxDims.
bool reduction_of(const loom_kernel_call *c, const loom_backend_tensor &x, Red *r) {
  if (x.ndim > kMaxDims) return false;
  std::vector<int64_t> axis;
  bool mark[kMaxDims] = {false};
  if (!param_tuple(c, "axis", &axis) || axis.empty()) {
    for (int32_t i = 0; i < x.ndim; ++i) mark[i] = true;
  } else {
    for (int64_t a : axis) mark[a < 0 ? a + x.ndim : a] = true;
    if (param_i(c, "exclude", 0))
      for (int32_t i = 0; i < x.ndim; ++i) mark[i] = !mark[i];
  }
  int64_t stride[kMaxDims];
  int64_t s = 1;
  for (int32_t i = x.ndim - 1; i >= 0; --i) {
    stride[i] = s;
    s *= x.shape[i];
  }
  r->nkept = r->nred = 0;
  r->count = 1;
  for (int32_t i = 0; i < x.ndim; ++i) {
    if (mark[i]) {
      r->red[r->nred] = x.shape[i];
      r->red_stride[r->nred++] = stride[i];
      r->count *= x.shape[i];
    } else {
      r->kept[r->nkept] = x.shape[i];
      r->kept_stride[r->nkept++] = stride[i];
    }
  }
  return true;
}

__device__ __forceinline__ int64_t kept_offset(const Red &r, int64_t o) {
  int64_t off = 0;
  for (int32_t k = r.nkept - 1; k >= 0; --k) {
    off += (o % r.kept[k]) * r.kept_stride[k];
    o /= r.kept[k];
  }
  return off;
}

// One block per output element. op: 0 sum, 1 mean, 2 prod, 3 max, 4 min
// (max and min: NaN wins, as on the CPU; an empty reduction gives 0).
__device__ __forceinline__ double red_apply(int op, double a, double v) {
  switch (op) {
    case 2: return a * v;
    case 3: return (v > a || v != v) ? v : a;
    case 4: return (v < a || v != v) ? v : a;
    default: return a + v;
  }
}

template <typename T>
__global__ void reduce_sum(const T *x, T *y, Red r, int64_t nout, int op) {
  __shared__ double part[kThreads];
  __shared__ int have[kThreads];
  for (int64_t o = blockIdx.x; o < nout; o += gridDim.x) {
    int64_t base = kept_offset(r, o);
    double acc = op == 2 ? 1.0 : 0.0;
    int got = 0;
    for (int64_t q = threadIdx.x; q < r.count; q += blockDim.x) {
      int64_t rem = q, off = base;
      for (int32_t k = r.nred - 1; k >= 0; --k) {
        off += (rem % r.red[k]) * r.red_stride[k];
        rem /= r.red[k];
      }
      double v = double(x[off]);
      acc = (op >= 3 && !got) ? v : red_apply(op, acc, v);
      got = 1;
    }
    part[threadIdx.x] = acc;
    have[threadIdx.x] = got;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
      if (threadIdx.x < s && have[threadIdx.x + s]) {
        part[threadIdx.x] = have[threadIdx.x] ? red_apply(op, part[threadIdx.x], part[threadIdx.x + s])
                                              : part[threadIdx.x + s];
        have[threadIdx.x] = 1;
      }
      __syncthreads();
    }
    if (threadIdx.x == 0) {
      double v = have[0] ? part[0] : 0.0;
      if (op == 1 && r.count) v /= double(r.count);
      y[o] = static_cast<T>(v);
    }
    __syncthreads();
  }
}

int32_t k_reduce(const loom_kernel_call *c) {
  const loom_backend_tensor &x = c->inputs[0], &y = c->outputs[0];
  Red r;
  if (!reduction_of(c, x, &r)) return decline(c, "rank " + std::to_string(x.ndim));
  int64_t nout = numel(y);
  if (nout == 0) return 0;
  const std::string name = c->op;
  const int op = name == "mean" ? 1 : name == "prod" ? 2 : name == "max" ? 3 : name == "min" ? 4 : 0;
  LOOM_CUDA_FLOATS(x.dtype, T, return decline(c, std::string("dtype ") + dtype_str(x.dtype)), {
    reduce_sum<T><<<unsigned(std::min<int64_t>(nout, 65536)), kThreads, 0, stream_of(c)>>>(
        static_cast<const T *>(x.data), static_cast<T *>(y.data), r, nout, op);
  });
  return launched(c);
}

// argmax, argmin: int64 indices along an axis (or of the flattened array);
// the first occurrence wins and NaN counts as the extreme.
template <typename T>
__global__ void arg_kernel(const T *a, int64_t *o, int64_t outer, int64_t mid, int64_t inner, bool is_max) {
  LOOM_GRID_LOOP(idx, outer * inner) {
    int64_t oo = idx / inner, j = idx % inner;
    const T *base = a + oo * mid * inner + j;
    int64_t best = 0;
    T bv = base[0];
    for (int64_t k = 1; k < mid; ++k) {
      T v = base[k * inner];
      if (bv != bv) break;
      if (v != v || (is_max ? v > bv : v < bv)) {
        bv = v;
        best = k;
      }
    }
    o[idx] = best;
  }
}

int32_t k_arg(const loom_kernel_call *c) {
  const loom_backend_tensor &x = c->inputs[0];
  int64_t outer = 1, mid = numel(x), inner = 1, ax = 0;
  if (g_host->param_int(c->params, "axis", &ax) == 0) {
    if (ax < 0) ax += x.ndim;
    if (ax < 0 || ax >= x.ndim) return decline(c, "axis");
    outer = 1;
    inner = 1;
    for (int32_t i = 0; i < ax; ++i) outer *= x.shape[i];
    mid = x.shape[ax];
    for (int32_t i = int32_t(ax) + 1; i < x.ndim; ++i) inner *= x.shape[i];
  }
  if (mid == 0 || outer * inner == 0) return 0;
  const bool is_max = std::strcmp(c->op, "argmax") == 0;
  LOOM_CUDA_FLOATS(x.dtype, T, return decline(c, std::string("dtype ") + dtype_str(x.dtype)),
                   arg_kernel<T><<<grid_for(outer * inner), kThreads, 0, stream_of(c)>>>(
                       static_cast<const T *>(x.data), static_cast<int64_t *>(c->outputs[0].data), outer, mid, inner,
                       is_max));
  return launched(c);
}

// dx[i] = dy[the output i reduces into] (divided by the count for mean).
template <typename T>
__global__ void reduce_grad(const T *dy, T *dx, Red r, int64_t n, int64_t ndim, Bcast shape, bool mean, int32_t req) {
  LOOM_GRID_LOOP(i, n) {
    // The output index: the input index's kept coordinates, row-major over kept extents.
    int64_t rem = i, o = 0, mul = 1;
    for (int64_t k = ndim - 1; k >= 0; --k) {
      int64_t idx = rem % shape.out[k];
      rem /= shape.out[k];
      if (shape.sa[k]) {  // a kept axis
        o += idx * mul;
        mul *= shape.out[k];
      }
    }
    double g = double(dy[o]);
    if (mean && r.count) g /= double(r.count);
    store_req(dx + i, req, static_cast<T>(g));
  }
}

// Inputs: x, y, dy; output dx.
int32_t k_reduce_grad(const loom_kernel_call *c) {
  const loom_backend_tensor &x = c->inputs[0], &dyt = c->inputs[2], &dx = c->outputs[0];
  if (!c->req[0]) return 0;
  Red r;
  if (!reduction_of(c, dx, &r)) return decline(c, "rank " + std::to_string(dx.ndim));
  (void)x;
  int64_t n = numel(dx);
  if (n == 0) return 0;
  // Which axes are kept, in the Bcast struct's arrays: out = extents, sa = 1 when kept.
  Bcast shape{};
  shape.ndim = dx.ndim;
  std::vector<int64_t> axis;
  bool mark[kMaxDims] = {false};
  if (!param_tuple(c, "axis", &axis) || axis.empty()) {
    for (int32_t i = 0; i < dx.ndim; ++i) mark[i] = true;
  } else {
    for (int64_t a : axis) mark[a < 0 ? a + dx.ndim : a] = true;
    if (param_i(c, "exclude", 0))
      for (int32_t i = 0; i < dx.ndim; ++i) mark[i] = !mark[i];
  }
  for (int32_t i = 0; i < dx.ndim; ++i) {
    shape.out[i] = dx.shape[i];
    shape.sa[i] = mark[i] ? 0 : 1;
  }
  bool mean = std::strcmp(c->op, "mean") == 0;
  LOOM_CUDA_FLOATS(dx.dtype, T, return decline(c, std::string("dtype ") + dtype_str(dx.dtype)),
                   reduce_grad<T><<<grid_for(n), kThreads, 0, stream_of(c)>>>(
                       static_cast<const T *>(dyt.data), static_cast<T *>(dx.data), r, n, dx.ndim, shape, mean, c->req[0]));
  return launched(c);
}

// ------------------------------------------------------------ optimizer updates
__device__ __forceinline__ double grad_of(double g, double rescale, double clip) {
  g *= rescale;
  if (clip >= 0) g = g > clip ? clip : (g < -clip ? -clip : g);
  return g;
}

struct Step {
  double lr, wd, rs, clip, mu, b1, b2, eps;
  bool nesterov;
};

template <typename T>
__global__ void sgd_kernel(Step s, const T *w, const T *g, T *o, int64_t n) {
  LOOM_GRID_LOOP(i, n) {
    double wi = double(w[i]);
    o[i] = static_cast<T>(wi - s.lr * (grad_of(double(g[i]), s.rs, s.clip) + s.wd * wi));
  }
}

template <typename T>
__global__ void sgd_mom_kernel(Step s, const T *w, const T *g, const T *m, T *ow, T *om, int64_t n) {
  LOOM_GRID_LOOP(i, n) {
    double wi = double(w[i]), step = grad_of(double(g[i]), s.rs, s.clip) + s.wd * wi;
    double mi = s.mu * double(m[i]) - s.lr * step;
    om[i] = static_cast<T>(mi);
    ow[i] = static_cast<T>(s.nesterov ? wi + s.mu * mi - s.lr * step : wi + mi);
  }
}

template <typename T>
__global__ void adam_kernel(Step s, const T *w, const T *g, const T *m, const T *v, T *ow, T *om, T *ov, int64_t n) {
  LOOM_GRID_LOOP(i, n) {
    double gi = grad_of(double(g[i]), s.rs, s.clip) + s.wd * double(w[i]);
    double mi = s.b1 * double(m[i]) + (1 - s.b1) * gi;
    double vi = s.b2 * double(v[i]) + (1 - s.b2) * gi * gi;
    om[i] = static_cast<T>(mi);
    ov[i] = static_cast<T>(vi);
    ow[i] = static_cast<T>(double(w[i]) - s.lr * mi / (sqrt(vi) + s.eps));
  }
}

Step step_of(const loom_kernel_call *c) {
  Step s{};
  s.lr = param_f(c, "lr", 0);
  s.wd = param_f(c, "wd", 0);
  s.rs = param_f(c, "rescale_grad", 1);
  s.clip = param_f(c, "clip_gradient", -1);
  s.mu = param_f(c, "momentum", 0);
  s.nesterov = param_i(c, "nesterov", 0) != 0;
  s.b1 = param_f(c, "beta1", 0.9);
  s.b2 = param_f(c, "beta2", 0.999);
  s.eps = param_f(c, "epsilon", 1e-8);
  return s;
}

template <typename T>
const T *cin(const loom_kernel_call *c, int i) { return static_cast<const T *>(c->inputs[i].data); }
template <typename T>
T *outp(const loom_kernel_call *c, int i) { return static_cast<T *>(c->outputs[i].data); }

int32_t k_sgd(const loom_kernel_call *c) {
  int64_t n = numel(c->inputs[0]);
  if (n == 0) return 0;
  Step s = step_of(c);
  LOOM_CUDA_FLOATS(c->inputs[0].dtype, T, return decline(c, "dtype"),
                   sgd_kernel<T><<<grid_for(n), kThreads, 0, stream_of(c)>>>(s, cin<T>(c, 0), cin<T>(c, 1), outp<T>(c, 0), n));
  return launched(c);
}

int32_t k_sgd_mom(const loom_kernel_call *c) {
  int64_t n = numel(c->inputs[0]);
  if (n == 0) return 0;
  Step s = step_of(c);
  LOOM_CUDA_FLOATS(c->inputs[0].dtype, T, return decline(c, "dtype"),
                   sgd_mom_kernel<T><<<grid_for(n), kThreads, 0, stream_of(c)>>>(
                       s, cin<T>(c, 0), cin<T>(c, 1), cin<T>(c, 2), outp<T>(c, 0), outp<T>(c, 1), n));
  return launched(c);
}

int32_t k_adam(const loom_kernel_call *c) {
  int64_t n = numel(c->inputs[0]);
  if (n == 0) return 0;
  Step s = step_of(c);
  int64_t t = param_i(c, "t", 0);
  if (t > 0) s.lr *= std::sqrt(1 - std::pow(s.b2, double(t))) / (1 - std::pow(s.b1, double(t)));
  LOOM_CUDA_FLOATS(c->inputs[0].dtype, T, return decline(c, "dtype"),
                   adam_kernel<T><<<grid_for(n), kThreads, 0, stream_of(c)>>>(
                       s, cin<T>(c, 0), cin<T>(c, 1), cin<T>(c, 2), cin<T>(c, 3), outp<T>(c, 0), outp<T>(c, 1),
                       outp<T>(c, 2), n));
  return launched(c);
}

// ------------------------------------------------------------ Pooling (2-D)
struct Pool {
  int64_t n, c, h, w, oh, ow, kh, kw, sh, sw, ph, pw;
  int type;  // 0 max, 1 avg, 2 sum
  bool include_pad;
};

// The Geometry of conv.cc for 2-D pooling: false where the CPU path should decide.
bool pool_of(const loom_kernel_call *c, const loom_backend_tensor &x, const loom_backend_tensor &y, Pool *p) {
  if (x.ndim != 4 || y.ndim != 4) return false;
  std::string t = param_s(c, "pool_type", "max");
  p->type = t == "max" ? 0 : t == "avg" ? 1 : t == "sum" ? 2 : -1;
  if (p->type < 0) return false;
  p->include_pad = param_i(c, "count_include_pad", 1) != 0;
  p->n = x.shape[0];
  p->c = x.shape[1];
  p->h = x.shape[2];
  p->w = x.shape[3];
  p->oh = y.shape[2];
  p->ow = y.shape[3];
  if (param_i(c, "global_pool", 0)) {
    p->kh = p->h;
    p->kw = p->w;
    p->sh = p->sw = 1;
    p->ph = p->pw = 0;
    return true;
  }
  std::vector<int64_t> k, s, pad;
  if (!param_tuple(c, "kernel", &k) || k.size() != 2) return false;
  p->kh = k[0];
  p->kw = k[1];
  p->sh = p->sw = 1;
  p->ph = p->pw = 0;
  if (param_tuple(c, "stride", &s) && !s.empty()) {
    if (s.size() != 2) return false;
    p->sh = s[0];
    p->sw = s[1];
  }
  if (param_tuple(c, "pad", &pad) && !pad.empty()) {
    if (pad.size() != 2) return false;
    p->ph = pad[0];
    p->pw = pad[1];
  }
  return true;
}

__device__ __forceinline__ int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
__device__ __forceinline__ int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }

__device__ __forceinline__ double pool_window(const Pool &g, int64_t oi, int64_t oj, int64_t *i0, int64_t *i1,
                                              int64_t *j0, int64_t *j1) {
  *i0 = oi * g.sh - g.ph;
  *j0 = oj * g.sw - g.pw;
  int64_t pad_area = (imin(*i0 + g.kh, g.h + g.ph) - *i0) * (imin(*j0 + g.kw, g.w + g.pw) - *j0);
  *i1 = imin(*i0 + g.kh, g.h);
  *j1 = imin(*j0 + g.kw, g.w);
  *i0 = imax(*i0, 0);
  *j0 = imax(*j0, 0);
  return double(g.include_pad ? pad_area : imax(*i1 - *i0, 0) * imax(*j1 - *j0, 0));
}

template <typename T>
__device__ __forceinline__ T lowest() {
  return std::is_same<T, float>::value ? T(-3.402823466e+38f) : T(-1.7976931348623157e+308);
}

template <typename T>
__global__ void pool_forward(const T *x, T *y, Pool g) {
  LOOM_GRID_LOOP(idx, g.n * g.c * g.oh * g.ow) {
    int64_t oj = idx % g.ow, oi = (idx / g.ow) % g.oh, nc = idx / (g.ow * g.oh);
    const T *xp = x + nc * g.h * g.w;
    int64_t i0, i1, j0, j1;
    double area = pool_window(g, oi, oj, &i0, &i1, &j0, &j1);
    if (g.type == 0) {
      T m = lowest<T>();
      for (int64_t i = i0; i < i1; ++i)
        for (int64_t j = j0; j < j1; ++j) {
          T v = xp[i * g.w + j];
          if (v > m) m = v;
        }
      y[idx] = m;
    } else {
      double acc = 0.0;
      for (int64_t i = i0; i < i1; ++i)
        for (int64_t j = j0; j < j1; ++j) acc += double(xp[i * g.w + j]);
      if (g.type == 1) acc = area > 0 ? acc / area : 0.0;
      y[idx] = static_cast<T>(acc);
    }
  }
}

int32_t k_pooling(const loom_kernel_call *c) {
  const loom_backend_tensor &x = c->inputs[0], &y = c->outputs[0];
  Pool g;
  if (!pool_of(c, x, y, &g)) return decline(c, "pooling of data " + shape_str(x));
  int64_t n = numel(y);
  if (n == 0) return 0;
  LOOM_CUDA_FLOATS(x.dtype, T, return decline(c, "dtype"),
                   pool_forward<T><<<grid_for(n), kThreads, 0, stream_of(c)>>>(static_cast<const T *>(x.data),
                                                                            static_cast<T *>(y.data), g));
  return launched(c);
}

// Max: each output's gradient goes to the first cell (row-major) equal to the
// window's maximum, as the CPU's scan picks it; average and sum share it out.
template <typename T>
__global__ void pool_backward(const T *x, const T *dy, T *dx, Pool g) {
  LOOM_GRID_LOOP(idx, g.n * g.c * g.oh * g.ow) {
    int64_t oj = idx % g.ow, oi = (idx / g.ow) % g.oh, nc = idx / (g.ow * g.oh);
    const T *xp = x + nc * g.h * g.w;
    T *dxp = dx + nc * g.h * g.w;
    int64_t i0, i1, j0, j1;
    double area = pool_window(g, oi, oj, &i0, &i1, &j0, &j1);
    T gy = dy[idx];
    if (g.type == 0) {
      T m = lowest<T>();
      int64_t at = -1;
      for (int64_t i = i0; i < i1; ++i)
        for (int64_t j = j0; j < j1; ++j) {
          T v = xp[i * g.w + j];
          if (v > m) m = v;
        }
      for (int64_t i = i0; i < i1 && at < 0; ++i)
        for (int64_t j = j0; j < j1; ++j)
          if (xp[i * g.w + j] == m) {
            at = i * g.w + j;
            break;
          }
      if (at >= 0) atomicAdd(dxp + at, gy);
    } else {
      double share = g.type == 1 ? (area > 0 ? double(gy) / area : 0.0) : double(gy);
      for (int64_t i = i0; i < i1; ++i)
        for (int64_t j = j0; j < j1; ++j) atomicAdd(dxp + i * g.w + j, static_cast<T>(share));
    }
  }
}

// Inputs: x, y, dy; output dx.
int32_t k_pooling_grad(const loom_kernel_call *c) {
  const loom_backend_tensor &x = c->inputs[0], &y = c->inputs[1], &dy = c->inputs[2], &dx = c->outputs[0];
  if (!c->req[0]) return 0;
  if (c->req[0] != LOOM_REQ_WRITE) return decline(c, "adding a pooling gradient");
  Pool g;
  if (!pool_of(c, x, y, &g)) return decline(c, "pooling of data " + shape_str(x));
  int64_t n = numel(dy);
  LOOM_CUDA_FLOATS(x.dtype, T, return decline(c, "dtype"), {
    if (check(cudaMemsetAsync(dx.data, 0, size_t(numel(dx)) * sizeof(T), stream_of(c)), c->op)) return 1;
    if (n == 0) return 0;
    pool_backward<T><<<grid_for(n), kThreads, 0, stream_of(c)>>>(static_cast<const T *>(x.data),
                                                              static_cast<const T *>(dy.data),
                                                              static_cast<T *>(dx.data), g);
  });
  return launched(c);
}


// ------------------------------------------------------------ BatchNorm
// Each channel's cells are cut into `split` slices; a block sums one slice of
// one channel in double (grid channels x split), a second kernel combines a
// channel's slices, and an elementwise kernel writes the outputs. The batch's
// variance is the mean square less the squared mean, in double. The moving
// statistics take the batch's in the backward pass (MXNet 1.9's CPU operator).
__device__ double block_sum(double v, double *sh) {
  sh[threadIdx.x] = v;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
    __syncthreads();
  }
  double r = sh[0];
  __syncthreads();
  return r;
}

struct BnArgs {
  int64_t outer, c, inner, split;
  double eps, momentum;
  bool fix, batch;
};

__device__ __forceinline__ int64_t bn_at(const BnArgs &a, int64_t ch, int64_t q) {
  return (q / a.inner) * a.c * a.inner + ch * a.inner + q % a.inner;
}

// part[(ch * split + s) * 4 + k]: sums over slice s of channel ch of x, x^2,
// dy and dy * x (the last two when dy is given).
template <typename T>
__global__ void bn_partial(const T *x, const T *dy, double *part, BnArgs a) {
  __shared__ double sh[kThreads];
  const int64_t ch = blockIdx.x, s = blockIdx.y, m = a.outer * a.inner;
  const int64_t per = (m + a.split - 1) / a.split, q0 = s * per, q1 = q0 + per < m ? q0 + per : m;
  double sx = 0, sxx = 0, sg = 0, sgx = 0;
  for (int64_t q = q0 + threadIdx.x; q < q1; q += blockDim.x) {
    const int64_t i = bn_at(a, ch, q);
    const double v = double(x[i]);
    sx += v;
    sxx += v * v;
    if (dy) {
      const double g = double(dy[i]);
      sg += g;
      sgx += g * v;
    }
  }
  double *o = part + (ch * a.split + s) * 4;
  sx = block_sum(sx, sh);
  sxx = block_sum(sxx, sh);
  if (dy) {
    sg = block_sum(sg, sh);
    sgx = block_sum(sgx, sh);
  }
  if (threadIdx.x == 0) {
    o[0] = sx;
    o[1] = sxx;
    o[2] = sg;
    o[3] = sgx;
  }
}

// Forward, per channel: the statistics used, then y = x * coef[0] + coef[1].
template <typename T>
__global__ void bn_forward_coef(const double *part, T *gamma, const T *beta, const T *mm, const T *mv, double *coef,
                                T *out_mean, T *out_invstd, BnArgs a) {
  LOOM_GRID_LOOP(ch, a.c) {
    const double m = double(a.outer * a.inner > 0 ? a.outer * a.inner : 1);
    double mean, var;
    if (a.batch) {
      double sx = 0, sxx = 0;
      for (int64_t s = 0; s < a.split; ++s) {
        sx += part[(ch * a.split + s) * 4];
        sxx += part[(ch * a.split + s) * 4 + 1];
      }
      mean = sx / m;
      var = sxx / m - mean * mean;
      if (var < 0) var = 0;
    } else {
      mean = double(mm[ch]);
      var = double(mv[ch]);
    }
    if (a.fix && gamma[ch] != T(1)) gamma[ch] = T(1);
    const double g = a.fix ? 1.0 : double(gamma[ch]);
    const double invstd = 1 / sqrt(var + a.eps), scale = g * invstd;
    coef[ch * 2] = scale;
    coef[ch * 2 + 1] = double(beta[ch]) - mean * scale;
    if (out_mean) {
      out_mean[ch] = static_cast<T>(mean);
      out_invstd[ch] = static_cast<T>(invstd);
    }
  }
}

template <typename T>
__global__ void bn_apply(const T *x, T *y, const double *coef, BnArgs a, int64_t n) {
  LOOM_GRID_LOOP(i, n) {
    const int64_t ch = (i / a.inner) % a.c;
    y[i] = static_cast<T>(double(x[i]) * coef[ch * 2] + coef[ch * 2 + 1]);
  }
}

bool bn_dims(const loom_kernel_call *c, const loom_backend_tensor &x, BnArgs *a) {
  int64_t ax = param_i(c, "axis", 1);
  if (ax < 0) ax += x.ndim;
  if (ax < 0 || ax >= x.ndim) return false;
  a->outer = a->inner = 1;
  for (int32_t i = 0; i < ax; ++i) a->outer *= x.shape[i];
  a->c = x.shape[ax];
  for (int32_t i = int32_t(ax) + 1; i < x.ndim; ++i) a->inner *= x.shape[i];
  a->eps = param_f(c, "eps", 1e-3);
  a->momentum = param_f(c, "momentum", 0.9);
  a->fix = param_i(c, "fix_gamma", 1) != 0;
  a->batch = c->is_train && !param_i(c, "use_global_stats", 0);
  // About 1024 blocks in all, each slice at least 2048 cells.
  const int64_t m = a->outer * a->inner;
  int64_t split = a->c > 0 ? (1024 + a->c - 1) / a->c : 1;
  const int64_t most = (m + 2047) / 2048;
  if (split > most) split = most;
  a->split = split < 1 ? 1 : (split > 1024 ? 1024 : split);
  return a->c > 0 && a->c <= INT32_MAX;
}

// Inputs: data, gamma, beta, moving_mean, moving_var; outputs: out[, mean, invstd].
int32_t k_batchnorm(const loom_kernel_call *c) {
  const loom_backend_tensor &x = c->inputs[0];
  BnArgs a;
  if (!bn_dims(c, x, &a)) return decline(c, "data " + shape_str(x));
  const int64_t n = numel(x);
  const size_t part_doubles = size_t(a.c * a.split * 4), coef_doubles = size_t(a.c * 2);
  double *buf = static_cast<double *>(scratch(c->dev_id, (part_doubles + coef_doubles) * sizeof(double)));
  if (!buf) return fail("BatchNorm: no device memory for the statistics");
  double *part = buf, *coef = buf + part_doubles;
  cudaStream_t st = stream_of(c);
  LOOM_CUDA_FLOATS(x.dtype, T, return decline(c, std::string("dtype ") + dtype_str(x.dtype)), {
    if (a.batch && n) {
      bn_partial<T><<<dim3(unsigned(a.c), unsigned(a.split)), kThreads, 0, st>>>(cin<T>(c, 0), nullptr, part, a);
      if (int32_t rc = launched(c)) return rc;
    } else if (a.batch) {  // no cells: mean and variance 0, as on the CPU
      if (check(cudaMemsetAsync(part, 0, part_doubles * sizeof(double), st), c->op)) return 1;
    }
    bn_forward_coef<T><<<grid_for(a.c), kThreads, 0, st>>>(
        part, static_cast<T *>(c->inputs[1].data), cin<T>(c, 2), cin<T>(c, 3), cin<T>(c, 4), coef,
        c->num_outputs > 2 ? outp<T>(c, 1) : nullptr, c->num_outputs > 2 ? outp<T>(c, 2) : nullptr, a);
    if (int32_t rc = launched(c)) return rc;
    if (n) bn_apply<T><<<grid_for(n), kThreads, 0, st>>>(cin<T>(c, 0), outp<T>(c, 0), coef, a, n);
  });
  return launched(c);
}

// Backward, per channel: the statistics, the gradients of gamma and beta, the
// moving statistics' update, and dx = coef[0] * dy + coef[1] * x + coef[2].
template <typename T>
__global__ void bn_backward_coef(const double *part, const T *gamma, T *mm, T *mv, T *dgamma, T *dbeta, double *coef,
                                 BnArgs a, int32_t rg, int32_t rb) {
  LOOM_GRID_LOOP(ch, a.c) {
    const double m = double(a.outer * a.inner > 0 ? a.outer * a.inner : 1);
    double sx = 0, sxx = 0, sg = 0, sgx = 0;
    for (int64_t s = 0; s < a.split; ++s) {
      const double *p = part + (ch * a.split + s) * 4;
      sx += p[0];
      sxx += p[1];
      sg += p[2];
      sgx += p[3];
    }
    double mu, var = 0, invstd;
    if (a.batch) {
      mu = sx / m;
      var = sxx / m - mu * mu;
      if (var < 0) var = 0;
      invstd = 1 / sqrt(var + a.eps);
    } else {
      mu = double(mm[ch]);
      invstd = 1 / sqrt(double(mv[ch]) + a.eps);
    }
    const double sdy = sg, sdyx = (sgx - mu * sg) * invstd;  // sum dy * (x - mu) * invstd
    const double g = a.fix ? 1.0 : double(gamma[ch]);
    if (a.batch) {
      // g invstd (dy - sdy/m - (x - mu) invstd sdyx/m)
      const double k1 = g * invstd, k2 = k1 * invstd * sdyx / m;
      coef[ch * 3] = k1;
      coef[ch * 3 + 1] = -k2;
      coef[ch * 3 + 2] = -k1 * sdy / m + k2 * mu;
    } else {
      coef[ch * 3] = g * invstd;
      coef[ch * 3 + 1] = 0;
      coef[ch * 3 + 2] = 0;
    }
    if (rg) store_req(dgamma + ch, rg, static_cast<T>(a.fix ? 0.0 : sdyx));
    if (rb) store_req(dbeta + ch, rb, static_cast<T>(sdy));
    if (a.batch) {
      mm[ch] = static_cast<T>(a.momentum * double(mm[ch]) + (1 - a.momentum) * mu);
      mv[ch] = static_cast<T>(a.momentum * double(mv[ch]) + (1 - a.momentum) * var);
    }
  }
}

template <typename T>
__global__ void bn_apply_grad(const T *x, const T *dy, T *dx, const double *coef, BnArgs a, int64_t n, int32_t req) {
  LOOM_GRID_LOOP(i, n) {
    const int64_t ch = (i / a.inner) % a.c;
    const double *k = coef + ch * 3;
    store_req(dx + i, req, static_cast<T>(k[0] * double(dy[i]) + k[1] * double(x[i]) + k[2]));
  }
}

// Inputs: data, gamma, beta, moving_mean, moving_var, the outputs, dy (and
// the gradients of mean and invstd, unused); outputs: ddata, dgamma, dbeta.
int32_t k_batchnorm_grad(const loom_kernel_call *c) {
  const loom_backend_tensor &x = c->inputs[0];
  const loom_backend_tensor &dy = c->inputs[c->num_fwd_inputs + c->num_fwd_outputs];
  BnArgs a;
  if (!bn_dims(c, x, &a)) return decline(c, "data " + shape_str(x));
  int32_t r[3] = {0, 0, 0};
  for (int32_t i = 0; i < c->num_outputs && i < 3; ++i) r[i] = c->req[i];
  const int64_t n = numel(x);
  const size_t part_doubles = size_t(a.c * a.split * 4), coef_doubles = size_t(a.c * 3);
  double *buf = static_cast<double *>(scratch(c->dev_id, (part_doubles + coef_doubles) * sizeof(double)));
  if (!buf) return fail("BatchNorm (gradient): no device memory for the sums");
  double *part = buf, *coef = buf + part_doubles;
  cudaStream_t st = stream_of(c);
  LOOM_CUDA_FLOATS(x.dtype, T, return decline(c, std::string("dtype ") + dtype_str(x.dtype)), {
    if (n) {
      bn_partial<T><<<dim3(unsigned(a.c), unsigned(a.split)), kThreads, 0, st>>>(cin<T>(c, 0), static_cast<const T *>(dy.data),
                                                                               part, a);
    } else {
      if (check(cudaMemsetAsync(part, 0, part_doubles * sizeof(double), st), c->op)) return 1;
    }
    if (int32_t rc = launched(c)) return rc;
    bn_backward_coef<T><<<grid_for(a.c), kThreads, 0, st>>>(
        part, cin<T>(c, 1), static_cast<T *>(c->inputs[3].data), static_cast<T *>(c->inputs[4].data),
        c->num_outputs > 1 ? outp<T>(c, 1) : nullptr, c->num_outputs > 2 ? outp<T>(c, 2) : nullptr, coef, a, r[1], r[2]);
    if (int32_t rc = launched(c)) return rc;
    if (n && r[0])
      bn_apply_grad<T><<<grid_for(n), kThreads, 0, st>>>(cin<T>(c, 0), static_cast<const T *>(dy.data), outp<T>(c, 0),
                                                         coef, a, n, r[0]);
  });
  return launched(c);
}

// ------------------------------------------------------------ dot, batch_dot
// dot: lhs (..., k) x rhs (k, ...), transposes for 2-D operands, N-D operands
// as the (m, k) x (k, n) product of their flattened forms (the CPU's dot_dims).
struct Mnk {
  int64_t m, n, k;
};

Mnk dot_mnk(bool ta, bool tb, const loom_backend_tensor &a, const loom_backend_tensor &b) {
  Mnk d;
  d.k = ta ? a.shape[0] : a.shape[a.ndim - 1];
  d.m = 1;
  d.n = 1;
  if (ta) d.m = a.shape[1];
  else
    for (int32_t i = 0; i + 1 < a.ndim; ++i) d.m *= a.shape[i];
  if (tb) d.n = b.shape[0];
  else
    for (int32_t i = 1; i < b.ndim; ++i) d.n *= b.shape[i];
  return d;
}

template <typename T>
int32_t matmul_backward(const loom_kernel_call *c, bool ta, bool tb, int64_t m, int64_t n, int64_t k, const T *a,
                        const T *b, const T *g, T *da, int32_t ra, T *db, int32_t rb) {
  if (da && ra) {
    const T beta = ra == LOOM_REQ_ADD ? T(1) : T(0);
    int32_t rc = !ta ? gemm<T>(c, false, !tb, m, k, n, T(1), g, n, b, tb ? k : n, beta, da, k)
                     : gemm<T>(c, tb, true, k, m, n, T(1), b, tb ? k : n, g, n, beta, da, m);
    if (rc) return rc;
  }
  if (db && rb) {
    const T beta = rb == LOOM_REQ_ADD ? T(1) : T(0);
    int32_t rc = !tb ? gemm<T>(c, !ta, false, k, n, m, T(1), a, ta ? m : k, g, n, beta, db, n)
                     : gemm<T>(c, true, ta, n, k, m, T(1), g, n, a, ta ? m : k, beta, db, k);
    if (rc) return rc;
  }
  return 0;
}

int32_t k_dot(const loom_kernel_call *c) {
  const bool ta = param_i(c, "transpose_a", 0) != 0, tb = param_i(c, "transpose_b", 0) != 0;
  const loom_backend_tensor &a = c->inputs[0], &b = c->inputs[1];
  Mnk d = dot_mnk(ta, tb, a, b);
  LOOM_CUDA_FLOATS(a.dtype, T, return decline(c, std::string("dtype ") + dtype_str(a.dtype)),
                   return gemm<T>(c, ta, tb, d.m, d.n, d.k, T(1), cin<T>(c, 0), ta ? d.m : d.k, cin<T>(c, 1),
                                  tb ? d.k : d.n, T(0), outp<T>(c, 0), d.n));
  return 0;
}

// Inputs: lhs, rhs, out, dy; outputs: dlhs, drhs.
int32_t k_dot_grad(const loom_kernel_call *c) {
  const bool ta = param_i(c, "transpose_a", 0) != 0, tb = param_i(c, "transpose_b", 0) != 0;
  const loom_backend_tensor &a = c->inputs[0], &b = c->inputs[1];
  Mnk d = dot_mnk(ta, tb, a, b);
  LOOM_CUDA_FLOATS(a.dtype, T, return decline(c, std::string("dtype ") + dtype_str(a.dtype)),
                   return matmul_backward<T>(c, ta, tb, d.m, d.n, d.k, cin<T>(c, 0), cin<T>(c, 1), cin<T>(c, 3),
                                             outp<T>(c, 0), c->req[0], outp<T>(c, 1), c->req[1]));
  return 0;
}

int32_t k_batch_dot(const loom_kernel_call *c) {
  const bool ta = param_i(c, "transpose_a", 0) != 0, tb = param_i(c, "transpose_b", 0) != 0;
  const loom_backend_tensor &a = c->inputs[0], &o = c->outputs[0];
  const int64_t B = o.shape[0], m = o.shape[1], n = o.shape[2], k = ta ? a.shape[1] : a.shape[2];
  LOOM_CUDA_FLOATS(a.dtype, T, return decline(c, std::string("dtype ") + dtype_str(a.dtype)), {
    for (int64_t i = 0; i < B; ++i)
      if (int32_t rc = gemm<T>(c, ta, tb, m, n, k, T(1), cin<T>(c, 0) + i * m * k, ta ? m : k,
                               cin<T>(c, 1) + i * k * n, tb ? k : n, T(0), outp<T>(c, 0) + i * m * n, n))
        return rc;
  });
  return 0;
}

int32_t k_batch_dot_grad(const loom_kernel_call *c) {
  const bool ta = param_i(c, "transpose_a", 0) != 0, tb = param_i(c, "transpose_b", 0) != 0;
  const loom_backend_tensor &a = c->inputs[0], &g = c->inputs[3];
  const int64_t B = g.shape[0], m = g.shape[1], n = g.shape[2], k = ta ? a.shape[1] : a.shape[2];
  LOOM_CUDA_FLOATS(a.dtype, T, return decline(c, std::string("dtype ") + dtype_str(a.dtype)), {
    for (int64_t i = 0; i < B; ++i)
      if (int32_t rc = matmul_backward<T>(c, ta, tb, m, n, k, cin<T>(c, 0) + i * m * k, cin<T>(c, 1) + i * k * n,
                                          cin<T>(c, 3) + i * m * n, outp<T>(c, 0) + i * m * k, c->req[0],
                                          outp<T>(c, 1) + i * k * n, c->req[1]))
        return rc;
  });
  return 0;
}

}  // namespace

void register_nn(KernelMap &f, KernelMap &b) {
  LOOM_CUDA_REG(f, "FullyConnected", k_fc);
  LOOM_CUDA_REG(b, "FullyConnected", k_fc_grad);
  LOOM_CUDA_REG(f, "SoftmaxOutput", k_softmax_output);
  LOOM_CUDA_REG(b, "SoftmaxOutput", k_softmax_output_grad);
  LOOM_CUDA_REG(f, "sum", k_reduce);
  LOOM_CUDA_REG(f, "mean", k_reduce);
  LOOM_CUDA_REG(f, "prod", k_reduce);
  LOOM_CUDA_REG(f, "max", k_reduce);
  LOOM_CUDA_REG(f, "min", k_reduce);
  LOOM_CUDA_REG(f, "argmax", k_arg);
  LOOM_CUDA_REG(f, "argmin", k_arg);
  LOOM_CUDA_REG(b, "sum", k_reduce_grad);
  LOOM_CUDA_REG(b, "mean", k_reduce_grad);
  LOOM_CUDA_REG(f, "sgd_update", k_sgd);
  LOOM_CUDA_REG(f, "sgd_mom_update", k_sgd_mom);
  LOOM_CUDA_REG(f, "adam_update", k_adam);
  LOOM_CUDA_REG(f, "Pooling", k_pooling);
  LOOM_CUDA_REG(b, "Pooling", k_pooling_grad);
  LOOM_CUDA_REG(f, "dot", k_dot);
  LOOM_CUDA_REG(b, "dot", k_dot_grad);
  LOOM_CUDA_REG(f, "batch_dot", k_batch_dot);
  LOOM_CUDA_REG(b, "batch_dot", k_batch_dot_grad);
  LOOM_CUDA_REG(f, "BatchNorm", k_batchnorm);
  LOOM_CUDA_REG(b, "BatchNorm", k_batchnorm_grad);
}

}  // namespace loomcuda
