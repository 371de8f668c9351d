#include <cblas.h>

#include <mutex>

#include "ops/linalg/gemm.h"

namespace loom {

// OpenBLAS's own threads spin in sched_yield between calls and fight the
// engine's workers for the cores; Loom splits large products itself instead.
void ensure_single_threaded_blas() {
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(1); });
}

void run_with_blas_threads(const std::function<void()> &f) {
  static std::mutex mu;  // one threaded BLAS call at a time
  std::lock_guard<std::mutex> lk(mu);
  openblas_set_num_threads(kernel_threads());
  try {
    f();
  } catch (...) {
    openblas_set_num_threads(1);
    throw;
  }
  openblas_set_num_threads(1);
}

}  // namespace loom
