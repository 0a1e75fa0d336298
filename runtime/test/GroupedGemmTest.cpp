//===- GroupedGemmTest.cpp - the prototype grouped GEMM on a GPU ----------===//
//
//   moe-grouped-gemm-test KERNELS.ptx [KERNEL [silu]]
//
// Runs kernel KERNEL (default `grouped_gemm`, from gen_grouped_gemm.py 512
// 256 2; or `expert_matmul`, which moe-emit-gpu-kernels generates from a
// moe.expert_matmul of the same shape — the same arguments) with K = 512,
// N = 256, k = 2 on 100 tokens routed over 8 experts (some assignments -1,
// another device's): builds the aligned schedule on the host as moe.align
// defines it, poisons the output with NaN, launches a grid sized for the upper
// bound and checks every scheduled slot against a float64 product; padding
// slots must stay untouched. Prints "N passed, M failed".
//
//===----------------------------------------------------------------------===//

#include "TestUtils.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

using namespace moe_test;

int main(int argc, char **argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s KERNELS.ptx [KERNEL]\n", argv[0]);
    return 2;
  }
  constexpr int E = 8, N = 256, K = 512, TopK = 2, M = 100, BM = 64;
  const bool gated = argc > 3 && std::strcmp(argv[3], "silu") == 0;
  const int width = gated ? N / 2 : N;
  if (!ok(moe_rt_init(0), "init"))
    return 1;
  std::vector<char> image = readImage(argv[1]);
  moe_rt_module_t module;
  CUfunction kernel;
  if (!ok(moe_rt_module_load(image.data(), image.size(), &module), "load") ||
      !ok(moe_rt_get_function(module, argc > 2 ? argv[2] : "grouped_gemm",
                              &kernel),
          "get"))
    return 1;

  std::mt19937 rng(11);
  std::normal_distribution<float> normal;
  std::vector<uint16_t> x(M * K), weights(size_t(E) * N * K);
  for (auto &value : x)
    value = toBF16(normal(rng));
  for (auto &value : weights)
    value = toBF16(normal(rng) * 0.05f);
  // Routing: mostly experts 0..7, a few -1; expert 6 gets none.
  std::vector<int32_t> ids(M * TopK);
  std::uniform_int_distribution<int> pick(-1, E - 1);
  for (auto &id : ids) {
    do
      id = pick(rng);
    while (id == 6);
  }

  // moe.align: counts, padded starts, stable scatter, block experts.
  const int assignments = M * TopK;
  const int slots = assignments + E * (BM - 1);
  const int maxBlocks = (slots + BM - 1) / BM;
  std::vector<int32_t> sorted(slots, assignments), blocks(maxBlocks, -1);
  int start = 0;
  for (int e = 0; e < E; ++e) {
    int count = 0;
    for (int a = 0; a < assignments; ++a)
      if (ids[a] == e)
        sorted[start + count++] = a;
    int padded = (count + BM - 1) / BM * BM;
    for (int b = start / BM; b < (start + padded) / BM; ++b)
      blocks[b] = e;
    start += padded;
  }
  int32_t numPadded = start;

  CUdeviceptr xDev, wDev, sortedDev, blocksDev, paddedDev, outDev, mapDev;
  cuMemAlloc(&xDev, x.size() * 2);
  cuMemAlloc(&wDev, weights.size() * 2);
  cuMemAlloc(&sortedDev, sorted.size() * 4);
  cuMemAlloc(&blocksDev, blocks.size() * 4);
  cuMemAlloc(&paddedDev, 4);
  cuMemAlloc(&outDev, size_t(slots) * width * 2);
  cuMemAlloc(&mapDev, sizeof(CUtensorMap));
  cuMemcpyHtoD(xDev, x.data(), x.size() * 2);
  cuMemcpyHtoD(wDev, weights.data(), weights.size() * 2);
  cuMemcpyHtoD(sortedDev, sorted.data(), sorted.size() * 4);
  cuMemcpyHtoD(blocksDev, blocks.data(), blocks.size() * 4);
  cuMemcpyHtoD(paddedDev, &numPadded, 4);
  cuMemsetD16(outDev, 0x7fc0, size_t(slots) * width); // bf16 NaN

  // The weights as one [E·N, K] matrix; a box is one 128-row, 64-column
  // tile, or with the epilogue a 64-row half (gate rows, then up rows).
  CUtensorMap map;
  if (!ok(moe_rt_encode_tma_2d(&map, reinterpret_cast<void *>(wDev),
                               uint64_t(E) * N, K, 2, gated ? 64 : 128, 64),
          "encode W"))
    return 1;
  cuMemcpyHtoD(mapDev, &map, sizeof(map));

  int64_t zero = 0, one = 1, tokens = M, kDim = K, nDim = width,
          slotCount = slots, blockCount = maxBlocks, single = 1;
  void *params[] = {&xDev,       &xDev,      &zero,      &tokens,    &kDim,
                    &kDim,       &one,       &sortedDev, &sortedDev, &zero,
                    &slotCount,  &one,       &blocksDev, &blocksDev, &zero,
                    &blockCount, &one,       &paddedDev, &paddedDev, &zero,
                    &single,     &one,       &mapDev,    &outDev,    &outDev,
                    &zero,       &slotCount, &nDim,      &nDim,      &one};
  uint32_t grid[3] = {uint32_t(maxBlocks),
                      uint32_t(gated ? width / 64 : N / 128), 1};
  uint32_t block[3] = {128, 1, 1};
  // The generated kernel keeps its ring in dynamic shared memory (its
  // moe.launch attribute says how much; at most 5 x 24 KiB + 1 KiB here).
  const bool generated = argc > 2 && std::strcmp(argv[2], "expert_matmul") == 0;
  uint32_t sharedBytes = generated ? 5 * 24576 + 1024 : 0;
  if (!ok(moe_rt_launch(kernel, grid, block, sharedBytes, nullptr, params),
          "launch"))
    return 1;
  CUresult sync = cuCtxSynchronize();
  if (sync != CUDA_SUCCESS) {
    const char *name = nullptr;
    cuGetErrorName(sync, &name);
    std::printf("FAIL: the kernel failed: %s\n0 passed, 1 failed\n",
                name ? name : "?");
    return 1;
  }
  std::vector<uint16_t> out(size_t(slots) * width);
  cuMemcpyDtoH(out.data(), outDev, out.size() * 2);

  int passed = 0, failed = 0;
  double errorSquared = 0, normSquared = 0;
  int realRows = 0, badPadding = 0;
  for (int s = 0; s < slots; ++s) {
    int a = sorted[s];
    bool real = s < numPadded && a < assignments;
    int expert = s < numPadded ? blocks[s / BM] : -1;
    for (int n = 0; n < width; ++n) {
      float got = fromBF16(out[size_t(s) * width + n]);
      if (!real) {
        // The generated kernel writes a padding slot of a scheduled block,
        // with zeros (its A row is zero-filled); the prototype leaves it.
        // Nothing is written past the padded count.
        bool writesZero = generated && s < numPadded;
        badPadding += writesZero ? got != 0.0f : !std::isnan(got);
        continue;
      }
      auto dot = [&](int column) {
        double sum = 0;
        for (int k = 0; k < K; ++k)
          sum += double(fromBF16(x[(a / TopK) * K + k])) *
                 fromBF16(weights[(size_t(expert) * N + column) * K + k]);
        return sum;
      };
      double expected = dot(n);
      if (gated) {
        double gate = expected;
        expected = gate / (1.0 + std::exp(-gate)) * dot(n + N / 2);
      }
      errorSquared += (got - expected) * (got - expected);
      normSquared += expected * expected;
    }
    realRows += real;
  }
  double relative = std::sqrt(errorSquared / normSquared);
  bool good = relative < 1e-2; // bf16 output
  std::printf("%s: grouped GEMM%s, %d scheduled rows of %d slots, relative "
              "L2 error %.3e (bf16 output)\n",
              good ? "ok" : "FAIL", gated ? " with silu_and_mul" : "", realRows,
              slots, relative);
  (good ? passed : failed)++;
  std::printf("%s: padding slots %s, slots past the padded count "
              "untouched (%d wrong)\n",
              badPadding ? "FAIL" : "ok", generated ? "zero" : "untouched",
              badPadding);
  (badPadding ? failed : passed)++;
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
