// CUDA kernels of the data-movement, metric and training-loop ops: take, clip,
// softmax and log_softmax, the aggregated SGD updates, all_finite and
// accuracy_count, each following its CPU kernel (native/src/ops/tensor,
// reduce, metric, optimizer).
#include "common.cuh"

#include <cstdlib>
#include <cstring>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace loomcuda {
namespace {

template <typename T>
const T *in_ptr(const loom_kernel_call *c, int i) { return static_cast<const T *>(c->inputs[i].data); }
template <typename T>
T *out_ptr(const loom_kernel_call *c, int i) { return static_cast<T *>(c->outputs[i].data); }

std::string what(int32_t dtype) { return std::string("dtype ") + dtype_str(dtype); }

// ------------------------------------------------------------ take
struct Take {
  int64_t outer, n, inner, nidx;
  bool wrap;
};

bool take_of(const loom_kernel_call *c, const loom_backend_tensor &data, const loom_backend_tensor &idx, Take *t) {
  if (param_s(c, "mode", "clip") == "raise") return false;  // the CPU reports the bad index
  int64_t ax = param_i(c, "axis", 0);
  if (ax < 0) ax += data.ndim;
  if (ax < 0 || ax >= data.ndim) return false;
  t->outer = t->inner = 1;
  for (int32_t i = 0; i < ax; ++i) t->outer *= data.shape[i];
  t->n = data.shape[ax];
  for (int32_t i = int32_t(ax) + 1; i < data.ndim; ++i) t->inner *= data.shape[i];
  t->nidx = numel(idx);
  t->wrap = param_s(c, "mode", "clip") == "wrap";
  return t->n > 0;
}

// The slice an index value names: truncated, then clipped or wrapped (NaN: the CPU's error).
template <typename I>
__device__ __forceinline__ int64_t take_row(I v, const Take &t) {
  double d = double(v), lim = 9.0e18;
  int64_t j = static_cast<int64_t>(d < -lim ? -lim : (d > lim ? lim : d));
  if (t.wrap) {
    j %= t.n;
    return j < 0 ? j + t.n : j;
  }
  return j < 0 ? 0 : (j >= t.n ? t.n - 1 : j);
}

template <typename T, typename I>
__global__ void take_kernel(const T *data, const I *idx, T *out, Take t) {
  LOOM_GRID_LOOP(q, t.outer * t.nidx * t.inner) {
    int64_t k = q % t.inner, i = (q / t.inner) % t.nidx, o = q / (t.inner * t.nidx);
    out[q] = data[(o * t.n + take_row(idx[i], t)) * t.inner + k];
  }
}

// The first NaN index's position (atomicMin from all ones: none).
template <typename I>
__global__ void first_nan(const I *idx, int64_t n, unsigned long long *first) {
  LOOM_GRID_LOOP(i, n) if (idx[i] != idx[i]) atomicMin(first, static_cast<unsigned long long>(i));
}

__global__ void report_nan(const unsigned long long *first, DeviceError *err, double n) {
  if (*first != ~0ull) record_error(err, kErrIndex, static_cast<long long>(*first), NAN, n);
}

int32_t k_take(const loom_kernel_call *c) {
  const loom_backend_tensor &data = c->inputs[0], &idx = c->inputs[1], &out = c->outputs[0];
  Take t;
  if (!take_of(c, data, idx, &t)) return decline(c, "mode raise or an empty axis");
  int64_t n = numel(out);
  if (n == 0) return 0;
  if (idx.dtype == LOOM_DTYPE_FLOAT32 || idx.dtype == LOOM_DTYPE_FLOAT64) {
    // A NaN index is an error, as on the CPU: reported at the next wait for the device.
    auto *first = static_cast<unsigned long long *>(scratch(c->dev_id, sizeof(unsigned long long)));
    if (!first) return fail("take: no device memory for the index check");
    if (check(cudaMemsetAsync(first, 0xff, sizeof(unsigned long long), stream_of(c)), c->op)) return 1;
    LOOM_CUDA_FLOATS(idx.dtype, I, return 1,
                     first_nan<I><<<grid_for(t.nidx), kThreads, 0, stream_of(c)>>>(static_cast<const I *>(idx.data), t.nidx, first));
    report_nan<<<1, 1, 0, stream_of(c)>>>(first, device_error(c->dev_id), double(t.n));
    if (int32_t rc = launched(c)) return rc;
  }
  LOOM_CUDA_ALL(data.dtype, T, return decline(c, what(data.dtype)),
    LOOM_CUDA_ALL(idx.dtype, I, return decline(c, what(idx.dtype)),
      take_kernel<T, I><<<grid_for(n), kThreads, 0, stream_of(c)>>>(static_cast<const T *>(data.data),
                                                                  static_cast<const I *>(idx.data),
                                                                  static_cast<T *>(out.data), t)));
  return launched(c);
}

// data's gradient: each output slice's gradient added into the slice it came
// from (atomically, in double scratch, then rounded once); indices get zeros.
template <typename T, typename I>
__global__ void take_grad_kernel(const I *idx, const T *g, double *acc, Take t) {
  LOOM_GRID_LOOP(q, t.outer * t.nidx * t.inner) {
    int64_t k = q % t.inner, i = (q / t.inner) % t.nidx, o = q / (t.inner * t.nidx);
    atomicAdd(acc + (o * t.n + take_row(idx[i], t)) * t.inner + k, double(g[q]));
  }
}

template <typename T>
__global__ void from_double(const double *acc, T *d, int64_t n, int32_t req) {
  LOOM_GRID_LOOP(i, n) store_req(d + i, req, static_cast<T>(acc[i]));
}

// Inputs: data, indices, out, dy; outputs: ddata, dindices.
int32_t k_take_grad(const loom_kernel_call *c) {
  const loom_backend_tensor &data = c->inputs[0], &idx = c->inputs[1], &g = c->inputs[3];
  Take t;
  if (!take_of(c, data, idx, &t)) return decline(c, "mode raise or an empty axis");
  const int64_t nd = numel(data);
  if (c->req[1] == LOOM_REQ_WRITE && numel(c->outputs[1]))
    if (check(cudaMemsetAsync(c->outputs[1].data, 0, size_t(numel(c->outputs[1])) *
                                  dtype_bytes(idx.dtype),
                              stream_of(c)),
              c->op))
      return 1;
  if (!c->req[0] || nd == 0) return 0;
  double *acc = static_cast<double *>(scratch(c->dev_id, size_t(nd) * sizeof(double)));
  if (!acc) return fail("take (gradient): no device memory for the sums");
  if (check(cudaMemsetAsync(acc, 0, size_t(nd) * sizeof(double), stream_of(c)), c->op)) return 1;
  const int64_t n = numel(g);
  LOOM_CUDA_FLOATS(g.dtype, T, return decline(c, what(g.dtype)), {
    if (n) {
      LOOM_CUDA_ALL(idx.dtype, I, return decline(c, what(idx.dtype)),
        take_grad_kernel<T, I><<<grid_for(n), kThreads, 0, stream_of(c)>>>(static_cast<const I *>(idx.data),
                                                                         static_cast<const T *>(g.data), acc, t));
    }
    from_double<T><<<grid_for(nd), kThreads, 0, stream_of(c)>>>(acc, out_ptr<T>(c, 0), nd, c->req[0]);
  });
  return launched(c);
}

// ------------------------------------------------------------ clip
template <typename T>
__global__ void clip_kernel(const T *a, T *o, T lo, T hi, int64_t n) {
  LOOM_GRID_LOOP(i, n) o[i] = a[i] > hi ? hi : (a[i] < lo ? lo : a[i]);
}

int32_t k_clip(const loom_kernel_call *c) {
  const loom_backend_tensor &x = c->inputs[0];
  int64_t n = numel(x);
  if (n == 0) return 0;
  // The bounds are float32 (MXNet's ClipParam) for floating-point data.
  const double lo = double(float(param_f(c, "a_min", 0))), hi = double(float(param_f(c, "a_max", 0)));
  LOOM_CUDA_FLOATS(x.dtype, T, return decline(c, what(x.dtype)),
                   clip_kernel<T><<<grid_for(n), kThreads, 0, stream_of(c)>>>(in_ptr<T>(c, 0), out_ptr<T>(c, 0), T(lo), T(hi), n));
  return launched(c);
}

template <typename T>
__global__ void clip_grad_kernel(const T *x, const T *g, T *d, double lo, double hi, int64_t n, int32_t req) {
  LOOM_GRID_LOOP(i, n) store_req(d + i, req, (x[i] > hi || x[i] < lo) ? T(0) : g[i]);
}

// Inputs: x, y, dy.
int32_t k_clip_grad(const loom_kernel_call *c) {
  const loom_backend_tensor &x = c->inputs[0];
  int64_t n = numel(x);
  if (!c->req[0] || n == 0) return 0;
  const double lo = double(float(param_f(c, "a_min", 0))), hi = double(float(param_f(c, "a_max", 0)));
  LOOM_CUDA_FLOATS(x.dtype, T, return decline(c, what(x.dtype)),
                   clip_grad_kernel<T><<<grid_for(n), kThreads, 0, stream_of(c)>>>(in_ptr<T>(c, 0), in_ptr<T>(c, 2),
                                                                                out_ptr<T>(c, 0), lo, hi, n, c->req[0]));
  return launched(c);
}

// ------------------------------------------------------------ softmax, log_softmax
struct Axis3 {
  int64_t outer, mid, inner;
};

bool axis_split(const loom_kernel_call *c, const loom_backend_tensor &x, Axis3 *s) {
  int64_t ax = param_i(c, "axis", -1);
  if (ax < 0) ax += x.ndim;
  if (ax < 0 || ax >= x.ndim) return false;
  s->outer = s->inner = 1;
  for (int32_t i = 0; i < ax; ++i) s->outer *= x.shape[i];
  s->mid = x.shape[ax];
  for (int32_t i = int32_t(ax) + 1; i < x.ndim; ++i) s->inner *= x.shape[i];
  return true;
}

template <typename T>
__global__ void softmax_axis(const T *a, T *o, Axis3 s, double t, bool log_form) {
  LOOM_GRID_LOOP(idx, s.outer * s.inner) {
    int64_t oo = idx / s.inner, j = idx % s.inner;
    const T *x = a + oo * s.mid * s.inner + j;
    T *y = o + oo * s.mid * s.inner + j;
    double mx = -INFINITY;
    for (int64_t k = 0; k < s.mid; ++k) mx = fmax(mx, double(x[k * s.inner]));
    double sum = 0;
    for (int64_t k = 0; k < s.mid; ++k) sum += exp((double(x[k * s.inner]) - mx) / t);
    double lse = log(sum);
    for (int64_t k = 0; k < s.mid; ++k) {
      double z = (double(x[k * s.inner]) - mx) / t;
      y[k * s.inner] = static_cast<T>(log_form ? z - lse : exp(z) / sum);
    }
  }
}

int32_t k_softmax(const loom_kernel_call *c) {
  const loom_backend_tensor &x = c->inputs[0];
  Axis3 s;
  if (!axis_split(c, x, &s)) return decline(c, "axis");
  if (s.outer * s.inner == 0 || s.mid == 0) return 0;
  const bool lg = std::strcmp(c->op, "log_softmax") == 0;
  const double t = param_f(c, "temperature", 1);
  LOOM_CUDA_FLOATS(x.dtype, T, return decline(c, what(x.dtype)),
                   softmax_axis<T><<<grid_for(s.outer * s.inner), kThreads, 0, stream_of(c)>>>(
                       in_ptr<T>(c, 0), out_ptr<T>(c, 0), s, t, lg));
  return launched(c);
}

template <typename T>
__global__ void softmax_axis_grad(const T *y, const T *g, T *d, Axis3 s, double t, bool lg, int32_t req) {
  LOOM_GRID_LOOP(idx, s.outer * s.inner) {
    int64_t o = idx / s.inner, j = idx % s.inner;
    double sum = 0;
    for (int64_t c = 0; c < s.mid; ++c) {
      int64_t at = (o * s.mid + c) * s.inner + j;
      sum += lg ? double(g[at]) : double(g[at]) * double(y[at]);
    }
    for (int64_t c = 0; c < s.mid; ++c) {
      int64_t at = (o * s.mid + c) * s.inner + j;
      double v = lg ? double(g[at]) - exp(double(y[at])) * sum : double(y[at]) * (double(g[at]) - sum);
      store_req(d + at, req, static_cast<T>(v / t));
    }
  }
}

// Inputs: x, y, dy.
int32_t k_softmax_grad(const loom_kernel_call *c) {
  const loom_backend_tensor &x = c->inputs[0];
  Axis3 s;
  if (!c->req[0]) return 0;
  if (!axis_split(c, x, &s)) return decline(c, "axis");
  if (s.outer * s.inner == 0 || s.mid == 0) return 0;
  const bool lg = std::strcmp(c->op, "log_softmax") == 0;
  const double t = param_f(c, "temperature", 1);
  LOOM_CUDA_FLOATS(x.dtype, T, return decline(c, what(x.dtype)),
                   softmax_axis_grad<T><<<grid_for(s.outer * s.inner), kThreads, 0, stream_of(c)>>>(
                       in_ptr<T>(c, 1), in_ptr<T>(c, 2), out_ptr<T>(c, 0), s, t, lg, c->req[0]));
  return launched(c);
}

// ------------------------------------------------------------ multi_sgd_update, multi_sgd_mom_update
// lrs and wds come as text ("0.1,0.1"): libloom's param_string for float lists.
bool floats_of(const loom_kernel_call *c, const char *name, int64_t n, std::vector<double> *out) {
  const char *text = nullptr;
  if (g_host->param_string(c->params, name, &text) != 0 || !text) return false;
  out->clear();
  const char *p = text;
  while (*p) {
    char *end = nullptr;
    double v = std::strtod(p, &end);
    if (end == p) return false;
    out->push_back(v);
    p = *end == ',' ? end + 1 : end;
  }
  return int64_t(out->size()) == n;
}

__device__ __forceinline__ double clipped(double g, double rescale, double clip) {
  g *= rescale;
  if (clip >= 0) g = g > clip ? clip : (g < -clip ? -clip : g);
  return g;
}

template <typename T>
__global__ void msgd_kernel(const T *w, const T *g, const T *m, T *ow, T *om, int64_t n, double lr, double wd,
                            double rs, double clip, double mu) {
  LOOM_GRID_LOOP(i, n) {
    double wi = double(w[i]), step = clipped(double(g[i]), rs, clip) + wd * wi;
    if (m) {
      double mi = mu * double(m[i]) - lr * step;
      om[i] = static_cast<T>(mi);
      ow[i] = static_cast<T>(wi + mi);
    } else {
      ow[i] = static_cast<T>(wi - lr * step);
    }
  }
}

int32_t k_multi_sgd(const loom_kernel_call *c) {
  const bool mom = std::strcmp(c->op, "multi_sgd_mom_update") == 0;
  const int stride = mom ? 3 : 2, outs = mom ? 2 : 1;
  const int64_t n = param_i(c, "num_weights", 1);
  std::vector<double> lrs, wds;
  if (!floats_of(c, "lrs", n, &lrs) || !floats_of(c, "wds", n, &wds)) return decline(c, "reading lrs and wds");
  const double rs = param_f(c, "rescale_grad", 1), clip = param_f(c, "clip_gradient", -1), mu = param_f(c, "momentum", 0);
  LOOM_CUDA_FLOATS(c->inputs[0].dtype, T, return decline(c, what(c->inputs[0].dtype)), {
    for (int64_t i = 0; i < n; ++i) {
      int64_t size = numel(c->inputs[stride * i]);
      if (size == 0) continue;
      msgd_kernel<T><<<grid_for(size), kThreads, 0, stream_of(c)>>>(
          in_ptr<T>(c, int(stride * i)), in_ptr<T>(c, int(stride * i + 1)), mom ? in_ptr<T>(c, int(stride * i + 2)) : nullptr,
          out_ptr<T>(c, int(outs * i)), mom ? out_ptr<T>(c, int(outs * i + 1)) : nullptr, size, lrs[i], wds[i], rs, clip, mu);
      if (int32_t rc = launched(c)) return rc;
    }
  });
  return 0;
}

// ------------------------------------------------------------ all_finite, multi_all_finite
__global__ void set_one(float *o) { *o = 1.0f; }

// A value is not finite once cast to float32 (as MXNet casts it).
template <typename T>
__global__ void finite_kernel(const T *x, int64_t n, float *o) {
  LOOM_GRID_LOOP(i, n) {
    // Not finite: the float32's exponent bits all ones (infinity, NaN).
    if ((__float_as_uint(static_cast<float>(x[i])) & 0x7f800000u) == 0x7f800000u) *o = 0.0f;
  }
}

int32_t k_all_finite(const loom_kernel_call *c) {
  float *o = out_ptr<float>(c, 0);
  if (param_i(c, "init_output", 1)) {
    set_one<<<1, 1, 0, stream_of(c)>>>(o);
    if (int32_t rc = launched(c)) return rc;
  }
  for (int32_t k = 0; k < c->num_inputs; ++k) {
    const loom_backend_tensor &x = c->inputs[k];
    int64_t n = numel(x);
    if (n == 0) continue;
    LOOM_CUDA_FLOATS(x.dtype, T, return decline(c, what(x.dtype)),
                     finite_kernel<T><<<grid_for(n), kThreads, 0, stream_of(c)>>>(static_cast<const T *>(x.data), n, o));
    if (int32_t rc = launched(c)) return rc;
  }
  return 0;
}

// ------------------------------------------------------------ accuracy_count
// float64 [correct, rows]: a row is correct when fewer than top_k classes rank
// above its label (ties rank the lower class first).
template <typename P, typename L>
__global__ void accuracy_kernel(const P *x, const L *lab, int64_t rows, int64_t k, int64_t top,
                                unsigned long long *correct) {
  LOOM_GRID_LOOP(i, rows) {
    double l = double(lab[i]);
    if (!(l >= 0 && l < double(k)) || l != floor(l)) continue;
    int64_t li = static_cast<int64_t>(l);
    const P *row = x + i * k;
    double xl = double(row[li]);
    int64_t rank = 0;
    for (int64_t cc = 0; cc < k && rank < top; ++cc) {
      double v = double(row[cc]);
      if (v > xl || (v == xl && cc < li)) ++rank;
    }
    if (rank < top) atomicAdd(correct, 1ull);
  }
}

__global__ void write_pair(double *o, const unsigned long long *correct, double rows) {
  o[0] = double(*correct);
  o[1] = rows;
}

int32_t k_accuracy(const loom_kernel_call *c) {
  const loom_backend_tensor &x = c->inputs[0], &lab = c->inputs[1];
  if (x.ndim < 1 || c->outputs[0].dtype != LOOM_DTYPE_FLOAT64) return decline(c, "shapes");
  const int64_t k = x.shape[x.ndim - 1], rows = numel(lab), top = param_i(c, "top_k", 1);
  auto *correct = static_cast<unsigned long long *>(scratch(c->dev_id, sizeof(unsigned long long)));
  if (!correct) return fail("accuracy_count: no device memory for the count");
  if (check(cudaMemsetAsync(correct, 0, sizeof(unsigned long long), stream_of(c)), c->op)) return 1;
  if (rows > 0) {
    LOOM_CUDA_FLOATS(x.dtype, P, return decline(c, what(x.dtype)),
      LOOM_CUDA_ALL(lab.dtype, L, return decline(c, what(lab.dtype)),
        accuracy_kernel<P, L><<<grid_for(rows), kThreads, 0, stream_of(c)>>>(static_cast<const P *>(x.data),
                                                                          static_cast<const L *>(lab.data), rows, k,
                                                                          top, correct)));
    if (int32_t rc = launched(c)) return rc;
  }
  write_pair<<<1, 1, 0, stream_of(c)>>>(out_ptr<double>(c, 0), correct, double(rows));
  return launched(c);
}


// ------------------------------------------------------------ transpose, SwapAxis
// out[flat] = in[src(flat)]: out axis k walks input axis perm[k] (stride st[k]).
struct Perm {
  int32_t ndim;
  int64_t out[kMaxDims], st[kMaxDims];
};

bool perm_of(const loom_backend_tensor &x, const std::vector<int64_t> &perm, const loom_backend_tensor &y, Perm *p) {
  if (x.ndim > kMaxDims || int32_t(perm.size()) != x.ndim || y.ndim != x.ndim) return false;
  int64_t st[kMaxDims];
  int64_t s = 1;
  for (int32_t i = x.ndim - 1; i >= 0; --i) {
    st[i] = s;
    s *= x.shape[i];
  }
  p->ndim = x.ndim;
  for (int32_t k = 0; k < x.ndim; ++k) {
    if (perm[k] < 0 || perm[k] >= x.ndim) return false;
    p->out[k] = y.shape[k];
    p->st[k] = st[perm[k]];
  }
  return true;
}

__device__ __forceinline__ int64_t perm_src(const Perm &p, int64_t flat) {
  int64_t src = 0;
  for (int32_t k = p.ndim - 1; k >= 0; --k) {
    src += (flat % p.out[k]) * p.st[k];
    flat /= p.out[k];
  }
  return src;
}

template <typename T>
__global__ void permute_kernel(const T *a, T *o, Perm p, int64_t n) {
  LOOM_GRID_LOOP(i, n) o[i] = a[perm_src(p, i)];
}

// The gradient: dx[src(flat)] (+)= dy[flat] (a permutation: no two writes meet).
template <typename T>
__global__ void permute_back_kernel(const T *g, T *d, Perm p, int64_t n, int32_t req) {
  LOOM_GRID_LOOP(i, n) store_req(d + perm_src(p, i), req, g[i]);
}

std::vector<int64_t> perm_for(const loom_kernel_call *c, int32_t ndim) {
  std::vector<int64_t> perm;
  if (std::strcmp(c->op, "SwapAxis") == 0) {
    for (int32_t i = 0; i < ndim; ++i) perm.push_back(i);
    int64_t a = param_i(c, "dim1", 0), b = param_i(c, "dim2", 0);
    if (a < 0) a += ndim;
    if (b < 0) b += ndim;
    if (a < 0 || b < 0 || a >= ndim || b >= ndim) return {};
    std::swap(perm[a], perm[b]);
    return perm;
  }
  std::vector<int64_t> axes;
  param_tuple(c, "axes", &axes);
  if (axes.empty())
    for (int32_t i = ndim - 1; i >= 0; --i) perm.push_back(i);
  else
    for (int64_t a : axes) perm.push_back(a < 0 ? a + ndim : a);
  return perm;
}

int32_t k_permute(const loom_kernel_call *c) {
  const loom_backend_tensor &x = c->inputs[0], &y = c->outputs[0];
  Perm p;
  if (!perm_of(x, perm_for(c, x.ndim), y, &p)) return decline(c, "axes of " + shape_str(x));
  int64_t n = numel(y);
  if (n == 0) return 0;
  LOOM_CUDA_ALL(x.dtype, T, return decline(c, what(x.dtype)),
                permute_kernel<T><<<grid_for(n), kThreads, 0, stream_of(c)>>>(in_ptr<T>(c, 0), out_ptr<T>(c, 0), p, n));
  return launched(c);
}

// Inputs: x, y, dy; output dx.
int32_t k_permute_grad(const loom_kernel_call *c) {
  const loom_backend_tensor &x = c->inputs[0], &g = c->inputs[2];
  if (!c->req[0]) return 0;
  Perm p;
  if (!perm_of(x, perm_for(c, x.ndim), g, &p)) return decline(c, "axes of " + shape_str(x));
  int64_t n = numel(g);
  if (n == 0) return 0;
  LOOM_CUDA_FLOATS(g.dtype, T, return decline(c, what(g.dtype)),
                   permute_back_kernel<T><<<grid_for(n), kThreads, 0, stream_of(c)>>>(in_ptr<T>(c, 2), out_ptr<T>(c, 0),
                                                                                  p, n, c->req[0]));
  return launched(c);
}

// ------------------------------------------------------------ concat, Concat, SliceChannel
// The (outer, mid, inner) split of `t` around `axis`.
bool split3(const loom_backend_tensor &t, int64_t axis, int64_t *outer, int64_t *mid, int64_t *inner) {
  if (axis < 0) axis += t.ndim;
  if (axis < 0 || axis >= t.ndim) return false;
  *outer = *inner = 1;
  for (int32_t i = 0; i < axis; ++i) *outer *= t.shape[i];
  *mid = t.shape[axis];
  for (int32_t i = int32_t(axis) + 1; i < t.ndim; ++i) *inner *= t.shape[i];
  return true;
}

// Copies `rows` rows of `width` bytes between pitched layouts on the call's stream.
int32_t copy_rows(const loom_kernel_call *c, void *dst, size_t dpitch, const void *src, size_t spitch, size_t width,
                  int64_t rows) {
  if (width == 0 || rows == 0) return 0;
  return check(cudaMemcpy2DAsync(dst, dpitch, src, spitch, width, size_t(rows), cudaMemcpyDeviceToDevice, stream_of(c)),
               c->op);
}

// concat: each input's rows placed at its offset along the axis of the output.
int32_t k_concat(const loom_kernel_call *c) {
  const loom_backend_tensor &o = c->outputs[0];
  int64_t outer, mid, inner;
  if (!split3(o, param_i(c, "dim", 1), &outer, &mid, &inner)) return decline(c, "dim");
  const size_t es = dtype_bytes(o.dtype);
  int64_t offset = 0;
  const int64_t ax = param_i(c, "dim", 1) < 0 ? param_i(c, "dim", 1) + o.ndim : param_i(c, "dim", 1);
  for (int32_t k = 0; k < c->num_inputs; ++k) {
    const int64_t bm = c->inputs[k].shape[ax];
    const size_t row = size_t(bm * inner) * es;
    if (int32_t rc = copy_rows(c, static_cast<char *>(o.data) + size_t(offset * inner) * es, size_t(mid * inner) * es,
                               c->inputs[k].data, row, row, outer))
      return rc;
    offset += bm;
  }
  return 0;
}

// concat's gradient: each input's slice of dy (inputs: the inputs, out, dy).
int32_t k_concat_grad(const loom_kernel_call *c) {
  const loom_backend_tensor &g = c->inputs[c->num_fwd_inputs + c->num_fwd_outputs];
  int64_t outer, mid, inner;
  if (!split3(g, param_i(c, "dim", 1), &outer, &mid, &inner)) return decline(c, "dim");
  for (int32_t k = 0; k < c->num_outputs; ++k)
    if (c->req[k] == LOOM_REQ_ADD) return decline(c, "adding to a gradient");
  const size_t es = dtype_bytes(g.dtype);
  const int64_t ax = param_i(c, "dim", 1) < 0 ? param_i(c, "dim", 1) + g.ndim : param_i(c, "dim", 1);
  int64_t offset = 0;
  for (int32_t k = 0; k < c->num_outputs; ++k) {
    const int64_t bm = c->outputs[k].shape[c->outputs[k].ndim == g.ndim ? ax : 0];
    const size_t row = size_t(bm * inner) * es;
    if (c->req[k])
      if (int32_t rc = copy_rows(c, c->outputs[k].data, row, static_cast<const char *>(g.data) + size_t(offset * inner) * es,
                                 size_t(mid * inner) * es, row, outer))
        return rc;
    offset += bm;
  }
  return 0;
}

// SliceChannel: part j of num_outputs equal parts along axis.
int32_t k_slice_channel(const loom_kernel_call *c) {
  const loom_backend_tensor &x = c->inputs[0];
  int64_t outer, mid, inner;
  if (!split3(x, param_i(c, "axis", 1), &outer, &mid, &inner)) return decline(c, "axis");
  const int64_t k = c->num_outputs;
  const size_t es = dtype_bytes(x.dtype), part = size_t(mid / k * inner) * es;
  for (int64_t j = 0; j < k; ++j)
    if (int32_t rc = copy_rows(c, c->outputs[j].data, part, static_cast<const char *>(x.data) + j * part,
                               size_t(mid * inner) * es, part, outer))
      return rc;
  return 0;
}

// Inputs: x, the parts, the parts' gradients; output dx.
int32_t k_slice_channel_grad(const loom_kernel_call *c) {
  const loom_backend_tensor &x = c->inputs[0];
  if (!c->req[0]) return 0;
  if (c->req[0] == LOOM_REQ_ADD) return decline(c, "adding to a gradient");
  int64_t outer, mid, inner;
  if (!split3(x, param_i(c, "axis", 1), &outer, &mid, &inner)) return decline(c, "axis");
  const int64_t k = c->num_fwd_outputs;
  const size_t es = dtype_bytes(x.dtype), part = size_t(mid / k * inner) * es;
  for (int64_t j = 0; j < k; ++j)
    if (int32_t rc = copy_rows(c, static_cast<char *>(c->outputs[0].data) + j * part, size_t(mid * inner) * es,
                               c->inputs[1 + k + j].data, part, part, outer))
      return rc;
  return 0;
}

}  // namespace

void register_tensor(KernelMap &f, KernelMap &b) {
  LOOM_CUDA_REG(f, "take", k_take);
  LOOM_CUDA_REG(b, "take", k_take_grad);
  LOOM_CUDA_REG(f, "clip", k_clip);
  LOOM_CUDA_REG(b, "clip", k_clip_grad);
  for (const char *n : {"softmax", "log_softmax"}) {
    LOOM_CUDA_REG(f, n, k_softmax);
    LOOM_CUDA_REG(b, n, k_softmax_grad);
  }
  LOOM_CUDA_REG(f, "multi_sgd_update", k_multi_sgd);
  LOOM_CUDA_REG(f, "multi_sgd_mom_update", k_multi_sgd);
  LOOM_CUDA_REG(f, "all_finite", k_all_finite);
  LOOM_CUDA_REG(f, "multi_all_finite", k_all_finite);
  LOOM_CUDA_REG(f, "accuracy_count", k_accuracy);
  for (const char *n : {"transpose", "SwapAxis"}) {
    LOOM_CUDA_REG(f, n, k_permute);
    LOOM_CUDA_REG(b, n, k_permute_grad);
  }
  for (const char *n : {"concat", "Concat"}) {
    LOOM_CUDA_REG(f, n, k_concat);
    LOOM_CUDA_REG(b, n, k_concat_grad);
  }
  LOOM_CUDA_REG(f, "SliceChannel", k_slice_channel);
  LOOM_CUDA_REG(b, "SliceChannel", k_slice_channel_grad);
}

}  // namespace loomcuda
