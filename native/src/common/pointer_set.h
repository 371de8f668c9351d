// A set of pointers in one flat table (open addressing, linear probing): adding
// and removing allocate nothing except when the table grows. Used for the ABI's
// live-handle tables, which every call consults. Not synchronised.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace loom {

class PointerSet {
 public:
  // Null and the address that marks removed entries are never members (a caller
  // may pass any garbage as a handle).
  bool contains(const void *p) const {
    if (slots_.empty() || !storable(p)) return false;
    for (size_t i = home(p);; i = (i + 1) & mask()) {
      if (slots_[i] == p) return true;
      if (slots_[i] == nullptr) return false;
    }
  }
  // Returns false if `p` was already there.
  bool insert(const void *p) {
    if (!storable(p) || contains(p)) return false;
    if ((size_ + removed_ + 1) * 4 > slots_.size() * 3) rebuild();
    size_t i = home(p);
    while (slots_[i] != nullptr && slots_[i] != removed()) i = (i + 1) & mask();
    if (slots_[i] == removed()) --removed_;
    slots_[i] = p;
    ++size_;
    return true;
  }
  // Returns false if `p` was not there.
  bool erase(const void *p) {
    if (slots_.empty() || !storable(p)) return false;
    for (size_t i = home(p);; i = (i + 1) & mask()) {
      if (slots_[i] == p) {
        slots_[i] = removed();
        --size_;
        ++removed_;
        return true;
      }
      if (slots_[i] == nullptr) return false;
    }
  }
  size_t size() const { return size_; }

 private:
  // A removed entry keeps probe chains intact; no object lives at this address.
  static const void *removed() { return reinterpret_cast<const void *>(uintptr_t{1}); }
  static bool storable(const void *p) { return p != nullptr && p != removed(); }
  size_t mask() const { return slots_.size() - 1; }
  size_t home(const void *p) const {
    // Fibonacci hashing of the address (heap pointers share their low bits).
    uint64_t h = static_cast<uint64_t>(reinterpret_cast<uintptr_t>(p)) * 0x9E3779B97F4A7C15ull;
    return static_cast<size_t>(h >> 32) & mask();
  }
  // Doubles the table when it is half full of live entries, else clears the
  // removed markers at the same size.
  void rebuild() {
    size_t cap = slots_.empty() ? 64 : slots_.size();
    while ((size_ + 1) * 2 > cap) cap *= 2;
    std::vector<const void *> old(cap, nullptr);
    old.swap(slots_);
    size_ = removed_ = 0;
    for (const void *p : old)
      if (p && p != removed()) {
        size_t i = home(p);
        while (slots_[i] != nullptr) i = (i + 1) & mask();
        slots_[i] = p;
        ++size_;
      }
  }

  std::vector<const void *> slots_;
  size_t size_ = 0;
  size_t removed_ = 0;
};

}  // namespace loom
