// The CUDA runtime's declarations that libloom_cuda uses, for checking the
// plugin's sources with clang on machines without the CUDA toolkit
// (tests/build/cuda_syntax.sh). Only types and prototypes: nothing here runs.
#pragma once
#define __global__ __attribute__((global))
#define __device__ __attribute__((device))
#define __host__ __attribute__((host))
#define __shared__ __attribute__((shared))
#define __forceinline__ inline __attribute__((always_inline))
#include <cstddef>
#include <cstdint>
#include <cmath>
#include <algorithm>
#include "__clang_cuda_builtin_vars.h"
struct dim3 { unsigned x, y, z; dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {} };
typedef struct CUstream_st *cudaStream_t;
typedef struct CUevent_st *cudaEvent_t;
enum cudaError_t { cudaSuccess = 0, cudaErrorMemoryAllocation = 2 };
enum cudaMemcpyKind { cudaMemcpyHostToDevice = 1, cudaMemcpyDeviceToHost = 2, cudaMemcpyDeviceToDevice = 3 };
#define cudaStreamNonBlocking 1
#define cudaEventDisableTiming 2
struct cudaDeviceProp { char name[256]; int major, minor; size_t totalGlobalMem; };
extern "C" {
int __cudaPushCallConfiguration(dim3 gridDim, dim3 blockDim, size_t sharedMem = 0, cudaStream_t stream = 0);
cudaError_t cudaGetLastError();
const char *cudaGetErrorString(cudaError_t);
cudaError_t cudaSetDevice(int);
cudaError_t cudaGetDeviceCount(int *);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *, int);
cudaError_t cudaMemGetInfo(size_t *, size_t *);
cudaError_t cudaMalloc(void **, size_t);
cudaError_t cudaFree(void *);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *, unsigned);
cudaError_t cudaStreamDestroy(cudaStream_t);
cudaError_t cudaStreamSynchronize(cudaStream_t);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *, unsigned);
cudaError_t cudaEventDestroy(cudaEvent_t);
cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t);
cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned);
cudaError_t cudaEventSynchronize(cudaEvent_t);
cudaError_t cudaMemcpyAsync(void *, const void *, size_t, cudaMemcpyKind, cudaStream_t);
cudaError_t cudaMemcpy(void *, const void *, size_t, cudaMemcpyKind);
cudaError_t cudaMemcpyPeerAsync(void *, int, const void *, int, size_t, cudaStream_t);
cudaError_t cudaMemsetAsync(void *, int, size_t, cudaStream_t);
}
template <class T> inline cudaError_t cudaMalloc(T **p, size_t n) { return cudaMalloc((void **)p, n); }
__device__ float atomicAdd(float *, float);
__device__ double atomicAdd(double *, double);
__device__ unsigned long long atomicAdd(unsigned long long *, unsigned long long);
__device__ unsigned long long atomicMin(unsigned long long *, unsigned long long);
__device__ void __syncthreads();
using std::min; using std::max;
extern "C" int cudaConfigureCall(dim3 gridDim, dim3 blockDim, size_t sharedMem = 0, cudaStream_t stream = 0);
#define LOOM_STUB_MATH1(f) __device__ double f(double); __device__ float f(float);
LOOM_STUB_MATH1(exp) LOOM_STUB_MATH1(log) LOOM_STUB_MATH1(log1p) LOOM_STUB_MATH1(expm1) LOOM_STUB_MATH1(sqrt)
LOOM_STUB_MATH1(tanh) LOOM_STUB_MATH1(sin) LOOM_STUB_MATH1(cos) LOOM_STUB_MATH1(floor) LOOM_STUB_MATH1(ceil)
LOOM_STUB_MATH1(round) LOOM_STUB_MATH1(fabs)
__device__ double pow(double, double); __device__ double fmax(double, double);
__device__ bool isfinite(float);
__device__ double log(double);
__device__ unsigned int __float_as_uint(float);
extern "C" cudaError_t cudaMemcpy2DAsync(void *, size_t, const void *, size_t, size_t, size_t, cudaMemcpyKind, cudaStream_t);
#define cudaHostAllocMapped 2
extern "C" cudaError_t cudaHostAlloc(void **, size_t, unsigned);
extern "C" cudaError_t cudaHostGetDevicePointer(void **, void *, unsigned);
extern "C" cudaError_t cudaFreeHost(void *);
__device__ int atomicCAS(int *, int, int);
__device__ void __threadfence_system();
