// MXNet 1.9's semantics, case by case, each against a reference written from
// MXNet's sources (apache/mxnet at tag 1.9.1, file named at each test) with
// naive float64 loops, never from the kernel under test.
#include <cstring>
#include <limits>

#include "testutil.h"

using namespace lt;

namespace {

// d(sum(out * head))/d(inputs) through autograd, in training mode.
std::vector<std::vector<double>> backward_of(const std::string &op, std::vector<Arr> &ins,
                                             const Params &params, const Arr *head = nullptr,
                                             int nout = 1, size_t nvars = SIZE_MAX) {
  std::vector<Arr> gs;
  std::vector<loom_ndarray> hs, ghs;
  for (size_t i = 0; i < ins.size() && i < nvars; ++i) {
    gs.push_back(make(shape_of(ins[i]), std::vector<double>(numel(shape_of(ins[i])), 0),
                      LOOM_DTYPE_FLOAT64));
    hs.push_back(ins[i].h);
    ghs.push_back(gs.back().h);
  }
  EXPECT_EQ(loom_autograd_mark_variables(hs.data(), ghs.data(), nullptr, int32_t(hs.size())), LOOM_OK);
  int32_t prev;
  loom_autograd_set_recording(nullptr, 1);
  loom_autograd_set_training(&prev, 1);
  std::vector<const Arr *> p;
  for (auto &a : ins) p.push_back(&a);
  std::vector<Arr> outs;
  EXPECT_EQ(invoke(op, p, params, &outs, nout), LOOM_OK) << loom_last_error();
  loom_autograd_set_recording(nullptr, 0);
  loom_autograd_set_training(nullptr, prev);
  EXPECT_EQ(loom_autograd_backward(&outs[0].h, head ? &head->h : nullptr, 1), LOOM_OK)
      << loom_last_error();
  std::vector<std::vector<double>> r;
  for (auto &g : gs) r.push_back(read(g));
  return r;
}

std::vector<double> arange(int n) {
  std::vector<double> v(n);
  for (int i = 0; i < n; ++i) v[i] = i;
  return v;
}

// src/operator/nn/pool.h: the avg divisor is the window clipped to in + pad;
// a max window with no input cell gives the dtype's lowest value.
TEST(MXNet, PoolingFullConventionDividesByTheClippedWindow) {
  Arr x = make({1, 1, 5, 9}, arange(45), LOOM_DTYPE_FLOAT64);
  Params pp{{"kernel", "(2,2)"}, {"stride", "(2,2)"}, {"pool_type", "avg"}, {"pooling_convention", "full"}};
  Arr y = call("Pooling", {&x}, pp);
  ASSERT_EQ(shape_of(y), (std::vector<int64_t>{1, 1, 3, 5}));
  auto v = read(y);
  EXPECT_DOUBLE_EQ(v[10], 36.5);  // window (2, 0): cells 36 and 37, divided by 2 (not 4)
  EXPECT_DOUBLE_EQ(v[14], 44.0);  // the corner window holds one cell
  std::vector<Arr> ins;
  ins.push_back(make({1, 1, 5, 9}, arange(45), LOOM_DTYPE_FLOAT64));
  auto g = backward_of("Pooling", ins, pp)[0];
  EXPECT_DOUBLE_EQ(g[4 * 9 + 0], 0.5);
  EXPECT_DOUBLE_EQ(g[4 * 9 + 8], 1.0);
  EXPECT_DOUBLE_EQ(g[0], 0.25);

  Arr z = make({1, 1, 2, 2}, {1, 2, 3, 4}, LOOM_DTYPE_FLOAT32);
  Arr m = call("Pooling", {&z}, {{"kernel", "(1,1)"}, {"stride", "(2,2)"}, {"pad", "(1,1)"},
                                 {"pool_type", "max"}, {"pooling_convention", "full"}});
  ASSERT_EQ(shape_of(m), (std::vector<int64_t>{1, 1, 3, 3}));
  auto mv = read(m);
  EXPECT_EQ(mv[0], double(std::numeric_limits<float>::lowest()));  // wholly in the padding
  EXPECT_EQ(mv[4], 4.0);
}

// Reference softmax of `n` values at stride `st`.
std::vector<double> softmax_ref(const std::vector<double> &x, int64_t outer, int64_t k, int64_t inner) {
  std::vector<double> y(x.size());
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < inner; ++j) {
      double mx = -1e300, z = 0;
      for (int64_t c = 0; c < k; ++c) mx = std::max(mx, x[(o * k + c) * inner + j]);
      for (int64_t c = 0; c < k; ++c) z += std::exp(x[(o * k + c) * inner + j] - mx);
      for (int64_t c = 0; c < k; ++c) y[(o * k + c) * inner + j] = std::exp(x[(o * k + c) * inner + j] - mx) / z;
    }
  return y;
}

// src/operator/softmax_output-inl.h and mshadow's SoftmaxGrad.
TEST(MXNet, SoftmaxOutputFollowsMXNetForEveryLayoutAndNormalization) {
  auto x = random_values(2 * 3 * 4, -2, 2, 91);
  // Default: (N, rest) flattened per sample; labels shaped data.shape[:-1], row y takes label y.
  {
    std::vector<Arr> ins;
    ins.push_back(make({2, 3, 4}, x, LOOM_DTYPE_FLOAT64));
    ins.push_back(make({2, 3}, {5, 11, 0, 0, 0, 0}, LOOM_DTYPE_FLOAT64));
    Arr y = call("SoftmaxOutput", {&ins[0], &ins[1]});
    auto want = softmax_ref(x, 2, 12, 1);
    expect_close(read(y), want, LOOM_DTYPE_FLOAT64, "flattened softmax");
    for (const char *norm : {"null", "batch"}) {
      auto g = backward_of("SoftmaxOutput", ins, {{"normalization", norm}, {"grad_scale", "3"}}, nullptr, 1, 1)[0];
      double div = std::string(norm) == "batch" ? 6 : 1;  // batch: every label counts
      for (int r = 0; r < 2; ++r)
        for (int c = 0; c < 12; ++c) {
          double lab = r == 0 ? 5 : 11;
          EXPECT_NEAR(g[r * 12 + c], (want[r * 12 + c] - (c == lab)) * 3 / div, 1e-12) << norm;
        }
    }
  }
  // multi_output: softmax over axis 1, labels (N, rest); null divides by the spatial size.
  std::vector<double> lab{0, 2, 1, 1, 2, 2, 0, 1};
  auto want = softmax_ref(x, 2, 3, 4);
  for (const char *norm : {"null", "batch", "valid"})
    for (bool use_ignore : {false, true}) {
      std::vector<Arr> ins;
      ins.push_back(make({2, 3, 4}, x, LOOM_DTYPE_FLOAT64));
      ins.push_back(make({2, 4}, lab, LOOM_DTYPE_FLOAT64));
      Params pp{{"multi_output", "true"}, {"normalization", norm}, {"ignore_label", "2"},
                {"use_ignore", use_ignore ? "true" : "false"}};
      auto g = backward_of("SoftmaxOutput", ins, pp, nullptr, 1, 1)[0];
      double scale = std::string(norm) == "null" ? 1.0 / 4 : std::string(norm) == "batch" ? 1.0 / 2 / 4 : 1.0 / 5;
      for (int n = 0; n < 2; ++n)
        for (int c = 0; c < 3; ++c)
          for (int j = 0; j < 4; ++j) {
            double l = lab[n * 4 + j];
            int at = (n * 3 + c) * 4 + j;
            double e = (use_ignore && l == 2) ? 0 : (want[at] - (c == l)) * scale;
            EXPECT_NEAR(g[at], e, 1e-12) << norm << " ignore " << use_ignore << " at " << at;
          }
    }
  // valid without use_ignore: labels equal to ignore_label still leave the count.
  {
    std::vector<Arr> ins;
    ins.push_back(make({4, 3}, std::vector<double>(x.begin(), x.begin() + 12), LOOM_DTYPE_FLOAT64));
    ins.push_back(make({4}, {2, 0, 2, 1}, LOOM_DTYPE_FLOAT64));
    auto g = backward_of("SoftmaxOutput", ins, {{"normalization", "valid"}, {"ignore_label", "2"}}, nullptr, 1, 1)[0];
    auto p = softmax_ref(std::vector<double>(x.begin(), x.begin() + 12), 4, 3, 1);
    std::vector<double> l{2, 0, 2, 1};
    for (int r = 0; r < 4; ++r)
      for (int c = 0; c < 3; ++c) EXPECT_NEAR(g[r * 3 + c], (p[r * 3 + c] - (c == l[r])) / 2, 1e-12);
  }
  // preserve_shape: softmax over the last axis; smooth_alpha spreads alpha over the others.
  {
    std::vector<Arr> ins;
    ins.push_back(make({2, 3, 4}, x, LOOM_DTYPE_FLOAT64));
    ins.push_back(make({2, 3}, {0, 1, 2, 3, 3, 0}, LOOM_DTYPE_FLOAT64));
    auto p = softmax_ref(x, 6, 4, 1);
    expect_close(read(call("SoftmaxOutput", {&ins[0], &ins[1]}, {{"preserve_shape", "true"}})), p,
                 LOOM_DTYPE_FLOAT64, "preserve_shape");
    auto g = backward_of("SoftmaxOutput", ins, {{"preserve_shape", "true"}, {"smooth_alpha", "0.3"}}, nullptr, 1, 1)[0];
    std::vector<double> l{0, 1, 2, 3, 3, 0};
    for (int r = 0; r < 6; ++r)
      for (int c = 0; c < 4; ++c)
        EXPECT_NEAR(g[r * 4 + c], p[r * 4 + c] - (c == l[r] ? 0.7 : 0.1), 1e-12);
  }
  // A label with the data's shape is a probability: (p - label) * grad_scale, no normalization.
  {
    std::vector<Arr> ins;
    ins.push_back(make({2, 3}, std::vector<double>(x.begin(), x.begin() + 6), LOOM_DTYPE_FLOAT64));
    std::vector<double> q{0.2, 0.3, 0.5, 1, 0, 0};
    ins.push_back(make({2, 3}, q, LOOM_DTYPE_FLOAT64));
    auto g = backward_of("SoftmaxOutput", ins, {{"normalization", "batch"}, {"grad_scale", "2"}}, nullptr, 1, 1)[0];
    auto p = softmax_ref(std::vector<double>(x.begin(), x.begin() + 6), 2, 3, 1);
    for (int i = 0; i < 6; ++i) EXPECT_NEAR(g[i], (p[i] - q[i]) * 2, 1e-12);
  }
  // A label of another shape names both shapes.
  Arr d = make({2, 3, 4}, x), bad = make({2, 4}, std::vector<double>(8, 0));
  std::vector<Arr> o;
  EXPECT_EQ(invoke("SoftmaxOutput", {&d, &bad}, {}, &o), LOOM_ERR_SHAPE);
  EXPECT_NE(std::string(loom_last_error()).find("label has shape (2,4), expected (2,3)"), std::string::npos)
      << loom_last_error();
}

// src/operator/nn/softmax_activation-inl.h: instance over each sample, channel over axis 1.
COVERS("SoftmaxActivation");
TEST(MXNet, SoftmaxActivationModes) {
  auto x = random_values(2 * 3 * 4, -2, 2, 93);
  Arr a = make({2, 3, 4}, x, LOOM_DTYPE_FLOAT64);
  expect_close(read(call("SoftmaxActivation", {&a})), softmax_ref(x, 2, 12, 1), LOOM_DTYPE_FLOAT64, "instance");
  expect_close(read(call("SoftmaxActivation", {&a}, {{"mode", "channel"}})), softmax_ref(x, 2, 3, 4),
               LOOM_DTYPE_FLOAT64, "channel");
  Arr v = make({3}, {1, 2, 3});
  std::vector<Arr> o;
  EXPECT_EQ(invoke("SoftmaxActivation", {&v}, {{"mode", "channel"}}, &o), LOOM_ERR_SHAPE);
}

// src/operator/nn/upsampling-inl.h: several inputs, each enlarged to the first's
// output size by its own factor, joined along the channels or summed.
TEST(MXNet, UpSamplingJoinsSeveralInputs) {
  Arr a = make({1, 1, 2, 2}, {1, 2, 3, 4}), b = make({1, 2, 1, 1}, {10, 20});
  Arr cat = call("UpSampling", {&a, &b}, {{"scale", "2"}, {"num_args", "2"}});
  ASSERT_EQ(shape_of(cat), (std::vector<int64_t>{1, 3, 4, 4}));
  auto v = read(cat);
  EXPECT_EQ(std::vector<double>(v.begin(), v.begin() + 4), (std::vector<double>{1, 1, 2, 2}));
  EXPECT_EQ(v[16], 10);  // input 1, channel 0, enlarged 4x
  EXPECT_EQ(v[47], 20);
  Arr c = make({1, 1, 1, 1}, {100});
  auto s = read(call("UpSampling", {&a, &c}, {{"scale", "2"}, {"num_args", "2"}, {"multi_input_mode", "sum"}}));
  EXPECT_EQ(std::vector<double>(s.begin(), s.begin() + 4), (std::vector<double>{101, 101, 102, 102}));
  std::vector<Arr> o;
  EXPECT_EQ(invoke("UpSampling", {&a, &b}, {{"scale", "2"}}, &o), LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(loom_last_error()).find("num_args=1 but 2 inputs"), std::string::npos);
  Arr odd = make({1, 1, 3, 3}, std::vector<double>(9, 0));
  EXPECT_EQ(invoke("UpSampling", {&a, &odd}, {{"scale", "2"}, {"num_args", "2"}}, &o), LOOM_ERR_SHAPE);
}

// src/operator/tensor/control_flow_op.h: a 1-D condition selects rows.
TEST(MXNet, WhereWithAVectorConditionSelectsRows) {
  Arr c = make({2}, {1, 0});
  Arr x = make({2, 2}, {1, 2, 3, 4}), y = make({2, 2}, {-1, -2, -3, -4});
  EXPECT_EQ(read(call("where", {&c, &x, &y})), (std::vector<double>{1, 2, -3, -4}));
  Arr c3 = make({3}, {1, 0, 1}), x3 = make({3, 2}, {1, 2, 3, 4, 5, 6}), y3 = make({3, 2}, std::vector<double>(6, 0));
  EXPECT_EQ(read(call("where", {&c3, &x3, &y3})), (std::vector<double>{1, 2, 0, 0, 5, 6}));
  std::vector<Arr> ins;
  ins.push_back(make({2}, {1, 0}, LOOM_DTYPE_FLOAT64));
  ins.push_back(make({2, 2}, {1, 2, 3, 4}, LOOM_DTYPE_FLOAT64));
  ins.push_back(make({2, 2}, {1, 2, 3, 4}, LOOM_DTYPE_FLOAT64));
  auto g = backward_of("where", ins, {});
  EXPECT_EQ(g[1], (std::vector<double>{1, 1, 0, 0}));
  EXPECT_EQ(g[2], (std::vector<double>{0, 0, 1, 1}));
  Arr bad = make({3}, {1, 0, 1});
  std::vector<Arr> o;
  EXPECT_EQ(invoke("where", {&bad, &x, &y}, {}, &o), LOOM_ERR_SHAPE);
  EXPECT_NE(std::string(loom_last_error()).find("length must equal x.shape[0]"), std::string::npos);
}

// src/operator/nn/batch_norm.cc: the moving statistics change in the backward
// pass of training (not in a forward pass alone); fix_gamma writes 1 into gamma.
TEST(MXNet, BatchNormUpdatesMovingStatisticsInBackwardAndFixGammaWritesOne) {
  // S values per channel and image: rows shorter than the kernels' 8 lanes, and
  // rows that fill them with a remainder.
  for (int S : {4, 13}) {
    SCOPED_TRACE("S=" + std::to_string(S));
    auto x = random_values(3 * 2 * S, -2, 2, 17);
    std::vector<Arr> ins;
    ins.push_back(make({3, 2, S}, x, LOOM_DTYPE_FLOAT64));
    ins.push_back(make({2}, {1.5, -0.5}, LOOM_DTYPE_FLOAT64));
    ins.push_back(make({2}, {0.2, 0.1}, LOOM_DTYPE_FLOAT64));
    ins.push_back(make({2}, {0.1, -0.2}, LOOM_DTYPE_FLOAT64));
    ins.push_back(make({2}, {1.2, 0.8}, LOOM_DTYPE_FLOAT64));
    Params pp{{"momentum", "0.8"}, {"eps", "0.01"}};
    int32_t prev;
    loom_autograd_set_training(&prev, 1);
    Arr y = call("BatchNorm", {&ins[0], &ins[1], &ins[2], &ins[3], &ins[4]}, pp);
    loom_autograd_set_training(nullptr, prev);
    read(y);
    EXPECT_EQ(read(ins[3]), (std::vector<double>{0.1, -0.2})) << "a forward pass leaves the moving mean";
    EXPECT_EQ(read(ins[4]), (std::vector<double>{1.2, 0.8}));
    EXPECT_EQ(read(ins[1]), (std::vector<double>{1, 1})) << "fix_gamma (the default) writes 1 into gamma";
    backward_of("BatchNorm", ins, pp, nullptr, 1, 3);
    for (int c = 0; c < 2; ++c) {
      double mean = 0, var = 0;
      for (int n = 0; n < 3; ++n)
        for (int i = 0; i < S; ++i) mean += x[(n * 2 + c) * S + i] / (3 * S);
      for (int n = 0; n < 3; ++n)
        for (int i = 0; i < S; ++i) var += std::pow(x[(n * 2 + c) * S + i] - mean, 2) / (3 * S);
      EXPECT_NEAR(read(ins[3])[c], 0.8 * (c ? -0.2 : 0.1) + 0.2 * mean, 1e-12);
      EXPECT_NEAR(read(ins[4])[c], 0.8 * (c ? 0.8 : 1.2) + 0.2 * var, 1e-12);
    }
  }
  auto x = random_values(3 * 2 * 4, -2, 2, 17);
  std::vector<Arr> ins;
  ins.push_back(make({3, 2, 4}, x, LOOM_DTYPE_FLOAT64));
  for (int k = 0; k < 4; ++k) ins.push_back(make({2}, {1.5, -0.5}, LOOM_DTYPE_FLOAT64));
  int32_t prev;
  // output_mean_var: the mean and 1/sqrt(var + eps) are outputs 1 and 2.
  std::vector<Arr> outs;
  loom_autograd_set_training(&prev, 1);
  ASSERT_EQ(invoke("BatchNorm", {&ins[0], &ins[1], &ins[2], &ins[3], &ins[4]},
                   {{"output_mean_var", "true"}, {"eps", "0.01"}}, &outs, 3), LOOM_OK) << loom_last_error();
  loom_autograd_set_training(nullptr, prev);
  double mean0 = 0, var0 = 0;
  for (int n = 0; n < 3; ++n)
    for (int i = 0; i < 4; ++i) mean0 += x[n * 8 + i] / 12;
  for (int n = 0; n < 3; ++n)
    for (int i = 0; i < 4; ++i) var0 += std::pow(x[n * 8 + i] - mean0, 2) / 12;
  EXPECT_NEAR(read(outs[1])[0], mean0, 1e-12);
  EXPECT_NEAR(read(outs[2])[0], 1 / std::sqrt(var0 + 0.01), 1e-12);
}

// MXNet 1.x shapes: full reductions and vector . vector give (1,).
TEST(MXNet, FullReductionsAndInnerProductsHaveShapeOne) {
  Arr a = make({2, 3}, {1, 2, 3, 4, 5, 6});
  for (const char *op : {"sum", "mean", "prod", "max", "min", "argmax", "argmin"})
    EXPECT_EQ(shape_of(call(op, {&a})), std::vector<int64_t>{1}) << op;
  EXPECT_EQ(shape_of(call("sum", {&a}, {{"keepdims", "true"}})), (std::vector<int64_t>{1, 1}));
  EXPECT_EQ(read(call("sum", {&a}, {{"axis", "()"}, {"exclude", "true"}})), std::vector<double>{21});
  Arr v = make({3}, {1, 2, 3});
  Arr d = call("dot", {&v, &v});
  EXPECT_EQ(shape_of(d), std::vector<int64_t>{1});
  EXPECT_EQ(read(d)[0], 14);
  // dot's gradients for 1-D and N-D operands.
  std::vector<Arr> ins;
  ins.push_back(make({3}, {1, 2, 3}, LOOM_DTYPE_FLOAT64));
  ins.push_back(make({3}, {4, 5, 6}, LOOM_DTYPE_FLOAT64));
  Arr head = make({1}, {2}, LOOM_DTYPE_FLOAT64);
  auto g = backward_of("dot", ins, {}, &head);
  EXPECT_EQ(g[0], (std::vector<double>{8, 10, 12}));
  EXPECT_EQ(g[1], (std::vector<double>{2, 4, 6}));
  std::vector<Arr> nd;
  auto av = random_values(12, -1, 1, 3), bv = random_values(8, -1, 1, 4);
  nd.push_back(make({2, 3, 2}, av, LOOM_DTYPE_FLOAT64));
  nd.push_back(make({2, 4}, bv, LOOM_DTYPE_FLOAT64));
  auto gn = backward_of("dot", nd, {});  // head of ones (2,3,4): dA[i,k] = sum_n B[k,n]
  for (int i = 0; i < 6; ++i)
    for (int k = 0; k < 2; ++k) EXPECT_NEAR(gn[0][i * 2 + k], bv[k * 4] + bv[k * 4 + 1] + bv[k * 4 + 2] + bv[k * 4 + 3], 1e-12);
  for (int k = 0; k < 2; ++k)
    for (int n = 0; n < 4; ++n) {
      double s = 0;
      for (int i = 0; i < 6; ++i) s += av[i * 2 + k];
      EXPECT_NEAR(gn[1][k * 4 + n], s, 1e-12);
    }
}

// src/operator/tensor/indexing_op.h: take's modes, Embedding clips, one_hot leaves
// out-of-range rows at off_value.
TEST(MXNet, OutOfRangeIndicesFollowMXNet) {
  Arr w = make({3, 2}, {1, 2, 3, 4, 5, 6});
  Arr idx = make({3}, {-1, 7, 1.9});
  EXPECT_EQ(read(call("Embedding", {&idx, &w}, {{"input_dim", "3"}, {"output_dim", "2"}})),
            (std::vector<double>{1, 2, 5, 6, 3, 4}));
  EXPECT_EQ(read(call("one_hot", {&idx}, {{"depth", "3"}})),
            (std::vector<double>{0, 0, 0, 0, 0, 0, 0, 1, 0}));
}

// Every MXNet name resolves; JSON is written with MXNet's registered names.
TEST(MXNet, MXNetOperatorNamesResolveAndAreWritten) {
  for (const char *alias : {"elemwise_add", "_plus", "_Plus", "broadcast_add", "_plus_scalar",
                            "_minus_scalar", "_mul_scalar", "Reshape", "Cast", "_copy", "identity",
                            "flatten", "Softmax", "split", "add_n", "broadcast_lesser", "uniform"}) {
    loom_op op = nullptr;
    EXPECT_EQ(loom_op_find(&op, alias), LOOM_OK) << alias << ": " << loom_last_error();
  }
  const char *json = R"J({"nodes": [{"op": "null", "name": "x", "inputs": []},
      {"op": "_mul_scalar", "name": "m", "attrs": {"scalar": "2"}, "inputs": [[0, 0, 0]]},
      {"op": "elemwise_add", "name": "a", "inputs": [[1, 0, 0], [0, 0, 0]]},
      {"op": "Reshape", "name": "r", "attrs": {"shape": "(-1,)"}, "inputs": [[2, 0, 0]]}],
      "arg_nodes": [0], "heads": [[3, 0, 0]]})J";
  loom_symbol s = nullptr;
  ASSERT_EQ(loom_symbol_from_json(&s, json), LOOM_OK) << loom_last_error();
  const char *out = nullptr;
  ASSERT_EQ(loom_symbol_to_json(&out, s), LOOM_OK);
  std::string written(out);
  EXPECT_NE(written.find("\"_mul_scalar\""), std::string::npos) << written;
  EXPECT_NE(written.find("\"broadcast_add\""), std::string::npos) << written;
  EXPECT_NE(written.find("\"Reshape\""), std::string::npos) << written;
  loom_symbol_free(s);
  // Legacy files: BatchNorm without its moving statistics gains them.
  const char *old = R"J({"nodes": [{"op": "null", "name": "data", "inputs": []},
      {"op": "null", "name": "bn_gamma", "inputs": []}, {"op": "null", "name": "bn_beta", "inputs": []},
      {"op": "BatchNorm", "name": "bn", "param": {"eps": "0.001"}, "inputs": [[0, 0], [1, 0], [2, 0]]}],
      "arg_nodes": [0, 1, 2], "heads": [[3, 0]]})J";
  ASSERT_EQ(loom_symbol_from_json(&s, old), LOOM_OK) << loom_last_error();
  ASSERT_EQ(loom_symbol_to_json(&out, s), LOOM_OK);
  EXPECT_NE(std::string(out).find("bn_moving_mean"), std::string::npos);
  loom_symbol_free(s);
}

// Parameters MXNet accepts, with MXNet's meaning.
TEST(MXNet, MXNetParametersAreAcceptedWithTheirMeaning) {
  Arr x = make({10, 5, 4}, std::vector<double>(200, 1));
  EXPECT_EQ(shape_of(call("reshape", {&x}, {{"shape", "(-1, 0)"}, {"reverse", "true"}})),
            (std::vector<int64_t>{50, 4}));
  EXPECT_EQ(shape_of(call("reshape", {&x}, {{"shape", "(-1, 0)"}})), (std::vector<int64_t>{40, 5}));
  EXPECT_EQ(shape_of(call("reshape", {&x}, {{"target_shape", "(0, 8)"}})), (std::vector<int64_t>{25, 8}));
  // Deconvolution's target_shape sets pad and adj.
  Arr d = make({1, 1, 3, 3}, std::vector<double>(9, 1)), k = make({1, 1, 3, 3}, std::vector<double>(9, 1));
  for (int t : {7, 6, 5}) {
    std::string ts = "(" + std::to_string(t) + "," + std::to_string(t) + ")";
    Arr o = call("Deconvolution", {&d, &k}, {{"kernel", "(3,3)"}, {"stride", "(2,2)"}, {"num_filter", "1"},
                                             {"target_shape", ts}});
    EXPECT_EQ(shape_of(o), (std::vector<int64_t>{1, 1, t, t})) << ts;
  }
  // layout: the channel-first layouts; another is a clear error.
  Arr img = make({1, 1, 4, 4}, std::vector<double>(16, 1));
  Arr wk = make({1, 1, 3, 3}, std::vector<double>(9, 1));
  Params cp{{"kernel", "(3,3)"}, {"num_filter", "1"}, {"no_bias", "true"}, {"cudnn_tune", "fastest"},
            {"cudnn_off", "true"}, {"workspace", "512"}};
  Params ok = cp;
  ok.push_back({"layout", "NCHW"});
  EXPECT_EQ(shape_of(call("Convolution", {&img, &wk}, ok)), (std::vector<int64_t>{1, 1, 2, 2}));
  std::vector<Arr> o;
  Params nhwc = cp;
  nhwc.push_back({"layout", "NHWC"});
  EXPECT_EQ(invoke("Convolution", {&img, &wk}, nhwc, &o), LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(loom_last_error()).find("layout"), std::string::npos);
  Params ncw = cp;
  ncw.push_back({"layout", "NCW"});
  EXPECT_EQ(invoke("Convolution", {&img, &wk}, ncw, &o), LOOM_ERR_SHAPE);
  EXPECT_EQ(invoke("Convolution", {&img, &wk}, {{"kernel", "(3,3)"}, {"num_filter", "1"}, {"tuning", "x"}}, &o),
            LOOM_ERR_INVALID_ARGUMENT);
  // Dropout: axes share one draw along them; mode=always drops in prediction too.
  Arr ones = make({4, 50}, std::vector<double>(200, 1));
  std::vector<Arr> drop;
  ASSERT_EQ(invoke("Dropout", {&ones}, {{"p", "0.5"}, {"mode", "always"}, {"axes", "(0,)"}}, &drop, 2), LOOM_OK)
      << loom_last_error();
  auto dv = read(drop[0]);
  int dropped = 0;
  for (int j = 0; j < 50; ++j) {
    for (int i = 1; i < 4; ++i) EXPECT_EQ(dv[i * 50 + j], dv[j]) << "column " << j;
    dropped += dv[j] == 0;
  }
  EXPECT_GT(dropped, 5);
  EXPECT_LT(dropped, 45);
}

}  // namespace

// Invokes `op` writing into an existing output array.
static loom_status invoke_into(const std::string &op, const std::vector<const Arr *> &ins, const Params &params,
                               loom_ndarray out) {
  loom_op h = nullptr;
  loom_status s = loom_op_find(&h, op.c_str());
  if (s != LOOM_OK) return s;
  std::vector<loom_ndarray> in;
  for (auto *a : ins) in.push_back(a->h);
  std::vector<const char *> k, v;
  for (auto &kv : params) {
    k.push_back(kv.first.c_str());
    v.push_back(kv.second.c_str());
  }
  return loom_imperative_invoke(&out, 1, h, in.data(), static_cast<int32_t>(in.size()), k.data(), v.data(),
                                static_cast<int32_t>(k.size()));
}

// src/operator/contrib/all_finite.cc: 1 when every value is finite after a cast to
// float32, else 0, shape (1,) float32; init_output=false only ever writes 0.
COVERS("all_finite", "multi_all_finite");
TEST(MXNet, AllFiniteCastsToFloat32AndAccumulates) {
  const double inf = std::numeric_limits<double>::infinity(), nan = std::numeric_limits<double>::quiet_NaN();
  struct Case { std::vector<double> v; int dtype; double want; };
  for (const Case &c : {Case{{1, -2, 3.4e38}, LOOM_DTYPE_FLOAT32, 1}, Case{{1, nan, 3}, LOOM_DTYPE_FLOAT32, 0},
                        Case{{-inf}, LOOM_DTYPE_FLOAT32, 0}, Case{{1e300, 1}, LOOM_DTYPE_FLOAT64, 0},
                        Case{{1e30, -1e-300}, LOOM_DTYPE_FLOAT64, 1},
                        Case{{}, LOOM_DTYPE_FLOAT32, 1}}) {
    Arr a = make({static_cast<int64_t>(c.v.size())}, c.v, c.dtype);
    Arr r = call("all_finite", {&a});
    EXPECT_EQ(shape_of(r), (std::vector<int64_t>{1}));
    EXPECT_EQ(read(r), std::vector<double>{c.want}) << c.v.size() << " values of dtype " << c.dtype;
  }
  Arr ok = make({2, 2}, {1, 2, 3, 4}), bad = make({3}, {0, inf, 1}, LOOM_DTYPE_FLOAT64);
  EXPECT_EQ(read(call("multi_all_finite", {&ok, &ok}, {{"num_arrays", "2"}})), std::vector<double>{1});
  EXPECT_EQ(read(call("multi_all_finite", {&ok, &bad, &ok}, {{"num_arrays", "3"}})), std::vector<double>{0});
  // init_output=false: a given output keeps what it held unless a value is not finite.
  std::vector<Arr> o;
  o.push_back(make({1}, {1}));
  loom_ndarray keep = o[0].h;
  ASSERT_EQ(invoke_into("all_finite", {&ok}, {{"init_output", "false"}}, keep), LOOM_OK) << loom_last_error();
  EXPECT_EQ(read(o[0]), std::vector<double>{1});
  ASSERT_EQ(invoke_into("all_finite", {&bad}, {{"init_output", "false"}}, keep), LOOM_OK);
  ASSERT_EQ(invoke_into("all_finite", {&ok}, {{"init_output", "false"}}, keep), LOOM_OK);
  EXPECT_EQ(read(o[0]), std::vector<double>{0});
  // Integers cannot be non-finite: refused, naming the op; so is a wrong num_arrays.
  Arr ints = make({2}, {1, 2}, LOOM_DTYPE_INT32);
  std::vector<Arr> x;
  EXPECT_EQ(invoke("all_finite", {&ints}, {}, &x), LOOM_ERR_DTYPE);
  EXPECT_NE(std::string(loom_last_error()).find("all_finite: input 0 is int32"), std::string::npos) << loom_last_error();
  EXPECT_EQ(invoke("multi_all_finite", {&ok, &ok}, {{"num_arrays", "3"}}, &x), LOOM_ERR_INVALID_ARGUMENT);
}
