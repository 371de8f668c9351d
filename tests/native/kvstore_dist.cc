// Run by mpirun with several ranks (ctest kvstore.dist_sync): a dist_sync store sums
// every rank's values in rank order, identically on every rank, starts every key
// from rank 0's value, and reports a rank that pushes another key by name. Every
// rank is on this host, so keys are summed in shared memory, unless
// LOOM_KVSTORE_SHM=0, where MPI carries them (ctest runs both).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "mpi_check.h"

// How many of this process's mappings are a store's shared-memory segments.
static int shared_segments() {
  std::ifstream maps("/proc/self/maps");
  int found = 0;
  for (std::string line; std::getline(maps, line);) found += line.find("/loom-kv-") != std::string::npos;
  return found;
}

template <typename T>
static loom_ndarray typed(const std::vector<T> &v, int32_t dtype) {
  int64_t shape[1] = {static_cast<int64_t>(v.size())};
  loom_ndarray h = nullptr;
  loom_ndarray_create(&h, shape, 1, dtype, LOOM_DEVICE_CPU, 0);
  loom_ndarray_copy_from_host(h, v.data(), v.size() * sizeof(T));
  return h;
}

template <typename T>
static std::vector<T> typed_read(loom_ndarray h, size_t n) {
  std::vector<T> v(n);
  loom_ndarray_copy_to_host(v.data(), n * sizeof(T), h);
  return v;
}

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
  // The path this run takes: a segment mapped per key, or none with LOOM_KVSTORE_SHM=0.
  {
    const char *shm = std::getenv("LOOM_KVSTORE_SHM");
    const bool want = !(shm && std::string(shm) == "0");
    const int segments = shared_segments();
    EXPECT(want ? segments > 0 : segments == 0, "rank %d: %d shared segments mapped with LOOM_KVSTORE_SHM=%s", rank,
           segments, shm ? shm : "(unset)");
  }
  // Pulls queued behind pushpulls (not waited for) each get their own pushpull's
  // sum: no rank changes a sum while another rank's pull of it is pending. Each
  // pull waits behind a product of some milliseconds (the tests run one engine
  // worker), so the next pushpull starts while it is still queued.
  {
    const int64_t side = 1024, mshape[2] = {side, side};
    loom_ndarray ma = nullptr;
    loom_ndarray_create(&ma, mshape, 2, LOOM_DTYPE_FLOAT32, LOOM_DEVICE_CPU, 0);
    loom_ndarray_copy_from_host(ma, std::vector<float>(side * side, 0.5f).data(), side * side * 4);
    loom_op dot = nullptr;
    loom_op_find(&dot, "dot");
    const size_t m = (size_t{4} << 20) / 4 + 5;
    const char *qk[] = {"queued"};
    loom_ndarray q0 = array(std::vector<float>(m, 0));
    EXPECT(loom_kvstore_init(kv, 1, qk, &q0) == LOOM_OK, "init queued: %s", loom_last_error());
    const int steps = 6;
    std::vector<loom_ndarray> grads, pulled;
    for (int it = 0; it < steps; ++it) {
      std::vector<float> g(m);
      for (size_t i = 0; i < m; ++i) g[i] = static_cast<float>((i + 7 * it) % 101) + 1000.0f * (rank + 1) * (it + 1);
      grads.push_back(array(g));
      pulled.push_back(array(std::vector<float>(m, -1)));
      EXPECT(loom_kvstore_pushpull(kv, 1, qk, &grads.back(), 1, qk, &grads.back(), 0) == LOOM_OK, "pushpull queued: %s",
             loom_last_error());
      loom_ndarray ins[] = {ma, ma}, prod = nullptr;
      EXPECT(loom_imperative_invoke(&prod, 1, dot, ins, 2, nullptr, nullptr, 0) == LOOM_OK, "dot: %s",
             loom_last_error());
      loom_ndarray_free(prod);  // still computed: the engine holds it until then
      EXPECT(loom_kvstore_pull(kv, 1, qk, &pulled.back(), 0) == LOOM_OK, "pull queued: %s", loom_last_error());
    }
    loom_ndarray_free(ma);
    for (int it = 0; it < steps; ++it) {
      std::vector<float> got_q = read(pulled[it], m), got_g = read(grads[it], m);
      size_t wrong = 0, first = m;
      for (size_t i = 0; i < m; ++i) {
        float want = 0;
        for (int r = 0; r < n; ++r) want += static_cast<float>((i + 7 * it) % 101) + 1000.0f * (r + 1) * (it + 1);
        const bool bad = got_q[i] != want || got_g[i] != want;
        wrong += bad;
        if (bad && first == m) first = i;
      }
      EXPECT(wrong == 0, "rank %d step %d: %zu of %zu pulled or reduced values wrong (first at %zu)", rank, it, wrong, m,
             first);
    }
    for (auto h : grads) loom_ndarray_free(h);
    for (auto h : pulled) loom_ndarray_free(h);
    loom_ndarray_free(q0);
  }
  // int32 keys wrap around as NumPy's do, and float64 keys add in rank order.
  {
    const size_t m = 3 * static_cast<size_t>(n) + 1;
    const char *ik[] = {"ints", "doubles"};
    std::vector<int32_t> iv(m);
    std::vector<double> dv(m);
    for (size_t i = 0; i < m; ++i) {
      iv[i] = INT32_MAX - static_cast<int32_t>(i) - rank;
      dv[i] = (rank % 2 ? -1e16 : 1e16) + 0.5 * static_cast<double>(i) + rank;
    }
    loom_ndarray init_vals[] = {typed(iv, LOOM_DTYPE_INT32), typed(dv, LOOM_DTYPE_FLOAT64)};
    loom_ndarray outs[] = {typed(std::vector<int32_t>(m, 0), LOOM_DTYPE_INT32),
                           typed(std::vector<double>(m, 0), LOOM_DTYPE_FLOAT64)};
    EXPECT(loom_kvstore_init(kv, 2, ik, init_vals) == LOOM_OK, "init ints: %s", loom_last_error());
    EXPECT(loom_kvstore_pushpull(kv, 2, ik, init_vals, 2, ik, outs, 0) == LOOM_OK, "pushpull ints: %s",
           loom_last_error());
    std::vector<int32_t> gi = typed_read<int32_t>(outs[0], m);
    std::vector<double> gd = typed_read<double>(outs[1], m);
    for (size_t i = 0; i < m; ++i) {
      uint32_t wi = 0;
      double wd = 0;
      for (int r = 0; r < n; ++r) {
        wi += static_cast<uint32_t>(INT32_MAX - static_cast<int32_t>(i) - r);
        wd = r ? wd + ((r % 2 ? -1e16 : 1e16) + 0.5 * static_cast<double>(i) + r)
               : (r % 2 ? -1e16 : 1e16) + 0.5 * static_cast<double>(i) + r;
      }
      EXPECT(gi[i] == static_cast<int32_t>(wi), "rank %d int32 element %zu: %d, want %d", rank, i, gi[i],
             static_cast<int32_t>(wi));
      EXPECT(gd[i] == wd, "rank %d float64 element %zu: %.17g, want %.17g", rank, i, gd[i], wd);
    }
    for (auto h : {init_vals[0], init_vals[1], outs[0], outs[1]}) loom_ndarray_free(h);
  }
  // An updater: every rank applies each summed gradient once, to its own weights,
  // for a key initialised before set_updater and one initialised after.
  {
    loom_kvstore ukv = nullptr;
    EXPECT(loom_kvstore_create(&ukv, "dist_sync") == LOOM_OK, "second store: %s", loom_last_error());
    const size_t m = 2 * static_cast<size_t>(n) + 1;
    const char *before[] = {"before"}, *after[] = {"after"};
    loom_ndarray w0 = array(std::vector<float>(m, 1.0f));
    EXPECT(loom_kvstore_init(ukv, 1, before, &w0) == LOOM_OK, "init before: %s", loom_last_error());
    const char *pk2[] = {"lr"}, *pv2[] = {"0.5"};
    EXPECT(loom_kvstore_set_updater(ukv, "sgd_update", 1, pk2, pv2) == LOOM_OK, "set_updater: %s", loom_last_error());
    EXPECT(loom_kvstore_init(ukv, 1, after, &w0) == LOOM_OK, "init after: %s", loom_last_error());
    loom_ndarray g = array(std::vector<float>(m, static_cast<float>(rank + 1)));
    loom_ndarray got_w = array(std::vector<float>(m, 0));
    for (const char **k : {before, after}) {
      float want = 1.0f;
      for (int step = 0; step < 2; ++step) {
        EXPECT(loom_kvstore_push(ukv, 1, k, &g, 0) == LOOM_OK, "push %s: %s", k[0], loom_last_error());
        want -= 0.5f * static_cast<float>(n * (n + 1) / 2);
      }
      EXPECT(loom_kvstore_pull(ukv, 1, k, &got_w, 0) == LOOM_OK, "pull %s: %s", k[0], loom_last_error());
      for (float x : read(got_w, m))
        EXPECT(x == want, "rank %d key '%s' after 2 updates: %g, want %g", rank, k[0], x, want);
    }
    for (auto h : {w0, g, got_w}) loom_ndarray_free(h);
    loom_kvstore_free(ukv);
  }
  // Every rank holds the same bits: gather them through the store itself.
  EXPECT(loom_kvstore_barrier(kv) == LOOM_OK, "barrier: %s", loom_last_error());
  // Ranks initialising a key with other shapes: an error on every rank naming the
  // key and its size, and nothing sent (rank 0's value would not fit).
  {
    const char *mk[] = {"mismatched"};
    loom_ndarray mv = array(std::vector<float>(rank == 0 ? 7 : 9, 1.0f));
    loom_status ms = loom_kvstore_init(kv, 1, mk, &mv);
    EXPECT(ms == LOOM_ERR_INVALID_ARGUMENT, "rank %d: a mismatched init gave %d", rank, ms);
    EXPECT(std::strstr(loom_last_error(), "every worker must initialise the same keys") != nullptr &&
               std::strstr(loom_last_error(), rank == 0 ? "'mismatched' (28 bytes)" : "'mismatched' (36 bytes)"),
           "message: %s", loom_last_error());
    loom_ndarray_free(mv);
  }
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
