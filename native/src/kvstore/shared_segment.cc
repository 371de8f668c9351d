#include "kvstore/shared_segment.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

namespace loom {

std::shared_ptr<SharedSegment> SharedSegment::open(const loom_comm &c, size_t total, bool want) {
  const int rank = c.rank(), ranks = c.size();
  // Rank 0 creates the object under a name no other job can hold (its pid, a
  // random number and a count) and reserves its room; the others open that name.
  // A rank on another host finds no such object, and the segment is not used.
  struct Record {
    int32_t ok;
    uint64_t bytes;  // each rank's size: a rank that asks for another maps nothing
    char name[48];
  } mine{};
  mine.bytes = total;
  int fd = -1;
  bool created = false;
  if (rank == 0 && want) {
    static std::atomic<uint64_t> count{0};
    std::random_device rd;
    const uint64_t nonce = (static_cast<uint64_t>(rd()) << 32) ^ rd();
    std::snprintf(mine.name, sizeof mine.name, "/loom-kv-%d-%016llx-%llu", static_cast<int>(getpid()),
                  static_cast<unsigned long long>(nonce), static_cast<unsigned long long>(count++));
    fd = shm_open(mine.name, O_CREAT | O_EXCL | O_RDWR, 0600);
    created = fd >= 0;
    mine.ok = created && ftruncate(fd, static_cast<off_t>(total)) == 0 &&
              posix_fallocate(fd, 0, static_cast<off_t>(total)) == 0;
  }
  std::vector<Record> records(static_cast<size_t>(ranks));
  if (c.allgather(&mine, sizeof mine, records.data()) != 0) {
    if (created) {
      close(fd);
      shm_unlink(mine.name);
    }
    return nullptr;
  }
  const Record &made = records[0];
  bool same = true;
  for (const Record &r : records) same = same && r.bytes == total;
  if (rank != 0 && made.ok && same) fd = shm_open(made.name, O_RDWR, 0600);
  void *base = MAP_FAILED;
  struct stat st {};
  if (made.ok && same && fd >= 0 && total > 0 && fstat(fd, &st) == 0 && static_cast<size_t>(st.st_size) == total)
    base = mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (fd >= 0) close(fd);
  int32_t mapped = want && base != MAP_FAILED;
  std::vector<int32_t> everyone(static_cast<size_t>(ranks));
  const bool agreed = c.allgather(&mapped, sizeof mapped, everyone.data()) == 0;
  if (created) shm_unlink(mine.name);  // every rank that could map it has
  bool all = agreed;
  for (int32_t m : everyone) all = all && m;
  if (!all) {
    if (base != MAP_FAILED) munmap(base, total);
    return nullptr;
  }
  return std::shared_ptr<SharedSegment>(new SharedSegment(static_cast<char *>(base), total));
}

SharedSegment::~SharedSegment() { munmap(base_, bytes_); }

}  // namespace loom
