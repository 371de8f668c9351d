// Folding BatchNorm into the layer before it, for inference: a BatchNorm (axis 1) on the
// output of a Convolution or FullyConnected that nothing else reads becomes part of that
// layer's weight and bias, computed once here: W'[f] = W[f] * s[f] and
// b'[f] = (b[f] - mean[f]) * s[f] + beta[f], with s[f] = gamma[f] / sqrt(var[f] + eps)
// (gamma = 1 under fix_gamma), MXNet's inference formula, in float64.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "ndarray/ndarray.h"
#include "symbol/symbol.h"

namespace loom {

struct FoldResult {
  Symbol sym;
  std::vector<std::pair<std::string, NDArray>> params;  // every parameter of `sym`, on cpu(0)
  int folded = 0;                                       // BatchNorm nodes folded
};

// `params` holds the arguments and auxiliary states by name (float32). Layers whose
// weight or bias another node also reads, and BatchNorms whose statistics outputs are
// read, stay as they are. The result has no training semantics left for the folded
// nodes: use it for prediction only.
FoldResult fold_batchnorm(const Symbol &sym, const std::map<std::string, NDArray> &params);

}  // namespace loom
