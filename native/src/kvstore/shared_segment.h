// Memory every rank of one host maps: a POSIX shared-memory object, opened
// collectively and unlinked as soon as every rank has mapped it (so a rank that
// dies leaves nothing behind in /dev/shm). A dist_sync store sums a key through
// it (kvstore.cc) when all ranks share this host.
#pragma once

#include <cstddef>
#include <memory>

#include "loom/comm.h"

namespace loom {

class SharedSegment {
 public:
  // Collective over every rank of `c`: `bytes` of memory every rank maps, or null
  // on every rank where they cannot all map it (ranks on other hosts, no room in
  // /dev/shm, or a rank that does not `want` it). Its room is reserved up front,
  // so touching it never faults for lack of room.
  static std::shared_ptr<SharedSegment> open(const loom_comm &c, size_t bytes, bool want);
  ~SharedSegment();
  SharedSegment(const SharedSegment &) = delete;
  SharedSegment &operator=(const SharedSegment &) = delete;
  char *base() const { return base_; }

 private:
  SharedSegment(char *base, size_t bytes) : base_(base), bytes_(bytes) {}
  char *base_;
  size_t bytes_;
};

}  // namespace loom
