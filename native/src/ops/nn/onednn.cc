// oneDNN glue: the kernel-set switch and float32 2-D convolution (forward, data
// and weight gradients) with oneDNN's blocked layouts inside each call.
#include "ops/nn/onednn.h"
#include "ops/nn/direct_conv.h"
#include "ops/vecmath.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <atomic>
#include <map>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <tuple>
#include <unordered_map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/base.h"
#include "common/parallel.h"
#include "common/scratch.h"
#include "engine/engine.h"

#ifdef LOOM_HAVE_ONEDNN
#include <dlfcn.h>

#include <dnnl.hpp>
#endif

namespace loom {
namespace {

int parse_kernels_env() {
  const char *v = std::getenv("LOOM_CPU_KERNELS");
  std::string s = v ? v : "";
  if (s.empty() || s == "default") return onednn_built() ? 1 : 0;
  if (s == "reference") return 0;
  if (s == "onednn") {
    LOOM_CHECK(onednn_built(), LOOM_ERR_INVALID_ARGUMENT,
               "LOOM_CPU_KERNELS=onednn, but this libloom was built without oneDNN "
               "(install libdnnl-dev and rebuild); use reference or leave it unset");
    return 1;
  }
  fail(LOOM_ERR_INVALID_ARGUMENT, "LOOM_CPU_KERNELS=", s,
       " is not a kernel set; use onednn, reference or leave it unset");
}

std::atomic<int> g_kernels{-1};
std::atomic<int64_t> g_conv_calls{0};
std::atomic<int64_t> g_weight_reorders{0};
std::atomic<int64_t> g_planned_work{0}, g_work_misses{0};
std::atomic<int64_t> g_winograd_calls{0};
std::atomic<int64_t> g_band_calls{0};
std::atomic<int64_t> g_lrn_calls{0};

}  // namespace

bool winograd_requested() {
  const char *e = std::getenv("LOOM_CONV_WINOGRAD");
  return e && std::strcmp(e, "1") == 0;
}
bool onednn_relu_requested() {
  const char *e = std::getenv("LOOM_EXEC_RELU");
  const std::string v = e ? e : "";
  if (v.empty() || v == "mxnet") return false;
  if (v == "onednn") return true;
  fail(LOOM_ERR_INVALID_ARGUMENT, "LOOM_EXEC_RELU=", v,
       " is not a relu for fused convolutions; use mxnet (NaN passes through, the default) or onednn "
       "(oneDNN's post-op: NaN gives 0)");
}
bool onednn_winograd_qualifies(const ConvShape &s) {
  return s.kh == 3 && s.kw == 3 && s.sh == 1 && s.sw == 1 && s.dh == 1 && s.dw == 1 && s.groups == 1 &&
         s.c % 16 == 0 && s.f % 16 == 0 && s.oh * s.ow >= (s.n < 4 ? 7 * 7 : 14 * 14);
}
int64_t onednn_winograd_calls() { return g_winograd_calls.load(); }
int64_t onednn_row_band_calls() { return g_band_calls.load(); }
int64_t onednn_lrn_calls() { return g_lrn_calls.load(); }

int64_t onednn_conv_calls() { return g_conv_calls.load(); }
int64_t onednn_weight_reorders() { return g_weight_reorders.load(); }
int64_t onednn_planned_work_calls() { return g_planned_work.load(); }
int64_t onednn_planned_work_misses() { return g_work_misses.load(); }

bool onednn_built() {
#ifdef LOOM_HAVE_ONEDNN
  return true;
#else
  return false;
#endif
}

bool onednn_avx512() {
#ifdef LOOM_HAVE_ONEDNN
  static const bool on = [] {
    const unsigned isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
    const unsigned need = static_cast<unsigned>(dnnl::cpu_isa::avx512_core);
    return (isa & need) == need;  // the ISA values are supersets of bits
  }();
  return on;
#else
  return false;
#endif
}

namespace {
std::atomic<int> g_block{-1};
}

int onednn_block() {
  int b = g_block.load(std::memory_order_acquire);
  if (b >= 0) return b;
#ifdef LOOM_HAVE_ONEDNN
  const unsigned isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
  const unsigned avx2 = static_cast<unsigned>(dnnl::cpu_isa::avx2);
  b = onednn_avx512() ? 16 : (isa & avx2) == avx2 ? 8 : 0;
#else
  b = 0;
#endif
  int expected = -1;
  g_block.compare_exchange_strong(expected, b, std::memory_order_acq_rel);
  return g_block.load(std::memory_order_acquire);
}

namespace {
std::atomic<int> g_sgemm{-1};
}

SgemmChoice sgemm_choice() {
  int v = g_sgemm.load(std::memory_order_acquire);
  if (v >= 0) return static_cast<SgemmChoice>(v);
  const char *e = std::getenv("LOOM_SGEMM");
  const std::string s = e ? e : "";
  if (s.empty())
    v = static_cast<int>(onednn_avx512() ? SgemmChoice::OneDnn : SgemmChoice::BySize);
  else if (s == "onednn")
    v = static_cast<int>(SgemmChoice::OneDnn);
  else if (s == "openblas")
    v = static_cast<int>(SgemmChoice::OpenBlas);
  else
    fail(LOOM_ERR_INVALID_ARGUMENT, "LOOM_SGEMM=", s, " is not an sgemm; use onednn, openblas or leave it unset");
  int expected = -1;
  g_sgemm.compare_exchange_strong(expected, v, std::memory_order_acq_rel);
  return static_cast<SgemmChoice>(g_sgemm.load(std::memory_order_acquire));
}

SgemmChoice set_sgemm_choice(SgemmChoice c) {
  const SgemmChoice before = sgemm_choice();
  g_sgemm.store(static_cast<int>(c), std::memory_order_release);
  return before;
}

bool use_onednn_sgemm(int64_t m, int64_t n, int64_t k) {
  if (!use_onednn()) return false;
  const SgemmChoice c = sgemm_choice();
  return c == SgemmChoice::OneDnn || (c == SgemmChoice::BySize && std::min({m, n, k}) < 512);
}

int set_onednn_block(int block) {
  LOOM_CHECK(block == 0 || (onednn_built() && (block == 8 || block == 16)), LOOM_ERR_INVALID_ARGUMENT,
             "a blocked layout of ", block, " channels", onednn_built() ? " (0, 8 or 16)" : " in a build without oneDNN");
  const int before = onednn_block();
  g_block.store(block, std::memory_order_release);
  return before;
}

CpuKernels cpu_kernels() {
  int k = g_kernels.load(std::memory_order_acquire);
  if (k < 0) {
    k = parse_kernels_env();  // throws on a bad value, every time it is asked
    int expected = -1;
    g_kernels.compare_exchange_strong(expected, k);
    k = g_kernels.load(std::memory_order_acquire);
  }
  return static_cast<CpuKernels>(k);
}

void set_cpu_kernels(CpuKernels k) {
  LOOM_CHECK(k == CpuKernels::Reference || onednn_built(), LOOM_ERR_INVALID_ARGUMENT,
             "the oneDNN kernel set was asked for, but this libloom was built without oneDNN");
  g_kernels.store(static_cast<int>(k), std::memory_order_release);
}

#ifndef LOOM_HAVE_ONEDNN

const char *cpu_kernels_describe() {
  return "reference (Loom's kernels and OpenBLAS; built without oneDNN)";
}
bool onednn_conv_takes(const ConvShape &) { return false; }
bool onednn_sgemm(bool, bool, int64_t, int64_t, int64_t, float, const float *, int64_t, const float *, int64_t, float,
                  float *, int64_t) {
  return false;
}
void onednn_blocked_layout(const float *, float *, int64_t, int64_t, int64_t, int64_t, bool) {
  fail(LOOM_ERR_INTERNAL, "blocked layouts need a build with oneDNN");
}
void onednn_channels_last_layout(const float *, float *, int64_t, int64_t, int64_t, int64_t, bool) {
  fail(LOOM_ERR_INTERNAL, "channels-last layouts need a build with oneDNN");
}
int64_t onednn_conv_row_bands(const ConvShape &, bool) { return 0; }
bool onednn_conv_forward(const ConvShape &, const float *, const float *, const float *, float *, Var *,
                         const ConvEpilogue &, void *, size_t) {
  return false;
}
size_t onednn_conv_forward_scratch(const ConvShape &, bool, bool) { return 0; }
bool onednn_conv_backward(const ConvShape &, const float *, const float *, const float *, float *,
                          float *, void *, size_t, const ConvLayouts &) {
  return false;
}
size_t onednn_conv_backward_scratch(const ConvShape &, bool, bool) { return 0; }
bool onednn_lrn_forward(int64_t, int64_t, int64_t, int64_t, int64_t, float, float, float, const float *, float *) {
  return false;
}
bool onednn_lrn_backward(int64_t, int64_t, int64_t, int64_t, int64_t, float, float, float, const float *,
                         const float *, float *) {
  return false;
}

#else  // LOOM_HAVE_ONEDNN

namespace {
using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

const char *isa_name(dnnl::cpu_isa isa) {
  switch (isa) {
    case dnnl::cpu_isa::sse41: return "sse41";
    case dnnl::cpu_isa::avx: return "avx";
    case dnnl::cpu_isa::avx2: return "avx2";
    case dnnl::cpu_isa::avx512_core: return "avx512_core";
    case dnnl::cpu_isa::avx512_core_vnni: return "avx512_core_vnni";
    case dnnl::cpu_isa::avx512_core_bf16: return "avx512_core_bf16";
    case dnnl::cpu_isa::avx512_core_amx: return "avx512_core_amx";
    case dnnl::cpu_isa::avx2_vnni: return "avx2_vnni";
    default: return "other";
  }
}

// The executors' blocked layout (onednn_block()): nChw16c or nChw8c.
tag blocked_tag() { return onednn_block() == 8 ? tag::aBcd8b : tag::aBcd16b; }
// The oneDNN tag of one side of a convolution: plain NCHW, oneDNN's blocked
// layout, or channels last (ConvEpilogue's src_blocked/src_last, dst_*).
tag side_tag(bool blocked, bool last) { return !blocked ? tag::nchw : last ? tag::nhwc : blocked_tag(); }

dnnl::engine &cpu_engine() {
  static dnnl::engine *e = new dnnl::engine(dnnl::engine::kind::cpu, 0);  // kept for the process
  return *e;
}

// oneDNN (Debian's build) runs on OpenMP. While it works, the calling thread
// asks OpenMP for one thread, so no OpenMP team is ever started beside Loom's
// own pool; the thread's previous setting is restored afterwards (the caller
// may be an application thread that uses OpenMP itself). The OpenMP runtime is
// libdnnl's dependency; it is looked up, not linked.
class OneOpenMpThread {
 public:
  OneOpenMpThread() {
    using get_fn = int (*)();
    static set_fn set = reinterpret_cast<set_fn>(dlsym(RTLD_DEFAULT, "omp_set_num_threads"));
    static get_fn get = reinterpret_cast<get_fn>(dlsym(RTLD_DEFAULT, "omp_get_max_threads"));
    set_ = set;
    prev_ = get ? get() : 1;
    if (set_ && prev_ != 1) set_(1);
  }
  ~OneOpenMpThread() {
    if (set_ && prev_ != 1) set_(prev_);
  }
  OneOpenMpThread(const OneOpenMpThread &) = delete;
  OneOpenMpThread &operator=(const OneOpenMpThread &) = delete;

 private:
  using set_fn = void (*)(int);
  set_fn set_ = nullptr;
  int prev_ = 1;
};

// A 64-byte aligned heap buffer of n bytes (at least 64); `what` names it in the error.
std::shared_ptr<void> aligned_buffer(size_t n, const char *what) {
  void *p = nullptr;
  if (posix_memalign(&p, 64, n == 0 ? 64 : n) != 0) p = nullptr;
  LOOM_CHECK(p, LOOM_ERR_OUT_OF_MEMORY, "oneDNN convolution: could not allocate ", n, " bytes ", what);
  return std::shared_ptr<void>(p, [](void *q) { std::free(q); });
}

// A per-thread buffer that grows and is reused across calls.
struct Buffer {
  std::shared_ptr<void> p;
  size_t size = 0;
  void *get(size_t n) {
    if (n > size) {
      p.reset();
      size = 0;
      p = aligned_buffer(n, "of scratch");
      size = n;
    }
    return p.get();
  }
};
void *thread_buffer(int slot, size_t n) {
  thread_local Buffer buffers[5];  // 0-3: work items; 4: the caller's weights
  return buffers[slot].get(n == 0 ? 64 : n);
}

// Images per work item: the batch is cut into at most kItems pieces by a rule
// that depends on the batch only, so the bits do not depend on the threads.
constexpr int64_t kItems = 8;
int64_t item_images(int64_t n) { return (n + std::min(n, kItems) - 1) / std::min(n, kItems); }

struct Dims {
  memory::dims src, wei, dst, strides, dil, padl, padr;
};

// oneDNN's description of the convolution for `bn` images; false when its right
// padding would be negative beyond what oneDNN accepts (the reference runs).
Dims dims_for(const ConvShape &s, int64_t bn) {
  Dims d;
  d.src = {bn, s.c, s.h, s.w};
  d.dst = {bn, s.f, s.oh, s.ow};
  if (s.groups > 1)
    d.wei = {s.groups, s.f / s.groups, s.c / s.groups, s.kh, s.kw};
  else
    d.wei = {s.f, s.c, s.kh, s.kw};
  d.strides = {s.sh, s.sw};
  d.dil = {s.dh - 1, s.dw - 1};
  d.padl = {s.ph, s.pw};
  // MXNet's output extent rounds down; the right padding is what that leaves.
  d.padr = {(s.oh - 1) * s.sh + (s.kh - 1) * s.dh + 1 - s.h - s.ph,
            (s.ow - 1) * s.sw + (s.kw - 1) * s.dw + 1 - s.w - s.pw};
  return d;
}

tag weight_tag(const ConvShape &s) { return s.groups > 1 ? tag::goihw : tag::oihw; }

dnnl::primitive_attr user_scratchpad() {
  dnnl::primitive_attr a;
  a.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  return a;
}

// Plan variants carry the epilogue's parts in these bits.
constexpr int64_t kEpScaleShift = 1 << 20, kEpSum = 1 << 22, kEpAddend = 1 << 23, kEpWinograd = 1 << 24,
                  kEpAddendLast = 1 << 25,  // the addend in channels last
                  kEpRelu = 1 << 26;        // oneDNN's relu last (ConvEpilogue::onednn_relu)
int64_t epilogue_bits(const ConvShape &s, const ConvEpilogue &ep) {
  return (ep.scale ? kEpScaleShift : 0) | (ep.sum ? kEpSum : 0) | (ep.addend ? kEpAddend : 0) |
         (ep.addend && ep.dst_blocked && ep.dst_last ? kEpAddendLast : 0) |
         (ep.winograd && onednn_winograd_qualifies(s) ? kEpWinograd : 0) | (ep.onednn_relu ? kEpRelu : 0);
}

// The epilogue Loom applies itself (ConvEpilogue::after_add, relu) to n values
// of the output at y, whose addend values start at a. Compiled for AVX-512, AVX2
// and the baseline (vecmath.h): selects and one add, the same bits on each.
template <bool kAdd, bool kRelu>
inline void after_body(float *y, const float *a, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    float v = kAdd ? y[i] + a[i] : y[i];
    y[i] = !kRelu || v > 0.0f || v != v ? v : 0.0f;
  }
}
LOOM_VECTOR_CLONES void after_add_relu(float *y, const float *a, int64_t n) { after_body<true, true>(y, a, n); }
LOOM_VECTOR_CLONES void after_add(float *y, const float *a, int64_t n) { after_body<true, false>(y, a, n); }
LOOM_VECTOR_CLONES void after_relu(float *y, int64_t n) { after_body<false, true>(y, nullptr, n); }

// Applies it to the `n` values of the output at offset `at`.
void apply_after(const ConvEpilogue &ep, float *y, int64_t at, int64_t n) {
  if (ep.after_add && ep.relu) after_add_relu(y + at, ep.after_add + at, n);
  else if (ep.after_add) after_add(y + at, ep.after_add + at, n);
  else if (ep.relu) after_relu(y + at, n);
}

// The scratchpad mode and the epilogue's post-ops for an output of extents `dst`:
// binary multiply and add by per-channel vectors, a binary add of an addend of
// the output's shape, then the sum with what the output holds, then oneDNN's relu
// only where asked for (kEpRelu): its eltwise relu and clip turn NaN into 0 where
// MXNet's relu passes it through, so by default the relu is Loom's (apply_after).
dnnl::primitive_attr conv_attr(const memory::dims &dst, int64_t ep_bits, tag addend_tag = tag::undef) {
  dnnl::primitive_attr a = user_scratchpad();
  if (!ep_bits) return a;
  dnnl::post_ops po;
  if (ep_bits & kEpScaleShift) {
    memory::desc pc({1, dst[1], 1, 1}, dt::f32, tag::abcd);
    po.append_binary(dnnl::algorithm::binary_mul, pc);
    po.append_binary(dnnl::algorithm::binary_add, pc);
  }
  if (ep_bits & kEpAddend)
    po.append_binary(dnnl::algorithm::binary_add,
                     memory::desc(dst, dt::f32,
                                  addend_tag != tag::undef            ? addend_tag
                                  : (ep_bits & kEpAddendLast) != 0 ? tag::nhwc
                                                                    : blocked_tag()));
  if (ep_bits & kEpSum) po.append_sum(1.0f);
  if (ep_bits & kEpRelu) po.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
  a.set_post_ops(po);
  return a;
}

// Adds the epilogue's per-channel vectors (from channel `c0`) and addend to a
// primitive's arguments. `dst`: the primitive's output extents; `addend`: where
// its part of the addend starts.
void add_epilogue_args(std::unordered_map<int, memory> &args, const ConvEpilogue &ep, const memory::dims &dst,
                       int64_t c0, const float *addend, tag addend_tag = tag::undef) {
  int index = 0;
  if (ep.scale) {
    memory::desc pc({1, dst[1], 1, 1}, dt::f32, tag::abcd);
    args.emplace(DNNL_ARG_ATTR_MULTIPLE_POST_OP(0) | DNNL_ARG_SRC_1,
                 memory(pc, cpu_engine(), const_cast<float *>(ep.scale + c0)));
    args.emplace(DNNL_ARG_ATTR_MULTIPLE_POST_OP(1) | DNNL_ARG_SRC_1,
                 memory(pc, cpu_engine(), const_cast<float *>(ep.shift + c0)));
    index = 2;
  }
  if (ep.addend)
    args.emplace(DNNL_ARG_ATTR_MULTIPLE_POST_OP(index) | DNNL_ARG_SRC_1,
                 memory(memory::desc(dst, dt::f32, addend_tag == tag::undef ? blocked_tag() : addend_tag), cpu_engine(),
                        const_cast<float *>(addend)));
}

// oneDNN's reference implementation, which it picks for post-op combinations its
// optimised kernels do not take: the caller runs the ops one by one instead.
bool slow(const dnnl::convolution_forward::primitive_desc &pd) {
  return std::string(pd.impl_info_str()).rfind("ref", 0) == 0;
}

dnnl::convolution_forward::primitive_desc forward_pd(const ConvShape &s, int64_t bn, bool bias,
                                                     int64_t ep_bits = 0) {
  Dims d = dims_for(s, bn);
  memory::desc src(d.src, dt::f32, tag::any), wei(d.wei, dt::f32, tag::any),
      dst(d.dst, dt::f32, tag::any), b(bias ? memory::dims{s.f} : memory::dims{}, dt::f32, tag::x);
  // Winograd (prediction only: oneDNN 2.6 has it for inference), else direct.
  if (ep_bits & kEpWinograd) {
    try {
      auto wd = bias ? dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference,
                                                       dnnl::algorithm::convolution_winograd, src, wei, b, dst,
                                                       d.strides, d.dil, d.padl, d.padr)
                     : dnnl::convolution_forward::desc(dnnl::prop_kind::forward_inference,
                                                       dnnl::algorithm::convolution_winograd, src, wei, dst,
                                                       d.strides, d.dil, d.padl, d.padr);
      return dnnl::convolution_forward::primitive_desc(wd, conv_attr(d.dst, ep_bits & ~kEpWinograd), cpu_engine());
    } catch (const dnnl::error &) {
    }
  }
  ep_bits &= ~kEpWinograd;
  auto desc = bias ? dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training,
                                                     dnnl::algorithm::convolution_direct, src, wei,
                                                     b, dst, d.strides, d.dil, d.padl, d.padr)
                   : dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training,
                                                     dnnl::algorithm::convolution_direct, src, wei,
                                                     dst, d.strides, d.dil, d.padl, d.padr);
  return dnnl::convolution_forward::primitive_desc(desc, conv_attr(d.dst, ep_bits), cpu_engine());
}

// Reorders plain `from` (desc `plain`) into `to` (desc `want`) on this thread.
void reorder(const memory::desc &plain, const void *from, const memory::desc &want, void *to,
             dnnl::stream &st) {
  memory a(plain, cpu_engine(), const_cast<void *>(from)), b(want, cpu_engine(), to);
  dnnl::reorder(a, b).execute(st, a, b);
}

// The weights' (and their gradient's) plain layout, as the caller holds them.
memory::desc plain_weights(const ConvShape &s) { return memory::desc(dims_for(s, 1).wei, dt::f32, weight_tag(s)); }

// Weights reordered between the plain layout and oneDNN's blocked one (`to_plain`
// says which way), spread over the kernel threads in whole blocks (of 16, or 8
// on AVX2) of the blocked layout's outer dimension (output channels for ABcd..,
// input channels for BAcd..), each range a contiguous piece of the blocked weights: one thread took
// 40 ms of a ResNet-50 step. Other layouts, or channels not in whole blocks,
// take one reorder. A reorder copies, so the bits are the same either way.
void reorder_weights(const ConvShape &s, const memory::desc &blocked, const void *from, void *to, bool to_plain,
                     dnnl::stream &st) {
  const memory::desc plain = plain_weights(s);
  auto whole = [&] {
    if (to_plain)
      reorder(blocked, from, plain, to, st);
    else
      reorder(plain, from, blocked, to, st);
  };
  const int64_t O = s.f, I = s.c, kk = s.kh * s.kw;
  if (s.groups != 1) return whole();
  int outer = -1;  // 0: output channels, 1: input channels
  int64_t bw = 0;  // the block's width
  tag bt = tag::undef;
  struct Known {
    tag t;
    int64_t w;
    int outer;
  };
  for (const Known &k : {Known{tag::ABcd16b16a, 16, 0}, Known{tag::ABcd16a16b, 16, 0}, Known{tag::BAcd16a16b, 16, 1},
                         Known{tag::BAcd16b16a, 16, 1}, Known{tag::ABcd8b8a, 8, 0}, Known{tag::ABcd8a8b, 8, 0}})
    if (bt == tag::undef && O % k.w == 0 && I % k.w == 0 &&
        blocked == memory::desc({O, I, s.kh, s.kw}, dt::f32, k.t)) {
      bt = k.t;
      bw = k.w;
      outer = k.outer;
    }
  if (bt == tag::undef) return whole();
  const int64_t blocks = (outer == 0 ? O : I) / bw;
  st.wait();
  parallel_ranges(blocks, 1, [&](int64_t b0, int64_t b1) {
    OneOpenMpThread one;
    dnnl::stream ts(cpu_engine());
    const int64_t cnt = bw * (b1 - b0);
    memory::desc bsub, psub;
    size_t boff, poff;  // in floats
    if (outer == 0) {
      bsub = memory::desc({cnt, I, s.kh, s.kw}, dt::f32, bt);
      psub = memory::desc({cnt, I, s.kh, s.kw}, dt::f32, tag::abcd);
      boff = poff = static_cast<size_t>(bw * b0 * I * kk);
    } else {
      bsub = memory::desc({O, cnt, s.kh, s.kw}, dt::f32, bt);
      psub = memory::desc({O, cnt, s.kh, s.kw}, dt::f32, memory::dims{I * kk, kk, s.kw, 1});
      boff = static_cast<size_t>(bw * b0 * O * kk);
      poff = static_cast<size_t>(bw * b0 * kk);
    }
    const float *f = static_cast<const float *>(from);
    float *t = static_cast<float *>(to);
    if (to_plain)
      reorder(bsub, f + boff, psub, t + poff, ts);
    else
      reorder(psub, f + poff, bsub, t + boff, ts);
    ts.wait();
  });
}

// Whether weights in the layout `want` need a reorder from the plain layout.
bool weights_reordered(const ConvShape &s, const memory::desc &want) { return !(want == plain_weights(s)); }

// Work memory of one call: the caller's (the weights in oneDNN's layout) and
// four buffers per range of work items (parallel_ranges_indexed). An executor
// plans it with the graph's memory (ctx.temp, sized at bind by the *_scratch
// functions); without it, or when it is too small (another kernel set, or a
// fused step whose epilogue needs other buffers), each thread's own buffers.
struct WorkSizes {
  size_t caller = 0;
  size_t slot[4] = {0, 0, 0, 0};
  static size_t up(size_t n) { return (n + 63) / 64 * 64; }
  size_t per_range() const { return up(slot[0]) + up(slot[1]) + up(slot[2]) + up(slot[3]); }
  size_t bytes(int64_t ranges) const { return up(caller) + static_cast<size_t>(ranges) * per_range(); }
};

class Work {
 public:
  // Uses `temp` from byte `skip` on when it holds that much.
  Work(const WorkSizes &z, int64_t ranges, void *temp, size_t temp_bytes, size_t skip = 0) : z_(z) {
    if (temp && temp_bytes >= skip + z.bytes(ranges)) {
      base_ = static_cast<char *>(temp) + skip;
      g_planned_work.fetch_add(1);
    }
  }
  // A buffer the sizes did not foresee (a defect: tests count them) comes from
  // the thread's own buffers: this runs on kernel threads, where nothing may throw.
  void *caller(size_t n) const {
    if (base_ && n <= z_.caller) return base_;
    if (base_) g_work_misses.fetch_add(1);
    return thread_buffer(4, n);
  }
  void *range(int64_t r, int slot, size_t n) const {
    if (!base_ || n > z_.slot[slot]) {
      if (base_) g_work_misses.fetch_add(1);
      return thread_buffer(slot, n);
    }
    char *p = base_ + WorkSizes::up(z_.caller) + static_cast<size_t>(r) * z_.per_range();
    for (int k = 0; k < slot; ++k) p += WorkSizes::up(z_.slot[k]);
    return p;
  }
  bool planned() const { return base_ != nullptr; }

 private:
  WorkSizes z_;
  char *base_ = nullptr;
};

// The weights in the layout `want`: the user's buffer when it is already
// plain, else a reordered copy in the caller's work memory.
const void *weights_as(const ConvShape &s, const float *w, const memory::desc &want, const Work &work,
                       dnnl::stream &st) {
  if (!weights_reordered(s, want)) return w;
  void *to = work.caller(want.get_size());
  reorder_weights(s, want, w, to, false, st);
  g_weight_reorders.fetch_add(1);
  return to;
}

// The key under which a convolution keeps its reordered weights on the weight's
// var: where the weights start (one var may hold several arrays), the geometry
// and the plan variant (which fix the layout).
std::string kept_key(const ConvShape &s, const float *w, int64_t variant, uint64_t weights_id) {
  const int64_t k[] = {reinterpret_cast<int64_t>(w), s.n, s.c, s.h, s.w, s.f, s.groups, s.kh, s.kw, s.sh,
                       s.sw, s.ph, s.pw, s.dh, s.dw, s.oh, s.ow, variant, static_cast<int64_t>(weights_id)};
  return std::string("onednn.conv.weights:") + std::string(reinterpret_cast<const char *>(k), sizeof k);
}

// weights_as, keeping the reordered copy on `keep` (when given) for later calls;
// `hold` keeps it alive for this call.
const void *kept_weights_as(const ConvShape &s, const float *w, const memory::desc &want, int64_t variant,
                            uint64_t weights_id, Var *keep, std::shared_ptr<const void> &hold, const Work &work,
                            dnnl::stream &st) {
  if (!weights_reordered(s, want) || !keep) return weights_as(s, w, want, work, st);
  const std::string key = kept_key(s, w, variant, weights_id);
  hold = keep->derived(key);
  if (hold) return hold.get();
  std::shared_ptr<void> buf = aligned_buffer(want.get_size(), "for reordered weights");
  reorder_weights(s, want, w, buf.get(), false, st);
  st.wait();
  g_weight_reorders.fetch_add(1);
  keep->keep_derived(key, buf);
  hold = buf;
  return buf.get();
}

// Work items of a batch of n images: how many, of `per` images each, the last of `last`.
struct Items {
  int64_t per, count, last;
  explicit Items(int64_t n)
      : per(item_images(n)), count((n + per - 1) / per), last(n - (count - 1) * per) {}
  // How many ranges for_items runs them in (each with its own work buffers).
  int64_t ranges() const { return parallel_range_count(count, 1); }
};

// Runs `body(range, item, n0, bn)` for the work items [first, first + count)
// (all of them by default) over Loom's kernel threads, each thread taking the
// next item when done with one (parallel_items); `range` names the work memory
// the call may use, one set per thread. An item's result is its own, so the bits
// do not depend on which thread computed it.
template <typename F>
void for_items(int64_t n, F &&body, int64_t first = 0, int64_t count = -1) {
  const Items it(n);
  if (count < 0) count = it.count - first;
  parallel_items(count, [&](int64_t r, int64_t k) {
    OneOpenMpThread one;
    const int64_t i = first + k;
    body(r, i, i * it.per, std::min(it.per, n - i * it.per));
  });
}

using bwd_d_pd_t = dnnl::convolution_backward_data::primitive_desc;
using bwd_w_pd_t = dnnl::convolution_backward_weights::primitive_desc;

// Primitive descriptors and primitives for one convolution: for the batch
// pieces of full size and for the shorter last piece, if any.
struct ForwardPlan {
  std::unique_ptr<dnnl::convolution_forward::primitive_desc> pd, pd_last;
  std::unique_ptr<dnnl::convolution_forward> prim, prim_last;
  bool winograd = false;  // oneDNN runs it by the Winograd algorithm
};
bool is_winograd(const dnnl::convolution_forward::primitive_desc &pd) {
  return std::string(pd.impl_info_str()).find("wino") != std::string::npos;
}
struct BackwardPlan {
  struct Pds {
    std::unique_ptr<bwd_d_pd_t> data;
    std::unique_ptr<bwd_w_pd_t> weights;
    std::unique_ptr<dnnl::convolution_backward_data> pdata;
    std::unique_ptr<dnnl::convolution_backward_weights> pw;
  } full, tail;
};

// Plans are built once per geometry and kept (oneDNN's primitives may run in
// several threads at once); a failed build is remembered as null, so the
// reference kernel runs without asking oneDNN again. At most kMaxPlans are
// kept; beyond that the cache starts over.
constexpr size_t kMaxPlans = 512;
template <typename Plan, typename Build>
std::shared_ptr<const Plan> cached(const ConvShape &s, int variant, Build &&build) {
  using Key = std::array<int64_t, 19>;
  static std::mutex mu;
  static std::map<Key, std::shared_ptr<const Plan>> *plans = new std::map<Key, std::shared_ptr<const Plan>>();
  Key key{s.n, s.c, s.h, s.w, s.f, s.groups, s.kh, s.kw, s.sh, s.sw, s.ph, s.pw, s.dh, s.dw, s.oh, s.ow,
          variant, 0, 0};
  {
    std::lock_guard<std::mutex> lk(mu);
    auto it = plans->find(key);
    if (it != plans->end()) return it->second;
  }
  std::shared_ptr<Plan> p = std::make_shared<Plan>();
  bool ok;
  try {
    ok = build(*p);
  } catch (const dnnl::error &) {
    ok = false;  // no oneDNN implementation for this case
  }
  std::shared_ptr<const Plan> result = ok ? std::shared_ptr<const Plan>(p) : nullptr;
  std::lock_guard<std::mutex> lk(mu);
  if (plans->size() >= kMaxPlans) plans->clear();
  plans->emplace(key, result);
  return result;
}

std::string describe_text() {
  const dnnl_version_t *v = dnnl_version();
  OneOpenMpThread one;
  return "onednn " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
         std::to_string(v->patch) + " (" + isa_name(dnnl::get_effective_cpu_isa()) +
         (onednn_block() ? ", executors' blocked layout nChw" + std::to_string(onednn_block()) + "c" : std::string()) +
         (onednn_avx512() ? std::string(", batches under 4 in bands of rows in channels last") : std::string()) +
         (onednn_avx512() ? std::string() : std::string(", Loom's Winograd kernels for LOOM_CONV_WINOGRAD=1")) +
         (sgemm_choice() == SgemmChoice::OneDnn
              ? ") for 2-D float32 Convolution and Deconvolution, float32 matrix products and 4-D float32 LRN; "
                "Loom's kernels and OpenBLAS for the rest"
              : sgemm_choice() == SgemmChoice::BySize
                    ? ") for 2-D float32 Convolution and Deconvolution, float32 matrix products with an extent "
                      "under 512 (OpenBLAS for the others: LOOM_SGEMM) and 4-D float32 LRN; Loom's kernels and "
                      "OpenBLAS for the rest"
                    : ") for 2-D float32 Convolution and Deconvolution and 4-D float32 LRN; OpenBLAS for matrix "
                      "products (LOOM_SGEMM); Loom's kernels for the rest") +
         (direct_conv_lanes() ? std::string("; Loom's direct kernels (") +
                                    (direct_conv_lanes() == 16 ? "AVX-512" : "AVX2") +
                                    ") for the stride-1 float32 convolutions oneDNN does not take with at most 75 "
                                    "inputs an output (LOOM_DIRECT_CONV)"
                              : std::string());
}

}  // namespace

namespace {
// An (n, c, h, w) float32 array reordered between plain NCHW and the layout `other`.
void relayout(const float *src, float *dst, const memory::dims &d, tag other, bool to_other) {
  OneOpenMpThread one;
  memory::desc plain(d, dt::f32, tag::nchw), them(d, dt::f32, other);
  dnnl::stream st(cpu_engine());
  if (to_other)
    reorder(plain, src, them, dst, st);
  else
    reorder(them, src, plain, dst, st);
  st.wait();
}
}  // namespace

void onednn_blocked_layout(const float *src, float *dst, int64_t n, int64_t c, int64_t h, int64_t w,
                           bool to_blocked) {
  LOOM_CHECK(onednn_block() != 0 && c % onednn_block() == 0, LOOM_ERR_INTERNAL, "a blocked layout of (", n, ", ", c,
             ", ", h, ", ", w, ") data: ", onednn_block() ? "channels not whole blocks" : "no blocked layout on this CPU");
  relayout(src, dst, {n, c, h, w}, blocked_tag(), to_blocked);
}

void onednn_channels_last_layout(const float *src, float *dst, int64_t n, int64_t c, int64_t h, int64_t w,
                                 bool to_channels_last) {
  relayout(src, dst, {n, c, h, w}, tag::nhwc, to_channels_last);
}

namespace {
// The LRN primitives of one image's shape and parameters (built on first use).
struct LrnPlan {
  std::unique_ptr<dnnl::lrn_forward::primitive_desc> fwd, fwd_blocked;
  std::unique_ptr<dnnl::lrn_backward::primitive_desc> bwd;
  std::unique_ptr<dnnl::lrn_forward> pf, pf_blocked;
  std::unique_ptr<dnnl::lrn_backward> pb;
};
std::shared_ptr<const LrnPlan> lrn_plan(int64_t c, int64_t h, int64_t w, int64_t size, float alpha, float beta,
                                        float k) {
  using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, float, float, float>;
  static std::mutex mu;
  static std::map<Key, std::shared_ptr<const LrnPlan>> *plans = new std::map<Key, std::shared_ptr<const LrnPlan>>();
  const Key key{c, h, w, size, alpha, beta, k};
  {
    std::lock_guard<std::mutex> lk(mu);
    auto it = plans->find(key);
    if (it != plans->end()) return it->second;
  }
  auto p = std::make_shared<LrnPlan>();
  const memory::dims d{1, c, h, w};
  memory::desc plain(d, dt::f32, tag::nchw), blocked(d, dt::f32, tag::aBcd16b);
  const auto alg = dnnl::algorithm::lrn_across_channels;
  // oneDNN's reference kernels are slower than Loom's (its backward pass on NCHW
  // took 102 ms for 16x96x55x55 against 51): for those the reference runs instead.
  auto ref = [](const char *impl) { return std::string(impl).find("ref") != std::string::npos; };
  try {
    p->fwd.reset(new dnnl::lrn_forward::primitive_desc(
        {dnnl::prop_kind::forward_inference, alg, plain, size, alpha, beta, k}, user_scratchpad(), cpu_engine()));
    if (!ref(p->fwd->impl_info_str())) p->pf.reset(new dnnl::lrn_forward(*p->fwd));
  } catch (const dnnl::error &) {
  }
  try {
    p->fwd_blocked.reset(new dnnl::lrn_forward::primitive_desc(
        {dnnl::prop_kind::forward_training, alg, blocked, size, alpha, beta, k}, user_scratchpad(), cpu_engine()));
    p->bwd.reset(new dnnl::lrn_backward::primitive_desc({alg, blocked, blocked, size, alpha, beta, k},
                                                         user_scratchpad(), cpu_engine(), *p->fwd_blocked));
    if (!ref(p->fwd_blocked->impl_info_str()) && !ref(p->bwd->impl_info_str())) {
      p->pf_blocked.reset(new dnnl::lrn_forward(*p->fwd_blocked));
      p->pb.reset(new dnnl::lrn_backward(*p->bwd));
    }
  } catch (const dnnl::error &) {
  }
  std::shared_ptr<const LrnPlan> result = p;
  std::lock_guard<std::mutex> lk(mu);
  if (plans->size() >= kMaxPlans) plans->clear();
  plans->emplace(key, result);
  return result;
}
bool lrn_takes(int64_t size) { return use_onednn() && size % 2 == 1; }
}  // namespace

bool onednn_lrn_forward(int64_t n, int64_t c, int64_t h, int64_t w, int64_t size, float alpha, float beta,
                        float k, const float *x, float *y) {
  if (!lrn_takes(size)) return false;
  OneOpenMpThread one;
  auto plan = lrn_plan(c, h, w, size, alpha, beta, k);
  if (!plan || !plan->pf) return false;
  const auto &pd = *plan->fwd;
  const int64_t plane = c * h * w;
  parallel_ranges(n, 1, [&](int64_t i0, int64_t i1) {
    OneOpenMpThread one;
    dnnl::stream ts(cpu_engine());
    for (int64_t i = i0; i < i1; ++i) {
      memory ms(pd.src_desc(), cpu_engine(), const_cast<float *>(x + i * plane)),
          md(pd.dst_desc(), cpu_engine(), y + i * plane),
          mpad(pd.scratchpad_desc(), cpu_engine(), thread_buffer(2, pd.scratchpad_desc().get_size()));
      plan->pf->execute(ts, {{DNNL_ARG_SRC, ms}, {DNNL_ARG_DST, md}, {DNNL_ARG_SCRATCHPAD, mpad}});
    }
    ts.wait();
  });
  g_lrn_calls.fetch_add(1);
  return true;
}

bool onednn_lrn_backward(int64_t n, int64_t c, int64_t h, int64_t w, int64_t size, float alpha, float beta,
                         float k, const float *x, const float *dy, float *dx) {
  if (!lrn_takes(size)) return false;
  OneOpenMpThread one;
  auto plan = lrn_plan(c, h, w, size, alpha, beta, k);
  if (!plan || !plan->pb) return false;
  const auto &pf = *plan->fwd_blocked;
  const auto &pb = *plan->bwd;
  const memory::desc plain({1, c, h, w}, dt::f32, tag::nchw);
  const size_t bsize = pf.src_desc().get_size();
  const int64_t plane = c * h * w;
  parallel_ranges(n, 1, [&](int64_t i0, int64_t i1) {
    OneOpenMpThread one;
    dnnl::stream ts(cpu_engine());
    // x, then dy, then dx in nChw16c; the forward pass's output and workspace
    char *buf = static_cast<char *>(thread_buffer(3, 4 * WorkSizes::up(bsize)));
    void *xb = buf, *dyb = buf + WorkSizes::up(bsize), *dxb = buf + 2 * WorkSizes::up(bsize),
         *yb = buf + 3 * WorkSizes::up(bsize);
    void *ws = thread_buffer(1, pf.workspace_desc().get_size());
    const size_t pad = std::max(pf.scratchpad_desc().get_size(), pb.scratchpad_desc().get_size());
    for (int64_t i = i0; i < i1; ++i) {
      reorder(plain, x + i * plane, pf.src_desc(), xb, ts);
      reorder(plain, dy + i * plane, pb.diff_dst_desc(), dyb, ts);
      memory mx(pf.src_desc(), cpu_engine(), xb), my(pf.dst_desc(), cpu_engine(), yb),
          mws(pf.workspace_desc(), cpu_engine(), ws), mdy(pb.diff_dst_desc(), cpu_engine(), dyb),
          mdx(pb.diff_src_desc(), cpu_engine(), dxb),
          mpad(pf.scratchpad_desc(), cpu_engine(), thread_buffer(2, pad)),
          mpadb(pb.scratchpad_desc(), cpu_engine(), thread_buffer(2, pad));
      plan->pf_blocked->execute(ts, {{DNNL_ARG_SRC, mx}, {DNNL_ARG_DST, my}, {DNNL_ARG_WORKSPACE, mws},
                                     {DNNL_ARG_SCRATCHPAD, mpad}});
      plan->pb->execute(ts, {{DNNL_ARG_SRC, mx}, {DNNL_ARG_DIFF_DST, mdy}, {DNNL_ARG_WORKSPACE, mws},
                             {DNNL_ARG_DIFF_SRC, mdx}, {DNNL_ARG_SCRATCHPAD, mpadb}});
      reorder(pb.diff_src_desc(), dxb, plain, dx + i * plane, ts);
    }
    ts.wait();
  });
  g_lrn_calls.fetch_add(1);
  return true;
}

// oneDNN makes its sgemm kernels on first use and keeps them in static tables
// that its exit handlers free. An exit handler runs before the handlers
// registered before it, so the engine's drain (registered when the engine was
// made) would come after the kernels are gone, and a worker still inside a
// product at exit would jump into freed code. So the first call makes every
// kind of kernel (transposes, alpha and beta cases, vector and small-n shapes,
// a general one) on one thread, and then registers a drain of its own, which
// runs before oneDNN frees them.
void drain_before_onednn_exit() { Engine::drain(std::chrono::seconds(30)); }

void warm_sgemm_kernels() {
  static std::once_flag once;
  std::call_once(once, [] {
    OneOpenMpThread one;
    const int64_t shapes[][3] = {{1, 1, 1}, {1, 37, 64}, {37, 1, 64}, {3, 3, 3},   {64, 2, 64},
                                 {64, 4, 300}, {4, 64, 300}, {100, 100, 100}, {200, 150, 260}};
    std::vector<float> a(200 * 300, 0.5f), b(300 * 200, 0.25f), c(200 * 200, 0.0f);
    for (auto &sh : shapes)
      for (int t = 0; t < 4; ++t)
        for (float alpha : {1.0f, 2.0f})
          for (float beta : {0.0f, 1.0f}) {
            const int64_t m = sh[0], n = sh[1], k = sh[2];
            const bool ta = t & 1, tb = t & 2;
            dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, alpha, a.data(), ta ? m : k, b.data(), tb ? k : n,
                       beta, c.data(), n);
          }
    std::atexit(drain_before_onednn_exit);
  });
}

bool onednn_sgemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                  const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
  warm_sgemm_kernels();
  OneOpenMpThread one;
  return dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) == dnnl_success;
}

const char *cpu_kernels_describe() {
  if (!use_onednn())
    return "reference (Loom's kernels and OpenBLAS; LOOM_CPU_KERNELS=reference)";
  static const std::string *text = new std::string(describe_text());
  return text->c_str();
}

// Batches of fewer than 4 images leave threads idle when cut by images alone;
// their output channels are cut into 2 or 4 pieces of whole 16-channel blocks
// too: 4 where each has at least 32 channels, else 2. The cut depends on the shapes only (the bits
// depend on it: oneDNN blocks a piece's loops by its channel count). Each piece is
// a primitive call of its own that reads the whole input: at batch 1 on two
// threads, ResNet-50 took 22.2-22.4 ms a pass cut into up to 8 pieces of 16 or
// more channels, 20.7-21.2 ms cut into up to 4 of 32 or more (and 20.5-21.3 ms
// into halves, which would leave any third thread idle), 2026-12-04. Winograd's
// pieces are halves at most: each piece transforms the whole input again, and
// four pieces of ResNet-50's 64-channel layer took 0.2-0.4 ms each against 0.27
// ms for each of two.
int64_t channel_pieces(const ConvShape &s, bool winograd) {
  if (s.n >= 4 || s.groups != 1) return 1;
  for (int64_t k : {4, 2})
    if ((k == 2 || !winograd) && s.f % (16 * k) == 0 && (k == 2 || s.f / k >= 32)) return k;
  return 1;
}

// The forward pass of a small batch: every image's input is reordered once and
// shared; work item (image, piece) computes that piece's output channels with
// its slice of the weights and writes them into the plain output.
bool conv_forward_pieces(const ConvShape &s, int64_t pieces, const float *x, const float *w,
                         const float *bias, float *y, Var *keep, const ConvEpilogue &ep) {
  const bool ylast = ep.dst_blocked && ep.dst_last;
  if (ep.addend && ylast) return false;  // a binary addend's piece of channels is no dense array
  ConvShape sp = s;
  sp.f = s.f / pieces;
  const int64_t bits = epilogue_bits(s, ep);
  auto plan = cached<ForwardPlan>(s, 2 * pieces + (bias != nullptr ? 1 : 0) + bits, [&](ForwardPlan &f) {
    f.pd.reset(new dnnl::convolution_forward::primitive_desc(forward_pd(sp, 1, bias != nullptr, bits)));
    if (bits && slow(*f.pd)) return false;
    f.prim.reset(new dnnl::convolution_forward(*f.pd));
    f.winograd = is_winograd(*f.pd);
    return true;
  });
  if (!plan) return false;
  const auto &p = *plan->pd;
  const auto &prim = *plan->prim;
  Dims d = dims_for(sp, 1);
  memory::desc usrc(d.src, dt::f32, side_tag(ep.src_blocked, ep.src_last)), uwei(d.wei, dt::f32, weight_tag(sp));
  // Weights and inputs in oneDNN's layouts, in the caller's buffers.
  const size_t wsize = p.weights_desc().get_size(), ssize = p.src_desc().get_size();
  const int64_t wpiece = sp.f * s.c * s.kh * s.kw, xplane = s.c * s.h * s.w;
  // The weight pieces, kept on the weight's var when it is given and already
  // reordered for this version; else reordered below.
  const std::string key = keep ? kept_key(s, w, 1000 + pieces + bits, ep.weights_id) : std::string();
  std::shared_ptr<const void> kept = keep ? keep->derived(key) : nullptr;
  std::shared_ptr<void> fresh = keep && !kept ? aligned_buffer(wsize * pieces, "for reordered weights") : nullptr;
  char *wbuf = kept ? static_cast<char *>(const_cast<void *>(kept.get()))
               : fresh ? static_cast<char *>(fresh.get())
                       : static_cast<char *>(thread_buffer(4, wsize * pieces));
  const int64_t wreorders = kept ? 0 : pieces;
  const bool plain_src = p.src_desc() == usrc;
  char *sbuf = plain_src ? nullptr : static_cast<char *>(thread_buffer(3, ssize * s.n));
  // Reorders, spread over the threads: the weight pieces, then each image's
  // rows in two halves.
  const int64_t halves = s.h >= 2 ? 2 : 1;
  parallel_items(wreorders + (plain_src ? 0 : s.n * halves), [&](int64_t, int64_t i) {
    OneOpenMpThread one;
    dnnl::stream ts(cpu_engine());
    if (i < wreorders) {
      reorder(uwei, w + i * wpiece, p.weights_desc(), wbuf + i * wsize, ts);
    } else {
      const int64_t n = (i - wreorders) / halves, k = (i - wreorders) % halves;
      const int64_t h0 = s.h * k / halves, h1 = s.h * (k + 1) / halves;
      const memory::dims rows{1, s.c, h1 - h0, s.w}, at{0, 0, h0, 0};
      reorder(usrc.submemory_desc(rows, at), x + n * xplane, p.src_desc().submemory_desc(rows, at),
              sbuf + n * ssize, ts);
    }
    ts.wait();
  });
  if (wreorders) g_weight_reorders.fetch_add(1);
  if (fresh) keep->keep_derived(key, fresh);
  const int64_t plane = s.oh * s.ow;
  // The output's channels [k * f', (k + 1) * f') of one image: strided in plain
  // NCHW and in channels last; whole blocks, one after another, in the blocked
  // layout (f' is a multiple of 16), where oneDNN may write them directly.
  const memory::dims sdims{1, sp.f, s.oh, s.ow};
  memory::desc slice = !ep.dst_blocked ? memory::desc(sdims, dt::f32, memory::dims{s.f * plane, plane, s.ow, 1})
                       : ylast         ? memory::desc(sdims, dt::f32, memory::dims{s.f * plane, 1, s.ow * s.f, s.f})
                                       : memory::desc(sdims, dt::f32, blocked_tag());
  const bool direct = p.dst_desc() == slice;
  // Work item (image, piece), taken by whichever thread is free (parallel_items).
  parallel_items(s.n * pieces, [&](int64_t, int64_t i) {
    OneOpenMpThread one;
    dnnl::stream ts(cpu_engine());
    int64_t n = i / pieces, k = i % pieces;
    void *src = plain_src ? const_cast<float *>(x + n * xplane) : static_cast<void *>(sbuf + n * ssize);
    float *out = y + n * s.f * plane + k * sp.f * (ylast ? 1 : plane);
    void *dst = direct ? static_cast<void *>(out) : thread_buffer(1, p.dst_desc().get_size());
    if (ep.sum && !direct) reorder(slice, out, p.dst_desc(), dst, ts);  // the addend, to be summed
    memory ms(p.src_desc(), cpu_engine(), src), mw(p.weights_desc(), cpu_engine(), wbuf + k * wsize),
        md(p.dst_desc(), cpu_engine(), dst),
        mpad(p.scratchpad_desc(), cpu_engine(), thread_buffer(2, p.scratchpad_desc().get_size()));
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, ms}, {DNNL_ARG_WEIGHTS, mw},
                                         {DNNL_ARG_DST, md}, {DNNL_ARG_SCRATCHPAD, mpad}};
    if (bias)
      args.emplace(DNNL_ARG_BIAS, memory(p.bias_desc(), cpu_engine(), const_cast<float *>(bias + k * sp.f)));
    add_epilogue_args(args, ep, {1, sp.f, s.oh, s.ow}, k * sp.f,
                      ep.addend ? ep.addend + n * s.f * plane + k * sp.f * plane : nullptr);
    prim.execute(ts, args);
    if (!direct) reorder(p.dst_desc(), dst, slice, out, ts);
    ts.wait();
    // The piece's channels are one stretch of the image's output in plain and
    // blocked layouts, one a pixel in channels last.
    if (!ylast)
      apply_after(ep, y, n * s.f * plane + k * sp.f * plane, sp.f * plane);
    else if (ep.after_add || ep.relu)
      for (int64_t q = 0; q < plane; ++q) apply_after(ep, y, n * s.f * plane + q * s.f + k * sp.f, sp.f);
  });
  g_conv_calls.fetch_add(1);
  if (plan->winograd) g_winograd_calls.fetch_add(1);
  return true;
}

// Batches under 4 on AVX-512, cut by output rows instead (onednn_conv_row_bands):
// 4 bands where there are 28 or more output rows, else 2. Each band is a
// single-threaded oneDNN call on the whole image in channels last (NHWC),
// where the rows a band reads and the rows it writes are each one dense stretch
// of memory, so every call keeps all output channels: oneDNN's kernels block
// their loops over 4 or more 16-channel blocks, where a channel piece of 32
// gave them 2. ResNet-50's convolutions at batch 1 on two threads, 2026-12-06,
// timed alone in one process: the 3x3 64-channel layer 0.92 against 1.16 ms in
// channel pieces, the 1x1 512-to-128 one 0.41 against 0.62 ms. On 7x7 planes
// two bands split the rows 3 and 4 and took 5-33% longer than channel pieces,
// and a first layer of 3 channels in channels last took 1.5 times as long:
// those keep the channel pieces.
int64_t row_bands(const ConvShape &s) {
  if (s.n >= 4 || s.groups != 1 || s.c % 16 != 0 || s.oh < 14 || !onednn_avx512()) return 0;
  return s.oh >= 28 ? 4 : 2;
}

struct BandPlan {
  struct Band {
    int64_t r0 = 0, r1 = 0, i0 = 0;  // output rows [r0, r1); the first input row read
    std::unique_ptr<dnnl::convolution_forward::primitive_desc> pd;
    std::unique_ptr<dnnl::convolution_forward> prim;
  };
  std::vector<Band> bands;
  size_t scratch = 0;  // the largest band's scratchpad
};

// Band b of `count`: output rows [oh * b / count, oh * (b + 1) / count), reading
// input rows from r0 * sh - ph on (clipped to the image, the rest padding).
bool build_bands(const ConvShape &s, int64_t count, bool bias, int64_t bits, BandPlan &plan) {
  const Dims d = dims_for(s, 1);
  const int64_t reach = (s.kh - 1) * s.dh + 1;  // input rows one output row reads
  for (int64_t b = 0; b < count; ++b) {
    BandPlan::Band band;
    band.r0 = s.oh * b / count;
    band.r1 = s.oh * (b + 1) / count;
    const int64_t in0 = band.r0 * s.sh - s.ph, in1 = (band.r1 - 1) * s.sh - s.ph + reach;
    const int64_t top = std::max<int64_t>(0, -in0), bottom = std::max<int64_t>(0, in1 - s.h);
    band.i0 = std::max<int64_t>(in0, 0);
    const int64_t rows = std::min(in1, s.h) - band.i0;
    if (rows <= 0) return false;  // a band of padding alone: the channel pieces run instead
    memory::dims src{1, s.c, rows, s.w}, dst{1, s.f, band.r1 - band.r0, s.ow};
    memory::desc sd(src, dt::f32, tag::nhwc), wd(d.wei, dt::f32, tag::any), dd(dst, dt::f32, tag::nhwc),
        bd(bias ? memory::dims{s.f} : memory::dims{}, dt::f32, tag::x);
    memory::dims padl{top, d.padl[1]}, padr{bottom, d.padr[1]};
    auto desc = bias ? dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training,
                                                       dnnl::algorithm::convolution_direct, sd, wd, bd, dd,
                                                       d.strides, d.dil, padl, padr)
                     : dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training,
                                                       dnnl::algorithm::convolution_direct, sd, wd, dd, d.strides,
                                                       d.dil, padl, padr);
    band.pd.reset(new dnnl::convolution_forward::primitive_desc(desc, conv_attr(dst, bits, tag::nhwc), cpu_engine()));
    if (slow(*band.pd)) return false;  // oneDNN's reference kernel: the channel pieces run instead
    // Every band reads the same reordered weights.
    if (b > 0 && !(band.pd->weights_desc() == plan.bands[0].pd->weights_desc())) return false;
    band.prim.reset(new dnnl::convolution_forward(*band.pd));
    plan.scratch = std::max(plan.scratch, band.pd->scratchpad_desc().get_size());
    plan.bands.push_back(std::move(band));
  }
  return true;
}

// The layouts an (n, c, h, w) array may be given in to the bands: plain NCHW,
// oneDNN's blocked one (TBlob::blocked) or channels last (ConvEpilogue::src_last, dst_last).
enum class Lay { Plain, Blocked, Last };
memory::desc lay_desc(Lay l, const memory::dims &d) {
  return memory::desc(d, dt::f32, l == Lay::Plain ? tag::nchw : l == Lay::Blocked ? blocked_tag() : tag::nhwc);
}

// Applies the epilogue Loom computes (apply_after) to rows [r0, r1) of image n's
// output in layout l: one stretch in channels last, one per channel or block of
// channels in the others.
void apply_after_rows(const ConvEpilogue &ep, float *y, const ConvShape &s, Lay l, int64_t n, int64_t r0,
                      int64_t r1) {
  if (!ep.after_add && !ep.relu) return;
  const int64_t plane = s.oh * s.ow, image = n * s.f * plane, rows = r1 - r0;
  if (l == Lay::Last) return apply_after(ep, y, image + r0 * s.ow * s.f, rows * s.ow * s.f);
  const int64_t b = l == Lay::Blocked ? onednn_block() : 1;
  for (int64_t c = 0; c < s.f; c += b) apply_after(ep, y, image + c * plane + r0 * s.ow * b, rows * s.ow * b);
}

// The forward pass cut into bands of rows. x and y may each be plain, blocked
// or channels last (ep.src_blocked and src_last, ep.dst_blocked and dst_last), and give
// the same bits in each: data not in channels last is reordered into it first
// (each image's rows in two halves, spread over the threads), and a band of an
// output not in channels last is computed into a buffer and reordered into
// place (as is its addend, when oneDNN adds one). Work item (image, band) is
// taken by whichever thread is free.
bool conv_forward_bands(const ConvShape &s, int64_t count, const float *x, const float *w, const float *bias,
                        float *y, Var *keep, const ConvEpilogue &ep) {
  const Lay xl = !ep.src_blocked ? Lay::Plain : ep.src_last ? Lay::Last : Lay::Blocked;
  const Lay yl = !ep.dst_blocked ? Lay::Plain : ep.dst_last ? Lay::Last : Lay::Blocked;
  if ((xl == Lay::Blocked && s.c % onednn_block() != 0) || (yl == Lay::Blocked && s.f % onednn_block() != 0))
    return false;
  const int64_t bits = epilogue_bits(s, ep) & ~kEpWinograd;
  auto plan = cached<BandPlan>(s, 4000 + 2 * count + (bias != nullptr ? 1 : 0) + bits,
                               [&](BandPlan &p) { return build_bands(s, count, bias != nullptr, bits, p); });
  if (!plan) return false;
  const memory::desc &wdesc = plan->bands[0].pd->weights_desc();
  const int64_t xplane = s.c * s.h * s.w, plane = s.oh * s.ow;
  // The weights in oneDNN's layout: kept on the weight's var, or reordered into
  // this thread's buffer (a Work without planned memory).
  dnnl::stream st(cpu_engine());
  std::shared_ptr<const void> hold;
  const void *wr = kept_weights_as(s, w, wdesc, 4000 + count + bits, ep.weights_id, keep, hold,
                                   Work(WorkSizes(), 0, nullptr, 0), st);
  st.wait();
  // The data in channels last, rows [h0, h1) of an image at a time.
  const float *xc = x;
  if (xl != Lay::Last) {
    float *buf = static_cast<float *>(thread_buffer(3, static_cast<size_t>(s.n * xplane) * sizeof(float)));
    const int64_t halves = s.h >= 2 ? 2 : 1;
    parallel_items(s.n * halves, [&](int64_t, int64_t i) {
      OneOpenMpThread one;
      dnnl::stream ts(cpu_engine());
      const int64_t n = i / halves, h0 = s.h * (i % halves) / halves, h1 = s.h * (i % halves + 1) / halves;
      const memory::desc part = lay_desc(xl, {1, s.c, s.h, s.w}).submemory_desc({1, s.c, h1 - h0, s.w}, {0, 0, h0, 0});
      reorder(part, x + n * xplane, lay_desc(Lay::Last, {1, s.c, h1 - h0, s.w}), buf + n * xplane + h0 * s.w * s.c,
              ts);
      ts.wait();
    });
    xc = buf;
  }
  const int64_t nb = static_cast<int64_t>(plan->bands.size());
  parallel_items(s.n * nb, [&](int64_t, int64_t i) {
    OneOpenMpThread one;
    dnnl::stream ts(cpu_engine());
    const int64_t n = i / nb;
    const BandPlan::Band &b = plan->bands[i % nb];
    const auto &p = *b.pd;
    const int64_t rows = b.r1 - b.r0, image = n * s.f * plane, at = image + b.r0 * s.ow * s.f;
    // The band of the image's output (and of the addend) where it is not in channels last.
    const memory::desc part = lay_desc(yl, {1, s.f, s.oh, s.ow}).submemory_desc({1, s.f, rows, s.ow}, {0, 0, b.r0, 0});
    void *dst = yl == Lay::Last ? static_cast<void *>(y + at) : thread_buffer(1, p.dst_desc().get_size());
    if (ep.sum && yl != Lay::Last) reorder(part, y + image, p.dst_desc(), dst, ts);  // the addend, to be summed
    const float *addend = ep.addend ? ep.addend + at : nullptr;
    if (ep.addend && yl != Lay::Last) {
      void *to = thread_buffer(0, p.dst_desc().get_size());
      reorder(part, ep.addend + image, p.dst_desc(), to, ts);
      addend = static_cast<const float *>(to);
    }
    memory ms(p.src_desc(), cpu_engine(), const_cast<float *>(xc + n * xplane + b.i0 * s.w * s.c)),
        mw(p.weights_desc(), cpu_engine(), const_cast<void *>(wr)), md(p.dst_desc(), cpu_engine(), dst),
        mpad(p.scratchpad_desc(), cpu_engine(), thread_buffer(2, plan->scratch));
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, ms}, {DNNL_ARG_WEIGHTS, mw},
                                         {DNNL_ARG_DST, md}, {DNNL_ARG_SCRATCHPAD, mpad}};
    if (bias) args.emplace(DNNL_ARG_BIAS, memory(p.bias_desc(), cpu_engine(), const_cast<float *>(bias)));
    add_epilogue_args(args, ep, {1, s.f, rows, s.ow}, 0, addend, tag::nhwc);
    b.prim->execute(ts, args);
    if (yl != Lay::Last) reorder(p.dst_desc(), dst, part, y + image, ts);
    ts.wait();
    apply_after_rows(ep, y, s, yl, n, b.r0, b.r1);
  });
  g_conv_calls.fetch_add(1);
  g_band_calls.fetch_add(1);
  return true;
}

// oneDNN computes channels in blocks of 16 and pads the rest: with channel
// counts off those blocks (LeNet's 20 and 50) the reference kernels are faster
// (LeNet trains at 3630 against 3250 images/s here), so oneDNN takes a
// convolution only when its output channels (per group) fill whole blocks and its
// input channels do too or are few (a first layer on images).
int64_t onednn_conv_row_bands(const ConvShape &s, bool winograd) {
  return onednn_conv_takes(s) && !(winograd && loom_winograd_runs(s)) ? row_bands(s) : 0;
}

bool onednn_conv_takes(const ConvShape &s) {
  int64_t cg = s.c / s.groups, fg = s.f / s.groups;
  return fg % 16 == 0 && (cg % 16 == 0 || cg <= 4);
}

// The forward plan of a convolution cut into work items (built on first use),
// or null when oneDNN does not take it.
std::shared_ptr<const ForwardPlan> forward_plan(const ConvShape &s, bool bias, int64_t bits) {
  const Items it(s.n);
  const int64_t per = it.per, last = it.last;
  auto build = [&](ForwardPlan &f, int64_t b) {
    f.pd.reset(new dnnl::convolution_forward::primitive_desc(forward_pd(s, per, bias, b)));
    if (b && slow(*f.pd)) return false;
    if (last != per)
      f.pd_last.reset(new dnnl::convolution_forward::primitive_desc(forward_pd(s, last, bias, b)));
    // Both batch sizes share the weights' layout (checked; else the reference runs).
    if (f.pd_last && !(f.pd_last->weights_desc() == f.pd->weights_desc())) return false;
    f.prim.reset(new dnnl::convolution_forward(*f.pd));
    if (f.pd_last) f.prim_last.reset(new dnnl::convolution_forward(*f.pd_last));
    f.winograd = is_winograd(*f.pd);
    return true;
  };
  return cached<ForwardPlan>(s, (bias ? 1 : 0) + bits, [&](ForwardPlan &f) {
    if (build(f, bits)) return true;
    // Winograd for one batch size only (the weights' layouts differ): direct for both.
    f = ForwardPlan();
    return (bits & kEpWinograd) && build(f, bits & ~kEpWinograd);
  });
}

// The work memory of the forward pass: the weights, and per range each item's
// input and output in oneDNN's layouts and its scratchpad.
WorkSizes forward_sizes(const ConvShape &s, const ForwardPlan &plan, const ConvEpilogue &ep) {
  WorkSizes z;
  if (weights_reordered(s, plan.pd->weights_desc())) z.caller = plan.pd->weights_desc().get_size();
  for (const auto *p : {plan.pd.get(), plan.pd_last.get()}) {
    if (!p) continue;
    Dims d = dims_for(s, p->src_desc().dims()[0]);
    memory::desc usrc(d.src, dt::f32, side_tag(ep.src_blocked, ep.src_last)),
        udst(d.dst, dt::f32, side_tag(ep.dst_blocked, ep.dst_last));
    if (!(p->src_desc() == usrc)) z.slot[0] = std::max(z.slot[0], p->src_desc().get_size());
    if (!(p->dst_desc() == udst)) z.slot[1] = std::max(z.slot[1], p->dst_desc().get_size());
    z.slot[2] = std::max(z.slot[2], p->scratchpad_desc().get_size());
  }
  return z;
}

size_t onednn_conv_forward_scratch(const ConvShape &s, bool bias, bool winograd) {
  winograd = winograd && onednn_winograd_qualifies(s);
  if (!onednn_conv_takes(s) || channel_pieces(s, winograd) > 1 || row_bands(s) > 0) return 0;
  OneOpenMpThread one;
  size_t most = 0;
  auto take = [&](bool wino) {
    ConvEpilogue ep;
    ep.winograd = wino;
    if (auto plan = forward_plan(s, bias, wino ? kEpWinograd : 0))
      most = std::max(most, forward_sizes(s, *plan, ep).bytes(Items(s.n).ranges()));
  };
  take(false);
  if (winograd) take(true);
  return most;
}

namespace {

bool conv_forward_epilogue(const ConvShape &s, const float *x, const float *w, const float *bias, float *y,
                           Var *keep, const ConvEpilogue &ep, void *scratch, size_t scratch_bytes) {
  // With padding as wide as the kernel's reach, some outputs' windows hold only
  // padding, and oneDNN 2.6 left the addend of a binary post-op out of them (the
  // error was a tenth of the largest output): such a case is refused.
  const Dims d = dims_for(s, 1);
  if (ep.addend && (std::max(d.padl[0], d.padr[0]) >= (s.kh - 1) * s.dh + 1 ||
                    std::max(d.padl[1], d.padr[1]) >= (s.kw - 1) * s.dw + 1))
    return false;
  OneOpenMpThread one;
  // Loom's Winograd kernels take plain and blocked layouts (the executors give
  // them no channels-last arrays).
  if (ep.winograd && loom_winograd_runs(s) && !(ep.src_blocked && ep.src_last) && !(ep.dst_blocked && ep.dst_last)) {
    ConvEpilogue own = ep;  // their relu is Loom's, in registers
    if (own.onednn_relu) own.relu = true, own.onednn_relu = false;
    loom_winograd_forward(s, x, w, bias, y, keep, own);
    g_conv_calls.fetch_add(1);
    g_winograd_calls.fetch_add(1);
    return true;
  }
  const bool winograd = ep.winograd && onednn_winograd_qualifies(s);
  // Bands of rows, channel pieces or whole images, each in any layout. Where
  // oneDNN has no band plan for the shape and epilogue (the same in every
  // layout), the channel pieces or whole images run. Bands run the direct
  // algorithm, where Winograd was asked for too (onednn_conv_row_bands).
  if (int64_t bands = row_bands(s); bands > 0)
    if (conv_forward_bands(s, bands, x, w, bias, y, keep, ep)) return true;
  if (int64_t pieces = channel_pieces(s, winograd); pieces > 1)
    return conv_forward_pieces(s, pieces, x, w, bias, y, keep, ep);
  const int64_t per = Items(s.n).per;
  const int64_t bits = epilogue_bits(s, ep);
  auto plan = forward_plan(s, bias != nullptr, bits);
  if (!plan) return false;
  const auto *pd = plan->pd.get(), *pd_last = plan->pd_last.get();
  const auto &prim = *plan->prim;
  const auto &prim_last = plan->prim_last ? *plan->prim_last : prim;
  const Work work(forward_sizes(s, *plan, ep), Items(s.n).ranges(), scratch, scratch_bytes);
  dnnl::stream st(cpu_engine());
  std::shared_ptr<const void> hold;
  const void *wr = kept_weights_as(s, w, pd->weights_desc(), (bias != nullptr ? 1 : 0) + bits, ep.weights_id,
                                   keep, hold, work, st);
  for_items(s.n, [&](int64_t r, int64_t, int64_t n0, int64_t bn) {
    const auto &p = bn == per ? *pd : *pd_last;
    const auto &pr = bn == per ? prim : prim_last;
    dnnl::stream ts(cpu_engine());
    Dims d = dims_for(s, bn);
    memory::desc usrc(d.src, dt::f32, side_tag(ep.src_blocked, ep.src_last)),
        udst(d.dst, dt::f32, side_tag(ep.dst_blocked, ep.dst_last));
    const float *xs = x + n0 * s.c * s.h * s.w;
    float *yd = y + n0 * s.f * s.oh * s.ow;
    void *src = const_cast<float *>(xs);
    if (!(p.src_desc() == usrc)) {
      src = work.range(r, 0, p.src_desc().get_size());
      reorder(usrc, xs, p.src_desc(), src, ts);
    }
    bool direct = p.dst_desc() == udst;
    void *dst = direct ? static_cast<void *>(yd) : work.range(r, 1, p.dst_desc().get_size());
    if (ep.sum && !direct) reorder(udst, yd, p.dst_desc(), dst, ts);  // the addend, to be summed
    memory ms(p.src_desc(), cpu_engine(), src), mw(p.weights_desc(), cpu_engine(), const_cast<void *>(wr)),
        md(p.dst_desc(), cpu_engine(), dst),
        mpad(p.scratchpad_desc(), cpu_engine(), work.range(r, 2, p.scratchpad_desc().get_size()));
    std::unordered_map<int, memory> args{{DNNL_ARG_SRC, ms}, {DNNL_ARG_WEIGHTS, mw},
                                         {DNNL_ARG_DST, md}, {DNNL_ARG_SCRATCHPAD, mpad}};
    if (bias) args.emplace(DNNL_ARG_BIAS, memory(p.bias_desc(), cpu_engine(), const_cast<float *>(bias)));
    add_epilogue_args(args, ep, d.dst, 0, ep.addend ? ep.addend + n0 * s.f * s.oh * s.ow : nullptr,
                      side_tag(ep.dst_blocked, ep.dst_last));
    pr.execute(ts, args);
    if (!direct) reorder(p.dst_desc(), dst, udst, yd, ts);
    ts.wait();
    apply_after(ep, y, n0 * s.f * s.oh * s.ow, bn * s.f * s.oh * s.ow);
  });
  g_conv_calls.fetch_add(1);
  if (plan->winograd) g_winograd_calls.fetch_add(1);
  return true;
}

}  // namespace

bool onednn_conv_forward(const ConvShape &s, const float *x, const float *w, const float *bias,
                         float *y, Var *keep, const ConvEpilogue &ep, void *scratch, size_t scratch_bytes) {
  if (!onednn_conv_takes(s)) return false;
  if (!ep.onednn_relu) return conv_forward_epilogue(s, x, w, bias, y, keep, ep, scratch, scratch_bytes);
  // oneDNN's relu: the last post-op, Loom's pass left out. Without a relu, or
  // with an addition after oneDNN (after_add), or where oneDNN has only its
  // reference kernel for these post-ops, Loom's relu as by default.
  ConvEpilogue e = ep;
  if (ep.relu && !ep.after_add) {
    e.relu = false;
    if (conv_forward_epilogue(s, x, w, bias, y, keep, e, scratch, scratch_bytes)) return true;
    e.relu = true;
  }
  e.onednn_relu = false;
  return conv_forward_epilogue(s, x, w, bias, y, keep, e, scratch, scratch_bytes);
}

// The backward plan of a convolution (built on first use), or null when oneDNN
// does not take it.
std::shared_ptr<const BackwardPlan> backward_plan(const ConvShape &s, bool dx, bool dw) {
  const Items it(s.n);
  const int64_t per = it.per, last = it.last;
  return cached<BackwardPlan>(s, (dx ? 2 : 0) + (dw ? 4 : 0), [&](BackwardPlan &b) {
    auto make = [&](int64_t bn, BackwardPlan::Pds &out) {
      dnnl::convolution_forward::primitive_desc hint = forward_pd(s, bn, false);
      Dims d = dims_for(s, bn);
      memory::desc src(d.src, dt::f32, tag::any), wei(d.wei, dt::f32, tag::any),
          dst(d.dst, dt::f32, tag::any);
      if (dx) {
        out.data.reset(new bwd_d_pd_t(
            dnnl::convolution_backward_data::desc(dnnl::algorithm::convolution_direct, src, wei, dst,
                                                  d.strides, d.dil, d.padl, d.padr),
            user_scratchpad(), cpu_engine(), hint));
        out.pdata.reset(new dnnl::convolution_backward_data(*out.data));
      }
      if (dw) {
        out.weights.reset(new bwd_w_pd_t(
            dnnl::convolution_backward_weights::desc(dnnl::algorithm::convolution_direct, src, wei,
                                                     dst, d.strides, d.dil, d.padl, d.padr),
            user_scratchpad(), cpu_engine(), hint));
        out.pw.reset(new dnnl::convolution_backward_weights(*out.weights));
      }
    };
    make(per, b.full);
    if (last != per) {
      make(last, b.tail);
      // one weight layout for every item
      if (dx && !(b.tail.data->weights_desc() == b.full.data->weights_desc())) return false;
      if (dw && !(b.tail.weights->diff_weights_desc() == b.full.weights->diff_weights_desc()))
        return false;
    }
    return true;
  });
}

// The work memory of the backward pass: the weights (for dX), and per range
// each item's dY (slot 0) and dX or second dY (1) in oneDNN's layouts, the
// scratchpads (2) and the input in the weight gradient's layout (3).
WorkSizes backward_sizes(const ConvShape &s, const BackwardPlan &plan, bool dx, bool dw) {
  WorkSizes z;
  if (dx && weights_reordered(s, plan.full.data->weights_desc())) z.caller = plan.full.data->weights_desc().get_size();
  for (const BackwardPlan::Pds *p : {&plan.full, &plan.tail}) {
    if (dx ? !p->data : !p->weights) continue;  // no tail
    const memory::desc &want_dy = dx ? p->data->diff_dst_desc() : p->weights->diff_dst_desc();
    Dims d = dims_for(s, want_dy.dims()[0]);
    memory::desc usrc(d.src, dt::f32, tag::nchw), udst(d.dst, dt::f32, tag::nchw);
    if (!(want_dy == udst)) z.slot[0] = std::max(z.slot[0], want_dy.get_size());
    if (dx) {
      if (!(p->data->diff_src_desc() == usrc)) z.slot[1] = std::max(z.slot[1], p->data->diff_src_desc().get_size());
      z.slot[2] = std::max(z.slot[2], p->data->scratchpad_desc().get_size());
    }
    if (dw) {
      if (!(p->weights->diff_dst_desc() == want_dy))
        z.slot[1] = std::max(z.slot[1], p->weights->diff_dst_desc().get_size());
      z.slot[2] = std::max(z.slot[2], p->weights->scratchpad_desc().get_size());
      if (!(p->weights->src_desc() == usrc)) z.slot[3] = std::max(z.slot[3], p->weights->src_desc().get_size());
    }
  }
  return z;
}

// How many weight-gradient pieces are held at once. Every item's piece is added
// to the sum in item order, whatever the threads: with R ranges, the items run
// R at a time and each round's pieces are added before the next round starts,
// so R + 1 pieces are held instead of one per item (a 3x3 512-channel layer's
// eight pieces are 75 MB, live while every activation is).
int64_t pieces_held(const Items &its) { return std::min(its.count, its.ranges() + 1); }

// Bytes of the weight gradient's pieces (they come first in the scratch).
size_t pieces_bytes(const ConvShape &s, const BackwardPlan &plan, bool dw) {
  const Items its(s.n);
  return dw ? WorkSizes::up(static_cast<size_t>(pieces_held(its)) * plan.full.weights->diff_weights_desc().get_size())
            : 0;
}

size_t onednn_conv_backward_scratch(const ConvShape &s, bool dx, bool dw) {
  if (!(dx || dw) || !onednn_conv_takes(s)) return 0;
  OneOpenMpThread one;
  auto plan = backward_plan(s, dx, dw);
  if (!plan) return 0;
  return pieces_bytes(s, *plan, dw) + backward_sizes(s, *plan, dx, dw).bytes(Items(s.n).ranges());
}

bool onednn_conv_backward(const ConvShape &s, const float *x, const float *w, const float *dy,
                          float *dx, float *dw, void *scratch, size_t scratch_bytes, const ConvLayouts &lay) {
  if (!onednn_conv_takes(s)) return false;
  OneOpenMpThread one;
  const Items its(s.n);
  const int64_t per = its.per, items = its.count;
  auto plan = backward_plan(s, dx != nullptr, dw != nullptr);
  if (!plan) return false;
  const BackwardPlan::Pds &full = plan->full, &tail = plan->tail;
  // The weight gradient's pieces, then the work buffers: in the executor's
  // planned scratch when it holds them all.
  const size_t pbytes = pieces_bytes(s, *plan, dw != nullptr);
  const Work work(backward_sizes(s, *plan, dx != nullptr, dw != nullptr), its.ranges(), scratch,
                  scratch_bytes, pbytes);
  dnnl::stream st(cpu_engine());
  const void *wr = dx ? weights_as(s, w, full.data->weights_desc(), work, st) : nullptr;
  // Per-item weight gradients in oneDNN's layout, added in item order below.
  size_t wbytes = 0;
  const int64_t held = dw ? pieces_held(its) : 0;
  std::shared_ptr<void> pieces;  // every element is written by oneDNN: no zeroing
  float *partial = nullptr;
  if (dw) {
    wbytes = full.weights->diff_weights_desc().get_size();
    if (work.planned())
      partial = static_cast<float *>(scratch);
    else
      pieces = reusable_scratch(static_cast<size_t>(held) * wbytes, "for the oneDNN weight gradient's pieces");
    if (!partial) partial = static_cast<float *>(pieces.get());
  }
  const int64_t m = static_cast<int64_t>(wbytes / sizeof(float));
  // The items of this round start at `first`; their pieces at slot `slot0` on.
  int64_t first = 0, slot0 = 0;
  auto body = [&](int64_t r, int64_t item, int64_t n0, int64_t bn) {
    const BackwardPlan::Pds &p = bn == per ? full : tail;
    dnnl::stream ts(cpu_engine());
    Dims d = dims_for(s, bn);
    // The caller's layouts: an image's values are contiguous in either.
    const memory::desc ux(d.src, dt::f32, lay.x ? blocked_tag() : tag::nchw),
        udx(d.src, dt::f32, lay.dx ? blocked_tag() : tag::nchw),
        udst(d.dst, dt::f32, lay.dy ? blocked_tag() : tag::nchw);
    const float *dys = dy + n0 * s.f * s.oh * s.ow;
    // dY in the layout each primitive wants (both usually want the same).
    const memory::desc &want_dy = dx ? p.data->diff_dst_desc() : p.weights->diff_dst_desc();
    void *dyr = const_cast<float *>(dys);
    if (!(want_dy == udst)) {
      dyr = work.range(r, 0, want_dy.get_size());
      reorder(udst, dys, want_dy, dyr, ts);
    }
    if (dx) {
      float *dxd = dx + n0 * s.c * s.h * s.w;
      bool direct = p.data->diff_src_desc() == udx;
      void *dsrc = direct ? static_cast<void *>(dxd) : work.range(r, 1, p.data->diff_src_desc().get_size());
      memory mdy(want_dy, cpu_engine(), dyr), mw(p.data->weights_desc(), cpu_engine(), const_cast<void *>(wr)),
          mdx(p.data->diff_src_desc(), cpu_engine(), dsrc),
          mpad(p.data->scratchpad_desc(), cpu_engine(), work.range(r, 2, p.data->scratchpad_desc().get_size()));
      p.pdata->execute(ts, {{DNNL_ARG_DIFF_DST, mdy}, {DNNL_ARG_WEIGHTS, mw}, {DNNL_ARG_DIFF_SRC, mdx},
                        {DNNL_ARG_SCRATCHPAD, mpad}});
      if (!direct) reorder(p.data->diff_src_desc(), dsrc, udx, dxd, ts);
    }
    if (dw) {
      const memory::desc &wdy = p.weights->diff_dst_desc();
      void *dyw = dyr;
      if (!(wdy == want_dy)) {
        dyw = work.range(r, 1, wdy.get_size());
        reorder(udst, dys, wdy, dyw, ts);
      }
      const float *xs = x + n0 * s.c * s.h * s.w;
      void *src = const_cast<float *>(xs);
      if (!(p.weights->src_desc() == ux)) {
        src = work.range(r, 3, p.weights->src_desc().get_size());
        reorder(ux, xs, p.weights->src_desc(), src, ts);
      }
      memory ms(p.weights->src_desc(), cpu_engine(), src), mdy(wdy, cpu_engine(), dyw),
          mdw(p.weights->diff_weights_desc(), cpu_engine(),
              partial + static_cast<size_t>(slot0 + item - first) * static_cast<size_t>(m)),
          mpad(p.weights->scratchpad_desc(), cpu_engine(),
               work.range(r, 2, p.weights->scratchpad_desc().get_size()));
      p.pw->execute(ts, {{DNNL_ARG_SRC, ms}, {DNNL_ARG_DIFF_DST, mdy}, {DNNL_ARG_DIFF_WEIGHTS, mdw},
                        {DNNL_ARG_SCRATCHPAD, mpad}});
    }
    ts.wait();
  };
  // Adds the pieces in slots [1, end) to slot 0, in slot order, whichever thread
  // does each element.
  float *sum = partial;
  auto add_pieces = [&](int64_t end) {
    parallel_ranges(m, 1 << 14, [&](int64_t j0, int64_t j1) {
      for (int64_t i = 1; i < end; ++i) {
        const float *src = sum + i * m;
        for (int64_t j = j0; j < j1; ++j) sum[j] += src[j];
      }
    });
  };
  if (!dw || held == items) {
    for_items(s.n, body);
    if (dw) add_pieces(items);
  } else {
    // Rounds of R = held - 1 items: the first writes slots 0..R-1, the later
    // ones slots 1..R; each round's pieces are added before the next starts.
    const int64_t R = held - 1;
    for (first = 0; first < items; first += R) {
      const int64_t count = std::min(R, items - first);
      slot0 = first == 0 ? 0 : 1;
      for_items(s.n, body, first, count);
      add_pieces(slot0 + count);
    }
  }
  if (dw) {
    reorder_weights(s, full.weights->diff_weights_desc(), sum, dw, true, st);
    st.wait();
  }
  g_conv_calls.fetch_add(1);
  return true;
}

#endif  // LOOM_HAVE_ONEDNN

}  // namespace loom
