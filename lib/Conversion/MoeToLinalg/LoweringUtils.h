//===- LoweringUtils.h - helpers of the moe to linalg lowering --*- C++ -*-===//
//
// Shared by the per-family lowering files of convert-moe-to-linalg. Every
// builder works on tensors; arithmetic is f32.
//
//===----------------------------------------------------------------------===//

#ifndef MOE_LIB_CONVERSION_MOETOLINALG_LOWERINGUTILS_H
#define MOE_LIB_CONVERSION_MOETOLINALG_LOWERINGUTILS_H

#include "moe/Conversion/MoeToLinalg/MoeToLinalg.h"
#include "moe/Conversion/Utils/ScalarMath.h"
#include "moe/Dialect/Moe/IR/MoeOps.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/IR/Builders.h"

namespace mlir::moe::lowering {

using BodyFn = function_ref<void(OpBuilder &, Location, ValueRange)>;
inline constexpr utils::IteratorType kParallel = utils::IteratorType::parallel;
inline constexpr utils::IteratorType kReduction =
    utils::IteratorType::reduction;

using moe::f32Constant;
Value indexConstant(OpBuilder &b, Location loc, int64_t value);

/// Converts a scalar float to `type` (extension or truncation).
Value convertFloat(OpBuilder &b, Location loc, Value value, Type type);

/// Returns the sizes of a tensor of type `type` whose dynamic dimensions are
/// taken, in order, from `dynamicSources` (pairs of value and dimension).
SmallVector<OpFoldResult>
mixedSizes(OpBuilder &b, Location loc, RankedTensorType type,
           ArrayRef<std::pair<Value, int64_t>> dynamicSources);

/// A tensor of `sizes` filled with the float `value` of `elementType`.
Value createFilled(OpBuilder &b, Location loc, ArrayRef<OpFoldResult> sizes,
                   Type elementType, double value);
/// A tensor of `sizes` filled with the scalar `value`.
Value createFilledWith(OpBuilder &b, Location loc, ArrayRef<OpFoldResult> sizes,
                       Value value);
Value createEmpty(OpBuilder &b, Location loc, ArrayRef<OpFoldResult> sizes,
                  Type elementType);

/// A linalg.generic over `iterators.size()` loops; `operandDims` lists the
/// loop dimensions indexing each input and then the output.
Value buildGeneric(OpBuilder &b, Location loc, ValueRange inputs, Value output,
                   ArrayRef<SmallVector<unsigned>> operandDims,
                   ArrayRef<utils::IteratorType> iterators, BodyFn body);

inline Value sigmoid(OpBuilder &b, Location loc, Value x) {
  return buildSigmoid(b, loc, x);
}

/// Softmax along dimension 1 of an [M, X] f32 tensor; a NaN makes its row NaN.
Value buildRowSoftmax(OpBuilder &b, Location loc, Value input);
/// Divides each row of an [M, X] f32 tensor by its sum.
Value buildRowNormalize(OpBuilder &b, Location loc, Value input);
/// Multiplies every element of a rank-2 f32 tensor by `scale`.
Value buildScale(OpBuilder &b, Location loc, Value input, double scale);
/// Converts every element to the element type of `resultType`.
Value buildConvert(OpBuilder &b, Location loc, Value input,
                   RankedTensorType resultType);
/// Makes a value's static shape agree with the result it replaces.
Value castToType(OpBuilder &b, Location loc, Value value, Type type);
/// Reads an i32 element as an index.
Value extractIndex(OpBuilder &b, Location loc, Value tensor,
                   ValueRange indices);

/// The declaration of the runtime error hook, inserted on first use.
func::FuncOp getOrInsertReportFunction(OpBuilder &b, Operation *op);
/// Reports `code` with `value` and `bound` (index values) when `invalid`.
void emitRuntimeCheck(OpBuilder &b, Location loc, func::FuncOp reportFn,
                      Value invalid, RuntimeErrorCode code, Value value,
                      Value bound);
/// Checks `lower <= value < upper`, reporting `code` when not, and returns
/// `value` clamped into that range.
Value emitCheckedIndex(OpBuilder &b, Location loc, func::FuncOp reportFn,
                       Value value, Value lower, Value upper,
                       RuntimeErrorCode code);

using moe::buildGatedActivation;

/// The (gate, up) columns paired into output column `column` of a gated
/// activation `width` wide: `column` and `column + width` (contiguous
/// halves), or `2 * column` and `2 * column + 1` (interleaved).
std::pair<Value, Value> gateUpColumns(OpBuilder &b, Location loc, Value column,
                                      int64_t width, bool interleaved);

/// Groups the assignments of `ids` ([M, k] i32) by expert, stably: returns
/// offsets[E + 1] and source[M·k] (i32). Ids outside [0, E) are reported and
/// clamped.
std::pair<Value, Value> buildSortAssignments(OpBuilder &b, Location loc,
                                             Value ids, int64_t numExperts,
                                             func::FuncOp reportFn);

void populateRoutingLoweringPatterns(RewritePatternSet &patterns);
void populateScheduleLoweringPatterns(RewritePatternSet &patterns);
void populateMatmulLoweringPatterns(RewritePatternSet &patterns,
                                    int64_t rowBlock);
void populateElementwiseLoweringPatterns(RewritePatternSet &patterns);
void populateQuantizeLoweringPatterns(RewritePatternSet &patterns);
void populateExpertParallelLoweringPatterns(RewritePatternSet &patterns);

} // namespace mlir::moe::lowering

#endif // MOE_LIB_CONVERSION_MOETOLINALG_LOWERINGUTILS_H
