/*===- Runtime.h - moe runtime over the CUDA driver API ------------*- C
 *-*-===//
 *
 * The small runtime a compiled moe layer calls: load its embedded cubin,
 * launch kernels (raising the dynamic shared-memory limit above 48 KiB when
 * asked for), and encode TMA descriptors. It depends on the CUDA driver API
 * only, never on MLIR, so that it builds with a plain C++ compiler and the
 * CUDA toolkit. No function here synchronizes the device with the host.
 *
 * Every function returns a moe_rt_status; moe_rt_last_error() describes the
 * last failure of the calling thread.
 *===----------------------------------------------------------------------===*/

#ifndef MOE_RUNTIME_RUNTIME_H
#define MOE_RUNTIME_RUNTIME_H

#include <cuda.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum moe_rt_status {
  MOE_RT_SUCCESS = 0,
  /// No CUDA driver or no device.
  MOE_RT_ERROR_NO_DEVICE = 1,
  /// A null pointer, a zero size, or dimensions out of range.
  MOE_RT_ERROR_INVALID_ARGUMENT = 2,
  /// The module image is not a loadable cubin or PTX for this device.
  MOE_RT_ERROR_INVALID_IMAGE = 3,
  /// No kernel of that name in the module.
  MOE_RT_ERROR_NOT_FOUND = 4,
  /// The launch was refused (resources, shared memory, configuration).
  MOE_RT_ERROR_LAUNCH = 5,
  /// Any other CUDA driver error.
  MOE_RT_ERROR_CUDA = 6,
} moe_rt_status;

typedef struct moe_rt_module *moe_rt_module_t;

/// Initializes the driver and makes device `device`'s primary context current
/// on the calling thread. Idempotent.
moe_rt_status moe_rt_init(int device);

/// The CUDA context current on the calling thread; when there is none,
/// device 0's primary context is made current first (moe_rt_init(0)).
moe_rt_status moe_rt_current_context(CUcontext *context);

/// Loads a module from a cubin, fatbin or NUL-terminated PTX image.
moe_rt_status moe_rt_module_load(const void *image, size_t size,
                                 moe_rt_module_t *module);
moe_rt_status moe_rt_module_unload(moe_rt_module_t module);

/// Looks up kernel `name` of `module`.
moe_rt_status moe_rt_get_function(moe_rt_module_t module, const char *name,
                                  CUfunction *function);

/// Launches `function` on `stream` (asynchronously). A dynamic shared-memory
/// size above 48 KiB first raises the function's limit to it.
moe_rt_status moe_rt_launch(CUfunction function, const uint32_t grid[3],
                            const uint32_t block[3],
                            uint32_t dynamicSharedBytes, CUstream stream,
                            void **kernelParams);

/// Encodes a TMA descriptor for a row-major 2D tensor [rows, cols] of
/// `elementBytes`-byte elements (2: bf16, 1: fp8/int8) with a box of
/// [boxRows, boxCols] and 128-byte swizzle; boxCols * elementBytes must be
/// 128 for that swizzle. Out-of-bounds reads fill zeros.
moe_rt_status moe_rt_encode_tma_2d(CUtensorMap *descriptor, void *base,
                                   uint64_t rows, uint64_t cols,
                                   uint32_t elementBytes, uint32_t boxRows,
                                   uint32_t boxCols);

/// Zeroes `bytes` (a multiple of 4) at device address `pointer`, ordered on
/// `stream`.
moe_rt_status moe_rt_memset_zero_async(void *pointer, size_t bytes,
                                       CUstream stream);

/// Copies `bytes` from host memory to device memory and waits for the copy.
/// Refused while `stream` is being captured into a graph.
moe_rt_status moe_rt_upload(void *device, const void *host, size_t bytes,
                            CUstream stream);

/// Copies `bytes` from device memory to host memory after the work already
/// on `stream`, and waits for it. Refused while `stream` is being captured.
moe_rt_status moe_rt_download(void *host, const void *device, size_t bytes,
                              CUstream stream);

/// Records `message` as the calling thread's last error and returns
/// `status`: how generated host code reports a bad argument.
moe_rt_status moe_rt_fail(moe_rt_status status, const char *message);

/// The last failure of the calling thread, as text.
const char *moe_rt_last_error(void);

#ifdef __cplusplus
}
#endif

#endif /* MOE_RUNTIME_RUNTIME_H */
