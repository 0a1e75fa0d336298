//===- RuntimeTest.cpp - the moe runtime on a real GPU --------------------===//
//
//   moe-runtime-test KERNELS.ptx [LAYER.so]
//
// KERNELS.ptx holds the kernel `scale` (buf[i] *= 2 for 256 floats) that
// moe-opt compiles from test data; LAYER.so, if given, exports
// `_mlir_ciface_run(memref<256xf32>)`, host code lowered by upstream MLIR that
// launches the same kernel through the mgpu* shims. Prints one line per check
// and a final "N passed, M failed"; exits non-zero on any failure, or at once
// when there is no GPU.
//
//===----------------------------------------------------------------------===//

#include "moe/Runtime/Runtime.h"

#include <dlfcn.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

namespace {
int passed = 0, failed = 0;

void check(bool ok, const char *what) {
  std::printf("%s: %s\n", ok ? "ok" : "FAIL", what);
  if (!ok)
    std::printf("  last error: %s\n", moe_rt_last_error());
  (ok ? passed : failed)++;
}

std::vector<char> readFile(const char *path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)),
                          std::istreambuf_iterator<char>());
  bytes.push_back('\0'); // PTX images are NUL-terminated text
  return bytes;
}

constexpr int kCount = 256;

/// Fills a managed buffer with i, runs `launch`, and checks 2 * i.
template <typename Launch> bool doublesBuffer(Launch launch) {
  CUdeviceptr buffer;
  if (cuMemAllocManaged(&buffer, kCount * sizeof(float),
                        CU_MEM_ATTACH_GLOBAL) != CUDA_SUCCESS)
    return false;
  float *values = reinterpret_cast<float *>(buffer);
  for (int i = 0; i < kCount; ++i)
    values[i] = float(i);
  bool ok = launch(buffer) && cuCtxSynchronize() == CUDA_SUCCESS;
  for (int i = 0; ok && i < kCount; ++i)
    ok = values[i] == 2.0f * float(i);
  cuMemFree(buffer);
  return ok;
}
/// A launcher over `image` reports the device's SM count, refuses a null
/// pointer and keeps its first failure; another refuses a misaligned
/// tensor.
void checkLauncher(const std::vector<char> &image, CUstream stream) {
  // The SM count a persistent kernel's grid is sized by; a launcher that
  // has failed reports 1 (the launch it sizes is then skipped).
  const char *names[] = {"scale"};
  moe_rt_program program{image.data(), image.size(), names, 1};
  moe_rt_launcher launcher = moe_rt_launcher_begin(&program, stream);
  CUdevice device;
  int expected = 0;
  if (cuCtxGetDevice(&device) == CUDA_SUCCESS)
    cuDeviceGetAttribute(&expected, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
                         device);
  check(expected > 0 &&
            moe_rt_launcher_multiprocessor_count(&launcher) == expected,
        "the launcher reports the device's SM count");
  moe_rt_launcher_require_pointer(&launcher, nullptr, "a null pointer");
  check(moe_rt_launcher_multiprocessor_count(&launcher) == 1 &&
            moe_rt_launcher_end(&launcher) == MOE_RT_ERROR_INVALID_ARGUMENT,
        "a failed launcher reports 1 SM and keeps its first failure");

  // Tensors must be 16-byte aligned: a pointer 8 bytes past an
  // allocation's start fails the call before anything is launched.
  moe_rt_launcher tensors = moe_rt_launcher_begin(&program, stream);
  CUdeviceptr rows;
  check(cuMemAlloc(&rows, 64) == CUDA_SUCCESS, "a tensor allocates");
  moe_rt_launcher_require_tensor(&tensors, reinterpret_cast<void *>(rows),
                                 "an aligned tensor");
  check(tensors.status == MOE_RT_SUCCESS, "an aligned tensor passes");
  moe_rt_launcher_require_tensor(&tensors, reinterpret_cast<void *>(rows + 8),
                                 "a misaligned tensor");
  check(moe_rt_launcher_end(&tensors) == MOE_RT_ERROR_INVALID_ARGUMENT,
        "a tensor 8 bytes off 16-byte alignment fails the call");
  cuMemFree(rows);
}
} // namespace

int main(int argc, char **argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s KERNELS.ptx [LAYER.so]\n", argv[0]);
    return 2;
  }
  if (moe_rt_init(0) != MOE_RT_SUCCESS) {
    std::fprintf(stderr, "moe-runtime-test: no GPU: %s\n", moe_rt_last_error());
    return 1;
  }

  moe_rt_module_t bogus = nullptr;
  const char junk[] = "not a module";
  check(moe_rt_module_load(junk, sizeof(junk), &bogus) ==
            MOE_RT_ERROR_INVALID_IMAGE,
        "a junk image is refused with MOE_RT_ERROR_INVALID_IMAGE");
  check(moe_rt_module_load(nullptr, 0, &bogus) == MOE_RT_ERROR_INVALID_ARGUMENT,
        "a null image is refused");

  std::vector<char> image = readFile(argv[1]);
  moe_rt_module_t module = nullptr;
  check(image.size() > 1 && moe_rt_module_load(image.data(), image.size(),
                                               &module) == MOE_RT_SUCCESS,
        "the PTX module loads");
  CUfunction scale = nullptr, missing = nullptr;
  check(module &&
            moe_rt_get_function(module, "scale", &scale) == MOE_RT_SUCCESS,
        "kernel 'scale' is found");
  check(module && moe_rt_get_function(module, "nope", &missing) ==
                      MOE_RT_ERROR_NOT_FOUND,
        "a missing kernel is MOE_RT_ERROR_NOT_FOUND");

  CUstream stream;
  cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING);
  uint32_t grid[3] = {1, 1, 1}, block[3] = {kCount, 1, 1};
  check(scale && doublesBuffer([&](CUdeviceptr buffer) {
          void *params[] = {&buffer, &buffer, nullptr, nullptr, nullptr};
          // memref<256xf32> as (allocated, aligned, offset, size, stride).
          int64_t offset = 0, size = kCount, stride = 1;
          params[2] = &offset;
          params[3] = &size;
          params[4] = &stride;
          return moe_rt_launch(scale, grid, block, 0, stream, params) ==
                 MOE_RT_SUCCESS;
        }),
        "a launch doubles the buffer");
  check(scale && doublesBuffer([&](CUdeviceptr buffer) {
          int64_t offset = 0, size = kCount, stride = 1;
          void *params[] = {&buffer, &buffer, &offset, &size, &stride};
          return moe_rt_launch(scale, grid, block, 96 * 1024, stream, params) ==
                 MOE_RT_SUCCESS;
        }),
        "96 KiB of dynamic shared memory raises the limit and launches");
  check(scale && doublesBuffer([&](CUdeviceptr buffer) {
          int64_t offset = 0, size = kCount, stride = 1;
          void *params[] = {&buffer, &buffer, &offset, &size, &stride};
          // After a kernel on the same stream: a programmatic dependent of
          // it ('scale' does not wait, but it is the only kernel here).
          return moe_rt_launch_dependent(scale, grid, block, 0, stream,
                                         params) == MOE_RT_SUCCESS;
        }),
        "a dependent launch (programmatic stream serialization) doubles the "
        "buffer");
  {
    CUdeviceptr buffer = 0;
    int64_t offset = 0, size = kCount, stride = 1;
    void *params[] = {&buffer, &buffer, &offset, &size, &stride};
    check(scale && moe_rt_launch(scale, grid, block, 400 * 1024, stream,
                                 params) == MOE_RT_ERROR_LAUNCH,
          "400 KiB of shared memory is refused with MOE_RT_ERROR_LAUNCH");
    uint32_t empty[3] = {0, 1, 1};
    check(scale && moe_rt_launch(scale, empty, block, 0, stream, params) ==
                       MOE_RT_SUCCESS,
          "an empty grid launches nothing and succeeds");
  }

  checkLauncher(image, stream);

  CUdeviceptr tensor;
  cuMemAlloc(&tensor, 256 * 512 * 2);
  CUtensorMap descriptor;
  check(moe_rt_encode_tma_2d(&descriptor, reinterpret_cast<void *>(tensor), 256,
                             512, 2, 64, 64) == MOE_RT_SUCCESS,
        "a bf16 [256, 512] tensor with a 64x64 box encodes (128B swizzle)");
  check(moe_rt_encode_tma_2d(&descriptor, reinterpret_cast<void *>(tensor), 256,
                             512, 2, 64, 32) == MOE_RT_ERROR_INVALID_ARGUMENT,
        "a box 64 bytes wide is refused for the 128B swizzle");
  cuMemFree(tensor);

  if (argc > 2) {
    void *layer = dlopen(argv[2], RTLD_NOW);
    check(layer != nullptr, "the lowered host code loads");
    using RunFn = void (*)(void *);
    auto run = layer ? reinterpret_cast<RunFn>(dlsym(layer, "_mlir_ciface_run"))
                     : nullptr;
    check(run && doublesBuffer([&](CUdeviceptr buffer) {
            struct {
              void *allocated, *aligned;
              int64_t offset, size, stride;
            } memref = {reinterpret_cast<void *>(buffer),
                        reinterpret_cast<void *>(buffer), 0, kCount, 1};
            run(&memref);
            return true;
          }),
          "host code lowered by MLIR launches through the mgpu* shims");
  }

  cuStreamDestroy(stream);
  if (module)
    moe_rt_module_unload(module);
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
