/* Host-side cost of device operations: a chain of small `add`s on gpu(0) of
 * the simulated device (or whatever backend LOOM_CUDA_LIBRARY names), beside
 * the same chain on cpu(0). With the simulated device the number is libloom's
 * own per-op overhead plus a thread hand-off; on a GPU it adds the launch
 * cost. Run it with LOOM_GPU_ASYNC=0 too, to see what a synchronisation per
 * kernel costs. Prints numbers; it is not a test.
 *   loom_device_bench [ops] */
#include <loom/loom.h>

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int check(loom_status s, const char *what) {
  if (s != LOOM_OK) fprintf(stderr, "%s: %s\n", what, loom_last_error());
  return s == LOOM_OK;
}

/* Seconds for `ops` dependent adds of a 256-element array on (dev_type, 0). */
static double chain(int32_t dev_type, int ops) {
  int64_t shape[1] = {256};
  float host[256] = {0};
  loom_ndarray x = NULL, acc = NULL;
  loom_op add = NULL;
  double t0, t;
  int i;
  if (!check(loom_ndarray_create(&x, shape, 1, LOOM_DTYPE_FLOAT32, dev_type, 0), "create") ||
      !check(loom_ndarray_copy_from_host(x, host, sizeof host), "copy") ||
      !check(loom_op_find(&add, "add"), "find add"))
    exit(1);
  acc = x;
  t0 = now();
  for (i = 0; i < ops; ++i) {
    loom_ndarray ins[2], out = NULL;
    ins[0] = acc;
    ins[1] = x;
    if (!check(loom_imperative_invoke(&out, 1, add, ins, 2, NULL, NULL, 0), "add")) exit(1);
    if (acc != x) loom_ndarray_free(acc);
    acc = out;
  }
  if (!check(loom_wait_all(), "wait")) exit(1);
  t = now() - t0;
  if (acc != x) loom_ndarray_free(acc);
  loom_ndarray_free(x);
  return t;
}

int main(int argc, char **argv) {
  int ops = argc > 1 ? atoi(argv[1]) : 20000;
  int32_t gpus = 0;
  const char *d = NULL, *mode = getenv("LOOM_GPU_ASYNC");
  double cpu, gpu;
  loom_device_count(&gpus, LOOM_DEVICE_GPU);
  loom_backend_describe(&d, LOOM_DEVICE_GPU);
  printf("%s\n", d);
  if (gpus == 0) return 0;
  chain(LOOM_DEVICE_GPU, 1000); /* warm up: streams, pools, kernel lookup */
  chain(LOOM_DEVICE_CPU, 1000);
  cpu = chain(LOOM_DEVICE_CPU, ops);
  gpu = chain(LOOM_DEVICE_GPU, ops);
  printf("%d dependent adds of 256 floats: cpu(0) %.2f us/op, gpu(0) %.2f us/op (%s kernels), ratio %.2f\n",
         ops, cpu / ops * 1e6, gpu / ops * 1e6, mode && mode[0] == '0' ? "synchronised" : "asynchronous",
         gpu / cpu);
  return 0;
}
