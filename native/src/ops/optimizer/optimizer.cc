// Optimizer updates as native ops (MXNet's definitions). Call them with the
// state arrays also given as outputs to update in place:
//   sgd_update(w, g) -> w;  sgd_mom_update(w, g, m) -> (w, m);
//   adam_update(w, g, mean, var) -> (w, mean, var);
//   adagrad_update(w, g, history) -> (w, history);
//   rmsprop_update(w, g, n) -> (w, n);
//   adadelta_update(w, g, acc_g, acc_delta) -> (w, acc_g, acc_delta);
//   multi_sgd_update(w0, g0, w1, g1, ...) -> (w0, w1, ...);
//   multi_sgd_mom_update(w0, g0, m0, w1, g1, m1, ...) -> (w0, m0, w1, m1, ...).
// lr_schedule computes the learning rate for an update count.
#include "ops/common.h"
#include "ops/vecmath.h"

namespace loom {
namespace {

// lr_default: empty when the learning rate is required.
void common_params(OpDef &d, const char *lr_default = "", const char *lr_doc = "Learning rate.") {
  if (*lr_default) d.param("lr", ParamType::Float, lr_default, lr_doc);
  else d.required("lr", ParamType::Float, lr_doc);
  d.param("wd", ParamType::Float, "0.0", "Weight decay (L2 penalty) coefficient.")
      .param("rescale_grad", ParamType::Float, "1.0", "Multiplies the gradient first.")
      .param("clip_gradient", ParamType::Float, "-1.0",
             "Clips the rescaled gradient to [-c, c]; negative means no clipping.");
  d.float_only = true;
}

// The rescaled, clipped gradient. MXNet's clip (mshadow_op.h) lets NaN through:
// a NaN gradient reaches the weight rather than becoming +clip_gradient.
LOOM_CLONE_BODY double grad_of(double g, double rescale, double clip) {
  g *= rescale;
  if (clip >= 0) g = g > clip ? clip : (g < -clip ? -clip : g);
  return g;
}

// The SGD steps over spans, in double as above. The loop-invariant choices
// (clipping, Nesterov) are made outside the loops and the scalars passed by
// value, so the loops vectorise (AVX2 where the CPU has it; no FMA, so both
// versions round alike): the weights of a step are the same bits either way.
struct SgdStep {
  double lr, wd, rs, clip, mu;
  bool nesterov;
};

template <typename T, bool kClip>
LOOM_CLONE_BODY void sgd_span_body(const SgdStep &s, const T *w, const T *g, T *o, int64_t n) {
  const double lr = s.lr, wd = s.wd, rs = s.rs, clip = s.clip;
  for (int64_t i = 0; i < n; ++i) {
    const double gi = kClip ? grad_of(g[i], rs, clip) : double(g[i]) * rs;
    o[i] = static_cast<T>(w[i] - lr * (gi + wd * w[i]));
  }
}

template <typename T, bool kClip, bool kNesterov>
LOOM_CLONE_BODY void sgd_mom_span_body(const SgdStep &s, const T *w, const T *g, const T *m, T *ow, T *om, int64_t n) {
  const double lr = s.lr, wd = s.wd, rs = s.rs, clip = s.clip, mu = s.mu;
  for (int64_t i = 0; i < n; ++i) {
    const double wi = w[i], gi = kClip ? grad_of(g[i], rs, clip) : double(g[i]) * rs;
    const double step = gi + wd * wi;
    const double mi = mu * double(m[i]) - lr * step;
    om[i] = static_cast<T>(mi);
    ow[i] = static_cast<T>(kNesterov ? wi + mu * mi - lr * step : wi + mi);
  }
}

// The loop for the step's clipping and Nesterov choices.
template <typename T>
LOOM_CLONE_BODY void sgd_span_pick(const SgdStep &s, const T *w, const T *g, T *o, int64_t n) {
  if (s.clip >= 0) sgd_span_body<T, true>(s, w, g, o, n);
  else sgd_span_body<T, false>(s, w, g, o, n);
}
template <typename T>
LOOM_CLONE_BODY void sgd_mom_span_pick(const SgdStep &s, const T *w, const T *g, const T *m, T *ow, T *om, int64_t n) {
  if (s.clip >= 0) {
    if (s.nesterov) sgd_mom_span_body<T, true, true>(s, w, g, m, ow, om, n);
    else sgd_mom_span_body<T, true, false>(s, w, g, m, ow, om, n);
  } else {
    if (s.nesterov) sgd_mom_span_body<T, false, true>(s, w, g, m, ow, om, n);
    else sgd_mom_span_body<T, false, false>(s, w, g, m, ow, om, n);
  }
}

// In place (the usual call) the output pointers are the inputs': the loops are
// given one pointer for both, so no run-time overlap check sends them to their
// scalar versions.
template <typename T>
LOOM_CLONE_BODY void sgd_span_any(const SgdStep &s, const T *w, const T *g, T *o, int64_t n) {
  if (o == w) sgd_span_pick<T>(s, o, g, o, n);
  else sgd_span_pick<T>(s, w, g, o, n);
}

template <typename T>
LOOM_CLONE_BODY void sgd_mom_span_any(const SgdStep &s, const T *w, const T *g, const T *m, T *ow, T *om, int64_t n) {
  if (ow == w && om == m) sgd_mom_span_pick<T>(s, ow, g, om, ow, om, n);
  else sgd_mom_span_pick<T>(s, w, g, m, ow, om, n);
}

LOOM_VECTOR_CLONES void sgd_span(const SgdStep &s, const float *w, const float *g, float *o, int64_t n) {
  sgd_span_any(s, w, g, o, n);
}
LOOM_VECTOR_CLONES void sgd_span(const SgdStep &s, const double *w, const double *g, double *o, int64_t n) {
  sgd_span_any(s, w, g, o, n);
}
LOOM_VECTOR_CLONES void sgd_mom_span(const SgdStep &s, const float *w, const float *g, const float *m, float *ow,
                                     float *om, int64_t n) {
  sgd_mom_span_any(s, w, g, m, ow, om, n);
}
LOOM_VECTOR_CLONES void sgd_mom_span(const SgdStep &s, const double *w, const double *g, const double *m,
                                     double *ow, double *om, int64_t n) {
  sgd_mom_span_any(s, w, g, m, ow, om, n);
}

// [0, n) in ranges over the kernel threads, as parallel_for cuts it.
template <typename F>
void ranges_of(int64_t n, F &&body, int64_t grain = 1 << 15) {
  if (n < 2 * grain) {
    body(0, n);
    return;
  }
  parallel_ranges(n, grain, body);
}

void same_shapes_infer(const Params &p, const ShapeList &in, const DTypeList &dt, ShapeList &out,
                       DTypeList &odt) {
  int32_t t = same_dtype(p, dt);
  for (size_t i = 1; i < in.size(); ++i)
    if (in[i] != in[0])
      shape_fail(p, "input " + std::to_string(i) + " (" + p.op().inputs[i] + ") has shape " +
                        in[i].str() + " but weight has shape " + in[0].str());
  for (size_t j = 0; j < out.size(); ++j) {
    out[j] = in[0];
    odt[j] = t;
  }
}

// MXNet's aggregated SGD (multi_sgd_update, multi_sgd_mom_update): `stride`
// inputs per weight (weight, grad[, mom]), the weights' learning rates and
// weight decays as tuples. MXNet's kernel holds at most 60 weights a call.
constexpr int64_t kMultiMaxWeights = 60;

int64_t multi_weights(const Params &p) {
  const int64_t n = p.i("num_weights");
  LOOM_CHECK(n >= 1 && n <= kMultiMaxWeights, LOOM_ERR_INVALID_ARGUMENT, p.op().name, ": num_weights=", n,
             " must be in [1, ", kMultiMaxWeights, "]");
  return n;
}

InferFn multi_infer(int stride) {
  return [stride](const Params &p, const ShapeList &in, const DTypeList &dt, ShapeList &out, DTypeList &odt) {
    const int64_t n = multi_weights(p);
    const char *per = stride == 2 ? "weight, grad" : "weight, grad, mom";
    LOOM_CHECK(static_cast<int64_t>(in.size()) == stride * n, LOOM_ERR_INVALID_ARGUMENT, p.op().name,
               ": num_weights=", n, " needs ", stride * n, " inputs (", per, " for each weight), got ", in.size());
    for (const char *name : {"lrs", "wds"})
      LOOM_CHECK(static_cast<int64_t>(p.floats(name).size()) == n, LOOM_ERR_INVALID_ARGUMENT, p.op().name, ": ",
                 name, " has ", p.floats(name).size(), " values but num_weights=", n);
    const int32_t t = same_dtype(p, dt);
    const int outs_per = stride == 2 ? 1 : 2;
    for (int64_t i = 0; i < n; ++i) {
      const Shape &w = in[stride * i];
      for (int j = 1; j < stride; ++j)
        if (in[stride * i + j] != w)
          shape_fail(p, std::string(j == 1 ? "grad " : "mom ") + std::to_string(i) + " (input " +
                            std::to_string(stride * i + j) + ") has shape " + in[stride * i + j].str() +
                            " but weight " + std::to_string(i) + " has shape " + w.str());
      for (int k = 0; k < outs_per; ++k) {
        out[outs_per * i + k] = w;
        odt[outs_per * i + k] = t;
      }
    }
  };
}

// Weight i's elements [b, e), in the concatenation of all the weights' elements.
template <typename F>
void multi_ranges(const BlobList &in, int stride, int64_t n, F &&body) {
  std::vector<int64_t> start(static_cast<size_t>(n) + 1, 0);
  for (int64_t i = 0; i < n; ++i) start[i + 1] = start[i] + in[stride * i].size();
  ranges_of(start[n], [&](int64_t b, int64_t e) {
    for (int64_t i = std::upper_bound(start.begin(), start.end(), b) - start.begin() - 1; i < n && start[i] < e; ++i)
      if (start[i + 1] > start[i]) body(i, std::max(b, start[i]) - start[i], std::min(e, start[i + 1]) - start[i]);
  });
}

const int kRegistered = [] {
  auto &reg = Registry::get();
  OpDef &sgd = reg.add("sgd_update");
  sgd.set_doc("SGD step: w = w - lr * (clip(rescale_grad * g) + wd * w).")
      .set_inputs({"weight", "grad"});
  common_params(sgd);
  sgd.set_inplace({{0, 0}}).set_infer(same_shapes_infer);
  sgd.set_compute([](const OpContext &, const Params &p, const BlobList &in, const BlobList &out) {
    double lr = p.f("lr"), wd = p.f("wd"), rs = p.f("rescale_grad"), clip = p.f("clip_gradient");
    LOOM_FLOAT_SWITCH(in[0].dtype, T, {
      const T *w = in[0].ptr<T>();
      const T *g = in[1].ptr<T>();
      T *o = out[0].ptr<T>();
      const SgdStep step{lr, wd, rs, clip, 0, false};
      ranges_of(in[0].size(), [&](int64_t b, int64_t e) { sgd_span(step, w + b, g + b, o + b, e - b); });
    });
  });

  OpDef &mom = reg.add("sgd_mom_update");
  mom.set_doc("SGD with momentum: m = momentum * m - lr * (clip(rescale_grad * g) + wd * w); "
              "w = w + m. With nesterov: w = w + momentum * m - lr * (g + wd * w).")
      .set_inputs({"weight", "grad", "mom"});
  mom.outputs = {"weight", "mom"};
  common_params(mom);
  mom.param("momentum", ParamType::Float, "0.0", "Momentum factor.")
      .param("nesterov", ParamType::Bool, "false", "Use Nesterov momentum.")
      .set_inplace({{0, 0}, {2, 1}})
      .set_infer(same_shapes_infer);
  mom.set_compute([](const OpContext &, const Params &p, const BlobList &in, const BlobList &out) {
    double lr = p.f("lr"), wd = p.f("wd"), rs = p.f("rescale_grad"), clip = p.f("clip_gradient"),
           mu = p.f("momentum");
    bool nesterov = p.b("nesterov");
    LOOM_FLOAT_SWITCH(in[0].dtype, T, {
      const T *w = in[0].ptr<T>();
      const T *g = in[1].ptr<T>();
      const T *m = in[2].ptr<T>();
      T *ow = out[0].ptr<T>();
      T *om = out[1].ptr<T>();
      const SgdStep step{lr, wd, rs, clip, mu, nesterov};
      ranges_of(in[0].size(),
                [&](int64_t b, int64_t e) { sgd_mom_span(step, w + b, g + b, m + b, ow + b, om + b, e - b); });
    });
  });

  // MXNet 1.9's aggregated updates, what its SGD optimizer calls for groups of
  // weights (MXNET_OPTIMIZER_AGGREGATION_SIZE). Each weight's step is
  // sgd_update's or sgd_mom_update's (computed in double, rounded once), so an
  // aggregated step and per-weight steps give the same bits.
  std::vector<std::pair<int, int>> pairs2, pairs3;
  for (int i = 0; i < kMultiMaxWeights; ++i) {
    pairs2.emplace_back(2 * i, i);
    pairs3.emplace_back(3 * i, 2 * i);
    pairs3.emplace_back(3 * i + 2, 2 * i + 1);
  }
  auto multi_params = [](OpDef &d) {
    d.required("lrs", ParamType::Floats, "Learning rates, one per weight.")
        .required("wds", ParamType::Floats, "Weight decays, one per weight.")
        .param("rescale_grad", ParamType::Float, "1.0", "Multiplies the gradients first.")
        .param("clip_gradient", ParamType::Float, "-1.0",
               "Clips the rescaled gradients to [-c, c]; negative means no clipping.")
        .param("num_weights", ParamType::Int, "1", "Number of weights updated.");
    d.float_only = true;
    d.variadic = true;
  };
  OpDef &msgd = reg.add("multi_sgd_update");
  msgd.set_doc("sgd_update for several weights in one call: inputs weight 0, grad 0, weight 1, grad 1, ...; "
               "outputs the weights (update them in place). Weight i takes lrs[i] and wds[i].")
      .set_inputs({"data"});
  multi_params(msgd);
  msgd.outputs = {"weight"};
  msgd.num_outputs = [](const Params &p) { return static_cast<int>(multi_weights(p)); };
  msgd.set_inplace(pairs2).set_infer(multi_infer(2));
  msgd.set_compute([](const OpContext &, const Params &p, const BlobList &in, const BlobList &out) {
    const int64_t n = multi_weights(p);
    const auto &lrs = p.floats("lrs"), &wds = p.floats("wds");
    const double rs = p.f("rescale_grad"), clip = p.f("clip_gradient");
    LOOM_FLOAT_SWITCH(in[0].dtype, T, {
      multi_ranges(in, 2, n, [&](int64_t i, int64_t b, int64_t e) {
        const SgdStep step{lrs[i], wds[i], rs, clip, 0, false};
        sgd_span(step, in[2 * i].ptr<T>() + b, in[2 * i + 1].ptr<T>() + b, out[i].ptr<T>() + b, e - b);
      });
    });
  });

  OpDef &mmom = reg.add("multi_sgd_mom_update");
  mmom.set_doc("sgd_mom_update for several weights in one call: inputs weight 0, grad 0, mom 0, weight 1, ...; "
               "outputs weight 0, mom 0, weight 1, mom 1, ... (update them in place). Weight i takes lrs[i] "
               "and wds[i].")
      .set_inputs({"data"});
  mmom.outputs = {"weight", "mom"};
  multi_params(mmom);
  mmom.param("momentum", ParamType::Float, "0.0", "Momentum factor.");
  mmom.num_outputs = [](const Params &p) { return static_cast<int>(2 * multi_weights(p)); };
  mmom.set_inplace(pairs3).set_infer(multi_infer(3));
  mmom.set_compute([](const OpContext &, const Params &p, const BlobList &in, const BlobList &out) {
    const int64_t n = multi_weights(p);
    const auto &lrs = p.floats("lrs"), &wds = p.floats("wds");
    const double rs = p.f("rescale_grad"), clip = p.f("clip_gradient"), mu = p.f("momentum");
    LOOM_FLOAT_SWITCH(in[0].dtype, T, {
      multi_ranges(in, 3, n, [&](int64_t i, int64_t b, int64_t e) {
        const SgdStep step{lrs[i], wds[i], rs, clip, mu, false};
        sgd_mom_span(step, in[3 * i].ptr<T>() + b, in[3 * i + 1].ptr<T>() + b, in[3 * i + 2].ptr<T>() + b,
                     out[2 * i].ptr<T>() + b, out[2 * i + 1].ptr<T>() + b, e - b);
      });
    });
  });

  OpDef &adam = reg.add("adam_update");
  adam.set_doc("Adam: mean = beta1 mean + (1-beta1) g; var = beta2 var + (1-beta2) g^2; "
               "w = w - lr_t * mean / (sqrt(var) + epsilon), where g = clip(rescale_grad * grad) "
               "+ wd * w and lr_t = lr * sqrt(1-beta2^t) / (1-beta1^t) when t > 0 (bias "
               "correction), lr otherwise.")
      .set_inputs({"weight", "grad", "mean", "var"});
  adam.outputs = {"weight", "mean", "var"};
  common_params(adam);
  adam.param("beta1", ParamType::Float, "0.9", "Decay of the first moment.")
      .param("beta2", ParamType::Float, "0.999", "Decay of the second moment.")
      .param("epsilon", ParamType::Float, "1e-8", "Added to the denominator.")
      .param("t", ParamType::Int, "0", "Update count, from 1, for bias correction; 0 disables it.")
      .set_inplace({{0, 0}, {2, 1}, {3, 2}})
      .set_infer(same_shapes_infer);
  adam.set_compute([](const OpContext &, const Params &p, const BlobList &in, const BlobList &out) {
    double lr = p.f("lr"), wd = p.f("wd"), rs = p.f("rescale_grad"), clip = p.f("clip_gradient"),
           b1 = p.f("beta1"), b2 = p.f("beta2"), eps = p.f("epsilon");
    int64_t t = p.i("t");
    if (t > 0) lr *= std::sqrt(1 - std::pow(b2, double(t))) / (1 - std::pow(b1, double(t)));
    LOOM_FLOAT_SWITCH(in[0].dtype, T, {
      const T *w = in[0].ptr<T>();
      const T *g = in[1].ptr<T>();
      const T *m = in[2].ptr<T>();
      const T *v = in[3].ptr<T>();
      T *ow = out[0].ptr<T>();
      T *om = out[1].ptr<T>();
      T *ov = out[2].ptr<T>();
      parallel_for(in[0].size(), [&](int64_t i) {
        double gi = grad_of(g[i], rs, clip) + wd * double(w[i]);
        double mi = b1 * double(m[i]) + (1 - b1) * gi;
        double vi = b2 * double(v[i]) + (1 - b2) * gi * gi;
        om[i] = static_cast<T>(mi);
        ov[i] = static_cast<T>(vi);
        ow[i] = static_cast<T>(double(w[i]) - lr * mi / (std::sqrt(vi) + eps));
      });
    });
  });
  OpDef &ada = reg.add("adagrad_update");
  ada.set_doc("AdaGrad: g = clip(rescale_grad * grad); history = history + g^2; "
              "w = w - lr * (g / sqrt(history + epsilon) + wd * w).")
      .set_inputs({"weight", "grad", "history"});
  ada.outputs = {"weight", "history"};
  common_params(ada);
  ada.param("epsilon", ParamType::Float, "1e-7", "Added under the square root.")
      .set_inplace({{0, 0}, {2, 1}})
      .set_infer(same_shapes_infer);
  ada.set_compute([](const OpContext &, const Params &p, const BlobList &in, const BlobList &out) {
    double lr = p.f("lr"), wd = p.f("wd"), rs = p.f("rescale_grad"), clip = p.f("clip_gradient"),
           eps = p.f("epsilon");
    LOOM_FLOAT_SWITCH(in[0].dtype, T, {
      const T *w = in[0].ptr<T>(), *g = in[1].ptr<T>(), *h = in[2].ptr<T>();
      T *ow = out[0].ptr<T>(), *oh = out[1].ptr<T>();
      parallel_for(in[0].size(), [&](int64_t i) {
        double gi = grad_of(g[i], rs, clip), wi = w[i];
        double hi = double(h[i]) + gi * gi;
        oh[i] = static_cast<T>(hi);
        ow[i] = static_cast<T>(wi - lr * (gi / std::sqrt(hi + eps) + wd * wi));
      });
    });
  });

  OpDef &rms = reg.add("rmsprop_update");
  rms.set_doc("RMSProp (Tieleman and Hinton): g = clip(rescale_grad * grad) + wd * w; "
              "n = (1 - gamma1) * g^2 + gamma1 * n; w = w - lr * g / sqrt(n + epsilon), "
              "with the step clipped to [-clip_weights, clip_weights] when that is positive.")
      .set_inputs({"weight", "grad", "n"});
  rms.outputs = {"weight", "n"};
  common_params(rms);
  rms.param("gamma1", ParamType::Float, "0.95", "Decay of the squared-gradient average.")
      .param("epsilon", ParamType::Float, "1e-8", "Added under the square root.")
      .param("clip_weights", ParamType::Float, "-1.0",
             "Clips the updated weight to [-c, c]; negative means no clipping.")
      .set_inplace({{0, 0}, {2, 1}})
      .set_infer(same_shapes_infer);
  rms.set_compute([](const OpContext &, const Params &p, const BlobList &in, const BlobList &out) {
    double lr = p.f("lr"), wd = p.f("wd"), rs = p.f("rescale_grad"), clip = p.f("clip_gradient"),
           g1 = p.f("gamma1"), eps = p.f("epsilon"), cw = p.f("clip_weights");
    LOOM_FLOAT_SWITCH(in[0].dtype, T, {
      const T *w = in[0].ptr<T>(), *g = in[1].ptr<T>(), *n = in[2].ptr<T>();
      T *ow = out[0].ptr<T>(), *on = out[1].ptr<T>();
      parallel_for(in[0].size(), [&](int64_t i) {
        double wi = w[i], gi = grad_of(g[i], rs, clip) + wd * wi;
        double ni = (1 - g1) * gi * gi + g1 * double(n[i]);
        double nw = wi - lr * gi / std::sqrt(ni + eps);
        if (cw > 0) nw = std::max(-cw, std::min(cw, nw));
        on[i] = static_cast<T>(ni);
        ow[i] = static_cast<T>(nw);
      });
    });
  });

  OpDef &add = reg.add("adadelta_update");
  add.set_doc("AdaDelta (Zeiler): g = clip(rescale_grad * grad); acc_g = rho * acc_g + (1-rho) "
              "g^2; delta = sqrt(acc_delta + epsilon) / sqrt(acc_g + epsilon) * g; acc_delta = "
              "rho * acc_delta + (1-rho) delta^2; w = w - lr * delta - wd * w. The method needs "
              "no learning rate: lr defaults to 1.")
      .set_inputs({"weight", "grad", "acc_g", "acc_delta"});
  add.outputs = {"weight", "acc_g", "acc_delta"};
  common_params(add, "1.0", "Scales the step (1 in the method as published).");
  add.param("rho", ParamType::Float, "0.9", "Decay of both running averages.")
      .param("epsilon", ParamType::Float, "1e-5", "Added under the square roots.")
      .set_inplace({{0, 0}, {2, 1}, {3, 2}})
      .set_infer(same_shapes_infer);
  add.set_compute([](const OpContext &, const Params &p, const BlobList &in, const BlobList &out) {
    double lr = p.f("lr"), wd = p.f("wd"), rs = p.f("rescale_grad"), clip = p.f("clip_gradient"),
           rho = p.f("rho"), eps = p.f("epsilon");
    LOOM_FLOAT_SWITCH(in[0].dtype, T, {
      const T *w = in[0].ptr<T>(), *g = in[1].ptr<T>(), *ag = in[2].ptr<T>(), *ad = in[3].ptr<T>();
      T *ow = out[0].ptr<T>(), *oag = out[1].ptr<T>(), *oad = out[2].ptr<T>();
      parallel_for(in[0].size(), [&](int64_t i) {
        double wi = w[i], gi = grad_of(g[i], rs, clip);
        double agi = rho * double(ag[i]) + (1 - rho) * gi * gi;
        double delta = std::sqrt(double(ad[i]) + eps) / std::sqrt(agi + eps) * gi;
        oag[i] = static_cast<T>(agi);
        oad[i] = static_cast<T>(rho * double(ad[i]) + (1 - rho) * delta * delta);
        ow[i] = static_cast<T>(wi - lr * delta - wd * wi);
      });
    });
  });

  OpDef &lrs = reg.add("lr_schedule");
  lrs.set_doc("The learning rate after num_update updates, as a float64 scalar of shape (1,). "
              "fixed: base_lr. factor: base_lr * factor^floor(num_update / step), not below "
              "stop_factor_lr. multifactor: base_lr * factor^k, k = the number of steps s <= "
              "num_update. inv: base_lr * (1 + gamma * num_update)^-power. cosine: final_lr + "
              "(base_lr - final_lr) * (1 + cos(pi * num_update / max_update)) / 2, then final_lr.");
  lrs.param("schedule", ParamType::Enum, "fixed", "The schedule.",
            {"fixed", "factor", "multifactor", "inv", "cosine"})
      .required("base_lr", ParamType::Float, "The initial learning rate.")
      .required("num_update", ParamType::Int, "Updates done so far (from 0).")
      .param("step", ParamType::Int, "1", "factor: updates between decays.")
      .param("steps", ParamType::Tuple, "()", "multifactor: increasing update counts at which to decay.")
      .param("factor", ParamType::Float, "1.0", "factor, multifactor: the decay factor.")
      .param("stop_factor_lr", ParamType::Float, "1e-8", "factor: the lowest learning rate.")
      .param("gamma", ParamType::Float, "0.0", "inv: gamma.")
      .param("power", ParamType::Float, "0.0", "inv: power.")
      .param("max_update", ParamType::Int, "1", "cosine: updates until final_lr.")
      .param("final_lr", ParamType::Float, "0.0", "cosine: the last learning rate.");
  lrs.set_infer([](const Params &p, const ShapeList &, const DTypeList &, ShapeList &out,
                   DTypeList &odt) {
    const std::string &s = p.s("schedule");
    LOOM_CHECK(p.i("num_update") >= 0, LOOM_ERR_INVALID_ARGUMENT, p.op().name,
               ": num_update must be >= 0, got ", p.i("num_update"));
    LOOM_CHECK(s != "factor" || p.i("step") >= 1, LOOM_ERR_INVALID_ARGUMENT, p.op().name,
               ": step must be >= 1 for the factor schedule, got ", p.i("step"));
    LOOM_CHECK(s != "cosine" || p.i("max_update") >= 1, LOOM_ERR_INVALID_ARGUMENT, p.op().name,
               ": max_update must be >= 1 for the cosine schedule, got ", p.i("max_update"));
    if (s == "multifactor") {
      const auto &st = p.tuple("steps");
      for (size_t i = 0; i < st.size(); ++i)
        LOOM_CHECK(st[i] >= 1 && (i == 0 || st[i] > st[i - 1]), LOOM_ERR_INVALID_ARGUMENT,
                   p.op().name, ": steps must be positive and increasing, got ",
                   Shape::from(st).str());
    }
    out[0] = Shape{1};
    odt[0] = kFloat64;
  });
  lrs.set_compute([](const OpContext &, const Params &p, const BlobList &, const BlobList &out) {
    const std::string &s = p.s("schedule");
    double lr = p.f("base_lr"), f = p.f("factor");
    int64_t t = p.i("num_update");
    if (s == "factor") {
      lr *= std::pow(f, double(t / p.i("step")));
      lr = std::max(lr, p.f("stop_factor_lr"));
    } else if (s == "multifactor") {
      for (int64_t step : p.tuple("steps"))
        if (t >= step) lr *= f;
    } else if (s == "inv") {
      lr *= std::pow(1 + p.f("gamma") * double(t), -p.f("power"));
    } else if (s == "cosine") {
      int64_t m = p.i("max_update");
      double fl = p.f("final_lr");
      lr = t >= m ? fl : fl + (lr - fl) * (1 + std::cos(M_PI * double(t) / double(m))) / 2;
    }
    out[0].ptr<double>()[0] = lr;
  });
  return 0;
}();

}  // namespace
}  // namespace loom
