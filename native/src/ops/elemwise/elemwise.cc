// Elementwise operators: unary math, binary with NumPy broadcasting, scalar
// forms and comparisons. Comparisons return 1/0 in the input dtype (MXNet).
#include <cmath>
#include <functional>
#include <limits>
#include <type_traits>

#include "ops/common.h"

namespace loom {
namespace {

// ------------------------------------------------------------------ unary
struct UnaryDef {
  const char *name;
  const char *doc;
  bool float_only;
  double (*f)(double);
  int64_t (*fi)(int64_t);  // integer form, when the op allows integers
};

double relu_d(double x) { return (x > 0 || x != x) ? x : 0; }  // NaN passes (MXNet)
double sigmoid_d(double x) { return 1.0 / (1.0 + std::exp(-x)); }
double sign_d(double x) { return (x > 0) - (x < 0); }
double softsign_d(double x) { return x / (1.0 + std::fabs(x)); }
double rsqrt_d(double x) { return 1.0 / std::sqrt(x); }
double reciprocal_d(double x) { return 1.0 / x; }
double square_d(double x) { return x * x; }
double negative_d(double x) { return -x; }
double round_d(double x) { return std::round(x); }

const UnaryDef kUnary[] = {
    // Integers wrap around as NumPy's do (-INT64_MIN is INT64_MIN), computed unsigned.
    {"negative", "Numerical negative, elementwise: -x.", false, negative_d,
     [](int64_t x) { return wrap_sub(int64_t(0), x); }},
    {"abs", "Absolute value, elementwise: |x|.", false, [](double x) { return std::fabs(x); },
     [](int64_t x) { return x < 0 ? wrap_sub(int64_t(0), x) : x; }},
    {"sign", "Sign, elementwise: -1, 0 or 1.", false, sign_d,
     [](int64_t x) { return int64_t((x > 0) - (x < 0)); }},
    {"square", "Square, elementwise: x*x.", false, square_d, [](int64_t x) { return wrap_mul(x, x); }},
    {"relu", "Rectified linear unit, elementwise: max(x, 0); NaN passes through (MXNet).", false, relu_d,
     [](int64_t x) { return x > 0 ? x : int64_t(0); }},
    {"exp", "Exponential, elementwise: e^x.", true, [](double x) { return std::exp(x); }, nullptr},
    {"log", "Natural logarithm, elementwise.", true, [](double x) { return std::log(x); }, nullptr},
    {"log1p", "log(1 + x), elementwise, accurate near 0.", true,
     [](double x) { return std::log1p(x); }, nullptr},
    {"expm1", "exp(x) - 1, elementwise, accurate near 0.", true,
     [](double x) { return std::expm1(x); }, nullptr},
    {"sqrt", "Square root, elementwise.", true, [](double x) { return std::sqrt(x); }, nullptr},
    {"rsqrt", "Reciprocal square root, elementwise: 1/sqrt(x).", true, rsqrt_d, nullptr},
    {"reciprocal", "Reciprocal, elementwise: 1/x.", true, reciprocal_d, nullptr},
    {"sigmoid", "Logistic sigmoid, elementwise: 1/(1+e^-x).", true, sigmoid_d, nullptr},
    {"tanh", "Hyperbolic tangent, elementwise.", true, [](double x) { return std::tanh(x); },
     nullptr},
    {"softsign", "Softsign, elementwise: x/(1+|x|).", true, softsign_d, nullptr},
    {"sin", "Sine, elementwise (radians).", true, [](double x) { return std::sin(x); }, nullptr},
    {"cos", "Cosine, elementwise (radians).", true, [](double x) { return std::cos(x); }, nullptr},
    {"floor", "Floor, elementwise.", true, [](double x) { return std::floor(x); }, nullptr},
    {"ceil", "Ceiling, elementwise.", true, [](double x) { return std::ceil(x); }, nullptr},
    {"round", "Round half away from zero, elementwise.", true, round_d, nullptr},
};


template <typename T>
void unary_kernel(const UnaryDef &u, const TBlob &in, const TBlob &out) {
  const T *a = in.ptr<T>();
  T *o = out.ptr<T>();
  const int64_t n = out.size();
  if constexpr (std::is_floating_point_v<T>) {
    auto f = u.f;
    parallel_for(n, [&](int64_t i) { o[i] = static_cast<T>(f(static_cast<double>(a[i]))); });
  } else {
    auto f = u.fi;
    parallel_for(n, [&](int64_t i) { o[i] = static_cast<T>(f(static_cast<int64_t>(a[i]))); });
  }
}

// ------------------------------------------------------------------ binary
enum class Bin { Add, Sub, Mul, Div, Pow, Max, Min, Eq, Ne, Gt, Ge, Lt, Le, RSub, RDiv, RPow };

template <typename T>
inline T bin_apply(Bin op, T a, T b) {
  switch (op) {
    case Bin::Add: return wrap_add(a, b);
    case Bin::Sub: return wrap_sub(a, b);
    case Bin::RSub: return wrap_sub(b, a);
    case Bin::Mul: return wrap_mul(a, b);
    case Bin::Div:
      if constexpr (!std::is_floating_point_v<T>) {
        if (b == 0) fail(LOOM_ERR_INVALID_ARGUMENT, "divide: integer division by zero");
      }
      return a / b;
    case Bin::RDiv:
      if constexpr (!std::is_floating_point_v<T>) {
        if (a == 0) fail(LOOM_ERR_INVALID_ARGUMENT, "divide: integer division by zero");
      }
      return b / a;
    case Bin::Pow:
    case Bin::RPow: {
      T base = op == Bin::Pow ? a : b, e = op == Bin::Pow ? b : a;
      if constexpr (std::is_floating_point_v<T>) {
        return static_cast<T>(std::pow(static_cast<double>(base), static_cast<double>(e)));
      } else {
        if constexpr (std::is_signed_v<T>) {
          if (e < 0) fail(LOOM_ERR_INVALID_ARGUMENT, "power: integers to negative integer powers are not allowed (NumPy's rule); cast to a float dtype first");
        }
        return wrap_pow(base, e);
      }
    }
    // MXNet's maximum and minimum (mshadow_op.h): a NaN lhs wins, a NaN rhs loses
    // every comparison, so NaN on either side gives NaN.
    case Bin::Max: return (a != a || a > b) ? a : b;
    case Bin::Min: return (a != a || a < b) ? a : b;
    case Bin::Eq: return a == b;
    case Bin::Ne: return a != b;
    case Bin::Gt: return a > b;
    case Bin::Ge: return a >= b;
    case Bin::Lt: return a < b;
    case Bin::Le: return a <= b;
  }
  return T(0);
}

// Specialised inner loop per op so the compiler can vectorise the common cases.
template <typename T, Bin OP>
void binary_loop(const T *a, const T *b, T *o, const BroadcastIndexer &ia,
                 const BroadcastIndexer &ib, int64_t n) {
  if (ia.identity && ib.identity) {
    if constexpr (std::is_floating_point_v<T> && OP != Bin::Pow && OP != Bin::RPow) {
      // Contiguous runs the compiler vectorises, over the kernel threads (each value
      // is one operation, so the bits do not depend on the split); a short array
      // directly, without the dispatch (the imperative call's cost).
      auto run = [&](int64_t i0, int64_t i1) {
        for (int64_t i = i0; i < i1; ++i) o[i] = bin_apply<T>(OP, a[i], b[i]);
      };
      constexpr int64_t kRun = int64_t(1) << 14;
      if (n <= kRun)
        run(0, n);
      else
        parallel_ranges(n, kRun, run);
    } else {
      parallel_for(n, [&](int64_t i) { o[i] = bin_apply<T>(OP, a[i], b[i]); });
    }
    return;
  }
  parallel_for(n, [&](int64_t i) { o[i] = bin_apply<T>(OP, a[ia(i)], b[ib(i)]); });
}

template <typename T>
void binary_kernel(Bin op, const TBlob &l, const TBlob &r, const TBlob &out) {
  BroadcastIndexer il(l.shape, out.shape), ir(r.shape, out.shape);
  const T *a = l.ptr<T>();
  const T *b = r.ptr<T>();
  T *o = out.ptr<T>();
  int64_t n = out.size();
  switch (op) {
#define LOOM_BIN_CASE(X) \
  case Bin::X: binary_loop<T, Bin::X>(a, b, o, il, ir, n); break;
    LOOM_BIN_CASE(Add) LOOM_BIN_CASE(Sub) LOOM_BIN_CASE(Mul) LOOM_BIN_CASE(Div)
    LOOM_BIN_CASE(Pow) LOOM_BIN_CASE(Max) LOOM_BIN_CASE(Min) LOOM_BIN_CASE(Eq)
    LOOM_BIN_CASE(Ne) LOOM_BIN_CASE(Gt) LOOM_BIN_CASE(Ge) LOOM_BIN_CASE(Lt)
    LOOM_BIN_CASE(Le) LOOM_BIN_CASE(RSub) LOOM_BIN_CASE(RDiv) LOOM_BIN_CASE(RPow)
#undef LOOM_BIN_CASE
  }
}

template <typename T>
void scalar_kernel(Bin op, const TBlob &in, double scalar, const TBlob &out) {
  const T *a = in.ptr<T>();
  T *o = out.ptr<T>();
  if constexpr (std::is_integral_v<T>) {
    // The scalar is cast to the array's type (truncated, as MXNet does); one the type
    // cannot hold would be undefined behaviour, so it is an error instead.
    double t = std::trunc(scalar);
    LOOM_CHECK(!std::isnan(scalar) && t >= double(std::numeric_limits<T>::lowest()) &&
                   t <= double(std::numeric_limits<T>::max()) &&
                   (sizeof(T) < 8 || t < 9223372036854775808.0),
               LOOM_ERR_INVALID_ARGUMENT, "scalar ", scalar, " is outside the range of the array's dtype ",
               dtype_name(out.dtype), " (cast the array to a wider or floating-point dtype first)");
  }
  T s = static_cast<T>(scalar);
  parallel_for(out.size(), [&](int64_t i) { o[i] = bin_apply<T>(op, a[i], s); });
}

struct BinaryDef {
  const char *name;
  Bin op;
  const char *doc;
};

const BinaryDef kBinary[] = {
    {"add", Bin::Add, "Elementwise lhs + rhs with NumPy broadcasting."},
    {"subtract", Bin::Sub, "Elementwise lhs - rhs with NumPy broadcasting."},
    {"multiply", Bin::Mul, "Elementwise lhs * rhs with NumPy broadcasting."},
    {"divide", Bin::Div,
     "Elementwise lhs / rhs with NumPy broadcasting (integer division truncates; dividing an "
     "integer by zero is an error)."},
    {"power", Bin::Pow, "Elementwise lhs ^ rhs with NumPy broadcasting."},
    {"maximum", Bin::Max, "Elementwise maximum with NumPy broadcasting."},
    {"minimum", Bin::Min, "Elementwise minimum with NumPy broadcasting."},
    {"equal", Bin::Eq, "Elementwise lhs == rhs as 1/0 in the input dtype, broadcasting."},
    {"not_equal", Bin::Ne, "Elementwise lhs != rhs as 1/0 in the input dtype, broadcasting."},
    {"greater", Bin::Gt, "Elementwise lhs > rhs as 1/0 in the input dtype, broadcasting."},
    {"greater_equal", Bin::Ge, "Elementwise lhs >= rhs as 1/0 in the input dtype, broadcasting."},
    {"less", Bin::Lt, "Elementwise lhs < rhs as 1/0 in the input dtype, broadcasting."},
    {"less_equal", Bin::Le, "Elementwise lhs <= rhs as 1/0 in the input dtype, broadcasting."},
};

const BinaryDef kScalar[] = {
    {"add_scalar", Bin::Add, "Elementwise data + scalar."},
    {"subtract_scalar", Bin::Sub, "Elementwise data - scalar."},
    {"rsubtract_scalar", Bin::RSub, "Elementwise scalar - data."},
    {"multiply_scalar", Bin::Mul, "Elementwise data * scalar."},
    {"divide_scalar", Bin::Div, "Elementwise data / scalar."},
    {"rdivide_scalar", Bin::RDiv, "Elementwise scalar / data."},
    {"power_scalar", Bin::Pow, "Elementwise data ^ scalar."},
    {"rpower_scalar", Bin::RPow, "Elementwise scalar ^ data."},
    {"maximum_scalar", Bin::Max, "Elementwise max(data, scalar)."},
    {"minimum_scalar", Bin::Min, "Elementwise min(data, scalar)."},
    {"equal_scalar", Bin::Eq, "Elementwise data == scalar as 1/0 in the input dtype."},
    {"not_equal_scalar", Bin::Ne, "Elementwise data != scalar as 1/0 in the input dtype."},
    {"greater_scalar", Bin::Gt, "Elementwise data > scalar as 1/0 in the input dtype."},
    {"greater_equal_scalar", Bin::Ge, "Elementwise data >= scalar as 1/0 in the input dtype."},
    {"less_scalar", Bin::Lt, "Elementwise data < scalar as 1/0 in the input dtype."},
    {"less_equal_scalar", Bin::Le, "Elementwise data <= scalar as 1/0 in the input dtype."},
};

void same_shape_infer(const Params &, const ShapeList &in, const DTypeList &dt,
                      ShapeList &out, DTypeList &odt) {
  out[0] = in[0];
  odt[0] = dt[0];
}

const int kRegistered = [] {
  auto &reg = Registry::get();
  for (const UnaryDef &u : kUnary) {
    const UnaryDef *up = &u;
    OpDef &d = reg.add(u.name);
    d.set_doc(u.doc).set_inputs({"data"}).set_inplace({{0, 0}}).set_infer(same_shape_infer);
    d.float_only = u.float_only;
    d.infer_inputs = same_shape_hint;
    d.set_compute([up](const OpContext &, const Params &, const BlobList &in,
                       const BlobList &out) {
      LOOM_DTYPE_SWITCH(in[0].dtype, T, unary_kernel<T>(*up, in[0], out[0]));
    });
  }
  for (const BinaryDef &b : kBinary) {
    Bin op = b.op;
    reg.add(b.name)
        .set_doc(b.doc)
        .set_inputs({"lhs", "rhs"})
        .set_inplace({{0, 0}, {1, 0}})
        .set_infer_inputs(same_shape_hint)
        .set_infer([](const Params &p, const ShapeList &in,
                      const DTypeList &dt, ShapeList &out,
                      DTypeList &odt) {
          odt[0] = same_dtype(p, dt);
          out[0] = broadcast_shape(p, in[0], in[1]);
        })
        .set_compute([op](const OpContext &, const Params &, const BlobList &in,
                          const BlobList &out) {
          LOOM_DTYPE_SWITCH(in[0].dtype, T, binary_kernel<T>(op, in[0], in[1], out[0]));
        });
  }
  for (const BinaryDef &b : kScalar) {
    Bin op = b.op;
    reg.add(b.name)
        .set_doc(b.doc)
        .set_inputs({"data"})
        .required("scalar", ParamType::Float, "The scalar operand.")
        .set_inplace({{0, 0}})
        .set_infer_inputs(same_shape_hint)
        .set_infer([op](const Params &p, const ShapeList &in,
                        const DTypeList &dt, ShapeList &out,
                        DTypeList &odt) {
          if (op == Bin::Div && !dtype_is_float(dt[0]) && std::trunc(p.f("scalar")) == 0)
            fail(LOOM_ERR_INVALID_ARGUMENT, p.op().name,
                 ": integer division by zero (scalar=", p.f("scalar"), ", data dtype ",
                 dtype_name(dt[0]), ")");
          out[0] = in[0];
          odt[0] = dt[0];
        })
        .set_compute([op](const OpContext &, const Params &p, const BlobList &in,
                          const BlobList &out) {
          LOOM_DTYPE_SWITCH(in[0].dtype, T, scalar_kernel<T>(op, in[0], p.f("scalar"), out[0]));
        });
  }
  return 0;
}();

}  // namespace
}  // namespace loom
