// Tracing imperative calls into a symbol, and cached ops (hybridize): the traced
// graph computes what the calls computed, cached calls differentiate inside an
// autograd recording like the ops they replace, every signature binds once, bad
// use is refused with a message, and threads trace and invoke independently.
#include <thread>

#include "testutil.h"

using namespace lt;

namespace {

std::string last() { return loom_last_error(); }

struct Sym {
  loom_symbol h = nullptr;
  ~Sym() { loom_symbol_free(h); }
};
struct Cop {
  loom_cached_op h = nullptr;
  ~Cop() { loom_cached_op_free(h); }
};

std::string list(loom_symbol s, int32_t kind) {
  const char *js = nullptr;
  EXPECT_EQ(loom_symbol_list(&js, s, kind), LOOM_OK) << last();
  return js ? js : "";
}

// y = tanh(FC(x, w, b)) * 2 traced from imperative calls.
void trace_mlp(const Arr &x, const Arr &w, const Arr &b, Sym *out, Arr *y) {
  ASSERT_EQ(loom_trace_begin(), LOOM_OK) << last();
  ASSERT_EQ(loom_trace_input(x.h, "data"), LOOM_OK) << last();
  ASSERT_EQ(loom_trace_input(w.h, "fc_weight"), LOOM_OK) << last();
  ASSERT_EQ(loom_trace_input(b.h, "fc_bias"), LOOM_OK) << last();
  ASSERT_EQ(loom_trace_scope_push("net0_"), LOOM_OK);
  Arr h = call("FullyConnected", {&x, &w, &b}, {{"num_hidden", "3"}});
  Arr t = call("tanh", {&h});
  *y = call("multiply_scalar", {&t}, {{"scalar", "2"}});
  ASSERT_EQ(loom_trace_scope_pop(), LOOM_OK);
  ASSERT_EQ(loom_trace_end(&out->h, &y->h, 1), LOOM_OK) << last();
}

TEST(Trace, RecordsCallsAsASymbolThatComputesTheSame) {
  Arr x = make({2, 4}, random_values(8, -1, 1, 1));
  Arr w = make({3, 4}, random_values(12, -1, 1, 2));
  Arr b = make({3}, {0.1, -0.2, 0.3});
  Sym s;
  Arr y;
  trace_mlp(x, w, b, &s, &y);
  EXPECT_EQ(list(s.h, LOOM_LIST_ARGUMENTS), "[\"data\", \"fc_weight\", \"fc_bias\"]");
  const char *js = nullptr;
  ASSERT_EQ(loom_symbol_to_json(&js, s.h), LOOM_OK);
  EXPECT_NE(std::string(js).find("\"net0_fullyconnected0\""), std::string::npos) << js;
  EXPECT_NE(std::string(js).find("\"net0_multiply_scalar0\""), std::string::npos) << js;
  // Naive float64 reference of the traced computation.
  auto xv = read(x), wv = read(w), bv = read(b);
  std::vector<double> want(6);
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j) {
      double a = bv[j];
      for (int k = 0; k < 4; ++k) a += xv[i * 4 + k] * wv[j * 4 + k];
      want[i * 3 + j] = 2 * std::tanh(a);
    }
  expect_close(read(y), want, LOOM_DTYPE_FLOAT32, "traced MLP");
  Cop c;
  ASSERT_EQ(loom_cached_op_create(&c.h, s.h), LOOM_OK) << last();
  int32_t nin = 0, nout = 0;
  ASSERT_EQ(loom_cached_op_get_counts(&nin, &nout, c.h), LOOM_OK);
  EXPECT_EQ(nin, 3);
  EXPECT_EQ(nout, 1);
  for (int rep = 0; rep < 3; ++rep) {
    loom_ndarray ins[] = {x.h, w.h, b.h};
    loom_ndarray o = nullptr;
    ASSERT_EQ(loom_cached_op_invoke(c.h, 3, ins, 1, &o), LOOM_OK) << last();
    Arr out(o);
    EXPECT_EQ(read(out), read(y));  // the same kernels: the same bits
  }
  int32_t execs = 0;
  ASSERT_EQ(loom_cached_op_num_executors(&execs, c.h), LOOM_OK);
  EXPECT_EQ(execs, 1);
  // Another batch size: one more executor, new data rebound without copies.
  Arr x3 = make({5, 4}, random_values(20, -1, 1, 3));
  loom_ndarray ins[] = {x3.h, w.h, b.h};
  loom_ndarray o = nullptr;
  ASSERT_EQ(loom_cached_op_invoke(c.h, 3, ins, 1, &o), LOOM_OK) << last();
  Arr out(o);
  EXPECT_EQ(shape_of(out), (std::vector<int64_t>{5, 3}));
  ASSERT_EQ(loom_cached_op_num_executors(&execs, c.h), LOOM_OK);
  EXPECT_EQ(execs, 2);
}

TEST(Trace, CachedOpDifferentiatesInsideARecordingAsTheOpsDo) {
  Arr x = make({3, 4}, random_values(12, -1, 1, 4));
  Arr w = make({3, 4}, random_values(12, -1, 1, 5));
  Arr b = make({3}, {0.0, 0.5, -0.5});
  Sym s;
  Arr y;
  trace_mlp(x, w, b, &s, &y);
  Cop c;
  ASSERT_EQ(loom_cached_op_create(&c.h, s.h), LOOM_OK) << last();
  // Gradients of sum(y * y) for w and b, imperatively and through the cached op.
  auto grads = [&](bool cached) {
    Arr gw = make({3, 4}, std::vector<double>(12, 0)), gb = make({3}, {0, 0, 0});
    loom_ndarray vars[] = {w.h, b.h}, gs[] = {gw.h, gb.h};
    int32_t reqs[] = {1, 1};
    EXPECT_EQ(loom_autograd_mark_variables(vars, gs, reqs, 2), LOOM_OK) << last();
    int32_t prev = 0;
    loom_autograd_set_recording(&prev, 1);
    Arr out;
    if (cached) {
      loom_ndarray ins[] = {x.h, w.h, b.h};
      loom_ndarray o = nullptr;
      EXPECT_EQ(loom_cached_op_invoke(c.h, 3, ins, 1, &o), LOOM_OK) << last();
      out = Arr(o);
    } else {
      Arr h = call("FullyConnected", {&x, &w, &b}, {{"num_hidden", "3"}});
      Arr t = call("tanh", {&h});
      out = call("multiply_scalar", {&t}, {{"scalar", "2"}});
    }
    Arr sq = call("multiply", {&out, &out});
    Arr l = call("sum", {&sq});
    loom_autograd_set_recording(nullptr, prev);
    EXPECT_EQ(loom_autograd_backward(&l.h, nullptr, 1), LOOM_OK) << last();
    auto r = read(gw);
    auto rb = read(gb);
    r.insert(r.end(), rb.begin(), rb.end());
    return r;
  };
  auto imp = grads(false);
  auto hyb = grads(true);
  EXPECT_EQ(imp, hyb);
  double norm = 0;
  for (double v : imp) norm += std::abs(v);
  EXPECT_GT(norm, 0.1);
  // A second backward through the same cached call is refused with a reason.
  loom_ndarray vars[] = {w.h};
  Arr gw = make({3, 4}, std::vector<double>(12, 0));
  int32_t req = 1;
  ASSERT_EQ(loom_autograd_mark_variables(vars, &gw.h, &req, 1), LOOM_OK);
  int32_t prev = 0;
  loom_autograd_set_recording(&prev, 1);
  loom_ndarray ins[] = {x.h, w.h, b.h};
  loom_ndarray o = nullptr;
  ASSERT_EQ(loom_cached_op_invoke(c.h, 3, ins, 1, &o), LOOM_OK) << last();
  Arr out(o);
  Arr l = call("sum", {&out});
  loom_autograd_set_recording(nullptr, prev);
  ASSERT_EQ(loom_autograd_backward(&l.h, nullptr, 1), LOOM_OK) << last();
  EXPECT_EQ(loom_autograd_backward(&l.h, nullptr, 1), LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_NE(last().find("once per forward"), std::string::npos) << last();
}

TEST(Trace, BadUseIsRefusedWithAMessage) {
  Arr x = make({2, 3}, {1, 2, 3, 4, 5, 6});
  Arr c = make({2, 3}, {1, 1, 1, 1, 1, 1});
  EXPECT_EQ(loom_trace_input(x.h, "data"), LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_NE(last().find("needs an open trace"), std::string::npos) << last();
  ASSERT_EQ(loom_trace_begin(), LOOM_OK);
  EXPECT_EQ(loom_trace_begin(), LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_NE(last().find("already open"), std::string::npos);
  ASSERT_EQ(loom_trace_input(x.h, "data"), LOOM_OK);
  EXPECT_EQ(loom_trace_input(c.h, "data"), LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_NE(last().find("'data' is already used"), std::string::npos) << last();
  // An array captured from outside: refused before anything runs.
  std::vector<Arr> outs;
  EXPECT_EQ(invoke("add", {&x, &c}, {}, &outs), LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_NE(last().find("add input 1 (rhs, (2,3) float32) is neither an input"), std::string::npos) << last();
  // Writing into a given array.
  loom_op add = nullptr;
  ASSERT_EQ(loom_op_find(&add, "add"), LOOM_OK);
  loom_ndarray ins[] = {x.h, x.h};
  loom_ndarray given = c.h;
  EXPECT_EQ(loom_imperative_invoke(&given, 1, add, ins, 2, nullptr, nullptr, 0), LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_NE(last().find("writes into an existing array"), std::string::npos) << last();
  // Paused: runs without being recorded, even on outside arrays.
  int32_t prev = -1;
  ASSERT_EQ(loom_trace_pause(&prev, 1), LOOM_OK);
  EXPECT_EQ(prev, 0);
  Arr z = call("add", {&x, &c});
  ASSERT_EQ(loom_trace_pause(nullptr, 0), LOOM_OK);
  // A head that the trace did not compute.
  loom_symbol s = nullptr;
  EXPECT_EQ(loom_trace_end(&s, &z.h, 1), LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_NE(last().find("was not computed inside the trace"), std::string::npos) << last();
  int32_t open = 0;
  ASSERT_EQ(loom_trace_active(&open), LOOM_OK);
  EXPECT_EQ(open, 1);  // still open after a failed end
  ASSERT_EQ(loom_trace_abort(), LOOM_OK);
  ASSERT_EQ(loom_trace_active(&open), LOOM_OK);
  EXPECT_EQ(open, 0);
  EXPECT_EQ(loom_trace_pause(nullptr, 1), LOOM_ERR_INVALID_ARGUMENT);

  // Cached op: wrong input count, another shape for the same signature slot, freed handles.
  Arr w = make({3, 3}, random_values(9, -1, 1, 6));
  Arr b = make({3}, {0, 0, 0});
  Sym sym;
  Arr y;
  trace_mlp(make({2, 3}, {1, 2, 3, 4, 5, 6}), w, b, &sym, &y);
  Cop cop;
  ASSERT_EQ(loom_cached_op_create(&cop.h, sym.h), LOOM_OK);
  loom_ndarray two[] = {x.h, w.h};
  loom_ndarray o = nullptr;
  EXPECT_EQ(loom_cached_op_invoke(cop.h, 2, two, 1, &o), LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_NE(last().find("expects 3 inputs (data, fc_weight, fc_bias), got 2"), std::string::npos) << last();
  Arr wrong = make({3, 5}, std::vector<double>(15, 0));
  loom_ndarray bad[] = {x.h, wrong.h, b.h};
  EXPECT_EQ(loom_cached_op_invoke(cop.h, 3, bad, 1, &o), LOOM_ERR_SHAPE);
  EXPECT_NE(last().find("fc_weight (3,5)"), std::string::npos) << last();
  EXPECT_NE(last().find("expected (3,3)"), std::string::npos) << last();
  loom_ndarray good[] = {x.h, w.h, b.h};
  EXPECT_EQ(loom_cached_op_invoke(cop.h, 3, good, 2, &o), LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_NE(last().find("1 outputs, but 2"), std::string::npos) << last();
  ASSERT_EQ(loom_trace_begin(), LOOM_OK);
  EXPECT_EQ(loom_cached_op_invoke(cop.h, 3, good, 1, &o), LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_NE(last().find("while a trace is open"), std::string::npos) << last();
  ASSERT_EQ(loom_trace_abort(), LOOM_OK);
  loom_cached_op dead = nullptr;
  ASSERT_EQ(loom_cached_op_create(&dead, sym.h), LOOM_OK);
  loom_cached_op_free(dead);
  EXPECT_EQ(loom_cached_op_invoke(dead, 3, good, 1, &o), LOOM_ERR_INVALID_ARGUMENT);
  EXPECT_NE(last().find("already freed"), std::string::npos) << last();
}

TEST(Trace, ThreadsTraceAndInvokeIndependently) {
  Arr w = make({3, 4}, random_values(12, -1, 1, 7));
  Arr b = make({3}, {0.1, 0.2, 0.3});
  Sym s;
  Arr y;
  trace_mlp(make({2, 4}, random_values(8, -1, 1, 8)), w, b, &s, &y);
  Cop c;
  ASSERT_EQ(loom_cached_op_create(&c.h, s.h), LOOM_OK);
  std::atomic<int> bad{0};
  std::vector<std::thread> ts;
  for (int t = 0; t < 4; ++t)
    ts.emplace_back([&, t] {
      for (int rep = 0; rep < 20; ++rep) {
        Arr x = make({2, 4}, random_values(8, -1, 1, 100 + t));
        // Each thread's own trace does not see the others' calls.
        Sym own;
        Arr yo;
        if (loom_trace_begin() != LOOM_OK) ++bad;
        loom_trace_input(x.h, "data");
        loom_trace_input(w.h, "w");
        loom_trace_input(b.h, "b");
        Arr h = call("FullyConnected", {&x, &w, &b}, {{"num_hidden", "3"}});
        if (loom_trace_end(&own.h, &h.h, 1) != LOOM_OK) ++bad;
        loom_ndarray ins[] = {x.h, w.h, b.h};
        loom_ndarray o = nullptr;
        if (loom_cached_op_invoke(c.h, 3, ins, 1, &o) != LOOM_OK) ++bad;
        Arr out(o);
        Arr t1 = call("tanh", {&h});
        Arr want = call("multiply_scalar", {&t1}, {{"scalar", "2"}});
        if (read(out) != read(want)) ++bad;
        // Recorded calls on this thread's own parameters share the op's executors
        // with the other threads; each gradient must be this thread's.
        Arr wt = make({3, 4}, random_values(12, -1, 1, 200 + t));
        Arr gw = make({3, 4}, std::vector<double>(12, 0));
        int32_t req = 1;
        if (loom_autograd_mark_variables(&wt.h, &gw.h, &req, 1) != LOOM_OK) ++bad;
        int32_t prev = 0;
        loom_autograd_set_recording(&prev, 1);
        loom_ndarray rin[] = {x.h, wt.h, b.h};
        loom_ndarray ro = nullptr;
        if (loom_cached_op_invoke(c.h, 3, rin, 1, &ro) != LOOM_OK) ++bad;
        Arr rout(ro);
        Arr l = call("sum", {&rout});
        loom_autograd_set_recording(nullptr, prev);
        if (loom_autograd_backward(&l.h, nullptr, 1) != LOOM_OK) ++bad;
        // d/dw sum(2 tanh(xw^T + b)) = sum_i 2 (1 - tanh^2) x_i, from this thread's values.
        auto xv = read(x), wv = read(wt), bv = read(b), g = read(gw);
        for (int j = 0; j < 3; ++j)
          for (int k = 0; k < 4; ++k) {
            double want_g = 0;
            for (int i = 0; i < 2; ++i) {
              double a = bv[j];
              for (int q = 0; q < 4; ++q) a += xv[i * 4 + q] * wv[j * 4 + q];
              want_g += 2 * (1 - std::tanh(a) * std::tanh(a)) * xv[i * 4 + k];
            }
            if (std::abs(g[j * 4 + k] - want_g) > 1e-4) ++bad;
          }
      }
    });
  for (auto &t : ts) t.join();
  EXPECT_EQ(bad.load(), 0);
}

}  // namespace
