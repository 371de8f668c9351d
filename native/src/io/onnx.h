// ONNX models (opsets 13 to 17): a symbol with its parameters written as an
// ONNX ModelProto, and an ONNX model read back as a symbol with parameters.
// Built on Debian's ONNX and protobuf libraries (libonnx-dev); without them
// both calls fail with LOOM_ERR_BACKEND_UNAVAILABLE.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "ndarray/ndarray.h"
#include "symbol/symbol.h"

namespace loom {

constexpr int kOnnxMinOpset = 13;
constexpr int kOnnxMaxOpset = 17;

// Whether this build has ONNX support.
bool onnx_available();

// Writes `sym` with `params` (arguments and auxiliary states by name) to `path`.
// Variables that are not parameters are the model's inputs and need a shape in
// `input_shapes`; loss labels are dropped and loss heads exported as their
// prediction (SoftmaxOutput as Softmax). The model passes ONNX's checker before
// it is written (atomically). An op or parameter value without an exact ONNX
// counterpart throws naming the node.
void onnx_export(const std::string &path, const Symbol &sym,
                 const std::map<std::string, NDArray> &params,
                 const std::map<std::string, Shape> &input_shapes, int opset);

struct OnnxModel {
  Symbol sym;
  std::vector<std::pair<std::string, NDArray>> params;  // arguments and aux states, on cpu(0)
  std::vector<std::pair<std::string, Shape>> inputs;    // -1 where a dimension is symbolic
};

// Reads an ONNX model. A file that is not ONNX, fails ONNX's checker, uses an
// unsupported opset, op or attribute value, or whose initializers do not fit
// the graph throws naming the file and the node.
OnnxModel onnx_import(const std::string &path);

}  // namespace loom
