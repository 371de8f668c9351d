/* The contract every backend plugin (loom/backend.h) must keep, checked
 * directly through its table, without libloom: run it first against a new
 * plugin (the CUDA backend on a GPU machine), then the suites that go through
 * libloom. CTest runs it against the simulated device.
 *   loom_backend_contract PLUGIN.so
 * Prints one line per check and exits non-zero if any failed. */
#define _POSIX_C_SOURCE 200809L
#include <loom/backend.h>
#include <loom/loom.h>

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_failed = 0, g_passed = 0;
static const loom_backend *B;

static void expect(int ok, const char *what) {
  printf("%s %s", ok ? "ok  " : "FAIL", what);
  if (!ok && B) printf(" (last error: %s)", B->last_error());
  printf("\n");
  if (ok) ++g_passed;
  else ++g_failed;
}

static int32_t no_int(const void *p, const char *n, int64_t *o) { (void)p; (void)n; (void)o; return 1; }
static int32_t no_float(const void *p, const char *n, double *o) { (void)p; (void)n; (void)o; return 1; }
static int32_t no_tuple(const void *p, const char *n, const int64_t **v, int32_t *c) {
  (void)p; (void)n; (void)v; (void)c;
  return 1;
}
static int32_t no_string(const void *p, const char *n, const char **o) { (void)p; (void)n; (void)o; return 1; }
static int32_t no_cpu(const loom_kernel_call *c, char *e, size_t len) {
  (void)c;
  if (len) e[0] = 0;
  return 1;
}

/* Device bytes of `dev` at `src` copied to host and compared with `value`. */
static int all_bytes(int32_t dev, void *stream, const void *src, size_t n, unsigned char value) {
  unsigned char *h = malloc(n);
  size_t i;
  int ok = h && B->memcpy_async(dev, h, -1, src, dev, n, LOOM_COPY_DEVICE_TO_HOST, stream) == 0 &&
           B->stream_sync(dev, stream) == 0;
  for (i = 0; ok && i < n; ++i) ok = h[i] == value;
  free(h);
  return ok;
}

int main(int argc, char **argv) {
  loom_backend_host host = {LOOM_BACKEND_ABI_VERSION, LOOM_ABI_VERSION, no_int, no_float, no_tuple, no_string,
                           no_cpu};
  const size_t n = (size_t)8 << 20; /* large enough that a copy takes a while */
  void *lib, *a = NULL, *b = NULL, *s1 = NULL, *s2 = NULL, *ev = NULL, *huge = NULL;
  loom_backend_open_fn open_fn;
  int32_t count = 0, rc;
  size_t free_bytes = 0, total = 0, i;
  char name[256] = {0};
  unsigned char *pattern, *back;
  if (argc < 2) {
    fprintf(stderr, "usage: %s PLUGIN.so\n", argv[0]);
    return 2;
  }
  lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    fprintf(stderr, "cannot open %s: %s\n", argv[1], dlerror());
    return 1;
  }
  *(void **)(&open_fn) = dlsym(lib, "loom_backend_open");
  expect(open_fn != NULL, "exports loom_backend_open");
  if (!open_fn) return 1;
  rc = open_fn(&host, &B);
  expect(rc == 0 && B != NULL, "loom_backend_open succeeds");
  if (rc != 0 || !B) return 1;
  expect(B->abi_version == LOOM_BACKEND_ABI_VERSION, "abi_version is LOOM_BACKEND_ABI_VERSION");
  expect(B->name && B->name[0], "has a name");
  expect(B->dev_type == LOOM_DEVICE_GPU, "serves LOOM_DEVICE_GPU");
  expect(B->last_error && B->last_error() != NULL, "last_error is never NULL");
  expect(B->device_count(&count) == 0 && count >= 1, "device_count reports at least one device");
  if (count < 1) return 1;
  expect(B->device_name(0, name, sizeof name) == 0 && name[0], "device_name names device 0");
  expect(B->mem_info(0, &free_bytes, &total) == 0 && total > 0 && free_bytes <= total,
         "mem_info: 0 < free <= total");

  expect(B->malloc(0, n, &a) == 0 && a, "malloc 8 MiB");
  expect(B->malloc(0, n, &b) == 0 && b && b != a, "malloc another 8 MiB");
  expect(B->stream_create(0, &s1) == 0 && s1, "stream_create");
  expect(B->stream_create(0, &s2) == 0 && s2 && s2 != s1, "a second stream");
  expect(B->event_create(0, &ev) == 0 && ev, "event_create");

  expect(B->memset_async(0, a, 0x5A, n, s1) == 0 && B->stream_sync(0, s1) == 0 &&
             all_bytes(0, s1, a, n, 0x5A),
         "memset then device-to-host copy");

  pattern = malloc(n);
  back = malloc(n);
  for (i = 0; i < n; ++i) pattern[i] = (unsigned char)(i * 7 + 3);
  rc = B->memcpy_async(0, a, 0, pattern, -1, n, LOOM_COPY_HOST_TO_DEVICE, s1);
  rc |= B->memcpy_async(0, b, 0, a, 0, n, LOOM_COPY_DEVICE_TO_DEVICE, s1);
  rc |= B->memcpy_async(0, back, -1, b, 0, n, LOOM_COPY_DEVICE_TO_HOST, s1);
  rc |= B->stream_sync(0, s1);
  expect(rc == 0 && memcmp(back, pattern, n) == 0, "host -> device -> device -> host round trip, in stream order");
  /* A view: a byte offset into a block is valid device memory. */
  expect(B->memcpy_async(0, back, -1, (char *)b + 1000, 0, 24, LOOM_COPY_DEVICE_TO_HOST, s1) == 0 &&
             B->stream_sync(0, s1) == 0 && memcmp(back, pattern + 1000, 24) == 0,
         "copies at a byte offset into a block");

  /* Ordering across streams: s2 waits for what s1 had enqueued when the event was recorded. */
  rc = B->memset_async(0, a, 0x11, n, s1);
  rc |= B->memset_async(0, a, 0x22, n, s1);
  rc |= B->event_record(0, ev, s1);
  rc |= B->stream_wait_event(0, s2, ev);
  rc |= B->memcpy_async(0, b, 0, a, 0, n, LOOM_COPY_DEVICE_TO_DEVICE, s2);
  rc |= B->stream_sync(0, s2);
  expect(rc == 0 && all_bytes(0, s2, b, n, 0x22), "stream_wait_event orders a second stream after the first");
  rc = B->memset_async(0, a, 0x33, n, s1);
  rc |= B->event_record(0, ev, s1);
  rc |= B->event_sync(0, ev);
  expect(rc == 0 && all_bytes(0, s2, a, n, 0x33), "event_sync waits for the recorded work");

  /* Destroying an event and freeing a block while work that uses them is queued. */
  rc = B->memset_async(0, a, 0x44, n, s1);
  rc |= B->event_record(0, ev, s1);
  rc |= B->stream_wait_event(0, s2, ev);
  B->event_destroy(0, ev);
  B->free(0, a);
  rc |= B->stream_sync(0, s1);
  rc |= B->stream_sync(0, s2);
  expect(rc == 0, "event_destroy and free while queued work refers to them");

  rc = B->malloc(0, total + ((size_t)1 << 30), &huge);
  expect(rc == LOOM_BACKEND_OUT_OF_MEMORY && B->last_error()[0],
         "malloc beyond the device gives LOOM_BACKEND_OUT_OF_MEMORY with a message");
  expect(B->memcpy_async(0, back, -1, b, 0, n, 99, s1) != 0 && B->last_error()[0],
         "an unknown copy kind is refused with a message");
  expect(B->find_kernel("no_such_operator", 0) == NULL && B->find_kernel("no_such_operator", 1) == NULL,
         "find_kernel gives NULL for an unknown op");

  if (count >= 2) {
    void *c1 = NULL, *t1 = NULL;
    rc = B->malloc(1, n, &c1) | B->stream_create(1, &t1);
    rc |= B->memcpy_async(1, c1, 1, b, 0, n, LOOM_COPY_DEVICE_TO_DEVICE, t1);
    rc |= B->stream_sync(1, t1);
    expect(rc == 0 && all_bytes(1, t1, c1, n, 0x22), "peer copy from device 0 to device 1");
    B->free(1, c1);
    B->stream_destroy(1, t1);
  }

  B->free(0, b);
  B->stream_destroy(0, s1);
  B->stream_destroy(0, s2);
  free(pattern);
  free(back);
  printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed ? 1 : 0;
}
