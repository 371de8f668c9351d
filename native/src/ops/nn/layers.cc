// More layers of MXNet's set, each with its gradient: LeakyReLU (leaky, elu,
// prelu), Dropout, BlockGrad, MakeLoss, LinearRegressionOutput,
// LogisticRegressionOutput, SwapAxis, ElementWiseSum, Embedding, UpSampling
// (nearest) and SliceChannel.
#include "ops/common.h"
#include "ops/random/philox.h"

namespace loom {
namespace {

// SELU's constants (Klambauer et al.; MXNet's mshadow_op.h).
constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
constexpr double kSeluLambda = 1.0507009873554804934193349852946;

// Embedding's row for index v: truncated and clipped to [0, rows) (MXNet's Take<clip>).
inline int64_t embedding_row(double v, int64_t rows) {
  if (!(v > 0)) return 0;
  return v >= double(rows) ? rows - 1 : static_cast<int64_t>(v);
}

void same_infer(const Params &, const ShapeList &in, const DTypeList &dt, ShapeList &out,
                DTypeList &odt) {
  for (size_t j = 0; j < out.size(); ++j) {
    out[j] = in[0];
    odt[j] = dt[0];
  }
}

template <typename T>
void copy_blob(const TBlob &src, const TBlob &dst) {
  if (src.dptr != dst.dptr) std::memcpy(dst.dptr, src.dptr, static_cast<size_t>(src.size()) * sizeof(T));
}

// Regression outputs: forward f(data); backward (f(data) - label) * grad_scale / m,
// with m the number of outputs per sample (MXNet's normalisation).
void register_regression(const char *name, bool logistic, const char *doc) {
  OpDef &d = Registry::get().add(name);
  d.set_doc(doc).set_inputs({"data", "label"}).param("grad_scale", ParamType::Float, "1.0",
                                                      "Scales the gradient.");
  d.float_only = true;
  d.infer_inputs = same_shape_hint;
  d.set_infer([](const Params &p, const ShapeList &in, const DTypeList &dt, ShapeList &out,
                 DTypeList &odt) {
    if (in[1].size() != in[0].size())
      shape_fail(p, "label has shape " + in[1].str() + " but data has shape " + in[0].str() +
                        "; they need the same number of elements");
    out[0] = in[0];
    odt[0] = same_dtype(p, dt);
  });
  d.set_compute([logistic](const OpContext &, const Params &, const BlobList &in, const BlobList &out) {
    LOOM_FLOAT_SWITCH(in[0].dtype, T, {
      const T *x = in[0].ptr<T>();
      T *y = out[0].ptr<T>();
      for (int64_t i = 0; i < in[0].size(); ++i)
        y[i] = logistic ? T(1) / (T(1) + std::exp(-x[i])) : x[i];
    });
  });
  d.set_backward([](const OpContext &, const Params &p, const BlobList &in, const BlobList &out,
                    const BlobList &, const BlobList &ig, const ReqList &req) {
    const Shape &s = in[0].shape;
    double m = s.ndim > 1 ? double(s.size() / std::max<int64_t>(s.d[0], 1)) : 1.0;
    double scale = p.f("grad_scale") / m;
    LOOM_FLOAT_SWITCH(in[0].dtype, T, {
      const T *y = out[0].ptr<T>();
      const T *l = in[1].ptr<T>();
      if (req[0]) {
        T *dx = ig[0].ptr<T>();
        for (int64_t i = 0; i < in[0].size(); ++i) dx[i] = static_cast<T>((double(y[i]) - double(l[i])) * scale);
      }
      if (req[1]) std::fill(ig[1].ptr<T>(), ig[1].ptr<T>() + ig[1].size(), T(0));
    });
  });
}

const int kRegistered = [] {
  auto &reg = Registry::get();

  // ------------------------------------------------------------ LeakyReLU
  OpDef &lr = reg.add("LeakyReLU");
  lr.set_doc("Leaky activations (MXNet's LeakyReLU): leaky x>0 ? x : slope*x; elu x>0 ? x : "
             "slope*(e^x-1); prelu x>0 ? x : gamma[c]*x with a learned gamma per channel (axis 1); "
             "selu 1.0507*(x>0 ? x : 1.6733*(e^x-1)); gelu x*Phi(x); rrelu x>0 ? x : a*x "
             "with a slope a drawn uniformly from [lower_bound, upper_bound) per element in "
             "training (kept as the hidden output mask, which the gradient uses: MXNet's rule, "
             "1 where the output is positive, else the mask) and (lower_bound+upper_bound)/2 "
             "in prediction.")
      .set_inputs({"data", "gamma"})
      .param("act_type", ParamType::Enum, "leaky", "Variant.",
             {"leaky", "elu", "prelu", "selu", "gelu", "rrelu"})
      .param("slope", ParamType::Float, "0.25", "Negative slope (leaky, elu).")
      .param("lower_bound", ParamType::Float, "0.125", "Lower bound of rrelu's slope.")
      .param("upper_bound", ParamType::Float, "0.334", "Upper bound of rrelu's slope.");
  lr.float_only = true;
  lr.num_inputs = [](const Params &p) { return p.s("act_type") == "prelu" ? 2 : 1; };
  // rrelu keeps its slopes as a second, hidden output (MXNet's "mask").
  lr.outputs = {"output", "mask"};
  lr.num_outputs = [](const Params &p) { return p.s("act_type") == "rrelu" ? 2 : 1; };
  lr.visible_outputs = 1;
  lr.random_when = [](const Params &p) { return p.s("act_type") == "rrelu"; };
  lr.optional_inputs = 1;
  lr.infer_inputs = [](const Params &, ShapeList &in, SmallVec<char, 4> &known,
                       const ShapeList &out, const SmallVec<char, 4> &out_known) {
    if (!known[0] && out_known[0]) {
      in[0] = out[0];
      known[0] = 1;
    }
    if (in.size() > 1 && known[0] && !known[1]) {
      in[1] = Shape{in[0].ndim > 1 ? in[0].d[1] : 1};
      known[1] = 1;
    }
  };
  lr.set_infer([](const Params &p, const ShapeList &in, const DTypeList &dt, ShapeList &out,
                  DTypeList &odt) {
    if (in.size() > 1) {
      int64_t c = in[0].ndim > 1 ? in[0].d[1] : 1;
      if (in[1] != Shape{c})
        shape_fail(p, "gamma has shape " + in[1].str() + ", expected " + Shape{c}.str() +
                          " (one slope per channel of data " + in[0].str() + ")");
    }
    out[0] = in[0];
    odt[0] = same_dtype(p, dt);
    if (out.size() > 1) {
      out[1] = in[0];
      odt[1] = odt[0];
    }
  });
  auto channel_of = [](const Shape &s, int64_t i) -> int64_t {
    if (s.ndim < 2) return 0;
    int64_t inner = 1;
    for (int k = 2; k < s.ndim; ++k) inner *= s.d[k];
    return (i / inner) % s.d[1];
  };
  lr.set_compute([channel_of](const OpContext &c, const Params &p, const BlobList &in, const BlobList &out) {
    const std::string &t = p.s("act_type");
    double slope = t == "rrelu" ? (p.f("lower_bound") + p.f("upper_bound")) / 2 : p.f("slope");
    if (t == "rrelu") {
      LOOM_FLOAT_SWITCH(in[0].dtype, T, {
        const T *x = in[0].ptr<T>();
        T *y = out[0].ptr<T>();
        T *mask = out[1].ptr<T>();
        const int64_t n = in[0].size();
        if (c.is_train) {
          double lo = p.f("lower_bound"), hi = p.f("upper_bound");
          Philox ph(c.rng_key, c.rng_stream);
          for (int64_t b = 0; b < (n + 3) / 4; ++b) {
            uint32_t w[4];
            ph.block(static_cast<uint64_t>(b), w);
            for (int k = 0; k < 4 && b * 4 + k < n; ++k)
              mask[b * 4 + k] = static_cast<T>(lo + (hi - lo) * u01_float(w[k]));
          }
        } else {
          std::fill(mask, mask + n, static_cast<T>(slope));
        }
        for (int64_t i = 0; i < n; ++i) y[i] = x[i] > T(0) ? x[i] : static_cast<T>(mask[i] * x[i]);
      });
      return;
    }
    LOOM_FLOAT_SWITCH(in[0].dtype, T, {
      const T *x = in[0].ptr<T>();
      T *y = out[0].ptr<T>();
      for (int64_t i = 0; i < in[0].size(); ++i) {
        double v = x[i];
        double r;
        if (t == "selu") r = kSeluLambda * (v > 0 ? v : kSeluAlpha * std::expm1(v));
        else if (t == "gelu") r = 0.5 * v * (1 + std::erf(v / std::sqrt(2.0)));
        else {
          double a = t == "prelu" ? double(in[1].ptr<T>()[channel_of(in[0].shape, i)]) : slope;
          r = v > 0 ? v : (t == "elu" ? a * std::expm1(v) : a * v);
        }
        y[i] = static_cast<T>(r);
      }
    });
  });
  lr.set_backward([channel_of](const OpContext &, const Params &p, const BlobList &in, const BlobList &out,
                               const BlobList &og, const BlobList &ig, const ReqList &req) {
    const std::string &t = p.s("act_type");
    if (t == "rrelu") {  // MXNet's xelu_grad(output, mask): 1 where the output is positive
      if (!req[0]) return;
      LOOM_FLOAT_SWITCH(in[0].dtype, T, {
        const T *y = out[0].ptr<T>();
        const T *mask = out[1].ptr<T>();
        const T *g = og[0].ptr<T>();
        T *dx = ig[0].ptr<T>();
        for (int64_t i = 0; i < in[0].size(); ++i) dx[i] = y[i] > T(0) ? g[i] : static_cast<T>(mask[i] * g[i]);
      });
      return;
    }
    double slope = p.f("slope");
    LOOM_FLOAT_SWITCH(in[0].dtype, T, {
      const T *x = in[0].ptr<T>();
      const T *g = og[0].ptr<T>();
      if (in.size() > 1 && req[1]) std::fill(ig[1].ptr<T>(), ig[1].ptr<T>() + ig[1].size(), T(0));
      for (int64_t i = 0; i < in[0].size(); ++i) {
        double v = x[i];
        int64_t c = channel_of(in[0].shape, i);
        double a = t == "prelu" ? double(in[1].ptr<T>()[c]) : slope;
        double d;
        if (t == "selu") d = kSeluLambda * (v > 0 ? 1.0 : kSeluAlpha * std::exp(v));
        else if (t == "gelu")
          d = 0.5 * (1 + std::erf(v / std::sqrt(2.0))) + v * std::exp(-0.5 * v * v) / std::sqrt(2 * M_PI);
        else d = v > 0 ? 1.0 : (t == "elu" ? a * std::exp(v) : a);
        if (req[0]) ig[0].ptr<T>()[i] = static_cast<T>(d * double(g[i]));
        if (t == "prelu" && req[1] && v <= 0) ig[1].ptr<T>()[c] += static_cast<T>(v * double(g[i]));
      }
    });
  });

  // ------------------------------------------------------------ Dropout
  OpDef &dr = reg.add("Dropout");
  dr.set_doc("In training mode (or always, with mode=always), zeroes each element with "
             "probability p and scales the rest by 1/(1-p); outputs the result and the mask "
             "used. With axes, one draw is shared along those axes (variational dropout). In "
             "prediction mode (or p=0) it is the identity.")
      .set_inputs({"data"})
      .param("p", ParamType::Float, "0.5", "Probability of dropping an element, in [0, 1).")
      .param("mode", ParamType::Enum, "training", "When to drop: in training only, or always.",
             {"training", "always"})
      .param("axes", ParamType::Tuple, "()", "Axes along which one mask value is shared.")
      .param("cudnn_off", ParamType::Bool, "false", "A GPU hint; accepted and ignored on CPU.");
  dr.outputs = {"out", "mask"};
  dr.visible_outputs = 1;
  dr.infer_inputs = same_shape_hint;
  dr.backward_uses = kBwdOutputs;
  dr.random = true;
  dr.float_only = true;
  dr.set_infer([](const Params &p, const ShapeList &in, const DTypeList &dt, ShapeList &out,
                  DTypeList &odt) {
    LOOM_CHECK(p.f("p") >= 0 && p.f("p") < 1, LOOM_ERR_INVALID_ARGUMENT, p.op().name,
               ": p must be in [0, 1), got ", p.f("p"));
    for (int64_t a : p.tuple("axes")) normalize_axis(a, in[0].ndim, p.op().name, "axes");
    same_infer(p, in, dt, out, odt);
  });
  dr.set_compute([](const OpContext &c, const Params &p, const BlobList &in, const BlobList &out) {
    double prob = p.f("p");
    // The mask's shape: data's, with extent 1 on the shared axes.
    Shape ms = in[0].shape;
    for (int64_t a : p.tuple("axes")) ms.d[normalize_axis(a, ms.ndim, p.op().name, "axes")] = 1;
    const bool shared = ms != in[0].shape;
    const bool active = (c.is_train || p.s("mode") == "always") && prob != 0;
    LOOM_FLOAT_SWITCH(in[0].dtype, T, {
      const T *x = in[0].ptr<T>();
      T *y = out[0].ptr<T>();
      T *mask = out[1].ptr<T>();
      const int64_t n = in[0].size();
      if (!active) {
        for (int64_t i = 0; i < n; ++i) {
          y[i] = x[i];
          mask[i] = T(1);
        }
      } else {
        Philox ph(c.rng_key, c.rng_stream);
        T keep = static_cast<T>(1.0 / (1.0 - prob));
        const int64_t draws = shared ? ms.size() : n;
        std::vector<T> small(shared ? static_cast<size_t>(draws) : 0);
        T *m = shared ? small.data() : mask;
        for (int64_t b = 0; b < (draws + 3) / 4; ++b) {
          uint32_t w[4];
          ph.block(static_cast<uint64_t>(b), w);
          for (int k = 0; k < 4 && b * 4 + k < draws; ++k) m[b * 4 + k] = u01_float(w[k]) < prob ? T(0) : keep;
        }
        if (shared) {
          BroadcastIndexer bi(ms, in[0].shape);
          for (int64_t i = 0; i < n; ++i) mask[i] = small[bi(i)];
        }
        for (int64_t i = 0; i < n; ++i) y[i] = x[i] * mask[i];
      }
    });
  });
  dr.set_backward([](const OpContext &, const Params &, const BlobList &in, const BlobList &out,
                     const BlobList &og, const BlobList &ig, const ReqList &req) {
    if (!req[0]) return;
    LOOM_FLOAT_SWITCH(in[0].dtype, T, {
      const T *mask = out[1].ptr<T>();
      const T *g = og[0].ptr<T>();
      T *dx = ig[0].ptr<T>();
      for (int64_t i = 0; i < in[0].size(); ++i) dx[i] = g[i] * mask[i];
    });
  });

  // ------------------------------------------------------------ BlockGrad, MakeLoss
  OpDef &bg = reg.add("BlockGrad");
  bg.set_doc("The identity forward; passes no gradient back.").set_inputs({"data"}).set_infer(same_infer);
  bg.set_infer_inputs(same_shape_hint).set_backward_uses(kBwdNone);
  bg.set_compute([](const OpContext &, const Params &, const BlobList &in, const BlobList &out) {
    LOOM_DTYPE_SWITCH(in[0].dtype, T, copy_blob<T>(in[0], out[0]));
  });
  bg.set_backward([](const OpContext &, const Params &, const BlobList &, const BlobList &,
                     const BlobList &, const BlobList &ig, const ReqList &req) {
    if (req[0]) std::memset(ig[0].dptr, 0, static_cast<size_t>(ig[0].size()) * dtype_size(ig[0].dtype));
  });

  OpDef &ml = reg.add("MakeLoss");
  ml.set_doc("Marks data as a loss: the identity forward; backward gives grad_scale (divided by "
             "the batch size with normalization=batch) whatever gradient arrives.")
      .set_inputs({"data"})
      .param("grad_scale", ParamType::Float, "1.0", "Gradient of every element.")
      .param("normalization", ParamType::Enum, "null", "Divide by the batch size or not.", {"null", "batch"})
      .set_infer(same_infer);
  ml.float_only = true;
  ml.set_infer_inputs(same_shape_hint).set_backward_uses(kBwdInputs);
  ml.set_compute([](const OpContext &, const Params &, const BlobList &in, const BlobList &out) {
    LOOM_FLOAT_SWITCH(in[0].dtype, T, copy_blob<T>(in[0], out[0]));
  });
  ml.set_backward([](const OpContext &, const Params &p, const BlobList &in, const BlobList &,
                     const BlobList &, const BlobList &ig, const ReqList &req) {
    if (!req[0]) return;
    double v = p.f("grad_scale");
    if (p.s("normalization") == "batch" && in[0].shape.ndim) v /= double(std::max<int64_t>(in[0].shape.d[0], 1));
    LOOM_FLOAT_SWITCH(in[0].dtype, T, std::fill(ig[0].ptr<T>(), ig[0].ptr<T>() + ig[0].size(), static_cast<T>(v)));
  });

  register_regression("LinearRegressionOutput", false,
                      "Squared-error output: forward data; backward (data - label) * grad_scale / "
                      "outputs-per-sample.");
  register_regression("LogisticRegressionOutput", true,
                      "Logistic output: forward sigmoid(data); backward (sigmoid(data) - label) * "
                      "grad_scale / outputs-per-sample.");

  // ------------------------------------------------------------ SwapAxis
  OpDef &sw = reg.add("SwapAxis");
  sw.set_doc("Exchanges two axes.")
      .set_inputs({"data"})
      .param("dim1", ParamType::Int, "0", "First axis.")
      .param("dim2", ParamType::Int, "0", "Second axis.");
  auto swap_perm = [](const Params &p, const Shape &s) {
    int a = normalize_axis(p.i("dim1"), s.ndim, p.op().name, "dim1");
    int b = normalize_axis(p.i("dim2"), s.ndim, p.op().name, "dim2");
    std::vector<int> perm(s.ndim);
    for (int i = 0; i < s.ndim; ++i) perm[i] = i;
    std::swap(perm[a], perm[b]);
    return perm;
  };
  auto permute_copy = [](const TBlob &src, const TBlob &dst, const std::vector<int> &perm) {
    // dst axis i is src axis perm[i]; perm is its own inverse.
    const Shape &ss = src.shape;
    std::vector<int64_t> st(ss.ndim, 1);
    for (int i = ss.ndim - 2; i >= 0; --i) st[i] = st[i + 1] * ss.d[i + 1];
    size_t es = dtype_size(src.dtype);
    const char *a = static_cast<const char *>(src.dptr);
    char *o = static_cast<char *>(dst.dptr);
    for (int64_t flat = 0; flat < dst.size(); ++flat) {
      int64_t f = flat, from = 0;
      for (int i = dst.shape.ndim - 1; i >= 0; --i) {
        from += (f % dst.shape.d[i]) * st[perm[i]];
        f /= dst.shape.d[i];
      }
      std::memcpy(o + flat * es, a + from * es, es);
    }
  };
  sw.set_infer([swap_perm](const Params &p, const ShapeList &in, const DTypeList &dt, ShapeList &out,
                           DTypeList &odt) {
    auto perm = swap_perm(p, in[0]);
    out[0] = in[0];
    for (int i = 0; i < in[0].ndim; ++i) out[0].d[i] = in[0].d[perm[i]];
    odt[0] = dt[0];
  });
  sw.set_compute([swap_perm, permute_copy](const OpContext &, const Params &p, const BlobList &in,
                                           const BlobList &out) {
    permute_copy(in[0], out[0], swap_perm(p, in[0].shape));
  });
  sw.set_backward([swap_perm, permute_copy](const OpContext &, const Params &p, const BlobList &in,
                                            const BlobList &, const BlobList &og, const BlobList &ig,
                                            const ReqList &req) {
    if (req[0]) permute_copy(og[0], ig[0], swap_perm(p, in[0].shape));
  });

  // ------------------------------------------------------------ ElementWiseSum
  OpDef &es = reg.add("ElementWiseSum");
  es.set_doc("Sum of any number of arrays of one shape (MXNet's add_n), added in input order.")
      .set_inputs({"args"})
      .set_variadic()
      .param("num_args", ParamType::Int, "None", "Number of inputs (MXNet's files give it; checked when given).");
  es.set_infer_inputs(same_shape_hint).set_backward_uses(kBwdNone).set_inplace({{0, 0}});
  es.set_infer([](const Params &p, const ShapeList &in, const DTypeList &dt, ShapeList &out,
                  DTypeList &odt) {
    odt[0] = same_dtype(p, dt);
    LOOM_CHECK(!p.has("num_args") || p.i("num_args") == static_cast<int64_t>(in.size()),
               LOOM_ERR_INVALID_ARGUMENT, p.op().name, ": num_args=", p.i("num_args"), " but ", in.size(),
               " inputs were given");
    for (size_t k = 1; k < in.size(); ++k)
      if (in[k] != in[0])
        shape_fail(p, "input " + std::to_string(k) + " has shape " + in[k].str() +
                          " but input 0 has shape " + in[0].str());
    out[0] = in[0];
  });
  es.set_compute([](const OpContext &, const Params &, const BlobList &in, const BlobList &out) {
    // Each element is 0 + in[0] + in[1] + ... in input order (sum_in_order); the
    // output may be input 0's buffer (in place), and input k may be input 0 itself.
    LOOM_DTYPE_SWITCH(out[0].dtype, T, {
      SmallVec<const T *, 8> src;
      for (const TBlob &b : in) src.push_back(b.ptr<T>());
      sum_in_order(src.data(), src.size(), out[0].ptr<T>(), out[0].size(), true);
    });
  });
  es.set_backward([](const OpContext &, const Params &, const BlobList &, const BlobList &,
                     const BlobList &og, const BlobList &ig, const ReqList &req) {
    // Each input's gradient is a copy of dy, made in parallel blocks.
    const int64_t bytes = og[0].size() * static_cast<int64_t>(dtype_size(og[0].dtype));
    const char *g = static_cast<const char *>(og[0].dptr);
    for (size_t k = 0; k < ig.size(); ++k) {
      if (!req[k]) continue;
      char *d = static_cast<char *>(ig[k].dptr);
      if (d == g) continue;  // in place: dy is already there
      parallel_ranges(bytes, 1 << 18, [&](int64_t b, int64_t e) { std::memcpy(d + b, g + b, static_cast<size_t>(e - b)); });
    }
  });

  // ------------------------------------------------------------ Embedding
  OpDef &em = reg.add("Embedding");
  em.set_doc("Looks up rows of weight (input_dim, output_dim) for integer-valued data; the "
             "output shape is data.shape + (output_dim,). Indices are truncated to integers and "
             "clipped to [0, input_dim) as MXNet does; NaN is an error. The weight gradient adds "
             "rows in index order.")
      .set_inputs({"data", "weight"})
      .required("input_dim", ParamType::Int, "Vocabulary size (rows of weight).")
      .required("output_dim", ParamType::Int, "Embedding size (columns of weight).");
  em.infer_inputs = [](const Params &p, ShapeList &in, SmallVec<char, 4> &known,
                       const ShapeList &, const SmallVec<char, 4> &) {
    if (!known[1]) {
      in[1] = Shape{p.i("input_dim"), p.i("output_dim")};
      known[1] = 1;
    }
  };
  em.set_infer([](const Params &p, const ShapeList &in, const DTypeList &dt, ShapeList &out,
                  DTypeList &odt) {
    Shape w{p.i("input_dim"), p.i("output_dim")};
    if (in[1] != w) shape_fail(p, "weight has shape " + in[1].str() + ", expected " + w.str());
    out[0] = in[0];
    out[0].push_back(p.i("output_dim"));
    odt[0] = dt[1];
  });
  em.set_compute([](const OpContext &, const Params &p, const BlobList &in, const BlobList &out) {
    int64_t rows = p.i("input_dim"), dim = p.i("output_dim");
    LOOM_DTYPE_SWITCH(in[0].dtype, I, {
      const I *idx = in[0].ptr<I>();
      size_t row = static_cast<size_t>(dim) * dtype_size(in[1].dtype);
      for (int64_t i = 0; i < in[0].size(); ++i) {
        double v = double(idx[i]);
        if (std::isnan(v)) fail(LOOM_ERR_INVALID_ARGUMENT, "Embedding: index NaN at position ", i);
        std::memcpy(static_cast<char *>(out[0].dptr) + i * row,
                    static_cast<const char *>(in[1].dptr) + embedding_row(v, rows) * row, row);
      }
    });
  });
  em.set_backward([](const OpContext &, const Params &p, const BlobList &in, const BlobList &,
                     const BlobList &og, const BlobList &ig, const ReqList &req) {
    int64_t dim = p.i("output_dim");
    if (req[0]) std::memset(ig[0].dptr, 0, static_cast<size_t>(ig[0].size()) * dtype_size(ig[0].dtype));
    if (!req[1]) return;
    LOOM_FLOAT_SWITCH(in[1].dtype, T, {
      T *dw = ig[1].ptr<T>();
      std::fill(dw, dw + ig[1].size(), T(0));
      const T *g = og[0].ptr<T>();
      LOOM_DTYPE_SWITCH(in[0].dtype, I, {
        const I *idx = in[0].ptr<I>();
        for (int64_t i = 0; i < in[0].size(); ++i)
          for (int64_t j = 0; j < dim; ++j) dw[embedding_row(double(idx[i]), p.i("input_dim")) * dim + j] += g[i * dim + j];
      });
    });
  });

  // ------------------------------------------------------------ UpSampling (nearest)
  // MXNet's UpSampling (src/operator/nn/upsampling-inl.h): num_args inputs, the
  // output (scale * h_0, scale * w_0); every input is enlarged to that size by its
  // own integer factor, then they are joined along the channels (concat) or added (sum).
  OpDef &up = reg.add("UpSampling");
  up.set_doc("Nearest-neighbour upsampling of NCHW data: the output is (scale*H0, scale*W0) of "
             "the first input; with several inputs (num_args), each is enlarged to that size and "
             "they are concatenated along the channels or summed (multi_input_mode).")
      .set_inputs({"data"})
      .set_variadic()
      .required("scale", ParamType::Int, "Scale factor for H and W of the first input.")
      .param("sample_type", ParamType::Enum, "nearest", "Only nearest is implemented.", {"nearest"})
      .param("num_args", ParamType::Int, "1", "Number of inputs.")
      .param("multi_input_mode", ParamType::Enum, "concat", "Joining several inputs.", {"concat", "sum"})
      .param("num_filter", ParamType::Int, "0", "Used by bilinear upsampling only; accepted.")
      .param("workspace", ParamType::Int, "512", "A memory hint; accepted and ignored on CPU.");
  up.set_infer([](const Params &p, const ShapeList &in, const DTypeList &dt, ShapeList &out,
                  DTypeList &odt) {
    LOOM_CHECK(p.i("scale") >= 1, LOOM_ERR_INVALID_ARGUMENT, p.op().name, ": scale must be >= 1");
    LOOM_CHECK(p.i("num_args") == static_cast<int64_t>(in.size()), LOOM_ERR_INVALID_ARGUMENT,
               p.op().name, ": num_args=", p.i("num_args"), " but ", in.size(), " inputs were given");
    if (in[0].ndim != 4) shape_fail(p, "data must be (N, C, H, W), got " + in[0].str());
    int64_t oh = in[0].d[2] * p.i("scale"), ow = in[0].d[3] * p.i("scale"), channels = 0;
    bool sum = p.s("multi_input_mode") == "sum";
    for (size_t k = 0; k < in.size(); ++k) {
      const Shape &s = in[k];
      if (s.ndim != 4 || s.d[0] != in[0].d[0])
        shape_fail(p, "input " + std::to_string(k) + " must be (N, C, H, W) with N=" +
                          std::to_string(in[0].d[0]) + ", got " + s.str());
      if (s.d[2] <= 0 || s.d[3] <= 0 || oh % s.d[2] || ow % s.d[3])
        shape_fail(p, "input " + std::to_string(k) + " " + s.str() + " does not divide the output " +
                          "size " + std::to_string(oh) + "x" + std::to_string(ow));
      if (sum && k > 0 && s.d[1] != in[0].d[1])
        shape_fail(p, "multi_input_mode=sum needs the same channels; input " + std::to_string(k) +
                          " is " + s.str() + ", input 0 is " + in[0].str());
      channels = sum ? s.d[1] : channels + s.d[1];
    }
    out[0] = Shape{in[0].d[0], channels, oh, ow};
    odt[0] = same_dtype(p, dt);
  });
  up.set_compute([](const OpContext &, const Params &p, const BlobList &in, const BlobList &out) {
    const Shape &os = out[0].shape;
    const int64_t n = os.d[0], oc = os.d[1], oh = os.d[2], ow = os.d[3];
    bool sum = p.s("multi_input_mode") == "sum";
    LOOM_DTYPE_SWITCH(out[0].dtype, T, {
      T *y = out[0].ptr<T>();
      if (sum) std::fill(y, y + out[0].size(), T(0));
      int64_t c0 = 0;
      for (size_t k = 0; k < in.size(); ++k) {
        const T *x = in[k].ptr<T>();
        const int64_t c = in[k].shape.d[1], h = in[k].shape.d[2], w = in[k].shape.d[3];
        const int64_t sh = oh / h, sw = ow / w;
        for (int64_t b = 0; b < n; ++b)
          for (int64_t ch = 0; ch < c; ++ch) {
            const T *xp = x + (b * c + ch) * h * w;
            T *yp = y + (b * oc + (sum ? ch : c0 + ch)) * oh * ow;
            for (int64_t i = 0; i < oh; ++i)
              for (int64_t j = 0; j < ow; ++j) {
                T v = xp[(i / sh) * w + j / sw];
                yp[i * ow + j] = sum ? yp[i * ow + j] + v : v;
              }
          }
        c0 += c;
      }
    });
  });
  up.set_backward_uses(kBwdNone);
  up.set_backward([](const OpContext &, const Params &p, const BlobList &in, const BlobList &,
                     const BlobList &og, const BlobList &ig, const ReqList &req) {
    const Shape &os = og[0].shape;
    const int64_t n = os.d[0], oc = os.d[1], oh = os.d[2], ow = os.d[3];
    bool sum = p.s("multi_input_mode") == "sum";
    LOOM_FLOAT_SWITCH(og[0].dtype, T, {
      const T *g = og[0].ptr<T>();
      int64_t c0 = 0;
      for (size_t k = 0; k < ig.size(); ++k) {
        const int64_t c = in[k].shape.d[1], h = in[k].shape.d[2], w = in[k].shape.d[3];
        const int64_t sh = oh / h, sw = ow / w;
        if (req[k]) {
          T *dx = ig[k].ptr<T>();
          std::fill(dx, dx + ig[k].size(), T(0));
          for (int64_t b = 0; b < n; ++b)
            for (int64_t ch = 0; ch < c; ++ch) {
              const T *gp = g + (b * oc + (sum ? ch : c0 + ch)) * oh * ow;
              T *dp = dx + (b * c + ch) * h * w;
              for (int64_t i = 0; i < oh; ++i)
                for (int64_t j = 0; j < ow; ++j) dp[(i / sh) * w + j / sw] += gp[i * ow + j];
            }
        }
        c0 += c;
      }
    });
  });

  // ------------------------------------------------------------ SliceChannel
  OpDef &sc = reg.add("SliceChannel");
  sc.set_doc("Splits data into num_outputs equal parts along an axis (optionally dropping that "
             "axis when each part has extent 1).")
      .set_inputs({"data"})
      .required("num_outputs", ParamType::Int, "Number of parts.")
      .param("axis", ParamType::Int, "1", "Axis to split.")
      .param("squeeze_axis", ParamType::Bool, "false", "Drop the split axis (parts of extent 1).");
  sc.num_outputs = [](const Params &p) { return static_cast<int>(std::max<int64_t>(p.i("num_outputs"), 1)); };
  sc.set_infer([](const Params &p, const ShapeList &in, const DTypeList &dt, ShapeList &out,
                  DTypeList &odt) {
    int64_t k = p.i("num_outputs");
    int ax = normalize_axis(p.i("axis"), in[0].ndim, p.op().name);
    if (k < 1 || in[0].d[ax] % k != 0)
      shape_fail(p, "axis " + std::to_string(ax) + " of " + in[0].str() + " does not split into " +
                        std::to_string(k) + " equal parts");
    Shape part = in[0];
    part.d[ax] /= k;
    if (p.b("squeeze_axis")) {
      if (part.d[ax] != 1) shape_fail(p, "squeeze_axis needs parts of extent 1, got " + std::to_string(part.d[ax]));
      for (int i = ax; i + 1 < part.ndim; ++i) part.d[i] = part.d[i + 1];
      --part.ndim;
    }
    for (size_t j = 0; j < out.size(); ++j) {
      out[j] = part;
      odt[j] = dt[0];
    }
  });
  auto split_dims = [](const Params &p, const Shape &s, int64_t *outer, int64_t *mid, int64_t *inner) {
    int ax = normalize_axis(p.i("axis"), s.ndim, p.op().name);
    split_axes(s, ax, ax + 1, outer, mid, inner);
  };
  sc.set_compute([split_dims](const OpContext &, const Params &p, const BlobList &in, const BlobList &out) {
    int64_t outer, mid, inner, k = static_cast<int64_t>(out.size());
    split_dims(p, in[0].shape, &outer, &mid, &inner);
    size_t es = dtype_size(in[0].dtype), part = static_cast<size_t>(mid / k * inner) * es;
    for (int64_t j = 0; j < k; ++j)
      for (int64_t o = 0; o < outer; ++o)
        std::memcpy(static_cast<char *>(out[j].dptr) + o * part,
                    static_cast<const char *>(in[0].dptr) + (o * mid * inner) * es + j * part, part);
  });
  sc.set_backward([split_dims](const OpContext &, const Params &p, const BlobList &in, const BlobList &,
                               const BlobList &og, const BlobList &ig, const ReqList &req) {
    if (!req[0]) return;
    int64_t outer, mid, inner, k = static_cast<int64_t>(og.size());
    split_dims(p, in[0].shape, &outer, &mid, &inner);
    size_t es = dtype_size(in[0].dtype), part = static_cast<size_t>(mid / k * inner) * es;
    for (int64_t j = 0; j < k; ++j)
      for (int64_t o = 0; o < outer; ++o)
        std::memcpy(static_cast<char *>(ig[0].dptr) + (o * mid * inner) * es + j * part,
                    static_cast<const char *>(og[j].dptr) + o * part, part);
  });
  return 0;
}();

}  // namespace
}  // namespace loom
