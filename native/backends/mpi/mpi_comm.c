/* The MPI communication plugin (libloom_mpi.so): loom/comm.h over Open MPI. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/comm.h"

static char g_error[512];

static int check(int rc, const char *what) {
  if (rc == MPI_SUCCESS) return 0;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  snprintf(g_error, sizeof g_error, "%s: %s", what, msg);
  return 1;
}

static int32_t comm_rank(void) {
  int r = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

static int32_t comm_size(void) {
  int n = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

/* Large messages go in pieces below 2^31 elements: MPI counts are ints. */
static int comm_allgather(const void *in, size_t bytes, void *out) {
  if (bytes > (size_t)0x7fffffff) {
    snprintf(g_error, sizeof g_error, "allgather: %zu bytes per rank is more than MPI's int count", bytes);
    return 1;
  }
  return check(MPI_Allgather(in, (int)bytes, MPI_BYTE, out, (int)bytes, MPI_BYTE, MPI_COMM_WORLD), "MPI_Allgather");
}

static int comm_alltoall(const void *in, size_t bytes, void *out) {
  if (bytes > (size_t)0x7fffffff) {
    snprintf(g_error, sizeof g_error, "alltoall: %zu bytes per block is more than MPI's int count", bytes);
    return 1;
  }
  return check(MPI_Alltoall(in, (int)bytes, MPI_BYTE, out, (int)bytes, MPI_BYTE, MPI_COMM_WORLD), "MPI_Alltoall");
}

/* Counts above MPI's int go in pieces (the sum is element-wise, so pieces are exact). */
static int comm_allreduce_sum(const void *in, void *out, size_t count, int32_t dtype) {
  if (dtype != LOOM_COMM_FLOAT32 && dtype != LOOM_COMM_FLOAT64) {
    snprintf(g_error, sizeof g_error, "allreduce_sum: unknown dtype code %d", (int)dtype);
    return 1;
  }
  MPI_Datatype t = dtype == LOOM_COMM_FLOAT32 ? MPI_FLOAT : MPI_DOUBLE;
  size_t es = dtype == LOOM_COMM_FLOAT32 ? 4 : 8;
  const size_t piece = (size_t)1 << 30;
  for (size_t done = 0; done < count; done += piece) {
    size_t n = count - done < piece ? count - done : piece;
    char *o = (char *)out + done * es;
    const void *src = in == out ? MPI_IN_PLACE : (const void *)((const char *)in + done * es);
    if (check(MPI_Allreduce(src, o, (int)n, t, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce")) return 1;
  }
  return 0;
}

static int comm_barrier(void) { return check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier"); }

static const char *comm_last_error(void) { return g_error; }

static void finalize_at_exit(void) {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

static const loom_comm g_table = {.abi_version = LOOM_COMM_ABI_VERSION,
                                  .name = "mpi",
                                  .rank = comm_rank,
                                  .size = comm_size,
                                  .allgather = comm_allgather,
                                  .alltoall = comm_alltoall,
                                  .barrier = comm_barrier,
                                  .last_error = comm_last_error,
                                  .allreduce_sum = comm_allreduce_sum};

__attribute__((visibility("default"))) const loom_comm *loom_comm_open(char *why, size_t why_size) {
  int inited = 0;
  MPI_Initialized(&inited);
  if (!inited) {
    int provided = 0;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided) != MPI_SUCCESS) {
      snprintf(why, why_size, "MPI_Init_thread failed");
      return NULL;
    }
    if (provided < MPI_THREAD_SERIALIZED) {
      snprintf(why, why_size, "MPI gives thread level %d, but Loom needs MPI_THREAD_SERIALIZED", provided);
      return NULL;
    }
    atexit(finalize_at_exit);  /* MPI insists on a finalize before the process ends */
  }
  /* Errors come back as codes instead of aborting the process. */
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  return &g_table;
}
