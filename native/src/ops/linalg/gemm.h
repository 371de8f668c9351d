// Row-major C = alpha * op(A) * op(B) + beta * C. float/double go to OpenBLAS;
// integer types use a plain loop (accumulating in int64).
#pragma once

#include <cblas.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

namespace loom {

template <typename T>
void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, double alpha, const T *a,
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
    cblas_sgemm(CblasRowMajor, TA, TB, static_cast<int>(m), static_cast<int>(n),
                static_cast<int>(k), static_cast<float>(alpha), a, static_cast<int>(lda), b,
                static_cast<int>(ldb), static_cast<float>(beta), c, static_cast<int>(ldc));
  } else if constexpr (std::is_same_v<T, double>) {
    cblas_dgemm(CblasRowMajor, TA, TB, static_cast<int>(m), static_cast<int>(n),
                static_cast<int>(k), alpha, a, static_cast<int>(lda), b, static_cast<int>(ldb),
                beta, c, static_cast<int>(ldc));
  } else {
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) {
        int64_t acc = 0;
        for (int64_t p = 0; p < k; ++p) {
          T av = ta ? a[p * lda + i] : a[i * lda + p];
          T bv = tb ? b[j * ldb + p] : b[p * ldb + j];
          acc += static_cast<int64_t>(av) * static_cast<int64_t>(bv);
        }
        c[i * ldc + j] = static_cast<T>(alpha * static_cast<double>(acc) +
                                        (beta == 0 ? 0.0 : beta * static_cast<double>(c[i * ldc + j])));
      }
  }
}

}  // namespace loom
