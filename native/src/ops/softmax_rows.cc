#include "ops/softmax_rows.h"

#include <cmath>
#include <cstring>

#include "ops/vecmath.h"

namespace loom {
namespace {

template <bool kScaled, bool kLog>
LOOM_CLONE_BODY bool row_body(const float *x, float *y, int64_t k, float t) {
  // The max and the NaN test in 16 independent lanes of a vector (a single
  // chain of selects stays scalar); a max does not depend on the order it is
  // taken in, and a row with a NaN goes to the caller anyway.
  typedef float F16 __attribute__((vector_size(64)));
  typedef int32_t I16 __attribute__((vector_size(64)));
  F16 lmx;
  I16 lnan = {};
  for (int l = 0; l < 16; ++l) lmx[l] = -INFINITY;
  int64_t c0 = 0;
  for (; c0 + 16 <= k; c0 += 16) {
    F16 v;
    std::memcpy(&v, x + c0, sizeof v);
    lmx = v > lmx ? v : lmx;
    lnan |= v != v;
  }
  float mx = -INFINITY;
  int nan = 0;
  for (; c0 < k; ++c0) {
    mx = x[c0] > mx ? x[c0] : mx;
    nan |= x[c0] != x[c0];
  }
  for (int l = 0; l < 16; ++l) {
    mx = lmx[l] > mx ? lmx[l] : mx;
    nan |= lnan[l] != 0;
  }
  if (nan || !(mx < INFINITY && mx > -INFINITY)) return false;
  for (int64_t c = 0; c < k; ++c) {
    float r = kScaled ? (x[c] - mx) / t : x[c] - mx;
    float e = exp_approx(r);
    y[c] = r < -87.0f ? 0.0f : e;
  }
  double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t c = 0;
  for (; c + 8 <= k; c += 8)
    for (int l = 0; l < 8; ++l) lane[l] += double(y[c + l]);
  double sum = 0;
  for (int l = 0; l < 8; ++l) sum += lane[l];
  for (; c < k; ++c) sum += double(y[c]);
  if (kLog) {
    const double lse = std::log(sum);
    for (int64_t i = 0; i < k; ++i) {
      float r = kScaled ? (x[i] - mx) / t : x[i] - mx;
      y[i] = static_cast<float>(double(r) - lse);
    }
  } else {
    const double inv = 1.0 / sum;
    for (int64_t i = 0; i < k; ++i) y[i] = static_cast<float>(double(y[i]) * inv);
  }
  return true;
}

template <bool kScaled, bool kLog>
bool dispatch(const float *x, float *y, int64_t k, float t);

// Compiled twice: AVX-512 pays off on long rows only (its remainder loops are
// scalar, and a row of a dozen values never enters a 16-lane loop); both give
// the same bits.
#define LOOM_SOFTMAX_ROWS(S, L)                                                                       \
  LOOM_VECTOR_CLONES_AVX2 bool row_short_##S##L(const float *x, float *y, int64_t k, float t) {       \
    return row_body<S, L>(x, y, k, t);                                                                \
  }                                                                                                   \
  LOOM_VECTOR_CLONES bool row_long_##S##L(const float *x, float *y, int64_t k, float t) {             \
    return row_body<S, L>(x, y, k, t);                                                                \
  }                                                                                                   \
  template <>                                                                                         \
  bool dispatch<S, L>(const float *x, float *y, int64_t k, float t) {                                 \
    return k >= 256 ? row_long_##S##L(x, y, k, t) : row_short_##S##L(x, y, k, t);                    \
  }
LOOM_SOFTMAX_ROWS(false, false)
LOOM_SOFTMAX_ROWS(false, true)
LOOM_SOFTMAX_ROWS(true, false)
LOOM_SOFTMAX_ROWS(true, true)
#undef LOOM_SOFTMAX_ROWS

template <typename T>
LOOM_CLONE_BODY void grad_row_body(const T *y, const T *dy, T *dx, int64_t k, double t, bool log_form) {
  if (log_form) {
    const double s = lane_sum8<false>(dy, dy, k);  // the sum of dy
    for (int64_t c = 0; c < k; ++c) dx[c] = static_cast<T>((double(dy[c]) - std::exp(double(y[c])) * s) / t);
  } else {
    const double s = lane_sum8<true>(dy, y, k);  // the sum of dy * y
    for (int64_t c = 0; c < k; ++c) dx[c] = static_cast<T>(double(y[c]) * (double(dy[c]) - s) / t);
  }
}

}  // namespace

LOOM_VECTOR_CLONES void softmax_grad_row(const float *y, const float *dy, float *dx, int64_t k, double t,
                                         bool log_form) {
  grad_row_body(y, dy, dx, k, t, log_form);
}
LOOM_VECTOR_CLONES void softmax_grad_row(const double *y, const double *dy, double *dx, int64_t k, double t,
                                         bool log_form) {
  grad_row_body(y, dy, dx, k, t, log_form);
}

bool softmax_row_f32(const float *x, float *y, int64_t k, float t, bool log_form) {
  if (t == 1.0f) return log_form ? dispatch<false, true>(x, y, k, t) : dispatch<false, false>(x, y, k, t);
  return log_form ? dispatch<true, true>(x, y, k, t) : dispatch<true, false>(x, y, k, t);
}

}  // namespace loom
