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
  /// A collective of an expert-parallel group failed, or the group does not
  /// have the ranks the layer was compiled for, or NCCL cannot be loaded.
  MOE_RT_ERROR_COLLECTIVE = 7,
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

/// moe_rt_launch with programmatic stream serialization (PDL): the kernel
/// may be scheduled once every block of the previous kernel on `stream` has
/// executed griddepcontrol.launch_dependents (or exited), before that kernel
/// has finished. The kernel must execute griddepcontrol.wait before it
/// reads or writes memory the previous kernels use; the kernels moe-compile
/// builds do so first thing (moe-gpu-dependent-launch).
moe_rt_status moe_rt_launch_dependent(CUfunction function,
                                      const uint32_t grid[3],
                                      const uint32_t block[3],
                                      uint32_t dynamicSharedBytes,
                                      CUstream stream, void **kernelParams);

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

/// Reorders the stored codes of a 4-bit weight-only format (int4 or e2m1
/// pairs, as moe.grouped_matmul takes them) from host memory `codes`
/// [experts, rows, pairs] into `packed` [experts, rows / 64, pairs / 32,
/// 2048], the layout of `moe.prepack wgmma_a_4bit` (docs/MoeDialect.md):
/// bytes move, none changes. Host memory, run once when weights are loaded.
/// experts, rows and pairs must be positive, rows a multiple of 64 and
/// pairs of 32, and the buffers must not overlap.
moe_rt_status moe_rt_prepack_wgmma_a_4bit(const uint8_t *codes,
                                          uint8_t *packed, int64_t experts,
                                          int64_t rows, int64_t pairs);


/*===--------------------------------------------------------------------===*
 * Launching the kernels of a compiled layer
 *
 * The host code that moe-compile generates (from the host IR of
 * moe-gpu-outline-host, through EmitC) calls only the functions below. A
 * call of a layer opens a moe_rt_launcher, which carries the first error:
 * once a step has failed, the later steps do nothing, and
 * moe_rt_launcher_end returns that error. So the generated code is straight
 * line, without a branch per step.
 *===--------------------------------------------------------------------===*/

/// The largest rank of a moe_rt_memref.
#define MOE_RT_MAX_RANK 4

/// A row-major, contiguous memref: its kernel parameters are those of an
/// MLIR memref descriptor (allocated and aligned pointer, offset 0, sizes,
/// strides).
typedef struct moe_rt_memref {
  void *data;
  int64_t offset;
  int64_t rank;
  int64_t elementBytes;
  int64_t sizes[MOE_RT_MAX_RANK];
  int64_t strides[MOE_RT_MAX_RANK];
} moe_rt_memref;

/// Memrefs of rank 1, 2 and 3 over `data`.
moe_rt_memref moe_rt_memref_1d(const void *data, int64_t elementBytes,
                               int64_t size0);
moe_rt_memref moe_rt_memref_2d(const void *data, int64_t elementBytes,
                               int64_t size0, int64_t size1);
moe_rt_memref moe_rt_memref_3d(const void *data, int64_t elementBytes,
                               int64_t size0, int64_t size1, int64_t size2);

/// The address `byteOffset` bytes into `memref`'s data.
void *moe_rt_memref_at(moe_rt_memref memref, int64_t byteOffset);

/// Dimension `dim` of `memref` (0 outside its rank).
int64_t moe_rt_memref_size(moe_rt_memref memref, int64_t dim);

/// One kernel argument: a memref (passed as its descriptor's fields) or a
/// TMA descriptor (passed by value).
typedef struct moe_rt_kernel_arg {
  moe_rt_memref memref;
  const CUtensorMap *tensorMap;
} moe_rt_kernel_arg;

moe_rt_kernel_arg moe_rt_memref_arg(moe_rt_memref memref);
moe_rt_kernel_arg moe_rt_tensor_map_arg(const CUtensorMap *tensorMap);

/// The kernels of a layer: a cubin and the names of the kernels it launches,
/// loaded once per CUDA context and kept for the life of the process.
typedef struct moe_rt_program {
  const void *image;
  size_t imageBytes;
  const char *const *kernelNames;
  int32_t numKernels;
} moe_rt_program;

typedef struct moe_rt_launcher {
  moe_rt_status status;
  /// Zero once the call has nothing (left) to launch.
  int32_t active;
  const CUfunction *kernels;
  int32_t numKernels;
  CUstream stream;
} moe_rt_launcher;

/// Opens a call on `stream`: loads `program` in the current context (on the
/// first call there) and resolves its kernels.
moe_rt_launcher moe_rt_launcher_begin(const moe_rt_program *program,
                                      CUstream stream);

/// Fails the call with MOE_RT_ERROR_INVALID_ARGUMENT and `message` if
/// `pointer` is null.
void moe_rt_launcher_require_pointer(moe_rt_launcher *launcher,
                                     const void *pointer, const char *message);

/// Fails the call with MOE_RT_ERROR_INVALID_ARGUMENT and `message` unless
/// `pointer` is non-null and 16-byte aligned: the kernels read a tensor's
/// rows with 16-byte loads and TMA, which fault on a misaligned address.
void moe_rt_launcher_require_tensor(moe_rt_launcher *launcher,
                                    const void *pointer, const char *message);

/// Fails the call unless `workspace` is 128-byte aligned and holds at least
/// `requiredBytes` (`workspaceBytes` of them).
void moe_rt_launcher_require_workspace(moe_rt_launcher *launcher,
                                       const void *workspace,
                                       size_t workspaceBytes,
                                       int64_t requiredBytes,
                                       const char *message);

/// Fails the call unless 0 <= numTokens <= 2^24.
void moe_rt_launcher_require_tokens(moe_rt_launcher *launcher,
                                    int64_t numTokens, const char *message);

/// Ends the call's launches successfully when numTokens is 0 (nothing to
/// do).
void moe_rt_launcher_finish_if_empty(moe_rt_launcher *launcher,
                                     int64_t numTokens);

/// Encodes the TMA descriptor of a row-major [rows, cols] tensor of
/// `elementBytes`-byte elements with a box of [boxRows, boxCols] (see
/// moe_rt_encode_tma_2d).
void moe_rt_launcher_encode_tma_2d(moe_rt_launcher *launcher,
                                   CUtensorMap *descriptor, const void *base,
                                   int64_t rows, int64_t cols,
                                   int64_t elementBytes, int64_t boxRows,
                                   int64_t boxCols);

/// The streaming multiprocessors of the current context's device: the
/// grid of a persistent kernel. 1 once the call has failed or ended (a grid
/// it sizes is then not launched).
int64_t moe_rt_launcher_multiprocessor_count(moe_rt_launcher *launcher);

/// Zeroes every byte of `memref` on the call's stream.
void moe_rt_launcher_zero(moe_rt_launcher *launcher, moe_rt_memref memref);

/// Launches kernel `kernel` (an index into the program's kernel names) on a
/// grid of `gridX` x `gridY` x `gridZ` blocks of `threads` threads, with
/// `sharedBytes` of dynamic shared memory and `numArgs` arguments. A grid
/// with a zero dimension launches nothing.
void moe_rt_launcher_launch(moe_rt_launcher *launcher, int32_t kernel,
                            int64_t gridX, int64_t gridY, int64_t gridZ,
                            int64_t threads, int64_t sharedBytes,
                            const moe_rt_kernel_arg *args, int32_t numArgs);

/// moe_rt_launcher_launch through moe_rt_launch_dependent.
void moe_rt_launcher_launch_dependent(moe_rt_launcher *launcher,
                                      int32_t kernel, int64_t gridX,
                                      int64_t gridY, int64_t gridZ,
                                      int64_t threads, int64_t sharedBytes,
                                      const moe_rt_kernel_arg *args,
                                      int32_t numArgs);

/// Adds the int32 count at `counter` (device memory) to `*total`; waits for
/// the stream.
void moe_rt_launcher_add_counter(moe_rt_launcher *launcher,
                                 const void *counter, int64_t *total);

/// Stores `value` at `out` (host memory) unless `out` is null.
void moe_rt_launcher_store_i64(moe_rt_launcher *launcher, int64_t *out,
                               int64_t value);

/// Closes the call: its status (MOE_RT_SUCCESS or the first failure).
int32_t moe_rt_launcher_end(moe_rt_launcher *launcher);

/*===--------------------------------------------------------------------===*
 * Expert-parallel groups
 *
 * A layer compiled for R ranks (moe-expert-parallel) takes a moe_rt_group:
 * the collectives of the caller's communicator, enqueued on the layer's
 * stream. Each rank calls the layer with the same token count; the generated
 * code never waits for the stream, so a call stays graph-capturable as far as
 * the collectives are. moe_rt_group_from_nccl makes a group over an NCCL
 * communicator; a caller (a test, or an engine with its own transport) may
 * fill in moe_rt_collectives itself.
 *
 * A call that fails before or between its collectives (a bad argument, a
 * refused launch) returns its status on that rank only; the other ranks
 * then wait in a collective the failed rank never enters. As with any NCCL
 * program, the caller recovers by aborting the communicator on every rank
 * (ncclCommAbort), or gives its own collectives a timeout. NCCL
 * communicators must be blocking (not created with config.blocking = 0): an
 * ncclInProgress result counts as a failure.
 *===--------------------------------------------------------------------===*/

/// The collectives a group provides. Each returns 0 on success, else a
/// nonzero code and, where it can, a description in `*error` (static or
/// thread-local storage; may stay null).
typedef struct moe_rt_collectives {
  /// This process's rank in `comm` and the number of ranks.
  int32_t (*rank_and_size)(void *comm, int32_t *rank, int32_t *size,
                           const char **error);
  /// For every rank r: `recv + r * bytes` receives rank r's `bytes` bytes at
  /// `send`, ordered on `stream`.
  int32_t (*all_gather)(const void *send, void *recv, size_t bytes,
                        void *comm, CUstream stream, const char **error);
  /// `recv[i]` = the sum over ranks r of rank r's `send[rank * count + i]`,
  /// f32, for i < count, where `rank` is the calling rank; ordered on
  /// `stream`.
  int32_t (*reduce_scatter_sum_f32)(const float *send, float *recv,
                                    size_t count, void *comm,
                                    CUstream stream, const char **error);
} moe_rt_collectives;

/// A communicator and its collectives.
typedef struct moe_rt_group {
  /// The collectives; every function must be set.
  const moe_rt_collectives *collectives;
  /// Passed to every collective as `comm` (an ncclComm_t for NCCL groups).
  void *comm;
} moe_rt_group;

/// A group over NCCL communicator `ncclComm` (an ncclComm_t). NCCL is
/// loaded on first use with dlopen: MOE_NCCL_LIBRARY if set, else
/// libnccl.so.2 (found when the process already has it loaded, as after
/// `import torch`, or on the library path). Fails with
/// MOE_RT_ERROR_COLLECTIVE when it cannot be loaded.
moe_rt_status moe_rt_group_from_nccl(void *ncclComm, moe_rt_group *group);

/// Fails the call unless `group` is a group of `ranks` ranks; stores the
/// calling rank as one int32 into `rankWord` (device memory) on the stream.
void moe_rt_launcher_store_group_rank(moe_rt_launcher *launcher,
                                      const moe_rt_group *group,
                                      int64_t ranks, moe_rt_memref rankWord);

/// All-gathers `send` (every rank's, in rank order) into `recv`, which holds
/// the group's rank count times `send`'s bytes.
void moe_rt_launcher_all_gather(moe_rt_launcher *launcher,
                                const moe_rt_group *group,
                                moe_rt_memref send, moe_rt_memref recv);

/// Sums the f32 `send` over the group and keeps this rank's block of it in
/// `recv` (`send` holds the rank count times `recv`'s elements).
void moe_rt_launcher_reduce_scatter_sum_f32(moe_rt_launcher *launcher,
                                            const moe_rt_group *group,
                                            moe_rt_memref send,
                                            moe_rt_memref recv);

#ifdef __cplusplus
}
#endif

#endif /* MOE_RUNTIME_RUNTIME_H */
