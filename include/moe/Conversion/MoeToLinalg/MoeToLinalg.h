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

/// Runtime hooks of the expert-parallel collectives, which the host of the
/// group provides (moe-run emulates R ranks in one process). Both take
/// memref descriptors (`llvm.emit_c_interface`), any strides:
///
/// - `moe_ep_dispatch_<f32|bf16|f16>(input[M, H], ids[M, k] i32,
///   serving[R, E, 2] i32, rows[S, H], local_ids[S, 1] i32, origin[S] i32,
///   i32 realization)`: `serving[s, e]` is the (rank, local slot) serving
///   expert e for source s; fills the three results of `moe.ep_dispatch` on
///   the calling rank;
/// - `moe_ep_combine(rows[S, H] f32, origin[S] i32, weights[M, k] f32,
///   result[M, H] f32, f32 scale, i32 realization)`: fills the f32 result of
///   `moe.ep_combine` on the calling rank.
///
/// `realization` is the `EpRealization` value.
inline constexpr llvm::StringLiteral kEpDispatchFnPrefix = "moe_ep_dispatch_";
inline constexpr llvm::StringLiteral kEpCombineFn = "moe_ep_combine";

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
  /// `moe.ep_dispatch`: an expert id outside [-1, E).
  InvalidDispatchId = 6,
  /// `moe.ep_combine`: an origin outside [-1, R·M·k).
  InvalidOrigin = 7,
  /// An expert-parallel collective: a rank's token count differs from rank
  /// 0's.
  UnequalTokenCounts = 8,
  /// An expert-parallel collective spans another number of ranks than the
  /// group that runs it.
  GroupSizeMismatch = 9,
  /// An expert-parallel collective: operands that travel together (ids and
  /// token rows, rows and origins) have different row counts.
  MismatchedRows = 10,
  /// `moe.expert_matmul`: partial sums (`accumulate`) of another row count
  /// than the routing weights.
  MismatchedPartialSums = 11,
};

/// Adds the patterns that lower every moe op to upstream dialects.
/// `rowBlock` is the static row count of a grouped-matmul contraction block.
void populateMoeToLinalgConversionPatterns(RewritePatternSet &patterns,
                                           int64_t rowBlock);

} // namespace mlir::moe

#endif // MOE_CONVERSION_MOETOLINALG_MOETOLINALG_H
