// Test helpers over the C ABI: owned handles, float64 views of results.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "common/base.h"
#include "loom/loom.h"

namespace lt {

struct Arr {
  loom_ndarray h = nullptr;
  Arr() = default;
  explicit Arr(loom_ndarray x) : h(x) {}
  Arr(const Arr &) = delete;
  Arr(Arr &&o) noexcept : h(o.h) { o.h = nullptr; }
  Arr &operator=(Arr &&o) noexcept {
    std::swap(h, o.h);
    return *this;
  }
  ~Arr() { loom_ndarray_free(h); }
};

inline std::vector<int64_t> shape_of(const Arr &a) {
  int32_t nd = 0;
  EXPECT_EQ(loom_ndarray_get_ndim(&nd, a.h), LOOM_OK);
  std::vector<int64_t> s(nd);
  EXPECT_EQ(loom_ndarray_get_shape(s.data(), LOOM_MAX_NDIM, a.h), LOOM_OK);
  return s;
}

inline int32_t dtype_of(const Arr &a) {
  int32_t d = -1;
  EXPECT_EQ(loom_ndarray_get_dtype(&d, a.h), LOOM_OK);
  return d;
}

inline int64_t numel(const std::vector<int64_t> &s) {
  int64_t n = 1;
  for (auto v : s) n *= v;
  return n;
}

// Creates an array of `dtype` holding `vals` (converted from double).
inline Arr make(const std::vector<int64_t> &shape, const std::vector<double> &vals,
                int32_t dtype = LOOM_DTYPE_FLOAT32) {
  loom_ndarray h = nullptr;
  EXPECT_EQ(loom_ndarray_create(&h, shape.data(), static_cast<int32_t>(shape.size()), dtype,
                                LOOM_DEVICE_CPU, 0),
            LOOM_OK)
      << loom_last_error();
  size_t n = vals.size();
  std::vector<char> buf(n * loom::dtype_size(dtype));
  LOOM_DTYPE_SWITCH(dtype, T, {
    T *p = reinterpret_cast<T *>(buf.data());
    for (size_t i = 0; i < n; ++i) p[i] = static_cast<T>(vals[i]);
  });
  EXPECT_EQ(loom_ndarray_copy_from_host(h, buf.data(), buf.size()), LOOM_OK) << loom_last_error();
  return Arr(h);
}

inline std::vector<double> read(const Arr &a) {
  int64_t n = 0;
  EXPECT_EQ(loom_ndarray_get_size(&n, a.h), LOOM_OK);
  int32_t d = dtype_of(a);
  std::vector<char> buf(static_cast<size_t>(n) * loom::dtype_size(d));
  loom_status s = loom_ndarray_copy_to_host(buf.data(), buf.size(), a.h);
  EXPECT_EQ(s, LOOM_OK) << loom_last_error();
  std::vector<double> out(static_cast<size_t>(n));
  LOOM_DTYPE_SWITCH(d, T, {
    const T *p = reinterpret_cast<const T *>(buf.data());
    for (int64_t i = 0; i < n; ++i) out[i] = static_cast<double>(p[i]);
  });
  return out;
}

using Params = std::vector<std::pair<std::string, std::string>>;

// Invokes `op`, allocating its outputs. Returns the status; outputs in `outs`.
inline loom_status invoke(const std::string &op, const std::vector<const Arr *> &ins,
                          const Params &params, std::vector<Arr> *outs, int nout = 1) {
  loom_op h = nullptr;
  loom_status s = loom_op_find(&h, op.c_str());
  if (s != LOOM_OK) return s;
  std::vector<loom_ndarray> in;
  for (auto *a : ins) in.push_back(a ? a->h : nullptr);
  std::vector<const char *> k, v;
  for (auto &kv : params) {
    k.push_back(kv.first.c_str());
    v.push_back(kv.second.c_str());
  }
  std::vector<loom_ndarray> out(nout, nullptr);
  s = loom_imperative_invoke(out.data(), nout, h, in.data(), static_cast<int32_t>(in.size()),
                             k.data(), v.data(), static_cast<int32_t>(k.size()));
  if (s == LOOM_OK && outs)
    for (auto o : out) outs->emplace_back(o);
  return s;
}

// Invokes `op` with every output allocated (hidden ones too); returns output 0.
inline Arr call(const std::string &op, const std::vector<const Arr *> &ins,
                const Params &params = {}) {
  std::vector<Arr> outs;
  int32_t nout = 1;
  loom_op h = nullptr;
  if (loom_op_find(&h, op.c_str()) == LOOM_OK) {
    std::vector<const char *> k, v;
    for (auto &kv : params) k.push_back(kv.first.c_str()), v.push_back(kv.second.c_str());
    if (loom_op_num_outputs(&nout, h, k.data(), v.data(), static_cast<int32_t>(k.size())) != LOOM_OK)
      nout = 1;  // the invoke below reports the parameters' error
  }
  loom_status s = invoke(op, ins, params, &outs, nout);
  EXPECT_EQ(s, LOOM_OK) << op << ": " << loom_last_error();
  if (outs.empty()) return Arr();
  return std::move(outs[0]);
}

// Direct 2-D convolution in float64, written from the definition:
// y[n,f,i,j] = b[f] + sum x[n, g*cg+c, i*s-ph+ki*d, j*s-pw+kj*d] w[f, c, ki, kj] (b may be empty).
inline std::vector<double> naive_conv2d(const std::vector<double> &x, const std::vector<double> &w,
                                        const std::vector<double> &b, int64_t N, int64_t C, int64_t H,
                                        int64_t W, int64_t F, int64_t KH, int64_t KW, int64_t S, int64_t PH,
                                        int64_t PW, int64_t D, int64_t G, int64_t *OH, int64_t *OW) {
  *OH = (H + 2 * PH - D * (KH - 1) - 1) / S + 1;
  *OW = (W + 2 * PW - D * (KW - 1) - 1) / S + 1;
  int64_t cg = C / G, fg = F / G;
  std::vector<double> y(N * F * *OH * *OW);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t f = 0; f < F; ++f)
      for (int64_t i = 0; i < *OH; ++i)
        for (int64_t j = 0; j < *OW; ++j) {
          double s = b.empty() ? 0 : b[f];
          for (int64_t c = 0; c < cg; ++c)
            for (int64_t ki = 0; ki < KH; ++ki)
              for (int64_t kj = 0; kj < KW; ++kj) {
                int64_t ii = i * S - PH + ki * D, jj = j * S - PW + kj * D;
                if (ii < 0 || ii >= H || jj < 0 || jj >= W) continue;
                s += x[((n * C + (f / fg) * cg + c) * H + ii) * W + jj] * w[((f * cg + c) * KH + ki) * KW + kj];
              }
          y[((n * F + f) * *OH + i) * *OW + j] = s;
        }
  return y;
}

inline std::vector<double> random_values(size_t n, double lo, double hi, uint32_t seed) {
  std::mt19937 g(seed);
  std::uniform_real_distribution<double> d(lo, hi);
  std::vector<double> v(n);
  for (auto &x : v) x = d(g);
  return v;
}

// Rounds values through a dtype, so references see exactly what the op saw.
inline std::vector<double> as_dtype(const std::vector<double> &v, int32_t dtype) {
  std::vector<double> o(v.size());
  LOOM_DTYPE_SWITCH(dtype, T, {
    for (size_t i = 0; i < v.size(); ++i) o[i] = static_cast<double>(static_cast<T>(v[i]));
  });
  return o;
}

inline void expect_close(const std::vector<double> &got, const std::vector<double> &want,
                         int32_t dtype, const std::string &what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double rtol = dtype == LOOM_DTYPE_FLOAT32 ? 2e-6 : (dtype == LOOM_DTYPE_FLOAT64 ? 1e-12 : 0);
  double atol = dtype == LOOM_DTYPE_FLOAT32 ? 1e-6 : (dtype == LOOM_DTYPE_FLOAT64 ? 1e-13 : 0);
  for (size_t i = 0; i < got.size(); ++i) {
    if (std::isnan(want[i])) {
      EXPECT_TRUE(std::isnan(got[i])) << what << " at " << i;
      continue;
    }
    if (std::isinf(want[i])) {
      EXPECT_EQ(got[i], want[i]) << what << " at " << i;
      continue;
    }
    EXPECT_NEAR(got[i], want[i], atol + rtol * std::fabs(want[i])) << what << " at " << i;
  }
}

// Naive NumPy-style broadcasting of flat index `i` of `out` onto `in`.
inline int64_t bcast_index(int64_t i, const std::vector<int64_t> &in,
                           const std::vector<int64_t> &out) {
  int64_t idx = 0, stride = 1;
  for (int k = static_cast<int>(out.size()) - 1; k >= 0; --k) {
    int64_t c = i % out[k];
    i /= out[k];
    int ki = k - static_cast<int>(out.size() - in.size());
    if (ki >= 0) {
      if (in[ki] != 1) idx += c * stride;
      stride *= in[ki];
    }
  }
  return idx;
}

// Ops covered by a reference test (in any test file); Ops.EveryRegisteredOpHasAReferenceTest
// fails when an op is registered without one.
inline std::set<std::string> &covered() {
  static std::set<std::string> s;
  return s;
}
inline bool cover(std::initializer_list<const char *> names) {
  for (const char *n : names) covered().insert(n);
  return true;
}
#define LOOM_CAT2(a, b) a##b
#define LOOM_CAT(a, b) LOOM_CAT2(a, b)
// Declares, at load time, which ops the following test checks.
#define COVERS(...) static const bool LOOM_CAT(covers_, __COUNTER__) = ::lt::cover({__VA_ARGS__})

inline std::string shape_str(const std::vector<int64_t> &s) {
  return loom::Shape::from(s).str();
}

}  // namespace lt
