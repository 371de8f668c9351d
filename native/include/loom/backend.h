/*
 * backend.h — the interface between libloom and a device backend plugin.
 *
 * A device backend (the CUDA backend, libloom_cuda) is a shared library that
 * libloom opens at run time, so one build of libloom serves machines with and
 * without the device. Users never include this header; backend authors do.
 *
 * The plugin exports one function,
 *
 *     int32_t loom_backend_open(const loom_backend_host *host,
 *                               const loom_backend **out);
 *
 * which fills *out with a table that lives until the process exits and
 * returns 0. A non-zero return means the plugin cannot serve this process
 * (no driver, say); when it still set *out, libloom reports the reason given
 * by (*out)->last_error(). libloom compares the table's abi_version with its
 * own before it calls anything else in it.
 *
 * Division of work:
 *  - libloom owns scheduling (the dependency engine, one worker thread and
 *    stream per device for compute and one for copies), memory caching (raw
 *    allocations are cached per device; the plugin only sees malloc/free of
 *    whole blocks), error reporting and parameter parsing.
 *  - The plugin owns devices, streams, events, copies and kernels. Every
 *    function that can fail returns 0 on success and a non-zero code on
 *    failure; the calling thread's message is then read with last_error().
 *    LOOM_BACKEND_OUT_OF_MEMORY from malloc makes libloom free its cache and
 *    retry once before it reports the failure.
 *  - A kernel enqueues work on the stream it is given (the device's compute
 *    stream, shared by all of libloom's threads) and returns. Everything the
 *    kernel call points to is valid only during the call: copy what the
 *    queued work needs. libloom does not wait for the stream after each
 *    kernel (unless LOOM_GPU_ASYNC=0); it orders copies after queued kernels
 *    with events and synchronises the stream where the host waits.
 *  - free() may be called while queued work still uses the block (a cached
 *    block given back): the plugin must wait for it or defer the release, as
 *    cudaFree does. Likewise event_destroy() may be called while queued work
 *    still records or waits on the event, as cudaEventDestroy allows.
 *  - Device pointers are opaque to libloom: it never dereferences them, only
 *    adds byte offsets to them (views) and passes them back to the plugin.
 *
 * The interface is C99 and versioned: a plugin whose abi_version differs from
 * libloom's LOOM_BACKEND_ABI_VERSION is refused with a message naming both.
 */
#ifndef LOOM_BACKEND_H_
#define LOOM_BACKEND_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Version of this plugin interface. Bumped on any change to the structs below. */
#define LOOM_BACKEND_ABI_VERSION 1

/** Return code of a plugin's malloc when the device has no room. */
#define LOOM_BACKEND_OUT_OF_MEMORY 2

/** Directions of a copy. */
#define LOOM_COPY_HOST_TO_DEVICE 0
#define LOOM_COPY_DEVICE_TO_HOST 1
#define LOOM_COPY_DEVICE_TO_DEVICE 2 /* same device, or peer when the devices differ */

/** Gradient requests of a backward kernel's outputs (the inputs' gradients). */
#define LOOM_REQ_NULL 0  /* not wanted: leave the output alone */
#define LOOM_REQ_WRITE 1 /* overwrite */
#define LOOM_REQ_ADD 2   /* add to what is there */

/** An array as a kernel sees it: device memory, dtype (LOOM_DTYPE_*), shape. */
typedef struct loom_backend_tensor {
  void *data;
  int32_t dtype;
  int32_t ndim;
  const int64_t *shape;
} loom_backend_tensor;

/** One kernel launch. Everything it points to lives for the duration of the
 *  kernel function call only. */
typedef struct loom_kernel_call {
  const char *op;          /**< operator name, as registered in libloom */
  int32_t backward;        /**< 0: forward; 1: the gradient of `op` */
  int32_t dev_id;
  void *stream;            /**< the stream to enqueue on (from stream_create) */
  /** Forward: the op's inputs. Backward: the op's inputs, then its outputs,
   *  then the gradients of its outputs (counts in num_fwd_inputs/outputs). */
  const loom_backend_tensor *inputs;
  int32_t num_inputs;
  int32_t num_fwd_inputs;
  int32_t num_fwd_outputs;
  /** Forward: the op's outputs. Backward: the gradients of its inputs. */
  const loom_backend_tensor *outputs;
  int32_t num_outputs;
  const int32_t *req;      /**< backward only: one LOOM_REQ_* per output; NULL forward */
  void *workspace;         /**< device temp space the op declared, or NULL */
  size_t workspace_bytes;
  int32_t is_train;        /**< training mode (dropout, batch norm) */
  uint64_t rng_key;        /**< counter-based generator: key and stream of this call */
  uint64_t rng_stream;
  const void *params;      /**< the parsed parameters; read with host->param_* */
} loom_kernel_call;

/** A kernel: returns 0, or non-zero after setting the plugin's last_error. */
typedef int32_t (*loom_kernel_fn)(const loom_kernel_call *call);

/** What libloom offers a plugin. Parameter readers return 0 when the parameter
 *  exists and has a value, non-zero when it is unknown to the op or unset
 *  ("None"). Values were already checked against the op's schema. */
typedef struct loom_backend_host {
  int32_t abi_version;      /**< LOOM_BACKEND_ABI_VERSION libloom was built with */
  int32_t loom_abi_version; /**< LOOM_ABI_VERSION of libloom */
  int32_t (*param_int)(const void *params, const char *name, int64_t *out); /* int, bool, enum index, dtype */
  int32_t (*param_float)(const void *params, const char *name, double *out);
  int32_t (*param_tuple)(const void *params, const char *name, const int64_t **out_values,
                         int32_t *out_count);
  /** String and enum parameters; also a list of floats (multi_sgd_update's lrs, say)
   *  as its values joined by commas, each printed exactly (%.17g), that text valid
   *  until the calling thread's next param_string call. */
  int32_t (*param_string)(const void *params, const char *name, const char **out);
  /** Runs libloom's CPU kernel for call->op (its gradient when call->backward)
   *  on tensors whose data, and workspace, are HOST memory; call->stream is
   *  ignored and the work is done when it returns. For plugins that emulate a
   *  device, or fall back to the CPU for an op (staging device memory to the
   *  host themselves). Must be called while the kernel call it comes from is
   *  still running (params are valid only then). Returns 0, or non-zero after
   *  writing a NUL-terminated message into error (at most error_len bytes). */
  int32_t (*run_on_cpu)(const loom_kernel_call *call, char *error, size_t error_len);
} loom_backend_host;

/** What a plugin offers libloom. Every function must be safe to call from any
 *  thread; functions taking a dev_id are only called with 0 <= dev_id <
 *  device_count(). */
typedef struct loom_backend {
  int32_t abi_version;      /**< LOOM_BACKEND_ABI_VERSION the plugin was built with */
  const char *name;         /**< "cuda" */
  int32_t dev_type;         /**< LOOM_DEVICE_GPU */
  /** Message of the calling thread's last failing call. Never NULL. */
  const char *(*last_error)(void);

  int32_t (*device_count)(int32_t *out);
  /** Writes a NUL-terminated device name into buf (at most len bytes). */
  int32_t (*device_name)(int32_t dev_id, char *buf, size_t len);
  int32_t (*mem_info)(int32_t dev_id, size_t *out_free, size_t *out_total);

  int32_t (*malloc)(int32_t dev_id, size_t bytes, void **out);
  void (*free)(int32_t dev_id, void *ptr);

  int32_t (*stream_create)(int32_t dev_id, void **out);
  void (*stream_destroy)(int32_t dev_id, void *stream);
  int32_t (*stream_sync)(int32_t dev_id, void *stream);
  int32_t (*event_create)(int32_t dev_id, void **out);
  void (*event_destroy)(int32_t dev_id, void *event);
  /** Marks the point in `stream` reached by the work enqueued so far. */
  int32_t (*event_record)(int32_t dev_id, void *event, void *stream);
  /** Work enqueued on `stream` after this call waits for `event`. */
  int32_t (*stream_wait_event)(int32_t dev_id, void *stream, void *event);
  int32_t (*event_sync)(int32_t dev_id, void *event);

  /** Enqueues a copy of `bytes` on `stream` (a stream of `dev_id`).
   *  Host memory is ordinary pageable memory. For LOOM_COPY_DEVICE_TO_DEVICE,
   *  dst lives on dst_dev and src on src_dev. */
  int32_t (*memcpy_async)(int32_t dev_id, void *dst, int32_t dst_dev, const void *src,
                          int32_t src_dev, size_t bytes, int32_t kind, void *stream);
  /** Enqueues a fill of `bytes` bytes with the byte value `value`. */
  int32_t (*memset_async)(int32_t dev_id, void *dst, int32_t value, size_t bytes, void *stream);

  /** The kernel for an op (backward = 1: for its gradient), or NULL when the
   *  plugin has none; libloom then reports the op as unsupported on the device. */
  loom_kernel_fn (*find_kernel)(const char *op, int32_t backward);
} loom_backend;

/** The plugin's one export. */
typedef int32_t (*loom_backend_open_fn)(const loom_backend_host *host, const loom_backend **out);

#ifdef __cplusplus
}
#endif

#endif /* LOOM_BACKEND_H_ */
