// Operator registry. An operator is declared once, as data: name, doc, typed
// parameters with defaults, inputs and outputs, shape/dtype inference, in-place
// options, temp-space needs and its CPU kernel. Bindings and docs are generated
// from this metadata (loom_op_describe).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/base.h"
#include "common/small_vector.h"
#include "ndarray/ndarray.h"

namespace loom {

using ShapeList = SmallVec<Shape, 3>;
using DTypeList = SmallVec<int32_t, 4>;
using BlobList = SmallVec<TBlob, 4>;

enum class ParamType { Int, Float, Bool, Tuple, String, Enum, DType, Context, Floats };
const char *param_type_name(ParamType t);

struct ParamDef {
  std::string name;
  ParamType type;
  std::string default_value;  // textual; "None" for an optional value
  bool required = false;
  std::string doc;
  std::vector<std::string> choices;  // for Enum
};

struct ParamValue {
  bool none = true;
  int64_t i = 0;
  double f = 0;
  std::vector<int64_t> tuple;
  std::vector<double> floats;  // ParamType::Floats
  std::string s;
  Context ctx;
};

struct OpDef;

// How a backward kernel stores an input's gradient.
enum GradReq : int32_t { kNullOp = 0, kWriteTo = 1, kAddTo = 2 };
using ReqList = SmallVec<int32_t, 4>;

// Parameters of one call, parsed and checked against the op's schema.
class Params {
 public:
  Params(const OpDef &op, const char *const *keys, const char *const *values, int32_t n);
  const OpDef &op() const { return *op_; }
  bool has(const char *name) const { return !get(name).none; }
  int64_t i(const char *name) const { return get(name).i; }
  double f(const char *name) const { return get(name).f; }
  bool b(const char *name) const { return get(name).i != 0; }
  const std::vector<int64_t> &tuple(const char *name) const { return get(name).tuple; }
  const std::vector<double> &floats(const char *name) const { return get(name).floats; }
  const std::string &s(const char *name) const { return get(name).s; }
  int32_t dtype(const char *name) const { return static_cast<int32_t>(get(name).i); }
  const Context &ctx(const char *name) const { return get(name).ctx; }
  const ParamValue &get(const char *name) const;

 private:
  const OpDef *op_;
  std::vector<ParamValue> values_;  // one per ParamDef, in schema order
};

// What a kernel receives besides its arrays.
struct OpContext {
  Context ctx;
  bool is_train = false;  // training mode (autograd's train/predict switch)
  void *temp = nullptr;  // work memory an executor planned (OpDef::temp_bytes); else null
  size_t temp_bytes = 0;
  uint64_t rng_key = 0;  // random stream, for random ops
  uint64_t rng_stream = 0;
  // A training executor's BatchNorm step that took in the relu reading its output:
  // the op applies MXNet's relu (NaN passes) to its output as it writes it.
  bool relu_after = false;
  // A training executor's Convolution step marked for Winograd (LOOM_CONV_WINOGRAD=1
  // at bind, or the node's __winograd__ attribute): its forward pass and its data
  // gradient run Loom's Winograd kernels where they take the convolution
  // (loom_winograd_runs), its weight gradient where loom_winograd_weight_gradient_runs.
  bool winograd = false;
};

using InferFn = std::function<void(const Params &, const ShapeList &in_shapes,
                                   const DTypeList &in_dtypes,
                                   ShapeList &out_shapes,
                                   DTypeList &out_dtypes)>;
using ComputeFn = std::function<void(const OpContext &, const Params &,
                                     const BlobList &in, const BlobList &out)>;
// Gradients of the inputs from the inputs, the outputs and the outputs'
// gradients. `req[i]` says whether in_grad[i] is wanted (and if so written or
// added to); kernels must honour kNullOp and may be given kWriteTo only.
using BackwardFn = std::function<void(const OpContext &, const Params &, const BlobList &in,
                                      const BlobList &out, const BlobList &out_grad,
                                      const BlobList &in_grad, const ReqList &req)>;

// Fills input shapes that can be deduced from the known ones and from the
// outputs (weights from data, labels from data, an operand from the result).
// `known[i]` says whether in[i] is set; the hook sets it for what it fills.
using InferInputsFn = std::function<void(const Params &, ShapeList &in, SmallVec<char, 4> &known,
                                         const ShapeList &out, const SmallVec<char, 4> &out_known)>;

// What a backward kernel reads besides the output gradients (memory planning
// may reuse what it does not read as soon as the forward pass is done with it).
enum BackwardUses : uint8_t { kBwdNone = 0, kBwdInputs = 1, kBwdOutputs = 2, kBwdAll = 3 };

struct OpDef {
  std::string name;
  std::string doc;
  std::vector<std::string> inputs;
  bool variadic = false;  // any number (>= 1) of inputs named inputs[0]
  std::vector<std::string> outputs{"out"};
  int visible_outputs = -1;  // outputs a symbol exposes (-1: all); the rest are internal
  std::function<int(const Params &)> num_visible;  // when that depends on parameters
  std::function<int(const Params &)> num_outputs;  // when it depends on parameters
  std::function<int(const Params &)> num_inputs;   // when it depends on parameters (e.g. no_bias)
  int optional_inputs = 0;  // trailing inputs that some parameter values leave out
  BackwardFn backward;                             // empty: the op has no gradient
  std::vector<ParamDef> params;
  InferFn infer;
  InferInputsFn infer_inputs;  // optional; symbolic partial inference only
  ComputeFn compute;
  // The last num_aux inputs are auxiliary states: not differentiated, and
  // updated in place by the forward pass in training (BatchNorm's moving stats).
  int num_aux = 0;
  uint8_t backward_uses = kBwdAll;
  std::vector<std::pair<int, int>> inplace;  // (input, output) that may share memory
  // (output gradient, input gradient) that may share memory in a bound executor's
  // backward pass: the kernel reads each element of the one before writing it in
  // the other, at the same index.
  std::vector<std::pair<int, int>> backward_inplace;
  // Work memory for the kernel (ctx.temp) that a bound executor plans with the
  // graph's memory, from the inputs' shapes and dtypes: it shares buffers with
  // values that are dead while the step runs. Imperative calls get none (ctx.temp
  // is null) and the kernel uses its own buffers.
  std::function<size_t(const Params &, const ShapeList &, const DTypeList &)> temp_bytes;
  // The same for the backward kernel, knowing which input gradients are wanted.
  std::function<size_t(const Params &, const ShapeList &, const DTypeList &, const ReqList &)> backward_temp_bytes;
  bool random = false;       // draws from the seeded generator
  std::function<bool(const Params &)> random_when;  // draws for some parameters only
  bool any_context = false;  // inputs and outputs may live on different devices
  bool float_only = false;   // rejects integer inputs
  // Creation ops (no inputs) place their output with the "ctx" parameter.

  // Whether a call with these parameters draws from the seeded generator.
  bool draws(const Params &p) const { return random || (random_when && random_when(p)); }
  int output_count(const Params &p) const {
    return num_outputs ? num_outputs(p) : static_cast<int>(outputs.size());
  }
  // Outputs a symbol exposes; the others are internal (what backward reads).
  int visible_count(const Params &p) const {
    if (num_visible) return num_visible(p);
    return visible_outputs >= 0 ? visible_outputs : output_count(p);
  }
  const std::string &describe() const;

  // Builder helpers used by the registration files.
  OpDef &set_doc(const std::string &d) { doc = d; return *this; }
  OpDef &set_inputs(std::vector<std::string> in) { inputs = std::move(in); return *this; }
  OpDef &set_variadic() { variadic = true; return *this; }
  OpDef &param(const std::string &n, ParamType t, const std::string &def, const std::string &d,
               std::vector<std::string> choices = {}) {
    params.push_back(ParamDef{n, t, def, false, d, std::move(choices)});
    return *this;
  }
  OpDef &required(const std::string &n, ParamType t, const std::string &d) {
    params.push_back(ParamDef{n, t, "", true, d, {}});
    return *this;
  }
  OpDef &set_infer(InferFn f) { infer = std::move(f); return *this; }
  OpDef &set_compute(ComputeFn f) { compute = std::move(f); return *this; }
  OpDef &set_inplace(std::vector<std::pair<int, int>> v) { inplace = std::move(v); return *this; }
  OpDef &set_backward_inplace(std::vector<std::pair<int, int>> v) { backward_inplace = std::move(v); return *this; }
  OpDef &set_backward(BackwardFn f) { backward = std::move(f); return *this; }
  OpDef &set_infer_inputs(InferInputsFn f) { infer_inputs = std::move(f); return *this; }
  OpDef &set_backward_uses(uint8_t u) { backward_uses = u; return *this; }
  int input_count(const Params &p) const {
    return num_inputs ? num_inputs(p) : static_cast<int>(inputs.size());
  }

 private:
  mutable std::once_flag describe_once_;
  mutable std::string describe_;
};

class Registry {
 public:
  static Registry &get();
  OpDef &add(const std::string &name);
  const OpDef *find(const std::string &name) const;
  // Throws LOOM_ERR_NOT_FOUND naming close matches.
  const OpDef &lookup(const std::string &name) const;
  const std::vector<const OpDef *> &list() const;
  // Whether `p` is one of the registered ops (a binary search: every ABI call
  // that takes an op handle checks it).
  bool contains(const void *p) const;
  // The name MXNet 1.9 registers for `op` (what symbol JSON is written with).
  const std::string &mxnet_name(const OpDef &op) const;

 private:
  std::map<std::string, std::unique_ptr<OpDef>> ops_;
  // MXNet's names (op/aliases.cc), filled on first use, after every op is registered.
  mutable std::once_flag aliases_once_;
  mutable std::map<std::string, const OpDef *> aliases_;
  mutable std::map<const OpDef *, std::string> writer_names_;
  mutable std::vector<const OpDef *> sorted_;
  mutable std::once_flag sorted_once_;
};

#define LOOM_CONCAT_(a, b) a##b
#define LOOM_CONCAT(a, b) LOOM_CONCAT_(a, b)
// Registers an op at load time: LOOM_REGISTER_OP(add).set_doc(...)...;
#define LOOM_REGISTER_OP(opname)                                  \
  static ::loom::OpDef &LOOM_CONCAT(loom_op_reg_, __COUNTER__) = \
      ::loom::Registry::get().add(#opname)

// Run an op's kernel on the device octx.ctx names: the CPU kernel, or the GPU
// backend plugin's (backend/device.cc). Ops marked any_context (copy) run
// their own code everywhere.
void run_forward(const OpDef &op, const OpContext &octx, const Params &p, const BlobList &in,
                 const BlobList &out);
void run_backward(const OpDef &op, const OpContext &octx, const Params &p, const BlobList &in,
                  const BlobList &out, const BlobList &out_grad, const BlobList &in_grad,
                  const ReqList &req);

// Helpers shared by inference functions.
[[noreturn]] void shape_fail(const Params &p, const std::string &what);
int32_t same_dtype(const Params &p, const DTypeList &in_dtypes);

}  // namespace loom
