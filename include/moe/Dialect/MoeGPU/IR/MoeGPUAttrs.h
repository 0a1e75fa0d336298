//===- MoeGPUAttrs.h - moe_gpu attributes -----------------------*- C++ -*-===//

#ifndef MOE_DIALECT_MOEGPU_IR_MOEGPUATTRS_H
#define MOE_DIALECT_MOEGPU_IR_MOEGPUATTRS_H

#include "mlir/IR/Attributes.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/DialectImplementation.h"

#include "moe/Dialect/MoeGPU/IR/MoeGPUEnums.h.inc"

#define GET_ATTRDEF_CLASSES
#include "moe/Dialect/MoeGPU/IR/MoeGPUAttrs.h.inc"

#include "moe/Dialect/Moe/IR/MoeAttrs.h"

namespace mlir::moe {
class ExpertMatmulOp;
} // namespace mlir::moe

namespace mlir::moe_gpu {
/// The wgmma a matmul of `format` accumulates with: e4m3 for fp8, s8 for
/// int8, bf16 otherwise (weight-only codes are dequantized to bf16).
MmaKind getMmaKind(moe::QuantFormat format);

/// The combine whose f32 sums `op` zeroes, or null. A matmul that aligns
/// its own slot blocks (`fused_align_assignments`) runs before every other
/// kernel of its schedule; it also zeroes the scratch sums of the
/// schedule's combine (bf16 out, no accumulate, no unpermute, no
/// combine_rows: those have no sums), so that the
/// call needs no memset node. The emitter gives it the sums as a parameter
/// and the host passes them instead of zeroing them.
moe::ExpertMatmulOp getSumsZeroedBy(moe::ExpertMatmulOp op);
} // namespace mlir::moe_gpu

#endif // MOE_DIALECT_MOEGPU_IR_MOEGPUATTRS_H
