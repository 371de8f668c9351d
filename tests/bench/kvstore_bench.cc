// Run by mpirun -n 2: a dist_sync store's pushpull of one key against MPI_Allreduce
// called directly, on the same float32 arrays of 1 to 100 MB, in one run
// (./build.sh bench). Prints MB/s of each and their ratio (target >= 0.9).
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "loom/loom.h"

static double now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

int main() {
  loom_kvstore kv = nullptr;  // initialises MPI through the plugin
  if (loom_kvstore_create(&kv, "dist_sync") != LOOM_OK) {
    std::fprintf(stderr, "%s\n", loom_last_error());
    return 1;
  }
  int rank = 0, size = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  if (rank == 0)
    std::printf("dist_sync pushpull vs MPI_Allreduce in place and out of place (input kept, sum in\n"
                "another array, as pushpull does), %d ranks, interleaved, medians of 11 after a warm-up\n"
                "%8s %14s %14s %14s %9s %9s\n", size, "MB", "kvstore_MB/s", "inplace_MB/s", "outplace_MB/s",
                "ratio_in", "ratio_out");
  for (double mb : {1.0, 10.0, 100.0}) {
    int64_t n = static_cast<int64_t>(mb * (1 << 20) / 4);
    std::vector<float> host(n, 1.0f + rank), host_out(n);
    loom_ndarray a = nullptr, out = nullptr;
    loom_ndarray_create(&a, &n, 1, LOOM_DTYPE_FLOAT32, LOOM_DEVICE_CPU, 0);
    loom_ndarray_create(&out, &n, 1, LOOM_DTYPE_FLOAT32, LOOM_DEVICE_CPU, 0);
    loom_ndarray_copy_from_host(a, host.data(), n * 4);
    std::string key = "k" + std::to_string(static_cast<int>(mb));
    const char *k = key.c_str();
    loom_kvstore_init(kv, 1, &k, &a);
    std::vector<double> tk, tm, to;
    for (int rep = 0; rep < 12; ++rep) {
      MPI_Barrier(MPI_COMM_WORLD);
      double t0 = now();
      loom_kvstore_pushpull(kv, 1, &k, &a, 1, &k, &out, 0);
      loom_ndarray_wait_to_read(out);
      double t1 = now();
      loom_wait_all();  // the store's own copy of the sum ends before MPI is timed
      MPI_Barrier(MPI_COMM_WORLD);
      double t2 = now();
      MPI_Allreduce(MPI_IN_PLACE, host.data(), static_cast<int>(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
      double t3 = now();
      MPI_Barrier(MPI_COMM_WORLD);
      double t4 = now();
      MPI_Allreduce(host.data(), host_out.data(), static_cast<int>(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
      double t5 = now();
      if (rep > 0) {
        tk.push_back(t1 - t0);
        tm.push_back(t3 - t2);
        to.push_back(t5 - t4);
      }
    }
    std::sort(tk.begin(), tk.end());
    std::sort(tm.begin(), tm.end());
    std::sort(to.begin(), to.end());
    double k_rate = mb / tk[tk.size() / 2], m_rate = mb / tm[tm.size() / 2], o_rate = mb / to[to.size() / 2];
    if (rank == 0)
      std::printf("%8.0f %14.0f %14.0f %14.0f %9.2f %9.2f\n", mb, k_rate, m_rate, o_rate, k_rate / m_rate,
                  k_rate / o_rate);
    loom_ndarray_free(a);
    loom_ndarray_free(out);
  }
  loom_kvstore_free(kv);
  return 0;
}
