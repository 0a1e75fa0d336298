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

/// Name of the runtime hook that lowered code calls when its data breaks an
/// op's contract: `void moe_report_runtime_error(i64 code, i64 value,
/// i64 bound)`. The code then continues with the value clamped into range,
/// so memory stays in bounds; the caller turns the report into an error.
inline constexpr llvm::StringLiteral kReportRuntimeErrorFn =
    "moe_report_runtime_error";

/// What a runtime error report is about.
enum class RuntimeErrorCode : int64_t {
  /// `moe.permute`: an expert id outside [0, E).
  InvalidExpertId = 1,
  /// `moe.unpermute`: a source index outside [0, rows).
  InvalidSourceIndex = 2,
  /// `moe.grouped_matmul`: offsets that are not a non-decreasing partition of
  /// [0, rows).
  InvalidOffsets = 3,
  /// `moe.expert_matmul`: a schedule slot holding an assignment outside
  /// [0, M·k) that is not the padding sentinel.
  InvalidSlot = 4,
  /// `moe.expert_matmul`: a block expert outside [-1, E).
  InvalidBlockExpert = 5,
};

/// Adds the patterns that lower every moe op to upstream dialects.
/// `rowBlock` is the static row count of a grouped-matmul contraction block.
void populateMoeToLinalgConversionPatterns(RewritePatternSet &patterns,
                                           int64_t rowBlock);

} // namespace mlir::moe

#endif // MOE_CONVERSION_MOETOLINALG_MOETOLINALG_H
