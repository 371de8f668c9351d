// A vector with inline room for N elements, so the per-call lists of the
// imperative path (shapes, dtypes, blobs, vars, arrays) do not touch the heap.
#pragma once

#include <cstddef>
#include <initializer_list>
#include <new>
#include <type_traits>
#include <utility>

namespace loom {

template <typename T, size_t N = 4>
class SmallVec {
 public:
  SmallVec() = default;
  explicit SmallVec(size_t n) { resize(n); }
  SmallVec(size_t n, const T &v) {
    reserve(n);
    for (size_t i = 0; i < n; ++i) push_back(v);
  }
  SmallVec(std::initializer_list<T> init) {
    reserve(init.size());
    for (const T &v : init) push_back(v);
  }
  template <typename It, typename = std::enable_if_t<!std::is_integral_v<It>>>
  SmallVec(It first, It last) {
    for (; first != last; ++first) push_back(*first);
  }
  SmallVec(const SmallVec &o) {
    reserve(o.size_);
    for (const T &v : o) push_back(v);
  }
  SmallVec(SmallVec &&o) noexcept { take(std::move(o)); }
  SmallVec &operator=(const SmallVec &o) {
    if (this != &o) {
      clear();
      reserve(o.size_);
      for (const T &v : o) push_back(v);
    }
    return *this;
  }
  SmallVec &operator=(SmallVec &&o) noexcept {
    if (this != &o) {
      clear();
      release();
      take(std::move(o));
    }
    return *this;
  }
  ~SmallVec() {
    clear();
    release();
  }

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  T *data() { return ptr(); }
  const T *data() const { return ptr(); }
  T &operator[](size_t i) { return ptr()[i]; }
  const T &operator[](size_t i) const { return ptr()[i]; }
  T *begin() { return ptr(); }
  T *end() { return ptr() + size_; }
  const T *begin() const { return ptr(); }
  const T *end() const { return ptr() + size_; }
  T &back() { return ptr()[size_ - 1]; }

  void reserve(size_t n) {
    if (n <= cap_) return;
    T *p = static_cast<T *>(::operator new(n * sizeof(T), std::align_val_t(alignof(T))));
    for (size_t i = 0; i < size_; ++i) {
      new (p + i) T(std::move(ptr()[i]));
      ptr()[i].~T();
    }
    release();
    heap_ = p;
    cap_ = n;
  }
  void push_back(const T &v) {
    if (size_ == cap_) {
      T copy(v);  // v may live inside this vector
      reserve(cap_ * 2);
      new (ptr() + size_++) T(std::move(copy));
      return;
    }
    new (ptr() + size_++) T(v);
  }
  void push_back(T &&v) {
    if (size_ == cap_) reserve(cap_ * 2);
    new (ptr() + size_++) T(std::move(v));
  }
  void resize(size_t n) {
    reserve(n);
    while (size_ < n) new (ptr() + size_++) T();
    while (size_ > n) ptr()[--size_].~T();
  }
  void clear() {
    while (size_ > 0) ptr()[--size_].~T();
  }

 private:
  T *ptr() { return heap_ ? heap_ : reinterpret_cast<T *>(inline_); }
  const T *ptr() const { return heap_ ? heap_ : reinterpret_cast<const T *>(inline_); }
  void release() {
    if (heap_) ::operator delete(heap_, std::align_val_t(alignof(T)));
    heap_ = nullptr;
    cap_ = N;
  }
  void take(SmallVec &&o) {
    if (o.heap_) {
      heap_ = o.heap_;
      cap_ = o.cap_;
      size_ = o.size_;
      o.heap_ = nullptr;
      o.cap_ = N;
      o.size_ = 0;
    } else {
      for (size_t i = 0; i < o.size_; ++i) new (ptr() + i) T(std::move(o.ptr()[i]));
      size_ = o.size_;
      o.clear();
    }
  }
  alignas(T) unsigned char inline_[N * sizeof(T)];
  T *heap_ = nullptr;
  size_t size_ = 0;
  size_t cap_ = N;
};

}  // namespace loom
