//===- MoeToLinalg.h - moe to linalg conversion -----------------*- C++ -*-===//

#ifndef MOE_CONVERSION_MOETOLINALG_MOETOLINALG_H
#define MOE_CONVERSION_MOETOLINALG_MOETOLINALG_H

#include "mlir/Pass/Pass.h"

namespace mlir {
class RewritePatternSet;
} // namespace mlir

namespace mlir::moe {

#define GEN_PASS_DECL_CONVERTMOETOLINALG
#include "moe/Conversion/Passes.h.inc"

/// Name of the runtime hook that `moe.permute` calls for an expert id outside
/// [0, E): `void moe_report_invalid_expert(i64 id, i64 numExperts)`.
inline constexpr llvm::StringLiteral kReportInvalidExpertFn =
    "moe_report_invalid_expert";

/// Adds the patterns that lower every moe op to upstream dialects.
/// `rowBlock` is the static row count of a grouped-matmul contraction block.
void populateMoeToLinalgConversionPatterns(RewritePatternSet &patterns,
                                           int64_t rowBlock);

} // namespace mlir::moe

#endif // MOE_CONVERSION_MOETOLINALG_MOETOLINALG_H
