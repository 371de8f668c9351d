// Every registered operator against an independent naive float64 reference.
#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <set>
#include <sstream>

#include "testutil.h"

using namespace lt;

namespace {

const int32_t kFloatTypes[] = {LOOM_DTYPE_FLOAT32, LOOM_DTYPE_FLOAT64};


struct UnaryRef {
  const char *name;
  std::function<double(double)> f;
  double lo, hi;
  bool ints;
};

double sgn(double x) { return (x > 0) - (x < 0); }

const UnaryRef kUnary[] = {
    {"negative", [](double x) { return -x; }, -5, 5, true},
    {"abs", [](double x) { return std::fabs(x); }, -5, 5, true},
    {"sign", sgn, -5, 5, true},
    {"square", [](double x) { return x * x; }, -5, 5, true},
    {"relu", [](double x) { return x > 0 ? x : 0.0; }, -5, 5, true},
    {"exp", [](double x) { return std::exp(x); }, -5, 5, false},
    {"log", [](double x) { return std::log(x); }, 0.01, 10, false},
    {"log1p", [](double x) { return std::log1p(x); }, -0.9, 10, false},
    {"expm1", [](double x) { return std::expm1(x); }, -3, 3, false},
    {"sqrt", [](double x) { return std::sqrt(x); }, 0, 10, false},
    {"rsqrt", [](double x) { return 1 / std::sqrt(x); }, 0.1, 10, false},
    {"reciprocal", [](double x) { return 1 / x; }, 0.1, 10, false},
    {"sigmoid", [](double x) { return 1 / (1 + std::exp(-x)); }, -8, 8, false},
    {"tanh", [](double x) { return std::tanh(x); }, -4, 4, false},
    {"softsign", [](double x) { return x / (1 + std::fabs(x)); }, -4, 4, false},
    {"sin", [](double x) { return std::sin(x); }, -4, 4, false},
    {"cos", [](double x) { return std::cos(x); }, -4, 4, false},
    {"floor", [](double x) { return std::floor(x); }, -4, 4, false},
    {"ceil", [](double x) { return std::ceil(x); }, -4, 4, false},
    {"round", [](double x) { return std::round(x); }, -4, 4, false},
};

const bool unary_covered = [] {
  for (const auto &u : kUnary) cover({u.name});
  return true;
}();

TEST(Ops, UnaryMatchesReference) {
  uint32_t seed = 1;
  for (const auto &u : kUnary) {
    std::vector<int32_t> types(std::begin(kFloatTypes), std::end(kFloatTypes));
    if (u.ints) types.insert(types.end(), {LOOM_DTYPE_INT32, LOOM_DTYPE_INT64});
    for (int32_t dt : types) {
      for (auto shape : {std::vector<int64_t>{}, {7}, {3, 4, 5}, {0, 3}, {70000}}) {
        auto raw = as_dtype(random_values(numel(shape), u.lo, u.hi, seed++), dt);
        if (raw.size() > 1 && u.lo <= 0 && u.hi >= 0) raw[1] = 0;  // edge value
        if (raw.size() > 2 && u.lo <= -1) raw[2] = -1;
        Arr a = make(shape, raw, dt);
        Arr o = call(u.name, {&a});
        EXPECT_EQ(shape_of(o), shape);
        EXPECT_EQ(dtype_of(o), dt);
        std::vector<double> want(raw.size());
        for (size_t i = 0; i < raw.size(); ++i) want[i] = u.f(raw[i]);
        expect_close(read(o), as_dtype(want, dt), dt,
                     std::string(u.name) + " " + loom::dtype_name(dt) + " " + shape_str(shape));
      }
    }
  }
}

// Activation's float32 tanh (tanh_approx, a rational function): within 3.7e-7 of
// tanh absolute and relative over a dense sweep of [-12, 12] and tiny values down
// to 1e-30, odd, exactly +-1 from 7.9053 on and at the infinities, NaN kept.
TEST(Ops, ActivationTanhIsCloseOddAndSaturates) {
  std::vector<double> xs;
  for (double v = -12; v < 12; v += 1.3e-4) xs.push_back(static_cast<float>(v));
  for (double v = 1e-30; v < 1; v *= 1.05) xs.push_back(static_cast<float>(v)), xs.push_back(-static_cast<float>(v));
  const double inf = std::numeric_limits<double>::infinity();
  xs.insert(xs.end(), {0.0, inf, -inf, 7.90531110763549805, -7.90531110763549805, 4e-4, -4e-4});
  const size_t nan_at = xs.size();
  xs.push_back(std::nan(""));
  Arr a = make({static_cast<int64_t>(xs.size())}, xs, LOOM_DTYPE_FLOAT32);
  const std::vector<double> y = read(call("Activation", {&a}, {{"act_type", "tanh"}}));
  ASSERT_EQ(y.size(), xs.size());
  EXPECT_TRUE(std::isnan(y[nan_at]));
  double worst_abs = 0, worst_rel = 0;
  for (size_t i = 0; i < nan_at; ++i) {
    const double x = static_cast<float>(xs[i]), want = std::tanh(x);
    worst_abs = std::max(worst_abs, std::fabs(y[i] - want));
    if (want != 0) worst_rel = std::max(worst_rel, std::fabs(y[i] - want) / std::fabs(want));
    if (std::fabs(x) >= 7.90531110763549805) {
      EXPECT_EQ(y[i], x > 0 ? 1.0 : -1.0) << "at " << x;
    }
  }
  EXPECT_LE(worst_abs, 3.7e-7);
  EXPECT_LE(worst_rel, 3.7e-7);
  // Odd: the sweep's values at x and -x (the tiny pairs) have opposite bits.
  for (size_t i = 0; i + 1 < nan_at; ++i) {
    if (xs[i] > 0 && xs[i + 1] == -xs[i]) {
      EXPECT_EQ(y[i + 1], -y[i]) << "at " << xs[i];
    }
  }
}

TEST(Ops, FloatOnlyUnaryRejectsIntegers) {
  Arr a = make({3}, {1, 2, 3}, LOOM_DTYPE_INT32);
  std::vector<Arr> outs;
  EXPECT_EQ(invoke("exp", {&a}, {}, &outs), LOOM_ERR_DTYPE);
  EXPECT_NE(std::string(loom_last_error()).find("exp"), std::string::npos);
  EXPECT_NE(std::string(loom_last_error()).find("int32"), std::string::npos);
}

struct BinaryRef {
  const char *name;
  std::function<double(double, double)> f;
  double lo, hi;  // input range (rhs of divide/power kept positive)
};

const BinaryRef kBinary[] = {
    {"add", [](double a, double b) { return a + b; }, -5, 5},
    {"subtract", [](double a, double b) { return a - b; }, -5, 5},
    {"multiply", [](double a, double b) { return a * b; }, -5, 5},
    {"divide", [](double a, double b) { return a / b; }, 0.5, 5},
    {"power", [](double a, double b) { return std::pow(a, b); }, 0.5, 3},
    {"maximum", [](double a, double b) { return std::max(a, b); }, -5, 5},
    {"minimum", [](double a, double b) { return std::min(a, b); }, -5, 5},
    {"equal", [](double a, double b) { return double(a == b); }, -2, 2},
    {"not_equal", [](double a, double b) { return double(a != b); }, -2, 2},
    {"greater", [](double a, double b) { return double(a > b); }, -2, 2},
    {"greater_equal", [](double a, double b) { return double(a >= b); }, -2, 2},
    {"less", [](double a, double b) { return double(a < b); }, -2, 2},
    {"less_equal", [](double a, double b) { return double(a <= b); }, -2, 2},
};

const std::pair<std::vector<int64_t>, std::vector<int64_t>> kBroadcastCases[] = {
    {{2, 3}, {2, 3}}, {{2, 3}, {3}},       {{2, 1, 4}, {3, 1}}, {{}, {2, 2}},
    {{4, 1}, {1, 5}}, {{1}, {5}},          {{0, 3}, {1, 3}},    {{2, 3, 1, 2}, {3, 4, 1}},
    {{5}, {}},        {{300, 257}, {257}},
    {{3, 40001}, {3, 40001}},  // same shapes, split over the kernel threads in runs of 16384
};

const bool binary_covered = [] {
  for (const auto &b : kBinary) cover({b.name});
  return true;
}();

TEST(Ops, BinaryBroadcastMatchesReference) {
  uint32_t seed = 100;
  for (const auto &b : kBinary) {
    for (int32_t dt : {LOOM_DTYPE_FLOAT32, LOOM_DTYPE_FLOAT64, LOOM_DTYPE_INT32, LOOM_DTYPE_INT64}) {
      for (const auto &sc : kBroadcastCases) {
        auto &ls = sc.first;
        auto &rs = sc.second;
        bool is_int = dt == LOOM_DTYPE_INT32 || dt == LOOM_DTYPE_INT64;
        double lo = is_int ? std::max(b.lo, 1.0) : b.lo;
        auto lv = as_dtype(random_values(numel(ls), lo, b.hi, seed++), dt);
        auto rv = as_dtype(random_values(numel(rs), lo, b.hi, seed++), dt);
        // Make comparisons see equal values too, and every op see a zero.
        if (!rv.empty() && !lv.empty()) lv[0] = rv[0];
        if (lv.size() > 1) lv[1] = 0;
        Arr l = make(ls, lv, dt), r = make(rs, rv, dt);
        Arr o = call(b.name, {&l, &r});
        std::vector<int64_t> os(std::max(ls.size(), rs.size()));
        for (size_t i = 0; i < os.size(); ++i) {
          int li = static_cast<int>(i) - static_cast<int>(os.size() - ls.size());
          int ri = static_cast<int>(i) - static_cast<int>(os.size() - rs.size());
          int64_t a = li >= 0 ? ls[li] : 1, c = ri >= 0 ? rs[ri] : 1;
          os[i] = a == 1 ? c : a;
        }
        ASSERT_EQ(shape_of(o), os) << b.name << " " << shape_str(ls) << " " << shape_str(rs);
        std::vector<double> want(numel(os));
        for (int64_t i = 0; i < numel(os); ++i) {
          double x = lv[bcast_index(i, ls, os)], y = rv[bcast_index(i, rs, os)];
          double w = b.f(x, y);
          if (is_int && std::string(b.name) == "divide") w = std::trunc(w);
          want[i] = w;
        }
        expect_close(read(o), as_dtype(want, dt), dt,
                     std::string(b.name) + " " + loom::dtype_name(dt) + " " + shape_str(ls) +
                         " vs " + shape_str(rs));
      }
    }
  }
}

struct ScalarRef {
  const char *name;
  std::function<double(double, double)> f;
};
const ScalarRef kScalarOps[] = {
      {"add_scalar", [](double a, double s) { return a + s; }},
      {"subtract_scalar", [](double a, double s) { return a - s; }},
      {"rsubtract_scalar", [](double a, double s) { return s - a; }},
      {"multiply_scalar", [](double a, double s) { return a * s; }},
      {"divide_scalar", [](double a, double s) { return a / s; }},
      {"rdivide_scalar", [](double a, double s) { return s / a; }},
      {"power_scalar", [](double a, double s) { return std::pow(a, s); }},
      {"rpower_scalar", [](double a, double s) { return std::pow(s, a); }},
      {"maximum_scalar", [](double a, double s) { return std::max(a, s); }},
      {"minimum_scalar", [](double a, double s) { return std::min(a, s); }},
      {"equal_scalar", [](double a, double s) { return double(a == s); }},
      {"not_equal_scalar", [](double a, double s) { return double(a != s); }},
      {"greater_scalar", [](double a, double s) { return double(a > s); }},
      {"greater_equal_scalar", [](double a, double s) { return double(a >= s); }},
      {"less_scalar", [](double a, double s) { return double(a < s); }},
      {"less_equal_scalar", [](double a, double s) { return double(a <= s); }},
};
const bool scalar_covered = [] {
  for (const auto &s : kScalarOps) cover({s.name});
  return true;
}();

TEST(Ops, ScalarFormsMatchReference) {
  for (const auto &s : kScalarOps) {
    for (int32_t dt : kFloatTypes) {
      auto v = as_dtype(random_values(40, 0.5, 3, 7), dt);
      v[3] = 1.5;
      v[4] = 0;
      Arr a = make({5, 8}, v, dt);
      Arr o = call(s.name, {&a}, {{"scalar", "1.5"}});
      std::vector<double> want(v.size());
      for (size_t i = 0; i < v.size(); ++i) want[i] = s.f(v[i], 1.5);
      expect_close(read(o), as_dtype(want, dt), dt, s.name);
    }
  }
}

TEST(Ops, IntegerDivisionByZeroIsAnError) {
  Arr a = make({3}, {1, 2, 3}, LOOM_DTYPE_INT32);
  std::vector<Arr> outs;
  EXPECT_EQ(invoke("divide_scalar", {&a}, {{"scalar", "0"}}, &outs), LOOM_ERR_INVALID_ARGUMENT);
  Arr z = make({3}, {1, 0, 3}, LOOM_DTYPE_INT32);
  // Data-dependent: fails when it runs, reported at the wait.
  ASSERT_EQ(invoke("divide", {&a, &z}, {}, &outs), LOOM_OK);
  std::vector<int32_t> buf(3);
  EXPECT_EQ(loom_ndarray_copy_to_host(buf.data(), 12, outs[0].h), LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(loom_last_error()).find("division by zero"), std::string::npos);
  loom_wait_all();
}

// Naive product in float64.
std::vector<double> matmul(const std::vector<double> &a, const std::vector<double> &b, int64_t m,
                           int64_t k, int64_t n, bool ta, bool tb) {
  std::vector<double> c(m * n, 0.0);
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0;
      for (int64_t p = 0; p < k; ++p)
        s += (ta ? a[p * m + i] : a[i * k + p]) * (tb ? b[j * k + p] : b[p * n + j]);
      c[i * n + j] = s;
    }
  return c;
}

COVERS("dot", "batch_dot");
TEST(Ops, DotMatchesReference) {
  for (int32_t dt : {LOOM_DTYPE_FLOAT32, LOOM_DTYPE_FLOAT64, LOOM_DTYPE_INT32}) {
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        int64_t m = 5, k = 7, n = 3;
        auto av = as_dtype(random_values(m * k, -3, 3, 11), dt);
        auto bv = as_dtype(random_values(k * n, -3, 3, 12), dt);
        Arr a = make(ta ? std::vector<int64_t>{k, m} : std::vector<int64_t>{m, k}, av, dt);
        Arr b = make(tb ? std::vector<int64_t>{n, k} : std::vector<int64_t>{k, n}, bv, dt);
        Arr o = call("dot", {&a, &b},
                     {{"transpose_a", ta ? "true" : "false"}, {"transpose_b", tb ? "1" : "0"}});
        EXPECT_EQ(shape_of(o), (std::vector<int64_t>{m, n}));
        double tol = dt == LOOM_DTYPE_FLOAT32 ? 1e-4 : 1e-10;
        auto want = matmul(av, bv, m, k, n, ta, tb);
        auto got = read(o);
        for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], tol);
      }
    // N-D lhs flattens its leading axes; 1-D x 1-D is the inner product, shape (1,) (MXNet 1.x).
    auto av = as_dtype(random_values(24, -2, 2, 13), dt);
    auto bv = as_dtype(random_values(4 * 3, -2, 2, 14), dt);
    Arr a = make({2, 3, 4}, av, dt), b = make({4, 3}, bv, dt);
    Arr o = call("dot", {&a, &b});
    EXPECT_EQ(shape_of(o), (std::vector<int64_t>{2, 3, 3}));
    auto want = matmul(av, bv, 6, 4, 3, false, false);
    auto got = read(o);
    for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-4);
    Arr v = make({4}, {1, 2, 3, 4}, dt);
    Arr ip = call("dot", {&v, &v});
    EXPECT_EQ(shape_of(ip), std::vector<int64_t>{1});
    EXPECT_EQ(read(ip)[0], 30.0);
    // batch_dot
    int64_t B = 3, m = 4, k = 5, n = 2;
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb) {
        auto x = as_dtype(random_values(B * m * k, -2, 2, 15), dt);
        auto y = as_dtype(random_values(B * k * n, -2, 2, 16), dt);
        Arr X = make(ta ? std::vector<int64_t>{B, k, m} : std::vector<int64_t>{B, m, k}, x, dt);
        Arr Y = make(tb ? std::vector<int64_t>{B, n, k} : std::vector<int64_t>{B, k, n}, y, dt);
        Arr Z = call("batch_dot", {&X, &Y},
                     {{"transpose_a", ta ? "true" : "false"}, {"transpose_b", tb ? "true" : "false"}});
        EXPECT_EQ(shape_of(Z), (std::vector<int64_t>{B, m, n}));
        auto got = read(Z);
        for (int64_t bi = 0; bi < B; ++bi) {
          std::vector<double> xa(x.begin() + bi * m * k, x.begin() + (bi + 1) * m * k);
          std::vector<double> ya(y.begin() + bi * k * n, y.begin() + (bi + 1) * k * n);
          auto w = matmul(xa, ya, m, k, n, ta, tb);
          for (int64_t i = 0; i < m * n; ++i) EXPECT_NEAR(got[bi * m * n + i], w[i], 1e-4);
        }
      }
  }
}

TEST(Ops, DotShapeErrorsNameTheShapes) {
  Arr a = make({2, 3}, std::vector<double>(6, 1)), b = make({4, 2}, std::vector<double>(8, 1));
  std::vector<Arr> outs;
  EXPECT_EQ(invoke("dot", {&a, &b}, {}, &outs), LOOM_ERR_SHAPE);
  std::string msg = loom_last_error();
  EXPECT_NE(msg.find("dot"), std::string::npos) << msg;
  EXPECT_NE(msg.find("(2,3)"), std::string::npos) << msg;
  EXPECT_NE(msg.find("(4,2)"), std::string::npos) << msg;
}

// Naive reduction: iterate every input element, map to its output slot.
std::vector<double> naive_reduce(const std::vector<double> &v, const std::vector<int64_t> &s,
                                 const std::set<int> &axes, const std::string &op) {
  std::vector<int64_t> os;
  for (int i = 0; i < static_cast<int>(s.size()); ++i)
    if (!axes.count(i)) os.push_back(s[i]);
  int64_t on = numel(os);
  std::vector<double> acc(on, op == "prod" ? 1.0 : 0.0);
  std::vector<int64_t> cnt(on, 0);
  std::vector<bool> init(on, false);
  for (int64_t i = 0; i < numel(s); ++i) {
    int64_t rem = i, oidx = 0, ostride = 1;
    for (int k = static_cast<int>(s.size()) - 1; k >= 0; --k) {
      int64_t c = rem % s[k];
      rem /= s[k];
      if (!axes.count(k)) {
        oidx += c * ostride;
        ostride *= s[k];
      }
    }
    double x = v[i];
    if (op == "sum" || op == "mean") acc[oidx] += x;
    if (op == "prod") acc[oidx] *= x;
    if (op == "max") acc[oidx] = init[oidx] ? std::max(acc[oidx], x) : x;
    if (op == "min") acc[oidx] = init[oidx] ? std::min(acc[oidx], x) : x;
    init[oidx] = true;
    cnt[oidx]++;
  }
  if (op == "mean")
    for (int64_t i = 0; i < on; ++i) acc[i] /= static_cast<double>(cnt[i]);
  return acc;
}

COVERS("sum", "mean", "prod", "max", "min");
TEST(Ops, ReductionsMatchReference) {
  std::vector<int64_t> s{3, 4, 5, 2};
  struct Case {
    std::string axis;
    std::set<int> axes;
  };
  const Case cases[] = {{"None", {0, 1, 2, 3}}, {"(0,)", {0}}, {"(-1,)", {3}}, {"(1,2)", {1, 2}},
                        {"(0,2)", {0, 2}},      {"(0,1,3)", {0, 1, 3}}, {"()", {0, 1, 2, 3}},
                        {"(0,1,2,3)", {0, 1, 2, 3}}};  // () and every axis reduce fully (MXNet)
  for (const char *op : {"sum", "mean", "prod", "max", "min"})
    for (int32_t dt : {LOOM_DTYPE_FLOAT32, LOOM_DTYPE_FLOAT64, LOOM_DTYPE_INT64}) {
      auto v = as_dtype(random_values(numel(s), 0.5, 1.5, 21), dt);
      if (dt == LOOM_DTYPE_INT64) v = as_dtype(random_values(numel(s), -3, 9, 22), dt);
      Arr a = make(s, v, dt);
      for (const auto &c : cases)
        for (bool keep : {false, true}) {
          Arr o = call(op, {&a}, {{"axis", c.axis}, {"keepdims", keep ? "true" : "false"}});
          std::vector<int64_t> os;
          for (int i = 0; i < 4; ++i)
            if (!c.axes.count(i)) os.push_back(s[i]);
            else if (keep) os.push_back(1);
          if (os.empty()) os.push_back(1);  // a full reduction has shape (1,) in MXNet 1.x
          EXPECT_EQ(shape_of(o), os) << op << " axis=" << c.axis;
          auto want = naive_reduce(v, s, c.axes, op);
          if (dt == LOOM_DTYPE_INT64 && std::string(op) == "mean")
            for (auto &w : want) w = std::trunc(w);  // integer mean truncates
          expect_close(read(o), as_dtype(want, dt), dt == LOOM_DTYPE_FLOAT32 ? dt : LOOM_DTYPE_FLOAT64,
                       std::string(op) + " axis=" + c.axis);
        }
      // exclude=true reduces the complement.
      Arr ex = call(op, {&a}, {{"axis", "(1,)"}, {"exclude", "true"}});
      expect_close(read(ex), as_dtype(naive_reduce(v, s, {0, 2, 3}, op), dt),
                   dt == LOOM_DTYPE_INT64 ? LOOM_DTYPE_FLOAT64 : dt, std::string(op) + " exclude");
    }
}

TEST(Ops, ReductionErrors) {
  Arr a = make({2, 3}, std::vector<double>(6, 1));
  std::vector<Arr> outs;
  EXPECT_EQ(invoke("sum", {&a}, {{"axis", "(2,)"}}, &outs), LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(loom_last_error()).find("axis=2"), std::string::npos) << loom_last_error();
  EXPECT_EQ(invoke("sum", {&a}, {{"axis", "(0,0)"}}, &outs), LOOM_ERR_INVALID_ARGUMENT);
  Arr e = make({0, 3}, {});
  EXPECT_EQ(invoke("max", {&e}, {{"axis", "(0,)"}}, &outs), LOOM_ERR_SHAPE);
  Arr s = call("sum", {&e}, {{"axis", "(0,)"}});
  EXPECT_EQ(read(s), (std::vector<double>{0, 0, 0}));
}

COVERS("argmax", "argmin");
TEST(Ops, ArgMaxMinMatchReference) {
  std::vector<int64_t> s{4, 6, 3};
  for (int32_t dt : {LOOM_DTYPE_FLOAT32, LOOM_DTYPE_INT32}) {
    auto v = as_dtype(random_values(numel(s), -10, 10, 31), dt);
    Arr a = make(s, v, dt);
    for (int axis = 0; axis < 3; ++axis)
      for (bool is_max : {true, false}) {
        Arr o = call(is_max ? "argmax" : "argmin", {&a}, {{"axis", std::to_string(axis)}});
        EXPECT_EQ(dtype_of(o), LOOM_DTYPE_INT64);
        auto got = read(o);
        std::vector<int64_t> os;
        for (int i = 0; i < 3; ++i)
          if (i != axis) os.push_back(s[i]);
        ASSERT_EQ(shape_of(o), os);
        int64_t inner = 1;
        for (int i = axis + 1; i < 3; ++i) inner *= s[i];
        for (int64_t idx = 0; idx < numel(os); ++idx) {
          int64_t outer = idx / inner, j = idx % inner;
          int64_t best = 0;
          for (int64_t k = 1; k < s[axis]; ++k) {
            double cand = v[(outer * s[axis] + k) * inner + j];
            double cur = v[(outer * s[axis] + best) * inner + j];
            if (is_max ? cand > cur : cand < cur) best = k;
          }
          EXPECT_EQ(got[idx], best);
        }
      }
    Arr flat = call("argmax", {&a});
    EXPECT_EQ(shape_of(flat), std::vector<int64_t>{1});  // MXNet 1.x: (1,)
    EXPECT_EQ(read(flat)[0],
              static_cast<double>(std::max_element(v.begin(), v.end()) - v.begin()));
  }
}

COVERS("softmax", "log_softmax");
TEST(Ops, SoftmaxMatchesReference) {
  std::vector<int64_t> s{3, 5, 4};
  for (int32_t dt : kFloatTypes) {
    auto v = as_dtype(random_values(numel(s), -20, 20, 41), dt);
    Arr a = make(s, v, dt);
    for (int axis : {0, 1, -1})
      for (bool lg : {false, true})
        for (double t : {1.0, 2.5}) {
          Arr o = call(lg ? "log_softmax" : "softmax", {&a},
                       {{"axis", std::to_string(axis)}, {"temperature", std::to_string(t)}});
          int ax = axis < 0 ? axis + 3 : axis;
          int64_t inner = 1, outer = 1;
          for (int i = ax + 1; i < 3; ++i) inner *= s[i];
          for (int i = 0; i < ax; ++i) outer *= s[i];
          std::vector<double> want(v.size());
          for (int64_t o2 = 0; o2 < outer; ++o2)
            for (int64_t j = 0; j < inner; ++j) {
              double mx = -1e300, sum = 0;
              for (int64_t k = 0; k < s[ax]; ++k) mx = std::max(mx, v[(o2 * s[ax] + k) * inner + j]);
              for (int64_t k = 0; k < s[ax]; ++k)
                sum += std::exp((v[(o2 * s[ax] + k) * inner + j] - mx) / t);
              for (int64_t k = 0; k < s[ax]; ++k) {
                double z = (v[(o2 * s[ax] + k) * inner + j] - mx) / t;
                want[(o2 * s[ax] + k) * inner + j] = lg ? z - std::log(sum) : std::exp(z) / sum;
              }
            }
          expect_close(read(o), as_dtype(want, dt), dt, lg ? "log_softmax" : "softmax");
        }
  }
}

// Float32 rows along the last axis take the vectorised rows (softmax_rows.h): row
// lengths around the 8-lane sums and the 256 where the AVX-512 variant starts, with
// and without a temperature, -inf entries (softmax 0, log_softmax -inf), values
// far below their max and a max far above the rest, against float64; a NaN row goes to the general loop (NaN).
TEST(Ops, SoftmaxAndLogSoftmaxRowsOfEveryLength) {
  const double inf = INFINITY;
  for (int64_t k : {1, 7, 8, 9, 17, 255, 256, 257, 3000})
    for (bool lg : {false, true})
      for (double t : {1.0, 2.5}) {
        SCOPED_TRACE(std::string(lg ? "log_softmax" : "softmax") + " k=" + std::to_string(k) + " t=" +
                     std::to_string(t));
        std::vector<double> v = as_dtype(random_values(3 * k, -30, 30, static_cast<uint32_t>(k)), LOOM_DTYPE_FLOAT32);
        if (k > 1) v[1] = -inf;
        if (k > 2) v[k + 1] = v[k] - 200;
        // a max far above the rest, early in the row: a max taken wrongly (say from
        // the row's last values) leaves r = x - max above exp's range
        if (k > 16) v[2 * k + 3] = 130;
        Arr x = make({3, k}, v);
        std::vector<double> got = read(call(lg ? "log_softmax" : "softmax", {&x}, {{"temperature", std::to_string(t)}}));
        for (int64_t r = 0; r < 3; ++r) {
          double mx = -inf, z = 0;
          for (int64_t c = 0; c < k; ++c) mx = std::max(mx, v[r * k + c]);
          for (int64_t c = 0; c < k; ++c) z += std::exp((v[r * k + c] - mx) / t);
          for (int64_t c = 0; c < k; ++c) {
            const double zc = (v[r * k + c] - mx) / t, want = lg ? zc - std::log(z) : std::exp(zc) / z;
            const double g = got[r * k + c];
            if (std::isinf(zc)) {  // a -inf entry: exactly 0, or -inf for log_softmax
              EXPECT_EQ(g, want) << "row " << r << " [" << c << "]";
            } else {
              // r = (x - max) / t rounded to float (|r| * 2^-24, twice), 2 ulp of exp,
              // the sum and the result's rounding
              const double dr = std::fabs(zc) * 1.2e-7;
              const double tol = lg ? dr + 4e-7 * (1 + std::fabs(want)) : want * (dr + 4e-7) + 1e-37;
              EXPECT_NEAR(g, want, tol) << "row " << r << " [" << c << "]";
            }
          }
        }
        if (k > 1 && !lg) {
          EXPECT_EQ(got[1], 0.0) << "a -inf entry";
        }
      }
  std::vector<double> v(600, 1.0);
  v[17] = NAN;
  Arr odd = make({2, 300}, v);
  for (const char *op : {"softmax", "log_softmax"}) {
    std::vector<double> got = read(call(op, {&odd}));
    for (int c = 0; c < 300; ++c) EXPECT_TRUE(std::isnan(got[c])) << op << " NaN row at " << c;
    for (int c = 300; c < 600; ++c) EXPECT_NEAR(got[c], std::string(op) == "softmax" ? 1.0 / 300 : -std::log(300.0), 1e-6);
  }
}

COVERS("transpose");
TEST(Ops, TransposeMatchesReference) {
  std::vector<int64_t> s{2, 3, 4};
  std::vector<double> v(24);
  std::iota(v.begin(), v.end(), 0.0);
  Arr a = make(s, v, LOOM_DTYPE_FLOAT64);
  for (auto axes : {std::vector<int>{2, 1, 0}, {0, 2, 1}, {1, 0, 2}, {2, 0, 1}}) {
    std::string p = "(" + std::to_string(axes[0]) + "," + std::to_string(axes[1]) + "," +
                    std::to_string(axes[2]) + ")";
    Arr o = call("transpose", {&a}, {{"axes", p}});
    std::vector<int64_t> os{s[axes[0]], s[axes[1]], s[axes[2]]};
    ASSERT_EQ(shape_of(o), os);
    auto got = read(o);
    for (int64_t i = 0; i < os[0]; ++i)
      for (int64_t j = 0; j < os[1]; ++j)
        for (int64_t k = 0; k < os[2]; ++k) {
          int64_t idx[3];
          idx[axes[0]] = i;
          idx[axes[1]] = j;
          idx[axes[2]] = k;
          EXPECT_EQ(got[(i * os[1] + j) * os[2] + k], v[(idx[0] * 3 + idx[1]) * 4 + idx[2]]);
        }
  }
  // Default reverses axes; the 2-D path is blocked.
  auto mv = random_values(70 * 45, -1, 1, 51);
  Arr m = make({70, 45}, mv, LOOM_DTYPE_FLOAT64);
  auto got = read(call("transpose", {&m}));
  for (int64_t r = 0; r < 70; ++r)
    for (int64_t c = 0; c < 45; ++c) EXPECT_EQ(got[c * 70 + r], mv[r * 45 + c]);
}

COVERS("concat");
TEST(Ops, ConcatMatchesReference) {
  Arr a = make({2, 2}, {1, 2, 3, 4}), b = make({2, 3}, {5, 6, 7, 8, 9, 10}),
      c = make({1, 2}, {11, 12});
  EXPECT_EQ(read(call("concat", {&a, &b}, {{"dim", "1"}})),
            (std::vector<double>{1, 2, 5, 6, 7, 3, 4, 8, 9, 10}));
  EXPECT_EQ(read(call("concat", {&a, &c}, {{"dim", "0"}})),
            (std::vector<double>{1, 2, 3, 4, 11, 12}));
  EXPECT_EQ(read(call("concat", {&a, &a, &c}, {{"dim", "-2"}})).size(), 10u);
  std::vector<Arr> outs;
  EXPECT_EQ(invoke("concat", {&a, &b}, {{"dim", "0"}}, &outs), LOOM_ERR_SHAPE);
  EXPECT_NE(std::string(loom_last_error()).find("(2,3)"), std::string::npos);
}

COVERS("slice");
TEST(Ops, SliceMatchesPythonSemantics) {
  std::vector<double> v(60);
  std::iota(v.begin(), v.end(), 0.0);
  Arr a = make({3, 4, 5}, v);
  // a[1:3, ::2, -1:0:-2] in NumPy terms.
  Arr o = call("slice", {&a}, {{"begin", "(1,None,-1)"}, {"end", "(3,None,0)"}, {"step", "(1,2,-2)"}});
  ASSERT_EQ(shape_of(o), (std::vector<int64_t>{2, 2, 2}));
  std::vector<double> want;
  for (int i = 1; i < 3; ++i)
    for (int j = 0; j < 4; j += 2)
      for (int k = 4; k > 0; k -= 2) want.push_back(v[(i * 4 + j) * 5 + k]);
  EXPECT_EQ(read(o), want);
  Arr o2 = call("slice", {&a}, {{"begin", "(0,1)"}, {"end", "(1,-1)"}});
  EXPECT_EQ(shape_of(o2), (std::vector<int64_t>{1, 2, 5}));
  Arr empty = call("slice", {&a}, {{"begin", "(2,)"}, {"end", "(1,)"}});
  EXPECT_EQ(shape_of(empty), (std::vector<int64_t>{0, 4, 5}));
}

COVERS("reshape");
TEST(Ops, ReshapeSpecialCodes) {
  std::vector<double> v(2 * 3 * 4);
  std::iota(v.begin(), v.end(), 0.0);
  Arr a = make({2, 3, 4}, v);
  struct C {
    const char *shape;
    std::vector<int64_t> want;
  };
  for (const C &c : {C{"(4,0,2)", {4, 3, 2}}, C{"(-1,)", {24}}, C{"(2,-1)", {2, 12}},
                     C{"(0,-2)", {2, 3, 4}}, C{"(-3,4)", {6, 4}}, C{"(-4,1,2,-2)", {1, 2, 3, 4}},
                     C{"(0,-4,-1,3,4)", {2, 1, 3, 4}}}) {
    Arr o = call("reshape", {&a}, {{"shape", c.shape}});
    EXPECT_EQ(shape_of(o), c.want) << c.shape;
    EXPECT_EQ(read(o), v);
  }
  std::vector<Arr> outs;
  EXPECT_EQ(invoke("reshape", {&a}, {{"shape", "(5,5)"}}, &outs), LOOM_ERR_SHAPE);
  EXPECT_NE(std::string(loom_last_error()).find("(2,3,4)"), std::string::npos);
  // Extents whose product does not fit 64 bits are a shape error, not an overflow.
  for (const char *huge : {"(6666066666666,66666666)", "(66666666,66666666,66666666)"}) {
    EXPECT_EQ(invoke("reshape", {&a}, {{"shape", huge}}, &outs), LOOM_ERR_SHAPE) << huge;
    EXPECT_NE(std::string(loom_last_error()).find("64-bit"), std::string::npos) << loom_last_error();
    EXPECT_NE(invoke("zeros", {}, {{"shape", huge}}, &outs), LOOM_OK) << huge;
  }
}

COVERS("SoftmaxOutput", "SoftmaxActivation");
TEST(Ops, SoftmaxRowsOfEveryLengthAndNonFiniteEntries) {
  // Float32 rows take a vectorised exponential: against a float64 softmax for row
  // lengths around the 8-lane sum, a long row, rows far below their max (which
  // underflow to 0), -inf entries (masked: exactly 0), and rows the general loop
  // keeps (NaN anywhere gives a NaN row, +inf a NaN for every entry as 0 * inf).
  const double inf = INFINITY, nan = NAN;
  for (int64_t k : {1, 2, 7, 8, 9, 15, 16, 17, 1000}) {
    std::vector<double> v = random_values(3 * k, -30, 30, static_cast<uint32_t>(k));
    v[0] = -inf;  // row 0 masked at 0 (row 0 of length 1 is all -inf: NaN)
    if (k > 2) v[k + 1] = v[k] - 200;  // row 1: one entry e^-200 below another
    Arr x = make({3, k}, v);
    Arr lab = make({3}, {0, 0, 0});
    for (const char *op : {"SoftmaxOutput", "SoftmaxActivation"}) {
      std::vector<double> want(v.size());
      for (int64_t r = 0; r < 3; ++r) {
        double mx = -inf, z = 0;
        for (int64_t c = 0; c < k; ++c) mx = std::max(mx, double(float(v[r * k + c])));
        for (int64_t c = 0; c < k; ++c) z += std::exp(double(float(v[r * k + c])) - mx);
        for (int64_t c = 0; c < k; ++c) want[r * k + c] = std::exp(double(float(v[r * k + c])) - mx) / z;
      }
      Arr y = std::string(op) == "SoftmaxOutput" ? call(op, {&x, &lab}) : call(op, {&x});
      std::vector<double> got = read(y);
      expect_close(got, want, LOOM_DTYPE_FLOAT32, std::string(op) + " k=" + std::to_string(k));
      if (k > 1) {
        EXPECT_EQ(got[0], 0.0) << op << " k=" << k << ": a -inf entry";
      }
      for (int64_t r = 0; r < 3 && k > 1; ++r) {
        double sum = 0;
        for (int64_t c = 0; c < k; ++c) sum += got[r * k + c];
        EXPECT_NEAR(sum, 1.0, 1e-6) << op << " k=" << k << " row " << r;
      }
    }
  }
  Arr odd = make({3, 9}, {1, 2, nan, 4, 5, 6, 7, 8, 9,  //
                          1, 2, 3, inf, 5, 6, 7, 8, 9,  //
                          -inf, -inf, -inf, -inf, -inf, -inf, -inf, -inf, -inf});
  Arr lab = make({3}, {0, 0, 0});
  std::vector<double> got = read(call("SoftmaxOutput", {&odd, &lab}));
  for (int c = 0; c < 9; ++c) EXPECT_TRUE(std::isnan(got[c])) << "NaN row at " << c;
  for (int c = 0; c < 9; ++c) EXPECT_TRUE(std::isnan(got[9 + c])) << "+inf row at " << c;
  for (int c = 0; c < 9; ++c) EXPECT_TRUE(std::isnan(got[18 + c])) << "all -inf row at " << c;
}

COVERS("one_hot");
TEST(Ops, OneHotMatchesReference) {
  Arr idx = make({2, 2}, {0, 3, 2, 1}, LOOM_DTYPE_INT32);
  Arr o = call("one_hot", {&idx}, {{"depth", "4"}, {"on_value", "5"}, {"off_value", "-1"},
                                   {"dtype", "float64"}});
  EXPECT_EQ(shape_of(o), (std::vector<int64_t>{2, 2, 4}));
  EXPECT_EQ(dtype_of(o), LOOM_DTYPE_FLOAT64);
  std::vector<double> want(16, -1);
  int ids[] = {0, 3, 2, 1};
  for (int i = 0; i < 4; ++i) want[i * 4 + ids[i]] = 5;
  EXPECT_EQ(read(o), want);
}

COVERS("clip", "where");
TEST(Ops, ClipAndWhereMatchReference) {
  auto v = random_values(50, -3, 3, 61);
  Arr a = make({50}, v, LOOM_DTYPE_FLOAT64);
  auto got = read(call("clip", {&a}, {{"a_min", "-1"}, {"a_max", "0.5"}}));
  for (size_t i = 0; i < v.size(); ++i) EXPECT_EQ(got[i], std::min(0.5, std::max(-1.0, v[i])));
  std::vector<Arr> outs;
  EXPECT_EQ(invoke("clip", {&a}, {{"a_min", "1"}, {"a_max", "0"}}, &outs),
            LOOM_ERR_INVALID_ARGUMENT);

  Arr cond = make({2, 1}, {1, 0}, LOOM_DTYPE_UINT8);
  Arr x = make({2, 3}, {1, 2, 3, 4, 5, 6}), y = make({3}, {-1, -2, -3});
  EXPECT_EQ(read(call("where", {&cond, &x, &y})), (std::vector<double>{1, 2, 3, -1, -2, -3}));
  Arr yd = make({3}, {-1, -2, -3}, LOOM_DTYPE_FLOAT64);
  EXPECT_EQ(invoke("where", {&cond, &x, &yd}, {}, &outs), LOOM_ERR_DTYPE);
}

COVERS("zeros", "ones", "full", "arange");
TEST(Ops, CreationOps) {
  Arr z = call("zeros", {}, {{"shape", "(2,3)"}, {"dtype", "int32"}});
  EXPECT_EQ(dtype_of(z), LOOM_DTYPE_INT32);
  EXPECT_EQ(read(z), std::vector<double>(6, 0));
  EXPECT_EQ(read(call("ones", {}, {{"shape", "(4,)"}})), std::vector<double>(4, 1));
  EXPECT_EQ(read(call("full", {}, {{"shape", "(2,)"}, {"value", "2.5"}, {"dtype", "float64"}})),
            std::vector<double>(2, 2.5));
  EXPECT_EQ(read(call("arange", {}, {{"start", "5"}})), (std::vector<double>{0, 1, 2, 3, 4}));
  EXPECT_EQ(read(call("arange", {}, {{"start", "1"}, {"stop", "2"}, {"step", "0.25"}})),
            (std::vector<double>{1, 1.25, 1.5, 1.75}));
  EXPECT_EQ(read(call("arange", {}, {{"start", "3"}, {"stop", "0"}, {"step", "-1"},
                                     {"dtype", "int64"}})),
            (std::vector<double>{3, 2, 1}));
  std::vector<Arr> outs;
  EXPECT_EQ(invoke("full", {}, {{"shape", "(2,)"}}, &outs), LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(loom_last_error()).find("value"), std::string::npos);
  EXPECT_EQ(invoke("zeros", {}, {{"ctx", "gpu(0)"}}, &outs), LOOM_ERR_BACKEND_UNAVAILABLE);
}

COVERS("cast", "copy");
TEST(Ops, CastAndCopy) {
  Arr a = make({4}, {-1.7, 0.2, 2.9, 250}, LOOM_DTYPE_FLOAT64);
  Arr i = call("cast", {&a}, {{"dtype", "int32"}});
  EXPECT_EQ(dtype_of(i), LOOM_DTYPE_INT32);
  EXPECT_EQ(read(i), (std::vector<double>{-1, 0, 2, 250}));
  Arr u = call("cast", {&i}, {{"dtype", "uint8"}});
  EXPECT_EQ(read(u)[3], 250);
  Arr c = call("copy", {&a});
  EXPECT_EQ(read(c), read(a));
  // copy may cross devices when the output is given.
  int64_t shp = 4;
  loom_ndarray dst = nullptr;
  ASSERT_EQ(loom_ndarray_create(&dst, &shp, 1, LOOM_DTYPE_FLOAT64, LOOM_DEVICE_CPU, 1), LOOM_OK);
  Arr d(dst);
  ASSERT_EQ(loom_ndarray_copy_to(d.h, a.h), LOOM_OK) << loom_last_error();
  EXPECT_EQ(read(d), read(a));
}

COVERS("random_uniform", "random_normal");
TEST(Ops, RandomIsSeededAndWellDistributed) {
  ASSERT_EQ(loom_random_seed(42), LOOM_OK);
  Arr u1 = call("random_uniform", {}, {{"shape", "(100000,)"}, {"low", "-2"}, {"high", "3"}});
  Arr n1 = call("random_normal", {}, {{"shape", "(100001,)"}, {"loc", "1"}, {"scale", "2"},
                                      {"dtype", "float64"}});
  ASSERT_EQ(loom_random_seed(42), LOOM_OK);
  Arr u2 = call("random_uniform", {}, {{"shape", "(100000,)"}, {"low", "-2"}, {"high", "3"}});
  Arr n2 = call("random_normal", {}, {{"shape", "(100001,)"}, {"loc", "1"}, {"scale", "2"},
                                      {"dtype", "float64"}});
  auto a = read(u1), b = read(u2);
  EXPECT_EQ(a, b);
  EXPECT_EQ(read(n1), read(n2));
  double mean = 0, mn = 1e9, mx = -1e9;
  for (double x : a) {
    mean += x;
    mn = std::min(mn, x);
    mx = std::max(mx, x);
  }
  mean /= a.size();
  EXPECT_NEAR(mean, 0.5, 0.02);
  EXPECT_GE(mn, -2.0);
  EXPECT_LT(mx, 3.0);
  auto n = read(n1);
  double m = 0, var = 0;
  for (double x : n) m += x;
  m /= n.size();
  for (double x : n) var += (x - m) * (x - m);
  var /= n.size();
  EXPECT_NEAR(m, 1.0, 0.03);
  EXPECT_NEAR(std::sqrt(var), 2.0, 0.03);
  // A different seed gives different draws.
  ASSERT_EQ(loom_random_seed(43), LOOM_OK);
  Arr u3 = call("random_uniform", {}, {{"shape", "(100000,)"}, {"low", "-2"}, {"high", "3"}});
  EXPECT_NE(read(u3), a);
}

COVERS("sample_multinomial");
TEST(Ops, SampleMultinomialDrawsEachCategoryWithItsProbability) {
  const std::vector<double> probs = {0.1, 0.0, 0.2, 0.3, 0.4, 0.0};
  std::vector<double> rows;
  for (int r = 0; r < 2; ++r) rows.insert(rows.end(), probs.begin(), probs.end());
  for (int32_t dt : {LOOM_DTYPE_FLOAT32, LOOM_DTYPE_FLOAT64}) {
    Arr d = make({2, 6}, rows, dt);
    ASSERT_EQ(loom_random_seed(9), LOOM_OK);
    std::vector<Arr> outs;
    ASSERT_EQ(invoke("sample_multinomial", {&d}, {{"shape", "(20000,)"}, {"get_prob", "true"}}, &outs, 2), LOOM_OK)
        << loom_last_error();
    EXPECT_EQ(shape_of(outs[0]), (std::vector<int64_t>{2, 20000}));
    EXPECT_EQ(dtype_of(outs[0]), LOOM_DTYPE_INT32);
    auto idx = read(outs[0]), lp = read(outs[1]);
    std::vector<double> freq(6, 0);
    for (size_t i = 0; i < idx.size(); ++i) {
      ASSERT_GE(idx[i], 0);
      ASSERT_LT(idx[i], 6);
      freq[size_t(idx[i])] += 1.0 / double(idx.size());
      EXPECT_NEAR(lp[i], std::log(probs[size_t(idx[i])]), 1e-6);
    }
    for (size_t k = 0; k < 6; ++k) EXPECT_NEAR(freq[k], probs[k], 0.01) << "category " << k;
    EXPECT_EQ(freq[1], 0.0);
    EXPECT_EQ(freq[5], 0.0);  // a zero probability is never drawn
    ASSERT_EQ(loom_random_seed(9), LOOM_OK);
    std::vector<Arr> again;
    ASSERT_EQ(invoke("sample_multinomial", {&d}, {{"shape", "(20000,)"}, {"get_prob", "true"}}, &again, 2), LOOM_OK);
    EXPECT_EQ(read(again[0]), idx) << "seeded draws repeat";
  }
  // A 1-D distribution with no shape gives one draw, shape (1,); a certain category is always drawn.
  Arr one = make({3}, {0, 1, 0});
  Arr o = call("sample_multinomial", {&one}, {{"dtype", "float32"}});
  EXPECT_EQ(shape_of(o), (std::vector<int64_t>{1}));
  EXPECT_EQ(read(o), (std::vector<double>{1}));
  // Bad distributions name the row.
  for (auto &bad : std::vector<std::pair<std::vector<double>, std::string>>{
           {{0.5, 0.6}, "row 0 sums to 1.1"}, {{1.5, -0.5}, "probability -0.5 at category 1"},
           {{std::nan(""), 1}, "probability nan"}}) {
    Arr b = make({1, 2}, bad.first);
    std::vector<Arr> outs;
    loom_status st = invoke("sample_multinomial", {&b}, {}, &outs);
    if (st == LOOM_OK) st = loom_ndarray_wait_to_read(outs[0].h);
    EXPECT_NE(st, LOOM_OK);
    EXPECT_NE(std::string(loom_last_error()).find(bad.second), std::string::npos) << loom_last_error();
  }
}

COVERS("FullyConnected", "Activation", "SoftmaxOutput", "Flatten");
TEST(Ops, NeuralNetworkLayersMatchReference) {
  // FullyConnected: data (3,2,2) flattened to (3,4); weight (5,4); bias (5).
  auto x = random_values(12, -1, 1, 81), w = random_values(20, -1, 1, 82), b = random_values(5, -1, 1, 83);
  for (int32_t dt : kFloatTypes) {
    Arr X = make({3, 2, 2}, x, dt), W = make({5, 4}, w, dt), B = make({5}, b, dt);
    auto xr = as_dtype(x, dt), wr = as_dtype(w, dt), br = as_dtype(b, dt);
    Arr o = call("FullyConnected", {&X, &W, &B}, {{"num_hidden", "5"}});
    ASSERT_EQ(shape_of(o), (std::vector<int64_t>{3, 5}));
    std::vector<double> want(15);
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 5; ++j) {
        double s = br[j];
        for (int k = 0; k < 4; ++k) s += xr[i * 4 + k] * wr[j * 4 + k];
        want[i * 5 + j] = s;
      }
    expect_close(read(o), as_dtype(want, dt), dt, "FullyConnected");
    Arr nb = call("FullyConnected", {&X, &W}, {{"num_hidden", "5"}, {"no_bias", "true"}});
    for (int i = 0; i < 15; ++i) want[i] -= br[i % 5];
    expect_close(read(nb), as_dtype(want, dt), dt, "FullyConnected no_bias");
    std::vector<Arr> outs;
    EXPECT_EQ(invoke("FullyConnected", {&X, &B, &B}, {{"num_hidden", "5"}}, &outs), LOOM_ERR_SHAPE);
    EXPECT_NE(std::string(loom_last_error()).find("weight has shape (5,), expected (5,4)"),
              std::string::npos) << loom_last_error();
    EXPECT_EQ(invoke("FullyConnected", {&X, &W}, {{"num_hidden", "5"}}, &outs), LOOM_ERR_INVALID_ARGUMENT);

    // Activation, every act_type.
    auto v = random_values(10, -3, 3, 84);
    Arr A = make({2, 5}, v, dt);
    auto vr = as_dtype(v, dt);
    struct { const char *t; double (*f)(double); } acts[] = {
        {"relu", [](double z) { return z > 0 ? z : 0.0; }},
        {"sigmoid", [](double z) { return 1 / (1 + std::exp(-z)); }},
        {"tanh", [](double z) { return std::tanh(z); }},
        {"softrelu", [](double z) { return std::log(1 + std::exp(z)); }},
        {"softsign", [](double z) { return z / (1 + std::fabs(z)); }}};
    for (auto &a : acts) {
      std::vector<double> wa(10);
      for (int i = 0; i < 10; ++i) wa[i] = a.f(vr[i]);
      expect_close(read(call("Activation", {&A}, {{"act_type", a.t}})), as_dtype(wa, dt), dt, a.t);
    }
    EXPECT_EQ(invoke("Activation", {&A}, {{"act_type", "swish"}}, &outs), LOOM_ERR_INVALID_ARGUMENT);
    EXPECT_NE(std::string(loom_last_error()).find("relu, sigmoid, tanh, softrelu, softsign"),
              std::string::npos);

    // SoftmaxOutput forward is a row softmax; labels are checked for shape.
    Arr L = make({2}, {1, 4}, dt);
    auto sm = read(call("SoftmaxOutput", {&A, &L}));
    for (int r = 0; r < 2; ++r) {
      double mx = -1e9, z = 0;
      for (int c = 0; c < 5; ++c) mx = std::max(mx, vr[r * 5 + c]);
      for (int c = 0; c < 5; ++c) z += std::exp(vr[r * 5 + c] - mx);
      for (int c = 0; c < 5; ++c)
        EXPECT_NEAR(sm[r * 5 + c], std::exp(vr[r * 5 + c] - mx) / z, dt == LOOM_DTYPE_FLOAT32 ? 1e-6 : 1e-14);
    }
    Arr L3 = make({3}, {1, 2, 3}, dt);
    EXPECT_EQ(invoke("SoftmaxOutput", {&A, &L3}, {}, &outs), LOOM_ERR_SHAPE);
    EXPECT_NE(std::string(loom_last_error()).find("label has shape (3,), expected (2,)"),
              std::string::npos) << loom_last_error();

    // Flatten keeps the data, merging trailing axes.
    Arr F = call("Flatten", {&X});
    EXPECT_EQ(shape_of(F), (std::vector<int64_t>{3, 4}));
    EXPECT_EQ(read(F), read(X));
  }
}

COVERS("sgd_update", "sgd_mom_update", "adam_update");
TEST(Ops, OptimizerUpdatesMatchReference) {
  auto w = random_values(6, -1, 1, 91), g = random_values(6, -3, 3, 92), m = random_values(6, -1, 1, 93),
       v = random_values(6, 0, 1, 94);
  for (int32_t dt : kFloatTypes) {
    auto wr = as_dtype(w, dt), gr = as_dtype(g, dt), mr = as_dtype(m, dt), vr = as_dtype(v, dt);
    auto clipg = [](double x, double rs, double c) {
      x *= rs;
      return c >= 0 ? std::max(-c, std::min(c, x)) : x;
    };
    {
      Arr W = make({6}, w, dt), G = make({6}, g, dt);
      Arr o = call("sgd_update", {&W, &G}, {{"lr", "0.1"}, {"wd", "0.01"}, {"rescale_grad", "0.5"},
                                            {"clip_gradient", "1"}});
      std::vector<double> want(6);
      for (int i = 0; i < 6; ++i) want[i] = wr[i] - 0.1 * (clipg(gr[i], 0.5, 1) + 0.01 * wr[i]);
      expect_close(read(o), as_dtype(want, dt), dt, "sgd_update");
    }
    for (bool nesterov : {false, true}) {
      Arr W = make({6}, w, dt), G = make({6}, g, dt), M = make({6}, m, dt);
      loom_op op;
      loom_op_find(&op, "sgd_mom_update");
      loom_ndarray ins[3] = {W.h, G.h, M.h}, outs[2] = {W.h, M.h};  // in place
      const char *k[] = {"lr", "momentum", "wd", "nesterov"};
      const char *vals[] = {"0.1", "0.9", "0.001", nesterov ? "true" : "false"};
      ASSERT_EQ(loom_imperative_invoke(outs, 2, op, ins, 3, k, vals, 4), LOOM_OK) << loom_last_error();
      std::vector<double> ww(6), wm(6);
      for (int i = 0; i < 6; ++i) {
        double step = gr[i] + 0.001 * wr[i];
        wm[i] = 0.9 * mr[i] - 0.1 * step;
        ww[i] = nesterov ? wr[i] + 0.9 * wm[i] - 0.1 * step : wr[i] + wm[i];
      }
      expect_close(read(W), as_dtype(ww, dt), dt, "sgd_mom_update weight");
      expect_close(read(M), as_dtype(wm, dt), dt, "sgd_mom_update mom");
    }
    {
      Arr W = make({6}, w, dt), G = make({6}, g, dt), M = make({6}, m, dt), V = make({6}, v, dt);
      std::vector<Arr> outs;
      ASSERT_EQ(invoke("adam_update", {&W, &G, &M, &V}, {{"lr", "0.01"}, {"t", "3"}, {"wd", "0.1"}},
                       &outs, 3),
                LOOM_OK) << loom_last_error();
      double lr = 0.01 * std::sqrt(1 - std::pow(0.999, 3)) / (1 - std::pow(0.9, 3));
      std::vector<double> ww(6), wm(6), wv(6);
      for (int i = 0; i < 6; ++i) {
        double gi = gr[i] + 0.1 * wr[i];
        wm[i] = 0.9 * mr[i] + 0.1 * gi;
        wv[i] = 0.999 * vr[i] + 0.001 * gi * gi;
        ww[i] = wr[i] - lr * wm[i] / (std::sqrt(wv[i]) + 1e-8);
      }
      expect_close(read(outs[0]), as_dtype(ww, dt), dt, "adam weight");
      expect_close(read(outs[1]), as_dtype(wm, dt), dt, "adam mean");
      expect_close(read(outs[2]), as_dtype(wv, dt), dt, "adam var");
    }
  }
  Arr W = make({6}, w), G = make({5}, std::vector<double>(5, 0));
  std::vector<Arr> outs;
  EXPECT_EQ(invoke("sgd_update", {&W, &G}, {{"lr", "0.1"}}, &outs), LOOM_ERR_SHAPE);
  EXPECT_NE(std::string(loom_last_error()).find("grad) has shape (5,)"), std::string::npos) << loom_last_error();
  EXPECT_EQ(invoke("sgd_update", {&W, &W}, {}, &outs), LOOM_ERR_INVALID_ARGUMENT);
}

// Invokes `op` writing into `outs` (in place when they are inputs).
loom_status invoke_into(const std::string &op, const std::vector<const Arr *> &ins,
                        const std::vector<const Arr *> &outs, const Params &params) {
  loom_op h = nullptr;
  loom_status s = loom_op_find(&h, op.c_str());
  if (s != LOOM_OK) return s;
  std::vector<loom_ndarray> in, out;
  for (auto *a : ins) in.push_back(a->h);
  for (auto *a : outs) out.push_back(a->h);
  std::vector<const char *> k, v;
  for (auto &kv : params) k.push_back(kv.first.c_str()), v.push_back(kv.second.c_str());
  return loom_imperative_invoke(out.data(), static_cast<int32_t>(out.size()), h, in.data(),
                                static_cast<int32_t>(in.size()), k.data(), v.data(), static_cast<int32_t>(k.size()));
}

std::string num_text(double v) {
  std::ostringstream o;
  o.precision(17);
  o << v;
  return o.str();
}

std::string tuple_text(const std::vector<double> &v) {
  std::string t = "(";
  for (size_t i = 0; i < v.size(); ++i) t += (i ? "," : "") + num_text(v[i]);
  return t + ")";
}

// The aggregated updates against a float64 loop written from MXNet's
// MultiSGDKernel (mom = momentum*mom - lr*wd*w - lr*clip(rescale*g); w += mom,
// with mom = 0 and not kept without momentum), and bit for bit against one
// sgd_update / sgd_mom_update per weight. The sizes put weights of 0, 1 and
// 70001 elements together, so the ranges the kernel threads take cross weights.
COVERS("multi_sgd_update", "multi_sgd_mom_update");
TEST(Ops, MultiSgdUpdatesMatchMXNetsKernelAndPerWeightSteps) {
  const std::vector<int64_t> sizes = {70001, 3, 0, 1, 40000, 17};
  const int64_t n = static_cast<int64_t>(sizes.size());
  const std::vector<double> lrs = {0.1, 0.05, 0.2, 0.3, 0.01, 0.7}, wds = {0.01, 0, 0.1, 0.001, 0.5, 0};
  uint32_t seed = 300;
  for (int32_t dt : kFloatTypes)
    for (double clip : {-1.0, 0.5})
      for (double mu : {0.0, 0.9}) {
        const bool mom = mu != 0;
        const double rs = 0.25;
        std::vector<std::vector<double>> w, g, m;
        for (int64_t s : sizes) {
          w.push_back(as_dtype(random_values(s, -1, 1, seed++), dt));
          g.push_back(as_dtype(random_values(s, -5, 5, seed++), dt));
          m.push_back(as_dtype(random_values(s, -1, 1, seed++), dt));
        }
        std::vector<Arr> W, G, M, W1, M1;
        for (int64_t i = 0; i < n; ++i) {
          W.push_back(make({sizes[i]}, w[i], dt));
          G.push_back(make({sizes[i]}, g[i], dt));
          M.push_back(make({sizes[i]}, m[i], dt));
          W1.push_back(make({sizes[i]}, w[i], dt));
          M1.push_back(make({sizes[i]}, m[i], dt));
        }
        Params common = {{"rescale_grad", "0.25"}, {"clip_gradient", clip < 0 ? "-1" : "0.5"}};
        Params multi = common;
        multi.insert(multi.end(), {{"lrs", tuple_text(lrs)}, {"wds", tuple_text(wds)},
                                   {"num_weights", std::to_string(n)}});
        if (mom) multi.push_back({"momentum", "0.9"});
        std::vector<const Arr *> ins, outs;
        for (int64_t i = 0; i < n; ++i) {
          ins.push_back(&W[i]);
          ins.push_back(&G[i]);
          outs.push_back(&W[i]);
          if (mom) {
            ins.push_back(&M[i]);
            outs.push_back(&M[i]);
          }
        }
        const std::string op = mom ? "multi_sgd_mom_update" : "multi_sgd_update";
        ASSERT_EQ(invoke_into(op, ins, outs, multi), LOOM_OK) << loom_last_error();
        for (int64_t i = 0; i < n; ++i) {
          const std::string what = op + " weight " + std::to_string(i) + (dt == LOOM_DTYPE_FLOAT32 ? " f32" : " f64") +
                                   (clip < 0 ? "" : " clipped");
          // The per-weight op, in place as optimizers call it.
          Params one = common;
          one.insert(one.end(), {{"lr", num_text(lrs[i])}, {"wd", num_text(wds[i])}});
          if (mom) {
            one.push_back({"momentum", "0.9"});
            ASSERT_EQ(invoke_into("sgd_mom_update", {&W1[i], &G[i], &M1[i]}, {&W1[i], &M1[i]}, one), LOOM_OK)
                << loom_last_error();
          } else {
            ASSERT_EQ(invoke_into("sgd_update", {&W1[i], &G[i]}, {&W1[i]}, one), LOOM_OK) << loom_last_error();
          }
          EXPECT_EQ(read(W[i]), read(W1[i])) << what << ": not the per-weight step's bits";
          if (mom) {
            EXPECT_EQ(read(M[i]), read(M1[i])) << what << ": momentum not the per-weight step's bits";
          }
          std::vector<double> ww(sizes[i]), wm(sizes[i]);
          for (int64_t k = 0; k < sizes[i]; ++k) {
            double gk = rs * g[i][k];
            if (clip >= 0) gk = std::max(-clip, std::min(clip, gk));
            double mk = (mom ? mu * m[i][k] : 0.0) - lrs[i] * wds[i] * w[i][k] - lrs[i] * gk;
            wm[k] = mk;
            ww[k] = w[i][k] + mk;
          }
          expect_close(read(W[i]), as_dtype(ww, dt), dt, what);
          if (mom) {
            expect_close(read(M[i]), as_dtype(wm, dt), dt, what + " mom");
          } else {
            EXPECT_EQ(read(M[i]), m[i]) << what << ": without momentum no state is written";
          }
        }
      }
}

TEST(Ops, MultiSgdUpdatesRejectInconsistentGroups) {
  Arr W0 = make({4}, {1, 2, 3, 4}), G0 = make({4}, {1, 1, 1, 1}), W1 = make({2, 3}, std::vector<double>(6, 1)),
      G1 = make({3, 2}, std::vector<double>(6, 1)), G1ok = make({2, 3}, std::vector<double>(6, 1));
  auto expect_error = [](loom_status got, loom_status want, const std::vector<std::string> &parts) {
    EXPECT_EQ(got, want) << loom_last_error();
    const std::string msg = loom_last_error();
    for (const auto &p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  };
  const Params two = {{"lrs", "(0.1,0.2)"}, {"wds", "(0,0)"}, {"num_weights", "2"}};
  // A gradient whose shape is not its weight's, named with both shapes.
  expect_error(invoke_into("multi_sgd_update", {&W0, &G0, &W1, &G1}, {&W0, &W1}, two), LOOM_ERR_SHAPE,
               {"multi_sgd_update", "grad 1 (input 3) has shape (3,2)", "weight 1 has shape (2,3)"});
  // Inputs that do not come in whole groups.
  expect_error(invoke_into("multi_sgd_update", {&W0, &G0, &W1}, {&W0, &W1}, two), LOOM_ERR_INVALID_ARGUMENT,
               {"multi_sgd_update", "num_weights=2 needs 4 inputs", "got 3"});
  expect_error(invoke_into("multi_sgd_mom_update", {&W0, &G0, &W1, &G1ok}, {&W0, &W0, &W1, &W1}, two),
               LOOM_ERR_INVALID_ARGUMENT, {"multi_sgd_mom_update", "needs 6 inputs (weight, grad, mom"});
  // Learning rates or weight decays that are not one per weight.
  expect_error(invoke_into("multi_sgd_update", {&W0, &G0, &W1, &G1ok}, {&W0, &W1},
                           {{"lrs", "(0.1,)"}, {"wds", "(0,0)"}, {"num_weights", "2"}}),
               LOOM_ERR_INVALID_ARGUMENT, {"lrs has 1 values but num_weights=2"});
  expect_error(invoke_into("multi_sgd_update", {&W0, &G0, &W1, &G1ok}, {&W0, &W1},
                           {{"lrs", "(0.1,0.2)"}, {"wds", "(0,0,0)"}, {"num_weights", "2"}}),
               LOOM_ERR_INVALID_ARGUMENT, {"wds has 3 values but num_weights=2"});
  // Malformed tuples of numbers, and counts out of range.
  expect_error(invoke_into("multi_sgd_update", {&W0, &G0}, {&W0}, {{"lrs", "(0.1,x)"}, {"wds", "(0,)"}}),
               LOOM_ERR_INVALID_ARGUMENT, {"parameter 'lrs' expects a tuple of numbers", "(0.1,x)"});
  for (const char *bad : {"0", "61"})
    expect_error(invoke_into("multi_sgd_update", {&W0, &G0}, {&W0}, {{"lrs", "(0.1,)"}, {"wds", "(0,)"}, {"num_weights", bad}}),
                 LOOM_ERR_INVALID_ARGUMENT, {std::string("num_weights=") + bad + " must be in [1, 60]"});
  // Integer weights, and a missing output.
  Arr I0 = make({4}, {1, 2, 3, 4}, LOOM_DTYPE_INT32), I1 = make({4}, {1, 2, 3, 4}, LOOM_DTYPE_INT32);
  EXPECT_EQ(invoke_into("multi_sgd_update", {&I0, &I1}, {&I0}, {{"lrs", "(0.1,)"}, {"wds", "(0,)"}}), LOOM_ERR_DTYPE)
      << loom_last_error();
  EXPECT_EQ(invoke_into("multi_sgd_update", {&W0, &G0, &W1, &G1ok}, {&W0}, two), LOOM_ERR_INVALID_ARGUMENT);
  // One array given as two outputs: the same weight twice, or a weight as its own state.
  expect_error(invoke_into("multi_sgd_update", {&W0, &G0, &W0, &G0}, {&W0, &W0}, two), LOOM_ERR_INVALID_ARGUMENT,
               {"multi_sgd_update: outputs 0 (weight) and 1 (weight) are the same array"});
  expect_error(invoke_into("multi_sgd_mom_update", {&W0, &G0, &G0, &W1, &G1ok, &W1}, {&W0, &G0, &W1, &W1},
                           {{"lrs", "(0.1,0.2)"}, {"wds", "(0,0)"}, {"num_weights", "2"}}),
               LOOM_ERR_INVALID_ARGUMENT, {"outputs 2 (weight) and 3 (mom) are the same array"});
  expect_error(invoke_into("sgd_mom_update", {&W0, &G0, &W0}, {&W0, &W0}, {{"lr", "0.1"}}), LOOM_ERR_INVALID_ARGUMENT,
               {"sgd_mom_update: outputs 0 (weight) and 1 (mom) are the same array"});
  // Nothing was written by the refused calls.
  EXPECT_EQ(read(W0), (std::vector<double>{1, 2, 3, 4}));
  EXPECT_EQ(read(W1), std::vector<double>(6, 1));
}

COVERS("adagrad_update", "rmsprop_update", "adadelta_update");
TEST(Ops, AdaptiveOptimizerUpdatesMatchReference) {
  auto w = random_values(7, -1, 1, 191), g = random_values(7, -3, 3, 192),
       s1 = random_values(7, 0, 1, 193), s2 = random_values(7, 0, 1, 194);
  auto clipg = [](double x, double rs, double c) {
    x *= rs;
    return c >= 0 ? std::max(-c, std::min(c, x)) : x;
  };
  for (int32_t dt : kFloatTypes) {
    auto wr = as_dtype(w, dt), gr = as_dtype(g, dt), ar = as_dtype(s1, dt), br = as_dtype(s2, dt);
    {
      Arr W = make({7}, w, dt), G = make({7}, g, dt), H = make({7}, s1, dt);
      std::vector<Arr> o;
      ASSERT_EQ(invoke("adagrad_update", {&W, &G, &H},
                       {{"lr", "0.1"}, {"wd", "0.01"}, {"rescale_grad", "0.5"}, {"clip_gradient", "1"}},
                       &o, 2), LOOM_OK) << loom_last_error();
      std::vector<double> ww(7), wh(7);
      for (int i = 0; i < 7; ++i) {
        double gi = clipg(gr[i], 0.5, 1);
        wh[i] = ar[i] + gi * gi;
        ww[i] = wr[i] - 0.1 * (gi / std::sqrt(wh[i] + 1e-7) + 0.01 * wr[i]);
      }
      expect_close(read(o[0]), as_dtype(ww, dt), dt, "adagrad weight");
      expect_close(read(o[1]), as_dtype(wh, dt), dt, "adagrad history");
    }
    for (double cw : {-1.0, 0.5}) {
      Arr W = make({7}, w, dt), G = make({7}, g, dt), N = make({7}, s1, dt);
      std::vector<Arr> o;
      ASSERT_EQ(invoke("rmsprop_update", {&W, &G, &N},
                       {{"lr", "0.01"}, {"wd", "0.1"}, {"gamma1", "0.9"}, {"clip_weights", std::to_string(cw)}},
                       &o, 2), LOOM_OK) << loom_last_error();
      std::vector<double> ww(7), wn(7);
      for (int i = 0; i < 7; ++i) {
        double gi = gr[i] + 0.1 * wr[i];
        wn[i] = 0.1 * gi * gi + 0.9 * ar[i];
        ww[i] = wr[i] - 0.01 * gi / std::sqrt(wn[i] + 1e-8);
        if (cw > 0) ww[i] = std::max(-cw, std::min(cw, ww[i]));
      }
      expect_close(read(o[0]), as_dtype(ww, dt), dt, "rmsprop weight");
      expect_close(read(o[1]), as_dtype(wn, dt), dt, "rmsprop n");
    }
    {
      Arr W = make({7}, w, dt), G = make({7}, g, dt), AG = make({7}, s1, dt), AD = make({7}, s2, dt);
      std::vector<Arr> o;
      ASSERT_EQ(invoke("adadelta_update", {&W, &G, &AG, &AD}, {{"rho", "0.8"}, {"wd", "0.01"}}, &o, 3),
                LOOM_OK) << loom_last_error();
      std::vector<double> ww(7), wg(7), wd(7);
      for (int i = 0; i < 7; ++i) {
        wg[i] = 0.8 * ar[i] + 0.2 * gr[i] * gr[i];
        double delta = std::sqrt(br[i] + 1e-5) / std::sqrt(wg[i] + 1e-5) * gr[i];
        wd[i] = 0.8 * br[i] + 0.2 * delta * delta;
        ww[i] = wr[i] - delta - 0.01 * wr[i];
      }
      expect_close(read(o[0]), as_dtype(ww, dt), dt, "adadelta weight");
      expect_close(read(o[1]), as_dtype(wg, dt), dt, "adadelta acc_g");
      expect_close(read(o[2]), as_dtype(wd, dt), dt, "adadelta acc_delta");
    }
  }
  Arr W = make({7}, w), G = make({7}, g), H = make({6}, std::vector<double>(6, 0.5));
  std::vector<Arr> outs;
  EXPECT_EQ(invoke("adagrad_update", {&W, &G, &H}, {{"lr", "0.1"}}, &outs, 2), LOOM_ERR_SHAPE);
  EXPECT_NE(std::string(loom_last_error()).find("(history) has shape (6,)"), std::string::npos)
      << loom_last_error();
  EXPECT_EQ(invoke("rmsprop_update", {&W, &G, &G}, {{"lr", "0.1"}, {"gamma", "1"}}, &outs, 2),
            LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(loom_last_error()).find("gamma"), std::string::npos) << loom_last_error();
}

COVERS("lr_schedule");
TEST(Ops, LearningRateSchedulesMatchReference) {
  auto lr = [](const Params &p) { return read(call("lr_schedule", {}, p)).at(0); };
  for (int t : {0, 1, 9, 10, 11, 35, 1000}) {
    std::string ts = std::to_string(t);
    EXPECT_EQ(lr({{"base_lr", "0.5"}, {"num_update", ts}}), 0.5);
    EXPECT_DOUBLE_EQ(lr({{"schedule", "factor"}, {"base_lr", "0.5"}, {"num_update", ts}, {"step", "10"},
                         {"factor", "0.1"}, {"stop_factor_lr", "1e-4"}}),
                     std::max(0.5 * std::pow(0.1, t / 10), 1e-4));
    double mf = 0.5;
    for (int s : {10, 30}) mf *= t >= s ? 0.5 : 1.0;
    EXPECT_DOUBLE_EQ(lr({{"schedule", "multifactor"}, {"base_lr", "0.5"}, {"num_update", ts},
                         {"steps", "(10, 30)"}, {"factor", "0.5"}}), mf);
    EXPECT_DOUBLE_EQ(lr({{"schedule", "inv"}, {"base_lr", "0.01"}, {"num_update", ts}, {"gamma", "1e-4"},
                         {"power", "0.75"}}),
                     0.01 * std::pow(1 + 1e-4 * t, -0.75));
    double cos_want = t >= 100 ? 0.001 : 0.001 + (0.1 - 0.001) * (1 + std::cos(M_PI * t / 100.0)) / 2;
    EXPECT_NEAR(lr({{"schedule", "cosine"}, {"base_lr", "0.1"}, {"num_update", ts}, {"max_update", "100"},
                    {"final_lr", "0.001"}}), cos_want, 1e-15);
  }
  std::vector<Arr> outs;
  EXPECT_EQ(invoke("lr_schedule", {}, {{"schedule", "step"}, {"base_lr", "1"}, {"num_update", "0"}}, &outs),
            LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(loom_last_error()).find("multifactor"), std::string::npos) << loom_last_error();
  EXPECT_EQ(invoke("lr_schedule", {}, {{"schedule", "multifactor"}, {"base_lr", "1"}, {"num_update", "0"},
                                       {"steps", "(30, 10)"}}, &outs), LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(loom_last_error()).find("increasing, got (30,10)"), std::string::npos) << loom_last_error();
  EXPECT_EQ(invoke("lr_schedule", {}, {{"schedule", "factor"}, {"base_lr", "1"}, {"num_update", "0"},
                                       {"step", "0"}}, &outs), LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(invoke("lr_schedule", {}, {{"base_lr", "1"}}, &outs), LOOM_ERR_INVALID_ARGUMENT);
}

COVERS("cross_entropy_count", "mse_count", "mae_count", "f1_count");
TEST(Ops, MetricsMatchReference) {
  const int R = 40, K = 6;
  auto pv = random_values(R * K, 0.01, 1, 301);
  std::vector<double> lv(R);
  for (int i = 0; i < R; ++i) lv[i] = (i * 7) % K;
  for (int i = 0; i < 5; ++i) pv[i * K + 2] = pv[i * K + 4];  // ties
  pv = as_dtype(pv, LOOM_DTYPE_FLOAT32);
  Arr P = make({R, K}, pv), L = make({R}, lv, LOOM_DTYPE_INT32);
  for (int k : {1, 2, 3, 6}) {
    double correct = 0;
    for (int i = 0; i < R; ++i) {  // sort classes by (score desc, index asc)
      std::vector<int> order(K);
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(),
                       [&](int a, int b) { return pv[i * K + a] > pv[i * K + b]; });
      for (int j = 0; j < k; ++j) correct += order[j] == lv[i];
    }
    EXPECT_EQ(read(call("accuracy_count", {&P, &L}, {{"top_k", std::to_string(k)}})),
              (std::vector<double>{correct, double(R)})) << "top_k=" << k;
  }
  double ce = 0;
  for (int i = 0; i < R; ++i) ce -= std::log(pv[i * K + int(lv[i])] + 1e-12);
  auto got = read(call("cross_entropy_count", {&P, &L}));
  EXPECT_NEAR(got[0], ce, 1e-9);
  EXPECT_EQ(got[1], R);
  // ignore_label leaves its rows out of both the sum and the count (padding in a language model).
  double ce_kept = 0, kept = 0;
  for (int i = 0; i < R; ++i)
    if (int(lv[i]) != 3) ce_kept -= std::log(pv[i * K + int(lv[i])] + 1e-12), kept += 1;
  auto ign = read(call("cross_entropy_count", {&P, &L}, {{"ignore_label", "3"}}));
  EXPECT_NEAR(ign[0], ce_kept, 1e-9);
  EXPECT_EQ(ign[1], kept);
  EXPECT_LT(kept, R);
  std::vector<double> padded = lv;
  padded[0] = -1;  // an ignored label outside the classes is fine; others are not
  Arr LP = make({R}, padded, LOOM_DTYPE_FLOAT32);
  EXPECT_EQ(read(call("cross_entropy_count", {&P, &LP}, {{"ignore_label", "-1"}}))[1], R - 1);

  auto yv = random_values(R * 3, -2, 2, 302), tv = random_values(R * 3, -2, 2, 303);
  Arr Y = make({R, 3}, yv, LOOM_DTYPE_FLOAT32), T = make({R * 3}, tv);
  auto yr = as_dtype(yv, LOOM_DTYPE_FLOAT32);
  tv = as_dtype(tv, LOOM_DTYPE_FLOAT32);
  double se = 0, ae = 0;
  for (int i = 0; i < R * 3; ++i) {
    se += (tv[i] - yr[i]) * (tv[i] - yr[i]);
    ae += std::fabs(tv[i] - yr[i]);
  }
  got = read(call("mse_count", {&Y, &T}));
  EXPECT_NEAR(got[0], se, 1e-9);
  EXPECT_EQ(got[1], R * 3);
  got = read(call("mae_count", {&Y, &T}));
  EXPECT_NEAR(got[0], ae, 1e-9);

  // F1: from (rows, 2) scores and from one probability per row.
  auto sv = random_values(R * 2, 0, 1, 304);
  std::vector<double> bl(R), prob(R);
  for (int i = 0; i < R; ++i) {
    bl[i] = (i * 5) % 3 == 0;
    prob[i] = sv[i * 2];
  }
  double tp = 0, fp = 0, fn = 0, tp2 = 0, fp2 = 0, fn2 = 0;
  for (int i = 0; i < R; ++i) {
    bool p1 = sv[i * 2 + 1] > sv[i * 2], p2 = prob[i] >= 0.5, a = bl[i] == 1;
    tp += p1 && a, fp += p1 && !a, fn += !p1 && a;
    tp2 += p2 && a, fp2 += p2 && !a, fn2 += !p2 && a;
  }
  Arr S = make({R, 2}, sv), BL = make({R}, bl), PR = make({R}, prob);
  EXPECT_EQ(read(call("f1_count", {&S, &BL})), (std::vector<double>{2 * tp, 2 * tp + fp + fn}));
  EXPECT_EQ(read(call("f1_count", {&PR, &BL})), (std::vector<double>{2 * tp2, 2 * tp2 + fp2 + fn2}));
  ASSERT_GT(tp, 0);
  ASSERT_GT(fp + fn, 0);

  std::vector<Arr> outs;
  Arr L5 = make({5}, {0, 1, 2, 3, 4});
  EXPECT_EQ(invoke("cross_entropy_count", {&P, &L5}, {}, &outs), LOOM_ERR_SHAPE);
  EXPECT_EQ(invoke("mse_count", {&Y, &L5}, {}, &outs), LOOM_ERR_SHAPE);
  EXPECT_NE(std::string(loom_last_error()).find("label has shape (5,) but pred has shape (40,3)"),
            std::string::npos) << loom_last_error();
  EXPECT_EQ(invoke("f1_count", {&P, &L}, {}, &outs), LOOM_ERR_SHAPE);
  EXPECT_EQ(invoke("accuracy_count", {&P, &L}, {{"top_k", "0"}}, &outs), LOOM_ERR_INVALID_ARGUMENT);
  std::vector<double> badl = lv;
  badl[3] = K;
  Arr LB = make({R}, badl);
  ASSERT_EQ(invoke("cross_entropy_count", {&P, &LB}, {}, &outs), LOOM_OK);
  EXPECT_EQ(loom_ndarray_wait_to_read(outs.back().h), LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(loom_last_error()).find("label 6.000000 in row 3 is not a class index in [0, 6)"),
            std::string::npos) << loom_last_error();
  loom_wait_all();
}

COVERS("init_xavier", "random_permutation", "take", "accuracy_count");
TEST(Ops, InitializersPermutationsGatherAndMetrics) {
  loom_random_seed(5);
  Arr x = call("init_xavier", {}, {{"shape", "(300,200)"}});
  auto xv = read(x);
  double bound = std::sqrt(3.0 / 250.0), mx = 0, mean = 0;
  for (double v : xv) {
    mx = std::max(mx, std::fabs(v));
    mean += v;
  }
  EXPECT_LE(mx, bound);
  EXPECT_GT(mx, 0.99 * bound);
  EXPECT_NEAR(mean / xv.size(), 0.0, 0.002);
  Arr xg = call("init_xavier", {}, {{"shape", "(100,50,3,3)"}, {"rnd_type", "gaussian"},
                                    {"factor_type", "in"}, {"magnitude", "2"}, {"dtype", "float64"}});
  auto gv = read(xg);
  double var = 0;
  for (double v : gv) var += v * v;
  EXPECT_NEAR(std::sqrt(var / gv.size()), std::sqrt(2.0 / (50 * 9)), 0.003);
  std::vector<Arr> outs;
  EXPECT_EQ(invoke("init_xavier", {}, {{"shape", "(5,)"}}, &outs), LOOM_ERR_SHAPE);

  loom_random_seed(9);
  auto p1 = read(call("random_permutation", {}, {{"n", "1000"}}));
  loom_random_seed(9);
  auto p2 = read(call("random_permutation", {}, {{"n", "1000"}}));
  EXPECT_EQ(p1, p2);
  auto sorted = p1;
  std::sort(sorted.begin(), sorted.end());
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(sorted[i], i);
  EXPECT_NE(p1, sorted);

  Arr data = make({4, 2}, {0, 1, 10, 11, 20, 21, 30, 31});
  Arr idx = make({3}, {3, 0, 3}, LOOM_DTYPE_INT64);
  Arr t = call("take", {&data, &idx});
  EXPECT_EQ(shape_of(t), (std::vector<int64_t>{3, 2}));
  EXPECT_EQ(read(t), (std::vector<double>{30, 31, 0, 1, 30, 31}));
  // Out-of-range indices follow MXNet's mode: clip (the default), wrap, raise.
  Arr badidx = make({3}, {4, -1, 6}, LOOM_DTYPE_INT64);
  EXPECT_EQ(read(call("take", {&data, &badidx})), (std::vector<double>{30, 31, 0, 1, 30, 31}));
  EXPECT_EQ(read(call("take", {&data, &badidx}, {{"mode", "wrap"}})),
            (std::vector<double>{0, 1, 30, 31, 20, 21}));
  ASSERT_EQ(invoke("take", {&data, &badidx}, {{"mode", "raise"}}, &outs), LOOM_OK);
  EXPECT_EQ(loom_ndarray_wait_to_read(outs.back().h), LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(loom_last_error()).find("take: index 4"), std::string::npos);
  loom_wait_all();
  // axis=1 gathers columns: out shape data.shape[:1] + indices.shape + data.shape[2:].
  Arr cols = make({2}, {1, 1}, LOOM_DTYPE_INT64);
  Arr tc = call("take", {&data, &cols}, {{"axis", "1"}});
  EXPECT_EQ(shape_of(tc), (std::vector<int64_t>{4, 2}));
  EXPECT_EQ(read(tc), (std::vector<double>{1, 1, 11, 11, 21, 21, 31, 31}));

  Arr pred = make({4, 3}, {0.1, 0.7, 0.2, 0.9, 0.05, 0.05, 0.2, 0.3, 0.5, 0.3, 0.3, 0.4});
  Arr lab = make({4}, {1, 0, 0, 2});
  EXPECT_EQ(read(call("accuracy_count", {&pred, &lab})), (std::vector<double>{3, 4}));
  // NaN and huge labels are never correct (and never cast before the range check).
  Arr oddlab = make({4}, {std::nan(""), 1e300, -1e300, 2});
  EXPECT_EQ(read(call("accuracy_count", {&pred, &oddlab})), (std::vector<double>{1, 4}));  // only row 3 counts
  std::vector<Arr> ceo;
  ASSERT_EQ(invoke("cross_entropy_count", {&pred, &oddlab}, {}, &ceo), LOOM_OK);
  EXPECT_EQ(loom_ndarray_wait_to_read(ceo[0].h), LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(loom_last_error()).find("is not a class index"), std::string::npos);
  loom_wait_all();
  Arr lab5 = make({5}, {1, 0, 0, 2, 1});
  EXPECT_EQ(invoke("accuracy_count", {&pred, &lab5}, {}, &outs), LOOM_ERR_SHAPE);
}

// pick against a direct float64 loop over (leading, axis, trailing), for each axis,
// keepdims, both index ranks, both modes, out-of-range and negative indices and
// integer and float index dtypes (MXNet's PickOpForward).
COVERS("pick");
TEST(Ops, PickMatchesTheDefinition) {
  std::vector<int64_t> shape = {3, 4, 5};
  std::vector<double> x(60);
  for (int i = 0; i < 60; ++i) x[i] = 0.5 * i - 7;
  Arr data = make(shape, x, LOOM_DTYPE_FLOAT64);
  for (int axis : {0, 1, 2, -1, -3})
    for (bool keep : {false, true})
      for (bool same_rank : {false, true})
        for (std::string mode : {"clip", "wrap"})
          for (int32_t idt : {LOOM_DTYPE_INT32, LOOM_DTYPE_FLOAT32}) {
            int ax = axis < 0 ? axis + 3 : axis;
            int64_t lead = 1, M = shape[ax], trail = 1;
            for (int i = 0; i < ax; ++i) lead *= shape[i];
            for (int i = ax + 1; i < 3; ++i) trail *= shape[i];
            std::vector<int64_t> ishape;
            for (int i = 0; i < 3; ++i)
              if (i != ax) ishape.push_back(shape[i]);
              else if (same_rank) ishape.push_back(1);
            std::vector<double> idx(lead * trail);
            for (size_t i = 0; i < idx.size(); ++i) idx[i] = double(int64_t(i * 7 % 11) - 3);  // -3..7
            Arr index = make(ishape, idx, idt);
            Arr y = call("pick", {&data, &index},
                         {{"axis", std::to_string(axis)}, {"keepdims", keep ? "true" : "false"}, {"mode", mode}});
            std::vector<int64_t> oshape;
            for (int i = 0; i < 3; ++i)
              if (i != ax) oshape.push_back(shape[i]);
              else if (keep) oshape.push_back(1);
            EXPECT_EQ(shape_of(y), oshape);
            std::vector<double> want(lead * trail);
            for (int64_t a = 0; a < lead; ++a)
              for (int64_t c = 0; c < trail; ++c) {
                int64_t j = static_cast<int64_t>(idx[a * trail + c]);
                if (mode == "clip") j = std::min(std::max<int64_t>(j, 0), M - 1);
                else j = ((j % M) + M) % M;
                want[a * trail + c] = x[(a * M + j) * trail + c];
              }
            EXPECT_EQ(read(y), want) << "axis " << axis << " keepdims " << keep << " mode " << mode;
          }
  // MXNet's doc examples: along axis 0 and 1, wrap with negative indices, keepdims.
  Arr m = make({3, 2}, {1, 2, 3, 4, 5, 6});
  Arr i0 = make({2}, {0, 1});
  EXPECT_EQ(read(call("pick", {&m, &i0}, {{"axis", "0"}})), (std::vector<double>{1, 4}));
  Arr i1 = make({3}, {0, 1, 0});
  EXPECT_EQ(read(call("pick", {&m, &i1}, {{"axis", "1"}})), (std::vector<double>{1, 4, 5}));
  Arr iw = make({3}, {2, -1, -2});
  EXPECT_EQ(read(call("pick", {&m, &iw}, {{"axis", "1"}, {"mode", "wrap"}})), (std::vector<double>{1, 4, 5}));
  Arr ik = make({3, 1}, {1, 0, 2});
  Arr yk = call("pick", {&m, &ik}, {{"axis", "1"}, {"keepdims", "true"}});
  EXPECT_EQ(shape_of(yk), (std::vector<int64_t>{3, 1}));
  EXPECT_EQ(read(yk), (std::vector<double>{2, 3, 6}));
  // 1-D data gives (1,), as MXNet's ReduceAxisShapeImpl does.
  Arr v = make({4}, {9, 8, 7, 6});
  Arr one = make({1}, {2});
  Arr yv = call("pick", {&v, &one});
  EXPECT_EQ(shape_of(yv), (std::vector<int64_t>{1}));
  EXPECT_EQ(read(yv), (std::vector<double>{7}));

  // Bad input: an index of the wrong shape names both shapes; a bad axis, an unknown
  // mode (MXNet's pick has no raise) and a NaN index are refused.
  std::vector<Arr> outs;
  Arr bad = make({4}, {0, 1, 0, 1});
  EXPECT_EQ(invoke("pick", {&m, &bad}, {{"axis", "1"}}, &outs), LOOM_ERR_SHAPE);
  EXPECT_NE(std::string(loom_last_error()).find("pick: index (4,) should be (3,) for data (3,2) picked along axis 1"), std::string::npos)
      << loom_last_error();
  EXPECT_EQ(invoke("pick", {&m, &i1}, {{"axis", "2"}}, &outs), LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(invoke("pick", {&m, &i1}, {{"axis", "1"}, {"mode", "raise"}}, &outs), LOOM_ERR_INVALID_ARGUMENT);
  Arr nan = make({3}, {0, std::nan(""), 1});
  ASSERT_EQ(invoke("pick", {&m, &nan}, {{"axis", "1"}}, &outs), LOOM_OK);
  EXPECT_EQ(loom_ndarray_wait_to_read(outs.back().h), LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(loom_last_error()).find("pick: index nan at position 1"), std::string::npos)
      << loom_last_error();
  loom_wait_all();
}

// Direct convolution in float64 with the same padding on both axes (testutil's naive_conv2d).
std::vector<double> naive_conv(const std::vector<double> &x, const std::vector<double> &w,
                               const std::vector<double> &b, int64_t N, int64_t C, int64_t H,
                               int64_t W, int64_t F, int64_t KH, int64_t KW, int64_t S, int64_t P,
                               int64_t D, int64_t G, int64_t *OH, int64_t *OW) {
  return naive_conv2d(x, w, b, N, C, H, W, F, KH, KW, S, P, P, D, G, OH, OW);
}

// Transposed convolution by scattering: every input value adds its weighted
// kernel into the output, y[n, g*fg+f, i*s-p+ki*d, j*s-p+kj*d] += x[n, g*cg+c, i, j] w[g*cg+c, f, ki, kj].
std::vector<double> naive_deconv(const std::vector<double> &x, const std::vector<double> &w,
                                 const std::vector<double> &b, int64_t N, int64_t C, int64_t H,
                                 int64_t W, int64_t F, int64_t K, int64_t S, int64_t P, int64_t D,
                                 int64_t A, int64_t G, int64_t *OH, int64_t *OW) {
  *OH = (H - 1) * S - 2 * P + D * (K - 1) + 1 + A;
  *OW = (W - 1) * S - 2 * P + D * (K - 1) + 1 + A;
  int64_t cg = C / G, fg = F / G;
  std::vector<double> y(N * F * *OH * *OW, 0.0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t c = 0; c < C; ++c)
      for (int64_t i = 0; i < H; ++i)
        for (int64_t j = 0; j < W; ++j)
          for (int64_t f = 0; f < fg; ++f)
            for (int64_t ki = 0; ki < K; ++ki)
              for (int64_t kj = 0; kj < K; ++kj) {
                int64_t oi = i * S - P + ki * D, oj = j * S - P + kj * D;
                if (oi < 0 || oi >= *OH || oj < 0 || oj >= *OW) continue;
                int64_t fo = (c / cg) * fg + f;
                y[((n * F + fo) * *OH + oi) * *OW + oj] +=
                    x[((n * C + c) * H + i) * W + j] * w[((c * fg + f) * K + ki) * K + kj];
              }
  if (!b.empty())
    for (int64_t n = 0; n < N; ++n)
      for (int64_t f = 0; f < F; ++f)
        for (int64_t k = 0; k < *OH * *OW; ++k) y[(n * F + f) * *OH * *OW + k] += b[f];
  return y;
}

COVERS("Deconvolution");
TEST(Ops, DeconvolutionMatchesReference) {
  struct C {
    int64_t N, Cc, H, W, F, K, S, P, D, A, G;
  };
  for (const C &c : {C{2, 3, 4, 5, 2, 3, 1, 0, 1, 0, 1}, C{1, 4, 3, 3, 6, 3, 2, 1, 1, 1, 2},
                     C{2, 2, 4, 4, 3, 2, 2, 0, 2, 0, 1}, C{1, 2, 5, 3, 2, 4, 3, 1, 1, 2, 2}}) {
    auto x = random_values(c.N * c.Cc * c.H * c.W, -1, 1, 211);
    auto w = random_values(c.Cc * (c.F / c.G) * c.K * c.K, -1, 1, 212);
    auto b = random_values(c.F, -1, 1, 213);
    int64_t OH, OW;
    auto want = naive_deconv(x, w, b, c.N, c.Cc, c.H, c.W, c.F, c.K, c.S, c.P, c.D, c.A, c.G, &OH, &OW);
    auto pair = [](int64_t v) { return "(" + std::to_string(v) + "," + std::to_string(v) + ")"; };
    for (int32_t dt : kFloatTypes) {
      Arr X = make({c.N, c.Cc, c.H, c.W}, x, dt), Wt = make({c.Cc, c.F / c.G, c.K, c.K}, w, dt),
          B = make({c.F}, b, dt);
      Arr o = call("Deconvolution", {&X, &Wt, &B},
                   {{"kernel", pair(c.K)}, {"num_filter", std::to_string(c.F)}, {"stride", pair(c.S)},
                    {"pad", pair(c.P)}, {"dilate", pair(c.D)}, {"adj", pair(c.A)},
                    {"num_group", std::to_string(c.G)}, {"no_bias", "false"}});
      ASSERT_EQ(shape_of(o), (std::vector<int64_t>{c.N, c.F, OH, OW}));
      auto got = read(o);
      double tol = dt == LOOM_DTYPE_FLOAT32 ? 1e-5 : 1e-12;
      for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], tol) << i;
    }
  }
  // 1-D, no bias (the default).
  auto x = random_values(2 * 3 * 6, -1, 1, 214), w = random_values(3 * 2 * 3, -1, 1, 215);
  int64_t OH, OW;
  auto want = naive_deconv(x, w, {}, 2, 3, 1, 6, 2, 1, 2, 0, 1, 0, 1, &OH, &OW);
  (void)OH;
  // naive_deconv is square; with H = 1 and K = 1 rows its width is what a (3,) kernel gives.
  std::vector<double> want1;
  {
    int64_t ow = (6 - 1) * 2 + 3;
    want1.assign(2 * 2 * ow, 0.0);
    for (int64_t n = 0; n < 2; ++n)
      for (int64_t ch = 0; ch < 3; ++ch)
        for (int64_t j = 0; j < 6; ++j)
          for (int64_t f = 0; f < 2; ++f)
            for (int64_t kj = 0; kj < 3; ++kj)
              want1[(n * 2 + f) * ow + j * 2 + kj] += x[(n * 3 + ch) * 6 + j] * w[(ch * 2 + f) * 3 + kj];
  }
  Arr X1 = make({2, 3, 6}, x, LOOM_DTYPE_FLOAT64), W1 = make({3, 2, 3}, w, LOOM_DTYPE_FLOAT64);
  Arr o1 = call("Deconvolution", {&X1, &W1}, {{"kernel", "(3,)"}, {"num_filter", "2"}, {"stride", "(2,)"}});
  EXPECT_EQ(shape_of(o1), (std::vector<int64_t>{2, 2, 13}));
  expect_close(read(o1), want1, LOOM_DTYPE_FLOAT64, "deconv1d");
  std::vector<Arr> outs;
  Arr Wbad = make({2, 2, 3}, std::vector<double>(12, 0), LOOM_DTYPE_FLOAT64);
  EXPECT_EQ(invoke("Deconvolution", {&X1, &Wbad}, {{"kernel", "(3,)"}, {"num_filter", "2"}}, &outs), LOOM_ERR_SHAPE);
  EXPECT_NE(std::string(loom_last_error()).find("Deconvolution: weight has shape (2,2,3), expected (3,2,3)"),
            std::string::npos) << loom_last_error();
  EXPECT_EQ(invoke("Deconvolution", {&X1, &W1}, {{"kernel", "(3,)"}, {"num_filter", "2"}, {"adj", "(1,)"}}, &outs),
            LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(loom_last_error()).find("adj must be non-negative and smaller than stride"),
            std::string::npos) << loom_last_error();
  EXPECT_EQ(invoke("Deconvolution", {&X1, &W1}, {{"kernel", "(3,)"}, {"num_filter", "2"}, {"pad", "(7,)"}}, &outs),
            LOOM_ERR_SHAPE);
}

COVERS("LRN");
TEST(Ops, LrnMatchesReference) {
  const int64_t N = 2, C = 7, H = 3, W = 2;
  auto x = random_values(N * C * H * W, -2, 2, 221);
  for (int nsize : {1, 3, 5}) {
    std::vector<double> want(x.size());
    double alpha = 0.3, beta = 0.6, k = 1.5;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t i = 0; i < H * W; ++i) {
          double s = 0;
          for (int64_t j = c - nsize / 2; j <= c + nsize / 2; ++j)
            if (j >= 0 && j < C) s += x[(n * C + j) * H * W + i] * x[(n * C + j) * H * W + i];
          int64_t o = (n * C + c) * H * W + i;
          want[o] = x[o] / std::pow(k + alpha / nsize * s, beta);
        }
    for (int32_t dt : kFloatTypes) {
      Arr X = make({N, C, H, W}, x, dt);
      Arr y = call("LRN", {&X}, {{"nsize", std::to_string(nsize)}, {"alpha", "0.3"}, {"beta", "0.6"}, {"knorm", "1.5"}});
      if (dt == LOOM_DTYPE_FLOAT64) expect_close(read(y), want, dt, "LRN");
      else for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(read(y)[i], want[i], 1e-5) << i;
    }
  }
  std::vector<Arr> outs;
  Arr X = make({N, C, H, W}, x, LOOM_DTYPE_FLOAT64);
  EXPECT_EQ(invoke("LRN", {&X}, {{"nsize", "4"}}, &outs), LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(loom_last_error()).find("LRN: nsize must be a positive odd number, got 4"),
            std::string::npos) << loom_last_error();
  Arr X1 = make({5}, std::vector<double>(5, 1.0));
  EXPECT_EQ(invoke("LRN", {&X1}, {{"nsize", "3"}}, &outs), LOOM_ERR_SHAPE);
}

COVERS("Convolution", "Pooling");
TEST(Ops, ConvolutionAndPoolingMatchReference) {
  struct C {
    int64_t N, Cc, H, W, F, K, S, P, D, G;
  };
  for (const C &c : {C{2, 3, 7, 6, 4, 3, 1, 0, 1, 1}, C{1, 4, 8, 8, 6, 3, 2, 1, 1, 2},
                     C{2, 2, 9, 7, 2, 2, 1, 2, 2, 1}, C{1, 1, 5, 5, 1, 5, 1, 0, 1, 1},
                     // 1x1, stride 1, no padding (the per-image product path), plain and grouped
                     C{3, 8, 5, 6, 12, 1, 1, 0, 1, 1}, C{10, 8, 4, 4, 6, 1, 1, 0, 1, 2}}) {
    auto x = random_values(c.N * c.Cc * c.H * c.W, -1, 1, 201);
    auto w = random_values(c.F * (c.Cc / c.G) * c.K * c.K, -1, 1, 202);
    auto b = random_values(c.F, -1, 1, 203);
    int64_t OH, OW;
    auto want = naive_conv(x, w, b, c.N, c.Cc, c.H, c.W, c.F, c.K, c.K, c.S, c.P, c.D, c.G, &OH, &OW);
    for (int32_t dt : kFloatTypes) {
      Arr X = make({c.N, c.Cc, c.H, c.W}, x, dt), Wt = make({c.F, c.Cc / c.G, c.K, c.K}, w, dt),
          B = make({c.F}, b, dt);
      auto k = "(" + std::to_string(c.K) + "," + std::to_string(c.K) + ")";
      auto sp = "(" + std::to_string(c.S) + "," + std::to_string(c.S) + ")";
      auto pp = "(" + std::to_string(c.P) + "," + std::to_string(c.P) + ")";
      auto dp = "(" + std::to_string(c.D) + "," + std::to_string(c.D) + ")";
      Arr o = call("Convolution", {&X, &Wt, &B},
                   {{"kernel", k}, {"num_filter", std::to_string(c.F)}, {"stride", sp}, {"pad", pp},
                    {"dilate", dp}, {"num_group", std::to_string(c.G)}});
      ASSERT_EQ(shape_of(o), (std::vector<int64_t>{c.N, c.F, OH, OW}));
      auto got = read(o);
      double tol = dt == LOOM_DTYPE_FLOAT32 ? 1e-5 : 1e-12;
      for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(got[i], want[i], tol) << i;
      // One image per gemm (workspace=0) gives the same result.
      Arr oc = call("Convolution", {&X, &Wt, &B},
                    {{"kernel", k}, {"num_filter", std::to_string(c.F)}, {"stride", sp}, {"pad", pp},
                     {"dilate", dp}, {"num_group", std::to_string(c.G)}, {"workspace", "0"}});
      auto gc = read(oc);
      for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(gc[i], want[i], tol) << i;
    }
  }
  // 1-D convolution is 2-D with H = 1.
  auto x = random_values(2 * 3 * 10, -1, 1, 204), w = random_values(4 * 3 * 3, -1, 1, 205);
  int64_t OH, OW;
  auto want = naive_conv(x, w, {}, 2, 3, 1, 10, 4, 1, 3, 1, 0, 1, 1, &OH, &OW);
  Arr X1 = make({2, 3, 10}, x, LOOM_DTYPE_FLOAT64), W1 = make({4, 3, 3}, w, LOOM_DTYPE_FLOAT64);
  Arr o1 = call("Convolution", {&X1, &W1}, {{"kernel", "(3,)"}, {"num_filter", "4"}, {"no_bias", "true"}});
  EXPECT_EQ(shape_of(o1), (std::vector<int64_t>{2, 4, 8}));
  expect_close(read(o1), want, LOOM_DTYPE_FLOAT64, "conv1d");
  std::vector<Arr> outs;
  Arr Wbad = make({4, 2, 3}, std::vector<double>(24, 0), LOOM_DTYPE_FLOAT64);
  EXPECT_EQ(invoke("Convolution", {&X1, &Wbad}, {{"kernel", "(3,)"}, {"num_filter", "4"}, {"no_bias", "true"}}, &outs),
            LOOM_ERR_SHAPE);
  EXPECT_NE(std::string(loom_last_error()).find("weight has shape (4,2,3), expected (4,3,3)"), std::string::npos)
      << loom_last_error();
  EXPECT_EQ(invoke("Convolution", {&X1, &W1}, {{"kernel", "(11,)"}, {"num_filter", "4"}, {"no_bias", "true"}}, &outs),
            LOOM_ERR_SHAPE);

  // Pooling: max/avg/sum, valid/full, padding, count_include_pad, global. The
  // reference counts MXNet's divisor cell by cell (pool.h): the window's cells
  // inside the padded input (in + pad on each side), or inside the input alone
  // without count_include_pad; the overhang of the full convention never counts.
  auto v = random_values(2 * 3 * 7 * 6, -1, 1, 206);
  Arr P = make({2, 3, 7, 6}, v, LOOM_DTYPE_FLOAT64);
  for (const char *type : {"max", "avg", "sum"})
    for (const char *conv : {"valid", "full"})
      for (int64_t pad : {0, 1, 2})
      for (bool include_pad : {true, false}) {
        int64_t K = 3, S = 2, H = 7, W = 6;
        auto len = [&](int64_t n) {
          int64_t span = n + 2 * pad - K;
          return std::string(conv) == "full" ? (span + S - 1) / S + 1 : span / S + 1;
        };
        int64_t oh = len(H), ow = len(W);
        Arr o = call("Pooling", {&P}, {{"kernel", "(3,3)"}, {"stride", "(2,2)"}, {"pool_type", type},
                                       {"pooling_convention", conv},
                                       {"count_include_pad", include_pad ? "true" : "false"},
                                       {"pad", "(" + std::to_string(pad) + "," + std::to_string(pad) + ")"}});
        ASSERT_EQ(shape_of(o), (std::vector<int64_t>{2, 3, oh, ow})) << type << conv << pad;
        auto got = read(o);
        for (int64_t nc = 0; nc < 6; ++nc)
          for (int64_t i = 0; i < oh; ++i)
            for (int64_t j = 0; j < ow; ++j) {
              double acc = std::string(type) == "max" ? -std::numeric_limits<double>::max() : 0;
              int cells = 0;
              for (int64_t ki = 0; ki < K; ++ki)
                for (int64_t kj = 0; kj < K; ++kj) {
                  int64_t ii = i * S - pad + ki, jj = j * S - pad + kj;
                  bool in_padded = ii < H + pad && jj < W + pad;
                  bool inside = ii >= 0 && ii < H && jj >= 0 && jj < W;
                  if (include_pad ? in_padded : inside) ++cells;
                  if (!inside) continue;
                  double x0 = v[(nc * H + ii) * W + jj];
                  acc = std::string(type) == "max" ? std::max(acc, x0) : acc + x0;
                }
              if (std::string(type) == "avg") acc = cells ? acc / cells : 0;
              EXPECT_NEAR(got[(nc * oh + i) * ow + j], acc, 1e-12) << type << " " << conv << " pad " << pad;
            }
      }
  Arr gp = call("Pooling", {&P}, {{"global_pool", "true"}, {"pool_type", "avg"}});
  EXPECT_EQ(shape_of(gp), (std::vector<int64_t>{2, 3, 1, 1}));
  double m0 = 0;
  for (int i = 0; i < 42; ++i) m0 += v[i];
  EXPECT_NEAR(read(gp)[0], m0 / 42, 1e-12);
  EXPECT_EQ(invoke("Pooling", {&P}, {{"kernel", "(3,3,3)"}}, &outs), LOOM_ERR_SHAPE);
  EXPECT_EQ(invoke("Pooling", {&P}, {{"kernel", "(2,2)"}, {"pool_type", "median"}}, &outs), LOOM_ERR_INVALID_ARGUMENT);
}

// Max pooling and its gradient against a naive row-major scan, exactly, in both
// float types, over window sizes (the 2x2 and 3x3 kernels and the general one),
// strides, padding and both conventions, on data with ties and NaN cells: the
// maximum passes NaN over, and the first cell (row-major) equal to the maximum
// takes the window's gradient (MXNet's pool.h and unpool_max).
TEST(Ops, MaxPoolingAndItsGradientMatchARowMajorScan) {
  // 8 columns, and 45 (3x3 windows inside the plane run through a kernel of their
  // own for float: many of them, past a vector's width, between the clipped ones);
  // 9 rows, and 8 with 8 or 44 columns, which 2x2 windows at stride 2 tile exactly
  // (a kernel of their own for float, over runs of planes, four windows a vector).
  for (const auto &hw : {std::pair<int64_t, int64_t>{9, 8}, {9, 45}, {8, 8}, {8, 44}}) {
  const int64_t N = 2, C = 3, H = hw.first, W = hw.second;
  auto v = random_values(N * C * H * W, -1, 1, 311);
  for (size_t i = 0; i < v.size(); ++i) {
    if (i % 7 == 0) v[i] = 0.5;  // ties
    if (i % 11 == 1 || i % 11 == 2) v[i] = 0.75;  // ties of neighbours (rows of a 2x2 window)
    if (H == 8 && (i / W) % 2 == 1 && i % 13 == 3) v[i] = v[i - W];  // ties down a column
    if (i % 23 == 5) v[i] = std::nan("");
    if (W > 8 && i % 31 == 3) v[i] = -std::numeric_limits<double>::infinity();  // never taken
    if (W > 8 && i % 37 == 4) v[i] = double(std::numeric_limits<float>::lowest());  // taken as a tie
    if (W > 8 && i % 41 == 2) v[i] = std::numeric_limits<double>::infinity();
  }
  // a window of -inf and NaN alone passes no gradient
  if (W > 8)
    for (int64_t i = 0; i < 3; ++i)
      for (int64_t j = 0; j < 4; ++j) v[(1 * H + 2 + i) * W + 10 + j] = (i + j) % 2 ? std::nan("") : -INFINITY;
  struct Geo {
    int64_t kh, kw, sh, sw, ph, pw;
    bool full;
  };
  const Geo geos[] = {{3, 3, 2, 2, 1, 1, false}, {3, 3, 2, 2, 0, 0, false}, {3, 3, 1, 1, 1, 1, false},
                      {3, 3, 2, 2, 1, 1, true},  {3, 3, 3, 3, 2, 2, true},  {2, 2, 2, 2, 0, 0, false},
                      {2, 2, 2, 2, 1, 1, false}, {2, 2, 1, 1, 0, 0, true},  {3, 2, 2, 1, 1, 0, false},
                      {1, 1, 1, 1, 0, 0, false}, {4, 3, 3, 2, 2, 1, true},  {3, 3, 3, 3, 0, 0, false}};
  for (int32_t dt : {LOOM_DTYPE_FLOAT32, LOOM_DTYPE_FLOAT64})
    for (const Geo &g : geos) {
      auto len = [&](int64_t n, int64_t k, int64_t st, int64_t pd) {
        int64_t span = n + 2 * pd - k;
        return g.full ? (span + st - 1) / st + 1 : span / st + 1;
      };
      const int64_t oh = len(H, g.kh, g.sh, g.ph), ow = len(W, g.kw, g.sw, g.pw);
      const std::string what = std::to_string(H) + " rows, " + std::to_string(W) + " columns, kernel " + std::to_string(g.kh) + "x" + std::to_string(g.kw) + " stride " +
                                std::to_string(g.sh) + "x" + std::to_string(g.sw) + " pad " + std::to_string(g.ph) +
                                "x" + std::to_string(g.pw) + (g.full ? " full " : " valid ") +
                                (dt == LOOM_DTYPE_FLOAT32 ? "float32" : "float64");
      auto xv = as_dtype(v, dt);
      // The gradient buffer starts full of 7s: a written gradient replaces every cell.
      Arr X = make({N, C, H, W}, xv, dt), dX = make({N, C, H, W}, std::vector<double>(v.size(), 7.0), dt);
      ASSERT_EQ(loom_autograd_mark_variables(&X.h, &dX.h, nullptr, 1), LOOM_OK);
      int32_t prev = 0;
      loom_autograd_set_recording(&prev, 1);
      Arr Y = call("Pooling", {&X},
                   {{"kernel", "(" + std::to_string(g.kh) + "," + std::to_string(g.kw) + ")"},
                    {"stride", "(" + std::to_string(g.sh) + "," + std::to_string(g.sw) + ")"},
                    {"pad", "(" + std::to_string(g.ph) + "," + std::to_string(g.pw) + ")"},
                    {"pooling_convention", g.full ? "full" : "valid"}, {"pool_type", "max"}});
      loom_autograd_set_recording(nullptr, prev);
      ASSERT_EQ(shape_of(Y), (std::vector<int64_t>{N, C, oh, ow})) << what;
      auto dyv = as_dtype(random_values(N * C * oh * ow, -1, 1, 312), dt);
      Arr dY = make({N, C, oh, ow}, dyv, dt);
      ASSERT_EQ(loom_autograd_backward(&Y.h, &dY.h, 1), LOOM_OK) << loom_last_error();
      auto y = read(Y), dx = read(dX);
      std::vector<double> want_dx(v.size(), 0.0);
      const double lowest = dt == LOOM_DTYPE_FLOAT32 ? double(std::numeric_limits<float>::lowest())
                                                     : std::numeric_limits<double>::lowest();
      int64_t bad = 0;
      for (int64_t nc = 0; nc < N * C; ++nc)
        for (int64_t i = 0; i < oh; ++i)
          for (int64_t j = 0; j < ow; ++j) {
            double m = lowest;
            int64_t best = -1;
            for (int64_t a = 0; a < g.kh; ++a)
              for (int64_t b = 0; b < g.kw; ++b) {
                int64_t ii = i * g.sh - g.ph + a, jj = j * g.sw - g.pw + b;
                if (ii < 0 || ii >= H || jj < 0 || jj >= W) continue;
                int64_t k = (nc * H + ii) * W + jj;
                if (xv[k] > m || (best < 0 && xv[k] == m)) m = xv[best = k];
              }
            const int64_t o = (nc * oh + i) * ow + j;
            if (best >= 0)  // added in the dtype, output by output in row-major order, as the kernel does
              want_dx[best] = dt == LOOM_DTYPE_FLOAT32 ? double(float(want_dx[best]) + float(dyv[o]))
                                                       : want_dx[best] + dyv[o];
            if (y[o] != m && bad++ < 3) ADD_FAILURE() << what << ": y[" << o << "] = " << y[o] << ", want " << m;
          }
      for (size_t k = 0; k < want_dx.size(); ++k) {
        if (dx[k] != want_dx[k] && bad++ < 6)
          ADD_FAILURE() << what << ": dx[" << k << "] = " << dx[k] << ", want " << want_dx[k];
      }
      EXPECT_EQ(bad, 0) << what;
    }
  }
}

COVERS("LeakyReLU", "Dropout", "BlockGrad", "MakeLoss", "LinearRegressionOutput",
       "LogisticRegressionOutput", "SwapAxis", "ElementWiseSum", "Embedding", "UpSampling", "SliceChannel");
TEST(Ops, MoreLayersMatchReference) {
  auto v = random_values(24, -2, 2, 301);
  Arr X = make({2, 3, 4}, v, LOOM_DTYPE_FLOAT64);
  auto leaky = read(call("LeakyReLU", {&X}, {{"slope", "0.1"}}));
  auto elu = read(call("LeakyReLU", {&X}, {{"act_type", "elu"}, {"slope", "0.5"}}));
  Arr gamma = make({3}, {0.1, 0.2, 0.3}, LOOM_DTYPE_FLOAT64);
  auto prelu = read(call("LeakyReLU", {&X, &gamma}, {{"act_type", "prelu"}}));
  for (int i = 0; i < 24; ++i) {
    EXPECT_NEAR(leaky[i], v[i] > 0 ? v[i] : 0.1 * v[i], 1e-15);
    EXPECT_NEAR(elu[i], v[i] > 0 ? v[i] : 0.5 * (std::exp(v[i]) - 1), 1e-15);
    EXPECT_NEAR(prelu[i], v[i] > 0 ? v[i] : 0.1 * (1 + (i / 4) % 3) * v[i], 1e-15);
  }
  std::vector<Arr> outs;
  EXPECT_EQ(invoke("LeakyReLU", {&X}, {{"act_type", "prelu"}}, &outs), LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(read(call("BlockGrad", {&X})), v);
  EXPECT_EQ(read(call("MakeLoss", {&X})), v);
  EXPECT_EQ(read(call("LinearRegressionOutput", {&X, &X})), v);
  auto lo = read(call("LogisticRegressionOutput", {&X, &X}));
  for (int i = 0; i < 24; ++i) EXPECT_NEAR(lo[i], 1 / (1 + std::exp(-v[i])), 1e-15);
  Arr wrong = make({5}, std::vector<double>(5, 0), LOOM_DTYPE_FLOAT64);
  EXPECT_EQ(invoke("LinearRegressionOutput", {&X, &wrong}, {}, &outs), LOOM_ERR_SHAPE);

  Arr S = call("SwapAxis", {&X}, {{"dim1", "0"}, {"dim2", "2"}});
  EXPECT_EQ(shape_of(S), (std::vector<int64_t>{4, 3, 2}));
  auto sv = read(S);
  for (int a = 0; a < 2; ++a)
    for (int b = 0; b < 3; ++b)
      for (int c = 0; c < 4; ++c) EXPECT_EQ(sv[(c * 3 + b) * 2 + a], v[(a * 3 + b) * 4 + c]);

  auto e = read(call("ElementWiseSum", {&X, &X, &X}));
  for (int i = 0; i < 24; ++i) EXPECT_NEAR(e[i], 3 * v[i], 1e-15);

  Arr idx = make({2, 2}, {3, 0, 1, 3}, LOOM_DTYPE_INT32);
  auto wv = random_values(8, -1, 1, 302);
  Arr W = make({4, 2}, wv, LOOM_DTYPE_FLOAT64);
  Arr Em = call("Embedding", {&idx, &W}, {{"input_dim", "4"}, {"output_dim", "2"}});
  EXPECT_EQ(shape_of(Em), (std::vector<int64_t>{2, 2, 2}));
  auto ev = read(Em);
  int ids[] = {3, 0, 1, 3};
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 2; ++j) EXPECT_EQ(ev[i * 2 + j], wv[ids[i] * 2 + j]);

  Arr img = make({1, 1, 2, 2}, {1, 2, 3, 4}, LOOM_DTYPE_FLOAT64);
  EXPECT_EQ(read(call("UpSampling", {&img}, {{"scale", "2"}})),
            (std::vector<double>{1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4}));

  ASSERT_EQ(invoke("SliceChannel", {&X}, {{"num_outputs", "3"}, {"axis", "1"}, {"squeeze_axis", "true"}},
                   &outs, 3), LOOM_OK) << loom_last_error();
  ASSERT_EQ(outs.size(), 3u);
  EXPECT_EQ(shape_of(outs[1]), (std::vector<int64_t>{2, 4}));
  auto part = read(outs[1]);
  for (int a = 0; a < 2; ++a)
    for (int c = 0; c < 4; ++c) EXPECT_EQ(part[a * 4 + c], v[(a * 3 + 1) * 4 + c]);
  EXPECT_EQ(invoke("SliceChannel", {&X}, {{"num_outputs", "5"}}, &outs, 5), LOOM_ERR_SHAPE);

  // Bad input for each of these layers names the op and the problem.
  auto expect_error = [&](const std::string &op, std::vector<const Arr *> ins, Params ps, loom_status want,
                          const std::string &fragment) {
    std::vector<Arr> o;
    EXPECT_EQ(invoke(op, ins, ps, &o), want) << op;
    EXPECT_NE(std::string(loom_last_error()).find(fragment), std::string::npos) << loom_last_error();
  };
  expect_error("SwapAxis", {&X}, {{"dim1", "0"}, {"dim2", "3"}}, LOOM_ERR_INVALID_ARGUMENT, "SwapAxis: dim2=3");
  Arr Y = make({2, 4}, std::vector<double>(8, 0), LOOM_DTYPE_FLOAT64);
  expect_error("ElementWiseSum", {&X, &Y}, {}, LOOM_ERR_SHAPE, "input 1 has shape (2,4)");
  expect_error("UpSampling", {&X}, {{"scale", "2"}}, LOOM_ERR_SHAPE, "(N, C, H, W), got (2,3,4)");
  expect_error("UpSampling", {&img}, {{"scale", "0"}}, LOOM_ERR_INVALID_ARGUMENT, "scale must be >= 1");
  expect_error("MakeLoss", {&X}, {{"normalization", "valid"}}, LOOM_ERR_INVALID_ARGUMENT, "normalization");
  expect_error("Embedding", {&idx, &W}, {{"input_dim", "5"}, {"output_dim", "2"}}, LOOM_ERR_SHAPE,
               "weight has shape (4,2), expected (5,2)");
  // An index past the rows is clipped to the last row, as MXNet's Embedding does;
  // NaN is an error.
  Arr badidx = make({1}, {7}, LOOM_DTYPE_INT32);
  auto wrows = read(W);
  EXPECT_EQ(read(call("Embedding", {&badidx, &W}, {{"input_dim", "4"}, {"output_dim", "2"}})),
            (std::vector<double>(wrows.end() - 2, wrows.end())));
  Arr nanidx = make({1}, {std::nan("")}, LOOM_DTYPE_FLOAT32);
  std::vector<Arr> o;
  ASSERT_EQ(invoke("Embedding", {&nanidx, &W}, {{"input_dim", "4"}, {"output_dim", "2"}}, &o), LOOM_OK);
  EXPECT_EQ(loom_ndarray_wait_to_read(o[0].h), LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(loom_last_error()).find("Embedding: index NaN"), std::string::npos);
  loom_wait_all();
}

// LeakyReLU rrelu (MXNet's leaky_relu-inl.h): in training a slope per element drawn
// uniformly from [lower_bound, upper_bound), kept as the hidden output "mask", the same for
// the same seed; the gradient is 1 where the output is positive, else the mask; in
// prediction the slope is (lower_bound + upper_bound) / 2.
TEST(Ops, RReLUDrawsSlopesInTraining) {
  auto v = random_values(400, -2, 2, 303);
  Arr X = make({4, 100}, v, LOOM_DTYPE_FLOAT64);
  Params rp{{"act_type", "rrelu"}, {"lower_bound", "0.1"}, {"upper_bound", "0.4"}};
  auto train_once = [&](uint64_t seed) {
    loom_random_seed(seed);
    int32_t prev;
    loom_autograd_set_training(&prev, 1);
    std::vector<Arr> outs;
    EXPECT_EQ(invoke("LeakyReLU", {&X}, rp, &outs, 2), LOOM_OK) << loom_last_error();
    loom_autograd_set_training(nullptr, prev);
    return std::make_pair(read(outs[0]), read(outs[1]));
  };
  auto [y, mask] = train_once(7);
  double lo = 1, hi = 0, mean = 0;
  for (int i = 0; i < 400; ++i) {
    EXPECT_GE(mask[i], 0.1);
    EXPECT_LT(mask[i], 0.4);
    lo = std::min(lo, mask[i]);
    hi = std::max(hi, mask[i]);
    mean += mask[i] / 400;
    EXPECT_EQ(y[i], v[i] > 0 ? v[i] : mask[i] * v[i]) << i;
  }
  EXPECT_LT(lo, 0.11);  // spread over the range, not one value
  EXPECT_GT(hi, 0.39);
  EXPECT_NEAR(mean, 0.25, 0.02);
  EXPECT_EQ(train_once(7).second, mask);  // reproducible from the seed
  EXPECT_NE(train_once(8).second, mask);
  // Prediction: the mid slope.
  auto yp = read(call("LeakyReLU", {&X}, rp));
  for (int i = 0; i < 400; ++i) EXPECT_NEAR(yp[i], v[i] > 0 ? v[i] : 0.25 * v[i], 1e-15);
  // The gradient recorded in training uses the slopes drawn in that forward pass.
  Arr gx = make({4, 100}, std::vector<double>(400, 0), LOOM_DTYPE_FLOAT64);
  ASSERT_EQ(loom_autograd_mark_variables(&X.h, &gx.h, nullptr, 1), LOOM_OK);
  loom_random_seed(7);
  int32_t prev_rec, prev_train;
  loom_autograd_set_recording(&prev_rec, 1);
  loom_autograd_set_training(&prev_train, 1);
  std::vector<Arr> outs;
  ASSERT_EQ(invoke("LeakyReLU", {&X}, rp, &outs, 2), LOOM_OK);
  loom_autograd_set_recording(nullptr, prev_rec);
  loom_autograd_set_training(nullptr, prev_train);
  Arr head = make({4, 100}, random_values(400, -1, 1, 304), LOOM_DTYPE_FLOAT64);
  auto hv = read(head);
  ASSERT_EQ(loom_autograd_backward(&outs[0].h, &head.h, 1), LOOM_OK) << loom_last_error();
  auto g = read(gx);
  EXPECT_EQ(read(outs[1]), mask);
  for (int i = 0; i < 400; ++i) EXPECT_EQ(g[i], y[i] > 0 ? hv[i] : mask[i] * hv[i]) << i;
}

// BatchNorm against float64 loops: batch statistics and moving-average
// updates in training, moving statistics in prediction.
COVERS("BatchNorm");
TEST(Ops, BatchNormTrainingAndPrediction) {
  const int N = 3, C = 2, S = 4;
  auto x = random_values(N * C * S, -2, 2, 41);
  std::vector<double> gamma{1.5, -0.5}, beta{0.25, 1}, mm{0.1, -0.2}, mv{1.2, 0.8};
  for (bool train : {true, false}) {
    Arr X = make({N, C, 2, 2}, x, LOOM_DTYPE_FLOAT64), G = make({C}, gamma, LOOM_DTYPE_FLOAT64),
        B = make({C}, beta, LOOM_DTYPE_FLOAT64), M = make({C}, mm, LOOM_DTYPE_FLOAT64),
        V = make({C}, mv, LOOM_DTYPE_FLOAT64);
    int32_t prev;
    loom_autograd_set_training(&prev, train ? 1 : 0);
    Arr Y = call("BatchNorm", {&X, &G, &B, &M, &V}, {{"fix_gamma", "false"}, {"eps", "0.01"}, {"momentum", "0.8"}});
    loom_autograd_set_training(nullptr, prev);
    auto y = read(Y), m2 = read(M), v2 = read(V);
    for (int c = 0; c < C; ++c) {
      double mean = 0, var = 0;
      for (int n = 0; n < N; ++n)
        for (int i = 0; i < S; ++i) mean += x[(n * C + c) * S + i] / (N * S);
      for (int n = 0; n < N; ++n)
        for (int i = 0; i < S; ++i) var += std::pow(x[(n * C + c) * S + i] - mean, 2) / (N * S);
      double um = train ? mean : mm[c], uv = train ? var : mv[c];
      for (int n = 0; n < N; ++n)
        for (int i = 0; i < S; ++i) {
          int k = (n * C + c) * S + i;
          EXPECT_NEAR(y[k], gamma[c] * (x[k] - um) / std::sqrt(uv + 0.01) + beta[c], 1e-12);
        }
      // A forward pass alone leaves the moving statistics (MXNet updates them in the
      // backward pass: test_mxnet.cc).
      EXPECT_EQ(m2[c], mm[c]);
      EXPECT_EQ(v2[c], mv[c]);
    }
  }
  Arr X = make({2, 3}, std::vector<double>(6, 1)), G = make({2}, {1, 1});
  std::vector<Arr> o;
  EXPECT_EQ(invoke("BatchNorm", {&X, &G, &G, &G, &G}, {}, &o), LOOM_ERR_SHAPE);
  EXPECT_NE(std::string(loom_last_error()).find("gamma has shape (2,), expected (3,)"), std::string::npos);
}

COVERS("Concat");
TEST(Ops, ConcatLayerJoinsAlongDim) {
  Arr a = make({2, 1}, {1, 2}), b = make({2, 2}, {3, 4, 5, 6});
  EXPECT_EQ(read(call("Concat", {&a, &b}, {{"num_args", "2"}})), (std::vector<double>{1, 3, 4, 2, 5, 6}));
  std::vector<Arr> o;
  EXPECT_EQ(invoke("Concat", {&a, &b}, {{"num_args", "3"}}, &o), LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(loom_last_error()).find("num_args=3 but 2 inputs"), std::string::npos);
}

TEST(Ops, EveryRegisteredOpHasAReferenceTest) {
  int32_t n = 0;
  ASSERT_EQ(loom_op_count(&n), LOOM_OK);
  std::vector<std::string> missing;
  for (int32_t i = 0; i < n; ++i) {
    loom_op op;
    const char *name;
    ASSERT_EQ(loom_op_get(&op, i), LOOM_OK);
    ASSERT_EQ(loom_op_get_name(&name, op), LOOM_OK);
    if (!covered().count(name)) missing.push_back(name);
  }
  std::string list;
  for (auto &m : missing) list += m + " ";
  EXPECT_TRUE(missing.empty()) << "ops without a reference test: " << list;
}

}  // namespace
