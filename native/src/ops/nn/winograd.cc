// Loom's Winograd convolutions F(4x4, 3x3) and F(2x2, 3x3) for prediction
// (onednn.h): each m x m block of outputs from an (m + 2) x (m + 2) tile of
// inputs, with (m + 2)^2 products per input and output channel where the direct
// algorithm needs 9 m^2 (36 against 144, 16 against 36). Lavin and Gray's transforms:
//   V = B^T d B (input tile), U = G g G^T (filter), Y = A^T (sum over channels of U . V) A,
// the channel sums as (m + 2)^2 matrix products per chunk of tiles (oneDNN's sgemm).
// The weight gradient of training by the same tiles: as Y is linear in U,
//   dW = G^T (sum over tiles and images of (A dY A^T) . V) G,
// the sums as (m + 2)^2 products of the output gradients' and the inputs' transforms.
#include "ops/nn/onednn.h"
#include "ops/vecmath.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <utility>

#include "common/base.h"
#include "common/parallel.h"
#include "common/scratch.h"
#include "engine/engine.h"

namespace loom {
namespace {

std::atomic<int> g_mode{-1};
std::atomic<int> g_tile{0};

int tile_from_env() {
  const char *e = std::getenv("LOOM_WINOGRAD_TILE");
  if (!e || !*e || std::strcmp(e, "4") == 0) return 4;
  if (std::strcmp(e, "2") == 0) return 2;
  fail(LOOM_ERR_INVALID_ARGUMENT, "LOOM_WINOGRAD_TILE=", e, " is not a tile size; use 4 (the default) or 2");
}

// The transforms' matrices for output tiles of M x M (T = M + 2 inputs a side).
template <int M>
struct Wino;
template <>
struct Wino<2> {
  static constexpr float BT[4][4] = {{1, 0, -1, 0}, {0, 1, 1, 0}, {0, -1, 1, 0}, {0, 1, 0, -1}};
  static constexpr double G[4][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
  static constexpr float AT[2][4] = {{1, 1, 1, 0}, {0, 1, -1, -1}};
  static constexpr float A[4][2] = {{1, 0}, {1, 1}, {1, -1}, {0, -1}};
};
template <>
struct Wino<4> {
  static constexpr float BT[6][6] = {{4, 0, -5, 0, 1, 0},  {0, -4, -4, 1, 1, 0}, {0, 4, -4, -1, 1, 0},
                                     {0, -2, -1, 2, 1, 0}, {0, 2, -1, -2, 1, 0}, {0, 4, 0, -5, 0, 1}};
  static constexpr double G[6][3] = {{1.0 / 4, 0, 0},
                                     {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                     {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                     {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                     {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                     {0, 0, 1}};
  static constexpr float AT[4][6] = {{1, 1, 1, 1, 1, 0}, {0, 1, -1, 2, -2, 0}, {0, 1, 1, 4, 4, 0}, {0, 1, -1, 8, -8, 1}};
  static constexpr float A[6][4] = {{1, 0, 0, 0}, {1, 1, 1, 1}, {1, -1, 1, -1}, {1, 2, 4, 8}, {1, -2, 4, -8}, {0, 0, 0, 1}};
};
// A is written out (combine takes its rows) and must be AT's transpose.
template <int M>
constexpr bool a_is_at_transposed() {
  for (int a = 0; a < M + 2; ++a)
    for (int i = 0; i < M; ++i)
      if (Wino<M>::A[a][i] != Wino<M>::AT[i][a]) return false;
  return true;
}
static_assert(a_is_at_transposed<2>() && a_is_at_transposed<4>(), "Winograd: A is not AT's transpose");

// The cut of a convolution into work items: chunks of `tc` tiles (m x m output
// blocks, counted over the whole batch) by pieces of `fp` output channels. It
// depends on the shape alone, so the bits do not depend on the thread count.
struct Cut {
  int64_t th, tw, tiles, tc, chunks, fpieces, fp;
  // Tile t's image and its row and column among the image's tiles.
  void locate(int64_t t, int64_t &n, int64_t &i, int64_t &j) const {
    n = t / (th * tw);
    i = (t % (th * tw)) / tw;
    j = t % tw;
  }
};
Cut cut_for(const ConvShape &s, int m) {
  Cut p;
  p.th = (s.oh + m - 1) / m;
  p.tw = (s.ow + m - 1) / m;
  p.tiles = s.n * p.th * p.tw;
  // A chunk's transformed inputs ((m + 2)^2 x tc x c floats) take 0.6-1 MB: they and
  // the products stay near the core between the transforms and the products.
  const int64_t most = std::clamp<int64_t>((m == 2 ? 16384 : 4096) / s.c, 16, 256);
  const int64_t even = (p.tiles + most - 1) / most;  // chunks of about equal size
  p.tc = (p.tiles + even - 1) / even;
  p.chunks = (p.tiles + p.tc - 1) / p.tc;
  // Few chunks (one image of 14x14, 28x28): the output channels are cut too, into
  // pieces of 32 or more whole 8-channel groups, until there are 4 items.
  p.fpieces = 1;
  while (p.chunks * p.fpieces < 4 && (s.f / (2 * p.fpieces)) % 8 == 0 && s.f / (2 * p.fpieces) >= 32) p.fpieces *= 2;
  p.fp = s.f / p.fpieces;
  return p;
}

typedef int32_t I8v __attribute__((vector_size(32)));

// The floats from one of a chunk's matrices (rows x cols) to the next: 16 more than
// the matrix, so the values of a tile, written and read together, are not 4 KB
// multiples apart (with 256 tiles of 64 channels they would be: one set of the L1
// cache for all of them).
inline int64_t matrix_floats(int64_t rows, int64_t cols) { return rows * cols + 16; }

// Where the 8 channels [8g, 8g + 8) of image n at position p start, and the
// distance between consecutive ones: a blocked layout of `block` channels (8 or
// 16: a group never straddles two blocks) keeps them together, plain NCHW (block
// 1) strides them by the plane. Bit operations, not divisions: a division per
// value took most of the transforms' time.
struct Layout {
  int64_t c, plane, block;
  int64_t at(int64_t n, int64_t g, int64_t p) const {
    const int64_t c0 = 8 * g;
    return n * c * plane + (c0 & -block) * plane + p * block + (c0 & (block - 1));
  }
  int64_t lane() const { return block == 1 ? plane : 1; }
};

// The layouts of a convolution's input and output (or their gradients).
std::pair<Layout, Layout> layouts(const ConvShape &s, bool x_blocked, bool y_blocked) {
  const int64_t block = onednn_block();
  LOOM_CHECK(!(x_blocked || y_blocked) || block == 8 || block == 16, LOOM_ERR_INTERNAL,
             "Winograd convolution: blocked data, but the block is ", block);
  return {Layout{s.c, s.h * s.w, x_blocked ? block : 1}, Layout{s.f, s.oh * s.ow, y_blocked ? block : 1}};
}

LOOM_CLONE_BODY void load8(F8v &v, const float *p, int64_t stride) {
  if (stride == 1) {
    std::memcpy(&v, p, sizeof v);
    return;
  }
  for (int l = 0; l < 8; ++l) v[l] = p[l * stride];
}
LOOM_CLONE_BODY void store8(float *p, const F8v &v, int64_t stride) {
  if (stride == 1) {
    std::memcpy(p, &v, sizeof v);
    return;
  }
  for (int l = 0; l < 8; ++l) p[l * stride] = v[l];
}

// out = sum over q of row[q] * in[q], the zero coefficients skipped and the ones of
// 1 and -1 added and subtracted (the loops unroll over constant rows, so each
// output is its few terms).
template <int N>
LOOM_CLONE_BODY void combine(F8v &out, const float (&row)[N], const F8v *in, int step) {
  bool first = true;
  out = F8v{};
#pragma GCC unroll 8
  for (int q = 0; q < N; ++q) {
    const float c = row[q];
    if (c == 0) continue;
    const F8v &x = in[q * step];
    if (first)
      out = c == 1 ? x : c == -1 ? -x : c * x;
    else if (c == 1)
      out += x;
    else if (c == -1)
      out -= x;
    else
      out += c * x;
    first = false;
  }
}

// U[xi][c][f] = (G g G^T)[xi] for the filters g = w[f][c] (OIHW), in double, rounded once.
template <int M>
void transform_weights(const ConvShape &s, const float *w, float *u) {
  constexpr int T = M + 2;
  const auto &G = Wino<M>::G;
  parallel_ranges(s.f, 8, [&](int64_t f0, int64_t f1) {
    for (int64_t f = f0; f < f1; ++f)
      for (int64_t c = 0; c < s.c; ++c) {
        const float *g = w + (f * s.c + c) * 9;
        double t[T][3];
        for (int i = 0; i < T; ++i)
          for (int j = 0; j < 3; ++j) t[i][j] = G[i][0] * g[j] + G[i][1] * g[3 + j] + G[i][2] * g[6 + j];
        for (int i = 0; i < T; ++i)
          for (int j = 0; j < T; ++j)
            u[((i * T + j) * s.c + c) * s.f + f] =
                static_cast<float>(t[i][0] * G[j][0] + t[i][1] * G[j][1] + t[i][2] * G[j][2]);
      }
  });
}

// V[xi][k][c] = (B^T d B)[xi] for the tiles [t0, t0 + tc) of the chunk; inputs
// outside the image are the padding's zeros. The matrices V[xi] are `next` floats apart.
template <int M>
LOOM_CLONE_BODY void transform_inputs_body(const ConvShape &s, const Cut &p, const float *x, const Layout &lx,
                                           int64_t t0, int64_t tc, float *v, int64_t next) {
  constexpr int T = M + 2;
  const auto &BT = Wino<M>::BT;
  const F8v zero = {};
  const int64_t stride = lx.lane();
  for (int64_t k = 0; k < tc; ++k) {
    int64_t n, i, j;
    p.locate(t0 + k, n, i, j);
    const int64_t r0 = M * i - s.ph, c0 = M * j - s.pw;
    const bool inside = r0 >= 0 && r0 + T <= s.h && c0 >= 0 && c0 + T <= s.w;
    for (int64_t g = 0; g < s.c / 8; ++g) {
      F8v d[T][T];
      const float *xg = x + lx.at(n, g, 0);
      if (inside) {
        for (int a = 0; a < T; ++a)
          for (int b = 0; b < T; ++b) load8(d[a][b], xg + ((r0 + a) * s.w + c0 + b) * lx.block, stride);
      } else {
        for (int a = 0; a < T; ++a)
          for (int b = 0; b < T; ++b) {
            const int64_t r = r0 + a, c = c0 + b;
            if (r >= 0 && r < s.h && c >= 0 && c < s.w)
              load8(d[a][b], xg + (r * s.w + c) * lx.block, stride);
            else
              d[a][b] = zero;
          }
      }
      F8v e[T][T];  // B^T d
#pragma GCC unroll 8
      for (int a = 0; a < T; ++a)
#pragma GCC unroll 8
        for (int b = 0; b < T; ++b) combine<T>(e[a][b], BT[a], &d[0][b], T);
      float *o = v + k * s.c + 8 * g;
#pragma GCC unroll 8
      for (int a = 0; a < T; ++a)
#pragma GCC unroll 8
        for (int b = 0; b < T; ++b) {  // (B^T d) B
          F8v q;
          combine<T>(q, BT[b], &e[a][0], 1);
          std::memcpy(o + (a * T + b) * next, &q, sizeof q);
        }
    }
  }
}
LOOM_VECTOR_CLONES void transform_inputs2(const ConvShape &s, const Cut &p, const float *x, const Layout &lx,
                                          int64_t t0, int64_t tc, float *v, int64_t next) {
  transform_inputs_body<2>(s, p, x, lx, t0, tc, v, next);
}
LOOM_VECTOR_CLONES void transform_inputs4(const ConvShape &s, const Cut &p, const float *x, const Layout &lx,
                                          int64_t t0, int64_t tc, float *v, int64_t next) {
  transform_inputs_body<4>(s, p, x, lx, t0, tc, v, next);
}

// D[xi][k][f] = (A e A^T)[xi] for the output gradients e (m x m, zero beyond the
// outputs) of the tiles [t0, t0 + tc); the matrices D[xi] are `next` floats apart.
template <int M>
LOOM_CLONE_BODY void transform_gradients_body(const ConvShape &s, const Cut &p, const float *dy, const Layout &ly,
                                              int64_t t0, int64_t tc, float *d, int64_t next) {
  constexpr int T = M + 2;
  const auto &A = Wino<M>::A;
  const int64_t stride = ly.lane();
  for (int64_t k = 0; k < tc; ++k) {
    int64_t n, i, j;
    p.locate(t0 + k, n, i, j);
    for (int64_t g = 0; g < s.f / 8; ++g) {
      F8v e[M][M] = {};
      const float *eg = dy + ly.at(n, g, 0);
      for (int a = 0; a < M; ++a)
        for (int b = 0; b < M; ++b) {
          const int64_t r = M * i + a, c = M * j + b;
          if (r < s.oh && c < s.ow)
            load8(e[a][b], eg + (r * s.ow + c) * ly.block, stride);
          else
            e[a][b] = F8v{};
        }
      F8v q[T][M];  // A e
#pragma GCC unroll 8
      for (int a = 0; a < T; ++a)
#pragma GCC unroll 4
        for (int b = 0; b < M; ++b) combine<M>(q[a][b], A[a], &e[0][b], M);
      float *o = d + k * s.f + 8 * g;
#pragma GCC unroll 8
      for (int a = 0; a < T; ++a)
#pragma GCC unroll 8
        for (int b = 0; b < T; ++b) {  // (A e) A^T
          F8v r;
          combine<M>(r, A[b], &q[a][0], 1);
          std::memcpy(o + (a * T + b) * next, &r, sizeof r);
        }
    }
  }
}
LOOM_VECTOR_CLONES void transform_gradients2(const ConvShape &s, const Cut &p, const float *dy, const Layout &ly,
                                             int64_t t0, int64_t tc, float *d, int64_t next) {
  transform_gradients_body<2>(s, p, dy, ly, t0, tc, d, next);
}
LOOM_VECTOR_CLONES void transform_gradients4(const ConvShape &s, const Cut &p, const float *dy, const Layout &ly,
                                             int64_t t0, int64_t tc, float *d, int64_t next) {
  transform_gradients_body<4>(s, p, dy, ly, t0, tc, d, next);
}

// Y = A^T m A for the chunk's tiles and the piece's channels [f0, f0 + fp) from
// M[xi][k][f - f0], then the epilogue as oneDNN's post-ops and Loom's after-steps
// apply it: + bias, * scale + shift, + addend, + what y held (sum), + after_add,
// MXNet's relu (NaN passes through).
template <int M>
LOOM_CLONE_BODY void transform_outputs_body(const ConvShape &s, const Cut &p, const float *m, int64_t t0,
                                            int64_t tc, int64_t f0, const float *bias, float *y, const Layout &ly,
                                            const ConvEpilogue &ep) {
  constexpr int T = M + 2;
  const auto &AT = Wino<M>::AT;
  const F8v zero = {};
  const int64_t stride = ly.lane(), next = matrix_floats(tc, p.fp);
  for (int64_t k = 0; k < tc; ++k) {
    int64_t n, i, j;
    p.locate(t0 + k, n, i, j);
    for (int64_t gf = 0; gf < p.fp / 8; ++gf) {
      const int64_t g = f0 / 8 + gf;
      F8v mv[T][T];
      for (int a = 0; a < T; ++a)
        for (int b = 0; b < T; ++b) std::memcpy(&mv[a][b], m + (a * T + b) * next + k * p.fp + 8 * gf, sizeof(F8v));
      F8v q[M][T];  // A^T m
#pragma GCC unroll 8
      for (int a = 0; a < M; ++a)
#pragma GCC unroll 8
        for (int b = 0; b < T; ++b) combine<T>(q[a][b], AT[a], &mv[0][b], T);
      F8v bv = {}, sc = {}, sh = {};
      if (bias) std::memcpy(&bv, bias + 8 * g, sizeof bv);
      if (ep.scale) {
        std::memcpy(&sc, ep.scale + 8 * g, sizeof sc);
        std::memcpy(&sh, ep.shift + 8 * g, sizeof sh);
      }
#pragma GCC unroll 4
      for (int a = 0; a < M; ++a) {
        const int64_t r = M * i + a;
        if (r >= s.oh) continue;
#pragma GCC unroll 4
        for (int b = 0; b < M; ++b) {
          const int64_t c = M * j + b;
          if (c >= s.ow) continue;
          const int64_t at = ly.at(n, g, r * s.ow + c);
          F8v v, add = {};
          combine<T>(v, AT[b], &q[a][0], 1);  // (A^T m) A
          if (bias) v += bv;
          if (ep.scale) v = v * sc + sh;
          if (ep.addend) {
            load8(add, ep.addend + at, stride);
            v += add;
          }
          if (ep.sum) {
            load8(add, y + at, stride);
            v += add;
          }
          if (ep.after_add) {
            load8(add, ep.after_add + at, stride);
            v += add;
          }
          if (ep.relu) {  // v where v > 0 or NaN, else 0: v's bits masked
            const I8v keep = (v > zero) | (v != v);
            I8v bits;
            std::memcpy(&bits, &v, sizeof bits);
            bits &= keep;
            std::memcpy(&v, &bits, sizeof v);
          }
          store8(y + at, v, stride);
        }
      }
    }
  }
}
LOOM_VECTOR_CLONES void transform_outputs2(const ConvShape &s, const Cut &p, const float *m, int64_t t0, int64_t tc,
                                           int64_t f0, const float *bias, float *y, const Layout &ly,
                                           const ConvEpilogue &ep) {
  transform_outputs_body<2>(s, p, m, t0, tc, f0, bias, y, ly, ep);
}
LOOM_VECTOR_CLONES void transform_outputs4(const ConvShape &s, const Cut &p, const float *m, int64_t t0, int64_t tc,
                                           int64_t f0, const float *bias, float *y, const Layout &ly,
                                           const ConvEpilogue &ep) {
  transform_outputs_body<4>(s, p, m, t0, tc, f0, bias, y, ly, ep);
}

// A buffer of each thread's that grows and is reused.
float *thread_floats(int slot, size_t n) {
  struct Held {
    std::unique_ptr<float, void (*)(void *)> p{nullptr, std::free};
    size_t size = 0;
  };
  thread_local Held held[2];
  Held &h = held[slot];
  if (n > h.size) {
    h.p.reset();
    h.size = 0;
    void *q = nullptr;
    LOOM_CHECK(posix_memalign(&q, 64, n * sizeof(float)) == 0, LOOM_ERR_OUT_OF_MEMORY,
               "Winograd convolution: could not allocate ", n * sizeof(float), " bytes of work memory");
    h.p.reset(static_cast<float *>(q));
    h.size = n;
  }
  return h.p.get();
}

template <int M>
void forward(const ConvShape &s, const float *x, const float *w, const float *bias, float *y, Var *keep,
             const ConvEpilogue &ep) {
  constexpr int T = M + 2;
  const Cut p = cut_for(s, M);
  // The transformed filters (T^2 x c x f floats), kept on the weight's var when given.
  std::shared_ptr<const void> hold;
  std::string key;
  if (keep) {
    const int64_t k[] = {reinterpret_cast<int64_t>(w), s.c, s.f, M, static_cast<int64_t>(ep.weights_id)};
    key = std::string("loom.winograd.weights:") + std::string(reinterpret_cast<const char *>(k), sizeof k);
    hold = keep->derived(key);
  }
  if (!hold) {
    // Kept: a buffer of the var's own. For one call (training, whose weights change
    // every step): one of the reusable buffers, not pages mapped afresh each call.
    const size_t bytes = sizeof(float) * T * T * s.c * s.f;
    std::shared_ptr<void> buf;
    if (keep) {
      void *q = nullptr;
      LOOM_CHECK(posix_memalign(&q, 64, bytes) == 0, LOOM_ERR_OUT_OF_MEMORY,
                 "Winograd convolution: could not allocate ", bytes, " bytes for transformed weights");
      buf.reset(q, [](void *b) { std::free(b); });
    } else {
      buf = reusable_scratch(bytes, "for the Winograd convolution's transformed weights");
    }
    transform_weights<M>(s, w, static_cast<float *>(buf.get()));
    if (keep) keep->keep_derived(key, buf);
    hold = buf;
  }
  const float *u = static_cast<const float *>(hold.get());
  const auto lay = layouts(s, ep.src_blocked, ep.dst_blocked);
  const Layout &lx = lay.first, &ly = lay.second;
  parallel_ranges(p.chunks * p.fpieces, 1, [&](int64_t i0, int64_t i1) {
    float *v = thread_floats(0, T * T * matrix_floats(p.tc, s.c)), *m = thread_floats(1, T * T * matrix_floats(p.tc, p.fp));
    int64_t transformed = -1;  // the chunk whose inputs v holds
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t chunk = i / p.fpieces, f0 = (i % p.fpieces) * p.fp;
      const int64_t t0 = chunk * p.tc, tc = std::min(p.tc, p.tiles - t0);
      if (chunk != transformed)
        (M == 2 ? transform_inputs2 : transform_inputs4)(s, p, x, lx, t0, tc, v, matrix_floats(tc, s.c));
      transformed = chunk;
      for (int xi = 0; xi < T * T; ++xi)
        LOOM_CHECK(onednn_sgemm(false, false, tc, p.fp, s.c, 1.0f, v + xi * matrix_floats(tc, s.c), s.c,
                                u + xi * s.c * s.f + f0, s.f, 0.0f, m + xi * matrix_floats(tc, p.fp), p.fp),
                   LOOM_ERR_INTERNAL, "Winograd convolution: oneDNN's sgemm refused a ", tc, "x", p.fp, "x", s.c,
                   " product");
      (M == 2 ? transform_outputs2 : transform_outputs4)(s, p, m, t0, tc, f0, bias, y, ly, ep);
    }
  });
}

// dW = G^T M G with M[xi] = sum over the batch's tiles of D[xi]^T V[xi] (f x c).
// The tiles go in passes of at most `pass_bytes` of transforms; each pass's (m + 2)^2
// products, one thread's each, add to M in pass order, so the bits do not depend
// on the threads.
template <int M>
void weight_gradient(const ConvShape &s, const float *x, const float *dy, float *dw, const Layout &lx,
                     const Layout &ly, size_t pass_bytes) {
  constexpr int T = M + 2;
  const Cut p = cut_for(s, M);
  const int64_t pass = std::clamp<int64_t>(static_cast<int64_t>(pass_bytes) / (int64_t(sizeof(float)) * T * T * (s.c + s.f)),
                                           16, std::max<int64_t>(p.tiles, 16));
  auto vd = reusable_scratch(sizeof(float) * T * T * (matrix_floats(pass, s.c) + matrix_floats(pass, s.f)),
                             "for the Winograd weight gradient's transforms");
  auto mm = reusable_scratch(sizeof(float) * T * T * s.f * s.c, "for the Winograd weight gradient's sums");
  float *sums = static_cast<float *>(mm.get());
  for (int64_t t0 = 0; t0 < p.tiles; t0 += pass) {
    const int64_t tc = std::min(pass, p.tiles - t0), nv = matrix_floats(tc, s.c), nd = matrix_floats(tc, s.f);
    float *v = static_cast<float *>(vd.get()), *d = v + T * T * nv;
    parallel_ranges(tc, 8, [&](int64_t k0, int64_t k1) {
      (M == 2 ? transform_inputs2 : transform_inputs4)(s, p, x, lx, t0 + k0, k1 - k0, v + k0 * s.c, nv);
      (M == 2 ? transform_gradients2 : transform_gradients4)(s, p, dy, ly, t0 + k0, k1 - k0, d + k0 * s.f, nd);
    });
    parallel_ranges(T * T, 1, [&](int64_t x0, int64_t x1) {
      for (int64_t xi = x0; xi < x1; ++xi)
        LOOM_CHECK(onednn_sgemm(true, false, s.f, s.c, tc, 1.0f, d + xi * nd, s.f, v + xi * nv, s.c,
                                t0 ? 1.0f : 0.0f, sums + xi * s.f * s.c, s.c),
                   LOOM_ERR_INTERNAL, "Winograd weight gradient: oneDNN's sgemm refused a ", s.f, "x", s.c, "x", tc,
                   " product");
    });
  }
  const auto &G = Wino<M>::G;
  parallel_ranges(s.f, 8, [&](int64_t f0, int64_t f1) {
    for (int64_t f = f0; f < f1; ++f)
      for (int64_t c = 0; c < s.c; ++c) {
        const float *q = sums + f * s.c + c;
        double t[3][T];  // G^T M
        for (int r = 0; r < 3; ++r)
          for (int b = 0; b < T; ++b) {
            double acc = 0;
            for (int a = 0; a < T; ++a) acc += G[a][r] * q[(a * T + b) * s.f * s.c];
            t[r][b] = acc;
          }
        float *o = dw + (f * s.c + c) * 9;
        for (int r = 0; r < 3; ++r)
          for (int k = 0; k < 3; ++k) {
            double acc = 0;
            for (int b = 0; b < T; ++b) acc += t[r][b] * G[b][k];
            o[r * 3 + k] = static_cast<float>(acc);
          }
      }
  });
}

}  // namespace

int set_loom_winograd(int mode) { return g_mode.exchange(mode); }

int loom_winograd_tile() {
  int t = g_tile.load();
  if (t) return t;
  t = tile_from_env();
  int expected = 0;
  g_tile.compare_exchange_strong(expected, t);
  return g_tile.load();
}

int set_loom_winograd_tile(int tile) {
  LOOM_CHECK(tile == 2 || tile == 4, LOOM_ERR_INVALID_ARGUMENT, "a Winograd tile of ", tile, ": use 2 or 4");
  const int before = loom_winograd_tile();
  g_tile.store(tile);
  return before;
}

bool loom_winograd_runs(const ConvShape &s) {
  const int mode = g_mode.load();
  // oneDNN's rule, but never on 7x7 outputs: there the transformed filters (16 x c x f
  // floats in 2x2 tiles, 16 MB for ResNet-50's 512 channels) are read for a few tiles,
  // and one image took about as long as by the direct algorithm.
  return (mode < 0 ? !onednn_avx512() : mode == 1) && onednn_winograd_qualifies(s) && s.oh * s.ow >= 14 * 14;
}

bool loom_winograd_weight_gradient_runs(const ConvShape &s) {
  const int mode = g_mode.load();
  return (mode < 0 ? !onednn_avx512() : mode == 1) && s.kh == 3 && s.kw == 3 && s.sh == 1 && s.sw == 1 &&
         s.dh == 1 && s.dw == 1 && s.groups == 1 && s.c % 16 == 0 && s.f % 16 == 0 && s.oh * s.ow >= 7 * 7;
}

void loom_winograd_weight_gradient(const ConvShape &s, const float *x, const float *dy, float *dw, bool x_blocked,
                                   bool dy_blocked, size_t pass_bytes) {
  const auto lay = layouts(s, x_blocked, dy_blocked);
  if (loom_winograd_tile() == 2)
    weight_gradient<2>(s, x, dy, dw, lay.first, lay.second, pass_bytes);
  else
    weight_gradient<4>(s, x, dy, dw, lay.first, lay.second, pass_bytes);
}

void loom_winograd_forward(const ConvShape &s, const float *x, const float *w, const float *bias, float *y, Var *keep,
                           const ConvEpilogue &ep) {
  if (loom_winograd_tile() == 2)
    forward<2>(s, x, w, bias, y, keep, ep);
  else
    forward<4>(s, x, w, bias, y, keep, ep);
}

}  // namespace loom
