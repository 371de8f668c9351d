// Creation operators: zeros, ones, full, arange.
#include "ops/common.h"

namespace loom {
namespace {

template <typename T>
void fill(const TBlob &out, double v) {
  T *o = out.ptr<T>();
  T x = static_cast<T>(v);
  parallel_for(out.size(), [&](int64_t i) { o[i] = x; });
}

void add_creation(const char *name, const char *doc, double value) {
  OpDef &d = Registry::get().add(name);
  d.set_doc(doc).set_inputs({});
  d.param("shape", ParamType::Tuple, "()", "Output shape.");
  bool is_full = value != value;  // NaN marks "full", which takes its value as a parameter
  if (is_full) d.required("value", ParamType::Float, "Fill value.");
  d.param("dtype", ParamType::DType, "float32", "Output dtype.")
      .param("ctx", ParamType::Context, "cpu(0)", "Device of the output.")
      .set_infer([](const Params &p, const ShapeList &, const DTypeList &,
                    ShapeList &out, DTypeList &odt) {
        out[0] = tuple_to_shape(p, "shape");
        odt[0] = p.dtype("dtype");
      })
      .set_compute([is_full, value](const OpContext &, const Params &p,
                                    const BlobList &, const BlobList &out) {
        double v = is_full ? p.f("value") : value;
        LOOM_DTYPE_SWITCH(out[0].dtype, T, fill<T>(out[0], v));
      });
}

int64_t arange_count(const Params &p) {
  double start = p.f("start"), step = p.f("step");
  double stop = p.has("stop") ? p.f("stop") : start;
  if (!p.has("stop")) start = 0;
  LOOM_CHECK(step != 0, LOOM_ERR_INVALID_ARGUMENT, p.op().name, ": step must not be 0");
  double n = std::ceil((stop - start) / step);
  LOOM_CHECK(n < 1e12, LOOM_ERR_INVALID_ARGUMENT, p.op().name, ": range [", start, ", ", stop,
             ") with step ", step, " is too long");
  return n > 0 ? static_cast<int64_t>(n) : 0;
}

const int kRegistered = [] {
  add_creation("zeros", "An array filled with 0.", 0.0);
  add_creation("ones", "An array filled with 1.", 1.0);
  add_creation("full", "An array filled with value.", std::nan(""));
  Registry::get()
      .add("arange")
      .set_doc(
          "Evenly spaced values in [start, stop) with step; with stop None the range is "
          "[0, start) (NumPy's arange).")
      .set_inputs({})
      .param("start", ParamType::Float, "0.0", "First value (or the stop, when stop is None).")
      .param("stop", ParamType::Float, "None", "End of the range, exclusive.")
      .param("step", ParamType::Float, "1.0", "Spacing between values.")
      .param("dtype", ParamType::DType, "float32", "Output dtype.")
      .param("ctx", ParamType::Context, "cpu(0)", "Device of the output.")
      .set_infer([](const Params &p, const ShapeList &, const DTypeList &,
                    ShapeList &out, DTypeList &odt) {
        out[0] = Shape{arange_count(p)};
        odt[0] = p.dtype("dtype");
      })
      .set_compute([](const OpContext &, const Params &p, const BlobList &,
                      const BlobList &out) {
        double start = p.has("stop") ? p.f("start") : 0.0, step = p.f("step");
        LOOM_DTYPE_SWITCH(out[0].dtype, T, {
          T *o = out[0].ptr<T>();
          for (int64_t i = 0; i < out[0].size(); ++i)
            o[i] = static_cast<T>(start + static_cast<double>(i) * step);
        });
      });
  return 0;
}();

}  // namespace
}  // namespace loom
