// Symbols, inference, JSON and executors, through the C ABI: graphs are
// checked against the imperative path, gradients against finite differences.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <mutex>
#include <sstream>
#include <thread>

#include "c_api/c_api_internal.h"
#include "engine/engine.h"
#include "testutil.h"

using namespace lt;

namespace {

struct Sym {
  loom_symbol h = nullptr;
  Sym() = default;
  explicit Sym(loom_symbol x) : h(x) {}
  Sym(const Sym &) = delete;
  Sym(Sym &&o) noexcept : h(o.h) { o.h = nullptr; }
  Sym &operator=(Sym &&o) noexcept {
    std::swap(h, o.h);
    return *this;
  }
  ~Sym() { loom_symbol_free(h); }
};

struct Exec {
  loom_executor h = nullptr;
  Exec() = default;
  explicit Exec(loom_executor x) : h(x) {}
  Exec(const Exec &) = delete;
  Exec(Exec &&o) noexcept : h(o.h) { o.h = nullptr; }
  Exec &operator=(Exec &&o) noexcept {
    std::swap(h, o.h);
    return *this;
  }
  ~Exec() { loom_executor_free(h); }
};

Sym var(const char *name) {
  loom_symbol s = nullptr;
  EXPECT_EQ(loom_symbol_variable(&s, name), LOOM_OK) << loom_last_error();
  return Sym(s);
}

loom_status try_op(Sym *out, const std::string &op, const std::string &name,
                   const std::vector<const Sym *> &ins, const Params &params,
                   const std::vector<std::string> &keys = {}) {
  loom_op h = nullptr;
  loom_status s = loom_op_find(&h, op.c_str());
  if (s != LOOM_OK) return s;
  std::vector<loom_symbol> in;
  for (auto *x : ins) in.push_back(x->h);
  std::vector<const char *> k, v, kn;
  for (auto &kv : params) {
    k.push_back(kv.first.c_str());
    v.push_back(kv.second.c_str());
  }
  for (auto &n : keys) kn.push_back(n.c_str());
  loom_symbol r = nullptr;
  s = loom_symbol_create(&r, h, name.c_str(), int32_t(in.size()), in.data(),
                         keys.empty() ? nullptr : kn.data(), int32_t(k.size()), k.data(), v.data());
  if (s == LOOM_OK) *out = Sym(r);
  return s;
}

Sym op(const std::string &o, const std::string &name, const std::vector<const Sym *> &ins,
       const Params &params = {}) {
  Sym r;
  EXPECT_EQ(try_op(&r, o, name, ins, params), LOOM_OK) << loom_last_error();
  return r;
}

std::string list(const Sym &s, int kind) {
  const char *j = nullptr;
  EXPECT_EQ(loom_symbol_list(&j, s.h, kind), LOOM_OK) << loom_last_error();
  return j ? j : "";
}

std::string to_json(const Sym &s) {
  const char *j = nullptr;
  EXPECT_EQ(loom_symbol_to_json(&j, s.h), LOOM_OK) << loom_last_error();
  return j ? j : "";
}

struct Shapes {
  std::vector<std::string> names;
  std::vector<int32_t> ndims;
  std::vector<int64_t> dims;
  std::vector<const char *> ptrs;
  Shapes(std::initializer_list<std::pair<const char *, std::vector<int64_t>>> l) {
    for (auto &kv : l) {
      names.push_back(kv.first);
      ndims.push_back(int32_t(kv.second.size()));
      dims.insert(dims.end(), kv.second.begin(), kv.second.end());
    }
    for (auto &n : names) ptrs.push_back(n.c_str());
  }
  int32_t n() const { return int32_t(names.size()); }
};

loom_status try_simple_bind(Exec *out, const Sym &s, const Shapes &sh, int32_t req = LOOM_GRAD_WRITE,
                            std::vector<std::pair<std::string, int32_t>> reqs = {}) {
  std::vector<const char *> rn;
  std::vector<int32_t> rv;
  for (auto &r : reqs) {
    rn.push_back(r.first.c_str());
    rv.push_back(r.second);
  }
  loom_executor e = nullptr;
  loom_status st = loom_executor_simple_bind(&e, s.h, LOOM_DEVICE_CPU, 0, sh.n(), sh.ptrs.data(),
                                             sh.ndims.data(), sh.dims.data(), nullptr,
                                             int32_t(rn.size()), rn.data(), rv.data(), req);
  if (st == LOOM_OK) *out = Exec(e);
  return st;
}

Exec simple_bind(const Sym &s, const Shapes &sh, int32_t req = LOOM_GRAD_WRITE,
                 std::vector<std::pair<std::string, int32_t>> reqs = {}) {
  Exec e;
  EXPECT_EQ(try_simple_bind(&e, s, sh, req, reqs), LOOM_OK) << loom_last_error();
  return e;
}

Arr get(const Exec &e, int kind, int i) {
  loom_ndarray h = nullptr;
  EXPECT_EQ(loom_executor_get(&h, e.h, kind, i), LOOM_OK) << loom_last_error();
  return Arr(h);
}

void fill(const Arr &a, const std::vector<double> &v) {
  int32_t d = dtype_of(a);
  std::vector<char> buf(v.size() * loom::dtype_size(d));
  LOOM_DTYPE_SWITCH(d, T, {
    for (size_t i = 0; i < v.size(); ++i) reinterpret_cast<T *>(buf.data())[i] = static_cast<T>(v[i]);
  });
  ASSERT_EQ(loom_ndarray_copy_from_host(a.h, buf.data(), buf.size()), LOOM_OK) << loom_last_error();
}

// The seed's MLP.
Sym mlp() {
  Sym data = var("data");
  Sym fc1 = op("FullyConnected", "fc1", {&data}, {{"num_hidden", "16"}});
  Sym a1 = op("Activation", "relu1", {&fc1}, {{"act_type", "relu"}});
  Sym fc2 = op("FullyConnected", "fc2", {&a1}, {{"num_hidden", "10"}});
  return op("SoftmaxOutput", "softmax", {&fc2});
}

}  // namespace

TEST(Symbol, CompositionNamesArgumentsLikeMXNet) {
  Sym net = mlp();
  EXPECT_EQ(list(net, LOOM_LIST_ARGUMENTS),
            "[\"data\", \"fc1_weight\", \"fc1_bias\", \"fc2_weight\", \"fc2_bias\", \"softmax_label\"]");
  EXPECT_EQ(list(net, LOOM_LIST_OUTPUTS), "[\"softmax_output\"]");
  EXPECT_EQ(list(net, LOOM_LIST_AUXILIARY_STATES), "[]");
  Sym data = var("x");
  Sym bn = op("BatchNorm", "bn", {&data});
  EXPECT_EQ(list(bn, LOOM_LIST_ARGUMENTS), "[\"x\", \"bn_gamma\", \"bn_beta\"]");
  EXPECT_EQ(list(bn, LOOM_LIST_AUXILIARY_STATES), "[\"bn_moving_mean\", \"bn_moving_var\"]");
  // Keyed inputs, automatic names, grouping, outputs.
  Sym w = var("shared_w");
  Sym fc;
  ASSERT_EQ(try_op(&fc, "FullyConnected", "", {&data, &w}, {{"num_hidden", "3"}, {"no_bias", "true"}},
                   {"data", "weight"}),
            LOOM_OK)
      << loom_last_error();
  std::string args = list(fc, LOOM_LIST_ARGUMENTS);
  EXPECT_EQ(args, "[\"x\", \"shared_w\"]");
  std::string outs = list(fc, LOOM_LIST_OUTPUTS);
  EXPECT_EQ(outs.find("fullyconnected"), 2u) << outs;
  loom_symbol parts[] = {bn.h, fc.h}, g = nullptr;
  ASSERT_EQ(loom_symbol_group(&g, parts, 2), LOOM_OK);
  Sym grp(g);
  int32_t n = 0;
  ASSERT_EQ(loom_symbol_num_outputs(&n, grp.h), LOOM_OK);
  EXPECT_EQ(n, 2);
  loom_symbol one = nullptr;
  ASSERT_EQ(loom_symbol_get_output(&one, grp.h, 0), LOOM_OK);
  Sym first(one);
  EXPECT_EQ(list(first, LOOM_LIST_OUTPUTS), "[\"bn_output\"]");
  // A group cannot be an op's input.
  Sym bad;
  EXPECT_EQ(try_op(&bad, "Activation", "a", {&grp}, {{"act_type", "relu"}}), LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(loom_last_error()).find("group of 2 outputs"), std::string::npos);
  // Dropout exposes only its output.
  Sym d = op("Dropout", "drop", {&data}, {{"p", "0.5"}});
  EXPECT_EQ(list(d, LOOM_LIST_OUTPUTS), "[\"drop_output\"]");
}

TEST(Symbol, BadCompositionIsReported) {
  Sym data = var("data");
  Sym r;
  EXPECT_EQ(try_op(&r, "FullyConnected", "fc", {&data}, {{"num_hiden", "3"}}), LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(loom_last_error()).find("unknown parameter 'num_hiden'"), std::string::npos);
  EXPECT_EQ(try_op(&r, "FullyConnected", "fc", {&data}, {{"num_hidden", "3"}}, {"dat"}),
            LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(loom_last_error()).find("unknown input 'dat'"), std::string::npos);
  EXPECT_EQ(try_op(&r, "NoSuchOp", "x", {&data}, {}), LOOM_ERR_NOT_FOUND);
  loom_symbol s = nullptr;
  EXPECT_EQ(loom_symbol_variable(&s, ""), LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(loom_symbol_variable(&s, nullptr), LOOM_ERR_INVALID_ARGUMENT);
  const char *j = nullptr;
  EXPECT_EQ(loom_symbol_to_json(&j, nullptr), LOOM_ERR_INVALID_ARGUMENT);
  loom_symbol freed = nullptr;
  ASSERT_EQ(loom_symbol_variable(&freed, "v"), LOOM_OK);
  loom_symbol_free(freed);
  EXPECT_EQ(loom_symbol_to_json(&j, freed), LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(loom_last_error()).find("already freed"), std::string::npos);
  loom_symbol_free(freed);  // double free is ignored
}

TEST(Symbol, PartialInferenceSweepsForwardAndBackward) {
  Sym net = mlp();
  Shapes sh{{"data", {8, 20}}};
  const char *j = nullptr;
  ASSERT_EQ(loom_symbol_infer(&j, net.h, sh.n(), sh.ptrs.data(), sh.ndims.data(), sh.dims.data(), nullptr),
            LOOM_OK)
      << loom_last_error();
  EXPECT_EQ(std::string(j),
            "{\"arg_shapes\": [[8, 20], [16, 20], [16], [10, 16], [10], [8]], \"out_shapes\": [[8, 10]], "
            "\"aux_shapes\": [], \"arg_dtypes\": [0, 0, 0, 0, 0, 0], \"out_dtypes\": [0], \"aux_dtypes\": [], "
            "\"complete\": true}");
  // Backward sweep: z = relu(x) + w, with only w known, gives x.
  Sym x = var("x"), w = var("w");
  Sym r = op("Activation", "r", {&x}, {{"act_type", "relu"}});
  Sym z = op("add", "z", {&r, &w});
  Shapes sw{{"w", {3, 4}}};
  ASSERT_EQ(loom_symbol_infer(&j, z.h, sw.n(), sw.ptrs.data(), sw.ndims.data(), sw.dims.data(), nullptr),
            LOOM_OK)
      << loom_last_error();
  EXPECT_NE(std::string(j).find("\"arg_shapes\": [[3, 4], [3, 4]]"), std::string::npos) << j;
  // Nothing known: partial, not an error.
  ASSERT_EQ(loom_symbol_infer(&j, net.h, 0, nullptr, nullptr, nullptr, nullptr), LOOM_OK);
  EXPECT_NE(std::string(j).find("\"complete\": false"), std::string::npos);
  EXPECT_NE(std::string(j).find("null"), std::string::npos);
  // Inconsistent shapes name the node.
  Shapes bad{{"data", {8, 20}}, {"fc1_weight", {16, 21}}};
  EXPECT_EQ(loom_symbol_infer(&j, net.h, bad.n(), bad.ptrs.data(), bad.ndims.data(), bad.dims.data(), nullptr),
            LOOM_ERR_SHAPE);
  std::string e = loom_last_error();
  EXPECT_NE(e.find("node 'fc1'"), std::string::npos) << e;
  EXPECT_NE(e.find("(16,21)"), std::string::npos) << e;
  Shapes unknown{{"dta", {8, 20}}};
  EXPECT_EQ(loom_symbol_infer(&j, net.h, unknown.n(), unknown.ptrs.data(), unknown.ndims.data(),
                              unknown.dims.data(), nullptr),
            LOOM_ERR_NOT_FOUND);
  EXPECT_NE(std::string(loom_last_error()).find("'dta'"), std::string::npos);
}

// MXNet's plot_network and print_summary, natively: the DOT text holds MXNet's labels
// and colours and the shapes on the edges; the summary counts each layer's learnable
// inputs (a naive count from the layer sizes below) and totals them.
TEST(Symbol, DrawingAndSummaryFollowMXNetsViz) {
  Sym d = var("data");
  Sym c = op("Convolution", "conv1", {&d}, {{"kernel", "(5, 5)"}, {"num_filter", "20"}});
  Sym b = op("BatchNorm", "bn1", {&c}, {});
  Sym a = op("Activation", "tanh1", {&b}, {{"act_type", "tanh"}});
  Sym p = op("Pooling", "pool1", {&a}, {{"pool_type", "max"}, {"kernel", "(2, 2)"}, {"stride", "(2, 2)"}});
  Sym f = op("Flatten", "flat", {&p}, {});
  Sym fc = op("FullyConnected", "fc1", {&f}, {{"num_hidden", "10"}});
  Sym net = op("SoftmaxOutput", "softmax", {&fc}, {});
  Shapes sh{{"data", {4, 3, 12, 10}}};
  const char *t = nullptr;
  ASSERT_EQ(loom_symbol_to_dot(&t, net.h, sh.n(), sh.ptrs.data(), sh.ndims.data(), sh.dims.data(), "lenet", 1), LOOM_OK)
      << loom_last_error();
  std::string dot = t;
  for (const char *want : {"digraph \"lenet\" {", "\"conv1\" [label=\"Convolution\\n5x5/1, 20\" fillcolor=\"#fb8072\"]",
                           "\"bn1\" [label=\"bn1\" fillcolor=\"#bebada\"]",
                           "\"tanh1\" [label=\"Activation\\ntanh\" fillcolor=\"#ffffb3\"]",
                           "\"pool1\" [label=\"Pooling\\nmax, 2x2/2x2\" fillcolor=\"#80b1d3\"]",
                           "\"flat\" [label=\"flat\" fillcolor=\"#fdb462\"]",
                           "\"fc1\" [label=\"FullyConnected\\n10\" fillcolor=\"#fb8072\"]",
                           "\"data\" [label=\"data\" fillcolor=\"#8dd3c7\" shape=oval]",
                           "\"conv1\" -> \"data\" [arrowtail=open dir=back label=\"3x12x10\"]",
                           "\"fc1\" -> \"flat\" [arrowtail=open dir=back label=\"240\"]"})
    EXPECT_NE(dot.find(want), std::string::npos) << want << "\n" << dot;
  EXPECT_EQ(dot.find("conv1_weight"), std::string::npos) << "parameters are hidden";
  EXPECT_EQ(dot.find("moving_mean"), std::string::npos) << "auxiliary states are hidden";
  ASSERT_EQ(loom_symbol_to_dot(&t, net.h, 0, nullptr, nullptr, nullptr, nullptr, 0), LOOM_OK);
  EXPECT_NE(std::string(t).find("\"conv1_weight\" [label=\"conv1_weight\""), std::string::npos) << t;
  EXPECT_EQ(std::string(t).find("label=\"3x"), std::string::npos) << "no shapes given, no edge labels";
  ASSERT_EQ(loom_symbol_summary(&t, net.h, sh.n(), sh.ptrs.data(), sh.ndims.data(), sh.dims.data(), 120), LOOM_OK)
      << loom_last_error();
  std::string sum = t;
  // conv 20*3*5*5 + 20; bn gamma+beta 2*20 (moving statistics are not parameters);
  // fc 10 * (20*4*3) + 10.
  const long long conv = 20 * 3 * 5 * 5 + 20, bn = 2 * 20, fcp = 10LL * (20 * 4 * 3) + 10;
  EXPECT_NE(sum.find("conv1(Convolution)                                  20x8x6                  " + std::to_string(conv)),
            std::string::npos) << sum;
  EXPECT_NE(sum.find("bn1(BatchNorm)"), std::string::npos);
  // The parameter column is 12 characters wide (MXNet's positions .64 and .74 of 120).
  auto cell = [](long long v) {
    std::string f = std::to_string(v);
    return f + std::string(12 - f.size(), ' ');
  };
  EXPECT_NE(sum.find(cell(bn) + "conv1"), std::string::npos) << sum;
  EXPECT_NE(sum.find(cell(fcp) + "flat"), std::string::npos) << sum;
  EXPECT_NE(sum.find("Total params: " + std::to_string(conv + bn + fcp) + "\n"), std::string::npos) << sum;
  EXPECT_EQ(sum.substr(0, 121), std::string(120, '_') + "\n");
  // Shapes that leave a node unknown, and a bad width, are errors naming what.
  Sym x = var("x"), y = var("y");
  Sym z = op("add", "z", {&x, &y});
  Shapes only_x{{"q", {2}}};
  EXPECT_EQ(loom_symbol_summary(&t, z.h, only_x.n(), only_x.ptrs.data(), only_x.ndims.data(), only_x.dims.data(), 120),
            LOOM_ERR_NOT_FOUND) << "an unknown input name";
  Sym g = op("FullyConnected", "g", {&x}, {{"num_hidden", "3"}});
  Shapes none{{"g_bias", {3}}};
  EXPECT_EQ(loom_symbol_to_dot(&t, g.h, none.n(), none.ptrs.data(), none.ndims.data(), none.dims.data(), nullptr, 1),
            LOOM_ERR_SHAPE);
  EXPECT_NE(std::string(loom_last_error()).find("cannot be inferred"), std::string::npos) << loom_last_error();
  EXPECT_EQ(loom_symbol_summary(&t, net.h, sh.n(), sh.ptrs.data(), sh.ndims.data(), sh.dims.data(), 10),
            LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(loom_symbol_to_dot(nullptr, net.h, 0, nullptr, nullptr, nullptr, nullptr, 1), LOOM_ERR_INVALID_ARGUMENT);
}

TEST(Symbol, AttributesAndScopes) {
  const char *k[] = {"ctx_group"}, *v[] = {"stage1"};
  ASSERT_EQ(loom_symbol_attr_scope_push(1, k, v), LOOM_OK);
  Sym data = var("data");
  Sym fc = op("FullyConnected", "fc", {&data}, {{"num_hidden", "4"}});
  ASSERT_EQ(loom_symbol_attr_scope_pop(), LOOM_OK);
  EXPECT_EQ(loom_symbol_attr_scope_pop(), LOOM_ERR_INVALID_ARGUMENT);
  Sym other = var("other");
  ASSERT_EQ(loom_symbol_set_attr(data.h, "lr_mult", "0.5"), LOOM_OK);
  const char *val = nullptr;
  int32_t found = 0;
  ASSERT_EQ(loom_symbol_get_attr(&val, &found, fc.h, "ctx_group"), LOOM_OK);
  EXPECT_EQ(found, 1);
  EXPECT_STREQ(val, "stage1");
  ASSERT_EQ(loom_symbol_get_attr(&val, &found, fc.h, "num_hidden"), LOOM_OK);
  EXPECT_STREQ(val, "4");
  ASSERT_EQ(loom_symbol_get_attr(&val, &found, other.h, "ctx_group"), LOOM_OK);
  EXPECT_EQ(found, 0);
  EXPECT_EQ(loom_symbol_set_attr(fc.h, "num_hidden", "5"), LOOM_ERR_INVALID_ARGUMENT);
  std::string attrs = list(fc, LOOM_LIST_ATTRIBUTES);
  EXPECT_NE(attrs.find("\"data$lr_mult\": \"0.5\""), std::string::npos) << attrs;
  EXPECT_NE(attrs.find("\"fc$ctx_group\": \"stage1\""), std::string::npos) << attrs;
  // Attributes survive JSON as MXNet writes them (__key__).
  std::string j = to_json(fc);
  EXPECT_NE(j.find("\"__lr_mult__\": \"0.5\""), std::string::npos) << j;
  loom_symbol back = nullptr;
  ASSERT_EQ(loom_symbol_from_json(&back, j.c_str()), LOOM_OK) << loom_last_error();
  Sym b(back);
  EXPECT_EQ(list(b, LOOM_LIST_ATTRIBUTES), attrs);
}

TEST(Symbol, JsonRoundTripAndLegacyKeys) {
  Sym net = mlp();
  std::string j = to_json(net);
  EXPECT_NE(j.find("\"op\": \"FullyConnected\""), std::string::npos);
  EXPECT_NE(j.find("\"num_hidden\": \"16\""), std::string::npos);
  EXPECT_NE(j.find("\"arg_nodes\""), std::string::npos);
  EXPECT_NE(j.find("\"heads\": [[9, 0, 0]]"), std::string::npos) << j;
  loom_symbol back = nullptr;
  ASSERT_EQ(loom_symbol_from_json(&back, j.c_str()), LOOM_OK) << loom_last_error();
  Sym b(back);
  EXPECT_EQ(to_json(b), j);
  // MXNet 0.x files: op parameters under "param", user attributes under "attr".
  const char *legacy = R"({"nodes": [
      {"op": "null", "name": "data", "inputs": []},
      {"op": "null", "name": "fc_weight", "attr": {"lr_mult": "2"}, "inputs": []},
      {"op": "FullyConnected", "name": "fc", "param": {"num_hidden": "3", "no_bias": "True"},
       "attr": {"ctx_group": "g"}, "inputs": [[0, 0], [1, 0]], "backward_source_id": -1}],
    "arg_nodes": [0, 1], "heads": [[2, 0]]})";
  ASSERT_EQ(loom_symbol_from_json(&back, legacy), LOOM_OK) << loom_last_error();
  Sym l(back);
  EXPECT_EQ(list(l, LOOM_LIST_ARGUMENTS), "[\"data\", \"fc_weight\"]");
  std::string attrs = list(l, LOOM_LIST_ATTRIBUTES);
  EXPECT_NE(attrs.find("\"fc_weight$lr_mult\": \"2\""), std::string::npos) << attrs;
  EXPECT_NE(attrs.find("\"fc$no_bias\": \"True\""), std::string::npos) << attrs;
  // Save and load through a file.
  std::string path = ::testing::TempDir() + "loom_sym_test.json";
  ASSERT_EQ(loom_symbol_save(net.h, path.c_str()), LOOM_OK) << loom_last_error();
  ASSERT_EQ(loom_symbol_load(&back, path.c_str()), LOOM_OK) << loom_last_error();
  Sym f(back);
  EXPECT_EQ(to_json(f), j);
  std::remove(path.c_str());
}

TEST(Symbol, BadJsonIsReportedWithWhereAndWhat) {
  loom_symbol s = nullptr;
  std::string j = to_json(mlp());
  auto expect_fail = [&](const std::string &text, loom_status st, const std::string &needle) {
    EXPECT_EQ(loom_symbol_from_json(&s, text.c_str()), st) << text;
    EXPECT_NE(std::string(loom_last_error()).find(needle), std::string::npos) << loom_last_error();
  };
  expect_fail(j.substr(0, j.size() / 2), LOOM_ERR_IO, "invalid JSON at byte");
  expect_fail("[1, 2]", LOOM_ERR_IO, "JSON object");
  expect_fail("{\"heads\": []}", LOOM_ERR_IO, "\"nodes\"");
  std::string unknown_op = j;
  unknown_op.replace(unknown_op.find("\"Activation\""), 12, "\"Activatoin\"");
  expect_fail(unknown_op, LOOM_ERR_NOT_FOUND, "node 4 ('relu1')");
  std::string bad_param = j;
  bad_param.replace(bad_param.find("\"num_hidden\": \"16\""), 18, "\"num_hidden\": \"x6\"");
  expect_fail(bad_param, LOOM_ERR_INVALID_ARGUMENT, "num_hidden");
  std::string extra_param = j;
  extra_param.replace(extra_param.find("\"num_hidden\": \"16\""), 18, "\"num_hidden\": \"16\", \"bogus\": \"1\"");
  expect_fail(extra_param, LOOM_ERR_INVALID_ARGUMENT, "has no parameter 'bogus'");
  expect_fail(R"({"nodes": [{"op": "null", "name": "a", "inputs": [[3, 0, 0]]}], "heads": [[0, 0, 0]]})",
              LOOM_ERR_IO, "does not come before it");
  expect_fail(R"({"nodes": [{"op": "null", "name": "a"}], "heads": [[5, 0, 0]]})", LOOM_ERR_IO, "head 0");
  EXPECT_EQ(loom_symbol_load(&s, "/nonexistent/dir/x.json"), LOOM_ERR_IO);
  // Saving into a directory that does not exist fails and leaves nothing behind.
  Sym net = mlp();
  EXPECT_EQ(loom_symbol_save(net.h, "/nonexistent/dir/x.json"), LOOM_ERR_IO);
  EXPECT_NE(std::string(loom_last_error()).find("/nonexistent/dir/x.json"), std::string::npos);
}

// Forward and backward of the MLP through the executor agree with the
// imperative ops and with imperative autograd on the same arrays.
TEST(Executor, AgreesWithImperativeAndAutograd) {
  Sym net = mlp();
  Shapes sh{{"data", {5, 7}}};
  Exec ex = simple_bind(net, sh, LOOM_GRAD_WRITE, {{"data", LOOM_GRAD_NULL}, {"softmax_label", LOOM_GRAD_NULL}});
  const std::vector<std::vector<int64_t>> shapes{{5, 7}, {16, 7}, {16}, {10, 16}, {10}, {5}};
  std::vector<Arr> mine;
  for (int i = 0; i < 6; ++i) {
    auto v = i == 5 ? std::vector<double>{1, 0, 9, 3, 3} : random_values(numel(shapes[i]), -1, 1, 10 + i);
    Arr a = get(ex, LOOM_EXEC_ARGUMENT, i);
    fill(a, v);
    mine.push_back(make(shapes[i], v));
  }
  ASSERT_EQ(loom_executor_forward(ex.h, 1), LOOM_OK) << loom_last_error();
  ASSERT_EQ(loom_executor_backward(ex.h, 0, nullptr), LOOM_OK) << loom_last_error();
  // Imperative autograd on copies.
  std::vector<Arr> grads;
  std::vector<loom_ndarray> vars, gs;
  for (int i = 1; i <= 4; ++i) {
    grads.push_back(make(shapes[i], std::vector<double>(numel(shapes[i]), 0)));
    vars.push_back(mine[i].h);
    gs.push_back(grads.back().h);
  }
  ASSERT_EQ(loom_autograd_mark_variables(vars.data(), gs.data(), nullptr, 4), LOOM_OK);
  loom_autograd_set_recording(nullptr, 1);
  Arr h1 = call("FullyConnected", {&mine[0], &mine[1], &mine[2]}, {{"num_hidden", "16"}});
  Arr a1 = call("Activation", {&h1}, {{"act_type", "relu"}});
  Arr h2 = call("FullyConnected", {&a1, &mine[3], &mine[4]}, {{"num_hidden", "10"}});
  Arr out = call("SoftmaxOutput", {&h2, &mine[5]});
  loom_autograd_set_recording(nullptr, 0);
  ASSERT_EQ(loom_autograd_backward(&out.h, nullptr, 1), LOOM_OK) << loom_last_error();
  expect_close(read(get(ex, LOOM_EXEC_OUTPUT, 0)), read(out), LOOM_DTYPE_FLOAT32, "output");
  for (int i = 1; i <= 4; ++i)
    expect_close(read(get(ex, LOOM_EXEC_GRADIENT, i)), read(grads[i - 1]), LOOM_DTYPE_FLOAT32,
                 "gradient " + std::to_string(i));
  Arr none = get(ex, LOOM_EXEC_GRADIENT, 0);
  EXPECT_EQ(none.h, nullptr);
}

// A branching float64 network with every kind of planning opportunity
// (in-place activations, shared inputs, concat, batch norm, pooling): the
// executor's gradients against finite differences of its own forward pass.
TEST(Executor, GradientsMatchFiniteDifferencesOnABranchingNet) {
  Sym data = var("data");
  Sym conv = op("Convolution", "conv", {&data}, {{"kernel", "(3,3)"}, {"num_filter", "3"}, {"pad", "(1,1)"}});
  Sym bn = op("BatchNorm", "bn", {&conv}, {{"fix_gamma", "false"}});
  Sym act = op("Activation", "act", {&bn}, {{"act_type", "tanh"}});
  Sym b1 = op("Convolution", "b1", {&act}, {{"kernel", "(1,1)"}, {"num_filter", "2"}});
  Sym b2 = op("Pooling", "b2", {&act}, {{"kernel", "(3,3)"}, {"pad", "(1,1)"}, {"pool_type", "max"}});
  Sym b3 = op("Activation", "b3", {&act}, {{"act_type", "sigmoid"}});
  Sym cat = op("Concat", "cat", {&b1, &b2, &b3}, {{"num_args", "3"}});
  Sym sum = op("add", "sum", {&cat, &cat});
  Sym fc = op("FullyConnected", "fc", {&sum}, {{"num_hidden", "3"}});
  Sym net = op("LeakyReLU", "lrelu", {&fc}, {{"act_type", "leaky"}, {"slope", "0.2"}});
  Shapes sh{{"data", {2, 2, 4, 4}}};
  std::vector<int32_t> ndims{4};
  const char *dn[] = {"data"};
  int32_t dt[] = {LOOM_DTYPE_FLOAT64};
  loom_executor eh = nullptr;
  ASSERT_EQ(loom_executor_simple_bind(&eh, net.h, LOOM_DEVICE_CPU, 0, 1, dn, ndims.data(), sh.dims.data(), dt, 0,
                                      nullptr, nullptr, LOOM_GRAD_WRITE),
            LOOM_OK)
      << loom_last_error();
  Exec ex(eh);
  int32_t nargs = 0;
  ASSERT_EQ(loom_executor_count(&nargs, ex.h, LOOM_EXEC_ARGUMENT), LOOM_OK);
  std::vector<std::vector<double>> vals;
  for (int i = 0; i < nargs; ++i) {
    Arr a = get(ex, LOOM_EXEC_ARGUMENT, i);
    EXPECT_EQ(dtype_of(a), LOOM_DTYPE_FLOAT64);
    vals.push_back(random_values(numel(shape_of(a)), -1, 1, 300 + i));
    fill(a, vals.back());
  }
  Arr out0 = get(ex, LOOM_EXEC_OUTPUT, 0);
  auto w = random_values(numel(shape_of(out0)), -1, 1, 99);
  Arr head = make(shape_of(out0), w, LOOM_DTYPE_FLOAT64);
  ASSERT_EQ(loom_executor_forward(ex.h, 1), LOOM_OK);
  ASSERT_EQ(loom_executor_backward(ex.h, 1, &head.h), LOOM_OK) << loom_last_error();
  std::vector<std::vector<double>> analytic;
  for (int i = 0; i < nargs; ++i) analytic.push_back(read(get(ex, LOOM_EXEC_GRADIENT, i)));
  auto objective = [&]() {
    EXPECT_EQ(loom_executor_forward(ex.h, 1), LOOM_OK);
    auto o = read(get(ex, LOOM_EXEC_OUTPUT, 0));
    double s = 0;
    for (size_t k = 0; k < o.size(); ++k) s += o[k] * w[k];
    return s;
  };
  for (int i = 0; i < nargs; ++i) {
    Arr a = get(ex, LOOM_EXEC_ARGUMENT, i);
    for (size_t k = 0; k < vals[i].size(); ++k) {
      auto v = vals[i];
      v[k] += 1e-6;
      fill(a, v);
      double fp = objective();
      v[k] -= 2e-6;
      fill(a, v);
      double fm = objective();
      double numeric = (fp - fm) / 2e-6;
      EXPECT_NEAR(analytic[i][k], numeric, 1e-6 + 1e-5 * std::fabs(numeric)) << "argument " << i << " element " << k;
    }
    fill(a, vals[i]);
  }
  // Every step here is small, so by default they run as bulks; one engine op
  // per step gives the same bits.
  ASSERT_EQ(setenv("LOOM_EXEC_BULK", "1", 1), 0);
  ASSERT_EQ(loom_executor_forward(ex.h, 1), LOOM_OK);
  ASSERT_EQ(loom_executor_backward(ex.h, 1, &head.h), LOOM_OK) << loom_last_error();
  for (int i = 0; i < nargs; ++i) EXPECT_EQ(read(get(ex, LOOM_EXEC_GRADIENT, i)), analytic[i]) << "argument " << i;
  unsetenv("LOOM_EXEC_BULK");
  loom_memory_plan m{};
  ASSERT_EQ(loom_executor_memory(&m, ex.h), LOOM_OK);
  EXPECT_LT(m.planned_bytes, m.unplanned_bytes);
  EXPECT_EQ(m.allocated_bytes, m.planned_bytes);
}

TEST(Executor, GradReqAddAccumulatesAndAuxStatesUpdateOnlyInTraining) {
  Sym data = var("data");
  Sym bn = op("BatchNorm", "bn", {&data}, {{"momentum", "0.5"}});
  Sym fc = op("FullyConnected", "fc", {&bn}, {{"num_hidden", "2"}});
  Shapes sh{{"data", {4, 3}}};
  Exec ex = simple_bind(fc, sh, LOOM_GRAD_ADD);
  auto x = random_values(12, -1, 1, 1);
  fill(get(ex, LOOM_EXEC_ARGUMENT, 0), x);
  fill(get(ex, LOOM_EXEC_ARGUMENT, 3), random_values(6, -1, 1, 2));
  fill(get(ex, LOOM_EXEC_AUXILIARY_STATE, 1), {1, 1, 1});
  ASSERT_EQ(loom_executor_forward(ex.h, 0), LOOM_OK);
  EXPECT_EQ(read(get(ex, LOOM_EXEC_AUXILIARY_STATE, 0)), (std::vector<double>{0, 0, 0}));
  ASSERT_EQ(loom_executor_forward(ex.h, 1), LOOM_OK);
  ASSERT_EQ(loom_executor_backward(ex.h, 0, nullptr), LOOM_OK);
  auto once = read(get(ex, LOOM_EXEC_GRADIENT, 3));
  ASSERT_EQ(loom_executor_forward(ex.h, 1), LOOM_OK);
  ASSERT_EQ(loom_executor_backward(ex.h, 0, nullptr), LOOM_OK);
  auto twice = read(get(ex, LOOM_EXEC_GRADIENT, 3));
  for (size_t i = 0; i < once.size(); ++i) EXPECT_NEAR(twice[i], 2 * once[i], 1e-5);
  // Moving mean after two training passes with momentum 0.5: 0.75 * batch mean.
  auto mm = read(get(ex, LOOM_EXEC_AUXILIARY_STATE, 0));
  for (int c = 0; c < 3; ++c) {
    double mean = 0;
    for (int n = 0; n < 4; ++n) mean += as_dtype(x, LOOM_DTYPE_FLOAT32)[n * 3 + c] / 4;
    EXPECT_NEAR(mm[c], 0.75 * mean, 1e-6);
  }
}

TEST(Executor, PlanningReusesMemory) {
  // A chain of 12 activations: inference needs two buffers, not twelve.
  Sym cur = var("data");
  for (int i = 0; i < 12; ++i) cur = op("Activation", "a" + std::to_string(i), {&cur}, {{"act_type", "sigmoid"}});
  Shapes sh{{"data", {100, 100}}};
  loom_memory_plan inf{}, train{};
  ASSERT_EQ(loom_symbol_plan_memory(&inf, cur.h, sh.n(), sh.ptrs.data(), sh.ndims.data(), sh.dims.data(), 0,
                                    nullptr, nullptr, LOOM_GRAD_WRITE, 0),
            LOOM_OK)
      << loom_last_error();
  EXPECT_EQ(inf.unplanned_bytes, 12 * 40000);
  EXPECT_LE(inf.planned_bytes, 2 * 40000);
  ASSERT_EQ(loom_symbol_plan_memory(&train, cur.h, sh.n(), sh.ptrs.data(), sh.ndims.data(), sh.dims.data(), 0,
                                    nullptr, nullptr, LOOM_GRAD_WRITE, 1),
            LOOM_OK);
  // Training keeps every activation for its backward (12) plus a few gradient buffers.
  EXPECT_LE(train.planned_bytes, 15 * 40000);
  EXPECT_GE(train.unplanned_bytes, 23 * 40000);
  EXPECT_EQ(train.argument_bytes, 2 * 40000);
}

// What a backward pass keeps follows what each gradient reads (MXNet's
// ElemwiseGradUseNone/In/Out): a residual block y = relu(fc(x) + x) keeps only y for
// the backward pass, since add's gradient reads nothing (the fc output is freed after
// the add, which writes over it, and the relu writes over the sum); multiply's reads
// both inputs, so fc(x) and the product stay too.
TEST(Executor, TrainingKeepsOnlyWhatTheGradientsRead) {
  auto net = [](const char *combine) {
    Sym cur = var("data");
    for (int b = 0; b < 6; ++b) {
      std::string k = std::to_string(b);
      Sym f = op("FullyConnected", "fc" + k, {&cur}, {{"num_hidden", "100"}});
      Sym t = op(combine, "combine" + k, {&f, &cur});
      cur = op("Activation", "relu" + k, {&t}, {{"act_type", "relu"}});
    }
    return cur;
  };
  Shapes sh{{"data", {100, 100}}};
  auto plan = [&](const Sym &s) {
    loom_memory_plan m{};
    EXPECT_EQ(loom_symbol_plan_memory(&m, s.h, sh.n(), sh.ptrs.data(), sh.ndims.data(), sh.dims.data(), 0, nullptr,
                                      nullptr, LOOM_GRAD_WRITE, 1),
              LOOM_OK)
        << loom_last_error();
    return m;
  };
  const int64_t act = 100 * 100 * 4;
  Sym add = net("add"), mul = net("multiply");
  loom_memory_plan a = plan(add), m = plan(mul);
  // add: the 6 relu outputs, and a few gradient buffers at a time.
  EXPECT_LE(a.planned_bytes, 10 * act) << a.planned_bytes / act << " activations";
  // multiply: also each block's fc output.
  EXPECT_GE(m.planned_bytes, a.planned_bytes + 5 * act) << m.planned_bytes / act << " vs " << a.planned_bytes / act;
  // The same gradients, bit for bit, as a binding whose values all have memory of
  // their own (LOOM_EXEC_PLAN=0), for both forms.
  for (const Sym *net_sym : {&add, &mul}) {
    std::vector<std::vector<double>> grads[2];
    for (int planned = 0; planned < 2; ++planned) {
      if (!planned) setenv("LOOM_EXEC_PLAN", "0", 1);
      Exec ex = simple_bind(*net_sym, sh);
      unsetenv("LOOM_EXEC_PLAN");
      int32_t nargs = 0;
      ASSERT_EQ(loom_executor_count(&nargs, ex.h, LOOM_EXEC_ARGUMENT), LOOM_OK);
      for (int i = 0; i < nargs; ++i) {
        Arr arg = get(ex, LOOM_EXEC_ARGUMENT, i);
        fill(arg, random_values(numel(shape_of(arg)), -0.3, 0.3, 900 + i));
      }
      ASSERT_EQ(loom_executor_forward(ex.h, 1), LOOM_OK) << loom_last_error();
      ASSERT_EQ(loom_executor_backward(ex.h, 0, nullptr), LOOM_OK) << loom_last_error();
      for (int i = 0; i < nargs; ++i) grads[planned].push_back(read(get(ex, LOOM_EXEC_GRADIENT, i)));
    }
    EXPECT_EQ(grads[0], grads[1]);
  }
}

// Backward mirroring (MXNet's MXNET_BACKWARD_DO_MIRROR and __force_mirroring__): the
// backward pass recomputes BatchNorm and Activation outputs instead of keeping them, so
// training plans less memory, and every gradient and moving statistic has the same bits.
TEST(Executor, BackwardMirroringSavesMemoryWithIdenticalResults) {
  auto net = [](bool force) {
    Sym cur = var("data");
    for (int b = 0; b < 3; ++b) {
      std::string k = std::to_string(b);
      Sym c = op("Convolution", "conv" + k, {&cur}, {{"kernel", "(3,3)"}, {"pad", "(1,1)"}, {"num_filter", "8"}});
      Sym n = op("BatchNorm", "bn" + k, {&c});
      if (force) {
        EXPECT_EQ(loom_symbol_set_attr(n.h, "__force_mirroring__", "True"), LOOM_OK);
      }
      cur = op("Activation", "relu" + k, {&n}, {{"act_type", "relu"}});
      if (force) {
        EXPECT_EQ(loom_symbol_set_attr(cur.h, "__force_mirroring__", "True"), LOOM_OK);
      }
    }
    Sym p = op("Pooling", "pool", {&cur}, {{"kernel", "(2,2)"}, {"stride", "(2,2)"}, {"pool_type", "max"}});
    Sym f = op("Flatten", "flat", {&p});
    Sym fc = op("FullyConnected", "fc", {&f}, {{"num_hidden", "10"}});
    return op("SoftmaxOutput", "softmax", {&fc});
  };
  Shapes sh{{"data", {8, 4, 12, 12}}};
  struct Run {
    loom_memory_plan plan{};
    std::vector<std::vector<double>> grads, aux;
    std::vector<double> out;
  };
  auto run = [&](const Sym &s, bool env) {
    if (env) setenv("LOOM_BACKWARD_MIRROR", "1", 1);
    Run r;
    Exec ex = simple_bind(s, sh);
    unsetenv("LOOM_BACKWARD_MIRROR");
    int32_t nargs = 0, naux = 0;
    EXPECT_EQ(loom_executor_count(&nargs, ex.h, LOOM_EXEC_ARGUMENT), LOOM_OK);
    EXPECT_EQ(loom_executor_count(&naux, ex.h, LOOM_EXEC_AUXILIARY_STATE), LOOM_OK);
    for (int i = 0; i < nargs; ++i) {
      Arr a = get(ex, LOOM_EXEC_ARGUMENT, i);
      auto v = random_values(numel(shape_of(a)), -1, 1, 700 + i);
      if (i == nargs - 1) {
        for (auto &x : v) x = std::floor((x + 1) * 4.99);  // class labels
      }
      fill(a, v);
    }
    for (int step = 0; step < 2; ++step) {
      EXPECT_EQ(loom_executor_forward(ex.h, 1), LOOM_OK);
      EXPECT_EQ(loom_executor_backward(ex.h, 0, nullptr), LOOM_OK) << loom_last_error();
    }
    for (int i = 0; i < nargs - 1; ++i) r.grads.push_back(read(get(ex, LOOM_EXEC_GRADIENT, i)));
    for (int i = 0; i < naux; ++i) r.aux.push_back(read(get(ex, LOOM_EXEC_AUXILIARY_STATE, i)));
    r.out = read(get(ex, LOOM_EXEC_OUTPUT, 0));
    EXPECT_EQ(loom_executor_memory(&r.plan, ex.h), LOOM_OK);
    return r;
  };
  Sym plain = net(false), forced = net(true);
  // MXNet's way of marking a whole network: an attribute scope with the dunder key
  // (stored without the dunders, as set_attr stores it).
  auto small = [](bool scope) {
    const char *fk[] = {"__force_mirroring__"}, *fv[] = {"True"};
    if (scope) {
      EXPECT_EQ(loom_symbol_attr_scope_push(1, fk, fv), LOOM_OK);
    }
    Sym x = var("data");
    Sym fc1 = op("FullyConnected", "fc1", {&x}, {{"num_hidden", "4"}});
    Sym act = op("Activation", "act", {&fc1}, {{"act_type", "tanh"}});
    Sym out = op("FullyConnected", "fc2", {&act}, {{"num_hidden", "3"}});
    if (scope) {
      EXPECT_EQ(loom_symbol_attr_scope_pop(), LOOM_OK);
    }
    return out;
  };
  Shapes ssh{{"data", {4, 6}}};
  loom_memory_plan scoped_plan{}, unscoped_plan{};
  Sym scoped = small(true), unscoped = small(false);
  ASSERT_EQ(loom_symbol_plan_memory(&scoped_plan, scoped.h, ssh.n(), ssh.ptrs.data(), ssh.ndims.data(),
                                    ssh.dims.data(), 0, nullptr, nullptr, LOOM_GRAD_WRITE, 1),
            LOOM_OK);
  ASSERT_EQ(loom_symbol_plan_memory(&unscoped_plan, unscoped.h, ssh.n(), ssh.ptrs.data(), ssh.ndims.data(),
                                    ssh.dims.data(), 0, nullptr, nullptr, LOOM_GRAD_WRITE, 1),
            LOOM_OK);
  EXPECT_GT(scoped_plan.num_steps, unscoped_plan.num_steps);
  Run base = run(plain, false), mirrored = run(plain, true), attr = run(forced, false);
  for (const Run *r : {&mirrored, &attr}) {
    EXPECT_EQ(r->out, base.out);
    EXPECT_EQ(r->aux, base.aux);
    ASSERT_EQ(r->grads.size(), base.grads.size());
    for (size_t i = 0; i < base.grads.size(); ++i) EXPECT_EQ(r->grads[i], base.grads[i]) << "gradient " << i;
  }
  // Each block keeps only its convolution's output for the backward pass; the
  // BatchNorm and ReLU outputs (8x8x12x12 floats each) are recomputed.
  const int64_t act = 8 * 8 * 12 * 12 * 4;
  EXPECT_LE(mirrored.plan.planned_bytes, base.plan.planned_bytes - 2 * act)
      << base.plan.planned_bytes << " -> " << mirrored.plan.planned_bytes;
  EXPECT_LE(attr.plan.planned_bytes, base.plan.planned_bytes - 2 * act);  // BatchNorm and ReLU by attribute
  EXPECT_GT(mirrored.plan.num_steps, base.plan.num_steps);  // the recomputations
  // plan_memory sees the same plan as bind.
  loom_memory_plan planned{};
  setenv("LOOM_BACKWARD_MIRROR", "1", 1);
  ASSERT_EQ(loom_symbol_plan_memory(&planned, plain.h, sh.n(), sh.ptrs.data(), sh.ndims.data(), sh.dims.data(), 0,
                                    nullptr, nullptr, LOOM_GRAD_WRITE, 1),
            LOOM_OK);
  unsetenv("LOOM_BACKWARD_MIRROR");
  EXPECT_EQ(planned.planned_bytes, mirrored.plan.planned_bytes);
  // Dropout is never mirrored: its mask would be drawn again.
  Sym d = var("data");
  Sym fc1 = op("FullyConnected", "fc1", {&d}, {{"num_hidden", "16"}});
  Sym drop = op("Dropout", "drop", {&fc1}, {{"p", "0.5"}});
  EXPECT_EQ(loom_symbol_set_attr(drop.h, "__force_mirroring__", "True"), LOOM_OK);
  Sym fc2 = op("FullyConnected", "fc2", {&drop}, {{"num_hidden", "4"}});
  Shapes dsh{{"data", {4, 6}}};
  loom_memory_plan with{}, without{};
  ASSERT_EQ(loom_symbol_plan_memory(&with, fc2.h, dsh.n(), dsh.ptrs.data(), dsh.ndims.data(), dsh.dims.data(), 0,
                                    nullptr, nullptr, LOOM_GRAD_WRITE, 1),
            LOOM_OK);
  EXPECT_EQ(loom_symbol_set_attr(drop.h, "__force_mirroring__", "False"), LOOM_OK);
  ASSERT_EQ(loom_symbol_plan_memory(&without, fc2.h, dsh.n(), dsh.ptrs.data(), dsh.ndims.data(), dsh.dims.data(), 0,
                                    nullptr, nullptr, LOOM_GRAD_WRITE, 1),
            LOOM_OK);
  EXPECT_EQ(with.num_steps, without.num_steps);
}

// A prediction binding, planned or with bytes of its own for every value
// (LOOM_EXEC_PLAN=0), its `nargs` arguments filled from `seed` on.
namespace {
Exec bind_filled(const Sym &s, const Shapes &sh, bool planned, int nargs, double lo, double hi, uint32_t seed) {
  if (!planned) setenv("LOOM_EXEC_PLAN", "0", 1);
  Exec ex = simple_bind(s, sh, LOOM_GRAD_NULL);
  unsetenv("LOOM_EXEC_PLAN");
  for (int i = 0; i < nargs; ++i) {
    Arr arg = get(ex, LOOM_EXEC_ARGUMENT, i);
    fill(arg, random_values(numel(shape_of(arg)), lo, hi, seed + i));
  }
  return ex;
}
}  // namespace

// Offset planning: a value that dies leaves a region two smaller values can share
// at once. a = sigmoid(x) (2 units) dies into f = fc(a) (1 unit); then b = exp(f)
// and c = sin(f) live together beside f; b * c is written over b and the output
// b * c * f over that. At most 3 units are ever live, and 3 units are planned: b
// and c both go where a was (one buffer per value group took 4).
TEST(Executor, PlanningPlacesValuesInTheGapsDeadValuesLeave) {
  Sym x = var("data");
  Sym a = op("sigmoid", "a", {&x}, {});
  Sym f = op("FullyConnected", "f", {&a}, {{"num_hidden", "100"}});
  Sym b = op("exp", "b", {&f}, {});
  Sym c = op("sin", "c", {&f}, {});
  Sym d = op("multiply", "d", {&b, &c}, {});
  Sym e = op("multiply", "e", {&d, &f}, {});
  Shapes sh{{"data", {100, 200}}};
  const int64_t unit = 100 * 100 * 4;
  loom_memory_plan m{};
  ASSERT_EQ(loom_symbol_plan_memory(&m, e.h, sh.n(), sh.ptrs.data(), sh.ndims.data(), sh.dims.data(), 0, nullptr,
                                    nullptr, LOOM_GRAD_WRITE, 0),
            LOOM_OK)
      << loom_last_error();
  EXPECT_EQ(m.unplanned_bytes, 7 * unit);
  EXPECT_EQ(m.num_inplace, 2);
  EXPECT_EQ(m.planned_bytes, 3 * unit);
  // The same output, bit for bit, as a binding without planning.
  std::vector<double> out[2];
  for (int planned = 0; planned < 2; ++planned) {
    Exec ex = bind_filled(e, sh, planned, 3, -0.5, 0.5, 40);
    ASSERT_EQ(loom_executor_forward(ex.h, 0), LOOM_OK);
    out[planned] = read(get(ex, LOOM_EXEC_OUTPUT, 0));
  }
  EXPECT_EQ(out[0], out[1]);
}

// Regions share bytes only between values whose lifetimes never meet, but on
// parallel branches the engine could still run the later value's writer while
// the earlier value's last reader runs: the writer waits for it. Here q = sigmoid(y)
// goes where a = sigmoid(x) was, and a's reader is a large product on the other
// branch; every pass gives the product of the unplanned binding.
TEST(Executor, AValueWrittenOverADeadOneWaitsForItsLastReader) {
  Sym x = var("x"), y = var("y");
  Sym a = op("sigmoid", "a", {&x}, {});
  Sym p = op("FullyConnected", "p", {&a}, {{"num_hidden", "512"}, {"no_bias", "true"}});
  Sym q = op("sigmoid", "q", {&y}, {});
  Sym r = op("sum", "r", {&q}, {});
  loom_symbol parts[] = {p.h, r.h};
  Sym g;
  ASSERT_EQ(loom_symbol_group(&g.h, parts, 2), LOOM_OK);
  Shapes sh{{"x", {256, 1024}}, {"y", {256, 1024}}};
  loom_memory_plan m{};
  ASSERT_EQ(loom_symbol_plan_memory(&m, g.h, sh.n(), sh.ptrs.data(), sh.ndims.data(), sh.dims.data(), 0, nullptr,
                                    nullptr, LOOM_GRAD_WRITE, 0),
            LOOM_OK)
      << loom_last_error();
  EXPECT_LE(m.planned_bytes, m.unplanned_bytes - 256 * 1024 * 4 + 64);  // q shares a's bytes
  std::vector<double> want;
  for (int planned = 0; planned < 2; ++planned) {
    Exec ex = bind_filled(g, sh, planned, 3, -1, 1, 70);
    for (int pass = 0; pass < (planned ? 8 : 1); ++pass) {
      // a's last reader is queued behind nothing, q's writer behind nothing: only
      // the planned dependency orders them.
      ASSERT_EQ(loom_executor_forward(ex.h, 0), LOOM_OK);
      auto got = read(get(ex, LOOM_EXEC_OUTPUT, 0));
      if (!planned) want = got;
      else ASSERT_EQ(got, want) << "pass " << pass;
    }
  }
}

// Executors that share planned memory (reshape) may be run one after the other
// without waiting: each pass waits for the other executor's passes on that memory.
TEST(Executor, ExecutorsSharingMemoryRunOneAfterTheOther) {
  Sym data = var("data");
  Sym fc1 = op("FullyConnected", "fc1", {&data}, {{"num_hidden", "1024"}});
  Sym a1 = op("Activation", "relu1", {&fc1}, {{"act_type", "relu"}});
  Sym fc2 = op("FullyConnected", "fc2", {&a1}, {{"num_hidden", "1024"}});
  Sym a2 = op("Activation", "relu2", {&fc2}, {{"act_type", "tanh"}});
  Sym net = op("FullyConnected", "fc3", {&a2}, {{"num_hidden", "10"}});
  Exec big = simple_bind(net, Shapes{{"data", {512, 256}}}, LOOM_GRAD_NULL);
  loom_executor h = nullptr;
  Shapes s256{{"data", {256, 256}}};
  ASSERT_EQ(loom_executor_reshape(&h, big.h, s256.n(), s256.ptrs.data(), s256.ndims.data(), s256.dims.data()),
            LOOM_OK)
      << loom_last_error();
  Exec small(h);
  for (int i = 0; i < 7; ++i) {
    Arr arg = get(big, LOOM_EXEC_ARGUMENT, i);
    fill(arg, random_values(numel(shape_of(arg)), -0.1, 0.1, 90 + i));
  }
  fill(get(small, LOOM_EXEC_ARGUMENT, 0), random_values(256 * 256, -1, 1, 99));
  ASSERT_EQ(loom_executor_forward(big.h, 0), LOOM_OK);
  auto want_big = read(get(big, LOOM_EXEC_OUTPUT, 0));
  ASSERT_EQ(loom_executor_forward(small.h, 0), LOOM_OK);
  auto want_small = read(get(small, LOOM_EXEC_OUTPUT, 0));
  // The outputs live in the shared memory too: each is read before the other
  // executor runs again.
  for (int pass = 0; pass < 20; ++pass) {
    ASSERT_EQ(loom_executor_forward(small.h, 0), LOOM_OK);
    ASSERT_EQ(loom_executor_forward(big.h, 0), LOOM_OK);
    ASSERT_EQ(read(get(big, LOOM_EXEC_OUTPUT, 0)), want_big) << "pass " << pass;
    ASSERT_EQ(loom_executor_forward(big.h, 0), LOOM_OK);
    ASSERT_EQ(loom_executor_forward(small.h, 0), LOOM_OK);
    ASSERT_EQ(read(get(small, LOOM_EXEC_OUTPUT, 0)), want_small) << "pass " << pass;
  }
}

TEST(Executor, ReshapeSharesParametersAndBadBindsAreReported) {
  Sym net = mlp();
  Exec ex = simple_bind(net, Shapes{{"data", {8, 6}}});
  loom_executor small = nullptr;
  Shapes s4{{"data", {4, 6}}};
  ASSERT_EQ(loom_executor_reshape(&small, ex.h, s4.n(), s4.ptrs.data(), s4.ndims.data(), s4.dims.data()), LOOM_OK)
      << loom_last_error();
  Exec ex4(small);
  Arr w8 = get(ex, LOOM_EXEC_ARGUMENT, 1), w4 = get(ex4, LOOM_EXEC_ARGUMENT, 1);
  fill(w8, random_values(16 * 6, -1, 1, 3));
  EXPECT_EQ(read(w4), read(w8));  // same memory
  EXPECT_EQ(shape_of(get(ex4, LOOM_EXEC_ARGUMENT, 0)), (std::vector<int64_t>{4, 6}));
  EXPECT_EQ(shape_of(get(ex4, LOOM_EXEC_OUTPUT, 0)), (std::vector<int64_t>{4, 10}));
  ASSERT_EQ(loom_executor_forward(ex4.h, 0), LOOM_OK);
  ASSERT_EQ(loom_wait_all(), LOOM_OK);

  Exec bad;
  EXPECT_EQ(try_simple_bind(&bad, net, Shapes{{"data", {8, 6}}, {"softmax_label", {8, 2}}}), LOOM_ERR_SHAPE);
  std::string e = loom_last_error();
  EXPECT_NE(e.find("node 'softmax'"), std::string::npos) << e;
  EXPECT_NE(e.find("label has shape (8,2)"), std::string::npos) << e;
  EXPECT_EQ(try_simple_bind(&bad, net, Shapes{}), LOOM_ERR_SHAPE);
  EXPECT_NE(std::string(loom_last_error()).find("cannot infer the shape"), std::string::npos);
  // bind with the wrong number of arrays names the arguments.
  Arr a = make({8, 6}, std::vector<double>(48, 0));
  loom_executor out = nullptr;
  EXPECT_EQ(loom_executor_bind(&out, net.h, LOOM_DEVICE_CPU, 0, 1, &a.h, nullptr, nullptr, 0, nullptr),
            LOOM_ERR_INVALID_ARGUMENT);
  e = loom_last_error();
  EXPECT_NE(e.find("fc1_weight"), std::string::npos) << e;
  EXPECT_EQ(loom_executor_forward(nullptr, 0), LOOM_ERR_INVALID_ARGUMENT);
  // An inference-only executor refuses backward.
  Exec inf = simple_bind(net, Shapes{{"data", {8, 6}}}, LOOM_GRAD_NULL);
  EXPECT_EQ(loom_executor_backward(inf.h, 0, nullptr), LOOM_ERR_INVALID_ARGUMENT);
  int32_t grad_req_bad[] = {7};
  (void)grad_req_bad;
  EXPECT_EQ(try_simple_bind(&bad, net, Shapes{{"data", {8, 6}}}, 7), LOOM_ERR_INVALID_ARGUMENT);
}

// ONNX through the ABI: a small convolutional network with its parameters written and
// read back computes what it computed; every truncation and many corruptions of the file
// fail cleanly or read a valid model (the parser runs under ASan and UBSan in CI).
TEST(Symbol, OnnxRoundTripAndDamagedFiles) {
  int32_t avail = 0;
  ASSERT_EQ(loom_onnx_available(&avail), LOOM_OK);
  ASSERT_EQ(avail, 1) << "Loom was built without ONNX (apt-get install libonnx-dev libprotobuf-dev)";
  Sym data = var("data");
  Sym c = op("Convolution", "c1", {&data}, {{"kernel", "(3,3)"}, {"num_filter", "4"}, {"pad", "(1,1)"}});
  Sym bn = op("BatchNorm", "bn", {&c}, {{"fix_gamma", "false"}});
  Sym r = op("Activation", "r", {&bn}, {{"act_type", "relu"}});
  Sym p = op("Pooling", "p", {&r}, {{"kernel", "(2,2)"}, {"stride", "(2,2)"}});
  Sym f = op("FullyConnected", "fc", {&p}, {{"num_hidden", "5"}});
  Sym net = op("SoftmaxOutput", "softmax", {&f});
  const std::vector<std::string> args{"data", "c1_weight", "c1_bias", "bn_gamma", "bn_beta",
                                      "fc_weight", "fc_bias", "softmax_label"};
  ASSERT_EQ(list(net, LOOM_LIST_ARGUMENTS),
            R"(["data", "c1_weight", "c1_bias", "bn_gamma", "bn_beta", "fc_weight", "fc_bias", "softmax_label"])");
  Exec ex = simple_bind(net, Shapes{{"data", {2, 3, 6, 6}}, {"softmax_label", {2}}}, LOOM_GRAD_NULL);
  std::vector<Arr> params;
  std::vector<std::string> names;
  for (int i = 0; i < 7; ++i) {
    Arr a = get(ex, LOOM_EXEC_ARGUMENT, i);
    fill(a, random_values(numel(shape_of(a)), -1, 1, 40 + i));
    if (i > 0) {
      names.push_back(args[i]);
      params.push_back(std::move(a));
    }
  }
  for (int i = 0; i < 2; ++i) {
    Arr a = get(ex, LOOM_EXEC_AUXILIARY_STATE, i);
    fill(a, random_values(numel(shape_of(a)), 0.5, 1.5, 50 + i));
    names.push_back(i == 0 ? "bn_moving_mean" : "bn_moving_var");
    params.push_back(std::move(a));
  }
  ASSERT_EQ(loom_executor_forward(ex.h, 0), LOOM_OK) << loom_last_error();
  const std::vector<double> want = read(get(ex, LOOM_EXEC_OUTPUT, 0));

  const std::string path = ::testing::TempDir() + "loom_onnx_roundtrip.onnx";
  std::vector<const char *> pn;
  std::vector<loom_ndarray> ph;
  for (size_t i = 0; i < names.size(); ++i) {
    pn.push_back(names[i].c_str());
    ph.push_back(params[i].h);
  }
  Shapes in{{"data", {2, 3, 6, 6}}};
  ASSERT_EQ(loom_onnx_export(path.c_str(), net.h, int32_t(pn.size()), pn.data(), ph.data(), in.n(),
                             in.ptrs.data(), in.ndims.data(), in.dims.data(), 0),
            LOOM_OK)
      << loom_last_error();

  loom_symbol sh = nullptr;
  loom_ndarray_list lh = nullptr;
  const char *inputs = nullptr;
  ASSERT_EQ(loom_onnx_import(&sh, &lh, &inputs, path.c_str()), LOOM_OK) << loom_last_error();
  EXPECT_STREQ(inputs, R"([{"name": "data", "shape": [2, 3, 6, 6]}])");
  Sym back(sh);
  EXPECT_EQ(list(back, LOOM_LIST_AUXILIARY_STATES), R"(["bn_moving_mean", "bn_moving_var"])");
  Exec ex2 = simple_bind(back, Shapes{{"data", {2, 3, 6, 6}}}, LOOM_GRAD_NULL);
  const std::string arg_list = list(back, LOOM_LIST_ARGUMENTS);
  int32_t n = 0;
  ASSERT_EQ(loom_ndarray_list_size(&n, lh), LOOM_OK);
  EXPECT_EQ(n, 8);
  for (int32_t i = 0; i < n; ++i) {
    loom_ndarray a = nullptr;
    const char *name = nullptr;
    ASSERT_EQ(loom_ndarray_list_get(&a, &name, lh, i), LOOM_OK);
    Arr src(a);
    std::string nm = name;
    bool aux = nm == "bn_moving_mean" || nm == "bn_moving_var";
    int idx = aux ? (nm == "bn_moving_mean" ? 0 : 1) : -1;
    if (!aux) {  // position of the name in the imported argument list
      size_t at = arg_list.find("\"" + nm + "\"");
      ASSERT_NE(at, std::string::npos) << nm;
      idx = int(std::count(arg_list.begin(), arg_list.begin() + at, ','));
    }
    Arr dst = get(ex2, aux ? LOOM_EXEC_AUXILIARY_STATE : LOOM_EXEC_ARGUMENT, idx);
    ASSERT_EQ(shape_of(dst), shape_of(src)) << nm;
    ASSERT_EQ(loom_ndarray_copy_to(dst.h, src.h), LOOM_OK) << loom_last_error();
  }
  loom_ndarray_list_free(lh);
  fill(get(ex2, LOOM_EXEC_ARGUMENT, 0), read(get(ex, LOOM_EXEC_ARGUMENT, 0)));
  ASSERT_EQ(loom_executor_forward(ex2.h, 0), LOOM_OK) << loom_last_error();
  expect_close(read(get(ex2, LOOM_EXEC_OUTPUT, 0)), want, LOOM_DTYPE_FLOAT32, "imported output");

  // Damaged copies: never a crash; a truncated file is always an error naming it.
  std::ifstream fin(path, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(fin)), std::istreambuf_iterator<char>());
  ASSERT_GT(bytes.size(), 500u);
  const std::string bad = ::testing::TempDir() + "loom_onnx_damaged.onnx";
  auto try_import = [&](const std::string &content) {
    {
      std::ofstream out(bad, std::ios::binary | std::ios::trunc);
      out.write(content.data(), std::streamsize(content.size()));
    }
    loom_symbol s2 = nullptr;
    loom_ndarray_list l2 = nullptr;
    loom_status st = loom_onnx_import(&s2, &l2, nullptr, bad.c_str());
    if (st == LOOM_OK) {
      loom_symbol_free(s2);
      loom_ndarray_list_free(l2);
    } else {
      EXPECT_NE(std::string(loom_last_error()).find("loom_onnx_damaged.onnx"), std::string::npos)
          << loom_last_error();
    }
    return st;
  };
  for (size_t len = 0; len < bytes.size(); len += 1 + bytes.size() / 150)
    EXPECT_NE(try_import(bytes.substr(0, len)), LOOM_OK) << "truncated to " << len << " bytes";
  uint32_t seed = 7;
  for (int k = 0; k < 150; ++k) {
    std::string copy = bytes;
    seed = seed * 1664525u + 1013904223u;
    copy[seed % copy.size()] = char(seed >> 24);
    try_import(copy);
  }
  std::remove(bad.c_str());
  std::remove(path.c_str());
}

// BatchNorm folding through the ABI (values are checked in tests/python/test_fold.py and
// the C# FoldTests): the count, the parameters of the folded graph, and the errors.
TEST(Symbol, FoldBatchNormThroughTheAbi) {
  Sym data = var("data");
  Sym c = op("Convolution", "c", {&data}, {{"kernel", "(1,1)"}, {"num_filter", "3"}, {"no_bias", "true"}});
  Sym bn = op("BatchNorm", "bn", {&c}, {{"fix_gamma", "false"}});
  Sym net = op("Activation", "r", {&bn}, {{"act_type", "relu"}});
  const char *names[] = {"c_weight", "bn_gamma", "bn_beta", "bn_moving_mean", "bn_moving_var"};
  std::vector<Arr> arrays;
  arrays.push_back(make({3, 2, 1, 1}, random_values(6, -1, 1, 3)));
  for (int i = 0; i < 4; ++i) arrays.push_back(make({3}, random_values(3, 0.5, 1.5, 4 + i)));
  std::vector<loom_ndarray> hs;
  for (auto &a : arrays) hs.push_back(a.h);
  loom_symbol out = nullptr;
  loom_ndarray_list lst = nullptr;
  int32_t folded = -1;
  ASSERT_EQ(loom_symbol_fold_batchnorm(&out, &lst, &folded, net.h, 5, names, hs.data()), LOOM_OK)
      << loom_last_error();
  Sym f(out);
  EXPECT_EQ(folded, 1);
  EXPECT_EQ(list(f, LOOM_LIST_ARGUMENTS), R"(["data", "c_weight", "c_bias"])");
  EXPECT_EQ(list(f, LOOM_LIST_AUXILIARY_STATES), "[]");
  int32_t n = 0;
  ASSERT_EQ(loom_ndarray_list_size(&n, lst), LOOM_OK);
  EXPECT_EQ(n, 2);
  loom_ndarray_list_free(lst);
  // a parameter given twice, and a NULL name
  const char *twice[] = {"c_weight", "c_weight"};
  EXPECT_EQ(loom_symbol_fold_batchnorm(&out, &lst, nullptr, net.h, 2, twice, hs.data()), LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(loom_last_error()).find("c_weight"), std::string::npos);
  EXPECT_EQ(loom_symbol_fold_batchnorm(&out, &lst, nullptr, net.h, 1, nullptr, hs.data()), LOOM_ERR_INVALID_ARGUMENT);
}

// Prediction fusion through the ABI: Convolution+BatchNorm+add+relu and
// Convolution+BatchNorm fused, the result kept blocked for the next
// convolution (one image: channel pieces; three: batches of images), predict
// what the unfused graph (LOOM_EXEC_FUSE=0) predicts, with 4 steps fewer; a
// training-mode forward pass gives the unfused bits.
// `net` bound without gradients, LOOM_EXEC_FUSE=`fuse` (1: fusion), its arguments
// and auxiliary states filled with values in [0.5, 1.5) seeded by their position.
Exec bind_for_prediction(const Sym &net, const Shapes &sh, const char *fuse) {
  setenv("LOOM_EXEC_FUSE", fuse, 1);
  Exec ex = simple_bind(net, sh, LOOM_GRAD_NULL);
  unsetenv("LOOM_EXEC_FUSE");
  for (int kind : {LOOM_EXEC_ARGUMENT, LOOM_EXEC_AUXILIARY_STATE}) {
    int32_t count = 0;
    EXPECT_EQ(loom_executor_count(&count, ex.h, kind), LOOM_OK);
    for (int32_t i = 0; i < count; ++i) {
      Arr a = get(ex, kind, i);
      fill(a, random_values(numel(shape_of(a)), 0.5, 1.5, uint64_t(100 * kind + i)));
    }
  }
  return ex;
}

// A fused prediction step still queued when its executor is freed runs on and
// writes the output the caller kept: it reads what it absorbed (BatchNorm, add,
// relu) from its own share of their parameters, not from the freed graph. (It
// read the freed BatchNorm node's parameters before: a crash in one CI run, a
// race under ThreadSanitizer, a heap-use-after-free under AddressSanitizer.)
TEST(Symbol, AFusedStepQueuedWhenItsExecutorIsFreedStillRuns) {
  Shapes sh{{"data", {2, 16, 8, 8}}};
  std::vector<double> want;
  for (int freed : {0, 1}) {
    std::vector<Sym> syms;  // the graph, freed with the executor
    syms.push_back(var("data"));
    syms.push_back(op("Convolution", "c", {&syms[0]},
                      {{"kernel", "(3,3)"}, {"pad", "(1,1)"}, {"num_filter", "16"}, {"no_bias", "true"}}));
    syms.push_back(op("BatchNorm", "b", {&syms[1]}, {{"fix_gamma", "false"}}));
    syms.push_back(op("ElementWiseSum", "sum", {&syms[2], &syms[0]}));
    syms.push_back(op("Activation", "r", {&syms[3]}, {{"act_type", "relu"}}));
    const Sym &net = syms.back();
    Exec ex = bind_for_prediction(net, sh, "1");
    Arr out = get(ex, LOOM_EXEC_OUTPUT, 0);
    // A gate holds the data (argument 0) until after the executor is freed, so the
    // forward pass is still queued then. Another thread opens it, started first:
    // the naive engine runs the gate inside push, and freeing might wait for the
    // queued work.
    Arr x = get(ex, LOOM_EXEC_ARGUMENT, 0);
    std::mutex m;
    std::condition_variable cv;
    bool open = false;
    std::thread opener([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      std::lock_guard<std::mutex> l(m);
      open = true;
      cv.notify_all();
    });
    loom::Engine::get().push(
        [&] {
          std::unique_lock<std::mutex> l(m);
          cv.wait(l, [&] { return open; });
        },
        loom::Context{}, {}, {loom_capi::get_array(x.h, "data").var()});
    ASSERT_EQ(loom_executor_forward(ex.h, 0), LOOM_OK) << loom_last_error();
    if (freed) {
      ex = Exec();
      syms.clear();
    }
    auto y = read(out);
    opener.join();
    if (!freed)
      want = y;
    else
      EXPECT_EQ(y, want) << "the queued step's output";
  }
}

TEST(Symbol, PredictionFusionMatchesTheUnfusedGraph) {
  Sym data = var("data");
  Sym c1 = op("Convolution", "c1", {&data}, {{"kernel", "(3,3)"}, {"pad", "(1,1)"}, {"num_filter", "32"}, {"no_bias", "true"}});
  Sym b1 = op("BatchNorm", "b1", {&c1}, {{"fix_gamma", "false"}});
  Sym c2 = op("Convolution", "c2", {&data}, {{"kernel", "(1,1)"}, {"num_filter", "32"}});
  Sym b2 = op("BatchNorm", "b2", {&c2}, {{"fix_gamma", "false"}});
  Sym sum = op("ElementWiseSum", "sum", {&b1, &b2});
  Sym r = op("Activation", "r", {&sum}, {{"act_type", "relu"}});
  // the fused step's output reaches the next convolution in oneDNN's blocked layout
  Sym net = op("Convolution", "c3", {&r}, {{"kernel", "(1,1)"}, {"num_filter", "16"}});
  for (int64_t n : {1, 3}) {
    Shapes sh{{"data", {n, 16, 7, 7}}};
    std::vector<std::vector<float>> outs;
    std::vector<int32_t> steps;
    for (const char *fuse : {"1", "0"}) {
      Exec ex = bind_for_prediction(net, sh, fuse);
      for (int train : {0, 1}) {
        ASSERT_EQ(loom_executor_forward(ex.h, train), LOOM_OK) << loom_last_error();
        auto y = read(get(ex, LOOM_EXEC_OUTPUT, 0));
        outs.push_back(std::vector<float>(y.begin(), y.end()));
      }
      loom_memory_plan plan{};
      ASSERT_EQ(loom_executor_memory(&plan, ex.h), LOOM_OK);
      steps.push_back(plan.num_steps);
    }
    EXPECT_EQ(steps[1] - steps[0], 4) << "n=" << n;
    double scale = 0;
    for (float v : outs[2]) scale = std::max(scale, double(std::fabs(v)));
    for (size_t i = 0; i < outs[0].size(); ++i)
      ASSERT_NEAR(outs[0][i], outs[2][i], 1e-5 * (1 + scale)) << "n=" << n << " element " << i;
    EXPECT_EQ(outs[1], outs[3]) << "n=" << n << ": training-mode forward differs";
  }
}
