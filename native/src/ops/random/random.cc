// Random operators. Each call takes the next stream number at invocation
// time (on the calling thread), so a seeded program draws the same numbers
// whatever the engine, worker count or scheduling.
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
  return 0;
}();

}  // namespace
}  // namespace loom
