/* Adds two arrays through the installed library and checks the sums. */
#include <loom/loom.h>
#include <stdio.h>

int main(void) {
  int64_t shape[1] = {4};
  float x[4] = {1, 2, 3, 4}, y[4] = {10, 20, 30, 40}, z[4] = {0};
  loom_ndarray a = NULL, b = NULL, out[1] = {NULL};
  loom_op add = NULL;
  int i;
  if (loom_abi_version() != LOOM_ABI_VERSION) {
    fprintf(stderr, "ABI %d, header %d\n", (int)loom_abi_version(), LOOM_ABI_VERSION);
    return 1;
  }
  if (loom_ndarray_create(&a, shape, 1, LOOM_DTYPE_FLOAT32, LOOM_DEVICE_CPU, 0) != LOOM_OK ||
      loom_ndarray_create(&b, shape, 1, LOOM_DTYPE_FLOAT32, LOOM_DEVICE_CPU, 0) != LOOM_OK ||
      loom_ndarray_copy_from_host(a, x, sizeof x) != LOOM_OK ||
      loom_ndarray_copy_from_host(b, y, sizeof y) != LOOM_OK || loom_op_find(&add, "add") != LOOM_OK) {
    fprintf(stderr, "setup failed: %s\n", loom_last_error());
    return 1;
  }
  {
    loom_ndarray ins[2];
    ins[0] = a;
    ins[1] = b;
    if (loom_imperative_invoke(out, 1, add, ins, 2, NULL, NULL, 0) != LOOM_OK ||
        loom_ndarray_copy_to_host(z, sizeof z, out[0]) != LOOM_OK) {
      fprintf(stderr, "add failed: %s\n", loom_last_error());
      return 1;
    }
  }
  for (i = 0; i < 4; ++i)
    if (z[i] != x[i] + y[i]) {
      fprintf(stderr, "element %d: %g, expected %g\n", i, z[i], x[i] + y[i]);
      return 1;
    }
  printf("add via find_package(Loom): %g %g %g %g\n", z[0], z[1], z[2], z[3]);
  loom_ndarray_free(out[0]);
  loom_ndarray_free(a);
  loom_ndarray_free(b);
  return 0;
}
