// Random operators. Each call takes the next stream number at invocation
// time (on the calling thread), so a seeded program draws the same numbers
// whatever the engine, worker count or scheduling.
#include <algorithm>
#include <cmath>

#include "ops/common.h"
#include "ops/random/philox.h"

namespace loom {
namespace {

void creation_params(OpDef &d) {
  d.param("shape", ParamType::Tuple, "()", "Output shape.")
      .param("dtype", ParamType::DType, "float32", "Output dtype (float32 or float64).")
      .param("ctx", ParamType::Context, "cpu(0)", "Device of the output.");
}

void float_creation_infer(const Params &p, const ShapeList &,
                          const DTypeList &, ShapeList &out,
                          DTypeList &odt) {
  out[0] = tuple_to_shape(p, "shape");
  odt[0] = p.dtype("dtype");
  LOOM_CHECK(dtype_is_float(odt[0]), LOOM_ERR_DTYPE, p.op().name, ": dtype ",
             dtype_name(odt[0]), " is not supported; use float32 or float64");
}

// Draws the uniform stream; element i uses block i/4, word i%4 (float32) or
// block i/2, words 2(i%2), 2(i%2)+1 (float64).
template <typename T, typename F>
void fill_uniform01(const OpContext &c, T *o, int64_t n, F &&transform) {
  Philox ph(c.rng_key, c.rng_stream);
  constexpr int per = std::is_same_v<T, float> ? 4 : 2;
  int64_t blocks = (n + per - 1) / per;
  parallel_for(blocks, [&](int64_t b) {
    uint32_t w[4];
    ph.block(static_cast<uint64_t>(b), w);
    for (int k = 0; k < per; ++k) {
      int64_t i = b * per + k;
      if (i >= n) break;
      if constexpr (std::is_same_v<T, float>)
        o[i] = transform(static_cast<double>(u01_float(w[k])));
      else
        o[i] = transform(u01_double(w[2 * k], w[2 * k + 1]));
    }
  }, 1 << 12);
}

const int kRegistered = [] {
  auto &reg = Registry::get();
  OpDef &u = reg.add("random_uniform");
  u.set_doc("Samples uniformly from [low, high) with the seeded counter-based generator.")
      .set_inputs({})
      .param("low", ParamType::Float, "0.0", "Lower bound (inclusive).")
      .param("high", ParamType::Float, "1.0", "Upper bound (exclusive).");
  creation_params(u);
  u.random = true;
  u.set_infer([](const Params &p, const ShapeList &s, const DTypeList &d,
                 ShapeList &out, DTypeList &odt) {
     LOOM_CHECK(p.f("low") <= p.f("high"), LOOM_ERR_INVALID_ARGUMENT, p.op().name, ": low=",
                p.f("low"), " is greater than high=", p.f("high"));
     float_creation_infer(p, s, d, out, odt);
   }).set_compute([](const OpContext &c, const Params &p, const BlobList &,
                     const BlobList &out) {
    double lo = p.f("low"), span = p.f("high") - p.f("low");
    LOOM_FLOAT_SWITCH(out[0].dtype, T, {
      T hi = static_cast<T>(p.f("high"));
      fill_uniform01<T>(c, out[0].ptr<T>(), out[0].size(), [&](double x) {
        T v = static_cast<T>(lo + span * x);
        return v < hi || span == 0 ? v : static_cast<T>(lo);  // rounding must not reach high
      });
    });
  });

  OpDef &g = reg.add("random_normal");
  g.set_doc("Samples from a normal distribution N(loc, scale^2) (Box-Muller on the seeded "
            "counter-based generator).")
      .set_inputs({})
      .param("loc", ParamType::Float, "0.0", "Mean.")
      .param("scale", ParamType::Float, "1.0", "Standard deviation (>= 0).");
  creation_params(g);
  g.random = true;
  g.set_infer([](const Params &p, const ShapeList &s, const DTypeList &d,
                 ShapeList &out, DTypeList &odt) {
     LOOM_CHECK(p.f("scale") >= 0, LOOM_ERR_INVALID_ARGUMENT, p.op().name,
                ": scale must be >= 0, got ", p.f("scale"));
     float_creation_infer(p, s, d, out, odt);
   }).set_compute([](const OpContext &c, const Params &p, const BlobList &,
                     const BlobList &out) {
    double loc = p.f("loc"), scale = p.f("scale");
    Philox ph(c.rng_key, c.rng_stream);
    const int64_t n = out[0].size();
    // Pair i of the output uses block i: two uniforms of 53 bits each.
    LOOM_FLOAT_SWITCH(out[0].dtype, T, {
      T *o = out[0].ptr<T>();
      parallel_for((n + 1) / 2, [&](int64_t b) {
        uint32_t w[4];
        ph.block(static_cast<uint64_t>(b), w);
        double u1 = 1.0 - u01_double(w[0], w[1]);  // (0, 1]
        double u2 = u01_double(w[2], w[3]);
        double r = std::sqrt(-2.0 * std::log(u1)), t = 6.283185307179586 * u2;
        o[2 * b] = static_cast<T>(loc + scale * r * std::cos(t));
        if (2 * b + 1 < n) o[2 * b + 1] = static_cast<T>(loc + scale * r * std::sin(t));
      }, 1 << 12);
    });
  });

  // Xavier/Glorot initialisation (MXNet's Xavier): fan_in = shape[1] * rf,
  // fan_out = shape[0] * rf with rf the product of shape[2:]; scale =
  // sqrt(magnitude / factor), factor the mean of the fans, fan_in or fan_out.
  OpDef &x = reg.add("init_xavier");
  x.set_doc("Xavier initialisation: uniform in [-s, s] or normal with deviation s, "
            "s = sqrt(magnitude / factor) from the fans of shape (at least 2-D).")
      .set_inputs({})
      .param("rnd_type", ParamType::Enum, "uniform", "Distribution.", {"uniform", "gaussian"})
      .param("factor_type", ParamType::Enum, "avg", "Which fan scales.", {"avg", "in", "out"})
      .param("magnitude", ParamType::Float, "3.0", "Scale numerator.");
  creation_params(x);
  x.random = true;
  x.set_infer([](const Params &p, const ShapeList &s, const DTypeList &d, ShapeList &out,
                 DTypeList &odt) {
    float_creation_infer(p, s, d, out, odt);
    LOOM_CHECK(out[0].ndim >= 2, LOOM_ERR_SHAPE, p.op().name,
               ": needs a shape with at least 2 dimensions, got ", out[0].str());
    LOOM_CHECK(p.f("magnitude") > 0, LOOM_ERR_INVALID_ARGUMENT, p.op().name,
               ": magnitude must be > 0, got ", p.f("magnitude"));
  }).set_compute([](const OpContext &c, const Params &p, const BlobList &,
                    const BlobList &out) {
    const Shape &s = out[0].shape;
    double rf = 1;
    for (int i = 2; i < s.ndim; ++i) rf *= double(s.d[i]);
    double fan_in = double(s.d[1]) * rf, fan_out = double(s.d[0]) * rf;
    const std::string &ft = p.s("factor_type");
    double factor = ft == "in" ? fan_in : ft == "out" ? fan_out : (fan_in + fan_out) / 2;
    double scale = std::sqrt(p.f("magnitude") / std::max(factor, 1.0));
    bool gaussian = p.s("rnd_type") == "gaussian";
    Philox ph(c.rng_key, c.rng_stream);
    const int64_t n = out[0].size();
    LOOM_FLOAT_SWITCH(out[0].dtype, T, {
      T *o = out[0].ptr<T>();
      if (gaussian) {
        parallel_for((n + 1) / 2, [&](int64_t b) {
          uint32_t w[4];
          ph.block(static_cast<uint64_t>(b), w);
          double r = std::sqrt(-2.0 * std::log(1.0 - u01_double(w[0], w[1]))),
                 t = 6.283185307179586 * u01_double(w[2], w[3]);
          o[2 * b] = static_cast<T>(scale * r * std::cos(t));
          if (2 * b + 1 < n) o[2 * b + 1] = static_cast<T>(scale * r * std::sin(t));
        }, 1 << 12);
      } else {
        fill_uniform01<T>(c, o, n, [&](double u) { return static_cast<T>(-scale + 2 * scale * u); });
      }
    });
  });

  // A seeded random permutation of [0, n) (Fisher-Yates on the counter-based stream).
  OpDef &perm = reg.add("random_permutation");
  perm.set_doc("A random permutation of 0..n-1 (int64), from the seeded generator.")
      .set_inputs({})
      .required("n", ParamType::Int, "Length of the permutation.")
      .param("ctx", ParamType::Context, "cpu(0)", "Device of the output.");
  perm.random = true;
  perm.set_infer([](const Params &p, const ShapeList &, const DTypeList &, ShapeList &out,
                    DTypeList &odt) {
    LOOM_CHECK(p.i("n") >= 0, LOOM_ERR_INVALID_ARGUMENT, p.op().name, ": n must be >= 0, got ",
               p.i("n"));
    out[0] = Shape{p.i("n")};
    odt[0] = kInt64;
  }).set_compute([](const OpContext &c, const Params &, const BlobList &, const BlobList &out) {
    Philox ph(c.rng_key, c.rng_stream);
    int64_t n = out[0].size();
    int64_t *o = out[0].ptr<int64_t>();
    for (int64_t i = 0; i < n; ++i) o[i] = i;
    for (int64_t i = n - 1; i > 0; --i) {
      uint32_t w[4];
      ph.block(static_cast<uint64_t>(i), w);
      uint64_t r = (uint64_t(w[0]) << 32) | w[1];
      int64_t j = static_cast<int64_t>(r % uint64_t(i + 1));
      std::swap(o[i], o[j]);
    }
  });
  // MXNet's sample_multinomial: one index per draw from each row's categorical
  // distribution (the last axis), by the first cumulative probability >= u.
  OpDef &m = reg.add("sample_multinomial");
  m.set_doc("Draws indices from the categorical distributions in the last axis of data "
            "(probabilities: finite, >= 0, each row summing to 1 within 1e-3). The output is "
            "data.shape[:-1] + shape (a 1-D data with shape () gives (1,)); with get_prob also "
            "the log-probability of each draw. Draw j of row i compares a uniform u with the "
            "cumulative sums (MXNet's rule); a u past the last sum (rounding) takes the last "
            "index with a nonzero probability.")
      .set_inputs({"data"})
      .param("shape", ParamType::Tuple, "()", "Draws per distribution.")
      .param("get_prob", ParamType::Bool, "false", "Also output log(p) of each draw.")
      .param("dtype", ParamType::DType, "int32", "Output dtype of the indices.");
  m.outputs = {"out", "prob"};
  m.num_outputs = [](const Params &p) { return p.b("get_prob") ? 2 : 1; };
  m.random = true;
  m.float_only = true;
  m.set_infer([](const Params &p, const ShapeList &in, const DTypeList &dt, ShapeList &out,
                 DTypeList &odt) {
    if (in[0].ndim < 1) shape_fail(p, "data must have at least 1 dimension (the categories), got " + in[0].str());
    if (in[0].d[in[0].ndim - 1] < 1) shape_fail(p, "data has no categories: " + in[0].str());
    Shape draws = tuple_to_shape(p, "shape");
    Shape o;
    if (in[0].ndim == 1) {
      o = draws.ndim ? draws : Shape{1};
    } else {
      o.ndim = in[0].ndim - 1 + draws.ndim;
      LOOM_CHECK(o.ndim <= LOOM_MAX_NDIM, LOOM_ERR_SHAPE, p.op().name, ": data ", in[0].str(), " and shape ",
                 draws.str(), " give more than ", LOOM_MAX_NDIM, " dimensions");
      for (int k = 0; k + 1 < in[0].ndim; ++k) o.d[k] = in[0].d[k];
      for (int k = 0; k < draws.ndim; ++k) o.d[in[0].ndim - 1 + k] = draws.d[k];
    }
    out[0] = o;
    odt[0] = p.dtype("dtype");
    if (out.size() > 1) out[1] = o, odt[1] = dt[0];
  });
  m.set_compute([](const OpContext &c, const Params &p, const BlobList &in, const BlobList &out) {
    const int64_t K = in[0].shape.d[in[0].shape.ndim - 1];
    const int64_t rows = in[0].size() / K;
    const int64_t M = rows ? out[0].size() / rows : 0;
    Philox ph(c.rng_key, c.rng_stream);
    LOOM_FLOAT_SWITCH(in[0].dtype, T, {
      const T *dist = in[0].ptr<T>();
      std::vector<double> cum(static_cast<size_t>(K));
      for (int64_t i = 0; i < rows; ++i) {
        double acc = 0;
        int64_t last = 0;
        for (int64_t k = 0; k < K; ++k) {
          const double v = static_cast<double>(dist[i * K + k]);
          LOOM_CHECK(std::isfinite(v) && v >= 0, LOOM_ERR_INVALID_ARGUMENT, p.op().name, ": data row ", i,
                     " has probability ", v, " at category ", k, "; probabilities must be finite and >= 0");
          acc += v;
          cum[k] = acc;
          if (v > 0) last = k;
        }
        LOOM_CHECK(std::fabs(acc - 1) <= 1e-3, LOOM_ERR_INVALID_ARGUMENT, p.op().name, ": data row ", i,
                   " sums to ", acc, ", not 1 (", K, " categories)");
        for (int64_t j = 0; j < M; ++j) {
          const uint64_t n = static_cast<uint64_t>(i * M + j);
          uint32_t w[4];
          ph.block(n / 2, w);
          const double u = u01_double(w[2 * (n % 2)], w[2 * (n % 2) + 1]);
          const int64_t idx = std::min<int64_t>(std::lower_bound(cum.begin(), cum.end(), u) - cum.begin(), last);
          LOOM_DTYPE_SWITCH(out[0].dtype, O, { out[0].ptr<O>()[i * M + j] = static_cast<O>(idx); });
          if (out.size() > 1) out[1].ptr<T>()[i * M + j] = static_cast<T>(std::log(double(dist[i * K + idx])));
        }
      }
    });
  });

  return 0;
}();

}  // namespace
}  // namespace loom
