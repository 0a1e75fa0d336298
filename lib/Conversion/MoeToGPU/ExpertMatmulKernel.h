//===- ExpertMatmulKernel.h - the Hopper kernel of expert_matmul -*- C++
//-*-===//

#ifndef MOE_LIB_CONVERSION_MOETOGPU_EXPERTMATMULKERNEL_H
#define MOE_LIB_CONVERSION_MOETOGPU_EXPERTMATMULKERNEL_H

#include "moe/Dialect/Moe/IR/MoeOps.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"

namespace mlir::moe {

/// Adds to `module` the sm_90a kernel `name` computing `op`, which must be
/// an aligned, gathering expert_matmul that writes bf16 rows (block_m 64,
/// K % 64 == 0, N % 128 == 0); otherwise emits a remark and fails.
///
/// Kernel arguments: x memref<?xKxbf16>, sorted slots memref<?xi32>, block
/// experts memref<?xi32>, padded count memref<1xi32>, a pointer to the TMA
/// descriptor of the weights viewed as [E·N, K] (box 128 x 64, 128B
/// swizzle), out memref<?xNxbf16>. Launch: grid (ceil(S / 64), N / 128),
/// 128 threads, no dynamic shared memory.
FailureOr<gpu::GPUFuncOp> buildExpertMatmulKernel(OpBuilder &b,
                                                  gpu::GPUModuleOp module,
                                                  ExpertMatmulOp op,
                                                  StringRef name);

} // namespace mlir::moe

#endif // MOE_LIB_CONVERSION_MOETOGPU_EXPERTMATMULKERNEL_H
