// The fused RNN operator (and the Sequence* ops) against a naive float64 recurrence written from the
// definitions (one loop per step, per row, per unit; no products shared with
// the kernel), central finite differences for every input and head, the
// dropout between layers, and its errors.
#include <cmath>

#include "testutil.h"

using namespace lt;

namespace {

struct RnnCfg {
  std::string mode;
  int64_t T, N, I, H, L;
  bool bidir;
  int64_t D() const { return bidir ? 2 : 1; }
  int64_t G() const { return mode == "lstm" ? 4 : mode == "gru" ? 3 : 1; }
  int64_t in(int64_t l) const { return l ? D() * H : I; }
  int64_t param_size() const {
    int64_t s = 0;
    for (int64_t l = 0; l < L; ++l) s += D() * G() * H * (in(l) + H + 2);
    return s;
  }
  bool lstm() const { return mode == "lstm"; }
  Params params(bool state_outputs = true) const {
    return {{"mode", mode}, {"state_size", std::to_string(H)}, {"num_layers", std::to_string(L)},
            {"bidirectional", bidir ? "true" : "false"}, {"state_outputs", state_outputs ? "true" : "false"}};
  }
};

double sig(double x) { return 1 / (1 + std::exp(-x)); }

struct RefOut {
  std::vector<double> y, hy, cy;
};

// The recurrence from MXNet's documentation, in float64. `masks[l]` (optional)
// multiplies layer l's output before layer l+1 reads it.
RefOut reference(const RnnCfg &c, const std::vector<double> &x, const std::vector<double> &w,
                 const std::vector<double> &h0, const std::vector<double> &c0,
                 const std::vector<std::vector<double>> &masks = {}) {
  const int64_t T = c.T, N = c.N, H = c.H, D = c.D(), G = c.G();
  RefOut r;
  r.hy.assign(c.L * D * N * H, 0);
  r.cy.assign(c.L * D * N * H, 0);
  std::vector<double> input = x;
  int64_t woff = 0, boff = 0;
  for (int64_t l = 0; l < c.L; ++l) woff += D * G * H * (c.in(l) + H);
  std::vector<double> out;
  int64_t wpos = 0;
  for (int64_t l = 0; l < c.L; ++l) {
    const int64_t In = c.in(l);
    out.assign(T * N * D * H, 0);
    for (int64_t d = 0; d < D; ++d) {
      const double *Wx = w.data() + wpos, *Wh = Wx + G * H * In;
      wpos += G * H * (In + H);
      const double *bx = w.data() + woff + boff, *bh = bx + G * H;
      boff += 2 * G * H;
      const int64_t s = l * D + d;
      std::vector<double> h(h0.begin() + s * N * H, h0.begin() + (s + 1) * N * H);
      std::vector<double> cell = c.lstm() ? std::vector<double>(c0.begin() + s * N * H, c0.begin() + (s + 1) * N * H)
                                          : std::vector<double>();
      for (int64_t step = 0; step < T; ++step) {
        const int64_t t = d ? T - 1 - step : step;
        std::vector<double> hn(N * H), cn(N * H);
        for (int64_t n = 0; n < N; ++n) {
          auto ax = [&](int64_t gate, int64_t j) {  // W_x x + b_x for one gate unit
            double v = bx[gate * H + j];
            for (int64_t k = 0; k < In; ++k) v += Wx[(gate * H + j) * In + k] * input[(t * N + n) * In + k];
            return v;
          };
          auto ah = [&](int64_t gate, int64_t j) {  // W_h h + b_h
            double v = bh[gate * H + j];
            for (int64_t k = 0; k < H; ++k) v += Wh[(gate * H + j) * H + k] * h[n * H + k];
            return v;
          };
          for (int64_t j = 0; j < H; ++j) {
            double hv;
            if (c.mode == "lstm") {
              double i = sig(ax(0, j) + ah(0, j)), f = sig(ax(1, j) + ah(1, j));
              double g = std::tanh(ax(2, j) + ah(2, j)), o = sig(ax(3, j) + ah(3, j));
              cn[n * H + j] = f * cell[n * H + j] + i * g;
              hv = o * std::tanh(cn[n * H + j]);
            } else if (c.mode == "gru") {
              double rr = sig(ax(0, j) + ah(0, j)), z = sig(ax(1, j) + ah(1, j));
              double nn = std::tanh(ax(2, j) + rr * ah(2, j));
              hv = (1 - z) * nn + z * h[n * H + j];
            } else {
              double v = ax(0, j) + ah(0, j);
              hv = c.mode == "rnn_relu" ? std::max(v, 0.0) : std::tanh(v);
            }
            hn[n * H + j] = hv;
            out[(t * N + n) * D * H + d * H + j] = hv;
          }
        }
        h = hn;
        if (c.lstm()) cell = cn;
      }
      std::copy(h.begin(), h.end(), r.hy.begin() + s * N * H);
      if (c.lstm()) std::copy(cell.begin(), cell.end(), r.cy.begin() + s * N * H);
    }
    input = out;
    if (l < c.L - 1 && l < static_cast<int64_t>(masks.size()))
      for (size_t i = 0; i < input.size(); ++i) input[i] *= masks[l][i];
  }
  r.y = out;
  return r;
}

struct RnnInputs {
  std::vector<std::vector<double>> vals;
  std::vector<std::vector<int64_t>> shapes;
};

RnnInputs inputs_for(const RnnCfg &c, uint32_t seed) {
  RnnInputs in;
  const int64_t S = c.L * c.D();
  in.shapes = {{c.T, c.N, c.I}, {c.param_size()}, {S, c.N, c.H}};
  if (c.lstm()) in.shapes.push_back({S, c.N, c.H});
  for (size_t k = 0; k < in.shapes.size(); ++k)
    in.vals.push_back(random_values(numel(in.shapes[k]), k == 1 ? -0.6 : -1, k == 1 ? 0.6 : 1, seed + k));
  return in;
}

std::vector<Arr> run(const RnnCfg &c, const RnnInputs &in, int32_t dtype, const Params &p) {
  std::vector<Arr> arrs;
  std::vector<const Arr *> ptrs;
  for (size_t k = 0; k < in.vals.size(); ++k) arrs.push_back(make(in.shapes[k], in.vals[k], dtype));
  for (auto &a : arrs) ptrs.push_back(&a);
  loom_op op = nullptr;
  EXPECT_EQ(loom_op_find(&op, "RNN"), LOOM_OK);
  std::vector<const char *> k, v;
  for (auto &kv : p) k.push_back(kv.first.c_str()), v.push_back(kv.second.c_str());
  int32_t nout = 0;
  EXPECT_EQ(loom_op_num_outputs(&nout, op, k.data(), v.data(), int32_t(k.size())), LOOM_OK);
  std::vector<Arr> outs;
  EXPECT_EQ(invoke("RNN", ptrs, p, &outs, nout), LOOM_OK) << loom_last_error();
  return outs;
}

const RnnCfg kConfigs[] = {
    {"rnn_relu", 3, 2, 4, 3, 1, false}, {"rnn_tanh", 4, 3, 2, 5, 2, true},
    {"lstm", 5, 2, 3, 4, 1, false},     {"lstm", 3, 3, 4, 2, 2, true},
    {"lstm", 4, 1, 3, 3, 3, false},     {"gru", 4, 2, 3, 4, 1, true},
    {"gru", 3, 2, 2, 3, 2, false},      {"rnn_tanh", 1, 4, 3, 2, 1, false},
};

COVERS("RNN");
TEST(Rnn, MatchesTheNaiveRecurrenceForEveryModeLayerAndDirection) {
  uint32_t seed = 10;
  for (const RnnCfg &c : kConfigs) {
    for (int32_t dtype : {LOOM_DTYPE_FLOAT64, LOOM_DTYPE_FLOAT32}) {
      SCOPED_TRACE(c.mode + " L=" + std::to_string(c.L) + (c.bidir ? " bidirectional" : "") +
                   (dtype == LOOM_DTYPE_FLOAT32 ? " float32" : " float64"));
      RnnInputs in = inputs_for(c, seed += 10);
      auto outs = run(c, in, dtype, c.params());
      ASSERT_EQ(outs.size(), c.lstm() ? 4u : 3u);
      for (auto &v : in.vals) v = as_dtype(v, dtype);
      RefOut want = reference(c, in.vals[0], in.vals[1], in.vals[2], c.lstm() ? in.vals[3] : std::vector<double>());
      EXPECT_EQ(shape_of(outs[0]), (std::vector<int64_t>{c.T, c.N, c.D() * c.H}));
      const double tol = dtype == LOOM_DTYPE_FLOAT32 ? 2e-5 : 1e-12;
      auto near = [&](const std::vector<double> &got, const std::vector<double> &ref, const char *what) {
        ASSERT_EQ(got.size(), ref.size()) << what;
        for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], ref[i], tol) << what << " at " << i;
      };
      near(read(outs[0]), want.y, "output");
      near(read(outs[1]), want.hy, "final state");
      if (c.lstm()) near(read(outs[2]), want.cy, "final cell");
    }
  }
}

// d(sum of weighted heads)/d(every input) against central differences. With
// dropout (training), every run is seeded alike so each draws the same masks.
void check_rnn_gradients(const RnnCfg &c, uint32_t seed, double dropout = 0) {
  {
    SCOPED_TRACE(c.mode + " L=" + std::to_string(c.L) + (c.bidir ? " bidirectional" : "") +
                 " p=" + std::to_string(dropout));
    RnnInputs in = inputs_for(c, seed);
    Params p = c.params();
    p.push_back({"p", std::to_string(dropout)});
    int32_t was = 0;
    loom_autograd_set_training(&was, dropout > 0);
    struct Restore {
      int32_t v;
      ~Restore() { loom_autograd_set_training(nullptr, v); }
    } restore{was};
    const size_t nheads = c.lstm() ? 3 : 2;
    std::vector<std::vector<double>> hw;
    std::vector<std::vector<int64_t>> hshape = {{c.T, c.N, c.D() * c.H}, {c.L * c.D(), c.N, c.H}, {c.L * c.D(), c.N, c.H}};
    for (size_t h = 0; h < nheads; ++h) hw.push_back(random_values(numel(hshape[h]), -1, 1, 90 + h));
    auto loss = [&](const RnnInputs &x) {
      loom_random_seed(31);
      auto o = run(c, x, LOOM_DTYPE_FLOAT64, p);
      double s = 0;
      for (size_t h = 0; h < nheads; ++h) {
        auto v = read(o[h]);
        for (size_t i = 0; i < v.size(); ++i) s += v[i] * hw[h][i];
      }
      return s;
    };
    std::vector<Arr> arrs, grads;
    for (size_t k = 0; k < in.vals.size(); ++k) {
      arrs.push_back(make(in.shapes[k], in.vals[k], LOOM_DTYPE_FLOAT64));
      grads.push_back(make(in.shapes[k], std::vector<double>(in.vals[k].size(), 0), LOOM_DTYPE_FLOAT64));
    }
    std::vector<loom_ndarray> hs, gs;
    for (size_t k = 0; k < arrs.size(); ++k) hs.push_back(arrs[k].h), gs.push_back(grads[k].h);
    ASSERT_EQ(loom_autograd_mark_variables(hs.data(), gs.data(), nullptr, int32_t(hs.size())), LOOM_OK);
    int32_t prev = 0;
    loom_random_seed(31);
    loom_autograd_set_recording(&prev, 1);
    std::vector<const Arr *> ptrs;
    for (auto &a : arrs) ptrs.push_back(&a);
    std::vector<Arr> outs;
    ASSERT_EQ(invoke("RNN", ptrs, p, &outs, int(nheads) + 1), LOOM_OK) << loom_last_error();
    loom_autograd_set_recording(nullptr, prev);
    std::vector<Arr> head_grads;
    std::vector<loom_ndarray> heads, hg;
    for (size_t h = 0; h < nheads; ++h) {
      head_grads.push_back(make(hshape[h], hw[h], LOOM_DTYPE_FLOAT64));
      heads.push_back(outs[h].h);
      hg.push_back(head_grads.back().h);
    }
    ASSERT_EQ(loom_autograd_backward(heads.data(), hg.data(), int32_t(nheads)), LOOM_OK) << loom_last_error();
    const char *names[] = {"data", "parameters", "state", "state_cell"};
    for (size_t k = 0; k < in.vals.size(); ++k) {
      auto analytic = read(grads[k]);
      for (size_t e = 0; e < in.vals[k].size(); ++e) {
        RnnInputs xp = in;
        xp.vals[k][e] += 1e-6;
        double fp = loss(xp);
        xp.vals[k][e] -= 2e-6;
        double fm = loss(xp);
        double numeric = (fp - fm) / 2e-6;
        EXPECT_NEAR(analytic[e], numeric, 1e-6 + 1e-5 * std::fabs(numeric)) << names[k] << " element " << e;
      }
    }
  }
}

TEST(Rnn, GradientsOfEveryInputFromEveryHeadMatchFiniteDifferences) {
  uint32_t seed = 500;
  for (const RnnCfg &c : kConfigs) check_rnn_gradients(c, seed += 10);
}

TEST(Rnn, GradientsThroughDropoutBetweenLayersMatchFiniteDifferences) {
  check_rnn_gradients({"lstm", 3, 2, 3, 3, 3, false}, 900, 0.3);
  check_rnn_gradients({"gru", 3, 3, 2, 2, 2, true}, 910, 0.5);
  check_rnn_gradients({"rnn_tanh", 4, 2, 2, 3, 2, false}, 920, 0.4);
}

TEST(Rnn, DropoutBetweenLayersUsesTheKeptMaskAndOnlyInTraining) {
  RnnCfg c{"lstm", 6, 5, 3, 8, 3, false};
  RnnInputs in = inputs_for(c, 77);
  Params p = c.params();
  p.push_back({"p", "0.4"});
  loom_random_seed(5);
  int32_t was = 0;
  loom_autograd_set_training(&was, 1);
  auto outs = run(c, in, LOOM_DTYPE_FLOAT64, p);
  loom_random_seed(5);
  auto again = run(c, in, LOOM_DTYPE_FLOAT64, p);
  loom_autograd_set_training(nullptr, was);
  EXPECT_EQ(read(outs[0]), read(again[0])) << "the same seed gives the same masks";
  // The reserve keeps, after the gates (5 per unit per step) of every layer,
  // each inner layer's output, its mask, and the masked output.
  auto rs = read(outs[3]);
  const int64_t block = c.T * c.N * c.H, gates = c.L * 5 * block;
  ASSERT_EQ(static_cast<int64_t>(rs.size()), gates + (c.L - 1) * 3 * block);
  std::vector<std::vector<double>> masks;
  int64_t dropped = 0;
  for (int64_t l = 0; l + 1 < c.L; ++l) {
    std::vector<double> m(rs.begin() + gates + l * 3 * block + block, rs.begin() + gates + l * 3 * block + 2 * block);
    for (double v : m) {
      EXPECT_TRUE(v == 0 || std::fabs(v - 1 / 0.6) < 1e-12) << v;
      dropped += v == 0;
    }
    masks.push_back(m);
  }
  const double frac = double(dropped) / double(2 * block);
  EXPECT_NEAR(frac, 0.4, 0.08) << "fraction dropped";
  RefOut want = reference(c, in.vals[0], in.vals[1], in.vals[2], in.vals[3], masks);
  auto got = read(outs[0]);
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want.y[i], 1e-12) << i;
  // Prediction ignores p.
  auto pred = run(c, in, LOOM_DTYPE_FLOAT64, p);
  RefOut plain = reference(c, in.vals[0], in.vals[1], in.vals[2], in.vals[3]);
  auto pv = read(pred[0]);
  for (size_t i = 0; i < pv.size(); ++i) EXPECT_NEAR(pv[i], plain.y[i], 1e-12) << i;
}

std::string rnn_error(const std::vector<std::vector<int64_t>> &shapes, const Params &p) {
  std::vector<Arr> arrs;
  std::vector<const Arr *> ptrs;
  for (auto &s : shapes) arrs.push_back(make(s, std::vector<double>(numel(s), 0.1)));
  for (auto &a : arrs) ptrs.push_back(&a);
  std::vector<Arr> outs;
  loom_status s = invoke("RNN", ptrs, p, &outs, 4);
  EXPECT_NE(s, LOOM_OK);
  return loom_last_error();
}

TEST(Rnn, BadInputNamesTheArgumentAndTheShapes) {
  RnnCfg c{"lstm", 4, 2, 3, 5, 2, true};
  const Params p = c.params();
  const int64_t P = c.param_size();
  auto has = [](const std::string &msg, const std::string &part) {
    EXPECT_NE(msg.find(part), std::string::npos) << "'" << part << "' not in: " << msg;
  };
  std::string e = rnn_error({{4, 2}, {P}, {4, 2, 5}, {4, 2, 5}}, p);
  has(e, "RNN"), has(e, "rank 3"), has(e, "(4,2)");
  e = rnn_error({{4, 2, 3}, {P + 1}, {4, 2, 5}, {4, 2, 5}}, p);
  has(e, "parameters"), has(e, "(" + std::to_string(P + 1) + ",)"), has(e, std::to_string(P)), has(e, "D*G*H*(I+H+2)");
  e = rnn_error({{4, 2, 3}, {P}, {2, 2, 5}, {4, 2, 5}}, p);
  has(e, "state has shape (2,2,5)"), has(e, "expected (4,2,5)");
  e = rnn_error({{4, 2, 3}, {P}, {4, 2, 5}, {4, 3, 5}}, p);
  has(e, "state_cell has shape (4,3,5)");
  e = rnn_error({{4, 2, 3}, {P}, {4, 2, 5}}, p);
  has(e, "expects 4 inputs");
  Params q = p;
  q.push_back({"use_sequence_length", "true"});
  has(rnn_error({{4, 2, 3}, {P}, {4, 2, 5}, {4, 2, 5}}, q), "use_sequence_length");
  q = p;
  q.push_back({"projection_size", "2"});
  has(rnn_error({{4, 2, 3}, {P}, {4, 2, 5}, {4, 2, 5}}, q), "projection_size");
  q = p;
  q.push_back({"p", "1"});
  has(rnn_error({{4, 2, 3}, {P}, {4, 2, 5}, {4, 2, 5}}, q), "[0, 1)");
  q = p;
  q[0].second = "elman";
  has(rnn_error({{4, 2, 3}, {P}, {4, 2, 5}, {4, 2, 5}}, q), "mode");
  q = p;
  q[1].second = "0";
  has(rnn_error({{4, 2, 3}, {P}, {4, 2, 5}, {4, 2, 5}}, q), "state_size must be > 0");
}

}  // namespace

namespace {

// ------------------------------------------------------------ Sequence* ops

struct SeqCase {
  std::vector<int64_t> shape;
  int axis;
  std::vector<double> len;  // empty: no lengths
};

const SeqCase kSeqCases[] = {
    {{5, 3, 2}, 0, {5, 2, 0}}, {{3, 4, 2, 2}, 1, {1, 4, 2}}, {{4, 2}, 0, {3, 1}},
    {{6, 2, 3}, 0, {}},        {{2, 5, 3}, 1, {}},           {{1, 3, 1}, 0, {1, 1, 0}},
};

// Step t of sequence b, as a flat offset, and the size of one step.
int64_t seq_at(const SeqCase &c, int64_t t, int64_t b) {
  int64_t R = 1;
  for (size_t k = 2; k < c.shape.size(); ++k) R *= c.shape[k];
  return c.axis == 0 ? (t * c.shape[1] + b) * R : (b * c.shape[1] + t) * R;
}
int64_t seq_r(const SeqCase &c) { return numel(c.shape) / (c.shape[0] * c.shape[1]); }

std::vector<Arr> seq_call(const std::string &op, const SeqCase &c, const std::vector<double> &x, Params p,
                          bool record = false, std::vector<Arr> *grads = nullptr) {
  std::vector<Arr> ins;
  ins.push_back(make(c.shape, x, LOOM_DTYPE_FLOAT64));
  p.push_back({"axis", std::to_string(c.axis)});
  if (!c.len.empty()) {
    ins.push_back(make({int64_t(c.len.size())}, c.len, LOOM_DTYPE_FLOAT32));
    p.push_back({"use_sequence_length", "true"});
  }
  if (record) {
    grads->push_back(make(c.shape, std::vector<double>(x.size(), 0), LOOM_DTYPE_FLOAT64));
    EXPECT_EQ(loom_autograd_mark_variables(&ins[0].h, &(*grads)[0].h, nullptr, 1), LOOM_OK);
    loom_autograd_set_recording(nullptr, 1);
  }
  std::vector<const Arr *> ptrs;
  for (auto &a : ins) ptrs.push_back(&a);
  std::vector<Arr> outs;
  loom_status s = invoke(op, ptrs, p, &outs);
  if (record) loom_autograd_set_recording(nullptr, 0);
  EXPECT_EQ(s, LOOM_OK) << op << ": " << loom_last_error();
  return outs;
}

COVERS("SequenceMask", "SequenceLast", "SequenceReverse");
TEST(Sequence, MaskLastAndReverseMatchTheirDefinitionsWithAndWithoutLengths) {
  for (const SeqCase &c : kSeqCases) {
    SCOPED_TRACE(shape_str(c.shape) + " axis " + std::to_string(c.axis) + (c.len.empty() ? "" : " with lengths"));
    const int64_t T = c.shape[c.axis], N = c.shape[1 - c.axis], R = seq_r(c);
    auto x = random_values(numel(c.shape), -1, 1, 3);
    auto len = [&](int64_t b) { return c.len.empty() ? T : int64_t(c.len[b]); };
    auto mask = read(seq_call("SequenceMask", c, x, {{"value", "-7"}})[0]);
    auto last = seq_call("SequenceLast", c, x, {});
    std::vector<double> want_mask(x.size());
    for (int64_t t = 0; t < T; ++t)
      for (int64_t b = 0; b < N; ++b)
        for (int64_t r = 0; r < R; ++r)
          want_mask[seq_at(c, t, b) + r] = t < len(b) ? x[seq_at(c, t, b) + r] : -7;
    EXPECT_EQ(mask, want_mask);
    bool any_empty = false;
    for (int64_t b = 0; b < N; ++b) any_empty |= len(b) == 0;
    if (!any_empty) {
      auto lv = read(last[0]);
      std::vector<int64_t> want_shape;
      for (size_t k = 0; k < c.shape.size(); ++k)
        if (int(k) != c.axis) want_shape.push_back(c.shape[k]);
      EXPECT_EQ(shape_of(last[0]), want_shape);
      for (int64_t b = 0; b < N; ++b)
        for (int64_t r = 0; r < R; ++r) EXPECT_EQ(lv[b * R + r], x[seq_at(c, len(b) - 1, b) + r]);
    }
    if (c.axis == 0) {
      auto rev = read(seq_call("SequenceReverse", c, x, {})[0]);
      for (int64_t t = 0; t < T; ++t)
        for (int64_t b = 0; b < N; ++b)
          for (int64_t r = 0; r < R; ++r) {
            int64_t from = t < len(b) ? len(b) - 1 - t : t;
            EXPECT_EQ(rev[seq_at(c, t, b) + r], x[seq_at(c, from, b) + r]) << t << "," << b;
          }
    }
  }
}

TEST(Sequence, GradientsWithLengthsMatchFiniteDifferences) {
  for (const SeqCase &c : kSeqCases) {
    if (c.len.empty()) continue;
    for (const char *op : {"SequenceMask", "SequenceLast", "SequenceReverse"}) {
      if (std::string(op) == "SequenceReverse" && c.axis != 0) continue;
      bool any_empty = false;
      for (double v : c.len) any_empty |= v == 0;
      if (std::string(op) == "SequenceLast" && any_empty) continue;
      SCOPED_TRACE(std::string(op) + " " + shape_str(c.shape));
      auto x = random_values(numel(c.shape), -1, 1, 4);
      std::vector<Arr> grads;
      auto outs = seq_call(op, c, x, {}, true, &grads);
      auto os = shape_of(outs[0]);
      auto w = random_values(numel(os), -1, 1, 5);
      Arr head = make(os, w, LOOM_DTYPE_FLOAT64);
      ASSERT_EQ(loom_autograd_backward(&outs[0].h, &head.h, 1), LOOM_OK) << loom_last_error();
      auto g = read(grads[0]);
      auto loss = [&](const std::vector<double> &v) {
        auto o = read(seq_call(op, c, v, {})[0]);
        double s = 0;
        for (size_t i = 0; i < o.size(); ++i) s += o[i] * w[i];
        return s;
      };
      for (size_t e = 0; e < x.size(); ++e) {
        auto xp = x;
        xp[e] += 1e-6;
        double fp = loss(xp);
        xp[e] -= 2e-6;
        double fm = loss(xp);
        EXPECT_NEAR(g[e], (fp - fm) / 2e-6, 1e-8) << "element " << e;
      }
    }
  }
}

TEST(Sequence, BadLengthsAndShapesAreNamed) {
  auto err = [](const std::string &op, std::vector<int64_t> shape, std::vector<int64_t> lshape,
                std::vector<double> len, int axis = 0) {
    Arr x = make(shape, std::vector<double>(numel(shape), 1), LOOM_DTYPE_FLOAT32);
    Arr l = make(lshape, len, LOOM_DTYPE_FLOAT32);
    std::vector<Arr> outs;
    loom_status s = invoke(op, {&x, &l}, {{"use_sequence_length", "true"}, {"axis", std::to_string(axis)}}, &outs);
    // Shapes fail at the call; lengths are values, so they fail when the kernel runs.
    if (s == LOOM_OK) s = loom_ndarray_wait_to_read(outs[0].h);
    EXPECT_NE(s, LOOM_OK) << op;
    return std::string(loom_last_error());
  };
  auto has = [](const std::string &msg, const std::string &part) {
    EXPECT_NE(msg.find(part), std::string::npos) << "'" << part << "' not in: " << msg;
  };
  std::string e = err("SequenceMask", {4, 2, 3}, {2}, {5, 1});
  has(e, "SequenceMask"), has(e, "sequence_length[0] is 5"), has(e, "[0, 4]");
  e = err("SequenceLast", {4, 2, 3}, {2}, {2, 0});
  has(e, "sequence_length[1] is 0"), has(e, "[1, 4]");
  e = err("SequenceReverse", {4, 2, 3}, {2}, {1.5, 1});
  has(e, "sequence_length[0] is 1.5");
  e = err("SequenceMask", {4, 2, 3}, {2}, {std::nan(""), 1});
  has(e, "sequence_length[0] is nan");
  e = err("SequenceMask", {4, 2, 3}, {4}, {1, 1, 1, 1});
  has(e, "sequence_length has shape (4,)"), has(e, "expected (2,)");
  e = err("SequenceLast", {4, 2, 3}, {2}, {1, 1}, 1);
  has(e, "expected (4,)");  // axis 1: the batch is axis 0
  e = err("SequenceReverse", {4, 2, 3}, {2}, {1, 1}, 1);
  has(e, "axis must be 0");
}

}  // namespace
