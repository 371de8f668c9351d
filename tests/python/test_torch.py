"""Loom against PyTorch: forward results and input gradients of every operator
with a PyTorch counterpart, on random inputs (float64: relative error <= 1e-10;
float32: <= 1e-5). Operators without a counterpart are listed with the reason,
so a new operator must be mapped or listed."""
import unittest

import numpy as np

import loom
from loom import nd

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # the suite says so instead of passing silently
    torch = None

RNG = np.random.default_rng(2024)


def rand(shape, lo=-1.0, hi=1.0):
    return RNG.uniform(lo, hi, shape)


# name -> (loom function of arrays, torch function of tensors, input specs, differentiable)
# An input spec is (shape, low, high) or ("int", shape, high) for integer indices.
CASES = {}


def case(name, lf, tf, specs, grad=True, key=None):
    CASES[key or name] = (name, lf, tf, specs, grad)


S = (3, 4)
unary = {
    "abs": torch.abs if torch else None, "ceil": torch.ceil if torch else None, "cos": torch.cos if torch else None,
    "exp": torch.exp if torch else None, "expm1": torch.expm1 if torch else None, "floor": torch.floor if torch else None,
    "negative": torch.neg if torch else None, "relu": torch.relu if torch else None, "round": torch.round if torch else None,
    "sigmoid": torch.sigmoid if torch else None, "sign": torch.sign if torch else None, "sin": torch.sin if torch else None,
    "softsign": F.softsign if torch else None, "square": torch.square if torch else None, "tanh": torch.tanh if torch else None,
    "copy": (lambda x: x.clone()) if torch else None,
}
if torch:
    for n, tf in unary.items():
        nograd = n in ("ceil", "floor", "round", "sign")
        case(n, getattr(nd, n), tf, [(S, -2, 2)], grad=not nograd)
    case("log", nd.log, torch.log, [(S, 0.1, 3)])
    case("log1p", nd.log1p, torch.log1p, [(S, -0.5, 3)])
    case("sqrt", nd.sqrt, torch.sqrt, [(S, 0.1, 3)])
    case("rsqrt", nd.rsqrt, torch.rsqrt, [(S, 0.1, 3)])
    case("reciprocal", nd.reciprocal, torch.reciprocal, [(S, 0.2, 3)])
    for n, tf in {"add": torch.add, "subtract": torch.sub, "multiply": torch.mul, "maximum": torch.maximum,
                  "minimum": torch.minimum}.items():
        case(n, getattr(nd, n), tf, [((2, 3, 4), -1, 1), ((3, 1), -1, 1)])
    case("divide", nd.divide, torch.div, [((2, 3), -1, 1), ((3,), 0.5, 2)])
    case("power", nd.power, torch.pow, [((2, 3), 0.2, 2), ((2, 3), -2, 2)])
    for n, tf in {"equal": torch.eq, "not_equal": torch.ne, "greater": torch.gt, "greater_equal": torch.ge,
                  "less": torch.lt, "less_equal": torch.le}.items():
        case(n, getattr(nd, n), (lambda f: lambda a, b: f(a, b).to(a.dtype))(tf), [(S, -1, 1), (S, -1, 1)], grad=False)
    sc = 0.75
    scalar = {"add_scalar": lambda x: x + sc, "subtract_scalar": lambda x: x - sc, "rsubtract_scalar": lambda x: sc - x,
              "multiply_scalar": lambda x: x * sc, "divide_scalar": lambda x: x / sc, "rdivide_scalar": lambda x: sc / x,
              "maximum_scalar": lambda x: torch.clamp(x, min=sc), "minimum_scalar": lambda x: torch.clamp(x, max=sc),
              "power_scalar": lambda x: x ** sc, "rpower_scalar": lambda x: sc ** x}
    for n, tf in scalar.items():
        case(n, (lambda f: lambda x: f(x, scalar=sc))(getattr(nd, n)), tf, [(S, 0.2, 2)],
             grad=n not in ("maximum_scalar", "minimum_scalar"))
    for n, tf in {"equal_scalar": torch.eq, "not_equal_scalar": torch.ne, "greater_scalar": torch.gt,
                  "greater_equal_scalar": torch.ge, "less_scalar": torch.lt, "less_equal_scalar": torch.le}.items():
        case(n, (lambda f: lambda x: f(x, scalar=sc))(getattr(nd, n)), (lambda f: lambda x: f(x, sc).to(x.dtype))(tf),
             [(S, 0, 2)], grad=False)
    # MXNet's ClipParam holds the bounds as float32, also for float64 data.
    case("clip", lambda x: nd.clip(x, a_min=-0.3, a_max=0.4),
         lambda x: torch.clamp(x, float(np.float32(-0.3)), float(np.float32(0.4))), [(S, -1, 1)])
    case("sum", lambda x: nd.sum(x, axis=(1,)), lambda x: x.sum(1), [((3, 4, 5), -1, 1)])
    case("mean", lambda x: nd.mean(x, axis=(0, 2), keepdims=True), lambda x: x.mean((0, 2), keepdim=True), [((3, 4, 5), -1, 1)])
    case("prod", lambda x: nd.prod(x, axis=(1,)), lambda x: x.prod(1), [((3, 4), 0.5, 1.5)])
    case("max", lambda x: nd.max(x, axis=(1,)), lambda x: x.amax(1), [((3, 4), -1, 1)])
    case("min", lambda x: nd.min(x, axis=(1,)), lambda x: x.amin(1), [((3, 4), -1, 1)])
    case("argmax", lambda x: nd.argmax(x, axis=1), lambda x: x.argmax(1).to(x.dtype), [((3, 4), -1, 1)], grad=False)
    case("argmin", lambda x: nd.argmin(x, axis=1), lambda x: x.argmin(1).to(x.dtype), [((3, 4), -1, 1)], grad=False)
    case("softmax", lambda x: nd.softmax(x, axis=1), lambda x: torch.softmax(x, 1), [((3, 5), -3, 3)])
    case("SoftmaxActivation", lambda x: nd.SoftmaxActivation(x), lambda x: torch.softmax(x.reshape(2, -1), 1).reshape(x.shape),
         [((2, 3, 4), -3, 3)], key="SoftmaxActivation_instance")
    case("SoftmaxActivation", lambda x: nd.SoftmaxActivation(x, mode="channel"), lambda x: torch.softmax(x, 1),
         [((2, 3, 2, 2), -3, 3)], key="SoftmaxActivation_channel")
    case("log_softmax", lambda x: nd.log_softmax(x, axis=1), lambda x: torch.log_softmax(x, 1), [((3, 5), -3, 3)])
    # rows longer than the gradient's 8 double lanes, with a remainder
    case("softmax", lambda x: nd.softmax(x, axis=-1), lambda x: torch.softmax(x, -1), [((3, 37), -3, 3)],
         key="softmax_long_rows")
    case("log_softmax", lambda x: nd.log_softmax(x, axis=-1), lambda x: torch.log_softmax(x, -1), [((3, 37), -3, 3)],
         key="log_softmax_long_rows")
    case("dot", nd.dot, torch.matmul, [((4, 5), -1, 1), ((5, 3), -1, 1)])
    case("batch_dot", nd.batch_dot, torch.bmm, [((2, 4, 5), -1, 1), ((2, 5, 3), -1, 1)])
    case("transpose", lambda x: nd.transpose(x, axes=(2, 0, 1)), lambda x: x.permute(2, 0, 1), [((2, 3, 4), -1, 1)])
    case("SwapAxis", lambda x: nd.SwapAxis(x, dim1=0, dim2=2), lambda x: x.transpose(0, 2), [((2, 3, 4), -1, 1)])
    case("reshape", lambda x: nd.reshape(x, shape=(4, 6)), lambda x: x.reshape(4, 6), [((2, 3, 4), -1, 1)])
    case("Flatten", nd.Flatten, lambda x: x.flatten(1), [((2, 3, 4), -1, 1)])
    case("slice", lambda x: nd.slice(x, begin=(1, 0), end=(4, 5), step=(2, 2)), lambda x: x[1:4:2, 0:5:2], [((5, 6), -1, 1)])
    case("concat", lambda a, b: nd.concat(a, b, dim=0), lambda a, b: torch.cat([a, b], 0), [((2, 3), -1, 1), ((4, 3), -1, 1)])
    case("Concat", lambda a, b: nd.Concat(a, b, num_args=2, dim=1), lambda a, b: torch.cat([a, b], 1),
         [((2, 3, 2), -1, 1), ((2, 1, 2), -1, 1)])
    case("ElementWiseSum", lambda a, b, c: nd.ElementWiseSum(a, b, c), lambda a, b, c: a + b + c, [(S, -1, 1)] * 3)
    case("where", nd.where, lambda c, x, y: torch.where(c != 0, x, y), [("int", S, 2), (S, -1, 1), ((4,), -1, 1)])
    case("take", nd.take, lambda d, i: d.index_select(0, i.long()), [((6, 3), -1, 1), ("int", (9,), 6)])
    case("pick", lambda d, i: nd.pick(d, i, axis=1), lambda d, i: d.gather(1, i.long().unsqueeze(1)).squeeze(1),
         [((6, 4), -1, 1), ("int", (6,), 4)])
    case("cast", lambda x: nd.cast(x, dtype="float32"), lambda x: x.float(), [(S, -1, 1)])
    case("prod", lambda x: nd.prod(x, axis=(0, 2), keepdims=True), lambda x: x.prod(2, keepdim=True).prod(0, keepdim=True),
         [((2, 3, 2), 0.5, 1.5)], key="prod_axes")
    case("max", lambda x: nd.max(x, axis=(0, 2)), lambda x: x.amax((0, 2)), [((3, 4, 5), -1, 1)], key="max_axes")
    case("batch_dot", lambda a, b: nd.batch_dot(a, b, transpose_a=True, transpose_b=True),
         lambda a, b: torch.bmm(a.transpose(1, 2), b.transpose(1, 2)), [((2, 5, 4), -1, 1), ((2, 3, 5), -1, 1)],
         key="batch_dot_transposed")
    case("slice", lambda x: nd.slice(x, begin=(0, 3), end=(3, 0), step=(1, -2)), lambda x: x.flip(1)[:, 1::2],
         [((3, 5), -1, 1)], key="slice_negative_step")
    case("one_hot", lambda i: nd.one_hot(i, depth=5, dtype="float64"), lambda i: F.one_hot(i.long(), 5).double(),
         [("int", (4,), 5)], grad=False)
    case("FullyConnected", lambda x, w, b: nd.FullyConnected(x, w, b, num_hidden=5), F.linear,
         [((4, 6), -1, 1), ((5, 6), -1, 1), ((5,), -1, 1)])
    for act, tf in {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "softrelu": F.softplus,
                    "softsign": F.softsign}.items():
        case("Activation", (lambda a: lambda x: nd.Activation(x, act_type=a))(act), tf, [((3, 5), -3, 3)],
             key="Activation_" + act)
    case("LeakyReLU", lambda x: nd.LeakyReLU(x, act_type="leaky", slope=0.1), lambda x: F.leaky_relu(x, 0.1),
         [((2, 3, 4), -1, 1)], key="LeakyReLU_leaky")
    case("LeakyReLU", lambda x: nd.LeakyReLU(x, act_type="elu", slope=0.7), lambda x: F.elu(x, 0.7),
         [((2, 3, 4), -1, 1)], key="LeakyReLU_elu")
    case("LeakyReLU", lambda x, g: nd.LeakyReLU(x, g, act_type="prelu"), F.prelu,
         [((2, 3, 4), -1, 1), ((3,), 0, 0.5)], key="LeakyReLU_prelu")
    case("LeakyReLU", lambda x: nd.LeakyReLU(x, act_type="selu"), F.selu, [((2, 3, 4), -2, 2)], key="LeakyReLU_selu")
    case("LeakyReLU", lambda x: nd.LeakyReLU(x, act_type="gelu"), F.gelu, [((2, 3, 4), -3, 3)], key="LeakyReLU_gelu")
    case("Convolution", lambda x, w, b: nd.Convolution(x, w, b, kernel=(3, 3), num_filter=4, stride=(2, 1), pad=(1, 1)),
         lambda x, w, b: F.conv2d(x, w, b, stride=(2, 1), padding=1), [((2, 3, 7, 6), -1, 1), ((4, 3, 3, 3), -1, 1), ((4,), -1, 1)])
    case("Convolution", lambda x, w: nd.Convolution(x, w, kernel=(2, 2), num_filter=4, dilate=(2, 2), num_group=2, no_bias=True),
         lambda x, w: F.conv2d(x, w, dilation=2, groups=2), [((1, 4, 7, 7), -1, 1), ((4, 2, 2, 2), -1, 1)], key="Convolution_group")
    case("Convolution", lambda x, w, b: nd.Convolution(x, w, b, kernel=(3,), num_filter=2),
         F.conv1d, [((2, 3, 8), -1, 1), ((2, 3, 3), -1, 1), ((2,), -1, 1)], key="Convolution_1d")
    case("Deconvolution", lambda x, w, b: nd.Deconvolution(x, w, b, kernel=(3, 3), num_filter=2, stride=(2, 2), pad=(1, 1),
                                                           adj=(1, 1), no_bias=False),
         lambda x, w, b: F.conv_transpose2d(x, w, b, stride=2, padding=1, output_padding=1),
         [((2, 3, 4, 4), -1, 1), ((3, 2, 3, 3), -1, 1), ((2,), -1, 1)])
    case("Pooling", lambda x: nd.Pooling(x, kernel=(2, 2), stride=(2, 2), pool_type="max"), lambda x: F.max_pool2d(x, 2, 2),
         [((2, 3, 6, 4), -1, 1)], key="Pooling_max")
    case("Pooling", lambda x: nd.Pooling(x, kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="avg"),
         lambda x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=True), [((2, 3, 7, 7), -1, 1)], key="Pooling_avg")
    case("Pooling", lambda x: nd.Pooling(x, global_pool=True, pool_type="avg"), lambda x: x.mean((2, 3), keepdim=True),
         [((2, 3, 4, 5), -1, 1)], key="Pooling_global")
    # Volumes (NCDHW), as MXNet's 3-D Convolution, Deconvolution and Pooling.
    case("Convolution", lambda x, w, b: nd.Convolution(x, w, b, kernel=(3, 2, 3), num_filter=4, stride=(2, 1, 1),
                                                       pad=(1, 0, 1), dilate=(1, 2, 1)),
         lambda x, w, b: F.conv3d(x, w, b, stride=(2, 1, 1), padding=(1, 0, 1), dilation=(1, 2, 1)),
         [((2, 3, 5, 6, 4), -1, 1), ((4, 3, 3, 2, 3), -1, 1), ((4,), -1, 1)], key="Convolution_3d")
    case("Convolution", lambda x, w: nd.Convolution(x, w, kernel=(2, 2, 2), num_filter=4, num_group=2, no_bias=True),
         lambda x, w: F.conv3d(x, w, groups=2), [((1, 4, 3, 4, 3), -1, 1), ((4, 2, 2, 2, 2), -1, 1)],
         key="Convolution_3d_group")
    case("Deconvolution", lambda x, w, b: nd.Deconvolution(x, w, b, kernel=(3, 3, 2), num_filter=2, stride=(2, 2, 1),
                                                           pad=(1, 1, 0), adj=(1, 0, 0), no_bias=False),
         lambda x, w, b: F.conv_transpose3d(x, w, b, stride=(2, 2, 1), padding=(1, 1, 0), output_padding=(1, 0, 0)),
         [((2, 3, 3, 4, 3), -1, 1), ((3, 2, 3, 3, 2), -1, 1), ((2,), -1, 1)], key="Deconvolution_3d")
    for conv3, ceil3 in (("valid", False), ("full", True)):
        case("Pooling", (lambda conv3: lambda x: nd.Pooling(x, kernel=(2, 3, 2), stride=(2, 2, 2), pool_type="max",
                                                            pooling_convention=conv3))(conv3),
             (lambda ceil3: lambda x: F.max_pool3d(x, (2, 3, 2), (2, 2, 2), ceil_mode=ceil3))(ceil3),
             [((2, 2, 5, 7, 6), -1, 1)], key="Pooling_3d_max_" + conv3)
        for incl3 in (True, False):
            case("Pooling", (lambda conv3, incl3: lambda x: nd.Pooling(
                     x, kernel=(2, 3, 3), stride=(2, 2, 2), pad=(1, 1, 1), pool_type="avg", pooling_convention=conv3,
                     count_include_pad=incl3))(conv3, incl3),
                 (lambda ceil3, incl3: lambda x: F.avg_pool3d(x, (2, 3, 3), (2, 2, 2), (1, 1, 1), ceil_mode=ceil3,
                                                              count_include_pad=incl3))(ceil3, incl3),
                 [((1, 2, 4, 6, 5), -1, 1)], key="Pooling_3d_avg_%s_%s" % (conv3, incl3))
    case("Pooling", lambda x: nd.Pooling(x, global_pool=True, pool_type="avg"), lambda x: x.mean((2, 3, 4), keepdim=True),
         [((2, 3, 2, 4, 3), -1, 1)], key="Pooling_3d_global")
    # MXNet's pooling conventions against PyTorch: full is ceil_mode (where PyTorch keeps every
    # window, i.e. none starts in the right padding), count_include_pad both ways, odd sizes, batch 1.
    for conv, ceil in (("valid", False), ("full", True)):
        for pad in (0, 1):
            for incl in (True, False):
                for shape, k, st in (((1, 2, 5, 9), 2, 2), ((2, 3, 7, 6), 3, 2), ((1, 1, 8, 7), 3, 3)):
                    outs = [-(-(n + 2 * pad - k) // st) + 1 for n in shape[2:]]
                    if ceil and any((o - 1) * st >= n + pad for o, n in zip(outs, shape[2:])):
                        continue  # a window would start in the padding: PyTorch drops it, MXNet keeps it
                    key = "Pooling_avg_%s_pad%d_%s_%s" % (conv, pad, "incl" if incl else "excl", "x".join(map(str, shape)))
                    case("Pooling", (lambda k, st, pad, conv, incl: lambda x: nd.Pooling(
                             x, kernel=(k, k), stride=(st, st), pad=(pad, pad), pool_type="avg",
                             pooling_convention=conv, count_include_pad=incl))(k, st, pad, conv, incl),
                         (lambda k, st, pad, ceil, incl: lambda x: F.avg_pool2d(
                             x, k, st, pad, ceil_mode=ceil, count_include_pad=incl))(k, st, pad, ceil, incl),
                         [(shape, -1, 1)], key=key)
                    if incl:
                        case("Pooling", (lambda k, st, pad, conv: lambda x: nd.Pooling(
                                 x, kernel=(k, k), stride=(st, st), pad=(pad, pad), pool_type="max",
                                 pooling_convention=conv))(k, st, pad, conv),
                             (lambda k, st, pad, ceil: lambda x: F.max_pool2d(x, k, st, pad, ceil_mode=ceil))(k, st, pad, ceil),
                             [(shape, -1, 1)], key=key.replace("avg", "max"))
    case("LRN", lambda x: nd.LRN(x, nsize=3, alpha=0.5, beta=0.75, knorm=1.5),
         lambda x: F.local_response_norm(x, 3, 0.5, 0.75, 1.5), [((2, 5, 3, 3), -1, 1)])
    case("UpSampling", lambda x, y: nd.UpSampling(x, y, scale=2, num_args=2),
         lambda x, y: torch.cat([F.interpolate(x, scale_factor=2, mode="nearest"),
                                 F.interpolate(y, size=(4, 6), mode="nearest")], 1),
         [((2, 2, 2, 3), -1, 1), ((2, 1, 1, 3), -1, 1)], key="UpSampling_two_inputs")
    case("UpSampling", lambda x: nd.UpSampling(x, scale=2), lambda x: F.interpolate(x, scale_factor=2, mode="nearest"),
         [((1, 2, 2, 3), -1, 1)])
    case("Embedding", lambda i, w: nd.Embedding(i, w, input_dim=6, output_dim=3), lambda i, w: F.embedding(i.long(), w),
         [("int", (5,), 6), ((6, 3), -1, 1)], grad=False)
    # Sequence ops with lengths (whole numbers drawn in [0, T) or [0, T-1) + 1).
    case("SequenceMask", lambda x, l: nd.SequenceMask(x, l, use_sequence_length=True, value=0.5),
         lambda x, l: torch.where(torch.arange(x.shape[0])[:, None, None] < l[None, :, None], x,
                                  torch.tensor(0.5, dtype=x.dtype)),
         [((5, 3, 2), -1, 1), ("int", (3,), 6)])
    case("SequenceLast", lambda x, l: nd.SequenceLast(x, l + 1, use_sequence_length=True, axis=1),
         lambda x, l: x[torch.arange(x.shape[0]), l.long()], [((3, 5, 2), -1, 1), ("int", (3,), 5)])
    case("SequenceReverse", lambda x, l: nd.SequenceReverse(x, l, use_sequence_length=True),
         lambda x, l: torch.stack([torch.cat([torch.flip(x[:int(n), b], [0]), x[int(n):, b]]) for b, n in enumerate(l)], 1),
         [((4, 3, 2), -1, 1), ("int", (3,), 5)])
    case("BatchNorm", lambda x, g, b, m, v: nd.BatchNorm(x, g, b, m, v, fix_gamma=False, eps=1e-3),
         lambda x, g, b, m, v: F.batch_norm(x, m.detach().clone(), v.detach().clone(), g, b, training=True, eps=1e-3),
         [((4, 3, 2, 2), -1, 1), ((3,), 0.5, 2), ((3,), -1, 1), ((3,), -1, 1), ((3,), 0.5, 2)], key="BatchNorm")

NO_COUNTERPART = {
    "BlockGrad": "identity forward, zero gradient: torch's detach has no gradient to compare",
    "MakeLoss": "a loss head: its gradient is grad_scale/normalizer by definition (tested natively)",
    "SoftmaxOutput": "softmax forward with a cross-entropy gradient: checked against finite differences natively",
    "LinearRegressionOutput": "loss head with a defined gradient (tested natively)",
    "LogisticRegressionOutput": "loss head with a defined gradient (tested natively)",
    "Dropout": "random mask: distribution checked natively",
    "SliceChannel": "multi-output split: checked natively",
    "RNN": "compared with torch.nn.RNN/LSTM/GRU (weights mapped, every head and gradient) in test_rnn.py",
    "arange": "a creator with no input", "zeros": "a creator with no input", "ones": "a creator with no input",
    "full": "a creator with no input",
    "random_uniform": "Loom's own counter-based generator", "random_normal": "Loom's own counter-based generator",
    "random_permutation": "Loom's own counter-based generator",
    "sample_multinomial": "Loom's own counter-based generator (frequencies and log-probabilities checked natively)", "init_xavier": "Loom's own counter-based generator",
    "lr_schedule": "no torch operator (schedules are Python objects there)",
    "sgd_update": "optimizer step: checked against the formula natively",
    "sgd_mom_update": "optimizer step: checked against the formula natively",
    "adam_update": "optimizer step: checked against the formula natively",
    "adagrad_update": "optimizer step: checked against the formula natively",
    "rmsprop_update": "optimizer step: checked against the formula natively",
    "adadelta_update": "optimizer step: checked against the formula natively",
    "accuracy_count": "metric counter", "cross_entropy_count": "metric counter", "mse_count": "metric counter",
    "mae_count": "metric counter", "f1_count": "metric counter",
    "all_finite": "a flag: compared with torch.isfinite in test_all_finite_matches_torch_isfinite",
    "multi_all_finite": "a flag: compared with torch.isfinite in test_all_finite_matches_torch_isfinite",
    "multi_sgd_update": "compared with torch.optim.SGD param groups in test_multi_sgd_matches_torch_param_groups",
    "multi_sgd_mom_update": "compared with torch.optim.SGD param groups in test_multi_sgd_matches_torch_param_groups",
}


def to_inputs(specs, dtype):
    out = []
    for s in specs:
        if s[0] == "int":
            out.append(RNG.integers(0, s[2], s[1]).astype(np.float64 if dtype == "float64" else np.float32))
        else:
            out.append(rand(*s).astype(dtype))
    return out


@unittest.skipIf(torch is None, "PyTorch is not installed (apt-get install python3-torch)")
class AgainstPyTorch(unittest.TestCase):
    def test_every_op_is_mapped_or_listed(self):
        names = {op["name"] for op in loom.describe_ops()}
        mapped = {v[0] for v in CASES.values()}
        missing = sorted(names - mapped - set(NO_COUNTERPART))
        self.assertEqual(missing, [], "operators neither compared with PyTorch nor listed in NO_COUNTERPART")
        print("\nnot compared with PyTorch: " + ", ".join("%s (%s)" % kv for kv in sorted(NO_COUNTERPART.items())))

    def test_all_finite_matches_torch_isfinite(self):
        # MXNet casts to float32 first, so torch is asked about the float32 values.
        for trial in range(40):
            dtype = np.float32 if trial % 2 else np.float64
            arrays = [rand(tuple(RNG.integers(1, 5, RNG.integers(1, 4)))).astype(dtype) for _ in range(RNG.integers(1, 4))]
            for a in arrays:
                if RNG.random() < 0.3:
                    a.flat[RNG.integers(0, a.size)] = RNG.choice([np.nan, np.inf, -np.inf, 1e300 if dtype == np.float64 else 1.0])
            want = float(all(bool(torch.isfinite(torch.tensor(a).float()).all()) for a in arrays))
            got = loom._invoke("multi_all_finite", [loom.from_numpy(a) for a in arrays],
                               {"num_arrays": len(arrays)}).asnumpy()
            self.assertEqual(got.tolist(), [want], "trial %d" % trial)
            first = loom._invoke("all_finite", [loom.from_numpy(arrays[0])], {}).asnumpy()
            self.assertEqual(first.tolist(), [float(bool(torch.isfinite(torch.tensor(arrays[0]).float()).all()))])

    DIFFERENTIABLE = {op["name"] for op in loom.describe_ops() if op["differentiable"]}

    def check(self, key, dtype, rtol):
        name, lf, tf, specs, grad = CASES[key]
        grad = grad and name in self.DIFFERENTIABLE  # forward only where Loom has no gradient
        vals = to_inputs(specs, dtype)
        ints = [s[0] == "int" for s in specs]
        tin = [torch.tensor(v, requires_grad=grad and not i) for v, i in zip(vals, ints)]
        lin = [loom.from_numpy(v) for v in vals]
        if grad:
            for a, i in zip(lin, ints):
                if not i:
                    a.attach_grad()
        with loom.record(train=True):
            lout = lf(*lin)
        tout = tf(*tin)
        got, want = lout.asnumpy(), tout.detach().numpy()
        self.assertEqual(got.shape, want.shape, key)
        # Absolute slack scales with the array's largest value: float32 sums and
        # saturating functions lose relative precision on small elements.
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * max(np.abs(want).max(initial=0), 1e-2),
                                   err_msg="%s %s forward" % (key, dtype))
        if not grad:
            return
        w = rand(want.shape).astype(want.dtype)  # the head gradient has the output's dtype
        (tout * torch.tensor(w)).sum().backward()
        lout.backward(loom.from_numpy(w))
        n_checked = len(specs) if name != "BatchNorm" else 3  # moving statistics have no gradient
        for k in range(n_checked):
            if ints[k]:
                continue
            tg = tin[k].grad.numpy()
            np.testing.assert_allclose(lin[k].grad.asnumpy(), tg, rtol=rtol, atol=rtol * max(np.abs(tg).max(initial=0), 1e-2),
                                       err_msg="%s %s gradient of input %d" % (key, dtype, k))

    def test_relu_keeps_nan_as_mxnet_and_torch_do(self):
        """MXNet's relu passes NaN through (mshadow_op.h: IsNan(a) || a > 0 ? a : 0), as
        torch.relu does; -0 becomes +0. Its gradient is dy * relu_grad(y) with relu_grad(NaN)
        = NaN (torch instead passes dy there: MXNet's rule is the one kept), and a NaN
        incoming gradient reaches dx even where y is 0 (0 * NaN). Both ops, both dtypes, the
        vectorised float32 spans (long arrays) and the generic loops."""
        for dtype in (np.float32, np.float64):
            for n in (7, 70000):
                x = rand((n,)).astype(dtype)
                x[:4] = [np.nan, -0.0, 0.0, -np.inf]
                x[RNG.integers(4, n, 3)] = np.nan
                head = rand((n,)).astype(dtype)
                head[5] = np.nan
                xp = x.copy()
                xp[5] = -1.0  # y = 0 where the head is NaN
                for f in (lambda a: nd.Activation(a, act_type="relu"), nd.relu):
                    with self.subTest(dtype=dtype.__name__, n=n):
                        a = loom.from_numpy(xp)
                        a.attach_grad()
                        with loom.record(train=True):
                            y = f(a)
                        want = torch.relu(torch.tensor(xp)).numpy()
                        got = y.asnumpy()
                        np.testing.assert_array_equal(got, want)
                        self.assertFalse(np.signbit(got[1]))
                        y.backward(loom.from_numpy(head))
                        gate = np.where(np.isnan(want), np.nan, (want > 0).astype(dtype))
                        np.testing.assert_array_equal(a.grad.asnumpy(), head * gate)
                        self.assertTrue(np.isnan(a.grad.asnumpy()[5]))
                        self.assertTrue(np.isnan(a.grad.asnumpy()[0]))

    def test_nan_in_maximum_minimum_clip_and_max_pooling_follows_mxnet(self):
        """MXNet 1.9's rules with NaN (mshadow_op.h, matrix_op-inl.h, pool.h), beside torch
        where torch agrees: maximum/minimum give NaN when either side is NaN (torch.maximum
        too); their gradient is gy * (x >= y) for lhs and gy * (x < y) for rhs (minimum: <=,
        >), so neither side takes it at a NaN; the scalar forms compare with the scalar in
        the array's dtype; clip passes NaN and its gradient there; max pooling passes over
        NaN cells (a window of NaN only gives the dtype's lowest value, and no gradient),
        and the first cell equal to the maximum takes the gradient."""
        nan = np.nan
        for dtype in (np.float32, np.float64):
            a = np.array([nan, 1, 2, nan, -1, 3, 3], dtype)
            b = np.array([1, nan, 3, nan, -2, 3, 1], dtype)
            for name, tf in (("maximum", torch.maximum), ("minimum", torch.minimum)):
                with self.subTest(dtype=dtype.__name__, op=name):
                    la, lb = loom.from_numpy(a), loom.from_numpy(b)
                    la.attach_grad()
                    lb.attach_grad()
                    with loom.record(train=True):
                        y = getattr(nd, name)(la, lb)
                    np.testing.assert_array_equal(y.asnumpy(), tf(torch.tensor(a), torch.tensor(b)).numpy())
                    head = np.arange(1, 8).astype(dtype)
                    y.backward(loom.from_numpy(head))
                    lhs = (a >= b) if name == "maximum" else (a <= b)
                    rhs = (a < b) if name == "maximum" else (a > b)
                    np.testing.assert_array_equal(la.grad.asnumpy(), head * lhs)
                    np.testing.assert_array_equal(lb.grad.asnumpy(), head * rhs)
            # maximum_scalar: 0.7 in float32 is below 0.7, so x = float32(0.7) ties with it
            x = np.array([np.float32(0.7), nan, 0.5, 0.9], dtype)
            lx = loom.from_numpy(x)
            lx.attach_grad()
            with loom.record(train=True):
                y = nd.maximum_scalar(lx, scalar=0.7)
            s = dtype(0.7)
            np.testing.assert_array_equal(y.asnumpy(), np.where(np.isnan(x) | (x > s), x, s))
            y.backward(loom.from_numpy(np.ones(4, dtype)))
            np.testing.assert_array_equal(lx.grad.asnumpy(), (x >= s).astype(dtype))
            # clip: float32 bounds, NaN passes, and so does its gradient
            x = np.array([nan, -0.5, 0.35, 0.5, 0.4], dtype)
            lx = loom.from_numpy(x)
            lx.attach_grad()
            with loom.record(train=True):
                y = nd.clip(lx, a_min=-0.3, a_max=0.4)
            lo, hi = float(np.float32(-0.3)), float(np.float32(0.4))
            np.testing.assert_array_equal(y.asnumpy(), torch.clamp(torch.tensor(x), lo, hi).numpy())
            y.backward(loom.from_numpy(np.full(5, 2, dtype)))
            np.testing.assert_array_equal(lx.grad.asnumpy(), np.array([2, 0, 2, 0, 2], dtype))
            # max pooling: windows inside the image (the fast path) and padded ones
            img = np.array([[1, nan, 5, 5], [2, 3, nan, nan], [nan, 4, 4, 0], [nan, nan, 4, 1]], dtype)
            lowest = np.finfo(dtype).min
            for kw, want, wgrad in (
                    (dict(kernel=(2, 2), stride=(2, 2)), [[3, 5], [4, 4]],
                     [[0, 0, 1, 0], [0, 1, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0]]),
                    (dict(kernel=(2, 2), stride=(2, 2), pad=(1, 1)), [[1, 5, 5], [2, 4, 0], [nan, 4, 1]],
                     None)):
                for volume in (False, True):  # NCHW, and NCDHW with a depth of 1
                    with self.subTest(dtype=dtype.__name__, pool=str(kw), volume=volume):
                        lx = loom.from_numpy(img[None, None, None] if volume else img[None, None])
                        lx.attach_grad()
                        k = {n: ((0,) if n == "pad" else (1,)) + v for n, v in kw.items()} if volume else kw
                        with loom.record(train=True):
                            y = nd.Pooling(lx, pool_type="max", **k)
                        w = np.array(want, dtype)
                        w[np.isnan(w)] = lowest  # windows of NaN (and padding) only
                        np.testing.assert_array_equal(y.asnumpy().reshape(w.shape), w)
                        y.backward(loom.from_numpy(np.ones(y.shape, dtype)))
                        g = lx.grad.asnumpy().reshape(img.shape)
                        self.assertFalse(np.isnan(g).any())
                        self.assertTrue((g[np.isnan(img)] == 0).all())
                        if wgrad is not None:
                            np.testing.assert_array_equal(g, np.array(wgrad, dtype))
                        else:  # each window but the NaN one gives one unit
                            self.assertEqual(g.sum(), np.sum(w != lowest))
                            self.assertEqual((g[2, 1], g[2, 2]), (1, 0))  # 3, NaN, 4, 4: the first 4

    def test_max_pooling_gradient_picks_the_first_maximum_of_each_window(self):
        """pool.h's unpool_max, from a float64 reference loop: in each window (row-major) the
        first cell equal to the window's maximum takes the gradient; NaN cells never do, and
        neither does -inf (the scan starts from the dtype's lowest value, which -inf is
        below); a window with no such cell passes none. Random windows with NaN, -inf, ties
        and negative zeros, in float32 and float64, at 2x2 stride 2 over planes that the
        windows tile exactly, over planes with a row and a column left over, and at 3x3
        stride 2 (other kernels)."""
        rng = np.random.default_rng(5)

        def reference(x, gy, k, s):
            n, c, h, w = x.shape
            oh, ow = (h - k) // s + 1, (w - k) // s + 1
            gx = np.zeros(x.shape)
            lowest = float(np.finfo(x.dtype).min)
            for i in range(n):
                for j in range(c):
                    for a in range(oh):
                        for b in range(ow):
                            best, most = None, lowest
                            for u in range(a * s, a * s + k):
                                for v in range(b * s, b * s + k):
                                    val = float(x[i, j, u, v])
                                    if val > most or (best is None and val == most):
                                        best, most = (u, v), val
                            if best is not None:
                                gx[i, j][best] += float(gy[i, j, a, b])
            return gx

        for dtype in (np.float32, np.float64):
            for shape, k, s in (((2, 3, 6, 8), 2, 2), ((2, 2, 7, 9), 2, 2), ((1, 2, 7, 7), 3, 2)):
                with self.subTest(dtype=dtype.__name__, shape=shape, kernel=k):
                    # few distinct values, so windows tie
                    x = rng.integers(-2, 3, size=shape).astype(dtype)
                    x[rng.random(shape) < 0.15] = np.nan
                    x[rng.random(shape) < 0.1] = -np.inf
                    x[rng.random(shape) < 0.1] = -0.0
                    x[0, 0, :2, :2] = np.nan  # a window of NaN only
                    x[0, 0, :2, 2:4] = [[-np.inf, np.nan], [-np.inf, -np.inf]]  # nothing takeable
                    lx = loom.from_numpy(x)
                    lx.attach_grad()
                    with loom.record(train=True):
                        y = nd.Pooling(lx, kernel=(k, k), stride=(s, s), pool_type="max")
                    gy = rng.standard_normal(y.shape).astype(dtype)
                    gy[0, 0, 0, 1] = -0.0
                    y.backward(loom.from_numpy(gy))
                    g = lx.grad.asnumpy()
                    np.testing.assert_array_equal(g, reference(x, gy, k, s).astype(dtype))
                    self.assertFalse(np.signbit(g[g == 0]).any())  # 0 + (-0) is +0

    def test_multi_sgd_matches_torch_param_groups(self):
        """multi_sgd_(mom_)update against torch.optim.SGD with one param group per weight (its
        own lr and weight_decay), three steps in float64. PyTorch keeps buf = mu*buf + g and
        steps w -= lr*buf; MXNet keeps mom = mu*mom - lr*g and steps w += mom, the same
        weights for a fixed lr."""
        shapes = [(4, 3), (7,), (2, 2, 2)]
        lrs, wds = [0.1, 0.05, 0.3], [0.01, 0.0, 0.2]
        for momentum in (0.0, 0.9):
            with self.subTest(momentum=momentum):
                ws = [rand(s) for s in shapes]
                grads = [[rand(s, -3, 3) for s in shapes] for _ in range(3)]
                lw = [loom.from_numpy(w.copy()) for w in ws]
                lm = [loom.from_numpy(np.zeros(s)) for s in shapes]
                tw = [torch.tensor(w.copy(), requires_grad=True) for w in ws]
                opt = torch.optim.SGD([{"params": [t], "lr": lr, "weight_decay": wd}
                                       for t, lr, wd in zip(tw, lrs, wds)], lr=0.1, momentum=momentum)
                for step in grads:
                    lg = [loom.from_numpy(g) for g in step]
                    if momentum:
                        data = [a for w, g, m in zip(lw, lg, lm) for a in (w, g, m)]
                        out = [a for w, m in zip(lw, lm) for a in (w, m)]
                        nd.multi_sgd_mom_update(*data, lrs=lrs, wds=wds, momentum=momentum,
                                                num_weights=3, out=out)
                    else:
                        nd.multi_sgd_update(*[a for w, g in zip(lw, lg) for a in (w, g)], lrs=lrs, wds=wds,
                                            num_weights=3, out=lw)
                    for t, g in zip(tw, step):
                        t.grad = torch.tensor(g)
                    opt.step()
                for w, t in zip(lw, tw):
                    np.testing.assert_allclose(w.asnumpy(), t.detach().numpy(), rtol=1e-12, atol=1e-14)

    def test_gradient_clipping_lets_nan_through(self):
        """MXNet's optimizers clip with mshadow_op::clip (x > b ? b : x < -b ? -b : x): a NaN
        gradient reaches the weight instead of becoming +clip_gradient."""
        for name, extra in (("sgd_update", {}), ("sgd_mom_update", {"momentum": 0.9}),
                            ("adam_update", {}), ("rmsprop_update", {})):
            with self.subTest(op=name):
                w = np.array([1.0, 2.0, 3.0], np.float32)
                g = np.array([np.nan, 10.0, -10.0], np.float32)
                states = {"sgd_update": 0, "sgd_mom_update": 1, "adam_update": 2, "rmsprop_update": 1}[name]
                ins = [loom.from_numpy(w), loom.from_numpy(g)] + [loom.from_numpy(np.zeros(3, np.float32))
                                                                  for _ in range(states)]
                out = loom._invoke(name, ins, dict(lr=0.1, clip_gradient=1.0, **extra))
                got = (out[0] if isinstance(out, (list, tuple)) else out).asnumpy()
                self.assertTrue(np.isnan(got[0]), got)
                self.assertTrue(np.isfinite(got[1:]).all(), got)

    def test_batchnorm_modes_and_moving_statistics(self):
        """train/inference x fix_gamma x use_global_stats, outputs, gradients and the moving
        statistics after a training step (MXNet: updated in the backward pass, with the
        batch's biased variance; PyTorch's running_mean follows the same rule)."""
        for train in (True, False):
            for fix_gamma in (True, False):
                for global_stats in (True, False):
                    with self.subTest(train=train, fix_gamma=fix_gamma, global_stats=global_stats):
                        x, g, b = rand((3, 4, 3, 2)), rand((4,), 0.5, 2), rand((4,))
                        mm, mv = rand((4,)), rand((4,), 0.5, 2)
                        lin = [loom.from_numpy(v) for v in (x, g, b, mm, mv)]
                        for a in lin[:3]:
                            a.attach_grad()
                        with loom.record(train=train):
                            y = nd.BatchNorm(*lin, fix_gamma=fix_gamma, use_global_stats=global_stats,
                                             eps=1e-3, momentum=0.9)
                        head = rand(x.shape)
                        y.backward(loom.from_numpy(head))
                        tx, tg, tb = (torch.tensor(v, requires_grad=True) for v in (x, g, b))
                        rm, rv = torch.tensor(mm.copy()), torch.tensor(mv.copy())
                        batch = train and not global_stats
                        gamma = torch.ones(4, dtype=torch.float64) if fix_gamma else tg
                        ty = F.batch_norm(tx, rm, rv, gamma, tb, training=batch, momentum=0.1, eps=1e-3)
                        (ty * torch.tensor(head)).sum().backward()
                        np.testing.assert_allclose(y.asnumpy(), ty.detach().numpy(), rtol=1e-10, atol=1e-12)
                        np.testing.assert_allclose(lin[0].grad.asnumpy(), tx.grad.numpy(), rtol=1e-9, atol=1e-12)
                        np.testing.assert_allclose(lin[2].grad.asnumpy(), tb.grad.numpy(), rtol=1e-10, atol=1e-12)
                        if fix_gamma:
                            np.testing.assert_array_equal(lin[1].grad.asnumpy(), np.zeros(4))
                            np.testing.assert_array_equal(lin[1].asnumpy(), np.ones(4))  # MXNet writes 1
                        else:
                            np.testing.assert_allclose(lin[1].grad.asnumpy(), tg.grad.numpy(), rtol=1e-9, atol=1e-12)
                        want_mean = 0.9 * mm + 0.1 * x.mean(axis=(0, 2, 3)) if batch else mm
                        want_var = 0.9 * mv + 0.1 * x.var(axis=(0, 2, 3)) if batch else mv
                        np.testing.assert_allclose(lin[3].asnumpy(), want_mean, rtol=1e-12)
                        np.testing.assert_allclose(lin[3].asnumpy(), rm.numpy(), rtol=1e-12)
                        np.testing.assert_allclose(lin[4].asnumpy(), want_var, rtol=1e-12)

    def test_float64_forward_and_gradients(self):
        for key in CASES:
            with self.subTest(op=key):
                self.check(key, "float64", 1e-10)

    def test_float32_forward_and_gradients(self):
        for key in CASES:
            with self.subTest(op=key):
                self.check(key, "float32", 1e-5)


if __name__ == "__main__":
    unittest.main()
