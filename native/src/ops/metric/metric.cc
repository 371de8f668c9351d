// Metrics as native ops, so every frontend counts the same way.
#include "ops/common.h"

namespace loom {
namespace {

const int kRegistered = [] {
  OpDef &d = Registry::get().add("accuracy_count");
  d.set_doc("Counts predictions whose arg-max (over the last axis) equals the label: returns "
            "float64 [correct, total]. Sum the results over batches and divide for accuracy.")
      .set_inputs({"pred", "label"});
  d.set_infer([](const Params &p, const ShapeList &in, const DTypeList &, ShapeList &out,
                 DTypeList &odt) {
    const Shape &x = in[0];
    if (x.ndim < 1) shape_fail(p, "pred must have at least 1 dimension, got " + x.str());
    int64_t n = x.size() / std::max<int64_t>(x.d[x.ndim - 1], 1);
    if (in[1].size() != n)
      shape_fail(p, "label has shape " + in[1].str() + " (" + std::to_string(in[1].size()) +
                        " values) but pred " + x.str() + " has " + std::to_string(n) + " rows");
    out[0] = Shape{2};
    odt[0] = kFloat64;
  });
  d.set_compute([](const OpContext &, const Params &, const BlobList &in, const BlobList &out) {
    int64_t k = in[0].shape.d[in[0].shape.ndim - 1], n = in[1].size();
    int64_t correct = 0;
    LOOM_DTYPE_SWITCH(in[0].dtype, P, {
      const P *x = in[0].ptr<P>();
      LOOM_DTYPE_SWITCH(in[1].dtype, L, {
        const L *l = in[1].ptr<L>();
        for (int64_t i = 0; i < n; ++i) {
          int64_t best = 0;
          for (int64_t c = 1; c < k; ++c)
            if (x[i * k + c] > x[i * k + best]) best = c;
          correct += double(l[i]) == double(best);
        }
      });
    });
    out[0].ptr<double>()[0] = double(correct);
    out[0].ptr<double>()[1] = double(n);
  });
  return 0;
}();

}  // namespace
}  // namespace loom
