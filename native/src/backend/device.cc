#include "backend/device.h"
#include "ops/nn/onednn.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <unordered_map>
#include <vector>

#include <dlfcn.h>
#include <sys/stat.h>

#include "engine/engine.h"
#include "op/registry.h"

namespace loom {
namespace device {
namespace {

constexpr const char *kPluginFile = "libloom_cuda.so";

// ------------------------------------------------------------ host table
const ParamValue *find_param(const void *params, const char *name, ParamType a, ParamType b) {
  if (!params || !name) return nullptr;
  const Params &p = *static_cast<const Params *>(params);
  const auto &defs = p.op().params;
  for (const ParamDef &d : defs) {
    if (d.name != name) continue;
    if (d.type != a && d.type != b) return nullptr;
    const ParamValue &v = p.get(name);
    return v.none ? nullptr : &v;
  }
  return nullptr;
}

int32_t host_param_int(const void *params, const char *name, int64_t *out) {
  const ParamValue *v = find_param(params, name, ParamType::Int, ParamType::Bool);
  if (!v) v = find_param(params, name, ParamType::DType, ParamType::DType);
  if (!v || !out) return 1;
  *out = v->i;
  return 0;
}

int32_t host_param_float(const void *params, const char *name, double *out) {
  const ParamValue *v = find_param(params, name, ParamType::Float, ParamType::Float);
  if (!v || !out) return 1;
  *out = v->f;
  return 0;
}

int32_t host_param_tuple(const void *params, const char *name, const int64_t **values,
                         int32_t *count) {
  const ParamValue *v = find_param(params, name, ParamType::Tuple, ParamType::Tuple);
  if (!v || !values || !count) return 1;
  *values = v->tuple.data();
  *count = static_cast<int32_t>(v->tuple.size());
  return 0;
}

int32_t host_param_string(const void *params, const char *name, const char **out) {
  const ParamValue *v = find_param(params, name, ParamType::String, ParamType::Enum);
  if (v && out) {
    *out = v->s.c_str();
    return 0;
  }
  // A list of floats (ParamType::Floats, e.g. multi_sgd_update's lrs) as its values
  // joined by commas, each printed exactly; valid until this thread's next call.
  v = find_param(params, name, ParamType::Floats, ParamType::Floats);
  if (!v || !out) return 1;
  thread_local std::string text;
  text.clear();
  char buf[40];
  for (size_t k = 0; k < v->floats.size(); ++k) {
    std::snprintf(buf, sizeof buf, "%s%.17g", k ? "," : "", v->floats[k]);
    text += buf;
  }
  *out = text.c_str();
  return 0;
}

TBlob host_blob(const loom_backend_tensor &t) {
  TBlob b;
  b.dptr = t.data;
  b.dtype = t.dtype;
  b.shape.ndim = t.ndim;
  for (int32_t k = 0; k < t.ndim && k < LOOM_MAX_NDIM; ++k) b.shape.d[k] = t.shape[k];
  return b;  // b.ctx: cpu(0)
}

int32_t host_run_on_cpu(const loom_kernel_call *c, char *error, size_t error_len) {
  try {
    LOOM_CHECK(c && c->op && c->params, LOOM_ERR_INVALID_ARGUMENT,
               "run_on_cpu: the call, its op name and its params must be set");
    const OpDef &op = Registry::get().lookup(c->op);
    const Params &params = *static_cast<const Params *>(c->params);
    LOOM_CHECK(&params.op() == &op, LOOM_ERR_INVALID_ARGUMENT, "run_on_cpu: params of ",
               params.op().name, " given for ", op.name);
    OpContext octx;
    octx.is_train = c->is_train != 0;
    octx.temp = c->workspace;
    octx.temp_bytes = c->workspace_bytes;
    octx.rng_key = c->rng_key;
    octx.rng_stream = c->rng_stream;
    BlobList in, out;
    for (int32_t i = 0; i < c->num_inputs; ++i) in.push_back(host_blob(c->inputs[i]));
    for (int32_t i = 0; i < c->num_outputs; ++i) out.push_back(host_blob(c->outputs[i]));
    if (!c->backward) {
      op.compute(octx, params, in, out);
    } else {
      LOOM_CHECK(op.backward, LOOM_ERR_INVALID_ARGUMENT, op.name, " has no gradient");
      int32_t nfi = c->num_fwd_inputs, nfo = c->num_fwd_outputs;
      LOOM_CHECK(nfi >= 0 && nfo >= 0 && nfi + 2 * nfo == c->num_inputs && c->req,
                 LOOM_ERR_INVALID_ARGUMENT, "run_on_cpu: ", op.name,
                 " gradient call with inconsistent counts");
      BlobList fi(in.begin(), in.begin() + nfi), fo(in.begin() + nfi, in.begin() + nfi + nfo),
          og(in.begin() + nfi + nfo, in.end());
      ReqList req(c->req, c->req + c->num_outputs);
      op.backward(octx, params, fi, fo, og, out, req);
    }
    return 0;
  } catch (const std::exception &e) {
    if (error && error_len) std::snprintf(error, error_len, "%s", e.what());
    return 1;
  }
}

const loom_backend_host kHost = {LOOM_BACKEND_ABI_VERSION, LOOM_ABI_VERSION,
                                 host_param_int,           host_param_float,
                                 host_param_tuple,         host_param_string,
                                 host_run_on_cpu};

// ------------------------------------------------------------ loading
struct State {
  std::mutex mu;
  bool searched = false;
  std::atomic<Plugin *> plugin{nullptr};  // never freed: kernels may run until exit
  std::string why;                        // what the search tried, when it found nothing
  std::mutex kernels_mu;
  std::unordered_map<std::string, loom_kernel_fn> kernels[2];
  // One compute stream per device, created on first use, never destroyed.
  std::mutex streams_mu;
  std::atomic<void *> compute[kMaxGpuDevices] = {};
};

State &state() {
  static State *s = new State;
  return *s;
}

bool file_exists(const std::string &p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}

// The folder libloom itself was loaded from.
std::string own_folder() {
  Dl_info info{};
  if (!dladdr(reinterpret_cast<void *>(&own_folder), &info) || !info.dli_fname) return "";
  std::string f = info.dli_fname;
  size_t slash = f.rfind('/');
  return slash == std::string::npos ? "." : f.substr(0, slash);
}

std::string plugin_error(const loom_backend *t) {
  const char *m = t && t->last_error ? t->last_error() : nullptr;
  return m && *m ? m : "no message";
}

// Opens one candidate. Returns the plugin, or null with *why saying what went wrong.
Plugin *try_open(const std::string &file, std::string *why) {
  dlerror();
  void *h = dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char *e = dlerror();
    *why = e ? e : "dlopen failed";
    return nullptr;
  }
  auto open = reinterpret_cast<loom_backend_open_fn>(dlsym(h, "loom_backend_open"));
  if (!open) {
    *why = "it does not export loom_backend_open, so it is not a Loom backend";
    dlclose(h);
    return nullptr;
  }
  std::string where = file;
  Dl_info info{};
  if (dladdr(reinterpret_cast<void *>(open), &info) && info.dli_fname) where = info.dli_fname;
  // From here on the library stays loaded: its open may have started threads.
  const loom_backend *t = nullptr;
  int32_t rc = open(&kHost, &t);
  if (t && t->abi_version != LOOM_BACKEND_ABI_VERSION) {
    *why = where + " implements backend interface version " + std::to_string(t->abi_version) +
           ", but this libloom implements version " + std::to_string(LOOM_BACKEND_ABI_VERSION) +
           "; use the plugin built with this Loom";
    return nullptr;
  }
  if (rc != 0 || !t) {
    *why = where + " could not start (code " + std::to_string(rc) + "): " + plugin_error(t);
    return nullptr;
  }
  if (t->dev_type != LOOM_DEVICE_GPU) {
    *why = where + " serves device type " + std::to_string(t->dev_type) + ", not gpu (2)";
    return nullptr;
  }
  int32_t count = 0;
  if (t->device_count(&count) != 0) {
    *why = where + " could not count its devices: " + plugin_error(t);
    return nullptr;
  }
  auto *p = new Plugin;
  p->table = t;
  p->path = where;
  p->count = count < 0 ? 0 : count;
  return p;
}

void search_locked(State &s) {
  s.searched = true;
  const char *env = std::getenv("LOOM_CUDA_LIBRARY");
  std::string why;
  if (env && *env) {
    if (Plugin *p = try_open(env, &why)) {
      s.plugin.store(p, std::memory_order_release);
      return;
    }
    s.why = std::string("LOOM_CUDA_LIBRARY=") + env + ": " + why;
    return;
  }
  std::string tried;
  std::string beside = own_folder() + "/" + kPluginFile;
  if (file_exists(beside)) {
    if (Plugin *p = try_open(beside, &why)) {
      s.plugin.store(p, std::memory_order_release);
      return;
    }
    tried = beside + " (" + why + ")";
  } else {
    tried = beside + " (no such file)";
  }
  if (Plugin *p = try_open(kPluginFile, &why)) {
    s.plugin.store(p, std::memory_order_release);
    return;
  }
  s.why = "looked for " + tried + " and for " + kPluginFile + " on the library search path (" +
          why + "). Use a Loom build with the CUDA backend, or set LOOM_CUDA_LIBRARY to the "
          "plugin's path";
}

// ------------------------------------------------------------ streams
// The calling thread's copy stream and event per device, destroyed with the thread.
struct ThreadStreams {
  std::vector<void *> streams, events;
  ~ThreadStreams() {
    const Plugin *p = state().plugin.load(std::memory_order_acquire);
    if (!p) return;
    for (size_t i = 0; i < streams.size(); ++i)
      if (streams[i]) p->table->stream_destroy(static_cast<int32_t>(i), streams[i]);
    for (size_t i = 0; i < events.size(); ++i)
      if (events[i]) p->table->event_destroy(static_cast<int32_t>(i), events[i]);
  }
};
thread_local ThreadStreams t_streams;

// The calling thread's handle for gpu(dev) in `v`, made by `create` on first use.
void *per_thread(const Plugin &p, std::vector<void *> &v, int32_t dev,
                 int32_t (*create)(int32_t, void **), const char *what) {
  if (v.size() < static_cast<size_t>(p.count)) v.resize(static_cast<size_t>(p.count), nullptr);
  if (!v[dev])
    p.check(create(dev, &v[dev]), std::string("creating ") + what + " on gpu(" +
                                      std::to_string(dev) + ")");
  return v[dev];
}

// The calling thread's event on gpu(dev).
void *thread_event(const Plugin &p, int32_t dev) {
  return per_thread(p, t_streams.events, dev, p.table->event_create, "an event");
}

// Work enqueued on `s` from now on waits for the compute work already
// enqueued on gpu(dev).
void after_compute(const Plugin &p, int32_t dev, void *s) {
  void *c = state().compute[dev].load(std::memory_order_acquire);
  if (!c) return;  // no compute work was ever enqueued there
  void *ev = thread_event(p, dev);
  p.check(p.table->event_record(dev, ev, c), "recording an event on gpu(" + std::to_string(dev) + ")");
  p.check(p.table->stream_wait_event(dev, s, ev),
          "ordering a copy after gpu(" + std::to_string(dev) + ")'s kernels");
}

void sync(const Plugin &p, int32_t dev, void *s, const char *what) {
  p.check(p.table->stream_sync(dev, s),
          std::string(what) + " on gpu(" + std::to_string(dev) + ") failed");
}

}  // namespace

void Plugin::check(int32_t rc, const std::string &what, loom_status status) const {
  if (rc != 0) fail(status, what, ": ", plugin_error(table));
}

std::string Plugin::describe() const {
  return std::string("'") + table->name + "' backend from " + path + " (" +
         std::to_string(count) + " device" + (count == 1 ? "" : "s") + ")";
}

const Plugin *gpu() {
  State &s = state();
  if (Plugin *p = s.plugin.load(std::memory_order_acquire)) return p;
  std::lock_guard<std::mutex> lk(s.mu);
  if (!s.searched) search_locked(s);
  return s.plugin.load(std::memory_order_acquire);
}

std::string why_unavailable() {
  if (gpu()) return "";
  std::lock_guard<std::mutex> lk(state().mu);
  return state().why;
}

void load(const std::string &path) {
  LOOM_CHECK(!path.empty(), LOOM_ERR_INVALID_ARGUMENT, "backend_load: the path is empty");
  State &s = state();
  std::lock_guard<std::mutex> lk(s.mu);
  std::string why;
  if (Plugin *cur = s.plugin.load(std::memory_order_acquire)) {
    char *want = ::realpath(path.c_str(), nullptr);
    char *have = ::realpath(cur->path.c_str(), nullptr);
    bool same = want && have && std::string(want) == have;
    std::free(want);
    std::free(have);
    LOOM_CHECK(same, LOOM_ERR_INVALID_ARGUMENT, "backend_load: ", path,
               ": a GPU backend is already loaded in this process, the ", cur->describe());
    return;
  }
  Plugin *p = try_open(path, &why);
  if (!p) fail(LOOM_ERR_BACKEND_UNAVAILABLE, "backend_load: cannot use ", path, ": ", why);
  s.searched = true;
  s.plugin.store(p, std::memory_order_release);
}

const Plugin &require(const Context &ctx) {
  const Plugin *p = gpu();
  if (!p)
    fail(LOOM_ERR_BACKEND_UNAVAILABLE, "context ", ctx.str(),
         " asked for, but no GPU backend is available in this process: ", why_unavailable());
  LOOM_CHECK(ctx.dev_id >= 0 && ctx.dev_id < p->count, LOOM_ERR_INVALID_ARGUMENT, "context ",
             ctx.str(), " asked for, but the ", p->describe(), " has ",
             p->count == 0 ? "none" : "gpu(0) to gpu(" + std::to_string(p->count - 1) + ")");
  LOOM_CHECK(ctx.dev_id < kMaxGpuDevices, LOOM_ERR_INVALID_ARGUMENT, "context ", ctx.str(),
             ": Loom supports gpu(0) to gpu(", kMaxGpuDevices - 1, ")");
  return *p;
}

int32_t device_count(int32_t dev_type) {
  if (dev_type == LOOM_DEVICE_CPU) return 1;
  if (dev_type == LOOM_DEVICE_GPU) {
    const Plugin *p = gpu();
    return p ? p->count : 0;
  }
  fail(LOOM_ERR_INVALID_ARGUMENT, "unknown device type ", dev_type, " (1 = cpu, 2 = gpu)");
}

const char *describe(int32_t dev_type) {
  if (dev_type == LOOM_DEVICE_CPU) {
    // One text per kernel set, built once; the set can change at run time.
    static const std::string *texts[2] = {nullptr, nullptr};
    static std::mutex cpu_mu;
    int k = static_cast<int>(cpu_kernels());
    std::lock_guard<std::mutex> lk(cpu_mu);
    if (!texts[k]) texts[k] = new std::string(std::string("cpu: built in; kernels: ") + cpu_kernels_describe());
    return texts[k]->c_str();
  }
  LOOM_CHECK(dev_type == LOOM_DEVICE_GPU, LOOM_ERR_INVALID_ARGUMENT, "unknown device type ",
             dev_type, " (1 = cpu, 2 = gpu)");
  // Built once per state and kept for the process lifetime.
  static std::mutex mu;
  static std::string *text = nullptr;
  static const Plugin *text_for = nullptr;
  const Plugin *p = gpu();
  std::lock_guard<std::mutex> lk(mu);
  if (text && text_for == p) return text->c_str();
  std::string d;
  if (!p) {
    d = "gpu: unavailable; " + why_unavailable();
  } else {
    d = "gpu: " + p->describe();
    for (int32_t i = 0; i < p->count; ++i) {
      char name[256] = {0};
      if (p->table->device_name(i, name, sizeof name) != 0) std::snprintf(name, sizeof name, "?");
      name[sizeof name - 1] = 0;
      d += std::string(i ? ", " : ": ") + "gpu(" + std::to_string(i) + ") " + name;
    }
  }
  text = new std::string(d);  // the previous text stays valid for its holders
  text_for = p;
  return text->c_str();
}

bool async_mode() {
  static const bool on = [] {
    const char *v = std::getenv("LOOM_GPU_ASYNC");
    if (v && std::string(v) == "0") return false;
    return !Engine::get().naive();
  }();
  return on;
}

void *compute_stream(int32_t dev) {
  State &st = state();
  if (void *c = st.compute[dev].load(std::memory_order_acquire)) return c;
  const Plugin &p = require(Context{LOOM_DEVICE_GPU, dev});
  std::lock_guard<std::mutex> lk(st.streams_mu);
  if (void *c = st.compute[dev].load(std::memory_order_acquire)) return c;
  void *c = nullptr;
  p.check(p.table->stream_create(dev, &c),
          "creating the compute stream of gpu(" + std::to_string(dev) + ")");
  st.compute[dev].store(c, std::memory_order_release);
  return c;
}

namespace {
ErrorPtr sync_compute(const Plugin &p, int32_t dev) {
  void *c = state().compute[dev].load(std::memory_order_acquire);
  if (!c || p.table->stream_sync(dev, c) == 0) return nullptr;
  return std::make_shared<ErrorInfo>(ErrorInfo{
      LOOM_ERR_INTERNAL, "gpu(" + std::to_string(dev) + "): a device operation failed: " +
                             plugin_error(p.table)});
}
}  // namespace

void synchronize(const Context &ctx) {
  if (ctx.dev_type != LOOM_DEVICE_GPU) return;
  const Plugin &p = require(ctx);
  if (ErrorPtr e = sync_compute(p, ctx.dev_id)) {
    Engine::get().report_error(e);
    throw Error(e->status, e->message);
  }
}

ErrorPtr synchronize_all() {
  const Plugin *p = state().plugin.load(std::memory_order_acquire);
  if (!p) return nullptr;
  ErrorPtr first;
  for (int32_t d = 0; d < p->count && d < kMaxGpuDevices; ++d) {
    ErrorPtr e = sync_compute(*p, d);
    if (e && !first) first = e;
  }
  return first;
}

void *stream(int32_t dev) {
  const Plugin &p = require(Context{LOOM_DEVICE_GPU, dev});
  return per_thread(p, t_streams.streams, dev, p.table->stream_create, "a stream");
}

void copy(void *dst, const Context &dst_ctx, const void *src, const Context &src_ctx,
          size_t bytes) {
  if (!bytes) return;
  bool dg = dst_ctx.dev_type == LOOM_DEVICE_GPU, sg = src_ctx.dev_type == LOOM_DEVICE_GPU;
  if (!dg && !sg) {
    if (dst != src) std::memcpy(dst, src, bytes);
    return;
  }
  int32_t dev = dg ? dst_ctx.dev_id : src_ctx.dev_id;
  const Plugin &p = require(Context{LOOM_DEVICE_GPU, dev});
  if (dg && sg) require(src_ctx);
  int32_t kind = dg && sg ? LOOM_COPY_DEVICE_TO_DEVICE
                          : dg ? LOOM_COPY_HOST_TO_DEVICE : LOOM_COPY_DEVICE_TO_HOST;
  void *s = stream(dev);
  if (dg) after_compute(p, dst_ctx.dev_id, s);
  if (sg && !(dg && src_ctx.dev_id == dst_ctx.dev_id)) after_compute(p, src_ctx.dev_id, s);
  p.check(p.table->memcpy_async(dev, dst, dg ? dst_ctx.dev_id : -1, src,
                                sg ? src_ctx.dev_id : -1, bytes, kind, s),
          "copying " + std::to_string(bytes) + " bytes from " + src_ctx.str() + " to " +
              dst_ctx.str());
  sync(p, dev, s, "a copy");
}

void zero(void *dst, const Context &ctx, size_t bytes) {
  if (!bytes) return;
  if (ctx.dev_type != LOOM_DEVICE_GPU) {
    std::memset(dst, 0, bytes);
    return;
  }
  const Plugin &p = require(ctx);
  void *s = compute_stream(ctx.dev_id);
  p.check(p.table->memset_async(ctx.dev_id, dst, 0, bytes, s),
          "zeroing " + std::to_string(bytes) + " bytes on " + ctx.str());
  if (!async_mode()) sync(p, ctx.dev_id, s, "a fill");
}

void *raw_alloc(const Context &ctx, size_t bytes) {
  const Plugin &p = require(ctx);
  void *ptr = nullptr;
  int32_t rc = p.table->malloc(ctx.dev_id, bytes, &ptr);
  if (rc == LOOM_BACKEND_OUT_OF_MEMORY) return nullptr;
  p.check(rc, "allocating " + std::to_string(bytes) + " bytes on " + ctx.str(),
          LOOM_ERR_OUT_OF_MEMORY);
  return ptr;
}

void raw_free(const Context &ctx, void *ptr) {
  if (const Plugin *p = gpu()) p->table->free(ctx.dev_id, ptr);
}

void mem_info(const Context &ctx, size_t *free_bytes, size_t *total_bytes) {
  *free_bytes = *total_bytes = 0;
  const Plugin *p = gpu();
  if (!p || p->table->mem_info(ctx.dev_id, free_bytes, total_bytes) != 0)
    *free_bytes = *total_bytes = 0;
}

namespace {
loom_kernel_fn find_kernel(const Plugin &p, const std::string &op, bool backward) {
  State &s = state();
  std::lock_guard<std::mutex> lk(s.kernels_mu);
  auto &m = s.kernels[backward ? 1 : 0];
  auto it = m.find(op);
  if (it != m.end()) return it->second;
  loom_kernel_fn fn = p.table->find_kernel(op.c_str(), backward ? 1 : 0);
  m.emplace(op, fn);
  return fn;
}
}  // namespace

void require_kernel(const OpDef &op, const Context &ctx, bool backward) {
  if (ctx.dev_type != LOOM_DEVICE_GPU || op.any_context) return;
  const Plugin &p = require(ctx);
  if (!find_kernel(p, op.name, backward))
    fail(LOOM_ERR_BACKEND_UNAVAILABLE, op.name, ": no ", backward ? "gradient " : "",
         "kernel for ", ctx.str(), " in the ", p.describe(),
         "; run it on cpu() (copy the inputs there), or use a backend that implements it");
}

void launch(const OpDef &op, const OpContext &octx, const Params &params, const TBlob *in,
            int32_t nin, const TBlob *out, int32_t nout, bool backward, int32_t num_fwd_in,
            int32_t num_fwd_out, const int32_t *req) {
  const Plugin &p = require(octx.ctx);
  loom_kernel_fn fn = find_kernel(p, op.name, backward);
  LOOM_CHECK(fn, LOOM_ERR_BACKEND_UNAVAILABLE, op.name, ": no kernel for ", octx.ctx.str());
  SmallVec<loom_backend_tensor, 8> ti(static_cast<size_t>(nin)), to(static_cast<size_t>(nout));
  for (int32_t i = 0; i < nin; ++i)
    ti[i] = loom_backend_tensor{in[i].dptr, in[i].dtype, in[i].shape.ndim, in[i].shape.d};
  for (int32_t i = 0; i < nout; ++i)
    to[i] = loom_backend_tensor{out[i].dptr, out[i].dtype, out[i].shape.ndim, out[i].shape.d};
  loom_kernel_call c{};
  c.op = op.name.c_str();
  c.backward = backward ? 1 : 0;
  c.dev_id = octx.ctx.dev_id;
  c.stream = compute_stream(octx.ctx.dev_id);
  c.inputs = ti.data();
  c.num_inputs = nin;
  c.num_fwd_inputs = num_fwd_in;
  c.num_fwd_outputs = num_fwd_out;
  c.outputs = to.data();
  c.num_outputs = nout;
  c.req = req;
  c.workspace = octx.temp;
  c.workspace_bytes = octx.temp_bytes;
  c.is_train = octx.is_train ? 1 : 0;
  c.rng_key = octx.rng_key;
  c.rng_stream = octx.rng_stream;
  c.params = &params;
  p.check(fn(&c), op.name + (backward ? " (gradient)" : "") + " failed on " + octx.ctx.str());
  if (!async_mode()) sync(p, c.dev_id, c.stream, op.name.c_str());
}

}  // namespace device

void run_forward(const OpDef &op, const OpContext &octx, const Params &p, const BlobList &in,
                 const BlobList &out) {
  if (octx.ctx.dev_type != LOOM_DEVICE_GPU || op.any_context) {
    op.compute(octx, p, in, out);
    return;
  }
  device::launch(op, octx, p, in.data(), static_cast<int32_t>(in.size()), out.data(),
                 static_cast<int32_t>(out.size()), false, static_cast<int32_t>(in.size()),
                 static_cast<int32_t>(out.size()), nullptr);
}

void run_backward(const OpDef &op, const OpContext &octx, const Params &p, const BlobList &in,
                  const BlobList &out, const BlobList &out_grad, const BlobList &in_grad,
                  const ReqList &req) {
  bool on_device = octx.ctx.dev_type == LOOM_DEVICE_GPU;
  for (const TBlob &b : out_grad) on_device |= b.ctx.dev_type == LOOM_DEVICE_GPU;
  if (!on_device) {
    op.backward(octx, p, in, out, out_grad, in_grad, req);
    return;
  }
  if (op.any_context) {
    // A copy between devices: its gradient is the output gradient copied back.
    for (size_t i = 0; i < in_grad.size() && i < out_grad.size(); ++i) {
      if (req[i] == kNullOp) continue;
      LOOM_CHECK(req[i] == kWriteTo, LOOM_ERR_INVALID_ARGUMENT, op.name,
                 ": adding to a gradient (grad_req add) across devices is not supported");
      device::copy(in_grad[i].dptr, in_grad[i].ctx, out_grad[i].dptr, out_grad[i].ctx,
                   static_cast<size_t>(in_grad[i].size()) * dtype_size(in_grad[i].dtype));
    }
    return;
  }
  SmallVec<TBlob, 8> all;
  for (const TBlob &b : in) all.push_back(b);
  for (const TBlob &b : out) all.push_back(b);
  for (const TBlob &b : out_grad) all.push_back(b);
  device::launch(op, octx, p, all.data(), static_cast<int32_t>(all.size()), in_grad.data(),
                 static_cast<int32_t>(in_grad.size()), true, static_cast<int32_t>(in.size()),
                 static_cast<int32_t>(out.size()), req.data());
}

void check_gpu_context(const Context &ctx) { device::require(ctx); }

}  // namespace loom
