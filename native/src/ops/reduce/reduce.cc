// Reductions over axes (sum, mean, prod, max, min), argmax/argmin, and
// softmax/log_softmax. Each output element is accumulated sequentially in
// input order (double for floats, int64 for integers), so results do not
// depend on thread counts (float32 softmax rows: softmax_rows.h).
#include <limits>

#include "ops/common.h"
#include "ops/softmax_rows.h"

namespace loom {
namespace {

enum class Red { Sum, Mean, Prod, Max, Min };

// Which axes a reduction removes: a sorted, de-duplicated list.
std::vector<int> reduce_axes(const Params &p, const Shape &in) {
  std::vector<int> axes;
  std::vector<bool> mark(in.ndim, false);
  if (!p.has("axis") || p.tuple("axis").empty()) {  // every axis; exclude is ignored (MXNet)
    for (int i = 0; i < in.ndim; ++i) axes.push_back(i);
    return axes;
  } else {
    for (int64_t a : p.tuple("axis")) {
      int ax = normalize_axis(a, in.ndim, p.op().name);
      LOOM_CHECK(!mark[ax], LOOM_ERR_INVALID_ARGUMENT, p.op().name, ": axis ", a,
                 " is listed twice in axis=", Shape::from(p.tuple("axis")).str());
      mark[ax] = true;
    }
  }
  if (p.b("exclude"))
    for (int i = 0; i < in.ndim; ++i) mark[i] = !mark[i];
  for (int i = 0; i < in.ndim; ++i)
    if (mark[i]) axes.push_back(i);
  return axes;
}

Shape reduced_shape(const Shape &in, const std::vector<int> &axes, bool keepdims) {
  Shape out;
  for (int i = 0; i < in.ndim; ++i) {
    bool r = std::find(axes.begin(), axes.end(), i) != axes.end();
    if (!r) out.push_back(in.d[i]);
    else if (keepdims) out.push_back(1);
  }
  if (out.ndim == 0 && !keepdims) out.push_back(1);  // a full reduction has shape (1,) in MXNet 1.x
  return out;
}

// The output shape with the reduced axes kept as 1 (for broadcasting back).
Shape kept_shape(const Params &p, const Shape &in) {
  return reduced_shape(in, reduce_axes(p, in), true);
}

// Reduces the middle block of (outer, mid, inner) into (outer, inner).
template <typename T>
void reduce_block(Red r, const T *in, T *out, int64_t outer, int64_t mid, int64_t inner,
                  int64_t count_for_mean) {
  using A = typename Acc<T>::type;
  parallel_for(
      outer * inner,
      [&](int64_t idx) {
        int64_t o = idx / inner, j = idx % inner;
        const T *base = mid ? in + o * mid * inner + j : in;  // an empty input may have no buffer
        A acc = 0;
        switch (r) {
          case Red::Sum:
          case Red::Mean: acc = 0; break;
          case Red::Prod: acc = 1; break;
          case Red::Max: acc = mid ? static_cast<A>(base[0]) : A(0); break;
          case Red::Min: acc = mid ? static_cast<A>(base[0]) : A(0); break;
        }
        for (int64_t k = 0; k < mid; ++k) {
          A v = static_cast<A>(base[k * inner]);
          switch (r) {
            case Red::Sum:
            case Red::Mean: acc = wrap_add(acc, v); break;
            case Red::Prod: acc = wrap_mul(acc, v); break;
            case Red::Max: acc = (v > acc || v != v) ? v : acc; break;
            case Red::Min: acc = (v < acc || v != v) ? v : acc; break;
          }
        }
        if (r == Red::Mean) acc = count_for_mean ? acc / static_cast<A>(count_for_mean) : acc;
        out[idx] = static_cast<T>(acc);
      },
      1 << 10);
}

template <typename T>
void reduce_kernel(Red r, const TBlob &in, const TBlob &out, const std::vector<int> &axes) {
  if (out.size() == 0) return;
  if (axes.empty()) {
    std::copy(in.ptr<T>(), in.ptr<T>() + in.size(), out.ptr<T>());
    return;
  }
  // Runs of adjacent axes reduce in one pass; several runs reduce one after
  // another through temporaries (sum: a fixed order, still deterministic).
  std::vector<std::pair<int, int>> runs;
  for (int a : axes) {
    if (!runs.empty() && runs.back().second == a) runs.back().second = a + 1;
    else runs.emplace_back(a, a + 1);
  }
  int64_t total = 1;
  for (int a : axes) total *= in.shape.d[a];
  Red step = r == Red::Mean ? Red::Sum : r;
  Shape cur = in.shape;
  std::vector<T> buf_a, buf_b;
  const T *src = in.ptr<T>();
  for (size_t k = runs.size(); k-- > 0;) {  // last run first keeps earlier axis numbers valid
    int64_t outer, mid, inner;
    split_axes(cur, runs[k].first, runs[k].second, &outer, &mid, &inner);
    bool last = k == 0;
    T *dst;
    if (last) {
      dst = out.ptr<T>();
    } else {
      auto &buf = (src == buf_a.data()) ? buf_b : buf_a;
      buf.assign(static_cast<size_t>(outer * inner), T(0));
      dst = buf.data();
    }
    if (last && r == Red::Mean) {
      // Mean divides once by the full count, after summing every run.
      reduce_block<T>(Red::Sum, src, dst, outer, mid, inner, 0);
      using A = typename Acc<T>::type;
      for (int64_t i = 0; i < outer * inner; ++i)
        dst[i] = total ? static_cast<T>(static_cast<A>(dst[i]) / static_cast<A>(total)) : dst[i];
    } else {
      reduce_block<T>(step, src, dst, outer, mid, inner, 0);
    }
    Shape next;
    for (int i = 0; i < cur.ndim; ++i)
      if (i < runs[k].first || i >= runs[k].second) next.push_back(cur.d[i]);
      else if (i == runs[k].first) next.push_back(1);
    cur = next;
    src = dst;
  }
}

void register_reduce(const char *name, Red r, const char *doc) {
  Registry::get()
      .add(name)
      .set_doc(doc)
      .set_inputs({"data"})
      .param("axis", ParamType::Tuple, "None",
             "Axes to reduce (negative counts from the end); None reduces all axes.")
      .param("keepdims", ParamType::Bool, "false", "Keep reduced axes with extent 1.")
      .param("exclude", ParamType::Bool, "false", "Reduce every axis except those in axis.")
      .set_infer([r](const Params &p, const ShapeList &in, const DTypeList &dt,
                     ShapeList &out, DTypeList &odt) {
        auto axes = reduce_axes(p, in[0]);
        if (r == Red::Max || r == Red::Min)
          for (int a : axes)
            if (in[0].d[a] == 0)
              shape_fail(p, "cannot reduce over axis " + std::to_string(a) +
                                " of extent 0 in shape " + in[0].str() + " (no identity)");
        out[0] = reduced_shape(in[0], axes, p.b("keepdims"));
        odt[0] = dt[0];
      })
      .set_compute([r](const OpContext &, const Params &p, const BlobList &in,
                       const BlobList &out) {
        auto axes = reduce_axes(p, in[0].shape);
        LOOM_DTYPE_SWITCH(in[0].dtype, T, reduce_kernel<T>(r, in[0], out[0], axes));
      });
  if (r == Red::Max || r == Red::Min) {
    // The gradient goes to every element equal to the result (all of a tie,
    // as in MXNet); NaN results pass none back.
    Registry::get().add(name).set_backward_uses(kBwdAll).set_backward(
        [](const OpContext &, const Params &p, const BlobList &in, const BlobList &out,
           const BlobList &og, const BlobList &ig, const ReqList &req) {
          if (!req[0]) return;
          Shape kept = kept_shape(p, in[0].shape);
          LOOM_FLOAT_SWITCH(in[0].dtype, T, {
            BroadcastIndexer ix(kept, in[0].shape);
            const T *x = in[0].ptr<T>();
            const T *y = out[0].ptr<T>();
            const T *g = og[0].ptr<T>();
            T *d = ig[0].ptr<T>();
            parallel_for(in[0].size(), [&](int64_t i) {
              int64_t o = ix(i);
              d[i] = x[i] == y[o] ? g[o] : T(0);
            });
          });
        });
    return;
  }
  if (r == Red::Prod) {
    // d/dx_i of a product is the product of the other elements: computed from
    // the product of the non-zero elements and the number of zeros, so zeros
    // need no division by zero.
    Registry::get().add(name).set_backward_uses(kBwdInputs).set_backward(
        [](const OpContext &, const Params &p, const BlobList &in, const BlobList &,
           const BlobList &og, const BlobList &ig, const ReqList &req) {
          if (!req[0]) return;
          Shape kept = kept_shape(p, in[0].shape);
          LOOM_FLOAT_SWITCH(in[0].dtype, T, {
            BroadcastIndexer ix(kept, in[0].shape);
            const T *x = in[0].ptr<T>();
            const T *g = og[0].ptr<T>();
            T *d = ig[0].ptr<T>();
            std::vector<double> nonzero(static_cast<size_t>(kept.size()), 1.0);
            std::vector<int64_t> zeros(static_cast<size_t>(kept.size()), 0);
            for (int64_t i = 0; i < in[0].size(); ++i) {  // input order: deterministic
              int64_t o = ix(i);
              if (x[i] == T(0)) ++zeros[o];
              else nonzero[o] *= double(x[i]);
            }
            parallel_for(in[0].size(), [&](int64_t i) {
              int64_t o = ix(i);
              double others = zeros[o] == 0   ? nonzero[o] / double(x[i])
                              : zeros[o] == 1 ? (x[i] == T(0) ? nonzero[o] : 0.0)
                                              : 0.0;
              d[i] = static_cast<T>(double(g[o]) * others);
            });
          });
        });
    return;
  }
  // The output gradient broadcasts back over the reduced axes (divided by the
  // count for mean).
  Registry::get().add(name).set_backward([r](const OpContext &, const Params &p,
                                             const BlobList &in, const BlobList &,
                                             const BlobList &og, const BlobList &ig,
                                             const ReqList &req) {
    if (!req[0]) return;
    auto axes = reduce_axes(p, in[0].shape);
    Shape kept = reduced_shape(in[0].shape, axes, true);
    int64_t count = 1;
    for (int a : axes) count *= in[0].shape.d[a];
    double scale = r == Red::Mean && count ? 1.0 / double(count) : 1.0;
    LOOM_FLOAT_SWITCH(in[0].dtype, T, {
      BroadcastIndexer ix(kept, in[0].shape);
      const T *g = og[0].ptr<T>();
      T *d = ig[0].ptr<T>();
      parallel_for(in[0].size(), [&](int64_t i) { d[i] = static_cast<T>(double(g[ix(i)]) * scale); });
    });
  });
}

template <typename T>
void arg_kernel(bool is_max, const TBlob &in, const TBlob &out, int64_t outer, int64_t mid,
                int64_t inner) {
  const T *a = in.ptr<T>();
  int64_t *o = out.ptr<int64_t>();
  parallel_for(outer * inner, [&](int64_t idx) {
    int64_t oo = idx / inner, j = idx % inner;
    const T *base = a + oo * mid * inner + j;
    int64_t best = 0;
    T bv = base[0];
    for (int64_t k = 1; k < mid; ++k) {
      T v = base[k * inner];
      // The first occurrence wins; NaN counts as the extreme (NumPy).
      if (bv != bv) break;
      if (v != v || (is_max ? v > bv : v < bv)) {
        bv = v;
        best = k;
      }
    }
    o[idx] = best;
  });
}

void register_arg(const char *name, bool is_max, const char *doc) {
  auto split = [](const Params &p, const Shape &s, int64_t *outer, int64_t *mid, int64_t *inner) {
    if (!p.has("axis")) {
      *outer = 1;
      *mid = s.size();
      *inner = 1;
      return;
    }
    int ax = normalize_axis(p.i("axis"), s.ndim, p.op().name);
    split_axes(s, ax, ax + 1, outer, mid, inner);
  };
  Registry::get()
      .add(name)
      .set_doc(doc)
      .set_inputs({"data"})
      .param("axis", ParamType::Int, "None", "Axis to search; None searches the flattened array.")
      .param("keepdims", ParamType::Bool, "false", "Keep the searched axis with extent 1.")
      .set_infer([](const Params &p, const ShapeList &in, const DTypeList &,
                    ShapeList &out, DTypeList &odt) {
        const Shape &s = in[0];
        odt[0] = kInt64;
        if (!p.has("axis")) {
          if (s.size() == 0) shape_fail(p, "cannot search an empty array of shape " + s.str());
          out[0] = Shape{1};  // MXNet 1.x: (1,), or all ones with keepdims
          if (p.b("keepdims")) {
            out[0] = Shape();
            for (int i = 0; i < s.ndim; ++i) out[0].push_back(1);
          }
          return;
        }
        int ax = normalize_axis(p.i("axis"), s.ndim, p.op().name);
        if (s.d[ax] == 0)
          shape_fail(p, "cannot search axis " + std::to_string(ax) + " of extent 0 in shape " +
                            s.str());
        out[0] = reduced_shape(s, {ax}, p.b("keepdims"));
      })
      .set_compute([is_max, split](const OpContext &, const Params &p,
                                   const BlobList &in, const BlobList &out) {
        int64_t outer, mid, inner;
        split(p, in[0].shape, &outer, &mid, &inner);
        LOOM_DTYPE_SWITCH(in[0].dtype, T, arg_kernel<T>(is_max, in[0], out[0], outer, mid, inner));
      });
}

// Float32 rows along the last axis take softmax_row_f32 (exp_approx, sums in
// double lanes); the rest (other axes, float64, rows with NaN or an infinite
// max) are computed in double. Positions are independent, so the ranges (about
// 32K values each) never change a result.
template <typename T>
void softmax_kernel(bool log_form, double temperature, const TBlob &in, const TBlob &out,
                    int64_t outer, int64_t mid, int64_t inner) {
  const T *a = in.ptr<T>();
  T *o = out.ptr<T>();
  const int64_t grain = std::max<int64_t>(1, (int64_t(1) << 15) / std::max<int64_t>(mid, 1));
  parallel_ranges(outer * inner, grain, [&](int64_t b, int64_t e) {
    for (int64_t idx = b; idx < e; ++idx) {
      int64_t oo = idx / inner, j = idx % inner;
      const T *x = a + oo * mid * inner + j;
      T *y = o + oo * mid * inner + j;
      if (std::is_same<T, float>::value && inner == 1 &&
          softmax_row_f32(reinterpret_cast<const float *>(x), reinterpret_cast<float *>(y), mid,
                          static_cast<float>(temperature), log_form))
        continue;
      double mx = -std::numeric_limits<double>::infinity();
      for (int64_t k = 0; k < mid; ++k) mx = std::max(mx, static_cast<double>(x[k * inner]));
      double sum = 0;
      for (int64_t k = 0; k < mid; ++k)
        sum += std::exp((static_cast<double>(x[k * inner]) - mx) / temperature);
      double lse = std::log(sum);
      for (int64_t k = 0; k < mid; ++k) {
        double z = (static_cast<double>(x[k * inner]) - mx) / temperature;
        y[k * inner] = static_cast<T>(log_form ? z - lse : std::exp(z) / sum);
      }
    }
  });
}

void register_softmax(const char *name, bool log_form, const char *doc) {
  Registry::get()
      .add(name)
      .set_doc(doc)
      .set_inputs({"data"})
      .param("axis", ParamType::Int, "-1", "Axis along which to normalise.")
      .param("temperature", ParamType::Float, "1.0", "Divides the inputs before normalising.")
      .set_inplace({{0, 0}})
      .set_infer([](const Params &p, const ShapeList &in, const DTypeList &dt,
                    ShapeList &out, DTypeList &odt) {
        normalize_axis(p.i("axis"), in[0].ndim, p.op().name);
        LOOM_CHECK(p.f("temperature") > 0, LOOM_ERR_INVALID_ARGUMENT, p.op().name,
                   ": temperature must be > 0, got ", p.f("temperature"));
        out[0] = in[0];
        odt[0] = dt[0];
      })
      .set_compute([log_form](const OpContext &, const Params &p, const BlobList &in,
                              const BlobList &out) {
        int ax = normalize_axis(p.i("axis"), in[0].shape.ndim, p.op().name);
        int64_t outer, mid, inner;
        split_axes(in[0].shape, ax, ax + 1, &outer, &mid, &inner);
        LOOM_FLOAT_SWITCH(in[0].dtype, T,
                          softmax_kernel<T>(log_form, p.f("temperature"), in[0], out[0], outer,
                                            mid, inner));
      })
      .float_only = true;
}

const int kRegistered = [] {
  register_reduce("sum", Red::Sum, "Sum over the given axes.");
  register_reduce("mean", Red::Mean,
                  "Mean over the given axes (integer inputs: the sum divided, truncating).");
  register_reduce("prod", Red::Prod, "Product over the given axes.");
  register_reduce("max", Red::Max, "Maximum over the given axes (NaN propagates).");
  register_reduce("min", Red::Min, "Minimum over the given axes (NaN propagates).");
  register_arg("argmax", true,
               "Index (int64) of the largest value along an axis; the first one on ties.");
  register_arg("argmin", false,
               "Index (int64) of the smallest value along an axis; the first one on ties.");
  register_softmax("softmax", false, "Softmax along an axis: exp(x/t) / sum(exp(x/t)).");
  register_softmax("log_softmax", true,
                   "Log of the softmax along an axis, computed stably as x/t - logsumexp(x/t).");
  return 0;
}();

}  // namespace
}  // namespace loom
