// BatchNorm (moving statistics as auxiliary states) and the Concat layer
// with its gradient (MXNet's definitions and parameter names).
#include <atomic>
#include <memory>
#include <string>

#include "engine/engine.h"
#include "ops/common.h"
#include "ops/nn/onednn.h"
#include "ops/nn/fused.h"
#include "ops/vecmath.h"

namespace loom {
namespace {

// (outer, C, inner) around the channel axis.
struct BNDims {
  int64_t outer, c, inner;
  int64_t m() const { return outer * inner; }
};

BNDims bn_dims(const Params &p, const Shape &s) {
  int ax = normalize_axis(p.i("axis"), s.ndim, p.op().name, "axis");
  BNDims d;
  split_axes(s, ax, ax + 1, &d.outer, &d.c, &d.inner);
  return d;
}

// Sums over a row in double with eight interleaved accumulators, combined in a
// fixed tree: eight independent chains instead of one (the summation order is
// fixed, so the bits do not depend on threads).
template <typename F>
LOOM_CLONE_BODY double sum8(int64_t n, F &&f) {
  double a[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) a[k] += f(i + k);
  for (int k = 0; i < n; ++i, ++k) a[k] += f(i);
  return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

// Over one row of x and dy, in one pass: the sums of (x - mu)^2, dy and
// dy * (x - mu), each in eight accumulators combined in sum8's tree, so each
// has the bits sum8 gives it alone.
template <typename T>
LOOM_CLONE_BODY void sums_var_dy(const T *x, const T *dy, int64_t n, double mu, double *out) {
  // The eight accumulators of each sum are the lanes of a vector (GCC's vector
  // extension: with 24 scalar accumulators the loop stays scalar).
  typedef double D8 __attribute__((vector_size(64)));
  typedef T T8 __attribute__((vector_size(8 * sizeof(T))));
  D8 va = {}, vb = {}, vc = {};
  const D8 vmu = D8{} + mu;
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    T8 xt, gt;
    std::memcpy(&xt, x + i, sizeof xt);
    std::memcpy(&gt, dy + i, sizeof gt);
    const D8 d = __builtin_convertvector(xt, D8) - vmu, g = __builtin_convertvector(gt, D8);
    va += d * d;
    vb += g;
    vc += g * d;
  }
  double a[8], b[8], c[8];
  for (int k = 0; k < 8; ++k) a[k] = va[k], b[k] = vb[k], c[k] = vc[k];
  for (int k = 0; i < n; ++i, ++k) {
    const double d = double(x[i]) - mu, g = double(dy[i]);
    a[k] += d * d;
    b[k] += g;
    c[k] += g * d;
  }
  out[0] = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
  out[1] = ((b[0] + b[1]) + (b[2] + b[3])) + ((b[4] + b[5]) + (b[6] + b[7]));
  out[2] = ((c[0] + c[1]) + (c[2] + c[3])) + ((c[4] + c[5]) + (c[6] + c[7]));
}

// One channel's mean and biased variance, accumulated in double over its
// `outer` rows of `inner` values, `stride` values apart.
template <typename T>
LOOM_CLONE_BODY void stats_body(const T *x, int64_t outer, int64_t inner, int64_t stride, double *mean, double *var) {
  const double m = double(std::max<int64_t>(outer * inner, 1));
  double s = 0, s2 = 0;
  for (int64_t o = 0; o < outer; ++o) {
    const T *row = x + o * stride;
    s += sum8(inner, [row](int64_t i) { return double(row[i]); });
  }
  const double mu = s / m;
  for (int64_t o = 0; o < outer; ++o) {
    const T *row = x + o * stride;
    s2 += sum8(inner, [row, mu](int64_t i) {
      double v = double(row[i]) - mu;
      return v * v;
    });
  }
  *mean = mu;
  *var = s2 / m;
}

// The element loops, compiled for AVX-512, AVX2 and the baseline (vecmath.h):
// the same operations in the same order, so the same bits on every CPU.
LOOM_VECTOR_CLONES void bn_stats(const float *x, int64_t outer, int64_t inner, int64_t stride, double *mean,
                                 double *var) {
  stats_body(x, outer, inner, stride, mean, var);
}
LOOM_VECTOR_CLONES void bn_stats(const double *x, int64_t outer, int64_t inner, int64_t stride, double *mean,
                                 double *var) {
  stats_body(x, outer, inner, stride, mean, var);
}

// MXNet's relu (mshadow_op.h), as the Activation op computes it: NaN passes.
template <typename T>
LOOM_CLONE_BODY T relu_of(T v) {
  return ((v > T(0)) | (v != v)) ? v : T(0);
}

// y = x * scale + shift over a row, then with `relu` MXNet's relu of each value
// (a training executor's BatchNorm that took in the relu after it).
template <typename T>
LOOM_CLONE_BODY void scale_body(const T *x, T *y, int64_t n, double scale, double shift, bool relu) {
  if (relu)
    for (int64_t i = 0; i < n; ++i) y[i] = relu_of(static_cast<T>(double(x[i]) * scale + shift));
  else
    for (int64_t i = 0; i < n; ++i) y[i] = static_cast<T>(double(x[i]) * scale + shift);
}
LOOM_VECTOR_CLONES void bn_scale_row(const float *x, float *y, int64_t n, double scale, double shift, bool relu) {
  scale_body(x, y, n, scale, shift, relu);
}
LOOM_VECTOR_CLONES void bn_scale_row(const double *x, double *y, int64_t n, double scale, double shift,
                                     bool relu) {
  scale_body(x, y, n, scale, shift, relu);
}

// One channel's backward pass: the sums of dy and dy * (x - mean) over its rows
// (*sdy, and *sdyx scaled by invstd), then, when dx is given, its gradient:
// with the batch's statistics g * invstd * (dy - sdy/m - xhat * sdyx/m) (in
// MXNet's order of operations, below), else g * invstd * dy. With the batch's statistics (b.batch) the channel's
// mean and variance are computed here first, as bn_stats computes them (*mean,
// *var, and b.invstd from them): the mean in one pass over x, then the variance
// in the same pass as the two sums (each sum with its own accumulators, so the
// bits are those of separate passes), one pass over x fewer.
struct BnBackward {
  double mean, invstd, g, m, eps;
  bool batch;
};
template <typename T>
LOOM_CLONE_BODY void backward_body(BnBackward b, const T *x, const T *dy, T *dx, int64_t outer, int64_t inner,
                          int64_t stride, int64_t dy_stride, double *out_sdy, double *out_sdyx, double *out_mean,
                          double *out_var) {
  double sdy = 0, sdyx = 0;
  if (b.batch) {
    double s = 0, s2 = 0;
    for (int64_t o = 0; o < outer; ++o) {
      const T *row = x + o * stride;
      s += sum8(inner, [row](int64_t i) { return double(row[i]); });
    }
    const double mu = s / b.m;
    for (int64_t o = 0; o < outer; ++o) {
      const T *xr = x + o * stride, *gr = dy + o * dy_stride;
      double r[3];
      sums_var_dy(xr, gr, inner, mu, r);
      s2 += r[0];
      sdy += r[1];
      sdyx += r[2];
    }
    b.mean = mu;
    const double var = s2 / b.m;
    b.invstd = 1 / std::sqrt(var + b.eps);
    *out_mean = mu;
    *out_var = var;
  } else {
    const double mu = b.mean;
    for (int64_t o = 0; o < outer; ++o) {
      const T *xr = x + o * stride, *gr = dy + o * dy_stride;
      sdy += sum8(inner, [gr](int64_t i) { return double(gr[i]); });
      sdyx += sum8(inner, [gr, xr, mu](int64_t i) { return double(gr[i]) * (double(xr[i]) - mu); });
    }
  }
  const double mu = b.mean;
  sdyx *= b.invstd;
  *out_sdy = sdy;
  *out_sdyx = sdyx;
  if (!dx) return;
  // MXNet's order of operations (BatchNormBackwardImpl), in double: with the
  // batch's statistics (dy - sdy/m - (x - mean) * k) * iw, k = dotp * invstd^2 / m
  // (sdyx is dotp * invstd), else dy * iw, iw = invstd * g; no division per value.
  const double iw = b.invstd * b.g, gmean = sdy / b.m, k = sdyx * b.invstd / b.m;
  for (int64_t o = 0; o < outer; ++o) {
    const T *xr = x + o * stride, *gr = dy + o * dy_stride;
    T *dr = dx + o * stride;
    if (b.batch) {
      for (int64_t i = 0; i < inner; ++i) dr[i] = static_cast<T>((double(gr[i]) - gmean - (double(xr[i]) - mu) * k) * iw);
    } else {
      for (int64_t i = 0; i < inner; ++i) dr[i] = static_cast<T>(double(gr[i]) * iw);
    }
  }
}
LOOM_VECTOR_CLONES void bn_backward(const BnBackward &b, const float *x, const float *dy, float *dx, int64_t outer,
                                    int64_t inner, int64_t stride, int64_t dy_stride, double *sdy, double *sdyx,
                                    double *mean, double *var) {
  backward_body(b, x, dy, dx, outer, inner, stride, dy_stride, sdy, sdyx, mean, var);
}
LOOM_VECTOR_CLONES void bn_backward(const BnBackward &b, const double *x, const double *dy, double *dx,
                                    int64_t outer, int64_t inner, int64_t stride, int64_t dy_stride, double *sdy,
                                    double *sdyx, double *mean, double *var) {
  backward_body(b, x, dy, dx, outer, inner, stride, dy_stride, sdy, sdyx, mean, var);
}

// A training BatchNorm fused with the relu after it (OpContext::relu_after): the
// gradient reaching it is the relu's, dz, and its output the relu's, z. One
// channel's `outer` rows of `inner` values (rows `stride` apart) of the gradient
// MXNet's relu backward gives, dz * relu_grad(z) with relu_grad(NaN) = NaN, as
// Activation's backward computes it (nn.cc), into dy (rows packed).
template <typename T>
LOOM_CLONE_BODY void relu_grad_rows_body(const T *dz, const T *z, T *dy, int64_t outer, int64_t inner, int64_t stride) {
  for (int64_t o = 0; o < outer; ++o) {
    const T *gr = dz + o * stride, *zr = z + o * stride;
    T *dr = dy + o * inner;
    for (int64_t i = 0; i < inner; ++i) dr[i] = gr[i] * relu_grad(zr[i]);
  }
}
LOOM_VECTOR_CLONES void relu_grad_rows(const float *dz, const float *z, float *dy, int64_t outer, int64_t inner,
                                       int64_t stride) {
  relu_grad_rows_body(dz, z, dy, outer, inner, stride);
}
LOOM_VECTOR_CLONES void relu_grad_rows(const double *dz, const double *z, double *dy, int64_t outer, int64_t inner,
                                       int64_t stride) {
  relu_grad_rows_body(dz, z, dy, outer, inner, stride);
}

// Per-channel mean and biased variance, accumulated in double.
template <typename T>
void channel_stats(const T *x, const BNDims &d, std::vector<double> &mean, std::vector<double> &var) {
  mean.assign(d.c, 0);
  var.assign(d.c, 0);
  parallel_for(d.c, [&](int64_t c) {
    bn_stats(x + c * d.inner, d.outer, d.inner, d.c * d.inner, &mean[c], &var[c]);
  }, 1);
}

// ---- BatchNorm on blocked data (TBlob::blocked: nChw16c, or nChw8c on AVX2)
// Each of the W channels of a block is computed exactly as above: the same
// sums in the same order (sum8's lanes over each image's positions, images in
// order), so a channel's bits do not depend on the layout. The W channels are
// the lanes of a vector (ChannelBlock<W>), as they lie side by side in memory.
// sum8 for W channels at once: f(i) gives position i's W values.
template <int W, typename F>
LOOM_CLONE_BODY typename ChannelBlock<W>::D sum8_block(int64_t n, F &&f) {
  typedef typename ChannelBlock<W>::D D;
  D a[8] = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) a[k] += f(i + k);
  for (int k = 0; i < n; ++i, ++k) a[k] += f(i);
  return ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
}

// One block's mean and variance (stats_body): `outer` rows of `inner` positions,
// row o at x + o * stride.
template <int W>
LOOM_VECTOR_CLONES void bn_stats_block(const float *x, int64_t outer, int64_t inner, int64_t stride, double *mean,
                                       double *var) {
  typedef ChannelBlock<W> B;
  const double m = double(std::max<int64_t>(outer * inner, 1));
  typename B::D s = {}, s2 = {};
  for (int64_t o = 0; o < outer; ++o) {
    const float *row = x + o * stride;
    s += sum8_block<W>(inner, [row](int64_t i) { return B::load(row + W * i); });
  }
  const typename B::D mu = s / m;
  for (int64_t o = 0; o < outer; ++o) {
    const float *row = x + o * stride;
    s2 += sum8_block<W>(inner, [row, mu](int64_t i) {
      const typename B::D v = B::load(row + W * i) - mu;
      return v * v;
    });
  }
  const typename B::D varw = s2 / m;
  for (int l = 0; l < W; ++l) mean[l] = mu[l], var[l] = varw[l];
}

// y = x * scale + shift over `inner` positions of one block (scale_body), then
// with `relu` MXNet's relu of each value.
template <int W>
LOOM_VECTOR_CLONES void bn_scale_block(const float *x, float *y, int64_t inner, const double *scale,
                                       const double *shift, bool relu) {
  typedef ChannelBlock<W> B;
  const typename B::D sc = B::lanes(scale), sh = B::lanes(shift);
  if (!relu) {
    for (int64_t i = 0; i < inner; ++i) B::store(y + W * i, B::load(x + W * i) * sc + sh);
    return;
  }
  for (int64_t i = 0; i < inner; ++i) B::store_relu(y + W * i, B::load(x + W * i) * sc + sh);
}

// One block's backward pass (backward_body): mean, invstd and g per channel in
// `b` (mean and invstd filled in here with the batch's statistics).
struct BnBackwardBlock {
  double mean[16], invstd[16], g[16], var[16];
  double m, eps;
  bool batch;
};
// The output gradient's W values at g; with kRelu (the BatchNorm fused with its
// relu) g is the relu's output gradient and z its output, and the values are
// the relu's backward pass's, dz * relu_grad(z) in float.
template <int W, bool kRelu>
LOOM_CLONE_BODY typename ChannelBlock<W>::D load_grad(const float *g, const float *z) {
  if constexpr (kRelu)
    return ChannelBlock<W>::load_relu_grad(g, z);
  else
    return ChannelBlock<W>::load(g);
}
template <int W, bool kRelu>
LOOM_VECTOR_CLONES void bn_backward_block(BnBackwardBlock &b, const float *x, const float *dy, const float *z,
                                          float *dx, int64_t outer, int64_t inner, int64_t stride, double *out_sdy,
                                          double *out_sdyx) {
  typedef ChannelBlock<W> B;
  typedef typename B::D D;
  D sdy = {}, sdyx = {}, mu, invstd;
  if (b.batch) {
    D s = {}, s2 = {};
    for (int64_t o = 0; o < outer; ++o) {
      const float *row = x + o * stride;
      s += sum8_block<W>(inner, [row](int64_t i) { return B::load(row + W * i); });
    }
    mu = s / b.m;
    for (int64_t o = 0; o < outer; ++o) {
      const float *xr = x + o * stride, *gr = dy + o * stride, *zr = kRelu ? z + o * stride : gr;  // (unread without kRelu)
      s2 += sum8_block<W>(inner, [xr, mu](int64_t i) {
        const D d = B::load(xr + W * i) - mu;
        return d * d;
      });
      sdy += sum8_block<W>(inner, [gr, zr](int64_t i) { return load_grad<W, kRelu>(gr + W * i, zr + W * i); });
      sdyx += sum8_block<W>(inner, [xr, gr, zr, mu](int64_t i) {
        return load_grad<W, kRelu>(gr + W * i, zr + W * i) * (B::load(xr + W * i) - mu);
      });
    }
    const D var = s2 / b.m;
    for (int l = 0; l < W; ++l) {
      b.mean[l] = mu[l];
      b.var[l] = var[l];
      b.invstd[l] = 1 / std::sqrt(var[l] + b.eps);
    }
  } else {
    mu = B::lanes(b.mean);
    for (int64_t o = 0; o < outer; ++o) {
      const float *xr = x + o * stride, *gr = dy + o * stride, *zr = kRelu ? z + o * stride : gr;  // (unread without kRelu)
      sdy += sum8_block<W>(inner, [gr, zr](int64_t i) { return load_grad<W, kRelu>(gr + W * i, zr + W * i); });
      sdyx += sum8_block<W>(inner, [xr, gr, zr, mu](int64_t i) {
        return load_grad<W, kRelu>(gr + W * i, zr + W * i) * (B::load(xr + W * i) - mu);
      });
    }
  }
  invstd = B::lanes(b.invstd);
  sdyx *= invstd;
  for (int l = 0; l < W; ++l) out_sdy[l] = sdy[l], out_sdyx[l] = sdyx[l];
  if (!dx) return;
  // backward_body's formula, lane by lane.
  const D iw = invstd * B::lanes(b.g), gmean = sdy / b.m, k = sdyx * invstd / b.m;
  for (int64_t o = 0; o < outer; ++o) {
    const float *xr = x + o * stride, *gr = dy + o * stride, *zr = kRelu ? z + o * stride : gr;  // (unread without kRelu)
    float *dr = dx + o * stride;
    if (b.batch) {
      for (int64_t i = 0; i < inner; ++i)
        B::store(dr + W * i, (load_grad<W, kRelu>(gr + W * i, zr + W * i) - gmean - (B::load(xr + W * i) - mu) * k) * iw);
    } else {
      for (int64_t i = 0; i < inner; ++i) B::store(dr + W * i, load_grad<W, kRelu>(gr + W * i, zr + W * i) * iw);
    }
  }
}

// Whether BatchNorm's data is given blocked (float32, 4-D, channel axis 1).
bool bn_blocked(const Params &p, const TBlob &x) {
  if (!x.blocked) return false;
  LOOM_CHECK(x.dtype == LOOM_DTYPE_FLOAT32 && x.shape.ndim == 4 && onednn_block() != 0 &&
                 x.shape.d[1] % onednn_block() == 0 && normalize_axis(p.i("axis"), 4, p.op().name, "axis") == 1,
             LOOM_ERR_INTERNAL, p.op().name, ": blocked data of shape ", x.shape.str(),
             " (needs float32, 4-D, channels a multiple of ", onednn_block(), " on axis 1)");
  return true;
}

bool batch_stats(const OpContext &ctx, const Params &p) {
  return ctx.is_train && !p.b("use_global_stats");
}

// BatchNorm's forward and backward passes on blocked data (bn_blocked), as the
// op's own loops below compute them channel by channel.
template <int W>
void bn_forward_blocked_w(const OpContext &ctx, const Params &p, const BlobList &in, const BlobList &out,
                        const BNDims &dm) {
  const double eps = p.f("eps");
  const bool fix = p.b("fix_gamma");
  const int64_t C = dm.c, inner = dm.inner, blocks = C / W;
  const float *x = in[0].ptr<float>(), *gamma = in[1].ptr<float>(), *beta = in[2].ptr<float>();
  float *y = out[0].ptr<float>();
  if (fix) {
    float *gw = in[1].ptr<float>();
    for (int64_t c = 0; c < C; ++c)
      if (gw[c] != 1.0f) gw[c] = 1.0f;
  }
  std::vector<double> mean(C), var(C), scale(C), shift(C);
  if (batch_stats(ctx, p)) {
    parallel_for(blocks, [&](int64_t cb) {
      bn_stats_block<W>(x + cb * inner * W, dm.outer, inner, C * inner, &mean[cb * W], &var[cb * W]);
    }, 1);
  } else {
    mean.assign(in[3].ptr<float>(), in[3].ptr<float>() + C);
    var.assign(in[4].ptr<float>(), in[4].ptr<float>() + C);
  }
  for (int64_t c = 0; c < C; ++c) {
    const double g = fix ? 1.0 : double(gamma[c]);
    scale[c] = g / std::sqrt(var[c] + eps);
    shift[c] = double(beta[c]) - mean[c] * scale[c];
  }
  parallel_for(dm.outer * blocks, [&](int64_t ob) {
    const int64_t cb = ob % blocks;
    bn_scale_block<W>(x + ob * inner * W, y + ob * inner * W, inner, &scale[cb * W], &shift[cb * W], ctx.relu_after);
  }, 1 + (1 << 10) / std::max<int64_t>(inner, 1));
  if (out.size() > 2) {
    float *om = out[1].ptr<float>(), *ov = out[2].ptr<float>();
    for (int64_t c = 0; c < C; ++c) {
      om[c] = static_cast<float>(mean[c]);
      ov[c] = static_cast<float>(1 / std::sqrt(var[c] + eps));
    }
  }
}

template <int W>
void bn_backward_blocked_w(const OpContext &ctx, const Params &p, const BlobList &in, const BlobList &out,
                           const BlobList &og, const BlobList &ig, const ReqList &req, const BNDims &dm) {
  LOOM_CHECK(!req[0] || ig[0].blocked, LOOM_ERR_INTERNAL, p.op().name,
             ": the data's gradient must be blocked like the data");
  LOOM_CHECK(og[0].blocked, LOOM_ERR_INTERNAL, p.op().name, ": the output's gradient must be blocked like the data");
  const double eps = p.f("eps");
  const bool fix = p.b("fix_gamma"), batch = batch_stats(ctx, p);
  const int64_t C = dm.c, inner = dm.inner, blocks = C / W;
  const float *x = in[0].ptr<float>(), *gamma = in[1].ptr<float>(), *dy = og[0].ptr<float>();
  // Fused with the relu after it (ctx.relu_after): og[0] is the relu's output
  // gradient and out[0] its output, in the BatchNorm's layout.
  const float *z = ctx.relu_after ? out[0].ptr<float>() : nullptr;
  LOOM_CHECK(!z || out[0].blocked, LOOM_ERR_INTERNAL, p.op().name, ": the relu's output must be blocked like the data");
  std::vector<double> mean(C, 0.0), var(C, 0.0);
  const double m = double(std::max<int64_t>(dm.m(), 1));
  parallel_for(blocks, [&](int64_t cb) {
    BnBackwardBlock b;
    b.m = m;
    b.eps = eps;
    b.batch = batch;
    for (int l = 0; l < W; ++l) {
      const int64_t c = cb * W + l;
      b.g[l] = fix ? 1.0 : double(gamma[c]);
      b.mean[l] = batch ? 0.0 : double(in[3].ptr<float>()[c]);
      b.invstd[l] = batch ? 0.0 : 1 / std::sqrt(double(in[4].ptr<float>()[c]) + eps);
    }
    double sdy[W], sdyx[W];
    const int64_t at = cb * inner * W;
    float *dx = req[0] ? ig[0].ptr<float>() + at : nullptr;
    if (z)
      bn_backward_block<W, true>(b, x + at, dy + at, z + at, dx, dm.outer, inner, C * inner, sdy, sdyx);
    else
      bn_backward_block<W, false>(b, x + at, dy + at, nullptr, dx, dm.outer, inner, C * inner, sdy, sdyx);
    for (int l = 0; l < W; ++l) {
      const int64_t c = cb * W + l;
      if (batch) mean[c] = b.mean[l], var[c] = b.var[l];
      if (req[1]) ig[1].ptr<float>()[c] = static_cast<float>(fix ? 0.0 : sdyx[l]);
      if (req[2]) ig[2].ptr<float>()[c] = static_cast<float>(sdy[l]);
    }
  }, 1);
  if (batch) {  // the moving statistics take the batch's (MXNet 1.9), as below
    const double mom = p.f("momentum");
    float *mm = in[3].ptr<float>(), *mv = in[4].ptr<float>();
    for (int64_t c = 0; c < C; ++c) {
      mm[c] = static_cast<float>(mom * double(mm[c]) + (1 - mom) * mean[c]);
      mv[c] = static_cast<float>(mom * double(mv[c]) + (1 - mom) * var[c]);
    }
  }
}

void bn_forward_blocked(const OpContext &ctx, const Params &p, const BlobList &in, const BlobList &out,
                        const BNDims &dm) {
  if (onednn_block() == 8) return bn_forward_blocked_w<8>(ctx, p, in, out, dm);
  bn_forward_blocked_w<16>(ctx, p, in, out, dm);
}

void bn_backward_blocked(const OpContext &ctx, const Params &p, const BlobList &in, const BlobList &out,
                         const BlobList &og, const BlobList &ig, const ReqList &req, const BNDims &dm) {
  if (onednn_block() == 8) return bn_backward_blocked_w<8>(ctx, p, in, out, og, ig, req, dm);
  bn_backward_blocked_w<16>(ctx, p, in, out, og, ig, req, dm);
}

const int kBatchNorm = [] {
  OpDef &d = Registry::get().add("BatchNorm");
  d.set_doc("Batch normalisation over every axis but `axis`: out = gamma * (data - mean) / "
            "sqrt(var + eps) + beta. Training uses the batch's mean and biased variance; its "
            "backward pass updates the auxiliary states moving = momentum * moving + "
            "(1 - momentum) * batch (MXNet 1.9's CPU operator: a forward pass alone leaves "
            "them unchanged). Prediction (or use_global_stats) uses the moving statistics. "
            "fix_gamma uses gamma = 1, writes 1 into gamma in the forward pass and gives it a "
            "zero gradient. With output_mean_var the mean and the inverse standard deviation "
            "1/sqrt(var + eps) used are outputs too (as MXNet's CPU operator gives them).")
      .set_inputs({"data", "gamma", "beta", "moving_mean", "moving_var"})
      .param("eps", ParamType::Float, "0.001", "Added to the variance.")
      .param("momentum", ParamType::Float, "0.9", "Decay of the moving statistics.")
      .param("fix_gamma", ParamType::Bool, "true", "Use gamma = 1 (and give it no gradient).")
      .param("use_global_stats", ParamType::Bool, "false",
             "Normalise with the moving statistics in training too.")
      .param("axis", ParamType::Int, "1", "The channel axis.")
      .param("output_mean_var", ParamType::Bool, "false",
             "Also output the mean and the inverse standard deviation used.")
      .param("cudnn_off", ParamType::Bool, "false", "A GPU hint; accepted and ignored on CPU.");
  d.outputs = {"out", "mean", "var"};
  d.num_outputs = [](const Params &p) { return p.b("output_mean_var") ? 3 : 1; };
  d.num_aux = 2;
  d.float_only = true;
  d.backward_uses = kBwdInputs;
  d.infer_inputs = [](const Params &p, ShapeList &in, SmallVec<char, 4> &known,
                      const ShapeList &out, const SmallVec<char, 4> &out_known) {
    if (!known[0] && out_known[0]) in[0] = out[0], known[0] = 1;
    if (!known[0] || in[0].ndim < 1) return;
    int ax = normalize_axis(p.i("axis"), in[0].ndim, p.op().name, "axis");
    for (size_t k = 1; k < in.size(); ++k)
      if (!known[k]) in[k] = Shape{in[0].d[ax]}, known[k] = 1;
  };
  d.set_infer([](const Params &p, const ShapeList &in, const DTypeList &dt, ShapeList &out,
                 DTypeList &odt) {
    LOOM_CHECK(p.f("eps") > 0, LOOM_ERR_INVALID_ARGUMENT, p.op().name, ": eps must be > 0, got ",
               p.f("eps"));
    if (in[0].ndim < 1) shape_fail(p, "data must have at least 1 dimension, got " + in[0].str());
    BNDims dm = bn_dims(p, in[0]);
    const char *names[] = {"data", "gamma", "beta", "moving_mean", "moving_var"};
    for (int k = 1; k < 5; ++k)
      if (in[k] != Shape{dm.c})
        shape_fail(p, std::string(names[k]) + " has shape " + in[k].str() + ", expected " +
                          Shape{dm.c}.str() + " (one per channel of data " + in[0].str() + ")");
    out[0] = in[0];
    odt[0] = same_dtype(p, dt);
    for (size_t k = 1; k < out.size(); ++k) {
      out[k] = Shape{dm.c};
      odt[k] = odt[0];
    }
  });
  d.set_compute([](const OpContext &ctx, const Params &p, const BlobList &in, const BlobList &out) {
    BNDims dm = bn_dims(p, in[0].shape);
    const double eps = p.f("eps");
    const bool fix = p.b("fix_gamma");
    if (bn_blocked(p, in[0])) return bn_forward_blocked(ctx, p, in, out, dm);
    LOOM_FLOAT_SWITCH(in[0].dtype, T, {
      const T *x = in[0].ptr<T>(), *gamma = in[1].ptr<T>(), *beta = in[2].ptr<T>();
      const T *mm = in[3].ptr<T>(), *mv = in[4].ptr<T>();
      T *y = out[0].ptr<T>();
      if (fix) {  // MXNet writes 1 into gamma; only where it differs, so reads stay undisturbed
        T *gw = in[1].ptr<T>();
        for (int64_t c = 0; c < dm.c; ++c)
          if (gw[c] != T(1)) gw[c] = T(1);
      }
      std::vector<double> mean, var;
      if (batch_stats(ctx, p)) {
        channel_stats(x, dm, mean, var);
      } else {
        mean.assign(mm, mm + dm.c);
        var.assign(mv, mv + dm.c);
      }
      parallel_for(dm.outer * dm.c, [&](int64_t oc) {
        int64_t c = oc % dm.c;
        double g = fix ? 1.0 : double(gamma[c]);
        double scale = g / std::sqrt(var[c] + eps), shift = double(beta[c]) - mean[c] * scale;
        bn_scale_row(x + oc * dm.inner, y + oc * dm.inner, dm.inner, scale, shift, ctx.relu_after);
      }, 1 + (1 << 14) / std::max<int64_t>(dm.inner, 1));
      if (out.size() > 2) {
        T *om = out[1].ptr<T>(), *ov = out[2].ptr<T>();
        for (int64_t c = 0; c < dm.c; ++c) {
          om[c] = static_cast<T>(mean[c]);
          ov[c] = static_cast<T>(1 / std::sqrt(var[c] + eps));
        }
      }
    });
  });
  d.set_backward([](const OpContext &ctx, const Params &p, const BlobList &in, const BlobList &out,
                    const BlobList &og, const BlobList &ig, const ReqList &req) {
    BNDims dm = bn_dims(p, in[0].shape);
    const double eps = p.f("eps");
    const bool fix = p.b("fix_gamma"), batch = batch_stats(ctx, p);
    if (bn_blocked(p, in[0])) return bn_backward_blocked(ctx, p, in, out, og, ig, req, dm);
    LOOM_FLOAT_SWITCH(in[0].dtype, T, {
      const T *x = in[0].ptr<T>(), *gamma = in[1].ptr<T>();
      // Fused with the relu after it (ctx.relu_after; executor.cc,
      // fuse_relu_into_batchnorm): og[0] is the relu's output gradient and out[0]
      // its output; each channel's gradient is formed first, in the relu's bits.
      const T *dy = og[0].ptr<T>(), *z = ctx.relu_after ? out[0].ptr<T>() : nullptr;
      // With the batch's statistics each channel's are computed by bn_backward;
      // otherwise the moving ones are used.
      std::vector<double> mean(dm.c, 0.0), var(dm.c, 0.0);
      if (!batch) {
        mean.assign(in[3].ptr<T>(), in[3].ptr<T>() + dm.c);
        var.assign(in[4].ptr<T>(), in[4].ptr<T>() + dm.c);
      }
      const double m = double(std::max<int64_t>(dm.m(), 1));
      parallel_for(dm.c, [&](int64_t c) {
        const BnBackward b{mean[c], batch ? 0.0 : 1 / std::sqrt(var[c] + eps), fix ? 1.0 : double(gamma[c]), m,
                           eps, batch};
        const int64_t at = c * dm.inner;
        double sdy, sdyx;
        const T *g = dy + at;
        int64_t g_stride = dm.c * dm.inner;
        thread_local std::vector<T> fused;  // one channel's gradient, packed
        if (z) {
          fused.resize(static_cast<size_t>(dm.outer * dm.inner));
          relu_grad_rows(dy + at, z + at, fused.data(), dm.outer, dm.inner, dm.c * dm.inner);
          g = fused.data();
          g_stride = dm.inner;
        }
        bn_backward(b, x + at, g, req[0] ? ig[0].ptr<T>() + at : nullptr, dm.outer, dm.inner, dm.c * dm.inner,
                    g_stride, &sdy, &sdyx, &mean[c], &var[c]);
        if (req[1]) ig[1].ptr<T>()[c] = static_cast<T>(fix ? 0.0 : sdyx);
        if (req[2]) ig[2].ptr<T>()[c] = static_cast<T>(sdy);
      }, 1);
      if (batch) {
        // The moving statistics take the batch's in the backward pass (MXNet 1.9).
        const double mom = p.f("momentum");
        T *mm = in[3].ptr<T>(), *mv = in[4].ptr<T>();
        for (int64_t c = 0; c < dm.c; ++c) {
          mm[c] = static_cast<T>(mom * double(mm[c]) + (1 - mom) * mean[c]);
          mv[c] = static_cast<T>(mom * double(mv[c]) + (1 - mom) * var[c]);
        }
      }
    });
  });
  return 0;
}();

// ---------------------------------------------------------------- Concat
// Gradient of a concatenation: each input receives its slice of out_grad.
void concat_backward(const OpContext &, const Params &p, const BlobList &in, const BlobList &,
                     const BlobList &og, const BlobList &ig, const ReqList &req) {
  int ax = normalize_axis(p.i("dim"), og[0].shape.ndim, p.op().name, "dim");
  int64_t outer, mid, inner;
  split_axes(og[0].shape, ax, ax + 1, &outer, &mid, &inner);
  size_t es = dtype_size(og[0].dtype);
  const char *g = static_cast<const char *>(og[0].dptr);
  int64_t offset = 0;
  for (size_t k = 0; k < in.size(); ++k) {
    int64_t bm = in[k].shape.d[ax];
    size_t row = static_cast<size_t>(bm * inner) * es;
    if (req[k])
      for (int64_t r = 0; r < outer && row; ++r)
        std::memcpy(static_cast<char *>(ig[k].dptr) + r * row,
                    g + static_cast<size_t>((r * mid + offset) * inner) * es, row);
    offset += bm;
  }
}

const int kConcat = [] {
  auto &reg = Registry::get();
  reg.add("concat").set_backward(concat_backward).set_backward_uses(kBwdNone);
  OpDef &d = reg.add("Concat");
  d.set_doc("Joins num_args arrays along dim (MXNet's layer form of concat); all other extents "
            "must agree.")
      .set_inputs({"data"})
      .set_variadic()
      .required("num_args", ParamType::Int, "Number of inputs.")
      .param("dim", ParamType::Int, "1", "Axis to join along (negative counts from the end).");
  d.backward_uses = kBwdNone;
  d.set_infer([](const Params &p, const ShapeList &in, const DTypeList &dt, ShapeList &out,
                 DTypeList &odt) {
    LOOM_CHECK(p.i("num_args") == static_cast<int64_t>(in.size()), LOOM_ERR_INVALID_ARGUMENT,
               p.op().name, ": num_args=", p.i("num_args"), " but ", in.size(),
               " inputs were given");
    Registry::get().lookup("concat").infer(p, in, dt, out, odt);
  });
  d.set_compute([](const OpContext &c, const Params &p, const BlobList &in, const BlobList &out) {
    Registry::get().lookup("concat").compute(c, p, in, out);
  });
  d.set_backward(concat_backward);
  return 0;
}();

// LRN across channels (axis 1): y_c = x_c * s_c^-beta, where s_c = knorm +
// alpha / nsize * sum of x_j^2 over the nsize channels centred on c.
// Gradient: dx_j = dy_j s_j^-beta - 2 beta alpha / nsize * x_j *
// sum over the window of j of dy_c x_c s_c^(-beta-1).
template <typename T, typename F>
void lrn_planes(const Params &p, const Shape &s, F &&per_plane) {
  if (s.ndim < 2) shape_fail(p, "data must be (N, C, ...), got " + s.str());
  int64_t n = s.d[0], c = s.d[1], inner = s.size() / std::max<int64_t>(n * c, 1);
  parallel_ranges(n, 1, [&](int64_t b0, int64_t b1) {
    std::vector<double> scale(static_cast<size_t>(c * inner));
    for (int64_t b = b0; b < b1; ++b) per_plane(b, c, inner, scale.data());
  });
}

// scale[c, i] = s_c at position i of image b.
template <typename T>
void lrn_scale(const T *x, int64_t c, int64_t inner, int64_t half, double k, double a, double *sc) {
  for (int64_t ch = 0; ch < c; ++ch)
    for (int64_t i = 0; i < inner; ++i) {
      double acc = 0;
      for (int64_t j = std::max<int64_t>(0, ch - half); j <= std::min(c - 1, ch + half); ++j) {
        double v = x[j * inner + i];
        acc += v * v;
      }
      sc[ch * inner + i] = k + a * acc;
    }
}

const int kLRN = [] {
  OpDef &d = Registry::get().add("LRN");
  d.set_doc("Local response normalisation across channels: out = x / (knorm + alpha / nsize * "
            "sum of x^2 over the nsize neighbouring channels)^beta, channels on axis 1.")
      .set_inputs({"data"})
      .required("nsize", ParamType::Int, "Channels in the window (odd).")
      .param("alpha", ParamType::Float, "0.0001", "Scale of the sum of squares.")
      .param("beta", ParamType::Float, "0.75", "Exponent.")
      .param("knorm", ParamType::Float, "2.0", "Added to the scaled sum.");
  d.float_only = true;
  d.backward_uses = kBwdInputs;
  d.infer_inputs = same_shape_hint;
  d.set_infer([](const Params &p, const ShapeList &in, const DTypeList &dt, ShapeList &out,
                 DTypeList &odt) {
    LOOM_CHECK(p.i("nsize") >= 1 && p.i("nsize") % 2 == 1, LOOM_ERR_INVALID_ARGUMENT, p.op().name,
               ": nsize must be a positive odd number, got ", p.i("nsize"));
    if (in[0].ndim < 2) shape_fail(p, "data must be (N, C, ...), got " + in[0].str());
    out[0] = in[0];
    odt[0] = dt[0];
  });
  // 4-D float32 data in the oneDNN kernel set: oneDNN's LRN (onednn_lrn_forward).
  auto dnn_dims = [](const TBlob &x, int64_t *d) {
    if (x.dtype != kFloat32 || x.shape.ndim != 4 || !use_onednn()) return false;
    for (int i = 0; i < 4; ++i) d[i] = x.shape.d[i];
    return x.shape.size() > 0;
  };
  d.set_compute([dnn_dims](const OpContext &, const Params &p, const BlobList &in, const BlobList &out) {
    int64_t half = p.i("nsize") / 2;
    double a = p.f("alpha") / double(p.i("nsize")), beta = p.f("beta"), k = p.f("knorm");
    int64_t dm[4];
    if (dnn_dims(in[0], dm) &&
        onednn_lrn_forward(dm[0], dm[1], dm[2], dm[3], p.i("nsize"), static_cast<float>(p.f("alpha")),
                           static_cast<float>(beta), static_cast<float>(k), in[0].ptr<float>(), out[0].ptr<float>()))
      return;
    LOOM_FLOAT_SWITCH(in[0].dtype, T, {
      const T *x = in[0].ptr<T>();
      T *y = out[0].ptr<T>();
      lrn_planes<T>(p, in[0].shape, [&](int64_t b, int64_t c, int64_t inner, double *sc) {
        const T *xb = x + b * c * inner;
        T *yb = y + b * c * inner;
        lrn_scale(xb, c, inner, half, k, a, sc);
        for (int64_t i = 0; i < c * inner; ++i)
          yb[i] = static_cast<T>(double(xb[i]) * std::pow(sc[i], -beta));
      });
    });
  });
  d.set_backward([dnn_dims](const OpContext &, const Params &p, const BlobList &in, const BlobList &,
                            const BlobList &og, const BlobList &ig, const ReqList &req) {
    if (!req[0]) return;
    int64_t half = p.i("nsize") / 2;
    double a = p.f("alpha") / double(p.i("nsize")), beta = p.f("beta"), k = p.f("knorm");
    int64_t dm[4];
    if (dnn_dims(in[0], dm) &&
        onednn_lrn_backward(dm[0], dm[1], dm[2], dm[3], p.i("nsize"), static_cast<float>(p.f("alpha")),
                            static_cast<float>(beta), static_cast<float>(k), in[0].ptr<float>(),
                            og[0].ptr<float>(), ig[0].ptr<float>()))
      return;
    LOOM_FLOAT_SWITCH(in[0].dtype, T, {
      const T *x = in[0].ptr<T>(), *dy = og[0].ptr<T>();
      T *dx = ig[0].ptr<T>();
      lrn_planes<T>(p, in[0].shape, [&](int64_t b, int64_t c, int64_t inner, double *sc) {
        const T *xb = x + b * c * inner, *dyb = dy + b * c * inner;
        T *dxb = dx + b * c * inner;
        lrn_scale(xb, c, inner, half, k, a, sc);
        std::vector<double> t(static_cast<size_t>(c));  // dy_c x_c s_c^(-beta-1) at one position
        for (int64_t i = 0; i < inner; ++i) {
          for (int64_t ch = 0; ch < c; ++ch)
            t[ch] = double(dyb[ch * inner + i]) * double(xb[ch * inner + i]) *
                    std::pow(sc[ch * inner + i], -beta - 1);
          for (int64_t j = 0; j < c; ++j) {
            double acc = 0;
            for (int64_t ch = std::max<int64_t>(0, j - half); ch <= std::min(c - 1, j + half); ++ch)
              acc += t[ch];
            int64_t o = j * inner + i;
            dxb[o] = static_cast<T>(double(dyb[o]) * std::pow(sc[o], -beta) -
                                    2 * beta * a * double(xb[o]) * acc);
          }
        }
      });
    });
  });
  return 0;
}();

}  // namespace

bool batchnorm_prediction_affine(const OpContext &ctx, const Params &p, const BlobList &in,
                                 std::vector<float> &scale, std::vector<float> &shift) {
  if (batch_stats(ctx, p) || in[0].dtype != kFloat32) return false;
  const BNDims dm = bn_dims(p, in[0].shape);
  const double eps = p.f("eps");
  const bool fix = p.b("fix_gamma");
  float *gamma = in[1].ptr<float>();
  const float *beta = in[2].ptr<float>(), *mm = in[3].ptr<float>(), *mv = in[4].ptr<float>();
  scale.resize(static_cast<size_t>(dm.c));
  shift.resize(static_cast<size_t>(dm.c));
  for (int64_t c = 0; c < dm.c; ++c) {
    if (fix && gamma[c] != 1.0f) gamma[c] = 1.0f;  // as the op does
    const double s = (fix ? 1.0 : double(gamma[c])) / std::sqrt(double(mv[c]) + eps);
    scale[c] = static_cast<float>(s);
    shift[c] = static_cast<float>(double(beta[c]) - double(mm[c]) * s);
  }
  return true;
}

void fold_batchnorm_values(int64_t f, int64_t per, double eps, bool fix_gamma, const float *gamma, const float *beta,
                           const float *mean, const float *var, float *w, float *b) {
  for (int64_t c = 0; c < f; ++c) {
    const double s = (fix_gamma ? 1.0 : double(gamma[c])) / std::sqrt(double(var[c]) + eps);
    for (int64_t k = 0; k < per; ++k) w[c * per + k] = static_cast<float>(w[c * per + k] * s);
    b[c] = static_cast<float>((double(b[c]) - mean[c]) * s + beta[c]);
  }
}

std::shared_ptr<const FoldedConv> fold_batchnorm_into_conv(const Params &bn, const BlobList &conv_in,
                                                           const BlobList &bn_in) {
  Var *keep = conv_in[1].stable;
  const TBlob &w = conv_in[1];
  if (!keep || w.dtype != kFloat32 || w.shape.ndim < 1 || bn_in.size() < 5) return nullptr;
  const int64_t f = w.shape.d[0], per = f ? w.size() / f : 0;
  for (size_t k = 1; k < 5; ++k)
    if (bn_in[k].dtype != kFloat32 || bn_in[k].size() != f) return nullptr;
  const bool has_bias = conv_in.size() > 2 && conv_in[2].dptr;
  if (has_bias && (conv_in[2].dtype != kFloat32 || conv_in[2].size() != f)) return nullptr;
  const double eps = bn.f("eps");
  const bool fix = bn.b("fix_gamma");
  // The key: where the weight is (one var may hold several arrays) and every value
  // the fold reads; the weight's own values are covered by its var's version.
  std::string key("loom.fold_batchnorm:");
  auto put = [&key](const void *p, size_t n) { key.append(static_cast<const char *>(p), n); };
  const void *wp = w.dptr;
  const int64_t wn = w.size();
  put(&wp, sizeof wp);
  put(&wn, sizeof wn);
  put(&eps, sizeof eps);
  key.push_back(fix ? 1 : 0);
  key.push_back(has_bias ? 1 : 0);
  const size_t fb = static_cast<size_t>(f) * sizeof(float);
  for (size_t k = 1; k < 5; ++k) put(bn_in[k].dptr, fb);
  if (has_bias) put(conv_in[2].dptr, fb);
  if (auto kept = keep->derived(key)) return std::static_pointer_cast<const FoldedConv>(kept);
  auto r = std::make_shared<FoldedConv>();
  r->weight.assign(w.ptr<float>(), w.ptr<float>() + wn);
  if (has_bias)
    r->bias.assign(conv_in[2].ptr<float>(), conv_in[2].ptr<float>() + f);
  else
    r->bias.assign(static_cast<size_t>(f), 0.0f);
  fold_batchnorm_values(f, per, eps, fix, bn_in[1].ptr<float>(), bn_in[2].ptr<float>(), bn_in[3].ptr<float>(),
                        bn_in[4].ptr<float>(), r->weight.data(), r->bias.data());
  static std::atomic<uint64_t> next_id{1};
  r->id = next_id.fetch_add(1);
  keep->keep_derived(key, r);
  return r;
}

}  // namespace loom
