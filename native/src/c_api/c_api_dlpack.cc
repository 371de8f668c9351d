// DLPack export and import: zero-copy exchange with NumPy, PyTorch and others.
#include <dlpack/dlpack.h>

#include "c_api/c_api_internal.h"

namespace {

struct Export {
  loom::NDArray array;
  int64_t shape[LOOM_MAX_NDIM];
  DLManagedTensor tensor;
};

bool to_dl(int32_t dtype, DLDataType *out) {
  out->lanes = 1;
  switch (dtype) {
    case loom::kFloat32: *out = {kDLFloat, 32, 1}; return true;
    case loom::kFloat64: *out = {kDLFloat, 64, 1}; return true;
    case loom::kFloat16: *out = {kDLFloat, 16, 1}; return true;
    case loom::kUInt8: *out = {kDLUInt, 8, 1}; return true;
    case loom::kInt8: *out = {kDLInt, 8, 1}; return true;
    case loom::kInt32: *out = {kDLInt, 32, 1}; return true;
    case loom::kInt64: *out = {kDLInt, 64, 1}; return true;
    default: return false;
  }
}

int32_t from_dl(const DLDataType &t) {
  if (t.lanes != 1) return -1;
  if (t.code == kDLFloat && t.bits == 32) return loom::kFloat32;
  if (t.code == kDLFloat && t.bits == 64) return loom::kFloat64;
  if (t.code == kDLFloat && t.bits == 16) return loom::kFloat16;
  if (t.code == kDLUInt && t.bits == 8) return loom::kUInt8;
  if (t.code == kDLInt && t.bits == 8) return loom::kInt8;
  if (t.code == kDLInt && t.bits == 32) return loom::kInt32;
  if (t.code == kDLInt && t.bits == 64) return loom::kInt64;
  return -1;
}

}  // namespace

extern "C" {

loom_status loom_ndarray_to_dlpack(void **out, loom_ndarray array) {
  API_BEGIN
  need(out, "out");
  loom::NDArray a = get_array(array, "array");
  LOOM_CHECK(a.ctx().dev_type == LOOM_DEVICE_CPU, LOOM_ERR_INVALID_ARGUMENT,
             "to_dlpack: only cpu arrays can be exported, this one is on ", a.ctx().str());
  a.wait_to_write();  // nothing pending may still read or write it
  a.chunk()->var.set_external();  // the other library writes it behind the engine's back
  auto *e = new Export{a, {}, {}};
  DLTensor &t = e->tensor.dl_tensor;
  if (!to_dl(a.dtype(), &t.dtype)) {
    delete e;
    loom::fail(LOOM_ERR_DTYPE, "to_dlpack: dtype ", loom::dtype_name(a.dtype()), " has no DLPack code");
  }
  for (int i = 0; i < a.shape().ndim; ++i) e->shape[i] = a.shape().d[i];
  t.data = a.data();
  t.device = {kDLCPU, 0};
  t.ndim = a.shape().ndim;
  t.shape = e->shape;
  t.strides = nullptr;  // compact row-major
  t.byte_offset = 0;
  e->tensor.manager_ctx = e;
  e->tensor.deleter = [](DLManagedTensor *self) { delete static_cast<Export *>(self->manager_ctx); };
  *out = &e->tensor;
  API_END
}

loom_status loom_ndarray_from_dlpack(loom_ndarray *out, void *managed_tensor) {
  API_BEGIN
  need(out, "out");
  LOOM_CHECK(managed_tensor, LOOM_ERR_INVALID_ARGUMENT, "from_dlpack: the tensor is NULL");
  auto *m = static_cast<DLManagedTensor *>(managed_tensor);
  const DLTensor &t = m->dl_tensor;
  LOOM_CHECK(t.device.device_type == kDLCPU, LOOM_ERR_INVALID_ARGUMENT,
             "from_dlpack: only CPU tensors can be imported, this one has device type ",
             static_cast<int>(t.device.device_type));
  LOOM_CHECK(t.ndim >= 0 && t.ndim <= LOOM_MAX_NDIM, LOOM_ERR_SHAPE, "from_dlpack: ", t.ndim,
             " dimensions; at most ", LOOM_MAX_NDIM, " are supported");
  int32_t dtype = from_dl(t.dtype);
  LOOM_CHECK(dtype >= 0, LOOM_ERR_DTYPE, "from_dlpack: DLPack dtype (code ", int(t.dtype.code),
             ", bits ", int(t.dtype.bits), ", lanes ", int(t.dtype.lanes), ") has no Loom dtype");
  loom::Shape s;
  s.ndim = t.ndim;
  for (int i = 0; i < t.ndim; ++i) s.d[i] = t.shape[i];
  if (t.strides) {
    int64_t expect = 1;
    for (int i = t.ndim - 1; i >= 0; --i) {
      LOOM_CHECK(s.d[i] <= 1 || t.strides[i] == expect, LOOM_ERR_INVALID_ARGUMENT,
                 "from_dlpack: the tensor of shape ", s.str(), " is not compact row-major (stride ",
                 t.strides[i], " on axis ", i, ", expected ", expect, "); make it contiguous first");
      expect *= s.d[i];
    }
  }
  void *data = static_cast<char *>(t.data) + t.byte_offset;
  *out = new_handle(loom::NDArray::external(data, s, dtype, loom::Context{}, [m] {
    if (m->deleter) m->deleter(m);
  }));
  API_END
}

void loom_dlpack_delete(void *managed_tensor) {
  auto *m = static_cast<DLManagedTensor *>(managed_tensor);
  if (m && m->deleter) m->deleter(m);
}

}  // extern "C"
