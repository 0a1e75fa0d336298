//===- WgmmaTest.cpp - one TMA + wgmma tile through the moe runtime -------===//
//
//   moe-wgmma-test TMA_WGMMA.ptx [mn-major|k-major|gather]
//
// Runs kernel `tile_gemm`: C[64, 128] (f32) = A[64, 64] · B (bf16), with both
// operands loaded by TMA from descriptors that moe_rt_encode_tma_2d builds,
// and checks C against a float64 product on the host. B is [K=64, N=128]
// row-major for mn-major (runtime/test/tma_wgmma.mlir), or W[N=128, K=64]
// row-major, C = A · Wᵀ, for k-major (gen_wgmma_kmajor.py): the layout of
// expert weights. gather: A rows are X[100, 64][index[i]] (index -1 = a
// zero padding row), copied by the kernel with cp.async into swizzled shared
// memory (gen_wgmma_kmajor.py --gather), B K-major. Prints "N passed,
// M failed".
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
    std::fprintf(stderr, "usage: %s TMA_WGMMA.ptx [mn-major|k-major]\n",
                 argv[0]);
    return 2;
  }
  bool gather = argc > 2 && std::strcmp(argv[2], "gather") == 0;
  bool kMajor = gather || (argc > 2 && std::strcmp(argv[2], "k-major") == 0);
  if (!ok(moe_rt_init(0), "init"))
    return 1;
  std::vector<char> image = readImage(argv[1]);
  moe_rt_module_t module;
  CUfunction kernel;
  if (!ok(moe_rt_module_load(image.data(), image.size(), &module), "load") ||
      !ok(moe_rt_get_function(module, "tile_gemm", &kernel), "get"))
    return 1;

  constexpr int M = 64, N = 128, K = 64, kSourceRows = 100;
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  // Without gather, a holds A; with it, a holds X and A[i] = X[index[i]].
  std::vector<uint16_t> a((gather ? kSourceRows : M) * K), b(K * N);
  for (auto &value : a)
    value = toBF16(normal(rng));
  std::vector<int32_t> index(M);
  std::uniform_int_distribution<int32_t> pick(-1, kSourceRows - 1);
  for (auto &row : index)
    row = pick(rng);
  index[0] = -1;                  // at least one padding row
  index[M - 1] = kSourceRows - 1; // and the last source row
  for (auto &value : b)
    value = toBF16(normal(rng));

  CUdeviceptr aDev, bDev, cDev, aMap, bMap, indexDev;
  cuMemAlloc(&indexDev, M * sizeof(int32_t));
  cuMemcpyHtoD(indexDev, index.data(), M * sizeof(int32_t));
  cuMemAlloc(&aDev, a.size() * 2);
  cuMemAlloc(&bDev, b.size() * 2);
  cuMemAlloc(&cDev, M * N * 4);
  cuMemAlloc(&aMap, sizeof(CUtensorMap));
  cuMemAlloc(&bMap, sizeof(CUtensorMap));
  cuMemcpyHtoD(aDev, a.data(), a.size() * 2);
  cuMemcpyHtoD(bDev, b.data(), b.size() * 2);
  cuMemsetD32(cDev, 0x7fc00000, M * N); // NaN: unwritten output shows

  CUtensorMap aDescriptor, bDescriptor;
  if ((!gather &&
       !ok(moe_rt_encode_tma_2d(&aDescriptor, reinterpret_cast<void *>(aDev), M,
                                K, 2, 64, 64),
           "encode A")) ||
      !ok(kMajor ? moe_rt_encode_tma_2d(&bDescriptor,
                                        reinterpret_cast<void *>(bDev), N, K, 2,
                                        128, 64)
                 : moe_rt_encode_tma_2d(&bDescriptor,
                                        reinterpret_cast<void *>(bDev), K, N, 2,
                                        64, 64),
          "encode B"))
    return 1;
  cuMemcpyHtoD(aMap, &aDescriptor, sizeof(CUtensorMap));
  cuMemcpyHtoD(bMap, &bDescriptor, sizeof(CUtensorMap));

  // (a map, b map, C as memref<64x128xf32>: allocated, aligned, offset,
  // sizes, strides).
  int64_t offset = 0, rows = M, cols = N, rowStride = N, colStride = 1;
  void *params[] = {&aMap, &bMap, &cDev,      &cDev,     &offset,
                    &rows, &cols, &rowStride, &colStride};
  // With gather: (X as memref<100x64xbf16>, index as memref<64xi32>, b map,
  // C).
  int64_t xRows = kSourceRows, xCols = K, xRowStride = K, indexSize = M;
  void *gatherParams[] = {&aDev,     &aDev,       &offset,    &xRows,
                          &xCols,    &xRowStride, &colStride, &indexDev,
                          &indexDev, &offset,     &indexSize, &colStride,
                          &bMap,     &cDev,       &cDev,      &offset,
                          &rows,     &cols,       &rowStride, &colStride};
  uint32_t grid[3] = {1, 1, 1}, block[3] = {128, 1, 1};
  if (!ok(moe_rt_launch(kernel, grid, block, 0, nullptr,
                        gather ? gatherParams : params),
          "launch"))
    return 1;
  CUresult sync = cuCtxSynchronize();
  int passed = 0, failed = 0;
  if (sync != CUDA_SUCCESS) {
    const char *name = nullptr;
    cuGetErrorName(sync, &name);
    std::printf("FAIL: the kernel failed: %s\n", name ? name : "?");
    std::printf("0 passed, 1 failed\n");
    return 1;
  }
  std::vector<float> c(M * N);
  cuMemcpyDtoH(c.data(), cDev, c.size() * 4);
  double errorSquared = 0, normSquared = 0;
  int nonFinite = 0;
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      double expected = 0;
      int aRow = gather ? index[i] : i;
      for (int k = 0; aRow >= 0 && k < K; ++k)
        expected += double(fromBF16(a[aRow * K + k])) *
                    fromBF16(kMajor ? b[j * K + k] : b[k * N + j]);
      double got = c[i * N + j];
      if (!std::isfinite(got))
        ++nonFinite;
      errorSquared += (got - expected) * (got - expected);
      normSquared += expected * expected;
    }
  double relative = std::sqrt(errorSquared / normSquared);
  bool good = nonFinite == 0 && relative < 1e-5;
  std::printf("%s: TMA + wgmma tile (%s B), relative L2 error %.3e, %d "
              "non-finite\n",
              good ? "ok" : "FAIL",
              gather   ? "gathered A, K-major"
              : kMajor ? "K-major"
                       : "MN-major",
              relative, nonFinite);
  (good ? passed : failed)++;
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
