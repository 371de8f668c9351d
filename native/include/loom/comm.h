/* Loom's inter-process communication plugin interface (libloom_mpi.so).
 *
 * libloom never links MPI: a dist_* key-value store loads this plugin at run
 * time (LOOM_MPI_LIBRARY, else libloom_mpi.so beside libloom, else the library
 * search path) and calls the table it returns. The collectives move bytes only;
 * libloom adds the gathered values itself in rank order, so every rank gets the
 * same bits; it uses the plugin's own sum only where the order of additions
 * cannot matter (two ranks: one addition per element). Calls come from one
 * thread at a time. */
#ifndef LOOM_COMM_H_
#define LOOM_COMM_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LOOM_COMM_ABI_VERSION 2

#define LOOM_COMM_FLOAT32 0
#define LOOM_COMM_FLOAT64 1
#define LOOM_COMM_REQUESTS 0
#define LOOM_COMM_REPLIES 1

typedef struct loom_comm {
  int32_t abi_version; /* LOOM_COMM_ABI_VERSION */
  const char *name;    /* "mpi" */
  /* Each returns 0, or non-zero with the reason in last_error(). */
  int32_t (*rank)(void);
  int32_t (*size)(void);
  /* Every rank sends `bytes` from `in` to each rank; `out` receives size * bytes,
   * rank r's block at r * bytes (MPI_Allgather). */
  int (*allgather)(const void *in, size_t bytes, void *out);
  /* Block r of `in` (size blocks of `bytes`) goes to rank r; block r of `out`
   * comes from rank r (MPI_Alltoall). */
  int (*alltoall)(const void *in, size_t bytes, void *out);
  int (*barrier)(void);
  /* out = the element-wise sum over the ranks of `count` values at `in` (MPI_Allreduce
   * with MPI_SUM); `in` may equal `out` (in place). dtype: LOOM_COMM_FLOAT32 or
   * LOOM_COMM_FLOAT64. */
  int (*allreduce_sum)(const void *in, void *out, size_t count, int32_t dtype);
  /* Point-to-point messages for dist_async, on two channels apart from the
   * collectives: LOOM_COMM_REQUESTS (workers to servers) and LOOM_COMM_REPLIES.
   * They may be called from a second thread (the server) while the first calls
   * anything else; thread_multiple() says whether the plugin allows that (1) or
   * not (0). send blocks until `buf` may be reused. probe does not block: *found
   * is 1 with the next message's source, tag and size, or 0. recv takes the
   * message of that source and tag (exactly `bytes` bytes). */
  int32_t (*thread_multiple)(void);
  int (*send)(int32_t channel, int32_t dest, int32_t tag, const void *buf, size_t bytes);
  int (*probe)(int32_t channel, int32_t *found, int32_t *src, int32_t *tag, size_t *bytes);
  int (*recv)(int32_t channel, int32_t src, int32_t tag, void *buf, size_t bytes);
  const char *(*last_error)(void);
} loom_comm;

/* The plugin's one export. Initialises the communication layer (MPI_Init) and
 * returns its table, or NULL with the reason written to `why` (why_size bytes). */
typedef const loom_comm *(*loom_comm_open_fn)(char *why, size_t why_size);

#ifdef __cplusplus
}
#endif

#endif /* LOOM_COMM_H_ */
