// MXNet 1.9's names for Loom's operators, taken from apache/mxnet at tag 1.9.1
// (NNVM_REGISTER_OP and .add_alias in src/operator; the numpy-frontend _np*
// names are left out: their semantics differ). Every name resolves to the Loom
// op in the registry, so symbol files written by MXNet load and loom_op_find
// knows them; the first name of each row is what Loom writes into symbol JSON
// (MXNet's registered name), so the files Loom saves load in MXNet.
// tests/mxnet/op_names_1.9.1.txt holds the list these rows are checked against.
#include "op/aliases.h"

namespace loom {

const std::vector<OpAliases> &op_aliases() {
  static const std::vector<OpAliases> table = {
      // Elementwise with broadcasting: MXNet's broadcast_* forms; the elemwise_*
      // forms (equal shapes) are the same computation where they apply.
      {"add", {"broadcast_add", "broadcast_plus", "elemwise_add", "_plus", "_Plus", "_add"}},
      {"subtract", {"broadcast_sub", "broadcast_minus", "elemwise_sub", "_minus", "_Minus", "_sub"}},
      {"multiply", {"broadcast_mul", "elemwise_mul", "_mul", "_Mul"}},
      {"divide", {"broadcast_div", "elemwise_div", "_div", "_Div"}},
      {"power", {"broadcast_power", "_power", "_Power"}},
      {"maximum", {"broadcast_maximum", "_maximum", "_Maximum"}},
      {"minimum", {"broadcast_minimum", "_minimum", "_Minimum"}},
      {"equal", {"broadcast_equal", "_equal", "_Equal"}},
      {"not_equal", {"broadcast_not_equal", "_not_equal", "_Not_Equal"}},
      {"greater", {"broadcast_greater", "_greater", "_Greater"}},
      {"greater_equal", {"broadcast_greater_equal", "_greater_equal", "_Greater_Equal"}},
      {"less", {"broadcast_lesser", "_lesser", "_Lesser"}},
      {"less_equal", {"broadcast_lesser_equal", "_lesser_equal", "_Lesser_Equal"}},
      // With a scalar.
      {"add_scalar", {"_plus_scalar", "_PlusScalar"}},
      {"subtract_scalar", {"_minus_scalar", "_MinusScalar"}},
      {"rsubtract_scalar", {"_rminus_scalar", "_RMinusScalar"}},
      {"multiply_scalar", {"_mul_scalar", "_MulScalar"}},
      {"divide_scalar", {"_div_scalar", "_DivScalar"}},
      {"rdivide_scalar", {"_rdiv_scalar", "_RDivScalar"}},
      {"power_scalar", {"_power_scalar", "_PowerScalar"}},
      {"rpower_scalar", {"_rpower_scalar", "_RPowerScalar"}},
      {"maximum_scalar", {"_maximum_scalar", "_MaximumScalar"}},
      {"minimum_scalar", {"_minimum_scalar", "_MinimumScalar"}},
      {"equal_scalar", {"_equal_scalar", "_EqualScalar"}},
      {"not_equal_scalar", {"_not_equal_scalar", "_NotEqualScalar"}},
      {"greater_scalar", {"_greater_scalar", "_GreaterScalar"}},
      {"greater_equal_scalar", {"_greater_equal_scalar", "_GreaterEqualScalar"}},
      {"less_scalar", {"_lesser_scalar", "_LesserScalar"}},
      {"less_equal_scalar", {"_lesser_equal_scalar", "_LesserEqualScalar"}},
      // Layers and tensor ops whose MXNet name differs, or that have aliases.
      {"reshape", {"Reshape", "reshape"}},
      {"cast", {"Cast", "cast"}},
      {"copy", {"_copy", "identity"}},
      {"Concat", {"Concat", "concat"}},
      {"ElementWiseSum", {"add_n", "ElementWiseSum"}},
      {"SliceChannel", {"SliceChannel", "split"}},
      {"SwapAxis", {"SwapAxis", "swapaxes"}},
      {"Flatten", {"Flatten", "flatten"}},
      {"BlockGrad", {"BlockGrad", "stop_gradient"}},
      {"SoftmaxOutput", {"SoftmaxOutput", "Softmax"}},
      {"slice", {"slice", "crop"}},
      {"sum", {"sum", "sum_axis"}},
      {"max", {"max", "max_axis"}},
      {"min", {"min", "min_axis"}},
      {"zeros", {"_zeros"}},
      {"ones", {"_ones"}},
      {"full", {"_full"}},
      {"arange", {"_arange"}},
      {"random_uniform", {"_random_uniform", "random_uniform", "uniform"}},
      {"random_normal", {"_random_normal", "random_normal", "normal"}},
      {"sample_multinomial", {"_sample_multinomial", "sample_multinomial"}},
  };
  return table;
}

}  // namespace loom
