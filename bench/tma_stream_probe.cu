// Streams a weight matrix through shared memory the way the decode expert
// GEMMs do, without the MMAs, to tell the access pattern's bandwidth apart
// from the kernel's own costs (docs/gpu-decode-kernel.md, "the weight
// stream alone").
//
// Each block owns `rows` consecutive weight rows (one output tile) and walks
// their K in steps of `spans` × 128 bytes per row: one TMA box of
// [rows, 64 bf16] (128B swizzle, as the kernels' weight tiles) per span,
// completed on the stage's mbarrier, `stages` stages in a ring. Thread 0
// issues; with `barrier` every thread waits for the stage, reads a word of
// it and passes a block barrier before the stage is refilled (the
// multistage kernel's per-step handshake); without it thread 0 alone waits
// and refills. `split` blocks share a tile's K (split-K's grid).
//
// The same ring filled by cp.async from every thread instead (128 or 256
// threads, 16 bytes each), as Triton's decode kernels load their weights.
//
// Beside it, a plain read of the same bytes with 16-byte loads from every
// SM, the card's reference for this size. The matrix is rotated over
// enough copies that each pass reads from DRAM, not L2.
//
// Build (nvcc, sm_90a):
//   nvcc -O3 -arch=sm_90a -std=c++17 bench/tma_stream_probe.cu -lcuda \
//     -o tma_stream_probe
// Run: ./tma_stream_probe   (prints one line per variant)

#include "tma_probe_common.cuh"

namespace {

using namespace tma_probe;

constexpr int kThreads = 128;
constexpr int kMaxSharedBytes = 200 * 1024;

__device__ void waitPhase(uint64_t *barrier, uint32_t phase) {
  asm volatile("{\n"
               ".reg .pred done;\n"
               "retry:\n"
               "mbarrier.try_wait.parity.shared::cta.b64 done, [%0], %1;\n"
               "@!done bra retry;\n"
               "}\n" ::"r"(sharedAddress(barrier)),
               "r"(phase));
}

struct StreamShape {
  int rows;      // weight rows per block
  int spans;     // 128-byte spans per row per stage
  int stages;    // ring depth
  int split;     // blocks per tile along K
  bool barrier;  // per-step block handshake
  int kElements; // K of the matrix
};

__global__ void streamTiles(const __grid_constant__ CUtensorMap map,
                            StreamShape shape, float *sink) {
  extern __shared__ __align__(1024) unsigned char ring[];
  __shared__ uint64_t full[16];
  int tile = blockIdx.x / shape.split;
  int part = blockIdx.x % shape.split;
  int stageBytes = shape.rows * shape.spans * kSpanElements * 2;
  int stepElements = shape.spans * kSpanElements;
  int steps = shape.kElements / stepElements / shape.split;
  int kBase = part * steps * stepElements;
  int row = tile * shape.rows;
  unsigned char *base = reinterpret_cast<unsigned char *>(
      (reinterpret_cast<uintptr_t>(ring) + 1023) & ~uintptr_t(1023));
  auto issue = [&](int step) {
    int stage = step % shape.stages;
    arriveExpect(&full[stage], stageBytes);
    for (int span = 0; span < shape.spans; ++span)
      loadBox(&map, base + stage * stageBytes + span * shape.rows * 128,
              &full[stage], kBase + step * stepElements + span * kSpanElements,
              row);
  };
  if (threadIdx.x == 0) {
    for (int stage = 0; stage < shape.stages; ++stage)
      initBarrier(&full[stage], 1);
    asm volatile("fence.mbarrier_init.release.cluster;");
  }
  __syncthreads();
  if (threadIdx.x == 0)
    for (int step = 0; step < shape.stages && step < steps; ++step)
      issue(step);
  float sum = 0.f;
  for (int step = 0; step < steps; ++step) {
    int stage = step % shape.stages;
    uint32_t phase = (step / shape.stages) & 1;
    if (shape.barrier || threadIdx.x == 0) {
      waitPhase(&full[stage], phase);
      sum += reinterpret_cast<const float *>(base +
                                             stage * stageBytes)[threadIdx.x];
    }
    if (shape.barrier)
      __syncthreads();
    if (threadIdx.x == 0 && step + shape.stages < steps)
      issue(step + shape.stages);
  }
  if (sum == 12345.f) // keeps the reads; never true for the random data
    sink[blockIdx.x * kThreads + threadIdx.x] = sum;
}

/// The same ring filled by cp.async from every thread of the block (16
/// bytes each, consecutive threads along a row) instead of one thread's TMA
/// boxes: `kStages` − 1 stages ahead, one block barrier per step (the
/// multistage kernel's gather side).
template <int kStages>
__global__ void streamTilesByThreads(const uint4 *matrix, StreamShape shape,
                                     float *sink) {
  extern __shared__ __align__(1024) unsigned char ring[];
  int tile = blockIdx.x / shape.split;
  int part = blockIdx.x % shape.split;
  int rowChunks = shape.spans * kSpanElements / 8;
  int stageChunks = shape.rows * rowChunks;
  size_t matrixRowChunks = shape.kElements / 8;
  int steps = shape.kElements / (shape.spans * kSpanElements) / shape.split;
  const uint4 *tileBase = matrix + size_t(tile) * shape.rows * matrixRowChunks +
                          size_t(part) * steps * rowChunks;
  uint4 *stages = reinterpret_cast<uint4 *>(ring);
  auto issue = [&](int step) {
    if (step < steps) {
      uint4 *stage = stages + (step % kStages) * stageChunks;
      for (int chunk = threadIdx.x; chunk < stageChunks; chunk += blockDim.x) {
        const uint4 *source = tileBase +
                              size_t(chunk / rowChunks) * matrixRowChunks +
                              step * rowChunks + chunk % rowChunks;
        asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(
                         sharedAddress(stage + chunk)),
                     "l"(source)
                     : "memory");
      }
    }
    asm volatile("cp.async.commit_group;" ::: "memory");
  };
  for (int step = 0; step < kStages - 1; ++step)
    issue(step);
  float sum = 0.f;
  for (int step = 0; step < steps; ++step) {
    asm volatile("cp.async.wait_group %0;" ::"n"(kStages - 2) : "memory");
    __syncthreads();
    issue(step + kStages - 1);
    sum += reinterpret_cast<const float *>(
        stages + (step % kStages) * stageChunks)[threadIdx.x];
  }
  if (sum == 12345.f)
    sink[blockIdx.x * blockDim.x + threadIdx.x] = sum;
}

/// Every SM reads `words` 16-byte words with a grid stride.
__global__ void plainRead(const uint4 *source, size_t words, float *sink) {
  uint32_t acc = 0;
  for (size_t i = blockIdx.x * blockDim.x + threadIdx.x; i < words;
       i += size_t(gridDim.x) * blockDim.x) {
    uint4 value = __ldcs(source + i);
    acc ^= value.x ^ value.y ^ value.z ^ value.w;
  }
  if (acc == 0x12345u)
    sink[blockIdx.x] = float(acc);
}

/// A weight matrix (rows × K bf16) in enough copies to exceed the L2.
struct Matrix {
  const char *name;
  int rows;
  int kElements;
  std::vector<void *> copies;
  size_t bytes() const { return size_t(rows) * kElements * 2; }
};

/// Median µs of one launch over graphs of 24 launches that rotate the
/// matrix's `copies` (launch(copy, stream)).
template <typename Launch> float medianOverCopies(Launch launch, int copies) {
  return medianMicroseconds(
      [&](int i, cudaStream_t stream) { launch(i % copies, stream); },
      /*launches=*/24, /*replays=*/15);
}

void report(const Matrix &matrix, const char *variant, int blocks, float us) {
  std::printf("%-10s %-44s %5d blocks %8.1f us %5.2f TB/s\n", matrix.name,
              variant, blocks, us, matrix.bytes() / (us * 1e-6) / 1e12);
}

/// The cp.async ring: 4 stages (3 ahead, as the multistage kernel with a
/// wgmma in flight keeps) or 8, 128 or 256 threads.
void probeThreadLoads(Matrix &matrix, float *sink) {
  for (int rows : {128, 256})
    for (int spans : {1, 2})
      for (int threads : {128, 256})
        for (int ringDepth : {4, 8}) {
          int stageBytes = rows * spans * 128;
          if (ringDepth * stageBytes > kMaxSharedBytes)
            continue;
          StreamShape shape{rows, spans, ringDepth, 1, true, matrix.kElements};
          auto kernel = ringDepth == 4 ? streamTilesByThreads<4>
                                       : streamTilesByThreads<8>;
          int shared = ringDepth * stageBytes;
          CHECK_CUDA(cudaFuncSetAttribute(
              kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, shared));
          int blocks = matrix.rows / rows;
          float us = medianOverCopies(
              [&](int copy, cudaStream_t stream) {
                kernel<<<blocks, threads, shared, stream>>>(
                    static_cast<const uint4 *>(matrix.copies[copy]), shape,
                    sink);
              },
              matrix.copies.size());
          char variant[64];
          std::snprintf(variant, sizeof variant,
                        "cp.async %3d rows x %3d B, %d stages, %d threads",
                        rows, spans * 128, ringDepth, threads);
          report(matrix, variant, blocks, us);
        }
}

void probe(Matrix &matrix, float *sink, int sms) {
  size_t words = matrix.bytes() / 16;
  for (int perSM : {2, 4}) {
    int blocks = sms * perSM;
    float us = medianOverCopies(
        [&](int copy, cudaStream_t stream) {
          plainRead<<<blocks, 512, 0, stream>>>(
              static_cast<const uint4 *>(matrix.copies[copy]), words, sink);
        },
        matrix.copies.size());
    char variant[64];
    std::snprintf(variant, sizeof variant, "plain 16B loads, %d x 512/SM",
                  perSM);
    report(matrix, variant, blocks, us);
  }
  probeThreadLoads(matrix, sink);
  for (int rows : {128, 256})
    for (int spans : {1, 2})
      for (int split : {1, 2})
        for (int ringDepth : {4, 8})
          for (bool barrier : {true, false}) {
            int stageBytes = rows * spans * 128;
            int stages =
                std::min(ringDepth, (kMaxSharedBytes - 1024) / stageBytes);
            StreamShape shape{rows,  spans,   stages,
                              split, barrier, matrix.kElements};
            std::vector<CUtensorMap> maps;
            for (void *copy : matrix.copies)
              maps.push_back(
                  makeMap(copy, matrix.rows, matrix.kElements, rows));
            int blocks = matrix.rows / rows * split;
            int shared = stages * stageBytes + 1024;
            CHECK_CUDA(cudaFuncSetAttribute(
                streamTiles, cudaFuncAttributeMaxDynamicSharedMemorySize,
                shared));
            float us = medianOverCopies(
                [&](int copy, cudaStream_t stream) {
                  streamTiles<<<blocks, kThreads, shared, stream>>>(
                      maps[copy], shape, sink);
                },
                matrix.copies.size());
            char variant[64];
            std::snprintf(variant, sizeof variant,
                          "tma %3d rows x %3d B, %d stages, split %d%s", rows,
                          spans * 128, stages, split,
                          barrier ? ", barrier" : "");
            report(matrix, variant, blocks, us);
          }
}

} // namespace

int main() {
  CHECK_CUDA(cudaFree(nullptr));
  cudaDeviceProp properties;
  CHECK_CUDA(cudaGetDeviceProperties(&properties, 0));
  std::printf("device: %s, %d SMs\n", properties.name,
              properties.multiProcessorCount);
  // GEMM1's weights at M = 1: Qwen3-30B-A3B (8 experts × 1536 rows × 2048)
  // and Mixtral-8x7B (2 experts × 28672 rows × 4096).
  std::vector<Matrix> matrices = {{"qwen3-g1", 8 * 1536, 2048, {}},
                                  {"mixtral-g1", 2 * 28672, 4096, {}}};
  float *sink;
  CHECK_CUDA(cudaMalloc(&sink, 1 << 24));
  for (Matrix &matrix : matrices) {
    int copies = std::max<size_t>(2, (size_t(400) << 20) / matrix.bytes());
    for (int i = 0; i < copies; ++i) {
      void *copy;
      CHECK_CUDA(cudaMalloc(&copy, matrix.bytes()));
      CHECK_CUDA(cudaMemset(copy, 0x3c + i, matrix.bytes()));
      matrix.copies.push_back(copy);
    }
    probe(matrix, sink, properties.multiProcessorCount);
    for (void *copy : matrix.copies)
      CHECK_CUDA(cudaFree(copy));
  }
  return 0;
}
