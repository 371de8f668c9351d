// libloom_simdev: a simulated GPU backend plugin for testing libloom's device
// code without a GPU. It implements loom/backend.h like a real device would:
//  - device memory is host memory behind tagged pointers (the address plus
//    2^62, which is not a valid host address), so libloom dereferencing a
//    device pointer crashes the test instead of passing by luck;
//  - each stream is a thread with a queue: copies, fills and kernels run
//    asynchronously, so a missing synchronisation gives wrong results;
//  - errors inside a stream are sticky and reported by the next sync, as CUDA's are;
//  - each device has a memory budget (LOOM_SIMDEV_MEMORY bytes, default
//    64 MiB) and malloc beyond it reports LOOM_BACKEND_OUT_OF_MEMORY.
// Kernels: full, zeros, ones, add, multiply (and its gradient), relu (and its
// gradient), ElementWiseSum, sgd_update, multi_sgd_update; float32 only, as a real backend may
// support a subset. LOOM_SIMDEV_ALL_OPS=1 runs every other op through
// libloom's CPU kernel on the device's memory, so whole networks can run.
//
// Environment: LOOM_SIMDEV_DEVICES (default 2), LOOM_SIMDEV_MEMORY,
// LOOM_SIMDEV_DELAY_US (sleep before each queued item, default 0),
// LOOM_SIMDEV_FAIL_OP (that op's kernel fails on the stream),
// LOOM_SIMDEV_PERTURB_OP (that op's first output element is off by 1e-3),
// LOOM_SIMDEV_ABI (the interface version to report), LOOM_SIMDEV_FAIL_OPEN.
#include <loom/backend.h>
#include <loom/loom.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <algorithm>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace {

constexpr uintptr_t kTag = uintptr_t(1) << 62;

const loom_backend_host *g_host = nullptr;

// Each thread's last error. A map rather than thread_local: dynamic TLS in a
// dlopen'ed library trips LeakSanitizer's exit-time scan on this glibc.
std::mutex g_errors_mu;
std::map<std::thread::id, std::string> g_errors;

std::string &thread_error() {
  std::lock_guard<std::mutex> lk(g_errors_mu);
  return g_errors[std::this_thread::get_id()];  // map nodes never move
}

int32_t error(const std::string &m, int32_t code = 1) {
  thread_error() = "simdev: " + m;
  return code;
}

int env_int(const char *name, long long fallback) {
  const char *v = std::getenv(name);
  return v && *v ? static_cast<int>(std::atoll(v)) : static_cast<int>(fallback);
}
size_t env_size(const char *name, size_t fallback) {
  const char *v = std::getenv(name);
  return v && *v ? static_cast<size_t>(std::atoll(v)) : fallback;
}

void *host(const void *device_ptr) {
  return reinterpret_cast<void *>(reinterpret_cast<uintptr_t>(device_ptr) - kTag);
}
bool tagged(const void *p) { return (reinterpret_cast<uintptr_t>(p) & kTag) != 0; }

// ------------------------------------------------------------ devices
struct Device {
  std::mutex mu;
  size_t budget = 0, used = 0;
  std::map<uintptr_t, size_t> blocks;  // host address -> bytes
};
Device *g_devices = nullptr;
int32_t g_count = 0;

bool valid_dev(int32_t d) { return d >= 0 && d < g_count; }

// True when [p, p + bytes) lies inside one live block of device d.
bool in_block(int32_t d, const void *p, size_t bytes) {
  if (!tagged(p)) return false;
  uintptr_t h = reinterpret_cast<uintptr_t>(host(p));
  Device &dev = g_devices[d];
  std::lock_guard<std::mutex> lk(dev.mu);
  auto it = dev.blocks.upper_bound(h);
  if (it == dev.blocks.begin()) return false;
  --it;
  return h + bytes <= it->first + it->second;
}

// ------------------------------------------------------------ streams
// The most items ever waiting on one stream (a test reads and resets it).
std::atomic<size_t> g_max_depth{0};
void note_depth(size_t d) {
  size_t m = g_max_depth.load();
  while (d > m && !g_max_depth.compare_exchange_weak(m, d)) {
  }
}

struct Stream {
  std::mutex mu;
  std::condition_variable cv, idle_cv;
  std::deque<std::function<std::string()>> queue;  // each returns "" or an error
  bool busy = false, stop = false;
  std::string sticky;  // first failure, reported by the next sync
  std::thread worker;

  Stream() {
    worker = std::thread([this] {
      for (;;) {
        std::function<std::string()> f;
        {
          std::unique_lock<std::mutex> lk(mu);
          cv.wait(lk, [this] { return stop || !queue.empty(); });
          if (queue.empty()) return;
          f = std::move(queue.front());
          queue.pop_front();
          busy = true;
        }
        int delay_us = env_int("LOOM_SIMDEV_DELAY_US", 0);  // read per item: tests change it
        if (delay_us) std::this_thread::sleep_for(std::chrono::microseconds(delay_us));
        std::string e = f();
        {
          std::lock_guard<std::mutex> lk(mu);
          if (!e.empty() && sticky.empty()) sticky = e;
          busy = false;
        }
        idle_cv.notify_all();
      }
    });
  }
  ~Stream() {
    {
      std::lock_guard<std::mutex> lk(mu);
      stop = true;
    }
    cv.notify_all();
    worker.join();
  }
  void push(std::function<std::string()> f) {
    {
      std::lock_guard<std::mutex> lk(mu);
      queue.push_back(std::move(f));
      note_depth(queue.size() + (busy ? 1 : 0));
    }
    cv.notify_one();
  }
  int32_t sync() {
    std::unique_lock<std::mutex> lk(mu);
    idle_cv.wait(lk, [this] { return queue.empty() && !busy; });
    if (sticky.empty()) return 0;
    std::string e = sticky;
    sticky.clear();
    return error(e);
  }
  void wait_idle() {
    std::unique_lock<std::mutex> lk(mu);
    idle_cv.wait(lk, [this] { return queue.empty() && !busy; });
  }
  size_t pending() {
    std::lock_guard<std::mutex> lk(mu);
    return queue.size() + (busy ? 1 : 0);
  }
};

// Every live stream: free() waits for them, as cudaFree waits for the device.
std::mutex g_streams_mu;
std::vector<Stream *> g_streams;

void wait_all_streams_idle() {
  std::lock_guard<std::mutex> lk(g_streams_mu);
  for (Stream *s : g_streams) s->wait_idle();
}

// An event may be destroyed while work that records or waits on it is still
// queued (CUDA allows it): the handle owns one reference, queued work others.
struct EventState {
  std::mutex mu;
  std::condition_variable cv;
  uint64_t recorded = 0, completed = 0;
};
using Event = std::shared_ptr<EventState>;

// ------------------------------------------------------------ table functions
const char *last_error() { return thread_error().c_str(); }

int32_t device_count(int32_t *out) {
  *out = g_count;
  return 0;
}

int32_t device_name(int32_t d, char *buf, size_t len) {
  if (!valid_dev(d)) return error("no device " + std::to_string(d));
  std::snprintf(buf, len, "Simulated device %d", d);
  return 0;
}

int32_t mem_info(int32_t d, size_t *free_bytes, size_t *total) {
  if (!valid_dev(d)) return error("no device " + std::to_string(d));
  Device &dev = g_devices[d];
  std::lock_guard<std::mutex> lk(dev.mu);
  *free_bytes = dev.budget - dev.used;
  *total = dev.budget;
  return 0;
}

int32_t dev_malloc(int32_t d, size_t bytes, void **out) {
  if (!valid_dev(d)) return error("no device " + std::to_string(d));
  Device &dev = g_devices[d];
  std::lock_guard<std::mutex> lk(dev.mu);
  if (bytes > dev.budget - dev.used)
    return error("out of memory: " + std::to_string(bytes) + " bytes asked, " +
                     std::to_string(dev.budget - dev.used) + " free",
                 LOOM_BACKEND_OUT_OF_MEMORY);
  void *p = std::malloc(bytes ? bytes : 1);
  if (!p) return error("host malloc failed", LOOM_BACKEND_OUT_OF_MEMORY);
  std::memset(p, 0xA5, bytes);  // device memory starts as garbage
  dev.used += bytes;
  dev.blocks[reinterpret_cast<uintptr_t>(p)] = bytes;
  *out = reinterpret_cast<void *>(reinterpret_cast<uintptr_t>(p) + kTag);
  return 0;
}

void dev_free(int32_t d, void *ptr) {
  if (!valid_dev(d) || !ptr) return;
  wait_all_streams_idle();  // queued work may still use the block
  Device &dev = g_devices[d];
  std::lock_guard<std::mutex> lk(dev.mu);
  auto it = dev.blocks.find(reinterpret_cast<uintptr_t>(host(ptr)));
  if (it == dev.blocks.end()) std::abort();  // freeing what was never allocated: a libloom bug
  dev.used -= it->second;
  std::free(reinterpret_cast<void *>(it->first));
  dev.blocks.erase(it);
}

int32_t stream_create(int32_t d, void **out) {
  if (!valid_dev(d)) return error("no device " + std::to_string(d));
  auto *s = new Stream;
  {
    std::lock_guard<std::mutex> lk(g_streams_mu);
    g_streams.push_back(s);
  }
  *out = s;
  return 0;
}
void stream_destroy(int32_t, void *sp) {
  auto *s = static_cast<Stream *>(sp);
  {
    std::lock_guard<std::mutex> lk(g_streams_mu);
    g_streams.erase(std::find(g_streams.begin(), g_streams.end(), s));
  }
  delete s;
}
int32_t stream_sync(int32_t, void *s) { return static_cast<Stream *>(s)->sync(); }

int32_t event_create(int32_t, void **out) {
  *out = new Event(std::make_shared<EventState>());
  return 0;
}
void event_destroy(int32_t, void *e) { delete static_cast<Event *>(e); }
int32_t event_record(int32_t, void *ev, void *s) {
  Event e = *static_cast<Event *>(ev);
  uint64_t gen;
  {
    std::lock_guard<std::mutex> lk(e->mu);
    gen = ++e->recorded;
  }
  static_cast<Stream *>(s)->push([e, gen] {
    {
      std::lock_guard<std::mutex> lk(e->mu);
      if (e->completed < gen) e->completed = gen;
    }
    e->cv.notify_all();
    return std::string();
  });
  return 0;
}
int32_t stream_wait_event(int32_t, void *s, void *ev) {
  Event e = *static_cast<Event *>(ev);
  uint64_t target;
  {
    std::lock_guard<std::mutex> lk(e->mu);
    target = e->recorded;
  }
  static_cast<Stream *>(s)->push([e, target] {
    std::unique_lock<std::mutex> lk(e->mu);
    e->cv.wait(lk, [&] { return e->completed >= target; });
    return std::string();
  });
  return 0;
}
int32_t event_sync(int32_t, void *ev) {
  Event e = *static_cast<Event *>(ev);
  std::unique_lock<std::mutex> lk(e->mu);
  uint64_t target = e->recorded;
  e->cv.wait(lk, [&] { return e->completed >= target; });
  return 0;
}

int32_t memcpy_async(int32_t d, void *dst, int32_t dst_dev, const void *src, int32_t src_dev,
                     size_t bytes, int32_t kind, void *s) {
  if (!valid_dev(d)) return error("no device " + std::to_string(d));
  void *to = dst;
  const void *from = src;
  switch (kind) {
    case LOOM_COPY_HOST_TO_DEVICE:
      if (dst_dev != d || !in_block(d, dst, bytes))
        return error("host-to-device copy: the destination is not memory of device " +
                     std::to_string(d));
      if (tagged(src)) return error("host-to-device copy: the source is a device pointer");
      to = host(dst);
      break;
    case LOOM_COPY_DEVICE_TO_HOST:
      if (src_dev != d || !in_block(d, src, bytes))
        return error("device-to-host copy: the source is not memory of device " +
                     std::to_string(d));
      if (tagged(dst)) return error("device-to-host copy: the destination is a device pointer");
      from = host(src);
      break;
    case LOOM_COPY_DEVICE_TO_DEVICE:
      if (!valid_dev(dst_dev) || !valid_dev(src_dev) || !in_block(dst_dev, dst, bytes) ||
          !in_block(src_dev, src, bytes))
        return error("device-to-device copy: an address is not device memory");
      to = host(dst);
      from = host(src);
      break;
    default:
      return error("unknown copy kind " + std::to_string(kind));
  }
  static_cast<Stream *>(s)->push([to, from, bytes] {
    std::memmove(to, from, bytes);
    return std::string();
  });
  return 0;
}

int32_t memset_async(int32_t d, void *dst, int32_t value, size_t bytes, void *s) {
  if (!valid_dev(d) || !in_block(d, dst, bytes)) return error("memset: not device memory");
  void *to = host(dst);
  static_cast<Stream *>(s)->push([to, value, bytes] {
    std::memset(to, value, bytes);
    return std::string();
  });
  return 0;
}

// ------------------------------------------------------------ kernels
// Checks every tensor is float32 device memory of the call's device, then
// queues `body` on the stream with the tensors' host addresses.
int32_t queue_kernel(const loom_kernel_call *c,
                     std::function<void(std::vector<float *> &, std::vector<int64_t> &)> body) {
  std::vector<float *> ptrs;
  std::vector<int64_t> sizes;
  auto add = [&](const loom_backend_tensor &t, bool maybe_null) -> bool {
    int64_t n = 1;
    for (int32_t k = 0; k < t.ndim; ++k) n *= t.shape[k];
    if (!t.data && maybe_null) {
      ptrs.push_back(nullptr);
      sizes.push_back(n);
      return true;
    }
    if (t.dtype != LOOM_DTYPE_FLOAT32) return false;
    if (n && !in_block(c->dev_id, t.data, static_cast<size_t>(n) * 4)) return false;
    ptrs.push_back(static_cast<float *>(host(t.data)));
    sizes.push_back(n);
    return true;
  };
  for (int32_t i = 0; i < c->num_inputs; ++i)
    if (!add(c->inputs[i], false))
      return error(std::string(c->op) + ": input " + std::to_string(i) +
                   " is not float32 memory of this device (the simulated device computes "
                   "float32 only)");
  for (int32_t i = 0; i < c->num_outputs; ++i)
    if (!add(c->outputs[i], c->backward != 0))
      return error(std::string(c->op) + ": output " + std::to_string(i) +
                   " is not float32 memory of this device");
  const char *fail_op = std::getenv("LOOM_SIMDEV_FAIL_OP");
  bool fail = fail_op && std::string(fail_op) == c->op;
  const char *perturb_op = std::getenv("LOOM_SIMDEV_PERTURB_OP");
  bool perturb = perturb_op && std::string(perturb_op) == c->op && !c->backward;
  size_t first_out = static_cast<size_t>(c->num_inputs);
  std::string name = c->op;
  static_cast<Stream *>(c->stream)->push([=]() mutable -> std::string {
    if (fail) return name + ": injected device failure (LOOM_SIMDEV_FAIL_OP)";
    body(ptrs, sizes);
    // A wrong answer on purpose, so checks that compare with the CPU can be seen to fail.
    if (perturb && sizes[first_out] > 0) ptrs[first_out][0] += 1e-3f;
    return "";
  });
  return 0;
}

float store(int32_t req, float old, float v) { return req == LOOM_REQ_ADD ? old + v : v; }

int32_t k_full(const loom_kernel_call *c) {
  double v = 0;
  if (std::strcmp(c->op, "ones") == 0) v = 1;
  else if (std::strcmp(c->op, "full") == 0 && g_host->param_float(c->params, "value", &v) != 0)
    return error("full: no value parameter");
  float f = static_cast<float>(v);
  return queue_kernel(c, [f](std::vector<float *> &p, std::vector<int64_t> &n) {
    for (int64_t i = 0; i < n[0]; ++i) p[0][i] = f;
  });
}

bool same_shape(const loom_backend_tensor &a, const loom_backend_tensor &b) {
  if (a.ndim != b.ndim) return false;
  for (int32_t k = 0; k < a.ndim; ++k)
    if (a.shape[k] != b.shape[k]) return false;
  return true;
}

int32_t k_add(const loom_kernel_call *c) {
  if (c->num_inputs != 2 || !same_shape(c->inputs[0], c->inputs[1]))
    return error("add: the simulated device adds arrays of one shape only");
  return queue_kernel(c, [](std::vector<float *> &p, std::vector<int64_t> &n) {
    for (int64_t i = 0; i < n[2]; ++i) p[2][i] = p[0][i] + p[1][i];
  });
}

int32_t k_multiply(const loom_kernel_call *c) {
  if (c->num_inputs != 2 || !same_shape(c->inputs[0], c->inputs[1]))
    return error("multiply: the simulated device multiplies arrays of one shape only");
  return queue_kernel(c, [](std::vector<float *> &p, std::vector<int64_t> &n) {
    for (int64_t i = 0; i < n[2]; ++i) p[2][i] = p[0][i] * p[1][i];
  });
}

// Gradient: inputs a, b, out, og; outputs ga, gb.
int32_t k_multiply_grad(const loom_kernel_call *c) {
  if (c->num_inputs != 4 || !same_shape(c->inputs[0], c->inputs[1]))
    return error("multiply: the simulated device differentiates arrays of one shape only");
  int32_t ra = c->req[0], rb = c->req[1];
  return queue_kernel(c, [ra, rb](std::vector<float *> &p, std::vector<int64_t> &n) {
    for (int64_t i = 0; i < n[0]; ++i) {
      if (ra) p[4][i] = store(ra, p[4][i], p[3][i] * p[1][i]);
      if (rb) p[5][i] = store(rb, p[5][i], p[3][i] * p[0][i]);
    }
  });
}

int32_t k_relu(const loom_kernel_call *c) {
  return queue_kernel(c, [](std::vector<float *> &p, std::vector<int64_t> &n) {
    for (int64_t i = 0; i < n[0]; ++i) p[1][i] = (p[0][i] > 0 || p[0][i] != p[0][i]) ? p[0][i] : 0.0f;  // NaN passes
  });
}

// Gradient: inputs x, y, og; output gx.
int32_t k_relu_grad(const loom_kernel_call *c) {
  int32_t r = c->req[0];
  return queue_kernel(c, [r](std::vector<float *> &p, std::vector<int64_t> &n) {
    if (!r) return;
    for (int64_t i = 0; i < n[0]; ++i) {
      float x = p[0][i];
      p[3][i] = store(r, p[3][i], p[2][i] * (x != x ? x : (x > 0 ? 1.0f : 0.0f)));  // MXNet's relu_grad
    }
  });
}

int32_t k_sum(const loom_kernel_call *c) {
  int32_t k = c->num_inputs;
  return queue_kernel(c, [k](std::vector<float *> &p, std::vector<int64_t> &n) {
    for (int64_t i = 0; i < n[0]; ++i) {
      float s = 0.0f;
      for (int32_t j = 0; j < k; ++j) s += p[j][i];
      p[k][i] = s;
    }
  });
}

// sgd_update(weight, grad) -> weight, computed in double as the CPU kernel does.
int32_t k_sgd(const loom_kernel_call *c) {
  double lr = 0, wd = 0, rescale = 1, clip = -1;
  if (g_host->param_float(c->params, "lr", &lr) != 0) return error("sgd_update: no lr");
  g_host->param_float(c->params, "wd", &wd);
  g_host->param_float(c->params, "rescale_grad", &rescale);
  g_host->param_float(c->params, "clip_gradient", &clip);
  return queue_kernel(c, [=](std::vector<float *> &p, std::vector<int64_t> &n) {
    for (int64_t i = 0; i < n[0]; ++i) {
      double g = p[1][i] * rescale;
      if (clip >= 0) g = g > clip ? clip : (g < -clip ? -clip : g);
      double w = p[0][i];
      p[2][i] = static_cast<float>(w - lr * (g + wd * w));
    }
  });
}

// multi_sgd_update(w0, g0, w1, g1, ...) -> (w0, w1, ...): reads its per-weight
// lrs and wds (lists of floats) through the host's param_string, as a real
// backend must, and computes each weight as k_sgd does.
int32_t k_multi_sgd(const loom_kernel_call *c) {
  int64_t n = 0;
  if (g_host->param_int(c->params, "num_weights", &n) != 0 || n < 1 || c->num_inputs != 2 * n)
    return error("multi_sgd_update: num_weights does not match the inputs");
  std::vector<double> lrs, wds;
  for (auto name_list : {std::make_pair("lrs", &lrs), std::make_pair("wds", &wds)}) {
    const char *text = nullptr;
    if (g_host->param_string(c->params, name_list.first, &text) != 0 || !text)
      return error(std::string("multi_sgd_update: cannot read ") + name_list.first);
    for (const char *p = text; *p;) {
      char *end = nullptr;
      name_list.second->push_back(std::strtod(p, &end));
      if (end == p) return error(std::string("multi_sgd_update: bad list ") + text);
      p = *end == ',' ? end + 1 : end;
    }
    if (static_cast<int64_t>(name_list.second->size()) != n)
      return error(std::string("multi_sgd_update: ") + name_list.first + " has the wrong length: " + text);
  }
  double rescale = 1, clip = -1;
  g_host->param_float(c->params, "rescale_grad", &rescale);
  g_host->param_float(c->params, "clip_gradient", &clip);
  return queue_kernel(c, [=](std::vector<float *> &p, std::vector<int64_t> &sz) {
    for (int64_t k = 0; k < n; ++k)
      for (int64_t i = 0; i < sz[2 * k]; ++i) {
        double g = p[2 * k + 1][i] * rescale;
        if (clip >= 0) g = g > clip ? clip : (g < -clip ? -clip : g);
        double w = p[2 * k][i];
        p[2 * n + k][i] = static_cast<float>(w - lrs[k] * (g + wds[k] * w));
      }
  });
}

size_t dtype_bytes(int32_t dtype) {
  switch (dtype) {
    case LOOM_DTYPE_FLOAT64:
    case LOOM_DTYPE_INT64: return 8;
    case LOOM_DTYPE_FLOAT32:
    case LOOM_DTYPE_INT32: return 4;
    case LOOM_DTYPE_FLOAT16: return 2;
    default: return 1;
  }
}

// With LOOM_SIMDEV_ALL_OPS=1, every other op runs through libloom's CPU
// kernel (host->run_on_cpu) on the simulated device's memory, in stream
// order; the call waits for it, since its params live only until it returns.
// This lets whole networks run on the simulated device.
int32_t k_cpu(const loom_kernel_call *c) {
  std::vector<loom_backend_tensor> in(c->inputs, c->inputs + c->num_inputs),
      out(c->outputs, c->outputs + c->num_outputs);
  for (auto *list : {&in, &out})
    for (auto &t : *list) {
      int64_t n = 1;
      for (int32_t k = 0; k < t.ndim; ++k) n *= t.shape[k];
      if (!t.data || n == 0) continue;
      if (!in_block(c->dev_id, t.data, static_cast<size_t>(n) * dtype_bytes(t.dtype)))
        return error(std::string(c->op) + ": an array is not memory of device " +
                     std::to_string(c->dev_id));
      t.data = host(t.data);
    }
  loom_kernel_call h = *c;
  h.inputs = in.data();
  h.outputs = out.data();
  if (c->workspace) h.workspace = host(c->workspace);
  std::string err;
  std::promise<void> done;
  static_cast<Stream *>(c->stream)->push([&]() -> std::string {
    char buf[2048] = {0};
    if (g_host->run_on_cpu(&h, buf, sizeof buf) != 0) err = buf;
    done.set_value();
    return std::string();
  });
  done.get_future().wait();
  return err.empty() ? 0 : error(err);
}

loom_kernel_fn own_kernel(const char *op, int32_t backward) {
  static const std::map<std::string, loom_kernel_fn> fwd = {
      {"full", k_full},         {"zeros", k_full}, {"ones", k_full},
      {"add", k_add},           {"multiply", k_multiply}, {"relu", k_relu},
      {"ElementWiseSum", k_sum}, {"sgd_update", k_sgd}, {"multi_sgd_update", k_multi_sgd}};
  static const std::map<std::string, loom_kernel_fn> bwd = {{"multiply", k_multiply_grad},
                                                            {"relu", k_relu_grad}};
  const auto &m = backward ? bwd : fwd;
  auto it = m.find(op ? op : "");
  return it == m.end() ? nullptr : it->second;
}

bool all_ops() {
  const char *all = std::getenv("LOOM_SIMDEV_ALL_OPS");
  return all && std::string(all) == "1";
}

// All-ops mode: the device's own kernel where it takes the call, else the CPU's.
int32_t k_any(const loom_kernel_call *c) {
  loom_kernel_fn own = own_kernel(c->op, c->backward);
  if (own && own(c) == 0) return 0;  // own kernels refuse before queuing anything
  return k_cpu(c);
}

loom_kernel_fn find_kernel(const char *op, int32_t backward) {
  if (all_ops() && op && std::string(op) != "no_such_operator") return k_any;
  return own_kernel(op, backward);
}

loom_backend g_table;

}  // namespace

// For tests: items queued on all streams and not finished yet.
extern "C" __attribute__((visibility("default"))) size_t loom_simdev_pending(void) {
  std::lock_guard<std::mutex> lk(g_streams_mu);
  size_t n = 0;
  for (Stream *s : g_streams) n += s->pending();
  return n;
}

// For tests: the deepest any stream's queue has been since the last call (which resets it).
extern "C" __attribute__((visibility("default"))) size_t loom_simdev_take_max_depth(void) {
  return g_max_depth.exchange(0);
}

extern "C" __attribute__((visibility("default"))) int32_t loom_backend_open(
    const loom_backend_host *host, const loom_backend **out) {
  g_host = host;
  g_table.abi_version = env_int("LOOM_SIMDEV_ABI", LOOM_BACKEND_ABI_VERSION);
  g_table.name = "simdev";
  g_table.dev_type = LOOM_DEVICE_GPU;
  g_table.last_error = last_error;
  g_table.device_count = device_count;
  g_table.device_name = device_name;
  g_table.mem_info = mem_info;
  g_table.malloc = dev_malloc;
  g_table.free = dev_free;
  g_table.stream_create = stream_create;
  g_table.stream_destroy = stream_destroy;
  g_table.stream_sync = stream_sync;
  g_table.event_create = event_create;
  g_table.event_destroy = event_destroy;
  g_table.event_record = event_record;
  g_table.stream_wait_event = stream_wait_event;
  g_table.event_sync = event_sync;
  g_table.memcpy_async = memcpy_async;
  g_table.memset_async = memset_async;
  g_table.find_kernel = find_kernel;
  *out = &g_table;
  if (std::getenv("LOOM_SIMDEV_FAIL_OPEN")) return error("no driver (LOOM_SIMDEV_FAIL_OPEN)");
  if (!g_devices) {
    g_count = env_int("LOOM_SIMDEV_DEVICES", 2);
    g_devices = new Device[g_count > 0 ? g_count : 1];
    for (int32_t i = 0; i < g_count; ++i)
      g_devices[i].budget = env_size("LOOM_SIMDEV_MEMORY", size_t(64) << 20);
  }
  return 0;
}
