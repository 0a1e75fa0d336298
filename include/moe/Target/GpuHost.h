//===- GpuHost.h - host code of a compiled GPU layer ------------*- C++ -*-===//
//
// The host side of a layer compiled for the GPU: C++ that calls the moe
// runtime (runtime/include/moe/Runtime/Runtime.h) to launch the layer's
// kernels on the caller's stream, with the kernels' cubin embedded. It is
// printed by upstream translateToCpp from the EmitC lowering of the host IR
// (moe-gpu-outline-host, convert-moe-gpu-host-to-emitc).
//
//===----------------------------------------------------------------------===//

#ifndef MOE_TARGET_GPUHOST_H
#define MOE_TARGET_GPUHOST_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Support/LLVM.h"

namespace mlir::moe {

/// Writes the host source and header (`<name>.h`, included by the source)
/// of `module`: the host functions of moe-gpu-outline-host and the kernels
/// serialized as `gpu.binary @moe_kernels`. The C entry points are
///
///   int32_t moe_layer_<name>(const void *input..., void *result...,
///                            int64_t numTokens, void *workspace,
///                            size_t workspaceBytes, CUstream stream);
///   size_t moe_layer_<name>_workspace_bytes(int64_t numTokens);
///   int32_t moe_layer_<name>_invalid_ids(void *workspace,
///                                        size_t workspaceBytes,
///                                        int64_t numTokens, CUstream stream,
///                                        int64_t *count);
///
/// `module` itself is not changed. Fails with a diagnostic where the host IR
/// has no C lowering.
LogicalResult emitGpuHostSource(ModuleOp module, StringRef name,
                                raw_ostream &source, raw_ostream &header);

/// Writes one host source and header for a layer compiled once per
/// token-count bucket: `variants` are (bucket, host module) in ascending
/// bucket order, each module's entry points named `moe_layer_<name>_m<bucket>`
/// (…`_workspace_bytes`, …`_invalid_ids`). The variants become static
/// functions of the source (their programs' globals suffixed `_m<bucket>`),
/// and the three entry points of `emitGpuHostSource`, named after `name`,
/// call the variant of the smallest bucket at least the token count, or of
/// the largest. The workspace a call needs is that of the variant it takes.
/// Fails on an empty list, or with a diagnostic on buckets that do not
/// ascend strictly.
LogicalResult
emitBucketedGpuHostSource(ArrayRef<std::pair<int64_t, ModuleOp>> variants,
                          StringRef name, raw_ostream &source,
                          raw_ostream &header);

} // namespace mlir::moe

#endif // MOE_TARGET_GPUHOST_H
