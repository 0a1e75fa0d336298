//===- LayerSmokeTest.cpp - run a compiled expert block once --------------===//
//
//   moe-layer-smoke LIB.so NAME E K H I M [routed]
//
// Loads the layer `moe_layer_NAME` built by scripts/gpu-layers.sh, runs it
// once on random bf16 inputs and checks that every output element was
// written (the output is poisoned with NaN first). An expert block takes
// (x, ids, weights, w13, w2) with a random routing (some ids -1, one expert
// empty); with `routed`, a whole layer takes (x, w_gate, w13, w2) and routes
// on the GPU. Meant for compute-sanitizer; the numbers are checked against
// the float64 reference by bench/gpu_moe_suite.py.
//
//===----------------------------------------------------------------------===//

#include "TestUtils.h"

#include <cmath>
#include <cstdlib>
#include <dlfcn.h>
#include <random>
#include <string>

using namespace moe_test;

using BlockFn = int (*)(const void *, const void *, const void *, const void *,
                        const void *, void *, int64_t, void *, size_t,
                        CUstream);
using RoutedFn = int (*)(const void *, const void *, const void *,
                         const void *, void *, int64_t, void *, size_t,
                         CUstream);
using BytesFn = size_t (*)(int64_t);

int main(int argc, char **argv) {
  if (argc != 8 && argc != 9) {
    std::fprintf(stderr, "usage: %s LIB.so NAME E K H I M [routed]\n",
                 argv[0]);
    return 2;
  }
  const int E = std::atoi(argv[3]), TopK = std::atoi(argv[4]),
            H = std::atoi(argv[5]), I = std::atoi(argv[6]),
            M = std::atoi(argv[7]);
  void *library = dlopen(argv[1], RTLD_NOW);
  if (!library) {
    std::printf("FAIL: %s\n", dlerror());
    return 1;
  }
  std::string entry = std::string("moe_layer_") + argv[2];
  const bool routed = argc == 9 && std::string(argv[8]) == "routed";
  void *layer = dlsym(library, entry.c_str());
  auto bytes = reinterpret_cast<BytesFn>(
      dlsym(library, (entry + "_workspace_bytes").c_str()));
  if (!layer || !bytes) {
    std::printf("FAIL: %s not found in %s\n", entry.c_str(), argv[1]);
    return 1;
  }
  if (!ok(moe_rt_init(0), "init"))
    return 1;

  std::mt19937 rng(5);
  std::normal_distribution<float> normal;
  std::vector<uint16_t> x(size_t(M) * H), w13(size_t(E) * 2 * I * H),
      w2(size_t(E) * H * I), gate(size_t(E) * H);
  for (auto &v : gate)
    v = toBF16(normal(rng) * 0.06f);
  for (auto &v : x)
    v = toBF16(normal(rng));
  for (auto &v : w13)
    v = toBF16(normal(rng) * 0.05f);
  for (auto &v : w2)
    v = toBF16(normal(rng) * 0.05f);
  std::vector<int32_t> ids(size_t(M) * TopK);
  std::vector<float> weights(ids.size());
  std::uniform_int_distribution<int> pick(-1, E - 1);
  for (size_t a = 0; a < ids.size(); ++a) {
    do
      ids[a] = pick(rng);
    while (ids[a] == 1); // expert 1 stays empty
    weights[a] = 1.0f / TopK;
  }

  CUdeviceptr xDev, idsDev, weightsDev, w13Dev, w2Dev, outDev, workspace,
      gateDev;
  size_t workspaceBytes = bytes(M);
  cuMemAlloc(&xDev, x.size() * 2);
  cuMemAlloc(&idsDev, ids.size() * 4);
  cuMemAlloc(&weightsDev, weights.size() * 4);
  cuMemAlloc(&w13Dev, w13.size() * 2);
  cuMemAlloc(&w2Dev, w2.size() * 2);
  cuMemAlloc(&outDev, size_t(M) * H * 2);
  cuMemAlloc(&workspace, workspaceBytes);
  cuMemAlloc(&gateDev, gate.size() * 2);
  cuMemcpyHtoD(gateDev, gate.data(), gate.size() * 2);
  cuMemcpyHtoD(xDev, x.data(), x.size() * 2);
  cuMemcpyHtoD(idsDev, ids.data(), ids.size() * 4);
  cuMemcpyHtoD(weightsDev, weights.data(), weights.size() * 4);
  cuMemcpyHtoD(w13Dev, w13.data(), w13.size() * 2);
  cuMemcpyHtoD(w2Dev, w2.data(), w2.size() * 2);
  cuMemsetD16(outDev, 0x7fc0, size_t(M) * H); // bf16 NaN
  cuMemsetD8(workspace, 0xff, workspaceBytes);
  auto pointer = [](CUdeviceptr p) { return reinterpret_cast<void *>(p); };
  int status =
      routed ? reinterpret_cast<RoutedFn>(layer)(
                   pointer(xDev), pointer(gateDev), pointer(w13Dev),
                   pointer(w2Dev), pointer(outDev), M, pointer(workspace),
                   workspaceBytes, nullptr)
             : reinterpret_cast<BlockFn>(layer)(
                   pointer(xDev), pointer(idsDev), pointer(weightsDev),
                   pointer(w13Dev), pointer(w2Dev), pointer(outDev), M,
                   pointer(workspace), workspaceBytes, nullptr);
  if (status != 0) {
    std::printf("FAIL: the layer returned %d: %s\n", status,
                moe_rt_last_error());
    return 1;
  }
  CUresult sync = cuCtxSynchronize();
  if (sync != CUDA_SUCCESS) {
    const char *name = nullptr;
    cuGetErrorName(sync, &name);
    std::printf("FAIL: the layer failed on the device: %s\n",
                name ? name : "?");
    return 1;
  }
  std::vector<uint16_t> out(size_t(M) * H);
  cuMemcpyDtoH(out.data(), outDev, out.size() * 2);
  size_t unwritten = 0;
  for (uint16_t v : out)
    unwritten += std::isnan(fromBF16(v));
  std::printf("%s: %s, M=%d: %zu of %zu outputs not written\n",
              unwritten ? "FAIL" : "ok", argv[2], M, unwritten, out.size());
  return unwritten ? 1 : 0;
}
