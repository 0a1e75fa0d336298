// Pieces shared by the TMA probes (tma_stream_probe.cu, tma_gather_probe.cu):
// error checks, mbarrier and TMA instructions, the tensor map of a bf16
// matrix with 128B swizzle, and the timing of CUDA-graph replays.
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

namespace tma_probe {

constexpr int kSpanElements = 64; // 128 bytes of bf16: one swizzle span.

#define CHECK_CUDA(call)                                                       \
  do {                                                                         \
    cudaError_t status = (call);                                               \
    if (status != cudaSuccess) {                                               \
      std::fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__,                  \
                   cudaGetErrorString(status));                                \
      std::exit(1);                                                            \
    }                                                                          \
  } while (0)

__device__ inline uint32_t sharedAddress(const void *pointer) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(pointer));
}

__device__ inline void initBarrier(uint64_t *barrier, int count) {
  asm volatile(
      "mbarrier.init.shared::cta.b64 [%0], %1;" ::"r"(sharedAddress(barrier)),
      "r"(count));
}

__device__ inline void arriveExpect(uint64_t *barrier, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(
                   sharedAddress(barrier)),
               "r"(bytes)
               : "memory");
}

/// One 2D TMA box at (column, row) of `map` into `destination`, completed
/// as bytes on `barrier`.
__device__ inline void loadBox(const CUtensorMap *map, void *destination,
                               uint64_t *barrier, int column, int row) {
  asm volatile("cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::"
               "complete_tx::bytes [%0], [%1, {%2, %3}], [%4];" ::"r"(
                   sharedAddress(destination)),
               "l"(map), "r"(column), "r"(row), "r"(sharedAddress(barrier))
               : "memory");
}

/// A rows × kElements bf16 matrix in boxes of [boxRows, 64], 128B swizzle.
inline CUtensorMap makeMap(void *matrix, int rows, int kElements, int boxRows) {
  CUtensorMap map;
  cuuint64_t dims[2] = {cuuint64_t(kElements), cuuint64_t(rows)};
  cuuint64_t strides[1] = {cuuint64_t(kElements) * 2};
  cuuint32_t box[2] = {kSpanElements, cuuint32_t(boxRows)};
  cuuint32_t elementStrides[2] = {1, 1};
  CUresult result = cuTensorMapEncodeTiled(
      &map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, matrix, dims, strides, box,
      elementStrides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
      CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (result != CUDA_SUCCESS) {
    std::fprintf(stderr, "cuTensorMapEncodeTiled failed (%d)\n", int(result));
    std::exit(1);
  }
  return map;
}

/// Median µs of one launch, over `replays` replays of a graph of `launches`
/// launches; `launch(i, stream)` records the i-th.
template <typename Launch>
float medianMicroseconds(Launch launch, int launches, int replays) {
  cudaStream_t stream;
  CHECK_CUDA(cudaStreamCreate(&stream));
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  CHECK_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
  for (int i = 0; i < launches; ++i)
    launch(i, stream);
  CHECK_CUDA(cudaStreamEndCapture(stream, &graph));
  CHECK_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  CHECK_CUDA(cudaGraphLaunch(exec, stream));
  CHECK_CUDA(cudaStreamSynchronize(stream));
  cudaEvent_t start, stop;
  CHECK_CUDA(cudaEventCreate(&start));
  CHECK_CUDA(cudaEventCreate(&stop));
  std::vector<float> times;
  for (int replay = 0; replay < replays; ++replay) {
    CHECK_CUDA(cudaEventRecord(start, stream));
    CHECK_CUDA(cudaGraphLaunch(exec, stream));
    CHECK_CUDA(cudaEventRecord(stop, stream));
    CHECK_CUDA(cudaEventSynchronize(stop));
    float ms;
    CHECK_CUDA(cudaEventElapsedTime(&ms, start, stop));
    times.push_back(ms * 1000.f / launches);
  }
  CHECK_CUDA(cudaEventDestroy(start));
  CHECK_CUDA(cudaEventDestroy(stop));
  CHECK_CUDA(cudaGraphExecDestroy(exec));
  CHECK_CUDA(cudaGraphDestroy(graph));
  CHECK_CUDA(cudaStreamDestroy(stream));
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

} // namespace tma_probe
