/*
 * loom.h — the one public C ABI of the Loom deep learning engine.
 *
 * Conventions (every declaration below follows them):
 *  - Every fallible function returns a loom_status: LOOM_OK (0) or a negative
 *    code naming the category of failure. The calling thread's message for its
 *    last failure is returned by loom_last_error().
 *  - Outputs come first in the parameter list, through pointers. On failure,
 *    outputs are left untouched.
 *  - Handles are opaque and distinct per kind. A handle returned through an
 *    output parameter is owned by the caller and released with the matching
 *    loom_*_free function. Free functions accept NULL and never fail.
 *  - Passing NULL, or a handle that was already freed, gives
 *    LOOM_ERR_INVALID_ARGUMENT; it never crashes the process.
 *  - Strings are UTF-8 and NUL-terminated. Strings returned by the library are
 *    owned by the library; the lifetime of each is stated at its function.
 *  - Every function is safe to call from any thread at any time.
 *  - No C++ exception, abort or exit crosses this boundary.
 *
 * Execution is asynchronous: operations are pushed to a dependency engine and
 * run when the arrays they read and write are ready. A failure inside an
 * operation is stored on the arrays it writes and is returned by the next wait
 * on them (loom_ndarray_wait_to_read, loom_ndarray_copy_to_host) and by
 * loom_wait_all(); operations that read a failed array are skipped and pass the
 * same error on.
 */
#ifndef LOOM_LOOM_H_
#define LOOM_LOOM_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#if defined(LOOM_BUILDING_LIBRARY)
#define LOOM_API __declspec(dllexport)
#else
#define LOOM_API __declspec(dllimport)
#endif
#else
#define LOOM_API __attribute__((visibility("default")))
#endif

/** Version of this ABI. It only grows; a binding compares it with
 *  loom_abi_version() and refuses a library with another value. */
#define LOOM_ABI_VERSION 1

/* ------------------------------------------------------------------------ */
/* Status codes                                                              */
/* ------------------------------------------------------------------------ */

/** Result of every fallible call: 0 on success, a negative category code on failure. */
typedef int32_t loom_status;

#define LOOM_OK 0
/** An argument is NULL, freed, out of range or malformed (unknown parameter, bad value). */
#define LOOM_ERR_INVALID_ARGUMENT (-1)
/** Shapes do not fit together (broadcasting, axes, element counts). */
#define LOOM_ERR_SHAPE (-2)
/** Data types do not fit together or are not supported by the operation. */
#define LOOM_ERR_DTYPE (-3)
/** A named thing (operator, parameter, file, array name) does not exist. */
#define LOOM_ERR_NOT_FOUND (-4)
/** Memory could not be allocated; the message names the bytes asked for. */
#define LOOM_ERR_OUT_OF_MEMORY (-5)
/** Reading or writing a file failed, or its contents are malformed. */
#define LOOM_ERR_IO (-6)
/** The device or backend asked for is not available in this process. */
#define LOOM_ERR_BACKEND_UNAVAILABLE (-7)
/** A bug inside Loom; the message says where. */
#define LOOM_ERR_INTERNAL (-8)

/* ------------------------------------------------------------------------ */
/* Enumerations (passed as int32_t so every binding sees a fixed width)      */
/* ------------------------------------------------------------------------ */

/** Element types. The codes are MXNet's, as stored in `.params` files. */
#define LOOM_DTYPE_FLOAT32 0
#define LOOM_DTYPE_FLOAT64 1
#define LOOM_DTYPE_FLOAT16 2 /* recognised in files, not computed with */
#define LOOM_DTYPE_UINT8 3
#define LOOM_DTYPE_INT32 4
#define LOOM_DTYPE_INT8 5 /* recognised in files, not computed with */
#define LOOM_DTYPE_INT64 6

/** Device types, as stored in `.params` files. */
#define LOOM_DEVICE_CPU 1
#define LOOM_DEVICE_GPU 2

/** Largest number of dimensions an array may have. */
#define LOOM_MAX_NDIM 8

/* ------------------------------------------------------------------------ */
/* Handles                                                                   */
/* ------------------------------------------------------------------------ */

/** An n-dimensional array (or a view of one). Free with loom_ndarray_free. */
typedef struct loom_ndarray_s *loom_ndarray;
/** A registered operator. Owned by the library, valid for the process lifetime; never freed. */
typedef struct loom_op_s *loom_op;
/** A list of named arrays, as read from a `.params` file. Free with loom_ndarray_list_free. */
typedef struct loom_ndarray_list_s *loom_ndarray_list;
/** A TensorBoard event file being written. Free with loom_summary_writer_free. */
typedef struct loom_summary_writer_s *loom_summary_writer;

/** A symbolic graph (one or more outputs). Free with loom_symbol_free. */
typedef struct loom_symbol_s *loom_symbol;
/** A symbol bound to arrays, ready to run. Free with loom_executor_free. */
typedef struct loom_executor_s *loom_executor;
/** A symbol run as one imperative call, one planned executor per input
 *  signature (what a hybridized block calls). Free with loom_cached_op_free. */
typedef struct loom_cached_op_s *loom_cached_op;
/** A batch iterator over in-memory arrays. Free with loom_dataiter_free. */
typedef struct loom_dataiter_s *loom_dataiter;
/** A key-value store for parameter synchronisation (MXNet's KVStore). Free with
 *  loom_kvstore_free. */
typedef struct loom_kvstore_s *loom_kvstore;

/* ------------------------------------------------------------------------ */
/* Library                                                                   */
/* ------------------------------------------------------------------------ */

/** Returns LOOM_ABI_VERSION of the library that is loaded. Never fails. */
LOOM_API int32_t loom_abi_version(void);

/** Returns the message of the calling thread's last failed call, or "" if none.
 *  The string is owned by the library and stays valid until the next failing
 *  call on the same thread. Never NULL. */
LOOM_API const char *loom_last_error(void);

/** Returns a constant name for a status code ("invalid argument", "shape", ...).
 *  The string is static. Never NULL. */
LOOM_API const char *loom_status_name(loom_status status);

/** Blocks until every operation pushed so far, from any thread, has finished,
 *  including kernels still queued on a device. Returns the first asynchronous
 *  failure recorded since the previous loom_wait_all (and forgets it), or LOOM_OK. */
LOOM_API loom_status loom_wait_all(void);

/** Engine description. `*out_kind` receives a static string: "threaded" or
 *  "naive" (chosen by the environment variable LOOM_ENGINE at first use);
 *  `*out_cpu_workers` the worker threads per CPU device (LOOM_CPU_WORKERS).
 *  A thread that has more than LOOM_MAX_PENDING (default 256) operations queued
 *  waits in its next push until the workers have drained half of them, which
 *  bounds the memory a fast producer can hold. */
LOOM_API loom_status loom_engine_info(const char **out_kind, int32_t *out_cpu_workers);

/* ------------------------------------------------------------------------ */
/* Devices and backends                                                      */
/* ------------------------------------------------------------------------ */

/** Number of devices of `dev_type`: 1 for LOOM_DEVICE_CPU (cpu(i) for other i
 *  are further workers on the same processor); for LOOM_DEVICE_GPU the devices
 *  the GPU backend reports, or 0 when no GPU backend is available (which is not
 *  an error). The GPU backend is the plugin libloom_cuda.so, looked for on first
 *  use: at the path in the environment variable LOOM_CUDA_LIBRARY when it is
 *  set, else beside libloom, else on the library search path. */
LOOM_API loom_status loom_device_count(int32_t *out, int32_t dev_type);

/** A one-line description of the backend serving `dev_type`: for the CPU, the
 *  kernel set in use (oneDNN with its version and instruction set, or Loom's
 *  reference kernels, chosen by LOOM_CPU_KERNELS=onednn|reference); for the GPU,
 *  the plugin's name, file and devices, or why none is available (what was
 *  looked for, and where). The string is owned by the library and valid until the
 *  process exits. */
LOOM_API loom_status loom_backend_describe(const char **out, int32_t dev_type);

/** Loads the GPU backend plugin from `path` (instead of searching for it).
 *  Loading the file already loaded does nothing; loading another while one is
 *  loaded fails with LOOM_ERR_INVALID_ARGUMENT. A file that is missing, is not
 *  a Loom backend, was built for another backend interface version or cannot
 *  start gives LOOM_ERR_BACKEND_UNAVAILABLE with the reason. */
LOOM_API loom_status loom_backend_load(const char *path);

/* ------------------------------------------------------------------------ */
/* Storage                                                                   */
/* ------------------------------------------------------------------------ */

/** Memory statistics of one device's pooled allocator. All byte counts. */
typedef struct loom_storage_stats {
  int64_t bytes_in_use;    /**< held by live arrays and running operations */
  int64_t bytes_pooled;    /**< freed by arrays, kept for reuse */
  int64_t peak_bytes_in_use; /**< largest bytes_in_use seen */
  int64_t alloc_calls;     /**< allocations requested */
  int64_t pool_hits;       /**< of those, served from the pool */
} loom_storage_stats;

/** Writes the allocator statistics of device (dev_type, dev_id) into *out.
 *  A device never used reports zeros. */
LOOM_API loom_status loom_storage_get_stats(loom_storage_stats *out, int32_t dev_type,
                                            int32_t dev_id);

/** Returns the pooled (unused) memory of device (dev_type, dev_id) to the system. */
LOOM_API loom_status loom_storage_release_pooled(int32_t dev_type, int32_t dev_id);

/* ------------------------------------------------------------------------ */
/* NDArray                                                                   */
/* ------------------------------------------------------------------------ */

/** Creates an uninitialised array of the given shape, dtype and device.
 *  `shape` holds `ndim` extents (0 <= ndim <= LOOM_MAX_NDIM, each >= 0).
 *  The caller owns *out and frees it with loom_ndarray_free. */
LOOM_API loom_status loom_ndarray_create(loom_ndarray *out, const int64_t *shape, int32_t ndim,
                                         int32_t dtype, int32_t dev_type, int32_t dev_id);

/** Releases a handle. The memory is returned once pending operations that use
 *  it have finished. Accepts NULL. Freeing a handle twice is detected and ignored. */
LOOM_API void loom_ndarray_free(loom_ndarray array);

/** Number of dimensions of `array`. */
LOOM_API loom_status loom_ndarray_get_ndim(int32_t *out, loom_ndarray array);

/** Copies the extents into `out_shape`, which has room for `capacity` values
 *  (LOOM_MAX_NDIM always suffices). `out_shape` may be NULL for a 0-d array. */
LOOM_API loom_status loom_ndarray_get_shape(int64_t *out_shape, int32_t capacity,
                                            loom_ndarray array);

/** Number of elements (product of the extents). */
LOOM_API loom_status loom_ndarray_get_size(int64_t *out, loom_ndarray array);

/** Element type code (LOOM_DTYPE_*). */
LOOM_API loom_status loom_ndarray_get_dtype(int32_t *out, loom_ndarray array);

/** Device of the array. */
LOOM_API loom_status loom_ndarray_get_context(int32_t *out_dev_type, int32_t *out_dev_id,
                                              loom_ndarray array);

/** Copies `nbytes` from host memory into the array. `nbytes` must equal the
 *  array's size times its element size. Waits until pending operations on the
 *  array are done, then copies synchronously. */
LOOM_API loom_status loom_ndarray_copy_from_host(loom_ndarray array, const void *data,
                                                 size_t nbytes);

/** Waits for the array's value, then copies it into host memory `data`
 *  (`nbytes` must equal size times element size). Returns the stored error if
 *  the operation that produced the array failed. */
LOOM_API loom_status loom_ndarray_copy_to_host(void *data, size_t nbytes, loom_ndarray array);

/** Pushes a copy of `src` into `dst` (same shape and dtype; devices may differ). */
LOOM_API loom_status loom_ndarray_copy_to(loom_ndarray dst, loom_ndarray src);

/** Blocks until all pending writes to the array are done. Returns the error
 *  stored on the array if the operation that produced it failed. */
LOOM_API loom_status loom_ndarray_wait_to_read(loom_ndarray array);

/** Blocks until all pending reads and writes of the array are done. */
LOOM_API loom_status loom_ndarray_wait_to_write(loom_ndarray array);

/** Creates a view with another shape over the same memory. The element count
 *  must match; one extent may be -1 (inferred). The caller owns *out. */
LOOM_API loom_status loom_ndarray_reshape(loom_ndarray *out, loom_ndarray array,
                                          const int64_t *shape, int32_t ndim);

/** Creates a view of rows [begin, end) along the first axis, sharing memory.
 *  Requires ndim >= 1 and 0 <= begin <= end <= shape[0]. The caller owns *out. */
LOOM_API loom_status loom_ndarray_slice(loom_ndarray *out, loom_ndarray array, int64_t begin,
                                        int64_t end);

/** Creates a view of row `index` along the first axis with that axis removed,
 *  sharing memory. Negative indices count from the end. The caller owns *out. */
LOOM_API loom_status loom_ndarray_at(loom_ndarray *out, loom_ndarray array, int64_t index);

/** Saves `count` arrays to `path` in MXNet's `.params` format (V2 records).
 *  `names` is NULL for an unnamed list, or holds `count` names. The file is
 *  written to a temporary name and renamed, so an existing file is replaced
 *  only by a complete one. */
LOOM_API loom_status loom_ndarray_save(const char *path, const loom_ndarray *arrays,
                                       const char *const *names, int32_t count);

/** Loads a `.params` file (V1 or V2 records) into a new list on cpu(0).
 *  The caller owns *out and frees it with loom_ndarray_list_free. */
LOOM_API loom_status loom_ndarray_load(loom_ndarray_list *out, const char *path);

/** Number of arrays in the list. */
LOOM_API loom_status loom_ndarray_list_size(int32_t *out, loom_ndarray_list list);

/** Gets entry `index`: *out_array receives a new handle the caller owns;
 *  *out_name the entry's name ("" in an unnamed list), owned by the list and
 *  valid until the list is freed. Either output may be NULL. */
LOOM_API loom_status loom_ndarray_list_get(loom_ndarray *out_array, const char **out_name,
                                           loom_ndarray_list list, int32_t index);

/** Releases a list (not the arrays taken out of it). Accepts NULL. */
LOOM_API void loom_ndarray_list_free(loom_ndarray_list list);

/* ------------------------------------------------------------------------ */
/* Operators                                                                 */
/* ------------------------------------------------------------------------ */

/** Number of registered operators. */
LOOM_API loom_status loom_op_count(int32_t *out);

/** The operator at `index` (0 <= index < count), in name order. */
LOOM_API loom_status loom_op_get(loom_op *out, int32_t index);

/** Looks an operator up by name; LOOM_ERR_NOT_FOUND (with close names in the
 *  message) if there is none. */
LOOM_API loom_status loom_op_find(loom_op *out, const char *name);

/** The operator's name. Static string, never freed. */
LOOM_API loom_status loom_op_get_name(const char **out, loom_op op);

/** Describes the operator as JSON, the single source from which bindings and
 *  documentation are generated:
 *  {"name", "doc", "inputs": [names], "variadic": bool, "outputs": [names],
 *   "variable_outputs": bool (how many outputs depends on the parameters),
 *   "params": [{"name","type","default","required","doc","choices"}],
 *   "inplace": [[input, output]...], "temp_space": bool}.
 *  Static string, never freed. */
LOOM_API loom_status loom_op_describe(const char **out, loom_op op);

/** Number of outputs the operator produces with the given parameters. */
LOOM_API loom_status loom_op_num_outputs(int32_t *out, loom_op op, const char *const *keys,
                                         const char *const *values, int32_t num_params);

/** Invokes an operator imperatively (pushed to the engine, asynchronous).
 *  `outputs` has `num_outputs` slots, which must equal loom_op_num_outputs.
 *  A slot holding NULL receives a new array the caller owns; a slot holding an
 *  array is written in place (its shape and dtype must match what the op infers;
 *  two slots may not hold the same array or overlapping views of one).
 *  Parameters are string-keyed: keys[i] = values[i]. Unknown keys, bad values,
 *  wrong input counts, shapes, dtypes and devices are reported before anything
 *  is pushed, with messages naming the op, the argument and the shapes. */
LOOM_API loom_status loom_imperative_invoke(loom_ndarray *outputs, int32_t num_outputs,
                                            loom_op op, const loom_ndarray *inputs,
                                            int32_t num_inputs, const char *const *keys,
                                            const char *const *values, int32_t num_params);

/* ------------------------------------------------------------------------ */
/* Autograd (imperative)                                                     */
/* ------------------------------------------------------------------------ */

/** Starts (1) or stops (0) recording on the calling thread; *out_prev (may be
 *  NULL) receives the previous state. While recording, ops whose inputs need
 *  gradients are remembered on their outputs. Recording is per thread. */
LOOM_API loom_status loom_autograd_set_recording(int32_t *out_prev, int32_t recording);

/** Switches training mode (1) or prediction mode (0) on the calling thread;
 *  ops such as Dropout and BatchNorm read it. *out_prev may be NULL. */
LOOM_API loom_status loom_autograd_set_training(int32_t *out_prev, int32_t training);

/** Marks arrays as variables whose gradients backward computes. grads[i] is
 *  the buffer (same shape and dtype) that receives the gradient of arrays[i];
 *  grad_reqs[i] is 0 (none), 1 (write) or 2 (add to the buffer); grad_reqs may
 *  be NULL for all-write. The arrays keep references to their buffers. */
LOOM_API loom_status loom_autograd_mark_variables(const loom_ndarray *arrays,
                                                  const loom_ndarray *grads,
                                                  const int32_t *grad_reqs, int32_t count);

/** Computes gradients of the heads with respect to every marked variable that
 *  they were recorded from. head_grads may be NULL, or hold NULL entries, for
 *  gradients of ones. Fails, naming the op, if a recorded op on the way has no
 *  gradient. The gradient kernels are pushed to the engine (asynchronous). */
LOOM_API loom_status loom_autograd_backward(const loom_ndarray *heads,
                                            const loom_ndarray *head_grads, int32_t count);

/** The gradient buffer of a marked variable, as a new handle the caller owns. */
LOOM_API loom_status loom_ndarray_get_grad(loom_ndarray *out, loom_ndarray array);

/* ------------------------------------------------------------------------ */
/* Data                                                                      */
/* ------------------------------------------------------------------------ */

/** Reads an IDX file (MNIST's format), plain or gzip-compressed, into a new
 *  array on cpu(0) with the file's shape and element type (uint8, int32,
 *  float32 or float64). The caller owns *out. Truncated or malformed files give
 *  LOOM_ERR_IO naming the file and the bytes involved. */
LOOM_API loom_status loom_io_read_idx(loom_ndarray *out, const char *path);

/** Reads a CSV file of numbers (plain or gzip-compressed) into a new
 *  (rows, columns) array of `dtype` (float32, float64, int32 or int64) on
 *  cpu(0), skipping `header_rows` lines first and blank lines anywhere. A field
 *  that is not a number or a row with another column count gives LOOM_ERR_IO
 *  naming the file, line and column. */
LOOM_API loom_status loom_io_read_csv(loom_ndarray *out, const char *path, int32_t dtype,
                                      int64_t header_rows);

/** Reads rows [begin, end) of `dataset` (a path inside the file: "data",
 *  "train/images") of an HDF5 file (Mocha's data format) into a new array on
 *  cpu(0); end < 0 reads to the last row. Floats become float32 or float64,
 *  integers int8, uint8, int32 or int64 (the smallest that holds them; HDF5
 *  converts). The HDF5 C library is loaded when first needed (Debian
 *  libhdf5-103-1; LOOM_HDF5_LIBRARY names another file); without it the call
 *  fails with LOOM_ERR_BACKEND_UNAVAILABLE saying what to install. A missing
 *  file, a file that is not HDF5 or is damaged give LOOM_ERR_IO, a missing
 *  dataset LOOM_ERR_NOT_FOUND listing the file's top-level names, rows out of
 *  range LOOM_ERR_INVALID_ARGUMENT; each names the file and the dataset. */
LOOM_API loom_status loom_io_read_hdf5(loom_ndarray *out, const char *path, const char *dataset,
                                       int64_t begin, int64_t end);

/** What a batch iterator does with the final, incomplete batch of an epoch. */
#define LOOM_LAST_BATCH_DISCARD 0   /**< drop it */
#define LOOM_LAST_BATCH_PAD 1       /**< fill it from the start of the epoch's order */
#define LOOM_LAST_BATCH_ROLL_OVER 2 /**< carry its samples into the next epoch */

/** Creates a batch iterator over `data` and `label` (NULL for none; otherwise
 *  the same first extent and the same device). Arrays on a GPU stay there:
 *  each batch is gathered on the device (the `take` op), and its arrays are on
 *  that device. Each epoch draws a permutation from the
 *  seeded generator when `shuffle` is nonzero (at loom_dataiter_reset, on the
 *  calling thread). `prefetch` batches are assembled ahead by a background
 *  thread (0: gathered on the calling thread by loom_dataiter_next). The
 *  arrays are read while epochs run: do not write them meanwhile. */
LOOM_API loom_status loom_dataiter_create(loom_dataiter *out, loom_ndarray data, loom_ndarray label,
                                          int64_t batch_size, int32_t shuffle, int32_t last_batch,
                                          int32_t prefetch);
/** Starts an epoch (drawing its order). loom_dataiter_next starts one by itself
 *  the first time. */
LOOM_API loom_status loom_dataiter_reset(loom_dataiter iter);
/** The next batch of the epoch: *has_batch is 1 with new handles in *data and
 *  *label (NULL when the iterator has no label) and the number of padded
 *  samples at the end of the batch in *pad; or 0 at the end of the epoch. */
LOOM_API loom_status loom_dataiter_next(int32_t *has_batch, loom_ndarray *data, loom_ndarray *label,
                                        int64_t *pad, loom_dataiter iter);
/** Stops the iterator's thread and releases it. NULL and freed handles are ignored. */
LOOM_API void loom_dataiter_free(loom_dataiter iter);

/* ------------------------------------------------------------------------ */
/* DLPack                                                                    */
/* ------------------------------------------------------------------------ */

/** Exports an array as a DLPack tensor without copying: *out receives a
 *  `DLManagedTensor *` (dlpack.h, version 0.6) that shares the array's memory
 *  and keeps it alive until its deleter runs (loom_dlpack_delete calls it).
 *  Pending writes are waited for first; do not write the array through Loom
 *  while the tensor is in use. CPU arrays only. */
LOOM_API loom_status loom_ndarray_to_dlpack(void **out, loom_ndarray array);

/** Imports a `DLManagedTensor *` without copying: *out is a new array over
 *  its memory, and the tensor's deleter runs when the last Loom array using it
 *  is freed. The tensor must be on the CPU, compact and row-major, with one
 *  lane of a dtype Loom has; otherwise LOOM_ERR_INVALID_ARGUMENT (or
 *  LOOM_ERR_DTYPE) names what differs and the tensor is not consumed. */
LOOM_API loom_status loom_ndarray_from_dlpack(loom_ndarray *out, void *managed_tensor);

/** Runs the deleter of a `DLManagedTensor *` (for consumers that do not own a
 *  DLPack implementation, such as the C# frontend). NULL is ignored. */
LOOM_API void loom_dlpack_delete(void *managed_tensor);

/* ------------------------------------------------------------------------ */
/* Symbols                                                                   */
/* ------------------------------------------------------------------------ */

/** What loom_symbol_list lists. */
#define LOOM_LIST_ARGUMENTS 0
#define LOOM_LIST_OUTPUTS 1
#define LOOM_LIST_AUXILIARY_STATES 2
#define LOOM_LIST_ATTRIBUTES 3

/** Gradient requests at bind. */
#define LOOM_GRAD_NULL 0
#define LOOM_GRAD_WRITE 1
#define LOOM_GRAD_ADD 2

/** What loom_executor_get returns. */
#define LOOM_EXEC_ARGUMENT 0
#define LOOM_EXEC_GRADIENT 1
#define LOOM_EXEC_AUXILIARY_STATE 2
#define LOOM_EXEC_OUTPUT 3

/** Memory of a bound graph. Byte counts cover intermediate values and op
 *  scratch space ("internal" memory), not arguments or their gradients. */
typedef struct loom_memory_plan {
  int64_t planned_bytes;   /**< internal bytes with in-place and reuse planning (one allocation) */
  int64_t unplanned_bytes; /**< internal bytes with one buffer per value */
  int64_t allocated_bytes; /**< internal bytes this executor holds (0 for a plan only) */
  int64_t argument_bytes;  /**< arguments, gradients and auxiliary states */
  int32_t num_values;      /**< intermediate values */
  int32_t num_buffers;     /**< regions of that allocation: values after in-place sharing */
  int32_t num_steps;       /**< kernels per forward+backward */
  int32_t num_inplace;     /**< values computed in place of an input */
} loom_memory_plan;

/** A new variable named `name` (non-empty). The caller owns *out. Nodes
 *  created inside an attribute scope take its attributes. */
LOOM_API loom_status loom_symbol_variable(loom_symbol *out, const char *name);

/** A new symbol applying `op` to inputs. `name` may be NULL or "" for an
 *  automatic name (lower-case op name and a counter). `inputs` are positional,
 *  or matched to the op's input names when `input_names` is not NULL; inputs
 *  left out become variables named <name>_<input> (fc1_weight, fc1_bias,
 *  softmax_label). Parameters are string-keyed as in loom_imperative_invoke.
 *  Unknown ops, inputs or parameters and bad values fail naming them. */
LOOM_API loom_status loom_symbol_create(loom_symbol *out, loom_op op, const char *name,
                                        int32_t num_inputs, const loom_symbol *inputs,
                                        const char *const *input_names, int32_t num_params,
                                        const char *const *keys, const char *const *values);

/** Groups the outputs of `count` symbols into one symbol. */
LOOM_API loom_status loom_symbol_group(loom_symbol *out, const loom_symbol *symbols,
                                       int32_t count);

/** Number of outputs of a symbol. */
LOOM_API loom_status loom_symbol_num_outputs(int32_t *out, loom_symbol symbol);

/** Output `index` of a symbol as a new single-output symbol. */
LOOM_API loom_status loom_symbol_get_output(loom_symbol *out, loom_symbol symbol, int32_t index);

/** A copy of `symbol` in which the variables names[i] are replaced by the
 *  single-output symbols replacements[i]. Unknown names fail. */
LOOM_API loom_status loom_symbol_compose(loom_symbol *out, loom_symbol symbol, int32_t count,
                                         const char *const *names,
                                         const loom_symbol *replacements);

/** Lists the symbol's arguments, outputs or auxiliary states (a JSON array of
 *  names), or its attributes (a JSON object "node$key": value), by `kind`
 *  (LOOM_LIST_*). *out_json is owned by the library and valid until the next
 *  call of a loom_symbol_* function on the same thread. */
LOOM_API loom_status loom_symbol_list(const char **out_json, loom_symbol symbol, int32_t kind);

/** Sets a user attribute (lr_mult, wd_mult, ctx_group, ...) on the symbol's
 *  node; a symbol grouping several nodes fails. */
LOOM_API loom_status loom_symbol_set_attr(loom_symbol symbol, const char *key, const char *value);

/** Reads an attribute or parameter of the symbol's node. *out_found is 1 when
 *  it exists; *out_value (valid until the next loom_symbol_* call on the same
 *  thread) is "" otherwise. */
LOOM_API loom_status loom_symbol_get_attr(const char **out_value, int32_t *out_found,
                                          loom_symbol symbol, const char *key);

/** Opens an attribute scope on the calling thread: nodes created until the
 *  matching pop take these attributes. Scopes nest. */
LOOM_API loom_status loom_symbol_attr_scope_push(int32_t count, const char *const *keys,
                                                 const char *const *values);

/** Closes the innermost attribute scope of the calling thread. */
LOOM_API loom_status loom_symbol_attr_scope_pop(void);

/** The symbol in MXNet's symbol JSON. *out_json is valid until the next
 *  loom_symbol_* call on the same thread. */
LOOM_API loom_status loom_symbol_to_json(const char **out_json, loom_symbol symbol);

/** Reads MXNet's symbol JSON (op parameters under "attrs", or the legacy
 *  "param" and "attr" keys). Invalid JSON, unknown ops or parameters and
 *  dangling references fail naming the node and position. */
LOOM_API loom_status loom_symbol_from_json(loom_symbol *out, const char *json);

/** Writes the symbol's JSON to `path` through a temporary file and a rename,
 *  so an existing file is only ever replaced by a complete one. */
LOOM_API loom_status loom_symbol_save(loom_symbol symbol, const char *path);

/** Reads a symbol JSON file. */
LOOM_API loom_status loom_symbol_load(loom_symbol *out, const char *path);

/** Partial shape and dtype inference. The `count` known inputs are named by
 *  names[i] (arguments or auxiliary states) with ndims[i] extents taken in
 *  turn from `dims`; dtypes may be NULL (or hold -1) for unknown. *out_json
 *  receives {"arg_shapes": [...], "out_shapes": [...], "aux_shapes": [...],
 *  "arg_dtypes": [...], "out_dtypes": [...], "aux_dtypes": [...],
 *  "complete": bool} with null for shapes that could not be inferred and -1
 *  for unknown dtypes; valid until the next loom_symbol_* call on the same
 *  thread. Inconsistent shapes fail naming the node and the shapes. */
LOOM_API loom_status loom_symbol_infer(const char **out_json, loom_symbol symbol, int32_t count,
                                       const char *const *names, const int32_t *ndims,
                                       const int64_t *dims, const int32_t *dtypes);

/** The graph in Graphviz's DOT language, drawn as MXNet's mx.viz.plot_network
 *  draws it: a box per op with MXNet's label and colour for its family, inputs as
 *  ovals, parameters (names ending _weight, _bias, _gamma, _beta, _moving_mean,
 *  ...) hidden when hide_weights is non-zero, and with `count` input shapes (as in
 *  loom_symbol_infer; 0 for none) every edge labelled with its shape without the
 *  batch axis. `title` (NULL: "plot") names the graph. *out_text is valid until the
 *  next loom_symbol_* call on the same thread. Shapes that leave a node's shape
 *  unknown fail naming the node. */
LOOM_API loom_status loom_symbol_to_dot(const char **out_text, loom_symbol symbol, int32_t count,
                                        const char *const *names, const int32_t *ndims,
                                        const int64_t *dims, const char *title, int32_t hide_weights);

/** MXNet's mx.viz.print_summary as text: a row per layer (name(op), output shape
 *  without the batch axis, its parameters, previous layers), `line_length`
 *  characters wide (40 to 1000; MXNet's default is 120), then the total. A layer's
 *  parameters are the sizes of its learnable inputs (variables feeding inputs other
 *  than data and label that are neither given shapes nor auxiliary states). Input
 *  shapes as in loom_symbol_infer; *out_text as in loom_symbol_to_dot. */
LOOM_API loom_status loom_symbol_summary(const char **out_text, loom_symbol symbol, int32_t count,
                                         const char *const *names, const int32_t *ndims,
                                         const int64_t *dims, int32_t line_length);

/** Plans the memory of binding `symbol` with the given input shapes (as in
 *  loom_symbol_infer), without allocating. Arguments named in req_names get
 *  reqs[i], the others default_req; for_training adds the backward pass. */
LOOM_API loom_status loom_symbol_plan_memory(loom_memory_plan *out, loom_symbol symbol,
                                             int32_t count, const char *const *names,
                                             const int32_t *ndims, const int64_t *dims,
                                             int32_t num_reqs, const char *const *req_names,
                                             const int32_t *reqs, int32_t default_req,
                                             int32_t for_training);

/** Folds BatchNorm into the layer before it, for prediction: each BatchNorm (axis 1) on
 *  the output of a Convolution or FullyConnected that nothing else reads becomes part of
 *  that layer's weight and bias (W'[f] = W[f] s[f], b'[f] = (b[f] - mean[f]) s[f] + beta[f],
 *  s[f] = gamma[f] / sqrt(var[f] + eps), gamma = 1 under fix_gamma; computed once, in
 *  float64). `num_params` named float32 arrays give the arguments and auxiliary states.
 *  Writes the new symbol (*out_symbol), every parameter it reads, by name, on cpu(0)
 *  (*out_list; the caller owns both), and how many BatchNorms were folded (*out_folded,
 *  may be NULL). Layers whose weight or bias another node reads, and BatchNorms whose
 *  statistics outputs are read, are left as they are. A folded graph has no training
 *  semantics for the folded nodes. */
LOOM_API loom_status loom_symbol_fold_batchnorm(loom_symbol *out_symbol, loom_ndarray_list *out_list,
                                                int32_t *out_folded, loom_symbol symbol,
                                                int32_t num_params, const char *const *param_names,
                                                const loom_ndarray *params);

/** Whether this build reads and writes ONNX models (*out 1) or not (0: the ONNX
 *  calls fail with LOOM_ERR_BACKEND_UNAVAILABLE naming the packages to install). */
LOOM_API loom_status loom_onnx_available(int32_t *out);

/** Writes `symbol` with its parameters to `path` as an ONNX model (opset 13 to 17;
 *  0 means 13). `num_params` named arrays give the arguments and auxiliary states
 *  (float32, any device); variables that are not parameters are the model's inputs,
 *  each needing one of the `count` shapes (as in loom_symbol_infer). Loss labels are
 *  dropped and loss heads written as their predictions (SoftmaxOutput as Softmax,
 *  LogisticRegressionOutput as Sigmoid). The model passes ONNX's checker before it
 *  is written to a temporary name and renamed. An op or a parameter value without
 *  an exact ONNX counterpart fails with LOOM_ERR_INVALID_ARGUMENT naming the node. */
LOOM_API loom_status loom_onnx_export(const char *path, loom_symbol symbol, int32_t num_params,
                                      const char *const *param_names, const loom_ndarray *params,
                                      int32_t count, const char *const *names,
                                      const int32_t *ndims, const int64_t *dims, int32_t opset);

/** Reads the ONNX model at `path` (opset 13 to 17) into a new symbol (*out_symbol)
 *  and a new list of its parameters, arguments and auxiliary states by name, on
 *  cpu(0) (*out_list); the caller owns both. *out_inputs (may be NULL) receives
 *  the model's inputs as JSON, [{"name": ..., "shape": [...]}, ...] with -1 for a
 *  symbolic extent, valid until the next loom_onnx_* or loom_symbol_* call on the
 *  thread. A file that is missing, is not ONNX or fails ONNX's checker gives
 *  LOOM_ERR_IO; an unsupported opset, op or attribute value, or an initializer that
 *  does not fit its node, gives an error naming the file and the node. */
LOOM_API loom_status loom_onnx_import(loom_symbol *out_symbol, loom_ndarray_list *out_list,
                                      const char **out_inputs, const char *path);

/** Releases a symbol. Accepts NULL. */
LOOM_API void loom_symbol_free(loom_symbol symbol);

/* ------------------------------------------------------------------------ */
/* Executors                                                                 */
/* ------------------------------------------------------------------------ */

/** Binds `symbol` on device (dev_type, dev_id) to arrays given in the order of
 *  its argument and auxiliary-state lists. grad_reqs (NULL: all null) holds
 *  LOOM_GRAD_* per argument; arg_grads (may be NULL when every request is
 *  null) the gradient buffers, NULL entries where the request is null.
 *  Missing or extra arrays, shapes that disagree with inference (including a
 *  label that does not match its data) and arrays on other devices fail
 *  naming the argument and the shapes. The executor keeps references to the
 *  arrays; the caller owns *out. */
LOOM_API loom_status loom_executor_bind(loom_executor *out, loom_symbol symbol, int32_t dev_type,
                                        int32_t dev_id, int32_t num_args,
                                        const loom_ndarray *args, const loom_ndarray *arg_grads,
                                        const int32_t *grad_reqs, int32_t num_aux,
                                        const loom_ndarray *aux_states);

/** Binds with arrays allocated (zero-filled) from input shapes given as in
 *  loom_symbol_infer; grad requests as in loom_symbol_plan_memory. */
LOOM_API loom_status loom_executor_simple_bind(loom_executor *out, loom_symbol symbol,
                                               int32_t dev_type, int32_t dev_id, int32_t count,
                                               const char *const *names, const int32_t *ndims,
                                               const int64_t *dims, const int32_t *dtypes,
                                               int32_t num_reqs, const char *const *req_names,
                                               const int32_t *reqs, int32_t default_req);

/** A new executor of the same symbol for other input shapes (another batch
 *  size). Arrays whose shape does not change (parameters, their gradients,
 *  auxiliary states) are shared, and intermediate buffers are reused where
 *  large enough. */
LOOM_API loom_status loom_executor_reshape(loom_executor *out, loom_executor executor,
                                           int32_t count, const char *const *names,
                                           const int32_t *ndims, const int64_t *dims);

/** Pushes the forward pass; is_train selects training behaviour (Dropout,
 *  BatchNorm batch statistics and moving averages). */
LOOM_API loom_status loom_executor_forward(loom_executor executor, int32_t is_train);

/** Pushes the backward pass. head_grads holds one array per output (NULL
 *  entries, or a NULL pointer with count 0, for gradients of ones). */
LOOM_API loom_status loom_executor_backward(loom_executor executor, int32_t count,
                                            const loom_ndarray *head_grads);

/** Number of arrays of a kind (LOOM_EXEC_*). */
LOOM_API loom_status loom_executor_count(int32_t *out, loom_executor executor, int32_t kind);

/** Array `index` of a kind (LOOM_EXEC_*) as a new handle the caller owns,
 *  sharing memory with the executor; *out is NULL for the gradient of an
 *  argument whose request is null. */
LOOM_API loom_status loom_executor_get(loom_ndarray *out, loom_executor executor, int32_t kind,
                                       int32_t index);

/** The executor's memory plan (see loom_memory_plan). LOOM_EXEC_PLAN=0 in the
 *  environment turns planning off (one buffer per value) for comparison. */
LOOM_API loom_status loom_executor_memory(loom_memory_plan *out, loom_executor executor);

/** Releases an executor; pending work keeps what it uses alive. Accepts NULL. */
LOOM_API void loom_executor_free(loom_executor executor);

/* ------------------------------------------------------------------------ */
/* Tracing and cached ops (hybridize)                                        */
/* ------------------------------------------------------------------------ */

/** Opens a trace on the calling thread: until loom_trace_end or
 *  loom_trace_abort, every loom_imperative_invoke of this thread runs as usual
 *  and is also recorded as a node of a symbol. Fails if one is already open. */
LOOM_API loom_status loom_trace_begin(void);

/** Declares `array` as the traced graph's variable `name` (a block's input or
 *  parameter). An op reading an array that is neither declared nor computed
 *  inside the trace fails before it runs, naming the op, input and shape; so
 *  does an op writing into a given output array. */
LOOM_API loom_status loom_trace_input(loom_ndarray array, const char *name);

/** Nodes recorded until the matching pop are named `prefix` + lower-case op
 *  name + a counter (dense0_fullyconnected0). */
LOOM_API loom_status loom_trace_scope_push(const char *prefix);
LOOM_API loom_status loom_trace_scope_pop(void);

/** *out is 1 while a trace is open on the calling thread, else 0. */
LOOM_API loom_status loom_trace_active(int32_t *out);

/** Pauses (1) or resumes (0) the calling thread's open trace: paused, ops run
 *  without being recorded (a parameter initialised inside a traced forward).
 *  *out_prev (may be NULL) receives the previous state. Fails without a trace. */
LOOM_API loom_status loom_trace_pause(int32_t *out_prev, int32_t paused);

/** Closes the trace and returns the symbol whose outputs are `heads` (arrays
 *  computed inside the trace), in order. The caller owns *out. On failure the
 *  trace stays open; close it with loom_trace_abort. */
LOOM_API loom_status loom_trace_end(loom_symbol *out, const loom_ndarray *heads, int32_t count);

/** Closes the trace, if any, without a symbol. */
LOOM_API loom_status loom_trace_abort(void);

/** A cached op of `symbol` (copied: later edits of the symbol do not change it).
 *  The caller owns *out. */
LOOM_API loom_status loom_cached_op_create(loom_cached_op *out, loom_symbol symbol);

/** Runs the graph on `inputs`: the symbol's arguments in list order, then its
 *  auxiliary states (updated in place in training). Writes num_outputs new
 *  arrays, which the caller owns. The first call with a signature (shapes,
 *  dtypes, device, and which inputs want gradients) binds and plans an
 *  executor; later calls reuse it. While autograd records, the call is one
 *  node of the recording and backward runs the executor's backward pass
 *  (once per call). Fails while a trace is open on this thread. */
LOOM_API loom_status loom_cached_op_invoke(loom_cached_op op, int32_t num_inputs,
                                           const loom_ndarray *inputs, int32_t num_outputs,
                                           loom_ndarray *outputs);

/** Number of inputs (arguments then auxiliary states) and of outputs. */
LOOM_API loom_status loom_cached_op_get_counts(int32_t *out_inputs, int32_t *out_outputs,
                                               loom_cached_op op);

/** Executors the op has bound so far (one per signature, more while several
 *  recorded calls await their backward). */
LOOM_API loom_status loom_cached_op_num_executors(int32_t *out, loom_cached_op op);

/** Releases a cached op; recorded calls awaiting backward keep what they use. Accepts NULL. */
LOOM_API void loom_cached_op_free(loom_cached_op op);

/* ------------------------------------------------------------------------ */
/* Random numbers                                                            */
/* ------------------------------------------------------------------------ */

/** Seeds the generator used by the random operators. Draws come from a
 *  counter-based generator (Philox-4x32-10) keyed by the seed and the number of
 *  random operators invoked since seeding, so they do not depend on thread
 *  counts or scheduling. */
LOOM_API loom_status loom_random_seed(uint64_t seed);

/** The generator's state: the seed and the number of random operators invoked
 *  since seeding. Restoring it (loom_random_set_state) makes the following
 *  draws repeat exactly, so a resumed run continues as an uninterrupted one. */
LOOM_API loom_status loom_random_get_state(uint64_t *out_seed, uint64_t *out_stream);

/** Restores a state read by loom_random_get_state. */
LOOM_API loom_status loom_random_set_state(uint64_t seed, uint64_t stream);

/* ------------------------------------------------------------------------ */
/* TensorBoard event files                                                   */
/* ------------------------------------------------------------------------ */

/** Starts a TensorBoard event file in `logdir` (created with its parents if
 *  needed): events.out.tfevents.<seconds>.<host>.<pid>.<n>, TFRecord-framed
 *  protobuf Event messages (TensorFlow's event.proto and summary.proto), opened
 *  by the file-version record. A directory that cannot be made or written is
 *  LOOM_ERR_IO naming the path. The caller owns *out and frees it (which closes
 *  the file) with loom_summary_writer_free. */
LOOM_API loom_status loom_summary_writer_create(loom_summary_writer *out, const char *logdir);

/** The event file's path (valid as long as the writer). */
LOOM_API loom_status loom_summary_writer_get_path(const char **out, loom_summary_writer writer);

/** A scalar (stored as float32, as TensorBoard's simple_value) at a step. */
LOOM_API loom_status loom_summary_add_scalar(loom_summary_writer writer, const char *tag, double value,
                                             int64_t step);

/** A histogram of a float32/float64 array's finite values, computed natively:
 *  min, max, count, sum, sum of squares and `bins` (1 to 10000) equal-width
 *  buckets, each bucket's limit its right edge. An array with no finite value is
 *  LOOM_ERR_INVALID_ARGUMENT naming the tag. */
LOOM_API loom_status loom_summary_add_histogram(loom_summary_writer writer, const char *tag,
                                                loom_ndarray values, int64_t step, int32_t bins);

/** The network as a GraphDef (TensorBoard's graph view): a NodeDef per node with
 *  the op's MXNet name ("Variable" for inputs and parameters), its inputs by node
 *  name and its parameters as string attributes. */
LOOM_API loom_status loom_summary_add_graph(loom_summary_writer writer, loom_symbol symbol);

/** Writes what is buffered to the file. */
LOOM_API loom_status loom_summary_writer_flush(loom_summary_writer writer);

/** Closes the file and frees the writer. */
LOOM_API void loom_summary_writer_free(loom_summary_writer writer);

/* ------------------------------------------------------------------------ */
/* Key-value store                                                           */
/* ------------------------------------------------------------------------ */

/** Creates a key-value store (MXNet's KVStore): arrays by key, summed when
 *  pushed and copied out when pulled, optionally updated where they live by a
 *  native optimizer op (loom_kvstore_set_updater). `type` is "local" (the sum
 *  is taken on the CPU) or "device" (on the device of the lowest-numbered
 *  value); "dist_sync", "dist_device_sync" and "dist_async" work across
 *  processes and need the MPI plugin, and fail with LOOM_ERR_BACKEND_UNAVAILABLE
 *  saying so where it is absent. Values pushed for one key are added in a fixed
 *  order (device type and index, then the order given), so results never depend
 *  on timing. Every operation is pushed to the engine like an operator: it
 *  returns at once and is ordered after pending writes of its arrays.
 *  "dist_sync" sums every rank's push (all ranks push the same keys together),
 *  in shared memory where every rank is on one host (each key's init maps a
 *  segment; LOOM_KVSTORE_SHM=0 turns this off), else over MPI: the same bits;
 *  "dist_async" is MXNet's asynchronous parameter server: every rank also serves
 *  the keys it owns from a thread of its own, applies each push with the updater
 *  as it arrives (an updater is required, as in MXNet) and answers pulls with the
 *  current value; workers never wait for each other. Freeing a dist_async store
 *  waits for every worker. The caller owns *out and frees it with loom_kvstore_free. */
LOOM_API loom_status loom_kvstore_create(loom_kvstore *out, const char *type);

/** The store's type ("local", "device", ...). The string lives as long as the store. */
LOOM_API loom_status loom_kvstore_get_type(const char **out, loom_kvstore kv);

/** This process's rank among the workers (0 in one process). */
LOOM_API loom_status loom_kvstore_get_rank(int32_t *out, loom_kvstore kv);

/** The number of worker processes (1 in one process). */
LOOM_API loom_status loom_kvstore_get_num_workers(int32_t *out, loom_kvstore kv);

/** Stores a copy of each value under its key. A key may be initialised once;
 *  a repeated key is LOOM_ERR_INVALID_ARGUMENT, naming it. */
LOOM_API loom_status loom_kvstore_init(loom_kvstore kv, int32_t num, const char *const *keys,
                                       const loom_ndarray *values);

/** Pushes values: the values given for a key (keys may repeat, one value per
 *  device) are summed, and the sum replaces the key's value, or, with an
 *  updater, is the gradient the updater applies to it. A key never initialised
 *  is LOOM_ERR_NOT_FOUND; a value of another shape or dtype than the key's is
 *  LOOM_ERR_SHAPE; both name the key and the shapes, and nothing is pushed.
 *  `priority` is accepted for MXNet's interface and does not change results. */
LOOM_API loom_status loom_kvstore_push(loom_kvstore kv, int32_t num, const char *const *keys,
                                       const loom_ndarray *values, int32_t priority);

/** Copies each key's value into the output given for it (keys may repeat, to
 *  broadcast to several devices). An output of another shape or dtype is
 *  LOOM_ERR_SHAPE, naming the key and both shapes. */
LOOM_API loom_status loom_kvstore_pull(loom_kvstore kv, int32_t num, const char *const *keys,
                                       const loom_ndarray *outs, int32_t priority);

/** A push followed by a pull of the same keys (MXNet's pushpull). */
LOOM_API loom_status loom_kvstore_pushpull(loom_kvstore kv, int32_t num, const char *const *keys,
                                           const loom_ndarray *values, int32_t num_outs,
                                           const char *const *out_keys, const loom_ndarray *outs,
                                           int32_t priority);

/** Updates pushed keys with a native optimizer op (such as "sgd_mom_update":
 *  inputs weight, grad, states...; outputs weight, states...) and its
 *  parameters, instead of replacing them: MXNet's set_optimizer, run where the
 *  weights live. The states start at zero; an op with a "t" parameter is given
 *  each key's update count from 1. An op of another form, or an unknown
 *  parameter, is LOOM_ERR_INVALID_ARGUMENT. On a dist_async store every worker
 *  calls it (each rank's server applies its own keys' updates), and it returns
 *  when all have. */
LOOM_API loom_status loom_kvstore_set_updater(loom_kvstore kv, const char *op, int32_t num_params,
                                              const char *const *param_keys,
                                              const char *const *param_values);

/** Waits until every worker reaches the barrier (immediate in one process). */
LOOM_API loom_status loom_kvstore_barrier(loom_kvstore kv);

/** Writes the updater's states and update counts to a .params file
 *  ("state<i>:key", "t:key"), through a temporary file and a rename. */
LOOM_API loom_status loom_kvstore_save_states(loom_kvstore kv, const char *path);

/** Reads what loom_kvstore_save_states wrote; a state of another shape than its
 *  key's, or a key the store does not hold, is an error naming it. */
LOOM_API loom_status loom_kvstore_load_states(loom_kvstore kv, const char *path);

/** Releases the store; pending pushes and pulls finish first. Accepts NULL. */
LOOM_API void loom_kvstore_free(loom_kvstore kv);

#ifdef __cplusplus
}
#endif

#endif /* LOOM_LOOM_H_ */
