// Batches over in-memory (data, label) arrays: shuffling from the seeded
// generator, last-batch handling (discard, pad, roll over) and a background
// thread that assembles the next batches while the caller trains.
#pragma once

#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "ndarray/ndarray.h"

namespace loom {

enum class LastBatch { kDiscard = 0, kPad = 1, kRollOver = 2 };

struct Batch {
  NDArray data, label;  // label is empty when the iterator has none
  int64_t pad = 0;      // samples at the end repeated from the epoch's start
};

class BatchIter {
 public:
  // data and label (optional: pass an empty array) share the first extent.
  // prefetch: batches assembled ahead by the background thread (0: none, the
  // caller's thread gathers each batch).
  BatchIter(NDArray data, NDArray label, int64_t batch, bool shuffle, LastBatch last,
            int prefetch);
  ~BatchIter();
  BatchIter(const BatchIter &) = delete;
  BatchIter &operator=(const BatchIter &) = delete;

  // Starts an epoch: draws its order (on the caller's thread, so the seeded
  // generator advances the same way whatever the prefetch depth).
  void reset();
  // The next batch of the epoch; false at its end. Starts an epoch if none is.
  bool next(Batch *out);

 private:
  void reset_locked();  // reset() with api_mu_ held
  void stop_worker();
  void produce();
  Batch gather(int64_t b) const;

  NDArray data_, label_;
  int64_t batch_;
  bool shuffle_;
  LastBatch last_;
  int prefetch_;

  std::mutex api_mu_;  // one caller at a time
  bool started_ = false;
  std::vector<int64_t> order_, carry_;
  int64_t num_batches_ = 0, pad_ = 0, cursor_ = 0;

  std::mutex mu_;  // queue state, shared with the worker
  std::condition_variable cv_;
  std::deque<Batch> queue_;
  int64_t produced_ = 0;
  bool stop_ = false;
  std::exception_ptr error_;
  std::thread worker_;
};

// Reads a CSV file of numbers (plain or gzip) into a (rows, columns) array on
// cpu(0). Skips `header_rows` lines first and blank lines anywhere. Errors
// name the file, line and column.
NDArray read_csv(const std::string &path, int32_t dtype, int64_t header_rows);

}  // namespace loom
