// The device code path (gpu(i) contexts) against libloom_simdev, a simulated
// GPU backend plugin (tests/native/backend/simdev.cc): loading, copies between
// devices, kernels dispatched to the plugin with results equal to the CPU's,
// the caching device allocator, out-of-memory and missing-kernel errors, and
// failures inside a device stream.
#include <atomic>
#include <cstdlib>
#include <thread>

#include <dlfcn.h>

#include "testutil.h"

namespace {

using lt::Arr;

bool pooling_off() {
  const char *p = std::getenv("LOOM_POOL");
  return p && std::string(p) == "0";
}

class SimDevEnv : public ::testing::Environment {
 public:
  void SetUp() override {
    ASSERT_EQ(loom_backend_load(LOOM_SIMDEV_PATH), LOOM_OK) << loom_last_error();
  }
};
const auto *kEnv = ::testing::AddGlobalTestEnvironment(new SimDevEnv);

Arr on(const Arr &a, int32_t dev_type, int32_t dev_id) {
  std::vector<int64_t> s = lt::shape_of(a);
  loom_ndarray h = nullptr;
  EXPECT_EQ(loom_ndarray_create(&h, s.data(), static_cast<int32_t>(s.size()), lt::dtype_of(a),
                                dev_type, dev_id),
            LOOM_OK)
      << loom_last_error();
  Arr out(h);
  loom_op copy = nullptr;
  EXPECT_EQ(loom_op_find(&copy, "copy"), LOOM_OK);
  loom_ndarray in[] = {a.h};
  EXPECT_EQ(loom_imperative_invoke(&out.h, 1, copy, in, 1, nullptr, nullptr, 0), LOOM_OK)
      << loom_last_error();
  return out;
}
Arr gpu(const Arr &a, int32_t id = 0) { return on(a, LOOM_DEVICE_GPU, id); }

int32_t dev_type_of(const Arr &a) {
  int32_t t = 0, id = 0;
  EXPECT_EQ(loom_ndarray_get_context(&t, &id, a.h), LOOM_OK);
  return t;
}

std::string describe() {
  const char *d = nullptr;
  EXPECT_EQ(loom_backend_describe(&d, LOOM_DEVICE_GPU), LOOM_OK);
  return d ? d : "";
}

Arr empty(const std::vector<int64_t> &s, int32_t dev_type, int32_t dev_id,
          int32_t dtype = LOOM_DTYPE_FLOAT32, loom_status want = LOOM_OK) {
  loom_ndarray h = nullptr;
  EXPECT_EQ(loom_ndarray_create(&h, s.data(), static_cast<int32_t>(s.size()), dtype, dev_type,
                                dev_id),
            want)
      << loom_last_error();
  return Arr(h);
}

TEST(Backend, ReportsTheLoadedPluginAndItsDevices) {
  int32_t n = -1;
  ASSERT_EQ(loom_device_count(&n, LOOM_DEVICE_GPU), LOOM_OK);
  EXPECT_EQ(n, 2);
  ASSERT_EQ(loom_device_count(&n, LOOM_DEVICE_CPU), LOOM_OK);
  EXPECT_EQ(n, 1);
  EXPECT_EQ(loom_device_count(&n, 7), LOOM_ERR_INVALID_ARGUMENT);
  std::string d = describe();
  EXPECT_NE(d.find("'simdev' backend from"), std::string::npos) << d;
  EXPECT_NE(d.find("gpu(1) Simulated device 1"), std::string::npos) << d;
  // The same file again is a no-op; another file while one is loaded is refused.
  EXPECT_EQ(loom_backend_load(LOOM_SIMDEV_PATH), LOOM_OK) << loom_last_error();
  EXPECT_EQ(loom_backend_load("/nonexistent/libloom_cuda.so"), LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(loom_last_error()).find("already loaded"), std::string::npos)
      << loom_last_error();
  EXPECT_EQ(loom_backend_load(nullptr), LOOM_ERR_INVALID_ARGUMENT);
}

TEST(Backend, DeviceOutOfRangeNamesTheDevicesThereAre) {
  empty({4}, LOOM_DEVICE_GPU, 2, LOOM_DTYPE_FLOAT32, LOOM_ERR_INVALID_ARGUMENT);
  std::string e = loom_last_error();
  EXPECT_NE(e.find("gpu(2)"), std::string::npos) << e;
  EXPECT_NE(e.find("gpu(0) to gpu(1)"), std::string::npos) << e;
  empty({4}, LOOM_DEVICE_GPU, -1, LOOM_DTYPE_FLOAT32, LOOM_ERR_INVALID_ARGUMENT);
}

TEST(Backend, CopiesRoundTripThroughTwoDevices) {
  auto vals = lt::random_values(1000, -5, 5, 1);
  Arr a = lt::make({10, 100}, vals);
  Arr g0 = gpu(a, 0);
  EXPECT_EQ(dev_type_of(g0), LOOM_DEVICE_GPU);
  Arr g1 = gpu(g0, 1);  // device to device, across devices
  Arr g1b = gpu(g1, 1);  // within one device
  Arr back = on(g1b, LOOM_DEVICE_CPU, 0);
  EXPECT_EQ(lt::read(back), lt::as_dtype(vals, LOOM_DTYPE_FLOAT32));
  // copy_to_host and copy_from_host reach device memory directly.
  EXPECT_EQ(lt::read(g1b), lt::as_dtype(vals, LOOM_DTYPE_FLOAT32));
  std::vector<float> host(1000, 2.5f);
  ASSERT_EQ(loom_ndarray_copy_from_host(g0.h, host.data(), host.size() * 4), LOOM_OK);
  EXPECT_EQ(lt::read(g0), std::vector<double>(1000, 2.5));
  // Empty arrays move too.
  Arr z = lt::make({0, 3}, {});
  EXPECT_TRUE(lt::read(on(gpu(z), LOOM_DEVICE_CPU, 0)).empty());
}

TEST(Backend, ImperativeKernelsMatchTheCpuBitForBit) {
  auto va = lt::random_values(4096, -3, 3, 2), vb = lt::random_values(4096, -3, 3, 3);
  Arr a = lt::make({64, 64}, va), b = lt::make({64, 64}, vb);
  Arr ga = gpu(a), gb = gpu(b);
  auto chain = [](const Arr &x, const Arr &y) {
    Arr m = lt::call("multiply", {&x, &y});
    Arr r = lt::call("relu", {&m});
    Arr s = lt::call("add", {&r, &x});
    return lt::call("ElementWiseSum", {&s, &r, &y});
  };
  Arr cpu = chain(a, b), dev = chain(ga, gb);
  EXPECT_EQ(dev_type_of(dev), LOOM_DEVICE_GPU);
  EXPECT_EQ(lt::read(dev), lt::read(cpu));
  Arr f = lt::call("full", {}, {{"shape", "(3,5)"}, {"value", "1.25"}, {"ctx", "gpu(1)"}});
  EXPECT_EQ(lt::read(f), std::vector<double>(15, 1.25));
  Arr w = lt::make({64, 64}, va), dw = gpu(w);
  lt::Params sgd{{"lr", "0.1"}, {"wd", "0.01"}, {"rescale_grad", "0.5"}, {"clip_gradient", "1"}};
  Arr w1 = lt::call("sgd_update", {&w, &b}, sgd), dw1 = lt::call("sgd_update", {&dw, &gb}, sgd);
  EXPECT_EQ(lt::read(dw1), lt::read(w1));
  // A list-of-floats parameter reaches the plugin (param_string) exactly: lrs and wds
  // per weight, printed and parsed back to the same doubles.
  Arr v = lt::make({64, 64}, vb), dv = gpu(v);
  lt::Params multi{{"lrs", "(0.1, 0.0333333333333333)"}, {"wds", "(0.01, 1e-300)"}, {"num_weights", "2"},
                   {"rescale_grad", "0.5"}, {"clip_gradient", "1"}};
  std::vector<Arr> outs, douts;
  ASSERT_EQ(lt::invoke("multi_sgd_update", {&w, &b, &v, &a}, multi, &outs, 2), LOOM_OK) << loom_last_error();
  ASSERT_EQ(lt::invoke("multi_sgd_update", {&dw, &gb, &dv, &ga}, multi, &douts, 2), LOOM_OK) << loom_last_error();
  ASSERT_EQ(douts.size(), 2u);
  EXPECT_EQ(dev_type_of(douts[1]), LOOM_DEVICE_GPU);
  EXPECT_EQ(lt::read(douts[0]), lt::read(outs[0]));
  EXPECT_EQ(lt::read(douts[1]), lt::read(outs[1]));
}

TEST(Backend, InputsOnDifferentDevicesAreRefused) {
  Arr a = lt::make({4}, {1, 2, 3, 4});
  Arr g = gpu(a);
  std::vector<Arr> out;
  EXPECT_EQ(lt::invoke("add", {&g, &a}, {}, &out), LOOM_ERR_INVALID_ARGUMENT);
  std::string e = loom_last_error();
  EXPECT_NE(e.find("input 1"), std::string::npos) << e;
  EXPECT_NE(e.find("cpu(0)"), std::string::npos) << e;
  EXPECT_NE(e.find("gpu(0)"), std::string::npos) << e;
}

TEST(Backend, AnOpWithoutADeviceKernelFailsBeforeAnythingRuns) {
  Arr g = gpu(lt::make({2, 2}, {1, 2, 3, 4}));
  std::vector<Arr> out;
  EXPECT_EQ(lt::invoke("exp", {&g}, {}, &out), LOOM_ERR_BACKEND_UNAVAILABLE);
  std::string e = loom_last_error();
  EXPECT_NE(e.find("exp: no kernel for gpu(0) in the 'simdev' backend"), std::string::npos) << e;
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(loom_wait_all(), LOOM_OK);
}

TEST(Backend, AKernelThatRejectsItsInputsFailsTheOutputsOnly) {
  Arr a = lt::make({8}, lt::random_values(8, -1, 1, 4), LOOM_DTYPE_FLOAT64);
  Arr g = gpu(a);
  Arr r = lt::call("relu", {&g});  // pushed; the kernel refuses float64 when it runs
  std::vector<double> buf(8);
  EXPECT_EQ(loom_ndarray_copy_to_host(buf.data(), 64, r.h), LOOM_ERR_INTERNAL);
  std::string e = loom_last_error();
  EXPECT_NE(e.find("relu failed on gpu(0)"), std::string::npos) << e;
  EXPECT_NE(e.find("float32 only"), std::string::npos) << e;
  EXPECT_EQ(loom_wait_all(), LOOM_ERR_INTERNAL);
  // The device keeps working.
  Arr ok = gpu(lt::make({3}, {-1, 0, 2}));
  EXPECT_EQ(lt::read(lt::call("relu", {&ok})), (std::vector<double>{0, 0, 2}));
}

TEST(Backend, AFailureInsideTheDeviceStreamReachesTheWaitAndIsNotSticky) {
  Arr g = gpu(lt::make({4}, {-1, 2, -3, 4}));
  setenv("LOOM_SIMDEV_FAIL_OP", "relu", 1);
  Arr r = lt::call("relu", {&g});
  Arr after = lt::call("add", {&r, &g});  // reads the failed array: skipped, same error
  unsetenv("LOOM_SIMDEV_FAIL_OP");
  std::vector<float> buf(4);
  EXPECT_EQ(loom_ndarray_copy_to_host(buf.data(), 16, after.h), LOOM_ERR_INTERNAL);
  std::string e = loom_last_error();
  EXPECT_NE(e.find("injected device failure"), std::string::npos) << e;
  EXPECT_NE(e.find("gpu(0)"), std::string::npos) << e;
  EXPECT_EQ(loom_wait_all(), LOOM_ERR_INTERNAL);
  EXPECT_EQ(lt::read(lt::call("relu", {&g})), (std::vector<double>{0, 2, 0, 4}));
  EXPECT_EQ(loom_wait_all(), LOOM_OK);
}

// A node of `op` over `in` (the inputs stay the caller's to free).
loom_symbol node(const char *op, const char *name, std::vector<loom_symbol> in,
                 const lt::Params &ps = {}) {
  loom_op h = nullptr;
  EXPECT_EQ(loom_op_find(&h, op), LOOM_OK);
  std::vector<const char *> k, v;
  for (auto &kv : ps) {
    k.push_back(kv.first.c_str());
    v.push_back(kv.second.c_str());
  }
  loom_symbol s = nullptr;
  EXPECT_EQ(loom_symbol_create(&s, h, name, static_cast<int32_t>(in.size()), in.data(), nullptr,
                               static_cast<int32_t>(k.size()), k.data(), v.data()),
            LOOM_OK)
      << loom_last_error();
  return s;
}

// relu(x * w) * x: x's gradient is the sum of two paths.
loom_symbol graph() {
  loom_symbol x = nullptr, w = nullptr;
  EXPECT_EQ(loom_symbol_variable(&x, "x"), LOOM_OK);
  EXPECT_EQ(loom_symbol_variable(&w, "w"), LOOM_OK);
  loom_symbol m = node("multiply", "m", {x, w});
  loom_symbol r = node("relu", "r", {m});
  loom_symbol y = node("multiply", "y", {r, x});
  for (loom_symbol s : {x, w, m, r}) loom_symbol_free(s);
  return y;
}

struct Result {
  std::vector<double> out, gx, gw;
};

Result run_executor(int32_t dev_type) {
  Arr x = lt::make({16, 8}, lt::random_values(128, -2, 2, 5));
  Arr w = lt::make({16, 8}, lt::random_values(128, -2, 2, 6));
  Arr dx = on(x, dev_type, 0), dw = on(w, dev_type, 0);
  Arr gx = empty({16, 8}, dev_type, 0), gw = empty({16, 8}, dev_type, 0);
  loom_symbol s = graph();
  loom_ndarray args[] = {dx.h, dw.h}, grads[] = {gx.h, gw.h};
  int32_t req[] = {LOOM_GRAD_WRITE, LOOM_GRAD_WRITE};
  loom_executor ex = nullptr;
  EXPECT_EQ(loom_executor_bind(&ex, s, dev_type, 0, 2, args, grads, req, 0, nullptr), LOOM_OK)
      << loom_last_error();
  Result r;
  if (!ex) return r;
  EXPECT_EQ(loom_executor_forward(ex, 1), LOOM_OK) << loom_last_error();
  EXPECT_EQ(loom_executor_backward(ex, 0, nullptr), LOOM_OK) << loom_last_error();
  loom_ndarray o = nullptr;
  EXPECT_EQ(loom_executor_get(&o, ex, LOOM_EXEC_OUTPUT, 0), LOOM_OK);
  Arr out(o);
  r.out = lt::read(out);
  r.gx = lt::read(gx);
  r.gw = lt::read(gw);
  loom_executor_free(ex);
  loom_symbol_free(s);
  return r;
}

void expect_same(const Result &g, const Result &c, size_t n) {
  ASSERT_EQ(c.out.size(), n);
  EXPECT_EQ(g.out, c.out);
  EXPECT_EQ(g.gx, c.gx);
  EXPECT_EQ(g.gw, c.gw);
}

TEST(Backend, ExecutorForwardAndBackwardMatchTheCpu) {
  expect_same(run_executor(LOOM_DEVICE_GPU), run_executor(LOOM_DEVICE_CPU), 128);
}

TEST(Backend, ExecutorBindFailsOnAMissingDeviceKernel) {
  loom_symbol x = nullptr;
  ASSERT_EQ(loom_symbol_variable(&x, "x"), LOOM_OK);
  loom_symbol e2 = node("exp", "e", {x});
  Arr gx = empty({4}, LOOM_DEVICE_GPU, 0);
  loom_executor ex = nullptr;
  EXPECT_EQ(loom_executor_bind(&ex, e2, LOOM_DEVICE_GPU, 0, 1, &gx.h, nullptr, nullptr, 0,
                               nullptr),
            LOOM_ERR_BACKEND_UNAVAILABLE);
  EXPECT_NE(std::string(loom_last_error()).find("exp: no kernel for gpu(0)"), std::string::npos)
      << loom_last_error();
  EXPECT_EQ(ex, nullptr);
  for (loom_symbol s : {x, e2}) loom_symbol_free(s);
}

TEST(Backend, AGraphCopyingToAnotherDeviceIsRefusedAtBind) {
  loom_symbol x = nullptr;
  ASSERT_EQ(loom_symbol_variable(&x, "x"), LOOM_OK);
  loom_op copy = nullptr;
  loom_op_find(&copy, "copy");
  const char *k[] = {"ctx"}, *v[] = {"gpu(0)"};
  loom_symbol c = nullptr;
  ASSERT_EQ(loom_symbol_create(&c, copy, "to_gpu", 1, &x, nullptr, 1, k, v), LOOM_OK);
  Arr a = lt::make({4}, {1, 2, 3, 4});
  loom_executor ex = nullptr;
  EXPECT_EQ(loom_executor_bind(&ex, c, LOOM_DEVICE_CPU, 0, 1, &a.h, nullptr, nullptr, 0, nullptr),
            LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(loom_last_error()).find("'to_gpu' (copy) copies to gpu(0)"),
            std::string::npos)
      << loom_last_error();
  loom_symbol_free(c);
  loom_symbol_free(x);
}

Result run_autograd(int32_t dev_type) {
  Arr x = on(lt::make({32}, lt::random_values(32, -2, 2, 7)), dev_type, 0);
  Arr w = on(lt::make({32}, lt::random_values(32, -2, 2, 8)), dev_type, 0);
  Arr gx = empty({32}, dev_type, 0), gw = empty({32}, dev_type, 0);
  loom_ndarray vars[] = {x.h, w.h}, grads[] = {gx.h, gw.h};
  EXPECT_EQ(loom_autograd_mark_variables(vars, grads, nullptr, 2), LOOM_OK) << loom_last_error();
  loom_autograd_set_recording(nullptr, 1);
  Arr m = lt::call("multiply", {&x, &w});
  Arr r = lt::call("relu", {&m});
  Arr y = lt::call("multiply", {&r, &x});
  loom_autograd_set_recording(nullptr, 0);
  EXPECT_EQ(loom_autograd_backward(&y.h, nullptr, 1), LOOM_OK) << loom_last_error();
  return Result{lt::read(y), lt::read(gx), lt::read(gw)};
}

TEST(Backend, AutogradMatchesTheCpu) {
  expect_same(run_autograd(LOOM_DEVICE_GPU), run_autograd(LOOM_DEVICE_CPU), 32);
}

TEST(Backend, GradientsFlowBackThroughCopiesBetweenDevices) {
  auto vals = lt::random_values(64, -2, 2, 11);
  Arr x = lt::make({64}, vals);
  Arr gx = empty({64}, LOOM_DEVICE_CPU, 0);
  ASSERT_EQ(loom_autograd_mark_variables(&x.h, &gx.h, nullptr, 1), LOOM_OK);
  loom_autograd_set_recording(nullptr, 1);
  Arr on1 = lt::call("copy", {&x}, {{"ctx", "gpu(1)"}});    // cpu -> gpu(1)
  Arr on0 = lt::call("copy", {&on1}, {{"ctx", "gpu(0)"}});  // gpu(1) -> gpu(0)
  EXPECT_EQ(dev_type_of(on0), LOOM_DEVICE_GPU);
  Arr y = lt::call("relu", {&on0});
  loom_autograd_set_recording(nullptr, 0);
  ASSERT_EQ(loom_autograd_backward(&y.h, nullptr, 1), LOOM_OK) << loom_last_error();
  std::vector<double> want(64);
  for (size_t i = 0; i < 64; ++i) want[i] = static_cast<float>(vals[i]) > 0 ? 1 : 0;
  EXPECT_EQ(lt::read(gx), want);
}

TEST(Backend, AutogradFailsBeforePushingWhenAGradientKernelIsMissing) {
  Arr x = gpu(lt::make({4}, {1, 2, 3, 4}));
  Arr gx = empty({4}, LOOM_DEVICE_GPU, 0);
  ASSERT_EQ(loom_autograd_mark_variables(&x.h, &gx.h, nullptr, 1), LOOM_OK);
  loom_autograd_set_recording(nullptr, 1);
  Arr y = lt::call("add", {&x, &x});  // simdev has add, but not its gradient
  loom_autograd_set_recording(nullptr, 0);
  EXPECT_EQ(loom_autograd_backward(&y.h, nullptr, 1), LOOM_ERR_BACKEND_UNAVAILABLE);
  EXPECT_NE(std::string(loom_last_error()).find("add: no gradient kernel for gpu(0)"),
            std::string::npos)
      << loom_last_error();
  EXPECT_EQ(loom_wait_all(), LOOM_OK);
}

loom_storage_stats stats(int32_t dev) {
  loom_storage_stats s{};
  EXPECT_EQ(loom_storage_get_stats(&s, LOOM_DEVICE_GPU, dev), LOOM_OK);
  return s;
}

TEST(Backend, TheDeviceAllocatorCachesBlocksAndReleasesThem) {
  if (pooling_off()) GTEST_SKIP() << "LOOM_POOL=0 turns the cache off";
  ASSERT_EQ(loom_storage_release_pooled(LOOM_DEVICE_GPU, 1), LOOM_OK);
  loom_storage_stats s0 = stats(1);
  { Arr a = empty({1 << 18}, LOOM_DEVICE_GPU, 1); }
  loom_wait_all();
  loom_storage_stats s1 = stats(1);
  EXPECT_EQ(s1.bytes_in_use, s0.bytes_in_use);
  EXPECT_GE(s1.bytes_pooled, 1 << 20);
  { Arr b = empty({1 << 18}, LOOM_DEVICE_GPU, 1); }
  loom_wait_all();
  loom_storage_stats s2 = stats(1);
  EXPECT_EQ(s2.pool_hits, s1.pool_hits + 1);
  EXPECT_EQ(s2.alloc_calls, s1.alloc_calls + 1);
  ASSERT_EQ(loom_storage_release_pooled(LOOM_DEVICE_GPU, 1), LOOM_OK);
  EXPECT_EQ(stats(1).bytes_pooled, 0);
}

TEST(Backend, OutOfDeviceMemoryNamesTheBytesAskedForAndFree) {
  // The simulated devices hold 64 MiB each.
  empty({int64_t(20) << 20}, LOOM_DEVICE_GPU, 1, LOOM_DTYPE_FLOAT32, LOOM_ERR_OUT_OF_MEMORY);
  std::string e = loom_last_error();
  EXPECT_NE(e.find("out of memory on gpu(1)"), std::string::npos) << e;
  EXPECT_NE(e.find("asked for 83886080 bytes"), std::string::npos) << e;
  EXPECT_NE(e.find("free of 67108864"), std::string::npos) << e;
  if (pooling_off()) return;
  // A request that fits only once the cache is given back succeeds.
  {
    Arr a = empty({int64_t(10) << 20}, LOOM_DEVICE_GPU, 1);  // 40 MiB
  }
  loom_wait_all();
  EXPECT_GE(stats(1).bytes_pooled, int64_t(40) << 20);
  Arr b = empty({int64_t(12) << 20}, LOOM_DEVICE_GPU, 1);  // 48 MiB: needs the cached 40 back
  EXPECT_NE(b.h, nullptr);
}

TEST(Backend, ParamsSavedFromADeviceLoadOnTheCpu) {
  auto vals = lt::random_values(50, -1, 1, 9);
  Arr g = gpu(lt::make({5, 10}, vals), 1);
  std::string path = ::testing::TempDir() + "/loom_backend_save.params";
  const char *name = "w";
  ASSERT_EQ(loom_ndarray_save(path.c_str(), &g.h, &name, 1), LOOM_OK) << loom_last_error();
  loom_ndarray_list l = nullptr;
  ASSERT_EQ(loom_ndarray_load(&l, path.c_str()), LOOM_OK) << loom_last_error();
  loom_ndarray h = nullptr;
  const char *n = nullptr;
  ASSERT_EQ(loom_ndarray_list_get(&h, &n, l, 0), LOOM_OK);
  Arr back(h);
  EXPECT_EQ(dev_type_of(back), LOOM_DEVICE_CPU);
  EXPECT_EQ(lt::read(back), lt::as_dtype(vals, LOOM_DTYPE_FLOAT32));
  loom_ndarray_list_free(l);
}

TEST(Backend, ManyThreadsOnTwoDevicesGetTheirOwnResults) {
  std::atomic<int> bad{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([t, &bad] {
      Arr acc = gpu(lt::make({256}, std::vector<double>(256, 0)), t % 2);
      Arr one = gpu(lt::make({256}, std::vector<double>(256, 1.0 + t)), t % 2);
      for (int k = 0; k < 30; ++k) {
        acc = lt::call("add", {&acc, &one});
        if (k % 10 == 9) acc = gpu(on(acc, LOOM_DEVICE_CPU, 0), (t + k) % 2 == 0 ? 0 : 1);
        if (k % 10 == 9) one = gpu(one, (t + k) % 2 == 0 ? 0 : 1);
      }
      if (lt::read(acc) != std::vector<double>(256, 30.0 * (1 + t))) ++bad;
    });
  for (auto &th : ts) th.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(loom_wait_all(), LOOM_OK);
}

// A test hook of the simulated device (see simdev.cc).
size_t simdev_hook(const char *name) {
  void *h = dlopen(LOOM_SIMDEV_PATH, RTLD_NOW | RTLD_NOLOAD);
  auto fn = h ? reinterpret_cast<size_t (*)()>(dlsym(h, name)) : nullptr;
  EXPECT_NE(fn, nullptr) << name;
  size_t n = fn ? fn() : 0;
  if (h) dlclose(h);
  return n;
}

bool async_expected() {
  const char *a = std::getenv("LOOM_GPU_ASYNC"), *e = std::getenv("LOOM_ENGINE");
  return !(a && std::string(a) == "0") && !(e && std::string(e) == "naive");
}

TEST(Backend, KernelsQueueBehindTheHostAndWaitsCatchUp) {
  Arr x = gpu(lt::make({64}, lt::random_values(64, -1, 1, 12)));
  ASSERT_EQ(loom_wait_all(), LOOM_OK);
  setenv("LOOM_SIMDEV_DELAY_US", "2000", 1);
  simdev_hook("loom_simdev_take_max_depth");
  Arr y = lt::call("relu", {&x});
  for (int i = 0; i < 20; ++i) y = lt::call("add", {&y, &x});
  // A wait on the array waits for its kernels, not just for the engine.
  ASSERT_EQ(loom_ndarray_wait_to_read(y.h), LOOM_OK) << loom_last_error();
  EXPECT_EQ(simdev_hook("loom_simdev_pending"), 0u);
  size_t depth = simdev_hook("loom_simdev_take_max_depth");
  // The host enqueued while the device worked. (Without the cache every
  // intermediate array's memory is freed at once, and a device free waits
  // for the device, as cudaFree does.)
  if (async_expected() && !pooling_off())
    EXPECT_GT(depth, 5u);
  else if (async_expected())
    EXPECT_GE(depth, 1u);
  else  // every kernel was waited for before the next was enqueued
    EXPECT_EQ(depth, 1u);
  Arr z = lt::call("relu", {&y});
  for (int i = 0; i < 5; ++i) z = lt::call("add", {&z, &y});
  ASSERT_EQ(loom_wait_all(), LOOM_OK);
  EXPECT_EQ(simdev_hook("loom_simdev_pending"), 0u);
  setenv("LOOM_SIMDEV_DELAY_US", "20", 1);
  // And the results are those of the CPU.
  Arr cx = on(x, LOOM_DEVICE_CPU, 0);
  Arr cy = lt::call("relu", {&cx});
  for (int i = 0; i < 20; ++i) cy = lt::call("add", {&cy, &cx});
  EXPECT_EQ(lt::read(y), lt::read(cy));
}

TEST(Backend, DeviceArraysCannotBeExportedThroughDLPackOrIterated) {
  Arr g = gpu(lt::make({4}, {1, 2, 3, 4}));
  void *t = nullptr;
  EXPECT_EQ(loom_ndarray_to_dlpack(&t, g.h), LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(loom_last_error()).find("gpu(0)"), std::string::npos) << loom_last_error();
}

// Batches of device-resident data are gathered on the device by `take`; the
// simulated device has no kernel for it, and says so through the iterator.
TEST(Backend, AnIteratorOverDeviceDataReportsAMissingGatherKernel) {
  Arr x = gpu(lt::make({6, 2}, lt::random_values(12, -1, 1, 21)));
  Arr y = lt::make({6}, {0, 1, 2, 3, 4, 5});
  loom_dataiter it = nullptr;
  EXPECT_EQ(loom_dataiter_create(&it, x.h, y.h, 2, 0, LOOM_LAST_BATCH_PAD, 1), LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(loom_last_error()).find("label is on cpu(0) but data is on gpu(0)"),
            std::string::npos)
      << loom_last_error();
  Arr gy = gpu(y);
  ASSERT_EQ(loom_dataiter_create(&it, x.h, gy.h, 2, 0, LOOM_LAST_BATCH_PAD, 1), LOOM_OK);
  int32_t has = 0;
  loom_ndarray d = nullptr, l = nullptr;
  int64_t pad = 0;
  EXPECT_EQ(loom_dataiter_next(&has, &d, &l, &pad, it), LOOM_ERR_BACKEND_UNAVAILABLE);
  EXPECT_NE(std::string(loom_last_error()).find("take: no kernel for gpu(0)"), std::string::npos)
      << loom_last_error();
  loom_dataiter_free(it);
}

// ------------------------------------------------------------ whole networks
// With LOOM_SIMDEV_ALL_OPS=1 (ctest backend_whole_networks) the simulated
// device runs every op, through libloom's CPU kernels on its own memory, so a
// whole training step goes through the device path: executor memory plan and
// temp space, BatchNorm's auxiliary states, Dropout's random stream, gradient
// sums, optimizer updates, metrics. Results must equal the CPU's bit for bit.
bool whole_networks() {
  const char *a = std::getenv("LOOM_SIMDEV_ALL_OPS");
  return a && std::string(a) == "1";
}

// node(), freeing the inputs (for chains).
loom_symbol with(const char *op, const char *name, std::vector<loom_symbol> in, const lt::Params &ps) {
  loom_symbol s = node(op, name, in, ps);
  for (loom_symbol x : in) loom_symbol_free(x);
  return s;
}

// FullyConnected(32) -> BatchNorm -> relu -> Dropout(0.25) -> FullyConnected(10) -> SoftmaxOutput.
loom_symbol network() {
  loom_symbol data = nullptr, label = nullptr;
  loom_symbol_variable(&data, "data");
  loom_symbol_variable(&label, "softmax_label");
  loom_symbol h = with("FullyConnected", "fc1", {data}, {{"num_hidden", "32"}});
  h = with("BatchNorm", "bn", {h}, {{"fix_gamma", "false"}});
  h = with("relu", "act", {h}, {});
  h = with("Dropout", "drop", {h}, {{"p", "0.25"}});
  h = with("FullyConnected", "fc2", {h}, {{"num_hidden", "10"}});
  return with("SoftmaxOutput", "softmax", {h, label}, {{"normalization", "batch"}});
}

struct Trained {
  std::vector<std::vector<double>> args, aux;
  std::vector<double> out, accuracy;
};

// Three SGD-with-momentum steps of network() on (dev_type, 0) from fixed data.
Trained train_steps(int32_t dev_type) {
  loom_random_seed(7);
  loom_symbol net = network();
  const char *names[] = {"data", "softmax_label"};
  int32_t ndims[] = {2, 1};
  int64_t dims[] = {16, 12, 16};
  const int32_t no_grad[] = {LOOM_GRAD_NULL, LOOM_GRAD_NULL};
  loom_executor ex = nullptr;
  EXPECT_EQ(loom_executor_simple_bind(&ex, net, dev_type, 0, 2, names, ndims, dims, nullptr, 2, names,
                                      no_grad, LOOM_GRAD_WRITE),
            LOOM_OK)
      << loom_last_error();
  Trained t;
  if (!ex) return t;
  auto get = [&](int32_t kind, int32_t i) {
    loom_ndarray h = nullptr;
    EXPECT_EQ(loom_executor_get(&h, ex, kind, i), LOOM_OK);
    return Arr(h);
  };
  int32_t nargs = 0, naux = 0;
  loom_executor_count(&nargs, ex, LOOM_EXEC_ARGUMENT);
  loom_executor_count(&naux, ex, LOOM_EXEC_AUXILIARY_STATE);
  // Same starting values on both devices: drawn on the CPU, copied over.
  std::vector<Arr> moms;
  int32_t label_at = -1;
  for (int32_t i = 0; i < nargs; ++i) {
    Arr a = get(LOOM_EXEC_ARGUMENT, i);
    std::vector<int64_t> s = lt::shape_of(a);
    bool is_label = s == std::vector<int64_t>{16};  // the one (16,) argument
    if (is_label) label_at = i;
    Arr init = is_label ? lt::make(s, {0, 3, 1, 9, 2, 2, 7, 5, 4, 1, 0, 8, 6, 3, 9, 5})
                        : lt::make(s, lt::random_values(lt::numel(s), -0.5, 0.5, 100 + i));
    loom_ndarray_copy_to(a.h, init.h);
    moms.push_back(on(lt::make(s, std::vector<double>(lt::numel(s), 0.0)), dev_type, 0));
  }
  for (int32_t i = 0; i < naux; ++i) {
    Arr a = get(LOOM_EXEC_AUXILIARY_STATE, i);
    std::vector<int64_t> s = lt::shape_of(a);
    Arr init = lt::make(s, std::vector<double>(lt::numel(s), i == 0 ? 0.0 : 1.0));
    loom_ndarray_copy_to(a.h, init.h);
  }
  Arr acc = on(lt::make({2}, {0, 0}, LOOM_DTYPE_FLOAT64), dev_type, 0);
  for (int step = 0; step < 3; ++step) {
    EXPECT_EQ(loom_executor_forward(ex, 1), LOOM_OK) << loom_last_error();
    EXPECT_EQ(loom_executor_backward(ex, 0, nullptr), LOOM_OK) << loom_last_error();
    for (int32_t i = 0; i < nargs; ++i) {
      Arr g = get(LOOM_EXEC_GRADIENT, i);
      if (!g.h) continue;
      Arr w = get(LOOM_EXEC_ARGUMENT, i);
      loom_op op = nullptr;
      loom_op_find(&op, "sgd_mom_update");
      loom_ndarray ins[] = {w.h, g.h, moms[i].h}, outs[] = {w.h, moms[i].h};
      const char *k[] = {"lr", "momentum", "wd"}, *v[] = {"0.1", "0.9", "0.0001"};
      EXPECT_EQ(loom_imperative_invoke(outs, 2, op, ins, 3, k, v, 3), LOOM_OK) << loom_last_error();
    }
    Arr out = get(LOOM_EXEC_OUTPUT, 0), label = get(LOOM_EXEC_ARGUMENT, label_at);
    Arr c = lt::call("accuracy_count", {&out, &label});
    acc = lt::call("add", {&acc, &c});
  }
  for (int32_t i = 0; i < nargs; ++i) t.args.push_back(lt::read(get(LOOM_EXEC_ARGUMENT, i)));
  for (int32_t i = 0; i < naux; ++i) t.aux.push_back(lt::read(get(LOOM_EXEC_AUXILIARY_STATE, i)));
  t.out = lt::read(get(LOOM_EXEC_OUTPUT, 0));
  t.accuracy = lt::read(acc);
  loom_executor_free(ex);
  loom_symbol_free(net);
  return t;
}

// One shuffled, padded epoch of (data, label) batches, read back to the host.
std::vector<std::vector<double>> epoch_batches(int32_t dev_type) {
  Arr x = on(lt::make({7, 3}, lt::random_values(21, -1, 1, 22)), dev_type, 0);
  Arr y = on(lt::make({7}, {0, 1, 2, 3, 4, 5, 6}), dev_type, 0);
  loom_random_seed(11);
  loom_dataiter it = nullptr;
  EXPECT_EQ(loom_dataiter_create(&it, x.h, y.h, 3, 1, LOOM_LAST_BATCH_PAD, 2), LOOM_OK) << loom_last_error();
  std::vector<std::vector<double>> out;
  for (;;) {
    int32_t has = 0;
    loom_ndarray d = nullptr, l = nullptr;
    int64_t pad = 0;
    EXPECT_EQ(loom_dataiter_next(&has, &d, &l, &pad, it), LOOM_OK) << loom_last_error();
    if (!has) break;
    Arr da(d), la(l);
    EXPECT_EQ(dev_type_of(da), dev_type);
    out.push_back(lt::read(da));
    out.push_back(lt::read(la));
    out.push_back({static_cast<double>(pad)});
  }
  loom_dataiter_free(it);
  return out;
}

TEST(BackendWholeNetworks, DeviceResidentBatchesEqualTheCpusAndStayOnTheDevice) {
  if (!whole_networks()) GTEST_SKIP() << "needs LOOM_SIMDEV_ALL_OPS=1 (ctest backend_whole_networks)";
  auto c = epoch_batches(LOOM_DEVICE_CPU), g = epoch_batches(LOOM_DEVICE_GPU);
  ASSERT_EQ(c.size(), 9u);  // 3 batches (the last padded by 2)
  EXPECT_EQ(c[8], std::vector<double>{2});
  EXPECT_EQ(g, c);
}

TEST(BackendWholeNetworks, TrainingStepsMatchTheCpuBitForBit) {
  if (!whole_networks()) GTEST_SKIP() << "needs LOOM_SIMDEV_ALL_OPS=1 (ctest backend_whole_networks)";
  Trained c = train_steps(LOOM_DEVICE_CPU), g = train_steps(LOOM_DEVICE_GPU);
  ASSERT_EQ(c.args.size(), 8u);  // data, fc1 w/b, bn gamma/beta, fc2 w/b, label
  ASSERT_EQ(c.aux.size(), 2u);   // bn moving mean/var
  for (size_t i = 0; i < c.args.size(); ++i) EXPECT_EQ(g.args[i], c.args[i]) << "argument " << i;
  for (size_t i = 0; i < c.aux.size(); ++i) EXPECT_EQ(g.aux[i], c.aux[i]) << "auxiliary state " << i;
  EXPECT_EQ(g.out, c.out);
  EXPECT_EQ(g.accuracy, c.accuracy);
  EXPECT_EQ(c.accuracy[1], 48.0);  // three batches of 16 counted
}

}  // namespace
