// Row-major C = alpha * op(A) * op(B) + beta * C. float/double go to OpenBLAS;
// integer types use a plain loop (accumulating in int64).
#pragma once

#include <cblas.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "common/parallel.h"
#include "ops/nn/onednn.h"

namespace loom {

// OpenBLAS runs single-threaded inside Loom except for large products (see
// blas_threads.cc): its idle threads spin in sched_yield and fight the engine
// for the cores. Medium products are split across Loom's kernel threads by
// output rows or columns (no reduction, so results do not depend on the
// thread count); large ones use OpenBLAS's threads, one such call at a time.
void ensure_single_threaded_blas();
void run_with_blas_threads(const std::function<void()> &f);

// OpenBLAS's thread count is one global setting, and a product split over threads
// rounds differently from one that is not. So a single-threaded call and the one
// threaded call never overlap: every BLAS call holds this guard (shared), and
// run_with_blas_threads holds it exclusively; calls made inside it pass through.
class BlasCallGuard {
 public:
  BlasCallGuard();
  ~BlasCallGuard();
  BlasCallGuard(const BlasCallGuard &) = delete;
  BlasCallGuard &operator=(const BlasCallGuard &) = delete;

 private:
  bool held_;
};

template <typename T>
void gemm_serial(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const T *a,
          int64_t lda, const T *b, int64_t ldb, double beta, T *c, int64_t ldc) {
  if (m == 0 || n == 0) return;
  if (k == 0) {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) c[i * ldc + j] = static_cast<T>(beta * c[i * ldc + j]);
    if (beta == 0)
      for (int64_t i = 0; i < m; ++i) std::fill(c + i * ldc, c + i * ldc + n, T(0));
    return;
  }
  auto TA = ta ? CblasTrans : CblasNoTrans, TB = tb ? CblasTrans : CblasNoTrans;
  if constexpr (std::is_same_v<T, float>) {
    if (use_onednn_sgemm(m, n, k) && onednn_sgemm(ta, tb, m, n, k, static_cast<float>(alpha), a, lda, b, ldb,
                                     static_cast<float>(beta), c, ldc))
      return;
    BlasCallGuard guard;
    cblas_sgemm(CblasRowMajor, TA, TB, static_cast<int>(m), static_cast<int>(n),
                static_cast<int>(k), static_cast<float>(alpha), a, static_cast<int>(lda), b,
                static_cast<int>(ldb), static_cast<float>(beta), c, static_cast<int>(ldc));
  } else if constexpr (std::is_same_v<T, double>) {
    BlasCallGuard guard;
    cblas_dgemm(CblasRowMajor, TA, TB, static_cast<int>(m), static_cast<int>(n),
                static_cast<int>(k), alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb),
                beta, c, static_cast<int>(ldc));
  } else {
    // Integers: NumPy's wrap-around, computed in unsigned 64-bit arithmetic (the
    // low bits of a product and a sum do not depend on the higher ones). Integer
    // products are only ever asked for with alpha 1 and beta 0 or 1.
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        uint64_t acc = beta == 0 ? 0 : static_cast<uint64_t>(static_cast<int64_t>(c[i * ldc + j]));
        for (int64_t p = 0; p < k; ++p) {
          T av = ta ? a[p * lda + i] : a[i * lda + p];
          T bv = tb ? b[j * ldb + p] : b[p * ldb + j];
          acc += static_cast<uint64_t>(static_cast<int64_t>(av)) * static_cast<uint64_t>(static_cast<int64_t>(bv));
        }
        c[i * ldc + j] = static_cast<T>(acc);
      }
  }
}

// Float C = A . B^T with at most 32 rows of A and a B of 4 MB or more (a fully
// connected layer's forward pass at a small batch): computed by Loom's own kernel
// (skinny.cc) where the CPU has AVX2, split over the kernel threads. Returns false
// (nothing done) for any other product. LOOM_SKINNY_GEMM=0 sends them to OpenBLAS.
bool skinny_sgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                  const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

// Float products in the oneDNN kernel set: oneDNN's sgemm over pieces of C's
// columns (or rows) cut by a rule of the shape alone, on the kernel threads, so
// the bits do not depend on the thread count (oneDNN's kernels round a product
// differently depending on its extents).
void onednn_sgemm_split(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                        const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

template <typename T>
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const T *a,
          int64_t lda, const T *b, int64_t ldb, double beta, T *c, int64_t ldc) {
  if constexpr (std::is_same_v<T, float>) {
    if (k > 0 && skinny_sgemm(ta, tb, m, n, k, static_cast<float>(alpha), a, lda, b, ldb, static_cast<float>(beta),
                              c, ldc))
      return;
    if (m > 0 && n > 0 && k > 0 && use_onednn_sgemm(m, n, k) && onednn_built()) {
      onednn_sgemm_split(ta, tb, m, n, k, static_cast<float>(alpha), a, lda, b, ldb, static_cast<float>(beta), c,
                         ldc);
      return;
    }
  }
  ensure_single_threaded_blas();
  if (std::is_floating_point_v<T> && kernel_threads() > 1 && m * n * k >= (int64_t(1) << 27)) {
    run_with_blas_threads([&] { gemm_serial<T>(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc); });
    return;
  }
  // Below ~4 MFLOP a split costs more than it saves.
  if (kernel_threads() <= 1 || m * n * k < (int64_t(1) << 21)) {
    gemm_serial<T>(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    return;
  }
  if (n >= m) {  // split the columns of C (and of op(B))
    parallel_ranges(n, 64, [&](int64_t j0, int64_t j1) {
      const T *bj = tb ? b + j0 * ldb : b + j0;
      gemm_serial<T>(ta, tb, m, j1 - j0, k, alpha, a, lda, bj, ldb, beta, c + j0, ldc);
    });
  } else {  // split the rows of C (and of op(A))
    parallel_ranges(m, 16, [&](int64_t i0, int64_t i1) {
      const T *ai = ta ? a + i0 : a + i0 * lda;
      gemm_serial<T>(ta, tb, i1 - i0, n, k, alpha, ai, lda, b, ldb, beta, c + i0 * ldc, ldc);
    });
  }
}

// Gradients of C (m x n) = op(A) (m x k) . op(B) (k x n) for a given dC:
// dA = dC . op(B)^T and dB = op(A)^T . dC, stored in A's and B's layouts.
// A null da or db skips that gradient.
template <typename T>
void matmul_backward(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const T *a, const T *b,
                     const T *g, T *da, T *db) {
  if (da) {
    if (!ta)  // dA (m,k) = G (m,n) . op(B)^T
      gemm<T>(false, !tb, m, k, n, 1.0, g, n, b, tb ? k : n, 0.0, da, k);
    else  // A stored (k,m): dA = op(B) . G^T
      gemm<T>(tb, true, k, m, n, 1.0, b, tb ? k : n, g, n, 0.0, da, m);
  }
  if (db) {
    if (!tb)  // dB (k,n) = op(A)^T . G
      gemm<T>(!ta, false, k, n, m, 1.0, a, ta ? m : k, g, n, 0.0, db, n);
    else  // B stored (n,k): dB = G^T . op(A)
      gemm<T>(true, ta, n, k, m, 1.0, g, n, a, ta ? m : k, 0.0, db, k);
  }
}

}  // namespace loom
