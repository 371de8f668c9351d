// Loom's Winograd convolution F(2x2, 3x3) for prediction (onednn.h): each 2x2
// block of outputs from a 4x4 tile of inputs with 16 products per input and
// output channel instead of 36. Lavin and Gray's transforms:
//   V = B^T d B (input tile), U = G g G^T (filter), Y = A^T (sum over channels of U . V) A,
// the channel sums as 16 matrix products per chunk of tiles (oneDNN's sgemm).
#include "ops/nn/onednn.h"
#include "ops/vecmath.h"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "common/base.h"
#include "common/parallel.h"
#include "engine/engine.h"

namespace loom {
namespace {

std::atomic<int> g_mode{-1};

// The cut of a convolution into work items: chunks of `tc` tiles (2x2 output
// blocks, counted over the whole batch) by pieces of `fp` output channels. It
// depends on the shape alone, so the bits do not depend on the thread count.
struct Cut {
  int64_t th, tw, tiles, tc, chunks, fpieces, fp;
};
Cut cut_for(const ConvShape &s) {
  Cut p;
  p.th = (s.oh + 1) / 2;
  p.tw = (s.ow + 1) / 2;
  p.tiles = s.n * p.th * p.tw;
  // A chunk's transformed inputs (16 x tc x c floats) take about 1 MB: they and
  // the products stay near the core between the transforms and the products.
  const int64_t most = std::clamp<int64_t>(16384 / s.c, 16, 256);
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

// The floats from one of a chunk's 16 matrices (rows x cols) to the next: 16 more
// than the matrix, so the 16 values of a tile, written and read together, are not
// 4 KB multiples apart (with 256 tiles of 64 channels they would be: one set of the
// L1 cache for all 16).
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

// U[xi][c][f] = (G g G^T)[xi] for the filters g = w[f][c] (OIHW), G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1].
void transform_weights(const ConvShape &s, const float *w, float *u) {
  parallel_ranges(s.f, 8, [&](int64_t f0, int64_t f1) {
    for (int64_t f = f0; f < f1; ++f)
      for (int64_t c = 0; c < s.c; ++c) {
        const float *g = w + (f * s.c + c) * 9;
        float t[4][3];
        for (int j = 0; j < 3; ++j) {
          t[0][j] = g[j];
          t[1][j] = 0.5f * (g[j] + g[3 + j] + g[6 + j]);
          t[2][j] = 0.5f * (g[j] - g[3 + j] + g[6 + j]);
          t[3][j] = g[6 + j];
        }
        for (int i = 0; i < 4; ++i) {
          const float r[4] = {t[i][0], 0.5f * (t[i][0] + t[i][1] + t[i][2]), 0.5f * (t[i][0] - t[i][1] + t[i][2]),
                              t[i][2]};
          for (int j = 0; j < 4; ++j) u[((i * 4 + j) * s.c + c) * s.f + f] = r[j];
        }
      }
  });
}

// V[xi][k][c] = (B^T d B)[xi] for the tiles [t0, t0 + tc) of the chunk, B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1];
// inputs outside the image are the padding's zeros.
LOOM_VECTOR_CLONES void transform_inputs(const ConvShape &s, const Cut &p, const float *x, const Layout &lx,
                                         int64_t t0, int64_t tc, float *v) {
  const F8v zero = {};
  const int64_t stride = lx.lane(), per_image = p.th * p.tw;
  for (int64_t k = 0; k < tc; ++k) {
    const int64_t t = t0 + k, n = t / per_image, i = (t % per_image) / p.tw, j = t % p.tw;
    const int64_t r0 = 2 * i - s.ph, c0 = 2 * j - s.pw;
    const bool inside = r0 >= 0 && r0 + 4 <= s.h && c0 >= 0 && c0 + 4 <= s.w;
    for (int64_t g = 0; g < s.c / 8; ++g) {
      F8v d[4][4];
      const float *xg = x + lx.at(n, g, 0);
      if (inside) {
        for (int a = 0; a < 4; ++a)
          for (int b = 0; b < 4; ++b) load8(d[a][b], xg + ((r0 + a) * s.w + c0 + b) * lx.block, stride);
      } else {
        for (int a = 0; a < 4; ++a)
          for (int b = 0; b < 4; ++b) {
            const int64_t r = r0 + a, c = c0 + b;
            if (r >= 0 && r < s.h && c >= 0 && c < s.w)
              load8(d[a][b], xg + (r * s.w + c) * lx.block, stride);
            else
              d[a][b] = zero;
          }
      }
      F8v e[4][4];
      for (int b = 0; b < 4; ++b) {
        e[0][b] = d[0][b] - d[2][b];
        e[1][b] = d[1][b] + d[2][b];
        e[2][b] = d[2][b] - d[1][b];
        e[3][b] = d[1][b] - d[3][b];
      }
      float *o = v + k * s.c + 8 * g;
      const int64_t next = matrix_floats(tc, s.c);
      for (int a = 0; a < 4; ++a) {
        const F8v q[4] = {e[a][0] - e[a][2], e[a][1] + e[a][2], e[a][2] - e[a][1], e[a][1] - e[a][3]};
        for (int b = 0; b < 4; ++b) std::memcpy(o + (a * 4 + b) * next, &q[b], sizeof(F8v));
      }
    }
  }
}

// Y = A^T m A, A^T = [1 1 1 0; 0 1 -1 -1], for the chunk's tiles and the piece's
// channels [f0, f0 + fp) from M[xi][k][f - f0], then the epilogue as oneDNN's
// post-ops and Loom's after-steps apply it: + bias, * scale + shift, + addend,
// + what y held (sum), + after_add, MXNet's relu (NaN passes through).
LOOM_VECTOR_CLONES void transform_outputs(const ConvShape &s, const Cut &p, const float *m, int64_t t0, int64_t tc,
                                          int64_t f0, const float *bias, float *y, const Layout &ly,
                                          const ConvEpilogue &ep) {
  const F8v zero = {};
  const int64_t stride = ly.lane(), per_image = p.th * p.tw, next = matrix_floats(tc, p.fp);
  for (int64_t k = 0; k < tc; ++k) {
    const int64_t t = t0 + k, n = t / per_image, i = (t % per_image) / p.tw, j = t % p.tw;
    for (int64_t gf = 0; gf < p.fp / 8; ++gf) {
      const int64_t g = f0 / 8 + gf;
      F8v q[2][4];
      for (int b = 0; b < 4; ++b) {
        F8v m0, m1, m2, m3;
        std::memcpy(&m0, m + (0 * 4 + b) * next + k * p.fp + 8 * gf, sizeof m0);
        std::memcpy(&m1, m + (1 * 4 + b) * next + k * p.fp + 8 * gf, sizeof m1);
        std::memcpy(&m2, m + (2 * 4 + b) * next + k * p.fp + 8 * gf, sizeof m2);
        std::memcpy(&m3, m + (3 * 4 + b) * next + k * p.fp + 8 * gf, sizeof m3);
        q[0][b] = m0 + m1 + m2;
        q[1][b] = m1 - m2 - m3;
      }
      F8v bv = {}, sc = {}, sh = {};
      if (bias) std::memcpy(&bv, bias + 8 * g, sizeof bv);
      if (ep.scale) {
        std::memcpy(&sc, ep.scale + 8 * g, sizeof sc);
        std::memcpy(&sh, ep.shift + 8 * g, sizeof sh);
      }
      for (int a = 0; a < 2; ++a) {
        const int64_t r = 2 * i + a;
        if (r >= s.oh) continue;
        const F8v out[2] = {q[a][0] + q[a][1] + q[a][2], q[a][1] - q[a][2] - q[a][3]};
        for (int b = 0; b < 2; ++b) {
          const int64_t c = 2 * j + b;
          if (c >= s.ow) continue;
          const int64_t at = ly.at(n, g, r * s.ow + c);
          F8v v = out[b], add = {};
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

}  // namespace

int set_loom_winograd(int mode) { return g_mode.exchange(mode); }

bool loom_winograd_runs(const ConvShape &s) {
  const int mode = g_mode.load();
  // oneDNN's rule, but never on 7x7 outputs: there the transformed filters (16 x c x f
  // floats, 16 MB for ResNet-50's 512 channels) are read for a few tiles, and one image
  // took about as long as by the direct algorithm.
  return (mode < 0 ? !onednn_avx512() : mode == 1) && onednn_winograd_qualifies(s) && s.oh * s.ow >= 14 * 14;
}

void loom_winograd_forward(const ConvShape &s, const float *x, const float *w, const float *bias, float *y, Var *keep,
                           const ConvEpilogue &ep) {
  const Cut p = cut_for(s);
  // The transformed filters (16 x c x f floats), kept on the weight's var when given.
  std::shared_ptr<const void> hold;
  std::string key;
  if (keep) {
    const int64_t k[] = {reinterpret_cast<int64_t>(w), s.c, s.f, static_cast<int64_t>(ep.weights_id)};
    key = std::string("loom.winograd.weights:") + std::string(reinterpret_cast<const char *>(k), sizeof k);
    hold = keep->derived(key);
  }
  if (!hold) {
    void *q = nullptr;
    const size_t bytes = sizeof(float) * 16 * s.c * s.f;
    LOOM_CHECK(posix_memalign(&q, 64, bytes) == 0, LOOM_ERR_OUT_OF_MEMORY,
               "Winograd convolution: could not allocate ", bytes, " bytes for transformed weights");
    std::shared_ptr<void> buf(q, [](void *b) { std::free(b); });
    transform_weights(s, w, static_cast<float *>(buf.get()));
    if (keep) keep->keep_derived(key, buf);
    hold = buf;
  }
  const float *u = static_cast<const float *>(hold.get());
  const int64_t block = onednn_block();
  LOOM_CHECK(!(ep.src_blocked || ep.dst_blocked) || block == 8 || block == 16, LOOM_ERR_INTERNAL,
             "Winograd convolution: blocked data, but the block is ", block);
  const Layout lx{s.c, s.h * s.w, ep.src_blocked ? block : 1}, ly{s.f, s.oh * s.ow, ep.dst_blocked ? block : 1};
  parallel_ranges(p.chunks * p.fpieces, 1, [&](int64_t i0, int64_t i1) {
    float *v = thread_floats(0, 16 * matrix_floats(p.tc, s.c)), *m = thread_floats(1, 16 * matrix_floats(p.tc, p.fp));
    int64_t transformed = -1;  // the chunk whose inputs v holds
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t chunk = i / p.fpieces, f0 = (i % p.fpieces) * p.fp;
      const int64_t t0 = chunk * p.tc, tc = std::min(p.tc, p.tiles - t0);
      if (chunk != transformed) transform_inputs(s, p, x, lx, t0, tc, v);
      transformed = chunk;
      for (int xi = 0; xi < 16; ++xi)
        LOOM_CHECK(onednn_sgemm(false, false, tc, p.fp, s.c, 1.0f, v + xi * matrix_floats(tc, s.c), s.c,
                                u + xi * s.c * s.f + f0, s.f, 0.0f, m + xi * matrix_floats(tc, p.fp), p.fp),
                   LOOM_ERR_INTERNAL, "Winograd convolution: oneDNN's sgemm refused a ", tc, "x", p.fp, "x", s.c,
                   " product");
      transform_outputs(s, p, m, t0, tc, f0, bias, y, ly, ep);
    }
  });
}

}  // namespace loom
