// ABI entry points for data: CSV files and batch iterators.
#include <memory>

#include "c_api/c_api_internal.h"
#include "io/iter.h"

struct loom_dataiter_s {
  std::shared_ptr<loom::BatchIter> iter;
};

namespace {

HandleTable<loom_dataiter_s> &iters() {
  static auto *t = new HandleTable<loom_dataiter_s>;
  return *t;
}

std::shared_ptr<loom::BatchIter> get_iter(loom_dataiter h) {
  return iters().with(h, "data iterator", "iter", [](loom_dataiter_s &s) { return s.iter; });
}

}  // namespace

extern "C" {

loom_status loom_io_read_csv(loom_ndarray *out, const char *path, int32_t dtype, int64_t header_rows) {
  API_BEGIN
  need(out, "out");
  LOOM_CHECK(path, LOOM_ERR_INVALID_ARGUMENT, "read_csv: path is NULL");
  *out = new_handle(loom::read_csv(path, dtype, header_rows));
  API_END
}

loom_status loom_dataiter_create(loom_dataiter *out, loom_ndarray data, loom_ndarray label,
                                 int64_t batch_size, int32_t shuffle, int32_t last_batch,
                                 int32_t prefetch) {
  API_BEGIN
  need(out, "out");
  LOOM_CHECK(last_batch >= LOOM_LAST_BATCH_DISCARD && last_batch <= LOOM_LAST_BATCH_ROLL_OVER,
             LOOM_ERR_INVALID_ARGUMENT, "data iterator: last_batch ", last_batch,
             " is not LOOM_LAST_BATCH_DISCARD, PAD or ROLL_OVER (0-2)");
  loom::NDArray d = get_array(data, "data");
  loom::NDArray l = label ? get_array(label, "label") : loom::NDArray();
  auto it = std::make_shared<loom::BatchIter>(d, l, batch_size, shuffle != 0,
                                              static_cast<loom::LastBatch>(last_batch), prefetch);
  *out = iters().add(new loom_dataiter_s{std::move(it)});
  API_END
}

loom_status loom_dataiter_reset(loom_dataiter iter) {
  API_BEGIN
  get_iter(iter)->reset();
  API_END
}

loom_status loom_dataiter_next(int32_t *has_batch, loom_ndarray *data, loom_ndarray *label,
                               int64_t *pad, loom_dataiter iter) {
  API_BEGIN
  need(has_batch, "has_batch");
  need(data, "data");
  need(label, "label");
  need(pad, "pad");
  auto it = get_iter(iter);
  loom::Batch b;
  *has_batch = it->next(&b) ? 1 : 0;
  *data = *has_batch ? new_handle(b.data) : nullptr;
  *label = *has_batch && b.label.chunk() ? new_handle(b.label) : nullptr;
  *pad = b.pad;
  API_END
}

void loom_dataiter_free(loom_dataiter iter) { iters().remove(iter); }

}  // extern "C"
