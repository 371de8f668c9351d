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
    std::printf("dist_sync pushpull vs MPI_Allreduce called directly, %d ranks: in place (the sum replaces\n"
                "the input: pushpull(k, g, out=g), as a trainer reduces gradients) and out of place (input\n"
                "kept, sum in another array); in rotated order, medians of 24 after a warm-up\n"
                "%6s %11s %11s %9s %11s %11s %9s\n", size, "MB", "kv_in_MB/s", "mpi_in_MB/s", "ratio_in",
                "kv_out_MB/s", "mpi_out_MB/s", "ratio_out");
  for (double mb : {1.0, 10.0, 100.0}) {
    int64_t n = static_cast<int64_t>(mb * (1 << 20) / 4);
    std::vector<float> fresh(n, 1.0f + rank), host(n), host_out(n);
    loom_ndarray a = nullptr, out = nullptr;
    loom_ndarray_create(&a, &n, 1, LOOM_DTYPE_FLOAT32, LOOM_DEVICE_CPU, 0);
    loom_ndarray_create(&out, &n, 1, LOOM_DTYPE_FLOAT32, LOOM_DEVICE_CPU, 0);
    loom_ndarray_copy_from_host(a, fresh.data(), n * 4);
    std::string key = "k" + std::to_string(static_cast<int>(mb));
    const char *k = key.c_str();
    loom_kvstore_init(kv, 1, &k, &a);
    // Each call's input is written just before it, as a backward pass writes a
    // gradient before it is pushed, so no call finds its input colder than another.
    auto refill = [&] {
      loom_ndarray_copy_from_host(a, fresh.data(), n * 4);
      loom_wait_all();  // also ends, over MPI, the store's copy of the previous sum
      std::copy(fresh.begin(), fresh.end(), host.begin());
      MPI_Barrier(MPI_COMM_WORLD);
      return now();
    };
    // The four calls run in a rotated order (each follows every other equally
    // often), so what the previous call left in the caches favours none of them.
    auto timed = [&](int which) {
      double t0 = refill();
      if (which == 0) {
        loom_kvstore_pushpull(kv, 1, &k, &a, 1, &k, &a, 0);
        loom_ndarray_wait_to_read(a);
      } else if (which == 1) {
        MPI_Allreduce(MPI_IN_PLACE, host.data(), static_cast<int>(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
      } else if (which == 2) {
        loom_kvstore_pushpull(kv, 1, &k, &a, 1, &k, &out, 0);
        loom_ndarray_wait_to_read(out);
      } else {
        MPI_Allreduce(host.data(), host_out.data(), static_cast<int>(n), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
      }
      return now() - t0;
    };
    std::vector<double> t[4];
    for (int rep = 0; rep < 25; ++rep)
      for (int i = 0; i < 4; ++i) {
        int which = (i + rep) % 4;
        double d = timed(which);
        if (rep > 0) t[which].push_back(d);
      }
    double rate[4];
    for (int i = 0; i < 4; ++i) {
      std::sort(t[i].begin(), t[i].end());
      rate[i] = mb / t[i][t[i].size() / 2];
    }
    if (rank == 0)
      std::printf("%6.0f %11.0f %11.0f %9.2f %11.0f %11.0f %9.2f\n", mb, rate[0], rate[1], rate[0] / rate[1], rate[2],
                  rate[3], rate[2] / rate[3]);
    loom_ndarray_free(a);
    loom_ndarray_free(out);
  }
  loom_kvstore_free(kv);
  return 0;
}
