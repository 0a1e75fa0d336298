//===- Runtime.cpp - moe runtime over the CUDA driver API -----------------===//

#include "moe/Runtime/Runtime.h"

#include "LauncherState.h"

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace {
thread_local std::string lastError;

/// Records `what` and the driver's description of `result`.
moe_rt_status fail(moe_rt_status status, const char *what,
                   CUresult result = CUDA_SUCCESS) {
  lastError = what;
  if (result != CUDA_SUCCESS) {
    const char *name = nullptr, *text = nullptr;
    cuGetErrorName(result, &name);
    cuGetErrorString(result, &text);
    lastError += ": ";
    lastError += name ? name : "unknown CUDA error";
    if (text) {
      lastError += " (";
      lastError += text;
      lastError += ")";
    }
  }
  return status;
}

/// Refuses a waiting copy on a stream that is being captured into a graph.
moe_rt_status refuseDuringCapture(CUstream stream, const char *what) {
  CUstreamCaptureStatus capture = CU_STREAM_CAPTURE_STATUS_NONE;
  CUresult result = cuStreamIsCapturing(stream, &capture);
  if (result != CUDA_SUCCESS)
    return fail(MOE_RT_ERROR_CUDA, "cuStreamIsCapturing failed", result);
  if (capture != CU_STREAM_CAPTURE_STATUS_NONE) {
    lastError = std::string(what) +
                ": the stream is being captured into a graph, and this call "
                "waits for the device";
    return MOE_RT_ERROR_INVALID_ARGUMENT;
  }
  return MOE_RT_SUCCESS;
}

/// The first 48 KiB of dynamic shared memory need no opt-in.
constexpr uint32_t kDefaultSharedLimit = 48 * 1024;
} // namespace

struct moe_rt_module {
  CUmodule handle;
};

extern "C" moe_rt_status moe_rt_init(int device) {
  CUresult result = cuInit(0);
  if (result != CUDA_SUCCESS)
    return fail(MOE_RT_ERROR_NO_DEVICE, "cuInit failed", result);
  CUcontext current = nullptr;
  if (cuCtxGetCurrent(&current) == CUDA_SUCCESS && current)
    return MOE_RT_SUCCESS;
  int count = 0;
  result = cuDeviceGetCount(&count);
  if (result != CUDA_SUCCESS || device < 0 || device >= count)
    return fail(MOE_RT_ERROR_NO_DEVICE, "no such CUDA device", result);
  CUdevice handle;
  CUcontext context;
  if ((result = cuDeviceGet(&handle, device)) != CUDA_SUCCESS ||
      (result = cuDevicePrimaryCtxRetain(&context, handle)) != CUDA_SUCCESS ||
      (result = cuCtxSetCurrent(context)) != CUDA_SUCCESS)
    return fail(MOE_RT_ERROR_CUDA, "cannot make the primary context current",
                result);
  return MOE_RT_SUCCESS;
}

extern "C" moe_rt_status moe_rt_current_context(CUcontext *context) {
  if (!context)
    return fail(MOE_RT_ERROR_INVALID_ARGUMENT,
                "moe_rt_current_context: null");
  // The common case, once per layer call: a context is already current.
  if (cuCtxGetCurrent(context) == CUDA_SUCCESS && *context)
    return MOE_RT_SUCCESS;
  if (moe_rt_status status = moe_rt_init(0))
    return status;
  CUresult result = cuCtxGetCurrent(context);
  if (result != CUDA_SUCCESS || !*context)
    return fail(MOE_RT_ERROR_CUDA, "no current CUDA context", result);
  return MOE_RT_SUCCESS;
}

extern "C" moe_rt_status moe_rt_module_load(const void *image, size_t size,
                                            moe_rt_module_t *module) {
  if (!image || size == 0 || !module)
    return fail(MOE_RT_ERROR_INVALID_ARGUMENT, "moe_rt_module_load: no image");
  CUmodule handle;
  CUresult result = cuModuleLoadData(&handle, image);
  if (result != CUDA_SUCCESS)
    return fail(MOE_RT_ERROR_INVALID_IMAGE, "cannot load the module image",
                result);
  *module = new moe_rt_module{handle};
  return MOE_RT_SUCCESS;
}

extern "C" moe_rt_status moe_rt_module_unload(moe_rt_module_t module) {
  if (!module)
    return fail(MOE_RT_ERROR_INVALID_ARGUMENT, "moe_rt_module_unload: null");
  CUresult result = cuModuleUnload(module->handle);
  delete module;
  if (result != CUDA_SUCCESS)
    return fail(MOE_RT_ERROR_CUDA, "cannot unload the module", result);
  return MOE_RT_SUCCESS;
}

extern "C" moe_rt_status moe_rt_get_function(moe_rt_module_t module,
                                             const char *name,
                                             CUfunction *function) {
  if (!module || !name || !function)
    return fail(MOE_RT_ERROR_INVALID_ARGUMENT, "moe_rt_get_function: null");
  CUresult result = cuModuleGetFunction(function, module->handle, name);
  if (result != CUDA_SUCCESS)
    return fail(MOE_RT_ERROR_NOT_FOUND,
                ("no kernel '" + std::string(name) + "' in the module").c_str(),
                result);
  return MOE_RT_SUCCESS;
}

/// cuLaunchKernel, or with `dependent` cuLaunchKernelEx with programmatic
/// stream serialization (the kernel may start once the previous kernel on
/// the stream has triggered its dependents; it must wait for it with
/// griddepcontrol.wait before touching its memory).
static moe_rt_status launch(CUfunction function, const uint32_t grid[3],
                            const uint32_t block[3],
                            uint32_t dynamicSharedBytes, CUstream stream,
                            void **kernelParams, bool dependent) {
  if (!function || !grid || !block)
    return fail(MOE_RT_ERROR_INVALID_ARGUMENT, "moe_rt_launch: null");
  // A grid sized for the upper bound may have nothing to do for a given M.
  if (grid[0] == 0 || grid[1] == 0 || grid[2] == 0)
    return MOE_RT_SUCCESS;
  CUresult result;
  if (dynamicSharedBytes > kDefaultSharedLimit) {
    result = cuFuncSetAttribute(function,
                                CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                                static_cast<int>(dynamicSharedBytes));
    if (result != CUDA_SUCCESS)
      return fail(MOE_RT_ERROR_LAUNCH,
                  "cannot raise the dynamic shared-memory limit", result);
  }
  if (!dependent) {
    result = cuLaunchKernel(function, grid[0], grid[1], grid[2], block[0],
                            block[1], block[2], dynamicSharedBytes, stream,
                            kernelParams, nullptr);
    if (result != CUDA_SUCCESS)
      return fail(MOE_RT_ERROR_LAUNCH, "cuLaunchKernel failed", result);
    return MOE_RT_SUCCESS;
  }
  CUlaunchAttribute attribute = {};
  attribute.id = CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION;
  attribute.value.programmaticStreamSerializationAllowed = 1;
  CUlaunchConfig config = {};
  config.gridDimX = grid[0];
  config.gridDimY = grid[1];
  config.gridDimZ = grid[2];
  config.blockDimX = block[0];
  config.blockDimY = block[1];
  config.blockDimZ = block[2];
  config.sharedMemBytes = dynamicSharedBytes;
  config.hStream = stream;
  config.attrs = &attribute;
  config.numAttrs = 1;
  result = cuLaunchKernelEx(&config, function, kernelParams, nullptr);
  if (result != CUDA_SUCCESS)
    return fail(MOE_RT_ERROR_LAUNCH, "cuLaunchKernelEx (dependent) failed",
                result);
  return MOE_RT_SUCCESS;
}

extern "C" moe_rt_status moe_rt_launch(CUfunction function,
                                       const uint32_t grid[3],
                                       const uint32_t block[3],
                                       uint32_t dynamicSharedBytes,
                                       CUstream stream, void **kernelParams) {
  return launch(function, grid, block, dynamicSharedBytes, stream,
                kernelParams, /*dependent=*/false);
}

extern "C" moe_rt_status
moe_rt_launch_dependent(CUfunction function, const uint32_t grid[3],
                        const uint32_t block[3], uint32_t dynamicSharedBytes,
                        CUstream stream, void **kernelParams) {
  return launch(function, grid, block, dynamicSharedBytes, stream,
                kernelParams, /*dependent=*/true);
}

extern "C" moe_rt_status moe_rt_download(void *host, const void *device,
                                         size_t bytes, CUstream stream) {
  if (!device || !host)
    return fail(MOE_RT_ERROR_INVALID_ARGUMENT,
                "moe_rt_download: null pointer");
  if (moe_rt_status status =
          refuseDuringCapture(stream, "moe_rt_download"))
    return status;
  CUresult result;
  if ((result = cuMemcpyDtoHAsync(host, reinterpret_cast<CUdeviceptr>(device),
                                  bytes, stream)) != CUDA_SUCCESS ||
      (result = cuStreamSynchronize(stream)) != CUDA_SUCCESS)
    return fail(MOE_RT_ERROR_CUDA, "cannot copy back from the device", result);
  return MOE_RT_SUCCESS;
}

extern "C" moe_rt_status moe_rt_fail(moe_rt_status status,
                                     const char *message) {
  return fail(status, message ? message : "unknown error");
}

extern "C" moe_rt_status moe_rt_memset_zero_async(void *pointer,
                                                   size_t bytes,
                                                   CUstream stream) {
  if (bytes == 0)
    return MOE_RT_SUCCESS;
  if (!pointer || bytes % 4 != 0)
    return fail(MOE_RT_ERROR_INVALID_ARGUMENT,
                "moe_rt_memset_zero_async: null pointer or size not a "
                "multiple of 4");
  CUresult result = cuMemsetD32Async(reinterpret_cast<CUdeviceptr>(pointer),
                                     0, bytes / 4, stream);
  if (result != CUDA_SUCCESS)
    return fail(MOE_RT_ERROR_CUDA, "cuMemsetD32Async failed", result);
  return MOE_RT_SUCCESS;
}

extern "C" moe_rt_status moe_rt_upload(void *device, const void *host,
                                       size_t bytes, CUstream stream) {
  if (!device || !host)
    return fail(MOE_RT_ERROR_INVALID_ARGUMENT, "moe_rt_upload: null pointer");
  if (moe_rt_status status = refuseDuringCapture(stream, "moe_rt_upload"))
    return status;
  CUresult result = cuMemcpyHtoD(reinterpret_cast<CUdeviceptr>(device), host, bytes);
  if (result != CUDA_SUCCESS)
    return fail(MOE_RT_ERROR_CUDA, "cuMemcpyHtoD failed", result);
  return MOE_RT_SUCCESS;
}

extern "C" moe_rt_status
moe_rt_encode_tma_2d(CUtensorMap *descriptor, void *base, uint64_t rows,
                     uint64_t cols, uint32_t elementBytes, uint32_t boxRows,
                     uint32_t boxCols) {
  CUtensorMapDataType dataType;
  switch (elementBytes) {
  case 1:
    dataType = CU_TENSOR_MAP_DATA_TYPE_UINT8;
    break;
  case 2:
    dataType = CU_TENSOR_MAP_DATA_TYPE_BFLOAT16;
    break;
  default:
    return fail(MOE_RT_ERROR_INVALID_ARGUMENT,
                "moe_rt_encode_tma_2d: element size must be 1 or 2 bytes");
  }
  if (!descriptor || !base || boxCols * elementBytes != 128 || boxRows == 0 ||
      boxRows > 256)
    return fail(MOE_RT_ERROR_INVALID_ARGUMENT,
                "moe_rt_encode_tma_2d: the box must be 128 bytes wide and "
                "1..256 rows");
  // Dimensions innermost first; the row stride is in bytes.
  cuuint64_t globalDim[2] = {cols, rows};
  cuuint64_t globalStrides[1] = {cols * elementBytes};
  cuuint32_t boxDim[2] = {boxCols, boxRows};
  cuuint32_t elementStrides[2] = {1, 1};
  CUresult result = cuTensorMapEncodeTiled(
      descriptor, dataType, 2, base, globalDim, globalStrides, boxDim,
      elementStrides, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
      CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (result != CUDA_SUCCESS)
    return fail(MOE_RT_ERROR_INVALID_ARGUMENT,
                "cuTensorMapEncodeTiled rejected the tensor", result);
  return MOE_RT_SUCCESS;
}

extern "C" const char *moe_rt_last_error(void) { return lastError.c_str(); }

//===----------------------------------------------------------------------===//
// Launching the kernels of a compiled layer
//===----------------------------------------------------------------------===//

namespace {
moe_rt_memref makeMemref(const void *data, int64_t elementBytes,
                         std::initializer_list<int64_t> sizes) {
  moe_rt_memref memref{};
  memref.data = const_cast<void *>(data);
  memref.rank = static_cast<int64_t>(sizes.size());
  memref.elementBytes = elementBytes;
  int64_t dim = 0;
  for (int64_t size : sizes)
    memref.sizes[dim++] = size;
  int64_t stride = 1;
  for (dim = memref.rank - 1; dim >= 0; --dim) {
    memref.strides[dim] = stride;
    stride *= memref.sizes[dim];
  }
  return memref;
}

/// The kernels of one program in one CUDA context. Entries are never freed,
/// so a pointer to their kernels stays valid for the process.
struct LoadedProgram {
  const moe_rt_program *program;
  CUcontext context;
  std::unique_ptr<CUfunction[]> kernels;
};
std::mutex loadedMutex;
std::vector<std::unique_ptr<LoadedProgram>> loadedPrograms;

moe_rt_status loadProgram(const moe_rt_program *program, CUcontext context,
                          const CUfunction *&kernels) {
  std::lock_guard<std::mutex> lock(loadedMutex);
  for (const std::unique_ptr<LoadedProgram> &entry : loadedPrograms)
    if (entry->program == program && entry->context == context) {
      kernels = entry->kernels.get();
      return MOE_RT_SUCCESS;
    }
  // The driver reads the cubin as an ELF image: give it an 8-byte aligned
  // copy when the embedded array is not.
  std::vector<uint64_t> aligned;
  const void *image = program->image;
  if (reinterpret_cast<uintptr_t>(image) % alignof(uint64_t) != 0) {
    aligned.resize((program->imageBytes + 7) / 8);
    std::memcpy(aligned.data(), image, program->imageBytes);
    image = aligned.data();
  }
  moe_rt_module_t module;
  if (moe_rt_status status =
          moe_rt_module_load(image, program->imageBytes, &module))
    return status;
  auto entry = std::make_unique<LoadedProgram>();
  entry->program = program;
  entry->context = context;
  entry->kernels = std::make_unique<CUfunction[]>(
      program->numKernels > 0 ? program->numKernels : 1);
  for (int32_t i = 0; i < program->numKernels; ++i)
    if (moe_rt_status status = moe_rt_get_function(
            module, program->kernelNames[i], &entry->kernels[i]))
      return status;
  kernels = entry->kernels.get();
  loadedPrograms.push_back(std::move(entry));
  return MOE_RT_SUCCESS;
}
} // namespace

using moe_rt::isLive;

extern "C" moe_rt_memref moe_rt_memref_1d(const void *data,
                                          int64_t elementBytes,
                                          int64_t size0) {
  return makeMemref(data, elementBytes, {size0});
}

extern "C" moe_rt_memref moe_rt_memref_2d(const void *data,
                                          int64_t elementBytes, int64_t size0,
                                          int64_t size1) {
  return makeMemref(data, elementBytes, {size0, size1});
}

extern "C" moe_rt_memref moe_rt_memref_3d(const void *data,
                                          int64_t elementBytes, int64_t size0,
                                          int64_t size1, int64_t size2) {
  return makeMemref(data, elementBytes, {size0, size1, size2});
}

extern "C" void *moe_rt_memref_at(moe_rt_memref memref, int64_t byteOffset) {
  return static_cast<char *>(memref.data) + byteOffset;
}

extern "C" int64_t moe_rt_memref_size(moe_rt_memref memref, int64_t dim) {
  return dim >= 0 && dim < memref.rank ? memref.sizes[dim] : 0;
}

extern "C" moe_rt_kernel_arg moe_rt_memref_arg(moe_rt_memref memref) {
  moe_rt_kernel_arg arg{};
  arg.memref = memref;
  return arg;
}

extern "C" moe_rt_kernel_arg
moe_rt_tensor_map_arg(const CUtensorMap *tensorMap) {
  moe_rt_kernel_arg arg{};
  arg.tensorMap = tensorMap;
  return arg;
}

extern "C" moe_rt_launcher moe_rt_launcher_begin(const moe_rt_program *program,
                                                 CUstream stream) {
  moe_rt_launcher launcher{};
  launcher.active = 1;
  launcher.stream = stream;
  if (!program || !program->image || program->numKernels < 0) {
    launcher.status = fail(MOE_RT_ERROR_INVALID_ARGUMENT,
                           "moe_rt_launcher_begin: no program");
    return launcher;
  }
  CUcontext context;
  if ((launcher.status = moe_rt_current_context(&context)))
    return launcher;
  launcher.status = loadProgram(program, context, launcher.kernels);
  launcher.numKernels = program->numKernels;
  return launcher;
}

extern "C" int64_t
moe_rt_launcher_multiprocessor_count(moe_rt_launcher *launcher) {
  if (!isLive(launcher))
    return 1;
  CUdevice device;
  int count = 0;
  CUresult result = cuCtxGetDevice(&device);
  if (result == CUDA_SUCCESS)
    result = cuDeviceGetAttribute(
        &count, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, device);
  if (result != CUDA_SUCCESS || count < 1) {
    launcher->status = fail(MOE_RT_ERROR_CUDA,
                            "moe_rt_launcher_multiprocessor_count: cannot "
                            "query the device's SM count",
                            result);
    return 1;
  }
  return count;
}

extern "C" void moe_rt_launcher_require_pointer(moe_rt_launcher *launcher,
                                                const void *pointer,
                                                const char *message) {
  if (isLive(launcher) && !pointer)
    launcher->status = fail(MOE_RT_ERROR_INVALID_ARGUMENT, message);
}

extern "C" void moe_rt_launcher_require_tensor(moe_rt_launcher *launcher,
                                               const void *pointer,
                                               const char *message) {
  constexpr uintptr_t kTensorAlignment = 16;
  if (isLive(launcher) &&
      (!pointer ||
       reinterpret_cast<uintptr_t>(pointer) % kTensorAlignment != 0))
    launcher->status = fail(MOE_RT_ERROR_INVALID_ARGUMENT, message);
}

extern "C" void moe_rt_launcher_require_workspace(moe_rt_launcher *launcher,
                                                  const void *workspace,
                                                  size_t workspaceBytes,
                                                  int64_t requiredBytes,
                                                  const char *message) {
  if (isLive(launcher) &&
      (!workspace || requiredBytes < 0 ||
       workspaceBytes < static_cast<size_t>(requiredBytes) ||
       reinterpret_cast<uintptr_t>(workspace) % 128 != 0))
    launcher->status = fail(MOE_RT_ERROR_INVALID_ARGUMENT, message);
}

/// The largest token count a layer takes: its sizes stay far from overflow.
constexpr int64_t kMaxTokens = int64_t(1) << 24;

extern "C" void moe_rt_launcher_require_tokens(moe_rt_launcher *launcher,
                                               int64_t numTokens,
                                               const char *message) {
  if (isLive(launcher) && (numTokens < 0 || numTokens > kMaxTokens))
    launcher->status = fail(MOE_RT_ERROR_INVALID_ARGUMENT, message);
}

extern "C" void moe_rt_launcher_finish_if_empty(moe_rt_launcher *launcher,
                                                int64_t numTokens) {
  if (launcher && numTokens == 0)
    launcher->active = 0;
}

extern "C" void moe_rt_launcher_encode_tma_2d(
    moe_rt_launcher *launcher, CUtensorMap *descriptor, const void *base,
    int64_t rows, int64_t cols, int64_t elementBytes, int64_t boxRows,
    int64_t boxCols) {
  if (!isLive(launcher))
    return;
  if (rows <= 0 || cols <= 0 || elementBytes <= 0 || boxRows <= 0 ||
      boxCols <= 0) {
    launcher->status = fail(MOE_RT_ERROR_INVALID_ARGUMENT,
                            "moe_rt_launcher_encode_tma_2d: bad dimensions");
    return;
  }
  launcher->status = moe_rt_encode_tma_2d(
      descriptor, const_cast<void *>(base), static_cast<uint64_t>(rows),
      static_cast<uint64_t>(cols), static_cast<uint32_t>(elementBytes),
      static_cast<uint32_t>(boxRows), static_cast<uint32_t>(boxCols));
}

extern "C" void moe_rt_launcher_zero(moe_rt_launcher *launcher,
                                     moe_rt_memref memref) {
  if (!isLive(launcher))
    return;
  int64_t bytes = memref.elementBytes;
  for (int64_t dim = 0; dim < memref.rank; ++dim)
    bytes *= memref.sizes[dim];
  launcher->status = moe_rt_memset_zero_async(
      memref.data, static_cast<size_t>(bytes), launcher->stream);
}

/// moe_rt_launcher_launch and moe_rt_launcher_launch_dependent.
static void launchKernel(moe_rt_launcher *launcher, int32_t kernel,
                         int64_t gridX, int64_t gridY, int64_t gridZ,
                         int64_t threads, int64_t sharedBytes,
                         const moe_rt_kernel_arg *args, int32_t numArgs,
                         bool dependent) {
  if (!isLive(launcher))
    return;
  const int64_t grid64[3] = {gridX, gridY, gridZ};
  uint32_t grid[3], block[3] = {static_cast<uint32_t>(threads), 1, 1};
  for (int i = 0; i < 3; ++i) {
    if (grid64[i] < 0 || grid64[i] > INT32_MAX) {
      launcher->status = fail(MOE_RT_ERROR_LAUNCH,
                              "moe_rt_launcher_launch: grid out of range");
      return;
    }
    grid[i] = static_cast<uint32_t>(grid64[i]);
  }
  if (kernel < 0 || kernel >= launcher->numKernels || threads <= 0 ||
      threads > 1024 || sharedBytes < 0 || numArgs < 0 ||
      (numArgs > 0 && !args)) {
    launcher->status = fail(MOE_RT_ERROR_INVALID_ARGUMENT,
                            "moe_rt_launcher_launch: bad launch");
    return;
  }
  // The kernel's parameters: the fields of each memref descriptor, or the
  // TMA descriptor; cuLaunchKernel copies them before it returns.
  std::vector<void *> params;
  for (int32_t i = 0; i < numArgs; ++i) {
    const moe_rt_kernel_arg &arg = args[i];
    if (arg.tensorMap) {
      params.push_back(const_cast<CUtensorMap *>(arg.tensorMap));
      continue;
    }
    const moe_rt_memref &memref = arg.memref;
    params.push_back(const_cast<void **>(&memref.data));
    params.push_back(const_cast<void **>(&memref.data));
    params.push_back(const_cast<int64_t *>(&memref.offset));
    for (int64_t dim = 0; dim < memref.rank; ++dim)
      params.push_back(const_cast<int64_t *>(&memref.sizes[dim]));
    for (int64_t dim = 0; dim < memref.rank; ++dim)
      params.push_back(const_cast<int64_t *>(&memref.strides[dim]));
  }
  launcher->status = launch(launcher->kernels[kernel], grid, block,
                            static_cast<uint32_t>(sharedBytes),
                            launcher->stream, params.data(), dependent);
}

extern "C" void moe_rt_launcher_launch(moe_rt_launcher *launcher,
                                       int32_t kernel, int64_t gridX,
                                       int64_t gridY, int64_t gridZ,
                                       int64_t threads, int64_t sharedBytes,
                                       const moe_rt_kernel_arg *args,
                                       int32_t numArgs) {
  launchKernel(launcher, kernel, gridX, gridY, gridZ, threads, sharedBytes,
               args, numArgs, /*dependent=*/false);
}

extern "C" void moe_rt_launcher_launch_dependent(
    moe_rt_launcher *launcher, int32_t kernel, int64_t gridX, int64_t gridY,
    int64_t gridZ, int64_t threads, int64_t sharedBytes,
    const moe_rt_kernel_arg *args, int32_t numArgs) {
  launchKernel(launcher, kernel, gridX, gridY, gridZ, threads, sharedBytes,
               args, numArgs, /*dependent=*/true);
}

extern "C" void moe_rt_launcher_add_counter(moe_rt_launcher *launcher,
                                            const void *counter,
                                            int64_t *total) {
  if (!isLive(launcher))
    return;
  if (!total) {
    launcher->status = fail(MOE_RT_ERROR_INVALID_ARGUMENT,
                            "moe_rt_launcher_add_counter: null total");
    return;
  }
  int32_t count = 0;
  launcher->status =
      moe_rt_download(&count, counter, sizeof(count), launcher->stream);
  if (launcher->status == MOE_RT_SUCCESS)
    *total += count;
}

extern "C" void moe_rt_launcher_store_i64(moe_rt_launcher *, int64_t *out,
                                          int64_t value) {
  if (out)
    *out = value;
}

extern "C" int32_t moe_rt_launcher_end(moe_rt_launcher *launcher) {
  return launcher ? launcher->status : MOE_RT_ERROR_INVALID_ARGUMENT;
}
