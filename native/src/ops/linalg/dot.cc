// Dense products: dot and batch_dot. float32/float64 go to OpenBLAS gemm;
// integer types use a plain triple loop.
#include "ops/common.h"
#include "ops/linalg/gemm.h"

namespace loom {
namespace {

// C (m x n) = op(A) (m x k) * op(B) (k x n), all row-major and dense.
template <typename T>
void dense_gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const T *a, const T *b, T *c) {
  ::loom::gemm<T>(ta, tb, m, n, k, 1.0, a, ta ? m : k, b, tb ? k : n, 0.0, c, n);
}

// dot: lhs (..., k) x rhs (k, ...) -> lhs[:-1] + rhs[1:]. Transposes apply to
// 2-D operands. 1-D x 1-D gives the inner product with shape (1,) (MXNet 1.x).
struct DotDims {
  int64_t m, n, k;
  Shape out;
};

DotDims dot_dims(const Params &p, const Shape &a, const Shape &b) {
  bool ta = p.b("transpose_a"), tb = p.b("transpose_b");
  if (a.ndim == 0 || b.ndim == 0)
    shape_fail(p, "lhs " + a.str() + " and rhs " + b.str() + " must have at least 1 dimension");
  if ((ta && a.ndim != 2) || (tb && b.ndim != 2))
    shape_fail(p, "transpose_a/transpose_b need 2-D operands; got lhs " + a.str() + ", rhs " +
                      b.str());
  DotDims d;
  int64_t ka = ta ? a.d[0] : a.d[a.ndim - 1];
  int64_t kb = tb ? b.d[1] : b.d[0];
  if (ka != kb)
    shape_fail(p, "inner dimensions differ: lhs " + a.str() + (ta ? " (transposed)" : "") +
                      " has " + std::to_string(ka) + ", rhs " + b.str() +
                      (tb ? " (transposed)" : "") + " has " + std::to_string(kb));
  d.k = ka;
  d.m = ta ? a.d[1] : a.size() / (ka ? ka : 1);
  d.n = tb ? b.d[0] : b.size() / (kb ? kb : 1);
  if (ka == 0) {  // sizes cannot be recovered by division
    d.m = 1;
    for (int i = 0; i < a.ndim - 1; ++i) d.m *= a.d[i];
    d.n = 1;
    for (int i = 1; i < b.ndim; ++i) d.n *= b.d[i];
  }
  if (ta) d.out.push_back(a.d[1]);
  else
    for (int i = 0; i < a.ndim - 1; ++i) d.out.push_back(a.d[i]);
  if (tb) d.out.push_back(b.d[0]);
  else
    for (int i = 1; i < b.ndim; ++i) d.out.push_back(b.d[i]);
  if (d.out.ndim == 0) d.out.push_back(1);  // vector . vector: shape (1,), as in MXNet 1.x
  return d;
}

const int kRegistered = [] {
  auto &reg = Registry::get();
  reg.add("dot")
      .set_doc(
          "Matrix product. lhs (..., k) times rhs (k, ...) gives lhs.shape[:-1] + rhs.shape[1:]; "
          "two 1-D vectors give their inner product with shape (1,) (MXNet 1.x). transpose_a/b "
          "apply to 2-D operands. float32 uses the CPU kernel set's sgemm (oneDNN's by default, OpenBLAS's "
          "with LOOM_CPU_KERNELS=reference), float64 OpenBLAS's dgemm.")
      .set_inputs({"lhs", "rhs"})
      .param("transpose_a", ParamType::Bool, "false", "Use the transpose of lhs.")
      .param("transpose_b", ParamType::Bool, "false", "Use the transpose of rhs.")
      .set_infer([](const Params &p, const ShapeList &in, const DTypeList &dt,
                    ShapeList &out, DTypeList &odt) {
        odt[0] = same_dtype(p, dt);
        out[0] = dot_dims(p, in[0], in[1]).out;
      })
      .set_compute([](const OpContext &, const Params &p, const BlobList &in,
                      const BlobList &out) {
        DotDims d = dot_dims(p, in[0].shape, in[1].shape);
        LOOM_DTYPE_SWITCH(in[0].dtype, T,
                          dense_gemm<T>(p.b("transpose_a"), p.b("transpose_b"), d.m, d.n, d.k,
                                  in[0].ptr<T>(), in[1].ptr<T>(), out[0].ptr<T>()));
      });

  reg.add("batch_dot")
      .set_doc(
          "Batched matrix product of 3-D arrays: lhs (B, M, K) times rhs (B, K, N) gives "
          "(B, M, N); transpose_a/b transpose each matrix of the batch.")
      .set_inputs({"lhs", "rhs"})
      .param("transpose_a", ParamType::Bool, "false", "Use the transpose of each lhs matrix.")
      .param("transpose_b", ParamType::Bool, "false", "Use the transpose of each rhs matrix.")
      .set_infer([](const Params &p, const ShapeList &in, const DTypeList &dt,
                    ShapeList &out, DTypeList &odt) {
        odt[0] = same_dtype(p, dt);
        const Shape &a = in[0], &b = in[1];
        if (a.ndim != 3 || b.ndim != 3)
          shape_fail(p, "needs 3-D operands; got lhs " + a.str() + ", rhs " + b.str());
        if (a.d[0] != b.d[0])
          shape_fail(p, "batch sizes differ: lhs " + a.str() + ", rhs " + b.str());
        bool ta = p.b("transpose_a"), tb = p.b("transpose_b");
        int64_t ka = ta ? a.d[1] : a.d[2], kb = tb ? b.d[2] : b.d[1];
        if (ka != kb)
          shape_fail(p, "inner dimensions differ: lhs " + a.str() + " has " + std::to_string(ka) +
                            ", rhs " + b.str() + " has " + std::to_string(kb));
        out[0] = Shape{a.d[0], ta ? a.d[2] : a.d[1], tb ? b.d[1] : b.d[2]};
      })
      .set_compute([](const OpContext &, const Params &p, const BlobList &in,
                      const BlobList &out) {
        bool ta = p.b("transpose_a"), tb = p.b("transpose_b");
        const Shape &a = in[0].shape;
        const Shape &o = out[0].shape;
        int64_t B = o.d[0], m = o.d[1], n = o.d[2], k = ta ? a.d[1] : a.d[2];
        LOOM_DTYPE_SWITCH(in[0].dtype, T, {
          for (int64_t i = 0; i < B; ++i)
            dense_gemm<T>(ta, tb, m, n, k, in[0].ptr<T>() + i * m * k, in[1].ptr<T>() + i * k * n,
                    out[0].ptr<T>() + i * m * n);
        });
      })
      .set_backward_uses(kBwdInputs)
      .set_backward([](const OpContext &, const Params &p, const BlobList &in, const BlobList &,
                       const BlobList &og, const BlobList &ig, const ReqList &req) {
        bool ta = p.b("transpose_a"), tb = p.b("transpose_b");
        const Shape &o = og[0].shape;
        int64_t B = o.d[0], m = o.d[1], n = o.d[2], k = ta ? in[0].shape.d[1] : in[0].shape.d[2];
        LOOM_FLOAT_SWITCH(in[0].dtype, T, {
          for (int64_t i = 0; i < B; ++i)
            matmul_backward<T>(ta, tb, m, n, k, in[0].ptr<T>() + i * m * k,
                               in[1].ptr<T>() + i * k * n, og[0].ptr<T>() + i * m * n,
                               req[0] ? ig[0].ptr<T>() + i * m * k : nullptr,
                               req[1] ? ig[1].ptr<T>() + i * k * n : nullptr);
        });
      });
  return 0;
}();

}  // namespace
}  // namespace loom
