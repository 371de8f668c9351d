// Run by mpirun with several ranks (ctest kvstore.dist_sync): a dist_sync store sums
// every rank's values in rank order, identically on every rank, starts every key
// from rank 0's value, and reports a rank that pushes another key by name.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "mpi_check.h"

int main() {
  loom_kvstore kv = nullptr;
  if (loom_kvstore_create(&kv, "dist_sync") != LOOM_OK) {
    std::fprintf(stderr, "FAIL: %s\n", loom_last_error());
    return 1;
  }
  int32_t rank = -1, n = 0;
  loom_kvstore_get_rank(&rank, kv);
  loom_kvstore_get_num_workers(&n, kv);
  EXPECT(n >= 2, "expected at least 2 workers, got %d", n);
  // init: rank 0's value everywhere.
  const size_t len = 7;  // not a multiple of the ranks: padded chunks
  loom_ndarray w = array(std::vector<float>(len, static_cast<float>(100 + rank)));
  const char *key[] = {"w"};
  EXPECT(loom_kvstore_init(kv, 1, key, &w) == LOOM_OK, "init: %s", loom_last_error());
  loom_ndarray out = array(std::vector<float>(len, 0));
  EXPECT(loom_kvstore_pull(kv, 1, key, &out, 0) == LOOM_OK, "pull: %s", loom_last_error());
  for (float x : read(out, len)) EXPECT(x == 100.0f, "init gave %g on rank %d, not rank 0's 100", x, rank);
  // push: two values per rank (two "devices"), summed over devices then ranks.
  std::vector<float> mine(len), other(len);
  for (size_t i = 0; i < len; ++i) {
    mine[i] = 1e8f * ((rank + i) % 2 ? 1 : -1) + 0.25f * (rank + 1);
    other[i] = static_cast<float>(i);
  }
  loom_ndarray vals[2] = {array(mine), array(other)};
  const char *keys2[] = {"w", "w"};
  EXPECT(loom_kvstore_push(kv, 2, keys2, vals, 0) == LOOM_OK, "push: %s", loom_last_error());
  EXPECT(loom_kvstore_pull(kv, 1, key, &out, 0) == LOOM_OK, "pull: %s", loom_last_error());
  std::vector<float> got = read(out, len);
  for (size_t i = 0; i < len; ++i) {
    float want = 0;  // rank order, each rank's devices summed first (in float, as the store does)
    for (int r = 0; r < n; ++r) {
      float m = 1e8f * ((r + i) % 2 ? 1 : -1) + 0.25f * (r + 1);
      want += 0.0f + m + static_cast<float>(i);
    }
    EXPECT(got[i] == want, "rank %d element %zu: %.9g, want %.9g", rank, i, got[i], want);
  }
  // A length that splits evenly over the ranks is reduced in place in the array's
  // own buffer: the same sums, rank order, as the padded path.
  {
    const size_t even = 6 * static_cast<size_t>(n);
    const char *ek[] = {"even"};
    loom_ndarray e0 = array(std::vector<float>(even, 0)), eo = array(std::vector<float>(even, 0));
    std::vector<float> ev(even);
    for (size_t i = 0; i < even; ++i) ev[i] = 0.5f * static_cast<float>(i) + 1e7f * static_cast<float>(rank);
    loom_ndarray ep = array(ev);
    EXPECT(loom_kvstore_init(kv, 1, ek, &e0) == LOOM_OK, "init even: %s", loom_last_error());
    EXPECT(loom_kvstore_push(kv, 1, ek, &ep, 0) == LOOM_OK, "push even: %s", loom_last_error());
    EXPECT(loom_kvstore_pull(kv, 1, ek, &eo, 0) == LOOM_OK, "pull even: %s", loom_last_error());
    std::vector<float> eg = read(eo, even);
    for (size_t i = 0; i < even; ++i) {
      float want = 0;
      for (int r = 0; r < n; ++r) want += 0.5f * static_cast<float>(i) + 1e7f * static_cast<float>(r);
      EXPECT(eg[i] == want, "rank %d even element %zu: %.9g, want %.9g", rank, i, eg[i], want);
    }
    // The pushed array itself is left as it was.
    std::vector<float> after = read(ep, even);
    for (size_t i = 0; i < even; ++i) EXPECT(after[i] == ev[i], "push changed its input at %zu", i);
    for (auto h : {e0, eo, ep}) loom_ndarray_free(h);
  }
  // pushpull: the sum goes straight into the output (in rank order), the input is
  // left as it was, the store holds the sum for later pulls, and an output that is
  // the input itself (in place) gets the same sum.
  {
    const size_t m = 5 * static_cast<size_t>(n) + 3;
    const char *pk[] = {"pp"};
    loom_ndarray p0 = array(std::vector<float>(m, 0)), po = array(std::vector<float>(m, 0));
    std::vector<float> pv(m), want(m, 0.0f);
    for (size_t i = 0; i < m; ++i) pv[i] = 1e8f * ((rank + i) % 2 ? 1 : -1) + 0.25f * (rank + 1) + i;
    for (size_t i = 0; i < m; ++i)
      for (int r = 0; r < n; ++r) want[i] += 1e8f * ((r + i) % 2 ? 1 : -1) + 0.25f * (r + 1) + i;
    loom_ndarray pin = array(pv);
    EXPECT(loom_kvstore_init(kv, 1, pk, &p0) == LOOM_OK, "init pp: %s", loom_last_error());
    EXPECT(loom_kvstore_pushpull(kv, 1, pk, &pin, 1, pk, &po, 0) == LOOM_OK, "pushpull: %s", loom_last_error());
    std::vector<float> got_pp = read(po, m), in_after = read(pin, m);
    for (size_t i = 0; i < m; ++i) {
      EXPECT(got_pp[i] == want[i], "rank %d pushpull element %zu: %.9g, want %.9g", rank, i, got_pp[i], want[i]);
      EXPECT(in_after[i] == pv[i], "pushpull changed its input at %zu", i);
    }
    loom_ndarray later = array(std::vector<float>(m, 0));
    EXPECT(loom_kvstore_pull(kv, 1, pk, &later, 0) == LOOM_OK, "pull pp: %s", loom_last_error());
    std::vector<float> stored = read(later, m);
    for (size_t i = 0; i < m; ++i) EXPECT(stored[i] == want[i], "the store holds %.9g at %zu after pushpull", stored[i], i);
    EXPECT(loom_kvstore_pushpull(kv, 1, pk, &pin, 1, pk, &pin, 0) == LOOM_OK, "pushpull in place: %s",
           loom_last_error());
    std::vector<float> inplace = read(pin, m);
    for (size_t i = 0; i < m; ++i) EXPECT(inplace[i] == want[i], "in-place pushpull element %zu: %.9g", i, inplace[i]);
    for (auto h : {p0, po, pin, later}) loom_ndarray_free(h);
  }
  // A key of 32 MB or more: with two ranks the store's own reduce-scatter and
  // all-gather (smaller keys go through MPI's all-reduce), with three or more every
  // key does. The same sums, in and out of place, and an odd length (padding).
  {
    const size_t m = (size_t{32} << 20) / 4 + 3;
    const char *bk[] = {"big"};
    std::vector<float> bv(m), want(m, 0.0f);
    for (size_t i = 0; i < m; ++i) bv[i] = 0.5f * static_cast<float>(i % 1000) + 1e3f * static_cast<float>(rank);
    for (size_t i = 0; i < m; ++i)
      for (int r = 0; r < n; ++r) want[i] += 0.5f * static_cast<float>(i % 1000) + 1e3f * static_cast<float>(r);
    loom_ndarray b0 = array(std::vector<float>(m, 0)), bo = array(std::vector<float>(m, 0)), bin = array(bv);
    EXPECT(loom_kvstore_init(kv, 1, bk, &b0) == LOOM_OK, "init big: %s", loom_last_error());
    EXPECT(loom_kvstore_pushpull(kv, 1, bk, &bin, 1, bk, &bo, 0) == LOOM_OK, "pushpull big: %s", loom_last_error());
    std::vector<float> got_b = read(bo, m);
    size_t wrong = 0;
    for (size_t i = 0; i < m; ++i) wrong += got_b[i] != want[i];
    EXPECT(wrong == 0, "rank %d: %zu of %zu sums of the 32 MB key are wrong (first %.9g, want %.9g)", rank, wrong, m,
           got_b[0], want[0]);
    EXPECT(loom_kvstore_pushpull(kv, 1, bk, &bin, 1, bk, &bin, 0) == LOOM_OK, "pushpull big in place: %s",
           loom_last_error());
    std::vector<float> inplace = read(bin, m);
    wrong = 0;
    for (size_t i = 0; i < m; ++i) wrong += inplace[i] != want[i];
    EXPECT(wrong == 0, "rank %d: %zu in-place sums of the 32 MB key are wrong", rank, wrong);
    for (auto h : {b0, bo, bin}) loom_ndarray_free(h);
  }
  // A pushpull into weights a convolution has read: the next convolution sees the
  // new weights, not a layout-converted copy kept for the old ones (the sum is
  // written behind the engine's back, so it must count as a write of the array).
  {
    const int64_t xs[4] = {2, 16, 9, 9}, ws[4] = {32, 16, 3, 3};
    std::vector<float> xv(2 * 16 * 9 * 9), wv(32 * 16 * 3 * 3);
    for (size_t i = 0; i < xv.size(); ++i) xv[i] = static_cast<float>((i * 37) % 17) / 16.0f - 0.5f;
    for (size_t i = 0; i < wv.size(); ++i) wv[i] = static_cast<float>((i * 11) % 13) / 12.0f - 0.5f;
    loom_ndarray x = nullptr, cw = nullptr;
    loom_ndarray_create(&x, xs, 4, LOOM_DTYPE_FLOAT32, LOOM_DEVICE_CPU, 0);
    loom_ndarray_create(&cw, ws, 4, LOOM_DTYPE_FLOAT32, LOOM_DEVICE_CPU, 0);
    loom_ndarray_copy_from_host(x, xv.data(), xv.size() * 4);
    loom_ndarray_copy_from_host(cw, wv.data(), wv.size() * 4);
    loom_op conv = nullptr;
    loom_op_find(&conv, "Convolution");
    const char *ck[] = {"kernel", "num_filter", "no_bias", "pad"};
    const char *cv[] = {"(3,3)", "32", "true", "(1,1)"};
    auto run = [&](std::vector<float> *out) {
      loom_ndarray ins[] = {x, cw}, y = nullptr;
      EXPECT(loom_imperative_invoke(&y, 1, conv, ins, 2, ck, cv, 4) == LOOM_OK, "conv: %s", loom_last_error());
      *out = read(y, 2 * 32 * 9 * 9);
      loom_ndarray_free(y);
    };
    std::vector<float> y1, y2;
    run(&y1);
    const char *wk[] = {"conv_w"};
    EXPECT(loom_kvstore_init(kv, 1, wk, &cw) == LOOM_OK, "init conv_w: %s", loom_last_error());
    EXPECT(loom_kvstore_pushpull(kv, 1, wk, &cw, 1, wk, &cw, 0) == LOOM_OK, "pushpull conv_w: %s",
           loom_last_error());
    run(&y2);  // the weights are n times what they were: so is every output
    size_t bad = 0;
    for (size_t i = 0; i < y1.size(); ++i)
      if (std::fabs(y2[i] - static_cast<float>(n) * y1[i]) > 1e-4f * (1 + std::fabs(y2[i]))) ++bad;
    EXPECT(bad == 0, "rank %d: %zu of %zu outputs after pushpull into the weights are not %d times the "
           "earlier ones (e.g. %.6g vs %.6g)", rank, bad, y1.size(), n, y2[0], y1[0]);
    loom_ndarray_free(x);
    loom_ndarray_free(cw);
  }
  // Every rank holds the same bits: gather them through the store itself.
  EXPECT(loom_kvstore_barrier(kv) == LOOM_OK, "barrier: %s", loom_last_error());
  // A rank pushing another key is an error on every rank, naming the key.
  const char *k2[] = {"b"};
  loom_ndarray b = array(std::vector<float>(len, 0));
  loom_kvstore_init(kv, 1, k2, &b);
  loom_ndarray z = array(std::vector<float>(len, 1));
  loom_status st = loom_kvstore_push(kv, 1, rank == 0 ? key : k2, &z, 0);
  EXPECT(st == LOOM_ERR_INVALID_ARGUMENT, "a mismatched push gave %d", st);
  EXPECT(std::strstr(loom_last_error(), "every worker must push the same keys") != nullptr, "message: %s",
         loom_last_error());
  std::printf("rank %d of %d: %s\n", rank, n, failures ? "FAILED" : "ok");
  for (auto h : {w, out, vals[0], vals[1], b, z}) loom_ndarray_free(h);
  loom_kvstore_free(kv);
  return failures ? 1 : 0;
}
