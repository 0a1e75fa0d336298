//===- GpuHost.h - host code of a compiled GPU layer ------------*- C++ -*-===//
//
// The host side of a layer compiled for the GPU: C++ source that calls the
// moe runtime (runtime/include/moe/Runtime/Runtime.h) to launch the layer's
// kernels on the caller's stream, with the kernels' cubin embedded.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_TARGET_GPUHOST_H
#define MOE_TARGET_GPUHOST_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Support/LLVM.h"

namespace mlir::moe {

/// Writes the host source and header of layer `func` (the only function of
/// `module`, after moe-emit-gpu-kernels: every moe op carries its kernels)
/// whose kernels are in `image` (a cubin of gpu.module @moe_kernels). The C
/// entry points are
///
///   int moe_layer_<name>(const void *arg0, ..., void *result0, ...,
///                        int64_t num_tokens, void *workspace,
///                        size_t workspace_bytes, CUstream stream);
///   size_t moe_layer_<name>_workspace_bytes(int64_t num_tokens);
///
/// Fails with a diagnostic on an op without a GPU kernel or on shapes whose
/// only dynamic dimension is not the token count.
LogicalResult emitGpuHostSource(ModuleOp module, StringRef image,
                                StringRef name, raw_ostream &source,
                                raw_ostream &header);

} // namespace mlir::moe

#endif // MOE_TARGET_GPUHOST_H
