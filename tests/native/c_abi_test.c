/* A C99 program using only loom.h: builds an array, adds it to itself,
 * checks the result and an error path. Compiled with -pedantic -Werror. */
#include <loom/loom.h>
#include <stdio.h>
#include <string.h>

#define CHECK(call)                                                          \
  do {                                                                       \
    loom_status s_ = (call);                                                 \
    if (s_ != LOOM_OK) {                                                     \
      fprintf(stderr, "%s failed: %s\n", #call, loom_last_error());          \
      return 1;                                                              \
    }                                                                        \
  } while (0)

int main(void) {
  int64_t shape[2] = {2, 3};
  float data[6] = {1, 2, 3, 4, 5, 6}, out[6];
  loom_ndarray a = NULL, outputs[1] = {NULL};
  loom_op add = NULL;
  int i;
  if (loom_abi_version() != LOOM_ABI_VERSION) {
    fprintf(stderr, "ABI mismatch: header %d, library %d\n", LOOM_ABI_VERSION, loom_abi_version());
    return 1;
  }
  CHECK(loom_ndarray_create(&a, shape, 2, LOOM_DTYPE_FLOAT32, LOOM_DEVICE_CPU, 0));
  CHECK(loom_ndarray_copy_from_host(a, data, sizeof data));
  CHECK(loom_op_find(&add, "add"));
  {
    loom_ndarray ins[2];
    ins[0] = a;
    ins[1] = a;
    CHECK(loom_imperative_invoke(outputs, 1, add, ins, 2, NULL, NULL, 0));
  }
  CHECK(loom_ndarray_copy_to_host(out, sizeof out, outputs[0]));
  for (i = 0; i < 6; ++i)
    if (out[i] != 2 * data[i]) {
      fprintf(stderr, "wrong value at %d: %f\n", i, out[i]);
      return 1;
    }
  if (loom_op_find(&add, "addd") != LOOM_ERR_NOT_FOUND || strstr(loom_last_error(), "add") == NULL) {
    fprintf(stderr, "unknown op was not reported: %s\n", loom_last_error());
    return 1;
  }
  loom_ndarray_free(outputs[0]);
  loom_ndarray_free(a);
  loom_ndarray_free(NULL);
  printf("C ABI ok\n");
  return 0;
}
