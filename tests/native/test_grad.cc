// Every gradient against central finite differences in float64, through the
// imperative autograd ABI; plus autograd's own contract.
#include <set>
#include <thread>

#include "testutil.h"

using namespace lt;

namespace {

struct GradCase {
  std::string op;
  std::vector<std::vector<int64_t>> shapes;
  Params params;
  std::vector<std::pair<double, double>> ranges;  // per input; default [-1, 1]
  bool train = false;  // run in training mode (BatchNorm's batch statistics)
  int checked = -1;    // inputs checked against finite differences (-1: all; aux states have none)
};

Arr zeros_like(const std::vector<int64_t> &s) {
  return make(s, std::vector<double>(numel(s), 0.0), LOOM_DTYPE_FLOAT64);
}

double weighted_sum(const std::string &op, const std::vector<Arr> &ins, const Params &params,
                    const std::vector<double> &w) {
  std::vector<const Arr *> p;
  for (auto &a : ins) p.push_back(&a);
  Arr o = call(op, p, params);
  auto v = read(o);
  double s = 0;
  for (size_t i = 0; i < v.size(); ++i) s += v[i] * w[i];
  return s;
}

void check_gradient(const GradCase &c) {
  SCOPED_TRACE(c.op);
  int32_t was_training = 0;
  loom_autograd_set_training(&was_training, c.train ? 1 : 0);
  struct Restore {
    int32_t v;
    ~Restore() { loom_autograd_set_training(nullptr, v); }
  } restore{was_training};
  std::vector<Arr> ins, grads;
  std::vector<std::vector<double>> vals;
  for (size_t i = 0; i < c.shapes.size(); ++i) {
    auto r = i < c.ranges.size() ? c.ranges[i] : std::make_pair(-1.0, 1.0);
    vals.push_back(random_values(numel(c.shapes[i]), r.first, r.second, 1000 + i));
    ins.push_back(make(c.shapes[i], vals.back(), LOOM_DTYPE_FLOAT64));
    grads.push_back(zeros_like(c.shapes[i]));
  }
  std::vector<loom_ndarray> hs, gs;
  for (size_t i = 0; i < ins.size(); ++i) {
    hs.push_back(ins[i].h);
    gs.push_back(grads[i].h);
  }
  ASSERT_EQ(loom_autograd_mark_variables(hs.data(), gs.data(), nullptr, int32_t(hs.size())), LOOM_OK)
      << loom_last_error();
  int32_t prev;
  ASSERT_EQ(loom_autograd_set_recording(&prev, 1), LOOM_OK);
  std::vector<const Arr *> p;
  for (auto &a : ins) p.push_back(&a);
  Arr out = call(c.op, p, c.params);
  loom_autograd_set_recording(nullptr, prev);
  auto os = shape_of(out);
  auto w = random_values(numel(os), -1, 1, 77);
  Arr head_grad = make(os, w, LOOM_DTYPE_FLOAT64);
  ASSERT_EQ(loom_autograd_backward(&out.h, &head_grad.h, 1), LOOM_OK) << loom_last_error();
  const double eps = 1e-6;
  const size_t checked = c.checked < 0 ? ins.size() : static_cast<size_t>(c.checked);
  for (size_t i = 0; i < checked; ++i) {
    auto analytic = read(grads[i]);
    for (size_t k = 0; k < vals[i].size(); ++k) {
      auto v = vals[i];
      v[k] += eps;
      ins[i] = make(c.shapes[i], v, LOOM_DTYPE_FLOAT64);
      double fp = weighted_sum(c.op, ins, c.params, w);
      v[k] -= 2 * eps;
      ins[i] = make(c.shapes[i], v, LOOM_DTYPE_FLOAT64);
      double fm = weighted_sum(c.op, ins, c.params, w);
      double numeric = (fp - fm) / (2 * eps);
      EXPECT_NEAR(analytic[k], numeric, 1e-6 + 1e-5 * std::fabs(numeric))
          << c.op << " input " << i << " element " << k;
    }
    ins[i] = make(c.shapes[i], vals[i], LOOM_DTYPE_FLOAT64);
  }
}

std::set<std::string> &grad_covered() {
  static std::set<std::string> s;
  return s;
}

const std::pair<double, double> kPos{0.5, 2.0};

const GradCase kCases[] = {
    {"add", {{2, 3}, {3}}, {}, {}},
    {"subtract", {{2, 3}, {2, 1}}, {}, {}},
    {"multiply", {{2, 3}, {2, 3}}, {}, {}},
    {"divide", {{3}, {2, 3}}, {}, {{-1, 1}, kPos}},
    {"negative", {{2, 3}}, {}, {}},
    {"abs", {{7}}, {}, {{0.1, 1}}},
    {"exp", {{2, 3}}, {}, {}},
    {"log", {{2, 3}}, {}, {kPos}},
    {"sqrt", {{2, 3}}, {}, {kPos}},
    {"square", {{2, 3}}, {}, {}},
    {"relu", {{9}}, {}, {}},
    {"sigmoid", {{2, 3}}, {}, {}},
    {"tanh", {{2, 3}}, {}, {}},
    {"copy", {{2, 3}}, {}, {}},
    {"reshape", {{2, 3}}, {{"shape", "(3,2)"}}, {}},
    {"add_scalar", {{4}}, {{"scalar", "1.5"}}, {}},
    {"subtract_scalar", {{4}}, {{"scalar", "1.5"}}, {}},
    {"rsubtract_scalar", {{4}}, {{"scalar", "1.5"}}, {}},
    {"multiply_scalar", {{4}}, {{"scalar", "-2.5"}}, {}},
    {"divide_scalar", {{4}}, {{"scalar", "4"}}, {}},
    {"power_scalar", {{4}}, {{"scalar", "2.5"}}, {kPos}},
    {"sum", {{2, 3, 4}}, {{"axis", "(1,)"}}, {}},
    {"sum", {{2, 3}}, {}, {}},
    {"mean", {{2, 3, 4}}, {{"axis", "(0,2)"}, {"keepdims", "true"}}, {}},
    {"dot", {{3, 4}, {4, 2}}, {}, {}},
    {"dot", {{4, 3}, {2, 4}}, {{"transpose_a", "true"}, {"transpose_b", "true"}}, {}},
    {"dot", {{4, 3}, {4, 2}}, {{"transpose_a", "true"}}, {}},
    {"dot", {{3, 4}, {2, 4}}, {{"transpose_b", "true"}}, {}},
    {"softmax", {{3, 4}}, {{"axis", "1"}}, {}},
    {"SoftmaxActivation", {{2, 3, 4}}, {}, {}},
    {"SoftmaxActivation", {{2, 3, 2, 2}}, {{"mode", "channel"}}, {}},
    {"log_softmax", {{3, 4}}, {{"axis", "0"}, {"temperature", "2"}}, {}},
    // rows of 19 and 21: the gradients' 8-lane sums and their remainders
    {"softmax", {{2, 19}}, {{"temperature", "1.5"}}, {}},
    {"log_softmax", {{3, 21}}, {{"temperature", "2"}}, {}},
    {"SoftmaxActivation", {{2, 19}}, {}, {}},
    {"transpose", {{2, 3, 4}}, {{"axes", "(1,0,2)"}}, {}},
    {"FullyConnected", {{3, 2, 2}, {5, 4}, {5}}, {{"num_hidden", "5"}}, {}},
    {"FullyConnected", {{3, 4}, {2, 4}}, {{"num_hidden", "2"}, {"no_bias", "true"}}, {}},
    {"FullyConnected", {{2, 3, 4}, {5, 4}, {5}}, {{"num_hidden", "5"}, {"flatten", "false"}}, {}},
    {"Activation", {{2, 5}}, {{"act_type", "relu"}}, {}},
    {"Activation", {{2, 5}}, {{"act_type", "sigmoid"}}, {}},
    {"Activation", {{2, 5}}, {{"act_type", "tanh"}}, {}},
    {"Activation", {{2, 5}}, {{"act_type", "softrelu"}}, {}},
    {"Activation", {{2, 5}}, {{"act_type", "softsign"}}, {}},
    {"Flatten", {{2, 3, 2}}, {}, {}},
    {"Convolution", {{2, 3, 5, 4}, {4, 3, 3, 2}, {4}}, {{"kernel", "(3,2)"}, {"num_filter", "4"}}, {}},
    {"Convolution", {{1, 2, 4, 3, 4}, {4, 1, 2, 2, 3}, {4}},
     {{"kernel", "(2,2,3)"}, {"num_filter", "4"}, {"num_group", "2"}, {"stride", "(1,2,1)"}, {"pad", "(1,0,1)"}}, {}},
    {"Deconvolution", {{1, 2, 3, 2, 3}, {2, 3, 2, 3, 2}, {3}},
     {{"kernel", "(2,3,2)"}, {"num_filter", "3"}, {"stride", "(2,1,2)"}, {"no_bias", "false"}}, {}},
    {"Pooling", {{1, 2, 4, 5, 4}}, {{"kernel", "(2,3,2)"}, {"stride", "(2,2,2)"}, {"pad", "(1,1,0)"},
                                   {"pool_type", "avg"}, {"pooling_convention", "full"}}, {}},
    {"Pooling", {{1, 2, 4, 5, 4}}, {{"kernel", "(2,2,2)"}, {"pool_type", "max"}}, {}},
    {"Convolution", {{1, 4, 6, 6}, {4, 2, 3, 3}, {4}},
     {{"kernel", "(3,3)"}, {"num_filter", "4"}, {"stride", "(2,2)"}, {"pad", "(1,1)"}, {"num_group", "2"}}, {}},
    {"Convolution", {{1, 2, 7, 7}, {3, 2, 2, 2}}, {{"kernel", "(2,2)"}, {"num_filter", "3"}, {"dilate", "(2,2)"},
                                                  {"no_bias", "true"}}, {}},
    {"Convolution", {{2, 2, 6}, {3, 2, 3}, {3}}, {{"kernel", "(3,)"}, {"num_filter", "3"}}, {}},
    // 1x1, stride 1, no padding: the per-image product path (10 images: more than its 8 weight-gradient slots).
    {"Convolution", {{3, 4, 3, 2}, {5, 4, 1, 1}, {5}}, {{"kernel", "(1,1)"}, {"num_filter", "5"}}, {}},
    {"Convolution", {{10, 4, 2, 3}, {6, 2, 1, 1}}, {{"kernel", "(1,1)"}, {"num_filter", "6"}, {"num_group", "2"},
                                                    {"no_bias", "true"}}, {}},
    {"Convolution", {{2, 3, 5}, {4, 3, 1}, {4}}, {{"kernel", "(1,)"}, {"num_filter", "4"}}, {}},
    // workspace=0: one image per gemm, exercising the chunked path.
    {"Convolution", {{3, 2, 4, 4}, {2, 2, 2, 2}, {2}}, {{"kernel", "(2,2)"}, {"num_filter", "2"}, {"workspace", "0"}}, {}},
    {"Pooling", {{2, 2, 5, 4}}, {{"kernel", "(2,2)"}, {"stride", "(2,2)"}, {"pool_type", "max"}}, {}},
    {"Pooling", {{1, 2, 5, 5}}, {{"kernel", "(3,3)"}, {"stride", "(2,2)"}, {"pad", "(1,1)"}, {"pool_type", "avg"},
                                 {"pooling_convention", "full"}}, {}},
    {"Pooling", {{1, 2, 4, 4}}, {{"kernel", "(2,2)"}, {"pool_type", "sum"}}, {}},
    {"Pooling", {{2, 3, 3, 2}}, {{"global_pool", "true"}, {"pool_type", "avg"}}, {}},
    {"LeakyReLU", {{2, 3, 4}}, {{"act_type", "leaky"}, {"slope", "0.1"}}, {}},
    {"LeakyReLU", {{2, 3, 4}}, {{"act_type", "elu"}, {"slope", "0.7"}}, {}},
    {"LeakyReLU", {{2, 3, 4}, {3}}, {{"act_type", "prelu"}}, {}},
    {"LeakyReLU", {{2, 3, 4}}, {{"act_type", "selu"}}, {}},
    {"LeakyReLU", {{2, 3, 4}}, {{"act_type", "gelu"}}, {}},
    {"LeakyReLU", {{2, 3, 4}}, {{"act_type", "rrelu"}, {"lower_bound", "0.1"}, {"upper_bound", "0.3"}}, {}},
    {"SwapAxis", {{2, 3, 4}}, {{"dim1", "0"}, {"dim2", "2"}}, {}},
    {"ElementWiseSum", {{2, 3}, {2, 3}, {2, 3}}, {}, {}},
    {"UpSampling", {{1, 2, 2, 3}}, {{"scale", "2"}}, {}},
    {"UpSampling", {{1, 2, 2, 2}, {1, 1, 1, 2}}, {{"scale", "2"}, {"num_args", "2"}}, {}},
    {"UpSampling", {{1, 2, 2, 2}, {1, 2, 1, 1}}, {{"scale", "2"}, {"num_args", "2"}, {"multi_input_mode", "sum"}}, {}},
    {"BatchNorm", {{4, 3, 2, 2}, {3}, {3}, {3}, {3}}, {{"fix_gamma", "false"}}, {{-1, 1}, kPos, {-1, 1}, {-1, 1}, kPos}, true, 3},
    {"BatchNorm", {{5, 2, 3}, {3}, {3}, {3}, {3}}, {{"fix_gamma", "true"}, {"axis", "-1"}, {"eps", "0.01"}}, {}, true, 3},
    // rows of 15 and 24 values per channel: the kernels' 8-lane loops and their remainders
    {"BatchNorm", {{2, 3, 3, 5}, {3}, {3}, {3}, {3}}, {{"fix_gamma", "false"}}, {{-1, 1}, kPos, {-1, 1}, {-1, 1}, kPos}, true, 3},
    {"BatchNorm", {{3, 2, 4, 6}, {2}, {2}, {2}, {2}}, {{"fix_gamma", "false"}}, {{-1, 1}, kPos, {-1, 1}, {-1, 1}, kPos}, true, 3},
    {"BatchNorm", {{3, 2, 2}, {2}, {2}, {2}, {2}}, {{"fix_gamma", "false"}, {"use_global_stats", "true"}},
     {{-1, 1}, kPos, {-1, 1}, {-1, 1}, kPos}, true, 3},
    {"BatchNorm", {{3, 2}, {2}, {2}, {2}, {2}}, {{"fix_gamma", "false"}}, {{-1, 1}, kPos, {-1, 1}, {-1, 1}, kPos}, false, 3},
    {"Concat", {{2, 3, 2}, {2, 1, 2}, {2, 2, 2}}, {{"num_args", "3"}}, {}},
    {"concat", {{2, 3}, {4, 3}}, {{"dim", "0"}}, {}},
    {"sin", {{2, 3}}, {}, {}},
    {"cos", {{2, 3}}, {}, {}},
    {"expm1", {{2, 3}}, {}, {}},
    {"log1p", {{2, 3}}, {}, {{-0.5, 2}}},
    {"softsign", {{7}}, {}, {{0.1, 2}}},
    {"softsign", {{7}}, {}, {{-2, -0.1}}},
    {"rsqrt", {{2, 3}}, {}, {kPos}},
    {"reciprocal", {{2, 3}}, {}, {kPos}},
    {"rdivide_scalar", {{4}}, {{"scalar", "1.5"}}, {kPos}},
    {"rpower_scalar", {{4}}, {{"scalar", "1.5"}}, {}},
    {"maximum_scalar", {{9}}, {{"scalar", "0.05"}}, {}},
    {"minimum_scalar", {{9}}, {{"scalar", "0.05"}}, {}},
    {"clip", {{9}}, {{"a_min", "-0.35"}, {"a_max", "0.45"}}, {}},
    {"power", {{2, 3}, {3}}, {}, {kPos, {-2, 2}}},
    {"maximum", {{2, 3}, {2, 1}}, {}, {}},
    {"minimum", {{3}, {2, 3}}, {}, {}},
    {"Deconvolution", {{2, 3, 3, 4}, {3, 2, 3, 2}, {2}}, {{"kernel", "(3,2)"}, {"num_filter", "2"}, {"no_bias", "false"}}, {}},
    {"Deconvolution", {{1, 4, 3, 3}, {4, 1, 3, 3}},
     {{"kernel", "(3,3)"}, {"num_filter", "2"}, {"stride", "(2,2)"}, {"pad", "(1,1)"}, {"adj", "(1,1)"}, {"num_group", "2"}}, {}},
    {"Deconvolution", {{2, 2, 3, 3}, {2, 2, 2, 2}}, {{"kernel", "(2,2)"}, {"num_filter", "2"}, {"dilate", "(2,2)"}}, {}},
    {"Deconvolution", {{2, 2, 4}, {2, 3, 3}, {3}}, {{"kernel", "(3,)"}, {"num_filter", "3"}, {"stride", "(2,)"}, {"no_bias", "false"}}, {}},
    {"LRN", {{2, 5, 2, 2}}, {{"nsize", "3"}, {"alpha", "0.5"}, {"beta", "0.75"}, {"knorm", "1"}}, {}},
    {"LRN", {{1, 4, 3}}, {{"nsize", "5"}, {"alpha", "2"}, {"beta", "0.4"}, {"knorm", "0.5"}}, {}},
    {"max", {{2, 3, 4}}, {{"axis", "(1,)"}}, {}},
    {"max", {{2, 3, 4}}, {{"axis", "(0,2)"}, {"keepdims", "true"}}, {}},
    {"min", {{3, 4}}, {}, {}},
    {"prod", {{2, 3, 4}}, {{"axis", "(1,)"}}, {}},
    {"prod", {{3, 4}}, {{"axis", "(0,1)"}}, {{0.5, 1.5}}},
    {"slice", {{4, 5}}, {{"begin", "(1,0)"}, {"end", "(3,5)"}, {"step", "(1,2)"}}, {}},
    {"slice", {{3, 4, 2}}, {{"begin", "(2,None)"}, {"end", "(0,None)"}, {"step", "(-1,-1)"}}, {}},
    {"batch_dot", {{2, 3, 4}, {2, 4, 5}}, {}, {}},
    {"batch_dot", {{2, 4, 3}, {2, 5, 4}}, {{"transpose_a", "true"}, {"transpose_b", "true"}}, {}},
    {"take", {{5, 3}, {4}}, {}, {{-1, 1}, {0, 4.99}}, false, 1},
    {"take", {{4, 2, 2}, {2, 3}}, {}, {{-1, 1}, {0, 3.99}}, false, 1},
    {"pick", {{5, 3}, {5}}, {}, {{-1, 1}, {0, 2.99}}, false, 1},
    {"pick", {{3, 4, 2}, {3, 1, 2}}, {{"axis", "1"}, {"keepdims", "true"}, {"mode", "wrap"}}, {{-1, 1}, {-6, 6}}, false, 1},
    {"where", {{2, 3}, {2, 3}, {3}}, {}, {{-1, 1}, {-1, 1}, {-1, 1}}},
    {"cast", {{2, 3}}, {{"dtype", "float64"}}, {}},
    {"ceil", {{2, 3}}, {}, {{-3, 3}}},
    {"floor", {{2, 3}}, {}, {{-3, 3}}},
    {"round", {{2, 3}}, {}, {{-3, 3}}},
    {"sign", {{2, 3}}, {}, {{-3, 3}}},
    // Without lengths (with lengths: test_rnn.cc, which keeps them whole numbers).
    {"SequenceReverse", {{4, 3, 2}}, {}, {}},
    {"SequenceLast", {{3, 4, 2}}, {{"axis", "1"}}, {}},
    {"SequenceMask", {{3, 2}}, {}, {}},
    // The output only; every head and dropout are in test_rnn.cc.
    {"RNN", {{3, 2, 3}, {108}, {1, 2, 4}}, {{"mode", "gru"}, {"state_size", "4"}, {"num_layers", "1"}}, {}},
    {"RNN", {{3, 2, 3}, {144}, {1, 2, 4}, {1, 2, 4}}, {{"mode", "lstm"}, {"state_size", "4"}, {"num_layers", "1"}}, {}},
};

const bool kCovered = [] {
  for (const auto &c : kCases) grad_covered().insert(c.op);
  // Checked by the dedicated tests below (their backward is defined, not derived).
  for (const char *n : {"SoftmaxOutput", "Dropout", "BlockGrad", "MakeLoss", "LinearRegressionOutput",
                        "LogisticRegressionOutput", "Embedding", "SliceChannel"})
    grad_covered().insert(n);
  return true;
}();

TEST(Grad, EveryGradientMatchesFiniteDifferences) {
  for (const auto &c : kCases) check_gradient(c);
}

// SoftmaxOutput's gradient is that of the cross-entropy of its softmax.
TEST(Grad, SoftmaxOutputIsCrossEntropyGradient) {
  std::vector<int64_t> s{4, 3};
  auto x = random_values(12, -2, 2, 5);
  std::vector<double> labels{0, 2, 1, 2};
  for (const char *norm : {"null", "batch", "valid"}) {
    Params params{{"grad_scale", "2"}, {"normalization", norm}};
    Arr data = make(s, x, LOOM_DTYPE_FLOAT64), label = make({4}, labels, LOOM_DTYPE_FLOAT64);
    Arr g = zeros_like(s);
    ASSERT_EQ(loom_autograd_mark_variables(&data.h, &g.h, nullptr, 1), LOOM_OK);
    loom_autograd_set_recording(nullptr, 1);
    Arr out = call("SoftmaxOutput", {&data, &label}, params);
    loom_autograd_set_recording(nullptr, 0);
    ASSERT_EQ(loom_autograd_backward(&out.h, nullptr, 1), LOOM_OK) << loom_last_error();
    auto analytic = read(g);
    double div = std::string(norm) == "null" ? 1 : 4;
    auto loss = [&](const std::vector<double> &v) {
      double l = 0;
      for (int r = 0; r < 4; ++r) {
        double mx = std::max({v[r * 3], v[r * 3 + 1], v[r * 3 + 2]}), z = 0;
        for (int c = 0; c < 3; ++c) z += std::exp(v[r * 3 + c] - mx);
        l -= (v[r * 3 + int(labels[r])] - mx - std::log(z));
      }
      return l * 2 / div;
    };
    for (size_t k = 0; k < x.size(); ++k) {
      auto p = x, m = x;
      p[k] += 1e-6;
      m[k] -= 1e-6;
      double numeric = (loss(p) - loss(m)) / 2e-6;
      EXPECT_NEAR(analytic[k], numeric, 1e-6) << norm << " element " << k;
    }
  }
}

// Backward of the single output of `op` with the given head gradient (or ones).
std::vector<std::vector<double>> grads_of(const std::string &op, std::vector<Arr> &ins,
                                          const Params &params, int nout = 1) {
  std::vector<Arr> gs;
  std::vector<loom_ndarray> hs, ghs;
  for (auto &a : ins) {
    gs.push_back(zeros_like(shape_of(a)));
    hs.push_back(a.h);
    ghs.push_back(gs.back().h);
  }
  EXPECT_EQ(loom_autograd_mark_variables(hs.data(), ghs.data(), nullptr, int32_t(hs.size())), LOOM_OK);
  loom_autograd_set_recording(nullptr, 1);
  std::vector<const Arr *> p;
  for (auto &a : ins) p.push_back(&a);
  std::vector<Arr> outs;
  EXPECT_EQ(invoke(op, p, params, &outs, nout), LOOM_OK) << loom_last_error();
  loom_autograd_set_recording(nullptr, 0);
  EXPECT_EQ(loom_autograd_backward(&outs[0].h, nullptr, 1), LOOM_OK) << loom_last_error();
  std::vector<std::vector<double>> r;
  for (auto &g : gs) r.push_back(read(g));
  return r;
}

TEST(Grad, DefinedGradientsOfLossAndUtilityLayers) {
  std::vector<double> x{0.5, -1, 2, 0.25, -0.5, 1.5}, lab{1, 0, 1, 0, 0, 1};
  {  // BlockGrad passes nothing back.
    std::vector<Arr> ins;
    ins.push_back(make({2, 3}, x, LOOM_DTYPE_FLOAT64));
    EXPECT_EQ(grads_of("BlockGrad", ins, {})[0], std::vector<double>(6, 0));
  }
  {  // MakeLoss gives grad_scale / batch.
    std::vector<Arr> ins;
    ins.push_back(make({2, 3}, x, LOOM_DTYPE_FLOAT64));
    EXPECT_EQ(grads_of("MakeLoss", ins, {{"grad_scale", "3"}, {"normalization", "batch"}})[0],
              std::vector<double>(6, 1.5));
  }
  for (bool logistic : {false, true}) {  // gradient of 0.5 * scale / m * sum (f(x) - l)^2 ... in f's output
    std::vector<Arr> ins;
    ins.push_back(make({2, 3}, x, LOOM_DTYPE_FLOAT64));
    ins.push_back(make({2, 3}, lab, LOOM_DTYPE_FLOAT64));
    auto g = grads_of(logistic ? "LogisticRegressionOutput" : "LinearRegressionOutput", ins, {{"grad_scale", "2"}});
    for (int i = 0; i < 6; ++i) {
      double f = logistic ? 1 / (1 + std::exp(-x[i])) : x[i];
      EXPECT_NEAR(g[0][i], (f - lab[i]) * 2 / 3, 1e-15);
      EXPECT_EQ(g[1][i], 0);
    }
  }
  {  // Embedding: the weight gradient adds the output gradient rows by index.
    std::vector<Arr> ins;
    ins.push_back(make({3}, {2, 0, 2}, LOOM_DTYPE_FLOAT64));
    ins.push_back(make({4, 2}, random_values(8, -1, 1, 5), LOOM_DTYPE_FLOAT64));
    auto g = grads_of("Embedding", ins, {{"input_dim", "4"}, {"output_dim", "2"}});
    EXPECT_EQ(g[1], (std::vector<double>{1, 1, 0, 0, 2, 2, 0, 0}));
  }
  {  // SliceChannel: the gradient of part 0 lands in its slice only.
    std::vector<Arr> ins;
    ins.push_back(make({2, 4}, random_values(8, -1, 1, 6), LOOM_DTYPE_FLOAT64));
    auto g = grads_of("SliceChannel", ins, {{"num_outputs", "2"}, {"axis", "1"}}, 2);
    EXPECT_EQ(g[0], (std::vector<double>{1, 1, 0, 0, 1, 1, 0, 0}));
  }
}

TEST(Grad, DropoutMasksAndScalesInTrainingAndIsIdentityOtherwise) {
  std::vector<int64_t> s{100, 100};
  auto x = random_values(10000, 0.5, 1.5, 9);
  Arr X = make(s, x, LOOM_DTYPE_FLOAT64), G = zeros_like(s);
  ASSERT_EQ(loom_autograd_mark_variables(&X.h, &G.h, nullptr, 1), LOOM_OK);
  loom_random_seed(3);
  loom_autograd_set_training(nullptr, 1);
  loom_autograd_set_recording(nullptr, 1);
  std::vector<Arr> outs;
  ASSERT_EQ(invoke("Dropout", {&X}, {{"p", "0.3"}}, &outs, 2), LOOM_OK) << loom_last_error();
  loom_autograd_set_recording(nullptr, 0);
  loom_autograd_set_training(nullptr, 0);
  ASSERT_EQ(loom_autograd_backward(&outs[0].h, nullptr, 1), LOOM_OK) << loom_last_error();
  auto y = read(outs[0]), mask = read(outs[1]), g = read(G);
  int dropped = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    ASSERT_TRUE(mask[i] == 0 || std::fabs(mask[i] - 1 / 0.7) < 1e-12) << mask[i];
    dropped += mask[i] == 0;
    EXPECT_NEAR(y[i], x[i] * mask[i], 1e-12);
    EXPECT_EQ(g[i], mask[i]);
  }
  EXPECT_NEAR(dropped / 10000.0, 0.3, 0.02);
  std::vector<Arr> pred;
  ASSERT_EQ(invoke("Dropout", {&X}, {{"p", "0.3"}}, &pred, 2), LOOM_OK);
  EXPECT_EQ(read(pred[0]), x);
  EXPECT_EQ(invoke("Dropout", {&X}, {{"p", "1"}}, &pred, 2), LOOM_ERR_INVALID_ARGUMENT);
}

// prod's gradient with exact zeros in a group, against the product of the
// other elements computed by a naive loop.
TEST(Grad, ProdGradientWithZerosIsTheProductOfTheOthers) {
  std::vector<double> x = {1, 0, 3, 0, 0, 2, 2, 3, 4, -1, 0.5, 0};
  Arr a = make({4, 3}, x, LOOM_DTYPE_FLOAT64), g = make({4, 3}, std::vector<double>(12, 0), LOOM_DTYPE_FLOAT64);
  ASSERT_EQ(loom_autograd_mark_variables(&a.h, &g.h, nullptr, 1), LOOM_OK);
  loom_autograd_set_recording(nullptr, 1);
  Arr y = call("prod", {&a}, {{"axis", "(1,)"}});
  loom_autograd_set_recording(nullptr, 0);
  Arr head = make({4}, {1, 2, -1, 0.5}, LOOM_DTYPE_FLOAT64);
  ASSERT_EQ(loom_autograd_backward(&y.h, &head.h, 1), LOOM_OK) << loom_last_error();
  std::vector<double> want(12), hv = {1, 2, -1, 0.5};
  for (int r = 0; r < 4; ++r)
    for (int j = 0; j < 3; ++j) {
      double others = 1;
      for (int k = 0; k < 3; ++k)
        if (k != j) others *= x[r * 3 + k];
      want[r * 3 + j] = hv[r] * others;
    }
  EXPECT_EQ(read(g), want);
}

// Repeated indices add their gradients into the same row.
TEST(Grad, TakeGradientSumsRepeatedRows) {
  Arr d = make({3, 2}, {1, 2, 3, 4, 5, 6}, LOOM_DTYPE_FLOAT64);
  Arr g = make({3, 2}, std::vector<double>(6, 0), LOOM_DTYPE_FLOAT64);
  Arr idx = make({4}, {2, 0, 2, 2}, LOOM_DTYPE_INT64);
  ASSERT_EQ(loom_autograd_mark_variables(&d.h, &g.h, nullptr, 1), LOOM_OK);
  loom_autograd_set_recording(nullptr, 1);
  Arr y = call("take", {&d, &idx});
  loom_autograd_set_recording(nullptr, 0);
  Arr head = make({4, 2}, {1, 10, 2, 20, 3, 30, 4, 40}, LOOM_DTYPE_FLOAT64);
  ASSERT_EQ(loom_autograd_backward(&y.h, &head.h, 1), LOOM_OK) << loom_last_error();
  EXPECT_EQ(read(g), (std::vector<double>{2, 20, 0, 0, 8, 80}));
}

TEST(Grad, EveryDifferentiableOpHasAGradientTest) {
  int32_t n = 0;
  ASSERT_EQ(loom_op_count(&n), LOOM_OK);
  std::string missing;
  for (int32_t i = 0; i < n; ++i) {
    loom_op op;
    const char *json, *name;
    loom_op_get(&op, i);
    loom_op_describe(&json, op);
    loom_op_get_name(&name, op);
    if (std::string(json).find("\"differentiable\": true") != std::string::npos &&
        !grad_covered().count(name))
      missing += std::string(name) + " ";
  }
  EXPECT_TRUE(missing.empty()) << "ops with a gradient but no finite-difference test: " << missing;
}

TEST(Grad, SharedInputsAccumulateAndAddRequestAdds) {
  Arr x = make({3}, {1, 2, 3}, LOOM_DTYPE_FLOAT64), g = make({3}, {10, 10, 10}, LOOM_DTYPE_FLOAT64);
  int32_t add = 2;
  ASSERT_EQ(loom_autograd_mark_variables(&x.h, &g.h, &add, 1), LOOM_OK);
  loom_autograd_set_recording(nullptr, 1);
  Arr y = call("multiply", {&x, &x});  // d/dx x*x = 2x
  Arr z = call("add", {&y, &x});       // + 1
  loom_autograd_set_recording(nullptr, 0);
  ASSERT_EQ(loom_autograd_backward(&z.h, nullptr, 1), LOOM_OK) << loom_last_error();
  EXPECT_EQ(read(g), (std::vector<double>{13, 15, 17}));  // 10 + 2x + 1
  loom_ndarray gh;
  ASSERT_EQ(loom_ndarray_get_grad(&gh, x.h), LOOM_OK);
  Arr got(gh);
  EXPECT_EQ(read(got), read(g));
}

TEST(Grad, ErrorsNameTheProblem) {
  Arr x = make({3}, {1, 2, 3}, LOOM_DTYPE_FLOAT64), g = zeros_like({3});
  ASSERT_EQ(loom_autograd_mark_variables(&x.h, &g.h, nullptr, 1), LOOM_OK);
  loom_autograd_set_recording(nullptr, 1);
  Arr m = call("one_hot", {&x}, {{"depth", "4"}});
  loom_autograd_set_recording(nullptr, 0);
  EXPECT_EQ(loom_autograd_backward(&m.h, nullptr, 1), LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(loom_last_error()).find("op 'one_hot' has no gradient"), std::string::npos)
      << loom_last_error();
  Arr plain = make({3}, {1, 2, 3}, LOOM_DTYPE_FLOAT64);
  EXPECT_EQ(loom_autograd_backward(&plain.h, nullptr, 1), LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(loom_last_error()).find("was not computed while recording"),
            std::string::npos);
  {  // a head gradient of another dtype would be misread by the kernels: refused
    loom_autograd_set_recording(nullptr, 1);
    Arr sq = call("square", {&x});
    loom_autograd_set_recording(nullptr, 0);
    Arr hg = make({3}, {1, 1, 1}, LOOM_DTYPE_FLOAT32);
    EXPECT_EQ(loom_autograd_backward(&sq.h, &hg.h, 1), LOOM_ERR_DTYPE);
    EXPECT_NE(std::string(loom_last_error()).find("head gradient 0 has dtype float32 but the head has dtype float64"),
              std::string::npos)
        << loom_last_error();
  }
  Arr wrong = zeros_like({4});
  EXPECT_EQ(loom_autograd_mark_variables(&x.h, &wrong.h, nullptr, 1), LOOM_ERR_SHAPE);
  // A gradient buffer on another device than its variable is refused, naming both.
  {
    std::vector<int64_t> xs = shape_of(x);
    loom_ndarray other = nullptr;
    ASSERT_EQ(loom_ndarray_create(&other, xs.data(), int32_t(xs.size()), dtype_of(x), LOOM_DEVICE_CPU, 1), LOOM_OK);
    Arr elsewhere(other);
    EXPECT_EQ(loom_autograd_mark_variables(&x.h, &elsewhere.h, nullptr, 1), LOOM_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(loom_last_error()).find("the gradient buffer is on cpu(1) but the variable"), std::string::npos)
        << loom_last_error();
  }
  loom_ndarray gh;
  EXPECT_EQ(loom_ndarray_get_grad(&gh, plain.h), LOOM_ERR_INVALID_ARGUMENT);
  // Writing into an existing array while recording is refused, not silently unrecorded.
  loom_autograd_set_recording(nullptr, 1);
  loom_op add;
  loom_op_find(&add, "add");
  loom_ndarray ins[2] = {x.h, x.h}, outs[1] = {plain.h};
  EXPECT_EQ(loom_imperative_invoke(outs, 1, add, ins, 2, nullptr, nullptr, 0),
            LOOM_ERR_INVALID_ARGUMENT);
  loom_autograd_set_recording(nullptr, 0);
}

TEST(Grad, RecordingIsPerThread) {
  int32_t prev = -1;
  ASSERT_EQ(loom_autograd_set_recording(&prev, 1), LOOM_OK);
  EXPECT_EQ(prev, 0);
  std::thread t([] {
    int32_t other = -1;
    loom_autograd_set_recording(&other, 0);
    EXPECT_EQ(other, 0);
  });
  t.join();
  ASSERT_EQ(loom_autograd_set_recording(&prev, 0), LOOM_OK);
  EXPECT_EQ(prev, 1);
}

}  // namespace
