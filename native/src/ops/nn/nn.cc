// Neural-network layers with their gradients: FullyConnected, Activation,
// SoftmaxOutput, Flatten (MXNet's definitions and parameter names).
#include "ops/common.h"
#include "ops/vecmath.h"
#include "ops/softmax_rows.h"
#include "ops/linalg/gemm.h"

namespace loom {
namespace {

// ---------------------------------------------------------------- FullyConnected
// out (N, H) = data (N, K) . weight (H, K)^T + bias (H); data is flattened to
// 2-D when flatten=true, else only its last axis is the feature axis.
void fc_dims(const Params &p, const Shape &data, int64_t *n, int64_t *k) {
  if (p.b("flatten")) {
    *n = data.ndim ? data.d[0] : 1;
    *k = *n ? data.size() / *n : 1;
    if (data.ndim) {
      *k = 1;
      for (int i = 1; i < data.ndim; ++i) *k *= data.d[i];
    }
  } else {
    *k = data.ndim ? data.d[data.ndim - 1] : 1;
    *n = 1;
    for (int i = 0; i + 1 < data.ndim; ++i) *n *= data.d[i];
  }
}

const int kFullyConnected = [] {
  OpDef &d = Registry::get().add("FullyConnected");
  d.set_doc("Fully connected layer: out = data . weight^T + bias. With flatten (default) data "
            "(N, ...) is flattened to (N, K); weight is (num_hidden, K), bias (num_hidden,).")
      .set_inputs({"data", "weight", "bias"})
      .required("num_hidden", ParamType::Int, "Number of output units.")
      .param("no_bias", ParamType::Bool, "false", "Leave out the bias input.")
      .param("flatten", ParamType::Bool, "true",
             "Flatten data to 2-D; otherwise apply to the last axis only.");
  d.float_only = true;
  d.num_inputs = [](const Params &p) { return p.b("no_bias") ? 2 : 3; };
  d.optional_inputs = 1;
  d.backward_uses = kBwdInputs;
  d.infer_inputs = [](const Params &p, ShapeList &in, SmallVec<char, 4> &known, const ShapeList &,
                      const SmallVec<char, 4> &) {
    int64_t h = p.i("num_hidden");
    if (!known[0] || in[0].ndim < 1) return;
    int64_t n, k;
    fc_dims(p, in[0], &n, &k);
    if (!known[1]) in[1] = Shape{h, k}, known[1] = 1;
    if (in.size() > 2 && !known[2]) in[2] = Shape{h}, known[2] = 1;
  };
  d.set_infer([](const Params &p, const ShapeList &in, const DTypeList &dt, ShapeList &out,
                 DTypeList &odt) {
    odt[0] = same_dtype(p, dt);
    int64_t h = p.i("num_hidden");
    LOOM_CHECK(h > 0, LOOM_ERR_INVALID_ARGUMENT, p.op().name, ": num_hidden must be > 0, got ", h);
    const Shape &x = in[0];
    if (x.ndim < 1) shape_fail(p, "data must have at least 1 dimension, got " + x.str());
    int64_t n, k;
    fc_dims(p, x, &n, &k);
    if (in[1] != Shape{h, k})
      shape_fail(p, "weight has shape " + in[1].str() + ", expected " + Shape{h, k}.str() +
                        " for data " + x.str() + " and num_hidden=" + std::to_string(h));
    if (in.size() > 2 && in[2] != Shape{h})
      shape_fail(p, "bias has shape " + in[2].str() + ", expected " + Shape{h}.str());
    Shape o;
    if (p.b("flatten")) {
      o = Shape{x.d[0], h};
    } else {
      o = x;
      o.d[o.ndim - 1] = h;
    }
    out[0] = o;
  });
  d.set_compute([](const OpContext &, const Params &p, const BlobList &in, const BlobList &out) {
    int64_t n, k, h = p.i("num_hidden");
    fc_dims(p, in[0].shape, &n, &k);
    LOOM_FLOAT_SWITCH(in[0].dtype, T, {
      T *o = out[0].ptr<T>();
      double beta = 0;
      if (in.size() > 2) {
        const T *b = in[2].ptr<T>();
        for (int64_t i = 0; i < n; ++i) std::copy(b, b + h, o + i * h);
        beta = 1;
      }
      gemm<T>(false, true, n, h, k, 1.0, in[0].ptr<T>(), k, in[1].ptr<T>(), k, beta, o, h);
    });
  });
  d.set_backward([](const OpContext &, const Params &p, const BlobList &in, const BlobList &,
                    const BlobList &og, const BlobList &ig, const ReqList &req) {
    int64_t n, k, h = p.i("num_hidden");
    fc_dims(p, in[0].shape, &n, &k);
    LOOM_FLOAT_SWITCH(in[0].dtype, T, {
      const T *dy = og[0].ptr<T>();
      if (req[0]) gemm<T>(false, false, n, k, h, 1.0, dy, h, in[1].ptr<T>(), k, 0.0, ig[0].ptr<T>(), k);
      if (req[1]) gemm<T>(true, false, h, k, n, 1.0, dy, h, in[0].ptr<T>(), k, 0.0, ig[1].ptr<T>(), k);
      if (in.size() > 2 && req[2]) {
        // db[j] = sum over rows i (in row order, in double) of dy[i, j]: rows are
        // read in order, each thread adding into its own columns, so the bits do
        // not depend on the threads (a column at a time strides through memory).
        T *db = ig[2].ptr<T>();
        std::vector<double> acc(static_cast<size_t>(h), 0.0);
        parallel_ranges(h, 512, [&](int64_t j0, int64_t j1) {
          double *a = acc.data();
          for (int64_t i = 0; i < n; ++i) {
            const T *row = dy + i * h;
            for (int64_t j = j0; j < j1; ++j) a[j] += double(row[j]);
          }
          for (int64_t j = j0; j < j1; ++j) db[j] = static_cast<T>(a[j]);
        });
      }
    });
  });
  return 0;
}();

// ---------------------------------------------------------------- Activation
enum class Act { Relu, Sigmoid, Tanh, SoftRelu, SoftSign };
Act act_of(const Params &p) {
  const std::string &a = p.s("act_type");
  if (a == "relu") return Act::Relu;
  if (a == "sigmoid") return Act::Sigmoid;
  if (a == "tanh") return Act::Tanh;
  if (a == "softrelu") return Act::SoftRelu;
  return Act::SoftSign;
}

// float32 spans through the vectorised approximations (AVX2 where the CPU
// has it); float64 keeps libm.
LOOM_VECTOR_CLONES void tanh_span(const float *x, float *y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = tanh_approx(x[i]);
}
LOOM_VECTOR_CLONES void sigmoid_span(const float *x, float *y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = 1.0f / (1.0f + exp_approx(-x[i]));
}
// MXNet's relu (mshadow_op.h) passes NaN through: IsNan(x) || x > 0 ? x : 0.
// Its gradient is relu_grad(y) * dy with relu_grad(NaN) = NaN, so a NaN output
// or a NaN incoming gradient reaches dx (0 * NaN is NaN) instead of vanishing.
LOOM_VECTOR_CLONES void relu_span(const float *x, float *y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = (x[i] > 0.0f || x[i] != x[i]) ? x[i] : 0.0f;
}
// Backward from the output: dx = g(y) dy.
LOOM_VECTOR_CLONES void tanh_grad_span(const float *y, const float *dy, float *dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dx[i] = (1.0f - y[i] * y[i]) * dy[i];
}
LOOM_VECTOR_CLONES void sigmoid_grad_span(const float *y, const float *dy, float *dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dx[i] = y[i] * (1.0f - y[i]) * dy[i];
}
LOOM_VECTOR_CLONES void relu_grad_span(const float *y, const float *dy, float *dx, int64_t n) {
  for (int64_t i = 0; i < n; ++i) dx[i] = dy[i] * relu_grad(y[i]);
}
bool float_span(const float *x, float *y, int64_t n, Act a) {
  switch (a) {
    case Act::Relu: relu_span(x, y, n); return true;
    case Act::Sigmoid: sigmoid_span(x, y, n); return true;
    case Act::Tanh: tanh_span(x, y, n); return true;
    default: return false;
  }
}
bool float_grad_span(const float *y, const float *dy, float *dx, int64_t n, Act a) {
  switch (a) {
    case Act::Relu: relu_grad_span(y, dy, dx, n); return true;
    case Act::Sigmoid: sigmoid_grad_span(y, dy, dx, n); return true;
    case Act::Tanh: tanh_grad_span(y, dy, dx, n); return true;
    default: return false;
  }
}
template <typename T>
bool float_span(const T *, T *, int64_t, Act) { return false; }
template <typename T>
bool float_grad_span(const T *, const T *, T *, int64_t, Act) { return false; }

const int kActivation = [] {
  OpDef &d = Registry::get().add("Activation");
  d.set_doc("Elementwise activation: relu max(x,0), sigmoid 1/(1+e^-x), tanh, softrelu "
            "log(1+e^x), softsign x/(1+|x|).")
      .set_inputs({"data"})
      .param("act_type", ParamType::Enum, "relu", "Activation function.",
             {"relu", "sigmoid", "tanh", "softrelu", "softsign"})
      .set_inplace({{0, 0}})
      .set_backward_inplace({{0, 0}});
  d.float_only = true;
  d.infer_inputs = same_shape_hint;
  d.backward_uses = kBwdOutputs;
  d.set_infer([](const Params &, const ShapeList &in, const DTypeList &dt, ShapeList &out,
                 DTypeList &odt) {
    out[0] = in[0];
    odt[0] = dt[0];
  });
  // Computed in the element type: float32 relu/sigmoid/tanh go through the
  // vectorised spans above, the rest through float libm.
  d.set_compute([](const OpContext &, const Params &p, const BlobList &in, const BlobList &out) {
    Act a = act_of(p);
    LOOM_FLOAT_SWITCH(in[0].dtype, T, {
      const T *x = in[0].ptr<T>();
      T *y = out[0].ptr<T>();
      parallel_ranges(in[0].size(), 1 << 15, [&](int64_t b, int64_t n) {
        if (float_span(x + b, y + b, n - b, a)) return;
        switch (a) {
          case Act::Relu:
            for (int64_t i = b; i < n; ++i) y[i] = (x[i] > T(0) || x[i] != x[i]) ? x[i] : T(0);
            break;
          case Act::Sigmoid:
            for (int64_t i = b; i < n; ++i) y[i] = T(1) / (T(1) + std::exp(-x[i]));
            break;
          case Act::Tanh:
            for (int64_t i = b; i < n; ++i) y[i] = std::tanh(x[i]);
            break;
          case Act::SoftRelu:
            for (int64_t i = b; i < n; ++i) y[i] = x[i] > T(20) ? x[i] : std::log1p(std::exp(x[i]));
            break;
          default:
            for (int64_t i = b; i < n; ++i) y[i] = x[i] / (T(1) + std::fabs(x[i]));
        }
      });
    });
  });
  d.set_backward([](const OpContext &, const Params &p, const BlobList &in, const BlobList &out,
                    const BlobList &og, const BlobList &ig, const ReqList &req) {
    if (!req[0]) return;
    Act a = act_of(p);
    LOOM_FLOAT_SWITCH(in[0].dtype, T, {
      // From the output only, so the input may be overwritten (in place).
      const T *y = out[0].ptr<T>();
      const T *dy = og[0].ptr<T>();
      T *dx = ig[0].ptr<T>();
      if (std::is_same<T, float>::value && (a == Act::Relu || a == Act::Sigmoid || a == Act::Tanh)) {
        parallel_ranges(in[0].size(), 1 << 15, [&](int64_t b, int64_t n) {
          float_grad_span(y + b, dy + b, dx + b, n - b, a);
        });
        return;
      }
      parallel_for(in[0].size(), [&](int64_t i) {
        double g, v = double(y[i]);
        switch (a) {
          case Act::Relu: g = relu_grad(v); break;
          case Act::Sigmoid: g = v * (1 - v); break;
          case Act::Tanh: g = 1 - v * v; break;
          case Act::SoftRelu: g = -std::expm1(-v); break;  // sigmoid(x) = 1 - e^-y
          default: {
            double t = 1 - std::fabs(v);  // 1/(1+|x|)
            g = t * t;
          }
        }
        dx[i] = static_cast<T>(g * double(dy[i]));
      });
    });
  });
  return 0;
}();

// ---------------------------------------------------------------- SoftmaxOutput
// MXNet 1.9's SoftmaxOutput (src/operator/softmax_output-inl.h), case by case:
//  * multi_output: data (N, K, rest...) is softmaxed over axis 1, labels (N, rest);
//  * preserve_shape: softmax over the last axis, one label per row;
//  * otherwise the data is flattened to (N, size/N) and softmaxed per sample
//    (FlatTo2D), whatever its rank; the label shape is data.shape[:-1] as MXNet
//    infers it, and row y takes label y.
// Backward ignores the incoming gradient unless out_grad is set. The gradient is
// (p - onehot(label)) (label smoothing moves alpha from the label to the other
// classes), times grad_scale / count: count is 1 (null), the number of labels
// (batch; N with multi_output) or the labels whose integer value differs from
// ignore_label (valid; counted even when use_ignore is off, as MXNet does).
// multi_output divides by the spatial size too, except with valid.
// A label with data's own shape is a probability: grad = (p - label) * grad_scale.
struct SoftmaxDims {
  int64_t outer, k, inner;
};

// Positions per thread range: about 32K values each (positions are independent,
// so the split never changes a result).
int64_t softmax_grain(const SoftmaxDims &s) { return std::max<int64_t>(1, (int64_t(1) << 15) / std::max<int64_t>(s.k, 1)); }

// Softmax over the k entries of each (outer, inner) position, k strided by inner;
// accumulated in double (SoftmaxOutput and SoftmaxActivation). Float32 rows of
// unit stride take softmax_row_f32.
void softmax_forward(const TBlob &in, const TBlob &out, const SoftmaxDims &s) {
  LOOM_FLOAT_SWITCH(in.dtype, T, {
    const T *x = in.ptr<T>();
    T *y = out.ptr<T>();
    // Each exponential is computed once and kept (in double) for the division.
    parallel_ranges(s.outer * s.inner, softmax_grain(s), [&](int64_t b, int64_t e) {
      std::vector<double> ex;
      for (int64_t idx = b; idx < e; ++idx) {
        int64_t o = idx / s.inner, j = idx % s.inner;
        const T *xr = x + o * s.k * s.inner + j;
        T *yr = y + o * s.k * s.inner + j;
        if (std::is_same<T, float>::value && s.inner == 1 &&
            softmax_row_f32(reinterpret_cast<const float *>(xr), reinterpret_cast<float *>(yr), s.k))
          continue;
        ex.resize(static_cast<size_t>(s.k));
        double mx = -INFINITY, sum = 0;
        for (int64_t c = 0; c < s.k; ++c) mx = std::max(mx, double(xr[c * s.inner]));
        for (int64_t c = 0; c < s.k; ++c) sum += (ex[c] = std::exp(double(xr[c * s.inner]) - mx));
        for (int64_t c = 0; c < s.k; ++c) yr[c * s.inner] = static_cast<T>(ex[c] / sum);
      }
    });
  });
}

SoftmaxDims sm_dims(const Params &p, const Shape &s) {
  SoftmaxDims d{1, 1, 1};
  if (p.b("multi_output")) {
    split_axes(s, 1, 2, &d.outer, &d.k, &d.inner);
  } else if (p.b("preserve_shape")) {
    d.k = s.ndim ? s.d[s.ndim - 1] : 1;
    d.outer = d.k ? s.size() / d.k : 0;
  } else {
    d.outer = s.ndim ? s.d[0] : 1;
    d.k = d.outer ? s.size() / d.outer : 0;
  }
  return d;
}

// The label shapes MXNet accepts for data `x` (other than x's own shape).
std::vector<Shape> sm_label_shapes(const Params &p, const Shape &x) {
  std::vector<Shape> ok;
  if (p.b("multi_output")) {
    if (x.ndim < 2) return ok;
    int64_t rest = x.d[0] && x.d[1] ? x.size() / x.d[0] / x.d[1] : 0;
    ok.push_back(Shape{x.d[0], rest});
    Shape l2;
    l2.push_back(x.d[0]);
    for (int i = 2; i < x.ndim; ++i) l2.push_back(x.d[i]);
    ok.push_back(l2);
    Shape l3 = x;
    l3.d[1] = 1;
    ok.push_back(l3);
  } else {
    Shape want;
    for (int i = 0; i + 1 < x.ndim; ++i) want.push_back(x.d[i]);
    ok.push_back(want);
    if (want.ndim == 1) ok.push_back(Shape{want.d[0], 1});  // (N, 1) column of labels
  }
  return ok;
}

const int kSoftmaxOutput = [] {
  OpDef &d = Registry::get().add("SoftmaxOutput");
  d.set_doc("Softmax with a cross-entropy gradient (MXNet's SoftmaxOutput): the output is "
            "softmax(data) per sample (data flattened to (N, size/N)), over axis 1 with "
            "multi_output, or over the last axis with preserve_shape; the backward pass gives "
            "(softmax - onehot(label)) * grad_scale / norm and ignores the incoming gradient "
            "unless out_grad is set.")
      .set_inputs({"data", "label"})
      .param("grad_scale", ParamType::Float, "1.0", "Scales the gradient.")
      .param("ignore_label", ParamType::Float, "-1.0", "Label whose gradient is zero (use_ignore).")
      .param("use_ignore", ParamType::Bool, "false", "Skip samples labelled ignore_label.")
      .param("multi_output", ParamType::Bool, "false",
             "Softmax over axis 1 of (N, C, ...) with labels (N, ...).")
      .param("preserve_shape", ParamType::Bool, "false", "Softmax over the last axis.")
      .param("normalization", ParamType::Enum, "null", "Divide the gradient by this count.",
             {"null", "batch", "valid"})
      .param("out_grad", ParamType::Bool, "false",
             "Multiply the gradient by the incoming output gradient.")
      .param("smooth_alpha", ParamType::Float, "0.0",
             "Label smoothing: alpha is taken from the label's class and spread over the others.");
  d.float_only = true;
  d.backward_uses = kBwdAll;
  d.infer_inputs = [](const Params &p, ShapeList &in, SmallVec<char, 4> &known,
                      const ShapeList &out, const SmallVec<char, 4> &out_known) {
    if (!known[0] && out_known[0]) in[0] = out[0], known[0] = 1;
    if (!known[0] || known[1] || in[0].ndim < 1) return;
    auto ok = sm_label_shapes(p, in[0]);
    if (ok.empty()) return;
    in[1] = ok[0];
    known[1] = 1;
  };
  d.set_infer([](const Params &p, const ShapeList &in, const DTypeList &dt, ShapeList &out,
                 DTypeList &odt) {
    const Shape &x = in[0], &l = in[1];
    if (x.ndim < 1) shape_fail(p, "data must have at least 1 dimension, got " + x.str());
    if (p.b("multi_output") && x.ndim < 2)
      shape_fail(p, "multi_output needs data (N, C, ...), got " + x.str());
    double alpha = p.f("smooth_alpha");
    if (!(alpha >= 0 && alpha <= 1))
      shape_fail(p, "smooth_alpha must lie in [0, 1], got " + std::to_string(alpha));
    if (l != x) {
      auto ok = sm_label_shapes(p, x);
      if (std::find(ok.begin(), ok.end(), l) == ok.end())
        shape_fail(p, "label has shape " + l.str() + ", expected " + ok[0].str() +
                          " (or the data's shape, for probabilities) for data " + x.str());
    }
    out[0] = x;
    odt[0] = dt[0];
  });
  d.set_compute([](const OpContext &, const Params &p, const BlobList &in, const BlobList &out) {
    softmax_forward(in[0], out[0], sm_dims(p, in[0].shape));
  });
  d.set_backward([](const OpContext &, const Params &p, const BlobList &in, const BlobList &out,
                    const BlobList &og, const BlobList &ig, const ReqList &req) {
    const double scale = p.f("grad_scale"), alpha = p.f("smooth_alpha");
    const bool out_grad = p.b("out_grad");
    LOOM_FLOAT_SWITCH(in[0].dtype, T, {
      const T *y = out[0].ptr<T>();
      const T *lab = in[1].ptr<T>();
      const T *dy = out_grad ? og[0].ptr<T>() : nullptr;
      if (req[1]) std::fill(ig[1].ptr<T>(), ig[1].ptr<T>() + ig[1].size(), T(0));
      if (!req[0]) return;
      T *dx = ig[0].ptr<T>();
      const int64_t total = out[0].size();
      if (in[1].shape == in[0].shape) {  // probabilities as labels: no normalization
        for (int64_t i = 0; i < total; ++i) {
          double g = (double(y[i]) - double(lab[i])) * scale;
          dx[i] = static_cast<T>(dy ? g * double(dy[i]) : g);
        }
        return;
      }
      SoftmaxDims s = sm_dims(p, in[0].shape);
      const bool multi = p.b("multi_output"), use_ignore = p.b("use_ignore");
      const int64_t nlabels = in[1].size(), used = s.outer * s.inner;
      const int ignore = static_cast<int>(p.f("ignore_label"));
      const std::string &norm = p.s("normalization");
      // MXNet compares labels with ignore_label as integers.
      auto ignored = [&](double l) { return static_cast<int>(l) == ignore; };
      for (int64_t i = 0; i < used; ++i) {
        double l = lab[i];
        if (use_ignore && ignored(l)) continue;
        LOOM_CHECK(l >= 0 && l < s.k && l == std::floor(l), LOOM_ERR_INVALID_ARGUMENT,
                   "SoftmaxOutput: label ", l, " at position ", i, " is outside [0, ", s.k, ")");
      }
      double count = 1;
      if (norm == "batch") {
        count = double(multi ? s.outer : nlabels);
      } else if (norm == "valid") {
        int64_t valid = nlabels;
        for (int64_t i = 0; i < nlabels; ++i) valid -= ignored(lab[i]) ? 1 : 0;
        count = double(std::max<int64_t>(valid, 1));
      }
      double factor = scale / count;
      if (multi && norm != "valid") factor /= double(s.inner);
      const double smooth = s.k > 1 ? alpha / double(s.k - 1) : 0.0;
      parallel_ranges(used, softmax_grain(s), [&](int64_t b, int64_t e) {
        for (int64_t idx = b; idx < e; ++idx) {
          int64_t o = idx / s.inner, j = idx % s.inner;
          double l = lab[idx];
          bool skip = use_ignore && ignored(l);
          int64_t cls = static_cast<int64_t>(l);
          if (s.inner == 1 && !dy) {  // a contiguous row: the same values, in a loop that vectorises
            T *dr = dx + o * s.k;
            const T *yr = y + o * s.k;
            if (skip) {
              std::fill(dr, dr + s.k, T(0));
              continue;
            }
            for (int64_t c = 0; c < s.k; ++c) dr[c] = static_cast<T>((double(yr[c]) - smooth) * factor);
            dr[cls] = static_cast<T>((double(yr[cls]) - (1.0 - alpha)) * factor);
            continue;
          }
          for (int64_t c = 0; c < s.k; ++c) {
            int64_t at = (o * s.k + c) * s.inner + j;
            double g = 0.0;
            if (!skip)
              g = (double(y[at]) - (c == cls ? 1.0 - alpha : smooth)) * factor;
            dx[at] = static_cast<T>(dy ? g * double(dy[at]) : g);
          }
        }
      });
    });
  });
  return 0;
}();

// ---------------------------------------------------------------- SoftmaxActivation
// MXNet's (deprecated) SoftmaxActivation: softmax per sample over everything
// after axis 0 (mode instance), or over axis 1 at each position (mode channel).
SoftmaxDims sa_dims(const Params &p, const Shape &s) {
  SoftmaxDims d{1, 1, 1};
  if (p.s("mode") == "channel") {
    split_axes(s, 1, 2, &d.outer, &d.k, &d.inner);
  } else {
    d.outer = s.ndim ? s.d[0] : 1;
    d.k = d.outer ? s.size() / d.outer : 0;
  }
  return d;
}

const int kSoftmaxActivation = [] {
  OpDef &d = Registry::get().add("SoftmaxActivation");
  d.set_doc("Softmax of each sample over all its values (mode instance), or over axis 1 at each "
            "position of (N, C, ...) data (mode channel), as MXNet's SoftmaxActivation.")
      .set_inputs({"data"})
      .param("mode", ParamType::Enum, "instance", "What to normalise over.", {"instance", "channel"});
  d.float_only = true;
  d.backward_uses = kBwdOutputs;
  d.infer_inputs = same_shape_hint;
  d.set_infer([](const Params &p, const ShapeList &in, const DTypeList &dt, ShapeList &out,
                 DTypeList &odt) {
    if (in[0].ndim < (p.s("mode") == "channel" ? 2 : 1))
      shape_fail(p, "data must be (N, C, ...) for mode " + p.s("mode") + ", got " + in[0].str());
    out[0] = in[0];
    odt[0] = dt[0];
  });
  d.set_compute([](const OpContext &, const Params &p, const BlobList &in, const BlobList &out) {
    softmax_forward(in[0], out[0], sa_dims(p, in[0].shape));
  });
  // dx = y * (dy - sum(dy * y)) over the normalised values.
  d.set_backward([](const OpContext &, const Params &p, const BlobList &, const BlobList &out,
                    const BlobList &og, const BlobList &ig, const ReqList &req) {
    if (!req[0]) return;
    SoftmaxDims s = sa_dims(p, out[0].shape);
    LOOM_FLOAT_SWITCH(out[0].dtype, T, {
      const T *y = out[0].ptr<T>();
      const T *g = og[0].ptr<T>();
      T *dx = ig[0].ptr<T>();
      parallel_for(s.outer * s.inner, [&](int64_t idx) {
        int64_t base = (idx / s.inner) * s.k * s.inner + idx % s.inner;
        if (s.inner == 1) {  // a row of unit stride
          softmax_grad_row(y + base, g + base, dx + base, s.k, 1.0, false);
          return;
        }
        double dot = 0;
        for (int64_t c = 0; c < s.k; ++c) dot += double(g[base + c * s.inner]) * double(y[base + c * s.inner]);
        for (int64_t c = 0; c < s.k; ++c) {
          int64_t at = base + c * s.inner;
          dx[at] = static_cast<T>(double(y[at]) * (double(g[at]) - dot));
        }
      }, 1 << 10);
    });
  });
  return 0;
}();

// ---------------------------------------------------------------- Flatten
const int kFlatten = [] {
  OpDef &d = Registry::get().add("Flatten");
  d.set_doc("Collapses all axes after the first: (N, d1, d2, ...) -> (N, d1*d2*...).")
      .set_inputs({"data"})
      .set_inplace({{0, 0}});
  d.backward_uses = kBwdNone;
  d.infer_inputs = nullptr;
  d.set_infer([](const Params &p, const ShapeList &in, const DTypeList &dt, ShapeList &out,
                 DTypeList &odt) {
    const Shape &x = in[0];
    if (x.ndim < 1) shape_fail(p, "data must have at least 1 dimension, got " + x.str());
    int64_t rest = 1;
    for (int i = 1; i < x.ndim; ++i) rest *= x.d[i];
    out[0] = Shape{x.d[0], rest};
    odt[0] = dt[0];
  });
  auto copy = [](const TBlob &src, const TBlob &dst) {
    size_t n = static_cast<size_t>(src.size()) * dtype_size(src.dtype);
    if (n && src.dptr != dst.dptr) std::memcpy(dst.dptr, src.dptr, n);
  };
  d.set_compute([copy](const OpContext &, const Params &, const BlobList &in, const BlobList &out) {
    copy(in[0], out[0]);
  });
  d.set_backward([copy](const OpContext &, const Params &, const BlobList &, const BlobList &,
                        const BlobList &og, const BlobList &ig, const ReqList &req) {
    if (req[0]) copy(og[0], ig[0]);
  });
  return 0;
}();

}  // namespace
}  // namespace loom
