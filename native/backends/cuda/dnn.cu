// 2-D Convolution through cuDNN (forward, data and weight gradients; the bias
// gradient is a kernel of our own summing in double). Built only where cuDNN
// was found (LOOM_HAVE_CUDNN); elsewhere convolutions take the staged CPU path.
// Float32 convolutions use CUDNN_FMA_MATH (no TF32), so results agree with
// the CPU's float32 products.
#include "common.cuh"

#ifdef LOOM_HAVE_CUDNN
#include <cudnn.h>

#include <mutex>
#include <unordered_map>

namespace loomcuda {
namespace {

struct Dnn {
  std::mutex mu;
  cudnnHandle_t h = nullptr;
  // Chosen algorithms per convolution geometry: forward, backward data, backward filter.
  std::unordered_map<std::string, int> fwd, bwd_data, bwd_filter;
};
Dnn g_dnn[64];

int32_t dnn_check(cudnnStatus_t s, const loom_kernel_call *c, const char *what) {
  if (s == CUDNN_STATUS_SUCCESS) return 0;
  return fail(std::string(c->op) + (c->backward ? " (gradient)" : "") + ": " + what + ": " + cudnnGetErrorString(s));
}

struct Conv {
  int64_t n, c, h, w, k, kh, kw, oh, ow, sh, sw, ph, pw, dh, dw, groups;
  int32_t dtype;
};

// 2-D convolutions, and 1-D ones as 2-D of height 1.
bool conv_of(const loom_kernel_call *c, const loom_backend_tensor &x, const loom_backend_tensor &wt,
             const loom_backend_tensor &y, Conv *g) {
  const int32_t nd = x.ndim;
  if ((nd != 4 && nd != 3) || wt.ndim != nd || y.ndim != nd) return false;
  const size_t sp = size_t(nd - 2);
  std::vector<int64_t> k, s, p, d;
  if (!param_tuple(c, "kernel", &k) || k.size() != sp) return false;
  g->n = x.shape[0];
  g->c = x.shape[1];
  g->h = nd == 4 ? x.shape[2] : 1;
  g->w = x.shape[nd - 1];
  g->k = y.shape[1];
  g->oh = nd == 4 ? y.shape[2] : 1;
  g->ow = y.shape[nd - 1];
  g->kh = nd == 4 ? k[0] : 1;
  g->kw = k[sp - 1];
  g->sh = g->sw = 1;
  g->ph = g->pw = 0;
  g->dh = g->dw = 1;
  if (param_tuple(c, "stride", &s) && !s.empty()) {
    if (s.size() != sp) return false;
    g->sh = nd == 4 ? s[0] : 1;
    g->sw = s[sp - 1];
  }
  if (param_tuple(c, "pad", &p) && !p.empty()) {
    if (p.size() != sp) return false;
    g->ph = nd == 4 ? p[0] : 0;
    g->pw = p[sp - 1];
  }
  if (param_tuple(c, "dilate", &d) && !d.empty()) {
    if (d.size() != sp) return false;
    g->dh = nd == 4 ? d[0] : 1;
    g->dw = d[sp - 1];
  }
  g->groups = param_i(c, "num_group", 1);
  g->dtype = x.dtype;
  return g->groups > 0 && wt.shape[0] == g->k && wt.shape[1] * g->groups == g->c;
}

std::string key_of(const Conv &g) {
  char b[256];
  std::snprintf(b, sizeof b, "%d:%lld,%lld,%lld,%lld,%lld,%lld,%lld,%lld,%lld,%lld,%lld,%lld,%lld,%lld,%lld", int(g.dtype),
                (long long)g.n, (long long)g.c, (long long)g.h, (long long)g.w, (long long)g.k, (long long)g.kh,
                (long long)g.kw, (long long)g.sh, (long long)g.sw, (long long)g.ph, (long long)g.pw, (long long)g.dh,
                (long long)g.dw, (long long)g.groups, (long long)g.oh);
  return b;
}

// The descriptors of one call, destroyed with it.
struct Descs {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  ~Descs() {
    if (x) cudnnDestroyTensorDescriptor(x);
    if (y) cudnnDestroyTensorDescriptor(y);
    if (w) cudnnDestroyFilterDescriptor(w);
    if (conv) cudnnDestroyConvolutionDescriptor(conv);
  }
};

int32_t make_descs(const loom_kernel_call *c, const Conv &g, Descs *d) {
  const cudnnDataType_t t = g.dtype == LOOM_DTYPE_FLOAT64 ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT;
  if (dnn_check(cudnnCreateTensorDescriptor(&d->x), c, "descriptor") ||
      dnn_check(cudnnCreateTensorDescriptor(&d->y), c, "descriptor") ||
      dnn_check(cudnnCreateFilterDescriptor(&d->w), c, "descriptor") ||
      dnn_check(cudnnCreateConvolutionDescriptor(&d->conv), c, "descriptor"))
    return 1;
  if (dnn_check(cudnnSetTensor4dDescriptor(d->x, CUDNN_TENSOR_NCHW, t, int(g.n), int(g.c), int(g.h), int(g.w)), c,
                "data descriptor") ||
      dnn_check(cudnnSetTensor4dDescriptor(d->y, CUDNN_TENSOR_NCHW, t, int(g.n), int(g.k), int(g.oh), int(g.ow)), c,
                "output descriptor") ||
      dnn_check(cudnnSetFilter4dDescriptor(d->w, t, CUDNN_TENSOR_NCHW, int(g.k), int(g.c / g.groups), int(g.kh),
                                           int(g.kw)),
                c, "weight descriptor") ||
      dnn_check(cudnnSetConvolution2dDescriptor(d->conv, int(g.ph), int(g.pw), int(g.sh), int(g.sw), int(g.dh),
                                                int(g.dw), CUDNN_CROSS_CORRELATION, t),
                c, "convolution descriptor") ||
      dnn_check(cudnnSetConvolutionGroupCount(d->conv, int(g.groups)), c, "group count") ||
      dnn_check(cudnnSetConvolutionMathType(d->conv, tf32_enabled() && g.dtype == LOOM_DTYPE_FLOAT32
                                                         ? CUDNN_TENSOR_OP_MATH
                                                         : CUDNN_FMA_MATH),
                c, "math type"))
    return 1;
  return 0;
}

// The handle of the call's device on its stream; the caller holds dnn.mu.
int32_t handle(const loom_kernel_call *c, Dnn &dnn) {
  if (!dnn.h && dnn_check(cudnnCreate(&dnn.h), c, "cudnnCreate")) return 1;
  return dnn_check(cudnnSetStream(dnn.h, stream_of(c)), c, "cudnnSetStream");
}

constexpr size_t kMaxWorkspace = size_t(2) << 30;

template <typename Perf>
int pick(const Perf *perf, int count) {
  for (int i = 0; i < count; ++i)
    if (perf[i].status == CUDNN_STATUS_SUCCESS && perf[i].memory <= kMaxWorkspace) return int(perf[i].algo);
  return -1;
}

bool fits_int(const Conv &g) {
  return g.n < INT32_MAX && g.c < INT32_MAX && g.h < INT32_MAX && g.w < INT32_MAX && g.k < INT32_MAX;
}

int32_t k_conv(const loom_kernel_call *c) {
  const loom_backend_tensor &x = c->inputs[0], &wt = c->inputs[1], &y = c->outputs[0];
  Conv g;
  if (x.dtype != LOOM_DTYPE_FLOAT32 && x.dtype != LOOM_DTYPE_FLOAT64)
    return decline(c, std::string("dtype ") + dtype_str(x.dtype));
  if (!conv_of(c, x, wt, y, &g) || !fits_int(g)) return decline(c, "convolution of data " + shape_str(x));
  if (numel(y) == 0) return 0;
  Dnn &dnn = g_dnn[c->dev_id & 63];
  std::lock_guard<std::mutex> lk(dnn.mu);
  if (handle(c, dnn)) return 1;
  Descs d;
  if (make_descs(c, g, &d)) return 1;
  std::string key = key_of(g);
  auto it = dnn.fwd.find(key);
  if (it == dnn.fwd.end()) {
    cudnnConvolutionFwdAlgoPerf_t perf[16];
    int got = 0;
    if (dnn_check(cudnnFindConvolutionForwardAlgorithm(dnn.h, d.x, d.w, d.conv, d.y, 16, &got, perf), c,
                  "choosing an algorithm"))
      return 1;
    int a = pick(perf, got);
    if (a < 0) return fail(std::string(c->op) + ": cuDNN offers no forward algorithm for data " + shape_str(x));
    it = dnn.fwd.emplace(key, a).first;
  }
  auto algo = cudnnConvolutionFwdAlgo_t(it->second);
  size_t ws_bytes = 0;
  if (dnn_check(cudnnGetConvolutionForwardWorkspaceSize(dnn.h, d.x, d.w, d.conv, d.y, algo, &ws_bytes), c,
                "workspace size"))
    return 1;
  void *ws = ws_bytes ? scratch(c->dev_id, ws_bytes) : nullptr;
  if (ws_bytes && !ws) return fail(std::string(c->op) + ": no device memory for a " + std::to_string(ws_bytes) + "-byte workspace");
  const float onef = 1.0f, zerof = 0.0f;
  const double oned = 1.0, zerod = 0.0;
  const bool dbl = g.dtype == LOOM_DTYPE_FLOAT64;
  const void *one = dbl ? static_cast<const void *>(&oned) : static_cast<const void *>(&onef);
  const void *zero = dbl ? static_cast<const void *>(&zerod) : static_cast<const void *>(&zerof);
  if (dnn_check(cudnnConvolutionForward(dnn.h, one, d.x, x.data, d.w, wt.data, d.conv, algo, ws, ws_bytes, zero, d.y,
                                        y.data),
                c, "cudnnConvolutionForward"))
    return 1;
  if (c->num_inputs > 2) {
    cudnnTensorDescriptor_t bd;
    if (dnn_check(cudnnCreateTensorDescriptor(&bd), c, "descriptor")) return 1;
    cudnnStatus_t s = cudnnSetTensor4dDescriptor(bd, CUDNN_TENSOR_NCHW, dbl ? CUDNN_DATA_DOUBLE : CUDNN_DATA_FLOAT, 1,
                                                 int(g.k), 1, 1);
    if (s == CUDNN_STATUS_SUCCESS) s = cudnnAddTensor(dnn.h, one, bd, c->inputs[2].data, one, d.y, y.data);
    cudnnDestroyTensorDescriptor(bd);
    if (dnn_check(s, c, "adding the bias")) return 1;
  }
  return 0;
}

// db[k] = the sum of dy over images and positions, in double; one block per channel.
template <typename T>
__global__ void conv_bias_grad(const T *dy, T *db, int64_t n, int64_t k, int64_t hw, int32_t req) {
  __shared__ double part[kThreads];
  for (int64_t ch = blockIdx.x; ch < k; ch += gridDim.x) {
    double acc = 0;
    for (int64_t img = 0; img < n; ++img) {
      const T *p = dy + (img * k + ch) * hw;
      for (int64_t q = threadIdx.x; q < hw; q += blockDim.x) acc += double(p[q]);
    }
    part[threadIdx.x] = acc;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
      if (threadIdx.x < s) part[threadIdx.x] += part[threadIdx.x + s];
      __syncthreads();
    }
    if (threadIdx.x == 0) store_req(db + ch, req, static_cast<T>(part[0]));
    __syncthreads();
  }
}

// Inputs: x, w, [b], y, dy; outputs: dx, dw, [db].
int32_t k_conv_grad(const loom_kernel_call *c) {
  const loom_backend_tensor &x = c->inputs[0], &wt = c->inputs[1];
  const loom_backend_tensor &dy = c->inputs[c->num_fwd_inputs + c->num_fwd_outputs];
  Conv g;
  if (x.dtype != LOOM_DTYPE_FLOAT32 && x.dtype != LOOM_DTYPE_FLOAT64)
    return decline(c, std::string("dtype ") + dtype_str(x.dtype));
  if (!conv_of(c, x, wt, dy, &g) || !fits_int(g)) return decline(c, "convolution of data " + shape_str(x));
  Dnn &dnn = g_dnn[c->dev_id & 63];
  std::lock_guard<std::mutex> lk(dnn.mu);
  if (handle(c, dnn)) return 1;
  Descs d;
  if (make_descs(c, g, &d)) return 1;
  std::string key = key_of(g);
  const float onef = 1.0f, zerof = 0.0f;
  const double oned = 1.0, zerod = 0.0;
  const bool dbl = g.dtype == LOOM_DTYPE_FLOAT64;
  const void *one = dbl ? static_cast<const void *>(&oned) : static_cast<const void *>(&onef);
  const void *zero = dbl ? static_cast<const void *>(&zerod) : static_cast<const void *>(&zerof);
  if (c->req[0] && numel(x)) {
    auto it = dnn.bwd_data.find(key);
    if (it == dnn.bwd_data.end()) {
      cudnnConvolutionBwdDataAlgoPerf_t perf[16];
      int got = 0;
      if (dnn_check(cudnnFindConvolutionBackwardDataAlgorithm(dnn.h, d.w, d.y, d.conv, d.x, 16, &got, perf), c,
                    "choosing an algorithm"))
        return 1;
      int a = pick(perf, got);
      if (a < 0) return fail(std::string(c->op) + ": cuDNN offers no data-gradient algorithm for data " + shape_str(x));
      it = dnn.bwd_data.emplace(key, a).first;
    }
    auto algo = cudnnConvolutionBwdDataAlgo_t(it->second);
    size_t ws_bytes = 0;
    if (dnn_check(cudnnGetConvolutionBackwardDataWorkspaceSize(dnn.h, d.w, d.y, d.conv, d.x, algo, &ws_bytes), c,
                  "workspace size"))
      return 1;
    void *ws = ws_bytes ? scratch(c->dev_id, ws_bytes) : nullptr;
    if (ws_bytes && !ws) return fail(std::string(c->op) + ": no device memory for the workspace");
    if (dnn_check(cudnnConvolutionBackwardData(dnn.h, one, d.w, wt.data, d.y, dy.data, d.conv, algo, ws, ws_bytes,
                                               c->req[0] == LOOM_REQ_ADD ? one : zero, d.x, c->outputs[0].data),
                  c, "cudnnConvolutionBackwardData"))
      return 1;
  }
  if (c->req[1] && numel(wt)) {
    auto it = dnn.bwd_filter.find(key);
    if (it == dnn.bwd_filter.end()) {
      cudnnConvolutionBwdFilterAlgoPerf_t perf[16];
      int got = 0;
      if (dnn_check(cudnnFindConvolutionBackwardFilterAlgorithm(dnn.h, d.x, d.y, d.conv, d.w, 16, &got, perf), c,
                    "choosing an algorithm"))
        return 1;
      int a = pick(perf, got);
      if (a < 0) return fail(std::string(c->op) + ": cuDNN offers no weight-gradient algorithm for data " + shape_str(x));
      it = dnn.bwd_filter.emplace(key, a).first;
    }
    auto algo = cudnnConvolutionBwdFilterAlgo_t(it->second);
    size_t ws_bytes = 0;
    if (dnn_check(cudnnGetConvolutionBackwardFilterWorkspaceSize(dnn.h, d.x, d.y, d.conv, d.w, algo, &ws_bytes), c,
                  "workspace size"))
      return 1;
    void *ws = ws_bytes ? scratch(c->dev_id, ws_bytes) : nullptr;
    if (ws_bytes && !ws) return fail(std::string(c->op) + ": no device memory for the workspace");
    if (dnn_check(cudnnConvolutionBackwardFilter(dnn.h, one, d.x, x.data, d.y, dy.data, d.conv, algo, ws, ws_bytes,
                                                 c->req[1] == LOOM_REQ_ADD ? one : zero, d.w, c->outputs[1].data),
                  c, "cudnnConvolutionBackwardFilter"))
      return 1;
  }
  if (c->num_outputs > 2 && c->req[2]) {
    const unsigned blocks = unsigned(std::min<int64_t>(g.k, 65536));
    if (dbl)
      conv_bias_grad<double><<<blocks, kThreads, 0, stream_of(c)>>>(
          static_cast<const double *>(dy.data), static_cast<double *>(c->outputs[2].data), g.n, g.k, g.oh * g.ow,
          c->req[2]);
    else
      conv_bias_grad<float><<<blocks, kThreads, 0, stream_of(c)>>>(
          static_cast<const float *>(dy.data), static_cast<float *>(c->outputs[2].data), g.n, g.k, g.oh * g.ow,
          c->req[2]);
    return launched(c);
  }
  return 0;
}

}  // namespace

void register_dnn(KernelMap &f, KernelMap &b) {
  LOOM_CUDA_REG(f, "Convolution", k_conv);
  LOOM_CUDA_REG(b, "Convolution", k_conv_grad);
}

}  // namespace loomcuda

#else

namespace loomcuda {
void register_dnn(KernelMap &, KernelMap &) {}
}  // namespace loomcuda

#endif
