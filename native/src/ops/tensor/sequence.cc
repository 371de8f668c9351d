// SequenceMask, SequenceLast and SequenceReverse: MXNet 1.9's operators over
// padded batches of sequences, with optional per-sequence lengths.
//
// data is (T, N, ...) with axis=0 or (N, T, ...) with axis=1 (SequenceReverse:
// axis 0 only, as in MXNet); sequence_length is (N,), integer-valued. A length
// that is NaN, not a whole number or outside the sequence is an error naming
// the position, the value and T (MXNet reads past the data instead).
#include <cstring>

#include "ops/common.h"

namespace loom {
namespace {

struct SeqDims {
  int64_t T = 0, N = 0, R = 1;
  int axis = 0;
  // Offset of step t of sequence b.
  int64_t at(int64_t t, int64_t b) const { return (axis == 0 ? t * N + b : b * T + t) * R; }
};

SeqDims seq_dims(const Params &p, const Shape &s) {
  SeqDims d;
  d.axis = static_cast<int>(p.i("axis"));
  d.T = s.d[d.axis];
  d.N = s.d[1 - d.axis];
  for (int k = 2; k < s.ndim; ++k) d.R *= s.d[k];
  return d;
}

void seq_infer_common(const Params &p, const ShapeList &in, const DTypeList &dt, int max_axis) {
  const std::string &n = p.op().name;
  LOOM_CHECK(dtype_is_float(dt[0]), LOOM_ERR_DTYPE, n, ": data has dtype ", dtype_name(dt[0]),
             "; this op needs float32 or float64 data (lengths may be any dtype)");
  LOOM_CHECK(p.i("axis") >= 0 && p.i("axis") <= max_axis, LOOM_ERR_INVALID_ARGUMENT, n, ": axis must be ",
             max_axis ? "0 or 1" : "0", " (MXNet supports only ", max_axis ? "these" : "this", "), got ",
             p.i("axis"));
  if (in[0].ndim < 2)
    shape_fail(p, "data must have at least 2 dimensions (sequence and batch), got " + in[0].str());
  if (in.size() > 1) {
    const int64_t batch = in[0].d[1 - p.i("axis")];
    if (in[1] != Shape{batch})
      shape_fail(p, "sequence_length has shape " + in[1].str() + ", expected " + Shape{batch}.str() +
                        " (one length per sequence of data " + in[0].str() + ", axis=" +
                        std::to_string(p.i("axis")) + ")");
  }
}

// The lengths as integers, checked to lie in [lo, T].
std::vector<int64_t> lengths(const Params &p, const BlobList &in, const SeqDims &d, int64_t lo) {
  std::vector<int64_t> len(static_cast<size_t>(d.N), d.T);
  if (!p.b("use_sequence_length")) return len;
  LOOM_DTYPE_SWITCH(in[1].dtype, L, {
    const L *v = in[1].ptr<L>();
    for (int64_t b = 0; b < d.N; ++b) {
      const double x = static_cast<double>(v[b]);
      LOOM_CHECK(x == std::floor(x) && x >= static_cast<double>(lo) && x <= static_cast<double>(d.T),
                 LOOM_ERR_INVALID_ARGUMENT, p.op().name, ": sequence_length[", b, "] is ", x,
                 "; lengths must be whole numbers in [", lo, ", ", d.T, "] (the sequence axis of data has ",
                 d.T, " steps)");
      len[static_cast<size_t>(b)] = static_cast<int64_t>(x);
    }
  });
  return len;
}

void zero_length_grad(const BlobList &ig, const ReqList &req) {
  if (ig.size() > 1 && req[1])
    std::memset(ig[1].dptr, 0, static_cast<size_t>(ig[1].size()) * dtype_size(ig[1].dtype));
}

OpDef &seq_op(const char *name, int max_axis) {
  OpDef &d = Registry::get().add(name);
  d.set_inputs({"data", "sequence_length"})
      .param("use_sequence_length", ParamType::Bool, "false",
             "Take per-sequence lengths from the sequence_length input.")
      .param("axis", ParamType::Int, "0",
             max_axis ? "The sequence axis: 0 (T, N, ...) or 1 (N, T, ...)." : "The sequence axis (0 only).");
  d.num_inputs = [](const Params &p) { return p.b("use_sequence_length") ? 2 : 1; };
  d.optional_inputs = 1;
  d.backward_uses = kBwdInputs;
  return d;
}

const int kSequence = [] {
  // ------------------------------------------------------------ SequenceMask
  OpDef &m = seq_op("SequenceMask", 1);
  m.set_doc("Sets the steps of each sequence at and past its length to `value` (with "
            "use_sequence_length; otherwise the identity). The gradient is zero there.")
      .param("value", ParamType::Float, "0", "The value of masked steps.");
  m.set_infer([](const Params &p, const ShapeList &in, const DTypeList &dt, ShapeList &out, DTypeList &odt) {
    seq_infer_common(p, in, dt, 1);
    out[0] = in[0];
    odt[0] = dt[0];
  });
  m.set_compute([](const OpContext &, const Params &p, const BlobList &in, const BlobList &out) {
    SeqDims d = seq_dims(p, in[0].shape);
    auto len = lengths(p, in, d, 0);
    LOOM_FLOAT_SWITCH(in[0].dtype, T, {
      const T *x = in[0].ptr<T>();
      T *y = out[0].ptr<T>();
      const T val = static_cast<T>(p.f("value"));
      for (int64_t t = 0; t < d.T; ++t)
        for (int64_t b = 0; b < d.N; ++b) {
          const int64_t o = d.at(t, b);
          if (t < len[b]) std::copy(x + o, x + o + d.R, y + o);
          else std::fill(y + o, y + o + d.R, val);
        }
    });
  });
  m.set_backward([](const OpContext &, const Params &p, const BlobList &in, const BlobList &,
                    const BlobList &og, const BlobList &ig, const ReqList &req) {
    zero_length_grad(ig, req);
    if (!req[0]) return;
    SeqDims d = seq_dims(p, in[0].shape);
    auto len = lengths(p, in, d, 0);
    LOOM_FLOAT_SWITCH(in[0].dtype, T, {
      const T *g = og[0].ptr<T>();
      T *dx = ig[0].ptr<T>();
      for (int64_t t = 0; t < d.T; ++t)
        for (int64_t b = 0; b < d.N; ++b) {
          const int64_t o = d.at(t, b);
          if (t < len[b]) std::copy(g + o, g + o + d.R, dx + o);
          else std::fill(dx + o, dx + o + d.R, T(0));
        }
    });
  });

  // ------------------------------------------------------------ SequenceLast
  OpDef &l = seq_op("SequenceLast", 1);
  l.set_doc("The last step of each sequence (step length-1 with use_sequence_length, else "
            "the last): data without its sequence axis. Lengths must be at least 1.");
  l.set_infer([](const Params &p, const ShapeList &in, const DTypeList &dt, ShapeList &out, DTypeList &odt) {
    seq_infer_common(p, in, dt, 1);
    Shape s;
    s.ndim = in[0].ndim - 1;
    int k = 0;
    for (int a = 0; a < in[0].ndim; ++a)
      if (a != p.i("axis")) s.d[k++] = in[0].d[a];
    out[0] = s;
    odt[0] = dt[0];
  });
  l.set_compute([](const OpContext &, const Params &p, const BlobList &in, const BlobList &out) {
    SeqDims d = seq_dims(p, in[0].shape);
    if (d.N == 0 || d.R == 0) return;
    LOOM_CHECK(d.T > 0, LOOM_ERR_INVALID_ARGUMENT, p.op().name,
               ": data has no steps on its sequence axis ", in[0].shape.str());
    auto len = lengths(p, in, d, 1);
    LOOM_FLOAT_SWITCH(in[0].dtype, T, {
      const T *x = in[0].ptr<T>();
      T *y = out[0].ptr<T>();
      for (int64_t b = 0; b < d.N; ++b) {
        const int64_t o = d.at(len[b] - 1, b);
        std::copy(x + o, x + o + d.R, y + b * d.R);
      }
    });
  });
  l.set_backward([](const OpContext &, const Params &p, const BlobList &in, const BlobList &,
                    const BlobList &og, const BlobList &ig, const ReqList &req) {
    zero_length_grad(ig, req);
    if (!req[0]) return;
    SeqDims d = seq_dims(p, in[0].shape);
    LOOM_FLOAT_SWITCH(in[0].dtype, T, {
      T *dx = ig[0].ptr<T>();
      std::fill(dx, dx + in[0].size(), T(0));
      if (d.N == 0 || d.R == 0 || d.T == 0) return;
      auto len = lengths(p, in, d, 1);
      const T *g = og[0].ptr<T>();
      for (int64_t b = 0; b < d.N; ++b) {
        const int64_t o = d.at(len[b] - 1, b);
        std::copy(g + b * d.R, g + (b + 1) * d.R, dx + o);
      }
    });
  });

  // ------------------------------------------------------------ SequenceReverse
  OpDef &r = seq_op("SequenceReverse", 0);
  r.set_doc("Reverses the first length steps of each sequence (all of them without "
            "use_sequence_length); the padding past the length stays where it is.");
  r.set_infer([](const Params &p, const ShapeList &in, const DTypeList &dt, ShapeList &out, DTypeList &odt) {
    seq_infer_common(p, in, dt, 0);
    out[0] = in[0];
    odt[0] = dt[0];
  });
  auto reverse = [](const Params &p, const BlobList &in, const TBlob &src, const TBlob &dst) {
    SeqDims d = seq_dims(p, in[0].shape);
    auto len = lengths(p, in, d, 0);
    LOOM_FLOAT_SWITCH(src.dtype, T, {
      const T *x = src.ptr<T>();
      T *y = dst.ptr<T>();
      for (int64_t t = 0; t < d.T; ++t)
        for (int64_t b = 0; b < d.N; ++b) {
          const int64_t from = t < len[b] ? len[b] - 1 - t : t;
          std::copy(x + d.at(from, b), x + d.at(from, b) + d.R, y + d.at(t, b));
        }
    });
  };
  r.set_compute([reverse](const OpContext &, const Params &p, const BlobList &in, const BlobList &out) {
    reverse(p, in, in[0], out[0]);
  });
  r.set_backward([reverse](const OpContext &, const Params &p, const BlobList &in, const BlobList &,
                           const BlobList &og, const BlobList &ig, const ReqList &req) {
    zero_length_grad(ig, req);
    if (req[0]) reverse(p, in, og[0], ig[0]);  // the reversal is its own inverse
  });
  return 0;
}();

}  // namespace
}  // namespace loom
