// C = A . B^T in single precision where A has at most 32 rows and B is large (4 MB
// or more): a fully connected layer's forward pass at a small batch, B being the
// weight. OpenBLAS packs B first and reaches a third of the machine's rate on
// these shapes; this kernel reads B once, in place, a few rows at a time, while
// A's rows stay in cache and the dot products in registers (1.4-2.3x OpenBLAS
// with 2 threads on 16-32 x 4096 x 9216 and 16-32 x 4096 x 4096; the same
// formulation for the backward products was slower than OpenBLAS and is not used).
//
// Every output element is summed by one thread in a fixed order (over k in 8
// lanes, the lanes pairwise, then the tail), so the result does not depend on the
// thread count. The tiles are GCC vector extensions compiled for AVX-512 (32
// vector registers, so larger tiles) and for AVX2; without AVX2 the caller falls
// back to OpenBLAS.
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "common/parallel.h"
#include "ops/linalg/gemm.h"

// The 256-bit vectors pass between inlined helpers only, never across a call
// compiled for another target, so GCC's note on their calling convention does not apply.
#if defined(__clang__)
#pragma clang diagnostic ignored "-Wpsabi"
#elif defined(__GNUC__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

namespace loom {
namespace {

typedef float v8 __attribute__((vector_size(32)));

#define LOOM_INLINE __attribute__((always_inline)) inline

LOOM_INLINE v8 load8(const float *p) {
  v8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

LOOM_INLINE v8 splat(float x) { return v8{x, x, x, x, x, x, x, x}; }

LOOM_INLINE float lanes_sum(v8 v) { return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7])); }

// out = alpha * s + beta * out, where beta 0 never reads out (it may hold NaN).
// Fused multiply-adds are written out wherever a sum takes a product, so no tile
// shape rounds differently from another by the compiler's choice to contract.
LOOM_INLINE void put(float *out, float s, float alpha, float beta) {
  *out = beta == 0.0f ? alpha * s : __builtin_fmaf(beta, *out, alpha * s);
}

// C (m x n) = A (m x k) . B (n x k)^T: an MB x NB tile of dot products over k.
template <int MB, int NB>
LOOM_INLINE void nt_tile(const float *a, int64_t lda, const float *b, int64_t ldb, int64_t k, float alpha,
                         float beta, float *c, int64_t ldc) {
  v8 acc[MB][NB];
#pragma GCC unroll 16
  for (int i = 0; i < MB; ++i)
#pragma GCC unroll 16
    for (int j = 0; j < NB; ++j) acc[i][j] = splat(0.0f);
  int64_t p = 0;
  for (; p + 8 <= k; p += 8) {
    v8 bv[NB];
#pragma GCC unroll 16
    for (int j = 0; j < NB; ++j) bv[j] = load8(b + j * ldb + p);
#pragma GCC unroll 16
    for (int i = 0; i < MB; ++i) {
      const v8 av = load8(a + i * lda + p);
#pragma GCC unroll 16
      for (int j = 0; j < NB; ++j) acc[i][j] += av * bv[j];
    }
  }
  for (int i = 0; i < MB; ++i)
    for (int j = 0; j < NB; ++j) {
      float s = lanes_sum(acc[i][j]);
      for (int64_t q = p; q < k; ++q) s = __builtin_fmaf(a[i * lda + q], b[j * ldb + q], s);
      put(c + i * ldc + j, s, alpha, beta);
    }
}

// Columns [j0, j1) of C in blocks of NB rows of B, every row of A for each block
// (the block of B stays in cache while A's rows pass over it).
template <int MB, int NB>
LOOM_INLINE void nt_columns(int64_t m, int64_t k, float alpha, const float *a, int64_t lda, const float *b,
                            int64_t ldb, float beta, float *c, int64_t ldc, int64_t j0, int64_t j1) {
  int64_t j = j0;
  for (; j + NB <= j1; j += NB) {
    int64_t i = 0;
    for (; i + MB <= m; i += MB)
      nt_tile<MB, NB>(a + i * lda, lda, b + j * ldb, ldb, k, alpha, beta, c + i * ldc + j, ldc);
    for (; i < m; ++i) nt_tile<1, NB>(a + i * lda, lda, b + j * ldb, ldb, k, alpha, beta, c + i * ldc + j, ldc);
  }
  for (; j < j1; ++j) {
    int64_t i = 0;
    for (; i + MB <= m; i += MB)
      nt_tile<MB, 1>(a + i * lda, lda, b + j * ldb, ldb, k, alpha, beta, c + i * ldc + j, ldc);
    for (; i < m; ++i) nt_tile<1, 1>(a + i * lda, lda, b + j * ldb, ldb, k, alpha, beta, c + i * ldc + j, ldc);
  }
}

#if defined(__x86_64__) && defined(__GNUC__)
#define LOOM_SKINNY_X86 1
// 4 x 4 tiles need 24 vector registers: AVX-512's 32 (used at 256 bits). AVX2 has 16.
__attribute__((target("avx512f,avx512vl,avx2,fma"))) void skinny_avx512(int64_t m, int64_t k, float alpha,
                                                                       const float *a, int64_t lda, const float *b,
                                                                       int64_t ldb, float beta, float *c,
                                                                       int64_t ldc, int64_t j0, int64_t j1) {
  nt_columns<4, 4>(m, k, alpha, a, lda, b, ldb, beta, c, ldc, j0, j1);
}

__attribute__((target("avx2,fma"))) void skinny_avx2(int64_t m, int64_t k, float alpha, const float *a, int64_t lda,
                                                     const float *b, int64_t ldb, float beta, float *c, int64_t ldc,
                                                     int64_t j0, int64_t j1) {
  nt_columns<2, 4>(m, k, alpha, a, lda, b, ldb, beta, c, ldc, j0, j1);
}
#endif

using SkinnyFn = void (*)(int64_t, int64_t, float, const float *, int64_t, const float *, int64_t, float, float *,
                          int64_t, int64_t, int64_t);

SkinnyFn skinny_kernel() {
#ifdef LOOM_SKINNY_X86
  static const SkinnyFn fn = [] {
    const char *off = std::getenv("LOOM_SKINNY_GEMM");
    if (off && std::strcmp(off, "0") == 0) return SkinnyFn{nullptr};
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl")) return SkinnyFn{skinny_avx512};
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return SkinnyFn{skinny_avx2};
    return SkinnyFn{nullptr};
  }();
  return fn;
#else
  return nullptr;
#endif
}

}  // namespace

bool skinny_sgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                  const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
  // A . B^T with at most 32 rows of A and a B of 4 MB or more.
  if (ta || !tb || m > 32 || n * k < (int64_t(1) << 20)) return false;
  const SkinnyFn fn = skinny_kernel();
  if (!fn) return false;
  // Ranges of B's rows in whole tiles of 4.
  parallel_ranges((n + 3) / 4, 8, [&](int64_t u0, int64_t u1) {
    fn(m, k, alpha, a, lda, b, ldb, beta, c, ldc, u0 * 4, std::min(n, u1 * 4));
  });
  return true;
}

}  // namespace loom
