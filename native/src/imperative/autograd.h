// Imperative autograd: while recording, every differentiable op invoked
// through the imperative path leaves a node on its outputs; backward walks
// those nodes from the heads in reverse topological order and pushes each
// op's backward kernel to the engine.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "imperative/imperative.h"

namespace loom {

struct AGNode {
  const OpDef *op = nullptr;
  std::shared_ptr<const Params> params;
  bool is_train = false;
  ArrayList inputs;   // keep their own AGInfo: the edges of the graph
  ArrayList outputs;  // detached copies (no AGInfo), so a node never owns itself
  // A node of a whole graph (a cached op) instead of one op: given the output
  // gradients (one per output, zeros where none flows) it pushes its backward
  // and returns one gradient per input (empty where none is needed). `dest[i]`,
  // when set, is the gradient buffer of a variable that this input alone feeds
  // with a write request: the node may write input i's gradient straight into it
  // (and return it), saving a copy.
  std::function<ArrayList(const ArrayList &out_grads, const ArrayList &dest)> custom;
  // Called once the backward pass has pushed every op that reads what `custom`
  // returned (the gradients may live in buffers the node lends until then).
  std::function<void()> custom_done;
  std::string custom_name;
};

struct AGInfo {
  std::shared_ptr<AGNode> node;  // producer; null for a variable
  int index = 0;                 // which output of the producer
  // Variables (marked with mark_variables):
  bool is_variable = false;
  NDArray grad;
  int32_t grad_req = kWriteTo;
};

namespace autograd {
bool is_recording();
bool set_recording(bool on);  // returns the previous state (per thread)
bool is_training();
// Whether a gradient flows back to this array (it was recorded, or is a variable
// with a gradient request).
bool needs_grad(const NDArray &a);
// Attaches `node` as the producer of `outputs` (a cached op's own record).
void record_node(const std::shared_ptr<AGNode> &node, ArrayList &outputs);
bool set_training(bool on);
// Called by invoke for every pushed op while recording.
void record(const OpDef &op, const std::shared_ptr<const Params> &params, const ArrayList &inputs,
            ArrayList &outputs, const ArrayList &given_outputs);
void mark_variable(NDArray &array, const NDArray &grad, int32_t grad_req);
// heads[i] gets head_grads[i] (or ones when that slot is empty).
void backward(const ArrayList &heads, const ArrayList &head_grads);
}  // namespace autograd

}  // namespace loom
