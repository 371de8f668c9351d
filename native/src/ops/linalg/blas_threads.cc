#include <cblas.h>

#include <mutex>
#include <shared_mutex>

#include "ops/linalg/gemm.h"

namespace loom {

// OpenBLAS's own threads spin in sched_yield between calls and fight the
// engine's workers for the cores; Loom splits large products itself instead.
void ensure_single_threaded_blas() {
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(1); });
}

namespace {
std::shared_mutex &blas_mode() {
  static auto *mu = new std::shared_mutex;  // never destroyed: workers may hold it at exit
  return *mu;
}
thread_local bool in_threaded_call = false;  // this thread holds blas_mode() exclusively
}  // namespace

BlasCallGuard::BlasCallGuard() : held_(!in_threaded_call) {
  if (held_) blas_mode().lock_shared();
}

BlasCallGuard::~BlasCallGuard() {
  if (held_) blas_mode().unlock_shared();
}

void run_with_blas_threads(const std::function<void()> &f) {
  std::unique_lock<std::shared_mutex> lk(blas_mode());  // one threaded call, no other call
  struct Restore {
    ~Restore() {
      openblas_set_num_threads(1);
      in_threaded_call = false;
    }
  } restore;
  in_threaded_call = true;
  openblas_set_num_threads(kernel_threads());
  f();
}

}  // namespace loom
