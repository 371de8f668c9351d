// dot at 2048x2048 float32 through Loom's ABI vs OpenBLAS sgemm called
// directly, interleaved in one run so machine noise hits both alike.
#include <cblas.h>
#include <loom/loom.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

using clk = std::chrono::steady_clock;

#define CHECK(x)                                                        \
  do {                                                                  \
    if ((x) != LOOM_OK) {                                               \
      std::fprintf(stderr, "%s failed: %s\n", #x, loom_last_error());   \
      return 1;                                                         \
    }                                                                   \
  } while (0)

int main(int argc, char **argv) {
  const int n = argc > 1 ? std::atoi(argv[1]) : 2048, reps = argc > 2 ? std::atoi(argv[2]) : 7;
  std::vector<float> a(size_t(n) * n), b(size_t(n) * n), c(size_t(n) * n);
  for (size_t i = 0; i < a.size(); ++i) {
    a[i] = float((i * 7) % 13) / 13.0f;
    b[i] = float((i * 5) % 11) / 11.0f;
  }
  int64_t shape[2] = {n, n};
  loom_ndarray A, B, C;
  CHECK(loom_ndarray_create(&A, shape, 2, LOOM_DTYPE_FLOAT32, LOOM_DEVICE_CPU, 0));
  CHECK(loom_ndarray_create(&B, shape, 2, LOOM_DTYPE_FLOAT32, LOOM_DEVICE_CPU, 0));
  CHECK(loom_ndarray_create(&C, shape, 2, LOOM_DTYPE_FLOAT32, LOOM_DEVICE_CPU, 0));
  CHECK(loom_ndarray_copy_from_host(A, a.data(), a.size() * 4));
  CHECK(loom_ndarray_copy_from_host(B, b.data(), b.size() * 4));
  loom_op dot;
  CHECK(loom_op_find(&dot, "dot"));
  // Loom runs OpenBLAS single-threaded and splits products over its own
  // threads; the baseline gets OpenBLAS's full thread count for its calls.
  int blas_threads = static_cast<int>(std::thread::hardware_concurrency());
  std::vector<double> t_loom, t_blas;
  for (int r = 0; r < reps + 1; ++r) {
    openblas_set_num_threads(blas_threads);
    auto t0 = clk::now();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(), n,
                0.0f, c.data(), n);
    double tb = std::chrono::duration<double>(clk::now() - t0).count();
    openblas_set_num_threads(1);
    loom_ndarray ins[2] = {A, B}, outs[1] = {C};
    t0 = clk::now();
    CHECK(loom_imperative_invoke(outs, 1, dot, ins, 2, nullptr, nullptr, 0));
    CHECK(loom_ndarray_wait_to_read(C));
    double tl = std::chrono::duration<double>(clk::now() - t0).count();
    if (r > 0) {  // first round warms both up
      t_blas.push_back(tb);
      t_loom.push_back(tl);
    }
  }
  std::sort(t_loom.begin(), t_loom.end());
  std::sort(t_blas.begin(), t_blas.end());
  double ml = t_loom[t_loom.size() / 2], mb = t_blas[t_blas.size() / 2];
  double flop = 2.0 * n * n * double(n);
  std::printf("dot %dx%d float32: Loom %.1f ms (%.1f GFLOP/s), OpenBLAS direct %.1f ms (%.1f GFLOP/s), "
              "Loom/OpenBLAS speed = %.3f\n",
              n, n, ml * 1e3, flop / ml / 1e9, mb * 1e3, flop / mb / 1e9, mb / ml);
  loom_ndarray_free(A);
  loom_ndarray_free(B);
  loom_ndarray_free(C);
  return 0;
}
