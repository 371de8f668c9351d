// 3-D Convolution, Deconvolution and Pooling (see volume.h).
#include "ops/nn/volume.h"

#include <limits>
#include <vector>

#include "ops/linalg/gemm.h"

namespace loom {
namespace {

// One volume window geometry: input extents `in`, output extents `out`.
struct Vol {
  int64_t n = 0, c = 0;
  int64_t in[3] = {1, 1, 1}, k[3] = {1, 1, 1}, s[3] = {1, 1, 1}, p[3] = {0, 0, 0},
          dl[3] = {1, 1, 1}, out[3] = {1, 1, 1};
  int64_t in_size() const { return in[0] * in[1] * in[2]; }
  int64_t out_size() const { return out[0] * out[1] * out[2]; }
  int64_t ksize() const { return k[0] * k[1] * k[2]; }
};

// A 3-value tuple parameter, or `dflt` on every axis when empty.
void triple(const Params &p, const char *name, int64_t dflt, int64_t *v) {
  const auto &t = p.tuple(name);
  if (t.empty()) {
    v[0] = v[1] = v[2] = dflt;
    return;
  }
  LOOM_CHECK(t.size() == 3, LOOM_ERR_INVALID_ARGUMENT, p.op().name, ": ", name, "=",
             Shape::from(t).str(), " must have 3 values for a 3-D kernel");
  for (int i = 0; i < 3; ++i) v[i] = t[i];
}

void check_data(const Params &p, const Shape &data) {
  if (data.ndim != 5)
    shape_fail(p, "data must be (N, C, D, H, W) for a 3-D kernel, got " + data.str());
  if (p.has("layout") && p.s("layout") != "NCDHW")
    shape_fail(p, "layout " + p.s("layout") + " does not fit 5-D data " + data.str());
}

// Kinds of window: a convolution (with dilation), a pooling window, or the
// convolution whose data gradient a deconvolution is.
enum class Kind { Conv, Pool };

Vol window(const Params &p, const Shape &data, Kind kind) {
  check_data(p, data);
  Vol g;
  g.n = data.d[0];
  g.c = data.d[1];
  for (int i = 0; i < 3; ++i) g.in[i] = data.d[2 + i];
  bool global = kind == Kind::Pool && p.b("global_pool");
  if (global) {
    for (int i = 0; i < 3; ++i) g.k[i] = g.in[i];
  } else {
    triple(p, "kernel", 1, g.k);
    triple(p, "stride", 1, g.s);
    triple(p, "pad", 0, g.p);
    if (kind == Kind::Conv) triple(p, "dilate", 1, g.dl);
  }
  for (int i = 0; i < 3; ++i)
    LOOM_CHECK(g.k[i] > 0 && g.s[i] > 0 && g.dl[i] > 0 && g.p[i] >= 0, LOOM_ERR_INVALID_ARGUMENT,
               p.op().name, ": kernel, stride and dilate must be positive and pad non-negative");
  bool full = kind == Kind::Pool && p.s("pooling_convention") == "full";
  for (int i = 0; i < 3; ++i) {
    int64_t span = g.in[i] + 2 * g.p[i] - (g.dl[i] * (g.k[i] - 1) + 1);
    if (span < 0)
      shape_fail(p, "kernel " + Shape::from(p.tuple("kernel")).str() + " does not fit data " +
                        data.str() + " with pad " + Shape::from(p.tuple("pad")).str());
    g.out[i] = full ? (span + g.s[i] - 1) / g.s[i] + 1 : span / g.s[i] + 1;
  }
  return g;
}

// The convolution geometry of a deconvolution: its output volume is the
// convolution's input; its data is the convolution's output.
Vol deconv_window(const Params &p, const Shape &data, int64_t *f_out) {
  check_data(p, data);
  Vol g;
  g.n = data.d[0];
  int64_t adj[3];
  triple(p, "kernel", 1, g.k);
  triple(p, "stride", 1, g.s);
  triple(p, "pad", 0, g.p);
  triple(p, "dilate", 1, g.dl);
  triple(p, "adj", 0, adj);
  for (int i = 0; i < 3; ++i) g.out[i] = data.d[2 + i];
  const auto &target = p.tuple("target_shape");
  bool use_target = std::any_of(target.begin(), target.end(), [](int64_t v) { return v != 0; });
  if (use_target)
    LOOM_CHECK(target.size() == 3, LOOM_ERR_INVALID_ARGUMENT, p.op().name, ": target_shape=",
               Shape::from(target).str(), " must have 3 values");
  for (int i = 0; i < 3; ++i) {
    LOOM_CHECK(g.k[i] > 0 && g.s[i] > 0 && g.dl[i] > 0 && g.p[i] >= 0, LOOM_ERR_INVALID_ARGUMENT,
               p.op().name, ": kernel, stride and dilate must be positive and pad non-negative");
    int64_t whole = g.s[i] * (g.out[i] - 1) + g.dl[i] * (g.k[i] - 1) + 1;
    if (use_target) {  // MXNet's InferPad
      LOOM_CHECK(target[i] > 0 && whole >= target[i], LOOM_ERR_SHAPE, p.op().name,
                 ": target_shape ", Shape::from(target).str(), " is larger than the largest output");
      adj[i] = (whole - target[i]) % 2;
      g.p[i] = (whole - target[i] + 1) / 2;
    }
    LOOM_CHECK(adj[i] >= 0 && adj[i] < g.s[i], LOOM_ERR_INVALID_ARGUMENT, p.op().name,
               ": adj must be non-negative and smaller than stride");
    g.in[i] = whole - 2 * g.p[i] + adj[i];
    if (g.in[i] <= 0) shape_fail(p, "pad leaves no output for data " + data.str());
  }
  *f_out = p.i("num_filter");
  g.c = *f_out;  // vol2col channels: the deconvolution's outputs
  return g;
}

int64_t groups_of(const Params &p, int64_t c, int64_t f) {
  int64_t groups = p.i("num_group");
  LOOM_CHECK(f > 0 && groups > 0 && c % groups == 0 && f % groups == 0, LOOM_ERR_INVALID_ARGUMENT,
             p.op().name, ": num_filter=", f, " and channels ", c,
             " must be positive multiples of num_group=", groups);
  return groups;
}

// col (ch * K rows, out_size columns) from x (ch, in volume).
template <typename T>
void vol2col(const T *x, int64_t ch, const Vol &g, T *col) {
  const int64_t cols = g.out_size();
  for (int64_t c = 0; c < ch; ++c)
    for (int64_t a = 0; a < g.k[0]; ++a)
      for (int64_t b = 0; b < g.k[1]; ++b)
        for (int64_t e = 0; e < g.k[2]; ++e) {
          T *row = col + (((c * g.k[0] + a) * g.k[1] + b) * g.k[2] + e) * cols;
          for (int64_t z = 0; z < g.out[0]; ++z) {
            int64_t iz = z * g.s[0] - g.p[0] + a * g.dl[0];
            for (int64_t y = 0; y < g.out[1]; ++y) {
              int64_t iy = y * g.s[1] - g.p[1] + b * g.dl[1];
              T *r = row + (z * g.out[1] + y) * g.out[2];
              bool zy = iz >= 0 && iz < g.in[0] && iy >= 0 && iy < g.in[1];
              for (int64_t w = 0; w < g.out[2]; ++w) {
                int64_t iw = w * g.s[2] - g.p[2] + e * g.dl[2];
                r[w] = zy && iw >= 0 && iw < g.in[2] ? x[((c * g.in[0] + iz) * g.in[1] + iy) * g.in[2] + iw] : T(0);
              }
            }
          }
        }
}

// x (ch, in volume) += the columns put back where vol2col took them.
template <typename T>
void col2vol(const T *col, int64_t ch, const Vol &g, T *x) {
  const int64_t cols = g.out_size();
  for (int64_t c = 0; c < ch; ++c)
    for (int64_t a = 0; a < g.k[0]; ++a)
      for (int64_t b = 0; b < g.k[1]; ++b)
        for (int64_t e = 0; e < g.k[2]; ++e) {
          const T *row = col + (((c * g.k[0] + a) * g.k[1] + b) * g.k[2] + e) * cols;
          for (int64_t z = 0; z < g.out[0]; ++z) {
            int64_t iz = z * g.s[0] - g.p[0] + a * g.dl[0];
            if (iz < 0 || iz >= g.in[0]) continue;
            for (int64_t y = 0; y < g.out[1]; ++y) {
              int64_t iy = y * g.s[1] - g.p[1] + b * g.dl[1];
              if (iy < 0 || iy >= g.in[1]) continue;
              const T *r = row + (z * g.out[1] + y) * g.out[2];
              for (int64_t w = 0; w < g.out[2]; ++w) {
                int64_t iw = w * g.s[2] - g.p[2] + e * g.dl[2];
                if (iw >= 0 && iw < g.in[2]) x[((c * g.in[0] + iz) * g.in[1] + iy) * g.in[2] + iw] += r[w];
              }
            }
          }
        }
}

template <typename T>
void add_bias(T *y, const T *bias, int64_t n, int64_t f, int64_t plane) {
  for (int64_t i = 0; i < n; ++i)
    for (int64_t k = 0; k < f; ++k) {
      T *yo = y + (i * f + k) * plane;
      for (int64_t j = 0; j < plane; ++j) yo[j] += bias[k];
    }
}


}  // namespace

bool is_volume(const Params &p, const Shape &data) {
  if (p.op().name == "Pooling" && p.b("global_pool")) return data.ndim == 5;
  return p.tuple("kernel").size() == 3;
}

// ------------------------------------------------------------------ Convolution
Shape conv3d_weight_shape(const Params &p, const Shape &data) {
  Vol g = window(p, data, Kind::Conv);
  int64_t f = p.i("num_filter");
  int64_t groups = groups_of(p, g.c, f);
  return Shape{f, g.c / groups, g.k[0], g.k[1], g.k[2]};
}

Shape conv3d_output_shape(const Params &p, const Shape &data) {
  Vol g = window(p, data, Kind::Conv);
  groups_of(p, g.c, p.i("num_filter"));
  return Shape{g.n, p.i("num_filter"), g.out[0], g.out[1], g.out[2]};
}

void conv3d_forward(const Params &p, const BlobList &in, const BlobList &out) {
  Vol g = window(p, in[0].shape, Kind::Conv);
  const int64_t f = p.i("num_filter"), groups = groups_of(p, g.c, f);
  const int64_t cg = g.c / groups, fg = f / groups, krows = cg * g.ksize(), P = g.out_size();
  LOOM_FLOAT_SWITCH(in[0].dtype, T, {
    std::vector<T> col(static_cast<size_t>(krows * P));
    const T *x = in[0].ptr<T>(), *w = in[1].ptr<T>();
    T *y = out[0].ptr<T>();
    for (int64_t n = 0; n < g.n; ++n)
      for (int64_t gr = 0; gr < groups; ++gr) {
        vol2col(x + (n * g.c + gr * cg) * g.in_size(), cg, g, col.data());
        gemm<T>(false, false, fg, P, krows, 1.0, w + gr * fg * krows, krows, col.data(), P, 0.0,
                y + (n * f + gr * fg) * P, P);
      }
    if (in.size() > 2) add_bias(y, in[2].ptr<T>(), g.n, f, P);
  });
}

void conv3d_backward(const Params &p, const BlobList &in, const BlobList &og, const BlobList &ig,
                     const ReqList &req) {
  Vol g = window(p, in[0].shape, Kind::Conv);
  const int64_t f = p.i("num_filter"), groups = groups_of(p, g.c, f);
  const int64_t cg = g.c / groups, fg = f / groups, krows = cg * g.ksize(), P = g.out_size();
  LOOM_FLOAT_SWITCH(in[0].dtype, T, {
    std::vector<T> col(static_cast<size_t>(krows * P));
    const T *x = in[0].ptr<T>(), *w = in[1].ptr<T>(), *dy = og[0].ptr<T>();
    if (req[0]) std::fill(ig[0].ptr<T>(), ig[0].ptr<T>() + ig[0].size(), T(0));
    for (int64_t n = 0; n < g.n; ++n)
      for (int64_t gr = 0; gr < groups; ++gr) {
        const T *dyg = dy + (n * f + gr * fg) * P;
        if (req[1]) {  // dW_g += dY_g (fg, P) . col^T (P, krows)
          vol2col(x + (n * g.c + gr * cg) * g.in_size(), cg, g, col.data());
          gemm<T>(false, true, fg, krows, P, 1.0, dyg, P, col.data(), P, n == 0 ? 0.0 : 1.0,
                  ig[1].ptr<T>() + gr * fg * krows, krows);
        }
        if (req[0]) {  // dX_g = col2vol(W_g^T (krows, fg) . dY_g)
          gemm<T>(true, false, krows, P, fg, 1.0, w + gr * fg * krows, krows, dyg, P, 0.0, col.data(), P);
          col2vol(col.data(), cg, g, ig[0].ptr<T>() + (n * g.c + gr * cg) * g.in_size());
        }
      }
    if (in.size() > 2 && req[2]) conv_bias_gradient(dy, g.n, f, P, ig[2].ptr<T>());
  });
}

// ------------------------------------------------------------------ Deconvolution
Shape deconv3d_weight_shape(const Params &p, const Shape &data) {
  int64_t f;
  Vol g = deconv_window(p, data, &f);
  int64_t c = data.d[1], groups = groups_of(p, c, f);
  return Shape{c, f / groups, g.k[0], g.k[1], g.k[2]};
}

Shape deconv3d_output_shape(const Params &p, const Shape &data) {
  int64_t f;
  Vol g = deconv_window(p, data, &f);
  groups_of(p, data.d[1], f);
  return Shape{g.n, f, g.in[0], g.in[1], g.in[2]};
}

void deconv3d_forward(const Params &p, const BlobList &in, const BlobList &out) {
  int64_t f;
  Vol g = deconv_window(p, in[0].shape, &f);
  const int64_t c = in[0].shape.d[1], groups = groups_of(p, c, f);
  const int64_t cg = c / groups, fg = f / groups, krows = fg * g.ksize(), P = g.out_size();
  LOOM_FLOAT_SWITCH(in[0].dtype, T, {
    std::vector<T> col(static_cast<size_t>(krows * P));
    const T *x = in[0].ptr<T>(), *w = in[1].ptr<T>();
    T *y = out[0].ptr<T>();
    std::fill(y, y + out[0].size(), T(0));
    for (int64_t n = 0; n < g.n; ++n)
      for (int64_t gr = 0; gr < groups; ++gr) {
        // COL (krows, P) = W_g^T (krows, cg) . X_g (cg, P); y_g += col2vol(COL)
        gemm<T>(true, false, krows, P, cg, 1.0, w + gr * cg * krows, krows, x + (n * c + gr * cg) * P, P,
                0.0, col.data(), P);
        col2vol(col.data(), fg, g, y + (n * f + gr * fg) * g.in_size());
      }
    if (in.size() > 2) add_bias(y, in[2].ptr<T>(), g.n, f, g.in_size());
  });
}

void deconv3d_backward(const Params &p, const BlobList &in, const BlobList &og, const BlobList &ig,
                       const ReqList &req) {
  int64_t f;
  Vol g = deconv_window(p, in[0].shape, &f);
  const int64_t c = in[0].shape.d[1], groups = groups_of(p, c, f);
  const int64_t cg = c / groups, fg = f / groups, krows = fg * g.ksize(), P = g.out_size();
  LOOM_FLOAT_SWITCH(in[0].dtype, T, {
    std::vector<T> col(static_cast<size_t>(krows * P));
    const T *x = in[0].ptr<T>(), *w = in[1].ptr<T>(), *dy = og[0].ptr<T>();
    for (int64_t n = 0; n < g.n; ++n)
      for (int64_t gr = 0; gr < groups; ++gr) {
        if (!req[0] && !req[1]) continue;
        vol2col(dy + (n * f + gr * fg) * g.in_size(), fg, g, col.data());
        if (req[0])  // dX_g (cg, P) = W_g (cg, krows) . COL
          gemm<T>(false, false, cg, P, krows, 1.0, w + gr * cg * krows, krows, col.data(), P, 0.0,
                  ig[0].ptr<T>() + (n * c + gr * cg) * P, P);
        if (req[1])  // dW_g (cg, krows) += X_g (cg, P) . COL^T
          gemm<T>(false, true, cg, krows, P, 1.0, x + (n * c + gr * cg) * P, P, col.data(), P,
                  n == 0 ? 0.0 : 1.0, ig[1].ptr<T>() + gr * cg * krows, krows);
      }
    if (in.size() > 2 && req[2]) conv_bias_gradient(dy, g.n, f, g.in_size(), ig[2].ptr<T>());
  });
}

// ------------------------------------------------------------------ Pooling
Shape pool3d_output_shape(const Params &p, const Shape &data) {
  Vol g = window(p, data, Kind::Pool);
  return Shape{g.n, g.c, g.out[0], g.out[1], g.out[2]};
}

namespace {
// The cells of output window `o` along one axis, clipped to the input, and its
// extent clipped to in + pad (MXNet's average divisor).
struct Span {
  int64_t lo, hi, padded;
};
Span span(const Vol &g, int axis, int64_t o) {
  int64_t start = o * g.s[axis] - g.p[axis];
  int64_t end = std::min(start + g.k[axis], g.in[axis] + g.p[axis]);
  return {std::max<int64_t>(start, 0), std::min(start + g.k[axis], g.in[axis]), end - start};
}

template <typename F>
void each_window(const Vol &g, F &&f) {
  for (int64_t z = 0; z < g.out[0]; ++z) {
    Span sz = span(g, 0, z);
    for (int64_t y = 0; y < g.out[1]; ++y) {
      Span sy = span(g, 1, y);
      for (int64_t w = 0; w < g.out[2]; ++w) f((z * g.out[1] + y) * g.out[2] + w, sz, sy, span(g, 2, w));
    }
  }
}

double divisor(const Span &a, const Span &b, const Span &c, bool include_pad) {
  if (include_pad) return double(a.padded * b.padded * c.padded);
  return double(std::max<int64_t>(a.hi - a.lo, 0) * std::max<int64_t>(b.hi - b.lo, 0) *
                std::max<int64_t>(c.hi - c.lo, 0));
}
}  // namespace

void pool3d_forward(const Params &p, const BlobList &in, const BlobList &out) {
  Vol g = window(p, in[0].shape, Kind::Pool);
  const std::string &type = p.s("pool_type");
  const bool is_max = type == "max", is_avg = type == "avg", include_pad = p.b("count_include_pad");
  LOOM_FLOAT_SWITCH(in[0].dtype, T, {
    const T *x = in[0].ptr<T>();
    T *y = out[0].ptr<T>();
    parallel_ranges(g.n * g.c, 1, [&](int64_t p0, int64_t p1) {
      for (int64_t nc = p0; nc < p1; ++nc) {
        const T *xp = x + nc * g.in_size();
        T *yp = y + nc * g.out_size();
        each_window(g, [&](int64_t o, const Span &sz, const Span &sy, const Span &sw) {
          double acc = is_max ? double(std::numeric_limits<T>::lowest()) : 0.0;
          for (int64_t a = sz.lo; a < sz.hi; ++a)
            for (int64_t b = sy.lo; b < sy.hi; ++b)
              for (int64_t e = sw.lo; e < sw.hi; ++e) {
                double v = xp[(a * g.in[1] + b) * g.in[2] + e];
                acc = is_max ? std::max(acc, v) : acc + v;
              }
          if (is_avg) {
            double d = divisor(sz, sy, sw, include_pad);
            acc = d > 0 ? acc / d : 0.0;
          }
          yp[o] = static_cast<T>(acc);
        });
      }
    });
  });
}

void pool3d_backward(const Params &p, const BlobList &in, const BlobList &og, const BlobList &ig,
                     const ReqList &req) {
  if (!req[0]) return;
  Vol g = window(p, in[0].shape, Kind::Pool);
  const std::string &type = p.s("pool_type");
  const bool is_max = type == "max", is_avg = type == "avg", include_pad = p.b("count_include_pad");
  LOOM_FLOAT_SWITCH(in[0].dtype, T, {
    const T *x = in[0].ptr<T>(), *dy = og[0].ptr<T>();
    T *dx = ig[0].ptr<T>();
    parallel_ranges(g.n * g.c, 1, [&](int64_t p0, int64_t p1) {
      std::fill(dx + p0 * g.in_size(), dx + p1 * g.in_size(), T(0));
      for (int64_t nc = p0; nc < p1; ++nc) {
        const T *xp = x + nc * g.in_size();
        T *dxp = dx + nc * g.in_size();
        const T *gp = dy + nc * g.out_size();
        each_window(g, [&](int64_t o, const Span &sz, const Span &sy, const Span &sw) {
          double gy = gp[o];
          if (is_max) {  // the first cell equal to the window's maximum (NaN never is)
            int64_t best = -1;
            T m = std::numeric_limits<T>::lowest();
            for (int64_t a = sz.lo; a < sz.hi; ++a)
              for (int64_t b = sy.lo; b < sy.hi; ++b)
                for (int64_t e = sw.lo; e < sw.hi; ++e) {
                  int64_t k = (a * g.in[1] + b) * g.in[2] + e;
                  if (xp[k] > m || (best < 0 && xp[k] == m)) m = xp[best = k];
                }
            if (best >= 0) dxp[best] += static_cast<T>(gy);
            return;
          }
          double share = gy;
          if (is_avg) {
            double d = divisor(sz, sy, sw, include_pad);
            share = d > 0 ? gy / d : 0.0;
          }
          for (int64_t a = sz.lo; a < sz.hi; ++a)
            for (int64_t b = sy.lo; b < sy.hi; ++b)
              for (int64_t e = sw.lo; e < sw.hi; ++e) dxp[(a * g.in[1] + b) * g.in[2] + e] += static_cast<T>(share);
        });
      }
    });
  });
}

}  // namespace loom
