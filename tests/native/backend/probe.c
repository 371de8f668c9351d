/* What a process sees of the GPU backend: the device count, the backend's
 * description, and whether an array can live on gpu(0) (and an op run there).
 * CTest runs it under several environments (tests/native/CMakeLists.txt). */
#include <loom/loom.h>

#include <stdio.h>

int main(void) {
  int32_t n = -1;
  const char *d = NULL;
  loom_ndarray a = NULL, b = NULL;
  loom_op add = NULL;
  int64_t shape[1] = {3};
  float host[3] = {1, 2, 3}, out[3] = {0, 0, 0};
  loom_status s;
  if (loom_device_count(&n, LOOM_DEVICE_GPU) != LOOM_OK ||
      loom_backend_describe(&d, LOOM_DEVICE_GPU) != LOOM_OK) {
    printf("query failed: %s\n", loom_last_error());
    return 1;
  }
  printf("gpus=%d\n%s\n", (int)n, d);
  s = loom_ndarray_create(&a, shape, 1, LOOM_DTYPE_FLOAT32, LOOM_DEVICE_GPU, 0);
  printf("create gpu(0): %s%s%s\n", s == LOOM_OK ? "ok" : loom_status_name(s),
         s == LOOM_OK ? "" : ": ", s == LOOM_OK ? "" : loom_last_error());
  if (s != LOOM_OK) return 0;
  if (loom_ndarray_copy_from_host(a, host, sizeof host) != LOOM_OK ||
      loom_op_find(&add, "add") != LOOM_OK ||
      loom_imperative_invoke(&b, 1, add, (loom_ndarray[]){a, a}, 2, NULL, NULL, 0) != LOOM_OK ||
      loom_ndarray_copy_to_host(out, sizeof out, b) != LOOM_OK) {
    printf("add on gpu(0) failed: %s\n", loom_last_error());
    return 1;
  }
  printf("add on gpu(0): %g %g %g\n", out[0], out[1], out[2]);
  loom_ndarray_free(b);
  loom_ndarray_free(a);
  return 0;
}
