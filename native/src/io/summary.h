// TensorBoard event files, written natively: TFRecord framing (length, masked
// CRC-32C of the length, data, masked CRC-32C of the data) around protobuf-encoded
// Event messages (TensorFlow's event.proto and summary.proto field numbers):
// scalars, histograms computed here, and the network graph as a GraphDef.
#pragma once

#include <cstdint>
#include <cstdio>
#include <mutex>
#include <string>
#include <vector>

#include "ndarray/ndarray.h"
#include "symbol/symbol.h"

namespace loom {

// CRC-32C (Castagnoli) of `n` bytes, and TFRecord's masked form of it.
uint32_t crc32c(const void *data, size_t n);
uint32_t masked_crc32c(const void *data, size_t n);

class SummaryWriter {
 public:
  // Creates `logdir` (and its parents) if needed and a new event file in it,
  // events.out.tfevents.<seconds>.<host>.<pid>.<n>, starting with the file
  // version record. A directory that cannot be made or written is LOOM_ERR_IO
  // naming the path.
  explicit SummaryWriter(const std::string &logdir);
  ~SummaryWriter();
  SummaryWriter(const SummaryWriter &) = delete;
  SummaryWriter &operator=(const SummaryWriter &) = delete;

  const std::string &path() const { return path_; }
  void add_scalar(const std::string &tag, double value, int64_t step);
  // min, max, count, sum, sum of squares and `bins` equal-width buckets over the
  // finite values of a float array (non-finite values are left out and counted in
  // the error if there is nothing else).
  void add_histogram(const std::string &tag, const NDArray &values, int64_t step, int bins);
  // The graph: one NodeDef per node (op as MXNet names it, inputs by node name,
  // parameters as string attributes).
  void add_graph(const Symbol &s);
  void flush();

 private:
  void write_event(const std::string &event);
  std::mutex mu_;
  std::string path_;
  std::FILE *f_ = nullptr;
};

}  // namespace loom
