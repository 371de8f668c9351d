// The key-value store: MXNet's push/pull semantics, a fixed reduction order,
// updaters run where the weights live, and clear errors for bad keys and shapes.
#include <cstdio>

#include "testutil.h"

using namespace lt;

namespace {

struct KV {
  loom_kvstore h = nullptr;
  explicit KV(const char *type) { EXPECT_EQ(loom_kvstore_create(&h, type), LOOM_OK) << loom_last_error(); }
  ~KV() { loom_kvstore_free(h); }
};

// An array on cpu(dev) with the given values.
Arr on_cpu(int dev, const std::vector<int64_t> &shape, const std::vector<double> &vals) {
  Arr a = make(shape, vals);
  if (dev == 0) return a;
  loom_ndarray h = nullptr;
  EXPECT_EQ(loom_ndarray_create(&h, shape.data(), static_cast<int32_t>(shape.size()), LOOM_DTYPE_FLOAT32,
                                LOOM_DEVICE_CPU, dev),
            LOOM_OK);
  Arr b(h);
  EXPECT_EQ(loom_ndarray_copy_to(b.h, a.h), LOOM_OK) << loom_last_error();
  return b;
}

TEST(KVStore, PushSumsPerKeyAndPullBroadcasts) {
  for (const char *type : {"local", "device"}) {
    KV kv(type);
    const char *type_out = nullptr;
    ASSERT_EQ(loom_kvstore_get_type(&type_out, kv.h), LOOM_OK);
    EXPECT_STREQ(type_out, type);
    int32_t rank = -1, workers = 0;
    EXPECT_EQ(loom_kvstore_get_rank(&rank, kv.h), LOOM_OK);
    EXPECT_EQ(loom_kvstore_get_num_workers(&workers, kv.h), LOOM_OK);
    EXPECT_EQ(rank, 0);
    EXPECT_EQ(workers, 1);
    Arr w = make({2, 2}, {1, 2, 3, 4}), b = make({3}, {0, 0, 0});
    const char *keys[] = {"w", "3"};
    loom_ndarray vals[] = {w.h, b.h};
    ASSERT_EQ(loom_kvstore_init(kv.h, 2, keys, vals), LOOM_OK) << loom_last_error();
    // Several values per key, from cpu(1) and cpu(0): summed.
    Arr g1 = on_cpu(1, {2, 2}, {1, 1, 1, 1}), g0 = on_cpu(0, {2, 2}, {10, 20, 30, 40});
    Arr h0 = make({3}, {1, 2, 3});
    const char *pk[] = {"w", "3", "w"};
    loom_ndarray pv[] = {g1.h, h0.h, g0.h};
    ASSERT_EQ(loom_kvstore_push(kv.h, 3, pk, pv, 0), LOOM_OK) << loom_last_error();
    Arr o0 = on_cpu(0, {2, 2}, {0, 0, 0, 0}), o1 = on_cpu(1, {2, 2}, {0, 0, 0, 0}), ob = make({3}, {9, 9, 9});
    const char *lk[] = {"w", "w", "3"};
    loom_ndarray lo[] = {o0.h, o1.h, ob.h};
    ASSERT_EQ(loom_kvstore_pull(kv.h, 3, lk, lo, 0), LOOM_OK) << loom_last_error();
    EXPECT_EQ(read(o0), (std::vector<double>{11, 21, 31, 41})) << type;
    EXPECT_EQ(read(o1), (std::vector<double>{11, 21, 31, 41})) << type;
    EXPECT_EQ(read(ob), (std::vector<double>{1, 2, 3})) << type;
  }
}

// The sum's order is fixed by device, not by the order values were given: the
// same bits whichever way round (float addition is not associative).
TEST(KVStore, ReductionOrderDoesNotDependOnPushOrder) {
  std::vector<double> big{1e8, -1e8, 3}, small{1, 1, 1}, mid{-1e8, 1e8, 0.25};
  std::vector<std::vector<double>> results;
  for (int order = 0; order < 2; ++order) {
    KV kv("local");
    Arr z = make({3}, {0, 0, 0});
    const char *k[] = {"k"};
    loom_ndarray zi[] = {z.h};
    ASSERT_EQ(loom_kvstore_init(kv.h, 1, k, zi), LOOM_OK);
    Arr a = on_cpu(0, {3}, big), b = on_cpu(1, {3}, small), c = on_cpu(2, {3}, mid);
    const char *keys[] = {"k", "k", "k"};
    loom_ndarray v1[] = {a.h, b.h, c.h}, v2[] = {c.h, a.h, b.h};
    ASSERT_EQ(loom_kvstore_push(kv.h, 3, keys, order ? v2 : v1, 0), LOOM_OK);
    Arr out = make({3}, {0, 0, 0});
    loom_ndarray o[] = {out.h};
    ASSERT_EQ(loom_kvstore_pull(kv.h, 1, k, o, 0), LOOM_OK);
    results.push_back(read(out));
  }
  EXPECT_EQ(results[0], results[1]);
}

TEST(KVStore, UpdaterRunsTheNativeOptimizerOnTheStoredWeights) {
  KV kv("local");
  Arr w = make({3}, {1, 2, 3});
  const char *k[] = {"w"};
  loom_ndarray wi[] = {w.h};
  ASSERT_EQ(loom_kvstore_init(kv.h, 1, k, wi), LOOM_OK);
  const char *pk[] = {"lr", "momentum", "rescale_grad"};
  const char *pv[] = {"0.5", "0.9", "0.5"};
  ASSERT_EQ(loom_kvstore_set_updater(kv.h, "sgd_mom_update", 3, pk, pv), LOOM_OK) << loom_last_error();
  std::vector<double> weight{1, 2, 3}, mom{0, 0, 0};
  for (int step = 0; step < 3; ++step) {
    Arr g0 = on_cpu(0, {3}, {1, -1, 2}), g1 = on_cpu(1, {3}, {1, 3, 0});
    const char *keys[] = {"w", "w"};
    loom_ndarray gs[] = {g0.h, g1.h};
    ASSERT_EQ(loom_kvstore_push(kv.h, 2, keys, gs, 0), LOOM_OK);
    std::vector<double> g{2, 2, 2};  // the summed gradient
    for (int i = 0; i < 3; ++i) {
      mom[i] = 0.9 * mom[i] - 0.5 * (0.5 * g[i]);
      weight[i] += mom[i];
    }
  }
  Arr out = make({3}, {0, 0, 0});
  loom_ndarray o[] = {out.h};
  ASSERT_EQ(loom_kvstore_pull(kv.h, 1, k, o, 0), LOOM_OK);
  expect_close(read(out), weight, LOOM_DTYPE_FLOAT32, "sgd_mom_update on the store");
  // The states survive a save and load.
  std::string path = "/tmp/loom_kv_states_" + std::to_string(::getpid()) + ".params";
  ASSERT_EQ(loom_kvstore_save_states(kv.h, path.c_str()), LOOM_OK) << loom_last_error();
  KV back("local");
  ASSERT_EQ(loom_kvstore_init(back.h, 1, k, o), LOOM_OK);
  ASSERT_EQ(loom_kvstore_load_states(back.h, path.c_str()), LOOM_OK) << loom_last_error();
  std::remove(path.c_str());
  // A bad updater is refused.
  EXPECT_EQ(loom_kvstore_set_updater(kv.h, "relu", 0, nullptr, nullptr), LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(loom_last_error()).find("not an update op"), std::string::npos);
  const char *bad[] = {"learning_rate"};
  EXPECT_EQ(loom_kvstore_set_updater(kv.h, "sgd_update", 1, bad, pv), LOOM_ERR_INVALID_ARGUMENT);
}

TEST(KVStore, BadKeysShapesAndTypesAreReported) {
  KV kv("local");
  Arr w = make({2, 2}, {1, 2, 3, 4});
  const char *k[] = {"w"};
  loom_ndarray wi[] = {w.h};
  ASSERT_EQ(loom_kvstore_init(kv.h, 1, k, wi), LOOM_OK);
  EXPECT_EQ(loom_kvstore_init(kv.h, 1, k, wi), LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(loom_last_error()).find("key 'w' is already initialised"), std::string::npos);
  const char *nk[] = {"nope"};
  EXPECT_EQ(loom_kvstore_push(kv.h, 1, nk, wi, 0), LOOM_ERR_NOT_FOUND);
  EXPECT_NE(std::string(loom_last_error()).find("key 'nope' was never initialised"), std::string::npos);
  Arr wrong = make({4}, {1, 2, 3, 4});
  loom_ndarray wv[] = {wrong.h};
  EXPECT_EQ(loom_kvstore_push(kv.h, 1, k, wv, 0), LOOM_ERR_SHAPE);
  EXPECT_NE(std::string(loom_last_error()).find("key 'w' holds (2,2) float32, but a value of (4,) float32"),
            std::string::npos)
      << loom_last_error();
  EXPECT_EQ(loom_kvstore_pull(kv.h, 1, k, wv, 0), LOOM_ERR_SHAPE);
  EXPECT_NE(std::string(loom_last_error()).find("the output is (4,) float32"), std::string::npos);
  loom_kvstore d = nullptr;
  EXPECT_EQ(loom_kvstore_create(&d, "dist_sync"), LOOM_ERR_BACKEND_UNAVAILABLE);
  EXPECT_NE(std::string(loom_last_error()).find("MPI plugin"), std::string::npos);
  EXPECT_EQ(d, nullptr);
  EXPECT_EQ(loom_kvstore_create(&d, "nccl"), LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(loom_kvstore_push(nullptr, 1, k, wi, 0), LOOM_ERR_INVALID_ARGUMENT);
  loom_kvstore_free(nullptr);
}

}  // namespace
