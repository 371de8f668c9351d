// CUDA kernels of the elementwise ops: fills, copies, casts, unary math,
// binary ops with NumPy broadcasting, scalar forms, their gradients,
// ElementWiseSum and Activation. Each follows the CPU kernel's definition
// (native/src/ops/elemwise): float math in double, rounded once; integers
// wrap around; MXNet's NaN rules for relu, maximum and minimum.
#include "common.cuh"

#include <cstring>
#include <type_traits>

namespace loomcuda {
namespace {

// ------------------------------------------------------------ fills and copies
template <typename T>
__global__ void fill_kernel(T *o, int64_t n, T v) {
  LOOM_GRID_LOOP(i, n) o[i] = v;
}

int32_t k_full(const loom_kernel_call *c) {
  double v = 0;
  if (std::strcmp(c->op, "ones") == 0) v = 1;
  else if (std::strcmp(c->op, "full") == 0) v = param_f(c, "value", 0);
  const loom_backend_tensor &o = c->outputs[0];
  int64_t n = numel(o);
  if (n == 0) return 0;
  LOOM_CUDA_ALL(o.dtype, T, return decline(c, std::string("dtype ") + dtype_str(o.dtype)),
                fill_kernel<T><<<grid_for(n), kThreads, 0, stream_of(c)>>>(static_cast<T *>(o.data), n, static_cast<T>(v)));
  return launched(c);
}

template <typename T>
__global__ void add_into_kernel(T *o, const T *a, int64_t n) {
  LOOM_GRID_LOOP(i, n) o[i] += a[i];
}

// dst = src (or dst += src under LOOM_REQ_ADD), same dtype and size.
int32_t copy_req(const loom_kernel_call *c, const loom_backend_tensor &src,
                 const loom_backend_tensor &dst, int32_t req) {
  int64_t n = numel(dst);
  if (req == LOOM_REQ_NULL || n == 0) return 0;
  if (src.dtype != dst.dtype || numel(src) != n)
    return fail(std::string(c->op) + ": copy between " + shape_str(src) + " " + dtype_str(src.dtype) +
                " and " + shape_str(dst) + " " + dtype_str(dst.dtype));
  if (req == LOOM_REQ_ADD) {
    LOOM_CUDA_ALL(dst.dtype, T, return decline(c, "adding a gradient of this dtype"),
                  add_into_kernel<T><<<grid_for(n), kThreads, 0, stream_of(c)>>>(
                      static_cast<T *>(dst.data), static_cast<const T *>(src.data), n));
    return launched(c);
  }
  if (src.data == dst.data) return 0;
  return check(cudaMemcpyAsync(dst.data, src.data, size_t(n) * dtype_bytes(dst.dtype),
                               cudaMemcpyDeviceToDevice, stream_of(c)),
               c->op);
}

// Identity forwards: copy, reshape, Flatten, BlockGrad, (and the forward of MakeLoss is not here).
int32_t k_identity(const loom_kernel_call *c) { return copy_req(c, c->inputs[0], c->outputs[0], LOOM_REQ_WRITE); }

// Gradients that copy dy: copy, reshape, Flatten (inputs: x, y, dy).
int32_t k_identity_grad(const loom_kernel_call *c) {
  const loom_backend_tensor &dy = c->inputs[c->num_fwd_inputs + c->num_fwd_outputs];
  return copy_req(c, dy, c->outputs[0], c->req[0]);
}

int32_t k_blockgrad_grad(const loom_kernel_call *c) {
  const loom_backend_tensor &g = c->outputs[0];
  if (c->req[0] != LOOM_REQ_WRITE || numel(g) == 0) return 0;
  return check(cudaMemsetAsync(g.data, 0, size_t(numel(g)) * dtype_bytes(g.dtype), stream_of(c)), c->op);
}

template <typename S, typename D>
__global__ void cast_kernel(const S *a, D *o, int64_t n) {
  LOOM_GRID_LOOP(i, n) o[i] = static_cast<D>(a[i]);
}

int32_t cast_into(const loom_kernel_call *c, const loom_backend_tensor &src, const loom_backend_tensor &dst) {
  int64_t n = numel(dst);
  if (n == 0) return 0;
  const std::string why = std::string("cast from ") + dtype_str(src.dtype) + " to " + dtype_str(dst.dtype);
  LOOM_CUDA_ALL(src.dtype, S, return decline(c, why),
    LOOM_CUDA_ALL(dst.dtype, D, return decline(c, why),
      cast_kernel<S, D><<<grid_for(n), kThreads, 0, stream_of(c)>>>(static_cast<const S *>(src.data), static_cast<D *>(dst.data), n)));
  return launched(c);
}

int32_t k_cast(const loom_kernel_call *c) { return cast_into(c, c->inputs[0], c->outputs[0]); }

int32_t k_cast_grad(const loom_kernel_call *c) {
  if (c->req[0] == LOOM_REQ_NULL) return 0;
  if (c->req[0] != LOOM_REQ_WRITE) return decline(c, "adding a cast's gradient");
  return cast_into(c, c->inputs[c->num_fwd_inputs + c->num_fwd_outputs], c->outputs[0]);
}

// ------------------------------------------------------------ unary
enum class Un {
  Negative, Abs, Sign, Square, Relu, Exp, Log, Log1p, Expm1, Sqrt, Rsqrt, Reciprocal, Sigmoid,
  Tanh, Softsign, Sin, Cos, Floor, Ceil, Round, Copy
};

__device__ __forceinline__ double unary_d(Un op, double x) {
  switch (op) {
    case Un::Negative: return -x;
    case Un::Abs: return fabs(x);
    case Un::Sign: return double((x > 0) - (x < 0));
    case Un::Square: return x * x;
    case Un::Relu: return (x > 0 || x != x) ? x : 0.0;
    case Un::Exp: return exp(x);
    case Un::Log: return log(x);
    case Un::Log1p: return log1p(x);
    case Un::Expm1: return expm1(x);
    case Un::Sqrt: return sqrt(x);
    case Un::Rsqrt: return 1.0 / sqrt(x);
    case Un::Reciprocal: return 1.0 / x;
    case Un::Sigmoid: return 1.0 / (1.0 + exp(-x));
    case Un::Tanh: return tanh(x);
    case Un::Softsign: return x / (1.0 + fabs(x));
    case Un::Sin: return sin(x);
    case Un::Cos: return cos(x);
    case Un::Floor: return floor(x);
    case Un::Ceil: return ceil(x);
    case Un::Round: return round(x);
    default: return x;
  }
}

// Integers: computed unsigned, so they wrap as NumPy's do.
__device__ __forceinline__ int64_t unary_i(Un op, int64_t x) {
  uint64_t u = static_cast<uint64_t>(x);
  switch (op) {
    case Un::Negative: return static_cast<int64_t>(0 - u);
    case Un::Abs: return x < 0 ? static_cast<int64_t>(0 - u) : x;
    case Un::Sign: return int64_t((x > 0) - (x < 0));
    case Un::Square: return static_cast<int64_t>(u * u);
    case Un::Relu: return x > 0 ? x : 0;
    default: return x;
  }
}

template <typename T>
__global__ void unary_kernel(Un op, const T *a, T *o, int64_t n) {
  LOOM_GRID_LOOP(i, n) {
    if constexpr (std::is_floating_point<T>::value) o[i] = static_cast<T>(unary_d(op, static_cast<double>(a[i])));
    else o[i] = static_cast<T>(unary_i(op, static_cast<int64_t>(a[i])));
  }
}

Un unary_of(const char *name) {
  static const std::map<std::string, Un> m = {
      {"negative", Un::Negative}, {"abs", Un::Abs}, {"sign", Un::Sign}, {"square", Un::Square},
      {"relu", Un::Relu}, {"exp", Un::Exp}, {"log", Un::Log}, {"log1p", Un::Log1p},
      {"expm1", Un::Expm1}, {"sqrt", Un::Sqrt}, {"rsqrt", Un::Rsqrt}, {"reciprocal", Un::Reciprocal},
      {"sigmoid", Un::Sigmoid}, {"tanh", Un::Tanh}, {"softsign", Un::Softsign}, {"sin", Un::Sin},
      {"cos", Un::Cos}, {"floor", Un::Floor}, {"ceil", Un::Ceil}, {"round", Un::Round}};
  auto it = m.find(name);
  return it == m.end() ? Un::Copy : it->second;
}

int32_t k_unary(const loom_kernel_call *c) {
  const loom_backend_tensor &x = c->inputs[0], &o = c->outputs[0];
  int64_t n = numel(o);
  if (n == 0) return 0;
  Un op = unary_of(c->op);
  LOOM_CUDA_ALL(x.dtype, T, return decline(c, std::string("dtype ") + dtype_str(x.dtype)),
                unary_kernel<T><<<grid_for(n), kThreads, 0, stream_of(c)>>>(op, static_cast<const T *>(x.data), static_cast<T *>(o.data), n));
  return launched(c);
}

// d/dx from x, y and the incoming gradient g (grad.cc's table).
__device__ __forceinline__ double unary_grad_d(Un op, double x, double y, double g) {
  switch (op) {
    case Un::Negative: return -g;
    case Un::Abs: return g * double((x > 0) - (x < 0));
    case Un::Exp: return g * y;
    case Un::Log: return g / x;
    case Un::Sqrt: return g / (2 * y);
    case Un::Square: return 2 * x * g;
    case Un::Relu: return g * (x != x ? x : (x > 0 ? 1.0 : 0.0));
    case Un::Sigmoid: return g * y * (1 - y);
    case Un::Tanh: return g * (1 - y * y);
    case Un::Ceil:
    case Un::Floor:
    case Un::Round:
    case Un::Sign: return 0.0;
    case Un::Sin: return g * cos(x);
    case Un::Cos: return -g * sin(x);
    case Un::Expm1: return g * (y + 1);
    case Un::Log1p: return g / (1 + x);
    case Un::Softsign: return g / ((1 + fabs(x)) * (1 + fabs(x)));
    case Un::Rsqrt: return -0.5 * g * y * y * y;
    case Un::Reciprocal: return -g * y * y;
    default: return g;
  }
}

template <typename T>
__global__ void unary_grad_kernel(Un op, const T *x, const T *y, const T *g, T *dx, int32_t req, int64_t n) {
  LOOM_GRID_LOOP(i, n) {
    double xv = x ? double(x[i]) : 0.0, yv = y ? double(y[i]) : 0.0;
    store_req(dx + i, req, static_cast<T>(unary_grad_d(op, xv, yv, double(g[i]))));
  }
}

int32_t k_unary_grad(const loom_kernel_call *c) {
  const loom_backend_tensor &x = c->inputs[0], &y = c->inputs[1], &g = c->inputs[2], &dx = c->outputs[0];
  int64_t n = numel(dx);
  if (c->req[0] == LOOM_REQ_NULL || n == 0) return 0;
  Un op = unary_of(c->op);
  LOOM_CUDA_FLOATS(g.dtype, T, return decline(c, std::string("dtype ") + dtype_str(g.dtype)),
                   unary_grad_kernel<T><<<grid_for(n), kThreads, 0, stream_of(c)>>>(
                       op, static_cast<const T *>(x.data), static_cast<const T *>(y.data),
                       static_cast<const T *>(g.data), static_cast<T *>(dx.data), c->req[0], n));
  return launched(c);
}

// ------------------------------------------------------------ binary
enum class Bin { Add, Sub, Mul, Div, Pow, Max, Min, Eq, Ne, Gt, Ge, Lt, Le, RSub, RDiv, RPow };

template <typename T>
__device__ __forceinline__ T bin_apply(Bin op, T a, T b) {
  switch (op) {
    case Bin::Add: return T(a + b);
    case Bin::Sub: return T(a - b);
    case Bin::RSub: return T(b - a);
    case Bin::Mul: return T(a * b);
    case Bin::Div: return T(a / b);
    case Bin::RDiv: return T(b / a);
    case Bin::Pow: return T(pow(double(a), double(b)));
    case Bin::RPow: return T(pow(double(b), double(a)));
    case Bin::Max: return (a != a || a > b) ? a : b;
    case Bin::Min: return (a != a || a < b) ? a : b;
    case Bin::Eq: return T(a == b);
    case Bin::Ne: return T(a != b);
    case Bin::Gt: return T(a > b);
    case Bin::Ge: return T(a >= b);
    case Bin::Lt: return T(a < b);
    case Bin::Le: return T(a <= b);
  }
  return T(0);
}

// Integer add, subtract and multiply wrap: computed on the unsigned type of the same width.
template <typename T>
__device__ __forceinline__ T bin_int(Bin op, T a, T b) {
  typedef typename std::make_unsigned<T>::type U;
  switch (op) {
    case Bin::Add: return T(U(a) + U(b));
    case Bin::Sub: return T(U(a) - U(b));
    case Bin::RSub: return T(U(b) - U(a));
    case Bin::Mul: return T(U(a) * U(b));
    default: return bin_apply<T>(op, a, b);
  }
}

template <typename T>
__device__ __forceinline__ T bin_any(Bin op, T a, T b) {
  if constexpr (std::is_floating_point<T>::value) return bin_apply<T>(op, a, b);
  else return bin_int<T>(op, a, b);
}

template <typename T>
__global__ void binary_kernel(Bin op, const T *a, const T *b, T *o, Bcast bc, int64_t n, bool same) {
  LOOM_GRID_LOOP(i, n) {
    if (same) {
      o[i] = bin_any<T>(op, a[i], b[i]);
      continue;
    }
    int64_t r = i, ia = 0, ib = 0;
    for (int32_t k = bc.ndim - 1; k >= 0; --k) {
      int64_t idx = r % bc.out[k];
      r /= bc.out[k];
      ia += idx * bc.sa[k];
      ib += idx * bc.sb[k];
    }
    o[i] = bin_any<T>(op, a[ia], b[ib]);
  }
}

Bin binary_of(const char *name) {
  static const std::map<std::string, Bin> m = {
      {"add", Bin::Add}, {"subtract", Bin::Sub}, {"multiply", Bin::Mul}, {"divide", Bin::Div},
      {"power", Bin::Pow}, {"maximum", Bin::Max}, {"minimum", Bin::Min}, {"equal", Bin::Eq},
      {"not_equal", Bin::Ne}, {"greater", Bin::Gt}, {"greater_equal", Bin::Ge}, {"less", Bin::Lt},
      {"less_equal", Bin::Le},
      {"add_scalar", Bin::Add}, {"subtract_scalar", Bin::Sub}, {"rsubtract_scalar", Bin::RSub},
      {"multiply_scalar", Bin::Mul}, {"divide_scalar", Bin::Div}, {"rdivide_scalar", Bin::RDiv},
      {"power_scalar", Bin::Pow}, {"rpower_scalar", Bin::RPow}, {"maximum_scalar", Bin::Max},
      {"minimum_scalar", Bin::Min}, {"equal_scalar", Bin::Eq}, {"not_equal_scalar", Bin::Ne},
      {"greater_scalar", Bin::Gt}, {"greater_equal_scalar", Bin::Ge}, {"less_scalar", Bin::Lt},
      {"less_equal_scalar", Bin::Le}};
  return m.at(name);
}

bool integer_dtype(int32_t dt) { return dt != LOOM_DTYPE_FLOAT32 && dt != LOOM_DTYPE_FLOAT64; }

int32_t k_binary(const loom_kernel_call *c) {
  const loom_backend_tensor &a = c->inputs[0], &b = c->inputs[1], &o = c->outputs[0];
  int64_t n = numel(o);
  if (n == 0) return 0;
  Bin op = binary_of(c->op);
  // Integer division and powers check their operands on the CPU (division by
  // zero, negative exponents are errors there).
  if (integer_dtype(a.dtype) && (op == Bin::Div || op == Bin::Pow))
    return decline(c, std::string("integer ") + c->op);
  Bcast bc{};
  bool same = same_shape(a, o) && same_shape(b, o);
  if (!same && !make_bcast(a, b, o, &bc))
    return decline(c, "broadcasting " + shape_str(a) + " with " + shape_str(b));
  LOOM_CUDA_ALL(a.dtype, T, return decline(c, std::string("dtype ") + dtype_str(a.dtype)),
                binary_kernel<T><<<grid_for(n), kThreads, 0, stream_of(c)>>>(
                    op, static_cast<const T *>(a.data), static_cast<const T *>(b.data),
                    static_cast<T *>(o.data), bc, n, same));
  return launched(c);
}

template <typename T>
__global__ void scalar_kernel(Bin op, const T *a, T s, T *o, int64_t n) {
  LOOM_GRID_LOOP(i, n) o[i] = bin_any<T>(op, a[i], s);
}

int32_t k_scalar(const loom_kernel_call *c) {
  const loom_backend_tensor &a = c->inputs[0], &o = c->outputs[0];
  int64_t n = numel(o);
  if (n == 0) return 0;
  // Integers: the CPU checks the scalar's range and divisions by zero.
  if (integer_dtype(a.dtype)) return decline(c, std::string("integer ") + c->op);
  Bin op = binary_of(c->op);
  double s = param_f(c, "scalar", 0);
  LOOM_CUDA_FLOATS(a.dtype, T, return decline(c, std::string("dtype ") + dtype_str(a.dtype)),
                   scalar_kernel<T><<<grid_for(n), kThreads, 0, stream_of(c)>>>(
                       op, static_cast<const T *>(a.data), static_cast<T>(s), static_cast<T *>(o.data), n));
  return launched(c);
}

__device__ __forceinline__ double binary_grad_d(Bin op, int side, double x, double y, double gy) {
  switch (op) {
    case Bin::Add: return gy;
    case Bin::Sub: return side == 0 ? gy : -gy;
    case Bin::Mul: return side == 0 ? gy * y : gy * x;
    case Bin::Div: return side == 0 ? gy / y : -gy * x / (y * y);
    case Bin::Pow: return side == 0 ? gy * y * pow(x, y - 1) : gy * pow(x, y) * log(x);
    case Bin::Max: return gy * (side == 0 ? double(x >= y) : double(x < y));
    default: return gy * (side == 0 ? double(x <= y) : double(x > y));
  }
}

template <typename T>
__global__ void binary_grad_kernel(Bin op, const T *a, const T *b, const T *g, T *da, T *db,
                                   int32_t ra, int32_t rb, int64_t n) {
  LOOM_GRID_LOOP(i, n) {
    double x = a ? double(a[i]) : 0.0, y = b ? double(b[i]) : 0.0, gy = double(g[i]);
    if (ra) store_req(da + i, ra, static_cast<T>(binary_grad_d(op, 0, x, y, gy)));
    if (rb) store_req(db + i, rb, static_cast<T>(binary_grad_d(op, 1, x, y, gy)));
  }
}

// A broadcast input's gradient: each output element's term added (in double,
// atomically) into the input element it read, then rounded once.
template <typename T>
__global__ void binary_grad_bcast(Bin op, int side, const T *a, const T *b, const T *g, double *acc, Bcast bc,
                                  int64_t n) {
  LOOM_GRID_LOOP(i, n) {
    int64_t r = i, ia = 0, ib = 0;
    for (int32_t k = bc.ndim - 1; k >= 0; --k) {
      int64_t idx = r % bc.out[k];
      r /= bc.out[k];
      ia += idx * bc.sa[k];
      ib += idx * bc.sb[k];
    }
    double x = a ? double(a[ia]) : 0.0, y = b ? double(b[ib]) : 0.0;
    atomicAdd(acc + (side == 0 ? ia : ib), binary_grad_d(op, side, x, y, double(g[i])));
  }
}

template <typename T>
__global__ void store_from_double(const double *acc, T *d, int64_t n, int32_t req) {
  LOOM_GRID_LOOP(i, n) store_req(d + i, req, static_cast<T>(acc[i]));
}

template <typename T>
int32_t binary_grad_broadcast(const loom_kernel_call *c, Bin op) {
  const loom_backend_tensor &a = c->inputs[0], &b = c->inputs[1], &g = c->inputs[3];
  Bcast bc{};
  if (!make_bcast(a, b, g, &bc)) return decline(c, "broadcasting " + shape_str(a) + " with " + shape_str(b));
  const int64_t n = numel(g);
  for (int side = 0; side < 2; ++side) {
    const int32_t req = c->req[side];
    const int64_t m = numel(c->outputs[side]);
    if (!req || m == 0) continue;
    double *acc = static_cast<double *>(scratch(c->dev_id, size_t(m) * sizeof(double)));
    if (!acc) return fail(std::string(c->op) + " (gradient): no device memory for the sums");
    if (check(cudaMemsetAsync(acc, 0, size_t(m) * sizeof(double), stream_of(c)), c->op)) return 1;
    if (n)
      binary_grad_bcast<T><<<grid_for(n), kThreads, 0, stream_of(c)>>>(
          op, side, static_cast<const T *>(a.data), static_cast<const T *>(b.data), static_cast<const T *>(g.data),
          acc, bc, n);
    store_from_double<T><<<grid_for(m), kThreads, 0, stream_of(c)>>>(acc, static_cast<T *>(c->outputs[side].data), m,
                                                                    req);
    if (int32_t rc = launched(c)) return rc;
  }
  return 0;
}

// Inputs: lhs, rhs, out, dy; outputs: dlhs, drhs.
int32_t k_binary_grad(const loom_kernel_call *c) {
  const loom_backend_tensor &a = c->inputs[0], &b = c->inputs[1], &g = c->inputs[3];
  Bin op = binary_of(c->op);
  if (!same_shape(c->outputs[0], g) || !same_shape(c->outputs[1], g)) {
    LOOM_CUDA_FLOATS(g.dtype, T, return decline(c, std::string("dtype ") + dtype_str(g.dtype)),
                     return binary_grad_broadcast<T>(c, op));
  }
  int64_t n = numel(g);
  if (n == 0) return 0;
  int32_t ra = c->req[0], rb = c->req[1];
  LOOM_CUDA_FLOATS(g.dtype, T, return decline(c, std::string("dtype ") + dtype_str(g.dtype)),
                   binary_grad_kernel<T><<<grid_for(n), kThreads, 0, stream_of(c)>>>(
                       op, static_cast<const T *>(a.data), static_cast<const T *>(b.data),
                       static_cast<const T *>(g.data), static_cast<T *>(c->outputs[0].data),
                       static_cast<T *>(c->outputs[1].data), ra, rb, n));
  return launched(c);
}

__device__ __forceinline__ double scalar_grad_d(Bin op, double x, double s, double g) {
  switch (op) {
    case Bin::Add:
    case Bin::Sub: return g;
    case Bin::RSub: return -g;
    case Bin::Mul: return g * s;
    case Bin::Div: return g / s;
    case Bin::Pow: return g * s * pow(x, s - 1);
    case Bin::RDiv: return -g * s / (x * x);
    case Bin::RPow: return g * pow(s, x) * log(s);
    case Bin::Max: return g * double(x >= s);
    default: return g * double(x <= s);  // Min
  }
}

template <typename T>
__global__ void scalar_grad_kernel(Bin op, const T *x, double s, const T *g, T *dx, int32_t req, int64_t n) {
  LOOM_GRID_LOOP(i, n) store_req(dx + i, req, static_cast<T>(scalar_grad_d(op, x ? double(x[i]) : 0.0, s, double(g[i]))));
}

int32_t k_scalar_grad(const loom_kernel_call *c) {
  const loom_backend_tensor &x = c->inputs[0], &g = c->inputs[2], &dx = c->outputs[0];
  int64_t n = numel(dx);
  if (c->req[0] == LOOM_REQ_NULL || n == 0) return 0;
  Bin op = binary_of(c->op);
  double s = param_f(c, "scalar", 0);
  LOOM_CUDA_FLOATS(g.dtype, T, return decline(c, std::string("dtype ") + dtype_str(g.dtype)),
                   scalar_grad_kernel<T><<<grid_for(n), kThreads, 0, stream_of(c)>>>(
                       op, static_cast<const T *>(x.data), s, static_cast<const T *>(g.data),
                       static_cast<T *>(dx.data), c->req[0], n));
  return launched(c);
}

// ------------------------------------------------------------ ElementWiseSum
constexpr int kMaxSumInputs = 16;
template <typename T>
struct SumArgs {
  const T *in[kMaxSumInputs];
  int32_t k;
};

template <typename T>
__global__ void sum_kernel(SumArgs<T> args, T *o, int64_t n) {
  LOOM_GRID_LOOP(i, n) {
    T s = T(0);
    for (int32_t j = 0; j < args.k; ++j) s = T(s + args.in[j][i]);
    o[i] = s;
  }
}

int32_t k_elementwise_sum(const loom_kernel_call *c) {
  const loom_backend_tensor &o = c->outputs[0];
  int64_t n = numel(o);
  if (n == 0) return 0;
  if (c->num_inputs > kMaxSumInputs) return decline(c, std::to_string(c->num_inputs) + " inputs");
  if (integer_dtype(o.dtype)) return decline(c, std::string("dtype ") + dtype_str(o.dtype));
  LOOM_CUDA_FLOATS(o.dtype, T, return decline(c, std::string("dtype ") + dtype_str(o.dtype)), {
    SumArgs<T> args{};
    args.k = c->num_inputs;
    for (int32_t j = 0; j < c->num_inputs; ++j) args.in[j] = static_cast<const T *>(c->inputs[j].data);
    sum_kernel<T><<<grid_for(n), kThreads, 0, stream_of(c)>>>(args, static_cast<T *>(o.data), n);
  });
  return launched(c);
}

// Each input's gradient is dy.
int32_t k_elementwise_sum_grad(const loom_kernel_call *c) {
  const loom_backend_tensor &dy = c->inputs[c->num_fwd_inputs + c->num_fwd_outputs];
  for (int32_t j = 0; j < c->num_outputs; ++j)
    if (int32_t rc = copy_req(c, dy, c->outputs[j], c->req[j])) return rc;
  return 0;
}

// ------------------------------------------------------------ Activation
enum class Act { Relu, Sigmoid, Tanh, SoftRelu, SoftSign };

Act act_of(const loom_kernel_call *c) {
  std::string a = param_s(c, "act_type", "relu");
  if (a == "relu") return Act::Relu;
  if (a == "sigmoid") return Act::Sigmoid;
  if (a == "tanh") return Act::Tanh;
  if (a == "softrelu") return Act::SoftRelu;
  return Act::SoftSign;
}

template <typename T>
__global__ void act_kernel(Act a, const T *x, T *y, int64_t n) {
  LOOM_GRID_LOOP(i, n) {
    T v = x[i];
    switch (a) {
      case Act::Relu: y[i] = (v > T(0) || v != v) ? v : T(0); break;
      case Act::Sigmoid: y[i] = T(1) / (T(1) + exp(-v)); break;
      case Act::Tanh: y[i] = tanh(v); break;
      case Act::SoftRelu: y[i] = v > T(20) ? v : log1p(exp(v)); break;
      default: y[i] = v / (T(1) + fabs(v));
    }
  }
}

int32_t k_activation(const loom_kernel_call *c) {
  const loom_backend_tensor &x = c->inputs[0], &y = c->outputs[0];
  int64_t n = numel(y);
  if (n == 0) return 0;
  Act a = act_of(c);
  LOOM_CUDA_FLOATS(x.dtype, T, return decline(c, std::string("dtype ") + dtype_str(x.dtype)),
                   act_kernel<T><<<grid_for(n), kThreads, 0, stream_of(c)>>>(
                       a, static_cast<const T *>(x.data), static_cast<T *>(y.data), n));
  return launched(c);
}

template <typename T>
__global__ void act_grad_kernel(Act a, const T *y, const T *dy, T *dx, int32_t req, int64_t n) {
  LOOM_GRID_LOOP(i, n) {
    double g, v = double(y[i]);
    switch (a) {
      case Act::Relu: g = v != v ? v : (v > 0 ? 1 : 0); break;
      case Act::Sigmoid: g = v * (1 - v); break;
      case Act::Tanh: g = 1 - v * v; break;
      case Act::SoftRelu: g = -expm1(-v); break;
      default: {
        double t = 1 - fabs(v);
        g = t * t;
      }
    }
    store_req(dx + i, req, static_cast<T>(g * double(dy[i])));
  }
}

// Inputs: x, y, dy (the gradient reads y only).
int32_t k_activation_grad(const loom_kernel_call *c) {
  const loom_backend_tensor &y = c->inputs[1], &dy = c->inputs[2], &dx = c->outputs[0];
  int64_t n = numel(dx);
  if (c->req[0] == LOOM_REQ_NULL || n == 0) return 0;
  Act a = act_of(c);
  LOOM_CUDA_FLOATS(dy.dtype, T, return decline(c, std::string("dtype ") + dtype_str(dy.dtype)),
                   act_grad_kernel<T><<<grid_for(n), kThreads, 0, stream_of(c)>>>(
                       a, static_cast<const T *>(y.data), static_cast<const T *>(dy.data),
                       static_cast<T *>(dx.data), c->req[0], n));
  return launched(c);
}

}  // namespace

void register_elemwise(KernelMap &f, KernelMap &b) {
  for (const char *n : {"full", "zeros", "ones"}) LOOM_CUDA_REG(f, n, k_full);
  for (const char *n : {"copy", "reshape", "Flatten", "BlockGrad"}) LOOM_CUDA_REG(f, n, k_identity);
  for (const char *n : {"copy", "reshape", "Flatten"}) LOOM_CUDA_REG(b, n, k_identity_grad);
  LOOM_CUDA_REG(b, "BlockGrad", k_blockgrad_grad);
  LOOM_CUDA_REG(f, "cast", k_cast);
  LOOM_CUDA_REG(b, "cast", k_cast_grad);
  for (const char *n : {"negative", "abs", "sign", "square", "relu", "exp", "log", "log1p", "expm1",
                        "sqrt", "rsqrt", "reciprocal", "sigmoid", "tanh", "softsign", "sin", "cos",
                        "floor", "ceil", "round"}) {
    LOOM_CUDA_REG(f, n, k_unary);
    LOOM_CUDA_REG(b, n, k_unary_grad);
  }
  for (const char *n : {"add", "subtract", "multiply", "divide", "power", "maximum", "minimum", "equal",
                        "not_equal", "greater", "greater_equal", "less", "less_equal"})
    LOOM_CUDA_REG(f, n, k_binary);
  for (const char *n : {"add", "subtract", "multiply", "divide", "power", "maximum", "minimum"})
    LOOM_CUDA_REG(b, n, k_binary_grad);
  for (const char *n : {"add_scalar", "subtract_scalar", "rsubtract_scalar", "multiply_scalar",
                        "divide_scalar", "rdivide_scalar", "power_scalar", "rpower_scalar",
                        "maximum_scalar", "minimum_scalar", "equal_scalar", "not_equal_scalar",
                        "greater_scalar", "greater_equal_scalar", "less_scalar", "less_equal_scalar"})
    LOOM_CUDA_REG(f, n, k_scalar);
  for (const char *n : {"add_scalar", "subtract_scalar", "rsubtract_scalar", "multiply_scalar",
                        "divide_scalar", "rdivide_scalar", "power_scalar", "rpower_scalar",
                        "maximum_scalar", "minimum_scalar"})
    LOOM_CUDA_REG(b, n, k_scalar_grad);
  LOOM_CUDA_REG(f, "ElementWiseSum", k_elementwise_sum);
  LOOM_CUDA_REG(b, "ElementWiseSum", k_elementwise_sum_grad);
  LOOM_CUDA_REG(f, "Activation", k_activation);
  LOOM_CUDA_REG(b, "Activation", k_activation_grad);
}

}  // namespace loomcuda
