// Direct convolution for layers with few input values per output (see
// direct_conv.h). An image's group is copied once, padded, into a buffer whose
// rows are the padded width wp: a kernel tap is then one offset into it from any
// output's place there. The forward pass takes runs of up to a vector of
// outputs along each output row (the last of a row masked), a tile of channels x
// runs being chains of fused multiply-adds over the taps with the inputs loaded
// straight from the buffer; the weight gradient takes runs of 8 outputs, two
// channels' output gradients in a 16-lane vector (one in 8 lanes), so its sums
// run in 8 lanes in every build. LeNet's first layer (1 channel, 5x5, 20 filters,
// a batch of 100) went from im2col + gemm's 538 us forward and 886 us backward
// to 317 and 510 us (docs/backends.md).
#include "ops/nn/direct_conv.h"

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "common/base.h"
#include "common/parallel.h"
#include "common/scratch.h"
#include "ops/nn/onednn.h"

namespace loom {

#if defined(__x86_64__) && defined(__GNUC__)
#define LOOM_DIRECT_X86 1

// Everything up to the matching pop is built for the target named (GCC's pragma,
// or clang's attribute on every function, for the sanitizer builds).
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512dq,avx512vl,avx2,fma"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512dq,avx512vl,avx2,fma")
// GCC 12 warns inside its own _mm512_broadcast_f32x8 (an undefined vector it
// passes as the unused merge source).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
namespace direct_avx512 {
struct S {
  using V = __m512;
  static constexpr int L = 16;
  static inline V zero() { return _mm512_setzero_ps(); }
  static inline V loadu(const float *p) { return _mm512_loadu_ps(p); }
  static inline void storeu(float *p, V v) { _mm512_storeu_ps(p, v); }
  static inline void store_first(float *p, V v, int n) {
    _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1), v);
  }
  static inline V bcast(float x) { return _mm512_set1_ps(x); }
  static inline V add(V a, V b) { return _mm512_add_ps(a, b); }
  static inline V fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
  // Two channels' 8 values at place o, side by side (the first n of each, the rest 0).
  static inline V pair(const float *const *dy, int64_t o) {
    return _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_loadu_ps(dy[0] + o)), _mm256_loadu_ps(dy[1] + o), 1);
  }
  static inline V pair_first(const float *const *dy, int64_t o, int n) {
    const __mmask8 m = static_cast<__mmask8>((1u << n) - 1);
    return _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_maskz_loadu_ps(m, dy[0] + o)),
                              _mm256_maskz_loadu_ps(m, dy[1] + o), 1);
  }
  // 8 inputs in both halves (the first n, the rest 0).
  static inline V bcast8(const float *p) { return _mm512_broadcast_f32x8(_mm256_loadu_ps(p)); }
  static inline V bcast8_first(const float *p, int n) {
    return _mm512_broadcast_f32x8(_mm256_maskz_loadu_ps(static_cast<__mmask8>((1u << n) - 1), p));
  }
};
constexpr int kFwdCB = 5, kFwdPB = 4, kBwdGB = 2, kBwdTB = 5;
#include "ops/nn/direct_conv_tiles.inc"
}  // namespace direct_avx512
#if defined(__clang__)
#pragma clang attribute pop
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#else
#pragma GCC diagnostic pop
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
namespace direct_avx2 {
struct S {
  using V = __m256;
  static constexpr int L = 8;
  static inline __m256i first(int n) { return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)); }
  static inline V zero() { return _mm256_setzero_ps(); }
  static inline V loadu(const float *p) { return _mm256_loadu_ps(p); }
  static inline void storeu(float *p, V v) { _mm256_storeu_ps(p, v); }
  static inline void store_first(float *p, V v, int n) { _mm256_maskstore_ps(p, first(n), v); }
  static inline V bcast(float x) { return _mm256_set1_ps(x); }
  static inline V add(V a, V b) { return _mm256_add_ps(a, b); }
  static inline V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  static inline V pair(const float *const *dy, int64_t o) { return _mm256_loadu_ps(dy[0] + o); }
  static inline V pair_first(const float *const *dy, int64_t o, int n) { return _mm256_maskload_ps(dy[0] + o, first(n)); }
  static inline V bcast8(const float *p) { return _mm256_loadu_ps(p); }
  static inline V bcast8_first(const float *p, int n) { return _mm256_maskload_ps(p, first(n)); }
};
constexpr int kFwdCB = 4, kFwdPB = 2, kBwdGB = 2, kBwdTB = 5;
#include "ops/nn/direct_conv_tiles.inc"
}  // namespace direct_avx2
#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
#endif

namespace {

using ForwardFn = void (*)(const float *, const int64_t *, int64_t, const float *, const float *, int64_t,
                           const int64_t *, const int64_t *, int64_t, int64_t, int, float *, int64_t);
using WeightFn = void (*)(const float *, const int64_t *, int64_t, const float *const *, int64_t, const int64_t *,
                          const int64_t *, int64_t, int64_t, int, float *);

struct Kernels {
  int lanes;  // 0: none here
  ForwardFn forward_group;
  WeightFn weight_sums;
};

constexpr Kernels kNone{0, nullptr, nullptr};
#ifdef LOOM_DIRECT_X86
constexpr Kernels kAvx512{16, direct_avx512::forward_group, direct_avx512::weight_sums};
constexpr Kernels kAvx2{8, direct_avx2::forward_group, direct_avx2::weight_sums};
#endif

// The widest build this processor runs (lanes 16 or 8), or none (lanes 0) when
// the widest asked for is 0 or the processor lacks it.
const Kernels *widest(int lanes) {
#ifdef LOOM_DIRECT_X86
  __builtin_cpu_init();
  if (lanes >= 16 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl"))
    return &kAvx512;
  if (lanes >= 8 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return &kAvx2;
#endif
  (void)lanes;
  return &kNone;
}

std::atomic<const Kernels *> g_kernels{nullptr};
std::atomic<int64_t> g_calls{0};

const Kernels &kernels() {
  const Kernels *k = g_kernels.load(std::memory_order_acquire);
  if (k) return *k;
  // LOOM_DIRECT_CONV=0 leaves the direct kernels out, =avx2 keeps to their AVX2
  // build; any other value but 1 is an error.
  const char *env = std::getenv("LOOM_DIRECT_CONV");
  LOOM_CHECK(!env || std::strcmp(env, "0") == 0 || std::strcmp(env, "1") == 0 || std::strcmp(env, "avx2") == 0,
             LOOM_ERR_INVALID_ARGUMENT, "LOOM_DIRECT_CONV must be 0, 1 or avx2, got '", env, "'");
  k = widest(!env || std::strcmp(env, "1") == 0 ? 16 : std::strcmp(env, "avx2") == 0 ? 8 : 0);
  const Kernels *expected = nullptr;
  g_kernels.compare_exchange_strong(expected, k, std::memory_order_acq_rel);
  return *g_kernels.load(std::memory_order_acquire);
}

// The most input values per output the direct kernels take: 3 channels of 5x5.
// Past it im2col's columns are long enough for the gemm to pay for them.
constexpr int64_t kMaxTaps = 75;

// Runs of up to `lanes` outputs along each output row: their places in the padded
// input (in) and in the output plane (out), the whole runs first, then the
// shorter ones (all `count` long).
struct Runs {
  std::vector<int64_t> in, out;
  int64_t whole = 0, parts = 0;
  int count = 0;
  Runs(const DirectConvShape &s, int64_t wp, int lanes) {
    for (int pass = 0; pass < 2; ++pass)
      for (int64_t r = 0; r < s.oh; ++r)
        for (int64_t j = 0; j < s.ow; j += lanes) {
          const int64_t n = std::min<int64_t>(lanes, s.ow - j);
          if ((n == lanes) != (pass == 0)) continue;
          in.push_back(r * wp + j);
          out.push_back(r * s.ow + j);
          if (n == lanes)
            ++whole;
          else
            ++parts, count = static_cast<int>(n);
        }
  }
};

// Sizes and tap offsets of one planned convolution.
struct Plan {
  int64_t cg, fg, krows, hp, wp, xp_size;
  std::vector<int64_t> off;
  Runs slots, chunks;  // forward runs of `lanes`, backward runs of 8
  Plan(const DirectConvShape &s, int lanes)
      : cg(s.c / s.groups),
        fg(s.f / s.groups),
        krows(cg * s.kh * s.kw),
        hp(s.h + 2 * s.ph),
        wp(s.w + 2 * s.pw),
        slots(s, s.w + 2 * s.pw, lanes),
        chunks(s, s.w + 2 * s.pw, 8) {
    off.resize(static_cast<size_t>(krows));
    for (int64_t ci = 0, t = 0; ci < cg; ++ci)
      for (int64_t ky = 0; ky < s.kh; ++ky)
        for (int64_t kx = 0; kx < s.kw; ++kx) off[t++] = (ci * hp + ky) * wp + kx;
    // A run's loads from its last tap may pass the last row: zeros after it.
    int64_t reach = 0;
    for (int64_t v : slots.in) reach = std::max(reach, v + lanes);
    for (int64_t v : chunks.in) reach = std::max(reach, v + 8);
    xp_size = std::max(cg * hp * wp, off.back() + reach);
  }
};

float *buffer(int slot, int64_t n) {
  thread_local std::vector<float> bufs[2];
  auto &b = bufs[slot];
  if (b.size() < static_cast<size_t>(n)) b.resize(static_cast<size_t>(n));
  return b.data();
}

// xp = one image's group of cg planes (h, w), padded, then zeros to xp_size.
void pad_copy(const DirectConvShape &s, const Plan &p, const float *x, float *xp) {
  if (s.ph == 0 && s.pw == 0) {
    std::memcpy(xp, x, static_cast<size_t>(p.cg * s.h * s.w) * sizeof(float));
    std::fill(xp + p.cg * s.h * s.w, xp + p.xp_size, 0.0f);
    return;
  }
  std::fill(xp, xp + p.xp_size, 0.0f);
  for (int64_t ci = 0; ci < p.cg; ++ci)
    for (int64_t r = 0; r < s.h; ++r)
      std::memcpy(xp + (ci * p.hp + r + s.ph) * p.wp + s.pw, x + (ci * s.h + r) * s.w,
                  static_cast<size_t>(s.w) * sizeof(float));
}

}  // namespace

int set_direct_conv_lanes(int lanes) {
  const int prev = kernels().lanes;
  g_kernels.store(widest(lanes), std::memory_order_release);
  return prev;
}

int direct_conv_lanes() { return kernels().lanes; }

int64_t direct_conv_calls() { return g_calls.load(std::memory_order_relaxed); }

bool direct_conv_takes(const DirectConvShape &s) {
  if (!use_onednn() || kernels().lanes == 0) return false;
  if (s.sh != 1 || s.sw != 1 || s.dh != 1 || s.dw != 1 || s.groups < 1 || s.n < 1) return false;
  const int64_t cg = s.c / s.groups, krows = cg * s.kh * s.kw;
  return krows <= kMaxTaps && s.kh * s.kw >= 2 && s.oh >= 1 && s.ow >= 1;
}

bool direct_conv_forward(const DirectConvShape &s, const float *x, const float *w, const float *bias, float *y) {
  if (!direct_conv_takes(s)) return false;
  const Kernels &k = kernels();
  const Plan p(s, k.lanes);
  const int64_t plane = s.oh * s.ow;
  std::vector<float> zeros;
  if (!bias) zeros.assign(static_cast<size_t>(s.f), 0.0f);  // as the gemm path, which adds a 0 bias
  const float *b = bias ? bias : zeros.data();
  const Runs &r = p.slots;
  g_calls.fetch_add(1, std::memory_order_relaxed);
  // One image's group an item, each thread taking the next when done (parallel_items).
  parallel_items(s.n * s.groups, [&](int64_t, int64_t item) {
    float *xp = buffer(0, p.xp_size);
    const int64_t n = item / s.groups, gr = item % s.groups;
    pad_copy(s, p, x + (n * s.c + gr * p.cg) * s.h * s.w, xp);
    k.forward_group(xp, p.off.data(), p.krows, w + gr * p.fg * p.krows, b + gr * p.fg, p.fg, r.in.data(),
                    r.out.data(), r.whole, r.parts, r.count, y + (n * s.f + gr * p.fg) * plane, plane);
  });
  return true;
}

bool direct_conv_weight_gradient(const DirectConvShape &s, const float *x, const float *dy, float *dw) {
  if (!direct_conv_takes(s)) return false;
  const Kernels &k = kernels();
  const Plan p(s, k.lanes);
  const int per = k.lanes / 8;
  const int64_t plane = s.oh * s.ow, wsize = s.f * p.krows, gsize = p.fg * p.krows;
  const int64_t vectors = (p.fg + per - 1) / per;
  const Runs &r = p.chunks;
  // Images in min(n, 64) contiguous runs, each summed in image order into its own
  // slot, the slots then added in order: the same bits on any thread count.
  const int64_t slots = std::min<int64_t>(s.n, 64);
  // Kept between calls (common/scratch.h): a fresh buffer of slots * wsize floats
  // would page-fault on every call.
  ScratchArray<float> partial(static_cast<size_t>(slots * wsize), "for the weight gradient's pieces");
  g_calls.fetch_add(1, std::memory_order_relaxed);
  // Slots taken by whichever thread is free (parallel_items), each thread's work memory its own.
  parallel_items(slots, [&](int64_t, int64_t slot) {
    float *xp = buffer(0, p.xp_size), *sums = buffer(1, vectors * per * p.krows);
    std::vector<const float *> chans(static_cast<size_t>(vectors * per));
    float *part = partial.data() + slot * wsize;
    const int64_t n0 = slot * s.n / slots, n1 = (slot + 1) * s.n / slots;
    for (int64_t n = n0; n < n1; ++n)
      for (int64_t gr = 0; gr < s.groups; ++gr) {
        pad_copy(s, p, x + (n * s.c + gr * p.cg) * s.h * s.w, xp);
        for (int64_t co = 0; co < vectors * per; ++co)
          chans[static_cast<size_t>(co)] = dy + (n * s.f + gr * p.fg + std::min(co, p.fg - 1)) * plane;
        k.weight_sums(xp, p.off.data(), p.krows, chans.data(), vectors, r.in.data(), r.out.data(), r.whole,
                      r.parts, r.count, sums);
        float *dst = part + gr * gsize;
        if (n == n0)
          std::memcpy(dst, sums, static_cast<size_t>(gsize) * sizeof(float));
        else
          for (int64_t i = 0; i < gsize; ++i) dst[i] += sums[i];
      }
  });
  std::memcpy(dw, partial.data(), static_cast<size_t>(wsize) * sizeof(float));
  for (int64_t sl = 1; sl < slots; ++sl) {
    const float *src = partial.data() + sl * wsize;
    for (int64_t i = 0; i < wsize; ++i) dw[i] += src[i];
  }
  return true;
}

}  // namespace loom
