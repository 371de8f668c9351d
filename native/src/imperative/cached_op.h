// A cached op: a symbol run as one imperative call (MXNet's CachedOp, what a
// hybridized block calls). Each input signature (shapes, dtypes, device and
// which inputs want gradients) gets its own bound executor, planned once and
// reused; inputs are rebound without copying. While autograd records, the
// call leaves one node whose backward runs the executor's backward pass, so
// a hybridized block mixes with imperative code in one recording.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "imperative/autograd.h"
#include "symbol/executor.h"

namespace loom {

class CachedOp {
 public:
  explicit CachedOp(Symbol sym);
  // inputs: the symbol's arguments in list order, then its auxiliary states.
  // outputs: one new array per output of the symbol.
  void invoke(const ArrayList &inputs, ArrayList &outputs);

  const Symbol &symbol() const { return sym_; }
  size_t num_inputs() const { return arg_names_.size() + aux_names_.size(); }
  size_t num_outputs() const { return sym_.outputs.size(); }
  // Executors bound so far (one per signature, more while calls await backward).
  size_t num_executors() const;

  struct Slot;

 private:
  Symbol sym_;
  std::vector<std::string> arg_names_, aux_names_;
  std::shared_ptr<std::mutex> mu_ = std::make_shared<std::mutex>();
  std::vector<std::shared_ptr<Slot>> slots_;
  uint64_t clock_ = 0;
};

}  // namespace loom
