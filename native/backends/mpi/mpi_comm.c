/* The MPI communication plugin (libloom_mpi.so): loom/comm.h over Open MPI. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loom/comm.h"

static char g_error[512];
static int g_thread_multiple;
static MPI_Comm g_channels[2] = {MPI_COMM_NULL, MPI_COMM_NULL};

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

static int channel_ok(int32_t channel, size_t bytes, const char *what) {
  if (channel != LOOM_COMM_REQUESTS && channel != LOOM_COMM_REPLIES) {
    snprintf(g_error, sizeof g_error, "%s: unknown channel %d", what, (int)channel);
    return 0;
  }
  if (bytes > (size_t)0x7fffffff) {
    snprintf(g_error, sizeof g_error, "%s: a message of %zu bytes is more than MPI's int count", what, bytes);
    return 0;
  }
  return 1;
}

static int32_t comm_thread_multiple(void) { return g_thread_multiple; }

static int comm_send(int32_t channel, int32_t dest, int32_t tag, const void *buf, size_t bytes) {
  if (!channel_ok(channel, bytes, "send")) return 1;
  return check(MPI_Send(buf, (int)bytes, MPI_BYTE, dest, tag, g_channels[channel]), "MPI_Send");
}

static int comm_probe(int32_t channel, int32_t *found, int32_t *src, int32_t *tag, size_t *bytes) {
  if (!channel_ok(channel, 0, "probe")) return 1;
  MPI_Status st;
  int flag = 0;
  if (check(MPI_Iprobe(MPI_ANY_SOURCE, MPI_ANY_TAG, g_channels[channel], &flag, &st), "MPI_Iprobe")) return 1;
  *found = flag;
  if (flag) {
    int count = 0;
    MPI_Get_count(&st, MPI_BYTE, &count);
    *src = st.MPI_SOURCE;
    *tag = st.MPI_TAG;
    *bytes = (size_t)count;
  }
  return 0;
}

static int comm_recv(int32_t channel, int32_t src, int32_t tag, void *buf, size_t bytes) {
  if (!channel_ok(channel, bytes, "recv")) return 1;
  MPI_Status st;
  if (check(MPI_Recv(buf, (int)bytes, MPI_BYTE, src, tag, g_channels[channel], &st), "MPI_Recv")) return 1;
  int count = 0;
  MPI_Get_count(&st, MPI_BYTE, &count);
  if ((size_t)count != bytes) {
    snprintf(g_error, sizeof g_error, "recv: expected %zu bytes from rank %d, got %d", bytes, (int)src, count);
    return 1;
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
                                  .allreduce_sum = comm_allreduce_sum,
                                  .thread_multiple = comm_thread_multiple,
                                  .send = comm_send,
                                  .probe = comm_probe,
                                  .recv = comm_recv};

__attribute__((visibility("default"))) const loom_comm *loom_comm_open(char *why, size_t why_size) {
  int inited = 0;
  MPI_Initialized(&inited);
  if (!inited) {
    int provided = 0;
    /* MULTIPLE where MPI gives it (dist_async's server thread needs it), else SERIALIZED. */
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS) {
      snprintf(why, why_size, "MPI_Init_thread failed");
      return NULL;
    }
    if (provided < MPI_THREAD_SERIALIZED) {
      snprintf(why, why_size, "MPI gives thread level %d, but Loom needs MPI_THREAD_SERIALIZED", provided);
      return NULL;
    }
    atexit(finalize_at_exit);  /* MPI insists on a finalize before the process ends */
  }
  int level = 0;
  MPI_Query_thread(&level);
  g_thread_multiple = level >= MPI_THREAD_MULTIPLE;
  /* The point-to-point channels, apart from the collectives (a collective call on
   * every rank, as opening the plugin is). */
  for (int c = 0; c < 2; ++c)
    if (g_channels[c] == MPI_COMM_NULL && MPI_Comm_dup(MPI_COMM_WORLD, &g_channels[c]) != MPI_SUCCESS) {
      snprintf(why, why_size, "MPI_Comm_dup failed");
      return NULL;
    }
  /* Errors come back as codes instead of aborting the process. */
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  for (int c = 0; c < 2; ++c) MPI_Comm_set_errhandler(g_channels[c], MPI_ERRORS_RETURN);
  return &g_table;
}
