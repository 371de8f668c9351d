// The fused RNN operator: MXNet 1.9's interface and parameter layout (the
// cuDNN layout MXNet's CPU kernels share), forward and backward through time.
//
// Layout of `parameters` (one flat vector): every weight first, then every
// bias. Weights: for each layer, for each direction, W_x (G*H x in) then
// W_h (G*H x H); biases: for each layer and direction, b_x (G*H) then b_h
// (G*H). Gates in order: LSTM i, f, g, o; GRU r, z, n (n uses r * (W_hn h +
// b_hn), as cuDNN and PyTorch do). Bidirectional layers concatenate the
// forward and the backward direction's states on the feature axis.
//
// A hidden last output (`reserve`) keeps what the backward pass needs: the
// gate activations (and LSTM cells) of every step, the outputs of the inner
// layers, and the dropout masks between layers.
#include <cstring>

#include "common/scratch.h"
#include "ops/common.h"
#include "ops/linalg/gemm.h"
#include "ops/vecmath.h"
#include "ops/random/philox.h"

namespace loom {
namespace {

enum RnnMode { kRelu = 0, kTanh = 1, kLstm = 2, kGru = 3 };

int rnn_mode(const Params &p) {
  const std::string &m = p.s("mode");
  return m == "rnn_relu" ? kRelu : m == "rnn_tanh" ? kTanh : m == "lstm" ? kLstm : kGru;
}

int gates_of(int mode) { return mode == kLstm ? 4 : mode == kGru ? 3 : 1; }
// Per step and batch row, in units of H, what the reserve keeps per direction.
int saved_of(int mode) { return mode == kLstm ? 5 : mode == kGru ? 4 : 0; }

struct RnnDims {
  int mode = 0;
  int64_t T = 0, N = 0, I = 0, H = 0, L = 0, D = 1, G = 1;
  bool dropout = false;  // p > 0: masks between layers are kept

  int64_t in_size(int64_t l) const { return l ? D * H : I; }
  int64_t w_size(int64_t l) const { return G * H * (in_size(l) + H); }
  int64_t weights() const {
    int64_t s = 0;
    for (int64_t l = 0; l < L; ++l) s += D * w_size(l);
    return s;
  }
  int64_t param_size() const { return weights() + L * D * 2 * G * H; }
  int64_t w_off(int64_t l, int64_t d) const {
    int64_t s = 0;
    for (int64_t k = 0; k < l; ++k) s += D * w_size(k);
    return s + d * w_size(l);
  }
  int64_t b_off(int64_t l, int64_t d) const { return weights() + (l * D + d) * 2 * G * H; }
  // Reserve: per (layer, direction) the saved gates; per inner layer its
  // output, and with dropout the mask and the masked output.
  int64_t gates_block() const { return T * N * H * saved_of(mode); }
  int64_t layer_out() const { return T * N * D * H; }
  int64_t gates_off(int64_t l, int64_t d) const { return (l * D + d) * gates_block(); }
  int64_t inner_off(int64_t l) const {
    return L * D * gates_block() + l * layer_out() * (dropout ? 3 : 1);
  }
  int64_t reserve() const {
    return L * D * gates_block() + (L - 1) * layer_out() * (dropout ? 3 : 1);
  }
};

RnnDims rnn_dims(const Params &p, const Shape &data) {
  RnnDims r;
  r.mode = rnn_mode(p);
  r.G = gates_of(r.mode);
  r.T = data.d[0];
  r.N = data.d[1];
  r.I = data.d[2];
  r.H = p.i("state_size");
  r.L = p.i("num_layers");
  r.D = p.b("bidirectional") ? 2 : 1;
  r.dropout = p.f("p") > 0 && r.L > 1;
  return r;
}

std::string param_formula(const RnnDims &r) {
  return "for " + std::to_string(r.L) + " layer(s) x " + std::to_string(r.D) +
         " direction(s), gates G=" + std::to_string(r.G) + ", state_size H=" + std::to_string(r.H) +
         ", input size I=" + std::to_string(r.I) +
         ": D*G*H*(I+H+2) + (L-1)*D*G*H*(D*H+H+2) = " + std::to_string(r.param_size());
}

void check_params(const Params &p) {
  const std::string &n = p.op().name;
  LOOM_CHECK(p.i("state_size") > 0, LOOM_ERR_INVALID_ARGUMENT, n, ": state_size must be > 0, got ",
             p.i("state_size"));
  LOOM_CHECK(p.i("num_layers") > 0, LOOM_ERR_INVALID_ARGUMENT, n, ": num_layers must be > 0, got ",
             p.i("num_layers"));
  LOOM_CHECK(p.f("p") >= 0 && p.f("p") < 1, LOOM_ERR_INVALID_ARGUMENT, n,
             ": p (dropout between layers) must be in [0, 1), got ", p.f("p"));
  LOOM_CHECK(!p.b("use_sequence_length"), LOOM_ERR_INVALID_ARGUMENT, n,
             ": use_sequence_length is not supported on CPU (MXNet 1.9 offers it with cuDNN "
             "only); mask the padded steps with SequenceMask, or bucket the sequences by length");
  LOOM_CHECK(!p.has("projection_size"), LOOM_ERR_INVALID_ARGUMENT, n,
             ": projection_size (LSTMP) is not supported (MXNet 1.9 cannot train it on CPU "
             "either)");
  LOOM_CHECK(!p.has("lstm_state_clip_min") && !p.has("lstm_state_clip_max"),
             LOOM_ERR_INVALID_ARGUMENT, n,
             ": lstm_state_clip_min/max are not supported on CPU (MXNet 1.9 applies them with "
             "cuDNN only)");
}

template <typename T>
inline T sigm(T x) {
  return T(1) / (T(1) + std::exp(-x));
}

// One row of an LSTM step in float32, in loops the compiler vectorises: the
// gates from their pre-activations (the summation order of the generic loop),
// the cell and the output. exp_approx and tanh_approx (within 2 ulp and 3.7e-7)
// stand in for libm's scalar calls; the backward pass below uses the same tanh.
LOOM_VECTOR_CLONES void lstm_row_f32(const float *__restrict__ a, const float *__restrict__ b,
                                     const float *__restrict__ bx, const float *__restrict__ bh,
                                     const float *__restrict__ cpr, float *__restrict__ sg,
                                     float *__restrict__ h, int64_t H) {
  float *__restrict__ c = sg + 4 * H;
  for (int64_t j = 0; j < H; ++j) {
    float i = 1.0f / (1.0f + exp_approx(-(a[j] + b[j] + bx[j] + bh[j])));
    float f = 1.0f / (1.0f + exp_approx(-(a[H + j] + b[H + j] + bx[H + j] + bh[H + j])));
    float g = tanh_approx(a[2 * H + j] + b[2 * H + j] + bx[2 * H + j] + bh[2 * H + j]);
    float o = 1.0f / (1.0f + exp_approx(-(a[3 * H + j] + b[3 * H + j] + bx[3 * H + j] + bh[3 * H + j])));
    float cn = f * cpr[j] + i * g;
    sg[j] = i, sg[H + j] = f, sg[2 * H + j] = g, sg[3 * H + j] = o, c[j] = cn;
    h[j] = o * tanh_approx(cn);
  }
}

// Its gradient for one row: the gate gradients into gx, dc carried into dcn.
LOOM_VECTOR_CLONES void lstm_row_grad_f32(const float *__restrict__ sg, const float *__restrict__ cp,
                                          const float *__restrict__ dyn, const float *__restrict__ dhn,
                                          float *__restrict__ dcn, float *__restrict__ gx, int64_t H) {
  const float *__restrict__ c = sg + 4 * H;
  for (int64_t j = 0; j < H; ++j) {
    float i = sg[j], f = sg[H + j], g = sg[2 * H + j], o = sg[3 * H + j];
    float dh = dyn[j] + dhn[j];
    float tc = tanh_approx(c[j]);
    float dc = dcn[j] + dh * o * (1.0f - tc * tc);
    gx[j] = dc * g * i * (1.0f - i);
    gx[H + j] = dc * cp[j] * f * (1.0f - f);
    gx[2 * H + j] = dc * i * (1.0f - g * g);
    gx[3 * H + j] = dh * tc * o * (1.0f - o);
    dcn[j] = dc * f;
  }
}

// Rows of one step run in parallel only when they are worth a thread.
int64_t row_grain(const RnnDims &r) { return std::max<int64_t>(1, 16384 / (r.H * r.G * 4)); }

template <typename T>
void rnn_forward(const OpContext &ctx, const Params &p, const BlobList &in, const BlobList &out) {
  const RnnDims r = rnn_dims(p, in[0].shape);
  const int64_t T_ = r.T, N = r.N, H = r.H, D = r.D, G = r.G, GH = G * H;
  const bool lstm = r.mode == kLstm, state_out = p.b("state_outputs");
  const T *w = in[1].ptr<T>();
  const T *hx = in[2].ptr<T>();
  const T *cx = lstm ? in[3].ptr<T>() : nullptr;
  T *y_final = out[0].ptr<T>();
  T *hy = state_out ? out[1].ptr<T>() : nullptr;
  T *cy = state_out && lstm ? out[2].ptr<T>() : nullptr;
  T *rs = out[out.size() - 1].ptr<T>();
  const bool drop = r.dropout && ctx.is_train;
  const double prob = p.f("p");
  ScratchArray<T> gx(static_cast<size_t>(T_ * N * GH), "for the RNN's input gates");
  std::vector<T> gh(static_cast<size_t>(N * GH));
  const T *x = in[0].ptr<T>();
  for (int64_t l = 0; l < r.L; ++l) {
    const int64_t In = r.in_size(l);
    T *y = l == r.L - 1 ? y_final : rs + r.inner_off(l);
    for (int64_t d = 0; d < D; ++d) {
      const T *Wx = w + r.w_off(l, d), *Wh = Wx + GH * In;
      const T *bx = w + r.b_off(l, d), *bh = bx + GH;
      T *saved = rs + r.gates_off(l, d);
      gemm<T>(false, true, T_ * N, GH, In, 1.0, x, In, Wx, In, 0.0, gx.data(), GH);
      const T *h0 = hx + (l * D + d) * N * H;
      const T *c0 = lstm ? cx + (l * D + d) * N * H : nullptr;
      const T *hprev = h0, *cprev = c0;
      int64_t ldh = H, ldc = H;  // the initial states are dense; later ones strided
      for (int64_t s = 0; s < T_; ++s) {
        const int64_t t = d ? T_ - 1 - s : s;
        gemm<T>(false, true, N, GH, H, 1.0, hprev, ldh, Wh, H, 0.0, gh.data(), GH);
        const T *gxt = gx.data() + t * N * GH;
        T *yt = y + t * N * D * H + d * H;
        T *st = saved + t * N * H * saved_of(r.mode);
        const T *hp = hprev, *cp = cprev;
        const int64_t ldp = ldh, ldcp = ldc;
        parallel_for(N, [&](int64_t n) {
          const T *a = gxt + n * GH, *b = gh.data() + n * GH;
          T *h = yt + n * D * H;
          const T *hpr = hp + n * ldp;
          if (r.mode == kLstm) {
            T *sg = st + n * 5 * H, *c = sg + 4 * H;
            const T *cpr = cp + n * ldcp;
            if constexpr (std::is_same_v<T, float>) {
              lstm_row_f32(a, b, bx, bh, cpr, sg, h, H);
              return;
            }
            for (int64_t j = 0; j < H; ++j) {
              T i = sigm<T>(a[j] + b[j] + bx[j] + bh[j]);
              T f = sigm<T>(a[H + j] + b[H + j] + bx[H + j] + bh[H + j]);
              T g = std::tanh(a[2 * H + j] + b[2 * H + j] + bx[2 * H + j] + bh[2 * H + j]);
              T o = sigm<T>(a[3 * H + j] + b[3 * H + j] + bx[3 * H + j] + bh[3 * H + j]);
              T cn = f * cpr[j] + i * g;
              sg[j] = i, sg[H + j] = f, sg[2 * H + j] = g, sg[3 * H + j] = o, c[j] = cn;
              h[j] = o * std::tanh(cn);
            }
          } else if (r.mode == kGru) {
            T *sg = st + n * 4 * H;
            for (int64_t j = 0; j < H; ++j) {
              T rr = sigm<T>(a[j] + bx[j] + b[j] + bh[j]);
              T z = sigm<T>(a[H + j] + bx[H + j] + b[H + j] + bh[H + j]);
              T hn = b[2 * H + j] + bh[2 * H + j];
              T nn = std::tanh(a[2 * H + j] + bx[2 * H + j] + rr * hn);
              sg[j] = rr, sg[H + j] = z, sg[2 * H + j] = nn, sg[3 * H + j] = hn;
              h[j] = (T(1) - z) * nn + z * hpr[j];
            }
          } else {
            for (int64_t j = 0; j < H; ++j) {
              T v = a[j] + b[j] + bx[j] + bh[j];
              h[j] = r.mode == kRelu ? (v > T(0) ? v : T(0)) : std::tanh(v);
            }
          }
        }, row_grain(r));
        hprev = yt;
        ldh = D * H;
        if (lstm) cprev = st + 4 * H, ldc = 5 * H;  // cells are every 5H in the reserve
      }
      // Final states: the last step processed (t = T-1 forward, t = 0 backward).
      if (state_out) {
        const int64_t tl = d ? 0 : T_ - 1;
        T *hyo = hy + (l * D + d) * N * H;
        for (int64_t n = 0; n < N; ++n) {
          const T *src = T_ ? y + tl * N * D * H + n * D * H + d * H : h0 + n * H;
          std::memcpy(hyo + n * H, src, sizeof(T) * H);
          if (lstm) {
            const T *cs = T_ ? saved + tl * N * H * 5 + n * 5 * H + 4 * H : c0 + n * H;
            std::memcpy(cy + (l * D + d) * N * H + n * H, cs, sizeof(T) * H);
          }
        }
      }
    }
    if (l < r.L - 1) {
      x = y;
      if (r.dropout) {
        T *mask = rs + r.inner_off(l) + r.layer_out(), *xd = mask + r.layer_out();
        const int64_t n = r.layer_out();
        if (drop) {
          Philox ph(ctx.rng_key, ctx.rng_stream);
          const T keep = static_cast<T>(1.0 / (1.0 - prob));
          const uint64_t base = static_cast<uint64_t>(l) << 40;
          for (int64_t b = 0; b < (n + 3) / 4; ++b) {
            uint32_t u[4];
            ph.block(base + static_cast<uint64_t>(b), u);
            for (int k = 0; k < 4 && b * 4 + k < n; ++k)
              mask[b * 4 + k] = u01_float(u[k]) < prob ? T(0) : keep;
          }
        } else {
          std::fill(mask, mask + n, T(1));
        }
        for (int64_t i = 0; i < n; ++i) xd[i] = y[i] * mask[i];
        x = xd;
      }
    }
  }
}

template <typename T>
void rnn_backward(const OpContext &, const Params &p, const BlobList &in, const BlobList &out,
                  const BlobList &og, const BlobList &ig, const ReqList &req) {
  const RnnDims r = rnn_dims(p, in[0].shape);
  const int64_t T_ = r.T, N = r.N, H = r.H, D = r.D, G = r.G, GH = G * H;
  const bool lstm = r.mode == kLstm, state_out = p.b("state_outputs");
  const int S = saved_of(r.mode);
  const T *w = in[1].ptr<T>();
  const T *hx = in[2].ptr<T>();
  const T *cx = lstm ? in[3].ptr<T>() : nullptr;
  const T *rs = out[out.size() - 1].ptr<T>();
  const T *dhy = state_out ? og[1].ptr<T>() : nullptr;
  const T *dcy = state_out && lstm ? og[2].ptr<T>() : nullptr;
  T *dw = req[1] ? ig[1].ptr<T>() : nullptr;
  T *dhx = req[2] ? ig[2].ptr<T>() : nullptr;
  T *dcx = lstm && req[3] ? ig[3].ptr<T>() : nullptr;
  ScratchArray<T> dgx(static_cast<size_t>(T_ * N * GH), "for the RNN's gate gradients");
  ScratchArray<T> dgh(r.mode == kGru ? static_cast<size_t>(T_ * N * GH) : 0, "for the RNN's gate gradients");
  ScratchArray<T> hprev_all(static_cast<size_t>(T_ * N * H), "for the RNN's previous states");
  std::vector<T> dh_next(static_cast<size_t>(N * H)), dc_next(lstm ? static_cast<size_t>(N * H) : 0);
  ScratchArray<T> dy_inner, dx_inner;
  const T *dy = og[0].ptr<T>();  // gradient of this layer's output (T, N, D*H)
  for (int64_t l = r.L - 1; l >= 0; --l) {
    const int64_t In = r.in_size(l);
    const T *y = l == r.L - 1 ? out[0].ptr<T>() : rs + r.inner_off(l);
    const T *x = l == 0 ? in[0].ptr<T>()
                        : rs + r.inner_off(l - 1) + (r.dropout ? 2 * r.layer_out() : 0);
    // Where this layer's input gradient goes: the data's, or a buffer for the layer below.
    T *dx = nullptr;
    if (l > 0) {
      dx_inner.assign(static_cast<size_t>(T_ * N * In), "for the RNN's inner gradients");
      dx = dx_inner.data();
    } else if (req[0]) {
      dx = ig[0].ptr<T>();
    }
    for (int64_t d = 0; d < D; ++d) {
      const T *Wx = w + r.w_off(l, d), *Wh = Wx + GH * In;
      const T *saved = rs + r.gates_off(l, d);
      const T *h0 = hx + (l * D + d) * N * H;
      const T *c0 = lstm ? cx + (l * D + d) * N * H : nullptr;
      T *dghp = r.mode == kGru ? dgh.data() : dgx.data();
      if (dhy) std::memcpy(dh_next.data(), dhy + (l * D + d) * N * H, sizeof(T) * N * H);
      else std::fill(dh_next.begin(), dh_next.end(), T(0));
      if (lstm) {
        if (dcy) std::memcpy(dc_next.data(), dcy + (l * D + d) * N * H, sizeof(T) * N * H);
        else std::fill(dc_next.begin(), dc_next.end(), T(0));
      }
      // The state each step read, in time order, for the recurrent weights' gradient.
      for (int64_t t = 0; t < T_; ++t) {
        const bool first = d ? t == T_ - 1 : t == 0;
        const int64_t tp = d ? t + 1 : t - 1;
        T *dst = hprev_all.data() + t * N * H;
        for (int64_t n = 0; n < N; ++n)
          std::memcpy(dst + n * H, first ? h0 + n * H : y + tp * N * D * H + n * D * H + d * H,
                      sizeof(T) * H);
      }
      for (int64_t s = T_ - 1; s >= 0; --s) {
        const int64_t t = d ? T_ - 1 - s : s;
        const bool first = s == 0;
        const int64_t tp = d ? t + 1 : t - 1;
        const T *st = saved + t * N * H * S;
        const T *dyt = dy + t * N * D * H + d * H;
        const T *yt = y + t * N * D * H + d * H;
        const T *hp = hprev_all.data() + t * N * H;
        T *dgxt = dgx.data() + t * N * GH;
        T *dght = dghp + t * N * GH;
        parallel_for(N, [&](int64_t n) {
          T *gx = dgxt + n * GH, *gh = dght + n * GH;
          T *dhn = dh_next.data() + n * H;
          const T *dyn = dyt + n * D * H;
          if (r.mode == kLstm) {
            const T *sg = st + n * 5 * H, *c = sg + 4 * H;
            const T *cp = first ? c0 + n * H : saved + tp * N * H * 5 + n * 5 * H + 4 * H;
            T *dcn = dc_next.data() + n * H;
            if constexpr (std::is_same_v<T, float>) {
              lstm_row_grad_f32(sg, cp, dyn, dhn, dcn, gx, H);
              return;
            }
            for (int64_t j = 0; j < H; ++j) {
              T i = sg[j], f = sg[H + j], g = sg[2 * H + j], o = sg[3 * H + j];
              T dh = dyn[j] + dhn[j];
              T tc = std::tanh(c[j]);
              T dc = dcn[j] + dh * o * (T(1) - tc * tc);
              gx[j] = dc * g * i * (T(1) - i);
              gx[H + j] = dc * cp[j] * f * (T(1) - f);
              gx[2 * H + j] = dc * i * (T(1) - g * g);
              gx[3 * H + j] = dh * tc * o * (T(1) - o);
              dcn[j] = dc * f;
            }
          } else if (r.mode == kGru) {
            const T *sg = st + n * 4 * H, *hpn = hp + n * H;
            for (int64_t j = 0; j < H; ++j) {
              T rr = sg[j], z = sg[H + j], nn = sg[2 * H + j], hn = sg[3 * H + j];
              T dh = dyn[j] + dhn[j];
              T dan = dh * (T(1) - z) * (T(1) - nn * nn);
              T daz = dh * (hpn[j] - nn) * z * (T(1) - z);
              T dar = dan * hn * rr * (T(1) - rr);
              gx[j] = gh[j] = dar;
              gx[H + j] = gh[H + j] = daz;
              gx[2 * H + j] = dan;
              gh[2 * H + j] = dan * rr;
              dhn[j] = dh * z;  // the direct path; the recurrent product is added below
            }
          } else {
            const T *yn = yt + n * D * H;
            for (int64_t j = 0; j < H; ++j) {
              T dh = dyn[j] + dhn[j];
              gx[j] = r.mode == kRelu ? (yn[j] > T(0) ? dh : T(0)) : dh * (T(1) - yn[j] * yn[j]);
            }
          }
        }, row_grain(r));
        gemm<T>(false, false, N, H, GH, 1.0, dght, GH, Wh, H, r.mode == kGru ? 1.0 : 0.0,
                dh_next.data(), H);
      }
      if (dhx) std::memcpy(dhx + (l * D + d) * N * H, dh_next.data(), sizeof(T) * N * H);
      if (dcx) std::memcpy(dcx + (l * D + d) * N * H, dc_next.data(), sizeof(T) * N * H);
      if (dw) {
        T *dWx = dw + r.w_off(l, d), *dWh = dWx + GH * In;
        T *dbx = dw + r.b_off(l, d), *dbh = dbx + GH;
        gemm<T>(true, false, GH, In, T_ * N, 1.0, dgx.data(), GH, x, In, 0.0, dWx, In);
        gemm<T>(true, false, GH, H, T_ * N, 1.0, dghp, GH, hprev_all.data(), H, 0.0, dWh, H);
        // Rows in order, each thread adding into its own columns (the same bits).
        parallel_ranges(GH, 256, [&](int64_t k0, int64_t k1) {
          for (int64_t k = k0; k < k1; ++k) dbx[k] = dbh[k] = T(0);
          for (int64_t row = 0; row < T_ * N; ++row) {
            const T *gxr = dgx.data() + row * GH, *ghr = dghp + row * GH;
            for (int64_t k = k0; k < k1; ++k) dbx[k] += gxr[k], dbh[k] += ghr[k];
          }
        });
      }
      if (dx) gemm<T>(false, false, T_ * N, In, GH, 1.0, dgx.data(), GH, Wx, In, d ? 1.0 : 0.0, dx, In);
    }
    if (l > 0) {
      // The layer below's output gradient: through the dropout mask, if any.
      dy_inner.assign(dx_inner.size(), "for the RNN's inner gradients");
      std::memcpy(dy_inner.data(), dx_inner.data(), dx_inner.size() * sizeof(T));
      if (r.dropout) {
        const T *mask = rs + r.inner_off(l - 1) + r.layer_out();
        for (int64_t i = 0; i < r.layer_out(); ++i) dy_inner[i] *= mask[i];
      }
      dy = dy_inner.data();
    }
  }
}

const int kRnn = [] {
  OpDef &d = Registry::get().add("RNN");
  d.set_doc(
       "A fused recurrent layer stack over sequence-major data (T, N, C), MXNet 1.9's RNN: "
       "mode rnn_relu, rnn_tanh, lstm (gates i, f, g, o) or gru (r, z, n; n = tanh(W_in x + "
       "b_in + r * (W_hn h + b_hn))). `parameters` is one flat vector in MXNet's (cuDNN's) "
       "layout: every weight first (per layer, per direction: W_x then W_h, G*state_size rows "
       "each), then every bias (per layer and direction: b_x then b_h). `state` (and "
       "`state_cell` for lstm) has shape (num_layers * directions, N, state_size). The output "
       "is (T, N, directions * state_size); with state_outputs the final states follow. In "
       "training, p drops elements of each layer's output but the last (scaled by 1/(1-p)). "
       "The last output is internal: what the backward pass reads.")
      .set_inputs({"data", "parameters", "state", "state_cell"})
      .required("state_size", ParamType::Int, "Size of each layer's hidden state.")
      .required("num_layers", ParamType::Int, "Number of stacked layers.")
      .required("mode", ParamType::Enum, "The recurrence.")
      .param("bidirectional", ParamType::Bool, "false", "Run each layer in both directions.")
      .param("p", ParamType::Float, "0", "Dropout rate on the outputs of each layer but the last.")
      .param("state_outputs", ParamType::Bool, "false", "Also output the final states.")
      .param("projection_size", ParamType::Int, "None", "LSTM projection size (not supported).")
      .param("lstm_state_clip_min", ParamType::Float, "None", "LSTM cell clip (cuDNN only).")
      .param("lstm_state_clip_max", ParamType::Float, "None", "LSTM cell clip (cuDNN only).")
      .param("lstm_state_clip_nan", ParamType::Bool, "false", "LSTM cell clip of NaN (cuDNN only).")
      .param("use_sequence_length", ParamType::Bool, "false",
             "Variable lengths through a sequence_length input (cuDNN only).");
  d.params[2].choices = {"rnn_relu", "rnn_tanh", "lstm", "gru"};
  d.outputs = {"out", "hy", "cy", "reserve"};
  d.num_inputs = [](const Params &p) { return rnn_mode(p) == kLstm ? 4 : 3; };
  d.optional_inputs = 1;
  d.num_outputs = [](const Params &p) {
    return 1 + (p.b("state_outputs") ? (rnn_mode(p) == kLstm ? 2 : 1) : 0) + 1;
  };
  d.num_visible = [](const Params &p) {
    return 1 + (p.b("state_outputs") ? (rnn_mode(p) == kLstm ? 2 : 1) : 0);
  };
  d.float_only = true;
  d.random = true;
  d.backward_uses = kBwdAll;
  d.infer_inputs = [](const Params &p, ShapeList &in, SmallVec<char, 4> &known, const ShapeList &,
                      const SmallVec<char, 4> &) {
    if (!known[0] || in[0].ndim != 3) return;
    RnnDims r = rnn_dims(p, in[0]);
    if (!known[1]) in[1] = Shape{r.param_size()}, known[1] = 1;
    for (size_t k = 2; k < in.size(); ++k)
      if (!known[k]) in[k] = Shape{r.L * r.D, r.N, r.H}, known[k] = 1;
  };
  d.set_infer([](const Params &p, const ShapeList &in, const DTypeList &dt, ShapeList &out,
                 DTypeList &odt) {
    check_params(p);
    if (in[0].ndim != 3)
      shape_fail(p, "data must be (sequence length, batch, input size), rank 3, got " + in[0].str());
    RnnDims r = rnn_dims(p, in[0]);
    if (in[1] != Shape{r.param_size()})
      shape_fail(p, "parameters has shape " + in[1].str() + ", expected (" +
                        std::to_string(r.param_size()) + ",) " + param_formula(r));
    const Shape st{r.L * r.D, r.N, r.H};
    const char *names[] = {"data", "parameters", "state", "state_cell"};
    for (size_t k = 2; k < in.size(); ++k)
      if (in[k] != st)
        shape_fail(p, std::string(names[k]) + " has shape " + in[k].str() + ", expected " + st.str() +
                          " (num_layers * directions, batch, state_size) for data " + in[0].str());
    odt[0] = same_dtype(p, dt);
    out[0] = Shape{r.T, r.N, r.D * r.H};
    for (size_t k = 1; k + 1 < out.size(); ++k) out[k] = st, odt[k] = odt[0];
    out[out.size() - 1] = Shape{r.reserve()};
    odt[out.size() - 1] = odt[0];
  });
  d.set_compute([](const OpContext &ctx, const Params &p, const BlobList &in, const BlobList &out) {
    LOOM_FLOAT_SWITCH(in[0].dtype, T, rnn_forward<T>(ctx, p, in, out));
  });
  d.set_backward([](const OpContext &ctx, const Params &p, const BlobList &in, const BlobList &out,
                    const BlobList &og, const BlobList &ig, const ReqList &req) {
    LOOM_FLOAT_SWITCH(in[0].dtype, T, rnn_backward<T>(ctx, p, in, out, og, ig, req));
  });
  return 0;
}();

}  // namespace
}  // namespace loom
