// Metrics as native ops, so every frontend counts the same way. Each returns
// float64 [numerator, denominator]: sum the results over batches and divide
// for the metric over all of them.
#include "ops/common.h"
#include "ops/vecmath.h"

#include <atomic>
#include <cmath>

#include "common/parallel.h"

namespace loom {
namespace {

// Rows of a (..., classes) prediction whose label has one value per row.
int64_t class_rows(const Params &p, const Shape &x, const Shape &label) {
  if (x.ndim < 1) shape_fail(p, "pred must have at least 1 dimension, got " + x.str());
  int64_t n = x.size() / std::max<int64_t>(x.d[x.ndim - 1], 1);
  if (label.size() != n)
    shape_fail(p, "label has shape " + label.str() + " (" + std::to_string(label.size()) +
                      " values) but pred " + x.str() + " has " + std::to_string(n) + " rows");
  return n;
}

void pair_output(ShapeList &out, DTypeList &odt) {
  out[0] = Shape{2};
  odt[0] = kFloat64;
}

// Calls f(row, class_count, pred_row(c), label) for every row, in float64.
template <typename F>
void for_rows(const BlobList &in, F &&f) {
  int64_t k = in[0].shape.d[in[0].shape.ndim - 1], n = in[1].size();
  LOOM_DTYPE_SWITCH(in[0].dtype, P, {
    const P *x = in[0].ptr<P>();
    LOOM_DTYPE_SWITCH(in[1].dtype, L, {
      const L *l = in[1].ptr<L>();
      for (int64_t i = 0; i < n; ++i)
        f(k, [&](int64_t c) { return double(x[i * k + c]); }, double(l[i]));
    });
  });
}

void write_pair(const BlobList &out, double num, double den) {
  out[0].ptr<double>()[0] = num;
  out[0].ptr<double>()[1] = den;
}

// Elementwise metrics (MSE, MAE): label has as many values as pred.
void elementwise_metric(const char *name, const char *doc, double (*term)(double)) {
  OpDef &d = Registry::get().add(name);
  d.set_doc(doc).set_inputs({"pred", "label"});
  d.set_infer([](const Params &p, const ShapeList &in, const DTypeList &, ShapeList &out,
                 DTypeList &odt) {
    if (in[0].size() != in[1].size())
      shape_fail(p, "label has shape " + in[1].str() + " but pred has shape " + in[0].str() +
                        "; they need the same number of values");
    pair_output(out, odt);
  });
  d.set_compute([term](const OpContext &, const Params &, const BlobList &in, const BlobList &out) {
    double s = 0;
    int64_t n = in[0].size();
    LOOM_DTYPE_SWITCH(in[0].dtype, P, {
      const P *x = in[0].ptr<P>();
      LOOM_DTYPE_SWITCH(in[1].dtype, L, {
        const L *l = in[1].ptr<L>();
        for (int64_t i = 0; i < n; ++i) s += term(double(l[i]) - double(x[i]));
      });
    });
    write_pair(out, s, double(n));
  });
}

// Whether any of n float32 values (as bits) is infinite or NaN: the largest
// magnitude's bits reach the all-ones exponent. A max over the span
// vectorises (AVX2 where the CPU has it) where a compare per value does not.
LOOM_VECTOR_CLONES uint32_t float32_not_finite(const uint32_t *x, int64_t n) {
  uint32_t most = 0;
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t a = x[i] & 0x7fffffffu;
    most = a > most ? a : most;
  }
  return most >= 0x7f800000u;
}

const int kRegistered = [] {
  auto &reg = Registry::get();
  OpDef &d = reg.add("accuracy_count");
  d.set_doc("Counts rows whose label is among the top_k scores (over the last axis): returns "
            "float64 [correct, total]. Ties rank the lower class index first, so top_k=1 is "
            "'the first arg-max equals the label'.")
      .set_inputs({"pred", "label"})
      .param("top_k", ParamType::Int, "1", "How many of the best classes count as correct.");
  d.set_infer([](const Params &p, const ShapeList &in, const DTypeList &, ShapeList &out,
                 DTypeList &odt) {
    LOOM_CHECK(p.i("top_k") >= 1, LOOM_ERR_INVALID_ARGUMENT, p.op().name,
               ": top_k must be >= 1, got ", p.i("top_k"));
    class_rows(p, in[0], in[1]);
    pair_output(out, odt);
  });
  d.set_compute([](const OpContext &, const Params &p, const BlobList &in, const BlobList &out) {
    int64_t top = p.i("top_k"), correct = 0, rows = 0;
    for_rows(in, [&](int64_t k, auto &&x, double label) {
      ++rows;
      // Range-checked before the cast (NaN and huge labels would be undefined behaviour).
      if (!(label >= 0 && label < double(k)) || label != std::floor(label)) return;  // never correct
      int64_t l = static_cast<int64_t>(label);
      double xl = x(l);
      int64_t rank = 0;
      for (int64_t c = 0; c < k && rank < top; ++c)
        if (x(c) > xl || (x(c) == xl && c < l)) ++rank;
      correct += rank < top;
    });
    write_pair(out, double(correct), double(rows));
  });

  OpDef &ce = reg.add("cross_entropy_count");
  ce.set_doc("Cross-entropy of probabilities pred (..., classes) against class labels: returns "
             "float64 [sum of -log(pred[label] + eps), rows]. Rows whose label equals ignore_label "
             "(when given; MXNet's Perplexity(ignore_label), e.g. padding) are left out of both.")
      .set_inputs({"pred", "label"})
      .param("eps", ParamType::Float, "1e-12", "Added to the probability before the log.")
      .param("ignore_label", ParamType::Float, "None", "A label whose rows are not counted.");
  ce.set_infer([](const Params &p, const ShapeList &in, const DTypeList &, ShapeList &out,
                  DTypeList &odt) {
    class_rows(p, in[0], in[1]);
    pair_output(out, odt);
  });
  ce.set_compute([](const OpContext &, const Params &p, const BlobList &in, const BlobList &out) {
    double eps = p.f("eps"), s = 0;
    const bool ignoring = p.has("ignore_label");
    const double ignore = ignoring ? p.f("ignore_label") : 0;
    int64_t rows = 0, at = 0;
    std::string bad;
    for_rows(in, [&](int64_t k, auto &&x, double label) {
      if (ignoring && label == ignore) {
        ++at;
        return;
      }
      bool is_class = label >= 0 && label < double(k) && label == std::floor(label);
      if (!is_class && bad.empty())
        bad = "label " + std::to_string(label) + " in row " + std::to_string(at) +
              " is not a class index in [0, " + std::to_string(k) + ")";
      if (bad.empty()) s -= std::log(x(static_cast<int64_t>(label)) + eps);
      ++rows, ++at;
    });
    LOOM_CHECK(bad.empty(), LOOM_ERR_INVALID_ARGUMENT, p.op().name, ": ", bad);
    write_pair(out, s, double(rows));
  });

  elementwise_metric("mse_count",
                     "Squared error: returns float64 [sum of (label - pred)^2, values]. label "
                     "needs as many values as pred (any shape).",
                     [](double e) { return e * e; });
  elementwise_metric("mae_count",
                     "Absolute error: returns float64 [sum of |label - pred|, values]. label "
                     "needs as many values as pred (any shape).",
                     [](double e) { return std::fabs(e); });

  OpDef &f1 = reg.add("f1_count");
  f1.set_doc("Binary F1 counts: the predicted class is the arg-max of pred (rows, 2), or pred "
             ">= 0.5 when pred has one value per label; label 1 is positive. Returns float64 "
             "[2 tp, 2 tp + fp + fn], whose ratio summed over batches is the F1 score.")
      .set_inputs({"pred", "label"});
  f1.set_infer([](const Params &p, const ShapeList &in, const DTypeList &, ShapeList &out,
                  DTypeList &odt) {
    const Shape &x = in[0];
    if (x.size() != in[1].size()) {
      if (x.ndim < 1 || x.d[x.ndim - 1] != 2)
        shape_fail(p, "pred must be (rows, 2) scores or one probability per label, got " +
                          x.str() + " for label " + in[1].str());
      class_rows(p, x, in[1]);
    }
    pair_output(out, odt);
  });
  f1.set_compute([](const OpContext &, const Params &, const BlobList &in, const BlobList &out) {
    bool scores = in[0].size() != in[1].size();
    double tp = 0, fp = 0, fn = 0;
    auto count = [&](bool predicted, double label) {
      bool actual = label == 1;
      tp += predicted && actual;
      fp += predicted && !actual;
      fn += !predicted && actual;
    };
    if (scores) {
      for_rows(in, [&](int64_t, auto &&x, double label) { count(x(1) > x(0), label); });
    } else {
      LOOM_DTYPE_SWITCH(in[0].dtype, P, {
        const P *x = in[0].ptr<P>();
        LOOM_DTYPE_SWITCH(in[1].dtype, L, {
          const L *l = in[1].ptr<L>();
          for (int64_t i = 0; i < in[1].size(); ++i) count(double(x[i]) >= 0.5, double(l[i]));
        });
      });
    }
    write_pair(out, 2 * tp, 2 * tp + fp + fn);
  });

  // ------------------------------------------------ all_finite, multi_all_finite
  // MXNet's contrib ops (all_finite.cc): 1 when every value, cast to float32 as MXNet
  // does (so a float64 beyond float32's range counts as infinite), is finite, else 0;
  // shape (1,), float32. With init_output false the output is only ever set to 0, so
  // a given output array accumulates over calls.
  auto finite_infer = [](const Params &p, const ShapeList &, const DTypeList &dt, ShapeList &out,
                         DTypeList &odt) {
    for (size_t k = 0; k < dt.size(); ++k)
      LOOM_CHECK(dt[k] == kFloat32 || dt[k] == kFloat64, LOOM_ERR_DTYPE, p.op().name, ": input ", k, " is ",
                 dtype_name(dt[k]), "; it takes float32 or float64 arrays (only floating-point values can be non-finite)");
    LOOM_CHECK(p.op().name != "multi_all_finite" || !p.has("num_arrays") ||
                   p.i("num_arrays") == static_cast<int64_t>(dt.size()),
               LOOM_ERR_INVALID_ARGUMENT, p.op().name, ": num_arrays=", p.i("num_arrays"), " but ", dt.size(),
               " inputs were given");
    out[0] = Shape{1};
    odt[0] = kFloat32;
  };
  auto finite_compute = [](const OpContext &, const Params &p, const BlobList &in, const BlobList &out) {
    float *o = out[0].ptr<float>();
    if (p.b("init_output")) o[0] = 1.0f;
    for (const TBlob &b : in) {
      // Branch-free over blocks (so it vectorises), blocks spread over the CPU workers:
      // a float32 is not finite when its exponent bits are all ones.
      std::atomic<bool> finite{true};
      parallel_ranges(b.size(), 1 << 16, [&](int64_t lo, int64_t hi) {
        uint32_t bad = 0;
        if (b.dtype == kFloat32) {
          bad = float32_not_finite(static_cast<const uint32_t *>(b.dptr) + lo, hi - lo);
        } else {  // float64, cast to float32 first as MXNet does
          const double *x = static_cast<const double *>(b.dptr);
          for (int64_t i = lo; i < hi; ++i) bad |= static_cast<uint32_t>(!std::isfinite(static_cast<float>(x[i])));
        }
        if (bad) finite.store(false, std::memory_order_relaxed);
      });
      if (!finite.load()) o[0] = 0.0f;
    }
  };
  OpDef &af = reg.add("all_finite");
  af.set_doc("1 if every value of data is finite (cast to float32, as MXNet does), else 0: float32 of shape "
             "(1,). Used to find NaN or infinity in a batch, a loss or a gradient without copying it out.")
      .set_inputs({"data"})
      .param("init_output", ParamType::Bool, "true", "Set the output to 1 first (false: only ever set it to 0, "
             "so a given output accumulates over calls).");
  af.set_infer(finite_infer);
  af.set_compute(finite_compute);
  OpDef &mf = reg.add("multi_all_finite");
  mf.set_doc("1 if every value of every input is finite (cast to float32, as MXNet does), else 0: float32 of "
             "shape (1,).")
      .set_inputs({"data"})
      .set_variadic()
      .param("num_arrays", ParamType::Int, "None", "Number of inputs (MXNet's files give it; checked when given).")
      .param("init_output", ParamType::Bool, "true", "Set the output to 1 first (false: only ever set it to 0).");
  mf.set_infer(finite_infer);
  mf.set_compute(finite_compute);
  return 0;
}();

}  // namespace
}  // namespace loom
