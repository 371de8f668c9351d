#include "imperative/imperative.h"

#include "imperative/autograd.h"

#include "backend/device.h"

#include <atomic>
#include <memory>

namespace loom {

namespace {

// The name of output j: the op's name for it, else "out<j>" (ops whose outputs
// repeat a group, such as multi_sgd_mom_update's weight, mom, weight, ...).
std::string output_name(const OpDef &op, int j) {
  if (op.outputs.empty()) return "out" + std::to_string(j);
  if (op.variadic && op.num_outputs) return op.outputs[static_cast<size_t>(j) % op.outputs.size()];
  return j < static_cast<int>(op.outputs.size()) ? op.outputs[j] : "out" + std::to_string(j);
}
std::atomic<uint64_t> g_seed{0x5EEDu};
std::atomic<uint64_t> g_stream{0};

// Below this many output elements a ready op runs on the calling thread.
constexpr int64_t kInlineElements = 1 << 14;

bool is_set(const NDArray &a) { return a.chunk() != nullptr; }

thread_local bool t_run_inline = false;
}  // namespace

RunInlineScope::RunInlineScope() : prev_(t_run_inline) { t_run_inline = true; }
RunInlineScope::~RunInlineScope() { t_run_inline = prev_; }

void random_seed(uint64_t seed) {
  g_seed.store(seed);
  g_stream.store(0);
}

void random_state(uint64_t *seed, uint64_t *stream) {
  *seed = g_seed.load();
  *stream = g_stream.load();
}

void set_random_state(uint64_t seed, uint64_t stream) {
  g_seed.store(seed);
  g_stream.store(stream);
}

void next_random_stream(uint64_t *key, uint64_t *stream) {
  *key = g_seed.load();
  *stream = g_stream.fetch_add(1);
}

namespace {
// Everything a pushed call needs, in one allocation shared by its closure.
struct Call {
  Call(const OpDef &op, const char *const *keys, const char *const *values, int32_t n)
      : op(&op), params(op, keys, values, n) {}
  const OpDef *op;
  Params params;  // in the call's own allocation; autograd's record takes a copy
  OpContext ctx;
  SmallVec<NDArray, 3> arrays;  // inputs, then outputs
  size_t nin = 0;
  uint64_t seq = 0;  // this process's imperative calls, numbered from 1
};

std::atomic<uint64_t> g_calls{0};

// A kernel's failure surfaces at a later wait, far from the call: say which call it
// was, on which arrays, so the user can find it.
std::string async_context(const Call &c) {
  std::string s = " [raised by imperative call #" + std::to_string(c.seq) + ", " + c.op->name + "(";
  for (size_t i = 0; i < c.arrays.size(); ++i) {
    if (i == c.nin) s += ") -> (";
    else if (i) s += ", ";
    s += c.arrays[i].shape().str() + " " + dtype_name(c.arrays[i].dtype());
  }
  return s + "); ops run asynchronously, so this is reported at a later wait: LOOM_ENGINE=naive runs each op "
             "where it is called]";
}
}  // namespace

void invoke(const OpDef &op, const ArrayList &inputs, ArrayList &outputs,
            const char *const *keys, const char *const *values, int32_t num_params) {
  auto call = std::make_shared<Call>(op, keys, values, num_params);
  const Params *params = &call->params;
  const size_t nin = inputs.size();
  if (op.variadic) {
    LOOM_CHECK(nin >= 1, LOOM_ERR_INVALID_ARGUMENT, op.name, ": expects at least one input (",
               op.inputs[0], "), got none");
  } else if (static_cast<int>(nin) != op.input_count(*params)) {
    size_t want = static_cast<size_t>(op.input_count(*params));
    std::string names;
    for (size_t i = 0; i < want && i < op.inputs.size(); ++i)
      names += (names.empty() ? "" : ", ") + op.inputs[i];
    fail(LOOM_ERR_INVALID_ARGUMENT, op.name, ": expects ", want, " input", want == 1 ? "" : "s",
         names.empty() ? "" : " (" + names + ")", ", got ", nin);
  }
  int nout = op.output_count(*params);
  LOOM_CHECK(static_cast<int>(outputs.size()) == nout, LOOM_ERR_INVALID_ARGUMENT, op.name,
             ": produces ", nout, " output", nout == 1 ? "" : "s", ", but ", outputs.size(),
             " output slots were given");

  ShapeList in_shapes(nin);
  DTypeList in_dtypes(nin);
  Context ctx;
  for (size_t i = 0; i < nin; ++i) {
    const NDArray &a = inputs[i];
    const std::string &iname = op.variadic ? op.inputs[0] : op.inputs[i];
    in_shapes[i] = a.shape();
    in_dtypes[i] = a.dtype();
    LOOM_CHECK(dtype_computable(a.dtype()), LOOM_ERR_DTYPE, op.name, ": input ", i, " (", iname,
               ") has dtype ", dtype_name(a.dtype()), ", which Loom stores but does not compute with");
    LOOM_CHECK(!op.float_only || dtype_is_float(a.dtype()), LOOM_ERR_DTYPE, op.name, ": input ", i,
               " (", iname, ") has dtype ", dtype_name(a.dtype()),
               "; this op needs float32 or float64");
    if (i == 0) {
      ctx = a.ctx();
    } else if (!op.any_context && a.ctx() != ctx) {
      fail(LOOM_ERR_INVALID_ARGUMENT, op.name, ": input ", i, " (", iname, ") is on ",
           a.ctx().str(), " but input 0 is on ", ctx.str(), "; copy it first");
    }
  }
  if (nin == 0) {
    bool has_ctx_param = false;
    for (auto &p : op.params) has_ctx_param |= p.name == "ctx";
    if (has_ctx_param) ctx = params->ctx("ctx");
    for (auto &o : outputs)
      if (is_set(o)) {
        ctx = o.ctx();
        break;
      }
  }
  check_context(ctx);
  device::require_kernel(op, ctx, false);

  ShapeList out_shapes(nout);
  DTypeList out_dtypes(nout, nin ? in_dtypes[0] : kFloat32);
  op.infer(*params, in_shapes, in_dtypes, out_shapes, out_dtypes);

  for (int j = 0; j < nout; ++j) {
    NDArray &o = outputs[j];
    if (!is_set(o)) continue;
    const std::string oname = output_name(op, j);
    LOOM_CHECK(o.shape() == out_shapes[j] && o.dtype() == out_dtypes[j], LOOM_ERR_SHAPE, op.name,
               ": output ", j, " (", oname, ") has shape ", o.shape().str(), " ",
               dtype_name(o.dtype()), ", but the op produces ", out_shapes[j].str(), " ",
               dtype_name(out_dtypes[j]));
    LOOM_CHECK(op.any_context || o.ctx() == ctx, LOOM_ERR_INVALID_ARGUMENT, op.name, ": output ",
               j, " (", oname, ") is on ", o.ctx().str(), " but the inputs are on ", ctx.str());
  }
  // Two outputs writing the same bytes would race, or one result would be lost
  // (an optimizer's weight given again as its state, one weight given twice).
  for (int j = 0; j < nout; ++j)
    for (int k = j + 1; k < nout; ++k) {
      const NDArray &a = outputs[j], &b = outputs[k];
      if (!is_set(a) || !is_set(b) || a.var().get() != b.var().get()) continue;
      const size_t ab = a.offset(), ae = ab + static_cast<size_t>(a.size()) * dtype_size(a.dtype());
      const size_t bb = b.offset(), be = bb + static_cast<size_t>(b.size()) * dtype_size(b.dtype());
      LOOM_CHECK(ae <= bb || be <= ab, LOOM_ERR_INVALID_ARGUMENT, op.name, ": outputs ", j, " (",
                 output_name(op, j), ") and ", k, " (", output_name(op, k),
                 ") are the same array or overlap; give each output its own");
    }
  // An op that may cross devices places new outputs with its ctx parameter.
  Context out_ctx = ctx;
  if (op.any_context && nin > 0 && params->has("ctx")) {
    out_ctx = params->ctx("ctx");
    check_context(out_ctx);
  }
  // Nothing can fail past this point except allocation; allocate into a
  // scratch list so the caller's slots stay untouched if it throws.
  ArrayList outs = outputs;
  int64_t work = 0;
  for (int j = 0; j < nout; ++j) {
    if (!is_set(outs[j])) outs[j] = NDArray::empty(out_shapes[j], out_dtypes[j], out_ctx);
    work += outs[j].size();
  }
  for (auto &a : inputs) work = std::max(work, a.size());

  OpContext *opctx = &call->ctx;
  opctx->ctx = ctx;
  opctx->is_train = autograd::is_training();
  if (autograd::is_recording())
    autograd::record(op, std::make_shared<const Params>(call->params), inputs, outs, outputs);
  if (op.draws(*params)) next_random_stream(&opctx->rng_key, &opctx->rng_stream);
  call->arrays.reserve(nin + nout);
  for (const NDArray &a : inputs) call->arrays.push_back(a);
  for (const NDArray &o : outs) call->arrays.push_back(o);
  call->nin = nin;
  call->seq = ++g_calls;

  VarList reads, writes;
  for (size_t i = 0; i < nin; ++i)  // auxiliary states are updated in place
    (i + op.num_aux >= nin && op.num_aux > 0 ? writes : reads).push_back(inputs[i].var());
  for (auto &o : outs) writes.push_back(o.var());

  PushOptions po;
  po.name = op.name.c_str();
  po.allow_inline = t_run_inline || work <= kInlineElements;
  // A copy touching a GPU runs on that GPU's copy worker (the destination's
  // when both are GPUs), so transfers overlap with the device's compute.
  Context run_ctx = ctx;
  if (op.any_context) {
    for (size_t i = call->arrays.size(); i-- > 0 && !po.copy;)
      if (call->arrays[i].ctx().dev_type == LOOM_DEVICE_GPU) {
        run_ctx = call->arrays[i].ctx();
        po.copy = true;
      }
  }
  Engine::get().push(
      [call]() {
        const auto &a = call->arrays;
        BlobList in(call->nin), out(a.size() - call->nin);
        // An input is written only through the engine while this call reads it.
        for (size_t i = 0; i < call->nin; ++i) in[i] = a[i].stable_blob();
        for (size_t i = call->nin; i < a.size(); ++i) out[i - call->nin] = a[i].blob();
        try {
          run_forward(*call->op, call->ctx, call->params, in, out);
        } catch (const Error &e) {
          throw Error(e.status(), e.what() + async_context(*call));
        }
      },
      run_ctx, std::move(reads), std::move(writes), po);
  outputs = std::move(outs);
}

}  // namespace loom
