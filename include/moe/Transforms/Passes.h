//===- Passes.h - moe code generation passes --------------------*- C++ -*-===//

#ifndef MOE_TRANSFORMS_PASSES_H
#define MOE_TRANSFORMS_PASSES_H

#include "mlir/Pass/Pass.h"

namespace mlir::moe {

/// Name of the hook that code guarded by `moe-check-alloc-sizes` calls when
/// the byte count of an allocation does not fit in a signed 64-bit integer:
/// `void moe_report_alloc_size_overflow()`. It must not return.
inline constexpr llvm::StringLiteral kReportAllocSizeOverflowFn =
    "moe_report_alloc_size_overflow";

#define GEN_PASS_DECL
#include "moe/Transforms/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "moe/Transforms/Passes.h.inc"

} // namespace mlir::moe

#endif // MOE_TRANSFORMS_PASSES_H
