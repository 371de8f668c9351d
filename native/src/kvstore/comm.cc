#include "kvstore/comm.h"

#include <dlfcn.h>
#include <sys/stat.h>

#include <cstdlib>
#include <mutex>
#include <string>

#include "common/base.h"

namespace loom {
namespace {

constexpr const char *kPluginFile = "libloom_mpi.so";

std::string own_folder() {
  Dl_info info{};
  if (!dladdr(reinterpret_cast<void *>(&own_folder), &info) || !info.dli_fname) return ".";
  std::string f = info.dli_fname;
  size_t slash = f.rfind('/');
  return slash == std::string::npos ? "." : f.substr(0, slash);
}

bool launched_by_mpi() {
  for (const char *v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "MPI_LOCALNRANKS"})
    if (std::getenv(v)) return true;
  return false;
}

const loom_comm *try_open(const std::string &file, std::string *why) {
  dlerror();
  // RTLD_GLOBAL: Open MPI loads its own components, which look for MPI's symbols.
  void *h = dlopen(file.c_str(), RTLD_NOW | RTLD_GLOBAL);
  if (!h) {
    const char *e = dlerror();
    *why = e ? e : "dlopen failed";
    return nullptr;
  }
  auto open = reinterpret_cast<loom_comm_open_fn>(dlsym(h, "loom_comm_open"));
  if (!open) {
    *why = "it does not export loom_comm_open, so it is not a Loom communication plugin";
    return nullptr;
  }
  char buf[512] = {0};
  const loom_comm *t = open(buf, sizeof buf);
  if (!t) {
    *why = std::string("it failed to start: ") + buf;
    return nullptr;
  }
  if (t->abi_version != LOOM_COMM_ABI_VERSION) {
    *why = "it implements interface version " + std::to_string(t->abi_version) + ", this libloom needs " +
           std::to_string(LOOM_COMM_ABI_VERSION);
    return nullptr;
  }
  return t;
}

}  // namespace

const loom_comm &comm() {
  static std::mutex mu;
  static const loom_comm *table = nullptr;
  std::lock_guard<std::mutex> lk(mu);
  if (table) return *table;
  LOOM_CHECK(launched_by_mpi(), LOOM_ERR_BACKEND_UNAVAILABLE,
             "a dist_* kvstore runs one process per worker, started by MPI's launcher: "
             "mpirun -n N <program> (./build.sh run dist N for the examples); this process was not");
  std::string tried, why;
  const char *env = std::getenv("LOOM_MPI_LIBRARY");
  std::string candidates[3];
  int n = 0;
  if (env && *env) {
    candidates[n++] = env;
  } else {
    candidates[n++] = own_folder() + "/" + kPluginFile;
    candidates[n++] = kPluginFile;
  }
  for (int i = 0; i < n; ++i) {
    if (const loom_comm *t = try_open(candidates[i], &why)) {
      table = t;
      return *table;
    }
    tried += "\n  " + candidates[i] + " (" + why + ")";
  }
  fail(LOOM_ERR_BACKEND_UNAVAILABLE, "the MPI communication plugin ", kPluginFile,
       " could not be loaded; tried:", tried,
       "\nBuild Loom where MPI is installed (Debian: libopenmpi-dev), or set LOOM_MPI_LIBRARY to the plugin.");
}

}  // namespace loom
