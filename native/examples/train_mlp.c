/* Loom from C: builds a small MLP as a symbol, binds it, trains it with the
 * native SGD update op on three separable clusters, and prints the accuracy.
 * Uses loom.h only; every number is computed by the library. */
#include <loom/loom.h>
#include <stdio.h>
#include <string.h>

#define CHECK(call)                                                             \
  do {                                                                          \
    if ((call) != LOOM_OK) {                                                    \
      fprintf(stderr, "%s failed: %s\n", #call, loom_last_error());             \
      return 1;                                                                 \
    }                                                                           \
  } while (0)

/* One symbol node: op applied to the inputs, with string parameters. */
static int layer(loom_symbol *out, const char *op, const char *name, loom_symbol in, const char *key,
                 const char *value) {
  loom_op h;
  const char *keys[1], *values[1];
  keys[0] = key;
  values[0] = value;
  if (loom_op_find(&h, op) != LOOM_OK) return 1;
  return loom_symbol_create(out, h, name, 1, &in, NULL, key ? 1 : 0, keys, values) != LOOM_OK;
}

static int invoke(const char *op, loom_ndarray *ins, int n, const char **keys, const char **vals, int np,
                  loom_ndarray *outs, int nout) {
  loom_op h;
  if (loom_op_find(&h, op) != LOOM_OK || loom_imperative_invoke(outs, nout, h, ins, n, keys, vals, np) != LOOM_OK) {
    fprintf(stderr, "%s failed: %s\n", op, loom_last_error());
    return 1;
  }
  return 0;
}

int main(void) {
  enum { N = 300, B = 30, D = 4 };
  loom_symbol data, fc1, act, fc2, net;
  loom_executor ex;
  loom_ndarray x = NULL, labels = NULL, counts = NULL;
  const char *names[2] = {"data", "softmax_label"};
  int32_t ndims[2] = {2, 1}, reqs[2] = {LOOM_GRAD_NULL, LOOM_GRAD_NULL};
  int64_t dims[3] = {B, D, B};
  int32_t nargs, i, epoch, b;
  double result[2];

  CHECK(loom_random_seed(3));
  CHECK(loom_symbol_variable(&data, "data"));
  if (layer(&fc1, "FullyConnected", "fc1", data, "num_hidden", "16") ||
      layer(&act, "Activation", "relu1", fc1, "act_type", "relu") ||
      layer(&fc2, "FullyConnected", "fc2", act, "num_hidden", "3") ||
      layer(&net, "SoftmaxOutput", "softmax", fc2, "normalization", "batch")) {
    fprintf(stderr, "building the network failed: %s\n", loom_last_error());
    return 1;
  }
  CHECK(loom_executor_simple_bind(&ex, net, LOOM_DEVICE_CPU, 0, 2, names, ndims, dims, NULL, 2, names, reqs,
                                  LOOM_GRAD_WRITE));

  { /* Data: labels uniform in {0,1,2}; points at 3 * one_hot(label) + noise. */
    const char *k[3] = {"shape", "low", "high"}, *v[3] = {"(300,)", "0", "3"};
    const char *ck[1] = {"dtype"}, *cv[1] = {"int64"}, *ok[1] = {"depth"}, *ov[1] = {"4"};
    const char *nk[2] = {"shape", "scale"}, *nv[2] = {"(300,4)", "0.5"}, *sk[1] = {"scalar"}, *sv[1] = {"3"};
    const char *fk[1] = {"dtype"}, *fv[1] = {"float32"};
    loom_ndarray u = NULL, idx = NULL, hot = NULL, hot32 = NULL, scaled = NULL, noise = NULL, ins[2];
    if (invoke("random_uniform", NULL, 0, k, v, 3, &u, 1) || invoke("cast", &u, 1, ck, cv, 1, &idx, 1) ||
        invoke("cast", &idx, 1, fk, fv, 1, &labels, 1) || invoke("one_hot", &idx, 1, ok, ov, 1, &hot, 1) ||
        invoke("cast", &hot, 1, fk, fv, 1, &hot32, 1) || invoke("multiply_scalar", &hot32, 1, sk, sv, 1, &scaled, 1) ||
        invoke("random_normal", NULL, 0, nk, nv, 2, &noise, 1)) {
      fprintf(stderr, "making data failed: %s\n", loom_last_error());
      return 1;
    }
    ins[0] = scaled;
    ins[1] = noise;
    if (invoke("add", ins, 2, NULL, NULL, 0, &x, 1)) return 1;
    loom_ndarray_free(u);
    loom_ndarray_free(idx);
    loom_ndarray_free(hot);
    loom_ndarray_free(hot32);
    loom_ndarray_free(scaled);
    loom_ndarray_free(noise);
  }
  CHECK(loom_executor_count(&nargs, ex, LOOM_EXEC_ARGUMENT));
  for (i = 1; i < nargs - 1; ++i) { /* parameters (between data and label): Xavier weights, zero biases */
    loom_ndarray p;
    CHECK(loom_executor_get(&p, ex, LOOM_EXEC_ARGUMENT, i));
    {
      int64_t shape[4];
      int32_t nd;
      char text[64];
      const char *k[1] = {"shape"}, *v[1];
      CHECK(loom_ndarray_get_ndim(&nd, p));
      CHECK(loom_ndarray_get_shape(shape, 4, p));
      if (nd == 2) snprintf(text, sizeof text, "(%lld,%lld)", (long long)shape[0], (long long)shape[1]);
      else snprintf(text, sizeof text, "(%lld,)", (long long)shape[0]);
      v[0] = text;
      if (invoke(nd == 2 ? "init_xavier" : "zeros", NULL, 0, k, v, 1, &p, 1)) return 1;
    }
    loom_ndarray_free(p);
  }
  for (epoch = 1; epoch <= 5; ++epoch) {
    const char *zk[2] = {"shape", "dtype"}, *zv[2] = {"(2,)", "float64"};
    if (invoke("zeros", NULL, 0, zk, zv, 2, &counts, 1)) return 1;
    for (b = 0; b < N / B; ++b) {
      loom_ndarray xs, ys, arg, out, c = NULL, sum_in[2];
      CHECK(loom_ndarray_slice(&xs, x, b * B, (b + 1) * B));
      CHECK(loom_ndarray_slice(&ys, labels, b * B, (b + 1) * B));
      CHECK(loom_executor_get(&arg, ex, LOOM_EXEC_ARGUMENT, 0));
      CHECK(loom_ndarray_copy_to(arg, xs));
      loom_ndarray_free(arg);
      CHECK(loom_executor_get(&arg, ex, LOOM_EXEC_ARGUMENT, nargs - 1));
      CHECK(loom_ndarray_copy_to(arg, ys));
      loom_ndarray_free(arg);
      CHECK(loom_executor_forward(ex, 1));
      CHECK(loom_executor_backward(ex, 0, NULL));
      for (i = 1; i < nargs - 1; ++i) {
        loom_ndarray wg[2];
        const char *k[1] = {"lr"}, *v[1] = {"0.1"};
        CHECK(loom_executor_get(&wg[0], ex, LOOM_EXEC_ARGUMENT, i));
        CHECK(loom_executor_get(&wg[1], ex, LOOM_EXEC_GRADIENT, i));
        if (invoke("sgd_update", wg, 2, k, v, 1, &wg[0], 1)) return 1;
        loom_ndarray_free(wg[0]);
        loom_ndarray_free(wg[1]);
      }
      CHECK(loom_executor_get(&out, ex, LOOM_EXEC_OUTPUT, 0));
      sum_in[0] = out;
      sum_in[1] = ys;
      if (invoke("accuracy_count", sum_in, 2, NULL, NULL, 0, &c, 1)) return 1;
      sum_in[0] = counts;
      sum_in[1] = c;
      if (invoke("add", sum_in, 2, NULL, NULL, 0, &counts, 1)) return 1;
      loom_ndarray_free(c);
      loom_ndarray_free(out);
      loom_ndarray_free(xs);
      loom_ndarray_free(ys);
    }
    CHECK(loom_ndarray_copy_to_host(result, sizeof result, counts));
    printf("epoch %d: %.0f of %.0f training samples classified correctly\n", epoch, result[0], result[1]);
    loom_ndarray_free(counts);
    counts = NULL;
  }
  loom_ndarray_free(x);
  loom_ndarray_free(labels);
  loom_executor_free(ex);
  loom_symbol_free(data);
  loom_symbol_free(fc1);
  loom_symbol_free(act);
  loom_symbol_free(fc2);
  loom_symbol_free(net);
  return result[0] >= 0.9 * result[1] ? 0 : 1;
}
