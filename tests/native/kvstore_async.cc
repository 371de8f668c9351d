// Run by mpirun with several ranks (ctest kvstore.dist_async): a dist_async store
// applies every push at the key's server as it arrives, without the workers
// waiting for each other (here each rank pushes a different number of times),
// serves pulls from whichever rank owns a key, needs an updater as MXNet does,
// and reports bad input by key and rank.
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "mpi_check.h"

int main() {
  loom_kvstore kv = nullptr;
  if (loom_kvstore_create(&kv, "dist_async") != LOOM_OK) {
    std::fprintf(stderr, "FAIL: %s\n", loom_last_error());
    return 1;
  }
  int32_t rank = -1, n = 0;
  loom_kvstore_get_rank(&rank, kv);
  loom_kvstore_get_num_workers(&n, kv);
  EXPECT(n >= 2, "expected at least 2 workers, got %d", n);
  const size_t len = 1000;
  // Eight keys, so every rank serves some and asks others for the rest.
  std::vector<std::string> names;
  for (int k = 0; k < 8; ++k) names.push_back("w" + std::to_string(k));
  std::vector<const char *> keys;
  for (auto &s : names) keys.push_back(s.c_str());
  std::vector<loom_ndarray> init;
  for (int k = 0; k < 8; ++k) init.push_back(array(std::vector<float>(len, 100.0f * (k + 1) + rank)));
  EXPECT(loom_kvstore_init(kv, 8, keys.data(), init.data()) == LOOM_OK, "init: %s", loom_last_error());
  // No updater: MXNet refuses an asynchronous push too.
  loom_ndarray g = array(std::vector<float>(len, static_cast<float>(rank + 1)));
  loom_status st = loom_kvstore_push(kv, 1, keys.data(), &g, 0);
  EXPECT(st == LOOM_ERR_INVALID_ARGUMENT && std::strstr(loom_last_error(), "updater"),
         "a push without an updater gave %d: %s", st, loom_last_error());
  // w <- w - grad.
  const char *pk[] = {"lr", "wd", "rescale_grad"};
  const char *pv[] = {"1", "0", "1"};
  EXPECT(loom_kvstore_set_updater(kv, "sgd_update", 3, pk, pv) == LOOM_OK, "set_updater: %s", loom_last_error());
  // Rank r pushes (r + 1) to every key 3 + r times; nobody waits for anybody.
  for (int rep = 0; rep < 3 + rank; ++rep)
    for (int k = 0; k < 8; ++k)
      EXPECT(loom_kvstore_push(kv, 1, &keys[k], &g, 0) == LOOM_OK, "push %s: %s", keys[k], loom_last_error());
  // A wrong shape is refused by name before anything is sent.
  loom_ndarray bad = array(std::vector<float>(len + 1, 0));
  st = loom_kvstore_push(kv, 1, keys.data(), &bad, 0);
  EXPECT(st == LOOM_ERR_SHAPE && std::strstr(loom_last_error(), "'w0'"), "a wrong shape gave %d: %s", st,
         loom_last_error());
  // The states live on the servers: saving them from a worker is refused.
  EXPECT(loom_kvstore_save_states(kv, "/nonexistent/states") == LOOM_ERR_INVALID_ARGUMENT,
         "save_states was not refused: %s", loom_last_error());
  // After everyone is done: rank 0's initial value minus every rank's pushes.
  EXPECT(loom_kvstore_barrier(kv) == LOOM_OK, "barrier: %s", loom_last_error());
  float pushed = 0;
  for (int r = 0; r < n; ++r) pushed += static_cast<float>((r + 1) * (3 + r));
  loom_ndarray out = array(std::vector<float>(len, -1));
  for (int k = 0; k < 8; ++k) {
    EXPECT(loom_kvstore_pull(kv, 1, &keys[k], &out, 0) == LOOM_OK, "pull %s: %s", keys[k], loom_last_error());
    std::vector<float> got = read(out, len);
    float want = 100.0f * (k + 1) - pushed;
    for (size_t i = 0; i < len; ++i)
      if (got[i] != want) {
        EXPECT(false, "rank %d key %s element %zu: %g, want %g", rank, keys[k], i, got[i], want);
        break;
      }
  }
  std::printf("rank %d of %d: %s\n", rank, n, failures ? "FAILED" : "ok");
  for (auto h : init) loom_ndarray_free(h);
  for (auto h : {g, bad, out}) loom_ndarray_free(h);
  loom_kvstore_free(kv);  // waits for every worker, then stops this rank's server
  return failures ? 1 : 0;
}
