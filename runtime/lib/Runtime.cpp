//===- Runtime.cpp - moe runtime over the CUDA driver API -----------------===//

#include "moe/Runtime/Runtime.h"

#include <cstdio>
#include <cstring>
#include <string>

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

extern "C" moe_rt_status moe_rt_launch(CUfunction function,
                                       const uint32_t grid[3],
                                       const uint32_t block[3],
                                       uint32_t dynamicSharedBytes,
                                       CUstream stream, void **kernelParams) {
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
  result = cuLaunchKernel(function, grid[0], grid[1], grid[2], block[0],
                          block[1], block[2], dynamicSharedBytes, stream,
                          kernelParams, nullptr);
  if (result != CUDA_SUCCESS)
    return fail(MOE_RT_ERROR_LAUNCH, "cuLaunchKernel failed", result);
  return MOE_RT_SUCCESS;
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
