// Convolution (im2col + gemm), Deconvolution and Pooling, NCHW, 1-D or 2-D,
// with gradients.
// 1-D inputs (N, C, W) are treated as 2-D with H = 1.
#include <cstring>
#include <limits>
#include <memory>

#include "common/scratch.h"
#include "ops/common.h"
#include "ops/linalg/gemm.h"
#include "ops/nn/direct_conv.h"
#include "ops/nn/onednn.h"
#include "ops/vecmath.h"
#include "ops/nn/fused.h"
#include "ops/nn/volume.h"

namespace loom {
namespace {

struct Geometry {
  int64_t n, c, h, w;        // input
  int64_t kh, kw, sh, sw, ph, pw, dh, dw;
  int64_t oh, ow;            // output spatial
  int spatial;               // 1 or 2
};

// Reads a 1- or 2-element tuple parameter, with a default for each element.
void pair_param(const Params &p, const char *name, int spatial, int64_t dflt, int64_t *a,
                int64_t *b) {
  const auto &t = p.tuple(name);
  if (t.empty()) {
    *a = *b = dflt;
    return;
  }
  LOOM_CHECK(static_cast<int>(t.size()) == spatial, LOOM_ERR_INVALID_ARGUMENT, p.op().name, ": ",
             name, "=", Shape::from(t).str(), " must have ", spatial,
             " value(s), like kernel");
  if (spatial == 1) {
    *a = 1;
    *b = t[0];
    if (std::string(name) == "pad" || std::string(name) == "adj") *a = 0;
  } else {
    *a = t[0];
    *b = t[1];
  }
}

// Checks a 1-D or 2-D window against (N, C, W) or (N, C, H, W) data.
void check_spatial(const Params &p, const Shape &data, int spatial) {
  if (spatial != 1 && spatial != 2)
    shape_fail(p, "kernel must have 1 or 2 values (1-D or 2-D), got " +
                      Shape::from(p.tuple("kernel")).str());
  if (data.ndim != spatial + 2)
    shape_fail(p, "data must be " + std::string(spatial == 2 ? "(N, C, H, W)" : "(N, C, W)") +
                      " for a " + std::to_string(spatial) + "-D kernel, got " + data.str());
}

// MXNet's layout parameter: Loom computes channel-first layouts only, so
// another layout is refused (by the enum) and the one given must fit the data.
OpDef &layout_param(OpDef &d) {
  return d.param("layout", ParamType::Enum, "None",
                 "Data layout; Loom computes the channel-first layouts (NCW, NCHW, NCDHW).",
                 {"NCW", "NCHW", "NCDHW"});
}
void check_layout(const Params &p, const Shape &data) {
  if (!p.has("layout")) return;
  const std::string &l = p.s("layout");
  if (static_cast<int>(l.size()) != data.ndim)
    shape_fail(p, "layout " + l + " needs data of " + std::to_string(l.size()) + " axes, got " +
                      data.str());
}

Geometry geometry(const Params &p, const Shape &data, bool pooling) {
  Geometry g{};
  bool global = pooling && p.b("global_pool");
  const auto &k = p.tuple("kernel");
  int spatial = global ? data.ndim - 2 : static_cast<int>(k.size());
  check_spatial(p, data, spatial);
  g.spatial = spatial;
  g.n = data.d[0];
  g.c = data.d[1];
  g.h = spatial == 2 ? data.d[2] : 1;
  g.w = data.d[data.ndim - 1];
  if (global) {
    g.kh = g.h;
    g.kw = g.w;
    g.sh = g.sw = 1;
    g.ph = g.pw = 0;
    g.dh = g.dw = 1;
  } else {
    if (spatial == 2) {
      g.kh = k[0];
      g.kw = k[1];
    } else {
      g.kh = 1;
      g.kw = k[0];
    }
    pair_param(p, "stride", spatial, 1, &g.sh, &g.sw);
    pair_param(p, "pad", spatial, 0, &g.ph, &g.pw);
    if (!pooling)
      pair_param(p, "dilate", spatial, 1, &g.dh, &g.dw);
    else
      g.dh = g.dw = 1;
  }
  LOOM_CHECK(g.kh > 0 && g.kw > 0 && g.sh > 0 && g.sw > 0 && g.dh > 0 && g.dw > 0 && g.ph >= 0 &&
                 g.pw >= 0,
             LOOM_ERR_INVALID_ARGUMENT, p.op().name,
             ": kernel, stride and dilate must be positive and pad non-negative");
  check_layout(p, data);
  int64_t eh = g.dh * (g.kh - 1) + 1, ew = g.dw * (g.kw - 1) + 1;
  bool full = pooling && p.s("pooling_convention") == "full";
  auto out_len = [&](int64_t in, int64_t pad, int64_t ext, int64_t stride) -> int64_t {
    int64_t span = in + 2 * pad - ext;
    if (span < 0) return -1;
    return full ? (span + stride - 1) / stride + 1 : span / stride + 1;
  };
  g.oh = out_len(g.h, g.ph, eh, g.sh);
  g.ow = out_len(g.w, g.pw, ew, g.sw);
  if (g.oh <= 0 || g.ow <= 0)
    shape_fail(p, "kernel " + Shape::from(k).str() + " (dilated extent " +
                      (spatial == 2 ? std::to_string(eh) + "x" : "") + std::to_string(ew) +
                      ") does not fit data " + data.str() + " with pad " + std::to_string(g.ph) +
                      "," + std::to_string(g.pw));
  return g;
}

// Per-thread scratch reused across calls: fresh multi-megabyte buffers would
// page-fault on every call.
template <typename T>
T *scratch(size_t n, int slot) {
  thread_local std::vector<char> buffers[2];
  auto &b = buffers[slot];
  if (b.size() < n * sizeof(T)) b.resize(n * sizeof(T));
  return reinterpret_cast<T *>(b.data());
}

// Images per batched gemm, so the column buffer stays within `workspace` MB.
int64_t chunk_images(const Geometry &g, int64_t krows, size_t esize, int64_t workspace_mb) {
  int64_t per = krows * g.oh * g.ow * static_cast<int64_t>(esize);
  return std::max<int64_t>(1, std::min<int64_t>(g.n, (workspace_mb << 20) / std::max<int64_t>(per, 1)));
}

Shape out_shape(const Geometry &g, int64_t channels) {
  if (g.spatial == 2) return Shape{g.n, channels, g.oh, g.ow};
  return Shape{g.n, channels, g.ow};
}

// col (cg*kh*kw, oh*ow) from one image's channel group x (cg, h, w).
// The output columns oj whose input column oj*sw - pw + kj*dw lies in [0, w).
inline void valid_cols(const Geometry &g, int64_t kj, int64_t *lo, int64_t *hi) {
  int64_t off = kj * g.dw - g.pw;  // jj = oj*sw + off
  *lo = off >= 0 ? 0 : (-off + g.sw - 1) / g.sw;
  *hi = g.w - off <= 0 ? 0 : std::min(g.ow, (g.w - off + g.sw - 1) / g.sw);
  if (*hi < *lo) *hi = *lo;
}

// The valid output ranges of each kernel row and column (they depend on ki or
// kj alone: computed once per image, not per channel, where their divisions
// cost LeNet's 5x5 convolutions more than the copies).
struct ValidRanges {
  SmallVec<int64_t, 16> row_lo, row_hi, col_lo, col_hi;
  explicit ValidRanges(const Geometry &g) {
    for (int64_t ki = 0; ki < g.kh; ++ki) {
      // Rows oi whose input row oi*sh - ph + ki*dh lies in [0, h).
      const int64_t off = ki * g.dh - g.ph;
      int64_t lo = off >= 0 ? 0 : (-off + g.sh - 1) / g.sh;
      int64_t hi = g.h - off <= 0 ? 0 : std::min(g.oh, (g.h - off + g.sh - 1) / g.sh);
      row_lo.push_back(lo);
      row_hi.push_back(std::max(lo, hi));
    }
    for (int64_t kj = 0; kj < g.kw; ++kj) {
      int64_t lo, hi;
      valid_cols(g, kj, &lo, &hi);
      col_lo.push_back(lo);
      col_hi.push_back(hi);
    }
  }
};

// Copies n values: rows of a few dozen values (LeNet's second layer copies
// 400 thousand rows of 8 a pass) in pieces of 32 bytes that the compiler moves
// inline, where a call to memcpy costs more than the copy.
template <typename T>
LOOM_CLONE_BODY void copy_row(T *dst, const T *src, int64_t n) {
  constexpr int64_t kPiece = 32 / sizeof(T);
  if (n > 8 * kPiece) {
    std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(T));
    return;
  }
  // A 32-byte vector of T aligned as T: one unaligned move each way (GCC moves a
  // 32-byte memcpy as two 16-byte halves).
  typedef T V __attribute__((vector_size(32), aligned(sizeof(T))));
  int64_t i = 0;
  for (; i + kPiece <= n; i += kPiece) *reinterpret_cast<V *>(dst + i) = *reinterpret_cast<const V *>(src + i);
  for (; i < n; ++i) dst[i] = src[i];
}

// dst[i] += src[i] for n values, in pieces of 32 bytes (rows of a few values).
template <typename T>
LOOM_CLONE_BODY void add_row(T *__restrict dst, const T *__restrict src, int64_t n) {
  typedef T V __attribute__((vector_size(32), aligned(sizeof(T))));
  constexpr int64_t kPiece = 32 / sizeof(T);
  int64_t i = 0;
  for (; i + kPiece <= n; i += kPiece)
    *reinterpret_cast<V *>(dst + i) += *reinterpret_cast<const V *>(src + i);
  for (; i < n; ++i) dst[i] += src[i];
}

// copy_row (or, with ADD, add_row) over `rows` rows, dst rows dld apart and src
// rows sld apart, the choice of moves made once: LeNet's second layer moves rows
// of 8 floats, one 32-byte move each, where the per-row checks had cost more
// than the move. The same values and sums in the same order.
template <bool ADD, typename T>
LOOM_CLONE_BODY void move_rows(T *__restrict dst, int64_t dld, const T *__restrict src, int64_t sld, int64_t rows,
                               int64_t n) {
  constexpr int64_t kPiece = 32 / sizeof(T);
  typedef T V __attribute__((vector_size(32), aligned(sizeof(T))));
  if (n == kPiece) {
    for (int64_t r = 0; r < rows; ++r) {
      V &d = *reinterpret_cast<V *>(dst + r * dld);
      const V v = *reinterpret_cast<const V *>(src + r * sld);
      d = ADD ? d + v : v;
    }
    return;
  }
  for (int64_t r = 0; r < rows; ++r) {
    if (ADD)
      add_row(dst + r * dld, src + r * sld, n);
    else
      copy_row(dst + r * dld, src + r * sld, n);
  }
}

// col (cg*kh*kw rows, columns with stride ld) from one image's channel group x (cg, h, w).
template <typename T>
LOOM_CLONE_BODY void im2col_body(const T *x, int64_t cg, const Geometry &g, const ValidRanges &v, T *col,
                                 int64_t ld) {
  const int64_t oh = g.oh, ow = g.ow, h = g.h, w = g.w, kh = g.kh, kw = g.kw;
  for (int64_t c = 0; c < cg; ++c)
    for (int64_t ki = 0; ki < kh; ++ki) {
      const int64_t r0 = v.row_lo[ki], r1 = v.row_hi[ki];
      for (int64_t kj = 0; kj < kw; ++kj) {
        T *row = col + ((c * kh + ki) * kw + kj) * ld;
        const int64_t lo = v.col_lo[kj], hi = v.col_hi[kj], off = kj * g.dw - g.pw;
        const T *x0 = x + c * h * w + off + (r0 * g.sh - g.ph + ki * g.dh) * w;
        if (g.sw == 1 && g.sh == 1 && lo == 0 && hi == ow && r0 == 0 && r1 == oh) {
          // The whole row of windows inside the image: oh rows of ow values.
          move_rows<false>(row, ow, x0, w, oh, ow);
          continue;
        }
        std::fill(row, row + r0 * ow, T(0));
        std::fill(row + r1 * ow, row + oh * ow, T(0));
        for (int64_t oi = r0; oi < r1; ++oi) {
          T *r = row + oi * ow;
          const T *xr = x0 + (oi - r0) * g.sh * w;
          std::fill(r, r + lo, T(0));
          if (g.sw == 1)
            copy_row(r + lo, xr + lo, hi - lo);
          else
            for (int64_t oj = lo; oj < hi; ++oj) r[oj] = xr[oj * g.sw];
          std::fill(r + hi, r + ow, T(0));
        }
      }
    }
}

// im2col and col2im move rows of a few values in 32-byte pieces: built for AVX2
// too (the baseline build moved them 16 bytes at a time, and col2im's sums went
// through the stack).
LOOM_VECTOR_CLONES_AVX2 void im2col_rows(const float *x, int64_t cg, const Geometry &g, const ValidRanges &v,
                                         float *col, int64_t ld) {
  im2col_body(x, cg, g, v, col, ld);
}
LOOM_VECTOR_CLONES_AVX2 void im2col_rows(const double *x, int64_t cg, const Geometry &g, const ValidRanges &v,
                                         double *col, int64_t ld) {
  im2col_body(x, cg, g, v, col, ld);
}
template <typename T>
void im2col(const T *x, int64_t cg, const Geometry &g, T *col, int64_t ld) {
  im2col_rows(x, cg, g, ValidRanges(g), col, ld);
}

// Adds col back into dx (cg, h, w): the transpose of im2col.
template <typename T>
LOOM_CLONE_BODY void col2im_body(const T *col, int64_t cg, const Geometry &g, const ValidRanges &v, T *dx,
                                 int64_t ld) {
  const int64_t ow = g.ow, h = g.h, w = g.w, kh = g.kh, kw = g.kw;
  for (int64_t c = 0; c < cg; ++c)
    for (int64_t ki = 0; ki < kh; ++ki) {
      const int64_t r0 = v.row_lo[ki], r1 = v.row_hi[ki];
      for (int64_t kj = 0; kj < kw; ++kj) {
        const T *row = col + ((c * kh + ki) * kw + kj) * ld;
        const int64_t lo = v.col_lo[kj], hi = v.col_hi[kj], off = kj * g.dw - g.pw;
        T *d0 = dx + c * h * w + off + (r0 * g.sh - g.ph + ki * g.dh) * w;
        if (g.sw == 1) {
          move_rows<true>(d0 + lo, g.sh * w, row + r0 * ow + lo, ow, r1 - r0, hi - lo);
          continue;
        }
        for (int64_t oi = r0; oi < r1; ++oi) {
          const T *r = row + oi * ow;
          T *dr = d0 + (oi - r0) * g.sh * w;
          for (int64_t oj = lo; oj < hi; ++oj) dr[oj * g.sw] += r[oj];
        }
      }
    }
}

LOOM_VECTOR_CLONES_AVX2 void col2im_rows(const float *col, int64_t cg, const Geometry &g, const ValidRanges &v,
                                         float *dx, int64_t ld) {
  col2im_body(col, cg, g, v, dx, ld);
}
LOOM_VECTOR_CLONES_AVX2 void col2im_rows(const double *col, int64_t cg, const Geometry &g, const ValidRanges &v,
                                         double *dx, int64_t ld) {
  col2im_body(col, cg, g, v, dx, ld);
}
template <typename T>
void col2im(const T *col, int64_t cg, const Geometry &g, T *dx, int64_t ld) {
  col2im_rows(col, cg, g, ValidRanges(g), dx, ld);
}

// A plane's sum (lane_sum8): a bias gradient is such sums over its channel's
// planes, added plane by plane.
LOOM_VECTOR_CLONES double lane_sum(const float *x, int64_t n) { return lane_sum8<false>(x, x, n); }
LOOM_VECTOR_CLONES double lane_sum(const double *x, int64_t n) { return lane_sum8<false>(x, x, n); }

// db[k] = the sum of dy over channel k of every image ((n, f, plane) data).
template <typename T>
void bias_gradient(const T *dy, int64_t n, int64_t f, int64_t plane, T *db) {
  parallel_ranges(f, 1, [&](int64_t k0, int64_t k1) {
    for (int64_t k = k0; k < k1; ++k) {
      double s = 0;
      for (int64_t b = 0; b < n; ++b) s += lane_sum(dy + (b * f + k) * plane, plane);
      db[k] = static_cast<T>(s);
    }
  });
}

// bias_gradient for float dy in a blocked layout (W channels a block): each of a
// block's channels summed as lane_sum8 sums its plane (8 lanes over the whole
// eights, their tree, then the rest in order) and the planes added image by
// image, so the bits are the same.
template <int W>
LOOM_VECTOR_CLONES void bias_gradient_block(const float *dy, int64_t n, int64_t blocks, int64_t cb, int64_t plane,
                                            float *db) {
  typedef ChannelBlock<W> B;
  typedef typename B::D D;
  D total = {};
  for (int64_t b = 0; b < n; ++b) {
    const float *row = dy + (b * blocks + cb) * plane * W;
    D a[8] = {};
    int64_t i = 0;
    for (; i + 8 <= plane; i += 8)
      for (int k = 0; k < 8; ++k) a[k] += B::load(row + W * (i + k));
    D t = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
    for (; i < plane; ++i) t += B::load(row + W * i);
    total += t;
  }
  B::store(db + cb * W, total);
}
template <int W>
void bias_gradient_blocked_w(const float *dy, int64_t n, int64_t f, int64_t plane, float *db) {
  parallel_ranges(f / W, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t cb = c0; cb < c1; ++cb) bias_gradient_block<W>(dy, n, f / W, cb, plane, db);
  });
}
void bias_gradient_blocked(const float *dy, int64_t n, int64_t f, int64_t plane, float *db) {
  if (onednn_block() == 8) return bias_gradient_blocked_w<8>(dy, n, f, plane, db);
  bias_gradient_blocked_w<16>(dy, n, f, plane, db);
}

// Plain NCHW copies of arrays a training executor keeps blocked
// (TBlob::blocked), for kernels that read and write NCHW: read() gives a copy
// of an input, write() a buffer for an output, which write_back() reorders
// into the output. Blobs that are plain pass through unchanged.
class PlainCopies {
 public:
  TBlob read(const TBlob &b) {
    if (!b.blocked) return b;
    TBlob c = plain(b);
    onednn_blocked_layout(b.ptr<float>(), c.ptr<float>(), b.shape.d[0], b.shape.d[1], b.shape.d[2], b.shape.d[3],
                          false);
    return c;
  }
  TBlob write(const TBlob &b) {
    if (!b.blocked) return b;
    TBlob c = plain(b);
    outs_.emplace_back(c, b);
    return c;
  }
  void write_back() {
    for (auto &o : outs_)
      onednn_blocked_layout(o.first.ptr<float>(), o.second.ptr<float>(), o.second.shape.d[0], o.second.shape.d[1],
                            o.second.shape.d[2], o.second.shape.d[3], true);
  }

 private:
  TBlob plain(const TBlob &b) {
    LOOM_CHECK(b.dtype == LOOM_DTYPE_FLOAT32 && b.shape.ndim == 4 && onednn_block() != 0 &&
                   b.shape.d[1] % onednn_block() == 0,
               LOOM_ERR_INTERNAL, "Convolution: blocked data of shape ", b.shape.str(),
               " (needs float32, 4-D, channels a multiple of ", onednn_block(), ")");
    bufs_.emplace_back(new float[static_cast<size_t>(std::max<int64_t>(b.size(), 1))]);
    TBlob c = b;
    c.dptr = bufs_.back().get();
    c.blocked = false;
    c.stable = nullptr;
    return c;
  }
  std::vector<std::unique_ptr<float[]>> bufs_;
  std::vector<std::pair<TBlob, TBlob>> outs_;
};

// Sizes shared by the forward and backward kernels.
struct ConvPlan {
  Geometry g;
  int64_t f, groups, cg, fg, plane, krows, chunk, items;
  ConvPlan(const Params &p, const Shape &data, size_t esize) : g(geometry(p, data, false)) {
    f = p.i("num_filter");
    groups = p.i("num_group");
    cg = g.c / groups;
    fg = f / groups;
    plane = g.oh * g.ow;
    krows = cg * g.kh * g.kw;
    // Images per work item: about 1 MB of columns, so a thread's im2col output
    // is still in its cache when its gemm reads it (and within `workspace`).
    int64_t per_image = std::max<int64_t>(krows * plane * static_cast<int64_t>(esize), 1);
    chunk = std::min(chunk_images(g, krows, esize, p.i("workspace")),
                     std::max<int64_t>(1, (int64_t(1) << 20) / per_image));
    items = (g.n + chunk - 1) / chunk;
    // Several items: a multiple of 4 of them, the images dealt out evenly (item i
    // takes [i n / items, (i + 1) n / items)), so 2 or 4 threads get equal shares:
    // LeNet's second layer had 13 items of 8 and 4 images, 48 against 52 a thread.
    // The count follows the shapes alone, so the bits do not depend on the threads.
    if (items > 1) {
      items = std::min<int64_t>((items + 3) / 4 * 4, g.n);
      chunk = (g.n + items - 1) / items;
    }
  }
  // The images of work item i.
  int64_t first(int64_t i) const { return i * g.n / items; }
  int64_t count(int64_t i) const { return first(i + 1) - first(i); }
  // The column buffer (krows, chunk*plane) and the per-group output buffer
  // (fg, chunk*plane) that forward and backward both work in.
  template <typename T>
  T *columns() const {
    return scratch<T>(static_cast<size_t>(krows * chunk * plane), 0);
  }
  template <typename T>
  T *group_rows() const {
    return scratch<T>(static_cast<size_t>(fg * chunk * plane), 1);
  }
};

// A 1x1 convolution with stride 1 and no padding is a product per image on the
// plain layout: Y[n]_g (fg, plane) = W_g (fg, cg) . X[n]_g (cg, plane), with no
// columns or copies. The reference kernels run it so; oneDNN's 1x1 kernel, with
// its reorders, is faster still on ResNet-50's shapes (3.6 against 3.8 s a step).
bool pointwise(const ConvPlan &c) {
  const Geometry &g = c.g;
  return g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 && g.pw == 0;
}

template <typename T>
void pointwise_forward(const ConvPlan &c, const T *x, const T *w, const T *bias, T *y) {
  const Geometry &g = c.g;
  ensure_single_threaded_blas();
  parallel_ranges(g.n, 1, [&](int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n)
      for (int64_t gr = 0; gr < c.groups; ++gr) {
        T *yg = y + (n * c.f + gr * c.fg) * c.plane;
        gemm_serial<T>(false, false, c.fg, c.plane, c.cg, 1.0, w + gr * c.fg * c.cg, c.cg,
                       x + (n * g.c + gr * c.cg) * c.plane, c.plane, 0.0, yg, c.plane);
        if (bias)
          for (int64_t k = 0; k < c.fg; ++k) {
            T *row = yg + k * c.plane;
            const T bk = bias[gr * c.fg + k];
            for (int64_t i = 0; i < c.plane; ++i) row[i] += bk;
          }
      }
  });
}

// dX[n]_g = W_g^T . dY[n]_g; dW_g = sum over n of dY[n]_g . X[n]_g^T, image n
// added into partial slot n % slots in image order, the slots then added in
// slot order: the bits do not depend on the threads.
template <typename T>
void pointwise_backward(const ConvPlan &c, const T *x, const T *w, const T *dy, T *dx, T *dw) {
  const Geometry &g = c.g;
  const int64_t wsize = c.f * c.cg;
  const int64_t slots = dw ? std::max<int64_t>(1, std::min<int64_t>({g.n, 8, (int64_t(64) << 20) /
                                                      std::max<int64_t>(wsize * int64_t(sizeof(T)), 1)}))
                           : 1;
  std::shared_ptr<void> pieces = dw ? reusable_scratch(static_cast<size_t>(slots * wsize) * sizeof(T), "for the weight gradient's pieces") : nullptr;
  T *partial = static_cast<T *>(pieces.get());
  ensure_single_threaded_blas();
  parallel_ranges(slots, 1, [&](int64_t s0, int64_t s1) {
    for (int64_t slot = s0; slot < s1; ++slot)
      for (int64_t n = slot; n < g.n; n += slots)
        for (int64_t gr = 0; gr < c.groups; ++gr) {
          const T *dyg = dy + (n * c.f + gr * c.fg) * c.plane;
          const T *wg = w + gr * c.fg * c.cg;
          if (dx)
            gemm_serial<T>(true, false, c.cg, c.plane, c.fg, 1.0, wg, c.cg, dyg, c.plane, 0.0,
                           dx + (n * g.c + gr * c.cg) * c.plane, c.plane);
          if (dw)
            gemm_serial<T>(false, true, c.fg, c.cg, c.plane, 1.0, dyg, c.plane,
                           x + (n * g.c + gr * c.cg) * c.plane, c.plane, n == slot ? 0.0 : 1.0,
                           partial + slot * wsize + gr * c.fg * c.cg, c.cg);
        }
  });
  if (dw) {
    std::memcpy(dw, partial, static_cast<size_t>(wsize) * sizeof(T));
    for (int64_t sl = 1; sl < slots; ++sl) {
      const T *src = partial + sl * wsize;
      for (int64_t i = 0; i < wsize; ++i) dw[i] += src[i];
    }
  }
}

// The direct kernels' description of a planned convolution.
DirectConvShape direct_shape(const ConvPlan &c) {
  const Geometry &g = c.g;
  return DirectConvShape{g.n,  g.c,  g.h,  g.w,  c.f,  c.groups, g.kh, g.kw,
                         g.sh, g.sw, g.ph, g.pw, g.dh, g.dw,     g.oh, g.ow};
}

// The oneDNN description of a planned convolution.
ConvShape conv_shape(const ConvPlan &c) {
  const Geometry &g = c.g;
  return ConvShape{g.n, g.c, g.h, g.w, c.f, c.groups, g.kh, g.kw, g.sh, g.sw,
                   g.ph, g.pw, g.dh, g.dw, g.oh, g.ow};
}

}  // namespace

void conv_bias_gradient(const float *dy, int64_t n, int64_t f, int64_t plane, float *db) {
  bias_gradient(dy, n, f, plane, db);
}
void conv_bias_gradient(const double *dy, int64_t n, int64_t f, int64_t plane, double *db) {
  bias_gradient(dy, n, f, plane, db);
}

bool conv_onednn_takes(const Params &p, const Shape &data) {
  return use_onednn() && data.ndim == 4 && !is_volume(p, data) &&
         onednn_conv_takes(conv_shape(ConvPlan(p, data, 4)));
}

bool conv_onednn_row_bands(const Params &p, const Shape &data, bool winograd) {
  return conv_onednn_takes(p, data) && onednn_conv_row_bands(conv_shape(ConvPlan(p, data, 4)), winograd) > 0;
}

bool conv_loom_winograd_runs(const Params &p, const Shape &data) {
  return conv_onednn_takes(p, data) && loom_winograd_runs(conv_shape(ConvPlan(p, data, 4)));
}

size_t conv_winograd_scratch(const Params &p, const Shape &data) {
  if (!conv_onednn_takes(p, data)) return 0;
  return onednn_conv_forward_scratch(conv_shape(ConvPlan(p, data, 4)), !p.b("no_bias"), true);
}

// The data gradient of a 3x3 stride-1 convolution is the convolution of the output
// gradient with the filters turned 180 degrees and their input and output channels
// swapped, padded by 2 - pad: Loom's Winograd kernels compute it when they take that
// convolution (false, nothing written, when not).
namespace {
bool conv_data_gradient_by_winograd(const Params &p, const BlobList &in, const TBlob &dy, const TBlob &dx) {
  if (in[0].shape.ndim != 4) return false;
  const ConvShape s = conv_shape(ConvPlan(p, in[0].shape, 4));
  if (!onednn_conv_takes(s) || s.ph > 2 || s.pw > 2) return false;
  ConvShape t = s;
  t.c = s.f;
  t.f = s.c;
  t.h = s.oh;
  t.w = s.ow;
  t.oh = s.h;
  t.ow = s.w;
  t.ph = 2 - s.ph;
  t.pw = 2 - s.pw;
  if (!loom_winograd_runs(t)) return false;
  auto hold = reusable_scratch(sizeof(float) * static_cast<size_t>(s.f * s.c * 9), "for the turned filters");
  float *turned = static_cast<float *>(hold.get());
  const float *w = in[1].ptr<float>();
  parallel_ranges(s.c, 16, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c)
      for (int64_t f = 0; f < s.f; ++f)
        for (int k = 0; k < 9; ++k) turned[(c * s.f + f) * 9 + k] = w[(f * s.c + c) * 9 + (8 - k)];
  });
  ConvEpilogue lay;
  lay.src_blocked = dy.blocked;
  lay.dst_blocked = dx.blocked;
  loom_winograd_forward(t, dy.ptr<float>(), turned, nullptr, dx.ptr<float>(), nullptr, lay);
  return true;
}

// The weight gradient by Loom's Winograd kernels when they take it (false, nothing
// written, when not).
bool conv_weight_gradient_by_winograd(const Params &p, const BlobList &in, const TBlob &dy, const TBlob &dw) {
  if (in[0].shape.ndim != 4) return false;
  const ConvShape s = conv_shape(ConvPlan(p, in[0].shape, 4));
  if (!onednn_conv_takes(s) || !loom_winograd_weight_gradient_runs(s)) return false;
  loom_winograd_weight_gradient(s, in[0].ptr<float>(), dy.ptr<float>(), dw.ptr<float>(), in[0].blocked, dy.blocked);
  return true;
}
}  // namespace

bool conv_forward_with_epilogue(const OpContext &ctx, const Params &p, const BlobList &in, const TBlob &out,
                                const ConvEpilogue &ep) {
  if (in[0].dtype != LOOM_DTYPE_FLOAT32 || !use_onednn() || is_volume(p, in[0].shape)) return false;
  return onednn_conv_forward(conv_shape(ConvPlan(p, in[0].shape, 4)), in[0].ptr<float>(), in[1].ptr<float>(),
                             in.size() > 2 ? in[2].ptr<float>() : nullptr, out.ptr<float>(),
                             ctx.is_train ? nullptr : in[1].stable, ep, ctx.temp, ctx.temp_bytes);
}

namespace {

// Parameters Convolution and Deconvolution share.
OpDef &window_params(OpDef &d) {
  layout_param(d)
      .param("cudnn_tune", ParamType::Enum, "None", "A GPU algorithm hint; accepted and ignored on CPU.",
             {"off", "limited_workspace", "fastest"})
      .param("cudnn_off", ParamType::Bool, "false", "A GPU hint; accepted and ignored on CPU.");
  return d.set_inputs({"data", "weight", "bias"})
      .required("kernel", ParamType::Tuple, "Kernel size, (w,), (h, w) or (d, h, w).")
      .required("num_filter", ParamType::Int, "Number of output channels.")
      .param("stride", ParamType::Tuple, "()", "Stride per spatial axis (default 1).")
      .param("dilate", ParamType::Tuple, "()", "Dilation per spatial axis (default 1).")
      .param("num_group", ParamType::Int, "1", "Split channels into this many groups.");
}

const int kConvolution = [] {
  OpDef &d = Registry::get().add("Convolution");
  d.set_doc("Convolution over NCDHW (3-D), NCHW (2-D) or NCW (1-D) data: weight (num_filter, C/num_group, "
            "kernel...), bias (num_filter). Output extent: (in + 2*pad - dilate*(kernel-1) - 1) "
            "/ stride + 1.");
  window_params(d)
      .param("pad", ParamType::Tuple, "()", "Zero padding per spatial axis (default 0).")
      .param("no_bias", ParamType::Bool, "false", "Leave out the bias input.")
      .param("workspace", ParamType::Int, "256",
             "Limit in MB for the column buffer; larger batches are processed in chunks.");
  d.float_only = true;
  d.num_inputs = [](const Params &p) { return p.b("no_bias") ? 2 : 3; };
  d.optional_inputs = 1;
  d.backward_uses = kBwdInputs;
  d.infer_inputs = [](const Params &p, ShapeList &in, SmallVec<char, 4> &known, const ShapeList &,
                      const SmallVec<char, 4> &) {
    if (!known[0]) return;
    if (is_volume(p, in[0])) {
      if (!known[1]) in[1] = conv3d_weight_shape(p, in[0]), known[1] = 1;
      if (in.size() > 2 && !known[2]) in[2] = Shape{p.i("num_filter")}, known[2] = 1;
      return;
    }
    Geometry g = geometry(p, in[0], false);
    int64_t f = p.i("num_filter"), groups = std::max<int64_t>(p.i("num_group"), 1);
    if (!known[1]) {
      in[1] = g.spatial == 2 ? Shape{f, g.c / groups, g.kh, g.kw} : Shape{f, g.c / groups, g.kw};
      known[1] = 1;
    }
    if (in.size() > 2 && !known[2]) in[2] = Shape{f}, known[2] = 1;
  };
  d.set_infer([](const Params &p, const ShapeList &in, const DTypeList &dt, ShapeList &out,
                 DTypeList &odt) {
    odt[0] = same_dtype(p, dt);
    LOOM_CHECK(p.i("workspace") >= 0, LOOM_ERR_INVALID_ARGUMENT, p.op().name,
               ": workspace must be >= 0 MB, got ", p.i("workspace"));
    if (is_volume(p, in[0])) {
      Shape w = conv3d_weight_shape(p, in[0]);
      if (in[1] != w)
        shape_fail(p, "weight has shape " + in[1].str() + ", expected " + w.str() + " for data " +
                          in[0].str());
      if (in.size() > 2 && in[2] != Shape{p.i("num_filter")})
        shape_fail(p, "bias has shape " + in[2].str() + ", expected " + Shape{p.i("num_filter")}.str());
      out[0] = conv3d_output_shape(p, in[0]);
      return;
    }
    Geometry g = geometry(p, in[0], false);
    int64_t f = p.i("num_filter"), groups = p.i("num_group");
    LOOM_CHECK(f > 0 && groups > 0 && g.c % groups == 0 && f % groups == 0,
               LOOM_ERR_INVALID_ARGUMENT, p.op().name, ": num_filter=", f, " and channels ", g.c,
               " must be positive multiples of num_group=", groups);
    Shape w = g.spatial == 2 ? Shape{f, g.c / groups, g.kh, g.kw} : Shape{f, g.c / groups, g.kw};
    if (in[1] != w)
      shape_fail(p, "weight has shape " + in[1].str() + ", expected " + w.str() + " for data " +
                        in[0].str());
    if (in.size() > 2 && in[2] != Shape{f})
      shape_fail(p, "bias has shape " + in[2].str() + ", expected " + Shape{f}.str());
    out[0] = out_shape(g, f);
  });
  // Work items are chunks of images, spread over the kernel threads. The columns
  // of a chunk sit side by side, so each group is one single-threaded gemm:
  // Y (fg, B*plane) = W_g (fg, krows) . COL (krows, B*plane); the rows are then
  // scattered to NCHW with the bias added.
  d.set_compute([](const OpContext &ctx, const Params &p, const BlobList &in, const BlobList &out) {
    if (is_volume(p, in[0].shape)) return conv3d_forward(p, in, out);
    // Prediction keeps the weights in oneDNN's layout on their var (training
    // changes them every step, and the copy would only cost memory).
    ConvEpilogue layouts;
    layouts.src_blocked = in[0].blocked;
    layouts.dst_blocked = out[0].blocked;
    // A training step marked for Winograd: Loom's kernels where they take it (oneDNN's
    // Winograd stays with prediction, whose executors plan its work memory).
    layouts.winograd = ctx.winograd && in[0].shape.ndim == 4 &&
                       loom_winograd_runs(conv_shape(ConvPlan(p, in[0].shape, 4)));
    if (in[0].dtype == LOOM_DTYPE_FLOAT32 && use_onednn() &&
        onednn_conv_forward(conv_shape(ConvPlan(p, in[0].shape, 4)), in[0].ptr<float>(),
                            in[1].ptr<float>(), in.size() > 2 ? in[2].ptr<float>() : nullptr,
                            out[0].ptr<float>(), ctx.is_train ? nullptr : in[1].stable, layouts,
                            ctx.temp, ctx.temp_bytes))
      return;
    if (in[0].blocked || out[0].blocked) {
      // oneDNN did not take it after all: the kernels below on plain copies.
      PlainCopies pc;
      BlobList pin = in, pout = out;
      pin[0] = pc.read(in[0]);
      pout[0] = pc.write(out[0]);
      Registry::get().lookup("Convolution").compute(ctx, p, pin, pout);
      pc.write_back();
      return;
    }
    {
      const ConvPlan c(p, in[0].shape, dtype_size(in[0].dtype));
      if (pointwise(c)) {
        LOOM_FLOAT_SWITCH(in[0].dtype, T, {
          pointwise_forward<T>(c, in[0].ptr<T>(), in[1].ptr<T>(), in.size() > 2 ? in[2].ptr<T>() : nullptr,
                               out[0].ptr<T>());
        });
        return;
      }
      if (in[0].dtype == LOOM_DTYPE_FLOAT32 &&
          direct_conv_forward(direct_shape(c), in[0].ptr<float>(), in[1].ptr<float>(),
                              in.size() > 2 ? in[2].ptr<float>() : nullptr, out[0].ptr<float>()))
        return;
    }
    LOOM_FLOAT_SWITCH(in[0].dtype, T, {
      const ConvPlan c(p, in[0].shape, sizeof(T));
      const Geometry &g = c.g;
      const T *x = in[0].ptr<T>(), *w = in[1].ptr<T>();
      const T *bias = in.size() > 2 ? in[2].ptr<T>() : nullptr;
      T *y = out[0].ptr<T>();
      ensure_single_threaded_blas();
      // Each thread takes the next work item when done with one (parallel_items).
      parallel_items(c.items, [&](int64_t, int64_t item) {
        T *col = c.columns<T>();
        T *tmp = c.group_rows<T>();
        int64_t n0 = c.first(item), bn = c.count(item), ld = bn * c.plane;
        for (int64_t gr = 0; gr < c.groups; ++gr) {
          for (int64_t b = 0; b < bn; ++b)
            im2col(x + ((n0 + b) * g.c + gr * c.cg) * g.h * g.w, c.cg, g, col + b * c.plane, ld);
          gemm_serial<T>(false, false, c.fg, ld, c.krows, 1.0, w + gr * c.fg * c.krows, c.krows,
                         col, ld, 0.0, tmp, ld);
          for (int64_t b = 0; b < bn; ++b)
            for (int64_t k = 0; k < c.fg; ++k) {
              const T *src = tmp + k * ld + b * c.plane;
              T *dst = y + ((n0 + b) * c.f + gr * c.fg + k) * c.plane;
              const T bk = bias ? bias[gr * c.fg + k] : T(0);
              for (int64_t i = 0; i < c.plane; ++i) dst[i] = src[i] + bk;
            }
        }
      });
    });
  });
  // Per work item: dY of the chunk laid out (fg, B*plane) like the forward's
  // rows; dX by COL = W_g^T . dY and col2im (images are disjoint); dW summed
  // over the items into per-slot partials (item i goes to slot i % slots) that
  // are added in slot order, so the result does not depend on the threads.
  // An executor plans oneDNN's work memory with the graph's (imperative calls use
  // each thread's own buffers).
  d.temp_bytes = [](const Params &p, const ShapeList &in, const DTypeList &dt) {
    if (dt[0] != LOOM_DTYPE_FLOAT32 || !use_onednn() || is_volume(p, in[0])) return size_t(0);
    return onednn_conv_forward_scratch(conv_shape(ConvPlan(p, in[0], 4)), !p.b("no_bias"));
  };
  d.backward_temp_bytes = [](const Params &p, const ShapeList &in, const DTypeList &dt, const ReqList &req) {
    if (dt[0] != LOOM_DTYPE_FLOAT32 || !use_onednn() || is_volume(p, in[0])) return size_t(0);
    return onednn_conv_backward_scratch(conv_shape(ConvPlan(p, in[0], 4)), req[0] != kNullOp, req[1] != kNullOp);
  };
  d.set_backward([](const OpContext &ctx, const Params &p, const BlobList &in, const BlobList &,
                    const BlobList &og, const BlobList &ig, const ReqList &req) {
    if (is_volume(p, in[0].shape)) return conv3d_backward(p, in, og, ig, req);
    if (ctx.winograd && in[0].dtype == LOOM_DTYPE_FLOAT32 && use_onednn()) {
      // A step marked for Winograd: the data and weight gradients Loom's kernels
      // take, the rest (and the bias gradient) as without Winograd.
      ReqList rest = req;
      if (req[0] && conv_data_gradient_by_winograd(p, in, og[0], ig[0])) rest[0] = kNullOp;
      if (req[1] && conv_weight_gradient_by_winograd(p, in, og[0], ig[1])) rest[1] = kNullOp;
      if (rest[0] != req[0] || rest[1] != req[1]) {
        if (rest[0] || rest[1] || (in.size() > 2 && req[2])) {
          OpContext direct = ctx;
          direct.winograd = false;
          Registry::get().lookup("Convolution").backward(direct, p, in, BlobList{}, og, ig, rest);
        }
        return;
      }
    }
    LOOM_FLOAT_SWITCH(in[0].dtype, T, {
      const ConvPlan c(p, in[0].shape, sizeof(T));
      const Geometry &g = c.g;
      const T *x = in[0].ptr<T>(), *w = in[1].ptr<T>(), *dy = og[0].ptr<T>();
      const int64_t wsize = c.f * c.krows;
      bool done = !req[0] && !req[1];  // the bias gradient alone: nothing else to compute
      ConvLayouts lay;
      lay.x = in[0].blocked;
      lay.dy = og[0].blocked;
      lay.dx = req[0] && ig[0].blocked;
      if (std::is_same<T, float>::value && use_onednn() && (req[0] || req[1]))
        done = onednn_conv_backward(conv_shape(c), reinterpret_cast<const float *>(x),
                                    reinterpret_cast<const float *>(w),
                                    reinterpret_cast<const float *>(dy),
                                    req[0] ? reinterpret_cast<float *>(ig[0].ptr<T>()) : nullptr,
                                    req[1] ? reinterpret_cast<float *>(ig[1].ptr<T>()) : nullptr,
                                    ctx.temp, ctx.temp_bytes, lay);
      if (!done && (lay.x || lay.dy || lay.dx)) {
        // oneDNN did not take it after all: the kernels below on plain copies.
        PlainCopies pc;
        BlobList pin = in, pog = og, pig = ig;
        pin[0] = pc.read(in[0]);
        pog[0] = pc.read(og[0]);
        if (req[0]) pig[0] = pc.write(ig[0]);
        Registry::get().lookup("Convolution").backward(ctx, p, pin, BlobList{}, pog, pig, req);
        pc.write_back();
        return;
      }
      if (!done && pointwise(c) && (req[0] || req[1])) {
        pointwise_backward<T>(c, x, w, dy, req[0] ? ig[0].ptr<T>() : nullptr, req[1] ? ig[1].ptr<T>() : nullptr);
        done = true;
      }
      if (!done && req[1] && in[0].dtype == LOOM_DTYPE_FLOAT32 &&
          direct_conv_weight_gradient(direct_shape(c), reinterpret_cast<const float *>(x),
                                      reinterpret_cast<const float *>(dy), reinterpret_cast<float *>(ig[1].ptr<T>()))) {
        if (req[0]) {  // the data gradient by the kernels below
          ReqList rest = req;
          rest[1] = kNullOp;
          if (rest.size() > 2) rest[2] = kNullOp;
          Registry::get().lookup("Convolution").backward(ctx, p, in, BlobList{}, og, ig, rest);
        }
        done = true;
      }
      if (!done) {
      // Partial weight gradients: at most 64 slots and 64 MB.
      const int64_t slots = req[1] ? std::max<int64_t>(1, std::min<int64_t>(
                                         {c.items, 64, (int64_t(64) << 20) / std::max<int64_t>(
                                                                wsize * int64_t(sizeof(T)), 1)}))
                                   : 1;
      std::shared_ptr<void> pieces = req[1] ? reusable_scratch(static_cast<size_t>(slots * wsize) * sizeof(T),
                                                               "for the weight gradient's pieces")
                                            : nullptr;
      T *partial = static_cast<T *>(pieces.get());
      if (partial) std::fill(partial, partial + slots * wsize, T(0));
      ensure_single_threaded_blas();
      // Each thread takes the next slot when done with one (parallel_items).
      parallel_items(slots, [&](int64_t, int64_t slot) {
        T *col = c.columns<T>();
        T *dyb = c.group_rows<T>();
        for (int64_t item = slot; item < c.items; item += slots) {
          int64_t n0 = c.first(item), bn = c.count(item), ld = bn * c.plane;
          if (req[0]) std::fill(ig[0].ptr<T>() + n0 * g.c * g.h * g.w,
                                ig[0].ptr<T>() + (n0 + bn) * g.c * g.h * g.w, T(0));
          for (int64_t gr = 0; gr < c.groups; ++gr) {
            for (int64_t b = 0; b < bn; ++b)
              for (int64_t k = 0; k < c.fg; ++k)
                std::memcpy(dyb + k * ld + b * c.plane, dy + ((n0 + b) * c.f + gr * c.fg + k) * c.plane,
                            static_cast<size_t>(c.plane) * sizeof(T));
            if (req[1]) {  // partial dW_g += dY (fg, ld) . COL^T (ld, krows)
              for (int64_t b = 0; b < bn; ++b)
                im2col(x + ((n0 + b) * g.c + gr * c.cg) * g.h * g.w, c.cg, g, col + b * c.plane, ld);
              gemm_serial<T>(false, true, c.fg, c.krows, ld, 1.0, dyb, ld, col, ld,
                             item == slot ? 0.0 : 1.0, partial + slot * wsize + gr * c.fg * c.krows,
                             c.krows);
            }
            if (req[0]) {  // COL = W_g^T (krows, fg) . dY (fg, ld); dx += col2im(COL)
              gemm_serial<T>(true, false, c.krows, ld, c.fg, 1.0, w + gr * c.fg * c.krows, c.krows, dyb,
                             ld, 0.0, col, ld);
              for (int64_t b = 0; b < bn; ++b)
                col2im(col + b * c.plane, c.cg, g, ig[0].ptr<T>() + ((n0 + b) * g.c + gr * c.cg) * g.h * g.w, ld);
            }
          }
        }
      });
      if (req[1]) {
        T *dw = ig[1].ptr<T>();
        std::memcpy(dw, partial, static_cast<size_t>(wsize) * sizeof(T));
        for (int64_t sl = 1; sl < slots; ++sl) {
          const T *src = partial + sl * wsize;
          for (int64_t i = 0; i < wsize; ++i) dw[i] += src[i];
        }
      }
      }  // reference kernel
      if (in.size() > 2 && req[2]) {
        // Summed over NCHW planes in their order (a blocked dY in the same order).
        if (og[0].blocked)
          bias_gradient_blocked(og[0].ptr<float>(), g.n, c.f, c.plane, ig[2].ptr<float>());
        else
          bias_gradient(dy, g.n, c.f, c.plane, ig[2].ptr<T>());
      }
    });
  });
  return 0;
}();

// Deconvolution is the transpose of a convolution: its forward pass is the
// data gradient of the convolution that maps its output back onto its input.
// The geometry below is that convolution's: (h, w) is the deconvolution's
// output and (oh, ow) its input.
struct DeconvPlan {
  Geometry g;
  int64_t f, groups, cg, fg, plane, krows;  // cg: input channels per group; fg: output
  DeconvPlan(const Params &p, const Shape &data) {
    const auto &k = p.tuple("kernel");
    int spatial = static_cast<int>(k.size());
    check_spatial(p, data, spatial);
    g.spatial = spatial;
    g.n = data.d[0];
    g.c = data.d[1];
    g.oh = spatial == 2 ? data.d[2] : 1;
    g.ow = data.d[data.ndim - 1];
    g.kh = spatial == 2 ? k[0] : 1;
    g.kw = k[spatial - 1];
    int64_t ah, aw;
    pair_param(p, "stride", spatial, 1, &g.sh, &g.sw);
    pair_param(p, "pad", spatial, 0, &g.ph, &g.pw);
    pair_param(p, "dilate", spatial, 1, &g.dh, &g.dw);
    pair_param(p, "adj", spatial, 0, &ah, &aw);
    check_layout(p, data);
    const auto &target = p.tuple("target_shape");
    if (std::any_of(target.begin(), target.end(), [](int64_t v) { return v != 0; })) {
      // MXNet's InferPad: pad and adj that give exactly target_shape.
      LOOM_CHECK(static_cast<int>(target.size()) == spatial, LOOM_ERR_INVALID_ARGUMENT, p.op().name,
                 ": target_shape=", Shape::from(target).str(), " must have ", spatial, " value(s)");
      int64_t in_sp[2] = {g.oh, g.ow}, kk[2] = {g.kh, g.kw}, st[2] = {g.sh, g.sw}, dl[2] = {g.dh, g.dw};
      int64_t *pads[2] = {&g.ph, &g.pw}, *adjs[2] = {&ah, &aw};
      for (int i = 2 - spatial; i < 2; ++i) {
        int64_t t = target[i - (2 - spatial)];
        int64_t full = st[i] * (in_sp[i] - 1) + dl[i] * (kk[i] - 1) + 1;
        LOOM_CHECK(full >= t && t > 0, LOOM_ERR_SHAPE, p.op().name, ": target_shape ",
                   Shape::from(target).str(), " is larger than the largest output ", full,
                   " for data ", data.str());
        *adjs[i] = (full - t) % 2;
        *pads[i] = (full - t + 1) / 2;
      }
    }
    LOOM_CHECK(g.kh > 0 && g.kw > 0 && g.sh > 0 && g.sw > 0 && g.dh > 0 && g.dw > 0 && g.ph >= 0 &&
                   g.pw >= 0,
               LOOM_ERR_INVALID_ARGUMENT, p.op().name,
               ": kernel, stride and dilate must be positive and pad non-negative");
    LOOM_CHECK(ah >= 0 && aw >= 0 && ah < g.sh && aw < g.sw, LOOM_ERR_INVALID_ARGUMENT, p.op().name,
               ": adj must be non-negative and smaller than stride, got adj ", ah, ",", aw,
               " with stride ", g.sh, ",", g.sw);
    g.h = (g.oh - 1) * g.sh - 2 * g.ph + g.dh * (g.kh - 1) + 1 + ah;
    g.w = (g.ow - 1) * g.sw - 2 * g.pw + g.dw * (g.kw - 1) + 1 + aw;
    if (g.h <= 0 || g.w <= 0)
      shape_fail(p, "pad " + std::to_string(g.ph) + "," + std::to_string(g.pw) +
                        " leaves no output for data " + data.str() + " and kernel " +
                        Shape::from(k).str());
    f = p.i("num_filter");
    groups = p.i("num_group");
    LOOM_CHECK(f > 0 && groups > 0 && g.c % groups == 0 && f % groups == 0,
               LOOM_ERR_INVALID_ARGUMENT, p.op().name, ": num_filter=", f, " and channels ", g.c,
               " must be positive multiples of num_group=", groups);
    cg = g.c / groups;
    fg = f / groups;
    plane = g.oh * g.ow;
    krows = fg * g.kh * g.kw;
  }
  Shape weight() const {
    return g.spatial == 2 ? Shape{g.c, fg, g.kh, g.kw} : Shape{g.c, fg, g.kw};
  }
  Shape output() const { return g.spatial == 2 ? Shape{g.n, f, g.h, g.w} : Shape{g.n, f, g.w}; }
};

// The convolution whose data gradient a planned deconvolution is, for oneDNN:
// its input is the deconvolution's output (num_filter channels) and its
// output the deconvolution's input; MXNet's deconvolution weight (C, F/g, k...)
// is that convolution's weight.
ConvShape deconv_as_conv(const DeconvPlan &c) {
  const Geometry &g = c.g;
  return ConvShape{g.n, c.f, g.h, g.w, g.c, c.groups, g.kh, g.kw, g.sh, g.sw,
                   g.ph, g.pw, g.dh, g.dw, g.oh, g.ow};
}

const int kDeconvolution = [] {
  OpDef &d = Registry::get().add("Deconvolution");
  d.set_doc("Transposed convolution over NCDHW (3-D), NCHW (2-D) or NCW (1-D) data: weight (C, num_filter/"
            "num_group, kernel...), bias (num_filter). Output extent: (in - 1) * stride - 2*pad "
            "+ dilate*(kernel-1) + 1 + adj. Its forward pass is Convolution's data gradient.");
  window_params(d)
      .param("pad", ParamType::Tuple, "()", "Padding removed from the output per spatial axis (default 0).")
      .param("adj", ParamType::Tuple, "()", "Extra output rows/columns per spatial axis, below the stride (default 0).")
      .param("target_shape", ParamType::Tuple, "()",
             "Output spatial shape; when given, pad and adj are computed from it (MXNet's rule).")
      .param("no_bias", ParamType::Bool, "true", "Leave out the bias input (MXNet's default).")
      .param("workspace", ParamType::Int, "512", "Accepted for compatibility; not used.");
  d.float_only = true;
  d.num_inputs = [](const Params &p) { return p.b("no_bias") ? 2 : 3; };
  d.optional_inputs = 1;
  d.backward_uses = kBwdInputs;
  d.infer_inputs = [](const Params &p, ShapeList &in, SmallVec<char, 4> &known, const ShapeList &,
                      const SmallVec<char, 4> &) {
    if (!known[0]) return;
    if (is_volume(p, in[0])) {
      if (!known[1]) in[1] = deconv3d_weight_shape(p, in[0]), known[1] = 1;
      if (in.size() > 2 && !known[2]) in[2] = Shape{p.i("num_filter")}, known[2] = 1;
      return;
    }
    DeconvPlan c(p, in[0]);
    if (!known[1]) in[1] = c.weight(), known[1] = 1;
    if (in.size() > 2 && !known[2]) in[2] = Shape{c.f}, known[2] = 1;
  };
  d.set_infer([](const Params &p, const ShapeList &in, const DTypeList &dt, ShapeList &out,
                 DTypeList &odt) {
    odt[0] = same_dtype(p, dt);
    if (is_volume(p, in[0])) {
      Shape w = deconv3d_weight_shape(p, in[0]);
      if (in[1] != w)
        shape_fail(p, "weight has shape " + in[1].str() + ", expected " + w.str() + " for data " +
                          in[0].str());
      if (in.size() > 2 && in[2] != Shape{p.i("num_filter")})
        shape_fail(p, "bias has shape " + in[2].str() + ", expected " + Shape{p.i("num_filter")}.str());
      out[0] = deconv3d_output_shape(p, in[0]);
      return;
    }
    DeconvPlan c(p, in[0]);
    if (in[1] != c.weight())
      shape_fail(p, "weight has shape " + in[1].str() + ", expected " + c.weight().str() +
                        " for data " + in[0].str());
    if (in.size() > 2 && in[2] != Shape{c.f})
      shape_fail(p, "bias has shape " + in[2].str() + ", expected " + Shape{c.f}.str());
    out[0] = c.output();
  });
  // Per image and group: COL (krows, plane) = W_g^T (krows, cg) . X_g (cg, plane); y_g = col2im(COL).
  d.set_compute([](const OpContext &, const Params &p, const BlobList &in, const BlobList &out) {
    if (is_volume(p, in[0].shape)) return deconv3d_forward(p, in, out);
    if (in[0].dtype == LOOM_DTYPE_FLOAT32 && use_onednn()) {
      const DeconvPlan c(p, in[0].shape);
      float *y = out[0].ptr<float>();
      if (onednn_conv_backward(deconv_as_conv(c), nullptr, in[1].ptr<float>(), in[0].ptr<float>(), y,
                               nullptr)) {
        if (in.size() > 2) {
          const float *bias = in[2].ptr<float>();
          const int64_t img = c.g.h * c.g.w;
          parallel_for(c.g.n * c.f, [&](int64_t nk) {
            float *yo = y + nk * img;
            for (int64_t i = 0; i < img; ++i) yo[i] += bias[nk % c.f];
          }, 1);
        }
        return;
      }
    }
    LOOM_FLOAT_SWITCH(in[0].dtype, T, {
      const DeconvPlan c(p, in[0].shape);
      const Geometry &g = c.g;
      T *col = scratch<T>(static_cast<size_t>(c.krows * c.plane), 0);
      const T *x = in[0].ptr<T>(), *w = in[1].ptr<T>();
      T *y = out[0].ptr<T>();
      const int64_t img = g.h * g.w;
      std::fill(y, y + out[0].size(), T(0));
      for (int64_t n = 0; n < g.n; ++n)
        for (int64_t gr = 0; gr < c.groups; ++gr) {
          gemm<T>(true, false, c.krows, c.plane, c.cg, 1.0, w + gr * c.cg * c.krows, c.krows,
                  x + (n * g.c + gr * c.cg) * c.plane, c.plane, 0.0, col, c.plane);
          col2im(col, c.fg, g, y + (n * c.f + gr * c.fg) * img, c.plane);
        }
      if (in.size() > 2) {
        const T *bias = in[2].ptr<T>();
        for (int64_t n = 0; n < g.n; ++n)
          for (int64_t k = 0; k < c.f; ++k) {
            T *yo = y + (n * c.f + k) * img;
            for (int64_t i = 0; i < img; ++i) yo[i] += bias[k];
          }
      }
    });
  });
  // dX_g = W_g (cg, krows) . im2col(dY_g); dW_g += X_g (cg, plane) . im2col(dY_g)^T.
  d.set_backward([](const OpContext &, const Params &p, const BlobList &in, const BlobList &,
                    const BlobList &og, const BlobList &ig, const ReqList &req) {
    if (is_volume(p, in[0].shape)) return deconv3d_backward(p, in, og, ig, req);
    LOOM_FLOAT_SWITCH(in[0].dtype, T, {
      const DeconvPlan c(p, in[0].shape);
      const Geometry &g = c.g;
      T *col = scratch<T>(static_cast<size_t>(c.krows * c.plane), 0);
      const T *x = in[0].ptr<T>(), *w = in[1].ptr<T>(), *dy = og[0].ptr<T>();
      const int64_t img = g.h * g.w;
      // oneDNN: dX is the convolution of dY; dW that convolution's weight
      // gradient with X as its output gradient.
      bool done = false;
      if (std::is_same<T, float>::value && use_onednn() && (req[0] || req[1])) {
        const ConvShape s = deconv_as_conv(c);
        const float *xf = reinterpret_cast<const float *>(x), *wf = reinterpret_cast<const float *>(w),
                    *dyf = reinterpret_cast<const float *>(dy);
        done = (!req[0] || onednn_conv_forward(s, dyf, wf, nullptr, reinterpret_cast<float *>(ig[0].ptr<T>()))) &&
               (!req[1] || onednn_conv_backward(s, dyf, wf, xf, nullptr, reinterpret_cast<float *>(ig[1].ptr<T>())));
      }
      for (int64_t n = 0; n < g.n && !done; ++n)
        for (int64_t gr = 0; gr < c.groups; ++gr) {
          if (!req[0] && !req[1]) continue;
          im2col(dy + (n * c.f + gr * c.fg) * img, c.fg, g, col, c.plane);
          if (req[0])
            gemm<T>(false, false, c.cg, c.plane, c.krows, 1.0, w + gr * c.cg * c.krows, c.krows, col,
                    c.plane, 0.0, ig[0].ptr<T>() + (n * g.c + gr * c.cg) * c.plane, c.plane);
          if (req[1])
            gemm<T>(false, true, c.cg, c.krows, c.plane, 1.0, x + (n * g.c + gr * c.cg) * c.plane,
                    c.plane, col, c.plane, n == 0 ? 0.0 : 1.0, ig[1].ptr<T>() + gr * c.cg * c.krows,
                    c.krows);
        }
      if (in.size() > 2 && req[2]) {
        bias_gradient(dy, g.n, c.f, img, ig[2].ptr<T>());
      }
    });
  });
  return 0;
}();

// Max pooling of one plane, in T. A window is clipped to the image (padding and
// the cells past it are passed over, so a window with no cell gives T's lowest),
// and scanned row-major: `v > m` passes NaN over and keeps the first of equal
// cells, as MXNet's pool.h does. KH and KW
// fix the window at compile time for the common 2x2 and 3x3 (0: g.kh, g.kw).
template <typename T, int KH, int KW>
void max_pool_plane(const T *x, T *y, const Geometry &g) {
  const int64_t kh = KH ? KH : g.kh, kw = KW ? KW : g.kw;
  for (int64_t oi = 0; oi < g.oh; ++oi) {
    const int64_t i0 = oi * g.sh - g.ph;
    const bool rows_in = i0 >= 0 && i0 + kh <= g.h;
    const int64_t r0 = std::max<int64_t>(i0, 0), r1 = std::min(i0 + kh, g.h);
    for (int64_t oj = 0; oj < g.ow; ++oj) {
      const int64_t j0 = oj * g.sw - g.pw;
      T m = std::numeric_limits<T>::lowest();
      if (rows_in && j0 >= 0 && j0 + kw <= g.w) {
        const T *w0 = x + i0 * g.w + j0;
        for (int64_t i = 0; i < kh; ++i)
          for (int64_t j = 0; j < kw; ++j) m = w0[i * g.w + j] > m ? w0[i * g.w + j] : m;
      } else {
        const int64_t c0 = std::max<int64_t>(j0, 0), c1 = std::min(j0 + kw, g.w);
        for (int64_t i = r0; i < r1; ++i)
          for (int64_t j = c0; j < c1; ++j) m = x[i * g.w + j] > m ? x[i * g.w + j] : m;
      }
      y[oi * g.ow + oj] = m;
    }
  }
}

// Its gradient: as MXNet's unpool_max, the first cell of each (clipped) window,
// row-major, equal to the window's maximum takes dy; a NaN cell never does, and a
// window with no such cell (all NaN, or no cell) passes none.
template <typename T, int KH, int KW>
void max_pool_grad_plane(const T *x, const T *dy, T *dx, const Geometry &g) {
  const int64_t kh = KH ? KH : g.kh, kw = KW ? KW : g.kw;
  for (int64_t oi = 0; oi < g.oh; ++oi) {
    const int64_t i0 = oi * g.sh - g.ph;
    const bool rows_in = i0 >= 0 && i0 + kh <= g.h;
    const int64_t r0 = std::max<int64_t>(i0, 0), r1 = std::min(i0 + kh, g.h);
    for (int64_t oj = 0; oj < g.ow; ++oj) {
      const int64_t j0 = oj * g.sw - g.pw;
      int64_t best = -1;
      T m = std::numeric_limits<T>::lowest();
      if (rows_in && j0 >= 0 && j0 + kw <= g.w) {
        const int64_t base = i0 * g.w + j0;
        for (int64_t i = 0; i < kh; ++i)
          for (int64_t j = 0; j < kw; ++j) {
            const int64_t k = base + i * g.w + j;
            if (x[k] > m || (best < 0 && x[k] == m)) m = x[best = k];
          }
      } else {
        const int64_t c0 = std::max<int64_t>(j0, 0), c1 = std::min(j0 + kw, g.w);
        for (int64_t i = r0; i < r1; ++i)
          for (int64_t j = c0; j < c1; ++j) {
            const int64_t k = i * g.w + j;
            if (x[k] > m || (best < 0 && x[k] == m)) m = x[best = k];
          }
      }
      if (best >= 0) dx[best] += dy[oi * g.ow + oj];
    }
  }
}

// Float max-pooling gradient of one plane for 2x2 windows at stride 2 with no
// padding, whose windows tile the top-left 2*oh x 2*ow of the plane. The same
// choice as above, without branches: the cells that the scan above can never take
// (NaN, and -inf, which is below its starting lowest()) become -inf; the window's
// maximum, if a takeable cell holds it, goes to the first cell (row-major) equal
// to it. Each cell is written once with 0 + dy (the general kernel adds dy to a
// zeroed dx: a -0 gradient gives +0 in both). The cells outside the tiling are
// left as the caller zeroed them. Four windows at a time are the 8 lanes of a
// vector (a row pair's top cells a b a b ..., its bottom cells c d c d ...), so
// the short rows of small images (LeNet's 4 and 12 windows) vectorise too.
typedef int32_t I8v __attribute__((vector_size(32)));
// (__builtin_shufflevector: GCC 12 and clang both have it; GCC's __builtin_shuffle is GCC's alone.)
LOOM_CLONE_BODY void pool2x2_pair_swap(const F8v &v, F8v &out) { out = __builtin_shufflevector(v, v, 1, 0, 3, 2, 5, 4, 7, 6); }
LOOM_CLONE_BODY void pool2x2_pair_swap(const I8v &v, I8v &out) { out = __builtin_shufflevector(v, v, 1, 0, 3, 2, 5, 4, 7, 6); }
LOOM_VECTOR_CLONES_AVX2 void max_pool_grad_plane_2x2s2(const float *__restrict x, const float *__restrict dy,
                                                  float *__restrict dx, int64_t w, int64_t oh, int64_t ow) {
  const float lo = std::numeric_limits<float>::lowest(), ninf = -std::numeric_limits<float>::infinity(),
              nan = std::numeric_limits<float>::quiet_NaN();
  const F8v lov = {lo, lo, lo, lo, lo, lo, lo, lo}, ninfv = {ninf, ninf, ninf, ninf, ninf, ninf, ninf, ninf},
            zero = {};
  const I8v odd = {0, -1, 0, -1, 0, -1, 0, -1};
  for (int64_t oi = 0; oi < oh; ++oi) {
    const float *x0 = x + 2 * oi * w, *x1 = x0 + w;
    float *d0 = dx + 2 * oi * w, *d1 = d0 + w;
    const float *g = dy + oi * ow;
    int64_t oj = 0;
    for (; oj + 4 <= ow; oj += 4) {
      F8v t, b, ts, bs, gv;
      std::memcpy(&t, x0 + 2 * oj, sizeof t);
      std::memcpy(&b, x1 + 2 * oj, sizeof b);
      t = t >= lov ? t : ninfv;
      b = b >= lov ? b : ninfv;
      pool2x2_pair_swap(t, ts);
      pool2x2_pair_swap(b, bs);
      const F8v mt = t > ts ? t : ts, mb = b > bs ? b : bs, most = mt > mb ? mt : mb;
      const F8v g4 = {g[oj], g[oj], g[oj + 1], g[oj + 1], g[oj + 2], g[oj + 2], g[oj + 3], g[oj + 3]};
      gv = most >= lov ? zero + g4 : zero;
      const I8v et = t == most, eb = b == most;
      I8v ets, ebs;
      pool2x2_pair_swap(et, ets);
      pool2x2_pair_swap(eb, ebs);
      const I8v taken_t = et & ~(ets & odd), taken_b = eb & ~(et | ets) & ~(ebs & odd);
      const F8v ot = taken_t ? gv : zero, ob = taken_b ? gv : zero;
      std::memcpy(d0 + 2 * oj, &ot, sizeof ot);
      std::memcpy(d1 + 2 * oj, &ob, sizeof ob);
    }
    for (; oj < ow; ++oj) {
      float a = x0[2 * oj], b = x0[2 * oj + 1], c = x1[2 * oj], d = x1[2 * oj + 1];
      a = a >= lo ? a : ninf;
      b = b >= lo ? b : ninf;
      c = c >= lo ? c : ninf;
      d = d >= lo ? d : ninf;
      const float ab = a > b ? a : b, cd = c > d ? c : d, most = ab > cd ? ab : cd;
      const float gi = most >= lo ? 0.0f + g[oj] : 0.0f;
      const float left0 = a == most ? nan : most;  // the maximum still to be claimed
      const float left1 = b == left0 ? nan : left0;
      const float left2 = c == left1 ? nan : left1;
      d0[2 * oj] = a == most ? gi : 0.0f;
      d0[2 * oj + 1] = b == left0 ? gi : 0.0f;
      d1[2 * oj] = c == left1 ? gi : 0.0f;
      d1[2 * oj + 1] = d == left2 ? gi : 0.0f;
    }
  }
}

// max_pool_plane for float 2x2 windows at stride 2 with no padding over `oh` row
// pairs (consecutive planes that the windows tile exactly continue the rows), in
// the same way: cells below lowest (and NaN) count as lowest, and the maximum does
// not depend on the order.
LOOM_VECTOR_CLONES_AVX2 void max_pool_plane_2x2s2(const float *__restrict x, float *__restrict y, int64_t w,
                                             int64_t oh, int64_t ow) {
  const float lo = std::numeric_limits<float>::lowest();
  const F8v lov = {lo, lo, lo, lo, lo, lo, lo, lo};
  for (int64_t oi = 0; oi < oh; ++oi) {
    const float *x0 = x + 2 * oi * w, *x1 = x0 + w;
    float *yr = y + oi * ow;
    int64_t oj = 0;
    for (; oj + 4 <= ow; oj += 4) {
      F8v t, b, ts, bs;
      std::memcpy(&t, x0 + 2 * oj, sizeof t);
      std::memcpy(&b, x1 + 2 * oj, sizeof b);
      t = t > lov ? t : lov;
      b = b > lov ? b : lov;
      pool2x2_pair_swap(t, ts);
      pool2x2_pair_swap(b, bs);
      const F8v mt = t > ts ? t : ts, mb = b > bs ? b : bs, m = mt > mb ? mt : mb;
      yr[oj] = m[0];
      yr[oj + 1] = m[2];
      yr[oj + 2] = m[4];
      yr[oj + 3] = m[6];
    }
    for (; oj < ow; ++oj) {
      float m = lo;
      for (float v : {x0[2 * oj], x0[2 * oj + 1], x1[2 * oj], x1[2 * oj + 1]}) m = v > m ? v : m;
      yr[oj] = m;
    }
  }
}

// The cell max_pool_grad_plane's scan chooses in each of `count` 3x3 windows lying
// inside the plane, the first with its top-left cell at x and each next S cells
// to the right (w: the plane's width): 0-8 row-major, or -1 for none. That scan
// takes the first cell holding the largest value at or above float's lowest (NaN
// and -inf never); here the same cell comes from the largest such value m (-inf
// when there is none) and the first cell equal to m, as selects, so that the loop
// vectorises over the windows (the scan's branches follow the data and
// mispredict: 32 ms against 9 for the 64 planes of 112x112 of 8 ResNet-50 images).
template <int S>
LOOM_VECTOR_CLONES void max3x3_choice(const float *__restrict x, int64_t w, int64_t count,
                                      int32_t *__restrict pick) {
  const float lo = std::numeric_limits<float>::lowest(), ninf = -std::numeric_limits<float>::infinity();
  const float *__restrict r0 = x, *__restrict r1 = x + w, *__restrict r2 = x + 2 * w;
  for (int64_t o = 0; o < count; ++o) {
    const int64_t j = o * S;
    const float c[9] = {r0[j], r0[j + 1], r0[j + 2], r1[j], r1[j + 1], r1[j + 2], r2[j], r2[j + 1], r2[j + 2]};
    float m = ninf;
    for (int k = 0; k < 9; ++k) m = c[k] > m ? c[k] : m;
    int32_t best = -1;
    for (int k = 8; k >= 0; --k) best = c[k] == m ? k : best;
    pick[o] = m >= lo ? best : -1;
  }
}

// max_pool_grad_plane for float 3x3 windows at a column stride of S (any row
// stride and padding): the windows inside the plane through max3x3_choice, the
// clipped ones at the edges by the scan. dy is added output by output in
// row-major order, as there. `pick` holds g.ow values.
template <int S>
void max_pool_grad_plane_3x3(const float *x, const float *dy, float *dx, const Geometry &g, int32_t *pick) {
  // Columns whose window lies inside the plane: j0 = oj * S - pw >= 0 and j0 + 3 <= w.
  const int64_t lo = std::min<int64_t>((g.pw + S - 1) / S, g.ow);
  const int64_t inside = g.w - 3 + g.pw >= 0 ? (g.w - 3 + g.pw) / S + 1 : 0;
  const int64_t hi = std::max<int64_t>(lo, std::min<int64_t>(inside, g.ow));
  auto clipped = [&](int64_t oi, int64_t oj) {
    const int64_t i0 = oi * g.sh - g.ph, j0 = oj * S - g.pw;
    const int64_t r0 = std::max<int64_t>(i0, 0), r1 = std::min<int64_t>(i0 + 3, g.h);
    const int64_t c0 = std::max<int64_t>(j0, 0), c1 = std::min<int64_t>(j0 + 3, g.w);
    int64_t best = -1;
    float m = std::numeric_limits<float>::lowest();
    for (int64_t i = r0; i < r1; ++i)
      for (int64_t j = c0; j < c1; ++j) {
        const int64_t k = i * g.w + j;
        if (x[k] > m || (best < 0 && x[k] == m)) m = x[best = k];
      }
    if (best >= 0) dx[best] += dy[oi * g.ow + oj];
  };
  for (int64_t oi = 0; oi < g.oh; ++oi) {
    const int64_t i0 = oi * g.sh - g.ph;
    if (i0 < 0 || i0 + 3 > g.h) {
      for (int64_t oj = 0; oj < g.ow; ++oj) clipped(oi, oj);
      continue;
    }
    for (int64_t oj = 0; oj < lo; ++oj) clipped(oi, oj);
    max3x3_choice<S>(x + i0 * g.w + lo * S - g.pw, g.w, hi - lo, pick);
    const float *gy = dy + oi * g.ow;
    for (int64_t oj = lo; oj < hi; ++oj) {
      const int p = pick[oj - lo];
      if (p >= 0) dx[(i0 + p / 3) * g.w + oj * S - g.pw + p % 3] += gy[oj];
    }
    for (int64_t oj = hi; oj < g.ow; ++oj) clipped(oi, oj);
  }
}

// Calls f with the plane functions for this window size.
template <typename T, typename F>
void with_max_pool_kernels(const Geometry &g, F &&f) {
  if (g.kh == 3 && g.kw == 3)
    f(max_pool_plane<T, 3, 3>, max_pool_grad_plane<T, 3, 3>);
  else if (g.kh == 2 && g.kw == 2)
    f(max_pool_plane<T, 2, 2>, max_pool_grad_plane<T, 2, 2>);
  else
    f(max_pool_plane<T, 0, 0>, max_pool_grad_plane<T, 0, 0>);
}

// The window of output (oi, oj) clipped to the input, and the divisor of
// average pooling: the window clipped to the padded input (in + pad), or to
// the input itself without count_include_pad (pool.h's pool_sum_*_cpu).
LOOM_CLONE_BODY double pool_window(const Geometry &g, bool include_pad, int64_t oi, int64_t oj, int64_t *i0,
                                   int64_t *i1, int64_t *j0, int64_t *j1) {
  *i0 = oi * g.sh - g.ph;
  *j0 = oj * g.sw - g.pw;
  int64_t pad_area = (std::min(*i0 + g.kh, g.h + g.ph) - *i0) * (std::min(*j0 + g.kw, g.w + g.pw) - *j0);
  *i1 = std::min(*i0 + g.kh, g.h);
  *j1 = std::min(*j0 + g.kw, g.w);
  *i0 = std::max<int64_t>(*i0, 0);
  *j0 = std::max<int64_t>(*j0, 0);
  return double(include_pad ? pad_area : std::max<int64_t>(*i1 - *i0, 0) * std::max<int64_t>(*j1 - *j0, 0));
}

// ---- Pooling on blocked data (TBlob::blocked: nChw16c, or nChw8c on AVX2; from
// an executor that keeps the values around it blocked). Each block of W channels
// is an (h, w) plane of W-float cells, the channels being the lanes of a vector, and each lane
// computes its channel exactly as the NCHW kernels above do: the maximum by
// `v > m` from the lowest value; its gradient to the first cell (row-major)
// equal to the window's maximum (which is the cell the scan above takes: NaN
// and -inf equal no maximum, and a window whose maximum is the lowest value
// takes its first cell holding it), added output by output in row-major order
// (other cells add +0, which changes no gradient: a sum that starts at +0 is
// never -0); average and sum in double, row-major, then divided, and their
// gradient's shares added in the same order. So the bits are the NCHW kernels'.
// The forward kernels write output cell p's W floats at y + p * ys: ys = W in
// the blocked layout, the channel count in channels last (TBlob::last).
template <int W, int KH, int KW>
LOOM_VECTOR_CLONES void max_pool_block(const float *x, float *y, const Geometry &g, int64_t ys) {
  const int64_t kh = KH ? KH : g.kh, kw = KW ? KW : g.kw;
  typename ChannelBlock<W>::F lo;
  for (int l = 0; l < W; ++l) lo[l] = std::numeric_limits<float>::lowest();
  for (int64_t oi = 0; oi < g.oh; ++oi) {
    const int64_t i0 = oi * g.sh - g.ph;
    const int64_t r0 = std::max<int64_t>(i0, 0), r1 = std::min(i0 + kh, g.h);
    const bool rows_in = i0 >= 0 && i0 + kh <= g.h;
    for (int64_t oj = 0; oj < g.ow; ++oj) {
      const int64_t j0 = oj * g.sw - g.pw;
      typename ChannelBlock<W>::F m = lo, v;
      if (rows_in && j0 >= 0 && j0 + kw <= g.w) {
        const float *w0 = x + (i0 * g.w + j0) * W;
        for (int64_t i = 0; i < kh; ++i)
          for (int64_t j = 0; j < kw; ++j) {
            loadf(v, w0 + (i * g.w + j) * W);
            m = v > m ? v : m;
          }
      } else {
        const int64_t c0 = std::max<int64_t>(j0, 0), c1 = std::min(j0 + kw, g.w);
        for (int64_t i = r0; i < r1; ++i)
          for (int64_t j = c0; j < c1; ++j) {
            loadf(v, x + (i * g.w + j) * W);
            m = v > m ? v : m;
          }
      }
      storef(y + (oi * g.ow + oj) * ys, m);
    }
  }
}

template <int W, int KH, int KW>
LOOM_VECTOR_CLONES void max_pool_grad_block(const float *x, const float *dy, float *dx, const Geometry &g) {
  typedef typename ChannelBlock<W>::F F;
  const int64_t kh = KH ? KH : g.kh, kw = KW ? KW : g.kw;
  std::fill(dx, dx + g.h * g.w * W, 0.0f);
  F lo, zero = {};
  for (int l = 0; l < W; ++l) lo[l] = std::numeric_limits<float>::lowest();
  for (int64_t oi = 0; oi < g.oh; ++oi) {
    const int64_t i0 = oi * g.sh - g.ph;
    const int64_t r0 = std::max<int64_t>(i0, 0), r1 = std::min(i0 + kh, g.h);
    for (int64_t oj = 0; oj < g.ow; ++oj) {
      const int64_t j0 = oj * g.sw - g.pw;
      const int64_t c0 = std::max<int64_t>(j0, 0), c1 = std::min(j0 + kw, g.w);
      F m = lo, v, gy, d;
      for (int64_t i = r0; i < r1; ++i)
        for (int64_t j = c0; j < c1; ++j) {
          loadf(v, x + (i * g.w + j) * W);
          m = v > m ? v : m;
        }
      loadf(gy, dy + (oi * g.ow + oj) * W);
      typename ChannelBlock<W>::I taken = {};
      for (int64_t i = r0; i < r1; ++i)
        for (int64_t j = c0; j < c1; ++j) {
          const int64_t at = (i * g.w + j) * W;
          loadf(v, x + at);
          const typename ChannelBlock<W>::I first = (v == m) & ~taken;
          taken |= first;
          loadf(d, dx + at);
          d += first ? gy : zero;
          storef(dx + at, d);
        }
    }
  }
}

template <int W>
LOOM_VECTOR_CLONES void avg_pool_block(const float *x, float *y, const Geometry &g, int64_t ys, bool is_avg,
                                       bool include_pad) {
  typedef ChannelBlock<W> B;
  for (int64_t oi = 0; oi < g.oh; ++oi)
    for (int64_t oj = 0; oj < g.ow; ++oj) {
      int64_t i0, i1, j0, j1;
      const double area = pool_window(g, include_pad, oi, oj, &i0, &i1, &j0, &j1);
      typename B::D acc = {};
      for (int64_t i = i0; i < i1; ++i)
        for (int64_t j = j0; j < j1; ++j) acc += B::load(x + (i * g.w + j) * W);
      if (is_avg) acc = area > 0 ? acc / area : typename B::D{};
      B::store(y + (oi * g.ow + oj) * ys, acc);
    }
}

template <int W>
LOOM_VECTOR_CLONES void avg_pool_grad_block(const float *dy, float *dx, const Geometry &g, bool is_avg,
                                            bool include_pad) {
  typedef ChannelBlock<W> B;
  std::fill(dx, dx + g.h * g.w * W, 0.0f);
  for (int64_t oi = 0; oi < g.oh; ++oi)
    for (int64_t oj = 0; oj < g.ow; ++oj) {
      int64_t i0, i1, j0, j1;
      const double area = pool_window(g, include_pad, oi, oj, &i0, &i1, &j0, &j1);
      typename B::D share = B::load(dy + (oi * g.ow + oj) * W);
      if (is_avg) share = area > 0 ? share / area : typename B::D{};
      for (int64_t i = i0; i < i1; ++i)
        for (int64_t j = j0; j < j1; ++j) B::add_to(dx + (i * g.w + j) * W, share);
    }
}

// Whether Pooling's data is given blocked; such data needs its output (or, in
// the backward pass, both gradients) blocked too, where the output may be in
// channels last (TBlob::last; the forward pass only).
bool pool_blocked(const Params &p, const TBlob &x, std::initializer_list<const TBlob *> same) {
  if (!x.blocked) return false;
  LOOM_CHECK(x.dtype == LOOM_DTYPE_FLOAT32 && x.shape.ndim == 4 && onednn_block() != 0 &&
                 x.shape.d[1] % onednn_block() == 0,
             LOOM_ERR_INTERNAL, p.op().name, ": blocked data of shape ", x.shape.str(),
             " (needs float32, 4-D, channels a multiple of ", onednn_block(), ")");
  for (const TBlob *b : same)
    LOOM_CHECK(b->blocked || blocked_same_as_plain(b->shape), LOOM_ERR_INTERNAL, p.op().name,
               ": blocked data needs its output and gradients blocked");
  LOOM_CHECK(!x.last, LOOM_ERR_INTERNAL, p.op().name, ": data in channels last");
  return true;
}

}  // namespace

bool blocked_same_as_plain(const Shape &s) {
  const int block = onednn_block();
  return block && s.ndim == 4 && s.d[1] % block == 0 && s.d[2] == 1 && s.d[3] == 1;
}

bool pooling_takes_blocked(const Params &p, const Shape &data) {
  const int block = onednn_block();
  if (!block || data.ndim != 4 || data.d[1] % block != 0 || (p.has("layout") && p.s("layout") != "NCHW"))
    return false;
  return p.b("global_pool") || p.tuple("kernel").size() == 2;
}

namespace {

// Calls f(block index) for each of the batch's W-channel blocks, over the kernel threads.
template <int W, typename F>
void for_blocks(const Geometry &g, F &&f) {
  parallel_ranges(g.n * (g.c / W), 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) f(b);
  });
}

template <int W>
void pool_forward_blocked_w(const Params &p, const Geometry &g, const TBlob &in, const TBlob &out) {
  const std::string &ts = p.s("pool_type");
  const float *x = in.ptr<float>();
  float *y = out.ptr<float>();
  const int64_t xs = g.h * g.w * W, blocks = g.c / W;
  // Where block b's output starts, and the step from one output cell to the next.
  const int64_t cell = out.last ? g.c : W;
  auto at = [&](int64_t b) {
    return out.last ? y + (b / blocks) * g.c * g.oh * g.ow + (b % blocks) * W : y + b * g.oh * g.ow * W;
  };
  if (ts == "max") {
    auto run = [&](auto kernel) { for_blocks<W>(g, [&](int64_t b) { kernel(x + b * xs, at(b), g, cell); }); };
    if (g.kh == 3 && g.kw == 3)
      run(max_pool_block<W, 3, 3>);
    else if (g.kh == 2 && g.kw == 2)
      run(max_pool_block<W, 2, 2>);
    else
      run(max_pool_block<W, 0, 0>);
    return;
  }
  const bool is_avg = ts == "avg", include_pad = p.b("count_include_pad");
  for_blocks<W>(g, [&](int64_t b) { avg_pool_block<W>(x + b * xs, at(b), g, cell, is_avg, include_pad); });
}

void pool_forward_blocked(const Params &p, const Geometry &g, const TBlob &in, const TBlob &out) {
  if (onednn_block() == 8) return pool_forward_blocked_w<8>(p, g, in, out);
  pool_forward_blocked_w<16>(p, g, in, out);
}

template <int W>
void pool_backward_blocked_w(const Params &p, const Geometry &g, const TBlob &in, const TBlob &og, const TBlob &ig) {
  const std::string &ts = p.s("pool_type");
  const float *x = in.ptr<float>(), *dy = og.ptr<float>();
  float *dx = ig.ptr<float>();
  const int64_t xs = g.h * g.w * W, ys = g.oh * g.ow * W;
  if (ts == "max") {
    auto run = [&](auto kernel) {
      for_blocks<W>(g, [&](int64_t b) { kernel(x + b * xs, dy + b * ys, dx + b * xs, g); });
    };
    if (g.kh == 3 && g.kw == 3)
      run(max_pool_grad_block<W, 3, 3>);
    else if (g.kh == 2 && g.kw == 2)
      run(max_pool_grad_block<W, 2, 2>);
    else
      run(max_pool_grad_block<W, 0, 0>);
    return;
  }
  const bool is_avg = ts == "avg", include_pad = p.b("count_include_pad");
  for_blocks<W>(g, [&](int64_t b) { avg_pool_grad_block<W>(dy + b * ys, dx + b * xs, g, is_avg, include_pad); });
}

void pool_backward_blocked(const Params &p, const Geometry &g, const TBlob &in, const TBlob &og, const TBlob &ig) {
  if (onednn_block() == 8) return pool_backward_blocked_w<8>(p, g, in, og, ig);
  pool_backward_blocked_w<16>(p, g, in, og, ig);
}

const int kPooling = [] {
  OpDef &d = Registry::get().add("Pooling");
  d.set_doc("Max, average or sum pooling over NCDHW (3-D), NCHW (2-D) or NCW (1-D) data. Output extent: "
            "floor (valid) or ceil (full) of (in + 2*pad - kernel) / stride, plus 1. Average "
            "divides by the window clipped to the padded input (in + pad), padding included "
            "unless count_include_pad is false (then by the cells inside the input); a max "
            "window with no input cell gives the dtype's lowest value (MXNet's rules).")
      .set_inputs({"data"})
      .param("kernel", ParamType::Tuple, "()", "Window size, (w,), (h, w) or (d, h, w).")
      .param("pool_type", ParamType::Enum, "max", "Reduction.", {"max", "avg", "sum"})
      .param("global_pool", ParamType::Bool, "false", "Pool over the whole spatial extent.")
      .param("stride", ParamType::Tuple, "()", "Stride per spatial axis (default 1).")
      .param("pad", ParamType::Tuple, "()", "Padding per spatial axis (default 0).")
      .param("pooling_convention", ParamType::Enum, "valid", "Output size rounding.",
             {"valid", "full"})
      .param("count_include_pad", ParamType::Bool, "true",
             "Average pooling counts padding cells in the divisor.")
      .param("cudnn_off", ParamType::Bool, "false", "A GPU hint; accepted and ignored on CPU.");
  layout_param(d);
  d.float_only = true;
  d.set_infer([](const Params &p, const ShapeList &in, const DTypeList &dt, ShapeList &out,
                 DTypeList &odt) {
    odt[0] = dt[0];
    if (is_volume(p, in[0])) {
      out[0] = pool3d_output_shape(p, in[0]);
      return;
    }
    Geometry g = geometry(p, in[0], true);
    out[0] = out_shape(g, g.c);
  });
  d.set_compute([](const OpContext &, const Params &p, const BlobList &in,
                         const BlobList &out) {
    if (is_volume(p, in[0].shape)) return pool3d_forward(p, in, out);
    Geometry g = geometry(p, in[0].shape, true);
    LOOM_CHECK(!out[0].last || in[0].blocked, LOOM_ERR_INTERNAL, p.op().name, ": a channels-last output of plain data");
    if (pool_blocked(p, in[0], {&out[0]})) return pool_forward_blocked(p, g, in[0], out[0]);
    const std::string &ts = p.s("pool_type");
    const bool is_max = ts == "max", is_avg = ts == "avg", include_pad = p.b("count_include_pad");
    LOOM_FLOAT_SWITCH(in[0].dtype, T, {
      const T *x = in[0].ptr<T>();
      T *y = out[0].ptr<T>();
      if (is_max) {
        if (std::is_same<T, float>::value && g.kh == 2 && g.kw == 2 && g.sh == 2 && g.sw == 2 && g.ph == 0 &&
            g.pw == 0 && g.h == 2 * g.oh && g.w == 2 * g.ow) {
          // Windows that tile the planes exactly: a range of planes is one run of row pairs.
          parallel_ranges(g.n * g.c, 16, [&](int64_t p0, int64_t p1) {
            max_pool_plane_2x2s2(reinterpret_cast<const float *>(x + p0 * g.h * g.w),
                                 reinterpret_cast<float *>(y + p0 * g.oh * g.ow), g.w, (p1 - p0) * g.oh, g.ow);
          });
          return;
        }
        with_max_pool_kernels<T>(g, [&](auto plane, auto) {
          parallel_ranges(g.n * g.c, 16, [&](int64_t p0, int64_t p1) {
            for (int64_t nc = p0; nc < p1; ++nc) plane(x + nc * g.h * g.w, y + nc * g.oh * g.ow, g);
          });
        });
        return;
      }
      parallel_ranges(g.n * g.c, 16, [&](int64_t p0, int64_t p1) {
      for (int64_t nc = p0; nc < p1; ++nc) {
        const T *xp = x + nc * g.h * g.w;
        T *yp = y + nc * g.oh * g.ow;
        for (int64_t oi = 0; oi < g.oh; ++oi)
          for (int64_t oj = 0; oj < g.ow; ++oj) {
            int64_t i0, i1, j0, j1;
            double area = pool_window(g, include_pad, oi, oj, &i0, &i1, &j0, &j1);
            double acc = 0.0;  // average or sum (max pooling returned above)
            for (int64_t i = i0; i < i1; ++i)
              for (int64_t j = j0; j < j1; ++j) acc += xp[i * g.w + j];
            if (is_avg) acc = area > 0 ? acc / area : 0.0;
            yp[oi * g.ow + oj] = static_cast<T>(acc);
          }
      }
      });
    });
  });
  d.set_backward([](const OpContext &, const Params &p, const BlobList &in,
                          const BlobList &, const BlobList &og, const BlobList &ig,
                          const ReqList &req) {
    if (is_volume(p, in[0].shape)) return pool3d_backward(p, in, og, ig, req);
    if (!req[0]) return;
    Geometry g = geometry(p, in[0].shape, true);
    LOOM_CHECK(!og[0].last && !ig[0].last, LOOM_ERR_INTERNAL, p.op().name, ": gradients in channels last");
    if (pool_blocked(p, in[0], {&og[0], &ig[0]})) return pool_backward_blocked(p, g, in[0], og[0], ig[0]);
    const std::string &ts = p.s("pool_type");
    const bool is_max = ts == "max", is_avg = ts == "avg", include_pad = p.b("count_include_pad");
    LOOM_FLOAT_SWITCH(in[0].dtype, T, {
      const T *x = in[0].ptr<T>();
      const T *dy = og[0].ptr<T>();
      T *dx = ig[0].ptr<T>();
      if (is_max) {
        with_max_pool_kernels<T>(g, [&](auto, auto grad_plane) {
          const bool tiles = std::is_same<T, float>::value && g.kh == 2 && g.kw == 2 && g.sh == 2 && g.sw == 2 &&
                             g.ph == 0 && g.pw == 0 && 2 * g.oh <= g.h && 2 * g.ow <= g.w;
          // Windows that tile the planes exactly: consecutive planes continue
          // the rows of 2x2 windows, so a range of planes is one call and no
          // cell needs zeroing first.
          const bool exact = tiles && g.h == 2 * g.oh && g.w == 2 * g.ow;
          parallel_ranges(g.n * g.c, 16, [&](int64_t p0, int64_t p1) {
            if (exact) {
              max_pool_grad_plane_2x2s2(reinterpret_cast<const float *>(x + p0 * g.h * g.w),
                                        reinterpret_cast<const float *>(dy + p0 * g.oh * g.ow),
                                        reinterpret_cast<float *>(dx + p0 * g.h * g.w), g.w, (p1 - p0) * g.oh, g.ow);
              return;
            }
            std::fill(dx + p0 * g.h * g.w, dx + p1 * g.h * g.w, T(0));
            const bool three = std::is_same<T, float>::value && g.kh == 3 && g.kw == 3 && (g.sw == 1 || g.sw == 2);
            std::vector<int32_t> pick(three ? static_cast<size_t>(g.ow) : 0);
            for (int64_t nc = p0; nc < p1; ++nc) {
              // (float planes: only the float kernels below read them)
              const float *xf = reinterpret_cast<const float *>(x + nc * g.h * g.w),
                          *dyf = reinterpret_cast<const float *>(dy + nc * g.oh * g.ow);
              float *dxf = reinterpret_cast<float *>(dx + nc * g.h * g.w);
              if (three && g.sw == 2)
                max_pool_grad_plane_3x3<2>(xf, dyf, dxf, g, pick.data());
              else if (three)
                max_pool_grad_plane_3x3<1>(xf, dyf, dxf, g, pick.data());
              else if (tiles)
                max_pool_grad_plane_2x2s2(xf, dyf, dxf, g.w, g.oh, g.ow);
              else
                grad_plane(x + nc * g.h * g.w, dy + nc * g.oh * g.ow, dx + nc * g.h * g.w, g);
            }
          });
        });
        return;
      }
      parallel_ranges(g.n * g.c, 16, [&](int64_t p0, int64_t p1) {  // planes are disjoint
      std::fill(dx + p0 * g.h * g.w, dx + p1 * g.h * g.w, T(0));
      for (int64_t nc = p0; nc < p1; ++nc) {
        T *dxp = dx + nc * g.h * g.w;
        const T *dyp = dy + nc * g.oh * g.ow;
        for (int64_t oi = 0; oi < g.oh; ++oi)
          for (int64_t oj = 0; oj < g.ow; ++oj) {
            int64_t i0, i1, j0, j1;
            double area = pool_window(g, include_pad, oi, oj, &i0, &i1, &j0, &j1);
            double gy = dyp[oi * g.ow + oj];  // average or sum (max pooling returned above)
            double share = is_avg ? (area > 0 ? gy / area : 0.0) : gy;
            for (int64_t i = i0; i < i1; ++i)
              for (int64_t j = j0; j < j1; ++j) dxp[i * g.w + j] += static_cast<T>(share);
          }
      }
      });
    });
  });
  return 0;
}();

}  // namespace
}  // namespace loom
