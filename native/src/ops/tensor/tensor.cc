// Shape-manipulating and selection operators: transpose, concat, slice,
// reshape, one_hot, clip, where, cast, copy.
#include <climits>

#include "backend/device.h"
#include "ops/common.h"

namespace loom {
namespace {

// take's geometry around its axis, and MXNet's index modes.
struct TakeDims {
  int64_t outer = 1, n = 1, inner = 1;
  TakeDims(const Params &p, const Shape &data) {
    int ax = normalize_axis(p.i("axis"), data.ndim, p.op().name, "axis");
    split_axes(data, ax, ax + 1, &outer, &n, &inner);
  }
  // The slice index of `v`: truncated, then clipped, wrapped or refused.
  int64_t row(const Params &p, double v, int64_t at) const {
    const std::string &mode = p.s("mode");
    if (std::isnan(v) || (mode == "raise" && !(v >= 0 && v < double(n)))) {
      fail(LOOM_ERR_INVALID_ARGUMENT, p.op().name, ": index ", v, " at position ", at,
           " is outside [0, ", n, ") (mode=", mode, ")");
    }
    if (n == 0) fail(LOOM_ERR_INVALID_ARGUMENT, p.op().name, ": cannot take from an empty axis");
    double lim = 9.0e18;
    int64_t j = static_cast<int64_t>(std::max(-lim, std::min(lim, v)));
    if (mode == "wrap") {
      j %= n;
      return j < 0 ? j + n : j;
    }
    return j < 0 ? 0 : (j >= n ? n - 1 : j);
  }
};

// The backward of a gather by indices (take, pick): the indices get no gradient (zeros);
// data's gradient starts at zero and scatter(idx, d, g) adds each output element's gradient
// g to the element of d it was read from.
template <class Scatter>
void gather_backward(const BlobList &in, const BlobList &og, const BlobList &ig,
                     const ReqList &req, Scatter scatter) {
  if (req[1]) LOOM_FLOAT_SWITCH(ig[1].dtype, I, {
      std::fill(ig[1].ptr<I>(), ig[1].ptr<I>() + ig[1].size(), I(0));
    });
  if (!req[0]) return;
  LOOM_FLOAT_SWITCH(in[0].dtype, T, {
    T *d = ig[0].ptr<T>();
    std::fill(d, d + ig[0].size(), T(0));
    LOOM_DTYPE_SWITCH(in[1].dtype, I, { scatter(in[1].ptr<I>(), d, og[0].ptr<T>()); });
  });
}

// ---------------------------------------------------------------- transpose
std::vector<int> transpose_axes(const Params &p, const Shape &s) {
  std::vector<int> axes;
  const auto &t = p.tuple("axes");
  if (t.empty()) {
    for (int i = s.ndim - 1; i >= 0; --i) axes.push_back(i);
    return axes;
  }
  LOOM_CHECK(static_cast<int>(t.size()) == s.ndim, LOOM_ERR_INVALID_ARGUMENT, p.op().name,
             ": axes=", Shape::from(t).str(), " must list all ", s.ndim, " axes of shape ",
             s.str());
  std::vector<bool> seen(s.ndim, false);
  for (int64_t a : t) {
    int ax = normalize_axis(a, s.ndim, p.op().name, "axes");
    LOOM_CHECK(!seen[ax], LOOM_ERR_INVALID_ARGUMENT, p.op().name, ": axes=",
               Shape::from(t).str(), " repeats axis ", ax);
    seen[ax] = true;
    axes.push_back(ax);
  }
  return axes;
}

template <typename T>
void permute(const TBlob &in, const TBlob &out, const std::vector<int> &axes) {
  const Shape &is = in.shape;
  const int nd = is.ndim;
  std::vector<int64_t> istride(nd, 1);
  for (int i = nd - 2; i >= 0; --i) istride[i] = istride[i + 1] * is.d[i + 1];
  std::vector<int64_t> st(nd);  // input stride for each output axis
  for (int i = 0; i < nd; ++i) st[i] = istride[axes[i]];
  const T *a = in.ptr<T>();
  T *o = out.ptr<T>();
  const Shape os = out.shape;
  if (nd == 2 && axes[0] == 1) {  // blocked 2-D transpose
    const int64_t R = is.d[0], C = is.d[1], B = 32;
    for (int64_t r0 = 0; r0 < R; r0 += B)
      for (int64_t c0 = 0; c0 < C; c0 += B)
        for (int64_t r = r0; r < std::min(R, r0 + B); ++r)
          for (int64_t c = c0; c < std::min(C, c0 + B); ++c) o[c * R + r] = a[r * C + c];
    return;
  }
  parallel_for(out.size(), [&](int64_t flat) {
    int64_t src = 0, f = flat;
    for (int i = nd - 1; i >= 0; --i) {
      src += (f % os.d[i]) * st[i];
      f /= os.d[i];
    }
    o[flat] = a[src];
  });
}

// ---------------------------------------------------------------- slice
struct SliceSpec {
  std::vector<int64_t> begin, step;
  Shape out;
};

SliceSpec slice_spec(const Params &p, const Shape &s) {
  const auto &b = p.tuple("begin");
  const auto &e = p.tuple("end");
  const auto &st = p.tuple("step");
  LOOM_CHECK(b.size() == e.size() && b.size() <= static_cast<size_t>(s.ndim),
             LOOM_ERR_INVALID_ARGUMENT, p.op().name, ": begin has ", b.size(),
             " entries and end has ", e.size(), "; both must have the same length, at most ndim=",
             s.ndim, " of shape ", s.str());
  LOOM_CHECK(st.empty() || st.size() == b.size(), LOOM_ERR_INVALID_ARGUMENT, p.op().name,
             ": step has ", st.size(), " entries but begin has ", b.size());
  SliceSpec sp;
  sp.out = s;
  for (int i = 0; i < s.ndim; ++i) {
    int64_t n = s.d[i];
    int64_t step = (i < static_cast<int>(st.size()) && st[i] != INT64_MIN) ? st[i] : 1;
    LOOM_CHECK(step != 0, LOOM_ERR_INVALID_ARGUMENT, p.op().name, ": step on axis ", i,
               " is 0");
    int64_t lo, hi;
    bool has_b = i < static_cast<int>(b.size()) && b[i] != INT64_MIN;
    bool has_e = i < static_cast<int>(e.size()) && e[i] != INT64_MIN;
    // Python slicing semantics, clamped to the axis.
    if (step > 0) {
      lo = has_b ? (b[i] < 0 ? std::max<int64_t>(b[i] + n, 0) : std::min(b[i], n)) : 0;
      hi = has_e ? (e[i] < 0 ? std::max<int64_t>(e[i] + n, 0) : std::min(e[i], n)) : n;
      sp.out.d[i] = hi > lo ? (hi - lo + step - 1) / step : 0;
    } else {
      lo = has_b ? (b[i] < 0 ? std::max<int64_t>(b[i] + n, -1) : std::min(b[i], n - 1)) : n - 1;
      hi = has_e ? (e[i] < 0 ? std::max<int64_t>(e[i] + n, -1) : std::min(e[i], n - 1)) : -1;
      sp.out.d[i] = lo > hi ? (lo - hi + (-step) - 1) / (-step) : 0;
    }
    sp.begin.push_back(lo);
    sp.step.push_back(step);
  }
  return sp;
}

// Calls f(out_index, in_index) for every element of the slice of a `whole`
// shaped array that gives `part`.
template <typename F>
void for_each_sliced(const Shape &whole, const Shape &part, const SliceSpec &sp, F &&f) {
  const int nd = whole.ndim;
  std::vector<int64_t> stride(nd, 1);
  for (int i = nd - 2; i >= 0; --i) stride[i] = stride[i + 1] * whole.d[i + 1];
  parallel_for(part.size(), [&](int64_t flat) {
    int64_t src = 0, r = flat;
    for (int i = nd - 1; i >= 0; --i) {
      int64_t c = r % part.d[i];
      r /= part.d[i];
      src += (sp.begin[i] + c * sp.step[i]) * stride[i];
    }
    f(flat, src);
  });
}

template <typename T>
void slice_kernel(const TBlob &in, const TBlob &out, const SliceSpec &sp) {
  const T *a = in.ptr<T>();
  T *o = out.ptr<T>();
  for_each_sliced(in.shape, out.shape, sp, [&](int64_t to, int64_t from) { o[to] = a[from]; });
}

// The slice's gradient: zeros, with the output gradient written back where
// the slice came from (positions are distinct, so no accumulation).
template <typename T>
void unslice_kernel(const TBlob &og, const TBlob &ig, const SliceSpec &sp) {
  T *d = ig.ptr<T>();
  const T *g = og.ptr<T>();
  std::fill(d, d + ig.size(), T(0));
  for_each_sliced(ig.shape, og.shape, sp, [&](int64_t from, int64_t to) { d[to] = g[from]; });
}

// ---------------------------------------------------------------- reshape
// MXNet's special codes: 0 copy this dim, -1 infer, -2 copy all remaining,
// -3 merge two dims, -4 split one dim into the next two values (one may be -1).
// MXNet's InferReshapeShape over `in` (already reversed when reverse is set).
Shape reshape_codes(const Params &p, const std::vector<int64_t> &t, const Shape &in) {
  Shape out;
  int src = 0, infer = -1;
  for (size_t k = 0; k < t.size(); ++k) {
    int64_t v = t[k];
    if (v > 0) {
      out.push_back(v);
      ++src;
    } else if (v == 0) {
      LOOM_CHECK(src < in.ndim, LOOM_ERR_SHAPE, p.op().name, ": code 0 at position ", k,
                 " has no input dimension to copy from shape ", in.str());
      out.push_back(in.d[src++]);
    } else if (v == -1) {
      LOOM_CHECK(infer < 0, LOOM_ERR_SHAPE, p.op().name, ": more than one -1 in shape=",
                 Shape::from(t).str());
      infer = out.ndim;
      out.push_back(1);
      ++src;
    } else if (v == -2) {
      while (src < in.ndim) out.push_back(in.d[src++]);
    } else if (v == -3) {
      LOOM_CHECK(src + 1 < in.ndim, LOOM_ERR_SHAPE, p.op().name, ": code -3 at position ", k,
                 " needs two input dimensions from shape ", in.str());
      out.push_back(in.d[src] * in.d[src + 1]);
      src += 2;
    } else if (v == -4) {
      LOOM_CHECK(k + 2 < t.size() && src < in.ndim, LOOM_ERR_SHAPE, p.op().name,
                 ": code -4 at position ", k, " needs two values after it and an input dimension");
      int64_t d = in.d[src++], a = t[k + 1], b = t[k + 2];
      LOOM_CHECK(!(a == -1 && b == -1), LOOM_ERR_SHAPE, p.op().name,
                 ": code -4 cannot split into (-1, -1)");
      if (a == -1) a = b ? d / b : 0;
      if (b == -1) b = a ? d / a : 0;
      LOOM_CHECK(a >= 0 && b >= 0 && a * b == d, LOOM_ERR_SHAPE, p.op().name,
                 ": code -4 cannot split extent ", d, " into (", t[k + 1], ", ", t[k + 2], ")");
      out.push_back(a);
      out.push_back(b);
      k += 2;
    } else {
      fail(LOOM_ERR_SHAPE, p.op().name, ": invalid code ", v, " in shape=", Shape::from(t).str());
    }
  }
  if (infer >= 0) {
    int64_t known = 1;
    for (int i = 0; i < out.ndim; ++i)
      if (i != infer) known *= out.d[i];
    LOOM_CHECK(known > 0 && in.size() % known == 0, LOOM_ERR_SHAPE, p.op().name,
               ": cannot infer -1 in shape=", Shape::from(t).str(), " for input ", in.str());
    out.d[infer] = in.size() / known;
  }
  return out;
}

Shape tuple_to_shape_any(const Params &p, const std::vector<int64_t> &t) {
  LOOM_CHECK(t.size() <= LOOM_MAX_NDIM, LOOM_ERR_SHAPE, p.op().name, ": target_shape has too many axes");
  for (int64_t v : t)
    LOOM_CHECK(v >= 0, LOOM_ERR_SHAPE, p.op().name, ": target_shape has a negative extent");
  return Shape::from(t);
}

Shape reversed(const Shape &s) {
  Shape r = s;
  std::reverse(r.d, r.d + r.ndim);
  return r;
}

// The target shape: MXNet's codes (read from the right with reverse), or the
// deprecated target_shape, where one 0 is inferred and keep_highest keeps axis 0.
Shape reshape_target(const Params &p, const Shape &in) {
  const auto &t = p.tuple("shape");
  Shape out;
  if (!t.empty()) {
    if (p.b("reverse")) {
      std::vector<int64_t> rt(t.rbegin(), t.rend());
      out = reversed(reshape_codes(p, rt, reversed(in)));
    } else {
      out = reshape_codes(p, t, in);
    }
  } else {
    const auto &target = p.tuple("target_shape");
    LOOM_CHECK(!target.empty(), LOOM_ERR_INVALID_ARGUMENT, p.op().name,
               ": give shape (or the deprecated target_shape)");
    out = tuple_to_shape_any(p, target);
    int start = p.b("keep_highest") ? 1 : 0;
    if (start && out.ndim > 0 && in.ndim > 0) out.d[0] = in.d[0];
    int zeros = 0, at = 0;
    for (int i = start; i < out.ndim; ++i)
      if (out.d[i] == 0) ++zeros, at = i;
    if (zeros == 1) {
      out.d[at] = 1;
      int64_t rest = out.size();
      out.d[at] = rest ? in.size() / rest : 0;
    }
  }
  LOOM_CHECK(out.size() == in.size(), LOOM_ERR_SHAPE, p.op().name, ": cannot reshape ", in.str(),
             " (", in.size(), " elements) to ", out.str(), " (", out.size(), " elements)");
  return out;
}

template <typename S, typename D>
void cast_kernel(const TBlob &in, const TBlob &out) {
  const S *a = in.ptr<S>();
  D *o = out.ptr<D>();
  parallel_for(in.size(), [&](int64_t i) { o[i] = convert_value<D>(a[i]); });
}

void copy_bytes(const TBlob &in, const TBlob &out) {
  size_t n = static_cast<size_t>(in.size()) * dtype_size(in.dtype);
  if (in.ctx.dev_type == LOOM_DEVICE_CPU && out.ctx.dev_type == LOOM_DEVICE_CPU) {
    if (n && in.dptr != out.dptr) std::memcpy(out.dptr, in.dptr, n);
    return;
  }
  if (in.dptr != out.dptr || in.ctx != out.ctx) device::copy(out.dptr, out.ctx, in.dptr, in.ctx, n);
}

const int kRegistered = [] {
  auto &reg = Registry::get();

  reg.add("transpose")
      .set_doc("Permutes the axes. With axes empty, reverses them (matrix transpose for 2-D).")
      .set_inputs({"data"})
      .param("axes", ParamType::Tuple, "()", "New order of the axes; () reverses them.")
      .set_infer([](const Params &p, const ShapeList &in, const DTypeList &dt,
                    ShapeList &out, DTypeList &odt) {
        auto axes = transpose_axes(p, in[0]);
        out[0].ndim = in[0].ndim;
        for (int i = 0; i < in[0].ndim; ++i) out[0].d[i] = in[0].d[axes[i]];
        odt[0] = dt[0];
      })
      .set_compute([](const OpContext &, const Params &p, const BlobList &in,
                      const BlobList &out) {
        auto axes = transpose_axes(p, in[0].shape);
        LOOM_DTYPE_SWITCH(in[0].dtype, T, permute<T>(in[0], out[0], axes));
      });

  reg.add("concat")
      .set_doc("Joins arrays along an axis; all other extents must agree.")
      .set_inputs({"data"})
      .set_variadic()
      .param("dim", ParamType::Int, "1", "Axis to join along (negative counts from the end).")
      .set_infer([](const Params &p, const ShapeList &in, const DTypeList &dt,
                    ShapeList &out, DTypeList &odt) {
        odt[0] = same_dtype(p, dt);
        int ax = normalize_axis(p.i("dim"), in[0].ndim, p.op().name, "dim");
        Shape s = in[0];
        for (size_t k = 1; k < in.size(); ++k) {
          bool ok = in[k].ndim == s.ndim;
          for (int i = 0; ok && i < s.ndim; ++i) ok = i == ax || in[k].d[i] == in[0].d[i];
          if (!ok)
            shape_fail(p, "input " + std::to_string(k) + " has shape " + in[k].str() +
                              ", which does not match input 0 " + in[0].str() +
                              " outside dim " + std::to_string(ax));
          s.d[ax] += in[k].d[ax];
        }
        out[0] = s;
      })
      .set_compute([](const OpContext &, const Params &p, const BlobList &in,
                      const BlobList &out) {
        int ax = normalize_axis(p.i("dim"), in[0].shape.ndim, p.op().name, "dim");
        int64_t outer, mid, inner;
        split_axes(out[0].shape, ax, ax + 1, &outer, &mid, &inner);
        size_t es = dtype_size(out[0].dtype);
        char *o = static_cast<char *>(out[0].dptr);
        int64_t offset = 0;
        for (const TBlob &b : in) {
          int64_t bm = b.shape.d[ax];
          size_t row = static_cast<size_t>(bm * inner) * es;
          for (int64_t r = 0; r < outer && row; ++r)
            std::memcpy(o + static_cast<size_t>((r * mid + offset) * inner) * es,
                        static_cast<const char *>(b.dptr) + r * row, row);
          offset += bm;
        }
      });

  reg.add("slice")
      .set_doc(
          "Takes a strided block with Python slicing semantics per axis: begin, end and step "
          "tuples (None entries mean the default); axes beyond the tuples are kept whole.")
      .set_inputs({"data"})
      .required("begin", ParamType::Tuple, "Start index per axis (None for the start).")
      .required("end", ParamType::Tuple, "Stop index per axis, exclusive (None for the end).")
      .param("step", ParamType::Tuple, "()", "Step per axis (None or omitted for 1).")
      .set_infer([](const Params &p, const ShapeList &in, const DTypeList &dt,
                    ShapeList &out, DTypeList &odt) {
        out[0] = slice_spec(p, in[0]).out;
        odt[0] = dt[0];
      })
      .set_compute([](const OpContext &, const Params &p, const BlobList &in,
                      const BlobList &out) {
        auto sp = slice_spec(p, in[0].shape);
        LOOM_DTYPE_SWITCH(in[0].dtype, T, slice_kernel<T>(in[0], out[0], sp));
      })
      .set_backward_uses(kBwdNone)
      .set_backward([](const OpContext &, const Params &p, const BlobList &in, const BlobList &,
                       const BlobList &og, const BlobList &ig, const ReqList &req) {
        if (!req[0]) return;
        auto sp = slice_spec(p, in[0].shape);
        LOOM_FLOAT_SWITCH(in[0].dtype, T, unslice_kernel<T>(og[0], ig[0], sp));
      });

  reg.add("reshape")
      .set_doc(
          "Gives the data a new shape with the same element count. Codes: 0 copies an input "
          "dimension, -1 infers one, -2 copies all remaining, -3 merges two, -4 splits one into "
          "the next two values.")
      .set_inputs({"data"})
      .param("shape", ParamType::Tuple, "()", "Target shape, with MXNet's special codes.")
      .param("reverse", ParamType::Bool, "false",
             "Apply the codes from the right (MXNet's reverse).")
      .param("target_shape", ParamType::Tuple, "()",
             "Deprecated MXNet form: the shape, with one 0 inferred (used when shape is empty).")
      .param("keep_highest", ParamType::Bool, "false",
             "With target_shape: keep the first axis of the input.")
      .set_inplace({{0, 0}})
      .set_infer([](const Params &p, const ShapeList &in, const DTypeList &dt,
                    ShapeList &out, DTypeList &odt) {
        out[0] = reshape_target(p, in[0]);
        odt[0] = dt[0];
      })
      .set_compute([](const OpContext &, const Params &, const BlobList &in,
                      const BlobList &out) { copy_bytes(in[0], out[0]); });

  reg.add("one_hot")
      .set_doc(
          "One-hot encoding: output shape indices.shape + (depth,), on_value where the index "
          "matches (indices are truncated to integers). A row whose index lies outside "
          "[0, depth) is all off_value (MXNet's rule); a NaN index is an error.")
      .set_inputs({"indices"})
      .required("depth", ParamType::Int, "Number of classes.")
      .param("on_value", ParamType::Float, "1.0", "Value at the index.")
      .param("off_value", ParamType::Float, "0.0", "Value elsewhere.")
      .param("dtype", ParamType::DType, "float32", "Output dtype.")
      .set_infer([](const Params &p, const ShapeList &in, const DTypeList &,
                    ShapeList &out, DTypeList &odt) {
        LOOM_CHECK(p.i("depth") > 0, LOOM_ERR_INVALID_ARGUMENT, p.op().name,
                   ": depth must be > 0, got ", p.i("depth"));
        out[0] = in[0];
        out[0].push_back(p.i("depth"));
        odt[0] = p.dtype("dtype");
      })
      .set_compute([](const OpContext &, const Params &p, const BlobList &in,
                      const BlobList &out) {
        int64_t depth = p.i("depth"), n = in[0].size();
        double on = p.f("on_value"), off = p.f("off_value");
        LOOM_DTYPE_SWITCH(in[0].dtype, S, {
          const S *idx = in[0].ptr<S>();
          for (int64_t i = 0; i < n; ++i)
            if (std::isnan(static_cast<double>(idx[i])))
              fail(LOOM_ERR_INVALID_ARGUMENT, "one_hot: index NaN at position ", i);
          LOOM_DTYPE_SWITCH(out[0].dtype, D, {
            D *o = out[0].ptr<D>();
            std::fill(o, o + n * depth, static_cast<D>(off));
            for (int64_t i = 0; i < n; ++i) {
              double v = std::trunc(static_cast<double>(idx[i]));
              if (v >= 0 && v < static_cast<double>(depth))
                o[i * depth + static_cast<int64_t>(v)] = static_cast<D>(on);
            }
          });
        });
      });

  reg.add("clip")
      .set_doc("Limits values to [a_min, a_max], elementwise.")
      .set_inputs({"data"})
      .required("a_min", ParamType::Float, "Lower bound.")
      .required("a_max", ParamType::Float, "Upper bound.")
      .set_inplace({{0, 0}})
      .set_infer([](const Params &p, const ShapeList &in, const DTypeList &dt,
                    ShapeList &out, DTypeList &odt) {
        LOOM_CHECK(p.f("a_min") <= p.f("a_max"), LOOM_ERR_INVALID_ARGUMENT, p.op().name,
                   ": a_min=", p.f("a_min"), " is greater than a_max=", p.f("a_max"));
        out[0] = in[0];
        odt[0] = dt[0];
      })
      .set_compute([](const OpContext &, const Params &p, const BlobList &in,
                      const BlobList &out) {
        // MXNet's clip: x > a_max gives a_max, x < a_min gives a_min, else x (NaN
        // passes). The bounds are float32 (ClipParam's real_t), also for float64 data.
        LOOM_DTYPE_SWITCH(in[0].dtype, T, {
          constexpr bool flt = std::is_floating_point_v<T>;
          const double blo = flt ? double(static_cast<float>(p.f("a_min"))) : p.f("a_min");
          const double bhi = flt ? double(static_cast<float>(p.f("a_max"))) : p.f("a_max");
          const T lo = static_cast<T>(blo), hi = static_cast<T>(bhi);
          const T *a = in[0].ptr<T>();
          T *o = out[0].ptr<T>();
          parallel_for(in[0].size(), [&](int64_t i) { o[i] = a[i] > hi ? hi : (a[i] < lo ? lo : a[i]); });
        });
      });

  reg.add("where")
      .set_doc(
          "Chooses x where condition is non-zero and y elsewhere. A 1-D condition against "
          "x of 2 or more axes selects whole rows and must have length x.shape[0] (MXNet's "
          "rule); otherwise the three shapes broadcast together. x and y share a dtype; "
          "condition may have any dtype.")
      .set_inputs({"condition", "x", "y"})
      .set_infer([](const Params &p, const ShapeList &in, const DTypeList &dt,
                    ShapeList &out, DTypeList &odt) {
        LOOM_CHECK(dt[1] == dt[2], LOOM_ERR_DTYPE, p.op().name, ": x has dtype ",
                   dtype_name(dt[1]), " but y has dtype ", dtype_name(dt[2]));
        Shape s = broadcast_shape(p, in[1], in[2], "x", "y");
        if (where_selects_rows(in[0], s)) {
          LOOM_CHECK(in[0].d[0] == s.d[0], LOOM_ERR_SHAPE, p.op().name, ": a 1-D condition selects "
                     "rows (MXNet's rule), so its length must equal x.shape[0]; got condition ",
                     in[0].str(), " for x/y ", s.str());
          out[0] = s;
        } else {
          out[0] = broadcast_shape(p, in[0], s, "condition", "x/y");
        }
        odt[0] = dt[1];
      })
      .set_compute([](const OpContext &, const Params &, const BlobList &in,
                      const BlobList &out) {
        WhereCondIndexer ic(in[0].shape, out[0].shape);
        BroadcastIndexer ix(in[1].shape, out[0].shape), iy(in[2].shape, out[0].shape);
        LOOM_DTYPE_SWITCH(in[0].dtype, C, {
          const C *c = in[0].ptr<C>();
          LOOM_DTYPE_SWITCH(out[0].dtype, T, {
            const T *x = in[1].ptr<T>();
            const T *y = in[2].ptr<T>();
            T *o = out[0].ptr<T>();
            parallel_for(out[0].size(),
                         [&](int64_t i) { o[i] = c[ic(i)] != C(0) ? x[ix(i)] : y[iy(i)]; });
          });
        });
      });

  reg.add("cast")
      .set_doc("Converts to another dtype (C++ conversion: floats to integers truncate).")
      .set_inputs({"data"})
      .required("dtype", ParamType::DType, "Target dtype.")
      .set_infer([](const Params &p, const ShapeList &in, const DTypeList &,
                    ShapeList &out, DTypeList &odt) {
        out[0] = in[0];
        odt[0] = p.dtype("dtype");
      })
      .set_compute([](const OpContext &, const Params &, const BlobList &in,
                      const BlobList &out) {
        LOOM_DTYPE_SWITCH(in[0].dtype, S,
                          LOOM_DTYPE_SWITCH(out[0].dtype, D, cast_kernel<S, D>(in[0], out[0])));
      });

  reg.add("take")
      .set_doc("Gathers slices of data along axis: out = data[..., indices, ...], of shape "
               "data.shape[:axis] + indices.shape + data.shape[axis+1:]. Indices are truncated "
               "to integers; one outside [0, n) is clipped to the range (mode clip, MXNet's "
               "default), wrapped around (wrap), or an error (raise).")
      .set_inputs({"data", "indices"})
      .param("axis", ParamType::Int, "0", "The axis to gather along (negative counts from the end).")
      .param("mode", ParamType::Enum, "clip", "Out-of-range indices: clip, wrap or raise.",
             {"clip", "wrap", "raise"})
      .set_infer([](const Params &p, const ShapeList &in, const DTypeList &dt, ShapeList &out,
                    DTypeList &odt) {
        if (in[0].ndim < 1) shape_fail(p, "data must have at least 1 dimension, got " + in[0].str());
        int ax = normalize_axis(p.i("axis"), in[0].ndim, p.op().name, "axis");
        Shape s;
        for (int i = 0; i < ax; ++i) s.push_back(in[0].d[i]);
        for (int i = 0; i < in[1].ndim; ++i) s.push_back(in[1].d[i]);
        for (int i = ax + 1; i < in[0].ndim; ++i) s.push_back(in[0].d[i]);
        LOOM_CHECK(s.ndim <= LOOM_MAX_NDIM, LOOM_ERR_SHAPE, p.op().name, ": the output of data ",
                   in[0].str(), " taken by indices ", in[1].str(), " has too many axes");
        out[0] = s;
        odt[0] = dt[0];
      })
      .set_compute([](const OpContext &, const Params &p, const BlobList &in, const BlobList &out) {
        TakeDims t(p, in[0].shape);
        size_t bytes = static_cast<size_t>(t.inner) * dtype_size(in[0].dtype);
        const char *src = static_cast<const char *>(in[0].dptr);
        char *dst = static_cast<char *>(out[0].dptr);
        const int64_t nidx = in[1].size();
        LOOM_DTYPE_SWITCH(in[1].dtype, I, {
          const I *idx = in[1].ptr<I>();
          std::vector<int64_t> rows(static_cast<size_t>(nidx));
          for (int64_t i = 0; i < nidx; ++i) rows[i] = t.row(p, double(idx[i]), i);
          parallel_for(t.outer * nidx, [&](int64_t oi) {
            int64_t o = oi / nidx, i = oi % nidx;
            if (bytes)
              std::memcpy(dst + oi * bytes, src + (o * t.n + rows[i]) * bytes, bytes);
          }, 256);
        });
      })
      // data's gradient: each output slice's gradient added to the slice it came
      // from (in index order, so repeated indices sum deterministically);
      // the indices get none (zeros).
      .set_backward_uses(kBwdInputs)
      .set_backward([](const OpContext &, const Params &p, const BlobList &in, const BlobList &,
                       const BlobList &og, const BlobList &ig, const ReqList &req) {
        TakeDims t(p, in[0].shape);
        const int64_t nidx = in[1].size();
        gather_backward(in, og, ig, req, [&](const auto *idx, auto *d, const auto *g) {
          for (int64_t i = 0; i < nidx; ++i) {
            int64_t r = t.row(p, double(idx[i]), i);
            for (int64_t o = 0; o < t.outer; ++o) {
              auto *to = d + (o * t.n + r) * t.inner;
              const auto *from = g + (o * nidx + i) * t.inner;
              for (int64_t k = 0; k < t.inner; ++k) to[k] += from[k];
            }
          }
        });
      });

  reg.add("pick")
      .set_doc("Picks one element per position along axis: out[..., j] = data[..., index[...], j] "
               "(MXNet's pick). index has data's shape without the axis, or with the axis "
               "of length 1; the output drops the axis unless keepdims. Indices are truncated "
               "to integers; one outside [0, n) is clipped (the default) or wrapped around.")
      .set_inputs({"data", "index"})
      .param("axis", ParamType::Int, "-1", "The axis to pick along (negative counts from the end).")
      .param("keepdims", ParamType::Bool, "false", "Keep the axis with length 1.")
      .param("mode", ParamType::Enum, "clip", "Out-of-range indices: clip or wrap.", {"clip", "wrap"})
      .set_infer([](const Params &p, const ShapeList &in, const DTypeList &dt, ShapeList &out,
                    DTypeList &odt) {
        if (in[0].ndim < 1) shape_fail(p, "data must have at least 1 dimension, got " + in[0].str());
        int ax = normalize_axis(p.i("axis"), in[0].ndim, p.op().name, "axis");
        // MXNet's ReduceAxisShapeImpl: 1-D data gives (1,) either way.
        auto reduced = [&](bool keep) {
          Shape s;
          if (in[0].ndim == 1) return Shape{1};
          for (int i = 0; i < in[0].ndim; ++i)
            if (i != ax) s.push_back(in[0].d[i]);
            else if (keep) s.push_back(1);
          return s;
        };
        Shape want = reduced(in[1].ndim == in[0].ndim);
        LOOM_CHECK(in[1] == want, LOOM_ERR_SHAPE, p.op().name, ": index ", in[1].str(),
                   " should be ", want.str(), " for data ", in[0].str(), " picked along axis ", ax);
        out[0] = reduced(p.b("keepdims"));
        odt[0] = dt[0];
      })
      .set_compute([](const OpContext &, const Params &p, const BlobList &in, const BlobList &out) {
        TakeDims t(p, in[0].shape);
        LOOM_DTYPE_SWITCH(in[1].dtype, I, {
          const I *idx = in[1].ptr<I>();
          LOOM_DTYPE_SWITCH(in[0].dtype, T, {
            const T *d = in[0].ptr<T>();
            T *o = out[0].ptr<T>();
            for (int64_t i = 0, n = t.outer * t.inner; i < n; ++i) {
              int64_t a = i / t.inner, c = i % t.inner;
              o[i] = d[(a * t.n + t.row(p, double(idx[i]), i)) * t.inner + c];
            }
          });
        });
      })
      // data's gradient: zero except at each picked element, which gets its output's
      // gradient; the index gets none (zeros), as in MXNet.
      .set_backward_uses(kBwdInputs)
      .set_backward([](const OpContext &, const Params &p, const BlobList &in, const BlobList &,
                       const BlobList &og, const BlobList &ig, const ReqList &req) {
        TakeDims t(p, in[0].shape);
        gather_backward(in, og, ig, req, [&](const auto *idx, auto *d, const auto *g) {
          for (int64_t i = 0, n = t.outer * t.inner; i < n; ++i) {
            int64_t a = i / t.inner, c = i % t.inner;
            d[(a * t.n + t.row(p, double(idx[i]), i)) * t.inner + c] += g[i];
          }
        });
      });

  OpDef &copy = reg.add("copy")
                    .set_doc("Copies the data; the output may be on another device: the one "
                             "ctx names, or that of a given output array.")
                    .set_inputs({"data"})
                    .param("ctx", ParamType::Context, "None",
                           "Device of the output (default: the input's). In a graph it must "
                           "be the executor's device.")
                    .set_infer([](const Params &, const ShapeList &in,
                                  const DTypeList &dt, ShapeList &out,
                                  DTypeList &odt) {
                      out[0] = in[0];
                      odt[0] = dt[0];
                    })
                    .set_compute([](const OpContext &, const Params &,
                                    const BlobList &in,
                                    const BlobList &out) { copy_bytes(in[0], out[0]); });
  copy.any_context = true;
  return 0;
}();

}  // namespace
}  // namespace loom
