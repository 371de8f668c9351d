// Branch-free float math that compilers vectorise, and a marker that compiles
// a loop three times (AVX-512, AVX2 and the baseline) and picks one when the
// library loads. The library is built with -ffp-contract=off, so all three
// round every element alike.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_THREAD__)
#define LOOM_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
// For loops over short rows (a dozen values), where a 16-lane loop never runs
// and its AVX-512 remainder is scalar: AVX2 and the baseline only.
#define LOOM_VECTOR_CLONES_AVX2 __attribute__((target_clones("avx2", "default")))
#else
#define LOOM_VECTOR_CLONES
#define LOOM_VECTOR_CLONES_AVX2
#endif
// For the bodies a cloned function calls: a callee GCC declines to inline is
// compiled once, for the baseline, and the clone then runs SSE2 code (a softmax
// row twice as slow, SGD's update scalar). The test check_clones fails the
// build's tests when a clone calls such a function.
#define LOOM_CLONE_BODY __attribute__((always_inline)) inline

namespace loom {

// e^x for float within 2 ulp over [-87, 88] (clamped outside): x = n ln2 + r
// with |r| <= ln2/2, e^r by its degree-7 Taylor polynomial, 2^n from the
// exponent bits.
inline float exp_approx(float x) {
  x = x > 88.0f ? 88.0f : x;
  x = x < -87.0f ? -87.0f : x;
  float t = x * 1.44269504088896341f;
  float n = (t + 12582912.0f) - 12582912.0f;  // round to nearest (1.5 * 2^23)
  float r = x - n * 0.693359375f + n * 2.12194440e-4f;  // ln2 in two parts
  float p = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 +
                                                  r * (1.0f / 720 + r * (1.0f / 5040)))))));
  int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float s;
  std::memcpy(&s, &bits, sizeof s);
  return p * s;
}

// tanh for float within 3.7e-7 absolute and relative (6 ulp): an odd rational
// function, degree 13 over degree 6 in x, fitted over [-c, c] where
// c = 7.90531111 is the smallest argument at which it gives exactly 1 (the form
// and coefficients of Eigen's fast float tanh); beyond c it is +-1 and below
// |x| = 4e-4, where tanh x is x within an ulp, x itself. NaN stays NaN. About
// half the time of 1 - 2 / (e^2x + 1) with a series near 0, which it replaced
// (LeNet's tanh layers took 8% of a training step).
inline float tanh_approx(float x) {
  const float c = 7.90531110763549805f;
  float v = x > c ? c : x;
  v = v < -c ? -c : v;
  const float v2 = v * v;
  float p = -2.76076847742355e-16f;
  p = p * v2 + 2.00018790482477e-13f;
  p = p * v2 - 8.60467152213735e-11f;
  p = p * v2 + 5.12229709037114e-08f;
  p = p * v2 + 1.48572235717979e-05f;
  p = p * v2 + 6.37261928875436e-04f;
  p = p * v2 + 4.89352455891786e-03f;
  float q = 1.19825839466702e-06f;
  q = q * v2 + 1.18534705686654e-04f;
  q = q * v2 + 2.26843463243900e-03f;
  q = q * v2 + 4.89352518554385e-03f;
  const float r = v * p / q;
  return (x < 4e-4f && x > -4e-4f) ? x : r;
}

// MXNet's relu gradient from the relu's output y (mshadow_op.h relu_grad): 1 above
// zero, else 0, and NaN for NaN, so a NaN output reaches the input's gradient.
// The relu's backward step (nn.cc) and BatchNorm's backward fused with it (norm.cc)
// both multiply the incoming gradient by it, so their bits agree.
template <typename T>
LOOM_CLONE_BODY T relu_grad(T y) {
  return y != y ? y : (y > T(0) ? T(1) : T(0));
}

// The sum of a[i] (or, with kProduct, of a[i] * b[i]) over n values in double:
// eight lanes (lane l takes every eighth value), combined in a fixed tree, then
// the values past the last whole eight in order. One accumulator would make
// each addition wait for the last (a bias gradient's chain took 9% of a LeNet step).
template <bool kProduct, typename T>
LOOM_CLONE_BODY double lane_sum8(const T *a, const T *b, int64_t n) {
  typedef double D8 __attribute__((vector_size(64)));
  typedef T T8 __attribute__((vector_size(8 * sizeof(T))));
  D8 acc = {};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    T8 va, vb;
    std::memcpy(&va, a + i, sizeof va);
    if (kProduct) std::memcpy(&vb, b + i, sizeof vb);
    acc += kProduct ? __builtin_convertvector(va, D8) * __builtin_convertvector(vb, D8)
                    : __builtin_convertvector(va, D8);
  }
  double s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; i < n; ++i) s += kProduct ? double(a[i]) * double(b[i]) : double(a[i]);
  return s;
}

// 16 floats, and 16 doubles as two native 8-lane vectors (one vector of 16
// doubles is kept in memory between its uses by GCC: BatchNorm's backward pass
// ran 35% slower), for kernels over the 16 channels of an nChw16c block.
typedef float F16v __attribute__((vector_size(64)));
typedef int32_t I16v __attribute__((vector_size(64)));
// (Taken and given by reference: a 64-byte vector passed by value changes the
// ABI between the clones.)
LOOM_CLONE_BODY void loadf16(F16v &v, const float *p) { std::memcpy(&v, p, sizeof v); }
LOOM_CLONE_BODY void storef16(float *p, const F16v &v) { std::memcpy(p, &v, sizeof v); }
typedef float F8v __attribute__((vector_size(32)));
typedef double D8v __attribute__((vector_size(64)));
typedef double D4v __attribute__((vector_size(32)));
// 2H doubles as two H-lane vectors.
template <typename V, int H>
struct DoublePair {
  V lo = {}, hi = {};
  double operator[](int l) const { return l < H ? lo[l] : hi[l - H]; }
};
template <typename V, int H>
LOOM_CLONE_BODY DoublePair<V, H> operator+(DoublePair<V, H> a, DoublePair<V, H> b) {
  return {a.lo + b.lo, a.hi + b.hi};
}
template <typename V, int H>
LOOM_CLONE_BODY DoublePair<V, H> operator-(DoublePair<V, H> a, DoublePair<V, H> b) {
  return {a.lo - b.lo, a.hi - b.hi};
}
template <typename V, int H>
LOOM_CLONE_BODY DoublePair<V, H> operator*(DoublePair<V, H> a, DoublePair<V, H> b) {
  return {a.lo * b.lo, a.hi * b.hi};
}
template <typename V, int H>
LOOM_CLONE_BODY DoublePair<V, H> operator/(DoublePair<V, H> a, double b) {
  return {a.lo / b, a.hi / b};
}
template <typename V, int H>
LOOM_CLONE_BODY DoublePair<V, H> &operator+=(DoublePair<V, H> &a, DoublePair<V, H> b) {
  return a = a + b;
}
template <typename V, int H>
LOOM_CLONE_BODY DoublePair<V, H> &operator*=(DoublePair<V, H> &a, DoublePair<V, H> b) {
  return a = a * b;
}
typedef DoublePair<D8v, 8> D16v;
// 8 doubles as two 4-lane vectors, as D16v is two 8-lane ones (a 64-byte vector
// returned by value would change the ABI between the clones).
typedef DoublePair<D4v, 4> D8p;
LOOM_CLONE_BODY D16v load16(const float *p) {
  F8v a, b;
  std::memcpy(&a, p, sizeof a);
  std::memcpy(&b, p + 8, sizeof b);
  return {__builtin_convertvector(a, D8v), __builtin_convertvector(b, D8v)};
}
LOOM_CLONE_BODY void store16(float *p, D16v v) {
  const F8v a = __builtin_convertvector(v.lo, F8v), b = __builtin_convertvector(v.hi, F8v);
  std::memcpy(p, &a, sizeof a);
  std::memcpy(p + 8, &b, sizeof b);
}
LOOM_CLONE_BODY D16v lanes16(const double *v) {
  D16v r;
  std::memcpy(&r.lo, v, sizeof r.lo);
  std::memcpy(&r.hi, v + 8, sizeof r.hi);
  return r;
}

typedef float F4v __attribute__((vector_size(16)));
// g * relu_grad(z) lane by lane (relu_grad: z for NaN, else 1 where z > 0 and 0
// elsewhere), into g (by reference: see loadf16).
template <typename V>
LOOM_CLONE_BODY void times_relu_grad(V &g, const V &z) {
  const V one = V{} + 1.0f, zero = {};
  const V r = z > zero ? one : zero;
  g = g * (z != z ? z : r);
}

// dz * relu_grad(z) at 2H positions in float, widened to two H-lane double vectors.
template <typename F, typename Dv, int H>
LOOM_CLONE_BODY DoublePair<Dv, H> relu_grad_pair(const float *dz, const float *z) {
  F g0, g1, z0, z1;
  std::memcpy(&g0, dz, sizeof g0);
  std::memcpy(&g1, dz + H, sizeof g1);
  std::memcpy(&z0, z, sizeof z0);
  std::memcpy(&z1, z + H, sizeof z1);
  times_relu_grad(g0, z0);
  times_relu_grad(g1, z1);
  return {__builtin_convertvector(g0, Dv), __builtin_convertvector(g1, Dv)};
}

// Kernels over the W channels of a blocked layout's block (nChw16c, or nChw8c on
// AVX2), the channels being the lanes of a vector: ChannelBlock<W>'s vectors of W floats
// (F), of W int32 masks (I) and of W doubles (D), and their loads and stores.
template <int W>
struct ChannelBlock;
template <>
struct ChannelBlock<16> {
  typedef F16v F;
  typedef I16v I;
  typedef D16v D;
  static LOOM_CLONE_BODY D load(const float *p) { return load16(p); }
  static LOOM_CLONE_BODY void store(float *p, const D &v) { store16(p, v); }
  static LOOM_CLONE_BODY D lanes(const double *v) { return lanes16(v); }
  // Stores MXNet's relu of v (NaN passes through).
  static LOOM_CLONE_BODY void store_relu(float *p, const D &v) {
    const F8v zero = {};
    F8v a = __builtin_convertvector(v.lo, F8v), b = __builtin_convertvector(v.hi, F8v);
    a = ((a > zero) | (a != a)) ? a : zero;
    b = ((b > zero) | (b != b)) ? b : zero;
    std::memcpy(p, &a, sizeof a);
    std::memcpy(p + 8, &b, sizeof b);
  }
  // MXNet's relu gradient dz * relu_grad(z) in float (Activation's backward
  // pass, NaN passing), at W positions, widened.
  static LOOM_CLONE_BODY D load_relu_grad(const float *dz, const float *z) {
    return relu_grad_pair<F8v, D8v, 8>(dz, z);
  }
  // Adds v, rounded to float, to the W floats at p.
  static LOOM_CLONE_BODY void add_to(float *p, const D &v) {
    const F8v s_lo = __builtin_convertvector(v.lo, F8v), s_hi = __builtin_convertvector(v.hi, F8v);
    F8v a, b;
    std::memcpy(&a, p, sizeof a);
    std::memcpy(&b, p + 8, sizeof b);
    a += s_lo;
    b += s_hi;
    std::memcpy(p, &a, sizeof a);
    std::memcpy(p + 8, &b, sizeof b);
  }
};
typedef int32_t I8v __attribute__((vector_size(32)));
template <>
struct ChannelBlock<8> {
  typedef F8v F;
  typedef I8v I;
  typedef D8p D;
  static LOOM_CLONE_BODY D load(const float *p) {
    F4v a, b;
    std::memcpy(&a, p, sizeof a);
    std::memcpy(&b, p + 4, sizeof b);
    return {__builtin_convertvector(a, D4v), __builtin_convertvector(b, D4v)};
  }
  // v rounded to float (by reference: see loadf16).
  static LOOM_CLONE_BODY void narrow(F8v &r, const D &v) {
    const F4v a = __builtin_convertvector(v.lo, F4v), b = __builtin_convertvector(v.hi, F4v);
    std::memcpy(&r, &a, sizeof a);
    std::memcpy(reinterpret_cast<float *>(&r) + 4, &b, sizeof b);
  }
  static LOOM_CLONE_BODY void store(float *p, const D &v) {
    const F4v a = __builtin_convertvector(v.lo, F4v), b = __builtin_convertvector(v.hi, F4v);
    std::memcpy(p, &a, sizeof a);
    std::memcpy(p + 4, &b, sizeof b);
  }
  static LOOM_CLONE_BODY D lanes(const double *v) {
    D r;
    std::memcpy(&r.lo, v, sizeof r.lo);
    std::memcpy(&r.hi, v + 4, sizeof r.hi);
    return r;
  }
  static LOOM_CLONE_BODY void store_relu(float *p, const D &v) {
    const F8v zero = {};
    F8v a;
    narrow(a, v);
    a = ((a > zero) | (a != a)) ? a : zero;
    std::memcpy(p, &a, sizeof a);
  }
  static LOOM_CLONE_BODY D load_relu_grad(const float *dz, const float *z) {
    return relu_grad_pair<F4v, D4v, 4>(dz, z);
  }
  static LOOM_CLONE_BODY void add_to(float *p, const D &v) {
    F8v a, b;
    std::memcpy(&a, p, sizeof a);
    narrow(b, v);
    a += b;
    std::memcpy(p, &a, sizeof a);
  }
};
// W floats, loaded and stored by reference (see loadf16).
template <typename F>
LOOM_CLONE_BODY void loadf(F &v, const float *p) {
  std::memcpy(&v, p, sizeof v);
}
template <typename F>
LOOM_CLONE_BODY void storef(float *p, const F &v) {
  std::memcpy(p, &v, sizeof v);
}

}  // namespace loom
