// Gradients of elementwise, reduction, product and shape operators, attached
// to the ops registered in their own files. Broadcast inputs receive the
// output gradient summed over the broadcast axes (in a fixed order).
#include "ops/common.h"
#include "ops/softmax_rows.h"
#include "ops/linalg/gemm.h"

namespace loom {
namespace {

// dst = f(i) reduced to dst's shape, where f is evaluated over the output.
template <typename T, typename F>
void reduce_fn_to(const TBlob &dst, const Shape &out_shape, F &&f) {
  std::vector<double> acc(static_cast<size_t>(dst.size()), 0.0);
  BroadcastIndexer ix(dst.shape, out_shape);
  int64_t n = out_shape.size();
  for (int64_t i = 0; i < n; ++i) acc[ix(i)] += f(i);
  T *d = dst.ptr<T>();
  for (int64_t i = 0; i < dst.size(); ++i) d[i] = static_cast<T>(acc[i]);
}

enum class BinGrad { Add, Subtract, Multiply, Divide, Power, Maximum, Minimum };

// d(lhs op rhs)/d(side) times the incoming gradient gy.
inline double binary_grad(BinGrad op, int side, double x, double y, double gy) {
  switch (op) {
    case BinGrad::Add: return gy;
    case BinGrad::Subtract: return side == 0 ? gy : -gy;
    case BinGrad::Multiply: return side == 0 ? gy * y : gy * x;
    case BinGrad::Divide: return side == 0 ? gy / y : -gy * x / (y * y);
    case BinGrad::Power: return side == 0 ? gy * y * std::pow(x, y - 1) : gy * std::pow(x, y) * std::log(x);
    // MXNet's _backward_maximum: gy * (x >= y) for lhs, gy * (x < y) for rhs
    // (minimum: <= and >). Ties go to lhs; where x or y is NaN neither side
    // takes gy, and a NaN gy reaches both sides (0 * NaN).
    case BinGrad::Maximum: return gy * (side == 0 ? double(x >= y) : double(x < y));
    default: return gy * (side == 0 ? double(x <= y) : double(x > y));
  }
}

// add and subtract need no value of the forward pass (MXNet's ElemwiseGradUseNone:
// the executor then keeps neither input nor the output for them, so a residual add's
// inputs are freed after the forward add and its output can be a relu's in place);
// the others need the inputs but not the output (ElemwiseGradUseIn).
void set_binary_grad(const char *name, BinGrad op) {
  const bool linear = op == BinGrad::Add || op == BinGrad::Subtract;
  OpDef &def = Registry::get().add(name);
  def.set_backward_uses(linear ? kBwdNone : kBwdInputs);
  def.set_backward([op, linear](const OpContext &, const Params &, const BlobList &in, const BlobList &,
                                const BlobList &og, const BlobList &ig, const ReqList &req) {
    LOOM_FLOAT_SWITCH(og[0].dtype, T, {
      const Shape &os = og[0].shape;
      BroadcastIndexer il(in[0].shape, os), ir(in[1].shape, os);
      const T *a = in[0].ptr<T>();
      const T *b = in[1].ptr<T>();
      const T *g = og[0].ptr<T>();
      const bool same = in[0].shape == os && in[1].shape == os;
      for (int side = 0; side < 2; ++side) {
        if (!req[side]) continue;
        T *d = ig[side].ptr<T>();
        if (same) {  // no broadcast: one term per element, rounded as the sum below would be
          if (op == BinGrad::Add || (op == BinGrad::Subtract && side == 0)) {
            parallel_for(os.size(), [&](int64_t i) { d[i] = g[i]; });
          } else if (op == BinGrad::Subtract) {
            parallel_for(os.size(), [&](int64_t i) { d[i] = -g[i]; });
          } else {
            parallel_for(os.size(), [&](int64_t i) {
              d[i] = static_cast<T>(binary_grad(op, side, a[i], b[i], g[i]));
            });
          }
          continue;
        }
        if (linear) {  // the inputs' values are not kept: only their shapes are used
          const double sign = op == BinGrad::Subtract && side == 1 ? -1.0 : 1.0;
          reduce_fn_to<T>(ig[side], os, [&](int64_t i) -> double { return sign * double(g[i]); });
          continue;
        }
        reduce_fn_to<T>(ig[side], os, [&](int64_t i) -> double {
          return binary_grad(op, side, a[il(i)], b[ir(i)], g[i]);
        });
      }
    });
  });
}

// Unary gradients from the input x, output y and incoming gradient g.
struct UnaryGrad {
  const char *name;
  // What f reads of the forward pass (MXNet's ElemwiseGradUseNone/In/Out): the
  // executor keeps only that, and the kernel reads nothing else (0 is passed).
  uint8_t uses;
  double (*f)(double x, double y, double g);
};
const UnaryGrad kUnaryGrads[] = {
    {"negative", kBwdNone, [](double, double, double g) { return -g; }},
    {"abs", kBwdInputs, [](double x, double, double g) { return g * double((x > 0) - (x < 0)); }},  // g * sign(x)
    {"exp", kBwdOutputs, [](double, double y, double g) { return g * y; }},
    {"log", kBwdInputs, [](double x, double, double g) { return g / x; }},
    {"sqrt", kBwdOutputs, [](double, double y, double g) { return g / (2 * y); }},
    {"square", kBwdInputs, [](double x, double, double g) { return 2 * x * g; }},
    // MXNet: g * relu_grad(y), relu_grad(NaN) = NaN; y > 0 exactly when x > 0.
    {"relu", kBwdInputs, [](double x, double, double g) { return g * (x != x ? x : (x > 0 ? 1.0 : 0.0)); }},
    {"sigmoid", kBwdOutputs, [](double, double y, double g) { return g * y * (1 - y); }},
    {"tanh", kBwdOutputs, [](double, double y, double g) { return g * (1 - y * y); }},
    {"copy", kBwdNone, [](double, double, double g) { return g; }},
    // Piecewise constant: zero gradient (as in MXNet and PyTorch).
    {"ceil", kBwdNone, [](double, double, double) { return 0.0; }},
    {"floor", kBwdNone, [](double, double, double) { return 0.0; }},
    {"round", kBwdNone, [](double, double, double) { return 0.0; }},
    {"sign", kBwdNone, [](double, double, double) { return 0.0; }},
    {"sin", kBwdInputs, [](double x, double, double g) { return g * std::cos(x); }},
    {"cos", kBwdInputs, [](double x, double, double g) { return -g * std::sin(x); }},
    {"expm1", kBwdOutputs, [](double, double y, double g) { return g * (y + 1); }},
    {"log1p", kBwdInputs, [](double x, double, double g) { return g / (1 + x); }},
    {"softsign", kBwdInputs, [](double x, double, double g) { return g / ((1 + std::fabs(x)) * (1 + std::fabs(x))); }},
    {"rsqrt", kBwdOutputs, [](double, double y, double g) { return -0.5 * g * y * y * y; }},
    {"reciprocal", kBwdOutputs, [](double, double y, double g) { return -g * y * y; }},
    {"reshape", kBwdNone, [](double, double, double g) { return g; }},
};

struct ScalarGrad {
  const char *name;
  uint8_t uses;  // kBwdInputs where f reads x (it is 0 otherwise)
  double (*f)(double x, double s, double g);
};
const ScalarGrad kScalarGrads[] = {
    {"add_scalar", kBwdNone, [](double, double, double g) { return g; }},
    {"subtract_scalar", kBwdNone, [](double, double, double g) { return g; }},
    {"rsubtract_scalar", kBwdNone, [](double, double, double g) { return -g; }},
    {"multiply_scalar", kBwdNone, [](double, double s, double g) { return g * s; }},
    {"divide_scalar", kBwdNone, [](double, double s, double g) { return g / s; }},
    {"power_scalar", kBwdInputs, [](double x, double s, double g) { return g * s * std::pow(x, s - 1); }},
    {"rdivide_scalar", kBwdInputs, [](double x, double s, double g) { return -g * s / (x * x); }},
    {"rpower_scalar", kBwdInputs, [](double x, double s, double g) { return g * std::pow(s, x) * std::log(s); }},
    {"maximum_scalar", kBwdInputs, [](double x, double s, double g) { return g * double(x >= s); }},
    {"minimum_scalar", kBwdInputs, [](double x, double s, double g) { return g * double(x <= s); }},
};

const int kRegistered = [] {
  auto &reg = Registry::get();
  const std::pair<const char *, BinGrad> binaries[] = {
      {"add", BinGrad::Add},         {"subtract", BinGrad::Subtract}, {"multiply", BinGrad::Multiply},
      {"divide", BinGrad::Divide},   {"power", BinGrad::Power},       {"maximum", BinGrad::Maximum},
      {"minimum", BinGrad::Minimum}};
  for (const auto &b : binaries) set_binary_grad(b.first, b.second);
  // clip (MXNet's clip_grad): 0 where x > a_max or x < a_min, else the gradient,
  // so a NaN x passes it. The bounds are float32, as MXNet's ClipParam holds them.
  reg.add("clip").set_backward([](const OpContext &, const Params &p, const BlobList &in, const BlobList &,
                                  const BlobList &og, const BlobList &ig, const ReqList &req) {
    if (!req[0]) return;
    const double lo = static_cast<float>(p.f("a_min")), hi = static_cast<float>(p.f("a_max"));
    LOOM_FLOAT_SWITCH(in[0].dtype, T, {
      const T *x = in[0].ptr<T>(), *g = og[0].ptr<T>();
      T *d = ig[0].ptr<T>();
      parallel_for(in[0].size(), [&](int64_t i) { d[i] = x[i] > hi || x[i] < lo ? T(0) : g[i]; });
    });
  });

  for (const UnaryGrad &u : kUnaryGrads) {
    auto f = u.f;
    const bool ux = u.uses & kBwdInputs, uy = u.uses & kBwdOutputs;
    OpDef &def = reg.add(u.name);
    def.set_backward_uses(u.uses);
    def.set_backward([f, ux, uy](const OpContext &, const Params &, const BlobList &in, const BlobList &out,
                                 const BlobList &og, const BlobList &ig, const ReqList &req) {
      if (!req[0]) return;
      LOOM_FLOAT_SWITCH(in[0].dtype, T, {
        const T *x = in[0].ptr<T>();
        const T *y = out[0].ptr<T>();
        const T *g = og[0].ptr<T>();
        T *d = ig[0].ptr<T>();
        parallel_for(in[0].size(), [&](int64_t i) {
          d[i] = static_cast<T>(f(ux ? double(x[i]) : 0.0, uy ? double(y[i]) : 0.0, g[i]));
        });
      });
    });
  }
  for (const ScalarGrad &u : kScalarGrads) {
    auto f = u.f;
    const bool ux = u.uses & kBwdInputs;
    OpDef &def = reg.add(u.name);
    def.set_backward_uses(u.uses);
    def.set_backward([f, ux](const OpContext &, const Params &p, const BlobList &in, const BlobList &,
                             const BlobList &og, const BlobList &ig, const ReqList &req) {
      if (!req[0]) return;
      LOOM_FLOAT_SWITCH(in[0].dtype, T, {
        // The scalar in the array's type, as the forward pass and MXNet use it.
        const double s = static_cast<double>(static_cast<T>(p.f("scalar")));
        const T *x = in[0].ptr<T>();
        const T *g = og[0].ptr<T>();
        T *d = ig[0].ptr<T>();
        parallel_for(in[0].size(), [&](int64_t i) { d[i] = static_cast<T>(f(ux ? double(x[i]) : 0.0, s, g[i])); });
      });
    });
  }

  // dot: dA = dC . op(B)^T, dB = op(A)^T . dC, respecting transposes (2-D); N-D
  // and 1-D operands are the (m, k) x (k, n) product of their flattened forms.
  reg.add("dot").set_backward([](const OpContext &, const Params &p, const BlobList &in,
                                 const BlobList &, const BlobList &og, const BlobList &ig,
                                 const ReqList &req) {
    bool ta = p.b("transpose_a"), tb = p.b("transpose_b");
    const Shape &as = in[0].shape, &bs = in[1].shape;
    int64_t k = ta ? as.d[0] : as.d[as.ndim - 1], m = 1, n = 1;
    if (ta) m = as.d[1];
    else
      for (int i = 0; i + 1 < as.ndim; ++i) m *= as.d[i];
    if (tb) n = bs.d[0];
    else
      for (int i = 1; i < bs.ndim; ++i) n *= bs.d[i];
    LOOM_FLOAT_SWITCH(in[0].dtype, T, {
      matmul_backward<T>(ta, tb, m, n, k, in[0].ptr<T>(), in[1].ptr<T>(), og[0].ptr<T>(),
                         req[0] ? ig[0].ptr<T>() : nullptr, req[1] ? ig[1].ptr<T>() : nullptr);
    });
  });

  // where: x takes the gradient where condition is non-zero, y elsewhere
  // (each summed over its broadcast axes); the condition gets none.
  reg.add("where").set_backward_uses(kBwdInputs).set_backward(
      [](const OpContext &, const Params &, const BlobList &in, const BlobList &,
         const BlobList &og, const BlobList &ig, const ReqList &req) {
        if (req[0]) LOOM_FLOAT_SWITCH(ig[0].dtype, C, {
            std::fill(ig[0].ptr<C>(), ig[0].ptr<C>() + ig[0].size(), C(0));
          });
        const Shape &os = og[0].shape;
        WhereCondIndexer ic(in[0].shape, os);
        LOOM_DTYPE_SWITCH(in[0].dtype, C, {
          const C *c = in[0].ptr<C>();
          LOOM_FLOAT_SWITCH(og[0].dtype, T, {
            const T *g = og[0].ptr<T>();
            for (int side = 1; side <= 2; ++side) {
              if (!req[side]) continue;
              bool want = side == 1;
              reduce_fn_to<T>(ig[side], os, [&](int64_t i) -> double {
                return (c[ic(i)] != C(0)) == want ? double(g[i]) : 0.0;
              });
            }
          });
        });
      });

  // cast: the gradient cast back to the input's dtype.
  reg.add("cast").set_backward_uses(kBwdNone).set_backward(
      [](const OpContext &, const Params &, const BlobList &in, const BlobList &,
         const BlobList &og, const BlobList &ig, const ReqList &req) {
        if (!req[0]) return;
        LOOM_CHECK(dtype_is_float(in[0].dtype), LOOM_ERR_DTYPE,
                   "cast: no gradient flows to an input of dtype ", dtype_name(in[0].dtype));
        LOOM_FLOAT_SWITCH(in[0].dtype, D, {
          LOOM_DTYPE_SWITCH(og[0].dtype, S, {
            const S *g = og[0].ptr<S>();
            D *d = ig[0].ptr<D>();
            parallel_for(ig[0].size(), [&](int64_t i) { d[i] = static_cast<D>(g[i]); });
          });
        });
      });

  // softmax / log_softmax along an axis.
  for (const char *name : {"softmax", "log_softmax"}) {
    bool lg = std::string(name) == "log_softmax";
    reg.add(name).set_backward([lg](const OpContext &, const Params &p, const BlobList &in,
                                    const BlobList &out, const BlobList &og, const BlobList &ig,
                                    const ReqList &req) {
      if (!req[0]) return;
      int ax = normalize_axis(p.i("axis"), in[0].shape.ndim, p.op().name);
      int64_t outer, mid, inner;
      split_axes(in[0].shape, ax, ax + 1, &outer, &mid, &inner);
      double t = p.f("temperature");
      LOOM_FLOAT_SWITCH(in[0].dtype, T, {
        const T *y = out[0].ptr<T>();
        const T *g = og[0].ptr<T>();
        T *d = ig[0].ptr<T>();
        // Positions are independent: ranges of about 32K values.
        const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 15) / std::max<int64_t>(mid, 1));
        parallel_ranges(outer * inner, grain, [&](int64_t b, int64_t e) {
          for (int64_t idx = b; idx < e; ++idx) {
            const int64_t o = idx / inner, j = idx % inner;
            if (inner == 1) {  // a row of unit stride
              softmax_grad_row(y + o * mid, g + o * mid, d + o * mid, mid, t, lg);
              continue;
            }
            double s = 0;
            for (int64_t c = 0; c < mid; ++c) {
              int64_t at = (o * mid + c) * inner + j;
              s += lg ? double(g[at]) : double(g[at]) * double(y[at]);
            }
            for (int64_t c = 0; c < mid; ++c) {
              int64_t at = (o * mid + c) * inner + j;
              double v = lg ? double(g[at]) - std::exp(double(y[at])) * s
                            : double(y[at]) * (double(g[at]) - s);
              d[at] = static_cast<T>(v / t);
            }
          }
        });
      });
    });
  }

  // transpose: the gradient is transposed back.
  reg.add("transpose").set_backward([](const OpContext &, const Params &p, const BlobList &in,
                                       const BlobList &, const BlobList &og, const BlobList &ig,
                                       const ReqList &req) {
    if (!req[0]) return;
    const Shape &is = in[0].shape;
    std::vector<int> axes;
    if (p.tuple("axes").empty())
      for (int i = is.ndim - 1; i >= 0; --i) axes.push_back(i);
    else
      for (int64_t a : p.tuple("axes")) axes.push_back(normalize_axis(a, is.ndim, "transpose"));
    std::vector<int64_t> istride(is.ndim, 1);
    for (int i = is.ndim - 2; i >= 0; --i) istride[i] = istride[i + 1] * is.d[i + 1];
    const Shape &os = og[0].shape;
    LOOM_FLOAT_SWITCH(in[0].dtype, T, {
      const T *g = og[0].ptr<T>();
      T *d = ig[0].ptr<T>();
      for (int64_t flat = 0; flat < og[0].size(); ++flat) {
        int64_t src = 0, f = flat;
        for (int i = os.ndim - 1; i >= 0; --i) {
          src += (f % os.d[i]) * istride[axes[i]];
          f /= os.d[i];
        }
        d[src] = g[flat];
      }
    });
  });
  return 0;
}();

}  // namespace
}  // namespace loom
