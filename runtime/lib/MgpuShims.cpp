//===- MgpuShims.cpp - the mgpu* entry points of upstream GPU lowering ----===//
//
// Host code that upstream MLIR lowers from gpu.launch_func (gpu-to-llvm,
// gpu-module-to-binary) calls a fixed set of `mgpu*` functions. Debian's
// MLIR ships no runtime that provides them, so these forward to the moe
// runtime. They cannot return errors to their callers: failures are printed
// once and leave null handles, which later calls ignore. The moe lowering
// calls the status-returning moe_rt_* API instead.
//
//===----------------------------------------------------------------------===//

#include "moe/Runtime/Runtime.h"

#include <cstdio>

namespace {
void report(const char *what) {
  std::fprintf(stderr, "moe runtime: %s: %s\n", what, moe_rt_last_error());
}
} // namespace

extern "C" void *mgpuModuleLoad(void *data, size_t size) {
  if (moe_rt_init(0) != MOE_RT_SUCCESS) {
    report("no GPU");
    return nullptr;
  }
  moe_rt_module_t module = nullptr;
  if (moe_rt_module_load(data, size, &module) != MOE_RT_SUCCESS) {
    report("cannot load the kernels");
    return nullptr;
  }
  return module;
}

extern "C" void mgpuModuleUnload(void *module) {
  if (module)
    moe_rt_module_unload(static_cast<moe_rt_module_t>(module));
}

extern "C" void *mgpuModuleGetFunction(void *module, const char *name) {
  CUfunction function = nullptr;
  if (module && moe_rt_get_function(static_cast<moe_rt_module_t>(module), name,
                                    &function) != MOE_RT_SUCCESS)
    report("missing kernel");
  return function;
}

extern "C" void *mgpuStreamCreate() {
  CUstream stream = nullptr;
  if (cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING) != CUDA_SUCCESS)
    return nullptr;
  return stream;
}

extern "C" void mgpuStreamDestroy(void *stream) {
  if (stream)
    cuStreamDestroy(static_cast<CUstream>(stream));
}

extern "C" void mgpuStreamSynchronize(void *stream) {
  if (stream)
    cuStreamSynchronize(static_cast<CUstream>(stream));
}

extern "C" void mgpuLaunchKernel(void *function, intptr_t gridX, intptr_t gridY,
                                 intptr_t gridZ, intptr_t blockX,
                                 intptr_t blockY, intptr_t blockZ,
                                 int32_t dynamicSharedBytes, void *stream,
                                 void **params, void ** /*extra*/,
                                 size_t /*paramsCount*/) {
  if (!function)
    return;
  uint32_t grid[3] = {uint32_t(gridX), uint32_t(gridY), uint32_t(gridZ)};
  uint32_t block[3] = {uint32_t(blockX), uint32_t(blockY), uint32_t(blockZ)};
  if (moe_rt_launch(static_cast<CUfunction>(function), grid, block,
                    uint32_t(dynamicSharedBytes), static_cast<CUstream>(stream),
                    params) != MOE_RT_SUCCESS)
    report("kernel launch failed");
}
