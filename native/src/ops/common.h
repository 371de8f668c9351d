// Helpers shared by operator definitions and their CPU kernels.
#pragma once

#include <cstdint>

#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>
#include <vector>

#include "common/parallel.h"
#include "op/registry.h"

namespace loom {

// Parallel loop over [0, n). Splits only when the work is large enough to
// pay for the threads; each index is computed independently, so results do
// not depend on the thread count.
template <typename F>
void parallel_for(int64_t n, F &&f, int64_t grain = 1 << 15) {
#ifdef LOOM_USE_OPENMP
  if (n >= 2 * grain) {
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) f(i);
    return;
  }
  for (int64_t i = 0; i < n; ++i) f(i);
#else
  if (n < 2 * grain) {
    for (int64_t i = 0; i < n; ++i) f(i);
    return;
  }
  parallel_ranges(n, grain, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) f(i);
  });
#endif
}

// Symbolic inference hint: unknown inputs take the shape of a known input, or
// of output 0 (elementwise ops, activations, identity-like layers).
inline void same_shape_hint(const Params &, ShapeList &in, SmallVec<char, 4> &known,
                            const ShapeList &out, const SmallVec<char, 4> &out_known) {
  const Shape *ref = nullptr;
  for (size_t i = 0; i < in.size() && !ref; ++i)
    if (known[i]) ref = &in[i];
  if (!ref && !out.empty() && out_known[0]) ref = &out[0];
  if (!ref) return;
  Shape r = *ref;
  for (size_t i = 0; i < in.size(); ++i)
    if (!known[i]) {
      in[i] = r;
      known[i] = 1;
    }
}

// NumPy broadcasting of two shapes; names the op and both shapes on failure.
inline Shape broadcast_shape(const Params &p, const Shape &a, const Shape &b,
                             const char *an = "lhs", const char *bn = "rhs") {
  Shape out;
  out.ndim = std::max(a.ndim, b.ndim);
  for (int i = 0; i < out.ndim; ++i) {
    int ia = a.ndim - out.ndim + i, ib = b.ndim - out.ndim + i;
    int64_t da = ia >= 0 ? a.d[ia] : 1, db = ib >= 0 ? b.d[ib] : 1;
    if (da != db && da != 1 && db != 1)
      shape_fail(p, std::string("cannot broadcast ") + an + " of shape " + a.str() + " with " +
                        bn + " of shape " + b.str() + " (axis " + std::to_string(i) + ": " +
                        std::to_string(da) + " vs " + std::to_string(db) + ")");
    out.d[i] = da == 1 ? db : da;
  }
  return out;
}

// Element strides of `in` laid against `out` under broadcasting (0 where broadcast).
inline std::vector<int64_t> broadcast_strides(const Shape &in, const Shape &out) {
  std::vector<int64_t> st(out.ndim, 0);
  int64_t s = 1;
  for (int i = in.ndim - 1; i >= 0; --i) {
    int o = out.ndim - in.ndim + i;
    st[o] = in.d[i] == 1 ? 0 : s;
    s *= in.d[i];
  }
  return st;
}

// Maps a flat output index to the flat index of a broadcast input.
struct BroadcastIndexer {
  Shape out;
  int64_t strides[LOOM_MAX_NDIM] = {0};
  bool identity;
  BroadcastIndexer(const Shape &in, const Shape &o) : out(o), identity(in == o) {
    if (identity) return;
    int64_t s = 1;
    for (int i = in.ndim - 1; i >= 0; --i) {
      strides[out.ndim - in.ndim + i] = in.d[i] == 1 ? 0 : s;
      s *= in.d[i];
    }
  }
  int64_t operator()(int64_t flat) const {
    if (identity) return flat;
    int64_t idx = 0;
    for (int i = out.ndim - 1; i >= 0; --i) {
      int64_t c = flat % out.d[i];
      flat /= out.d[i];
      idx += c * strides[i];
    }
    return idx;
  }
};

// where's condition: a 1-D condition against data of 2 or more axes selects
// whole rows (MXNet's `where`); otherwise the condition broadcasts.
inline bool where_selects_rows(const Shape &cond, const Shape &data) {
  return cond.ndim == 1 && data.ndim >= 2 && !(cond.d[0] == 1 && data.d[0] != 1);
}
struct WhereCondIndexer {
  bool rows;
  int64_t row_size = 1;
  BroadcastIndexer b;
  WhereCondIndexer(const Shape &cond, const Shape &out)
      : rows(where_selects_rows(cond, out)), b(rows ? out : cond, out) {
    if (rows) row_size = out.d[0] ? out.size() / out.d[0] : 1;
  }
  int64_t operator()(int64_t flat) const { return rows ? flat / row_size : b(flat); }
};

// A value converted to another element type with defined results everywhere (a
// floating-point value outside an integer's range is undefined behaviour in C++).
// Float to integer follows what NumPy gives on x86: truncation toward zero, and NaN
// or a value outside the range the machine converts to (64-bit for int64, 32-bit
// otherwise) gives that integer's minimum ("integer indefinite"), of which uint8
// keeps the low bits, as it does of any 32-bit result. Integer to narrower integer
// wraps modulo 2^bits.
template <typename D, typename S>
inline D convert_value(S v) {
  if constexpr (std::is_floating_point_v<S> && std::is_integral_v<D>) {
    const double x = static_cast<double>(v);
    if constexpr (sizeof(D) == 8) {
      if (!(x >= -9223372036854775808.0 && x < 9223372036854775808.0)) return static_cast<D>(INT64_MIN);
      return static_cast<D>(static_cast<int64_t>(x));
    } else {
      const int32_t w = x >= -2147483648.0 && x < 2147483648.0 ? static_cast<int32_t>(x) : INT32_MIN;
      return static_cast<D>(static_cast<uint32_t>(w));
    }
  } else if constexpr (std::is_integral_v<S> && std::is_integral_v<D>) {
    return static_cast<D>(static_cast<std::make_unsigned_t<D>>(static_cast<uint64_t>(v)));
  } else {
    return static_cast<D>(v);
  }
}

// NumPy's integer arithmetic: results wrap around modulo 2^bits. Computed in
// unsigned arithmetic (at least unsigned int wide), so overflow is defined
// behaviour; floating-point types use the plain operators.
template <typename T>
using WrapUnsigned = std::make_unsigned_t<std::common_type_t<T, unsigned>>;
template <typename T>
inline T wrap_add(T a, T b) {
  if constexpr (std::is_integral_v<T>) {
    using U = WrapUnsigned<T>;
    return static_cast<T>(static_cast<U>(static_cast<U>(a) + static_cast<U>(b)));
  } else {
    return a + b;
  }
}
// out[i] = in[0][i] + in[1][i] + ... in input order (after 0 + in[0][i] when
// from_zero, which turns -0 into +0 as a sum starting at 0 does), whichever
// thread adds it: blocks of 2048 elements stay in cache while the inputs are
// added one at a time, in loops the compiler vectorises. `out` may be one of the
// inputs' buffers: each block is read whole before it is written.
template <typename T>
void sum_in_order(const T *const *in, size_t k, T *out, int64_t n, bool from_zero) {
  parallel_ranges(n, 1 << 15, [&](int64_t b0, int64_t b1) {
    constexpr int64_t kBlock = 2048;
    T acc[kBlock];
    for (int64_t i0 = b0; i0 < b1; i0 += kBlock) {
      const int64_t m = std::min(kBlock, b1 - i0);
      const T *a = in[0] + i0;
      if (from_zero)
        for (int64_t i = 0; i < m; ++i) acc[i] = wrap_add(T(0), a[i]);
      else
        std::copy(a, a + m, acc);
      for (size_t j = 1; j < k; ++j) {
        const T *x = in[j] + i0;
        for (int64_t i = 0; i < m; ++i) acc[i] = wrap_add(acc[i], x[i]);
      }
      std::copy(acc, acc + m, out + i0);
    }
  });
}
template <typename T>
inline T wrap_sub(T a, T b) {
  if constexpr (std::is_integral_v<T>) {
    using U = WrapUnsigned<T>;
    return static_cast<T>(static_cast<U>(static_cast<U>(a) - static_cast<U>(b)));
  } else {
    return a - b;
  }
}
template <typename T>
inline T wrap_mul(T a, T b) {
  if constexpr (std::is_integral_v<T>) {
    using U = WrapUnsigned<T>;
    return static_cast<T>(static_cast<U>(static_cast<U>(a) * static_cast<U>(b)));
  } else {
    return a * b;
  }
}
// a^b for a non-negative integer exponent, by squaring, wrapping as NumPy does.
template <typename T>
inline T wrap_pow(T a, T b) {
  T r = T(1);
  while (b > 0) {
    if (b & 1) r = wrap_mul(r, a);
    a = wrap_mul(a, a);
    b = static_cast<T>(b >> 1);
  }
  return r;
}

// Splits a shape around a block of axes [a0, a1): (outer, mid, inner).
inline void split_axes(const Shape &s, int a0, int a1, int64_t *outer, int64_t *mid,
                       int64_t *inner) {
  *outer = *mid = *inner = 1;
  for (int i = 0; i < s.ndim; ++i) {
    if (i < a0) *outer *= s.d[i];
    else if (i < a1) *mid *= s.d[i];
    else *inner *= s.d[i];
  }
}

inline Shape tuple_to_shape(const Params &p, const char *name) {
  const auto &t = p.tuple(name);
  LOOM_CHECK(t.size() <= LOOM_MAX_NDIM, LOOM_ERR_SHAPE, p.op().name, ": ", name, " has ",
             t.size(), " dimensions; at most ", LOOM_MAX_NDIM, " are supported");
  for (int64_t v : t)
    LOOM_CHECK(v >= 0, LOOM_ERR_SHAPE, p.op().name, ": ", name, " has a negative extent: ",
               Shape::from(t).str());
  return Shape::from(t);
}

// Accumulator type for reductions: double for floats, int64 for integers.
template <typename T>
struct Acc {
  using type = int64_t;
};
template <>
struct Acc<float> {
  using type = double;
};
template <>
struct Acc<double> {
  using type = double;
};

}  // namespace loom
