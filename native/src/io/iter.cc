#include "io/iter.h"

#include <cmath>
#include <cstdint>

#include <cerrno>
#include <cstring>
#include <string>

#include "imperative/imperative.h"
#include "io/idx.h"
#include "op/registry.h"

namespace loom {

BatchIter::BatchIter(NDArray data, NDArray label, int64_t batch, bool shuffle, LastBatch last,
                     int prefetch)
    : data_(std::move(data)), label_(std::move(label)), batch_(batch), shuffle_(shuffle),
      last_(last), prefetch_(prefetch) {
  const Shape &ds = data_.shape();
  LOOM_CHECK(ds.ndim >= 1, LOOM_ERR_SHAPE, "data iterator: data must have a sample axis, got shape ",
             ds.str());
  if (label_.chunk()) {
    const Shape &ls = label_.shape();
    LOOM_CHECK(ls.ndim >= 1 && ls.d[0] == ds.d[0], LOOM_ERR_SHAPE, "data iterator: data has ",
               ds.d[0], " samples (shape ", ds.str(), ") but label has shape ", ls.str());
    LOOM_CHECK(label_.ctx() == data_.ctx(), LOOM_ERR_INVALID_ARGUMENT,
               "data iterator: label is on ", label_.ctx().str(), " but data is on ",
               data_.ctx().str(), "; keep both on one device");
  }
  LOOM_CHECK(batch_ > 0, LOOM_ERR_INVALID_ARGUMENT, "data iterator: batch size must be positive, got ",
             batch_);
  LOOM_CHECK(prefetch_ >= 0, LOOM_ERR_INVALID_ARGUMENT,
             "data iterator: prefetch must be >= 0, got ", prefetch_);
  LOOM_CHECK(last_ != LastBatch::kPad || ds.d[0] > 0, LOOM_ERR_INVALID_ARGUMENT,
             "data iterator: cannot pad batches of an empty data set");
}

BatchIter::~BatchIter() { stop_worker(); }

void BatchIter::stop_worker() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
  std::lock_guard<std::mutex> lk(mu_);
  queue_.clear();
  stop_ = false;
  error_ = nullptr;
  produced_ = 0;
}

void BatchIter::reset() {
  std::lock_guard<std::mutex> api(api_mu_);
  reset_locked();
}

void BatchIter::reset_locked() {
  stop_worker();
  int64_t n = data_.shape().d[0];
  order_ = carry_;
  carry_.clear();
  if (shuffle_ && n > 0) {
    ArrayList in, out(1);
    std::string ns = std::to_string(n);
    const char *k[] = {"n"}, *v[] = {ns.c_str()};
    const OpDef *perm_op = Registry::get().find("random_permutation");
    LOOM_CHECK(perm_op, LOOM_ERR_INTERNAL, "data iterator: random_permutation is not registered");
    invoke(*perm_op, in, out, k, v, 1);
    std::vector<int64_t> perm(static_cast<size_t>(n));
    out[0].copy_to_host(perm.data(), perm.size() * sizeof(int64_t));
    order_.insert(order_.end(), perm.begin(), perm.end());
  } else {
    for (int64_t i = 0; i < n; ++i) order_.push_back(i);
  }
  int64_t total = static_cast<int64_t>(order_.size()), rem = total % batch_;
  num_batches_ = total / batch_;
  pad_ = 0;
  if (rem) {
    if (last_ == LastBatch::kPad) {
      ++num_batches_;
      pad_ = batch_ - rem;
    } else if (last_ == LastBatch::kRollOver) {
      carry_.assign(order_.end() - rem, order_.end());
    }
  }
  cursor_ = 0;
  started_ = true;
  if (prefetch_ > 0 && num_batches_ > 0) worker_ = std::thread([this] { produce(); });
}

namespace {
// Rows `rows` of a device-resident array, gathered on its device by `take`
// (the row numbers travel as a small int64 array).
NDArray take_rows(const NDArray &src, const std::vector<int64_t> &rows) {
  NDArray idx = NDArray::empty(Shape{static_cast<int64_t>(rows.size())}, kInt64, Context{});
  idx.copy_from_host(rows.data(), rows.size() * sizeof(int64_t));
  std::string c = src.ctx().str();
  const char *k[] = {"ctx"}, *v[] = {c.c_str()};
  ArrayList on_device(1), out(1);
  invoke(Registry::get().lookup("copy"), ArrayList{idx}, on_device, k, v, 1);
  invoke(Registry::get().lookup("take"), ArrayList{src, on_device[0]}, out, nullptr, nullptr, 0);
  return out[0];
}
}  // namespace

// Batch b of the epoch: rows order_[b*batch ...], wrapping to the epoch's start
// for the padded tail. Arrays on a device are gathered there.
Batch BatchIter::gather(int64_t b) const {
  Batch out;
  int64_t total = static_cast<int64_t>(order_.size());
  bool padded = b == num_batches_ - 1 && pad_ > 0;
  if (data_.ctx().dev_type != LOOM_DEVICE_CPU) {
    std::vector<int64_t> rows(static_cast<size_t>(batch_));
    for (int64_t i = 0; i < batch_; ++i) rows[i] = order_[static_cast<size_t>((b * batch_ + i) % total)];
    out.data = take_rows(data_, rows);
    if (label_.chunk()) out.label = take_rows(label_, rows);
    out.pad = padded ? pad_ : 0;
    return out;
  }
  auto take = [&](const NDArray &src) {
    src.wait_to_read();
    Shape s = src.shape();
    size_t row = s.d[0] ? src.nbytes() / static_cast<size_t>(s.d[0]) : 0;
    s.d[0] = batch_;
    NDArray dst = NDArray::empty(s, src.dtype(), src.ctx());
    const char *from = static_cast<const char *>(src.data());
    char *to = static_cast<char *>(dst.data());
    for (int64_t i = 0; i < batch_; ++i) {
      int64_t k = (b * batch_ + i) % total;
      std::memcpy(to + i * row, from + order_[static_cast<size_t>(k)] * row, row);
    }
    return dst;
  };
  out.data = take(data_);
  if (label_.chunk()) out.label = take(label_);
  out.pad = padded ? pad_ : 0;
  return out;
}

void BatchIter::produce() {
  for (int64_t b = 0; b < num_batches_; ++b) {
    {
      std::unique_lock<std::mutex> lk(mu_);
      cv_.wait(lk, [&] { return stop_ || static_cast<int>(queue_.size()) < prefetch_; });
      if (stop_) return;
    }
    Batch x;
    try {
      x = gather(b);
    } catch (...) {
      std::lock_guard<std::mutex> lk(mu_);
      error_ = std::current_exception();
      cv_.notify_all();
      return;
    }
    std::lock_guard<std::mutex> lk(mu_);
    queue_.push_back(std::move(x));
    ++produced_;
    cv_.notify_all();
  }
}

bool BatchIter::next(Batch *out) {
  std::lock_guard<std::mutex> api(api_mu_);
  // The first call starts the epoch under the same lock: callers that came in
  // together once each started one, and the second restarted the epoch the
  // first had begun to read (its batches were handed out twice).
  if (!started_) reset_locked();
  if (cursor_ >= num_batches_) return false;
  if (prefetch_ == 0) {
    *out = gather(cursor_++);
    return true;
  }
  std::unique_lock<std::mutex> lk(mu_);
  cv_.wait(lk, [&] { return !queue_.empty() || error_; });
  if (queue_.empty()) std::rethrow_exception(error_);
  *out = std::move(queue_.front());
  queue_.pop_front();
  ++cursor_;
  cv_.notify_all();
  return true;
}

NDArray read_csv(const std::string &path, int32_t dtype, int64_t header_rows) {
  LOOM_CHECK(dtype == kFloat32 || dtype == kFloat64 || dtype == kInt32 || dtype == kInt64,
             LOOM_ERR_DTYPE, "read_csv: dtype must be float32, float64, int32 or int64, got ",
             dtype_name(dtype));
  LOOM_CHECK(header_rows >= 0, LOOM_ERR_INVALID_ARGUMENT, "read_csv: header_rows must be >= 0, got ",
             header_rows);
  std::string text = read_file(path, "read_csv");
  const bool integer = dtype == kInt32 || dtype == kInt64;
  const int64_t lo = dtype == kInt32 ? INT32_MIN : INT64_MIN, hi = dtype == kInt32 ? INT32_MAX : INT64_MAX;
  std::vector<double> values;
  std::vector<int64_t> ints;
  int64_t cols = -1, rows = 0, line = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string l = text.substr(pos, end - pos);
    pos = end + 1;
    ++line;
    if (!l.empty() && l.back() == '\r') l.pop_back();
    if (line <= header_rows) continue;
    if (l.find_first_not_of(" \t") == std::string::npos) continue;
    int64_t c = 0;
    size_t p = 0;
    for (;;) {
      size_t comma = l.find(',', p);
      std::string field = l.substr(p, comma == std::string::npos ? std::string::npos : comma - p);
      ++c;
      auto bad = [&](const char *why) {
        fail(LOOM_ERR_IO, "read_csv: '", path, "' line ", line, " column ", c, ": '", field, "' ", why);
      };
      const char *s = field.c_str();
      auto rest_is_blank = [](const char *e) {
        while (e && (*e == ' ' || *e == '\t')) ++e;
        return e && *e == '\0';
      };
      if (field.find_first_not_of(" \t") == std::string::npos) bad("is not a number");
      if (integer) {
        // Integers are read exactly (int64 beyond 2^53 too); a number with a
        // fraction, a non-finite value or one outside the dtype's range is an error.
        char *e = nullptr;
        errno = 0;
        long long iv = std::strtoll(s, &e, 10);
        if (e != s && rest_is_blank(e) && errno == 0) {
          if (iv < lo || iv > hi) bad(dtype == kInt32 ? "is outside int32's range" : "is outside int64's range");
          ints.push_back(iv);
        } else {
          errno = 0;
          double v = std::strtod(s, &e);
          if (e == s || !rest_is_blank(e)) bad("is not a number");
          if (!std::isfinite(v)) bad(dtype == kInt32 ? "is not an int32 (not finite)" : "is not an int64 (not finite)");
          if (v != std::floor(v)) bad(dtype == kInt32 ? "is not an int32 (it has a fraction)" : "is not an int64 (it has a fraction)");
          if (v < double(lo) || v >= -double(lo))
            bad(dtype == kInt32 ? "is outside int32's range" : "is outside int64's range");
          ints.push_back(static_cast<int64_t>(v));
        }
      } else {
        char *e = nullptr;
        errno = 0;
        double v = std::strtod(s, &e);
        if (e == s || !rest_is_blank(e)) bad("is not a number");
        values.push_back(v);
      }
      if (comma == std::string::npos) break;
      p = comma + 1;
    }
    if (cols < 0) cols = c;
    else if (c != cols)
      fail(LOOM_ERR_IO, "read_csv: '", path, "' line ", line, " has ", c, " columns but the first row has ",
           cols);
    ++rows;
  }
  if (cols < 0) cols = 0;
  NDArray a = NDArray::empty(Shape{rows, cols}, dtype, Context{});
  LOOM_DTYPE_SWITCH(dtype, T, {
    T *o = static_cast<T *>(a.data());
    if (integer)
      for (size_t i = 0; i < ints.size(); ++i) o[i] = static_cast<T>(ints[i]);
    else
      for (size_t i = 0; i < values.size(); ++i) o[i] = static_cast<T>(values[i]);
  });
  return a;
}

}  // namespace loom
