#!/usr/bin/env python3
"""Writes cases/ops.json, the imperative-op conformance cases (one or more per
registered operator). Cases are data: the runners in C, C# and Python read the
JSON and know nothing of any op. Re-run after adding an operator, then commit
the JSON and new golden digests (./build.sh conformance --update).

An input is {"shape", "dtype", "low", "high", "seed", "cast"}: values drawn
natively by random_uniform after loom_random_seed(seed), then cast through the
listed dtypes in turn. A case's own "seed" is set right before the call, for
random operators."""
import json
import os

F, D = "float32", "float64"
cases = []
seed = [100]


def inp(shape, dtype=F, low=-1.0, high=1.0, cast=None):
    seed[0] += 1
    d = {"shape": list(shape), "dtype": dtype, "low": low, "high": high, "seed": seed[0]}
    if cast:
        d["cast"] = cast
    return d


def case(name, op, inputs, params=None, outputs=1):
    seed[0] += 1
    cases.append({"name": name, "op": op, "inputs": inputs, "params": params or {},
                  "outputs": outputs, "seed": seed[0]})


def labels(n, k, dtype=F):
    return inp([n], F, 0, k, cast=["int32", dtype])


# Elementwise unary, in both float types, on ranges where they are defined.
unary = {"abs": (-2, 2), "ceil": (-3, 3), "cos": (-3, 3), "exp": (-3, 3), "expm1": (-2, 2), "floor": (-3, 3),
         "log": (0.1, 5), "log1p": (-0.5, 3), "negative": (-2, 2), "reciprocal": (0.2, 3), "relu": (-2, 2),
         "round": (-3, 3), "rsqrt": (0.2, 3), "sigmoid": (-5, 5), "sign": (-2, 2), "sin": (-3, 3),
         "softsign": (-3, 3), "sqrt": (0, 4), "square": (-2, 2), "tanh": (-3, 3), "copy": (-1, 1),
         "BlockGrad": (-1, 1), "MakeLoss": (-1, 1), "Flatten": (-1, 1)}
for op, (lo, hi) in unary.items():
    for dt in (F, D):
        case("%s_%s" % (op, dt), op, [inp([3, 5, 2], dt, lo, hi)])

binary = ["add", "subtract", "multiply", "maximum", "minimum", "equal", "not_equal", "greater",
          "greater_equal", "less", "less_equal"]
for op in binary:
    case(op + "_broadcast", op, [inp([2, 3, 4]), inp([3, 1])])
    case(op + "_f64", op, [inp([5, 4], D), inp([5, 4], D)])
case("divide", "divide", [inp([4, 3], D), inp([3], D, 0.5, 2)])
case("power", "power", [inp([4, 3], F, 0.1, 2), inp([4, 3], F, -2, 2)])

scalar = ["add_scalar", "subtract_scalar", "rsubtract_scalar", "multiply_scalar", "divide_scalar",
          "rdivide_scalar", "maximum_scalar", "minimum_scalar", "equal_scalar", "not_equal_scalar",
          "greater_scalar", "greater_equal_scalar", "less_scalar", "less_equal_scalar"]
for op in scalar:
    case(op, op, [inp([4, 5], F, 0.1, 2)], {"scalar": 0.75})
case("power_scalar", "power_scalar", [inp([4, 5], D, 0.1, 2)], {"scalar": 2.5})
case("rpower_scalar", "rpower_scalar", [inp([4, 5], D, -2, 2)], {"scalar": 1.5})
case("clip", "clip", [inp([4, 5])], {"a_min": -0.5, "a_max": 0.25})

for op in ["sum", "mean", "max", "min", "prod", "argmax", "argmin"]:
    case(op + "_all", op, [inp([3, 4, 5], D, 0.5, 1.5)])
    case(op + "_axis", op, [inp([3, 4, 5], F, 0.5, 1.5)], {"axis": [1], "keepdims": True} if op not in ("argmax", "argmin") else {"axis": 1})
case("softmax", "softmax", [inp([4, 6], D, -3, 3)], {"axis": 1})
case("log_softmax", "log_softmax", [inp([4, 6], F, -3, 3)], {"axis": -1, "temperature": 2.0})
case("dot", "dot", [inp([7, 9]), inp([9, 5])])
case("dot_tt", "dot", [inp([9, 7], D), inp([5, 9], D)], {"transpose_a": True, "transpose_b": True})
case("batch_dot", "batch_dot", [inp([3, 4, 5]), inp([3, 5, 2])])
case("transpose", "transpose", [inp([2, 3, 4])], {"axes": [2, 0, 1]})
case("reshape", "reshape", [inp([2, 3, 4])], {"shape": [0, -1]})
case("slice", "slice", [inp([5, 6])], {"begin": [1, 0], "end": [4, 6], "step": [2, 3]})
case("cast", "cast", [inp([3, 4], D, -5, 5)], {"dtype": "int32"})
case("concat", "concat", [inp([2, 3]), inp([4, 3])], {"dim": 0})
case("where", "where", [inp([3, 4], F, 0, 2, cast=["int32", "float32"]), inp([3, 4]), inp([3, 4])])
case("take", "take", [inp([6, 3]), inp([4], F, 0, 6, cast=["int64"])])
case("one_hot", "one_hot", [inp([5], F, 0, 4, cast=["int64"])], {"depth": 4})
case("zeros", "zeros", [], {"shape": [2, 3], "dtype": "float64"})
case("ones", "ones", [], {"shape": [4]})
case("full", "full", [], {"shape": [2, 2], "value": 0.1})
case("arange", "arange", [], {"start": 2, "stop": 11, "step": 3, "dtype": "float64"})
case("random_uniform", "random_uniform", [], {"shape": [50], "low": -2, "high": 3})
case("random_normal", "random_normal", [], {"shape": [51], "loc": 1, "scale": 2, "dtype": "float64"})
case("random_permutation", "random_permutation", [], {"n": 40})
case("init_xavier", "init_xavier", [], {"shape": [20, 30], "rnd_type": "gaussian", "factor_type": "in"})
case("lr_schedule", "lr_schedule", [], {"schedule": "cosine", "base_lr": 0.1, "num_update": 7, "max_update": 20})

# Layers.
case("FullyConnected", "FullyConnected", [inp([4, 2, 3]), inp([5, 6]), inp([5])], {"num_hidden": 5})
case("FullyConnected_nobias", "FullyConnected", [inp([4, 6], D), inp([3, 6], D)], {"num_hidden": 3, "no_bias": True})
for act in ["relu", "sigmoid", "tanh", "softrelu", "softsign"]:
    case("Activation_" + act, "Activation", [inp([3, 70], F, -4, 4)], {"act_type": act})
    case("Activation_%s_f64" % act, "Activation", [inp([3, 7], D, -4, 4)], {"act_type": act})
case("LeakyReLU_leaky", "LeakyReLU", [inp([2, 3, 4])], {"act_type": "leaky", "slope": 0.1})
case("LeakyReLU_elu", "LeakyReLU", [inp([2, 3, 4])], {"act_type": "elu", "slope": 0.5})
case("LeakyReLU_prelu", "LeakyReLU", [inp([2, 3, 4]), inp([3])], {"act_type": "prelu"})
case("Convolution", "Convolution", [inp([2, 3, 9, 8]), inp([4, 3, 3, 3]), inp([4])],
     {"kernel": [3, 3], "num_filter": 4, "stride": [2, 1], "pad": [1, 1]})
case("Convolution_group_dilate", "Convolution", [inp([1, 4, 9, 9], D), inp([6, 2, 2, 2], D)],
     {"kernel": [2, 2], "num_filter": 6, "num_group": 2, "dilate": [2, 2], "no_bias": True})
case("Convolution_1d", "Convolution", [inp([2, 3, 10]), inp([2, 3, 3]), inp([2])], {"kernel": [3], "num_filter": 2})
case("Deconvolution", "Deconvolution", [inp([2, 3, 4, 4]), inp([3, 2, 3, 3]), inp([2])],
     {"kernel": [3, 3], "num_filter": 2, "stride": [2, 2], "pad": [1, 1], "adj": [1, 1], "no_bias": False})
for pt in ["max", "avg", "sum"]:
    case("Pooling_" + pt, "Pooling", [inp([2, 3, 7, 6])], {"kernel": [3, 2], "stride": [2, 2], "pool_type": pt})
case("Pooling_full_pad", "Pooling", [inp([1, 2, 5, 5], D)],
     {"kernel": [3, 3], "stride": [2, 2], "pad": [1, 1], "pool_type": "avg", "pooling_convention": "full"})
case("Pooling_global", "Pooling", [inp([2, 3, 4, 5])], {"global_pool": True, "pool_type": "max"})
case("BatchNorm_train", "BatchNorm", [inp([4, 3, 2, 2]), inp([3], F, 0.5, 2), inp([3]), inp([3]), inp([3], F, 0.5, 2)],
     {"fix_gamma": False}, outputs=1)
case("LRN", "LRN", [inp([2, 5, 3, 3])], {"nsize": 3, "alpha": 0.001, "beta": 0.75, "knorm": 2})
case("Concat", "Concat", [inp([2, 3, 2]), inp([2, 1, 2])], {"num_args": 2, "dim": 1})
case("ElementWiseSum", "ElementWiseSum", [inp([3, 4]), inp([3, 4]), inp([3, 4])])
case("Embedding", "Embedding", [inp([5], F, 0, 6, cast=["int32", "float32"]), inp([6, 3])], {"input_dim": 6, "output_dim": 3})
case("SliceChannel", "SliceChannel", [inp([2, 6, 3])], {"num_outputs": 3, "axis": 1}, outputs=3)
case("SwapAxis", "SwapAxis", [inp([2, 3, 4])], {"dim1": 0, "dim2": 2})
case("UpSampling", "UpSampling", [inp([1, 2, 2, 3])], {"scale": 2})
case("Dropout_predict", "Dropout", [inp([10, 10])], {"p": 0.3}, outputs=2)
case("SoftmaxOutput", "SoftmaxOutput", [inp([6, 4], F, -2, 2), labels(6, 4)], {"normalization": "batch"})
case("LinearRegressionOutput", "LinearRegressionOutput", [inp([4, 3]), inp([4, 3])])
case("LogisticRegressionOutput", "LogisticRegressionOutput", [inp([4, 3]), inp([4, 3], F, 0, 1)])

# Optimizer updates (every state given, every output digested).
case("sgd_update", "sgd_update", [inp([10]), inp([10])], {"lr": 0.1, "wd": 0.01, "clip_gradient": 0.5})
case("sgd_mom_update", "sgd_mom_update", [inp([10]), inp([10]), inp([10])], {"lr": 0.1, "momentum": 0.9, "nesterov": True}, outputs=2)
case("adam_update", "adam_update", [inp([10], D), inp([10], D), inp([10], D), inp([10], D, 0, 1)], {"lr": 0.01, "t": 3}, outputs=3)
case("adagrad_update", "adagrad_update", [inp([10]), inp([10]), inp([10], F, 0, 1)], {"lr": 0.1}, outputs=2)
case("rmsprop_update", "rmsprop_update", [inp([10]), inp([10]), inp([10], F, 0, 1)], {"lr": 0.01}, outputs=2)
case("adadelta_update", "adadelta_update", [inp([10]), inp([10]), inp([10], F, 0, 1), inp([10], F, 0, 1)], {}, outputs=3)

# Metrics.
case("accuracy_count", "accuracy_count", [inp([20, 5]), labels(20, 5)], {"top_k": 2})
case("cross_entropy_count", "cross_entropy_count", [inp([20, 5], F, 0.01, 1), labels(20, 5)])
case("mse_count", "mse_count", [inp([6, 2]), inp([12])])
case("mae_count", "mae_count", [inp([6, 2]), inp([6, 2])])
case("f1_count", "f1_count", [inp([20, 2]), labels(20, 2)])

# Added with MXNet's semantics (appended, so the earlier cases keep their seeds):
# the full convention's clipped last window, count_include_pad=false, MXNet's
# SoftmaxActivation, take's modes and axis, SoftmaxOutput's multi_output scaling.
case("Pooling_full_overhang", "Pooling", [inp([1, 2, 6, 7], D)],
     {"kernel": [3, 3], "stride": [2, 2], "pool_type": "avg", "pooling_convention": "full"})
case("Pooling_exclude_pad", "Pooling", [inp([1, 2, 5, 5], D)],
     {"kernel": [3, 3], "stride": [2, 2], "pad": [1, 1], "pool_type": "avg", "count_include_pad": False})
case("SoftmaxActivation_instance", "SoftmaxActivation", [inp([2, 3, 4], F, -3, 3)])
case("SoftmaxActivation_channel", "SoftmaxActivation", [inp([2, 3, 2, 2], F, -3, 3)], {"mode": "channel"})
case("take_wrap_axis1", "take", [inp([3, 4]), inp([5], F, -6, 6, cast=["int64"])], {"axis": 1, "mode": "wrap"})
case("SoftmaxOutput_multi", "SoftmaxOutput", [inp([2, 3, 4], F, -2, 2), inp([2, 4], F, 0, 3, cast=["int32", F])],
     {"multi_output": True, "normalization": "valid", "use_ignore": True, "ignore_label": 1})
# MXNet's all_finite and multi_all_finite (the flag of finite inputs).
case("all_finite", "all_finite", [inp([4, 5], D)])
case("multi_all_finite", "multi_all_finite", [inp([3, 2]), inp([7])], {"num_arrays": 2})
# The fused RNN: every mode, layers, directions, with the final states and the reserve.
case("RNN_lstm_bidirectional", "RNN", [inp([5, 3, 3]), inp([736], F, -0.5, 0.5), inp([4, 3, 4]), inp([4, 3, 4])],
     {"mode": "lstm", "state_size": 4, "num_layers": 2, "bidirectional": True, "state_outputs": True}, outputs=4)
case("RNN_gru", "RNN", [inp([4, 2, 3], D), inp([150], D, -0.5, 0.5), inp([1, 2, 5], D)],
     {"mode": "gru", "state_size": 5, "num_layers": 1}, outputs=2)
case("RNN_relu_2layers", "RNN", [inp([6, 2, 4]), inp([51], F, -0.5, 0.5), inp([2, 2, 3])],
     {"mode": "rnn_relu", "state_size": 3, "num_layers": 2, "state_outputs": True}, outputs=3)
# Sequence ops with lengths (whole numbers in float32 and int32).
case("SequenceMask_lengths", "SequenceMask", [inp([5, 3, 2]), inp([3], F, 0, 6, cast=["int32", F])],
     {"use_sequence_length": True, "value": -1.0})
case("SequenceLast_axis1", "SequenceLast", [inp([3, 5, 2], D), inp([3], F, 1, 6, cast=["int32"])],
     {"use_sequence_length": True, "axis": 1})
case("SequenceReverse_lengths", "SequenceReverse", [inp([4, 3, 2]), inp([3], F, 0, 5, cast=["int32", F])],
     {"use_sequence_length": True})
# Draws from categorical distributions (the case's seed is set before the call).
case("sample_multinomial", "sample_multinomial", [inp([3, 4], D, 0.25, 0.25)], {"shape": [50], "get_prob": True},
     outputs=2)
# MXNet's pick: along the last axis (class indices in float32), and along axis 1 kept, wrapped.
case("pick", "pick", [inp([4, 5]), inp([4], F, 0, 5, cast=["int32", F])])
case("pick_axis1_wrap", "pick", [inp([3, 4, 2], D), inp([3, 1, 2], F, -6, 6, cast=["int64"])],
     {"axis": 1, "keepdims": True, "mode": "wrap"})
# LeakyReLU rrelu in prediction, with its hidden mask output (the mid slope).
case("LeakyReLU_rrelu_predict", "LeakyReLU", [inp([3, 4], F, -2, 2)],
     {"act_type": "rrelu", "lower_bound": 0.1, "upper_bound": 0.3}, outputs=2)
# MXNet's aggregated SGD steps: several weights (of several shapes) in one call.
case("multi_sgd_update", "multi_sgd_update", [inp([10]), inp([10]), inp([3, 4]), inp([3, 4]), inp([5]), inp([5])],
     {"lrs": [0.1, 0.05, 0.2], "wds": [0.01, 0, 0.1], "clip_gradient": 0.5, "num_weights": 3}, outputs=3)
case("multi_sgd_mom_update", "multi_sgd_mom_update", [inp([6], D), inp([6], D), inp([6], D), inp([2, 3], D),
                                                      inp([2, 3], D), inp([2, 3], D)],
     {"lrs": [0.1, 0.2], "wds": [0.001, 0.01], "momentum": 0.9, "rescale_grad": 0.5, "num_weights": 2}, outputs=4)

here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "cases", "ops.json"), "w") as f:
    json.dump({"cases": cases}, f, indent=1)
    f.write("\n")
print("wrote %d cases" % len(cases))
