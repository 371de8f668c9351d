#include "common/atomic_file.h"

#include <dirent.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "common/base.h"

namespace loom {

int remove_stale_temporaries(const std::string &path) {
  size_t slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : path.substr(0, slash + 1);
  std::string stem = (slash == std::string::npos ? path : path.substr(slash + 1)) + ".tmp.";
  DIR *d = ::opendir(dir.c_str());
  if (!d) return 0;
  int removed = 0;
  while (dirent *e = ::readdir(d)) {
    const char *name = e->d_name;
    if (std::strncmp(name, stem.c_str(), stem.size()) != 0) continue;
    char *end = nullptr;
    long pid = std::strtol(name + stem.size(), &end, 10);
    if (end == name + stem.size() || *end != '.' || pid <= 0) continue;
    // A process that still runs may be writing it right now; one that is gone never will.
    if (pid != ::getpid() && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH) {
      std::string full = (slash == std::string::npos ? std::string() : dir) + name;
      if (std::remove(full.c_str()) == 0) ++removed;
    }
  }
  ::closedir(d);
  return removed;
}

void write_file_atomic(const std::string &path, const void *data, size_t size, const char *what) {
  static std::atomic<uint64_t> counter{0};
  remove_stale_temporaries(path);
  std::string tmp = path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter++);
  FILE *f = std::fopen(tmp.c_str(), "wb");
  if (!f) fail(LOOM_ERR_IO, what, ": cannot open '", tmp, "' for writing: ", std::strerror(errno));
  size_t wrote = size ? std::fwrite(data, 1, size, f) : 0;
  bool ok = wrote == size && std::fflush(f) == 0 && ::fsync(fileno(f)) == 0;
  int err = errno;
  ok = (std::fclose(f) == 0) && ok;
  if (!ok) {
    std::remove(tmp.c_str());
    fail(LOOM_ERR_IO, what, ": writing '", tmp, "' failed after ", wrote, " of ", size, " bytes: ",
         std::strerror(err));
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    err = errno;
    std::remove(tmp.c_str());
    fail(LOOM_ERR_IO, what, ": cannot rename '", tmp, "' to '", path, "': ", std::strerror(err));
  }
}

}  // namespace loom
