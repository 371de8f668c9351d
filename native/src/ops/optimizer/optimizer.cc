// Optimizer updates as native ops (MXNet's definitions). Call them with the
// state arrays also given as outputs to update in place:
//   sgd_update(w, g) -> w;  sgd_mom_update(w, g, m) -> (w, m);
//   adam_update(w, g, mean, var) -> (w, mean, var).
#include "ops/common.h"

namespace loom {
namespace {

void common_params(OpDef &d) {
  d.required("lr", ParamType::Float, "Learning rate.")
      .param("wd", ParamType::Float, "0.0", "Weight decay (L2 penalty) coefficient.")
      .param("rescale_grad", ParamType::Float, "1.0", "Multiplies the gradient first.")
      .param("clip_gradient", ParamType::Float, "-1.0",
             "Clips the rescaled gradient to [-c, c]; negative means no clipping.");
  d.float_only = true;
}

// The rescaled, clipped gradient.
inline double grad_of(double g, double rescale, double clip) {
  g *= rescale;
  if (clip >= 0) g = std::max(-clip, std::min(clip, g));
  return g;
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
      parallel_for(in[0].size(), [&](int64_t i) {
        o[i] = static_cast<T>(w[i] - lr * (grad_of(g[i], rs, clip) + wd * w[i]));
      });
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
      parallel_for(in[0].size(), [&](int64_t i) {
        double wi = w[i], step = grad_of(g[i], rs, clip) + wd * wi;
        double mi = mu * double(m[i]) - lr * step;
        om[i] = static_cast<T>(mi);
        ow[i] = static_cast<T>(nesterov ? wi + mu * mi - lr * step : wi + mi);
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
  return 0;
}();

}  // namespace
}  // namespace loom
