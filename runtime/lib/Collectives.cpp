//===- Collectives.cpp - expert-parallel groups of the moe runtime --------===//
//
// The collectives a layer compiled for several ranks calls (see Runtime.h,
// "Expert-parallel groups"), and a group over NCCL. NCCL is loaded with
// dlopen on first use, so that the runtime and every layer library build and
// load without it; only the few entry points used here are declared, with
// the types and enumerators of NCCL's public ABI.
//
//===----------------------------------------------------------------------===//

#include "moe/Runtime/Runtime.h"

#include "LauncherState.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>
#include <string>

namespace {
/// NCCL's ncclResult_t, ncclDataType_t and ncclRedOp_t values used here.
constexpr int kNcclSuccess = 0;
constexpr int kNcclInt8 = 0;
constexpr int kNcclFloat32 = 7;
constexpr int kNcclSum = 0;

/// The NCCL entry points, resolved once per process.
struct NcclApi {
  int (*commCount)(void *comm, int *count) = nullptr;
  int (*commUserRank)(void *comm, int *rank) = nullptr;
  int (*allGather)(const void *send, void *recv, size_t count, int type,
                   void *comm, CUstream stream) = nullptr;
  int (*reduceScatter)(const void *send, void *recv, size_t count, int type,
                       int op, void *comm, CUstream stream) = nullptr;
  const char *(*errorString)(int result) = nullptr;
  /// Why NCCL could not be loaded; empty once it was.
  std::string loadError;
};

template <typename Function>
bool resolve(void *library, const char *name, Function &function,
             std::string &error) {
  function = reinterpret_cast<Function>(dlsym(library, name));
  if (!function)
    error = std::string("NCCL has no ") + name;
  return function != nullptr;
}

const NcclApi &ncclApi() {
  static NcclApi api;
  static std::once_flag once;
  std::call_once(once, [] {
    const char *path = std::getenv("MOE_NCCL_LIBRARY");
    if (!path || !*path)
      path = "libnccl.so.2";
    void *library = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!library) {
      const char *reason = dlerror();
      bool named = std::getenv("MOE_NCCL_LIBRARY") &&
                   *std::getenv("MOE_NCCL_LIBRARY");
      api.loadError = std::string("cannot load NCCL (") + path + "): " +
                      (reason ? reason : "unknown error") +
                      (named ? "; MOE_NCCL_LIBRARY names a library that "
                               "cannot be loaded"
                             : "; set MOE_NCCL_LIBRARY to the path of "
                               "libnccl.so.2");
      return;
    }
    std::string error;
    if (!resolve(library, "ncclCommCount", api.commCount, error) ||
        !resolve(library, "ncclCommUserRank", api.commUserRank, error) ||
        !resolve(library, "ncclAllGather", api.allGather, error) ||
        !resolve(library, "ncclReduceScatter", api.reduceScatter, error) ||
        !resolve(library, "ncclGetErrorString", api.errorString, error))
      api.loadError = error;
  });
  return api;
}

/// `result` of an NCCL call, with NCCL's description in `*error`.
int32_t ncclStatus(int result, const char **error) {
  if (result != kNcclSuccess && error)
    *error = ncclApi().errorString(result);
  return result;
}

int32_t ncclRankAndSize(void *comm, int32_t *rank, int32_t *size,
                        const char **error) {
  const NcclApi &api = ncclApi();
  int value = 0;
  if (int32_t result = ncclStatus(api.commUserRank(comm, &value), error))
    return result;
  *rank = value;
  if (int32_t result = ncclStatus(api.commCount(comm, &value), error))
    return result;
  *size = value;
  return 0;
}

int32_t ncclAllGatherBytes(const void *send, void *recv, size_t bytes,
                           void *comm, CUstream stream, const char **error) {
  return ncclStatus(
      ncclApi().allGather(send, recv, bytes, kNcclInt8, comm, stream), error);
}

int32_t ncclReduceScatterSum(const float *send, float *recv, size_t count,
                             void *comm, CUstream stream,
                             const char **error) {
  return ncclStatus(ncclApi().reduceScatter(send, recv, count, kNcclFloat32,
                                            kNcclSum, comm, stream),
                    error);
}

constexpr moe_rt_collectives kNcclCollectives = {
    ncclRankAndSize, ncclAllGatherBytes, ncclReduceScatterSum};

int64_t bytesOf(const moe_rt_memref &memref) {
  int64_t bytes = memref.elementBytes;
  for (int64_t dim = 0; dim < memref.rank; ++dim)
    bytes *= memref.sizes[dim];
  return bytes;
}

/// Records a failed collective `what` (and the group's description of it).
void failCollective(moe_rt_launcher *launcher, const std::string &what,
                    const char *error) {
  std::string message = what;
  if (error && *error)
    message += std::string(": ") + error;
  launcher->status = moe_rt_fail(MOE_RT_ERROR_COLLECTIVE, message.c_str());
}

/// The group's rank count, or 0 after failing the call.
int32_t groupSize(moe_rt_launcher *launcher, const moe_rt_group *group,
                  int32_t *rank, const char *what) {
  if (!group || !group->collectives) {
    launcher->status = moe_rt_fail(
        MOE_RT_ERROR_INVALID_ARGUMENT,
        (std::string(what) + ": no expert-parallel group").c_str());
    return 0;
  }
  const moe_rt_collectives &collectives = *group->collectives;
  if (!collectives.rank_and_size || !collectives.all_gather ||
      !collectives.reduce_scatter_sum_f32) {
    launcher->status = moe_rt_fail(
        MOE_RT_ERROR_INVALID_ARGUMENT,
        (std::string(what) + ": the group lacks a collective (null function)")
            .c_str());
    return 0;
  }
  int32_t size = 0;
  const char *error = nullptr;
  if (group->collectives->rank_and_size(group->comm, rank, &size, &error) ||
      size < 1) {
    failCollective(launcher, std::string(what) + ": cannot query the group",
                   error);
    return 0;
  }
  return size;
}
} // namespace

using moe_rt::isLive;

extern "C" moe_rt_status moe_rt_group_from_nccl(void *ncclComm,
                                                moe_rt_group *group) {
  if (!ncclComm || !group)
    return moe_rt_fail(MOE_RT_ERROR_INVALID_ARGUMENT,
                       "moe_rt_group_from_nccl: null communicator or group");
  const NcclApi &api = ncclApi();
  if (!api.loadError.empty())
    return moe_rt_fail(MOE_RT_ERROR_COLLECTIVE, api.loadError.c_str());
  group->collectives = &kNcclCollectives;
  group->comm = ncclComm;
  return MOE_RT_SUCCESS;
}

extern "C" void moe_rt_launcher_store_group_rank(moe_rt_launcher *launcher,
                                                 const moe_rt_group *group,
                                                 int64_t ranks,
                                                 moe_rt_memref rankWord) {
  if (!isLive(launcher))
    return;
  int32_t rank = 0;
  int32_t size = groupSize(launcher, group, &rank, "layer");
  if (!size)
    return;
  if (size != ranks || rank < 0 || rank >= size) {
    std::string message = "the layer was compiled for " +
                          std::to_string(ranks) + " ranks, its group has " +
                          std::to_string(size) + " (this is rank " +
                          std::to_string(rank) + ")";
    launcher->status = moe_rt_fail(MOE_RT_ERROR_COLLECTIVE, message.c_str());
    return;
  }
  if (bytesOf(rankWord) != 4) {
    launcher->status = moe_rt_fail(
        MOE_RT_ERROR_INVALID_ARGUMENT,
        "moe_rt_launcher_store_group_rank: the rank word is not one int32");
    return;
  }
  CUresult result = cuMemsetD32Async(
      reinterpret_cast<CUdeviceptr>(rankWord.data),
      static_cast<unsigned>(rank), 1, launcher->stream);
  if (result != CUDA_SUCCESS)
    launcher->status = moe_rt_fail(
        MOE_RT_ERROR_CUDA, "moe_rt_launcher_store_group_rank: cuMemsetD32Async "
                           "failed");
}

extern "C" void moe_rt_launcher_all_gather(moe_rt_launcher *launcher,
                                           const moe_rt_group *group,
                                           moe_rt_memref send,
                                           moe_rt_memref recv) {
  if (!isLive(launcher))
    return;
  int32_t rank = 0;
  int32_t size = groupSize(launcher, group, &rank, "all-gather");
  if (!size)
    return;
  int64_t bytes = bytesOf(send);
  if (bytesOf(recv) != size * bytes) {
    launcher->status = moe_rt_fail(
        MOE_RT_ERROR_INVALID_ARGUMENT,
        "moe_rt_launcher_all_gather: the receive buffer is not the rank count "
        "times the send buffer");
    return;
  }
  const char *error = nullptr;
  if (bytes > 0 && group->collectives->all_gather(
                       send.data, recv.data, static_cast<size_t>(bytes),
                       group->comm, launcher->stream, &error))
    failCollective(launcher, "all-gather failed", error);
}

extern "C" void moe_rt_launcher_reduce_scatter_sum_f32(
    moe_rt_launcher *launcher, const moe_rt_group *group, moe_rt_memref send,
    moe_rt_memref recv) {
  if (!isLive(launcher))
    return;
  int32_t rank = 0;
  int32_t size = groupSize(launcher, group, &rank, "reduce-scatter");
  if (!size)
    return;
  int64_t bytes = bytesOf(recv);
  if (send.elementBytes != 4 || recv.elementBytes != 4 ||
      bytesOf(send) != size * bytes) {
    launcher->status = moe_rt_fail(
        MOE_RT_ERROR_INVALID_ARGUMENT,
        "moe_rt_launcher_reduce_scatter_sum_f32: the send buffer is not the "
        "rank count times the receive buffer, of f32");
    return;
  }
  const char *error = nullptr;
  if (bytes > 0 && group->collectives->reduce_scatter_sum_f32(
                       static_cast<const float *>(send.data),
                       static_cast<float *>(recv.data),
                       static_cast<size_t>(bytes / 4), group->comm,
                       launcher->stream, &error))
    failCollective(launcher, "reduce-scatter failed", error);
}
