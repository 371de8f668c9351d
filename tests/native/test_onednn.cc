// The oneDNN kernel set against the reference kernels and a naive float64
// convolution: forward, data and weight gradients (and the bias gradient) over
// many geometries, in float32 within 1e-5 relative, with the oneDNN path
// checked to have run; the kernel-set switch and its errors.
#include <cmath>
#include <cstdio>
#include <thread>

#include "ndarray/ndarray.h"
#include "op/registry.h"
#include "ops/nn/direct_conv.h"
#include "ops/nn/onednn.h"
#include "testutil.h"

using namespace lt;

namespace {

// Selects a kernel set for one scope and restores the previous one.
struct KernelScope {
  loom::CpuKernels prev;
  explicit KernelScope(loom::CpuKernels k) : prev(loom::cpu_kernels()) { loom::set_cpu_kernels(k); }
  ~KernelScope() { loom::set_cpu_kernels(prev); }
};

struct ConvCase {
  int64_t n, c, h, w, f, kh, kw, s, p, d, g;
  bool bias;
  bool one_d;  // (N, C, W) data with a (kw,) kernel
  std::string name() const {
    return "n" + std::to_string(n) + " c" + std::to_string(c) + " " + std::to_string(h) + "x" +
           std::to_string(w) + " f" + std::to_string(f) + " k" + std::to_string(kh) + "x" +
           std::to_string(kw) + " s" + std::to_string(s) + " p" + std::to_string(p) + " d" +
           std::to_string(d) + " g" + std::to_string(g) + (bias ? " bias" : "") + (one_d ? " 1-D" : "");
  }
  std::vector<int64_t> xshape() const {
    return one_d ? std::vector<int64_t>{n, c, w} : std::vector<int64_t>{n, c, h, w};
  }
  std::vector<int64_t> wshape() const {
    return one_d ? std::vector<int64_t>{f, c / g, kw} : std::vector<int64_t>{f, c / g, kh, kw};
  }
  Params params() const {
    auto tup = [&](int64_t a, int64_t b) {
      return one_d ? "(" + std::to_string(b) + ",)" : "(" + std::to_string(a) + "," + std::to_string(b) + ")";
    };
    return {{"kernel", tup(kh, kw)}, {"num_filter", std::to_string(f)}, {"stride", tup(s, s)},
            {"pad", tup(p, p)},      {"dilate", tup(d, d)},             {"num_group", std::to_string(g)},
            {"no_bias", bias ? "false" : "true"}};
  }
};

struct ConvResult {
  std::vector<int64_t> shape;  // of the output
  std::vector<double> y, dx, dw, db;
};

// `op` (Convolution or Deconvolution) forward, then every gradient from the head
// gradient `hy`, in float32 with the current kernel set.
ConvResult run_with_grads(const std::string &op, const Params &params, const std::vector<int64_t> &xshape,
                          const std::vector<int64_t> &wshape, int64_t f, bool bias, const std::vector<double> &x,
                          const std::vector<double> &w, const std::vector<double> &b,
                          const std::vector<double> &hy) {
  Arr X = make(xshape, x, LOOM_DTYPE_FLOAT32), W = make(wshape, w, LOOM_DTYPE_FLOAT32),
      B = make({f}, b, LOOM_DTYPE_FLOAT32);
  Arr dX = make(xshape, std::vector<double>(x.size(), 0), LOOM_DTYPE_FLOAT32),
      dW = make(wshape, std::vector<double>(w.size(), 0), LOOM_DTYPE_FLOAT32),
      dB = make({f}, std::vector<double>(b.size(), 0), LOOM_DTYPE_FLOAT32);
  std::vector<loom_ndarray> vars{X.h, W.h}, grads{dX.h, dW.h};
  if (bias) vars.push_back(B.h), grads.push_back(dB.h);
  EXPECT_EQ(loom_autograd_mark_variables(vars.data(), grads.data(), nullptr, int32_t(vars.size())), LOOM_OK);
  int32_t prev = 0;
  loom_autograd_set_recording(&prev, 1);
  std::vector<const Arr *> ins{&X, &W};
  if (bias) ins.push_back(&B);
  std::vector<Arr> outs;
  EXPECT_EQ(invoke(op, ins, params, &outs), LOOM_OK) << loom_last_error();
  loom_autograd_set_recording(nullptr, prev);
  ConvResult r;
  if (outs.empty()) return r;
  r.shape = shape_of(outs[0]);
  r.y = read(outs[0]);
  Arr HY = make(r.shape, hy, LOOM_DTYPE_FLOAT32);
  loom_ndarray head = outs[0].h, hg = HY.h;
  EXPECT_EQ(loom_autograd_backward(&head, &hg, 1), LOOM_OK) << loom_last_error();
  r.dx = read(dX);
  r.dw = read(dW);
  if (bias) r.db = read(dB);
  return r;
}

ConvResult run_conv(const ConvCase &c, const std::vector<double> &x, const std::vector<double> &w,
                    const std::vector<double> &b, const std::vector<double> &hy) {
  return run_with_grads("Convolution", c.params(), c.xshape(), c.wshape(), c.f, c.bias, x, w, b, hy);
}

// |got - want| <= 1e-5 * (1 + max |want|) elementwise.
void expect_near_rel(const std::vector<double> &got, const std::vector<double> &want, const std::string &what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  double scale = 1;
  for (double v : want) scale = std::max(scale, std::fabs(v));
  size_t bad = 0;
  for (size_t i = 0; i < want.size(); ++i)
    if (!(std::fabs(got[i] - want[i]) <= 1e-5 * scale)) {
      if (bad++ < 3) ADD_FAILURE() << what << " [" << i << "]: " << got[i] << " vs " << want[i];
    }
  EXPECT_EQ(bad, 0u) << what;
}

// The oneDNN set's forward pass and gradients against the reference kernels'.
void expect_matches_reference(const ConvResult &dnn, const ConvResult &ref, bool bias) {
  expect_near_rel(dnn.y, ref.y, "forward vs reference kernel");
  expect_near_rel(dnn.dx, ref.dx, "data gradient vs reference kernel");
  expect_near_rel(dnn.dw, ref.dw, "weight gradient vs reference kernel");
  if (bias) expect_near_rel(dnn.db, ref.db, "bias gradient vs reference kernel");
}

const std::vector<ConvCase> &cases() {
  static const std::vector<ConvCase> v = {
      // small channel counts (plain layouts) and the blocked ones (multiples of 8 / 16)
      {2, 3, 7, 6, 4, 3, 3, 1, 0, 1, 1, true, false},
      {1, 4, 8, 8, 6, 3, 3, 2, 1, 1, 2, true, false},
      {2, 2, 9, 7, 2, 2, 2, 1, 2, 2, 1, false, false},
      {3, 16, 10, 10, 32, 3, 3, 1, 1, 1, 1, true, false},
      {13, 32, 9, 9, 48, 3, 3, 1, 1, 1, 1, true, false},  // 13 images: items of 2 and a tail of 1
      {5, 64, 8, 8, 32, 1, 1, 2, 0, 1, 1, false, false},  // ResNet's stride-2 1x1 (negative right pad)
      {10, 16, 6, 6, 32, 1, 1, 1, 0, 1, 1, true, false},  // 1x1: against the reference's per-image products
      // fewer than 4 images: the forward pass also cuts the output channels (8, 4 and 2 pieces)
      {1, 16, 12, 12, 128, 3, 3, 1, 1, 1, 1, true, false},
      {2, 32, 7, 7, 64, 1, 1, 2, 0, 1, 1, false, false},
      {3, 8, 9, 9, 32, 3, 3, 2, 1, 1, 1, true, false},
      {1, 3, 20, 20, 48, 5, 5, 2, 2, 1, 1, true, false},  // 48 channels: not cut (3 blocks)
      {4, 32, 14, 14, 64, 3, 3, 2, 1, 1, 1, true, false},
      {3, 16, 11, 13, 16, 5, 3, 2, 2, 1, 1, true, false},  // rectangular kernel, odd extents
      {2, 32, 12, 12, 32, 3, 3, 1, 2, 2, 1, true, false},  // dilated
      {4, 32, 8, 8, 64, 3, 3, 1, 1, 1, 4, true, false},    // grouped
      {2, 16, 8, 8, 16, 3, 3, 1, 1, 1, 16, false, false},  // depthwise
      {9, 1, 28, 28, 20, 5, 5, 1, 0, 1, 1, true, false},   // LeNet's first layer
      {2, 3, 1, 10, 4, 1, 3, 1, 0, 1, 1, true, true},      // 1-D
      {3, 16, 1, 20, 32, 1, 5, 2, 1, 1, 1, false, true},   // 1-D, strided and padded
      // more strided 1x1s: stride 3 on rectangular extents, grouped, 1-D
      {3, 16, 10, 11, 32, 1, 1, 3, 0, 1, 1, true, false},
      {2, 32, 9, 9, 32, 1, 1, 2, 0, 1, 2, false, false},   // grouped
      {3, 16, 1, 21, 16, 1, 1, 2, 0, 1, 1, false, true},   // 1-D
      // fewer than 4 images on AVX-512: bands of output rows, uneven, with padded
      // first and last rows, strides, dilation and padding wider than the kernel's reach
      {1, 16, 31, 9, 16, 3, 3, 1, 1, 1, 1, true, false},   // 31 rows: 4 bands of 7-8
      {1, 16, 57, 20, 32, 3, 3, 2, 1, 1, 1, false, false}, // stride 2 on an odd extent
      {2, 16, 28, 10, 32, 3, 3, 1, 2, 2, 1, true, false},  // dilated, 4 bands
      {1, 16, 30, 8, 16, 3, 3, 1, 3, 1, 1, true, false},   // a first band of padding alone
      {1, 32, 29, 7, 16, 3, 3, 2, 1, 1, 1, true, false},   // 15 rows: 2 bands of 7 and 8
      {2, 16, 14, 6, 16, 1, 1, 1, 0, 1, 1, false, false},  // 1x1, 2 bands
      {1, 16, 8, 8, 16, 1, 1, 1, 10, 1, 1, true, false},   // a first band of padding alone: not cut
  };
  return v;
}

}  // namespace

TEST(OneDnn, ConvolutionMatchesReferenceKernelsAndNaiveLoops) {
  if (!loom::onednn_built()) GTEST_SKIP() << "built without oneDNN";
  uint32_t seed = 500;
  int taken = 0;
  for (const ConvCase &c : cases()) {
    SCOPED_TRACE(c.name());
    int64_t xn = numel(c.xshape()), wn = numel(c.wshape());
    auto x = as_dtype(random_values(xn, -1, 1, seed++), LOOM_DTYPE_FLOAT32);
    auto w = as_dtype(random_values(wn, -1, 1, seed++), LOOM_DTYPE_FLOAT32);
    auto b = as_dtype(random_values(c.f, -1, 1, seed++), LOOM_DTYPE_FLOAT32);
    int64_t oh, ow;
    auto want = naive_conv2d(x, w, c.bias ? b : std::vector<double>{}, c.n, c.c, c.one_d ? 1 : c.h,
                                    c.w, c.f, c.one_d ? 1 : c.kh, c.kw, c.s, c.one_d ? 0 : c.p, c.p,
                                    c.d, c.g, &oh, &ow);
    auto hy = as_dtype(random_values(want.size(), -1, 1, seed++), LOOM_DTYPE_FLOAT32);
    ConvResult ref, dnn;
    {
      KernelScope k(loom::CpuKernels::Reference);
      ref = run_conv(c, x, w, b, hy);
    }
    int64_t before = loom::onednn_conv_calls();
    {
      KernelScope k(loom::CpuKernels::OneDnn);
      dnn = run_conv(c, x, w, b, hy);
    }
    loom::ConvShape cs{c.n, c.c, c.one_d ? 1 : c.h, c.w, c.f, c.g, c.one_d ? 1 : c.kh, c.kw, c.one_d ? 1 : c.s,
                       c.s, c.one_d ? 0 : c.p, c.p, c.one_d ? 1 : c.d, c.d, oh, ow};
    bool takes = loom::onednn_conv_takes(cs);
    taken += takes;
    EXPECT_EQ(loom::onednn_conv_calls() - before, takes ? 2 : 0) << "oneDNN did not compute both passes";
    expect_near_rel(dnn.y, want, "forward vs naive float64");
    expect_matches_reference(dnn, ref, c.bias);
  }
  // 21 of the 29 cases fill 16-channel blocks and run on oneDNN; the others
  // check the fall-back to the reference kernels.
  EXPECT_EQ(taken, 21);
}

// A bound executor gives oneDNN's convolutions work memory planned with the
// graph's (OpDef::temp_bytes, backward_temp_bytes) instead of each thread's own
// buffers: the same bits as imperative calls, which use the threads' buffers,
// for every case (tails, strides, groups, the few-image channel pieces).
TEST(OneDnn, ExecutorsPlanTheConvolutionsWorkMemory) {
  if (!loom::onednn_built()) GTEST_SKIP() << "built without oneDNN";
  KernelScope k(loom::CpuKernels::OneDnn);
  uint32_t seed = 700;
  int64_t both = 0;  // cases whose forward and backward passes both used planned memory
  for (const ConvCase &c : cases()) {
    SCOPED_TRACE(c.name());
    auto x = as_dtype(random_values(numel(c.xshape()), -1, 1, seed++), LOOM_DTYPE_FLOAT32);
    auto w = as_dtype(random_values(numel(c.wshape()), -1, 1, seed++), LOOM_DTYPE_FLOAT32);
    auto b = as_dtype(random_values(c.f, -1, 1, seed++), LOOM_DTYPE_FLOAT32);
    int64_t oh, ow;
    const size_t ny = naive_conv2d(x, w, {}, c.n, c.c, c.one_d ? 1 : c.h, c.w, c.f, c.one_d ? 1 : c.kh, c.kw, c.s,
                                   c.one_d ? 0 : c.p, c.p, c.d, c.g, &oh, &ow)
                          .size();
    auto hy = as_dtype(random_values(ny, -1, 1, seed++), LOOM_DTYPE_FLOAT32);
    ConvResult want = run_conv(c, x, w, b, hy);
    // The executor: Convolution(data) with its weight (and bias) arguments.
    loom_symbol data = nullptr, conv = nullptr;
    ASSERT_EQ(loom_symbol_variable(&data, "data"), LOOM_OK);
    loom_op h = nullptr;
    ASSERT_EQ(loom_op_find(&h, "Convolution"), LOOM_OK);
    Params ps = c.params();
    std::vector<const char *> keys, vals;
    for (auto &kv : ps) keys.push_back(kv.first.c_str()), vals.push_back(kv.second.c_str());
    ASSERT_EQ(loom_symbol_create(&conv, h, "c", 1, &data, nullptr, int32_t(keys.size()), keys.data(), vals.data()),
              LOOM_OK)
        << loom_last_error();
    const char *name = "data";
    std::vector<int64_t> xs = c.xshape();
    int32_t nd = int32_t(xs.size());
    loom_executor ex = nullptr;
    ASSERT_EQ(loom_executor_simple_bind(&ex, conv, LOOM_DEVICE_CPU, 0, 1, &name, &nd, xs.data(), nullptr, 0,
                                        nullptr, nullptr, LOOM_GRAD_WRITE),
              LOOM_OK)
        << loom_last_error();
    auto arg = [&](int kind, int i) {
      loom_ndarray a = nullptr;
      EXPECT_EQ(loom_executor_get(&a, ex, kind, i), LOOM_OK);
      return Arr(a);
    };
    auto put = [&](const Arr &a, const std::vector<double> &v) {
      std::vector<float> f(v.begin(), v.end());
      ASSERT_EQ(loom_ndarray_copy_from_host(a.h, f.data(), f.size() * sizeof(float)), LOOM_OK);
    };
    put(arg(LOOM_EXEC_ARGUMENT, 0), x);
    put(arg(LOOM_EXEC_ARGUMENT, 1), w);
    if (c.bias) put(arg(LOOM_EXEC_ARGUMENT, 2), b);
    Arr head = make(want.shape, hy, LOOM_DTYPE_FLOAT32);
    const int64_t before = loom::onednn_planned_work_calls(), misses = loom::onednn_planned_work_misses();
    ASSERT_EQ(loom_executor_forward(ex, 1), LOOM_OK);
    ASSERT_EQ(loom_executor_backward(ex, 1, &head.h), LOOM_OK) << loom_last_error();
    EXPECT_EQ(read(arg(LOOM_EXEC_OUTPUT, 0)), want.y);
    EXPECT_EQ(read(arg(LOOM_EXEC_GRADIENT, 0)), want.dx);
    EXPECT_EQ(read(arg(LOOM_EXEC_GRADIENT, 1)), want.dw);
    if (c.bias) {
      EXPECT_EQ(read(arg(LOOM_EXEC_GRADIENT, 2)), want.db);
    }
    // Every pass oneDNN takes, but the forward pass of fewer than 4 images cut
    // into bands of rows or channel pieces (which keeps its threads' buffers).
    loom::ConvShape cs{c.n, c.c, c.one_d ? 1 : c.h, c.w, c.f, c.g, c.one_d ? 1 : c.kh, c.kw, c.one_d ? 1 : c.s,
                       c.s, c.one_d ? 0 : c.p, c.p, c.one_d ? 1 : c.d, c.d, c.one_d ? 1 : oh, ow};
    const bool pieces = (c.n < 4 && c.g == 1 && c.f % 32 == 0) || loom::onednn_conv_row_bands(cs) > 0;
    EXPECT_EQ(loom::onednn_planned_work_calls() - before, loom::onednn_conv_takes(cs) ? (pieces ? 1 : 2) : 0);
    both += loom::onednn_conv_takes(cs) && !pieces;
    EXPECT_EQ(loom::onednn_planned_work_misses(), misses) << "the planned work memory missed buffers";
    loom_executor_free(ex);
    loom_symbol_free(conv);
    loom_symbol_free(data);
  }
  // 13 cases ran both passes in planned memory; on AVX-512, 5 of them have
  // fewer than 4 images and shapes cut into bands of rows.
  EXPECT_EQ(both, loom::onednn_avx512() ? 8 : 13);
}

namespace {
// A process-wide setting for a scope, through its setter (which returns the previous value).
class SettingScope {
 public:
  SettingScope(int (*set)(int), int value) : set_(set), before_(set(value)) {}
  ~SettingScope() { set_(before_); }

 private:
  int (*set_)(int);
  int before_;
};
// Loom's Winograd mode (set_loom_winograd) for a scope.
struct LoomWinogradScope : SettingScope {
  explicit LoomWinogradScope(int mode) : SettingScope(loom::set_loom_winograd, mode) {}
};
}  // namespace

// Prediction with Winograd (the node's __winograd__ attribute; LOOM_CONV_WINOGRAD=1
// does the same for every node): the 3x3 stride-1 convolutions on images of at
// least 14x14 run by a Winograd algorithm (oneDNN's also on 7x7 for fewer than 4
// images), oneDNN's (AVX-512 only) or Loom's, within 1e-4 of a naive float64
// convolution relative to the largest output (the direct algorithm: 1e-5); the others, and
// every convolution bound without it, by the direct algorithm. Each case runs with
// Loom's kernel off (oneDNN's where it has one) and on for every CPU (oneDNN's where
// Loom's does not take the convolution and oneDNN has one). The cases cover
// the few-image channel pieces (halves, or none), items, a bias, and the cases that
// do not qualify or that oneDNN does not take.
TEST(OneDnn, WinogradPredictionMatchesNaiveLoops) {
  if (!loom::onednn_built()) GTEST_SKIP() << "built without oneDNN";
  KernelScope k(loom::CpuKernels::OneDnn);
  struct Case {
    int64_t n, c, h, f, s;
    bool bias, qualifies, loom_takes;
  };
  const Case cases[] = {
      {1, 16, 14, 32, 1, true, true, true},    // one image: two channel pieces (bands of rows on AVX-512)
      {1, 32, 16, 48, 1, false, true, true},   // 48 channels: not cut
      {2, 64, 14, 64, 1, true, true, true},
      {12, 16, 15, 32, 1, false, true, true},  // items of 2 images
      // items of 2 and a tail of 1: oneDNN's Winograd lays the weights out one way for 2
      // images and another for 1, so its direct algorithm runs for all of them
      {13, 16, 15, 16, 1, false, false, true},
      {4, 32, 13, 32, 1, true, false, false},  // 13x13 outputs: too few for Winograd on 4 images
      {1, 32, 7, 32, 1, true, true, false},    // 7x7 outputs: enough for oneDNN's on one image
      {4, 32, 7, 32, 1, true, false, false},
      {4, 32, 28, 32, 2, true, false, false},  // stride 2
  };
  uint32_t seed = 900;
  for (int mode : {0, 1})
  for (const Case &c : cases) {
    LoomWinogradScope scope(mode);
    for (bool wino : {true, false}) {
      SCOPED_TRACE("n" + std::to_string(c.n) + " c" + std::to_string(c.c) + " " + std::to_string(c.h) + " f" +
                   std::to_string(c.f) + " s" + std::to_string(c.s) + (wino ? " winograd" : " direct") +
                   (mode ? ", Loom's kernel" : ", oneDNN's"));
      // Where Loom's kernel does not take a convolution, oneDNN's Winograd runs if it
      // has one, but not on fewer than 4 images with 14 or more output rows: those
      // are cut into bands of rows on AVX-512, which run the direct algorithm.
      const int64_t rows = (c.h + 2 - 3) / c.s + 1;
      const bool onednns = c.qualifies && loom::onednn_avx512() && !(c.n < 4 && rows >= 14);
      const bool ran = wino && (mode ? c.loom_takes || onednns : onednns);
      std::vector<int64_t> xs{c.n, c.c, c.h, c.h}, ws{c.f, c.c, 3, 3};
      auto x = as_dtype(random_values(numel(xs), -1, 1, seed++), LOOM_DTYPE_FLOAT32);
      auto w = as_dtype(random_values(numel(ws), -1, 1, seed++), LOOM_DTYPE_FLOAT32);
      auto b = as_dtype(random_values(c.f, -1, 1, seed++), LOOM_DTYPE_FLOAT32);
      int64_t oh, ow;
      auto want = naive_conv2d(x, w, c.bias ? b : std::vector<double>{}, c.n, c.c, c.h, c.h, c.f, 3, 3, c.s, 1, 1,
                               1, 1, &oh, &ow);
      loom_symbol data = nullptr, conv = nullptr;
      ASSERT_EQ(loom_symbol_variable(&data, "data"), LOOM_OK);
      loom_op h = nullptr;
      ASSERT_EQ(loom_op_find(&h, "Convolution"), LOOM_OK);
      const std::string stride = "(" + std::to_string(c.s) + "," + std::to_string(c.s) + ")";
      const char *keys[] = {"kernel", "num_filter", "pad", "stride", "no_bias"};
      const std::string f = std::to_string(c.f);
      const char *vals[] = {"(3,3)", f.c_str(), "(1,1)", stride.c_str(), c.bias ? "false" : "true"};
      ASSERT_EQ(loom_symbol_create(&conv, h, "c", 1, &data, nullptr, 5, keys, vals), LOOM_OK) << loom_last_error();
      if (wino) {
        ASSERT_EQ(loom_symbol_set_attr(conv, "__winograd__", "True"), LOOM_OK);
      }
      const char *name = "data";
      int32_t nd = 4;
      loom_executor ex = nullptr;
      ASSERT_EQ(loom_executor_simple_bind(&ex, conv, LOOM_DEVICE_CPU, 0, 1, &name, &nd, xs.data(), nullptr, 0,
                                          nullptr, nullptr, LOOM_GRAD_NULL),
                LOOM_OK)
          << loom_last_error();
      auto put = [&](int i, const std::vector<double> &v) {
        loom_ndarray a = nullptr;
        ASSERT_EQ(loom_executor_get(&a, ex, LOOM_EXEC_ARGUMENT, i), LOOM_OK);
        Arr arr(a);
        std::vector<float> fv(v.begin(), v.end());
        ASSERT_EQ(loom_ndarray_copy_from_host(arr.h, fv.data(), fv.size() * sizeof(float)), LOOM_OK);
      };
      put(0, x);
      put(1, w);
      if (c.bias) put(2, b);
      const int64_t before = loom::onednn_winograd_calls(), misses = loom::onednn_planned_work_misses();
      ASSERT_EQ(loom_executor_forward(ex, 0), LOOM_OK) << loom_last_error();
      loom_ndarray out = nullptr;
      ASSERT_EQ(loom_executor_get(&out, ex, LOOM_EXEC_OUTPUT, 0), LOOM_OK);
      std::vector<double> got = read(Arr(out));
      // oneDNN 2.6 has Winograd convolutions for AVX-512 only; elsewhere its direct ones run.
      EXPECT_EQ(loom::onednn_winograd_calls() - before, ran ? 1 : 0) << "the algorithm that ran";
      EXPECT_EQ(loom::onednn_planned_work_misses(), misses) << "the planned work memory missed buffers";
      ASSERT_EQ(got.size(), want.size());
      double scale = 1, worst = 0;
      for (double v : want) scale = std::max(scale, std::fabs(v));
      for (size_t i = 0; i < want.size(); ++i) worst = std::max(worst, std::fabs(got[i] - want[i]) / scale);
      EXPECT_LE(worst, ran ? 1e-4 : 1e-5);
      loom_executor_free(ex);
      loom_symbol_free(conv);
      loom_symbol_free(data);
    }
  }
}

// Deconvolution rides on the convolution kernels (its forward pass is a
// convolution's data gradient): forward, data, weight and bias gradients
// against the reference kernels, including adj and target-free padding.
TEST(OneDnn, DeconvolutionMatchesReferenceKernels) {
  if (!loom::onednn_built()) GTEST_SKIP() << "built without oneDNN";
  struct D {
    int64_t n, c, h, w, f, k, s, p, a, g;
    bool bias;
  };
  uint32_t seed = 700;
  int taken = 0;
  for (const D &c : {D{2, 3, 5, 6, 4, 3, 1, 0, 0, 1, true}, D{3, 16, 7, 7, 32, 4, 2, 1, 0, 1, false},
                     D{4, 32, 6, 5, 16, 3, 2, 1, 1, 1, true}, D{2, 16, 8, 8, 32, 3, 2, 0, 1, 4, true},
                     D{9, 8, 4, 4, 8, 2, 2, 0, 0, 1, false}}) {
    std::string name = "n" + std::to_string(c.n) + " c" + std::to_string(c.c) + " f" + std::to_string(c.f) +
                       " k" + std::to_string(c.k) + " s" + std::to_string(c.s) + " p" + std::to_string(c.p) +
                       " adj" + std::to_string(c.a) + " g" + std::to_string(c.g);
    SCOPED_TRACE(name);
    auto tup = [](int64_t v) { return "(" + std::to_string(v) + "," + std::to_string(v) + ")"; };
    Params prm{{"kernel", tup(c.k)}, {"num_filter", std::to_string(c.f)}, {"stride", tup(c.s)},
               {"pad", tup(c.p)},    {"adj", tup(c.a)},                  {"num_group", std::to_string(c.g)},
               {"no_bias", c.bias ? "false" : "true"}};
    int64_t oh = (c.h - 1) * c.s - 2 * c.p + c.k + c.a, ow = (c.w - 1) * c.s - 2 * c.p + c.k + c.a;
    std::vector<int64_t> xs{c.n, c.c, c.h, c.w}, ws{c.c, c.f / c.g, c.k, c.k};
    auto x = as_dtype(random_values(numel(xs), -1, 1, seed++), LOOM_DTYPE_FLOAT32);
    auto w = as_dtype(random_values(numel(ws), -1, 1, seed++), LOOM_DTYPE_FLOAT32);
    auto b = as_dtype(random_values(c.f, -1, 1, seed++), LOOM_DTYPE_FLOAT32);
    auto hy = as_dtype(random_values(c.n * c.f * oh * ow, -1, 1, seed++), LOOM_DTYPE_FLOAT32);
    auto run = [&] {
      ConvResult r = run_with_grads("Deconvolution", prm, xs, ws, c.f, c.bias, x, w, b, hy);
      EXPECT_EQ(r.shape, (std::vector<int64_t>{c.n, c.f, oh, ow}));
      return r;
    };
    ConvResult ref, dnn;
    {
      KernelScope k(loom::CpuKernels::Reference);
      ref = run();
    }
    int64_t before = loom::onednn_conv_calls();
    {
      KernelScope k(loom::CpuKernels::OneDnn);
      dnn = run();
    }
    // As a convolution: num_filter input channels, C output channels.
    bool takes = loom::onednn_conv_takes(loom::ConvShape{c.n, c.f, oh, ow, c.c, c.g, c.k, c.k, c.s, c.s, c.p, c.p,
                                                         1, 1, c.h, c.w});
    taken += takes;
    EXPECT_EQ(loom::onednn_conv_calls() - before, takes ? 3 : 0) << "oneDNN did not compute all three passes";
    expect_matches_reference(dnn, ref, c.bias);
  }
  EXPECT_GE(taken, 2);
}

// The same call gives the same bits whatever runs beside it: the work split
// depends on the batch alone and oneDNN runs single-threaded in each piece.
TEST(OneDnn, ConvolutionBitsDoNotDependOnConcurrentCallers) {
  if (!loom::onednn_built()) GTEST_SKIP() << "built without oneDNN";
  KernelScope k(loom::CpuKernels::OneDnn);
  // items of images; one image in bands of rows (on AVX-512)
  for (ConvCase c : {ConvCase{13, 32, 9, 9, 48, 3, 3, 1, 1, 1, 1, true, false},
                     ConvCase{1, 32, 30, 30, 48, 3, 3, 1, 1, 1, 1, true, false}}) {
    SCOPED_TRACE(c.name());
    auto x = random_values(numel(c.xshape()), -1, 1, 601), w = random_values(numel(c.wshape()), -1, 1, 602),
         b = random_values(c.f, -1, 1, 603);
    auto hy = random_values(c.n * c.f * c.h * c.w, -1, 1, 604);
    ConvResult alone = run_conv(c, x, w, b, hy);
    std::vector<ConvResult> got(3);
    std::vector<std::thread> ts;
    for (int t = 0; t < 3; ++t) ts.emplace_back([&, t] { got[t] = run_conv(c, x, w, b, hy); });
    for (auto &t : ts) t.join();
    for (const auto &r : got) {
      EXPECT_EQ(r.y, alone.y);
      EXPECT_EQ(r.dx, alone.dx);
      EXPECT_EQ(r.dw, alone.dw);
    }
  }
}

TEST(OneDnn, KernelSetIsReportedAndSwitchable) {
  const char *d = nullptr;
  ASSERT_EQ(loom_backend_describe(&d, LOOM_DEVICE_CPU), LOOM_OK);
  std::string text(d);
  EXPECT_NE(text.find(loom::cpu_kernels() == loom::CpuKernels::OneDnn ? "kernels: onednn" : "kernels: reference"),
            std::string::npos)
      << text;
  if (loom::onednn_built()) {
    KernelScope k(loom::CpuKernels::OneDnn);
    ASSERT_EQ(loom_backend_describe(&d, LOOM_DEVICE_CPU), LOOM_OK);
    EXPECT_NE(std::string(d).find("kernels: onednn 2."), std::string::npos) << d;
  }
  {
    KernelScope k(loom::CpuKernels::Reference);
    EXPECT_NE(std::string(loom::cpu_kernels_describe()).find("reference"), std::string::npos);
    ASSERT_EQ(loom_backend_describe(&d, LOOM_DEVICE_CPU), LOOM_OK);
    EXPECT_NE(std::string(d).find("reference"), std::string::npos) << d;
  }
  if (!loom::onednn_built()) {
    EXPECT_THROW(loom::set_cpu_kernels(loom::CpuKernels::OneDnn), std::exception);
  }
}

// float64 stays with the reference kernels (oneDNN has no f64 convolution).
TEST(OneDnn, Float64ConvolutionUsesTheReferenceKernel) {
  if (!loom::onednn_built()) GTEST_SKIP() << "built without oneDNN";
  KernelScope k(loom::CpuKernels::OneDnn);
  int64_t before = loom::onednn_conv_calls();
  Arr X = make({2, 3, 6, 6}, random_values(216, -1, 1, 610), LOOM_DTYPE_FLOAT64);
  Arr W = make({4, 3, 3, 3}, random_values(108, -1, 1, 611), LOOM_DTYPE_FLOAT64);
  Arr y = call("Convolution", {&X, &W}, {{"kernel", "(3,3)"}, {"num_filter", "4"}, {"no_bias", "true"}});
  EXPECT_EQ(dtype_of(y), LOOM_DTYPE_FLOAT64);
  EXPECT_EQ(loom::onednn_conv_calls(), before);
}

// Predictions keep the reordered weights on the weight's var: a second call
// reorders nothing and gives the same bits; a write (copy into the array) makes
// the next call reorder again and compute with the new values. Both the
// batch-of-images path and the one-image channel-pieces path.
TEST(OneDnn, PredictionKeepsReorderedWeightsUntilTheyAreWritten) {
  if (!loom::onednn_built()) GTEST_SKIP() << "built without oneDNN";
  KernelScope k(loom::CpuKernels::OneDnn);
  for (int64_t n : {1, 6}) {
    ConvCase c{n, 16, 8, 8, 64, 3, 3, 1, 1, 1, 1, false, false};
    Arr X = make(c.xshape(), random_values(numel(c.xshape()), -1, 1, 620));
    auto w0 = random_values(numel(c.wshape()), -1, 1, 621), w1 = random_values(numel(c.wshape()), -1, 1, 622);
    Arr W = make(c.wshape(), w0);
    int64_t before = loom::onednn_weight_reorders();
    auto y0 = read(call("Convolution", {&X, &W}, c.params()));
    EXPECT_EQ(loom::onednn_weight_reorders(), before + 1) << c.name();
    EXPECT_EQ(read(call("Convolution", {&X, &W}, c.params())), y0) << c.name();
    EXPECT_EQ(loom::onednn_weight_reorders(), before + 1) << c.name() << ": the kept weights were not used";
    std::vector<float> f1(w1.begin(), w1.end());
    ASSERT_EQ(loom_ndarray_copy_from_host(W.h, f1.data(), f1.size() * sizeof(float)), LOOM_OK);
    auto y1 = read(call("Convolution", {&X, &W}, c.params()));
    EXPECT_EQ(loom::onednn_weight_reorders(), before + 2) << c.name();
    Arr Fresh = make(c.wshape(), w1);
    EXPECT_EQ(y1, read(call("Convolution", {&X, &Fresh}, c.params()))) << c.name() << ": stale weights used";
    EXPECT_NE(y1, y0);
  }
}

// LRN in the oneDNN kernel set (4-D float32) against the reference kernels, forward
// and gradient, within 1e-5 relative to the largest value, over window sizes,
// channel counts on and off oneDNN's 16-channel blocks, extents and parameters;
// oneDNN computed every pass it was given, and its bits do not depend on how the
// images are spread over the threads (one image alone gives the same values).
TEST(OneDnn, LrnMatchesReferenceKernels) {
  if (!loom::onednn_built()) GTEST_SKIP() << "built without oneDNN";
  struct Case {
    int64_t n, c, h, w, nsize;
    const char *alpha, *beta, *knorm;
  };
  const Case cases[] = {
      {2, 5, 3, 3, 3, "0.001", "0.75", "2"},  {3, 16, 7, 5, 5, "0.0001", "0.75", "2"},
      {2, 32, 5, 6, 3, "0.01", "0.75", "2"},  // a window of 3: the reference kernels
      {2, 32, 5, 6, 5, "0.01", "0.75", "2"},
      {2, 20, 6, 6, 5, "0.5", "0.6", "1.5"},  {1, 96, 13, 13, 5, "1", "0.75", "1"},
      {4, 3, 9, 4, 1, "2", "0.4", "0.5"},      {2, 33, 4, 8, 7, "0.3", "1.2", "3"},
  };
  uint32_t seed = 1300;
  for (const Case &c : cases) {
    SCOPED_TRACE("n" + std::to_string(c.n) + " c" + std::to_string(c.c) + " " + std::to_string(c.h) + "x" +
                 std::to_string(c.w) + " nsize " + std::to_string(c.nsize));
    std::vector<int64_t> shape{c.n, c.c, c.h, c.w};
    auto x = as_dtype(random_values(numel(shape), -2, 2, seed++), LOOM_DTYPE_FLOAT32);
    auto hy = as_dtype(random_values(numel(shape), -1, 1, seed++), LOOM_DTYPE_FLOAT32);
    const Params params{{"nsize", std::to_string(c.nsize)}, {"alpha", c.alpha}, {"beta", c.beta}, {"knorm", c.knorm}};
    auto run = [&](loom::CpuKernels kernels, int64_t images) {
      KernelScope k(kernels);
      std::vector<int64_t> s = shape;
      s[0] = images;
      const size_t count = static_cast<size_t>(numel(s));
      std::vector<double> xs(x.begin(), x.begin() + count), hs(hy.begin(), hy.begin() + count);
      Arr X = make(s, xs, LOOM_DTYPE_FLOAT32), dX = make(s, std::vector<double>(count, 0), LOOM_DTYPE_FLOAT32);
      EXPECT_EQ(loom_autograd_mark_variables(&X.h, &dX.h, nullptr, 1), LOOM_OK);
      int32_t prev = 0;
      loom_autograd_set_recording(&prev, 1);
      std::vector<const Arr *> ins{&X};
      std::vector<Arr> outs;
      EXPECT_EQ(invoke("LRN", ins, params, &outs), LOOM_OK) << loom_last_error();
      loom_autograd_set_recording(nullptr, prev);
      Arr HY = make(s, hs, LOOM_DTYPE_FLOAT32);
      loom_ndarray head = outs[0].h, hg = HY.h;
      EXPECT_EQ(loom_autograd_backward(&head, &hg, 1), LOOM_OK) << loom_last_error();
      return std::make_pair(read(outs[0]), read(dX));
    };
    auto ref = run(loom::CpuKernels::Reference, c.n);
    const int64_t before = loom::onednn_lrn_calls();
    auto dnn = run(loom::CpuKernels::OneDnn, c.n);
    // oneDNN's fast kernels take a window of 5 over channels in whole 16-channel blocks
    // (the NCHW forward kernel: multiples of 8); the others run the reference kernels.
    // Without AVX-512 oneDNN 2.6's nChw16c backward pass is its reference kernel: Loom's runs.
    EXPECT_EQ(loom::onednn_lrn_calls() - before, c.c % 16 == 0 && c.nsize == 5 ? (loom::onednn_avx512() ? 2 : 1) : 0)
        << "the passes oneDNN computed";
    expect_near_rel(dnn.first, ref.first, "forward vs reference kernel");
    expect_near_rel(dnn.second, ref.second, "gradient vs reference kernel");
    auto one = run(loom::CpuKernels::OneDnn, 1);
    const size_t plane = static_cast<size_t>(c.c * c.h * c.w);
    EXPECT_EQ(one.first, std::vector<double>(dnn.first.begin(), dnn.first.begin() + plane));
    EXPECT_EQ(one.second, std::vector<double>(dnn.second.begin(), dnn.second.begin() + plane));
  }
}

// ---- Blocked data (TBlob::blocked: nChw16c, or nChw8c on AVX2), as executors keep it
namespace {

// The blocked layout's width for a scope: each test below runs its kernels with
// both widths, whichever the CPU would pick.
struct BlockScope : SettingScope {
  explicit BlockScope(int block) : SettingScope(loom::set_onednn_block, block) {}
};
const int kBlocks[] = {16, 8};

// An op's kernel called directly on float32 buffers, each plain or blocked.
struct Buf {
  std::vector<int64_t> shape;
  std::vector<float> v;
  bool blocked = false;
  bool last = false;  // with blocked: channels last instead
  loom::TBlob blob() {
    loom::TBlob b;
    b.dptr = v.data();
    b.shape = loom::Shape::from(shape);
    b.dtype = LOOM_DTYPE_FLOAT32;
    b.blocked = blocked;
    b.last = last;
    return b;
  }
};
Buf buf(const std::vector<int64_t> &shape, const std::vector<double> &values) {
  Buf b{shape, std::vector<float>(values.begin(), values.end()), false};
  return b;
}
// The same values in the blocked layout, and back.
Buf to_blocked(const Buf &b) {
  Buf r = b;
  loom::onednn_blocked_layout(b.v.data(), r.v.data(), b.shape[0], b.shape[1], b.shape[2], b.shape[3], true);
  r.blocked = true;
  return r;
}
std::vector<float> plain_values(const Buf &b) {
  if (!b.blocked) return b.v;
  std::vector<float> r(b.v.size());
  if (b.last) {
    loom::onednn_channels_last_layout(b.v.data(), r.data(), b.shape[0], b.shape[1], b.shape[2], b.shape[3], false);
    return r;
  }
  loom::onednn_blocked_layout(b.v.data(), r.data(), b.shape[0], b.shape[1], b.shape[2], b.shape[3], false);
  return r;
}
loom::Params op_params(const loom::OpDef &op, const Params &kv) {
  std::vector<const char *> k, v;
  for (auto &p : kv) k.push_back(p.first.c_str()), v.push_back(p.second.c_str());
  return loom::Params(op, k.data(), v.data(), static_cast<int32_t>(kv.size()));
}
// The same bits, except that any NaN equals any NaN: which operand's NaN an addition
// passes on (and so its sign) depends on the order the compiler gave the operands,
// which differs between builds of one loop (AVX2 against AVX-512).
void expect_same_bits(const std::vector<float> &a, const std::vector<float> &b, const std::string &what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  size_t bad = 0;
  for (size_t i = 0; i < a.size(); ++i)
    bad += !(std::isnan(a[i]) && std::isnan(b[i])) && std::memcmp(&a[i], &b[i], sizeof(float)) != 0;
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << a.size() << " values differ";
}

// BatchNorm's forward and backward passes on `x`, plain or blocked: the output,
// data gradient, gamma and beta gradients, the moving statistics after the
// backward pass and the mean and inverse-deviation outputs, all as plain values.
// With `relu`, fused with the relu after it as a training executor runs it
// (OpContext::relu_after: the output is the relu's, `hy` the relu's output gradient).
std::vector<std::vector<float>> batchnorm_pass(const Params &kv, bool train, const Buf &x0, bool blocked,
                                               const std::vector<double> &gamma, const std::vector<double> &hy,
                                               bool relu) {
  const loom::OpDef &op = loom::Registry::get().lookup("BatchNorm");
  const loom::Params p = op_params(op, kv);
  const int64_t c = x0.shape[1];
  Buf x = blocked ? to_blocked(x0) : x0, dy = buf(x0.shape, hy);
  if (blocked) dy = to_blocked(dy);
  Buf g = buf({c}, gamma), beta = buf({c}, random_values(c, -1, 1, 5)), mm = buf({c}, random_values(c, -1, 1, 6)),
      mv = buf({c}, random_values(c, 0.5, 2, 7)), y{x.shape, std::vector<float>(x.v.size()), blocked},
      mean{{c}, std::vector<float>(c)}, inv{{c}, std::vector<float>(c)},
      dx{x.shape, std::vector<float>(x.v.size()), blocked}, dg{{c}, std::vector<float>(c)},
      db{{c}, std::vector<float>(c)};
  loom::OpContext ctx;
  ctx.is_train = train;
  ctx.relu_after = relu;
  loom::BlobList in{x.blob(), g.blob(), beta.blob(), mm.blob(), mv.blob()};
  loom::BlobList out{y.blob(), mean.blob(), inv.blob()};
  op.compute(ctx, p, in, out);
  loom::ReqList req{loom::kWriteTo, loom::kWriteTo, loom::kWriteTo, loom::kNullOp, loom::kNullOp};
  op.backward(ctx, p, in, out, loom::BlobList{dy.blob()}, loom::BlobList{dx.blob(), dg.blob(), db.blob(), {}, {}},
              req);
  return {plain_values(y), plain_values(dx), dg.v, db.v, mm.v, mv.v, mean.v, inv.v, g.v};
}

}  // namespace

// BatchNorm's kernels for blocked data (blocks of 16 and of 8 channels) give each
// channel the bits of the NCHW kernels: training and prediction, fix_gamma,
// use_global_stats, alone and fused with the relu after it (both passes),
// positions per channel that fill 8 lanes with and without a remainder, one and
// several blocks and one image or several.
TEST(OneDnn, BlockedBatchNormHasThePlainBits) {
  if (!loom::onednn_built()) GTEST_SKIP() << "built without oneDNN";
  const char *names[] = {"out", "data gradient", "gamma gradient", "beta gradient", "moving mean",
                         "moving var",  "mean output",  "inverse deviation", "gamma"};
  for (int block : kBlocks)
  for (auto shape : {std::vector<int64_t>{2, 16, 7, 7}, {3, 32, 5, 3}, {1, 48, 4, 4}, {4, 16, 1, 1}, {2, 24, 5, 5},
                     {1, 8, 3, 9}})
    for (bool train : {true, false})
      for (const char *fix : {"false", "true"})
        for (const char *global : {"false", "true"})
          for (bool relu : {false, true}) {
            if (shape[1] % block) continue;
            BlockScope scope(block);
            const Params kv{{"fix_gamma", fix}, {"use_global_stats", global}, {"eps", "0.001"},
                            {"momentum", "0.8"}, {"output_mean_var", "true"}};
            const int64_t n = shape[0] * shape[1] * shape[2] * shape[3];
            const Buf x = buf(shape, random_values(n, -3, 5, static_cast<uint32_t>(n)));
            const auto gamma = random_values(shape[1], 0.5, 1.5, 3), hy = random_values(n, -1, 1, 4);
            SCOPED_TRACE("block " + std::to_string(block) + " shape " + std::to_string(shape[0]) + "x" + std::to_string(shape[1]) + "x" +
                         std::to_string(shape[2]) + "x" + std::to_string(shape[3]) + (train ? " training" : " prediction") +
                         " fix_gamma " + fix + " use_global_stats " + global + (relu ? " fused with a relu" : ""));
            auto plain = batchnorm_pass(kv, train, x, false, gamma, hy, relu);
            auto blocked = batchnorm_pass(kv, train, x, true, gamma, hy, relu);
            for (size_t k = 0; k < plain.size(); ++k) expect_same_bits(blocked[k], plain[k], names[k]);
          }
}

// A Convolution given blocked data, output or gradients (blocks of 16 and of 8
// channels): through oneDNN without
// its reorders, and where oneDNN does not take it (groups of 8 channels) through
// the reference kernels on plain copies: the plain call's bits either way.
TEST(OneDnn, BlockedConvolutionHasThePlainBits) {
  if (!loom::onednn_built()) GTEST_SKIP() << "built without oneDNN";
  KernelScope k(loom::CpuKernels::OneDnn);
  const loom::OpDef &op = loom::Registry::get().lookup("Convolution");
  struct Case {
    int64_t n, c, h, f, k, s, g;
  };
  for (int block : kBlocks)
  for (Case cs : {Case{3, 16, 9, 32, 3, 1, 1}, Case{2, 32, 8, 16, 1, 2, 1}, Case{2, 16, 6, 16, 3, 1, 2},
                  Case{2, 24, 6, 8, 3, 1, 1}}) {
    if (cs.c % block || cs.f % block) continue;  // 24 and 8 channels: blocks of 8 only, on the reference kernels
    BlockScope scope(block);
    const Params kv{{"kernel", "(" + std::to_string(cs.k) + "," + std::to_string(cs.k) + ")"},
                    {"stride", "(" + std::to_string(cs.s) + "," + std::to_string(cs.s) + ")"},
                    {"pad", "(" + std::to_string(cs.k / 2) + "," + std::to_string(cs.k / 2) + ")"},
                    {"num_filter", std::to_string(cs.f)}, {"num_group", std::to_string(cs.g)},
                    {"no_bias", cs.g == 1 ? "false" : "true"}};  // the bias gradient sums a blocked dY
    const loom::Params p = op_params(op, kv);
    const int64_t oh = (cs.h + 2 * (cs.k / 2) - cs.k) / cs.s + 1;
    const std::vector<int64_t> xs{cs.n, cs.c, cs.h, cs.h}, ys{cs.n, cs.f, oh, oh};
    const Buf x = buf(xs, random_values(cs.n * cs.c * cs.h * cs.h, -1, 1, 11)),
              w = buf({cs.f, cs.c / cs.g, cs.k, cs.k}, random_values(cs.f * cs.c / cs.g * cs.k * cs.k, -1, 1, 12)),
              hy = buf(ys, random_values(cs.n * cs.f * oh * oh, -1, 1, 13)), bias = buf({cs.f}, random_values(cs.f, -1, 1, 14));
    const bool has_bias = cs.g == 1;
    std::vector<std::vector<float>> want;
    for (int mask = 0; mask < 4; ++mask) {  // bit 0: data and its gradient blocked; bit 1: output and its gradient
      SCOPED_TRACE("block " + std::to_string(block) + " c" + std::to_string(cs.c) + " f" + std::to_string(cs.f) + " groups " + std::to_string(cs.g) +
                   " layouts " + std::to_string(mask));
      Buf xi = mask & 1 ? to_blocked(x) : x, dyi = mask & 2 ? to_blocked(hy) : hy, wi = w;
      Buf y{ys, std::vector<float>(hy.v.size()), (mask & 2) != 0}, dx{xs, std::vector<float>(x.v.size()), (mask & 1) != 0},
          dw{w.shape, std::vector<float>(w.v.size())}, db{{cs.f}, std::vector<float>(cs.f)};
      loom::OpContext ctx;
      ctx.is_train = true;
      loom::BlobList in{xi.blob(), wi.blob()}, grads{dx.blob(), dw.blob()};
      loom::ReqList req{loom::kWriteTo, loom::kWriteTo};
      Buf bi = bias;
      if (has_bias) in.push_back(bi.blob()), grads.push_back(db.blob()), req.push_back(loom::kWriteTo);
      op.compute(ctx, p, in, loom::BlobList{y.blob()});
      op.backward(ctx, p, in, loom::BlobList{y.blob()}, loom::BlobList{dyi.blob()}, grads, req);
      std::vector<std::vector<float>> got{plain_values(y), plain_values(dx), dw.v, db.v};
      if (mask == 0) {
        want = got;
        continue;
      }
      expect_same_bits(got[0], want[0], "output");
      expect_same_bits(got[1], want[1], "data gradient");
      expect_same_bits(got[2], want[2], "weight gradient");
      expect_same_bits(got[3], want[3], "bias gradient");
    }
  }
}

// Pooling given blocked data (blocks of 16 and of 8 channels; a training or
// prediction executor keeps it blocked between the steps around it): each channel
// gets the bits of the NCHW kernels in both passes. Max, average (padding counted and not) and sum; 2x2, 3x3 and other
// windows, strides and paddings, the full convention (windows past the padded
// input), padding wider than the window (windows with no cell), global pooling;
// values with ties, NaN, infinities and float's lowest value.
TEST(OneDnn, BlockedPoolingHasThePlainBits) {
  if (!loom::onednn_built()) GTEST_SKIP() << "built without oneDNN";
  const loom::OpDef &op = loom::Registry::get().lookup("Pooling");
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN(),
              lowest = std::numeric_limits<float>::lowest();
  const std::vector<Params> cases = {
      {{"kernel", "(3,3)"}, {"stride", "(2,2)"}, {"pad", "(1,1)"}, {"pool_type", "max"}},
      {{"kernel", "(2,2)"}, {"stride", "(2,2)"}, {"pool_type", "max"}},
      {{"kernel", "(3,3)"}, {"stride", "(1,1)"}, {"pad", "(1,1)"}, {"pool_type", "max"}},
      {{"kernel", "(5,4)"}, {"stride", "(2,3)"}, {"pad", "(2,1)"}, {"pool_type", "max"},
       {"pooling_convention", "full"}},
      {{"kernel", "(1,1)"}, {"stride", "(2,2)"}, {"pad", "(1,1)"}, {"pool_type", "max"}},
      {{"kernel", "(1,1)"}, {"global_pool", "true"}, {"pool_type", "max"}},
      {{"kernel", "(3,3)"}, {"stride", "(2,2)"}, {"pad", "(1,1)"}, {"pool_type", "avg"}},
      {{"kernel", "(3,3)"}, {"stride", "(2,2)"}, {"pad", "(1,1)"}, {"pool_type", "avg"},
       {"count_include_pad", "false"}},
      {{"kernel", "(3,2)"}, {"stride", "(2,2)"}, {"pad", "(1,0)"}, {"pool_type", "avg"},
       {"pooling_convention", "full"}},
      {{"kernel", "(2,2)"}, {"stride", "(1,1)"}, {"pool_type", "sum"}},
      {{"kernel", "(1,1)"}, {"global_pool", "true"}, {"pool_type", "avg"}},
  };
  for (int block : kBlocks)
  for (auto shape : {std::vector<int64_t>{2, 16, 7, 7}, {1, 32, 9, 8}, {3, 16, 4, 5}, {2, 24, 5, 6}})
    for (size_t ci = 0; ci < cases.size(); ++ci)
      for (bool special : {false, true}) {
        if (shape[1] % block) continue;
        BlockScope scope(block);
        const loom::Params p = op_params(op, cases[ci]);
        const int64_t n = shape[0] * shape[1] * shape[2] * shape[3];
        // Few distinct values, so windows hold ties; then NaN, infinities and lowest here and there.
        std::vector<double> v = random_values(n, -3, 3, static_cast<uint32_t>(n + ci));
        for (auto &e : v) e = std::round(e);
        if (special)
          for (int64_t i = 0; i < n; i += 3) v[i] = i % 4 == 0 ? nan : i % 4 == 1 ? -inf : i % 4 == 2 ? lowest : inf;
        const Buf x = buf(shape, v);
        loom::ShapeList os(1);
        loom::DTypeList ot(1);
        op.infer(p, loom::ShapeList{loom::Shape::from(shape)}, loom::DTypeList{LOOM_DTYPE_FLOAT32}, os, ot);
        std::vector<int64_t> ys(os[0].d, os[0].d + 4);
        const Buf hy = buf(ys, random_values(os[0].size(), -1, 1, 17));
        SCOPED_TRACE("block " + std::to_string(block) + " case " + std::to_string(ci) + " shape " + std::to_string(shape[0]) + "x" +
                     std::to_string(shape[1]) + "x" + std::to_string(shape[2]) + "x" + std::to_string(shape[3]) +
                     (special ? " with NaN, infinities and lowest" : ""));
        std::vector<std::vector<float>> want;
        for (bool blocked : {false, true}) {
          Buf xi = blocked ? to_blocked(x) : x, dyi = blocked ? to_blocked(hy) : hy;
          Buf y{ys, std::vector<float>(hy.v.size()), blocked}, dx{shape, std::vector<float>(x.v.size(), 7.0f), blocked};
          loom::OpContext ctx;
          ctx.is_train = true;
          loom::BlobList in{xi.blob()};
          op.compute(ctx, p, in, loom::BlobList{y.blob()});
          op.backward(ctx, p, in, loom::BlobList{y.blob()}, loom::BlobList{dyi.blob()}, loom::BlobList{dx.blob()},
                      loom::ReqList{loom::kWriteTo});
          std::vector<std::vector<float>> got{plain_values(y), plain_values(dx)};
          if (!blocked) {
            want = got;
            continue;
          }
          expect_same_bits(got[0], want[0], "output");
          expect_same_bits(got[1], want[1], "data gradient");
        }
        // Blocked data, the output in channels last (a prediction executor's, read by
        // convolutions in bands of rows), and plain where it reads the same (1x1 outputs).
        const Buf xb = to_blocked(x);
        for (bool last : {true, false}) {
          if (!last && !(ys[2] == 1 && ys[3] == 1)) continue;
          Buf y{ys, std::vector<float>(hy.v.size(), 7.0f), last, last};
          loom::OpContext ctx;
          Buf xi = xb;
          op.compute(ctx, p, loom::BlobList{xi.blob()}, loom::BlobList{y.blob()});
          expect_same_bits(plain_values(y), want[0], last ? "output in channels last" : "plain 1x1 output");
        }
        // Channels last is an output's alone: data or gradients in it are refused.
        Buf xl = xb, y{ys, std::vector<float>(hy.v.size()), true}, dyl = to_blocked(hy),
            dx{shape, std::vector<float>(x.v.size()), true};
        xl.last = true;
        loom::OpContext ctx;
        EXPECT_THROW(op.compute(ctx, p, loom::BlobList{xl.blob()}, loom::BlobList{y.blob()}), loom::Error);
        dyl.last = true;
        Buf xi = xb;
        EXPECT_THROW(op.backward(ctx, p, loom::BlobList{xi.blob()}, loom::BlobList{y.blob()}, loom::BlobList{dyl.blob()},
                                 loom::BlobList{dx.blob()}, loom::ReqList{loom::kWriteTo}),
                     loom::Error);
      }
}

// A 3x3 stride-1 convolution of the Winograd tests: n images of c channels, h x w,
// f filters, padding ph and pw.
struct WinoCase {
  int64_t n, c, h, w, f, ph, pw;
  int64_t oh() const { return h + 2 * ph - 2; }
  int64_t ow() const { return w + 2 * pw - 2; }
  loom::ConvShape shape() const { return {n, c, h, w, f, 1, 3, 3, 1, 1, ph, pw, 1, 1, oh(), ow()}; }
};

// Loom's Winograd kernels called directly (set_loom_winograd(1) is not needed for
// that), F(4x4,3x3) within 1e-4 and F(2x2,3x3) within 1e-5 of a naive float64
// convolution relative to the largest value, with each part of the epilogue (a bias; scale and shift; an addend; the sum with what
// the output holds; after_add; MXNet's relu, which passes NaN through) and with the
// data and the output each plain or blocked, in both widths. The shapes have odd
// sizes, paddings 0 to 2, chunks of tiles with a shorter last one, and single images
// whose output channels are cut into 2 and 4 pieces.
TEST(OneDnn, LoomWinogradMatchesNaiveLoops) {
  if (!loom::onednn_built()) GTEST_SKIP() << "built without oneDNN";
  KernelScope k(loom::CpuKernels::OneDnn);
  const WinoCase cases[] = {{1, 16, 14, 14, 32, 1, 1}, {2, 16, 15, 13, 16, 1, 1}, {3, 32, 9, 11, 48, 0, 0},
                            {1, 64, 28, 28, 64, 1, 1}, {1, 16, 10, 10, 128, 1, 1}, {5, 16, 14, 13, 16, 2, 1},
                            {40, 16, 16, 16, 16, 1, 1}, {1, 256, 9, 10, 16, 1, 1}};
  uint32_t seed = 4200;
  int ran = 0;
  double most[2] = {0, 0};
  for (const WinoCase &c : cases) {
    const int64_t oh = c.oh(), ow = c.ow();
    const loom::ConvShape s = c.shape();
    const std::vector<int64_t> xs{c.n, c.c, c.h, c.w}, ys{c.n, c.f, oh, ow};
    auto x = as_dtype(random_values(numel(xs), -1, 1, seed++), LOOM_DTYPE_FLOAT32);
    auto w = as_dtype(random_values(c.f * c.c * 9, -1, 1, seed++), LOOM_DTYPE_FLOAT32);
    auto b = as_dtype(random_values(c.f, -1, 1, seed++), LOOM_DTYPE_FLOAT32);
    auto scale = as_dtype(random_values(c.f, 0.5, 2, seed++), LOOM_DTYPE_FLOAT32);
    auto shift = as_dtype(random_values(c.f, -1, 1, seed++), LOOM_DTYPE_FLOAT32);
    auto addend = as_dtype(random_values(numel(ys), -4, 4, seed++), LOOM_DTYPE_FLOAT32);
    auto before = as_dtype(random_values(numel(ys), -4, 4, seed++), LOOM_DTYPE_FLOAT32);
    auto after = as_dtype(random_values(numel(ys), -4, 4, seed++), LOOM_DTYPE_FLOAT32);
    after[numel(ys) / 3] = std::nan("");
    int64_t h2, w2;
    const auto conv = naive_conv2d(x, w, {}, c.n, c.c, c.h, c.w, c.f, 3, 3, 1, c.ph, c.pw, 1, 1, &h2, &w2);
    ASSERT_EQ(h2 * w2, oh * ow);
    const std::vector<float> wf(w.begin(), w.end()), bf(b.begin(), b.end()), sf(scale.begin(), scale.end()),
        tf(shift.begin(), shift.end());
    // 0: a bias; 1: scale and shift, an addend, relu; 2: a bias, the sum, after_add, relu; 3: scale and shift, the sum
    for (int tile : {4, 2})
    for (int variant = 0; variant < 4; ++variant)
      for (int block : kBlocks)
        for (int lay = 0; lay < 4; ++lay) {
          if (block == 8 && lay == 0) continue;  // plain data and output: once
          BlockScope bs(block);
          SettingScope ts(loom::set_loom_winograd_tile, tile);
          SCOPED_TRACE("tile " + std::to_string(tile) + " n" + std::to_string(c.n) + " c" + std::to_string(c.c) + " " + std::to_string(c.h) + "x" +
                       std::to_string(c.w) + " f" + std::to_string(c.f) + " pad " + std::to_string(c.ph) +
                       std::to_string(c.pw) + " variant " + std::to_string(variant) + " block " +
                       std::to_string(block) + " layouts " + std::to_string(lay));
          const bool bias = variant == 0 || variant == 2, ss = variant == 1 || variant == 3;
          loom::ConvEpilogue ep;
          ep.src_blocked = lay & 1;
          ep.dst_blocked = lay & 2;
          auto out_layout = [&](const std::vector<double> &v) {
            Buf r = buf(ys, v);
            return ep.dst_blocked ? to_blocked(r) : r;
          };
          Buf xb = buf(xs, x), yb = out_layout(before), ab = out_layout(addend), fb = out_layout(after);
          if (ep.src_blocked) xb = to_blocked(xb);
          if (ss) ep.scale = sf.data(), ep.shift = tf.data();
          if (variant == 1) ep.addend = ab.v.data();
          ep.sum = variant >= 2;
          if (variant == 2) ep.after_add = fb.v.data();
          ep.relu = variant == 1 || variant == 2;
          loom::loom_winograd_forward(s, xb.v.data(), wf.data(), bias ? bf.data() : nullptr, yb.v.data(), nullptr,
                                      ep);
          const std::vector<float> got = plain_values(yb);
          double scale_max = 1, worst = 0;
          std::vector<double> want(conv.size());
          for (size_t i = 0; i < conv.size(); ++i) {
            const int64_t f = static_cast<int64_t>(i) / (oh * ow) % c.f;
            double v = conv[i] + (bias ? b[f] : 0.0);
            if (ss) v = v * scale[f] + shift[f];
            if (variant == 1) v += addend[i];
            if (ep.sum) v += before[i];
            if (variant == 2) v += after[i];
            if (ep.relu && !(v > 0) && v == v) v = 0;
            want[i] = v;
            if (v == v) scale_max = std::max(scale_max, std::fabs(v));
          }
          for (size_t i = 0; i < want.size(); ++i) {
            if (want[i] != want[i]) {
              EXPECT_TRUE(std::isnan(got[i])) << "NaN in after_add at " << i;
              continue;
            }
            worst = std::max(worst, std::fabs(got[i] - want[i]) / scale_max);
          }
          EXPECT_LE(worst, tile == 4 ? 1e-4 : 1e-5);
          most[tile == 4] = std::max(most[tile == 4], worst);
          ++ran;
        }
  }
  EXPECT_EQ(ran, 8 * 2 * 4 * 7);
  std::printf("worst error relative to the largest output: 2x2 tiles %.2g, 4x4 tiles %.2g\n", most[0], most[1]);
}

// The weight gradient by Loom's Winograd tiles against naive float64 sums over the
// batch, in both tiles, with x and dy each plain or blocked in both widths, in one
// pass of the tiles and in passes of 16 tiles (a shorter last one): F(4x4,3x3)
// within 1e-4 and F(2x2,3x3) within 1e-5 relative to the largest value. Shapes with
// odd sizes, 7x7 outputs, paddings 0 to 2 and more output than input channels.
TEST(OneDnn, LoomWinogradWeightGradientMatchesNaiveLoops) {
  if (!loom::onednn_built()) GTEST_SKIP() << "built without oneDNN";
  KernelScope k(loom::CpuKernels::OneDnn);
  const WinoCase cases[] = {{1, 16, 7, 7, 16, 1, 1},   {2, 16, 15, 13, 32, 1, 1}, {3, 32, 9, 11, 48, 0, 0},
                            {5, 16, 14, 13, 16, 2, 1}, {40, 16, 16, 16, 16, 1, 1}, {2, 64, 9, 9, 32, 1, 0}};
  uint32_t seed = 5200;
  int ran = 0;
  double most[2] = {0, 0};
  for (const WinoCase &c : cases) {
    const int64_t oh = c.oh(), ow = c.ow();
    const loom::ConvShape s = c.shape();
    const std::vector<int64_t> xs{c.n, c.c, c.h, c.w}, ys{c.n, c.f, oh, ow};
    const auto x = as_dtype(random_values(numel(xs), -1, 1, seed++), LOOM_DTYPE_FLOAT32);
    const auto dy = as_dtype(random_values(numel(ys), -1, 1, seed++), LOOM_DTYPE_FLOAT32);
    std::vector<double> want(static_cast<size_t>(c.f * c.c * 9), 0.0);
    double scale_max = 1e-30;
    for (int64_t f = 0; f < c.f; ++f)
      for (int64_t ch = 0; ch < c.c; ++ch)
        for (int r = 0; r < 3; ++r)
          for (int q = 0; q < 3; ++q) {
            double acc = 0;
            for (int64_t n = 0; n < c.n; ++n)
              for (int64_t oy = 0; oy < oh; ++oy)
                for (int64_t ox = 0; ox < ow; ++ox) {
                  const int64_t iy = oy + r - c.ph, ix = ox + q - c.pw;
                  if (iy < 0 || iy >= c.h || ix < 0 || ix >= c.w) continue;
                  acc += dy[((n * c.f + f) * oh + oy) * ow + ox] * x[((n * c.c + ch) * c.h + iy) * c.w + ix];
                }
            want[((f * c.c + ch) * 3 + r) * 3 + q] = acc;
            scale_max = std::max(scale_max, std::fabs(acc));
          }
    for (int tile : {4, 2})
      for (size_t pass : {size_t(32) << 20, size_t(1)})
        for (int block : kBlocks)
          for (int lay = 0; lay < 4; ++lay) {
            if (block == 8 && lay == 0) continue;  // plain x and dy: once
            BlockScope bs(block);
            SettingScope ts(loom::set_loom_winograd_tile, tile);
            SCOPED_TRACE("tile " + std::to_string(tile) + " n" + std::to_string(c.n) + " c" + std::to_string(c.c) +
                         " " + std::to_string(c.h) + "x" + std::to_string(c.w) + " f" + std::to_string(c.f) +
                         " pad " + std::to_string(c.ph) + std::to_string(c.pw) + " pass " + std::to_string(pass) +
                         " block " + std::to_string(block) + " layouts " + std::to_string(lay));
            Buf xb = buf(xs, x), db = buf(ys, dy);
            if (lay & 1) xb = to_blocked(xb);
            if (lay & 2) db = to_blocked(db);
            std::vector<float> dw(want.size(), 7.0f);
            loom::loom_winograd_weight_gradient(s, xb.v.data(), db.v.data(), dw.data(), lay & 1, lay & 2, pass);
            double worst = 0;
            for (size_t i = 0; i < want.size(); ++i) worst = std::max(worst, std::fabs(dw[i] - want[i]) / scale_max);
            EXPECT_LE(worst, tile == 4 ? 1e-4 : 1e-5);
            most[tile == 4] = std::max(most[tile == 4], worst);
            ++ran;
          }
  }
  EXPECT_EQ(ran, 6 * 2 * 2 * 7);
  std::printf("worst weight-gradient error relative to the largest value: 2x2 tiles %.2g, 4x4 tiles %.2g\n", most[0],
              most[1]);
}

namespace {

// The weight and data gradients of a stride-1, undilated convolution in float64,
// from the definition (dy: (n, f, oh, ow)).
void naive_conv_grads(const ConvCase &c, const std::vector<double> &x, const std::vector<double> &w,
                      const std::vector<double> &dy, int64_t oh, int64_t ow, std::vector<double> *dw,
                      std::vector<double> *dx) {
  const int64_t h = c.one_d ? 1 : c.h, kh = c.one_d ? 1 : c.kh, ph = c.one_d ? 0 : c.p;
  const int64_t cg = c.c / c.g, fg = c.f / c.g;
  dw->assign(w.size(), 0.0);
  dx->assign(x.size(), 0.0);
  for (int64_t n = 0; n < c.n; ++n)
    for (int64_t f = 0; f < c.f; ++f)
      for (int64_t i = 0; i < oh; ++i)
        for (int64_t j = 0; j < ow; ++j) {
          const double g = dy[((n * c.f + f) * oh + i) * ow + j];
          for (int64_t ci = 0; ci < cg; ++ci)
            for (int64_t ki = 0; ki < kh; ++ki)
              for (int64_t kj = 0; kj < c.kw; ++kj) {
                const int64_t ii = i - ph + ki, jj = j - c.p + kj;
                if (ii < 0 || ii >= h || jj < 0 || jj >= c.w) continue;
                const int64_t xi = ((n * c.c + (f / fg) * cg + ci) * h + ii) * c.w + jj;
                const int64_t wi = ((f * cg + ci) * kh + ki) * c.kw + kj;
                (*dw)[wi] += g * x[xi];
                (*dx)[xi] += g * w[wi];
              }
        }
}

struct LanesScope {
  int prev;
  explicit LanesScope(int lanes) : prev(loom::set_direct_conv_lanes(lanes)) {}
  ~LanesScope() { loom::set_direct_conv_lanes(prev); }
};

void expect_bits(const std::vector<double> &a, const std::vector<double> &b, const std::string &what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  size_t bad = 0;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(double)) != 0 && bad++ < 3)
      ADD_FAILURE() << what << " [" << i << "]: " << a[i] << " vs " << b[i];
  EXPECT_EQ(bad, 0u) << what;
}

// Stride-1 convolutions with few inputs an output: LeNet's first layer, 3 channels
// of 5x5, groups, padding, odd channel counts, rows that are not whole vectors of
// 16 or 8 outputs, more images than the weight gradient's 64 slots, 1-D.
const std::vector<ConvCase> &direct_cases() {
  static const std::vector<ConvCase> v = {
      {9, 1, 28, 28, 20, 5, 5, 1, 0, 1, 1, true, false},    // LeNet: rows of 24
      {2, 3, 32, 32, 24, 5, 5, 1, 2, 1, 1, true, false},    // 75 inputs an output
      {130, 1, 6, 11, 7, 3, 3, 1, 1, 1, 1, false, false},  // 130 images, rows of 11, 7 filters
      {4, 4, 9, 13, 6, 3, 3, 1, 1, 1, 2, true, false},     // 2 groups of 2 channels, rows of 13
      {3, 2, 5, 40, 3, 2, 4, 1, 0, 1, 1, true, false},     // rows of 37
      {2, 6, 7, 7, 9, 3, 3, 1, 1, 1, 3, false, false},     // 3 groups of 3 filters
      {5, 3, 1, 50, 5, 1, 7, 1, 3, 1, 1, true, true},      // 1-D, padded
      {2, 1, 3, 3, 1, 2, 2, 1, 0, 1, 1, true, false},      // one filter, rows of 2
      {1, 2, 20, 17, 15, 4, 4, 1, 0, 1, 1, true, false},   // one image, 15 filters
  };
  return v;
}

}  // namespace

// The direct kernels (the oneDNN set's, for what oneDNN does not take) against
// naive float64 loops, forward and every gradient, and their AVX-512 and AVX2
// builds bit for bit.
TEST(OneDnn, DirectConvolutionMatchesNaiveLoops) {
  if (!loom::onednn_built()) GTEST_SKIP() << "built without oneDNN";
  if (loom::direct_conv_lanes() == 0) GTEST_SKIP() << "no AVX2 and FMA here, or LOOM_DIRECT_CONV=0";
  KernelScope k(loom::CpuKernels::OneDnn);
  uint32_t seed = 900;
  std::vector<int> widths{8};
  if (loom::direct_conv_lanes() == 16) widths.push_back(16);
  for (const ConvCase &c : direct_cases()) {
    SCOPED_TRACE(c.name());
    auto x = as_dtype(random_values(numel(c.xshape()), -1, 1, seed++), LOOM_DTYPE_FLOAT32);
    auto w = as_dtype(random_values(numel(c.wshape()), -1, 1, seed++), LOOM_DTYPE_FLOAT32);
    auto b = as_dtype(random_values(c.f, -1, 1, seed++), LOOM_DTYPE_FLOAT32);
    int64_t oh, ow;
    auto want = naive_conv2d(x, w, c.bias ? b : std::vector<double>{}, c.n, c.c, c.one_d ? 1 : c.h, c.w, c.f,
                             c.one_d ? 1 : c.kh, c.kw, 1, c.one_d ? 0 : c.p, c.p, 1, c.g, &oh, &ow);
    auto hy = as_dtype(random_values(want.size(), -1, 1, seed++), LOOM_DTYPE_FLOAT32);
    std::vector<double> want_dw, want_dx, want_db(c.f, 0.0);
    naive_conv_grads(c, x, w, hy, oh, ow, &want_dw, &want_dx);
    for (size_t i = 0; i < hy.size(); ++i) want_db[(i / static_cast<size_t>(oh * ow)) % c.f] += hy[i];
    std::vector<ConvResult> got;
    for (int lanes : widths) {
      SCOPED_TRACE("lanes " + std::to_string(lanes));
      LanesScope ls(lanes);
      ASSERT_EQ(loom::direct_conv_lanes(), lanes);
      const int64_t before = loom::direct_conv_calls();
      got.push_back(run_conv(c, x, w, b, hy));
      EXPECT_EQ(loom::direct_conv_calls() - before, 2) << "the direct kernels did not compute both passes";
      const ConvResult &r = got.back();
      expect_near_rel(r.y, want, "forward vs naive float64");
      expect_near_rel(r.dw, want_dw, "weight gradient vs naive float64");
      expect_near_rel(r.dx, want_dx, "data gradient vs naive float64");
      if (c.bias) expect_near_rel(r.db, want_db, "bias gradient vs naive float64");
    }
    if (got.size() == 2) {
      expect_bits(got[0].y, got[1].y, "forward: AVX2 vs AVX-512 bits");
      expect_bits(got[0].dw, got[1].dw, "weight gradient: AVX2 vs AVX-512 bits");
    }
  }
}

// What the direct kernels leave to the others (stride, dilation, more than 75
// inputs an output, a 1x1 kernel, the reference set), and an infinity or NaN in
// the data: the weight gradient's infinities and NaNs where the reference
// kernels put them (the direct kernels never multiply an input outside its
// window, not even by 0).
TEST(OneDnn, DirectConvolutionTakesOnlyItsShapesAndKeepsNonFiniteValuesInPlace) {
  if (!loom::onednn_built()) GTEST_SKIP() << "built without oneDNN";
  if (loom::direct_conv_lanes() == 0) GTEST_SKIP() << "no AVX2 and FMA here, or LOOM_DIRECT_CONV=0";
  auto shape = [](int64_t c, int64_t kh, int64_t kw, int64_t s, int64_t d) {
    return loom::DirectConvShape{2, c, 12, 12, 4, 1, kh, kw, s, s, 0, 0, d, d, (12 - d * (kh - 1) - 1) / s + 1,
                                 (12 - d * (kw - 1) - 1) / s + 1};
  };
  {
    KernelScope k(loom::CpuKernels::OneDnn);
    EXPECT_TRUE(loom::direct_conv_takes(shape(3, 5, 5, 1, 1)));
    EXPECT_FALSE(loom::direct_conv_takes(shape(4, 5, 5, 1, 1)));  // 100 inputs an output
    EXPECT_FALSE(loom::direct_conv_takes(shape(1, 3, 3, 2, 1)));  // stride 2
    EXPECT_FALSE(loom::direct_conv_takes(shape(1, 3, 3, 1, 2)));  // dilated
    EXPECT_FALSE(loom::direct_conv_takes(shape(1, 1, 1, 1, 1)));  // 1x1
  }
  {
    KernelScope k(loom::CpuKernels::Reference);
    EXPECT_FALSE(loom::direct_conv_takes(shape(1, 5, 5, 1, 1)));
  }
  const ConvCase c{3, 1, 9, 11, 5, 3, 3, 1, 0, 1, 1, true, false};
  auto x = as_dtype(random_values(numel(c.xshape()), -1, 1, 77), LOOM_DTYPE_FLOAT32);
  auto w = as_dtype(random_values(numel(c.wshape()), -1, 1, 78), LOOM_DTYPE_FLOAT32);
  auto b = as_dtype(random_values(c.f, -1, 1, 79), LOOM_DTYPE_FLOAT32);
  x[0] = INFINITY;                 // image 0's corner: tap (0, 0) alone sees it
  x[99 + 5 * 11 + 10] = NAN;       // image 1, row 5, last column: taps (*, 2)
  x[2 * 99 + 8 * 11 + 3] = -INFINITY;  // image 2, last row: taps (2, *)
  std::vector<double> hy(static_cast<size_t>(c.n * c.f * 7 * 9));
  for (size_t i = 0; i < hy.size(); ++i) hy[i] = (i % 3) + 0.5;  // positive: infinities keep their sign
  ConvResult ref, direct;
  {
    KernelScope k(loom::CpuKernels::Reference);
    ref = run_conv(c, x, w, b, hy);
  }
  {
    KernelScope k(loom::CpuKernels::OneDnn);
    const int64_t before = loom::direct_conv_calls();
    direct = run_conv(c, x, w, b, hy);
    EXPECT_EQ(loom::direct_conv_calls() - before, 2);
  }
  auto kind = [](double v) { return std::isnan(v) ? 'n' : std::isinf(v) ? (v > 0 ? '+' : '-') : 'f'; };
  int nonfinite = 0;
  for (size_t i = 0; i < ref.dw.size(); ++i) {
    EXPECT_EQ(kind(direct.dw[i]), kind(ref.dw[i])) << "weight gradient [" << i << "]";
    nonfinite += kind(ref.dw[i]) != 'f';
  }
  for (size_t i = 0; i < ref.y.size(); ++i) EXPECT_EQ(kind(direct.y[i]), kind(ref.y[i])) << "output [" << i << "]";
  EXPECT_GT(nonfinite, 0);
  EXPECT_LT(nonfinite, static_cast<int>(ref.dw.size()));
}

// im2col's work items when a batch needs several (LeNet's second layer at 37 and
// 100 images: 8 and 16 items of uneven size, the images dealt out evenly):
// forward and every gradient against float64 loops in both kernel sets.
TEST(OneDnn, ConvolutionWorkItemsOfUnevenSizeMatchNaiveLoops) {
  uint32_t seed = 4000;
  for (int64_t n : {37, 100}) {
    const ConvCase c{n, 20, 12, 12, 50, 5, 5, 1, 0, 1, 1, true, false};
    SCOPED_TRACE(c.name());
    auto x = as_dtype(random_values(numel(c.xshape()), -1, 1, seed++), LOOM_DTYPE_FLOAT32);
    auto w = as_dtype(random_values(numel(c.wshape()), -1, 1, seed++), LOOM_DTYPE_FLOAT32);
    auto b = as_dtype(random_values(c.f, -1, 1, seed++), LOOM_DTYPE_FLOAT32);
    int64_t oh, ow;
    auto want = naive_conv2d(x, w, b, c.n, c.c, c.h, c.w, c.f, c.kh, c.kw, 1, 0, 0, 1, 1, &oh, &ow);
    auto hy = as_dtype(random_values(want.size(), -1, 1, seed++), LOOM_DTYPE_FLOAT32);
    std::vector<double> want_dw, want_dx, want_db(c.f, 0.0);
    naive_conv_grads(c, x, w, hy, oh, ow, &want_dw, &want_dx);
    for (size_t i = 0; i < hy.size(); ++i) want_db[(i / static_cast<size_t>(oh * ow)) % c.f] += hy[i];
    std::vector<loom::CpuKernels> sets{loom::CpuKernels::Reference};
    if (loom::onednn_built()) sets.push_back(loom::CpuKernels::OneDnn);
    for (auto set : sets) {
      SCOPED_TRACE(set == loom::CpuKernels::OneDnn ? "oneDNN set" : "reference set");
      KernelScope k(set);
      const ConvResult r = run_conv(c, x, w, b, hy);
      expect_near_rel(r.y, want, "forward vs naive float64");
      expect_near_rel(r.dw, want_dw, "weight gradient vs naive float64");
      expect_near_rel(r.dx, want_dx, "data gradient vs naive float64");
      expect_near_rel(r.db, want_db, "bias gradient vs naive float64");
    }
  }
}

// Convolutions of fewer than 4 images cut into bands of output rows (AVX-512),
// called with the data and the output each plain, blocked or channels last and
// with each epilogue the executors give oneDNN (a bias, a sum into the output,
// per-channel scale and shift, an addend as a post-op, Loom's add and relu after):
// the plain call's bits in all nine layout pairs, and the plain call within 1e-5
// of float64 loops. Uneven bands, strides, padding wider than the kernel's reach.
// ConvEpilogue::onednn_relu (LOOM_EXEC_RELU=onednn): oneDNN's relu post-op gives the bits
// of Loom's relu in channel pieces (one image), whole images and bands of rows, with a
// bias, a sum, the BatchNorm and an addend as post-ops, and with Loom's add (which keeps
// Loom's relu), for data with zeros and -0; a NaN in the data gives 0 where Loom's relu
// passes NaN, except after Loom's add.
TEST(OneDnn, OnednnReluHasLoomsReluBitsButNaNGivesZero) {
  if (!loom::onednn_built()) GTEST_SKIP() << "built without oneDNN";
  KernelScope k(loom::CpuKernels::OneDnn);
  uint32_t seed = 1400;
  struct Case {
    int64_t n, c, h, f, k;
  };
  for (Case c : {Case{1, 32, 10, 32, 3}, Case{5, 16, 10, 16, 1}, Case{1, 16, 28, 32, 3}, Case{2, 16, 14, 16, 1}}) {
    const int64_t p = c.k / 2, hw = c.h * c.h;
    const loom::ConvShape s{c.n, c.c, c.h, c.h, c.f, 1, c.k, c.k, 1, 1, p, p, 1, 1, c.h, c.h};
    const size_t ny = static_cast<size_t>(c.n * c.f * hw);
    auto floats = [](const std::vector<double> &v) { return std::vector<float>(v.begin(), v.end()); };
    auto x = floats(random_values(static_cast<size_t>(c.n * c.c * hw), -1, 1, seed++));
    for (int64_t i = 0; i < c.h; ++i) x[static_cast<size_t>(i)] = 0.0f, x[static_cast<size_t>(hw + i)] = -0.0f;
    const auto w = floats(random_values(static_cast<size_t>(c.f * c.c * c.k * c.k), -1, 1, seed++)),
               bias = floats(random_values(static_cast<size_t>(c.f), -1, 1, seed++)),
               prior = floats(random_values(ny, -1, 1, seed++)), addend = floats(random_values(ny, -1, 1, seed++)),
               scale = floats(random_values(static_cast<size_t>(c.f), 0.5, 1.5, seed++)),
               shift = floats(random_values(static_cast<size_t>(c.f), -1, 1, seed++));
    for (int e = 0; e < 4; ++e)  // 0 bias; 1 sum; 2 scale, shift and an addend post-op; 3 Loom's add
      for (bool nan : {false, true}) {
        SCOPED_TRACE("n" + std::to_string(c.n) + " c" + std::to_string(c.c) + " " + std::to_string(c.h) + "x" +
                     std::to_string(c.h) + " f" + std::to_string(c.f) + " k" + std::to_string(c.k) + " epilogue " +
                     std::to_string(e) + (nan ? ", a NaN in the data" : ""));
        auto xi = x;
        if (nan) xi[static_cast<size_t>(hw + c.h + 3)] = NAN;  // channel 1 of image 0, row 1
        // Blocked data and output for the addend post-op (the executor's case), else plain.
        const bool blocked = e == 2;
        std::vector<float> xb(xi.size()), ab(ny);
        if (blocked) {
          loom::onednn_blocked_layout(xi.data(), xb.data(), c.n, c.c, c.h, c.h, true);
          loom::onednn_blocked_layout(addend.data(), ab.data(), c.n, c.f, c.h, c.h, true);
        }
        std::vector<float> out[2];
        for (int onednn = 0; onednn < 2; ++onednn) {
          std::vector<float> y = e == 1 ? prior : std::vector<float>(ny, 0.0f);
          loom::ConvEpilogue ep;
          ep.relu = true;
          ep.onednn_relu = onednn == 1;
          ep.sum = e == 1;
          ep.src_blocked = ep.dst_blocked = blocked;
          if (e >= 2) ep.scale = scale.data(), ep.shift = shift.data();
          if (e == 2) ep.addend = ab.data();
          if (e == 3) ep.after_add = addend.data();
          ASSERT_TRUE(loom::onednn_conv_forward(s, blocked ? xb.data() : xi.data(), w.data(),
                                                e <= 1 ? bias.data() : nullptr, y.data(), nullptr, ep));
          if (blocked) {
            std::vector<float> plain(ny);
            loom::onednn_blocked_layout(y.data(), plain.data(), c.n, c.f, c.h, c.h, false);
            y = plain;
          }
          out[onednn] = y;
        }
        size_t nans = 0, stopped = 0;
        for (size_t i = 0; i < ny; ++i) {
          if (std::isnan(out[0][i])) {
            ++nans;
            if (e != 3) {
              EXPECT_EQ(out[1][i], 0.0f) << "element " << i << ": oneDNN's relu gives 0 for NaN";
              stopped += out[1][i] == 0.0f;
            } else {
              EXPECT_TRUE(std::isnan(out[1][i])) << "element " << i << ": after Loom's add the relu is Loom's";
            }
            continue;
          }
          uint32_t a, b;
          std::memcpy(&a, &out[0][i], 4);
          std::memcpy(&b, &out[1][i], 4);
          ASSERT_EQ(a, b) << "element " << i << ": " << out[0][i] << " against " << out[1][i];
        }
        EXPECT_EQ(nans > 0, nan) << "a NaN in the data reaches Loom's relu";
        if (nan && e != 3) {
          EXPECT_EQ(stopped, nans);
        }
      }
  }
}

TEST(OneDnn, RowBandsGiveThePlainBitsInEveryLayout) {
  if (!loom::onednn_built()) GTEST_SKIP() << "built without oneDNN";
  if (!loom::onednn_avx512()) GTEST_SKIP() << "bands of rows run on AVX-512 only";
  KernelScope k(loom::CpuKernels::OneDnn);
  struct Case {
    int64_t n, c, h, w, f, k, s, p, d;
  };
  enum Lay { kPlain, kBlocked, kLast };
  const char *lay_names[] = {"plain", "blocked", "channels last"};
  // Values of an (n, c, h, w) array from plain into layout l (`into`), or back.
  auto convert = [](const std::vector<float> &v, const std::vector<int64_t> &d, int l, bool into) {
    std::vector<float> r(v.size());
    if (l == kPlain) return v;
    if (l == kBlocked) loom::onednn_blocked_layout(v.data(), r.data(), d[0], d[1], d[2], d[3], into);
    if (l == kLast) loom::onednn_channels_last_layout(v.data(), r.data(), d[0], d[1], d[2], d[3], into);
    return r;
  };
  auto to = [&](const std::vector<float> &v, const std::vector<int64_t> &d, int l) { return convert(v, d, l, true); };
  auto back = [&](const std::vector<float> &v, const std::vector<int64_t> &d, int l) {
    return convert(v, d, l, false);
  };
  uint32_t seed = 1300;
  for (Case c : {Case{1, 16, 30, 9, 32, 3, 1, 1, 1}, Case{2, 32, 29, 13, 48, 3, 2, 1, 1},
                 Case{1, 16, 14, 14, 16, 1, 1, 0, 1}, Case{3, 16, 40, 5, 16, 5, 1, 3, 1},
                 Case{1, 16, 31, 9, 16, 3, 1, 1, 1}, Case{1, 16, 57, 20, 32, 3, 2, 1, 1},
                 Case{2, 16, 28, 10, 32, 3, 1, 2, 2}, Case{1, 16, 30, 8, 16, 3, 1, 3, 1},
                 Case{1, 32, 29, 7, 16, 3, 2, 1, 1}}) {
    int64_t oh = 0, ow = 0;
    const auto xd = random_values(c.n * c.c * c.h * c.w, -1, 1, seed++),
               wd = random_values(c.f * c.c * c.k * c.k, -1, 1, seed++);
    const auto conv = naive_conv2d(xd, wd, {}, c.n, c.c, c.h, c.w, c.f, c.k, c.k, c.s, c.p, c.p, c.d, 1, &oh, &ow);
    const loom::ConvShape s{c.n, c.c, c.h, c.w, c.f, 1, c.k, c.k, c.s, c.s, c.p, c.p, c.d, c.d, oh, ow};
    ASSERT_GT(loom::onednn_conv_row_bands(s), 0) << "the case is not cut into bands";
    const std::vector<int64_t> xs{c.n, c.c, c.h, c.w}, ys{c.n, c.f, oh, ow};
    const size_t ny = conv.size(), plane = static_cast<size_t>(oh * ow);
    auto floats = [](const std::vector<double> &v) { return std::vector<float>(v.begin(), v.end()); };
    const auto x = floats(xd), w = floats(wd), bias = floats(random_values(c.f, -1, 1, seed++)),
               prior = floats(random_values(ny, -1, 1, seed++)), addend = floats(random_values(ny, -1, 1, seed++)),
               scale = floats(random_values(c.f, 0.5, 1.5, seed++)), shift = floats(random_values(c.f, -1, 1, seed++));
    for (int e = 0; e < 6; ++e) {
      // 0 bias; 1 bias and sum; 2 bias and relu; 3 sum and relu; 4 scale, shift and
      // an addend post-op; 5 scale and shift, Loom's add and relu
      const bool has_bias = e <= 2, sum = e == 1 || e == 3, relu = e == 2 || e == 3 || e == 5,
                 affine = e >= 4, post_addend = e == 4, after = e == 5;
      std::vector<double> want(ny);
      for (size_t i = 0; i < ny; ++i) {
        const size_t f = (i / plane) % static_cast<size_t>(c.f);
        double v = conv[i] + (has_bias ? bias[f] : 0.0);
        if (affine) v = v * scale[f] + shift[f];
        if (post_addend || after) v += addend[i];
        if (sum) v += prior[i];
        want[i] = relu ? std::max(v, 0.0) : v;
      }
      std::vector<float> plain_bits;
      // (the cases' right padding is never wider than their left)
      for (int xl : {kPlain, kBlocked, kLast})
        for (int yl : {kPlain, kBlocked, kLast}) {
          SCOPED_TRACE("n" + std::to_string(c.n) + " c" + std::to_string(c.c) + " " + std::to_string(c.h) + "x" +
                       std::to_string(c.w) + " f" + std::to_string(c.f) + " k" + std::to_string(c.k) + " s" +
                       std::to_string(c.s) + " p" + std::to_string(c.p) + " d" + std::to_string(c.d) +
                       " epilogue " + std::to_string(e) +
                       ", data " + lay_names[xl] + ", output " + lay_names[yl]);
          const auto xi = to(x, xs, xl), ai = to(addend, ys, yl);
          auto y = sum ? to(prior, ys, yl) : std::vector<float>(ny, 0.0f);
          loom::ConvEpilogue ep;
          ep.src_blocked = xl != kPlain;
          ep.src_last = xl == kLast;
          ep.dst_blocked = yl != kPlain;
          ep.dst_last = yl == kLast;
          ep.sum = sum;
          ep.relu = relu;
          if (affine) ep.scale = scale.data(), ep.shift = shift.data();
          if (post_addend) ep.addend = ai.data();
          if (after) ep.after_add = ai.data();
          const int64_t before = loom::onednn_row_band_calls();
          const bool ok = loom::onednn_conv_forward(s, xi.data(), w.data(), has_bias ? bias.data() : nullptr,
                                                    y.data(), nullptr, ep);
          // oneDNN leaves an addend post-op out of outputs whose windows hold only
          // padding: refused there, so the caller runs the original kernels.
          if (post_addend && c.p >= (c.k - 1) * c.d + 1) {
            EXPECT_FALSE(ok) << "an addend post-op with windows of padding alone";
            continue;
          }
          ASSERT_TRUE(ok);
          EXPECT_EQ(loom::onednn_row_band_calls() - before, 1) << "not computed in bands of rows";
          const auto got = back(y, ys, yl);
          if (xl == kPlain && yl == kPlain) {
            plain_bits = got;
            double scale_max = 1, worst = 0;
            for (double v : want) scale_max = std::max(scale_max, std::fabs(v));
            for (size_t i = 0; i < ny; ++i) worst = std::max(worst, std::fabs(got[i] - want[i]) / scale_max);
            EXPECT_LE(worst, 1e-5) << "against float64 loops";
          } else {
            expect_same_bits(got, plain_bits, "output");
          }
        }
      // Three callers at once (the pool busy: each call's bands may run on its own
      // thread alone): the same bits.
      if (e == 2) {
        std::vector<std::vector<float>> outs(3, std::vector<float>(ny));
        std::vector<std::thread> ts;
        for (int t = 0; t < 3; ++t)
          ts.emplace_back([&, t] {
            loom::ConvEpilogue ep;
            ep.relu = true;
            EXPECT_TRUE(loom::onednn_conv_forward(s, x.data(), w.data(), bias.data(), outs[t].data(), nullptr, ep));
          });
        for (auto &t : ts) t.join();
        for (const auto &o : outs) expect_same_bits(o, plain_bits, "output beside other callers");
      }
    }
  }
}
