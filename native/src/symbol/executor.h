// Executor: a symbol bound to arrays. Binding builds one step list (forward
// ops, then the backward pass when any argument wants a gradient), plans the
// memory of every intermediate value, and pushes the steps to the engine on
// Forward/Backward, so independent branches run in parallel.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "imperative/imperative.h"
#include "symbol/symbol.h"

namespace loom {

struct MemoryPlan {
  int64_t planned_bytes = 0;    // intermediate values and scratch, with planning
  int64_t unplanned_bytes = 0;  // the same, one buffer per value
  int64_t allocated_bytes = 0;  // what this executor holds (planned unless LOOM_EXEC_PLAN=0)
  int64_t argument_bytes = 0;   // arguments, gradients and auxiliary states
  int32_t num_values = 0;
  int32_t num_buffers = 0;  // after planning
  int32_t num_steps = 0;
  int32_t num_inplace = 0;
};

// grad_req per argument: kNullOp, kWriteTo or kAddTo.
struct BindSpec {
  Context ctx;
  std::vector<NDArray> args, grads, aux;  // grads[i] empty when grad_req[i] is null
  std::vector<int32_t> grad_req;
  // Prediction fusion and blocked layouts for a binding without gradients
  // (LOOM_EXEC_FUSE=0 turns them off everywhere).
  bool fuse = true;
};

class Executor {
 public:
  // Checks names, counts and shapes against inference, naming what is wrong.
  static std::unique_ptr<Executor> bind(const Symbol &sym, BindSpec spec,
                                        const Executor *share = nullptr);
  // Allocates arguments, gradients and auxiliary states from shapes.
  static std::unique_ptr<Executor> simple_bind(const Symbol &sym, const Context &ctx,
                                               const std::map<std::string, Shape> &shapes,
                                               const std::map<std::string, int32_t> &dtypes,
                                               const std::map<std::string, int32_t> &reqs,
                                               int32_t default_req);
  // Same graph with new input shapes; arrays whose shape is unchanged are
  // shared (parameters, gradients, states) and intermediate buffers reused.
  std::unique_ptr<Executor> reshape(const std::map<std::string, Shape> &shapes) const;

  // Plans without allocating anything.
  static MemoryPlan plan_only(const Symbol &sym, const std::map<std::string, Shape> &shapes,
                              const std::map<std::string, int32_t> &reqs, int32_t default_req,
                              bool for_training);

  // Points argument, auxiliary state or gradient `index` at another array of the
  // same shape, dtype and device, without copying; later passes use it.
  enum class Bound { Argument, AuxState, Gradient };
  void rebind(Bound which, size_t index, const NDArray &array);

  void forward(bool is_train);
  // head_grads: one per output or none (ones).
  void backward(const std::vector<NDArray> &head_grads);

  const std::vector<NDArray> &outputs() const { return outputs_; }
  const BindSpec &spec() const { return spec_; }
  const Symbol &symbol() const { return sym_; }
  const MemoryPlan &memory() const { return plan_; }

  struct Impl;
  ~Executor();

 private:
  Executor() = default;
  Symbol sym_;
  BindSpec spec_;
  std::vector<NDArray> outputs_;
  MemoryPlan plan_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace loom
