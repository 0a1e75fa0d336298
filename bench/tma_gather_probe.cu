// Feeds gathered slot rows into a shared-memory ring the way the
// warp-specialized expert GEMMs' producer does, without the MMAs, to compare
// two ways of bringing them (docs/gpu-warp-specialization-notes.md, "Slot
// rows by per-row TMA"):
//   cp.async  128 producer threads copy 16 bytes each and arrive on the
//             stage's full barrier by cp.async.mbarrier.arrive.noinc (today's
//             producer); the consumers fence the async proxy after the wait.
//   tma       one 2D TMA box of 64 bf16 x 1 row (128B swizzle) per gathered
//             row, issued by the lanes of 1 or 4 producer warps, completed as
//             expect_tx bytes on the stage's full barrier (no fence).
// 128 consumer threads wait for each stage, read a word of it and release it
// at once, so the ring runs at the producer's pace: the figure is the rate
// at which gathered rows can be fed (TB/s of rows moved into shared memory).
//
// A check first: eight rows loaded one box each land where one 8-row box
// puts them (the swizzle follows the destination address), and a box whose
// row is past the end is zero-filled and completes its bytes.
//
// Build (nvcc, sm_90a):
//   nvcc -O3 -arch=sm_90a -std=c++17 bench/tma_gather_probe.cu -lcuda \
//     -o tma_gather_probe
// Run: ./tma_gather_probe   (prints the check, then one line per variant)

#include "tma_probe_common.cuh"

#include <numeric>
#include <random>

namespace {

using namespace tma_probe;

constexpr int kConsumers = 128, kProducers = 128;
constexpr int kTokens = 4096, kK = 4096, kTopK = 2;
constexpr int kSlots = kTokens * kTopK;
constexpr int kColumnTiles = 28;

__device__ void arrive(uint64_t *barrier) {
  asm volatile(
      "mbarrier.arrive.shared::cta.b64 _, [%0];" ::"r"(sharedAddress(barrier))
      : "memory");
}

/// Waits for the phase of `parity`; false after about a second of spinning
/// (a box whose bytes never complete).
__device__ bool waitParity(uint64_t *barrier, uint32_t parity,
                           long long limit = 2000000000LL) {
  long long start = clock64();
  uint32_t done = 0;
  while (!done) {
    asm volatile("{\n"
                 ".reg .pred p;\n"
                 "mbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\n"
                 "selp.u32 %0, 1, 0, p;\n"
                 "}\n"
                 : "=r"(done)
                 : "r"(sharedAddress(barrier)), "r"(parity)
                 : "memory");
    if (!done && clock64() - start > limit)
      return false;
  }
  return true;
}

/// Eight rows (one box each) beside one 8-row box of the same rows, and a
/// box past the last row. `result`: 8·128 bytes of each, then the
/// past-the-end row's 128, then a flag (1: its bytes completed).
__global__ void checkRowBoxes(const __grid_constant__ CUtensorMap rowMap,
                              const __grid_constant__ CUtensorMap blockMap,
                              int rows, unsigned char *result) {
  extern __shared__ __align__(1024) unsigned char memory[];
  __shared__ uint64_t barriers[3];
  unsigned char *base = reinterpret_cast<unsigned char *>(
      (reinterpret_cast<uintptr_t>(memory) + 1023) & ~uintptr_t(1023));
  unsigned char *byRows = base, *byBlock = base + 1024, *past = base + 2048;
  if (threadIdx.x == 0) {
    for (uint64_t &barrier : barriers)
      initBarrier(&barrier, 1);
    asm volatile("fence.mbarrier_init.release.cluster;");
    for (int i = 0; i < 128; ++i)
      past[i] = 0xff;
    // The TMA's zeros (async proxy) follow these writes (generic proxy).
    asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    arriveExpect(&barriers[0], 8 * 128);
    for (int r = 0; r < 8; ++r)
      loadBox(&rowMap, byRows + r * 128, &barriers[0], 0, 16 + r);
    arriveExpect(&barriers[1], 8 * 128);
    loadBox(&blockMap, byBlock, &barriers[1], 0, 16);
    arriveExpect(&barriers[2], 128);
    loadBox(&rowMap, past, &barriers[2], 0, rows);
  }
  bool rowsDone = waitParity(&barriers[0], 0);
  bool blockDone = waitParity(&barriers[1], 0);
  bool pastDone = waitParity(&barriers[2], 0);
  __syncthreads();
  if (threadIdx.x == 0) {
    for (int i = 0; i < 2048 + 128; ++i)
      result[i] = base[i];
    result[2048 + 128] = rowsDone && blockDone;
    result[2048 + 129] = pastDone;
  }
}

enum class Feed { CpAsync, TmaOneWarp, TmaFourWarps };

struct RingShape {
  int rows;   // slot rows per stage
  int stages; // ring depth
  Feed feed;
};

/// A persistent block per SM walks tiles (slot block, column tile); each
/// tile streams the slot rows' K in 64-element steps through the ring.
__global__ void __launch_bounds__(kConsumers + kProducers)
    feedRing(const __grid_constant__ CUtensorMap map, const uint16_t *x,
             const int *slotTokens, RingShape shape, float *sink) {
  extern __shared__ __align__(1024) unsigned char memory[];
  __shared__ uint64_t full[8], empty[8];
  unsigned char *base = reinterpret_cast<unsigned char *>(
      (reinterpret_cast<uintptr_t>(memory) + 1023) & ~uintptr_t(1023));
  int stageBytes = shape.rows * 128;
  int slotBlocks = kSlots / shape.rows;
  int tiles = slotBlocks * kColumnTiles;
  int kSteps = kK / kSpanElements;
  int fullCount = shape.feed == Feed::CpAsync      ? kProducers
                  : shape.feed == Feed::TmaOneWarp ? 1
                                                   : 4;
  if (threadIdx.x == 0) {
    for (int s = 0; s < shape.stages; ++s) {
      initBarrier(&full[s], fullCount);
      initBarrier(&empty[s], kConsumers);
    }
    asm volatile("fence.mbarrier_init.release.cluster;");
  }
  __syncthreads();
  bool producer = threadIdx.x >= kConsumers;
  int lane = threadIdx.x % 32;
  int producerWarp = (threadIdx.x - kConsumers) / 32;
  float sum = 0.f;
  int position = 0;
  for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    int block = tile % slotBlocks;
    const int *tokens = slotTokens + block * shape.rows;
    for (int step = 0; step < kSteps; ++step, ++position) {
      int stage = position % shape.stages;
      int round = position / shape.stages;
      unsigned char *stageBase = base + stage * stageBytes;
      if (!producer) {
        waitParity(&full[stage], round & 1, 1LL << 62);
        if (shape.feed == Feed::CpAsync)
          asm volatile("fence.proxy.async.shared::cta;" ::: "memory");
        sum += reinterpret_cast<const float *>(stageBase)[threadIdx.x];
        arrive(&empty[stage]);
        continue;
      }
      if (round > 0)
        waitParity(&empty[stage], (round - 1) & 1, 1LL << 62);
      int column = step * kSpanElements;
      if (shape.feed == Feed::CpAsync) {
        int producerThread = threadIdx.x - kConsumers;
        for (int chunk = producerThread; chunk < shape.rows * 8;
             chunk += kProducers) {
          int row = chunk / 8, piece = chunk % 8;
          const uint16_t *source =
              x + size_t(tokens[row]) * kK + column + piece * 8;
          asm volatile("cp.async.cg.shared.global [%0], [%1], 16;" ::"r"(
                           sharedAddress(stageBase + chunk * 16)),
                       "l"(source)
                       : "memory");
        }
        asm volatile(
            "cp.async.mbarrier.arrive.noinc.shared::cta.b64 [%0];" ::"r"(
                sharedAddress(&full[stage]))
            : "memory");
        continue;
      }
      int warps = shape.feed == Feed::TmaOneWarp ? 1 : 4;
      if (producerWarp >= warps)
        continue;
      int rowsPerWarp = shape.rows / warps;
      if (lane == 0)
        arriveExpect(&full[stage], rowsPerWarp * 128);
      __syncwarp();
      for (int r = lane; r < rowsPerWarp; r += 32) {
        int row = producerWarp * rowsPerWarp + r;
        loadBox(&map, stageBase + row * 128, &full[stage], column, tokens[row]);
      }
    }
  }
  if (sum == 12345.f) // keeps the reads; never true for the data
    sink[blockIdx.x * blockDim.x + threadIdx.x] = sum;
}

/// Prints whether row boxes match a block box and a past-the-end box
/// zero-fills and completes; returns false if not.
bool runRowBoxCheck(void *x) {
  CUtensorMap rowMap = makeMap(x, kTokens, kK, 1);
  CUtensorMap blockMap = makeMap(x, kTokens, kK, 8);
  unsigned char *result;
  CHECK_CUDA(cudaMalloc(&result, 4096));
  CHECK_CUDA(cudaMemset(result, 0, 4096));
  checkRowBoxes<<<1, 32, 4096>>>(rowMap, blockMap, kTokens, result);
  CHECK_CUDA(cudaDeviceSynchronize());
  std::vector<unsigned char> host(2048 + 130);
  CHECK_CUDA(
      cudaMemcpy(host.data(), result, host.size(), cudaMemcpyDeviceToHost));
  CHECK_CUDA(cudaFree(result));
  bool completed = host[2048 + 128];
  bool same =
      std::equal(host.begin(), host.begin() + 1024, host.begin() + 1024);
  bool zeros = std::all_of(host.begin() + 2048, host.begin() + 2048 + 128,
                           [](unsigned char v) { return v == 0; });
  bool pastCompleted = host[2048 + 129];
  std::printf("check: 8 one-row boxes %s one 8-row box (%s); a row past the "
              "end: bytes %s, %s\n",
              same ? "match" : "DIFFER from", completed ? "completed" : "HUNG",
              pastCompleted ? "completed" : "NEVER COMPLETED",
              zeros ? "zero-filled" : "NOT ZERO");
  return same && completed && zeros && pastCompleted;
}

} // namespace

int main() {
  CHECK_CUDA(cudaFree(nullptr));
  cudaDeviceProp properties;
  CHECK_CUDA(cudaGetDeviceProperties(&properties, 0));
  std::printf("device: %s, %d SMs; x %d x %d bf16, %d slots (random tokens), "
              "%d column tiles per slot block\n",
              properties.name, properties.multiProcessorCount, kTokens, kK,
              kSlots, kColumnTiles);
  void *x;
  CHECK_CUDA(cudaMalloc(&x, size_t(kTokens) * kK * 2));
  std::vector<uint16_t> hostX(size_t(kTokens) * kK);
  std::mt19937 generator(0);
  for (uint16_t &value : hostX)
    value = uint16_t(generator());
  CHECK_CUDA(
      cudaMemcpy(x, hostX.data(), hostX.size() * 2, cudaMemcpyHostToDevice));
  bool checked = runRowBoxCheck(x);
  std::vector<int> slotTokens(kSlots);
  std::iota(slotTokens.begin(), slotTokens.end(), 0);
  for (int &token : slotTokens)
    token %= kTokens;
  std::shuffle(slotTokens.begin(), slotTokens.end(), generator);
  int *deviceSlots;
  CHECK_CUDA(cudaMalloc(&deviceSlots, kSlots * sizeof(int)));
  CHECK_CUDA(cudaMemcpy(deviceSlots, slotTokens.data(), kSlots * sizeof(int),
                        cudaMemcpyHostToDevice));
  float *sink;
  CHECK_CUDA(cudaMalloc(&sink, 1 << 20));
  CUtensorMap map = makeMap(x, kTokens, kK, 1);
  const char *names[] = {"cp.async + noinc, 128 threads", "tma rows, 1 warp",
                         "tma rows, 4 warps"};
  for (int rows : {128, 256})
    for (int stages : {4, 6})
      for (Feed feed : {Feed::CpAsync, Feed::TmaOneWarp, Feed::TmaFourWarps}) {
        if (stages * rows * 128 > 200 * 1024)
          continue;
        RingShape shape{rows, stages, feed};
        int shared = stages * rows * 128 + 1024;
        CHECK_CUDA(cudaFuncSetAttribute(
            feedRing, cudaFuncAttributeMaxDynamicSharedMemorySize, shared));
        float us = medianMicroseconds(
            [&](int, cudaStream_t stream) {
              feedRing<<<properties.multiProcessorCount,
                         kConsumers + kProducers, shared, stream>>>(
                  map, static_cast<const uint16_t *>(x), deviceSlots, shape,
                  sink);
            },
            /*launches=*/10, /*replays=*/9);
        double bytes = double(kSlots) * kColumnTiles * kK * 2;
        std::printf("%-32s %3d rows, %d stages: %8.1f us %5.2f TB/s\n",
                    names[int(feed)], rows, stages, us,
                    bytes / (us * 1e-6) / 1e12);
      }
  return checked ? 0 : 1;
}
