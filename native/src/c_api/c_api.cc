// ABI entry points: argument checks, handle <-> object, exception -> status.
#include <mutex>
#include <new>
#include <string>
#include <unordered_set>
#include <vector>

#include "backend/device.h"
#include "engine/engine.h"
#include "imperative/autograd.h"
#include "imperative/trace.h"
#include "io/hdf5.h"
#include "io/idx.h"
#include "imperative/imperative.h"
#include "ndarray/ndarray.h"
#include "op/registry.h"
#include "storage/storage.h"

#include "c_api/c_api_internal.h"

extern "C" {

int32_t loom_abi_version(void) { return LOOM_ABI_VERSION; }

const char *loom_last_error(void) { return t_last_error.c_str(); }

const char *loom_status_name(loom_status s) {
  switch (s) {
    case LOOM_OK: return "ok";
    case LOOM_ERR_INVALID_ARGUMENT: return "invalid argument";
    case LOOM_ERR_SHAPE: return "shape";
    case LOOM_ERR_DTYPE: return "dtype";
    case LOOM_ERR_NOT_FOUND: return "not found";
    case LOOM_ERR_OUT_OF_MEMORY: return "out of memory";
    case LOOM_ERR_IO: return "io";
    case LOOM_ERR_BACKEND_UNAVAILABLE: return "backend unavailable";
    case LOOM_ERR_INTERNAL: return "internal";
    default: return "unknown status";
  }
}

loom_status loom_wait_all(void) {
  API_BEGIN
  check_status(loom::Engine::get().wait_all());
  API_END
}

loom_status loom_engine_info(const char **out_kind, int32_t *out_cpu_workers) {
  API_BEGIN
  need(out_kind, "out_kind");
  need(out_cpu_workers, "out_cpu_workers");
  auto &e = loom::Engine::get();
  *out_kind = e.kind();
  *out_cpu_workers = e.cpu_workers();
  API_END
}

loom_status loom_device_count(int32_t *out, int32_t dev_type) {
  API_BEGIN
  need(out, "out");
  *out = loom::device::device_count(dev_type);
  API_END
}

loom_status loom_backend_describe(const char **out, int32_t dev_type) {
  API_BEGIN
  need(out, "out");
  *out = loom::device::describe(dev_type);
  API_END
}

loom_status loom_backend_load(const char *path) {
  API_BEGIN
  need(path, "path");
  loom::device::load(path);
  API_END
}

loom_status loom_storage_get_stats(loom_storage_stats *out, int32_t dev_type, int32_t dev_id) {
  API_BEGIN
  need(out, "out");
  *out = loom::Storage::stats(loom::Context{dev_type, dev_id});
  API_END
}

loom_status loom_storage_release_pooled(int32_t dev_type, int32_t dev_id) {
  API_BEGIN
  loom::Storage::release_pooled(loom::Context{dev_type, dev_id});
  API_END
}

loom_status loom_ndarray_create(loom_ndarray *out, const int64_t *shape, int32_t ndim,
                                int32_t dtype, int32_t dev_type, int32_t dev_id) {
  API_BEGIN
  need(out, "out");
  LOOM_CHECK(ndim >= 0 && ndim <= LOOM_MAX_NDIM, LOOM_ERR_SHAPE, "ndarray_create: ndim ", ndim,
             " is out of range [0, ", LOOM_MAX_NDIM, "]");
  LOOM_CHECK(shape || ndim == 0, LOOM_ERR_INVALID_ARGUMENT, "ndarray_create: shape is NULL");
  *out = new_handle(loom::NDArray::empty(loom::Shape::from(shape, ndim), dtype,
                                         loom::Context{dev_type, dev_id}));
  API_END
}

void loom_ndarray_free(loom_ndarray array) { arrays().remove(array); }

loom_status loom_ndarray_get_ndim(int32_t *out, loom_ndarray array) {
  API_BEGIN
  need(out, "out");
  *out = get_array(array, "array").shape().ndim;
  API_END
}

loom_status loom_ndarray_get_shape(int64_t *out_shape, int32_t capacity, loom_ndarray array) {
  API_BEGIN
  loom::NDArray a = get_array(array, "array");
  LOOM_CHECK(capacity >= a.shape().ndim, LOOM_ERR_INVALID_ARGUMENT, "ndarray_get_shape: capacity ",
             capacity, " is smaller than ndim ", a.shape().ndim);
  LOOM_CHECK(out_shape || a.shape().ndim == 0, loom_status(LOOM_ERR_INVALID_ARGUMENT),
             "output argument 'out_shape' is NULL");
  for (int i = 0; i < a.shape().ndim; ++i) out_shape[i] = a.shape().d[i];
  API_END
}

loom_status loom_ndarray_get_size(int64_t *out, loom_ndarray array) {
  API_BEGIN
  need(out, "out");
  *out = get_array(array, "array").size();
  API_END
}

loom_status loom_ndarray_get_dtype(int32_t *out, loom_ndarray array) {
  API_BEGIN
  need(out, "out");
  *out = get_array(array, "array").dtype();
  API_END
}

loom_status loom_ndarray_get_context(int32_t *out_dev_type, int32_t *out_dev_id,
                                     loom_ndarray array) {
  API_BEGIN
  need(out_dev_type, "out_dev_type");
  need(out_dev_id, "out_dev_id");
  loom::Context c = get_array(array, "array").ctx();
  *out_dev_type = c.dev_type;
  *out_dev_id = c.dev_id;
  API_END
}

loom_status loom_ndarray_copy_from_host(loom_ndarray array, const void *data, size_t nbytes) {
  API_BEGIN
  get_array(array, "array").copy_from_host(data, nbytes);
  API_END
}

loom_status loom_ndarray_copy_to_host(void *data, size_t nbytes, loom_ndarray array) {
  API_BEGIN
  get_array(array, "array").copy_to_host(data, nbytes);
  API_END
}

loom_status loom_ndarray_copy_to(loom_ndarray dst, loom_ndarray src) {
  API_BEGIN
  loom::NDArray d = get_array(dst, "dst"), s = get_array(src, "src");
  const loom::OpDef &copy = loom::Registry::get().lookup("copy");
  loom::ArrayList outs{d};
  loom::invoke(copy, loom::ArrayList{s}, outs, nullptr, nullptr, 0);
  API_END
}

loom_status loom_ndarray_wait_to_read(loom_ndarray array) {
  API_BEGIN
  get_array(array, "array").wait_to_read();
  API_END
}

loom_status loom_ndarray_wait_to_write(loom_ndarray array) {
  API_BEGIN
  get_array(array, "array").wait_to_write();
  API_END
}

loom_status loom_ndarray_reshape(loom_ndarray *out, loom_ndarray array, const int64_t *shape,
                                 int32_t ndim) {
  API_BEGIN
  need(out, "out");
  LOOM_CHECK(ndim >= 0 && ndim <= LOOM_MAX_NDIM, LOOM_ERR_SHAPE, "reshape: ndim ", ndim,
             " is out of range [0, ", LOOM_MAX_NDIM, "]");
  LOOM_CHECK(shape || ndim == 0, LOOM_ERR_INVALID_ARGUMENT, "reshape: shape is NULL");
  loom::NDArray v = get_array(array, "array").reshape(loom::Shape::from(shape, ndim));
  *out = new_handle(std::move(v));
  API_END
}

loom_status loom_ndarray_slice(loom_ndarray *out, loom_ndarray array, int64_t begin,
                               int64_t end) {
  API_BEGIN
  need(out, "out");
  loom::NDArray v = get_array(array, "array").slice(begin, end);
  *out = new_handle(std::move(v));
  API_END
}

loom_status loom_ndarray_at(loom_ndarray *out, loom_ndarray array, int64_t index) {
  API_BEGIN
  need(out, "out");
  loom::NDArray v = get_array(array, "array").at(index);
  *out = new_handle(std::move(v));
  API_END
}

loom_status loom_ndarray_save(const char *path, const loom_ndarray *handles,
                              const char *const *names, int32_t count) {
  API_BEGIN
  LOOM_CHECK(path, LOOM_ERR_INVALID_ARGUMENT, "save: path is NULL");
  LOOM_CHECK(count >= 0, LOOM_ERR_INVALID_ARGUMENT, "save: count ", count, " is negative");
  LOOM_CHECK(handles || count == 0, LOOM_ERR_INVALID_ARGUMENT, "save: arrays is NULL");
  std::vector<loom::NDArray> list;
  std::vector<std::string> keys;
  for (int32_t i = 0; i < count; ++i) {
    std::string arg = "arrays[" + std::to_string(i) + "]";
    list.push_back(get_array(handles[i], arg.c_str()));
    if (names) {
      LOOM_CHECK(names[i], LOOM_ERR_INVALID_ARGUMENT, "save: names[", i, "] is NULL");
      keys.emplace_back(names[i]);
    }
  }
  loom::save_params(path, list, keys);
  API_END
}

loom_status loom_ndarray_load(loom_ndarray_list *out, const char *path) {
  API_BEGIN
  need(out, "out");
  LOOM_CHECK(path, LOOM_ERR_INVALID_ARGUMENT, "load: path is NULL");
  auto *l = new loom_ndarray_list_s{loom::load_params(path)};
  *out = lists().add(l);
  API_END
}

loom_status loom_ndarray_list_size(int32_t *out, loom_ndarray_list list) {
  API_BEGIN
  need(out, "out");
  *out = lists().with(list, "ndarray_list", "list", [](loom_ndarray_list_s &l) {
    return static_cast<int32_t>(l.items.size());
  });
  API_END
}

loom_status loom_ndarray_list_get(loom_ndarray *out_array, const char **out_name,
                                  loom_ndarray_list list, int32_t index) {
  API_BEGIN
  lists().with(list, "ndarray_list", "list", [&](loom_ndarray_list_s &l) {
    LOOM_CHECK(index >= 0 && static_cast<size_t>(index) < l.items.size(),
               LOOM_ERR_INVALID_ARGUMENT, "ndarray_list_get: index ", index,
               " is out of range [0, ", l.items.size(), ")");
    if (out_array) *out_array = new_handle(l.items[index].second);
    if (out_name) *out_name = l.items[index].first.c_str();
    return 0;
  });
  API_END
}

void loom_ndarray_list_free(loom_ndarray_list list) { lists().remove(list); }

loom_status loom_op_count(int32_t *out) {
  API_BEGIN
  need(out, "out");
  *out = static_cast<int32_t>(loom::Registry::get().list().size());
  API_END
}

loom_status loom_op_get(loom_op *out, int32_t index) {
  API_BEGIN
  need(out, "out");
  const auto &l = loom::Registry::get().list();
  LOOM_CHECK(index >= 0 && static_cast<size_t>(index) < l.size(), LOOM_ERR_INVALID_ARGUMENT,
             "op_get: index ", index, " is out of range [0, ", l.size(), ")");
  *out = reinterpret_cast<loom_op>(const_cast<loom::OpDef *>(l[index]));
  API_END
}

loom_status loom_op_find(loom_op *out, const char *name) {
  API_BEGIN
  need(out, "out");
  LOOM_CHECK(name, LOOM_ERR_INVALID_ARGUMENT, "op_find: name is NULL");
  *out = reinterpret_cast<loom_op>(
      const_cast<loom::OpDef *>(&loom::Registry::get().lookup(name)));
  API_END
}

loom_status loom_op_get_name(const char **out, loom_op op) {
  API_BEGIN
  need(out, "out");
  *out = get_op(op).name.c_str();
  API_END
}

loom_status loom_op_describe(const char **out, loom_op op) {
  API_BEGIN
  need(out, "out");
  *out = get_op(op).describe().c_str();
  API_END
}

loom_status loom_op_num_outputs(int32_t *out, loom_op op, const char *const *keys,
                                const char *const *values, int32_t num_params) {
  API_BEGIN
  need(out, "out");
  const loom::OpDef &def = get_op(op);
  LOOM_CHECK(num_params >= 0, LOOM_ERR_INVALID_ARGUMENT, def.name, ": num_params is negative");
  loom::Params p(def, keys, values, num_params);
  *out = def.output_count(p);
  API_END
}

loom_status loom_imperative_invoke(loom_ndarray *outputs, int32_t num_outputs, loom_op op,
                                   const loom_ndarray *inputs, int32_t num_inputs,
                                   const char *const *keys, const char *const *values,
                                   int32_t num_params) {
  API_BEGIN
  const loom::OpDef &def = get_op(op);
  LOOM_CHECK(num_inputs >= 0 && (inputs || num_inputs == 0), LOOM_ERR_INVALID_ARGUMENT, def.name,
             ": inputs is NULL or num_inputs is negative");
  LOOM_CHECK(num_outputs >= 0 && (outputs || num_outputs == 0), LOOM_ERR_INVALID_ARGUMENT,
             def.name, ": outputs is NULL or num_outputs is negative");
  LOOM_CHECK(num_params >= 0, LOOM_ERR_INVALID_ARGUMENT, def.name, ": num_params is negative");
  loom::ArrayList ins(num_inputs);
  for (int32_t i = 0; i < num_inputs; ++i) ins[i] = get_op_array(inputs[i], def, "input", i);
  loom::ArrayList outs(num_outputs);
  for (int32_t j = 0; j < num_outputs; ++j)
    if (outputs[j]) outs[j] = get_op_array(outputs[j], def, "output", j);
  const bool tracing = loom::trace::active();
  if (tracing) loom::trace::check(def, ins, outs);
  loom::invoke(def, ins, outs, keys, values, num_params);
  if (tracing) loom::trace::record(def, keys, values, num_params, ins, outs);
  for (int32_t j = 0; j < num_outputs; ++j)
    if (!outputs[j]) outputs[j] = new_handle(outs[j]);
  API_END
}

loom_status loom_autograd_set_recording(int32_t *out_prev, int32_t recording) {
  API_BEGIN
  bool prev = loom::autograd::set_recording(recording != 0);
  if (out_prev) *out_prev = prev;
  API_END
}

loom_status loom_autograd_set_training(int32_t *out_prev, int32_t training) {
  API_BEGIN
  bool prev = loom::autograd::set_training(training != 0);
  if (out_prev) *out_prev = prev;
  API_END
}

loom_status loom_autograd_mark_variables(const loom_ndarray *handles, const loom_ndarray *grads,
                                         const int32_t *grad_reqs, int32_t count) {
  API_BEGIN
  LOOM_CHECK(count >= 0 && (count == 0 || (handles && grads)), LOOM_ERR_INVALID_ARGUMENT,
             "mark_variables: arrays or grads is NULL, or count is negative");
  // Check everything first, so a failure marks nothing.
  std::vector<loom::NDArray> gs;
  for (int32_t i = 0; i < count; ++i) {
    std::string arg = "grads[" + std::to_string(i) + "]";
    gs.push_back(get_array(grads[i], arg.c_str()));
    std::string arg2 = "arrays[" + std::to_string(i) + "]";
    loom::NDArray a = get_array(handles[i], arg2.c_str());
    loom::NDArray probe = a;
    loom::autograd::mark_variable(probe, gs.back(), grad_reqs ? grad_reqs[i] : loom::kWriteTo);
  }
  for (int32_t i = 0; i < count; ++i)
    arrays().with(handles[i], "ndarray", "arrays", [&](loom_ndarray_s &s) {
      loom::autograd::mark_variable(s.array, gs[i], grad_reqs ? grad_reqs[i] : loom::kWriteTo);
      return 0;
    });
  API_END
}

loom_status loom_autograd_backward(const loom_ndarray *heads, const loom_ndarray *head_grads,
                                   int32_t count) {
  API_BEGIN
  LOOM_CHECK(count > 0 && heads, LOOM_ERR_INVALID_ARGUMENT,
             "backward: heads is NULL or count is not positive");
  loom::ArrayList hs, gs;
  for (int32_t i = 0; i < count; ++i) {
    std::string arg = "heads[" + std::to_string(i) + "]";
    hs.push_back(get_array(heads[i], arg.c_str()));
    if (head_grads && head_grads[i]) {
      std::string garg = "head_grads[" + std::to_string(i) + "]";
      gs.push_back(get_array(head_grads[i], garg.c_str()));
    } else {
      gs.push_back(loom::NDArray());
    }
  }
  loom::autograd::backward(hs, gs);
  API_END
}

loom_status loom_ndarray_get_grad(loom_ndarray *out, loom_ndarray array) {
  API_BEGIN
  need(out, "out");
  loom::NDArray a = get_array(array, "array");
  LOOM_CHECK(a.ag() && a.ag()->is_variable, LOOM_ERR_INVALID_ARGUMENT, "get_grad: the array of shape ",
             a.shape().str(), " is not a variable marked for gradients (attach a gradient first)");
  *out = new_handle(a.ag()->grad);
  API_END
}

loom_status loom_io_read_hdf5(loom_ndarray *out, const char *path, const char *dataset,
                              int64_t begin, int64_t end) {
  API_BEGIN
  need(out, "out");
  LOOM_CHECK(path && dataset, LOOM_ERR_INVALID_ARGUMENT, "read_hdf5: path or dataset is NULL");
  *out = new_handle(loom::read_hdf5(path, dataset, begin, end));
  API_END
}

loom_status loom_io_read_idx(loom_ndarray *out, const char *path) {
  API_BEGIN
  need(out, "out");
  LOOM_CHECK(path, LOOM_ERR_INVALID_ARGUMENT, "read_idx: path is NULL");
  *out = new_handle(loom::read_idx(path));
  API_END
}

loom_status loom_random_seed(uint64_t seed) {
  API_BEGIN
  loom::random_seed(seed);
  API_END
}

loom_status loom_random_get_state(uint64_t *out_seed, uint64_t *out_stream) {
  API_BEGIN
  need(out_seed, "out_seed");
  need(out_stream, "out_stream");
  loom::random_state(out_seed, out_stream);
  API_END
}

loom_status loom_random_set_state(uint64_t seed, uint64_t stream) {
  API_BEGIN
  loom::set_random_state(seed, stream);
  API_END
}

}  // extern "C"
