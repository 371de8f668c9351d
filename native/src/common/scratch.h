// Large scratch that lives for one kernel call, kept for the next call.
#pragma once

#include <algorithm>
#include <cstddef>
#include <memory>

namespace loom {

// A 64-byte aligned buffer of at least `bytes` bytes, uninitialised, returned to a
// small process-wide cache when the last reference goes. An allocation of tens
// of MB is mapped afresh by the kernel each time it is made, and its page faults
// can cost more than the kernel that fills it (ResNet-50's weight-gradient pieces:
// about 450 MB a training step; an LSTM's gate buffers). At most four buffers and
// 160 MB stay cached (the smallest go first); a call takes the smallest that
// fits and is at most four times its size. `what` names the buffer in the
// out-of-memory error.
std::shared_ptr<void> reusable_scratch(size_t bytes, const char *what);

// n zeroed elements of T in such a buffer (a std::vector<T>(n) without the fresh pages).
template <typename T>
class ScratchArray {
 public:
  ScratchArray() = default;
  ScratchArray(size_t n, const char *what) { assign(n, what); }
  void assign(size_t n, const char *what) {
    hold_ = n ? reusable_scratch(n * sizeof(T), what) : nullptr;
    n_ = n;
    std::fill(data(), data() + n, T(0));
  }
  T *data() const { return static_cast<T *>(hold_.get()); }
  size_t size() const { return n_; }
  T &operator[](size_t i) const { return data()[i]; }

 private:
  std::shared_ptr<void> hold_;
  size_t n_ = 0;
};

}  // namespace loom
