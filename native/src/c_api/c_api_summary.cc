// ABI entry points for TensorBoard event files.
#include <memory>

#include "c_api/c_api_internal.h"
#include "io/summary.h"

struct loom_summary_writer_s {
  std::shared_ptr<loom::SummaryWriter> w;
};

// In c_api_symbol.cc, where symbols live: writes the graph under the graph lock.
void summary_add_graph(loom::SummaryWriter &w, loom_symbol symbol);

namespace {

HandleTable<loom_summary_writer_s> &writers() {
  static auto *t = new HandleTable<loom_summary_writer_s>;
  return *t;
}

std::shared_ptr<loom::SummaryWriter> get_writer(loom_summary_writer h) {
  return writers().with(h, "summary writer", "writer", [](loom_summary_writer_s &s) { return s.w; });
}

std::string tag_of(const char *tag, const char *what) {
  LOOM_CHECK(tag, LOOM_ERR_INVALID_ARGUMENT, "SummaryWriter.", what, ": tag is NULL");
  return tag;
}

}  // namespace

extern "C" {

loom_status loom_summary_writer_create(loom_summary_writer *out, const char *logdir) {
  API_BEGIN
  need(out, "out");
  LOOM_CHECK(logdir, LOOM_ERR_INVALID_ARGUMENT, "SummaryWriter: logdir is NULL");
  *out = writers().add(new loom_summary_writer_s{std::make_shared<loom::SummaryWriter>(logdir)});
  API_END
}

loom_status loom_summary_writer_get_path(const char **out, loom_summary_writer writer) {
  API_BEGIN
  need(out, "out");
  *out = writers().with(writer, "summary writer", "writer", [](loom_summary_writer_s &s) { return s.w->path().c_str(); });
  API_END
}

loom_status loom_summary_add_scalar(loom_summary_writer writer, const char *tag, double value, int64_t step) {
  API_BEGIN
  get_writer(writer)->add_scalar(tag_of(tag, "add_scalar"), value, step);
  API_END
}

loom_status loom_summary_add_histogram(loom_summary_writer writer, const char *tag, loom_ndarray values,
                                       int64_t step, int32_t bins) {
  API_BEGIN
  get_writer(writer)->add_histogram(tag_of(tag, "add_histogram"), get_array(values, "values"), step, bins);
  API_END
}

loom_status loom_summary_add_graph(loom_summary_writer writer, loom_symbol symbol) {
  API_BEGIN
  summary_add_graph(*get_writer(writer), symbol);
  API_END
}

loom_status loom_summary_writer_flush(loom_summary_writer writer) {
  API_BEGIN
  get_writer(writer)->flush();
  API_END
}

void loom_summary_writer_free(loom_summary_writer writer) { writers().remove(writer); }

}  // extern "C"
