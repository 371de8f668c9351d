#include <cblas.h>

#include <algorithm>
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

void onednn_sgemm_split(bool ta, bool tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                        const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
  // Below ~2 MFLOP one call; above, pieces of at least 64 columns (or rows), at
  // most 16, their edges on multiples of 16.
  const bool cols = n >= m;
  const int64_t extent = cols ? n : m;
  const int64_t pieces = m * n * k < (int64_t(1) << 20) ? 1 : std::clamp<int64_t>(extent / 64, 1, 16);
  auto edge = [&](int64_t p) { return p == pieces ? extent : extent * p / pieces / 16 * 16; };
  // Each thread takes the next piece when done with one (parallel_items).
  parallel_items(pieces, [&](int64_t, int64_t p) {
    const int64_t e0 = edge(p), e1 = edge(p + 1);
    const float *ap = a, *bp = b;
    float *cp = c;
    int64_t mp = m, np = n;
    if (cols) {
      bp = tb ? b + e0 * ldb : b + e0;
      cp = c + e0;
      np = e1 - e0;
    } else {
      ap = ta ? a + e0 : a + e0 * lda;
      cp = c + e0 * ldc;
      mp = e1 - e0;
    }
    gemm_serial<float>(ta, tb, mp, np, k, alpha, ap, lda, bp, ldb, beta, cp, ldc);
  });
}

}  // namespace loom
